package postgres

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/internal/provtest"
)

// go test ./provisioners/postgres -run TestBuildGolden -update (provtest.Update)
// rewrites the golden files; review the diff before committing it.

// goldenCases are the renderings kept under testdata/<name>.golden.yaml.
var goldenCases = []struct {
	name   string
	plan   string
	config func() Config
	params map[string]any
	meshed bool
	// restore, when set, is the source the broker resolved.
	restore *provisioners.RestoreSource
	// copyOf, when set, is the copy's source the broker resolved.
	copyOf *provisioners.CopySource
}{
	{name: "dev-lite", plan: "dev-lite", config: DefaultConfig},
	{name: "standard", plan: "standard", config: baseConfig},
	{name: "ha", plan: "ha", config: baseConfig},
	{
		name: "ha-xa-extensions-two-databases", plan: "ha", config: baseConfig,
		params: map[string]any{
			"xa":         true,
			"extensions": []any{"pg_trgm", "vector"},
			"databases":  []any{"orders", "order_audit"},
			"replicas":   float64(3),
			"audit":      map[string]any{"classes": []any{"read", "write", "ddl"}},
		},
	},
	{name: "standard-meshed", plan: "standard", config: baseConfig, meshed: true},
	{name: "shared", plan: "shared", config: DefaultConfig},
	{
		name: "shared-extensions-custom-cluster", plan: "shared", config: sharedConfig,
		params: map[string]any{"extensions": []any{"pg_trgm", "vector"}},
	},
	{name: "standard-static-s3-keys", plan: "standard", config: staticKeysConfig},
	{
		name: "standard-restore", plan: "standard", config: baseConfig,
		params:  map[string]any{"restore": map[string]any{"from_instance": testSourceID, "to_time": "2026-03-01T11:30:00.25Z"}},
		restore: &provisioners.RestoreSource{InstanceID: testSourceID, Name: "pg-" + testSourceID, Namespace: testNamespace, TargetTime: time.Date(2026, 3, 1, 11, 30, 0, 250_000_000, time.UTC)},
	},
	{
		name: "standard-restore-latest-across-namespaces", plan: "standard", config: acrossNamespacesConfig,
		params:  map[string]any{"restore": map[string]any{"from_instance": testSourceID, "to_time": "latest"}},
		restore: &provisioners.RestoreSource{InstanceID: testSourceID, Name: "pg-" + testSourceID, Namespace: "team-billing"},
	},
	{
		name: "dev-lite-seed", plan: "dev-lite", config: DefaultConfig,
		params: map[string]any{"seed": map[string]any{"config_map": "orders-seed", "key": "seed.sql"}},
	},
	{
		name: "dev-lite-seed-openbao", plan: "dev-lite", config: openBaoConfig,
		params: map[string]any{"seed": map[string]any{"secret": "orders-fixtures"}},
	},
	{
		name: "dev-lite-masked-copy", plan: "dev-lite", config: DefaultConfig,
		params: map[string]any{"copy_of": map[string]any{"instance": testSourceID, "mask": map[string]any{
			"public.customers.email": "email", "public.customers.name": "hash", "public.customers.phone": "null", "billing.invoices.note": "redact",
		}}},
		copyOf: &provisioners.CopySource{InstanceID: testSourceID, Name: "pg-" + testSourceID, Database: "orders", CASecret: "pg-" + testSourceID + "-ca"},
	},
	{
		name: "standard-restore-openbao", plan: "standard", config: openBaoBackupConfig,
		params:  map[string]any{"restore": map[string]any{"from_instance": testSourceID, "to_time": "latest"}},
		restore: &provisioners.RestoreSource{InstanceID: testSourceID, Name: "pg-" + testSourceID, Namespace: testNamespace},
	},
	{
		name: "dev-lite-masked-copy-openbao", plan: "dev-lite", config: openBaoConfig,
		params: map[string]any{"copy_of": map[string]any{"instance": testSourceID, "mask": map[string]any{"public.customers.email": "email"}}},
		copyOf: &provisioners.CopySource{InstanceID: testSourceID, Name: "pg-" + testSourceID, Database: "orders", CASecret: "pg-" + testSourceID + "-server-tls"},
	},
	{
		name: "standard-backup-config", plan: "standard", config: fullBackupConfig,
		params: map[string]any{
			"storage_gb": float64(100),
			"resources":  map[string]any{"cpu": "2", "memory": "4Gi"},
			"backup":     map[string]any{"schedule": "0 30 1 * * *", "retention_days": float64(14)},
		},
	},
}

func TestBuildGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			inst := testInstance(t, tc.plan, tc.params)
			inst.Meshed = tc.meshed
			inst.Restore = tc.restore
			inst.Copy = tc.copyOf
			got, err := renderYAML(build(t, tc.config(), inst))
			g.Expect(err).NotTo(HaveOccurred())
			provtest.ExpectGolden(g, tc.name, got)
		})
	}
}

// Rendering must not depend on map iteration order or on earlier calls.
func TestBuildIsDeterministic(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			inst := testInstance(t, tc.plan, tc.params)
			inst.Meshed = tc.meshed
			inst.Restore = tc.restore
			inst.Copy = tc.copyOf
			provtest.ExpectDeterministic(g, func() ([]byte, error) { return renderYAML(build(t, tc.config(), inst)) })
		})
	}
}

// The golden files must round-trip: what is committed is what a client
// would apply, with the same kinds in the same order.
func TestGoldenFilesParseInBuildOrder(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			inst := testInstance(t, tc.plan, tc.params)
			inst.Meshed = tc.meshed
			inst.Restore = tc.restore
			inst.Copy = tc.copyOf
			provtest.ExpectGoldenInBuildOrder(g, tc.name, build(t, tc.config(), inst), "")
		})
	}
}
