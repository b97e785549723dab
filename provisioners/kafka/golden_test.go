package kafka

import (
	"testing"

	. "github.com/onsi/gomega"

	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/internal/provtest"
)

// go test ./provisioners/kafka -run TestBuildGolden -update (provtest.Update)
// rewrites the golden files; review the diff before committing it.

var goldenCases = []struct {
	name   string
	plan   string
	config func() Config
	params map[string]any
	meshed bool
}{
	{name: "dev-lite", plan: "dev-lite", config: DefaultConfig},
	{name: "standard", plan: "standard", config: baseConfig, params: map[string]any{"topics": []any{
		map[string]any{"name": "orders", "partitions": float64(12), "retention_ms": float64(3_600_000)},
		map[string]any{"name": "order-snapshots", "cleanup_policy": "compact"},
	}}},
	{name: "ha", plan: "ha", config: baseConfig},
	{name: "ha-dr", plan: "ha", config: drConfig, params: map[string]any{
		"topics":            []any{map[string]any{"name": "orders"}, map[string]any{"name": "payments", "partitions": float64(12)}},
		"disaster_recovery": map[string]any{"target": "dr-eu-west"},
	}},
	{name: "ha-meshed", plan: "ha", config: baseConfig, meshed: true, params: map[string]any{
		"storage_gb": float64(500),
		"topics":     []any{map[string]any{"name": "payments", "partitions": float64(24)}},
	}},
}

func goldenInstance(t *testing.T, plan string, params map[string]any, meshed bool) provisioners.Instance {
	inst := testInstance(t, plan, params)
	inst.Meshed = meshed
	return inst
}

func TestBuildGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := renderYAML(build(t, tc.config(), goldenInstance(t, tc.plan, tc.params, tc.meshed)))
			g.Expect(err).NotTo(HaveOccurred())
			provtest.ExpectGolden(g, tc.name, got)
		})
	}
}

func TestBuildIsDeterministic(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			inst := goldenInstance(t, tc.plan, tc.params, tc.meshed)
			provtest.ExpectDeterministic(g, func() ([]byte, error) { return renderYAML(build(t, tc.config(), inst)) })
		})
	}
}

func TestGoldenFilesParseInBuildOrder(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			objs := build(t, tc.config(), goldenInstance(t, tc.plan, tc.params, tc.meshed))
			provtest.ExpectGoldenInBuildOrder(g, tc.name, objs, "")
		})
	}
}
