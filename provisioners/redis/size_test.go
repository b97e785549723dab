package redis

import (
	"testing"

	. "github.com/onsi/gomega"

	"github.com/strata-dev/strata/provisioners"
)

// Size counts every Redis pod's requests and volume: what tenant limits
// and ResourceQuotas see.
func TestSize(t *testing.T) {
	for _, plan := range []string{"dev-lite", "standard", "ha"} {
		t.Run(plan, func(t *testing.T) {
			g := NewWithT(t)
			inst := testInstance(t, plan, nil)
			s, err := Resolve(inst.Plan, inst.Params)
			g.Expect(err).NotTo(HaveOccurred())
			size, err := (&Provisioner{Config: baseConfig()}).Size(inst)
			g.Expect(err).NotTo(HaveOccurred())
			want, err := provisioners.Pods(s.Replicas, s.CPU, s.Memory, s.StorageGB)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(size.CPU.Cmp(want.CPU)).To(BeZero())
			g.Expect(size.Storage.Value()).To(Equal(int64(s.Replicas*s.StorageGB) << 30))
			g.Expect(size.Memory.Sign()).To(Equal(1))
		})
	}
}
