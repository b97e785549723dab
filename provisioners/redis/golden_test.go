package redis

import (
	"testing"

	. "github.com/onsi/gomega"

	"github.com/strata-dev/strata/provisioners/internal/provtest"
)

// go test ./provisioners/redis -run TestBuildGolden -update (provtest.Update)
// rewrites the golden files; review the diff before committing it.

type goldenCase struct {
	name   string
	plan   string
	params map[string]any
	meshed bool
	// config is baseConfig when nil.
	config func() Config
}

var goldenCases = []goldenCase{
	{name: "dev-lite", plan: "dev-lite"},
	{name: "standard", plan: "standard"},
	{name: "ha", plan: "ha"},
	{name: "standard-meshed", plan: "standard", meshed: true},
	{
		name: "ha-parameters", plan: "ha",
		params: map[string]any{
			"replicas": float64(5), "storage_gb": float64(100), "maxmemory_policy": "noeviction",
			"resources": map[string]any{"cpu": "2", "memory": "16Gi"},
		},
	},
	// Off-cluster snapshots: static keys of an S3-compatible store, and
	// an IAM role on AWS.
	{name: "standard-snapshots", plan: "standard", config: staticKeysConfig},
	{name: "ha-snapshots-iam", plan: "ha", config: iamRoleConfig, meshed: true},
	{
		name: "standard-restore", plan: "standard", config: staticKeysConfig,
		params: map[string]any{"restore": map[string]any{"from_instance": testSourceID, "snapshot": "2026-05-01T12:00:00Z"}},
	},
	{
		name: "dev-lite-restore-iam", plan: "dev-lite", config: iamRoleConfig,
		params: map[string]any{"restore": map[string]any{"from_instance": testSourceID}},
	},
}

func cfg(tc goldenCase) Config {
	if tc.config == nil {
		return baseConfig()
	}
	return tc.config()
}

func TestBuildGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			inst := testInstance(t, tc.plan, tc.params)
			inst.Meshed = tc.meshed
			got, err := renderYAML(build(t, cfg(tc), inst))
			g.Expect(err).NotTo(HaveOccurred())
			provtest.ExpectGolden(g, tc.name, got)
		})
	}
}

func TestBuildIsDeterministic(t *testing.T) {
	for _, tc := range goldenCases {
		g := NewWithT(t)
		inst := testInstance(t, tc.plan, tc.params)
		inst.Meshed = tc.meshed
		first, err := renderYAML(build(t, cfg(tc), inst))
		g.Expect(err).NotTo(HaveOccurred())
		for range 3 {
			again, _ := renderYAML(build(t, cfg(tc), inst))
			g.Expect(again).To(Equal(first), tc.name)
		}
	}
}

func TestGoldenFilesParseInBuildOrder(t *testing.T) {
	for _, tc := range goldenCases {
		g := NewWithT(t)
		inst := testInstance(t, tc.plan, tc.params)
		inst.Meshed = tc.meshed
		provtest.ExpectGoldenInBuildOrder(g, tc.name, build(t, cfg(tc), inst), tc.name)
	}
}
