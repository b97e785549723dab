package catalog_test

import (
	"encoding/json"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/strata-dev/strata/catalog"
)

// semver 2.0.0, as OSB requires of maintenance_info.version.
const semverRE = `^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`

// catalogJSON is GET /v2/catalog's body as a platform decodes it.
func catalogJSON(t *testing.T, c *catalog.Catalog) []map[string]any {
	t.Helper()
	raw, err := json.Marshal(map[string]any{"services": c.CatalogResponse()})
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Services []map[string]any `json:"services"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatal(err)
	}
	return body.Services
}

func TestCatalogResponseServices(t *testing.T) {
	g := NewWithT(t)
	c := catalog.Default()
	services := catalogJSON(t, c)
	g.Expect(services).To(HaveLen(len(c.Services)))
	for i, s := range services {
		want := c.Services[i]
		g.Expect(s).To(HaveKeyWithValue("id", want.ID))
		g.Expect(s).To(HaveKeyWithValue("name", want.Name))
		g.Expect(s).To(HaveKeyWithValue("description", Not(BeEmpty())))
		g.Expect(s).To(HaveKeyWithValue("bindable", true))
		// OSB spells it plan_updateable (sic).
		g.Expect(s).To(HaveKeyWithValue("plan_updateable", true))
		g.Expect(s).NotTo(HaveKey("plan_updatable"))
		// Crossplane's provider-osb observes through GET instance/binding.
		g.Expect(s).To(HaveKeyWithValue("instances_retrievable", true))
		g.Expect(s).To(HaveKeyWithValue("bindings_retrievable", true))
		g.Expect(s).To(HaveKeyWithValue("tags", ContainElement(want.Name)))
		g.Expect(s).To(HaveKeyWithValue("metadata", HaveKeyWithValue("displayName", want.Metadata.DisplayName)))
		g.Expect(s["plans"]).To(HaveLen(len(want.Plans)))
	}
}

func TestCatalogResponsePlans(t *testing.T) {
	c := catalog.Default()
	svc := c.Services[0]
	plans := catalogJSON(t, c)[0]["plans"].([]any)
	for i, raw := range plans {
		want := &svc.Plans[i]
		t.Run(want.Name, func(t *testing.T) {
			g := NewWithT(t)
			p := raw.(map[string]any)
			g.Expect(p).To(HaveKeyWithValue("id", want.ID))
			g.Expect(p).To(HaveKeyWithValue("name", want.Name))
			g.Expect(p).To(HaveKeyWithValue("description", want.Description))
			g.Expect(p).To(HaveKeyWithValue("free", false))
			g.Expect(p).To(HaveKeyWithValue("bindable", true))

			// maximum_polling_duration: an integer number of seconds.
			g.Expect(p).To(HaveKey("maximum_polling_duration"))
			g.Expect(p["maximum_polling_duration"]).To(BeNumerically("==", want.MaximumPollingDuration))
			g.Expect(p["maximum_polling_duration"]).To(BeNumerically(">", 0))

			// maintenance_info: a required semver version, and a description.
			g.Expect(p).To(HaveKey("maintenance_info"))
			mi := p["maintenance_info"].(map[string]any)
			g.Expect(mi).To(HaveKeyWithValue("version", MatchRegexp(semverRE)))
			g.Expect(mi["version"]).To(Equal(c.MaintenanceVersion))
			g.Expect(mi).To(HaveKeyWithValue("description", c.MaintenanceDescription))

			// plan_updateable: explicit on every plan (it overrides the
			// service's true), and true exactly when the plan can move to
			// another plan.
			g.Expect(p).To(HaveKey("plan_updateable"))
			movable := false
			for j := range svc.Plans {
				if j != i && svc.CanUpdate(want, &svc.Plans[j]) == nil {
					movable = true
				}
			}
			g.Expect(p["plan_updateable"]).To(Equal(movable))

			// binding_rotatable: false is OSB's default, so absent or false.
			if want.BindingRotatable {
				g.Expect(p).To(HaveKeyWithValue("binding_rotatable", true))
			} else if v, ok := p["binding_rotatable"]; ok {
				g.Expect(v).To(BeFalse())
			}

			// The schemas are the plan's, where OSB puts them.
			schemas := p["schemas"].(map[string]any)
			si := schemas["service_instance"].(map[string]any)
			for _, action := range []string{"create", "update"} {
				g.Expect(si[action]).To(HaveKeyWithValue("parameters", HaveKeyWithValue("$schema", catalog.SchemaDialect)), action)
			}
			sb := schemas["service_binding"].(map[string]any)
			g.Expect(sb["create"]).To(HaveKeyWithValue("parameters", HaveKeyWithValue("properties", HaveKey("access"))))

			md := p["metadata"].(map[string]any)
			g.Expect(md).To(HaveKeyWithValue("displayName", Not(BeEmpty())))
			g.Expect(md).To(HaveKeyWithValue("bullets", Not(BeEmpty())))
		})
	}
}

// A plan that supports rotation says so; brokerapi's own types lack the
// field, so it must survive the wrapping. Every PostgreSQL plan rotates
// (its credentials expire).
func TestCatalogResponseBindingRotatable(t *testing.T) {
	g := NewWithT(t)
	c := catalog.Default()
	for _, p := range catalogJSON(t, c)[0]["plans"].([]any) {
		g.Expect(p).To(HaveKeyWithValue("binding_rotatable", true))
	}
	c.Services[0].Plans[0].BindingRotatable = false
	plans := catalogJSON(t, c)[0]["plans"].([]any)
	g.Expect(plans[0]).NotTo(HaveKeyWithValue("binding_rotatable", true))
	g.Expect(plans[1]).To(HaveKeyWithValue("binding_rotatable", true))
	// Exactly one key, not brokerapi's and Strata's side by side.
	raw, err := json.Marshal(c.CatalogResponse()[0].Plans[1])
	g.Expect(err).NotTo(HaveOccurred())
	var m map[string]json.RawMessage
	g.Expect(json.Unmarshal(raw, &m)).To(Succeed())
	g.Expect(string(m["binding_rotatable"])).To(Equal("true"))
}

// Changing the maintenance version is what offers platforms an upgrade.
func TestCatalogResponseMaintenanceVersionFollowsTheCatalog(t *testing.T) {
	g := NewWithT(t)
	c := catalog.Default()
	c.MaintenanceVersion = "1.1.0"
	for _, p := range catalogJSON(t, c)[0]["plans"].([]any) {
		g.Expect(p).To(HaveKeyWithValue("maintenance_info", HaveKeyWithValue("version", "1.1.0")))
	}
}

// OSB() is what brokerapi checks ids against: the same services and plans.
func TestOSBMatchesCatalogResponse(t *testing.T) {
	g := NewWithT(t)
	c := catalog.Default()
	resp := c.CatalogResponse()
	osb := c.OSB()
	g.Expect(osb).To(HaveLen(len(resp)))
	for i := range osb {
		g.Expect(osb[i].ID).To(Equal(resp[i].ID))
		g.Expect(osb[i].Plans).To(HaveLen(len(resp[i].Plans)))
		for j := range osb[i].Plans {
			g.Expect(osb[i].Plans[j].ID).To(Equal(resp[i].Plans[j].ID))
			g.Expect(osb[i].Plans[j].MaintenanceInfo).To(Equal(resp[i].Plans[j].MaintenanceInfo))
			g.Expect(*osb[i].Plans[j].MaximumPollingDuration).To(Equal(*resp[i].Plans[j].MaximumPollingDuration))
		}
	}
	// The response does not alias the catalog: editing it leaves the
	// catalog as it was.
	*resp[0].Plans[0].MaximumPollingDuration = 1
	again := c.CatalogResponse()
	g.Expect(*again[0].Plans[0].MaximumPollingDuration).To(Equal(c.Services[0].Plans[0].MaximumPollingDuration))
}

func BenchmarkCatalogResponse(b *testing.B) {
	c := catalog.Default()
	b.Run("build", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if len(c.CatalogResponse()) == 0 {
				b.Fatal("empty catalog")
			}
		}
	})
	b.Run("build+marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			raw, err := json.Marshal(map[string]any{"services": c.CatalogResponse()})
			if err != nil || len(raw) == 0 {
				b.Fatal(err)
			}
		}
	})
}
