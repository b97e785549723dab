package postgres

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/strata-dev/strata/provisioners"
)

var (
	clusterGVK  = schema.GroupVersionKind{Group: "postgresql.cnpg.io", Version: "v1", Kind: "Cluster"}
	poolerGVK   = schema.GroupVersionKind{Group: "postgresql.cnpg.io", Version: "v1", Kind: "Pooler"}
	databaseGVK = schema.GroupVersionKind{Group: "postgresql.cnpg.io", Version: "v1", Kind: "Database"}
	// certificateGVK is cert-manager's Certificate of the server TLS.
	certificateGVK = schema.GroupVersionKind{Group: "cert-manager.io", Version: "v1", Kind: "Certificate"}
	jobGVK         = schema.GroupVersionKind{Group: "batch", Version: "v1", Kind: "Job"}
)

// failedPhases are CloudNativePG phases that need a person (or a platform
// fix) before the cluster can make progress; waiting on them until the
// polling deadline would only hide the reason.
var failedPhases = []string{
	"Cluster has incomplete or invalid image catalog",
	"Cluster is unrecoverable and needs manual intervention",
	"Cluster cannot execute instance online upgrade due to missing architecture binary",
	"Unable to create required cluster objects",
	"Invalid cluster definition",
	"Waiting for user action",
}

// transientAPIErrors are the messages of Kubernetes API failures that pass
// by themselves (an overloaded or restarting API server or etcd), as
// client-go and the API server word them. Matched as text: the Cluster's
// status keeps only the error's message, so apimachinery's typed checks
// (apierrors.IsTimeout, IsTooManyRequests, …) have nothing to inspect.
var transientAPIErrors = []string{
	"etcdserver: request timed out",
	"etcdserver: leader changed",
	"the server was unable to return a response in the time allotted",
	"the server is currently unable to handle the request",
	"the object has been modified",
	"Too many requests",
	"context deadline exceeded",
	"connection refused",
	"i/o timeout",
	"TLS handshake timeout",
}

func transientAPIError(reason string) bool {
	for _, m := range transientAPIErrors {
		if strings.Contains(reason, m) {
			return true
		}
	}
	return false
}

// phaseUnknownPlugin is CloudNativePG's phase for a Cluster that names a
// plugin the operator has not loaded: on the standard and ha plans, the
// barman-cloud plugin that archives the WAL and takes the backups. The
// operator looks again every 10 s, so the instance goes on by itself once
// the platform team installs the plugin: it stays in progress, saying
// what to install.
const phaseUnknownPlugin = "Cluster cannot proceed to reconciliation due to an unknown plugin being required"

// phasePluginError is CloudNativePG's phase after a plugin call failed.
// The operator retries every 15 s, and the error is often transient: on
// the real platform a new standard Cluster's first reconcile met "Role
// pg-<id>-barman-cloud not found" while the barman-cloud plugin was still
// creating that Role, and went on by itself. So it stays in progress with
// the operator's reason; a lasting error ends at the plan's polling
// deadline, with that reason as the last status.
const phasePluginError = "Cluster cannot proceed to reconciliation due to an error while interacting with plugins"

// Watched lists the Cluster, the bootstrap Job of a seeded instance or a
// copy, its Databases, its Pooler and its server Certificate.
func (p *Provisioner) Watched(inst provisioners.Instance) []provisioners.Ref {
	if inst.Plan.Postgres.Shared {
		return p.watchedShared(inst)
	}
	n := NamesOf(inst)
	refs := []provisioners.Ref{{GVK: clusterGVK, Namespace: inst.Namespace, Name: n.Cluster}}
	s, err := Resolve(inst.Plan, inst.Params)
	if err == nil {
		if job := bootstrapJob(inst, s); job != "" {
			refs = append(refs, provisioners.Ref{GVK: jobGVK, Namespace: inst.Namespace, Name: job})
		}
		for _, db := range s.Databases {
			refs = append(refs, provisioners.Ref{GVK: databaseGVK, Namespace: inst.Namespace, Name: DatabaseObjectName(inst, db)})
		}
	}
	if inst.Plan.Postgres.Pooler != nil {
		refs = append(refs, provisioners.Ref{GVK: poolerGVK, Namespace: inst.Namespace, Name: n.Pooler})
	}
	if p.Config.ServerCertificates.IssuerName != "" {
		refs = append(refs, provisioners.Ref{GVK: certificateGVK, Namespace: inst.Namespace, Name: n.ServerCertificate})
	}
	return refs
}

// UpdateSettle is how long a healthy Cluster must stay healthy after an
// update before the update counts as applied when CloudNativePG was not
// seen acting on it. CloudNativePG's Ready condition follows the phase and
// carries no generation, so a healthy Cluster right after an update may
// not have seen it yet; a change that restarts or adds instances makes the
// operator leave the healthy phase within a reconcile (seconds), and one
// that restarts nothing (a reloadable parameter) never does.
const UpdateSettle = time.Minute

// Assess reads CloudNativePG's status: the Cluster's phase and Ready
// condition, each Database's applied flag (for its generation) and the
// Pooler's instance count.
func (p *Provisioner) Assess(inst provisioners.Instance, observed map[provisioners.Ref]*unstructured.Unstructured, now time.Time) provisioners.Progress {
	if inst.Plan.Postgres.Shared {
		return p.assessShared(inst, observed)
	}
	refs := p.Watched(inst)
	cluster := observed[refs[0]]
	if cluster == nil {
		return provisioners.Progressing("waiting for the CloudNativePG Cluster to be created")
	}
	phase, _, _ := unstructured.NestedString(cluster.Object, "status", "phase")
	reason, _, _ := unstructured.NestedString(cluster.Object, "status", "phaseReason")
	if phase == phaseUnknownPlugin {
		return provisioners.Progressing(fmt.Sprintf("PostgreSQL: CloudNativePG does not know the plugin this plan backs up with (%s): "+
			"the platform team installs the barman-cloud plugin (charts/strata-platform-operators, docs/install.md); the instance goes on once it runs", reason))
	}
	if phase == phasePluginError {
		return provisioners.Progressing(fmt.Sprintf("PostgreSQL: CloudNativePG retries a failed call to the backup plugin (barman-cloud) every 15 s: %s", reason))
	}
	// The instances cannot start without their server certificate: while
	// cert-manager has not issued it, that is what to report, even when
	// CloudNativePG, reconciling first, found the Secret missing ("Unable
	// to create required cluster objects": it retries by itself once the
	// Secret exists; seen on the real platform under load).
	if ref := refs[len(refs)-1]; ref.GVK == certificateGVK && !provisioners.ConditionTrue(observed[ref], "Ready") &&
		(!provisioners.ConditionTrue(cluster, "Ready") || phase == "Unable to create required cluster objects") {
		return provisioners.Progressing(provisioners.CertificateWait(observed[ref], ref.Name, p.Config.ServerCertificates))
	}
	// The same phase can outlive the certificate's issue: CloudNativePG
	// reports it until its next reconcile, which after an error comes with
	// a back-off. Seen on the real platform under load: the Certificate was
	// Ready and the Secret there, and the provision failed on the stale
	// phase. A missing server certificate Secret is only ever cert-manager's
	// to create, so it is waited for, never a failure; a Secret that never
	// comes ends at the plan's polling deadline with this reason.
	if phase == "Unable to create required cluster objects" && p.Config.ServerCertificates.IssuerName != "" &&
		strings.Contains(reason, NamesOf(inst).ServerCertificate) {
		return provisioners.Progressing("PostgreSQL: waiting for CloudNativePG to read the server certificate's Secret " +
			NamesOf(inst).ServerCertificate + " that cert-manager issued (it retries by itself): " + reason)
	}
	// The same phase after a Kubernetes API call that timed out or was
	// refused: CloudNativePG retries it by itself (seen in CI under load:
	// "etcdserver: request timed out" during a restore). If it never
	// succeeds, the plan's polling deadline ends the operation with it.
	if phase == "Unable to create required cluster objects" && transientAPIError(reason) {
		return provisioners.Progressing("PostgreSQL: CloudNativePG retries a Kubernetes API call that failed: " + reason)
	}
	if len(refs) > 1 && refs[1].GVK == jobGVK && !provisioners.ConditionTrue(cluster, "Ready") {
		if d := bootstrapFailure(inst, observed[refs[1]], phase, reason); d != "" {
			return provisioners.Progress{State: provisioners.Failed, Description: d}
		}
	}
	if slices.Contains(failedPhases, phase) {
		d := "CloudNativePG reports: " + phase
		if reason != "" {
			d += ": " + reason
		}
		return provisioners.Progress{State: provisioners.Failed, Description: d}
	}
	want, _, _ := unstructured.NestedInt64(cluster.Object, "spec", "instances")
	ready, _, _ := unstructured.NestedInt64(cluster.Object, "status", "readyInstances")
	if phase == "" {
		phase = "waiting for the operator"
	}
	if !provisioners.ConditionTrue(cluster, "Ready") || ready < want {
		return provisioners.Progressing(fmt.Sprintf("PostgreSQL: %s (%d of %d instances ready)", phase, ready, want))
	}
	if !inst.UpdatedAt.IsZero() && !readySince(cluster, inst.UpdatedAt) && now.Sub(inst.UpdatedAt) < UpdateSettle {
		return provisioners.Progressing(fmt.Sprintf("PostgreSQL: healthy; waiting for CloudNativePG to act on the update (confirmed after %s healthy)", UpdateSettle))
	}
	for _, ref := range refs[1:] {
		o := observed[ref]
		switch ref.GVK.Kind {
		case "Database":
			if o == nil {
				return provisioners.Progressing("waiting for database object " + ref.Name)
			}
			applied, _, _ := unstructured.NestedBool(o.Object, "status", "applied")
			gen, _, _ := unstructured.NestedInt64(o.Object, "status", "observedGeneration")
			if !applied || gen < o.GetGeneration() {
				msg, _, _ := unstructured.NestedString(o.Object, "status", "message")
				name, _, _ := unstructured.NestedString(o.Object, "spec", "name")
				d := "creating database " + name
				if msg != "" {
					d += ": " + msg
				}
				return provisioners.Progressing(d)
			}
		case "Certificate":
			// Issued: the instances are up with it.
		case "Job":
			// The bootstrap ran: the Cluster is Ready.
		case "Pooler":
			if o == nil {
				return provisioners.Progressing("waiting for the PgBouncer pooler")
			}
			wantP, _, _ := unstructured.NestedInt64(o.Object, "spec", "instances")
			haveP, _, _ := unstructured.NestedInt64(o.Object, "status", "instances")
			if haveP < wantP {
				return provisioners.Progressing(fmt.Sprintf("PgBouncer pooler: %d of %d instances", haveP, wantP))
			}
		}
	}
	d := fmt.Sprintf("PostgreSQL ready: %d of %d instances", ready, want)
	if primary, _, _ := unstructured.NestedString(cluster.Object, "status", "currentPrimary"); primary != "" {
		d += ", primary " + primary
	}
	if inst.Plan.Postgres.Backup != nil {
		if provisioners.ConditionTrue(cluster, "ContinuousArchiving") {
			d += ", WAL archiving working"
		} else {
			d += ", WAL archiving not confirmed yet"
		}
	}
	return provisioners.Progress{State: provisioners.Succeeded, Description: d}
}

// readySince says whether the Cluster became Ready after t: the operator
// went through a change made at t. lastTransitionTime has whole seconds,
// so a transition in t's own second does not count (the settle time
// decides then).
func readySince(cluster *unstructured.Unstructured, t time.Time) bool {
	conds, _, _ := unstructured.NestedSlice(cluster.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok || m["type"] != "Ready" {
			continue
		}
		at, err := time.Parse(time.RFC3339, fmt.Sprint(m["lastTransitionTime"]))
		return err == nil && at.After(t.Truncate(time.Second))
	}
	return false
}

// A seed's SQL, or a copy's dump, restore and masking, runs in
// CloudNativePG's bootstrap Job (<cluster>-1-initdb, or <cluster>-1-import
// for bootstrap.initdb.import; pkg/specs/jobs.go of CloudNativePG 1.30).
// When it fails the Job's pod fails and Kubernetes retries it with its
// default back-off limit (6, with 10 s, 20 s, 40 s … between tries), and
// only then does CloudNativePG mark the Cluster unrecoverable ("Instance
// creation failed for the following jobs: …"): about ten minutes of
// "Setting up primary". SQL that failed fails every time, so the second
// failed pod is enough (one may be a hiccup of the node the retry heals).
// The reason is in the pod's log, which the broker does not read: it may
// quote the seed's SQL and rows, and the description is shown on the
// platform. The description names the parameter and what to do instead.

// seedFailures is how many failed pods of a seed's initdb Job fail the
// provision.
const seedFailures = 2

// copyFailures is how many failed pods of a copy's import Job fail the
// provision. More than a seed's: the import logs in to the source as the
// copy's own login, a DatabaseRole of the source cluster that the broker
// renders with the copy, and the import Job may start before the source's
// instance manager has created it. Seen in CI on the real platform: two
// import pods refused ("password authentication failed") 1 s and 15 s
// after the Job started. Four failures span the Job's back-off of 10, 20
// and 40 s, over a minute for the login to appear; a wrong masking rule
// then fails the copy in about two minutes instead of CloudNativePG's ten.
const copyFailures = 4

// bootstrapJob is the name of the Job whose failure is the seed's or the
// copy's, or "" when the instance has neither.
func bootstrapJob(inst provisioners.Instance, s Settings) string {
	switch {
	case s.Seed != nil:
		return NamesOf(inst).Cluster + "-1-initdb"
	case s.Mask != nil:
		return NamesOf(inst).Cluster + "-1-import"
	}
	return ""
}

// bootstrapFailure describes a failed bootstrap Job of a seeded instance
// or a copy, or returns "" while it has not failed: failed pods counted
// by the Job, its Failed condition (back-off limit reached), or
// CloudNativePG's unrecoverable phase naming it.
func bootstrapFailure(inst provisioners.Instance, job *unstructured.Unstructured, phase, reason string) string {
	s, err := Resolve(inst.Plan, inst.Params)
	if err != nil {
		return ""
	}
	name := bootstrapJob(inst, s)
	failed := int64(0)
	if job != nil {
		failed, _, _ = unstructured.NestedInt64(job.Object, "status", "failed")
	}
	gaveUp := phase == "Cluster is unrecoverable and needs manual intervention" && strings.Contains(reason, name)
	limit := int64(seedFailures)
	if s.Seed == nil {
		limit = copyFailures
	}
	if failed < limit && !jobConditionTrue(job, "Failed") && !gaveUp {
		return ""
	}
	logs := fmt.Sprintf("PostgreSQL's error is in the log of the job's pod: kubectl -n %s logs job/%s", inst.Namespace, name)
	if s.Seed != nil {
		return fmt.Sprintf("parameters.seed: the seed SQL (%s %s, key %s) failed when CloudNativePG ran it at initdb (job %s failed %d times), so the instance cannot start. "+
			"Fix the SQL: it runs as one transaction with the rights of an owner binding, plain statements only (no psql meta-commands, no COPY FROM STDIN, no SET ROLE); "+
			"check it with psql -v ON_ERROR_STOP=1 --single-transaction -f against any PostgreSQL %s, then deprovision this instance and provision it again. %s",
			s.Seed.Kind, s.Seed.Name, s.Seed.Key, name, failed, s.Version, logs)
	}
	source := "the source"
	if inst.Copy != nil {
		source = "instance " + inst.Copy.InstanceID
	}
	return fmt.Sprintf("parameters.copy_of.mask: CloudNativePG's import of %s (pg_dump, pg_restore, then the masking rules) failed (job %s failed %d times), so the copy cannot start. "+
		"A masking rule fails the import when its column does not exist, is part of a primary or foreign key, does not take the strategy's values (hash, email and redact need text columns, null a nullable one) "+
		"or is unique under redact; the source must also accept the copy's login. Fix copy_of.mask, then deprovision this instance and provision it again. %s",
		source, name, failed, logs)
}

// jobConditionTrue says whether a Job (possibly absent) has the condition
// with status True (batch/v1 JobConditions have the same shape).
func jobConditionTrue(job *unstructured.Unstructured, kind string) bool {
	return job != nil && provisioners.ConditionTrue(job, kind)
}
