package postgres

// MeshPlaintextPorts are the ports of an instance's pods that callers
// outside the mesh use in a meshed namespace: the operator's calls to the
// instance manager (which carry their own TLS) and Prometheus's scrapes of
// the instances and of PgBouncer. The instances' PeerAuthentications make
// them PERMISSIVE, and the tenant baseline's AuthorizationPolicy admits
// them without a mesh identity.
func MeshPlaintextPorts() []int { return []int{statusPort, metricsPort, poolerMetrics} }
