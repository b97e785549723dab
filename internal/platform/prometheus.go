//go:build linux

package platform

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Prometheus on the platform: the Prometheus Operator built from its pinned
// module (the module whose CRDs the control plane already serves), its
// CRDs, RBAC and Deployment read from that module's example/ manifests at
// run time, and one Prometheus server in MonitoringNamespace (the namespace
// the broker's NetworkPolicies let in on the metrics ports) that selects
// every PodMonitor, ServiceMonitor and PrometheusRule of the cluster. The
// server is built from Prometheus's own module (buildPrometheusImage).
const (
	PrometheusOperatorVersion = "v0.85.0"
	prometheusOperatorModule  = "github.com/prometheus-operator/prometheus-operator"
	MonitoringNamespace       = "monitoring"
	// PrometheusName is the Prometheus resource; the operator names its
	// StatefulSet prometheus-<name>.
	PrometheusName = "strata"
	// PrometheusService is a ClusterIP Service in front of the server's
	// web port, for the host (which routes the Service range).
	PrometheusService = "strata-prometheus"
	// PrometheusInterval is the scrape and rule evaluation interval: short,
	// so that a test sees targets and alerts within seconds.
	PrometheusInterval = "10s"
	// PrometheusVersion is the server's version: prometheusModuleVersion
	// of its Go module (the one the operator's module requires).
	PrometheusVersion       = "3.5.0"
	prometheusModule        = "github.com/prometheus/prometheus"
	prometheusModuleVersion = "v0.305.0"
)

// copiedModule copies a downloaded module into the cache as
// <CacheDir>/src/<name> (writable, unlike the module cache) and lets
// complete add or change what the build needs, once: the marker file says
// the tree is complete. name must change whenever complete does.
func (p *Platform) copiedModule(ctx context.Context, name, moduleDir string, complete func(dir string) error) (string, error) {
	dir := filepath.Join(p.cfg.CacheDir, "src", name)
	done := filepath.Join(dir, ".assembled")
	if fileExists(done) {
		return dir, nil
	}
	os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	if err := run(ctx, "cp", "-r", moduleDir, dir); err != nil {
		return "", err
	}
	// The module cache's files are read-only; the tree must be writable
	// and removable.
	if err := run(ctx, "chmod", "-R", "u+w", dir); err != nil {
		return "", err
	}
	if err := complete(dir); err != nil {
		return "", err
	}
	return dir, os.WriteFile(done, nil, 0o644)
}

// prometheusOperatorSource assembles a buildable source tree of the
// Prometheus Operator. Its go.mod replaces its two nested modules
// (pkg/apis/monitoring and pkg/client) with their directories, which the
// module proxy's zip of the main module leaves out (a nested module is
// never part of its parent's zip): the tree is the main module with both
// nested modules, downloaded at the same version, copied in where the
// replace directives look.
func (p *Platform) prometheusOperatorSource(ctx context.Context) (string, error) {
	mainDir, err := moduleDir(ctx, prometheusOperatorModule, PrometheusOperatorVersion)
	if err != nil {
		return "", err
	}
	return p.copiedModule(ctx, "prometheus-operator-"+PrometheusOperatorVersion, mainDir, func(dir string) error {
		for _, nested := range []string{"pkg/apis/monitoring", "pkg/client"} {
			src, err := moduleDir(ctx, prometheusOperatorModule+"/"+nested, PrometheusOperatorVersion)
			if err != nil {
				return err
			}
			dst := filepath.Join(dir, filepath.FromSlash(nested))
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			os.RemoveAll(dst)
			if err := run(ctx, "cp", "-r", src, dst); err != nil {
				return err
			}
			if err := run(ctx, "chmod", "-R", "u+w", dst); err != nil {
				return err
			}
		}
		return nil
	})
}

// buildPrometheusOperatorImage builds the operator.
func (p *Platform) buildPrometheusOperatorImage(ctx context.Context) (string, string, error) {
	return p.buildPrometheusOperatorBinaryImage(ctx, "prometheus-operator", "./cmd/operator", "operator")
}

// buildPrometheusConfigReloaderImage builds the config reloader: the
// sidecar the operator injects into Prometheus's pod, which renders the
// configuration and tells Prometheus to reload.
func (p *Platform) buildPrometheusConfigReloaderImage(ctx context.Context) (string, string, error) {
	return p.buildPrometheusOperatorBinaryImage(ctx, "prometheus-config-reloader", "./cmd/prometheus-config-reloader", "prometheus-config-reloader")
}

func (p *Platform) buildPrometheusOperatorBinaryImage(ctx context.Context, name, pkg, file string) (string, string, error) {
	dir, err := p.prometheusOperatorSource(ctx)
	if err != nil {
		return "", "", err
	}
	version := strings.TrimPrefix(PrometheusOperatorVersion, "v")
	bin, err := p.buildModuleBinary(ctx, goBuild{
		name:      name,
		moduleDir: dir,
		pkg:       pkg,
		ldflags:   "-X github.com/prometheus/common/version.Version=" + version,
		// The key hashes the module's top-level files only; the version
		// pins the rest.
		extraKey: func() (string, error) { return PrometheusOperatorVersion, nil },
	})
	if err != nil {
		return "", "", err
	}
	return p.binaryImage(name, version, bin, []layerEntry{
		{path: "bin", mode: 0o755, dir: true},
		{path: "bin/" + file, mode: 0o755, source: bin},
	}, imageConfig{Entrypoint: []string{"/bin/" + file}, User: "65534:65534"})
}

// prometheusPlugins replaces the module's plugins/plugins.go (generated
// upstream by "make plugins" from plugins.yml): of the service discovery
// plugins only Kubernetes', the one the operator's configuration uses
// (file and HTTP discovery are always in, plugins/minimum.go). Leaving out
// the cloud providers' SDKs saves minutes of compilation.
const prometheusPlugins = `package plugins

import (
	// Register kubernetes plugin.
	_ "github.com/prometheus/prometheus/discovery/kubernetes"
)
`

// buildPrometheusImage builds the Prometheus server from its Go module,
// the version the operator's own module depends on (v0.305.0 is Prometheus
// 3.5.0, an LTS release). Not Debian's prometheus package: Debian builds
// it without Kubernetes service discovery (its 2.42 binary rejects the
// operator's kubernetes_sd_configs), which the operator's configuration
// is made of. The web UI's assets are not embedded (upstream's
// builtinassets tag needs an npm build): the HTTP API, which is what is
// used here, is complete without them.
func (p *Platform) buildPrometheusImage(ctx context.Context) (string, string, error) {
	mainDir, err := moduleDir(ctx, prometheusModule, prometheusModuleVersion)
	if err != nil {
		return "", "", err
	}
	dir, err := p.copiedModule(ctx, "prometheus-"+prometheusModuleVersion+"-"+hashStrings(prometheusPlugins), mainDir, func(dir string) error {
		return os.WriteFile(filepath.Join(dir, "plugins", "plugins.go"), []byte(prometheusPlugins), 0o644)
	})
	if err != nil {
		return "", "", err
	}
	bin, err := p.buildModuleBinary(ctx, goBuild{
		name:      "prometheus",
		moduleDir: dir,
		pkg:       "./cmd/prometheus",
		ldflags:   "-X github.com/prometheus/common/version.Version=" + PrometheusVersion,
		extraKey:  func() (string, error) { return hashStrings(prometheusModuleVersion, prometheusPlugins), nil },
	})
	if err != nil {
		return "", "", err
	}
	// The operator runs Prometheus as uid 1000 (its default pod security
	// context); /prometheus is its data volume.
	return p.binaryImage("prometheus", PrometheusVersion, bin, []layerEntry{
		{path: "bin", mode: 0o755, dir: true},
		{path: "bin/prometheus", mode: 0o755, source: bin},
		{path: "prometheus", mode: 0o775, uid: 1000, gid: 1000, dir: true},
	}, imageConfig{Entrypoint: []string{"/bin/prometheus"}, User: "1000:1000"})
}

// InstallPrometheus installs the monitoring.coreos.com CRDs, the Prometheus
// Operator and a Prometheus server selecting every monitor and rule of the
// cluster, and waits until the server is ready. It is idempotent. Install
// it before the broker: InstallBroker turns the broker's monitors and rules
// on when the CRDs are there.
func (p *Platform) InstallPrometheus(ctx context.Context) error {
	imgs, err := p.BuildImages(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	objs, err := moduleManifests(ctx, prometheusOperatorModule, PrometheusOperatorVersion, filepath.Join("example", "prometheus-operator-crd"))
	if err != nil {
		return err
	}
	ns, err := decodeManifest([]byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: " + MonitoringNamespace + "}\n"))
	if err != nil {
		return err
	}
	objs = append(objs, ns...)
	dir, err := moduleDir(ctx, prometheusOperatorModule, PrometheusOperatorVersion)
	if err != nil {
		return err
	}
	operator, err := prometheusOperatorObjects(filepath.Join(dir, "example", "rbac", "prometheus-operator"), imgs)
	if err != nil {
		return err
	}
	objs = append(objs, operator...)
	// The CRDs are large: server-side apply keeps them out of an
	// annotation (a client-side apply would exceed its size limit).
	if err := p.applyObjects(ctx, objs); err != nil {
		return err
	}
	if err := p.WaitForDeployment(ctx, MonitoringNamespace, "prometheus-operator", 5*time.Minute); err != nil {
		return err
	}
	if err := p.Apply(ctx, []byte(prometheusManifest(imgs.Prometheus))); err != nil {
		return err
	}
	if err := p.waitForPrometheus(ctx, 5*time.Minute); err != nil {
		return err
	}
	p.cfg.Log("platform: Prometheus Operator %s and Prometheus %s ready in %s", PrometheusOperatorVersion, tagOf(imgs.Prometheus), time.Since(start).Round(time.Second))
	return nil
}

// prometheusOperatorObjects reads the operator's ServiceAccount, ClusterRole,
// ClusterRoleBinding and Deployment from the module's example/rbac
// manifests, moved to MonitoringNamespace and pointed at the local images.
func prometheusOperatorObjects(dir string, imgs Images) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	for _, name := range []string{"service-account", "cluster-role", "cluster-role-binding", "deployment"} {
		f := filepath.Join(dir, "prometheus-operator-"+name+".yaml")
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("platform: the Prometheus Operator's manifests: %w", err)
		}
		decoded, err := decodeManifest(b)
		if err != nil {
			return nil, fmt.Errorf("platform: %s: %w", f, err)
		}
		for _, obj := range decoded {
			switch obj.GetKind() {
			case "ServiceAccount":
				obj.SetNamespace(MonitoringNamespace)
			case "ClusterRoleBinding":
				subjects, _, _ := unstructured.NestedSlice(obj.Object, "subjects")
				for _, s := range subjects {
					s.(map[string]any)["namespace"] = MonitoringNamespace
				}
				if err := unstructured.SetNestedSlice(obj.Object, subjects, "subjects"); err != nil {
					return nil, err
				}
			case "Deployment":
				obj.SetNamespace(MonitoringNamespace)
				if err := useLocalPrometheusOperatorImages(obj, imgs); err != nil {
					return nil, err
				}
			}
			objs = append(objs, obj)
		}
	}
	return objs, nil
}

// useLocalPrometheusOperatorImages sets the operator's image and the
// config reloader's (a flag: the operator injects it into Prometheus's
// pod), IfNotPresent since there is no registry, and drops the kubelet
// Service the example asks the operator to maintain (nothing scrapes the
// kubelet here).
func useLocalPrometheusOperatorImages(deploy *unstructured.Unstructured, imgs Images) error {
	containers, _, err := unstructured.NestedSlice(deploy.Object, "spec", "template", "spec", "containers")
	if err != nil {
		return fmt.Errorf("platform: the Prometheus Operator Deployment's containers: %w", err)
	}
	if len(containers) != 1 {
		return fmt.Errorf("platform: the Prometheus Operator Deployment has %d containers, want 1", len(containers))
	}
	c := containers[0].(map[string]any)
	c["image"] = imgs.PrometheusOperator
	c["imagePullPolicy"] = "IfNotPresent"
	args, _, _ := unstructured.NestedStringSlice(c, "args")
	var kept []any
	for _, a := range args {
		if strings.HasPrefix(a, "--prometheus-config-reloader=") || strings.HasPrefix(a, "--kubelet-") {
			continue
		}
		kept = append(kept, a)
	}
	kept = append(kept, "--prometheus-config-reloader="+imgs.PrometheusConfigReloader)
	c["args"] = kept
	return unstructured.SetNestedSlice(deploy.Object, containers, "spec", "template", "spec", "containers")
}

// prometheusManifest is the Prometheus server: its ServiceAccount and the
// RBAC to discover targets, the Prometheus resource selecting every
// PodMonitor, ServiceMonitor and PrometheusRule in every namespace, and a
// ClusterIP Service for the host. Its web port is plain HTTP, reachable
// only from the node and the host (docs/platform.md).
func prometheusManifest(image string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: ServiceAccount
metadata: {name: prometheus, namespace: %[1]s}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: strata-prometheus}
rules:
- apiGroups: [""]
  resources: [services, endpoints, pods]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get]
- nonResourceURLs: [/metrics]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: strata-prometheus}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: strata-prometheus}
subjects: [{kind: ServiceAccount, name: prometheus, namespace: %[1]s}]
---
apiVersion: monitoring.coreos.com/v1
kind: Prometheus
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  image: %[3]s
  imagePullPolicy: IfNotPresent
  version: v%[4]s
  replicas: 1
  serviceAccountName: prometheus
  scrapeInterval: %[5]s
  evaluationInterval: %[5]s
  podMonitorSelector: {}
  podMonitorNamespaceSelector: {}
  serviceMonitorSelector: {}
  serviceMonitorNamespaceSelector: {}
  ruleSelector: {}
  ruleNamespaceSelector: {}
  retention: 1d
  resources:
    requests: {cpu: 50m, memory: 200Mi}
    limits: {memory: 1Gi}
---
apiVersion: v1
kind: Service
metadata: {name: %[6]s, namespace: %[1]s}
spec:
  selector: {app.kubernetes.io/name: prometheus, app.kubernetes.io/instance: %[2]s}
  ports: [{name: web, port: 9090, targetPort: web}]
`, MonitoringNamespace, PrometheusName, image, tagOf(image), PrometheusInterval, PrometheusService)
}

// waitForPrometheus waits until the operator reports the Prometheus
// resource Available (its pod ready) and the Service has an endpoint.
func (p *Platform) waitForPrometheus(ctx context.Context, timeout time.Duration) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 2*time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		sts, err := p.Client.AppsV1().StatefulSets(MonitoringNamespace).Get(ctx, "prometheus-"+PrometheusName, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = fmt.Sprintf("StatefulSet ready %d/%d", sts.Status.ReadyReplicas, sts.Status.Replicas)
		return sts.Status.ReadyReplicas >= 1, nil
	})
	if err != nil {
		return fmt.Errorf("platform: Prometheus not ready after %s: %s; pods: %s", timeout, last, p.podSummary(ctx, MonitoringNamespace))
	}
	return nil
}

// PrometheusURL is the Prometheus server's base URL from the host (its
// Service's IP: the host routes the Service range into the node).
func (p *Platform) PrometheusURL(ctx context.Context) (string, error) {
	svc, err := p.Client.CoreV1().Services(MonitoringNamespace).Get(ctx, PrometheusService, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("platform: the Prometheus Service (did InstallPrometheus run?): %w", err)
	}
	return "http://" + svc.Spec.ClusterIP + ":9090", nil
}

// prometheusOperatorInstalled says whether the monitoring.coreos.com CRDs
// the broker's chart renders objects of are served: then the broker gets
// its monitors and rules on (the product's defaults).
func (p *Platform) prometheusOperatorInstalled(ctx context.Context) (bool, error) {
	_, err := p.Client.Discovery().ServerResourcesForGroupVersion("monitoring.coreos.com/v1")
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("platform: discovering monitoring.coreos.com/v1: %w", err)
	}
	return true, nil
}
