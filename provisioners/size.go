package provisioners

import "k8s.io/apimachinery/pkg/api/resource"

// Size is what an instance asks of the cluster, summed over its pods:
// what tenant limits, ResourceQuotas and usage metrics count.
type Size struct {
	CPU     resource.Quantity
	Memory  resource.Quantity
	Storage resource.Quantity
}

// Add returns s + o.
func (s Size) Add(o Size) Size {
	s.CPU, s.Memory, s.Storage = s.CPU.DeepCopy(), s.Memory.DeepCopy(), s.Storage.DeepCopy()
	s.CPU.Add(o.CPU)
	s.Memory.Add(o.Memory)
	s.Storage.Add(o.Storage)
	return s
}

// Sizer is implemented by engines whose instances run pods of the
// tenant's (a shared cluster's topics cost the tenant no pods).
type Sizer interface {
	Size(inst Instance) (Size, error)
}
