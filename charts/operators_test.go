package charts_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/yaml"

	"github.com/strata-dev/strata/charts"
)

// renderOperators renders the Flux bundle for a cluster that has every
// prerequisite.
func renderOperators(t *testing.T, values map[string]any) []map[string]any {
	t.Helper()
	objs, err := charts.RenderPlatformOperators(values, "flux-system", charts.PlatformOperatorsPrerequisites...)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return objs
}

// named returns the object of kind and name, failing the test if there is
// not exactly one.
func named(t *testing.T, objs []map[string]any, kind, name string) map[string]any {
	t.Helper()
	var out []map[string]any
	for _, o := range find(objs, kind) {
		if get(t, o, "metadata", "name") == name {
			out = append(out, o)
		}
	}
	if len(out) != 1 {
		t.Fatalf("want one %s %s, got %d", kind, name, len(out))
	}
	return out[0]
}

func names(t *testing.T, objs []map[string]any) []string {
	var out []string
	for _, o := range objs {
		out = append(out, get(t, o, "metadata", "name").(string))
	}
	return out
}

// The pinned versions, read from the chart's values.yaml: the tests below
// check the HelmReleases carry exactly these, and docs/install.md names
// them.
type pins struct {
	CloudnativePG     struct{ Version string } `json:"cloudnativePG"`
	BarmanCloudPlugin struct{ Version string } `json:"barmanCloudPlugin"`
	RedisOperator     struct {
		Spotahome  struct{ Version string }
		Freshworks struct{ URL, Version string }
	} `json:"redisOperator"`
	Strimzi struct{ URL, Version string } `json:"strimzi"`
}

func pinned(t *testing.T) pins {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(charts.PlatformOperatorsChartDir(), "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var p pins
	if err := yaml.Unmarshal(data, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPlatformOperatorsPinnedVersions(t *testing.T) {
	g := NewWithT(t)
	p := pinned(t)
	// The versions the broker is built and tested against
	// (upstream-facts: chart 0.29.0 = CloudNativePG 1.30.0; spotahome 3.2.9
	// is the last chart that installs). The plugin chart is the one that
	// ships v0.14.0 and the fork's the one of its v3.3.5 tag: the versions
	// of the CRDs the integration tests validate against.
	g.Expect(p.CloudnativePG.Version).To(Equal("0.29.0"))
	g.Expect(p.BarmanCloudPlugin.Version).To(Equal("0.7.1"))
	g.Expect(p.RedisOperator.Spotahome.Version).To(Equal("3.2.9"))
	g.Expect(p.RedisOperator.Freshworks.Version).To(Equal("3.3.5"))
	// The fork's charts are under the freshworks-oss GHCR namespace, not
	// freshworks (where only its images are).
	g.Expect(p.RedisOperator.Freshworks.URL).To(Equal("oci://ghcr.io/freshworks-oss/charts/redis-operator"))
	g.Expect(p.Strimzi.Version).To(Equal("1.2.0"))

	objs := renderOperators(t, nil)
	for _, c := range []struct{ release, namespace, version string }{
		{"cloudnative-pg", "cnpg-system", p.CloudnativePG.Version},
		{"plugin-barman-cloud", "cnpg-system", p.BarmanCloudPlugin.Version},
		{"redis-operator", "redis-operator", p.RedisOperator.Spotahome.Version},
	} {
		hr := named(t, objs, "HelmRelease", c.release)
		g.Expect(get(t, hr, "metadata", "namespace")).To(Equal(c.namespace), c.release)
		g.Expect(get(t, hr, "spec", "chart", "spec", "version")).To(Equal(c.version), "%s is pinned", c.release)
		g.Expect(get(t, hr, "spec", "releaseName")).To(Equal(c.release))
	}
	// Strimzi's chart is an OCI artifact: the tag is the pin.
	oci := named(t, objs, "OCIRepository", "strimzi-kafka-operator")
	g.Expect(get(t, oci, "spec", "ref", "tag")).To(Equal(p.Strimzi.Version))
	g.Expect(get(t, oci, "spec", "url")).To(Equal(p.Strimzi.URL))
	g.Expect(get(t, oci, "spec", "ref")).NotTo(HaveKey("semver"), "an exact tag, not a range")
	hr := named(t, objs, "HelmRelease", "strimzi-kafka-operator")
	g.Expect(get(t, hr, "spec", "chartRef")).To(Equal(map[string]any{"kind": "OCIRepository", "name": "strimzi-kafka-operator"}))

	// No version range anywhere: every HelmRelease's version is exact.
	for _, hr := range find(objs, "HelmRelease") {
		if spec, ok := get(t, hr, "spec").(map[string]any)["chart"]; ok {
			v := spec.(map[string]any)["spec"].(map[string]any)["version"].(string)
			g.Expect(v).To(MatchRegexp(`^\d+\.\d+\.\d+$`), "%s", get(t, hr, "metadata", "name"))
		}
	}
}

func TestPlatformOperatorsNamespacesAndOrder(t *testing.T) {
	g := NewWithT(t)
	objs := renderOperators(t, nil)
	nss := find(objs, "Namespace")
	g.Expect(names(t, nss)).To(ConsistOf("cnpg-system", "redis-operator", "kafka"))
	for _, ns := range nss {
		name := get(t, ns, "metadata", "name")
		g.Expect(get(t, ns, "metadata", "labels", "kubernetes.io/metadata.name")).To(Equal(name), "the broker's NetworkPolicies select namespaces by this label")
		g.Expect(get(t, ns, "metadata", "annotations", "helm.sh/resource-policy")).To(Equal("keep"), "helm uninstall must not delete %s", name)
	}
	// Helm creates namespaces before anything that lives in them.
	g.Expect(objs[0]["kind"]).To(Equal("Namespace"))

	// The plugin waits for the operator; nothing else depends on anything.
	for _, hr := range find(objs, "HelmRelease") {
		deps, has := get(t, hr, "spec").(map[string]any)["dependsOn"]
		if get(t, hr, "metadata", "name") == "plugin-barman-cloud" {
			g.Expect(deps).To(Equal([]any{map[string]any{"name": "cloudnative-pg"}}))
			continue
		}
		g.Expect(has).To(BeFalse(), "%s", get(t, hr, "metadata", "name"))
	}

	// Every source a release names exists in the release's namespace.
	for _, hr := range find(objs, "HelmRelease") {
		ns := get(t, hr, "metadata", "namespace")
		spec := get(t, hr, "spec").(map[string]any)
		var kind, name any
		if ref, ok := spec["chartRef"].(map[string]any); ok {
			kind, name = ref["kind"], ref["name"]
		} else {
			kind, name = get(t, hr, "spec", "chart", "spec", "sourceRef", "kind"), get(t, hr, "spec", "chart", "spec", "sourceRef", "name")
		}
		src := named(t, objs, kind.(string), name.(string))
		g.Expect(get(t, src, "metadata", "namespace")).To(Equal(ns), "no cross-namespace references")
	}
}

// Every release installs and upgrades its chart's CRDs, retries and rolls
// back, corrects drift, and sets resources on its operator.
func TestPlatformOperatorsReleasePolicies(t *testing.T) {
	objs := renderOperators(t, nil)
	resourcesPath := map[string][]any{
		"cloudnative-pg":         {"spec", "values", "resources"},
		"plugin-barman-cloud":    {"spec", "values", "resources"},
		"redis-operator":         {"spec", "values", "resources"},
		"strimzi-kafka-operator": {"spec", "values", "resources"},
	}
	hrs := find(objs, "HelmRelease")
	if len(hrs) != len(resourcesPath) {
		t.Fatalf("want %d HelmReleases, got %v", len(resourcesPath), names(t, hrs))
	}
	for _, hr := range hrs {
		name := get(t, hr, "metadata", "name").(string)
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(get(t, hr, "spec", "install", "crds")).To(Equal("CreateReplace"))
			g.Expect(get(t, hr, "spec", "upgrade", "crds")).To(Equal("CreateReplace"))
			g.Expect(get(t, hr, "spec", "install", "remediation", "retries")).To(Equal(int64(3)))
			g.Expect(get(t, hr, "spec", "upgrade", "remediation", "strategy")).To(Equal("rollback"))
			g.Expect(get(t, hr, "spec", "driftDetection", "mode")).To(Equal("enabled"))
			res := get(t, hr, resourcesPath[name]...)
			g.Expect(res).To(HaveKey("requests"))
			g.Expect(res).To(HaveKey("limits"))
			g.Expect(get(t, hr, append(resourcesPath[name], "limits", "memory")...)).NotTo(BeEmpty())
		})
	}
}

func TestPlatformOperatorsMonitoring(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(map[bool]string{true: "on", false: "off"}[on], func(t *testing.T) {
			g := NewWithT(t)
			objs := renderOperators(t, map[string]any{"monitoring": map[string]any{
				"enabled": on, "labels": map[string]any{"release": "kube-prometheus-stack"},
			}})
			cnpg := named(t, objs, "HelmRelease", "cloudnative-pg")
			g.Expect(get(t, cnpg, "spec", "values", "monitoring", "podMonitorEnabled")).To(Equal(on))
			g.Expect(get(t, cnpg, "spec", "values", "monitoring", "grafanaDashboard", "create")).To(Equal(on))
			redis := named(t, objs, "HelmRelease", "redis-operator")
			g.Expect(get(t, redis, "spec", "values", "monitoring", "enabled")).To(Equal(on))
			g.Expect(get(t, redis, "spec", "values", "monitoring", "serviceMonitor")).To(Equal(on))
			strimzi := named(t, objs, "HelmRelease", "strimzi-kafka-operator")
			g.Expect(get(t, strimzi, "spec", "values", "dashboards", "enabled")).To(Equal(on))
			if !on {
				g.Expect(find(objs, "PodMonitor")).To(BeEmpty())
				return
			}
			g.Expect(get(t, cnpg, "spec", "values", "monitoring", "podMonitorAdditionalLabels")).To(Equal(map[string]any{"release": "kube-prometheus-stack"}))
			pm := named(t, objs, "PodMonitor", "strimzi-cluster-operator")
			g.Expect(get(t, pm, "metadata", "namespace")).To(Equal("kafka"))
			g.Expect(get(t, pm, "metadata", "labels", "release")).To(Equal("kube-prometheus-stack"))
			g.Expect(get(t, pm, "spec", "selector", "matchLabels")).To(Equal(map[string]any{"strimzi.io/kind": "cluster-operator"}))
			// Strimzi's chart names the operator container's metrics port
			// (8080) "http".
			g.Expect(get(t, pm, "spec", "podMetricsEndpoints")).To(Equal([]any{map[string]any{"port": "http", "path": "/metrics"}}))
		})
	}
	// Without monitoring the Prometheus Operator is no prerequisite.
	g := NewWithT(t)
	_, err := charts.RenderPlatformOperators(map[string]any{"monitoring": map[string]any{"enabled": false}}, "flux-system",
		"helm.toolkit.fluxcd.io/v2", "source.toolkit.fluxcd.io/v1", "cert-manager.io/v1")
	g.Expect(err).NotTo(HaveOccurred())
}

// Strimzi watches exactly its own namespace, kafka, where the shared
// cluster is, plus the namespaces the platform team adds for the ha plan.
func TestPlatformOperatorsStrimziWatchesKafka(t *testing.T) {
	g := NewWithT(t)
	objs := renderOperators(t, nil)
	hr := named(t, objs, "HelmRelease", "strimzi-kafka-operator")
	g.Expect(get(t, hr, "metadata", "namespace")).To(Equal("kafka"))
	g.Expect(get(t, hr, "spec")).NotTo(HaveKey("targetNamespace"), "installed where the HelmRelease is: kafka")
	g.Expect(get(t, hr, "spec", "values", "watchNamespaces")).To(BeEmpty(), "the chart adds its own namespace")
	g.Expect(get(t, hr, "spec", "values", "watchAnyNamespace")).To(BeFalse())

	// The shared Kafka cluster of the platform chart is in that namespace.
	platform, err := charts.RenderPlatform(nil, "strata-system")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(get(t, one(t, platform, "Kafka"), "metadata", "namespace")).To(Equal("kafka"))

	objs = renderOperators(t, map[string]any{"strimzi": map[string]any{"extraWatchNamespaces": []any{"team-a", "team-b"}}})
	hr = named(t, objs, "HelmRelease", "strimzi-kafka-operator")
	g.Expect(get(t, hr, "spec", "values", "watchNamespaces")).To(Equal([]any{"team-a", "team-b"}))

	_, err = charts.RenderPlatformOperators(map[string]any{"strimzi": map[string]any{"extraWatchNamespaces": []any{"kafka"}}},
		"flux-system", charts.PlatformOperatorsPrerequisites...)
	g.Expect(err).To(MatchError(ContainSubstring("must not list kafka")))
}

// The redis-operator switch changes the chart's source: spotahome's Helm
// repository and chart 3.2.9, or the fork's OCI artifact.
func TestPlatformOperatorsRedisOperatorSwitch(t *testing.T) {
	p := pinned(t)
	for _, c := range []struct {
		source, regex string
		wantKind      string
		wantArgs      any
	}{
		{"spotahome", "", "HelmRepository", nil},
		{"spotahome", "^team-.*$", "HelmRepository", "--supported-namespaces-regex=^team-.*$"},
		{"freshworks", "", "OCIRepository", nil},
		{"freshworks", "^team-.*$", "OCIRepository", []any{"--supported-namespaces-regex=^team-.*$"}},
	} {
		t.Run(c.source+" "+c.regex, func(t *testing.T) {
			g := NewWithT(t)
			objs := renderOperators(t, map[string]any{"redisOperator": map[string]any{"source": c.source, "supportedNamespacesRegex": c.regex}})
			hr := named(t, objs, "HelmRelease", "redis-operator")
			src := named(t, objs, c.wantKind, "redis-operator")
			g.Expect(get(t, src, "metadata", "namespace")).To(Equal("redis-operator"))
			spec := get(t, hr, "spec").(map[string]any)
			if c.source == "spotahome" {
				g.Expect(spec).NotTo(HaveKey("chartRef"))
				g.Expect(get(t, hr, "spec", "chart", "spec", "chart")).To(Equal("redis-operator"))
				g.Expect(get(t, hr, "spec", "chart", "spec", "sourceRef", "kind")).To(Equal("HelmRepository"))
				g.Expect(get(t, src, "spec", "url")).To(HavePrefix("https://"))
				g.Expect(find(objs, "OCIRepository")).To(HaveLen(1), "Strimzi's only")
			} else {
				g.Expect(spec).NotTo(HaveKey("chart"))
				g.Expect(spec["chartRef"]).To(Equal(map[string]any{"kind": "OCIRepository", "name": "redis-operator"}))
				g.Expect(get(t, src, "spec", "url")).To(Equal(p.RedisOperator.Freshworks.URL))
				g.Expect(get(t, src, "spec", "ref", "tag")).To(Equal(p.RedisOperator.Freshworks.Version))
				g.Expect(find(objs, "HelmRepository")).To(HaveLen(1), "CloudNativePG's only")
			}
			if c.wantArgs == nil {
				g.Expect(get(t, hr, "spec", "values")).NotTo(HaveKey("image"), "every namespace by default")
			} else {
				g.Expect(get(t, hr, "spec", "values", "image", "cli_args")).To(Equal(c.wantArgs))
			}
		})
	}
	g := NewWithT(t)
	_, err := charts.RenderPlatformOperators(map[string]any{"redisOperator": map[string]any{"source": "ot-container-kit"}},
		"flux-system", charts.PlatformOperatorsPrerequisites...)
	g.Expect(err).To(MatchError(ContainSubstring("spotahome or freshworks")))
}

func TestPlatformOperatorsPrerequisites(t *testing.T) {
	g := NewWithT(t)
	_, err := charts.RenderPlatformOperators(nil, "flux-system")
	for _, api := range charts.PlatformOperatorsPrerequisites {
		g.Expect(err).To(MatchError(ContainSubstring(api)), "every missing API is named at once")
	}
	g.Expect(err).To(MatchError(ContainSubstring("install Flux 2.7")))
	objs, err := charts.RenderPlatformOperators(map[string]any{"prerequisites": map[string]any{"check": false}}, "flux-system")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(find(objs, "HelmRelease")).To(HaveLen(4))
	// Without the backup plugin cert-manager is no prerequisite.
	_, err = charts.RenderPlatformOperators(map[string]any{"barmanCloudPlugin": map[string]any{"enabled": false}}, "flux-system",
		"helm.toolkit.fluxcd.io/v2", "source.toolkit.fluxcd.io/v1", "monitoring.coreos.com/v1")
	g.Expect(err).NotTo(HaveOccurred())
}

// Each operator can be left out (a cluster that already runs one).
func TestPlatformOperatorsCanBeDisabled(t *testing.T) {
	for _, op := range []string{"cloudnativePG", "redisOperator", "strimzi"} {
		t.Run(op, func(t *testing.T) {
			g := NewWithT(t)
			objs := renderOperators(t, map[string]any{op: map[string]any{"enabled": false}})
			g.Expect(find(objs, "HelmRelease")).To(HaveLen(map[string]int{"cloudnativePG": 2, "redisOperator": 3, "strimzi": 3}[op]))
			g.Expect(find(objs, "Namespace")).To(HaveLen(2))
		})
	}
}

// docs/install.md names every pinned version, so the guide and the bundle
// do not drift apart.
func TestInstallGuideNamesPinnedVersions(t *testing.T) {
	g := NewWithT(t)
	doc, err := os.ReadFile(filepath.Join(filepath.Dir(charts.BrokerChartDir()), "..", "docs", "install.md"))
	g.Expect(err).NotTo(HaveOccurred())
	p := pinned(t)
	for what, v := range map[string]string{
		"cloudnative-pg":      p.CloudnativePG.Version,
		"plugin-barman-cloud": p.BarmanCloudPlugin.Version,
		"redis-operator":      p.RedisOperator.Spotahome.Version,
		"fork":                p.RedisOperator.Freshworks.Version,
		"strimzi":             p.Strimzi.Version,
		"fork's chart URL":    p.RedisOperator.Freshworks.URL,
		// The flux CLI whose controllers are helm-controller v1.4.3 and
		// source-controller v1.7.3, the CRDs the integration tests use.
		"flux CLI": "v2.7.3",
	} {
		g.Expect(strings.Contains(string(doc), v)).To(BeTrue(), "docs/install.md names %s %s", what, v)
	}
}

func TestPlatformOperatorsLint(t *testing.T) {
	lintChart(t, charts.PlatformOperatorsChartDir(), map[string]any{"prerequisites": map[string]any{"check": false}})
}
