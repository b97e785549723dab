//go:build linux

package integration_test

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/strata-dev/strata/charts"
	"github.com/strata-dev/strata/provisioners"
)

// TestPlatformChartIsAccepted applies the platform chart (the shared Kafka
// cluster and its node pools, the shared PostgreSQL cluster with and
// without its backups) to the real API server with the Strimzi 1.2,
// CloudNativePG 1.30 and barman-cloud CRDs, as a platform engineer's helm
// install would.
func TestPlatformChartIsAccepted(t *testing.T) {
	g := NewWithT(t)
	w := sharedWorld(t)
	ctx := context.Background()
	w.ensureNamespace(t, "kafka", nil)
	kube, err := provisioners.NewKube(w.env.Config)
	g.Expect(err).NotTo(HaveOccurred())
	// The defaults, then with the shared PostgreSQL cluster's backups on
	// (its ObjectStore and ScheduledBackup render only with a bucket).
	for _, values := range []map[string]any{nil, {"sharedPostgres": map[string]any{"backup": map[string]any{
		"bucket": "acme-strata-backups", "iamRoleArn": "arn:aws:iam::111122223333:role/strata-backups",
	}}}} {
		objs, err := charts.RenderPlatform(values, brokerNS)
		g.Expect(err).NotTo(HaveOccurred())
		for _, o := range objs {
			u := &unstructured.Unstructured{Object: o}
			g.Expect(kube.Apply(ctx, []*unstructured.Unstructured{u})).To(Succeed(), "%s %s", u.GetKind(), u.GetName())
		}
	}
	w.get(g, kafkaGVR, "kafka", "strata-shared")
	g.Expect(w.list(kafkaNodePoolGVR, "kafka", "strimzi.io/cluster=strata-shared")).To(HaveLen(2))
	w.get(g, clusterGVR, "strata-postgres", "strata-shared")
	g.Expect(w.list(objectStoreGVR, "strata-postgres", "")).To(HaveLen(1))
	g.Expect(w.list(schedBackupGVR, "strata-postgres", "")).To(HaveLen(1))
}

var (
	helmReleaseGVR   = schema.GroupVersionResource{Group: "helm.toolkit.fluxcd.io", Version: "v2", Resource: "helmreleases"}
	helmRepoGVR      = schema.GroupVersionResource{Group: "source.toolkit.fluxcd.io", Version: "v1", Resource: "helmrepositories"}
	ociRepoGVR       = schema.GroupVersionResource{Group: "source.toolkit.fluxcd.io", Version: "v1", Resource: "ocirepositories"}
	namespaceGVR     = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	operatorReleases = map[string]string{
		"cloudnative-pg":         "cnpg-system",
		"plugin-barman-cloud":    "cnpg-system",
		"redis-operator":         "redis-operator",
		"strimzi-kafka-operator": "kafka",
	}
)

// servedAPIVersions is what helm install sees as .Capabilities.APIVersions
// on this API server: every group/version discovery lists.
func servedAPIVersions(t *testing.T, w *world) []string {
	t.Helper()
	groups, err := w.core.Discovery().ServerGroups()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, g := range groups.Groups {
		for _, v := range g.Versions {
			out = append(out, v.GroupVersion)
		}
	}
	return out
}

// TestPlatformOperatorsBundleIsAccepted renders the Flux bundle of the
// operators (charts/strata-platform-operators) against the API versions the
// real API server serves, as helm install would (its prerequisite checks
// pass only because the Flux, cert-manager and Prometheus Operator CRDs are
// installed), and applies every object, for each switch: the Flux 2.7
// HelmRelease and source CRDs (with their CEL rules: chart xor chartRef)
// accept them all. Switching the redis-operator to the fork on a live
// release replaces chart.spec with chartRef.
func TestPlatformOperatorsBundleIsAccepted(t *testing.T) {
	w := sharedWorld(t)
	ctx := context.Background()
	apis := servedAPIVersions(t, w)
	kube, err := provisioners.NewKube(w.env.Config)
	if err != nil {
		t.Fatal(err)
	}
	w.ensureNamespace(t, "team-kafka-ha", nil)

	// In this order: the fork case after spotahome's, so the same
	// HelmRelease moves from a HelmRepository chart to an OCIRepository.
	cases := []struct {
		name   string
		values map[string]any
	}{
		{"defaults (spotahome, monitoring on)", nil},
		{"monitoring off", map[string]any{"monitoring": map[string]any{"enabled": false}}},
		{"fork, scoped, Strimzi watching one more namespace", map[string]any{
			"redisOperator": map[string]any{"source": "freshworks", "supportedNamespacesRegex": "^team-.*$"},
			"strimzi":       map[string]any{"extraWatchNamespaces": []any{"team-kafka-ha"}},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			objs, err := charts.RenderPlatformOperators(c.values, "flux-system", apis...)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(len(objs)).To(BeNumerically(">=", 9))
			for _, o := range objs {
				u := &unstructured.Unstructured{Object: o}
				g.Expect(kube.Apply(ctx, []*unstructured.Unstructured{u})).To(Succeed(), "%s %s/%s", u.GetKind(), u.GetNamespace(), u.GetName())
			}
			for name, ns := range operatorReleases {
				hr := w.get(g, helmReleaseGVR, ns, name)
				crds, _, _ := unstructured.NestedString(hr.Object, "spec", "upgrade", "crds")
				g.Expect(crds).To(Equal("CreateReplace"), "%s upgrades its CRDs", name)
			}
			for _, ns := range []string{"cnpg-system", "redis-operator", "kafka"} {
				n := w.get(g, namespaceGVR, "", ns)
				g.Expect(n.GetAnnotations()).To(HaveKeyWithValue("helm.sh/resource-policy", "keep"))
			}
		})
	}

	g := NewWithT(t)
	// The schema is the real one: a release naming both a chart and a
	// chartRef is refused by the CRD's CEL rule.
	objs, err := charts.RenderPlatformOperators(nil, "flux-system", apis...)
	g.Expect(err).NotTo(HaveOccurred())
	for _, o := range objs {
		u := &unstructured.Unstructured{Object: o}
		if u.GetKind() == "HelmRelease" && u.GetName() == "cloudnative-pg" {
			u = u.DeepCopy()
			u.SetName("both-chart-and-chartref")
			g.Expect(unstructured.SetNestedMap(u.Object, map[string]any{"kind": "OCIRepository", "name": "x"}, "spec", "chartRef")).To(Succeed())
			g.Expect(kube.Apply(ctx, []*unstructured.Unstructured{u})).To(MatchError(ContainSubstring("either chart or chartRef must be set")))
		}
	}

	hr := w.get(g, helmReleaseGVR, "redis-operator", "redis-operator")
	_, hasChart, _ := unstructured.NestedMap(hr.Object, "spec", "chart")
	g.Expect(hasChart).To(BeFalse(), "the fork's release has no chart.spec left")
	ref, _, _ := unstructured.NestedString(hr.Object, "spec", "chartRef", "kind")
	g.Expect(ref).To(Equal("OCIRepository"))
	oci := w.get(g, ociRepoGVR, "redis-operator", "redis-operator")
	url, _, _ := unstructured.NestedString(oci.Object, "spec", "url")
	g.Expect(url).To(HavePrefix("oci://"))
	args, _, _ := unstructured.NestedStringSlice(hr.Object, "spec", "values", "image", "cli_args")
	g.Expect(args).To(Equal([]string{"--supported-namespaces-regex=^team-.*$"}))
	w.get(g, helmRepoGVR, "cnpg-system", "cnpg")
	w.get(g, podMonitorGVR, "kafka", "strimzi-cluster-operator")

	strimzi := w.get(g, helmReleaseGVR, "kafka", "strimzi-kafka-operator")
	watched, _, _ := unstructured.NestedStringSlice(strimzi.Object, "spec", "values", "watchNamespaces")
	g.Expect(watched).To(Equal([]string{"team-kafka-ha"}))

	// The shared Kafka cluster (TestPlatformChartIsAccepted) is in the
	// namespace Strimzi runs in, and so is watched.
	platform, err := charts.RenderPlatform(nil, brokerNS)
	g.Expect(err).NotTo(HaveOccurred())
	for _, o := range platform {
		if o["kind"] == "Kafka" {
			g.Expect((&unstructured.Unstructured{Object: o}).GetNamespace()).To(Equal(strimzi.GetNamespace()))
		}
	}
}

// TestPlatformOperatorsBundleChecksPrerequisites: against an API server
// without Flux, cert-manager or the Prometheus Operator the bundle does not
// render, and says what to install.
func TestPlatformOperatorsBundleChecksPrerequisites(t *testing.T) {
	w := sharedWorld(t)
	apis := servedAPIVersions(t, w)
	for _, missing := range charts.PlatformOperatorsPrerequisites {
		t.Run(missing, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(apis).To(ContainElement(missing), "the integration API server serves it")
			var without []string
			for _, a := range apis {
				if a != missing {
					without = append(without, a)
				}
			}
			_, err := charts.RenderPlatformOperators(nil, "flux-system", without...)
			g.Expect(err).To(MatchError(ContainSubstring("does not serve " + missing)))
		})
	}
}
