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

// Watched lists the Cluster, its Databases, its Pooler and its server
// Certificate.
func (p *Provisioner) Watched(inst provisioners.Instance) []provisioners.Ref {
	if inst.Plan.Postgres.Shared {
		return p.watchedShared(inst)
	}
	n := NamesOf(inst)
	refs := []provisioners.Ref{{GVK: clusterGVK, Namespace: inst.Namespace, Name: n.Cluster}}
	s, err := Resolve(inst.Plan, inst.Params)
	if err == nil {
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
