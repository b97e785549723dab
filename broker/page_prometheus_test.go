package broker

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/strata-dev/strata/catalog"

	"github.com/strata-dev/strata/internal/promtest"
)

// The page's metrics and alerts from a real Prometheus (Debian's
// prometheus, which integration/scripts/install-deps.sh installs): it
// scrapes an exporter serving CloudNativePG's metric names for instance A
// and instance B, and evaluates an alert rule; A's page must chart A's
// connections and show A's alert, never B's.

func startPrometheus(t *testing.T, target string, rules string) *url.URL {
	t.Helper()
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	return promtest.Start(t, fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
- job_name: exporter
  honor_labels: true
  static_configs: [{targets: [%q]}]
`, rulesFile, target))
}

func TestInstancePageMetricsAndAlertsFromPrometheus(t *testing.T) {
	g := NewWithT(t)
	nameA, nameB := "pg-"+instanceID, "pg-"+otherID
	exporter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = fmt.Fprintf(w, "cnpg_backends_total{namespace=%q,pod=%q,datname=\"app\"} 7\n", tenantNS, nameA+"-1")
		_, _ = fmt.Fprintf(w, "cnpg_backends_total{namespace=%q,pod=%q,datname=\"app\"} 5\n", tenantNS, nameA+"-2")
		_, _ = fmt.Fprintf(w, "cnpg_backends_total{namespace=%q,pod=%q,datname=\"app\"} 90\n", tenantNS, nameB+"-1")
		_, _ = fmt.Fprintf(w, "cnpg_pg_replication_lag{namespace=%q,pod=%q} 2\n", tenantNS, nameA+"-2")
	}))
	t.Cleanup(exporter.Close)
	rules := `groups:
- name: test
  rules:
  - alert: StrataTestTooManyConnections
    expr: sum by (namespace, pod) (cnpg_backends_total) > 6
    labels: {severity: warning}
    annotations: {summary: "{{ $labels.pod }} has many connections"}
`
	promURL := startPrometheus(t, strings.TrimPrefix(exporter.URL, "http://"), rules)
	prom, err := NewPrometheus(promURL.String(), 10*time.Second)
	g.Expect(err).NotTo(HaveOccurred())

	e := newPageEnv(t, prom)
	dash := e.provisionThroughOSB(t, instanceID, catalog.PostgresStandardID, `{}`)
	e.provisionThroughOSB(t, otherID, catalog.PostgresStandardID, `{}`)
	// The page's clock is the real one here: Prometheus's samples are.
	e.b.Now = time.Now

	var html string
	// Until both alerts fire and a few scrapes are in (slow under load).
	g.Eventually(func(g Gomega) {
		w := e.page(t, pathOf(t, dash))
		g.Expect(w.Code).To(Equal(http.StatusOK))
		html = w.Body.String()
		g.Expect(html).To(ContainSubstring("connections (last hour): <b>12</b>"), "7 + 5, A's pods only")
		g.Expect(html).To(ContainSubstring("StrataTestTooManyConnections"))
		g.Expect(html).To(ContainSubstring("firing"))
	}).WithTimeout(3 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
	g.Expect(html).To(ContainSubstring(nameA + "-1 has many connections"))
	g.Expect(html).NotTo(ContainSubstring(nameB), "B's alert is not on A's page")
	g.Expect(html).To(MatchRegexp(`<polyline fill="none" stroke="#2563eb" stroke-width="1.5" points="[0-9., ]+"/>`))
	g.Expect(html).To(ContainSubstring("replication lag (last hour): <b>2.0 s</b>"))
	g.Expect(html).NotTo(ContainSubstring(promURL.Host), "Prometheus's address stays in the broker")

	// Prometheus gone: the page still answers, and says so per chart.
	e.b.Page.Prometheus, err = NewPrometheus("http://127.0.0.1:1", 2*time.Second)
	g.Expect(err).NotTo(HaveOccurred())
	w := e.page(t, pathOf(t, dash))
	g.Expect(w.Code).To(Equal(http.StatusOK))
	g.Expect(w.Body.String()).To(ContainSubstring("Prometheus could not be reached"))
	g.Expect(w.Body.String()).To(ContainSubstring("alerts could not be read"))
}
