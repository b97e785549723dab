//go:build linux

package platform

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/charts/dashboards"
	"github.com/strata-dev/strata/internal/promtest"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/postgres"
)

// TestDashboardsOnRealPlatform proves the Grafana dashboards the broker's
// chart ships against the real platform's Prometheus: with a dev-lite
// PostgreSQL provisioned and bound over OSB, the product's PgBouncer Pooler
// and its PodMonitor in front of it, and a dev-lite Redis provisioned and
// bound over OSB, all in one tenant namespace, and some traffic through
// each, it reads the dashboards from the ConfigMaps the chart installed
// (what Grafana's sidecar would load) and checks that every namespace and
// instance variable lists the test's instances and that every query of
// every PostgreSQL, PgBouncer, Redis, broker and tenant-usage panel returns
// data once the variables are substituted as Grafana would. Kafka cannot
// run here (Strimzi's operators; docs/platform.md): the Kafka queries are
// counted and left out, and their metric names are checked against the
// Kafka objects the broker renders by charts' TestKafkaDashboardMetricsAreConfigured
// (the tenants' topic and partition gauges by the broker's
// TestDashboardsUseTheBrokersMetrics). Istio cannot run here either (no
// Envoy can be built on this machine): the PostgreSQL dashboard's mesh
// panels (istio_tcp_*) are counted and left out the same way, and their
// metric names checked against the mesh PodMonitor the broker renders for
// a meshed instance by charts' TestMeshMetricsAreScraped. Then it fills
// the Redis past its maxmemory through the binding and
// StrataRedisEvictingKeys must fire.
func TestDashboardsOnRealPlatform(t *testing.T) {
	t.Parallel() // each on a platform of its own (docs/platform.md, Tests)
	start := time.Now()
	ctx, p, platformStopped := startTestPlatform(t, "test-dash", 40*time.Minute)

	step := time.Now()
	if err := p.InstallPrometheus(ctx); err != nil {
		t.Fatalf("%v\n(component logs in %s)", err, p.LogDir())
	}
	if err := p.InstallRedisOperator(ctx); err != nil {
		t.Fatalf("%v\n(component logs in %s)", err, p.LogDir())
	}
	t.Logf("TIMING Prometheus and the redis-operator installed: %s", time.Since(step).Round(time.Second))

	// cert-manager, CloudNativePG and the broker (its monitors, rules and
	// dashboard ConfigMaps on, since the CRDs are there), then a dev-lite
	// PostgreSQL provisioned and bound over OSB: RunDemo's steps without
	// OpenBao, minutes the dashboards do not need (the binding is then a
	// CloudNativePG-managed login).
	step = time.Now()
	const tenant = "dev"
	if err := p.InstallCertManager(ctx); err != nil {
		t.Fatalf("%v\n(component logs in %s)", err, p.LogDir())
	}
	if err := p.InstallCNPG(ctx); err != nil {
		t.Fatalf("%v\n(component logs in %s)", err, p.LogDir())
	}
	osb, _ := installTestBroker(ctx, t, p, nil)
	if _, err := p.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tenant}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pgID := "0b5e7a11-1e0f-4a9b-8c7d-" + randomHex(t, 6)
	code, body, err := osb.do(ctx, http.MethodPut, "/v2/service_instances/"+pgID+"?accepts_incomplete=true", map[string]any{
		"service_id": catalog.PostgresServiceID, "plan_id": catalog.PostgresDevLiteID,
		"context":    map[string]any{"platform": "kubernetes", "namespace": tenant},
		"parameters": map[string]any{"version": PostgreSQLMajor},
	})
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("provision: %d %s %v", code, body, err)
	}
	if err := osb.waitSucceeded(ctx, "/v2/service_instances/"+pgID+"/last_operation", 10*time.Minute); err != nil {
		t.Fatalf("dev-lite provision: %v; pods: %s", err, p.podSummary(ctx, tenant))
	}
	pgBinding, err := osb.bind(ctx, pgID, "0b5e7a11-0000-4000-8000-"+randomHex(t, 6), catalog.PostgresDevLiteID, "readwrite")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("TIMING cert-manager, CloudNativePG, broker, dev-lite PostgreSQL provisioned and bound: %s", time.Since(step).Round(time.Second))

	// The product's Pooler and its PodMonitor, as the broker renders them
	// for a standard instance, put in front of the dev-lite cluster: the
	// standard plan itself needs S3 and a replica, minutes this test does
	// not need to prove PgBouncer's series. One PgBouncer instead of two.
	step = time.Now()
	pgSvc, standard, err := catalog.Default().Find(catalog.PostgresServiceID, catalog.PostgresStandardID)
	if err != nil {
		t.Fatal(err)
	}
	pgInst := provisioners.Instance{
		ID: pgID, Name: provisioners.ResourceName("pg-", pgID), Namespace: tenant,
		Service: pgSvc, Plan: standard, Params: map[string]any{"version": PostgreSQLMajor},
	}
	cluster := pgInst.Name
	if _, err := p.Client.CoreV1().Pods(tenant).Get(ctx, cluster+"-1", metav1.GetOptions{}); err != nil {
		t.Fatalf("the instance's pod is not %s-1: %v", cluster, err)
	}
	names := postgres.NamesOf(pgInst)
	pgConfig := postgres.DefaultConfig()
	pgConfig.PodMonitor = true
	pgConfig.Backup.Bucket = "unused" // standard keeps backups; only the pooler is taken
	objs, err := (&postgres.Provisioner{Config: pgConfig}).Build(pgInst)
	if err != nil {
		t.Fatal(err)
	}
	var pooler []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetName() == names.Pooler && (o.GetKind() == "Pooler" || o.GetKind() == "PodMonitor") {
			if o.GetKind() == "Pooler" {
				if err := unstructured.SetNestedField(o.Object, int64(1), "spec", "instances"); err != nil {
					t.Fatal(err)
				}
			}
			pooler = append(pooler, o)
		}
	}
	if len(pooler) != 2 {
		t.Fatalf("want the standard plan's Pooler and its PodMonitor %s, rendered %d", names.Pooler, len(pooler))
	}
	if err := p.applyObjects(ctx, pooler); err != nil {
		t.Fatal(err)
	}

	// A dev-lite Redis over OSB in the same namespace, bound, written and
	// read (a hit and a miss).
	r := &redisOnPlatform{p: p, osb: osb, ns: tenant}
	rdInst := r.provision(ctx, t, catalog.RedisDevLiteID, nil)
	rc := r.bind(ctx, t, rdInst)
	if err := rc.Get(ctx, "never-written").Err(); err == nil {
		t.Errorf("GET of a key never written found it")
	}
	t.Logf("TIMING Pooler applied, Redis provisioned and bound: %s", time.Since(step).Round(time.Second))

	// Traffic through PgBouncer with the binding's login: the pool of the
	// binding's database, and its transactions, appear in PgBouncer's
	// series.
	step = time.Now()
	if err := poolerTraffic(ctx, p, pgBinding, names.Pooler, tenant); err != nil {
		t.Fatalf("queries through PgBouncer %s: %v; pods: %s", names.Pooler, err, p.podSummary(ctx, tenant))
	}
	t.Logf("TIMING PgBouncer ready and queried with the binding's login: %s", time.Since(step).Round(time.Second))

	promURL, err := p.PrometheusURL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	prom, err := promtest.NewAPI(promURL)
	if err != nil {
		t.Fatal(err)
	}
	step = time.Now()
	for _, pool := range []string{
		"podMonitor/" + tenant + "/" + cluster + "/",
		"podMonitor/" + tenant + "/" + names.Pooler + "/",
		"podMonitor/" + tenant + "/" + rdInst.name + "/",
		"serviceMonitor/strata-system/" + BrokerRelease + "/",
	} {
		waitForTargetsUp(ctx, t, prom, pool)
	}
	t.Logf("TIMING the four monitors' targets up: %s", time.Since(step).Round(time.Second))

	// The dashboards as installed: the chart's ConfigMaps.
	cms, err := p.Client.CoreV1().ConfigMaps("strata-system").List(ctx, metav1.ListOptions{LabelSelector: "grafana_dashboard=1"})
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(repoRoot(t), "charts", "strata-broker", "dashboards", "*.json"))
	if len(cms.Items) != len(files) || len(files) != 5 {
		t.Fatalf("%d dashboard ConfigMaps labelled grafana_dashboard=1 in strata-system, %d dashboards in the chart; want 5", len(cms.Items), len(files))
	}
	brokerPods, err := p.Client.CoreV1().Pods("strata-system").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + BrokerRelease})
	if err != nil || len(brokerPods.Items) == 0 {
		t.Fatalf("the broker's pods: %v", err)
	}
	brokerPod := brokerPods.Items[0].Name

	// What each dashboard's variables must list, and the values a user
	// picks (multi-value variables as Grafana sends them: a regex group).
	type choice struct{ namespace, instance, want string }
	choices := map[string]choice{
		"strata-postgresql":   {tenant, cluster, cluster},
		"strata-redis":        {tenant, rdInst.name, rdInst.name},
		"strata-broker":       {"strata-system", "(" + brokerPod + ")", brokerPod},
		"strata-tenant-usage": {tenant, "(" + cluster + "|" + rdInst.name + ")", rdInst.name},
	}
	step = time.Now()
	var kafka, mesh int
	type query struct{ where, expr string }
	var queries []query
	for _, cm := range cms.Items {
		for key, data := range cm.Data {
			m, err := dashboards.ReadModel([]byte(data))
			if err != nil {
				t.Fatalf("ConfigMap %s key %s: %v", cm.Name, key, err)
			}
			file, err := os.ReadFile(filepath.Join(repoRoot(t), "charts", "strata-broker", "dashboards", key))
			if err != nil || strings.TrimSpace(string(file)) != strings.TrimSpace(data) {
				t.Errorf("ConfigMap %s's %s is not the chart's file (%v)", cm.Name, key, err)
			}
			if m.UID == "strata-kafka" {
				kafka += countQueries(m)
				continue
			}
			c, ok := choices[m.UID]
			if !ok {
				t.Fatalf("dashboard %s (%s): no values for its variables in this test", m.UID, key)
			}
			values := map[string]string{"namespace": c.namespace, "instance": c.instance, "__rate_interval": "1m", "__interval": "10s"}
			for _, v := range m.Variables {
				if v.Type == "textbox" {
					values[v.Name] = v.Query
				}
			}
			// The variables list the test's namespace and instance.
			for name, want := range map[string]string{"namespace": c.namespace, "instance": c.want} {
				v, _ := m.Variable(name)
				got := variableOptions(ctx, t, prom, v, values)
				if !containsString(got, want) {
					t.Errorf("dashboard %s: variable %s (%s) lists %v, not %s", m.UID, name, v.Query, got, want)
				}
			}
			for _, panel := range m.Panels {
				for _, expr := range panel.Exprs {
					names, err := dashboards.MetricNames(expr, values)
					if err != nil {
						t.Errorf("dashboard %s panel %q: %v", m.UID, panel.Title, err)
						continue
					}
					if servedByKafka(names) {
						kafka++
						continue
					}
					if servedByMesh(names) {
						mesh++
						continue
					}
					q, _ := dashboards.Substitute(expr, values)
					queries = append(queries, query{m.UID + " / " + panel.Title, q})
				}
			}
		}
	}
	// Every query returns data: polled together until each has (a rate
	// needs two scrapes in its window) or 3 minutes have passed.
	missing := queries
	lastErr := map[string]error{}
	_ = wait.PollUntilContextTimeout(ctx, 5*time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		var still []query
		for _, q := range missing {
			got, err := prom.Query(ctx, q.expr)
			lastErr[q.expr] = err
			if err != nil || len(got) == 0 {
				still = append(still, q)
			}
		}
		missing = still
		return len(missing) == 0, nil
	})
	var failed []string
	for _, q := range missing {
		failed = append(failed, fmt.Sprintf("%s: %s (%v)", q.where, q.expr, lastErr[q.expr]))
	}
	sort.Strings(failed)
	for _, f := range failed {
		t.Errorf("no data: %s", f)
	}
	if len(queries) < 60 {
		t.Errorf("only %d queries checked", len(queries))
	}
	t.Logf("TIMING %d of %d queries of the PostgreSQL, Redis, broker and tenant-usage dashboards return data (%d Kafka and %d mesh queries checked by name only): %s", len(queries)-len(missing), len(queries), kafka, mesh, time.Since(step).Round(time.Second))

	// A Redis alert fires for real: the dev-lite Redis (allkeys-lru, the
	// catalog's default policy) is filled past its maxmemory through the
	// binding, Redis evicts keys, and StrataRedisEvictingKeys (no for:)
	// fires at the rule evaluation after the exporter's next scrape.
	step = time.Now()
	const redisAlert = "StrataRedisEvictingKeys"
	if state, err := prom.AlertState(ctx, redisAlert, map[string]string{"namespace": tenant}); err != nil || state != "" {
		t.Fatalf("%s is %q before Redis was filled (%v)", redisAlert, state, err)
	}
	evicted, err := fillRedisUntilEviction(ctx, rc)
	if err != nil {
		t.Fatalf("filling Redis through the binding until it evicts: %v", err)
	}
	var state string
	if err := wait.PollUntilContextTimeout(ctx, 2*time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		state, err = prom.AlertState(ctx, redisAlert, map[string]string{"namespace": tenant})
		return err == nil && state == "firing", nil
	}); err != nil {
		got, _ := prom.Query(ctx, fmt.Sprintf(`redis_evicted_keys_total{namespace=%q}`, tenant))
		t.Fatalf("%s did not fire within 3 minutes of Redis evicting %d keys: state %q (%v); redis_evicted_keys_total %v", redisAlert, evicted, state, err, got)
	}
	t.Logf("TIMING %s firing %s after Redis evicted %d keys (scrape and evaluation every %s)", redisAlert, time.Since(step).Round(time.Second), evicted, PrometheusInterval)

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
	t.Logf("TIMING the test: %s", time.Since(start).Round(time.Second))
}

// fillRedisUntilEviction writes 1 MiB values through the binding until
// Redis reports evicted keys (INFO stats), and returns how many it evicted.
// A Redis that never evicts (noeviction answers OOM) is an error.
func fillRedisUntilEviction(ctx context.Context, c *redis.Client) (int, error) {
	value := strings.Repeat("x", 1<<20)
	for i := 0; i < 4096; i++ {
		if err := c.Set(ctx, fmt.Sprintf("fill-%d", i), value, 0).Err(); err != nil {
			return 0, fmt.Errorf("SET fill-%d: %w", i, err)
		}
		if i%16 != 15 {
			continue
		}
		n, err := infoField(ctx, c, "stats", "evicted_keys")
		if err != nil {
			return 0, err
		}
		if evicted, _ := strconv.Atoi(n); evicted > 0 {
			return evicted, nil
		}
	}
	return 0, errors.New("4 GiB written and no key evicted: is maxmemory set?")
}

// servedByKafka says a query reads Kafka's series (Strimzi's JMX exporter
// and Kafka Exporter) or the broker's gauges of tenants' Kafka topics,
// which need Kafka instances.
func servedByKafka(names []string) bool {
	for _, n := range names {
		if strings.HasPrefix(n, "kafka_") || n == "strata_tenant_topics" || n == "strata_tenant_partitions" {
			return true
		}
	}
	return false
}

// servedByMesh says a query reads Istio's sidecar metrics (istio_tcp_*),
// which exist only in meshed namespaces. Istio cannot run on this
// machine (Envoy cannot be built from Debian, Go or Maven packages), so
// no sidecar serves them here: the mesh panels are checked by name only
// (charts' TestMeshMetricsAreScraped), like Kafka's.
func servedByMesh(names []string) bool {
	for _, n := range names {
		if strings.HasPrefix(n, "istio_") {
			return true
		}
	}
	return false
}

func countQueries(m dashboards.Model) int {
	n := 0
	for _, p := range m.Panels {
		n += len(p.Exprs)
	}
	return n
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// variableOptions evaluates a query variable as Grafana does: the values
// of its label among the series its selector matches, through its regex's
// first group when it has one.
func variableOptions(ctx context.Context, t *testing.T, prom *promtest.API, v dashboards.ModelVariable, values map[string]string) []string {
	t.Helper()
	selector, label, ok := dashboards.LabelValues(v.Query)
	if !ok {
		t.Fatalf("variable %s: %q is not label_values(selector, label)", v.Name, v.Query)
	}
	selector, err := dashboards.Substitute(selector, values)
	if err != nil {
		t.Fatal(err)
	}
	var re *regexp.Regexp
	if v.Regex != "" {
		re = regexp.MustCompile(strings.TrimSuffix(strings.TrimPrefix(v.Regex, "/"), "/"))
	}
	var out []string
	for _, s := range waitForSeries(ctx, t, prom, fmt.Sprintf("group by (%s) (%s)", label, selector), 2*time.Minute) {
		value := s.Metric[label]
		if re != nil {
			m := re.FindStringSubmatch(value)
			if m == nil {
				continue
			}
			if len(m) > 1 {
				value = m[1]
			}
		}
		out = append(out, value)
	}
	sort.Strings(out)
	return out
}

// waitForTargetsUp waits until every target of a scrape pool is up.
func waitForTargetsUp(ctx context.Context, t *testing.T, prom *promtest.API, pool string) {
	t.Helper()
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
			if !strings.HasPrefix(tg.ScrapePool, pool) {
				continue
			}
			found++
			states = append(states, fmt.Sprintf("%s %s %q", tg.ScrapeURL, tg.Health, tg.LastError))
			if tg.Health == "up" {
				up++
			}
		}
		last = fmt.Sprintf("%d targets in pool %s*: %v", found, pool, states)
		return found > 0 && up == found, nil
	})
	if err != nil {
		t.Fatalf("not scraped: %s", last)
	}
}

// poolerTraffic waits for the Pooler's PgBouncer and runs a few
// transactions through it with the binding's login, TLS verified against
// the binding's CA for the pooler's Service name (the instance's server
// certificate names it).
func poolerTraffic(ctx context.Context, p *Platform, binding map[string]string, pooler, ns string) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(binding["ca.crt"])) {
		return fmt.Errorf("the binding's ca.crt holds no certificate")
	}
	host := pooler + "." + ns + ".svc"
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=5432 dbname=%s connect_timeout=5", host, binding["database"]))
	if err != nil {
		return err
	}
	cfg.User, cfg.Password = binding["username"], binding["password"]
	cfg.TLSConfig = &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	resolver := p.ClusterResolver()
	cfg.LookupFunc = func(ctx context.Context, h string) ([]string, error) {
		return resolver.LookupHost(ctx, h+".cluster.local")
	}
	var lastErr error
	err = wait.PollUntilContextTimeout(ctx, 3*time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		conn, err := pgx.ConnectConfig(cctx, cfg)
		if err != nil {
			lastErr = err
			return false, nil
		}
		defer conn.Close(ctx)
		// A readwrite login may not create tables in the database: a
		// temporary one, in one transaction (PgBouncer pools by
		// transaction, so the next one may run on another server
		// connection).
		for _, q := range []string{
			"SELECT 1",
			"BEGIN; CREATE TEMPORARY TABLE dashboard_test (id int) ON COMMIT DROP; " +
				"INSERT INTO dashboard_test SELECT generate_series(1, 100); UPDATE dashboard_test SET id = id + 1; " +
				"DELETE FROM dashboard_test WHERE id % 2 = 0; COMMIT",
			"SELECT count(*) FROM pg_stat_activity",
		} {
			if _, err := conn.Exec(cctx, q); err != nil {
				lastErr = fmt.Errorf("%s: %w", q, err)
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("%w (last error: %w)", err, lastErr)
	}
	return nil
}
