//go:build linux

package platform

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/strata-dev/strata/catalog"
)

var (
	clustersGVR     = schema.GroupVersionResource{Group: "postgresql.cnpg.io", Version: "v1", Resource: "clusters"}
	backupsGVR      = schema.GroupVersionResource{Group: "postgresql.cnpg.io", Version: "v1", Resource: "backups"}
	objectStoresGVR = schema.GroupVersionResource{Group: "barmancloud.cnpg.io", Version: "v1", Resource: "objectstores"}
)

// TestPostgresPlansOnRealPlatform proves the backup plans on the real
// platform: CloudNativePG, the barman-cloud plugin (its sidecar in every
// instance pod), versitygw as the S3 and the broker installed with its
// chart, configured to back up to that S3. Over OSB from the host, as a
// platform would, a standard PostgreSQL is provisioned in a tenant
// namespace with a ResourceQuota on CPU and memory until succeeded, with
// WAL archiving working; a plugin Backup completes into the bucket; a
// binding connects over TLS (verify-full); the primary is deleted under a
// write load through the binding; an update scales replicas and resources;
// the deprovision removes everything but what the docs say it keeps (the
// backups, their ObjectStore and its keys).
func TestPostgresPlansOnRealPlatform(t *testing.T) {
	t.Parallel() // each on a platform of its own (docs/platform.md, Tests)
	begin := time.Now()
	ctx, p, stopped := startTestPlatform(t, "test-plans", 60*time.Minute)
	step := time.Now()
	timing := func(what string) {
		t.Logf("TIMING %s: %s", what, time.Since(step).Round(time.Second))
		step = time.Now()
	}
	osb, b, store := installBackupStack(ctx, t, p, nil)
	// Upstream's Certificates issued the plugin's TLS Secrets.
	for _, name := range []string{"barman-cloud-client", "barman-cloud-server"} {
		cert, err := dynamic.NewForConfigOrDie(p.AdminConfig).Resource(schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "certificates"}).
			Namespace(CNPGNamespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil || !conditionTrue(cert, "Ready") {
			t.Errorf("cert-manager Certificate %s/%s not ready: %v %v", CNPGNamespace, name, err, conditions(cert))
		}
	}
	timing("cert-manager, CloudNativePG, barman-cloud plugin, versitygw and the broker with its chart, backups to the local S3")

	t.Run("Standard", func(t *testing.T) { testStandardPlan(ctx, t, p, osb, b, store) })

	step = time.Now()
	*stopped = true
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if left := p.Leftovers(); len(left) > 0 {
		t.Fatalf("left on the host after Stop: %v", left)
	}
	if err := p.Purge(); err != nil {
		t.Fatal(err)
	}
	timing("stop and purge")
	t.Logf("TIMING the whole test: %s", time.Since(begin).Round(time.Second))
}

// planTenant is the tenant namespace of the standard instance, with a
// ResourceQuota on CPU and memory, requests and limits.
const planTenant = "team-quota"

func testStandardPlan(ctx context.Context, t *testing.T, p *Platform, osb *osbClient, b *Broker, store *S3) {
	dyn := dynamic.NewForConfigOrDie(p.AdminConfig)
	step := time.Now()
	timing := func(what string) {
		t.Logf("TIMING %s: %s", what, time.Since(step).Round(time.Second))
		step = time.Now()
	}

	// 6. Quotas: every container of every pod must ask for CPU and memory,
	// requests and limits, or the namespace refuses the pod.
	if err := p.Apply(ctx, []byte(fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: compute, namespace: %[1]s}
spec:
  hard: {requests.cpu: "3", requests.memory: 8Gi, limits.cpu: "3", limits.memory: 8Gi}
`, planTenant))); err != nil {
		t.Fatal(err)
	}

	instanceID := "5a7d3c2b-8e9f-4a1b-9c2d-" + randomHex(t, 6)
	name := "pg-" + instanceID
	instancePath := "/v2/service_instances/" + instanceID
	plan := catalog.PostgresStandardID
	ids := "service_id=" + catalog.PostgresServiceID + "&plan_id=" + plan

	// The node has 2 CPUs: the plan's default instances (1 CPU each, plus
	// the plan's 250m sidecar and two 250m PgBouncers) would not fit, so
	// the instances ask for little; everything else is the plan's.
	code, body, err := osb.do(ctx, http.MethodPut, instancePath+"?accepts_incomplete=true", map[string]any{
		"service_id": catalog.PostgresServiceID,
		"plan_id":    plan,
		"context":    map[string]any{"platform": "kubernetes", "namespace": planTenant},
		"parameters": map[string]any{
			"version":    PostgreSQLMajor,
			"storage_gb": 5,
			"replicas":   1,
			"resources":  map[string]any{"cpu": "100m", "memory": "512Mi"},
		},
	})
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("provision standard: %d %s %v", code, body, err)
	}
	desc, err := waitLastOperation(ctx, osb, instancePath+"/last_operation", 20*time.Minute)
	if err != nil {
		t.Fatalf("standard provision: %v; pods in %s: %s; events: %s", err, planTenant, p.podSummary(ctx, planTenant), warningEvents(ctx, p, planTenant))
	}
	timing("standard provision over OSB → succeeded (2 instances, pooler, plugin sidecars)")
	t.Logf("last_operation: %s", desc)

	// CloudNativePG made it healthy with the plugin archiving WAL.
	var cluster *unstructured.Unstructured
	if err := wait.PollUntilContextTimeout(ctx, 2*time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		cluster, err = dyn.Resource(clustersGVR).Namespace(planTenant).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		return conditionTrue(cluster, "Ready") && conditionTrue(cluster, "ContinuousArchiving"), nil
	}); err != nil {
		t.Fatalf("Cluster %s not Ready with ContinuousArchiving=True: %v; conditions %v", name, err, conditions(cluster))
	}
	if !strings.Contains(desc, "WAL archiving working") {
		t.Logf("succeeded before CloudNativePG confirmed WAL archiving (%q); it did %s later", desc, time.Since(step).Round(time.Second))
	}
	timing("ContinuousArchiving=True")

	t.Run("QuotaHolds", func(t *testing.T) { checkPodsUnderQuota(ctx, t, p, name, 2, 2) })

	t.Run("BackupCompletesIntoS3", func(t *testing.T) {
		step = time.Now()
		backup := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "postgresql.cnpg.io/v1", "kind": "Backup",
			"metadata": map[string]any{"name": name + "-test", "namespace": planTenant},
			"spec": map[string]any{
				"cluster": map[string]any{"name": name}, "method": "plugin",
				"pluginConfiguration": map[string]any{"name": "barman-cloud.cloudnative-pg.io"},
			},
		}}
		if _, err := dyn.Resource(backupsGVR).Namespace(planTenant).Create(ctx, backup, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := waitBackupCompleted(ctx, dyn, name+"-test"); err != nil {
			t.Fatal(err)
		}
		timing("method: plugin Backup → completed")
		// The ScheduledBackup's immediate first backup completes too.
		if err := wait.PollUntilContextTimeout(ctx, 2*time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
			list, err := dyn.Resource(backupsGVR).Namespace(planTenant).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, nil
			}
			for _, o := range list.Items {
				owner := o.GetLabels()["cnpg.io/scheduled-backup"]
				phase, _, _ := unstructured.NestedString(o.Object, "status", "phase")
				if owner == name+"-daily" && phase == "completed" {
					return true, nil
				}
			}
			return false, nil
		}); err != nil {
			t.Errorf("the ScheduledBackup's immediate backup did not complete: %v", err)
		}
		keys := listBucket(ctx, t, store, planTenant+"/"+name+"/")
		base, wals := 0, 0
		for _, k := range keys {
			switch {
			case strings.Contains(k, "/base/"):
				base++
			case strings.Contains(k, "/wals/"):
				wals++
			}
		}
		t.Logf("versitygw holds %d objects under s3://%s/%s/%s/: %d of base backups, %d of WAL", len(keys), BackupBucket, planTenant, name, base, wals)
		if base == 0 || wals == 0 {
			t.Errorf("no base backup (%d) or WAL (%d) objects in the bucket: %v", base, wals, keys)
		}
	})

	// Bind and connect with nothing but the binding's values.
	step = time.Now()
	owner, err := bindAndConnect(ctx, p, osb, b, plan, instanceID, "b0a1c2d3-0000-4000-8000-"+randomHex(t, 6), "owner")
	if err != nil {
		t.Fatal(err)
	}
	writer, err := bindAndConnect(ctx, p, osb, b, plan, instanceID, "b0a1c2d3-1111-4000-8000-"+randomHex(t, 6), "readwrite")
	if err != nil {
		t.Fatal(err)
	}
	timing("bind (owner, readwrite) and connect over TLS verify-full")
	t.Logf("owner binding host %s, readwrite binding host %s", owner.Binding["host"], writer.Binding["host"])

	t.Run("Failover", func(t *testing.T) {
		testFailover(ctx, t, p, dyn, planTenant, name, 2, owner, writer, "failover_probe", deletePrimary(p))
	})

	t.Run("Update", func(t *testing.T) {
		step = time.Now()
		code, body, err := osb.do(ctx, http.MethodPatch, instancePath+"?accepts_incomplete=true", map[string]any{
			"service_id": catalog.PostgresServiceID,
			"plan_id":    plan,
			// A Kubernetes platform sends the whole parameter set on
			// update (docs/api.md): what it leaves out goes back to the
			// plan's default.
			"parameters": map[string]any{
				"version":    PostgreSQLMajor,
				"storage_gb": 5,
				"replicas":   2,
				"resources":  map[string]any{"cpu": "120m", "memory": "640Mi"},
			},
		})
		if err != nil || code != http.StatusAccepted {
			t.Fatalf("update: %d %s %v", code, body, err)
		}
		desc, err := waitLastOperation(ctx, osb, instancePath+"/last_operation", 20*time.Minute)
		if err != nil {
			t.Fatalf("update: %v; pods: %s", err, p.podSummary(ctx, planTenant))
		}
		timing("update (replicas 1→2, cpu 100m→120m, memory 512Mi→640Mi) → succeeded")
		t.Logf("last_operation: %s", desc)
		// Succeeded means the pods did: checked at once, no waiting.
		pods := instancePods(ctx, t, p, name)
		ready := 0
		for _, pod := range pods {
			if podReady(&pod) {
				ready++
			}
			for _, c := range pod.Spec.Containers {
				if c.Name != "postgres" {
					continue
				}
				if c.Resources.Limits.Cpu().Cmp(resource.MustParse("120m")) != 0 || c.Resources.Limits.Memory().Cmp(resource.MustParse("640Mi")) != 0 {
					t.Errorf("pod %s still has the old resources: %v", pod.Name, c.Resources.Limits)
				}
			}
		}
		if len(pods) != 3 || ready != 3 {
			t.Errorf("succeeded with %d instance pods, %d ready; want 3 ready: %s", len(pods), ready, p.podSummary(ctx, planTenant))
		}
		checkPodsUnderQuota(ctx, t, p, name, 3, 2)
	})

	t.Run("Deprovision", func(t *testing.T) {
		step = time.Now()
		before := listBucket(ctx, t, store, planTenant+"/"+name+"/")
		for _, bid := range []string{owner.bindingID, writer.bindingID} {
			if code, body, err := osb.do(ctx, http.MethodDelete, instancePath+"/service_bindings/"+bid+"?"+ids, nil); err != nil || code != http.StatusOK {
				t.Fatalf("unbind: %d %s %v", code, body, err)
			}
		}
		code, body, err := osb.do(ctx, http.MethodDelete, instancePath+"?accepts_incomplete=true&"+ids, nil)
		if err != nil || code != http.StatusAccepted {
			t.Fatalf("deprovision: %d %s %v", code, body, err)
		}
		desc, err := waitLastOperation(ctx, osb, instancePath+"/last_operation", 10*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		timing("deprovision → succeeded (last_operation 410 once the record is gone)")
		// docs/postgres.md, "What deprovision keeps".
		if want := "backups are kept for their retention period"; !strings.Contains(desc, want) {
			t.Errorf("deprovision says %q, want it to say %q", desc, want)
		}
		// The pods, volumes and Services go with the Cluster (garbage
		// collection): wait for them.
		var left []string
		if err := wait.PollUntilContextTimeout(ctx, 2*time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
			left = instanceLeftovers(ctx, t, p, dyn, name)
			return len(left) == 0, nil
		}); err != nil {
			t.Errorf("left after the deprovision: %v", left)
		}
		// Kept: the ObjectStore, the keys it reads the bucket with, the
		// Backup objects and the backups themselves.
		if _, err := dyn.Resource(objectStoresGVR).Namespace(planTenant).Get(ctx, name+"-backup", metav1.GetOptions{}); err != nil {
			t.Errorf("the ObjectStore was not kept: %v", err)
		}
		if _, err := p.Client.CoreV1().Secrets(planTenant).Get(ctx, name+"-backup-s3", metav1.GetOptions{}); err != nil {
			t.Errorf("the ObjectStore's keys were not kept: %v", err)
		}
		backups, err := dyn.Resource(backupsGVR).Namespace(planTenant).List(ctx, metav1.ListOptions{})
		if err != nil || len(backups.Items) < 2 {
			t.Errorf("the Backup objects were not kept: %v (%d)", err, len(backups.Items))
		}
		after := listBucket(ctx, t, store, planTenant+"/"+name+"/")
		for _, k := range before {
			if !slices.Contains(after, k) {
				t.Errorf("s3://%s/%s is gone after the deprovision", BackupBucket, k)
			}
		}
		t.Logf("kept after deprovision: ObjectStore %s-backup, Secret %s-backup-s3, %d Backups, %d objects in the bucket", name, name, len(backups.Items), len(after))
	})
}

// waitLastOperation polls last_operation until succeeded and returns its
// description. A deprovision's last_operation answers 410 Gone once the
// broker has forgotten the instance: that is success too, and the
// description returned is the last one seen.
func waitLastOperation(ctx context.Context, osb *osbClient, path string, timeout time.Duration) (string, error) {
	var last struct{ State, Description string }
	err := wait.PollUntilContextTimeout(ctx, 2*time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		code, body, err := osb.do(ctx, http.MethodGet, path, nil)
		if err != nil {
			return false, nil
		}
		if code == http.StatusGone && last.State != "" {
			return true, nil
		}
		if code != http.StatusOK {
			return false, fmt.Errorf("last_operation: %d %s", code, body)
		}
		if err := json.Unmarshal(body, &last); err != nil {
			return false, err
		}
		switch last.State {
		case "succeeded":
			return true, nil
		case "failed":
			return false, fmt.Errorf("failed: %s", last.Description)
		}
		return false, nil
	})
	if err != nil {
		return "", fmt.Errorf("%w (last: %s %s)", err, last.State, last.Description)
	}
	return last.Description, nil
}

func waitBackupCompleted(ctx context.Context, dyn dynamic.Interface, name string) error {
	var phase, msg string
	err := wait.PollUntilContextTimeout(ctx, 2*time.Second, 10*time.Minute, true, func(ctx context.Context) (bool, error) {
		o, err := dyn.Resource(backupsGVR).Namespace(planTenant).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		phase, _, _ = unstructured.NestedString(o.Object, "status", "phase")
		msg, _, _ = unstructured.NestedString(o.Object, "status", "error")
		if phase == "failed" {
			return false, fmt.Errorf("backup %s failed: %s", name, msg)
		}
		return phase == "completed", nil
	})
	if err != nil {
		return fmt.Errorf("backup %s: %w (phase %q %s)", name, err, phase, msg)
	}
	return nil
}

// listBucket lists the platform's backup bucket under a prefix from the
// host, with versitygw's keys (an S3 client signing as AWS's SDK does).
func listBucket(ctx context.Context, t *testing.T, store *S3, prefix string) []string {
	t.Helper()
	client := s3.New(s3.Options{
		BaseEndpoint: aws.String(fmt.Sprintf("http://%s:%d", store.ServiceIP, S3Port)),
		Region:       store.Region,
		Credentials:  credentials.NewStaticCredentialsProvider(store.AccessKeyID, store.SecretAccessKey, ""),
		UsePathStyle: true,
	})
	var keys []string
	pages := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: aws.String(BackupBucket), Prefix: aws.String(prefix)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			t.Fatalf("listing s3://%s/%s: %v", BackupBucket, prefix, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys
}

// boundInstance is a binding's values and where its host resolved.
type boundInstance struct {
	*DemoResult
	bindingID string
}

func bindAndConnect(ctx context.Context, p *Platform, osb *osbClient, b *Broker, planID, instanceID, bindingID, access string) (*boundInstance, error) {
	binding, err := osb.bind(ctx, instanceID, bindingID, planID, access)
	if err != nil {
		return nil, err
	}
	addrs, err := b.Resolver.LookupHost(ctx, binding["host"]+".cluster.local")
	if err != nil {
		return nil, fmt.Errorf("resolving the binding's host %s: %w", binding["host"], err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("the binding's host %s resolves to nothing", binding["host"])
	}
	r := &DemoResult{Binding: binding, HostAddr: addrs[0]}
	if err := r.connect(ctx); err != nil {
		return nil, err
	}
	if r.CurrentUser != binding["username"] {
		return nil, fmt.Errorf("connected as %q, not the binding's %q", r.CurrentUser, binding["username"])
	}
	return &boundInstance{DemoResult: r, bindingID: bindingID}, nil
}

// testFailover deletes the primary pod while a client inserts a row every
// 150 ms through the readwrite binding (PgBouncer, then the -rw Service),
// reconnecting on errors, and measures how long writes failed and whether
// an acknowledged row was lost.
// pgFailover is what testFailover measured.
type pgFailover struct {
	// promoted is from the deletion to the new primary in the Cluster's
	// status; resumed to the first write acknowledged after the last
	// failure following the deletion.
	promoted, resumed      time.Duration
	acked, lost, failedOps int
}

// pgFault takes an instance's primary down (pod primary of namespace ns)
// and returns how to undo what it did, once the instance has failed over
// (nil: nothing to undo; the instance heals by itself).
type pgFault struct {
	// what names the fault in the logs ("deleted the primary").
	what   string
	inject func(ctx context.Context, ns, primary string) (heal func(context.Context) error, err error)
}

// deletePrimary deletes the primary's pod, as a node drain or a mistaken
// kubectl delete would.
func deletePrimary(p *Platform) pgFault {
	return pgFault{what: "primary deleted", inject: func(ctx context.Context, ns, primary string) (func(context.Context) error, error) {
		return nil, p.Client.CoreV1().Pods(ns).Delete(ctx, primary, metav1.DeleteOptions{})
	}}
}

// testFailover writes through the writer binding every 150 ms, injects
// the fault into the primary, waits for a new primary and for writes to
// resume, and checks that every acknowledged write is in the table probe
// (created as owner): none may be lost. It returns the figures.
func testFailover(ctx context.Context, t *testing.T, p *Platform, dyn dynamic.Interface, ns, name string, instances int64, owner, writer *boundInstance, probe string, fault pgFault) pgFailover {
	ownerCfg, err := owner.connConfig()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.ConnectConfig(ctx, ownerCfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE "+probe+" (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	writerCfg, err := writer.connConfig()
	if err != nil {
		t.Fatal(err)
	}
	writerCfg.ConnectTimeout = 2 * time.Second

	type ack struct {
		id int64
		at time.Time
	}
	var (
		mu     sync.Mutex
		acked  []ack
		failed []time.Time
		lastEr error
	)
	loadCtx, stopLoad := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var c *pgx.Conn
		defer func() {
			if c != nil {
				c.Close(context.Background())
			}
		}()
		tick := time.NewTicker(150 * time.Millisecond)
		defer tick.Stop()
		// Bounded: at most 10 minutes of load.
		deadline := time.Now().Add(10 * time.Minute)
		for id := int64(1); time.Now().Before(deadline); id++ {
			select {
			case <-loadCtx.Done():
				return
			case <-tick.C:
			}
			err := func() error {
				if c == nil {
					cctx, cancel := context.WithTimeout(loadCtx, 3*time.Second)
					defer cancel()
					nc, err := pgx.ConnectConfig(cctx, writerCfg)
					if err != nil {
						return err
					}
					c = nc
				}
				cctx, cancel := context.WithTimeout(loadCtx, 3*time.Second)
				defer cancel()
				_, err := c.Exec(cctx, "INSERT INTO "+probe+" (id) VALUES ($1)", id)
				return err
			}()
			mu.Lock()
			if err == nil {
				acked = append(acked, ack{id, time.Now()})
			} else if loadCtx.Err() == nil {
				failed = append(failed, time.Now())
				lastEr = err
				if c != nil {
					c.Close(context.Background())
					c = nil
				}
			}
			mu.Unlock()
		}
	}()
	defer func() { stopLoad(); <-done }()

	// Steady writes first.
	time.Sleep(5 * time.Second)
	cluster, err := dyn.Resource(clustersGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	primary, _, _ := unstructured.NestedString(cluster.Object, "status", "currentPrimary")
	mu.Lock()
	before := len(acked)
	mu.Unlock()
	if before == 0 {
		t.Fatalf("no write succeeded through the binding before the failover: %v", lastEr)
	}
	deleted := time.Now()
	heal, err := fault.inject(ctx, ns, primary)
	if err != nil {
		t.Fatal(err)
	}
	if heal != nil {
		// Undone however the test ends: the platform must stop cleanly.
		defer func() {
			if heal != nil {
				_ = heal(context.Background())
			}
		}()
	}
	t.Logf("%s: %s after %d acknowledged writes", fault.what, primary, before)

	// Wait for a new primary, then for 10 s of writes succeeding again.
	// CloudNativePG stops the deleted primary with a smart shutdown first
	// (up to the Cluster's smartShutdownTimeout, 180 s by default), which
	// waits for the open sessions, PgBouncer's among them.
	var newPrimary string
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 6*time.Minute, true, func(ctx context.Context) (bool, error) {
		c, err := dyn.Resource(clustersGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		newPrimary, _, _ = unstructured.NestedString(c.Object, "status", "currentPrimary")
		return newPrimary != "" && newPrimary != primary, nil
	}); err != nil {
		t.Fatalf("no new primary: %v; pods %s", err, p.podSummary(ctx, ns))
	}
	promoted := time.Since(deleted)
	if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) > 0 && time.Since(acked[len(acked)-1].at) < time.Second &&
			(len(failed) == 0 || time.Since(failed[len(failed)-1]) > 10*time.Second), nil
	}); err != nil {
		mu.Lock()
		t.Fatalf("writes did not resume through the binding: %v (last error %v)", err, lastEr)
	}
	stopLoad()
	<-done

	mu.Lock()
	defer mu.Unlock()
	// The outage: from the deletion to the first write acknowledged after
	// the last failure following it (no failure: the longest gap between
	// two acknowledged writes).
	var firstFail, lastFail time.Time
	for _, f := range failed {
		if f.After(deleted) {
			if firstFail.IsZero() {
				firstFail = f
			}
			lastFail = f
		}
	}
	var resumed time.Time
	var longestGap time.Duration
	for i, a := range acked {
		if i > 0 && a.at.Sub(acked[i-1].at) > longestGap {
			longestGap = a.at.Sub(acked[i-1].at)
		}
		if resumed.IsZero() && a.at.After(deleted) && (lastFail.IsZero() || a.at.After(lastFail)) {
			resumed = a.at
		}
	}
	failedWrites := 0
	for _, f := range failed {
		if f.After(deleted) {
			failedWrites++
		}
	}

	// Acknowledged rows must all be there, read on the new primary.
	conn, err = pgx.ConnectConfig(ctx, ownerCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT id FROM "+probe)
	if err != nil {
		t.Fatal(err)
	}
	present := map[int64]bool{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		present[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	lost := 0
	for _, a := range acked {
		if !present[a.id] {
			lost++
		}
	}
	t.Logf("TIMING failover (%d instances, %s: %s, %s promoted): new primary in the Cluster status after %s; first write acknowledged after the fault %s later (%d writes failed, first failure %s after the fault); longest gap between two acknowledged writes %s",
		instances, fault.what, primary, newPrimary, promoted.Round(100*time.Millisecond), resumed.Sub(deleted).Round(100*time.Millisecond), failedWrites,
		sinceOrNever(firstFail, deleted), longestGap.Round(100*time.Millisecond))
	t.Logf("failover: %d writes acknowledged, %d lost (acknowledged but not in the table), last error during the outage: %v", len(acked), lost, lastEr)
	if lost != 0 {
		t.Errorf("%d acknowledged writes were lost in the failover", lost)
	}

	// The fault is undone, and the instance heals: every instance ready
	// again (the old primary rejoins as a standby) before the next step.
	if heal != nil {
		if err := heal(ctx); err != nil {
			t.Fatalf("undo the fault (%s): %v", fault.what, err)
		}
		heal = nil
	}
	if err := wait.PollUntilContextTimeout(ctx, 2*time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		c, err := dyn.Resource(clustersGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		ready, _, _ := unstructured.NestedInt64(c.Object, "status", "readyInstances")
		return ready == instances && conditionTrue(c, "Ready"), nil
	}); err != nil {
		t.Fatalf("the Cluster did not heal after the failover: %v; pods %s", err, p.podSummary(ctx, ns))
	}
	return pgFailover{promoted: promoted, resumed: resumed.Sub(deleted), acked: len(acked), lost: lost, failedOps: failedWrites}
}

func sinceOrNever(t, from time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Sub(from).Round(100 * time.Millisecond).String()
}

// checkPodsUnderQuota checks that every pod of the instance started in the
// quota'd namespace: the PostgreSQL instances, each with the barman-cloud
// sidecar, and the PgBouncer pods, every container asking for CPU and
// memory (requests and limits), and nothing refused by the quota.
func checkPodsUnderQuota(ctx context.Context, t *testing.T, p *Platform, name string, instances, poolers int) {
	t.Helper()
	pods, err := p.Client.CoreV1().Pods(planTenant).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gotInstances, gotPoolers, sidecars := 0, 0, 0
	for _, pod := range pods.Items {
		if pod.Status.Phase == corev1.PodSucceeded {
			continue // a finished initdb or join Job
		}
		switch {
		case pod.Labels["cnpg.io/cluster"] == name && pod.Labels["cnpg.io/podRole"] == "instance":
			gotInstances++
		case pod.Labels["cnpg.io/poolerName"] == name+"-pooler":
			gotPoolers++
		default:
			continue
		}
		if !podReady(&pod) {
			t.Errorf("pod %s is not ready: %s", pod.Name, p.podSummary(ctx, planTenant))
		}
		for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
			if c.Name == "plugin-barman-cloud" {
				sidecars++
			}
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, ok := c.Resources.Requests[r]; !ok {
					t.Errorf("pod %s container %s has no %s request", pod.Name, c.Name, r)
				}
				if _, ok := c.Resources.Limits[r]; !ok {
					t.Errorf("pod %s container %s has no %s limit", pod.Name, c.Name, r)
				}
			}
		}
		t.Logf("pod %s (%s): %s", pod.Name, pod.Status.QOSClass, containerResources(pod))
	}
	if gotInstances != instances || gotPoolers != poolers {
		t.Errorf("%d instance pods and %d PgBouncer pods, want %d and %d: %s", gotInstances, gotPoolers, instances, poolers, p.podSummary(ctx, planTenant))
	}
	if sidecars != instances {
		t.Errorf("%d barman-cloud sidecars in %d instance pods", sidecars, gotInstances)
	}
	if ev := warningEvents(ctx, p, planTenant); strings.Contains(ev, "exceeded quota") || strings.Contains(ev, "must specify") {
		t.Errorf("the quota refused pods: %s", ev)
	}
	q, err := p.Client.CoreV1().ResourceQuotas(planTenant).Get(ctx, "compute", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ResourceQuota used: requests.cpu %s, limits.cpu %s, requests.memory %s, limits.memory %s",
		q.Status.Used.Name("requests.cpu", resource.DecimalSI), q.Status.Used.Name("limits.cpu", resource.DecimalSI),
		q.Status.Used.Name("requests.memory", resource.BinarySI), q.Status.Used.Name("limits.memory", resource.BinarySI))
}

func containerResources(pod corev1.Pod) string {
	var parts []string
	for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
		parts = append(parts, fmt.Sprintf("%s cpu %s/%s mem %s/%s", c.Name,
			c.Resources.Requests.Cpu(), c.Resources.Limits.Cpu(), c.Resources.Requests.Memory(), c.Resources.Limits.Memory()))
	}
	return strings.Join(parts, "; ")
}

func instancePods(ctx context.Context, t *testing.T, p *Platform, name string) []corev1.Pod {
	t.Helper()
	pods, err := p.Client.CoreV1().Pods(planTenant).List(ctx, metav1.ListOptions{LabelSelector: "cnpg.io/cluster=" + name + ",cnpg.io/podRole=instance"})
	if err != nil {
		t.Fatal(err)
	}
	return pods.Items
}

// instanceLeftovers lists what of an instance is still in its namespace,
// beside what the deprovision keeps on purpose (the ObjectStore, its keys
// Secret and the Backup objects).
func instanceLeftovers(ctx context.Context, t *testing.T, p *Platform, dyn dynamic.Interface, name string) []string {
	t.Helper()
	var left []string
	for _, gvr := range []schema.GroupVersionResource{
		clustersGVR,
		{Group: "postgresql.cnpg.io", Version: "v1", Resource: "poolers"},
		{Group: "postgresql.cnpg.io", Version: "v1", Resource: "scheduledbackups"},
		{Group: "postgresql.cnpg.io", Version: "v1", Resource: "databases"},
		{Group: "postgresql.cnpg.io", Version: "v1", Resource: "databaseroles"},
		{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"},
		{Version: "v1", Resource: "pods"},
		{Version: "v1", Resource: "persistentvolumeclaims"},
		{Version: "v1", Resource: "services"},
		{Version: "v1", Resource: "secrets"},
		{Version: "v1", Resource: "configmaps"},
		{Group: "apps", Version: "v1", Resource: "deployments"},
		{Group: "batch", Version: "v1", Resource: "jobs"},
	} {
		list, err := dyn.Resource(gvr).Namespace(planTenant).List(ctx, metav1.ListOptions{})
		if err != nil {
			if strings.Contains(err.Error(), "could not find the requested resource") {
				continue
			}
			t.Fatal(err)
		}
		for _, o := range list.Items {
			n := o.GetName()
			kept := gvr.Resource == "secrets" && n == name+"-backup-s3"
			ours := strings.HasPrefix(n, name) || o.GetLabels()["cnpg.io/cluster"] == name || o.GetLabels()["strata.dev/instance-id"] != ""
			if ours && !kept {
				left = append(left, gvr.Resource+"/"+n)
			}
		}
	}
	return left
}

func conditionTrue(o *unstructured.Unstructured, typ string) bool {
	for _, c := range conditions(o) {
		if c["type"] == typ {
			return c["status"] == "True"
		}
	}
	return false
}

func conditions(o *unstructured.Unstructured) []map[string]any {
	if o == nil {
		return nil
	}
	raw, _, _ := unstructured.NestedSlice(o.Object, "status", "conditions")
	var out []map[string]any
	for _, c := range raw {
		if m, ok := c.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// warningEvents are a namespace's Warning events, for failure messages.
func warningEvents(ctx context.Context, p *Platform, ns string) string {
	events, err := p.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "type=Warning"})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range events.Items {
		fmt.Fprintf(&b, "[%s %s/%s: %s] ", e.Reason, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Message)
	}
	return b.String()
}
