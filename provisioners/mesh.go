package provisioners

import "k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

// Mesh metrics. In a namespace with Istio sidecars, every connection to or
// from a data pod that joins the mesh passes through the pod's Envoy, which
// counts it in Istio's standard TCP metrics: istio_tcp_connections_opened_total,
// istio_tcp_connections_closed_total, istio_tcp_sent_bytes_total and
// istio_tcp_received_bytes_total, labelled with who reported them (reporter
// "destination" for connections arriving at the pod), the two workloads,
// the connection's security policy (mutual_tls or none) and Envoy's
// response flags. The sidecar serves them itself on its Prometheus port,
// beside hundreds of envoy_* series; a mesh PodMonitor scrapes that port on
// exactly one instance's pods and keeps the istio_tcp_* series only.
//
// Only engines whose pods get sidecars render one: PostgreSQL (instances
// and PgBouncer). Redis and Kafka pods are kept out of the mesh (their
// builders say why), so their sidecars do not exist to be scraped.
const (
	// MeshMetricsPort is the sidecar's own Prometheus endpoint (Envoy's
	// statistics only). istio-init leaves it out of the inbound
	// redirection (with 15020 and 15021), so no PeerAuthentication or
	// AuthorizationPolicy applies to it: the instance's NetworkPolicies
	// alone decide who reaches it, and they admit the monitoring
	// namespace. 15020, the agent's port with metrics merging, is not
	// scraped: it would repeat the application's own series, which the
	// instance's PodMonitors already collect.
	MeshMetricsPort = 15090
	// MeshMetricsPortName is the name the sidecar injector gives the
	// istio-proxy container's port 15090.
	MeshMetricsPortName = "http-envoy-prom"
	// MeshMetricsPath is where Envoy serves Prometheus's format.
	MeshMetricsPath = "/stats/prometheus"
	// MeshMetricsKept is the metric-name regular expression the mesh
	// PodMonitor keeps; every other series the sidecar serves is dropped
	// at scrape time, so one meshed pod adds tens of series, not hundreds.
	MeshMetricsKept = "istio_tcp_.+"
	// MeshInstanceLabel is the label the mesh PodMonitor puts on every
	// series it scrapes (and on its targets' up): the instance id. The
	// alert rules select Strata's data pods by it, so series the platform
	// scrapes from other sidecars (or from these with its own monitors)
	// are not counted.
	MeshInstanceLabel = "strata_instance_id"
	// MeshMonitorSuffix ends the mesh PodMonitor's name: <instance object
	// name>-mesh, hence Prometheus Operator's job "<namespace>/<name>-mesh"
	// that the dashboards select.
	MeshMonitorSuffix = "-mesh"
)

// MeshPodMonitor is the PodMonitor of the Istio sidecars of an instance's
// pods: every pod with the instance's id label (the operators copy the
// instance's labels to all of its pods), scraped on the sidecar's
// Prometheus port, keeping only the istio_tcp_* series. name is the
// instance's object base name.
func MeshPodMonitor(inst Instance, name string) *unstructured.Unstructured {
	id := LabelValue(inst.ID)
	return NewObject(inst, "monitoring.coreos.com/v1", "PodMonitor", name+MeshMonitorSuffix, map[string]any{
		"selector": map[string]any{"matchLabels": map[string]any{LabelInstanceID: id}},
		"podMetricsEndpoints": []any{map[string]any{
			"port": MeshMetricsPortName,
			"path": MeshMetricsPath,
			"relabelings": []any{map[string]any{
				"action": "replace", "targetLabel": MeshInstanceLabel, "replacement": id,
			}},
			"metricRelabelings": []any{map[string]any{
				"action": "keep", "sourceLabels": []any{"__name__"}, "regex": MeshMetricsKept,
			}},
		}},
	})
}
