package charts_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/yaml"

	"github.com/strata-dev/strata/charts"
)

// ruleFile is the part of a Prometheus rule file the checks read.
type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

// ruleTestFile is the part of a promtool test file the checks read.
type ruleTestFile struct {
	Tests []struct {
		AlertRuleTest []struct {
			Alertname string `json:"alertname"`
			ExpAlerts []any  `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed: apt-get install prometheus (Debian's package ships promtool), or run make deps")
	}
	return p
}

func rulesDir() string { return filepath.Join(charts.BrokerChartDir(), "rules") }

func ruleFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(rulesDir(), "*.rules.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule files in %s (%v)", rulesDir(), err)
	}
	return files
}

// alertsIn reads every alert of the rule files, by name.
func alertsIn(t *testing.T, files []string) map[string]string {
	t.Helper()
	alerts := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rf ruleFile
		if err := yaml.UnmarshalStrict(b, &rf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				if prev, dup := alerts[r.Alert]; dup {
					t.Errorf("alert %s is defined in %s and %s", r.Alert, prev, f)
				}
				alerts[r.Alert] = filepath.Base(f)
			}
		}
	}
	return alerts
}

// TestAlertRulesPassPromtool runs `promtool check rules` on every rule file
// and `promtool test rules` on every unit test of them.
func TestAlertRulesPassPromtool(t *testing.T) {
	bin := promtool(t)
	out, err := exec.Command(bin, append([]string{"check", "rules"}, ruleFiles(t)...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	tests, err := filepath.Glob(filepath.Join(rulesDir(), "tests", "*_test.yaml"))
	if err != nil || len(tests) == 0 {
		t.Fatalf("no rule tests in %s/tests (%v)", rulesDir(), err)
	}
	cmd := exec.Command(bin, append([]string{"test", "rules"}, tests...)...)
	cmd.Dir = filepath.Join(rulesDir(), "tests")
	out, err = cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

// TestEveryAlertIsTestedAndHasARunbook: each alert has a severity, a
// summary, a description and a runbook_url pointing at a section of
// docs/alerts.md that exists, and a promtool test case in which it fires.
func TestEveryAlertIsTestedAndHasARunbook(t *testing.T) {
	g := NewWithT(t)
	files := ruleFiles(t)
	alerts := alertsIn(t, files)
	g.Expect(len(alerts)).To(BeNumerically(">=", 20))

	docs, err := os.ReadFile(filepath.Join(charts.BrokerChartDir(), "..", "..", "docs", "alerts.md"))
	g.Expect(err).NotTo(HaveOccurred())
	anchors := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#+ +(\S+)\s*$`).FindAllStringSubmatch(string(docs), -1) {
		anchors[strings.ToLower(m[1])] = true
	}
	const runbooks = "https://github.com/strata-dev/strata/blob/main/docs/alerts.md#"
	for _, f := range files {
		b, _ := os.ReadFile(f)
		var rf ruleFile
		g.Expect(yaml.Unmarshal(b, &rf)).To(Succeed())
		for _, gr := range rf.Groups {
			for _, r := range gr.Rules {
				g.Expect(r.Labels["severity"]).To(BeElementOf("critical", "warning", "info"), "severity of %s", r.Alert)
				g.Expect(r.Annotations["summary"]).NotTo(BeEmpty(), "summary of %s", r.Alert)
				g.Expect(r.Annotations["description"]).NotTo(BeEmpty(), "description of %s", r.Alert)
				g.Expect(r.Annotations["runbook_url"]).To(Equal(runbooks+strings.ToLower(r.Alert)), "runbook_url of %s", r.Alert)
				g.Expect(anchors).To(HaveKey(strings.ToLower(r.Alert)), "docs/alerts.md has no section %q (the runbook of %s)", r.Alert, filepath.Base(f))
			}
		}
	}

	fired := map[string]bool{}
	tests, _ := filepath.Glob(filepath.Join(rulesDir(), "tests", "*_test.yaml"))
	for _, f := range tests {
		b, err := os.ReadFile(f)
		g.Expect(err).NotTo(HaveOccurred())
		var tf ruleTestFile
		g.Expect(yaml.Unmarshal(b, &tf)).To(Succeed(), f)
		for _, tc := range tf.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					fired[a.Alertname] = true
				}
			}
		}
	}
	var untested []string
	for name, file := range alerts {
		if !fired[name] {
			untested = append(untested, fmt.Sprintf("%s (%s)", name, file))
		}
	}
	sort.Strings(untested)
	g.Expect(untested).To(BeEmpty(), "alerts no promtool test makes fire")
}

// TestPrometheusRuleCarriesEveryAlert: the chart's PrometheusRule holds
// exactly the rule files' alerts, their {{ $labels }} templates untouched
// by Helm, and is left out when disabled.
func TestPrometheusRuleCarriesEveryAlert(t *testing.T) {
	g := NewWithT(t)
	want := alertsIn(t, ruleFiles(t))
	values := withPassword()
	values["prometheusRule"] = map[string]any{"labels": map[string]any{"release": "kube-prometheus-stack"}}
	pr := one(t, render(t, values), "PrometheusRule")
	g.Expect(get(t, pr, "metadata", "labels", "release")).To(Equal("kube-prometheus-stack"))
	got := map[string]bool{}
	for _, gr := range get(t, pr, "spec", "groups").([]any) {
		for _, r := range gr.(map[string]any)["rules"].([]any) {
			rule := r.(map[string]any)
			if name, ok := rule["alert"].(string); ok {
				got[name] = true
				summary := rule["annotations"].(map[string]any)["summary"].(string)
				g.Expect(summary).NotTo(ContainSubstring("<no value>"), "Helm templated %s's summary", name)
			}
		}
	}
	g.Expect(got).To(HaveLen(len(want)))
	for name := range want {
		g.Expect(got).To(HaveKey(name))
	}
	down := one(t, render(t, values), "PrometheusRule")
	g.Expect(fmt.Sprint(down)).To(ContainSubstring("{{ $labels.pod }}"))

	values["prometheusRule"] = map[string]any{"enabled": false}
	g.Expect(find(render(t, values), "PrometheusRule")).To(BeEmpty())
}
