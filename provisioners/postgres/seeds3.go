package postgres

import (
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/postgres/seedfetch"
)

// Seeding from a dump in S3 (parameters.seed.s3, docs/postgres.md
// "Seeding"; the broker runs it, broker/seed_s3.go). A
// dump is too large for the initdb SQL (seed.go), and pg_restore cannot
// run there, so it is restored into the ready instance by a Job of the
// tenant's namespace, the way a developer seeds on demand through an
// owner binding:
//
//  1. an init container runs the broker's own image (one image to build,
//     pin and scan, as for the Redis snapshots): postgres-seed-fetch
//     downloads the one object over TLS into a size-limited emptyDir,
//     with the tenant's keys (a Secret of the namespace) or the pod's
//     IAM role (IRSA, EKS Pod Identity), never the node's (IMDS is off);
//  2. the instance's own PostgreSQL image restores it as a short-lived
//     login the broker issues for the Job (LoginSecret), a member of
//     strata_owner, over the rw Service with TLS verify-full against the
//     instance's CA: pg_restore --no-owner --no-privileges
//     --role=strata_owner --exit-on-error --single-transaction for a
//     pg_dump -Fc archive, psql -v ON_ERROR_STOP=1 --single-transaction
//     for plain SQL. Everything restored belongs to strata_owner, as with
//     a seed from a ConfigMap.
//
// Each step writes what failed to its termination message (Kubernetes
// keeps it in the pod's status, a line, no rows): the S3 error named for
// the parameter to fix, or the restore's first ERROR line with quoted
// values after a colon replaced and the DETAIL, CONTEXT and LINE lines
// (where PostgreSQL puts row values) left out. The whole log stays in the
// pod, in the tenant's namespace.

// S3Seed is parameters.seed.s3.
type S3Seed struct {
	Bucket, Key string
	// Endpoint is an S3-compatible store's https:// endpoint; empty: AWS.
	Endpoint string
	Region   string
	// CredentialsSecret names a Secret of the instance's namespace with
	// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; empty: the
	// ServiceAccount's IAM role (IRSA, EKS Pod Identity).
	CredentialsSecret string
	ServiceAccount    string
}

// S3SeedJob is what the broker's I/O decides for the Job.
type S3SeedJob struct {
	Source S3Seed
	// FetchImage is the broker's own image (postgres-seed-fetch); empty:
	// the configuration's SeedImage.
	FetchImage string
	// CABundle is PEM the fetch trusts besides the public roots (an
	// S3-compatible store with a private CA); empty: the configuration's
	// SeedCABundle.
	CABundle string
	// LoginSecret is the basic-auth Secret (username, password) of the
	// short-lived login the restore connects as.
	LoginSecret string
	// DumpLimit bounds the dump's volume (and the download).
	DumpLimit string
	// Deadline bounds the whole Job.
	Deadline int64
}

// S3SeedDefaults: a 10 GiB dump, restored within an hour.
const (
	DefaultS3SeedLimit    = "10Gi"
	DefaultS3SeedDeadline = 3600
	// seedDir is the emptyDir the dump is fetched into.
	seedDir = "/seed"
	// postgresUser is the uid and gid of CloudNativePG's PostgreSQL
	// images, which the restore runs as (and the fetch, so the file is
	// readable).
	postgresUser = 26
)

// S3SeedJobName is the Job's name.
func S3SeedJobName(inst provisioners.Instance) string { return NamesOf(inst).Cluster + "-seed-s3" }

// S3SeedRestoreScript restores whichever file the fetch wrote. On a
// failure it leaves a one-line summary in the termination message and the
// whole error in the log.
func S3SeedRestoreScript() string {
	return `set -u
err=/tmp/restore.err
if [ -f ` + seedDir + `/` + seedfetch.ArchiveFile + ` ]; then
  tool=pg_restore
  # The instance's extensions are the plan's and the parameters', created
  # by the platform; a dump of another instance carries its own CREATE
  # EXTENSION and COMMENT ON EXTENSION, which only their owner may run.
  pg_restore -l ` + seedDir + `/` + seedfetch.ArchiveFile + ` >/tmp/toc.all 2>"$err"
  rc=$?
  if [ "$rc" -eq 0 ]; then
    grep -v -E ' (EXTENSION|COMMENT - EXTENSION) ' /tmp/toc.all >/tmp/toc
    pg_restore --no-owner --no-privileges --role=` + OwnerRole + ` --exit-on-error --single-transaction -L /tmp/toc -d "$PGDATABASE" ` + seedDir + `/` + seedfetch.ArchiveFile + ` 2>>"$err"
    rc=$?
  fi
else
  tool=psql
  psql -X -q -v ON_ERROR_STOP=1 --single-transaction -c 'SET ROLE ` + OwnerRole + `' -f ` + seedDir + `/` + seedfetch.SQLFile + ` 2>"$err" >/dev/null
  rc=$?
fi
cat "$err" >&2
if [ "$rc" -ne 0 ]; then
  first=$(grep -v -E '^(DETAIL|CONTEXT|LINE [0-9]+|HINT|QUERY|Command was):|^ ' "$err" | grep -E 'ERROR|error' | head -n 1 | sed -E 's/: "[^"]*"/: "…"/g' | cut -c1-300)
  printf 'parameters.seed.s3.key: %s exited %s restoring the dump: %s (the whole error is in the log of the Job pod'"'"'s restore container)' "$tool" "$rc" "$first" >/dev/termination-log
  exit "$rc"
fi
echo "restored with $tool"
`
}

// S3SeedJob renders the Job that seeds the instance from S3.
func (p *Provisioner) S3SeedJob(inst provisioners.Instance, j S3SeedJob) (*unstructured.Unstructured, error) {
	s, err := Resolve(inst.Plan, inst.Params)
	if err != nil {
		return nil, err
	}
	image, ok := p.Config.Images[s.Version]
	if !ok {
		return nil, provisioners.ParamErrorf("parameters.version", "no image is configured for PostgreSQL %s; the platform team sets postgres.images in the broker configuration", s.Version)
	}
	if j.FetchImage == "" {
		j.FetchImage = p.Config.SeedImage
	}
	if j.CABundle == "" {
		j.CABundle = p.Config.SeedCABundle
	}
	if j.FetchImage == "" {
		return nil, fmt.Errorf("no image for postgres-seed-fetch: set postgres.seedImage in the broker configuration to the broker's own image (the chart does)")
	}
	if j.Source.Bucket == "" || j.Source.Key == "" || j.LoginSecret == "" {
		return nil, fmt.Errorf("a seed from S3 needs a bucket, a key and a login Secret")
	}
	limit := j.DumpLimit
	if limit == "" {
		limit = DefaultS3SeedLimit
	}
	deadline := j.Deadline
	if deadline == 0 {
		deadline = DefaultS3SeedDeadline
	}
	q, err := resource.ParseQuantity(limit)
	if err != nil {
		return nil, fmt.Errorf("the seed volume's size %q: %w", limit, err)
	}
	maxBytes := q.Value()
	n := NamesOf(inst)
	src := j.Source
	fetchArgs := []any{"postgres-seed-fetch", "--bucket", src.Bucket, "--key", src.Key, "--dir", seedDir,
		"--max-bytes", strconv.FormatInt(maxBytes, 10), "--termination-log", "/dev/termination-log"}
	if src.Region != "" {
		fetchArgs = append(fetchArgs, "--region", src.Region)
	}
	if src.Endpoint != "" {
		fetchArgs = append(fetchArgs, "--endpoint-url", src.Endpoint)
	}
	// The node's instance role is not the tenant's: the SDK must not fall
	// back to it.
	fetchEnv := []any{map[string]any{"name": "AWS_EC2_METADATA_DISABLED", "value": "true"}}
	if j.CABundle != "" {
		// Certificates are public: inline, not a Secret.
		fetchEnv = append(fetchEnv, map[string]any{"name": seedfetch.CABundleEnv, "value": j.CABundle})
	}
	if src.CredentialsSecret != "" {
		for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
			fetchEnv = append(fetchEnv, map[string]any{"name": k, "valueFrom": map[string]any{
				"secretKeyRef": map[string]any{"name": src.CredentialsSecret, "key": k}}})
		}
	}
	secretEnv := func(name, key string) map[string]any {
		return map[string]any{"name": name, "valueFrom": map[string]any{"secretKeyRef": map[string]any{"name": j.LoginSecret, "key": key}}}
	}
	restoreEnv := []any{
		map[string]any{"name": "PGHOST", "value": n.Cluster + "-rw." + inst.Namespace + ".svc"},
		map[string]any{"name": "PGPORT", "value": strconv.Itoa(postgresPort)},
		map[string]any{"name": "PGDATABASE", "value": s.Databases[0]},
		map[string]any{"name": "PGSSLMODE", "value": "verify-full"},
		map[string]any{"name": "PGSSLROOTCERT", "value": "/ca/ca.crt"},
		map[string]any{"name": "PGAPPNAME", "value": "strata-seed-s3"},
		secretEnv("PGUSER", "username"),
		secretEnv("PGPASSWORD", "password"),
	}
	dump := map[string]any{"name": "seed", "mountPath": seedDir}
	tmp := map[string]any{"name": "tmp", "mountPath": "/tmp"}
	pod := map[string]any{
		"restartPolicy": "Never",
		// IRSA and Pod Identity project their own token; nothing here
		// talks to the API server.
		"automountServiceAccountToken": false,
		"securityContext": map[string]any{
			"runAsNonRoot": true, "runAsUser": int64(postgresUser), "runAsGroup": int64(postgresUser), "fsGroup": int64(postgresUser),
			"seccompProfile": map[string]any{"type": "RuntimeDefault"},
		},
		"initContainers": []any{map[string]any{
			"name": "fetch", "image": j.FetchImage, "imagePullPolicy": "IfNotPresent",
			"args": fetchArgs, "env": fetchEnv,
			"resources": map[string]any{
				"requests": map[string]any{"cpu": "100m", "memory": "64Mi"},
				"limits":   map[string]any{"cpu": "500m", "memory": "256Mi"},
			},
			"securityContext":          restrictedContainer(),
			"terminationMessagePolicy": "File",
			"volumeMounts":             []any{dump},
		}},
		"containers": []any{map[string]any{
			"name": "restore", "image": image, "imagePullPolicy": "IfNotPresent",
			"command": []any{"sh", "-c", S3SeedRestoreScript()}, "env": restoreEnv,
			"resources": map[string]any{
				"requests": map[string]any{"cpu": "100m", "memory": "128Mi"},
				"limits":   map[string]any{"cpu": "1", "memory": "512Mi"},
			},
			"securityContext":          restrictedContainer(),
			"terminationMessagePolicy": "File",
			"volumeMounts": []any{dump, tmp,
				map[string]any{"name": "ca", "mountPath": "/ca", "readOnly": true}},
		}},
		"volumes": []any{
			map[string]any{"name": "seed", "emptyDir": map[string]any{"sizeLimit": limit}},
			map[string]any{"name": "tmp", "emptyDir": map[string]any{"medium": "Memory", "sizeLimit": "16Mi"}},
			map[string]any{"name": "ca", "secret": map[string]any{"secretName": p.ServerCASecret(inst),
				"items": []any{map[string]any{"key": "ca.crt", "path": "ca.crt"}}}},
		},
	}
	if src.ServiceAccount != "" {
		pod["serviceAccountName"] = src.ServiceAccount
	}
	return provisioners.NewObject(inst, "batch/v1", "Job", S3SeedJobName(inst), map[string]any{
		// Once: a restore that failed half-way left objects a retry would
		// trip over (--single-transaction rolls back, but a psql seed
		// may not be transactional), and the reason does not change.
		"backoffLimit":          int64(0),
		"activeDeadlineSeconds": deadline,
		"template": map[string]any{
			"metadata": map[string]any{"labels": provisioners.StringMap(inst.Labels())},
			"spec":     pod,
		},
	}), nil
}

// restrictedContainer is the securityContext of the seed Job's
// containers: nothing to escalate, no capabilities, a read-only root.
func restrictedContainer() map[string]any {
	return map[string]any{
		"allowPrivilegeEscalation": false,
		"readOnlyRootFilesystem":   true,
		"capabilities":             map[string]any{"drop": []any{"ALL"}},
	}
}

// S3SeedJobRef names the seed Job.
func S3SeedJobRef(inst provisioners.Instance) provisioners.Ref {
	return provisioners.Ref{GVK: schema.GroupVersionKind{Group: "batch", Version: "v1", Kind: "Job"}, Namespace: inst.Namespace, Name: S3SeedJobName(inst)}
}

// S3SeedDescription is the provision's description while the Job runs.
func S3SeedDescription(src S3Seed) string { return "seeding from s3://" + src.Bucket + "/" + src.Key }

// maxSeedMessage bounds the termination message quoted in a description
// (Kubernetes keeps 4096 bytes of it).
const maxSeedMessage = 1024

// AssessS3Seed reads the seed Job and its pods (those of the namespace;
// the Job's are picked by its job-name label): succeeded once the Job is
// complete, failed with the pod's termination message (written by
// postgres-seed-fetch or the restore script, which name the parameter to
// fix and never quote rows or secrets), else in progress, with why a
// container waits (an image that cannot be pulled) when one does.
func AssessS3Seed(inst provisioners.Instance, src S3Seed, job *unstructured.Unstructured, pods []*unstructured.Unstructured) provisioners.Progress {
	desc := S3SeedDescription(src)
	if job == nil {
		return provisioners.Progressing(desc)
	}
	name := job.GetName()
	conds, _, _ := unstructured.NestedSlice(job.Object, "status", "conditions")
	var failed, complete bool
	var reason, message string
	for _, c := range conds {
		c, _ := c.(map[string]any)
		if c["status"] != "True" {
			continue
		}
		switch c["type"] {
		case "Complete":
			complete = true
		case "Failed", "FailureTarget":
			failed = true
			reason, _ = c["reason"].(string)
			message, _ = c["message"].(string)
		}
	}
	if complete {
		return provisioners.Progress{State: provisioners.Succeeded, Description: "seeded from s3://" + src.Bucket + "/" + src.Key}
	}
	var waiting string
	for _, pod := range pods {
		if !ownPod(job, pod) {
			continue
		}
		for _, field := range []string{"initContainerStatuses", "containerStatuses"} {
			statuses, _, _ := unstructured.NestedSlice(pod.Object, "status", field)
			for _, st := range statuses {
				st, _ := st.(map[string]any)
				if code, ok, _ := unstructured.NestedInt64(st, "state", "terminated", "exitCode"); ok && code != 0 {
					msg, _, _ := unstructured.NestedString(st, "state", "terminated", "message")
					if msg = strings.TrimSpace(msg); msg != "" {
						if len(msg) > maxSeedMessage {
							msg = msg[:maxSeedMessage] + "…"
						}
						return provisioners.Progress{State: provisioners.Failed, Description: seedFailure(inst, name, msg)}
					}
				}
				if r, _, _ := unstructured.NestedString(st, "state", "waiting", "reason"); r != "" && r != "PodInitializing" && r != "ContainerCreating" {
					waiting = fmt.Sprintf(" (container %v: %s)", st["name"], r)
				}
			}
		}
	}
	if failed {
		why := "parameters.seed.s3: the seed Job failed"
		if reason == "DeadlineExceeded" {
			why = fmt.Sprintf("parameters.seed.s3: the seed did not finish within the Job's deadline (%s); seed a smaller dump, or restore it on demand through an owner binding", message)
		} else if reason != "" {
			why += " (" + reason + ")"
		}
		return provisioners.Progress{State: provisioners.Failed, Description: seedFailure(inst, name, why)}
	}
	return provisioners.Progressing(desc + waiting)
}

// ownPod says whether the pod is the Job's: by the Job's uid when it has
// one (a pod of an earlier Job of the same name may linger), else by the
// job-name label.
func ownPod(job, pod *unstructured.Unstructured) bool {
	l := pod.GetLabels()
	if uid := string(job.GetUID()); uid != "" {
		return l["batch.kubernetes.io/controller-uid"] == uid || l["controller-uid"] == uid
	}
	return l["batch.kubernetes.io/job-name"] == job.GetName() || l["job-name"] == job.GetName()
}

func seedFailure(inst provisioners.Instance, job, why string) string {
	return why + "; the instance is there but not seeded: fix it, then deprovision this instance and provision it again (the whole log: kubectl -n " +
		inst.Namespace + " logs job/" + job + " --all-containers)"
}

// S3SeedOf is the instance's seed from S3, nil without one.
func (p *Provisioner) S3SeedOf(inst provisioners.Instance) (*S3Seed, error) {
	if inst.Plan.Postgres == nil || inst.Plan.Postgres.Shared {
		return nil, nil
	}
	s, err := Resolve(inst.Plan, inst.Params)
	if err != nil {
		return nil, err
	}
	return s.SeedS3, nil
}
