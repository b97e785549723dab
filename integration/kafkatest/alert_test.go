//go:build linux

package kafkatest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/strata-dev/strata/charts/dashboards"
	"github.com/strata-dev/strata/provisioners/kafka"

	"github.com/strata-dev/strata/internal/promtest"
)

// Kafka Exporter series: Strimzi's Kafka Exporter (a separate Go program,
// danielqsj/kafka_exporter, that Strimzi runs in its own pod) serves
// them, not the JMX exporter in the Kafka nodes. This test does not run
// it, so it checks no rule or query on them.
var kafkaExporterSeries = map[string]bool{"kafka_consumergroup_lag": true, "kafka_brokers": true}

// TestKafkaAlertFiresForReal makes the chart's Kafka alerts fire on real
// Kafka. What stands in for Strimzi's operator is this package's harness:
// it starts the ha plan's cluster (one KRaft controller, three brokers,
// each its own JVM from the Apache Kafka jars, with the Kafka resource's
// spec.kafka.config as the provisioner renders it) on loopback, instead
// of Strimzi starting pods. Everything else is real: every node loads the
// Prometheus JMX exporter Java agent (the one Strimzi's image ships) with
// exactly the rules of the metrics ConfigMap the Kafka provisioner's Build
// renders for an ha instance (as JSON, as Strimzi hands it to the agent);
// Debian's Prometheus scrapes the four agents every 5 s, the targets
// labelled as the rendered PodMonitor's scrape labels them (namespace,
// pod, job <namespace>/<cluster>-metrics), and evaluates the chart's
// rules/kafka.rules.yaml file as it is.
//
// It checks that every series the rules use is served (a rule on a
// missing series never fires) but the Kafka Exporter's consumer lag;
// that the Kafka dashboard's queries but the Kafka Exporter's return data
// (after some traffic); then crashes the broker that holds the only
// replica of a replication-factor-1 topic and three replicas of the ha
// plan's topic: StrataKafkaOfflinePartitions (for: 1m) and
// StrataKafkaUnderReplicatedPartitions (for: 5m) must reach firing, and
// resolve once the broker is back.
func TestKafkaAlertFiresForReal(t *testing.T) {
	g := NewWithT(t)
	total := time.Now()
	promtest.Binary(t) // before the brokers start: a missing Prometheus fails at once
	rulesFile := filepath.Join(RepoRoot(), "charts", "strata-broker", "rules", "kafka.rules.yaml")
	ruleSeries := seriesOfRules(t, rulesFile)

	// The ha instance's objects, as the broker renders them.
	inst, _, kafkaObj, topicObj, objs := haObjects(t, map[string]any{"topics": []any{map[string]any{"name": "orders", "partitions": float64(3)}}})
	names := kafka.NamesOf(inst)
	var metricsConfig string
	var monitor *unstructured.Unstructured
	for _, o := range objs {
		switch {
		case o.GetKind() == "ConfigMap" && o.GetName() == names.Metrics:
			metricsConfig, _, _ = unstructured.NestedString(o.Object, "data", "kafka-metrics-config.yml")
		case o.GetKind() == "PodMonitor":
			monitor = o
		}
	}
	g.Expect(metricsConfig).NotTo(BeEmpty(), "no metrics ConfigMap %s rendered", names.Metrics)
	ref, _, _ := unstructured.NestedString(kafkaObj.Object, "spec", "kafka", "metricsConfig", "valueFrom", "configMapKeyRef", "name")
	g.Expect(ref).To(Equal(names.Metrics), "the Kafka resource's metricsConfig names the rendered ConfigMap")
	g.Expect(monitor).NotTo(BeNil(), "no PodMonitor rendered")
	job := inst.Namespace + "/" + monitor.GetName()
	brokerCfg, err := BrokerConfig(kafkaObj)
	g.Expect(err).NotTo(HaveOccurred())

	step := time.Now()
	c, err := StartClusterWith(3, brokerCfg, ClusterOptions{JMXExporterConfig: metricsConfig})
	g.Expect(err).NotTo(HaveOccurred())
	defer c.Stop()
	t.Logf("TIMING 3 brokers and a controller with the JMX exporter agent serving after %s", time.Since(step).Round(time.Millisecond))

	// Strimzi names node pool pods <cluster>-<pool>-<node id>.
	pods := map[string]string{}
	pods[c.Controller.MetricsAddr] = names.Cluster + "-" + names.ControllerPool + "-" + fmt.Sprint(c.Controller.ID)
	for _, b := range c.Brokers {
		pods[b.MetricsAddr] = names.Cluster + "-" + names.BrokerPool + "-" + fmt.Sprint(b.ID)
	}
	prom := startKafkaPrometheus(t, rulesFile, inst.Namespace, job, pods)

	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	step = time.Now()
	g.Expect(waitTargetsUp(ctx, prom, len(pods), 3*time.Minute)).To(Succeed())
	t.Logf("TIMING Prometheus scraping all %d agents after %s", len(pods), time.Since(step).Round(time.Millisecond))

	// The ha plan's topic (replicas on all three brokers) with traffic,
	// and a replication-factor-1 topic whose one replica is on broker 3.
	g.Expect(CreateTopic(ctx, c.Admin, topicObj)).To(Succeed())
	topic, _, _ := unstructured.NestedString(topicObj.Object, "spec", "topicName")
	waitISR(t, c, topic, 3, 60*time.Second)
	const lonely = "lonely"
	g.Expect(createAssigned(ctx, c, lonely, 3)).To(Succeed())
	waitISR(t, c, lonely, 1, 60*time.Second)
	// Produced and consumed: the per-topic bytes-out meter exists once a
	// consumer has fetched from the topic.
	_, err = produce(c, topic, "traffic", 30)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(readAll(t, c, topic)).To(HaveLen(30))

	// Every series a rule uses is served, but the Kafka Exporter's.
	step = time.Now()
	var checked []string
	for _, s := range ruleSeries {
		if kafkaExporterSeries[s] {
			t.Logf("rule series %s: the Kafka Exporter's, not run here", s)
			continue
		}
		checked = append(checked, s)
	}
	g.Expect(checked).To(ContainElements("kafka_server_replicamanager_underreplicatedpartitions", "kafka_controller_kafkacontroller_offlinepartitionscount"))
	missing := waitSeries(ctx, prom, checked, fmt.Sprintf(`{namespace=%q, job=%q}`, inst.Namespace, job), 2*time.Minute)
	g.Expect(missing).To(BeEmpty(), "series the rules use that no Kafka node serves")
	t.Logf("TIMING all %d series the rules use (%s) served, %s", len(checked), strings.Join(checked, ", "), time.Since(step).Round(time.Millisecond))

	// Healthy: one active controller, so StrataKafkaNoActiveController's
	// sum is 1, and no Kafka alert is pending or firing.
	v, err := prom.Query(ctx, `sum by (namespace) (kafka_controller_kafkacontroller_activecontrollercount)`)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(v).To(HaveLen(1))
	g.Expect(v[0].Value).To(Equal("1"), "active controllers")
	alerts, err := prom.Alerts(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(alerts).To(BeEmpty(), "alerts on a healthy cluster")

	// The Kafka dashboard's queries, substituted as Grafana would for this
	// instance.
	step = time.Now()
	dashboardQueries(ctx, t, prom, inst.Namespace, names.Cluster)
	t.Logf("TIMING dashboard queries checked in %s", time.Since(step).Round(time.Millisecond))

	// Broker 3 crashes: lonely's partition has no replica left (offline,
	// counted by the controller) and the partitions of orders that
	// brokers 1 and 2 lead lose an in-sync replica (under-replicated,
	// counted by their leaders).
	crashed := c.Brokers[2]
	crashed.Kill()
	killed := time.Now()
	const offline, urp = "StrataKafkaOfflinePartitions", "StrataKafkaUnderReplicatedPartitions"
	// A leader that drops the dead follower from an ISR itself (when the
	// follower's lag, not the controller's fencing, comes first) counts an
	// ISR shrink: StrataKafkaISRShrinking may then be pending (for: 10m,
	// longer than this test); it is allowed, not required.
	const shrinking = "StrataKafkaISRShrinking"
	seen := map[string]map[string]time.Duration{offline: {}, urp: {}, shrinking: {}}
	var firing map[string]promtest.Alert
	// Every change of an alert's state (per pod) is logged: a pending
	// alert whose expression stops matching for one evaluation (a scrape
	// that failed under load, say) starts its for: again.
	states := map[string]string{}
	err = poll(ctx, 12*time.Minute, 2*time.Second, func() (bool, error) {
		as, err := prom.Alerts(ctx)
		if err != nil {
			return false, nil
		}
		firing = map[string]promtest.Alert{}
		now := map[string]string{}
		for _, a := range as {
			name := a.Labels["alertname"]
			if _, ok := seen[name]; !ok {
				return false, fmt.Errorf("unexpected alert %s %s: %v", name, a.State, a.Labels)
			}
			if _, ok := seen[name][a.State]; !ok {
				seen[name][a.State] = time.Since(killed)
			}
			key := name + " " + a.Labels["pod"]
			now[key] = a.State
			if states[key] != a.State {
				t.Logf("TIMING %s %s %s after the crash (active since %s after the crash; %v)", name, a.State,
					time.Since(killed).Round(time.Second), a.ActiveAt.Sub(killed).Round(time.Second), a.Labels)
			}
			if a.State == "firing" && name != shrinking {
				firing[name] = a
			}
		}
		for key := range states {
			if now[key] == "" {
				t.Logf("TIMING %s inactive again %s after the crash", key, time.Since(killed).Round(time.Second))
			}
		}
		states = now
		return len(firing) == 2, nil
	})
	// Failed scrapes since the crash, per pod (the crashed broker's are
	// expected): a survivor's explain a pending alert that started again.
	if v, err := prom.Query(ctx, fmt.Sprintf(`sum by (pod) (count_over_time(up[%ds]) - sum_over_time(up[%ds]))`,
		int(time.Since(killed).Seconds()), int(time.Since(killed).Seconds()))); err == nil {
		for _, s := range v {
			t.Logf("failed scrapes since the crash: %s %s", s.Metric["pod"], s.Value)
		}
	}
	g.Expect(err).NotTo(HaveOccurred(), "alerts seen %v\n%s", seen, c.Log())
	g.Expect(firing[offline].Labels).To(HaveKeyWithValue("namespace", inst.Namespace))
	g.Expect(firing[offline].Labels).To(HaveKeyWithValue("severity", "critical"))
	g.Expect(firing[urp].Labels).To(HaveKeyWithValue("namespace", inst.Namespace))
	g.Expect(firing[urp].Labels["pod"]).To(HavePrefix(names.Cluster+"-"+names.BrokerPool+"-"), "a surviving broker's pod")
	g.Expect(firing[urp].Labels["pod"]).NotTo(Equal(pods[crashed.MetricsAddr]))

	// The broker returns: both resolve.
	g.Expect(crashed.Start()).To(Succeed())
	restarted := time.Now()
	err = poll(ctx, 6*time.Minute, 2*time.Second, func() (bool, error) {
		as, err := prom.Alerts(ctx)
		if err != nil {
			return false, nil
		}
		for _, a := range as {
			if name := a.Labels["alertname"]; name == offline || name == urp {
				return false, nil
			}
		}
		return true, nil
	})
	g.Expect(err).NotTo(HaveOccurred(), "alerts still active after the broker's restart\n%s", c.Log())
	t.Logf("TIMING both alerts resolved %s after the broker's restart; test total %s", time.Since(restarted).Round(time.Second), time.Since(total).Round(time.Second))
}

// seriesOfRules lists the kafka_* series a rules file's expressions use.
func seriesOfRules(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var rf struct {
		Groups []struct {
			Rules []struct {
				Alert, Record, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	set := map[string]bool{}
	name := regexp.MustCompile(`\bkafka_[a-z0-9_]+`)
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			for _, m := range name.FindAllString(r.Expr, -1) {
				set[m] = true
			}
		}
	}
	var out []string
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	if len(out) == 0 {
		t.Fatalf("%s uses no kafka_* series", file)
	}
	return out
}

// createAssigned creates a one-partition topic whose only replica is on
// broker id, through the CreateTopics request's replica assignment.
func createAssigned(ctx context.Context, c *Cluster, topic string, id int32) error {
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic = topic
	rt.NumPartitions, rt.ReplicationFactor = -1, -1
	a := kmsg.NewCreateTopicsRequestTopicReplicaAssignment()
	a.Partition, a.Replicas = 0, []int32{id}
	rt.ReplicaAssignment = append(rt.ReplicaAssignment, a)
	req.Topics = append(req.Topics, rt)
	req.TimeoutMillis = 30000
	resp, err := req.RequestWith(ctx, c.admin)
	if err != nil {
		return err
	}
	for _, r := range resp.Topics {
		if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
			return fmt.Errorf("creating %s: %w", r.Topic, err)
		}
	}
	return nil
}

// dashboardQueries runs the Kafka dashboard's variables and queries,
// substituted for this instance, and fails on each that returns no data
// (but the Kafka Exporter's).
func dashboardQueries(ctx context.Context, t *testing.T, prom *promtest.API, namespace, cluster string) {
	t.Helper()
	b, err := dashboards.Kafka().JSON()
	if err != nil {
		t.Fatal(err)
	}
	m, err := dashboards.ReadModel(b)
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]string{"namespace": namespace, "instance": cluster, "__rate_interval": "1m", "__interval": "10s"}
	// The variables list this instance as Grafana evaluates them.
	for name, want := range map[string]string{"namespace": namespace, "instance": cluster} {
		v, ok := m.Variable(name)
		if !ok {
			t.Fatalf("the Kafka dashboard has no variable %s", name)
		}
		selector, label, ok := dashboards.LabelValues(v.Query)
		if !ok {
			t.Fatalf("variable %s: %q is not label_values", name, v.Query)
		}
		selector, err := dashboards.Substitute(selector, values)
		if err != nil {
			t.Fatal(err)
		}
		res, err := prom.Query(ctx, fmt.Sprintf("group by (%s) (%s)", label, selector))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range res {
			value := s.Metric[label]
			if v.Regex != "" {
				re := regexp.MustCompile(strings.TrimSuffix(strings.TrimPrefix(v.Regex, "/"), "/"))
				sm := re.FindStringSubmatch(value)
				if sm == nil {
					continue
				}
				if len(sm) > 1 {
					value = sm[1]
				}
			}
			got = append(got, value)
		}
		if len(got) != 1 || got[0] != want {
			t.Errorf("variable %s (%s) lists %v, want [%s]", name, v.Query, got, want)
		}
	}
	type query struct{ where, expr string }
	var queries []query
	skipped := 0
	for _, p := range m.Panels {
		for _, expr := range p.Exprs {
			names, err := dashboards.MetricNames(expr, values)
			if err != nil {
				t.Fatalf("panel %q: %v", p.Title, err)
			}
			exporter := false
			for _, n := range names {
				exporter = exporter || kafkaExporterSeries[n]
			}
			q, err := dashboards.Substitute(expr, values)
			if err != nil {
				t.Fatalf("panel %q: %v", p.Title, err)
			}
			if exporter {
				skipped++
				t.Logf("dashboard: %s: %s reads the Kafka Exporter's series, not run here", p.Title, q)
				continue
			}
			queries = append(queries, query{p.Title, q})
		}
	}
	// A rate needs two scrapes in its window: poll until each has data.
	var missing []query
	_ = poll(ctx, 2*time.Minute, 5*time.Second, func() (bool, error) {
		missing = nil
		for _, q := range queries {
			if got, err := prom.Query(ctx, q.expr); err != nil || len(got) == 0 {
				missing = append(missing, q)
			}
		}
		return len(missing) == 0, nil
	})
	for _, q := range missing {
		t.Errorf("dashboard query returns no data: %s: %s", q.where, q.expr)
	}
	t.Logf("dashboard: %d of %d Kafka dashboard queries return data from the JMX exporter; %d read the Kafka Exporter's series (not run here)",
		len(queries)-len(missing), len(queries), skipped)
	if len(queries) < 15 {
		t.Errorf("only %d dashboard queries checked", len(queries))
	}
}

// startKafkaPrometheus runs Debian's Prometheus on loopback with the
// chart's rules file as it is and one static target per JMX exporter
// agent (pods: address to pod name), labelled as the PodMonitor's scrape
// labels a Strimzi pod: namespace, pod, and job <namespace>/<monitor>.
func startKafkaPrometheus(t *testing.T, rulesFile, namespace, job string, pods map[string]string) *promtest.API {
	t.Helper()
	var targets strings.Builder
	var addrs []string
	for a := range pods {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	for _, a := range addrs {
		fmt.Fprintf(&targets, "  - targets: [%q]\n    labels: {namespace: %q, pod: %q, container: kafka}\n", a, namespace, pods[a])
	}
	cfg := fmt.Sprintf(`global: {scrape_interval: 5s, evaluation_interval: 5s, scrape_timeout: 5s}
rule_files: [%q]
scrape_configs:
- job_name: strimzi-kafka
  metrics_path: /metrics
  static_configs:
%s  relabel_configs:
  - target_label: job
    replacement: %q
`, rulesFile, targets.String(), job)
	prom, err := promtest.NewAPI(promtest.Start(t, cfg).String())
	if err != nil {
		t.Fatal(err)
	}
	return prom
}

// waitTargetsUp waits until n targets are up.
func waitTargetsUp(ctx context.Context, prom *promtest.API, n int, timeout time.Duration) error {
	var last string
	err := poll(ctx, timeout, 2*time.Second, func() (bool, error) {
		targets, err := prom.ActiveTargets(ctx)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		up := 0
		last = ""
		for _, tg := range targets {
			if tg.Health == "up" {
				up++
			} else {
				last += fmt.Sprintf(" %s: %s %s;", tg.ScrapeURL, tg.Health, tg.LastError)
			}
		}
		return up == n && len(targets) == n, nil
	})
	if err != nil {
		return fmt.Errorf("%w: targets not up:%s", err, last)
	}
	return nil
}

// waitSeries waits until each metric has a series matching selector
// (label matchers in braces) and returns those that never had.
func waitSeries(ctx context.Context, prom *promtest.API, metrics []string, selector string, timeout time.Duration) []string {
	missing := metrics
	_ = poll(ctx, timeout, 5*time.Second, func() (bool, error) {
		var still []string
		for _, m := range missing {
			if got, err := prom.Query(ctx, m+selector); err != nil || len(got) == 0 {
				still = append(still, m)
			}
		}
		missing = still
		return len(missing) == 0, nil
	})
	return missing
}

// poll calls f every interval until it returns true or an error, or
// timeout passes.
func poll(ctx context.Context, timeout, interval time.Duration, f func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := f()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not done after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
