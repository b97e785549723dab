package postgres

import "github.com/strata-dev/strata/provisioners"

// MeshPlaintextPorts are the ports of an instance's pods that callers
// outside the mesh use in a meshed namespace: the operator's calls to the
// instance manager (which carry their own TLS) and Prometheus's scrapes of
// the instances and of PgBouncer. The instances' PeerAuthentications make
// them PERMISSIVE, and the tenant baseline's AuthorizationPolicy admits
// them without a mesh identity.
func MeshPlaintextPorts() []int { return []int{statusPort, metricsPort, poolerMetrics} }

// monitoredPorts are the ports of a pod that Prometheus scrapes: its
// exporter's and, in a meshed namespace, its sidecar's
// (provisioners.MeshMetricsPort). The sidecar's port is not among
// MeshPlaintextPorts: istio-init does not redirect it to Envoy's inbound
// listener, so neither PeerAuthentication nor AuthorizationPolicy sees
// its connections, and the NetworkPolicy is what confines it to the
// monitoring namespace.
func monitoredPorts(inst provisioners.Instance, exporter int) []int {
	if inst.Meshed {
		return []int{exporter, provisioners.MeshMetricsPort}
	}
	return []int{exporter}
}
