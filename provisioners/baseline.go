package provisioners

import (
	"strconv"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The tenant baseline: what the broker keeps in a tenant namespace while
// the tenant has at least one instance, under every instance's own
// objects. Each instance's NetworkPolicies and PeerAuthentications admit
// exactly what its engine needs on its ports (they differ per engine and
// per plan, which is why the allows live there); the baseline makes that
// the only way in:
//
//   - a NetworkPolicy that selects every data pod of the namespace and
//     admits nothing, so a data pod no instance policy selects (a policy
//     deleted by hand, a pod an operator started before the broker applied
//     its policies) is closed, not open;
//   - in a meshed namespace, a namespace-wide PeerAuthentication in STRICT
//     mode (the instances' workload-selected PeerAuthentications keep
//     their port exceptions: a workload selector wins over the namespace
//     policy), and an AuthorizationPolicy on the data pods admitting only
//     the tenant's own workloads (and the credential manager) by mesh
//     identity, plus the ports that out-of-mesh operators and Prometheus
//     call in plaintext, which the NetworkPolicies confine to their
//     namespaces.

// BaselineName names every baseline object.
const BaselineName = "strata-tenant-baseline"

// LabelBaseline marks the baseline's objects.
const LabelBaseline = "strata.dev/baseline"

// LabelDataPod is on every pod of a Strata instance: CloudNativePG copies
// it from the Cluster's inheritedMetadata (and the Pooler's template), the
// redis-operator from the RedisFailover's labels, Strimzi from the Kafka
// and KafkaNodePool labels. Its value is the instance id.
const LabelDataPod = LabelInstanceID

// BaselineConfig is what the baseline needs beyond the tenant.
type BaselineConfig struct {
	// MeshIdentityNamespaces are the namespaces besides the tenant's whose
	// meshed workloads may call the data pods (OpenBao's, which logs in to
	// PostgreSQL to issue credentials).
	MeshIdentityNamespaces []string
	// PlaintextPorts are the data pods' ports that callers outside the
	// mesh use (the CloudNativePG operator's calls to the instance manager,
	// Prometheus): the instances' PeerAuthentications make them
	// PERMISSIVE, and the AuthorizationPolicy must not refuse them for
	// lacking a mesh identity.
	PlaintextPorts []int
}

// BaselineTenant is the tenant a baseline is for.
type BaselineTenant struct {
	Namespace string
	Meshed    bool
}

// Istio's kinds.
var (
	PeerAuthenticationGVK  = schema.GroupVersionKind{Group: "security.istio.io", Version: "v1", Kind: "PeerAuthentication"}
	AuthorizationPolicyGVK = schema.GroupVersionKind{Group: "security.istio.io", Version: "v1", Kind: "AuthorizationPolicy"}
	NetworkPolicyGVK       = schema.GroupVersionKind{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicy"}
)

// BaselineLabels are the labels of the baseline's objects. strata.dev/tenant
// lets cost tooling attribute them like the instances' objects.
func BaselineLabels(namespace string) map[string]string {
	return map[string]string{LabelManagedBy: ManagedByStrata, LabelTenant: namespace, LabelBaseline: "true"}
}

// Baseline renders the tenant's baseline objects, in apply order.
func Baseline(c BaselineConfig, t BaselineTenant) []*unstructured.Unstructured {
	obj := func(gvk schema.GroupVersionKind, spec map[string]any) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": gvk.GroupVersion().String(),
			"kind":       gvk.Kind,
			"metadata":   map[string]any{"name": BaselineName, "namespace": t.Namespace, "labels": StringMap(BaselineLabels(t.Namespace))},
			"spec":       spec,
		}}
	}
	dataPods := map[string]any{"matchExpressions": []any{
		map[string]any{"key": LabelDataPod, "operator": "Exists"},
	}}
	objs := []*unstructured.Unstructured{obj(NetworkPolicyGVK, map[string]any{
		"podSelector": dataPods,
		"policyTypes": []any{"Ingress"},
		// No ingress rules: denied unless an instance's policy admits it.
	})}
	if !t.Meshed {
		return objs
	}
	objs = append(objs, obj(PeerAuthenticationGVK, map[string]any{
		"mtls": map[string]any{"mode": "STRICT"},
	}))
	namespaces := append([]any{t.Namespace}, anySlice(c.MeshIdentityNamespaces)...)
	rules := []any{map[string]any{
		"from": []any{map[string]any{"source": map[string]any{"namespaces": namespaces}}},
	}}
	if len(c.PlaintextPorts) > 0 {
		ports := make([]any, len(c.PlaintextPorts))
		for i, p := range c.PlaintextPorts {
			ports[i] = strconv.Itoa(p)
		}
		rules = append(rules, map[string]any{
			"to": []any{map[string]any{"operation": map[string]any{"ports": ports}}},
		})
	}
	// AuthorizationPolicy selectors take labels only (no Exists), so the
	// tenant label, which every data pod carries with this value, selects
	// them. Pods out of the mesh (Redis, Kafka) are not enforced on.
	objs = append(objs, obj(AuthorizationPolicyGVK, map[string]any{
		"selector": map[string]any{"matchLabels": map[string]any{LabelTenant: t.Namespace}},
		"action":   "ALLOW",
		"rules":    rules,
	}))
	return objs
}

// BaselineRefs names every object a baseline may have, meshed or not, so
// its removal finds them all.
func BaselineRefs(namespace string) []Ref {
	return []Ref{
		{GVK: AuthorizationPolicyGVK, Namespace: namespace, Name: BaselineName},
		{GVK: PeerAuthenticationGVK, Namespace: namespace, Name: BaselineName},
		{GVK: NetworkPolicyGVK, Namespace: namespace, Name: BaselineName},
	}
}

func anySlice(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
