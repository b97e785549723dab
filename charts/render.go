package charts

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strings"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	kjson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/yaml"
)

// BrokerReleaseName is the Helm release name RenderBroker renders with. The
// chart's resource names derive from it ("strata-broker", "strata-broker-tls",
// ...).
const BrokerReleaseName = "strata-broker"

// RenderKubeVersion is the Kubernetes version RenderBroker presents to the
// chart (.Capabilities.KubeVersion). It satisfies the chart's kubeVersion
// constraint; Helm's library default (v1.20) does not.
const RenderKubeVersion = "v1.31.0"

// BrokerChartDir returns the absolute path of the strata-broker chart,
// resolved from this source file so it works from any package's tests.
func BrokerChartDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("charts: cannot locate render.go")
	}
	return filepath.Join(filepath.Dir(file), "strata-broker")
}

// RenderBroker renders the strata-broker chart as release BrokerReleaseName in
// namespace, with values overriding the chart's values.yaml (nested maps must
// be map[string]any, as Helm coalesces only those). It returns the rendered
// objects in Helm's install order (RBAC and configuration before workloads,
// custom resources last), decoded as unstructured JSON objects: integers are
// int64 and floats float64, so each can be used as
// unstructured.Unstructured{Object: obj} and applied to an API server.
// Template failures, such as a missing credentials.password, are returned as
// errors.
func RenderBroker(values map[string]any, namespace string) ([]map[string]any, error) {
	return render(BrokerChartDir(), BrokerReleaseName, values, namespace)
}

// PlatformChartDir returns the absolute path of the strata-platform chart.
func PlatformChartDir() string {
	return filepath.Join(filepath.Dir(BrokerChartDir()), "strata-platform")
}

// RenderPlatform renders the strata-platform chart as release
// "strata-platform" in namespace, like RenderBroker.
func RenderPlatform(values map[string]any, namespace string) ([]map[string]any, error) {
	return render(PlatformChartDir(), "strata-platform", values, namespace)
}

// PlatformOperatorsChartDir returns the absolute path of the
// strata-platform-operators chart (the Flux bundle of the operators).
func PlatformOperatorsChartDir() string {
	return filepath.Join(filepath.Dir(BrokerChartDir()), "strata-platform-operators")
}

// PlatformOperatorsPrerequisites are the API versions the
// strata-platform-operators chart checks the cluster serves: Flux's
// HelmRelease and sources, cert-manager and the Prometheus Operator.
var PlatformOperatorsPrerequisites = []string{
	"helm.toolkit.fluxcd.io/v2",
	"source.toolkit.fluxcd.io/v1",
	"cert-manager.io/v1",
	"monitoring.coreos.com/v1",
}

// RenderPlatformOperators renders the strata-platform-operators chart as
// release "strata-platform-operators" in namespace, like RenderBroker, for a
// cluster that serves apiVersions besides the built-in ones (the chart
// checks its prerequisites against them, as helm install does against a
// live cluster).
func RenderPlatformOperators(values map[string]any, namespace string, apiVersions ...string) ([]map[string]any, error) {
	return renderWith(PlatformOperatorsChartDir(), "strata-platform-operators", values, namespace, apiVersions)
}

func render(dir, release string, values map[string]any, namespace string) ([]map[string]any, error) {
	return renderWith(dir, release, values, namespace, nil)
}

func renderWith(dir, release string, values map[string]any, namespace string, apiVersions []string) ([]map[string]any, error) {
	chrt, err := loader.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("load chart: %w", err)
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.APIVersions = append(append(chartutil.VersionSet{}, caps.APIVersions...), apiVersions...)
	caps.KubeVersion = chartutil.KubeVersion{Version: RenderKubeVersion, Major: "1", Minor: "31"}
	if kv := chrt.Metadata.KubeVersion; kv != "" && !chartutil.IsCompatibleRange(kv, caps.KubeVersion.String()) {
		return nil, fmt.Errorf("chart requires kubeVersion %s, rendering for %s", kv, caps.KubeVersion.String())
	}
	if values == nil {
		values = map[string]any{}
	}
	opts := chartutil.ReleaseOptions{
		Name:      release,
		Namespace: namespace,
		Revision:  1,
		IsInstall: true,
	}
	vals, err := chartutil.ToRenderValues(chrt, values, opts, caps)
	if err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	files, err := engine.Render(chrt, vals)
	if err != nil {
		return nil, fmt.Errorf("render chart: %w", err)
	}
	// Only manifests: NOTES.txt is rendered (so its errors surface) but is
	// not an object.
	for name := range files {
		if ext := filepath.Ext(name); ext != ".yaml" && ext != ".yml" {
			delete(files, name)
		}
	}
	hooks, manifests, err := releaseutil.SortManifests(files, caps.APIVersions, releaseutil.InstallOrder)
	if err != nil {
		return nil, fmt.Errorf("split manifests: %w", err)
	}
	if len(hooks) > 0 {
		return nil, fmt.Errorf("chart renders %d hooks; rendering does not support hooks", len(hooks))
	}
	objs := make([]map[string]any, 0, len(manifests))
	for _, m := range manifests {
		if strings.TrimSpace(m.Content) == "" {
			continue
		}
		js, err := yaml.YAMLToJSON([]byte(m.Content))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Name, err)
		}
		var obj map[string]any
		if err := kjson.Unmarshal(js, &obj); err != nil {
			return nil, fmt.Errorf("%s: %w", m.Name, err)
		}
		if len(obj) == 0 {
			continue
		}
		objs = append(objs, obj)
	}
	return objs, nil
}
