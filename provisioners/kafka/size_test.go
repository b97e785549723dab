package kafka

import (
	"testing"

	. "github.com/onsi/gomega"
)

// Topics on the shared cluster cost the tenant no pods; a dedicated
// cluster counts its brokers and controllers.
func TestSize(t *testing.T) {
	g := NewWithT(t)
	p := &Provisioner{Config: baseConfig()}
	for _, plan := range []string{"dev-lite", "standard"} {
		s, err := p.Size(testInstance(t, plan, nil))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(s.CPU.IsZero() && s.Memory.IsZero() && s.Storage.IsZero()).To(BeTrue(), plan)
	}
	inst := testInstance(t, "ha", nil)
	c := inst.Plan.Kafka.Cluster
	s, err := p.Size(inst)
	g.Expect(err).NotTo(HaveOccurred())
	settings, err := Resolve(inst.Plan, inst.Params)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(s.Storage.Value()).To(Equal(int64(c.Brokers*settings.StorageGB+c.Controllers*c.ControllerStorageGB) << 30))
	g.Expect(s.CPU.Sign()).To(Equal(1))
}
