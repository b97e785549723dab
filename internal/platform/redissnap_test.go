//go:build linux

package platform

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/redis/go-redis/v9"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/strata-dev/strata/catalog"
	rd "github.com/strata-dev/strata/provisioners/redis"
	"github.com/strata-dev/strata/provisioners/redis/snapshot"
)

// hostS3 is an S3 client of the platform's versitygw from the host (the
// host routes the Service range into the node), with its root keys.
func hostS3(store *S3) *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint: aws.String(fmt.Sprintf("http://%s:%d", store.ServiceIP, S3Port)),
		Region:       store.Region,
		Credentials:  credentials.NewStaticCredentialsProvider(store.AccessKeyID, store.SecretAccessKey, ""),
		UsePathStyle: true,
	})
}

// redisSnapshotValues configures the chart-installed broker's Redis
// snapshots for the platform's S3 as a platform team would: the bucket
// (created here, as a platform team creates it: the snapshot job writes
// into an existing bucket), versitygw's endpoint and region, and its keys
// in the Secret backupCredentials.existingSecret mounts (which the chart
// hands to redis.backup as well).
func redisSnapshotValues(ctx context.Context, t *testing.T, p *Platform, store *S3) map[string]any {
	t.Helper()
	_, err := hostS3(store).CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(BackupBucket)})
	var owned *s3types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		t.Fatalf("creating the bucket %s: %v", BackupBucket, err)
	}
	values, err := p.BrokerBackupValues(ctx, store, brokerNamespace)
	if err != nil {
		t.Fatal(err)
	}
	// Only Redis's side: this platform has no CloudNativePG.
	values["config"] = map[string]any{"redis": map[string]any{"backup": map[string]any{
		"bucket":      BackupBucket,
		"endpointURL": store.EndpointURL,
		"region":      store.Region,
	}}}
	return values
}

// s3Object is one object of the bucket.
type s3Object struct {
	key  string
	size int64
}

func listObjects(ctx context.Context, t *testing.T, c *s3.Client, prefix string) []s3Object {
	t.Helper()
	var out []s3Object
	pages := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(BackupBucket), Prefix: aws.String(prefix)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			t.Fatalf("listing s3://%s/%s: %v", BackupBucket, prefix, err)
		}
		for _, o := range page.Contents {
			out = append(out, s3Object{key: aws.ToString(o.Key), size: aws.ToInt64(o.Size)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

// snapshotKeys is the data written before the snapshot: keys snap:<i>
// with incompressible 200-byte values (RDB compresses repeated strings,
// which would make the size figure meaningless).
func snapshotKeys(n int) map[string]string {
	rng := rand.New(rand.NewSource(11))
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	out := make(map[string]string, n)
	buf := make([]byte, 200)
	for i := range n {
		for j := range buf {
			buf[j] = alphabet[rng.Intn(len(alphabet))]
		}
		out[fmt.Sprintf("snap:%d", i)] = string(buf)
	}
	return out
}

func writeKeys(ctx context.Context, c *redis.Client, kv map[string]string) error {
	pipe := c.Pipeline()
	n := 0
	for k, v := range kv {
		pipe.Set(ctx, k, v, 0)
		if n++; n%1000 == 0 {
			if _, err := pipe.Exec(ctx); err != nil {
				return err
			}
		}
	}
	_, err := pipe.Exec(ctx)
	return err
}

// allKeys reads every key and value of the database (SCAN, then MGET).
func allKeys(ctx context.Context, c *redis.Client) (map[string]string, error) {
	var keys []string
	iter := c.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(keys))
	for i := 0; i < len(keys); i += 1000 {
		batch := keys[i:min(i+1000, len(keys))]
		vals, err := c.MGet(ctx, batch...).Result()
		if err != nil {
			return nil, err
		}
		for j, v := range vals {
			s, _ := v.(string)
			out[batch[j]] = s
		}
	}
	return out, nil
}

// runCronJobNow starts a Job from the CronJob's template, as `kubectl
// create job --from=cronjob/<name>` does (owned by the CronJob, so the
// deprovision's deletion takes it along), and waits until it completes.
// It returns the Job, its pod that succeeded and that pod's log.
func runCronJobNow(ctx context.Context, t *testing.T, p *Platform, ns, cronJob string) (*batchv1.Job, *corev1.Pod, string) {
	t.Helper()
	cj, err := p.Client.BatchV1().CronJobs(ns).Get(ctx, cronJob, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the snapshot CronJob: %v", err)
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name: cronJob + "-now", Namespace: ns,
			Labels:      cj.Spec.JobTemplate.Labels,
			Annotations: map[string]string{"cronjob.kubernetes.io/instantiate": "manual"},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "batch/v1", Kind: "CronJob", Name: cj.Name, UID: cj.UID, Controller: ptr.To(true),
			}},
		},
		Spec: cj.Spec.JobTemplate.Spec,
	}
	if job, err = p.Client.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var done *batchv1.Job
	err = wait.PollUntilContextTimeout(ctx, time.Second, 10*time.Minute, true, func(ctx context.Context) (bool, error) {
		j, err := p.Client.BatchV1().Jobs(ns).Get(ctx, job.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range j.Status.Conditions {
			if c.Status != corev1.ConditionTrue {
				continue
			}
			switch c.Type {
			case batchv1.JobComplete:
				done = j
				return true, nil
			case batchv1.JobFailed:
				return false, fmt.Errorf("job %s failed: %s %s", j.Name, c.Reason, c.Message)
			}
		}
		return false, nil
	})
	pods, lerr := p.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=" + job.Name})
	var logs []string
	var succeeded string
	var pod *corev1.Pod
	if lerr == nil {
		for i := range pods.Items {
			pod := &pods.Items[i]
			raw, err := p.Client.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
			if err != nil {
				raw = []byte(err.Error())
			}
			logs = append(logs, fmt.Sprintf("pod %s (%s):\n%s", pod.Name, pod.Status.Phase, raw))
			if pod.Status.Phase == corev1.PodSucceeded {
				succeeded = string(raw)
			}
		}
		for i := range pods.Items {
			if pods.Items[i].Status.Phase == corev1.PodSucceeded {
				pod = &pods.Items[i]
			}
		}
	}
	if err != nil {
		t.Fatalf("the snapshot job did not complete: %v\n%s\npods in %s: %s", err, strings.Join(logs, "\n"), ns, p.podSummary(ctx, ns))
	}
	if succeeded == "" {
		t.Fatalf("job %s complete but no succeeded pod's log (%v): %s", job.Name, lerr, strings.Join(logs, "\n"))
	}
	return done, pod, succeeded
}

// policyAdmits says whether the NetworkPolicy selects the pod target and
// admits a pod of its namespace with the labels from on the port. The
// platform's CNI does not enforce NetworkPolicies (docs/platform.md), so
// the test evaluates the applied policies against the real pods' labels.
func policyAdmits(np *networkingv1.NetworkPolicy, target *corev1.Pod, from map[string]string, port int) (bool, error) {
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil || !sel.Matches(labels.Set(target.Labels)) {
		return false, err
	}
	for _, rule := range np.Spec.Ingress {
		portOK := len(rule.Ports) == 0
		for _, p := range rule.Ports {
			if p.Port != nil && p.Port.IntValue() == port {
				portOK = true
			}
		}
		if !portOK {
			continue
		}
		for _, peer := range rule.From {
			if peer.PodSelector == nil || peer.NamespaceSelector != nil {
				continue
			}
			ps, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
			if err != nil {
				return false, err
			}
			if ps.Matches(labels.Set(from)) {
				return true, nil
			}
		}
	}
	return false, nil
}

// initContainerLog is the log of one init container of a pod.
func initContainerLog(ctx context.Context, p *Platform, ns, pod, container string) string {
	raw, err := p.Client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).DoRaw(ctx)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return string(raw)
}

// snapshots proves the standard plan's off-cluster snapshots as users run
// them: the CronJob the broker renders runs in a pod of the broker's
// image, asks a Sentinel for a replica, copies its RDB and uploads it to
// the platform's S3, and deletes the snapshots beyond the plan's 7 days
// (never the others); after the source is deprovisioned, a provision with
// parameters.restore makes a new instance whose pods' init containers
// fetch and load the snapshot, and which holds, read through a new
// binding, exactly the keys written before the snapshot.
func (r *redisOnPlatform) snapshots(ctx context.Context, t *testing.T, store *S3) {
	// The plan's 500m and 1Gi per Redis pod do not fit the 2-CPU node
	// with the Sentinels: the test asks for less (parameters the plan
	// allows).
	small := map[string]any{"storage_gb": 2, "resources": map[string]any{"cpu": "200m", "memory": "512Mi"}}
	src := r.provision(ctx, t, catalog.RedisStandardID, small)
	c := r.bind(ctx, t, src)

	const n = 50000
	want := snapshotKeys(n)
	step := time.Now()
	if err := writeKeys(ctx, c, want); err != nil {
		t.Fatalf("writing %d keys: %v", n, err)
	}
	t.Logf("wrote %d keys of 200 bytes through the binding in %s", n, time.Since(step).Round(100*time.Millisecond))
	// bind wrote written-by before: it is part of the snapshot.
	want["written-by"] = t.Name()
	// The snapshot is taken from a replica: wait until it has the writes.
	if err := c.Do(ctx, "WAIT", 1, 10000).Err(); err != nil {
		t.Fatalf("WAIT for the replica: %v", err)
	}

	// The bucket as a week of snapshots would leave it: one beyond the
	// standard plan's 7 days and one within them (neither loadable: the
	// restore must choose the job's, the newest).
	s3c := hostS3(store)
	dir := fmt.Sprintf("%s/redis/%s/", r.ns, rd.SnapshotName(src.id))
	now := time.Now().UTC()
	expired := dir + now.Add(-8*24*time.Hour).Format(snapshot.TimeFormat) + snapshot.Ext
	kept := dir + now.Add(-24*time.Hour).Format(snapshot.TimeFormat) + snapshot.Ext
	for _, k := range []string{expired, kept} {
		if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(BackupBucket), Key: aws.String(k), Body: bytes.NewReader([]byte("an older snapshot"))}); err != nil {
			t.Fatal(err)
		}
	}

	step = time.Now()
	job, pod, log := runCronJobNow(ctx, t, r.p, r.ns, src.name+"-snapshot")
	ran := job.Status.CompletionTime.Sub(job.Status.StartTime.Time)
	for _, line := range []string{"checksum verified", "uploaded s3://" + BackupBucket + "/" + dir, "deleted s3://" + BackupBucket + "/" + expired} {
		if !strings.Contains(log, line) {
			t.Errorf("the snapshot pod's log has no %q:\n%s", line, log)
		}
	}
	if strings.Contains(log, src.binding["password"]) {
		t.Error("the snapshot pod's log holds the Redis password")
	}
	// From a replica, never the master.
	masters, err := redisPods(ctx, r.p, r.ns, src.name, map[string]string{"redisfailovers-role": "master"})
	if err != nil || len(masters) != 1 {
		t.Fatalf("%d master pods (%v)", len(masters), err)
	}
	if strings.Contains(log, "from replica "+masters[0].Status.PodIP+":") {
		t.Errorf("the snapshot was downloaded from the master %s:\n%s", masters[0].Status.PodIP, log)
	}
	// The pod's labels pass the instance's NetworkPolicies: to the
	// replicas on replication's port, to the Sentinels on theirs.
	replicas, err := redisPods(ctx, r.p, r.ns, src.name, map[string]string{"redisfailovers-role": "slave"})
	if err != nil || len(replicas) == 0 {
		t.Fatalf("%d replica pods (%v)", len(replicas), err)
	}
	sentinels, err := r.p.Client.CoreV1().Pods(r.ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(map[string]string{
		"app.kubernetes.io/name": src.name, "app.kubernetes.io/component": "sentinel",
	}).String()})
	if err != nil || len(sentinels.Items) == 0 {
		t.Fatalf("%d Sentinel pods (%v)", len(sentinels.Items), err)
	}
	for _, c := range []struct {
		policy string
		target *corev1.Pod
		port   int
	}{{src.name + "-redis", &replicas[0], rd.RedisPort}, {src.name + "-sentinel", &sentinels.Items[0], rd.SentinelPort}} {
		np, err := r.p.Client.NetworkingV1().NetworkPolicies(r.ns).Get(ctx, c.policy, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := policyAdmits(np, c.target, pod.Labels, c.port); !ok {
			t.Errorf("NetworkPolicy %s does not admit the snapshot pod %s (labels %v) to pod %s on %d (%v)", c.policy, pod.Name, pod.Labels, c.target.Name, c.port, err)
		}
		// Another pod of the namespace is not let in on that port.
		if ok, _ := policyAdmits(np, c.target, map[string]string{"app": "other"}, c.port); ok {
			t.Errorf("NetworkPolicy %s admits any pod of the namespace to %d", c.policy, c.port)
		}
	}

	objs := listObjects(ctx, t, s3c, dir)
	var taken s3Object
	var keys []string
	for _, o := range objs {
		keys = append(keys, o.key)
		if o.key != expired && o.key != kept {
			taken = o
		}
	}
	if len(objs) != 2 || taken.key == "" || keys[0] != kept {
		t.Fatalf("s3://%s/%s holds %v after the job, want the one within the retention (%s) and the job's new one (the expired %s deleted)", BackupBucket, dir, keys, kept, expired)
	}
	t.Logf("TIMING Redis snapshot job (standard plan, %d keys): pod ran %s (Job start to completion), %s from the Job's creation to Complete; s3://%s/%s is %d bytes\n%s",
		n+1, ran.Round(time.Second), time.Since(step).Round(time.Second), BackupBucket, taken.key, taken.size, log)

	// Written after the snapshot: the restore must not have it.
	if err := c.Set(ctx, "after-snapshot", "not in the snapshot", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// A deprovisioned instance's snapshots stay for their retention.
	r.deprovision(ctx, t, src, c)
	if got := listObjects(ctx, t, s3c, dir); len(got) != 2 {
		t.Errorf("after the deprovision s3://%s/%s holds %v, want the 2 snapshots kept for their retention", BackupBucket, dir, got)
	}

	// A restore naming an instance without snapshots is refused before
	// anything is made.
	code, body, err := r.osb.do(ctx, http.MethodPut, "/v2/service_instances/7e0d1c2b-3a49-4c8d-9e1f-"+randomHex(t, 6)+"?accepts_incomplete=true", map[string]any{
		"service_id": catalog.RedisServiceID, "plan_id": catalog.RedisStandardID,
		"context":    map[string]any{"platform": "kubernetes", "namespace": r.ns},
		"parameters": map[string]any{"restore": map[string]any{"from_instance": "0f0f0f0f-0000-4000-8000-000000000000"}},
	})
	if err != nil || code != http.StatusBadRequest || !strings.Contains(string(body), "restore.from_instance") {
		t.Errorf("a restore from an instance without snapshots: %d %s %v, want 400 naming parameters.restore.from_instance", code, body, err)
	}

	params := map[string]any{"restore": map[string]any{"from_instance": src.id}}
	for k, v := range small {
		params[k] = v
	}
	step = time.Now()
	dst := r.provision(ctx, t, catalog.RedisStandardID, params)
	restored := time.Since(step)
	pods, err := redisPods(ctx, r.p, r.ns, dst.name, nil)
	if err != nil || len(pods) == 0 {
		t.Fatalf("%d Redis pods of the restored instance (%v)", len(pods), err)
	}
	var first string
	for _, pod := range pods {
		if strings.HasSuffix(pod.Name, "-0") {
			first = pod.Name
		}
	}
	fetchLog := initContainerLog(ctx, r.p, r.ns, first, "strata-restore-fetch")
	loadLog := initContainerLog(ctx, r.p, r.ns, first, "strata-restore-load")
	if !strings.Contains(fetchLog, "downloading s3://"+BackupBucket+"/"+taken.key) {
		t.Errorf("pod %s's fetch did not download the job's snapshot %s:\n%s", first, taken.key, fetchLog)
	}
	if !strings.Contains(loadLog, fmt.Sprintf("restore: %d keys restored", len(want))) {
		t.Errorf("pod %s's load step did not restore %d keys:\n%s", first, len(want), loadLog)
	}
	t.Logf("TIMING Redis restore (standard plan, %d keys, %d-byte snapshot): provision over OSB to succeeded %s\nfetch (%s):\n%s\nload:\n%s",
		len(want), taken.size, restored.Round(time.Second), first, fetchLog, loadLog)

	c2 := r.bind(ctx, t, dst)
	got, err := allKeys(ctx, c2)
	if err != nil {
		t.Fatalf("reading the restored keys: %v", err)
	}
	var missing, wrong, extra []string
	for k, v := range want {
		g, ok := got[k]
		switch {
		case !ok:
			missing = append(missing, k)
		case g != v:
			wrong = append(wrong, k)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			extra = append(extra, k)
		}
	}
	if len(missing)+len(wrong)+len(extra) > 0 {
		t.Errorf("the restored instance holds %d keys, want exactly the %d written before the snapshot: %d missing (e.g. %.5v), %d with another value (%.5v), %d not in the snapshot (%.5v)",
			len(got), len(want), len(missing), missing, len(wrong), wrong, len(extra), extra)
	} else {
		t.Logf("the restored instance holds exactly the %d keys written before the snapshot, with their values (not after-snapshot)", len(got))
	}
	r.deprovision(ctx, t, dst, c2)
}
