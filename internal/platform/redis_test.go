//go:build linux

package platform

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
	rd "github.com/strata-dev/strata/provisioners/redis"
)

var redisFailovers = schema.GroupVersionResource{Group: "databases.spotahome.com", Version: "v1", Resource: "redisfailovers"}

// redisBinding is a Redis binding's values, the only thing the client
// uses.
type redisBinding map[string]string

// client connects to the binding's host and port over TLS, verified
// against the binding's ca.crt for the binding's host name, with the
// binding's password. The host's resolver does not know cluster names, so
// the name is resolved through the cluster DNS (the host routes the
// Service range into the node). Retries are off: every command's outcome
// is what the server answered to that one attempt.
func (b redisBinding) client(resolver *net.Resolver, timeout time.Duration) (*redis.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(b["ca.crt"])) {
		return nil, errors.New("the binding's ca.crt holds no certificate")
	}
	host := b["host"]
	// A Dialer of one's own replaces go-redis's TLS dialer: it does the
	// TLS handshake itself.
	dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: &tls.Config{
		RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12,
	}}
	return redis.NewClient(&redis.Options{
		Addr:     net.JoinHostPort(host, b["port"]),
		Password: b["password"],
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			addrs, err := resolver.LookupHost(ctx, host+".cluster.local")
			if err != nil {
				return nil, err
			}
			return dialer.DialContext(ctx, network, net.JoinHostPort(addrs[0], b["port"]))
		},
		MaxRetries:   -1,
		DialTimeout:  timeout,
		ReadTimeout:  timeout,
		WriteTimeout: timeout,
		PoolSize:     2,
	}), nil
}

// waitForRedis polls until a command through the binding succeeds (the
// TLS Service's endpoints follow the master label by a moment).
func waitForRedis(ctx context.Context, c *redis.Client, timeout time.Duration) error {
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		lastErr = c.Ping(ctx).Err()
		return lastErr == nil, nil
	})
	if err != nil {
		return fmt.Errorf("%w (last error: %w)", err, lastErr)
	}
	return nil
}

// infoField reads one field of an INFO section.
func infoField(ctx context.Context, c *redis.Client, section, field string) (string, error) {
	info, err := c.Info(ctx, section).Result()
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("INFO %s has no %s", section, field)
}

// redisPods lists an instance's Redis pods (the operator's labels).
func redisPods(ctx context.Context, p *Platform, ns, failover string, extra map[string]string) ([]corev1.Pod, error) {
	sel := map[string]string{"app.kubernetes.io/name": failover, "app.kubernetes.io/component": "redis"}
	for k, v := range extra {
		sel[k] = v
	}
	pods, err := p.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(sel).String()})
	if err != nil {
		return nil, err
	}
	return pods.Items, nil
}

// killContainerProcess SIGKILLs, from the host, the process named comm
// in the pod (found by the pod's UID in its cgroup path): a crash, which
// a pod deletion (SIGTERM first, even forced) is not.
func killContainerProcess(pod *corev1.Pod, comm string) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	uid := string(pod.UID)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		name, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil || strings.TrimSpace(string(name)) != comm {
			continue
		}
		cg, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		// cgroupfs paths name the pod "pod<uid>"; the systemd driver
		// would write the UID with underscores.
		inPod := strings.Contains(string(cg), uid) || strings.Contains(string(cg), strings.ReplaceAll(uid, "-", "_"))
		if err != nil || !inPod {
			continue
		}
		return pid, syscall.Kill(pid, syscall.SIGKILL)
	}
	return 0, fmt.Errorf("no %s process of pod %s/%s on the host", comm, pod.Namespace, pod.Name)
}

// podReady says whether a pod is Ready.
func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// writeLoad writes through the binding at a fixed rate, RPUSH of a
// sequence number to one list, and records each write's outcome.
type writeLoad struct {
	mu     sync.Mutex
	writes []loadWrite
}

type loadWrite struct {
	seq  int
	at   time.Time
	err  error
	took time.Duration
}

func (l *writeLoad) run(ctx context.Context, c *redis.Client, key string, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for seq := 1; ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		start := time.Now()
		err := c.RPush(ctx, key, seq).Err()
		l.mu.Lock()
		l.writes = append(l.writes, loadWrite{seq: seq, at: start, err: err, took: time.Since(start)})
		l.mu.Unlock()
	}
}

func (l *writeLoad) snapshot() []loadWrite {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]loadWrite(nil), l.writes...)
}

// failoverFigures are what a failover cost the writers.
type failoverFigures struct {
	firstFailure  time.Duration // after the delete
	recovered     time.Duration // first successful write after the last failure, after the delete
	outage        time.Duration // recovered - first failure
	failed, acked int           // writes after the delete
	lost          []int         // acknowledged writes missing from the list afterwards
	// errors counts the failed writes by the error's first word
	// (READONLY, i/o timeout, connection refused, ...).
	errors map[string]int
}

// figures reads the load's record against the list as it is now.
func (l *writeLoad) figures(deleted time.Time, list []string) failoverFigures {
	writes := l.snapshot()
	present := map[int]bool{}
	for _, v := range list {
		n, _ := strconv.Atoi(v)
		present[n] = true
	}
	f := failoverFigures{errors: map[string]int{}}
	var firstFail, lastFail time.Time
	for _, w := range writes {
		if w.err == nil && !present[w.seq] {
			f.lost = append(f.lost, w.seq)
		}
		if w.at.Before(deleted) {
			continue
		}
		if w.err != nil {
			f.failed++
			f.errors[errorKind(w.err)]++
			if firstFail.IsZero() {
				firstFail = w.at
			}
			lastFail = w.at
		} else {
			f.acked++
		}
	}
	if firstFail.IsZero() {
		return f
	}
	f.firstFailure = firstFail.Sub(deleted)
	for _, w := range writes {
		if w.err == nil && w.at.After(lastFail) {
			f.recovered = w.at.Add(w.took).Sub(deleted)
			f.outage = w.at.Add(w.took).Sub(firstFail)
			break
		}
	}
	return f
}

// errorKind names a failed write's error briefly: Redis's error code
// (READONLY, ...) or what the connection said.
func errorKind(err error) string {
	msg := err.Error()
	for _, kind := range []string{"i/o timeout", "connection refused", "connection reset", "no route to host", "EOF"} {
		if strings.Contains(msg, kind) {
			return kind
		}
	}
	if first, _, ok := strings.Cut(msg, " "); ok && strings.ToUpper(first) == first {
		return first
	}
	return msg
}

// recoveredAfter says whether n writes in a row succeeded after a failure
// that followed the delete (the load has come through the failover).
func (l *writeLoad) recoveredAfter(deleted time.Time, n int) bool {
	writes := l.snapshot()
	failedSince, ok := false, 0
	for _, w := range writes {
		if w.at.Before(deleted) {
			continue
		}
		if w.err != nil {
			failedSince, ok = true, 0
			continue
		}
		ok++
	}
	return failedSince && ok >= n
}

// checkRedisMonitors checks the PodMonitor the provisioner renders with
// monitoring on against the instance's running Redis pods
// (checkMonitorsSelectRealPods: selector, named container port, a scrape
// from the host that finds redis_up 1, i.e. the exporter reached Redis
// with the password), and that it selects exactly the instance's Redis
// pods, not its Sentinels.
func checkRedisMonitors(ctx context.Context, t *testing.T, p *Platform, instanceID, ns, planID string, wantPods int) {
	t.Helper()
	svc, plan, err := catalog.Default().Find(catalog.RedisServiceID, planID)
	if err != nil {
		t.Fatal(err)
	}
	inst := provisioners.Instance{
		ID: instanceID, Name: provisioners.ResourceName("rd-", instanceID), Namespace: ns,
		Service: svc, Plan: plan,
	}
	cfg := rd.DefaultConfig()
	cfg.PodMonitor = true
	cfg.ServerCertificates = provisioners.CertificatesConfig{IssuerName: PlatformIssuer}
	prov := &rd.Provisioner{Config: cfg}
	// Every series the Redis alerts use (charts/strata-broker/rules).
	checkMonitorsSelectRealPods(ctx, t, p, prov, inst, map[string][]string{inst.Name: ruleMetrics(t, "redis.rules.yaml", "redis_")})
	objs, err := prov.Build(inst)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() != "PodMonitor" {
			continue
		}
		selector, _, _ := unstructured.NestedStringMap(o.Object, "spec", "selector", "matchLabels")
		pods, err := p.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(selector).String()})
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) != wantPods {
			t.Errorf("PodMonitor %s selects %d pods, want the instance's %d Redis pods", o.GetName(), len(pods.Items), wantPods)
		}
		for _, pod := range pods.Items {
			if pod.Labels["app.kubernetes.io/component"] != "redis" {
				t.Errorf("PodMonitor %s selects pod %s, not a Redis pod (%v)", o.GetName(), pod.Name, pod.Labels)
				continue
			}
			// The exporter reaches its Redis with the password (the
			// operator gives it REDIS_PASSWORD from the auth Secret).
			port := namedContainerPort(pod, "metrics")
			body, err := scrape(ctx, net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(int(port))), "/metrics")
			if err != nil || !strings.Contains(body, "\nredis_up 1\n") {
				t.Errorf("pod %s's exporter does not report redis_up 1 (%v)", pod.Name, err)
			}
		}
	}
}

// TestRedisOnRealPlatform runs Redis through the broker on the real
// platform: the real redis-operator and cert-manager, the broker installed
// with its Helm chart, and the platform's side of OSB played from the
// host. A dev-lite and an ha instance are provisioned until the broker says
// succeeded (the operator made their pods ready; for ha, the Sentinels
// elected a master and the operator labelled it), bound, and used with
// nothing but the binding's values over TLS with AUTH; dev-lite's
// append-only file survives a crash of redis-server; the ha master is
// deleted under a write load and the outage and lost writes are measured;
// the PodMonitor the provisioner renders is checked against the running
// pods; deprovision removes every object. With the platform's S3 as the
// broker's redis.backup, a standard instance's snapshot job copies an RDB
// to it and a restore provision holds exactly the keys of that snapshot
// (redissnap_test.go).
func TestRedisOnRealPlatform(t *testing.T) {
	t.Parallel() // each on a platform of its own (docs/platform.md, Tests)
	ctx, p, stopped := startTestPlatform(t, "test-redis", 65*time.Minute)
	imgs, err := p.BuildImages(ctx)
	if err != nil {
		t.Fatal(err)
	}

	step := time.Now()
	if err := p.InstallRedisOperator(ctx); err != nil {
		t.Fatalf("%v\n(component logs in %s)", err, p.LogDir())
	}
	t.Logf("TIMING redis-operator installed: %s", time.Since(step).Round(time.Second))
	step = time.Now()
	if err := p.InstallCertManager(ctx); err != nil {
		t.Fatalf("%v\n(component logs in %s)", err, p.LogDir())
	}
	t.Logf("TIMING cert-manager installed: %s", time.Since(step).Round(time.Second))

	step = time.Now()
	store, err := p.InstallS3(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("TIMING versitygw (S3) installed: %s", time.Since(step).Round(time.Second))

	step = time.Now()
	// Redis's server certificates come from the issuer of
	// config.postgres.serverCertificates, cert-manager's PlatformIssuer;
	// its snapshots go to the platform's S3.
	osb, _ := installTestBroker(ctx, t, p, redisSnapshotValues(ctx, t, p, store))
	t.Logf("TIMING broker installed with its Helm chart (Redis image %s): %s", imgs.Redis, time.Since(step).Round(time.Second))

	const tenant = "apps"
	if _, err := p.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tenant}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r := &redisOnPlatform{p: p, osb: osb, ns: tenant}

	t.Run("DevLite", func(t *testing.T) {
		inst := r.provision(ctx, t, catalog.RedisDevLiteID, nil)
		c := r.bind(ctx, t, inst)
		want := tagOf(imgs.Redis)
		if v, err := infoField(ctx, c, "server", "redis_version"); err != nil || v != want {
			t.Errorf("redis_version %q (%v), want the image's %s", v, err, want)
		}
		if v, err := infoField(ctx, c, "persistence", "aof_enabled"); err != nil || v != "1" {
			t.Errorf("aof_enabled %q (%v), want 1 (the plan's append-only file)", v, err)
		}

		checkAOFSurvivesCrash(ctx, t, p, tenant, inst.name, c)
		checkRedisMonitors(ctx, t, p, inst.id, tenant, catalog.RedisDevLiteID, 1)
		r.deprovision(ctx, t, inst, c)
	})

	t.Run("HA", func(t *testing.T) {
		// The plan's 1 CPU per Redis pod does not fit a 2-CPU node three
		// times: the test asks for less (a parameter the plan allows).
		inst := r.provision(ctx, t, catalog.RedisHAID, map[string]any{
			"storage_gb": 5, "resources": map[string]any{"cpu": "200m", "memory": "512Mi"},
		})
		c := r.bind(ctx, t, inst)
		const replicas = 3
		if role, err := infoField(ctx, c, "replication", "role"); err != nil || role != "master" {
			t.Errorf("the binding's host leads to role %q (%v), want master", role, err)
		}
		if n, err := infoField(ctx, c, "replication", "connected_slaves"); err != nil || n != strconv.Itoa(replicas-1) {
			t.Errorf("connected_slaves %q (%v), want %d", n, err, replicas-1)
		}
		checkSentinelsAgree(ctx, t, p, tenant, inst.name)
		checkRedisMonitors(ctx, t, p, inst.id, tenant, catalog.RedisHAID, replicas)
		r.failover(ctx, t, inst, c)
		r.deprovision(ctx, t, inst, c)
	})

	t.Run("Snapshots", func(t *testing.T) {
		r.snapshots(ctx, t, store)
	})

	step = time.Now()
	*stopped = true
	if err := p.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if left := p.Leftovers(); len(left) > 0 {
		t.Fatalf("left on the host after Stop: %v", left)
	}
	if err := p.Purge(); err != nil {
		t.Fatal(err)
	}
	t.Logf("TIMING stop and purge: %s", time.Since(step).Round(time.Second))
}

// redisRestarts is the restart count of the Redis container.
func redisRestarts(statuses []corev1.ContainerStatus) int32 {
	for _, s := range statuses {
		if s.Name == "redis" {
			return s.RestartCount
		}
	}
	return -1
}

// redisOnPlatform drives Redis instances through the broker as a platform
// would.
type redisOnPlatform struct {
	p   *Platform
	osb *osbClient
	ns  string
}

type redisInstanceRef struct {
	id, planID, name string
	binding          redisBinding
	bindingID        string
}

func (inst *redisInstanceRef) path() string { return "/v2/service_instances/" + inst.id }
func (inst *redisInstanceRef) ids() string {
	return "service_id=" + catalog.RedisServiceID + "&plan_id=" + inst.planID
}

// provision provisions over OSB and waits for succeeded.
func (r *redisOnPlatform) provision(ctx context.Context, t *testing.T, planID string, params map[string]any) *redisInstanceRef {
	t.Helper()
	inst := &redisInstanceRef{id: "7e0d1c2b-3a49-4c8d-9e1f-" + randomHex(t, 6), planID: planID}
	inst.name = provisioners.ResourceName("rd-", inst.id)
	step := time.Now()
	body := map[string]any{
		"service_id": catalog.RedisServiceID,
		"plan_id":    planID,
		"context":    map[string]any{"platform": "kubernetes", "namespace": r.ns},
	}
	if params != nil {
		body["parameters"] = params
	}
	code, answer, err := r.osb.do(ctx, http.MethodPut, inst.path()+"?accepts_incomplete=true", body)
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("provision: %d %s %v", code, answer, err)
	}
	if err := r.osb.waitSucceeded(ctx, inst.path()+"/last_operation", 10*time.Minute); err != nil {
		t.Fatalf("provision: %v; pods in %s: %s (component logs in %s)", err, r.ns, r.p.podSummary(ctx, r.ns), r.p.LogDir())
	}
	t.Logf("TIMING Redis %s provisioned over OSB (succeeded): %s", t.Name(), time.Since(step).Round(time.Second))
	// succeeded means the operator's pods are ready: the master is
	// labelled and exactly one.
	masters, err := redisPods(ctx, r.p, r.ns, inst.name, map[string]string{"redisfailovers-role": "master"})
	if err != nil || len(masters) != 1 || !podReady(&masters[0]) {
		t.Errorf("at succeeded: %d ready master pods (%v), want 1; pods: %s", len(masters), err, r.p.podSummary(ctx, r.ns))
	}
	return inst
}

// bind binds and returns a client made of the binding's values alone.
func (r *redisOnPlatform) bind(ctx context.Context, t *testing.T, inst *redisInstanceRef) *redis.Client {
	t.Helper()
	inst.bindingID = "0b1c2d3e-4f50-4617-8293-" + randomHex(t, 6)
	code, body, err := r.osb.do(ctx, http.MethodPut, inst.path()+"/service_bindings/"+inst.bindingID+"?accepts_incomplete=true", map[string]any{
		"service_id": catalog.RedisServiceID, "plan_id": inst.planID,
	})
	if err != nil || code != http.StatusCreated {
		t.Fatalf("bind: %d %s %v", code, body, err)
	}
	creds, err := bindingCredentials(body)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"host", "port", "password", "ca.crt"} {
		if creds[k] == "" {
			t.Fatalf("the binding has no %q", k)
		}
	}
	inst.binding = creds
	c, err := inst.binding.client(r.p.ClusterResolver(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	step := time.Now()
	if err := waitForRedis(ctx, c, 2*time.Minute); err != nil {
		t.Fatalf("connecting with the binding's values to %s:%s over TLS: %v", creds["host"], creds["port"], err)
	}
	if err := c.Set(ctx, "written-by", t.Name(), 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Get(ctx, "written-by").Result(); err != nil || got != t.Name() {
		t.Errorf("GET after SET: %q, %v", got, err)
	}
	t.Logf("TIMING first TLS+AUTH command with the binding's values: %s after the bind", time.Since(step).Round(time.Second))

	// Without the password the server refuses, over the same TLS.
	noAuth := redisBinding{"host": creds["host"], "port": creds["port"], "ca.crt": creds["ca.crt"]}
	anon, err := noAuth.client(r.p.ClusterResolver(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	if err := anon.Get(ctx, "written-by").Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("a client without the password: %v, want NOAUTH", err)
	}
	return c
}

// deprovision unbinds and deprovisions, and waits until the instance is
// gone and none of its objects is left (the plan's kept volumes aside).
func (r *redisOnPlatform) deprovision(ctx context.Context, t *testing.T, inst *redisInstanceRef, c *redis.Client) {
	t.Helper()
	step := time.Now()
	c.Close()
	if code, body, err := r.osb.do(ctx, http.MethodDelete, inst.path()+"/service_bindings/"+inst.bindingID+"?"+inst.ids(), nil); err != nil || code != http.StatusOK {
		t.Fatalf("unbind: %d %s %v", code, body, err)
	}
	if code, body, err := r.osb.do(ctx, http.MethodDelete, inst.path()+"?accepts_incomplete=true&"+inst.ids(), nil); err != nil || code != http.StatusAccepted {
		t.Fatalf("deprovision: %d %s %v", code, body, err)
	}
	var code int
	var body []byte
	if err := wait.PollUntilContextTimeout(ctx, 2*time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		var err error
		code, body, err = r.osb.do(ctx, http.MethodGet, inst.path()+"/last_operation", nil)
		return err == nil && code == http.StatusGone, nil
	}); err != nil {
		t.Fatalf("deprovision: last_operation answers %d %s", code, body)
	}
	t.Logf("TIMING Redis %s deprovisioned (last_operation 410): %s", t.Name(), time.Since(step).Round(time.Second))

	_, plan, err := catalog.Default().Find(catalog.RedisServiceID, inst.planID)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(r.p.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	kinds := []schema.GroupVersionResource{
		redisFailovers,
		{Group: "cert-manager.io", Version: "v1", Resource: "certificates"},
		{Group: "apps", Version: "v1", Resource: "statefulsets"},
		{Group: "apps", Version: "v1", Resource: "deployments"},
		{Group: "policy", Version: "v1", Resource: "poddisruptionbudgets"},
		{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"},
		{Version: "v1", Resource: "pods"},
		{Version: "v1", Resource: "services"},
		{Version: "v1", Resource: "configmaps"},
		{Version: "v1", Resource: "secrets"},
		{Version: "v1", Resource: "persistentvolumeclaims"},
	}
	// The garbage collector removes what the operator made a moment
	// after the RedisFailover, and pods take their grace period.
	var left []string
	err = wait.PollUntilContextTimeout(ctx, 2*time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		left = nil
		for _, gvr := range kinds {
			list, err := dyn.Resource(gvr).Namespace(r.ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, err
			}
			for _, o := range list.Items {
				if !strings.Contains(o.GetName(), inst.name) {
					continue
				}
				if gvr.Resource == "persistentvolumeclaims" && plan.Redis.Persistence.KeepVolumes {
					continue
				}
				left = append(left, gvr.Resource+"/"+o.GetName())
			}
		}
		return len(left) == 0, nil
	})
	if err != nil {
		t.Errorf("left in %s after the deprovision: %v (%v)", r.ns, left, err)
	}
	if plan.Redis.Persistence.KeepVolumes {
		pvcs, err := r.p.Client.CoreV1().PersistentVolumeClaims(r.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		kept := 0
		for _, pvc := range pvcs.Items {
			if strings.Contains(pvc.Name, inst.name) {
				kept++
			}
		}
		if kept != plan.Redis.Replicas {
			t.Errorf("%d data volumes kept, want the plan's %d (storage.keepAfterDeletion)", kept, plan.Redis.Replicas)
		}
		t.Logf("the plan keeps its %d data volumes after the deprovision, as documented", kept)
	}
	t.Logf("TIMING Redis %s: every object gone: %s", t.Name(), time.Since(step).Round(time.Second))
}

// checkSentinelsAgree asks every Sentinel pod, through its port from the
// host (pods are routable from the host), which master it monitors: all
// name the pod labelled master.
func checkSentinelsAgree(ctx context.Context, t *testing.T, p *Platform, ns, failover string) {
	t.Helper()
	masters, err := redisPods(ctx, p, ns, failover, map[string]string{"redisfailovers-role": "master"})
	if err != nil || len(masters) != 1 {
		t.Fatalf("%d master pods (%v)", len(masters), err)
	}
	sentinels, err := p.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(map[string]string{
		"app.kubernetes.io/name": failover, "app.kubernetes.io/component": "sentinel",
	}).String()})
	if err != nil || len(sentinels.Items) == 0 {
		t.Fatalf("%d Sentinel pods (%v)", len(sentinels.Items), err)
	}
	for _, s := range sentinels.Items {
		sc := redis.NewSentinelClient(&redis.Options{Addr: net.JoinHostPort(s.Status.PodIP, strconv.Itoa(rd.SentinelPort)), DialTimeout: 3 * time.Second})
		addr, err := sc.GetMasterAddrByName(ctx, rd.MasterName).Result()
		sc.Close()
		if err != nil {
			t.Errorf("Sentinel %s: %v", s.Name, err)
			continue
		}
		if len(addr) != 2 || addr[0] != masters[0].Status.PodIP {
			t.Errorf("Sentinel %s names master %v, the operator labels %s (%s)", s.Name, addr, masters[0].Name, masters[0].Status.PodIP)
		}
	}
	t.Logf("the %d Sentinels name the master the operator labels: %s", len(sentinels.Items), masters[0].Name)
}

// failover deletes the master pod under a write load through the binding
// (5 writes a second) and measures what the writers saw.
func (r *redisOnPlatform) failover(ctx context.Context, t *testing.T, inst *redisInstanceRef, c *redis.Client) {
	t.Helper()
	const key = "failover-writes"
	loadCtx, stopLoad := context.WithCancel(ctx)
	load := &writeLoad{}
	done := make(chan struct{})
	go func() { defer close(done); load.run(loadCtx, c, key, 200*time.Millisecond) }()
	defer func() { stopLoad(); <-done }()
	time.Sleep(5 * time.Second)

	masters, err := redisPods(ctx, r.p, r.ns, inst.name, map[string]string{"redisfailovers-role": "master"})
	if err != nil || len(masters) != 1 {
		t.Fatalf("%d master pods (%v)", len(masters), err)
	}
	old := masters[0]
	sentinelSwitch := watchSentinelSwitch(loadCtx, r.p, r.ns, inst.name, old.Status.PodIP)
	deleted := time.Now()
	if err := r.p.Client.CoreV1().Pods(r.ns).Delete(ctx, old.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("deleted the master pod %s (graceful) under 5 writes/s", old.Name)

	// Sentinel's promotion, seen from the pods' roles.
	var promoted time.Duration
	var newMaster string
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := redisPods(ctx, r.p, r.ns, inst.name, map[string]string{"redisfailovers-role": "master"})
		if err != nil {
			return false, nil
		}
		for _, pod := range pods {
			if pod.UID != old.UID && podReady(&pod) {
				newMaster = pod.Name
				promoted = time.Since(deleted)
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no other pod labelled master after the delete: %v; pods: %s", err, r.p.podSummary(ctx, r.ns))
	}
	// The writers are through when 25 writes in a row (5 s) succeeded
	// after the failures.
	if err := wait.PollUntilContextTimeout(ctx, time.Second, 5*time.Minute, true, func(context.Context) (bool, error) {
		return load.recoveredAfter(deleted, 25), nil
	}); err != nil {
		t.Logf("the writes did not fail and recover (maybe no failure at all): %v", err)
	}
	stopLoad()
	<-done
	switched, ok := <-sentinelSwitch
	list, err := c.LRange(ctx, key, 0, -1).Result()
	if err != nil {
		t.Fatalf("reading the written list on the new master: %v", err)
	}
	f := load.figures(deleted, list)
	if f.recovered == 0 {
		t.Errorf("no write succeeded after the failures following the delete (%d failed)", f.failed)
	}
	sentinelFigure := "not seen"
	if ok {
		sentinelFigure = switched.Sub(deleted).Round(100 * time.Millisecond).String()
	}
	t.Logf("TIMING ha failover (delete of master pod %s, graceful): Sentinel named another master after %s; pod %s labelled master after %s; first failed write %s after the delete; first successful write after the last failure %s after the delete (write outage %s); %d writes failed %v, %d acknowledged after the delete; %d acknowledged writes lost %v",
		old.Name, sentinelFigure, newMaster, promoted.Round(100*time.Millisecond), f.firstFailure.Round(100*time.Millisecond), f.recovered.Round(100*time.Millisecond),
		f.outage.Round(100*time.Millisecond), f.failed, f.errors, f.acked, len(f.lost), f.lost)
	if role, err := infoField(ctx, c, "replication", "role"); err != nil || role != "master" {
		t.Errorf("after the failover the binding leads to role %q (%v), want master", role, err)
	}
}

// checkAOFSurvivesCrash writes through the binding, SIGKILLs redis-server
// from the host and reads the write back once Redis is back in the same
// pod. dev-lite's append-only file is fsynced by the kernel (appendfsync
// no), but a process crash keeps the page cache, so the write is in the
// file Redis reloads.
func checkAOFSurvivesCrash(ctx context.Context, t *testing.T, p *Platform, ns, failover string, c *redis.Client) {
	t.Helper()
	if err := c.Set(ctx, "survives", "the crash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	pods, err := redisPods(ctx, p, ns, failover, nil)
	if err != nil || len(pods) != 1 {
		t.Fatalf("%d Redis pods (%v), want 1", len(pods), err)
	}
	restarts := pods[0].Status.ContainerStatuses
	step := time.Now()
	pid, err := killContainerProcess(&pods[0], "redis-server")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("killed redis-server (host pid %d) in pod %s", pid, pods[0].Name)
	if err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		pod, err := p.Client.CoreV1().Pods(ns).Get(ctx, pods[0].Name, metav1.GetOptions{})
		return err == nil && podReady(pod) && redisRestarts(pod.Status.ContainerStatuses) > redisRestarts(restarts), nil
	}); err != nil {
		t.Fatalf("the Redis container did not come back ready after the kill: %v; pods: %s", err, p.podSummary(ctx, ns))
	}
	if err := waitForRedis(ctx, c, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("TIMING dev-lite Redis back after a SIGKILL of redis-server: %s", time.Since(step).Round(time.Second))
	if got, err := c.Get(ctx, "survives").Result(); err != nil || got != "the crash" {
		t.Errorf("after the crash: GET survives = %q, %v; want the value written before", got, err)
	}
}

// watchSentinelSwitch polls the instance's Sentinels (from the host, on
// their pod addresses) every 250 ms and sends the time one of them first
// names a master other than oldIP; the channel is closed without a value
// when ctx ends first.
func watchSentinelSwitch(ctx context.Context, p *Platform, ns, failover, oldIP string) <-chan time.Time {
	out := make(chan time.Time, 1)
	go func() {
		defer close(out)
		pods, err := p.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(map[string]string{
			"app.kubernetes.io/name": failover, "app.kubernetes.io/component": "sentinel",
		}).String()})
		if err != nil {
			return
		}
		var clients []*redis.SentinelClient
		for _, pod := range pods.Items {
			sc := redis.NewSentinelClient(&redis.Options{
				Addr:        net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(rd.SentinelPort)),
				DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1,
			})
			defer sc.Close()
			clients = append(clients, sc)
		}
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, sc := range clients {
				addr, err := sc.GetMasterAddrByName(ctx, rd.MasterName).Result()
				if err == nil && len(addr) == 2 && addr[0] != oldIP {
					out <- time.Now()
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return out
}
