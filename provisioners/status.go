package provisioners

import "k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

// ConditionTrue says whether the object's condition of type condType is
// True; one that names an older generation (observedGeneration below the
// object's metadata.generation) does not count. A condition without
// observedGeneration counts (CloudNativePG 1.30 names none on the Cluster;
// its Database conditions do).
func ConditionTrue(o *unstructured.Unstructured, condType string) bool {
	conds, _, _ := unstructured.NestedSlice(o.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok || m["type"] != condType {
			continue
		}
		if gen, ok := m["observedGeneration"].(int64); ok && gen < o.GetGeneration() {
			return false
		}
		return m["status"] == "True"
	}
	return false
}

// Progressing is an InProgress Progress described by d.
func Progressing(d string) Progress {
	return Progress{State: InProgress, Description: d}
}
