package redis

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/redis/snapshot"
)

// Off-cluster snapshots: a CronJob per instance copies an RDB from a
// replica to the broker's redis.backup bucket and prunes the old ones; a
// restore renders two init containers on the Redis pods that fill an
// empty data volume from one. Both run the broker image's redis-snapshot
// subcommand (provisioners/redis/snapshot).

// DataDir is where the operator mounts the data volume (and the Redis
// image's working directory, where the operator's redis.conf, which has
// no dir line, keeps the data).
const DataDir = "/data"

// dataVolume is the name the RedisFailover's claim template gives the
// data volume (the operator mounts it by this name).
const dataVolume = "redis-data"

// snapshotUser is the broker image's user (distroless nonroot).
const snapshotUser = 65532

// labelSnapshotOf marks the snapshot job's pods; the instance's
// NetworkPolicies admit them to Redis and Sentinel.
const labelSnapshotOf = "strata.dev/redis-snapshot-of"

// The keys of the static S3 keys' Secret: the AWS SDK's environment names.
const (
	awsAccessKeyEnv = "AWS_ACCESS_KEY_ID"
	awsSecretKeyEnv = "AWS_SECRET_ACCESS_KEY"
)

// SnapshotName is an instance's folder in the bucket (below
// <prefix>/<namespace>/redis/): its OSB id, which is what a restore names.
func SnapshotName(instanceID string) string { return provisioners.LabelValue(instanceID) }

// Restore is a resolved restore parameter.
type Restore struct {
	// FromInstance is the source's OSB instance id.
	FromInstance string
	// Snapshot is "latest" or an RFC 3339 time.
	Snapshot string
}

// takesSnapshots says whether the instance gets the snapshot CronJob: its
// plan has a schedule and the broker a bucket. Without a bucket the plans
// keep their AOF and RDB on the volumes only: the bucket is not made a
// condition of provisioning, so that an installation without one keeps
// provisioning Redis as before (docs/redis.md).
func (p *Provisioner) takesSnapshots(inst provisioners.Instance) bool {
	return inst.Plan.Redis.Backup != nil && p.Config.Backup.Bucket != ""
}

// checkSnapshots refuses what the snapshot objects cannot be built for.
func (p *Provisioner) checkSnapshots(inst provisioners.Instance, s Settings) error {
	if s.Restore != nil {
		if p.Config.Backup.Bucket == "" {
			return provisioners.ParamErrorf("parameters.restore", "this broker keeps no Redis snapshots (redis.backup.bucket is not set): provision without restore, or ask the platform team to configure the bucket")
		}
		if s.Restore.FromInstance == inst.ID {
			return provisioners.ParamErrorf("parameters.restore.from_instance", "is this instance's own id: name the instance whose snapshots to restore")
		}
	}
	if (p.takesSnapshots(inst) || s.Restore != nil) && p.Config.SnapshotImage == "" {
		return fmt.Errorf("set redis.snapshotImage in the broker configuration to the broker's own image (the chart does): it runs the snapshot jobs and restores")
	}
	return nil
}

// snapshotObjects are the service account, the static keys' Secret and the
// CronJob of an instance, as far as it needs them.
func (p *Provisioner) snapshotObjects(inst provisioners.Instance, s Settings, n Names) []*unstructured.Unstructured {
	takes := p.takesSnapshots(inst)
	if !takes && s.Restore == nil {
		return nil
	}
	objs := []*unstructured.Unstructured{p.snapshotAccount(inst, n)}
	if keys := p.Config.Backup.Credentials; keys != nil {
		o := provisioners.NewObject(inst, "v1", "Secret", n.SnapshotCredentials, nil)
		o.Object["type"] = "Opaque"
		o.Object["stringData"] = map[string]any{awsAccessKeyEnv: keys.AccessKeyID, awsSecretKeyEnv: keys.SecretAccessKey}
		objs = append(objs, o)
	}
	if takes {
		objs = append(objs, p.snapshotCronJob(inst, s, n))
	}
	return objs
}

// snapshotAccount is the job's service account: no Kubernetes API token is mounted (neither needs the API); on
// AWS it carries the IAM role, whose web identity token the EKS webhook
// projects separately.
func (p *Provisioner) snapshotAccount(inst provisioners.Instance, n Names) *unstructured.Unstructured {
	o := provisioners.NewObject(inst, "v1", "ServiceAccount", n.SnapshotAccount, nil)
	o.Object["automountServiceAccountToken"] = false
	if arn := p.Config.Backup.IAMRoleARN; arn != "" {
		o.SetAnnotations(map[string]string{"eks.amazonaws.com/role-arn": arn})
	}
	return o
}

// s3Args are the flags naming the bucket.
func (p *Provisioner) s3Args() []any {
	b := p.Config.Backup
	args := []any{"--bucket", b.Bucket}
	for _, f := range []struct{ flag, v string }{
		{"--prefix", b.PathPrefix}, {"--endpoint-url", b.EndpointURL}, {"--region", b.Region}, {"--kms-key-id", b.KMSKeyID},
	} {
		if f.v != "" {
			args = append(args, f.flag, f.v)
		}
	}
	return args
}

// s3Env are the static keys from the instance's Secret, when the broker
// has some (else the SDK finds the IAM role's token).
func (p *Provisioner) s3Env(n Names) []any {
	var env []any
	if p.Config.Backup.Credentials != nil {
		for _, k := range []string{awsAccessKeyEnv, awsSecretKeyEnv} {
			env = append(env, map[string]any{"name": k, "valueFrom": map[string]any{"secretKeyRef": map[string]any{"name": n.SnapshotCredentials, "key": k}}})
		}
	}
	return env
}

// restrictedContainer is the securityContext of every container Strata
// adds: nothing to escalate, no capabilities, a read-only root.
func restrictedContainer() map[string]any {
	return map[string]any{
		"allowPrivilegeEscalation": false,
		"readOnlyRootFilesystem":   true,
		"capabilities":             map[string]any{"drop": []any{"ALL"}},
	}
}

func (p *Provisioner) snapshotCronJob(inst provisioners.Instance, s Settings, n Names) *unstructured.Unstructured {
	b := inst.Plan.Redis.Backup
	args := []any{"redis-snapshot", "take",
		"--namespace", inst.Namespace,
		"--instance", SnapshotName(inst.ID),
		// Sentinel names the replicas by pod IP; its Service is the
		// operator's.
		"--sentinel", n.SentinelService + "." + inst.Namespace + ".svc:" + strconv.Itoa(SentinelPort),
		"--master-name", MasterName,
		"--retention-days", strconv.Itoa(b.RetentionDays),
		"--tmp-dir", "/tmp",
	}
	args = append(args, p.s3Args()...)
	env := []any{map[string]any{
		"name":      snapshot.PasswordEnv,
		"valueFrom": map[string]any{"secretKeyRef": map[string]any{"name": n.AuthSecret, "key": PasswordKey}},
	}}
	env = append(env, p.s3Env(n)...)
	labels := provisioners.StringMap(inst.Labels())
	labels[labelSnapshotOf] = n.Failover
	podMeta := map[string]any{"labels": labels}
	if inst.Meshed {
		// A sidecar would keep the Job's pod running after the copy;
		// Redis is outside the mesh anyway.
		podMeta["annotations"] = map[string]any{"sidecar.istio.io/inject": "false"}
		labels["istio.io/dataplane-mode"] = "none"
	}
	pod := map[string]any{
		"restartPolicy":                "Never",
		"serviceAccountName":           n.SnapshotAccount,
		"automountServiceAccountToken": false,
		"securityContext": map[string]any{
			"runAsNonRoot": true, "runAsUser": int64(snapshotUser), "runAsGroup": int64(snapshotUser),
			"seccompProfile": map[string]any{"type": "RuntimeDefault"},
		},
		"containers": []any{map[string]any{
			"name":            "snapshot",
			"image":           p.Config.SnapshotImage,
			"imagePullPolicy": imagePullPolicy,
			"args":            args,
			"env":             env,
			"resources": map[string]any{
				"requests": map[string]any{"cpu": b.CPU, "memory": b.Memory},
				"limits":   map[string]any{"cpu": b.CPU, "memory": b.Memory},
			},
			"securityContext": restrictedContainer(),
			"volumeMounts":    []any{map[string]any{"name": "tmp", "mountPath": "/tmp"}},
		}},
		// The RDB is written here before the upload: at most the data,
		// which maxmemory keeps under the pod memory.
		"volumes": []any{map[string]any{"name": "tmp", "emptyDir": map[string]any{"sizeLimit": s.Memory}}},
	}
	return provisioners.NewObject(inst, "batch/v1", "CronJob", n.SnapshotJob, map[string]any{
		"schedule": b.Schedule,
		"timeZone": "Etc/UTC",
		// One copy at a time: a slow upload is not joined by the next.
		"concurrencyPolicy":          "Forbid",
		"startingDeadlineSeconds":    int64(600),
		"successfulJobsHistoryLimit": int64(1),
		"failedJobsHistoryLimit":     int64(3),
		"jobTemplate": map[string]any{
			"metadata": map[string]any{"labels": labels},
			"spec": map[string]any{
				"backoffLimit": int64(2),
				// Under the hourly schedule of ha: a stuck copy ends
				// before the next one is due.
				"activeDeadlineSeconds":   int64(50 * time.Minute / time.Second),
				"ttlSecondsAfterFinished": int64(24 * time.Hour / time.Second),
				"template":                map[string]any{"metadata": podMeta, "spec": pod},
			},
		},
	})
}

// RestoreLoadScript turns a fetched snapshot into the plan's persistence.
// Redis started with an append-only file on a volume that has only an
// RDB starts empty (docs/redis.md), so the snapshot is loaded by a private
// redis-server without one (no TCP port: a socket in the staging folder),
// which then writes the AOF (CONFIG SET appendonly yes rewrites it from
// memory, with the RDB preamble), is shut down, and the finished
// appendonlydir is moved into place in one rename: a pod killed half-way
// leaves no partial AOF that the next start would take for the data.
func RestoreLoadScript() string {
	return `set -eu
data=` + DataDir + `
stage="$data/` + snapshot.RestoreDir + `"
if [ -e "$data/appendonlydir" ]; then
  rm -rf "$stage"
  echo "restore: $data already has an append-only file: nothing to load"
  exit 0
fi
if [ ! -f "$stage/` + snapshot.RestoreFile + `" ]; then
  echo "restore: no snapshot fetched: nothing to load"
  exit 0
fi
rm -rf "$stage/appendonlydir"
sock="$stage/redis.sock"
redis-server --port 0 --unixsocket "$sock" --unixsocketperm 700 --dir "$stage" \
  --dbfilename ` + snapshot.RestoreFile + ` --appendonly no --save "" \
  --appenddirname appendonlydir --aof-use-rdb-preamble yes &
pid=$!
cli() { redis-cli -s "$sock" "$@"; }
alive() { kill -0 "$pid" 2>/dev/null || { echo "restore: redis-server stopped while loading the snapshot" >&2; exit 1; }; }
until [ "$(cli PING 2>/dev/null)" = PONG ]; do alive; sleep 1; done
keys=$(cli DBSIZE)
echo "restore: snapshot loaded, $keys keys; writing the append-only file"
[ "$(cli CONFIG SET appendonly yes)" = OK ] || { echo "restore: CONFIG SET appendonly yes failed" >&2; exit 1; }
until info=$(cli INFO persistence) &&
  echo "$info" | grep -q '^aof_rewrite_in_progress:0' &&
  echo "$info" | grep -q '^aof_rewrite_scheduled:0' &&
  ls "$stage"/appendonlydir/*.manifest >/dev/null 2>&1; do alive; sleep 1; done
echo "$info" | grep -q '^aof_last_bgrewrite_status:ok' || { echo "restore: the append-only file rewrite failed" >&2; exit 1; }
cli SHUTDOWN >/dev/null 2>&1 || true
wait "$pid" || true
mv "$stage/appendonlydir" "$data/appendonlydir"
rm -rf "$stage"
echo "restore: $keys keys restored into $data/appendonlydir"
`
}

// restoreInitContainers fetch the snapshot (broker image) and load it
// (Redis image) on a pod whose data volume is empty; a pod with data
// skips both in a moment.
func (p *Provisioner) restoreInitContainers(inst provisioners.Instance, s Settings, n Names) []any {
	args := []any{"redis-snapshot", "restore-fetch",
		"--namespace", inst.Namespace,
		"--from-instance", SnapshotName(s.Restore.FromInstance),
		"--snapshot", s.Restore.Snapshot,
		"--data-dir", DataDir,
		// Every pod restores (the operator starts them in parallel and
		// any may become the master), but only pod 0 insists: a replica
		// added after the snapshot expired starts empty and replicates.
		"--missing-ok-unless-first",
	}
	args = append(args, p.s3Args()...)
	data := []any{map[string]any{"name": dataVolume, "mountPath": DataDir}}
	fetch := map[string]any{
		"name":            "strata-restore-fetch",
		"image":           p.Config.SnapshotImage,
		"imagePullPolicy": imagePullPolicy,
		"args":            args,
		"resources": map[string]any{
			"requests": map[string]any{"cpu": "100m", "memory": "128Mi"},
			"limits":   map[string]any{"cpu": "500m", "memory": "128Mi"},
		},
		"securityContext": restrictedContainer(),
		"volumeMounts":    data,
	}
	if env := p.s3Env(n); env != nil {
		fetch["env"] = env
	}
	load := map[string]any{
		"name":            "strata-restore-load",
		"image":           p.Config.RedisImage,
		"imagePullPolicy": imagePullPolicy,
		"command":         []any{"sh", "-c", RestoreLoadScript()},
		// Loading the snapshot takes the memory the data will take.
		"resources": map[string]any{
			"requests": map[string]any{"cpu": s.CPU, "memory": s.Memory},
			"limits":   map[string]any{"cpu": s.CPU, "memory": s.Memory},
		},
		"securityContext": restrictedContainer(),
		"volumeMounts":    data,
	}
	return []any{fetch, load}
}

// resolveRestore checks the restore parameter's snapshot.
func resolveRestore(fromInstance string, snap *string) (*Restore, error) {
	r := &Restore{FromInstance: fromInstance, Snapshot: provisioners.Deref(snap, catalog.RestoreLatest)}
	if r.Snapshot != catalog.RestoreLatest {
		if _, err := time.Parse(time.RFC3339, r.Snapshot); err != nil {
			return nil, provisioners.ParamErrorf("parameters.restore.snapshot", "%q is neither \"latest\" nor an RFC 3339 time such as 2026-05-01T12:00:00Z", r.Snapshot)
		}
	}
	return r, nil
}

// restoreCheckTimeout bounds the broker's look into the bucket at
// provision.
const restoreCheckTimeout = 10 * time.Second

// CheckProvision refuses a restore whose source has no snapshot to give in
// the new instance's namespace (never snapshotted, of another namespace,
// or expired), before anything is created. The broker reads the bucket
// with the static keys when it has them, else with its own identity; when
// it cannot read the bucket at all (no egress to S3, no IAM permission),
// the provision goes ahead and the fetch init container, which has the
// access, refuses the same way.
func (p *Provisioner) CheckProvision(ctx context.Context, inst provisioners.Instance) error {
	s, err := Resolve(inst.Plan, inst.Params)
	if err != nil || s.Restore == nil || p.Config.Backup.Bucket == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, restoreCheckTimeout)
	defer cancel()
	store, err := snapshot.NewStore(ctx, p.storeConfig(), p.Config.Backup.Credentials)
	if err != nil {
		return nil
	}
	source := SnapshotName(s.Restore.FromInstance)
	objs, err := store.List(ctx, inst.Namespace, source)
	if err != nil {
		return nil
	}
	if _, err := snapshot.Choose(objs, s.Restore.Snapshot); err != nil {
		if len(objs) == 0 {
			return provisioners.ParamErrorf("parameters.restore.from_instance",
				"instance %s has no snapshots in namespace %s: name an instance of this namespace whose snapshot job (standard, ha) has run, or one deprovisioned within its snapshots' retention",
				s.Restore.FromInstance, inst.Namespace)
		}
		return provisioners.ParamErrorf("parameters.restore.snapshot", "%v: choose \"latest\" or a later time", err)
	}
	return nil
}

func (p *Provisioner) storeConfig() snapshot.StoreConfig {
	b := p.Config.Backup
	return snapshot.StoreConfig{Bucket: b.Bucket, Prefix: b.PathPrefix, EndpointURL: b.EndpointURL, Region: b.Region, KMSKeyID: b.KMSKeyID}
}
