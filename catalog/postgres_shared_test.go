package catalog_test

import (
	"encoding/json"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/strata-dev/strata/catalog"
)

func TestSharedPlan(t *testing.T) {
	g := NewWithT(t)
	svc := &catalog.Default().Services[0]
	p := svc.PlanByName("shared")
	g.Expect(p).NotTo(BeNil())
	g.Expect(p.ID).To(Equal(catalog.PostgresSharedID))
	g.Expect(p.Postgres.Shared).To(BeTrue())
	g.Expect(p.UpdatableTo).To(BeEmpty(), "no plan change moves data between clusters")
	g.Expect(p.BindingRotatable).To(BeTrue())
	g.Expect(p.MaximumPollingDuration).To(BeNumerically(">", 0))
	g.Expect(p.Metadata.DisplayName).To(Equal("Shared"))
	g.Expect(p.Metadata.Bullets).To(ContainElement(ContainSubstring("database-level separation")))
	for _, other := range []string{"dev-lite", "standard", "ha"} {
		g.Expect(svc.PlanByName(other).UpdatableTo).NotTo(ContainElement("shared"))
	}
}

// The shared plan takes extensions and nothing that sizes a cluster (and,
// as every plan, the instance page's link generation).
func TestSharedPlanSchemas(t *testing.T) {
	p := catalog.Default().Services[0].PlanByName("shared")
	s := catalog.SchemasFor(p)
	for _, doc := range []catalog.Schema{s.Provision, s.Update} {
		props := doc["properties"].(catalog.Schema)
		NewWithT(t).Expect(props).To(HaveLen(2))
		NewWithT(t).Expect(props).To(HaveKey("extensions"))
		NewWithT(t).Expect(props).To(HaveKey(catalog.DashboardURLGeneration))
	}
	NewWithT(t).Expect(s.Bind["properties"]).NotTo(HaveKey("database"), "a shared instance is one database")
	NewWithT(t).Expect(s.Bind["properties"]).To(HaveKey("access"))

	tests := []struct {
		name    string
		kind    catalog.Kind
		params  string
		wantErr string
	}{
		{"empty", catalog.KindProvision, `{}`, ""},
		{"extensions", catalog.KindProvision, `{"extensions": ["pg_trgm", "vector"]}`, ""},
		{"update extensions", catalog.KindUpdate, `{"extensions": ["citext"]}`, ""},
		{"unknown extension", catalog.KindProvision, `{"extensions": ["plpython3u"]}`, "parameters.extensions.0"},
		{"duplicate extension", catalog.KindProvision, `{"extensions": ["citext", "citext"]}`, "parameters.extensions"},
		{"storage refused", catalog.KindProvision, `{"storage_gb": 10}`, "parameters.storage_gb: unknown parameter; accepted here: dashboard_url_generation, extensions"},
		{"replicas refused", catalog.KindUpdate, `{"replicas": 1}`, "parameters.replicas: unknown parameter"},
		{"backup refused", catalog.KindProvision, `{"backup": {"retention_days": 3}}`, "parameters.backup: unknown parameter"},
		{"databases refused", catalog.KindProvision, `{"databases": ["orders"]}`, "parameters.databases: unknown parameter"},
		{"bind readonly", catalog.KindBind, `{"access": "readonly"}`, ""},
		{"bind database refused", catalog.KindBind, `{"database": "app"}`, "parameters.database: unknown parameter"},
	}
	v := catalog.NewValidator()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			var params map[string]any
			g.Expect(json.Unmarshal([]byte(tc.params), &params)).To(Succeed())
			err := v.Validate(p, tc.kind, params)
			if tc.wantErr == "" {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(MatchError(ContainSubstring(tc.wantErr)))
		})
	}
}
