package kafka

import (
	"testing"

	. "github.com/onsi/gomega"
)

// Topics on the shared cluster cost the tenant no pods; a dedicated
// cluster counts its brokers and controllers. Both count their topics and
// partitions.
func TestSize(t *testing.T) {
	g := NewWithT(t)
	p := &Provisioner{Config: baseConfig()}
	for _, plan := range []string{"dev-lite", "standard"} {
		s, err := p.Size(testInstance(t, plan, nil))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(s.CPU.IsZero() && s.Memory.IsZero() && s.Storage.IsZero()).To(BeTrue(), plan)
		g.Expect(s.Topics).To(Equal(1), "the default topic")
		g.Expect(s.Partitions).To(Equal(testInstance(t, plan, nil).Plan.Kafka.DefaultPartitions))
	}
	s, err := p.Size(testInstance(t, "standard", map[string]any{"topics": []any{
		map[string]any{"name": "orders", "partitions": 12}, map[string]any{"name": "audit"},
	}}))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(s.Topics).To(Equal(2))
	g.Expect(s.Partitions).To(Equal(12 + testInstance(t, "standard", nil).Plan.Kafka.DefaultPartitions))

	inst := testInstance(t, "ha", nil)
	c := inst.Plan.Kafka.Cluster
	s, err = p.Size(inst)
	g.Expect(err).NotTo(HaveOccurred())
	settings, err := Resolve(inst.Plan, inst.Params)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(s.Storage.Value()).To(Equal(int64(c.Brokers*settings.StorageGB+c.Controllers*c.ControllerStorageGB) << 30))
	g.Expect(s.CPU.Sign()).To(Equal(1))
	g.Expect(s.Topics).To(Equal(1))
}
