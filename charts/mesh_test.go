package charts_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/prometheus/prometheus/promql/parser"
	apiext "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/charts/dashboards"
	"github.com/strata-dev/strata/internal/controlplane"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/postgres"
)

// istioTCPMetrics are Istio's standard TCP metrics, the ones a sidecar
// serves for every TCP connection it proxies.
var istioTCPMetrics = map[string]bool{
	"istio_tcp_connections_opened_total": true,
	"istio_tcp_connections_closed_total": true,
	"istio_tcp_sent_bytes_total":         true,
	"istio_tcp_received_bytes_total":     true,
}

// selectorsOf lists the vector selectors of a PromQL expression.
func selectorsOf(t *testing.T, expr string) []*parser.VectorSelector {
	t.Helper()
	node, err := parser.ParseExpr(expr)
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	var out []*parser.VectorSelector
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	return out
}

// meshMonitorOf renders a meshed standard PostgreSQL instance and returns
// its mesh PodMonitor.
func meshMonitorOf(t *testing.T, g Gomega) (provisioners.Instance, map[string]any) {
	t.Helper()
	svc, plan, err := catalog.Default().Find(catalog.PostgresServiceID, catalog.PostgresStandardID)
	g.Expect(err).NotTo(HaveOccurred())
	id := "5f0c6d8e-3b1a-4c2e-9f4d-2a7b8c9d0e1f"
	inst := provisioners.Instance{ID: id, Name: provisioners.ResourceName("pg-", id), Namespace: "team-a", Service: svc, Plan: plan, Meshed: true}
	conf := postgres.DefaultConfig()
	conf.Backup.Bucket = "b"
	objs, err := (&postgres.Provisioner{Config: conf}).Build(inst)
	g.Expect(err).NotTo(HaveOccurred())
	var monitor map[string]any
	for _, o := range objs {
		if o.GetKind() == "PodMonitor" && strings.HasSuffix(o.GetName(), provisioners.MeshMonitorSuffix) {
			monitor = o.Object
		}
	}
	g.Expect(monitor).NotTo(BeNil(), "no mesh PodMonitor for a meshed instance")
	return inst, monitor
}

// TestMeshPodMonitorMatchesTheCRD: the mesh PodMonitor is valid against
// prometheus-operator's PodMonitor CRD (v0.85.0, the platform's, read
// from the Go module cache) and the API server would prune none of its
// fields (a misspelt relabelling field would vanish, and with it the
// cardinality bound); the check catches both mistakes.
func TestMeshPodMonitorMatchesTheCRD(t *testing.T) {
	g := NewWithT(t)
	dirs, err := controlplane.ModuleCRDDirs()
	g.Expect(err).NotTo(HaveOccurred())
	var raw []byte
	for _, d := range dirs {
		if b, err := os.ReadFile(filepath.Join(d, "monitoring.coreos.com_podmonitors.yaml")); err == nil {
			raw = b
		}
	}
	g.Expect(raw).NotTo(BeEmpty(), "no PodMonitor CRD in %v", dirs)
	var crd apiextv1.CustomResourceDefinition
	g.Expect(yaml.Unmarshal(raw, &crd)).To(Succeed())
	var schema *apiext.JSONSchemaProps
	for _, v := range crd.Spec.Versions {
		if v.Name == "v1" {
			schema = &apiext.JSONSchemaProps{}
			g.Expect(apiextv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, schema, nil)).To(Succeed())
		}
	}
	g.Expect(schema).NotTo(BeNil())
	validator, _, err := validation.NewSchemaValidator(schema)
	g.Expect(err).NotTo(HaveOccurred())
	structural, err := structuralschema.NewStructural(schema)
	g.Expect(err).NotTo(HaveOccurred())
	check := func(obj map[string]any) (invalid field.ErrorList, pruned []string) {
		invalid = validation.ValidateCustomResource(field.NewPath(""), obj, validator)
		copied := map[string]any{}
		b, _ := yaml.Marshal(obj)
		g.Expect(yaml.Unmarshal(b, &copied)).To(Succeed())
		pruned = pruning.PruneWithOptions(copied, structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
		return invalid, pruned
	}

	_, monitor := meshMonitorOf(t, g)
	invalid, pruned := check(monitor)
	g.Expect(invalid).To(BeEmpty())
	g.Expect(pruned).To(BeEmpty(), "fields the API server would drop")

	// The check can fail.
	bad := map[string]any{}
	b, _ := yaml.Marshal(monitor)
	g.Expect(yaml.Unmarshal(b, &bad)).To(Succeed())
	ep := bad["spec"].(map[string]any)["podMetricsEndpoints"].([]any)[0].(map[string]any)
	ep["metricRelabelConfigs"] = ep["metricRelabelings"] // Prometheus's spelling, not the CRD's
	ep["metricRelabelings"].([]any)[0].(map[string]any)["action"] = "keepall"
	invalid, pruned = check(bad)
	g.Expect(invalid).NotTo(BeEmpty())
	g.Expect(pruned).To(ContainElement(ContainSubstring("metricRelabelConfigs")))
}

// TestMeshMetricsAreScraped: Istio cannot run here (Envoy cannot be
// built on the test machine, docs/platform.md), so, like Kafka's, the
// mesh series are checked by name: every istio_* metric a dashboard
// query or an alert rule uses is one of Istio's standard TCP metrics and
// one the mesh PodMonitor the broker renders for a meshed PostgreSQL
// instance keeps; the dashboards select that PodMonitor's job and the
// rules the label it puts on every series.
func TestMeshMetricsAreScraped(t *testing.T) {
	g := NewWithT(t)
	inst, monitor := meshMonitorOf(t, g)
	// The dashboards select job "<namespace>/<instance>-mesh", where the
	// instance variable is the Cluster's name (its PodMonitor's job).
	g.Expect(get(t, monitor, "metadata", "name")).To(Equal(postgres.NamesOf(inst).Cluster + "-mesh"))
	keep := get(t, monitor, "spec", "podMetricsEndpoints", 0, "metricRelabelings", 0)
	g.Expect(keep).To(HaveKeyWithValue("action", "keep"))
	g.Expect(keep).To(HaveKeyWithValue("sourceLabels", []any{"__name__"}))
	// Prometheus anchors relabelling regular expressions.
	kept := regexp.MustCompile("^(?:" + keep.(map[string]any)["regex"].(string) + ")$")
	g.Expect(get(t, monitor, "spec", "podMetricsEndpoints", 0, "relabelings", 0, "targetLabel")).To(Equal(provisioners.MeshInstanceLabel))
	// The check can fail: the envoy_* series are dropped.
	g.Expect(kept.MatchString("envoy_cluster_upstream_cx_total")).To(BeFalse())
	g.Expect(kept.MatchString("istio_requests_total")).To(BeFalse())

	checked := 0
	for _, d := range dashboards.All() {
		b, err := d.JSON()
		g.Expect(err).NotTo(HaveOccurred())
		m, err := dashboards.ReadModel(b)
		g.Expect(err).NotTo(HaveOccurred())
		values := variableValues(m)
		values["instance"] = "pg-x"
		for _, p := range m.Panels {
			for _, expr := range p.Exprs {
				expanded, err := dashboards.Substitute(expr, values)
				g.Expect(err).NotTo(HaveOccurred())
				for _, vs := range selectorsOf(t, expanded) {
					if !strings.HasPrefix(vs.Name, "istio_") {
						continue
					}
					checked++
					g.Expect(istioTCPMetrics).To(HaveKey(vs.Name), "dashboard %s panel %q: not a standard Istio TCP metric", d.File, p.Title)
					g.Expect(kept.MatchString(vs.Name)).To(BeTrue(), "dashboard %s panel %q: the mesh PodMonitor drops %s", d.File, p.Title, vs.Name)
					g.Expect(vs.String()).To(ContainSubstring(`job="`+values["namespace"]+`/pg-x-mesh"`), "dashboard %s panel %q", d.File, p.Title)
				}
			}
		}
	}
	g.Expect(checked).To(BeNumerically(">=", 5))

	b, err := os.ReadFile(rulesDir() + "/mesh.rules.yaml")
	g.Expect(err).NotTo(HaveOccurred())
	var rf ruleFile
	g.Expect(yaml.Unmarshal(b, &rf)).To(Succeed())
	rules := 0
	for _, gr := range rf.Groups {
		for _, r := range gr.Rules {
			for _, vs := range selectorsOf(t, r.Expr) {
				if strings.HasPrefix(vs.Name, "istio_") {
					g.Expect(istioTCPMetrics).To(HaveKey(vs.Name), "%s", r.Alert)
					g.Expect(kept.MatchString(vs.Name)).To(BeTrue(), "%s: the mesh PodMonitor drops %s", r.Alert, vs.Name)
				}
				if strings.HasPrefix(vs.Name, "istio_") || vs.Name == "up" {
					// Only the mesh PodMonitor's series.
					g.Expect(vs.String()).To(ContainSubstring(provisioners.MeshInstanceLabel+`!=""`), "%s", r.Alert)
				}
			}
			rules++
		}
	}
	g.Expect(rules).To(BeNumerically(">=", 4))
	// And other files leave the mesh's series alone.
	for _, f := range ruleFiles(t) {
		if strings.HasSuffix(f, "/mesh.rules.yaml") {
			continue
		}
		b, _ := os.ReadFile(f)
		g.Expect(string(b)).NotTo(ContainSubstring("istio_"), f)
	}
}
