package charts_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/charts"
	"github.com/strata-dev/strata/charts/dashboards"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/kafka"
)

var updateDashboards = flag.Bool("update-dashboards", false, "rewrite charts/strata-broker/dashboards/*.json from charts/dashboards")

func dashboardsDir() string { return filepath.Join(charts.BrokerChartDir(), "dashboards") }

// TestDashboardFilesAreGenerated: the chart's dashboard JSON is exactly
// what charts/dashboards renders (-update-dashboards rewrites it), one
// file per dashboard and no other.
func TestDashboardFilesAreGenerated(t *testing.T) {
	g := NewWithT(t)
	want := map[string]bool{}
	for _, d := range dashboards.All() {
		b, err := d.JSON()
		g.Expect(err).NotTo(HaveOccurred())
		path := filepath.Join(dashboardsDir(), d.File)
		want[d.File] = true
		if *updateDashboards {
			g.Expect(os.MkdirAll(dashboardsDir(), 0o755)).To(Succeed())
			g.Expect(os.WriteFile(path, b, 0o644)).To(Succeed())
			continue
		}
		got, err := os.ReadFile(path)
		g.Expect(err).NotTo(HaveOccurred(), "run: go test ./charts -run TestDashboardFilesAreGenerated -update-dashboards")
		g.Expect(string(got)).To(Equal(string(b)), "%s is not what charts/dashboards renders: go test ./charts -run TestDashboardFilesAreGenerated -update-dashboards", d.File)
	}
	files, err := filepath.Glob(filepath.Join(dashboardsDir(), "*"))
	g.Expect(err).NotTo(HaveOccurred())
	for _, f := range files {
		g.Expect(want).To(HaveKey(filepath.Base(f)), "%s is no dashboard of charts/dashboards", f)
	}
	g.Expect(want).To(HaveLen(5))
}

// renderedDashboards are the dashboard ConfigMaps the chart renders with
// values, by data key.
func renderedDashboards(t *testing.T, values map[string]any) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, cm := range find(render(t, values), "ConfigMap") {
		data, _ := cm["data"].(map[string]any)
		for key := range data {
			if strings.HasSuffix(key, ".json") {
				out[key] = cm
			}
		}
	}
	return out
}

// TestDashboardConfigMaps: one ConfigMap per dashboard in the release
// namespace with the sidecar's label, holding the file byte for byte;
// label, namespace, annotations configurable; off when disabled.
func TestDashboardConfigMaps(t *testing.T) {
	g := NewWithT(t)
	cms := renderedDashboards(t, withPassword())
	g.Expect(cms).To(HaveLen(len(dashboards.All())))
	for _, d := range dashboards.All() {
		cm, ok := cms[d.File]
		g.Expect(ok).To(BeTrue(), "no ConfigMap holds %s", d.File)
		g.Expect(get(t, cm, "metadata", "namespace")).To(Equal(namespace))
		g.Expect(get(t, cm, "metadata", "name")).To(Equal("strata-broker-dashboard-" + strings.TrimSuffix(d.File, ".json")))
		g.Expect(get(t, cm, "metadata", "labels", "grafana_dashboard")).To(Equal("1"))
		g.Expect(get(t, cm, "metadata", "labels", "app.kubernetes.io/part-of")).To(Equal("strata"))
		file, err := os.ReadFile(filepath.Join(dashboardsDir(), d.File))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(get(t, cm, "data", d.File)).To(Equal(strings.TrimSuffix(string(file), "\n")))
	}

	values := withPassword()
	values["grafanaDashboards"] = map[string]any{
		"label": "dashboards", "labelValue": "strata", "namespace": "grafana",
		"annotations": map[string]any{"grafana_folder": "Strata"}, "labels": map[string]any{"team": "platform"},
	}
	for _, cm := range renderedDashboards(t, values) {
		g.Expect(get(t, cm, "metadata", "namespace")).To(Equal("grafana"))
		g.Expect(get(t, cm, "metadata", "labels", "dashboards")).To(Equal("strata"))
		g.Expect(get(t, cm, "metadata", "labels", "team")).To(Equal("platform"))
		g.Expect(get(t, cm, "metadata", "labels")).NotTo(HaveKey("grafana_dashboard"))
		g.Expect(get(t, cm, "metadata", "annotations", "grafana_folder")).To(Equal("Strata"))
	}

	values = withPassword()
	values["grafanaDashboards"] = map[string]any{"enabled": false}
	g.Expect(renderedDashboards(t, values)).To(BeEmpty())
}

// variableValues are stand-ins for every variable of a dashboard, as
// Grafana substitutes them before sending a query.
func variableValues(m dashboards.Model) map[string]string {
	values := map[string]string{"__rate_interval": "5m", "__interval": "1m", "__range": "6h"}
	for _, v := range m.Variables {
		switch v.Type {
		case "textbox", "constant":
			values[v.Name] = v.Query
		default:
			values[v.Name] = "x-" + v.Name
		}
	}
	return values
}

// TestDashboardQueriesParse reads every dashboard the chart ships (the
// rendered ConfigMaps, what Grafana reads) and checks: the data source
// is the "datasource" variable everywhere; "namespace" and "instance"
// query variables over label_values of a selector that parses; every
// panel has a query; every query parses as PromQL (Prometheus's own
// parser, the version the platform's Prometheus is built from) once the
// variables are substituted, uses $namespace, and uses $instance wherever
// it selects an instance's series (by job or pod); every variable is used.
func TestDashboardQueriesParse(t *testing.T) {
	cms := renderedDashboards(t, withPassword())
	g := NewWithT(t)
	g.Expect(cms).NotTo(BeEmpty())
	keys := make([]string, 0, len(cms))
	for k := range cms {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	instanceSelector := regexp.MustCompile(`\b(job|pod)=~?"`)
	for _, key := range keys {
		t.Run(key, func(t *testing.T) {
			g := NewWithT(t)
			m, err := dashboards.ReadModel([]byte(get(t, cms[key], "data", key).(string)))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(m.UID).To(HavePrefix("strata-"))
			ds, ok := m.Variable("datasource")
			g.Expect(ok).To(BeTrue(), "no datasource variable")
			g.Expect(ds.Type).To(Equal("datasource"))
			g.Expect(ds.Query).To(Equal("prometheus"))
			values := variableValues(m)
			used := map[string]bool{}
			for _, name := range []string{"namespace", "instance"} {
				v, ok := m.Variable(name)
				g.Expect(ok).To(BeTrue(), "no %s variable", name)
				g.Expect(v.Type).To(Equal("query"))
				g.Expect(v.Datasource).To(Equal("${datasource}"))
				selector, _, ok := dashboards.LabelValues(v.Query)
				g.Expect(ok).To(BeTrue(), "%s's query %q is not label_values(selector, label)", name, v.Query)
				expanded, err := dashboards.Substitute(selector, values)
				g.Expect(err).NotTo(HaveOccurred())
				_, err = parser.ParseMetricSelector(expanded)
				g.Expect(err).NotTo(HaveOccurred(), "variable %s: %s", name, v.Query)
				for ref := range dashboards.References(selector) {
					used[ref] = true
				}
			}
			g.Expect(m.Panels).NotTo(BeEmpty())
			for _, p := range m.Panels {
				g.Expect(p.Exprs).NotTo(BeEmpty(), "panel %q has no query", p.Title)
				g.Expect(p.Datasource).To(Equal("${datasource}"), "panel %q", p.Title)
				for i, expr := range p.Exprs {
					g.Expect(p.TargetDatasources[i]).To(BeElementOf("", "${datasource}"), "panel %q", p.Title)
					g.Expect(strings.TrimSpace(expr)).NotTo(BeEmpty(), "panel %q", p.Title)
					expanded, err := dashboards.Substitute(expr, values)
					g.Expect(err).NotTo(HaveOccurred(), "panel %q", p.Title)
					_, err = parser.ParseExpr(expanded)
					g.Expect(err).NotTo(HaveOccurred(), "panel %q: %s", p.Title, expr)
					refs := dashboards.References(expr)
					g.Expect(refs).To(HaveKey("namespace"), "panel %q: %s", p.Title, expr)
					if instanceSelector.MatchString(expr) || m.UID != "strata-tenant-usage" {
						g.Expect(refs).To(HaveKey("instance"), "panel %q selects an instance's series without $instance: %s", p.Title, expr)
					}
					for ref := range refs {
						used[ref] = true
					}
				}
			}
			for _, v := range m.Variables {
				if v.Type != "datasource" {
					g.Expect(used).To(HaveKey(v.Name), "variable %s is used by no query", v.Name)
				}
			}
		})
	}
}

// TestDashboardsSayTheirVariablesBeforeUse: a substituted variable never
// leaves a "$" behind (a typo'd name would reach Prometheus as is).
func TestDashboardSubstitution(t *testing.T) {
	g := NewWithT(t)
	out, err := dashboards.Substitute(`rate(x{a="$namespace", b=~"${instance}", c="[[namespace]]"}[$__rate_interval])`,
		map[string]string{"namespace": "n", "instance": "i", "__rate_interval": "1m"})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(Equal(`rate(x{a="n", b=~"i", c="n"}[1m])`))
	_, err = dashboards.Substitute(`x{a="$namspace"}`, map[string]string{"namespace": "n"})
	g.Expect(err).To(MatchError(ContainSubstring("namspace")))
	g.Expect(bytes.Contains([]byte(out), []byte("$"))).To(BeFalse())
}

// kafkaExporterMetrics are the series the Kafka Exporter serves (Strimzi's
// kafkaExporter runs danielqsj/kafka_exporter; its Describe lists them).
var kafkaExporterMetrics = map[string]bool{
	"kafka_brokers": true, "kafka_broker_info": true,
	"kafka_topic_partitions": true, "kafka_topic_partition_current_offset": true, "kafka_topic_partition_oldest_offset": true,
	"kafka_topic_partition_leader": true, "kafka_topic_partition_replicas": true, "kafka_topic_partition_in_sync_replica": true,
	"kafka_topic_partition_leader_is_preferred": true, "kafka_topic_partition_under_replicated_partition": true,
	"kafka_consumergroup_current_offset": true, "kafka_consumergroup_current_offset_sum": true,
	"kafka_consumergroup_lag": true, "kafka_consumergroup_lag_sum": true, "kafka_consumergroup_members": true,
}

// jmxRuleNames expands a JMX exporter configuration's rules into the metric
// names they can produce: each $n of a rule's name is the n-th group of its
// pattern, an alternation of literals expanded, anything else a wildcard;
// lowercaseOutputName lowercases, and characters a metric name cannot have
// become "_", as the exporter does.
func jmxRuleNames(t *testing.T, config string) []*regexp.Regexp {
	t.Helper()
	var cfg struct {
		LowercaseOutputName bool `json:"lowercaseOutputName"`
		Rules               []struct {
			Pattern string `json:"pattern"`
			Name    string `json:"name"`
		} `json:"rules"`
	}
	if err := yaml.Unmarshal([]byte(config), &cfg); err != nil {
		t.Fatal(err)
	}
	literals := regexp.MustCompile(`^[A-Za-z0-9_-]+(\|[A-Za-z0-9_-]+)*$`)
	ref := regexp.MustCompile(`\$(\d+)`)
	var out []*regexp.Regexp
	for _, r := range cfg.Rules {
		if r.Name == "" {
			continue
		}
		// The pattern's capture groups (the rules nest none).
		var groups []string
		for i := 0; i < len(r.Pattern); i++ {
			if r.Pattern[i] != '(' || (i > 0 && r.Pattern[i-1] == '\\') || strings.HasPrefix(r.Pattern[i:], "(?") {
				continue
			}
			end := strings.IndexByte(r.Pattern[i:], ')')
			if end < 0 {
				t.Fatalf("rule pattern %q: unbalanced group", r.Pattern)
			}
			groups = append(groups, r.Pattern[i+1:i+end])
		}
		var name string
		last := 0
		for _, m := range ref.FindAllStringSubmatchIndex(r.Name, -1) {
			name += regexp.QuoteMeta(r.Name[last:m[0]])
			last = m[1]
			n, _ := strconv.Atoi(r.Name[m[2]:m[3]])
			if n < 1 || n > len(groups) {
				t.Fatalf("rule %q names group $%d of %d", r.Name, n, len(groups))
			}
			if g := groups[n-1]; literals.MatchString(g) {
				name += "(" + g + ")"
			} else {
				name += ".+"
			}
		}
		name += regexp.QuoteMeta(r.Name[last:])
		if cfg.LowercaseOutputName {
			name = "(?i)" + name
		}
		// The exporter writes "-" (and any other invalid character) as "_".
		name = strings.ReplaceAll(name, "-", "[-_]")
		out = append(out, regexp.MustCompile("^"+name+"$"))
	}
	return out
}

// TestKafkaDashboardMetricsAreConfigured: Strimzi cannot run here (docs/
// platform.md), so the Kafka series are checked by name: every metric a
// Kafka query of the dashboards uses is one the JMX exporter rules of the
// Kafka objects the broker renders for a dedicated cluster (the ha plan)
// produce, or one of the Kafka Exporter those objects enable; and the
// rendered PodMonitor scrapes the port both serve on.
func TestKafkaDashboardMetricsAreConfigured(t *testing.T) {
	g := NewWithT(t)
	svc, plan, err := catalog.Default().Find(catalog.KafkaServiceID, catalog.KafkaHAID)
	g.Expect(err).NotTo(HaveOccurred())
	id := "5f0c6d8e-3b1a-4c2e-9f4d-2a7b8c9d0e1f"
	inst := provisioners.Instance{ID: id, Name: provisioners.ResourceName("kafka-", id), Namespace: "team-a", Service: svc, Plan: plan}
	objs, err := (&kafka.Provisioner{Config: kafka.DefaultConfig()}).Build(inst)
	g.Expect(err).NotTo(HaveOccurred())
	n := kafka.NamesOf(inst)
	var config string
	var kafkaObj, monitor map[string]any
	for _, o := range objs {
		switch {
		case o.GetKind() == "ConfigMap" && o.GetName() == n.Metrics:
			data, _ := o.Object["data"].(map[string]any)
			config, _ = data["kafka-metrics-config.yml"].(string)
		case o.GetKind() == "Kafka":
			kafkaObj = o.Object
		case o.GetKind() == "PodMonitor":
			monitor = o.Object
		}
	}
	g.Expect(config).NotTo(BeEmpty(), "no metrics ConfigMap %s rendered", n.Metrics)
	g.Expect(get(t, kafkaObj, "spec", "kafka", "metricsConfig", "valueFrom", "configMapKeyRef", "name")).To(Equal(n.Metrics))
	g.Expect(get(t, kafkaObj, "spec", "kafkaExporter")).NotTo(BeNil(), "the Kafka Exporter (consumer lag) is off")
	g.Expect(get(t, monitor, "metadata", "name")).To(Equal(n.Cluster+"-metrics"), "the dashboards select job <namespace>/<cluster>-metrics")
	g.Expect(get(t, monitor, "spec", "podMetricsEndpoints", 0, "port")).To(Equal("tcp-prometheus"))
	rules := jmxRuleNames(t, config)

	checked := 0
	for _, d := range dashboards.All() {
		b, err := d.JSON()
		g.Expect(err).NotTo(HaveOccurred())
		m, err := dashboards.ReadModel(b)
		g.Expect(err).NotTo(HaveOccurred())
		values := variableValues(m)
		var exprs []string
		for _, v := range m.Variables {
			if sel, _, ok := dashboards.LabelValues(v.Query); ok {
				exprs = append(exprs, sel)
			}
		}
		for _, p := range m.Panels {
			exprs = append(exprs, p.Exprs...)
		}
		for _, expr := range exprs {
			names, err := dashboards.MetricNames(expr, values)
			g.Expect(err).NotTo(HaveOccurred())
			for _, name := range names {
				if !strings.HasPrefix(name, "kafka_") {
					continue
				}
				checked++
				if kafkaExporterMetrics[name] {
					continue
				}
				found := false
				for _, r := range rules {
					found = found || r.MatchString(name)
				}
				g.Expect(found).To(BeTrue(), "%s (dashboard %s) is produced by no rule of the Kafka metrics ConfigMap %s nor by the Kafka Exporter", name, d.File, n.Metrics)
			}
		}
	}
	g.Expect(checked).To(BeNumerically(">=", 20))
	// The check can fail: a name no rule makes.
	for _, r := range rules {
		g.Expect(r.MatchString("kafka_server_brokertopicmetrics_bytesinpersecond_total")).To(BeFalse())
	}
}
