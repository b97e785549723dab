package catalog_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/strata-dev/strata/catalog"
)

// schemaCase is one published schema of one plan.
type schemaCase struct {
	plan *catalog.Plan
	kind catalog.Kind
	doc  catalog.Schema
}

func (c schemaCase) String() string { return c.plan.Name + "/" + string(c.kind) }

func allSchemas(t *testing.T) []schemaCase {
	t.Helper()
	var out []schemaCase
	for _, s := range catalog.Default().Services {
		for i := range s.Plans {
			p := &s.Plans[i]
			ps := catalog.SchemasFor(p)
			out = append(out,
				schemaCase{p, catalog.KindProvision, ps.Provision},
				schemaCase{p, catalog.KindUpdate, ps.Update},
				schemaCase{p, catalog.KindBind, ps.Bind})
		}
	}
	if len(out) == 0 {
		t.Fatal("no schemas")
	}
	return out
}

// refs collects every "$ref" in a JSON document.
func refs(v any) []string {
	var out []string
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if k == "$ref" {
				out = append(out, fmt.Sprint(e))
			}
			out = append(out, refs(e)...)
		}
	case []any:
		for _, e := range x {
			out = append(out, refs(e)...)
		}
	}
	return out
}

// OSB 2.17 "Schema Object": $schema is required, no external $ref, at
// most 64 kB; the broker's own Validator must compile each.
func TestSchemasFollowOSB(t *testing.T) {
	v := catalog.NewValidator()
	for _, c := range allSchemas(t) {
		t.Run(c.String(), func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(c.doc).NotTo(BeNil())
			raw, err := json.Marshal(c.doc)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(len(raw)).To(BeNumerically("<", 64*1024))

			// Work on the JSON the platform receives, not on the Go value.
			var doc map[string]any
			g.Expect(json.Unmarshal(raw, &doc)).To(Succeed())
			g.Expect(doc).To(HaveKeyWithValue("$schema", Equal(catalog.SchemaDialect)))
			g.Expect(doc).To(HaveKeyWithValue("type", "object"))
			g.Expect(doc).To(HaveKeyWithValue("additionalProperties", false))
			for _, r := range refs(doc) {
				g.Expect(r).To(HavePrefix("#"), "external $ref")
			}

			compiled, _, err := v.CompiledSchema(c.plan, c.kind)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(compiled).NotTo(BeNil())
			// No parameters at all is always valid.
			g.Expect(v.Validate(c.plan, c.kind, nil)).To(Succeed())
		})
	}
}

// defaults builds the parameters object made of every property's default.
func defaults(doc catalog.Schema) map[string]any {
	out := map[string]any{}
	props, _ := doc["properties"].(catalog.Schema)
	for name, p := range props {
		ps := p.(catalog.Schema)
		if d, ok := ps["default"]; ok {
			out[name] = d
		} else if ps["type"] == "object" {
			if sub := defaults(ps); len(sub) > 0 {
				out[name] = sub
			}
		}
	}
	return out
}

// A schema's defaults must be valid against the schema itself, or a UI that
// pre-fills them produces a request the broker refuses.
func TestSchemaDefaultsAreValid(t *testing.T) {
	v := catalog.NewValidator()
	for _, c := range allSchemas(t) {
		t.Run(c.String(), func(t *testing.T) {
			g := NewWithT(t)
			params := defaults(c.doc)
			raw, _ := json.Marshal(params)
			var decoded map[string]any
			g.Expect(json.Unmarshal(raw, &decoded)).To(Succeed())
			g.Expect(v.Validate(c.plan, c.kind, decoded)).To(Succeed(), "defaults %s", raw)
		})
	}
}

// The instance schemas publish the plan's own numbers.
func TestInstanceSchemasFollowThePlan(t *testing.T) {
	for _, p := range catalog.Default().Services[0].Plans {
		if p.Postgres.Shared {
			continue // no sizing parameters: TestSharedPlanSchemas
		}
		t.Run(p.Name, func(t *testing.T) {
			g := NewWithT(t)
			pg := p.Postgres
			schemas := catalog.SchemasFor(&p)
			for _, doc := range []catalog.Schema{schemas.Provision, schemas.Update} {
				props := doc["properties"].(catalog.Schema)
				storage := props["storage_gb"].(catalog.Schema)
				g.Expect(storage["minimum"]).To(Equal(pg.MinStorageGB))
				g.Expect(storage["maximum"]).To(Equal(pg.MaxStorageGB))
				replicas := props["replicas"].(catalog.Schema)
				g.Expect(replicas["minimum"]).To(Equal(pg.MinReplicas))
				g.Expect(replicas["maximum"]).To(Equal(pg.MaxReplicas))
				if pg.Backup == nil {
					g.Expect(props).NotTo(HaveKey("backup"))
				} else {
					g.Expect(props).To(HaveKey("backup"))
				}
			}
			// Provisioning shows the plan's defaults; an update has none,
			// so a form that pre-fills them sends only what the user
			// changes.
			provision := schemas.Provision["properties"].(catalog.Schema)
			g.Expect(provision["storage_gb"]).To(HaveKeyWithValue("default", pg.StorageGB))
			g.Expect(provision["replicas"]).To(HaveKeyWithValue("default", pg.Instances-1))
			raw, err := json.Marshal(schemas.Update)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(string(raw)).NotTo(ContainSubstring(`"default"`))
		})
	}
}

func plan(t *testing.T, name string) *catalog.Plan {
	t.Helper()
	p := catalog.Default().Services[0].PlanByName(name)
	if p == nil {
		t.Fatalf("no plan %q", name)
	}
	return p
}

func TestValidatorAcceptsValidParameters(t *testing.T) {
	tests := []struct {
		name   string
		plan   string
		kind   catalog.Kind
		params string
	}{
		{"empty", "standard", catalog.KindProvision, `{}`},
		{"everything on standard", "standard", catalog.KindProvision, `{
			"version": "16", "storage_gb": 500, "replicas": 4,
			"resources": {"cpu": "1500m", "memory": "4Gi"},
			"databases": ["orders", "order_audit"], "extensions": ["vector", "uuid-ossp"],
			"audit": {"classes": ["read", "write"]}, "xa": true,
			"backup": {"schedule": "0 0 1 * * *", "retention_days": 35}}`},
		{"ha bounds", "ha", catalog.KindProvision, `{"storage_gb": 10, "replicas": 8}`},
		{"dev-lite bounds", "dev-lite", catalog.KindProvision, `{"storage_gb": 20, "replicas": 0}`},
		{"decimal cpu", "ha", catalog.KindProvision, `{"resources": {"cpu": "2.5"}}`},
		{"update", "standard", catalog.KindUpdate, `{"storage_gb": 40, "databases": ["app", "reports"]}`},
		{"drills at the bounds", "standard", catalog.KindProvision, `{"drills": {"enabled": true, "interval_hours": 6}}`},
		{"drills weekly on update", "ha", catalog.KindUpdate, `{"drills": {"interval_hours": 168}}`},
		{"drills off", "ha", catalog.KindUpdate, `{"drills": {"enabled": false}}`},
		{"bind", "ha", catalog.KindBind, `{"access": "owner", "database": "orders", "mount_path": "/bindings/db"}`},
		{"bind empty", "dev-lite", catalog.KindBind, `{}`},
	}
	v := catalog.NewValidator()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			var params map[string]any
			g.Expect(json.Unmarshal([]byte(tc.params), &params)).To(Succeed())
			g.Expect(v.Validate(plan(t, tc.plan), tc.kind, params)).To(Succeed())
		})
	}
}

func TestValidatorErrorsNameTheParameter(t *testing.T) {
	tests := []struct {
		name   string
		plan   string
		kind   catalog.Kind
		params string
		// every string must be in the error
		want []string
	}{
		{"unknown key", "standard", catalog.KindProvision, `{"size": "large"}`,
			[]string{"parameters.size: unknown parameter", "accepted here:", "storage_gb"}},
		{"unknown nested key", "ha", catalog.KindProvision, `{"resources": {"gpu": "1"}}`,
			[]string{"parameters.resources.gpu: unknown parameter", "accepted here: cpu, memory"}},
		{"backup on dev-lite", "dev-lite", catalog.KindProvision, `{"backup": {"retention_days": 3}}`,
			[]string{"parameters.backup: unknown parameter"}},
		{"storage above the plan", "standard", catalog.KindProvision, `{"storage_gb": 501}`,
			[]string{"parameters.storage_gb", "501", "500"}},
		{"storage below the plan", "ha", catalog.KindProvision, `{"storage_gb": 9}`,
			[]string{"parameters.storage_gb", "9", "10"}},
		{"storage not an integer", "standard", catalog.KindProvision, `{"storage_gb": 20.5}`,
			[]string{"parameters.storage_gb"}},
		{"storage as a string", "standard", catalog.KindUpdate, `{"storage_gb": "20"}`,
			[]string{"parameters.storage_gb"}},
		{"replicas above the plan", "standard", catalog.KindProvision, `{"replicas": 5}`,
			[]string{"parameters.replicas", "5", "4"}},
		{"replicas below the plan", "ha", catalog.KindUpdate, `{"replicas": 1}`,
			[]string{"parameters.replicas", "1", "2"}},
		{"replicas on dev-lite", "dev-lite", catalog.KindProvision, `{"replicas": 1}`,
			[]string{"parameters.replicas"}},
		{"bad version", "standard", catalog.KindProvision, `{"version": "14"}`,
			[]string{"parameters.version", "must be one of", "'17'"}},
		{"version as a number", "ha", catalog.KindProvision, `{"version": 17}`,
			[]string{"parameters.version"}},
		{"bad extension", "standard", catalog.KindProvision, `{"extensions": ["citext", "timescaledb"]}`,
			[]string{"parameters.extensions.1", "must be one of", "'vector'"}},
		{"duplicate extension", "standard", catalog.KindProvision, `{"extensions": ["citext", "citext"]}`,
			[]string{"parameters.extensions"}},
		{"bad database name", "standard", catalog.KindProvision, `{"databases": ["orders", "Billing-DB"]}`,
			[]string{"parameters.databases.1", "does not match the pattern ^[a-z]"}},
		{"database name too long", "ha", catalog.KindProvision, `{"databases": ["` + strings.Repeat("d", 64) + `"]}`,
			[]string{"parameters.databases.0"}},
		{"no databases", "ha", catalog.KindProvision, `{"databases": []}`,
			[]string{"parameters.databases"}},
		{"bad memory", "standard", catalog.KindProvision, `{"resources": {"memory": "2GB"}}`,
			[]string{"parameters.resources.memory", "(Mi|Gi)"}},
		{"bad audit class", "standard", catalog.KindProvision, `{"audit": {"classes": ["everything"]}}`,
			[]string{"parameters.audit.classes.0", "must be one of", "'ddl'"}},
		{"audit off", "standard", catalog.KindProvision, `{"audit": {"classes": []}}`,
			[]string{"parameters.audit.classes"}},
		{"retention above the plan", "standard", catalog.KindProvision, `{"backup": {"retention_days": 36}}`,
			[]string{"parameters.backup.retention_days", "36", "35"}},
		{"drill interval below the bounds", "standard", catalog.KindProvision, `{"drills": {"interval_hours": 5}}`,
			[]string{"parameters.drills.interval_hours", "5", "6"}},
		{"drill interval above the bounds", "ha", catalog.KindUpdate, `{"drills": {"interval_hours": 169}}`,
			[]string{"parameters.drills.interval_hours", "169", "168"}},
		{"drill interval as a duration", "standard", catalog.KindUpdate, `{"drills": {"interval_hours": "24h"}}`,
			[]string{"parameters.drills.interval_hours"}},
		{"drills enabled not a boolean", "standard", catalog.KindProvision, `{"drills": {"enabled": "no"}}`,
			[]string{"parameters.drills.enabled"}},
		{"drills unknown key", "standard", catalog.KindProvision, `{"drills": {"every": 3}}`,
			[]string{"parameters.drills.every: unknown parameter", "accepted here: enabled, interval_hours"}},
		{"drills on dev-lite", "dev-lite", catalog.KindProvision, `{"drills": {"enabled": true}}`,
			[]string{"parameters.drills: unknown parameter"}},
		{"xa not a boolean", "ha", catalog.KindProvision, `{"xa": "yes"}`,
			[]string{"parameters.xa"}},
		{"bind unknown access", "standard", catalog.KindBind, `{"access": "superuser"}`,
			[]string{"parameters.access", "'readwrite', 'readonly', 'owner'"}},
		{"bind bad mount path", "standard", catalog.KindBind, `{"mount_path": "relative/path"}`,
			[]string{"parameters.mount_path"}},
		{"bind unknown key", "standard", catalog.KindBind, `{"role": "admin"}`,
			[]string{"parameters.role: unknown parameter", "accepted here: access, database, mount_path"}},
		{"two errors at once", "standard", catalog.KindProvision, `{"replicas": 99, "version": "9"}`,
			[]string{"parameters.replicas", "parameters.version"}},
	}
	v := catalog.NewValidator()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			var params map[string]any
			g.Expect(json.Unmarshal([]byte(tc.params), &params)).To(Succeed())
			err := v.Validate(plan(t, tc.plan), tc.kind, params)
			g.Expect(err).To(HaveOccurred())
			g.Expect(err.Error()).To(HavePrefix("invalid parameters: "))
			for _, w := range tc.want {
				g.Expect(err.Error()).To(ContainSubstring(w))
			}
			// Parameters are named, their string values never repeated:
			// one may be a secret, and descriptions reach logs.
			for _, v := range []string{"Billing-DB", "2GB", "superuser", "relative/path"} {
				g.Expect(err.Error()).NotTo(ContainSubstring(v))
			}
		})
	}
}

// Parameters decoded by something else than encoding/json (Go ints, typed
// slices) validate the same.
func TestValidatorAcceptsGoValues(t *testing.T) {
	g := NewWithT(t)
	v := catalog.NewValidator()
	p := plan(t, "standard")
	g.Expect(v.Validate(p, catalog.KindProvision, map[string]any{
		"storage_gb": 30, "replicas": int64(2), "databases": []string{"a", "b"},
	})).To(Succeed())
	g.Expect(v.Validate(p, catalog.KindProvision, map[string]any{"storage_gb": 3000})).To(
		MatchError(ContainSubstring("parameters.storage_gb")))
}

// Compiled schemas are cached per plan and kind, and the cache is safe for
// concurrent requests.
func TestValidatorCachesAndIsConcurrencySafe(t *testing.T) {
	g := NewWithT(t)
	v := catalog.NewValidator()
	p := plan(t, "ha")
	first, _, err := v.CompiledSchema(p, catalog.KindProvision)
	g.Expect(err).NotTo(HaveOccurred())
	again, _, err := v.CompiledSchema(p, catalog.KindProvision)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(again).To(BeIdenticalTo(first))
	other, _, err := v.CompiledSchema(p, catalog.KindBind)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(other).NotTo(BeIdenticalTo(first))

	errs := make(chan error, 16)
	for i := range 16 {
		go func() {
			// Even requests are valid, odd ones are not.
			params := map[string]any{"replicas": 2}
			if i%2 == 1 {
				params["replicas"] = 100
			}
			err := v.Validate(plan(t, []string{"standard", "ha"}[i%2]), catalog.KindProvision, params)
			if (err == nil) != (i%2 == 0) {
				errs <- fmt.Errorf("request %d: unexpected result %w", i, err)
				return
			}
			errs <- nil
		}()
	}
	for range 16 {
		g.Expect(<-errs).NotTo(HaveOccurred())
	}
}

func TestValidatorUnknownKind(t *testing.T) {
	g := NewWithT(t)
	err := catalog.NewValidator().Validate(plan(t, "standard"), catalog.Kind("deprovision"), nil)
	g.Expect(err).To(MatchError(ContainSubstring(`has no deprovision schema`)))
}

// The restore parameter takes a source id and an RFC 3339 time or
// "latest", on provision and (unchanged, checked by the provisioner) on
// update, so a Kubernetes platform can send its whole parameter set again.
func TestRestoreParameterSchema(t *testing.T) {
	v := catalog.NewValidator()
	_, standard, err := catalog.Default().Find(catalog.PostgresServiceID, catalog.PostgresStandardID)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		restore map[string]any
		wantErr string
	}{
		{restore: map[string]any{"from_instance": "src", "to_time": "latest"}},
		{restore: map[string]any{"from_instance": "src", "to_time": "2026-03-01T11:30:00Z"}},
		{restore: map[string]any{"from_instance": "src", "to_time": "2026-03-01T13:30:00.123456+02:00"}},
		{restore: map[string]any{"from_instance": "src", "to_time": "2026-03-01 11:30"}, wantErr: "parameters.restore.to_time: does not match the pattern"},
		{restore: map[string]any{"from_instance": "src", "to_time": "yesterday"}, wantErr: "parameters.restore.to_time: does not match the pattern"},
		{restore: map[string]any{"from_instance": "", "to_time": "latest"}, wantErr: "parameters.restore.from_instance: minLength"},
		{restore: map[string]any{"to_time": "latest"}, wantErr: "parameters.restore: missing property 'from_instance'"},
		{restore: map[string]any{"from_instance": "src", "to_time": "latest", "at": "x"}, wantErr: "parameters.restore.at: unknown parameter; accepted here: from_instance, to_time"},
	} {
		for _, k := range []catalog.Kind{catalog.KindProvision, catalog.KindUpdate} {
			t.Run(fmt.Sprint(k, tc.restore), func(t *testing.T) {
				g := NewWithT(t)
				err := v.Validate(standard, k, map[string]any{"restore": tc.restore})
				if tc.wantErr == "" {
					g.Expect(err).NotTo(HaveOccurred())
					return
				}
				g.Expect(err).To(MatchError(ContainSubstring(tc.wantErr)))
			})
		}
	}
}

// The platform's bounds (broker configuration drills) are what the
// schemas publish and the validator holds an instance's interval to; a
// plan's own interval outside them is pulled in.
func TestSetDrillBounds(t *testing.T) {
	g := NewWithT(t)
	c := catalog.Default()
	c.SetDrillBounds(48*time.Hour, 72*time.Hour)
	_, std, err := c.Find(catalog.PostgresServiceID, catalog.PostgresStandardID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(std.Postgres.Drill.Interval).To(Equal(48 * time.Hour))
	props := catalog.SchemasFor(std).Provision["properties"].(catalog.Schema)
	iv := props["drills"].(catalog.Schema)["properties"].(catalog.Schema)["interval_hours"].(catalog.Schema)
	g.Expect(iv).To(And(HaveKeyWithValue("minimum", 48), HaveKeyWithValue("maximum", 72), HaveKeyWithValue("default", 48)))
	_, dev, err := c.Find(catalog.PostgresServiceID, catalog.PostgresDevLiteID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(dev.Postgres.Drill).To(BeNil())
	v := catalog.NewValidator()
	g.Expect(v.Validate(std, catalog.KindUpdate, map[string]any{"drills": map[string]any{"interval_hours": 24}})).To(MatchError(ContainSubstring("parameters.drills.interval_hours")))
	g.Expect(v.Validate(std, catalog.KindUpdate, map[string]any{"drills": map[string]any{"interval_hours": 60}})).To(Succeed())
	// The default catalog is untouched.
	_, std2, _ := catalog.Default().Find(catalog.PostgresServiceID, catalog.PostgresStandardID)
	g.Expect(std2.Postgres.Drill.MinInterval).To(Equal(catalog.DefaultDrillMinInterval))
}
