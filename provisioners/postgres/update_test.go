package postgres

import (
	"testing"

	. "github.com/onsi/gomega"
)

func TestCheckUpdate(t *testing.T) {
	tests := []struct {
		name             string
		fromPlan, toPlan string
		// params nil keeps fromParams; an empty map sends no parameters.
		fromParams, params map[string]any
		// wantErr is empty when the update is allowed; otherwise the error
		// starts with it (the parameter at fault).
		wantErr string
		more    []string
	}{
		// Allowed.
		{name: "no change", fromPlan: "standard", toPlan: "standard"},
		{name: "grow storage", fromPlan: "standard", toPlan: "standard",
			fromParams: map[string]any{"storage_gb": float64(20)}, params: map[string]any{"storage_gb": float64(40)}},
		{name: "grow storage from the default", fromPlan: "ha", toPlan: "ha",
			params: map[string]any{"storage_gb": float64(51)}},
		{name: "add a database at the end", fromPlan: "standard", toPlan: "standard",
			fromParams: map[string]any{"databases": []any{"orders"}},
			params:     map[string]any{"databases": []any{"orders", "billing"}}},
		{name: "add a database next to the default", fromPlan: "dev-lite", toPlan: "dev-lite",
			params: map[string]any{"databases": []any{"app", "reports"}}},
		{name: "reorder databases after the first", fromPlan: "standard", toPlan: "standard",
			fromParams: map[string]any{"databases": []any{"a", "b", "c"}},
			params:     map[string]any{"databases": []any{"a", "c", "b"}}},
		{name: "scale replicas up", fromPlan: "standard", toPlan: "standard",
			params: map[string]any{"replicas": float64(4)}},
		{name: "scale replicas down", fromPlan: "ha", toPlan: "ha",
			fromParams: map[string]any{"replicas": float64(5)}, params: map[string]any{"replicas": float64(2)}},
		{name: "vertical scaling", fromPlan: "standard", toPlan: "standard",
			params: map[string]any{"resources": map[string]any{"cpu": "4", "memory": "16Gi"}}},
		{name: "turn on xa", fromPlan: "ha", toPlan: "ha", params: map[string]any{"xa": true}},
		{name: "same explicit version", fromPlan: "standard", toPlan: "standard",
			fromParams: map[string]any{"version": "16"}, params: map[string]any{"version": "16"}},
		{name: "explicit default version", fromPlan: "standard", toPlan: "standard",
			params: map[string]any{"version": "17"}},
		{name: "dev-lite to standard grows the default storage", fromPlan: "dev-lite", toPlan: "standard"},
		{name: "standard to ha", fromPlan: "standard", toPlan: "ha"},

		// Refused.
		{name: "major version upgrade", fromPlan: "standard", toPlan: "standard",
			fromParams: map[string]any{"version": "16"}, params: map[string]any{"version": "17"},
			wantErr: "parameters.version", more: []string{"16", "17", "migrate"}},
		{name: "version from the default", fromPlan: "ha", toPlan: "ha",
			params:  map[string]any{"version": "18"},
			wantErr: "parameters.version"},
		{name: "version downgrade", fromPlan: "dev-lite", toPlan: "dev-lite",
			fromParams: map[string]any{"version": "17"}, params: map[string]any{"version": "15"},
			wantErr: "parameters.version"},
		{name: "shrink storage", fromPlan: "standard", toPlan: "standard",
			fromParams: map[string]any{"storage_gb": float64(100)}, params: map[string]any{"storage_gb": float64(99)},
			wantErr: "parameters.storage_gb", more: []string{"100", "99"}},
		{name: "shrink storage to the default", fromPlan: "ha", toPlan: "ha",
			fromParams: map[string]any{"storage_gb": float64(200)}, params: map[string]any{},
			wantErr: "parameters.storage_gb"},
		{name: "plan change keeping a larger explicit size", fromPlan: "standard", toPlan: "ha",
			fromParams: map[string]any{"storage_gb": float64(100)}, params: map[string]any{"storage_gb": float64(60)},
			wantErr: "parameters.storage_gb"},
		{name: "drop a database", fromPlan: "standard", toPlan: "standard",
			fromParams: map[string]any{"databases": []any{"orders", "billing"}},
			params:     map[string]any{"databases": []any{"orders"}},
			wantErr:    "parameters.databases", more: []string{`"billing"`}},
		{name: "replace the default database", fromPlan: "standard", toPlan: "standard",
			params:  map[string]any{"databases": []any{"orders"}},
			wantErr: "parameters.databases", more: []string{`"app"`}},
		{name: "first database must stay first", fromPlan: "ha", toPlan: "ha",
			fromParams: map[string]any{"databases": []any{"orders", "billing"}},
			params:     map[string]any{"databases": []any{"billing", "orders"}},
			wantErr:    "parameters.databases", more: []string{`"orders"`, "first"}},
		{name: "new parameters fail to resolve", fromPlan: "standard", toPlan: "standard",
			params:  map[string]any{"resources": map[string]any{"cpu": "64"}},
			wantErr: "parameters.resources.cpu"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			p := &Provisioner{Config: baseConfig()}
			old := testInstance(t, tc.fromPlan, tc.fromParams)
			updated := testInstance(t, tc.toPlan, tc.params)
			if tc.params == nil {
				updated.Params = tc.fromParams
			}
			err := p.CheckUpdate(old, updated)
			if tc.wantErr == "" {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(HaveOccurred())
			g.Expect(err.Error()).To(HavePrefix(tc.wantErr + ":"))
			for _, m := range tc.more {
				g.Expect(err.Error()).To(ContainSubstring(m))
			}
		})
	}
}

// An allowed update must also build: CheckUpdate passing and Build failing
// would leave the instance half-updated.
func TestAllowedUpdatesBuild(t *testing.T) {
	g := NewWithT(t)
	p := &Provisioner{Config: baseConfig()}
	old := testInstance(t, "standard", map[string]any{"databases": []any{"orders"}})
	updated := testInstance(t, "ha", map[string]any{
		"databases": []any{"orders", "billing"}, "replicas": float64(3), "xa": true,
	})
	g.Expect(p.CheckUpdate(old, updated)).To(Succeed())
	objs, err := p.Build(updated)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(byKind(objs, "Database")).To(HaveLen(2))
	cluster := one(t, objs, "Cluster")
	g.Expect(cluster.Object["spec"].(map[string]any)["instances"]).To(Equal(int64(4)))
	g.Expect(nestedString(t, cluster, "spec", "bootstrap", "initdb", "database")).To(Equal("orders"))
}
