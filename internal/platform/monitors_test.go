//go:build linux

package platform

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/strata-dev/strata/provisioners"
)

// checkMonitorsSelectRealPods renders an instance's objects as the broker
// would with monitoring on (the platform has no Prometheus Operator, so
// the broker runs with it off and the monitors are not applied), and checks
// each PodMonitor against the running pods: its selector matches at least
// one pod of the instance, every matched pod has a container port of the
// endpoint's name, and that port answers GET /metrics with Prometheus text
// from the host (which routes to the pod range) as Prometheus would scrape
// it. wantMetric is a metric name every scrape must contain.
func checkMonitorsSelectRealPods(ctx context.Context, t *testing.T, p *Platform, prov provisioners.Provisioner, inst provisioners.Instance, wantMetric map[string]string) {
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
				if want := wantMetric[obj.GetName()]; !strings.Contains(body, want) {
					t.Errorf("PodMonitor %s: pod %s's %s has no %s (%d bytes)", obj.GetName(), pod.Name, path, want, len(body))
				}
				t.Logf("PodMonitor %s: pod %s port %s (%d) serves %d bytes of metrics", obj.GetName(), pod.Name, portName, port, len(body))
			}
		}
	}
	if monitors == 0 {
		t.Errorf("no PodMonitor rendered for %s with monitoring on", inst.Name)
	}
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
