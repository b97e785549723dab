//go:build linux

package platform

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/strata-dev/strata/internal/promtest"
)

// TestObservabilityOnRealPlatform runs the real Prometheus Operator and
// Prometheus on the real platform with the broker's own monitors and
// rules: Prometheus scrapes the dev-lite instance through the PodMonitor
// the broker created and the broker through its chart's ServiceMonitor
// (HTTPS, verified against the CA of the broker's TLS Secret), serves
// every series the PostgreSQL alerts use, loads Strata's rule groups from
// the chart's PrometheusRule, and fires StrataPostgreSQLInstanceDown for
// real when PostgreSQL hangs, then resolves when it resumes.
func TestObservabilityOnRealPlatform(t *testing.T) {
	t.Parallel() // each on a platform of its own (docs/platform.md, Tests)
	ctx, p, platformStopped := startTestPlatform(t, "test-obs", 55*time.Minute)

	step := time.Now()
	if err := p.InstallPrometheus(ctx); err != nil {
		t.Fatalf("%v\n(component logs in %s)", err, p.LogDir())
	}
	t.Logf("TIMING Prometheus Operator and Prometheus installed, server ready: %s", time.Since(step).Round(time.Second))

	// make run's demo: cert-manager, CloudNativePG, the broker (with its
	// monitors and rules on, since the CRDs are there), a dev-lite
	// PostgreSQL provisioned and bound over OSB.
	step = time.Now()
	cfg := DemoConfig{
		Dir:        t.TempDir(),
		Tenant:     "dev",
		InstanceID: "0b5e7a11-1e0f-4a9b-8c7d-" + randomHex(t, 6),
		BindingID:  "0b5e7a11-0000-4000-8000-" + randomHex(t, 6),
	}
	res, err := p.RunDemo(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("TIMING cert-manager, CloudNativePG, broker, dev-lite provisioned and bound: %s", time.Since(step).Round(time.Second))

	dyn := dynamic.NewForConfigOrDie(p.AdminConfig)
	monitoring := func(resource string) schema.GroupVersionResource {
		return schema.GroupVersionResource{Group: "monitoring.coreos.com", Version: "v1", Resource: resource}
	}
	clusterGVR := schema.GroupVersionResource{Group: "postgresql.cnpg.io", Version: "v1", Resource: "clusters"}
	clusters, err := dyn.Resource(clusterGVR).Namespace(cfg.Tenant).List(ctx, metav1.ListOptions{})
	if err != nil || len(clusters.Items) != 1 {
		t.Fatalf("want the demo's one Cluster in %s: %v", cfg.Tenant, err)
	}
	cluster := clusters.Items[0].GetName()
	// The broker's objects the chart and the provisioner render with the
	// product's defaults.
	for _, o := range []struct{ resource, namespace, name string }{
		{"servicemonitors", "strata-system", BrokerRelease},
		{"prometheusrules", "strata-system", BrokerRelease},
		{"podmonitors", cfg.Tenant, cluster},
	} {
		if _, err := dyn.Resource(monitoring(o.resource)).Namespace(o.namespace).Get(ctx, o.name, metav1.GetOptions{}); err != nil {
			t.Errorf("%s %s/%s: %v", o.resource, o.namespace, o.name, err)
		}
	}

	promURL, err := p.PrometheusURL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	prom, err := promtest.NewAPI(promURL)
	if err != nil {
		t.Fatal(err)
	}

	// The targets: the instance's pod through its PodMonitor, the broker
	// through its ServiceMonitor over HTTPS (a failed verification shows
	// as the target's lastError).
	step = time.Now()
	for _, target := range []struct{ what, pool string }{
		{"the dev-lite instance (PodMonitor)", "podMonitor/" + cfg.Tenant + "/" + cluster + "/"},
		{"the broker (ServiceMonitor, HTTPS)", "serviceMonitor/strata-system/" + BrokerRelease + "/"},
	} {
		var last string
		err := wait.PollUntilContextTimeout(ctx, 3*time.Second, 4*time.Minute, true, func(ctx context.Context) (bool, error) {
			targets, err := prom.ActiveTargets(ctx)
			if err != nil {
				last = err.Error()
				return false, nil
			}
			var up, found int
			var states []string
			for _, tg := range targets {
				if !strings.HasPrefix(tg.ScrapePool, target.pool) {
					continue
				}
				found++
				states = append(states, fmt.Sprintf("%s %s %q", tg.ScrapeURL, tg.Health, tg.LastError))
				if tg.Health == "up" {
					up++
				}
			}
			last = fmt.Sprintf("%d targets in pool %s*: %v", found, target.pool, states)
			return found > 0 && up == found, nil
		})
		if err != nil {
			t.Fatalf("%s not scraped: %s", target.what, last)
		}
		t.Logf("target %s: %s", target.what, last)
	}
	t.Logf("TIMING targets of the PodMonitor and the ServiceMonitor up: %s", time.Since(step).Round(time.Second))
	for _, q := range []string{
		fmt.Sprintf(`up{namespace=%q, pod=~%q} == 1`, cfg.Tenant, cluster+"-.*"),
		fmt.Sprintf(`up{namespace="strata-system", service=%q} == 1`, BrokerRelease),
		`strata_operations_in_progress{namespace="strata-system"}`,
	} {
		if got := waitForSeries(ctx, t, prom, q, 2*time.Minute); len(got) == 0 {
			t.Errorf("%s: no series", q)
		}
	}

	// Every series the PostgreSQL alerts use that a dev-lite instance
	// serves (the pooler's are for standard and ha).
	step = time.Now()
	for _, name := range ruleMetrics(t, "postgresql.rules.yaml", "cnpg_", "cnpg_pgbouncer_") {
		q := fmt.Sprintf(`%s{namespace=%q}`, name, cfg.Tenant)
		if got := waitForSeries(ctx, t, prom, q, time.Minute); len(got) == 0 {
			t.Errorf("Prometheus has no %s: an alert on it could never fire", q)
		}
	}
	t.Logf("TIMING every CloudNativePG series of the PostgreSQL alerts in Prometheus: %s", time.Since(step).Round(time.Second))

	// Strata's rule groups, loaded from the chart's PrometheusRule.
	wantGroups := chartRuleGroups(t)
	var loaded map[string]string
	if err := wait.PollUntilContextTimeout(ctx, 3*time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		loaded, err = prom.RuleGroupFiles(ctx)
		if err != nil {
			return false, nil
		}
		for _, g := range wantGroups {
			if _, ok := loaded[g]; !ok {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		t.Fatalf("Prometheus's rule groups %v, want %v (from the PrometheusRule %s/%s): %v", loaded, wantGroups, "strata-system", BrokerRelease, err)
	}
	for _, g := range wantGroups {
		if !strings.Contains(loaded[g], "strata-system-"+BrokerRelease) {
			t.Errorf("rule group %s comes from %s, not from the PrometheusRule strata-system/%s", g, loaded[g], BrokerRelease)
		}
	}

	// An alert fires for real. CloudNativePG's fencing does not make
	// StrataPostgreSQLInstanceDown fire: a fenced instance's exporter skips
	// collecting and keeps serving cnpg_collector_up 1 (with
	// cnpg_collector_fencing_on 1), which the alert does not watch. So
	// PostgreSQL is made to hang instead, as a stuck server (an I/O stall)
	// would: every postgres process of the instance's pod is stopped with
	// SIGSTOP from the host (a pod's processes are the host's). The
	// instance manager keeps running, so its liveness probe (which does not
	// query PostgreSQL) passes and nothing restarts the pod, while the
	// exporter's scrape, which pings PostgreSQL, hangs: up{container=
	// "postgres"} becomes 0 and after the rule's 2 minutes the alert fires.
	// SIGCONT resumes PostgreSQL and the alert resolves.
	const alert = "StrataPostgreSQLInstanceDown"
	pod, err := p.Client.CoreV1().Pods(cfg.Tenant).Get(ctx, cluster+"-1", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the instance's pod: %v", err)
	}
	alertState := func(ctx context.Context) (string, error) {
		return prom.AlertState(ctx, alert, map[string]string{"namespace": cfg.Tenant})
	}
	if state, err := alertState(ctx); err != nil || state != "" {
		t.Fatalf("%s is %q before PostgreSQL was stopped (%v)", alert, state, err)
	}
	stopped := stopPostgres(t, string(pod.UID))
	hung := time.Now()
	var pendingAfter time.Duration
	var state string
	if err := wait.PollUntilContextTimeout(ctx, 2*time.Second, 6*time.Minute, true, func(ctx context.Context) (bool, error) {
		state, err = alertState(ctx)
		if err != nil {
			return false, nil
		}
		if state == "pending" && pendingAfter == 0 {
			pendingAfter = time.Since(hung)
		}
		return state == "firing", nil
	}); err != nil {
		up, _ := prom.Query(ctx, fmt.Sprintf(`up{namespace=%q, container="postgres"}`, cfg.Tenant))
		t.Fatalf("%s did not fire within 6 minutes of stopping PostgreSQL in pod %s: state %q; up %v; pods: %s", alert, pod.Name, state, up, p.podSummary(ctx, cfg.Tenant))
	}
	t.Logf("TIMING %s pending %s after PostgreSQL hung (%d processes stopped), firing %s after (for: 2m, scrape and evaluation every %s)", alert, pendingAfter.Round(time.Second), len(stopped), time.Since(hung).Round(time.Second), PrometheusInterval)
	if restarted, err := p.Client.CoreV1().Pods(cfg.Tenant).Get(ctx, pod.Name, metav1.GetOptions{}); err != nil || restarted.UID != pod.UID || restarted.Status.ContainerStatuses[0].RestartCount != pod.Status.ContainerStatuses[0].RestartCount {
		t.Errorf("the instance's pod was replaced or restarted while PostgreSQL hung (%v): the alert fired for the wrong reason", err)
	}

	resumed := time.Now()
	continuePostgres(string(pod.UID), stopped)
	if err := wait.PollUntilContextTimeout(ctx, 2*time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		state, err = alertState(ctx)
		return err == nil && state == "", nil
	}); err != nil {
		t.Fatalf("%s still %q 5 minutes after PostgreSQL resumed; pods: %s", alert, state, p.podSummary(ctx, cfg.Tenant))
	}
	t.Logf("TIMING %s resolved %s after PostgreSQL resumed", alert, time.Since(resumed).Round(time.Second))
	if got := waitForSeries(ctx, t, prom, fmt.Sprintf(`cnpg_collector_up{namespace=%q} == 1`, cfg.Tenant), 2*time.Minute); len(got) == 0 {
		t.Errorf("cnpg_collector_up is not back to 1 after PostgreSQL resumed")
	}
	// The instance serves the binding again.
	if err := res.connect(ctx); err != nil {
		t.Errorf("connecting with the binding after PostgreSQL resumed: %v", err)
	}

	step = time.Now()
	*platformStopped = true
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

// stopPostgres stops (SIGSTOP) every postgres process of a pod, found on
// the host by the pod's cgroup (named after its UID), and registers their
// resumption for the end of the test whatever happens. It scans until a
// scan finds nothing new, since the postmaster may fork while it runs.
func stopPostgres(t *testing.T, podUID string) []int {
	t.Helper()
	seen := map[int]bool{}
	var stopped []int
	t.Cleanup(func() { continuePostgres(podUID, stopped) })
	for scan := 0; scan < 10; scan++ {
		pids, err := postgresProcesses(podUID)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, pid := range pids {
			if seen[pid] {
				continue
			}
			seen[pid], found = true, true
			if err := syscall.Kill(pid, syscall.SIGSTOP); err == nil {
				stopped = append(stopped, pid)
			}
		}
		if !found {
			break
		}
	}
	if len(stopped) == 0 {
		t.Fatalf("no postgres process of pod %s found on the host", podUID)
	}
	return stopped
}

// continuePostgres resumes the processes stopPostgres stopped that are
// still the pod's (a PID may be reused once the platform stopped).
func continuePostgres(podUID string, pids []int) {
	for _, pid := range pids {
		cgroup, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
		if err == nil && strings.Contains(string(cgroup), "pod"+podUID) {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}
}

// postgresProcesses are the host PIDs of the processes named postgres
// (the postmaster and its children) in a pod's cgroup.
func postgresProcesses(podUID string) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != "postgres" {
			continue
		}
		cgroup, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if err != nil || !strings.Contains(string(cgroup), "pod"+podUID) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// chartRuleGroups are the names of the rule groups of the broker chart's
// rule files.
func chartRuleGroups(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "charts", "strata-broker", "rules", "*.rules.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule files in charts/strata-broker/rules: %v", err)
	}
	var names []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rules struct {
			Groups []struct {
				Name string `json:"name"`
			} `json:"groups"`
		}
		if err := yaml.Unmarshal(b, &rules); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, g := range rules.Groups {
			names = append(names, g.Name)
		}
	}
	sort.Strings(names)
	return names
}

// waitForSeries polls an instant query until it returns data (nil after
// timeout: the caller reports).
func waitForSeries(ctx context.Context, t *testing.T, prom *promtest.API, expr string, timeout time.Duration) []promtest.Sample {
	t.Helper()
	var got []promtest.Sample
	var lastErr error
	_ = wait.PollUntilContextTimeout(ctx, 3*time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		got, lastErr = prom.Query(ctx, expr)
		return lastErr == nil && len(got) > 0, nil
	})
	if lastErr != nil {
		t.Logf("query %s: %v", expr, lastErr)
	}
	return got
}
