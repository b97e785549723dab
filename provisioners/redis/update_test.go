package redis

import (
	"testing"

	. "github.com/onsi/gomega"
)

// A plan without an append-only file can never move to one with it: Redis
// would start empty (integration/redistest TestStartingWithAOFOnSnapshotOnlyDataStartsEmpty).
func TestCheckUpdateRefusesTurningOnTheAOF(t *testing.T) {
	g := NewWithT(t)
	old := testInstance(t, "dev-lite", nil)
	r := *old.Plan.Redis
	r.Persistence.AOF = ""
	old.Plan.Redis = &r
	err := (&Provisioner{}).CheckUpdate(old, testInstance(t, "standard", nil))
	g.Expect(err).To(MatchError(ContainSubstring("starts empty")))
}

func TestCheckUpdate(t *testing.T) {
	p := &Provisioner{Config: baseConfig()}
	tests := []struct {
		name             string
		fromPlan, toPlan string
		from, to         map[string]any
		wantErr          string
	}{
		{"grow storage", "standard", "standard", nil, map[string]any{"storage_gb": float64(50)}, ""},
		{"scale replicas", "standard", "standard", nil, map[string]any{"replicas": float64(4)}, ""},
		{"shrink storage", "standard", "standard", map[string]any{"storage_gb": float64(50)}, map[string]any{"storage_gb": float64(10)}, "parameters.storage_gb"},
		{"dev-lite to standard", "dev-lite", "standard", nil, nil, ""},
		{"standard to ha", "standard", "ha", nil, nil, ""},
		{"ha to standard weakens fsync", "ha", "standard", nil, nil, "append-only"},
		{"standard to dev-lite weakens fsync", "standard", "dev-lite", nil, nil, "append-only"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			err := p.CheckUpdate(testInstance(t, tc.fromPlan, tc.from), testInstance(t, tc.toPlan, tc.to))
			if tc.wantErr == "" {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(MatchError(ContainSubstring(tc.wantErr)))
		})
	}
}
