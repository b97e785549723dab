package broker

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"text/template"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strata-dev/strata/charts"
)

// TestDashboardsUseTheBrokersMetrics: every strata_* series the chart's
// Grafana dashboards query (charts/strata-broker/dashboards) is one the
// broker exports, so a renamed metric fails here rather than leaving an
// empty panel. The real platform's test (TestDashboardsOnRealPlatform)
// checks the queries return data; this covers those it cannot feed there
// (the Kafka topics and partitions of tenants' Kafka instances).
func TestDashboardsUseTheBrokersMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newHTTPMetrics(reg)
	m.requests.WithLabelValues("/v2/catalog", "GET", "200").Inc()
	m.duration.WithLabelValues("/v2/catalog", "GET").Observe(0.1)
	exported := map[string]bool{}
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	descs := make(chan *prometheus.Desc, 100)
	newOperationsCollector(nil).Describe(descs)
	newUsageCollector(nil).Describe(descs)
	close(descs)
	for d := range descs {
		exported[fqName.FindStringSubmatch(d.String())[1]] = true
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		exported[f.GetName()] = true
		if f.GetType().String() == "HISTOGRAM" {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				exported[f.GetName()+suffix] = true
			}
		}
	}
	if len(exported) < 10 {
		t.Fatalf("only %d broker metrics found: %v", len(exported), exported)
	}

	files, err := filepath.Glob(filepath.Join(charts.BrokerChartDir(), "dashboards", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in the chart: %v", err)
	}
	used := 0
	name := regexp.MustCompile(`\bstrata_[a-z_]+`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range name.FindAllString(string(b), -1) {
			if strings.HasPrefix(n, "strata_broker") { // names of things, not metrics
				continue
			}
			used++
			if !exported[n] {
				t.Errorf("%s queries %s, which the broker does not export (it exports %v)", filepath.Base(f), n, exported)
			}
		}
	}
	if used < 20 {
		t.Errorf("the dashboards use only %d strata_* series", used)
	}
}

// dashboardURLExample is the dashboardURLTemplate docs/dashboards.md
// gives: each instance's dashboard_url opens its engine's dashboard with
// its namespace and instance picked.
const dashboardURLExample = `https://grafana.example.com/d/{{if eq (slice .Name 0 3) "pg-"}}strata-postgresql?var-namespace={{.Namespace}}&var-instance={{.Name}}{{else if eq (slice .Name 0 3) "rd-"}}strata-redis?var-namespace={{.Namespace}}&var-instance={{.Name}}{{else}}strata-kafka?var-namespace={{.Namespace}}{{end}}`

func TestDashboardURLExample(t *testing.T) {
	tpl, err := template.New("dashboard").Option("missingkey=error").Parse(dashboardURLExample)
	if err != nil {
		t.Fatal(err)
	}
	b := &Broker{DashboardURL: tpl}
	for name, want := range map[string]string{
		"pg-6b4a": "https://grafana.example.com/d/strata-postgresql?var-namespace=team-a&var-instance=pg-6b4a",
		"rd-6b4a": "https://grafana.example.com/d/strata-redis?var-namespace=team-a&var-instance=rd-6b4a",
		"kafka-1": "https://grafana.example.com/d/strata-kafka?var-namespace=team-a",
	} {
		if got := b.dashboardURL(&InstanceRecord{ID: "6b4a", Namespace: "team-a", Name: name}); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	docs, err := os.ReadFile(filepath.Join(charts.BrokerChartDir(), "..", "..", "docs", "dashboards.md"))
	if err != nil || !strings.Contains(string(docs), dashboardURLExample) {
		t.Errorf("docs/dashboards.md does not give the tested dashboardURLTemplate (%v)", err)
	}
}
