//go:build linux

package platform

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/strata-dev/strata/provisioners"
)

// checkMonitorsSelectRealPods renders an instance's objects as the broker
// would with monitoring on (without InstallPrometheus the broker runs with
// it off and the monitors are not applied), and checks
// each PodMonitor against the running pods: its selector matches at least
// one pod of the instance, every matched pod has a container port of the
// endpoint's name, and that port answers GET /metrics with Prometheus text
// from the host (which routes to the pod range) as Prometheus would scrape
// it. wantMetrics are, by PodMonitor name, the metric names its scrapes
// must contain (e.g. those the alert rules use: ruleMetrics).
func checkMonitorsSelectRealPods(ctx context.Context, t *testing.T, p *Platform, prov provisioners.Provisioner, inst provisioners.Instance, wantMetrics map[string][]string) {
	t.Helper()
	objs, err := prov.Build(inst)
	if err != nil {
		t.Fatalf("rendering %s with monitoring on: %v", inst.Name, err)
	}
	monitors := 0
	for _, obj := range objs {
		if obj.GetKind() != "PodMonitor" {
			continue
		}
		monitors++
		selector, _, _ := unstructured.NestedStringMap(obj.Object, "spec", "selector", "matchLabels")
		endpoints, _, _ := unstructured.NestedSlice(obj.Object, "spec", "podMetricsEndpoints")
		pods, err := p.Client.CoreV1().Pods(inst.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(selector).String()})
		if err != nil {
			t.Fatal(err)
		}
		var running []corev1.Pod
		for _, pod := range pods.Items {
			if pod.Status.Phase == corev1.PodRunning && pod.Status.PodIP != "" {
				running = append(running, pod)
			}
		}
		if len(running) == 0 {
			t.Errorf("PodMonitor %s selects %v: no running pod in %s has those labels (pods there: %s)", obj.GetName(), selector, inst.Namespace, p.podSummary(ctx, inst.Namespace))
			continue
		}
		for _, e := range endpoints {
			portName, _ := e.(map[string]any)["port"].(string)
			path, _ := e.(map[string]any)["path"].(string)
			if path == "" {
				path = "/metrics"
			}
			for _, pod := range running {
				port := namedContainerPort(pod, portName)
				if port == 0 {
					t.Errorf("PodMonitor %s scrapes port %q, which pod %s does not declare", obj.GetName(), portName, pod.Name)
					continue
				}
				body, err := scrape(ctx, net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(int(port))), path)
				if err != nil {
					t.Errorf("PodMonitor %s: scraping pod %s port %s (%d): %v", obj.GetName(), pod.Name, portName, port, err)
					continue
				}
				served := servedMetrics(body)
				for _, want := range wantMetrics[obj.GetName()] {
					if !served[want] {
						t.Errorf("PodMonitor %s: pod %s's %s has no %s (%d bytes)", obj.GetName(), pod.Name, path, want, len(body))
					}
				}
				t.Logf("PodMonitor %s: pod %s port %s (%d) serves %d bytes of metrics", obj.GetName(), pod.Name, portName, port, len(body))
			}
		}
	}
	if monitors == 0 {
		t.Errorf("no PodMonitor rendered for %s with monitoring on", inst.Name)
	}
}

// servedMetrics are the metric names of a Prometheus text page.
func servedMetrics(body string) map[string]bool {
	names := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

// ruleMetrics are the metric names with a prefix that the expressions of
// one of the broker chart's alert rule files use (charts/strata-broker/
// rules), less those with an excluded prefix: the alerts must watch series
// the real exporters serve.
func ruleMetrics(t *testing.T, file, prefix string, exclude ...string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "charts", "strata-broker", "rules", file))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Expr string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	seen := map[string]bool{}
	var names []string
	token := regexp.MustCompile(regexp.QuoteMeta(prefix) + `[a-zA-Z0-9_]+`)
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
		next:
			for _, name := range token.FindAllString(r.Expr, -1) {
				for _, x := range exclude {
					if strings.HasPrefix(name, x) {
						continue next
					}
				}
				if !seen[name] {
					seen[name] = true
					names = append(names, name)
				}
			}
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		t.Fatalf("%s uses no %s* metric", file, prefix)
	}
	return names
}

func namedContainerPort(pod corev1.Pod, name string) int32 {
	for _, c := range pod.Spec.Containers {
		for _, port := range c.Ports {
			if port.Name == name {
				return port.ContainerPort
			}
		}
	}
	return 0
}

// scrape GETs a metrics page over plain HTTP, as the PodMonitors ask.
func scrape(ctx context.Context, addr, path string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, b)
	}
	return string(b), nil
}
