package promtest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// The API reads a real Prometheus scraping one exporter and evaluating
// one rule group: the target, an instant query, the loaded group, an
// alert that fires at once, and the error of a query that does not parse.
func TestAPIReadsARealPrometheus(t *testing.T) {
	g := NewWithT(t)
	exporter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, `promtest_value{kind="a"} 3`)
	}))
	t.Cleanup(exporter.Close)
	rules := filepath.Join(t.TempDir(), "test.rules.yaml")
	g.Expect(os.WriteFile(rules, []byte(`groups:
- name: promtest
  rules:
  - alert: PromtestValueHigh
    expr: promtest_value > 2
    labels: {namespace: team-a}
`), 0o600)).To(Succeed())
	base := Start(t, fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
- job_name: exporter
  static_configs: [{targets: [%q]}]
`, rules, strings.TrimPrefix(exporter.URL, "http://")))
	api, err := NewAPI(base.String())
	g.Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	g.Eventually(func(g Gomega) {
		targets, err := api.ActiveTargets(ctx)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(targets).To(HaveLen(1))
		g.Expect(targets[0].ScrapePool).To(Equal("exporter"))
		g.Expect(targets[0].Health).To(Equal("up"), targets[0].LastError)
	}).WithTimeout(time.Minute).WithPolling(time.Second).Should(Succeed())

	g.Eventually(func(g Gomega) {
		got, err := api.Query(ctx, `promtest_value`)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(got).To(HaveLen(1))
		g.Expect(got[0].Value).To(Equal("3"))
		g.Expect(got[0].Metric).To(HaveKeyWithValue("kind", "a"))
	}).WithTimeout(time.Minute).WithPolling(time.Second).Should(Succeed())

	groups, err := api.RuleGroupFiles(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(groups).To(HaveKeyWithValue("promtest", rules))

	g.Eventually(func() (string, error) {
		return api.AlertState(ctx, "PromtestValueHigh", map[string]string{"namespace": "team-a"})
	}).WithTimeout(time.Minute).WithPolling(time.Second).Should(Equal("firing"))
	g.Expect(api.AlertState(ctx, "PromtestValueHigh", map[string]string{"namespace": "team-b"})).To(Equal(""), "another namespace's")

	_, err = api.Query(ctx, `sum(`)
	g.Expect(err).To(MatchError(ContainSubstring("bad_data")))
}
