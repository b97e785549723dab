package postgres

import (
	"testing"

	. "github.com/onsi/gomega"
)

// Size counts every PostgreSQL instance's requests: what tenant limits,
// ResourceQuotas and usage metrics see.
func TestSize(t *testing.T) {
	tests := []struct {
		plan                 string
		params               map[string]any
		cpu, memory, storage string
	}{
		{"dev-lite", nil, "250m", "512Mi", "1Gi"},
		{"standard", nil, "2", "4Gi", "40Gi"},
		{"ha", map[string]any{"replicas": float64(4), "storage_gb": float64(100), "resources": map[string]any{"cpu": "3", "memory": "12Gi"}}, "15", "60Gi", "500Gi"},
	}
	for _, tc := range tests {
		t.Run(tc.plan, func(t *testing.T) {
			g := NewWithT(t)
			s, err := (&Provisioner{Config: baseConfig()}).Size(testInstance(t, tc.plan, tc.params))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(s.CPU.String()).To(Equal(tc.cpu))
			g.Expect(s.Memory.String()).To(Equal(tc.memory))
			g.Expect(s.Storage.String()).To(Equal(tc.storage))
		})
	}
}
