package provisioners

import "k8s.io/apimachinery/pkg/api/resource"

// Size is what an instance asks of the cluster, summed over its pods:
// what tenant limits, ResourceQuotas and usage metrics count. Topics and
// Partitions are what a Kafka instance holds on its cluster, which is how
// a shared cluster's cost is split between tenants.
type Size struct {
	CPU     resource.Quantity
	Memory  resource.Quantity
	Storage resource.Quantity

	Topics     int
	Partitions int
}

// Add returns s + o.
func (s Size) Add(o Size) Size {
	s.CPU, s.Memory, s.Storage = s.CPU.DeepCopy(), s.Memory.DeepCopy(), s.Storage.DeepCopy()
	s.CPU.Add(o.CPU)
	s.Memory.Add(o.Memory)
	s.Storage.Add(o.Storage)
	s.Topics += o.Topics
	s.Partitions += o.Partitions
	return s
}

// Sizer is implemented by engines whose instances hold something that
// counts against the tenant: pods, volumes, topics.
type Sizer interface {
	Size(inst Instance) (Size, error)
}

// Pods is what n pods request that each ask cpu and memory (quantities)
// and have a volume of storageGB GiB.
func Pods(n int, cpu, memory string, storageGB int) (Size, error) {
	c, err := resource.ParseQuantity(cpu)
	if err != nil {
		return Size{}, err
	}
	m, err := resource.ParseQuantity(memory)
	if err != nil {
		return Size{}, err
	}
	return Size{
		CPU:     *resource.NewMilliQuantity(c.MilliValue()*int64(n), c.Format),
		Memory:  *resource.NewMilliQuantity(m.MilliValue()*int64(n), m.Format),
		Storage: *resource.NewQuantity(int64(storageGB)*int64(n)<<30, resource.BinarySI),
	}, nil
}
