package postgres

import (
	"testing"

	. "github.com/onsi/gomega"
)

// Size counts the requests of every pod an instance's objects produce:
// the PostgreSQL instances, the barman-cloud sidecar in each of them (plans
// with backups), and the PgBouncer pods. That is what tenant limits,
// ResourceQuotas and usage metrics see.
func TestSize(t *testing.T) {
	tests := []struct {
		plan                 string
		params               map[string]any
		cpu, memory, storage string
	}{
		{"dev-lite", nil, "250m", "512Mi", "1Gi"},
		// 2 × (1 + 250m sidecar) + 2 poolers × 250m; 2 × (2Gi + 512Mi) + 2 × 256Mi.
		{"standard", nil, "3", "5632Mi", "40Gi"},
		// 5 × (3 + 500m) + 3 poolers × 500m; 5 × (12Gi + 512Mi) + 3 × 512Mi.
		{"ha", map[string]any{"replicas": float64(4), "storage_gb": float64(100), "resources": map[string]any{"cpu": "3", "memory": "12Gi"}}, "19", "64Gi", "500Gi"},
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
