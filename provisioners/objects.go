package provisioners

import "k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

// The small vocabulary every engine's builders share: an object of the
// instance, NetworkPolicy rules, Service DNS names.

// NewObject is an object of the instance: in its namespace, with its
// labels, and spec (omitted when nil).
func NewObject(inst Instance, apiVersion, kind, name string, spec map[string]any) *unstructured.Unstructured {
	o := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": apiVersion,
		"kind":       kind,
		"metadata":   map[string]any{"name": name, "namespace": inst.Namespace, "labels": StringMap(inst.Labels())},
	}}
	if spec != nil {
		o.Object["spec"] = spec
	}
	return o
}

// NamespaceLabel is the label every namespace has with its own name.
const NamespaceLabel = "kubernetes.io/metadata.name"

// SameNamespace is a NetworkPolicy peer: every pod of the policy's
// namespace (the tenant's own workloads).
func SameNamespace() map[string]any { return map[string]any{"podSelector": map[string]any{}} }

// FromNamespace is a NetworkPolicy peer: every pod of namespace ns.
func FromNamespace(ns string) map[string]any {
	return map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{NamespaceLabel: ns}}}
}

// AllowFrom is an ingress rule: from the peer, to these TCP ports.
func AllowFrom(peer map[string]any, ports ...int) map[string]any {
	ps := make([]any, len(ports))
	for i, port := range ports {
		ps[i] = map[string]any{"protocol": "TCP", "port": int64(port)}
	}
	return map[string]any{"from": []any{peer}, "ports": ps}
}

// IngressPolicy admits to the pods matching selector only what the rules
// allow.
func IngressPolicy(inst Instance, name string, selector map[string]any, rules ...any) *unstructured.Unstructured {
	return NewObject(inst, "networking.k8s.io/v1", "NetworkPolicy", name, map[string]any{
		"podSelector": map[string]any{"matchLabels": selector},
		"policyTypes": []any{"Ingress"},
		"ingress":     rules,
	})
}

// ServiceNames are the DNS names a client may use for Service svc in ns.
func ServiceNames(svc, ns string) []any {
	return []any{svc, svc + "." + ns, svc + "." + ns + ".svc", svc + "." + ns + ".svc.cluster.local"}
}

// StringMap turns labels into an unstructured map.
func StringMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
