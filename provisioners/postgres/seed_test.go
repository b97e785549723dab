package postgres

import (
	"slices"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
)

// openBaoConfig is the configuration of a broker whose credentials OpenBao
// issues (with the platform CA it needs).
func openBaoConfig() Config {
	c := DefaultConfig()
	c.ServerCertificates.IssuerName = "platform-ca"
	c.ServerCertificates.IssuerKind = "ClusterIssuer"
	c.CredentialManager = &CredentialManager{Namespace: "openbao"}
	return c
}

// openBaoBackupConfig is openBaoConfig on a platform with backups.
func openBaoBackupConfig() Config {
	c := baseConfig()
	c.ServerCertificates.IssuerName = "platform-ca"
	c.ServerCertificates.IssuerKind = "ClusterIssuer"
	c.CredentialManager = &CredentialManager{Namespace: "openbao"}
	return c
}

func copyParams(mask map[string]any) map[string]any {
	return map[string]any{"copy_of": map[string]any{"instance": testSourceID, "mask": mask}}
}

func TestSeedAndCopyParameters(t *testing.T) {
	tests := []struct {
		name   string
		plan   string
		params map[string]any
		// field is the parameter a refusal names; empty: accepted.
		field string
		more  []string
		check func(g Gomega, s Settings)
	}{
		{name: "seed from a ConfigMap, default key", params: map[string]any{"seed": map[string]any{"config_map": "fixtures"}},
			check: func(g Gomega, s Settings) {
				g.Expect(s.Seed).To(Equal(&SeedSource{Kind: "ConfigMap", Name: "fixtures", Key: DefaultSeedKey}))
			}},
		{name: "seed from a Secret", params: map[string]any{"seed": map[string]any{"secret": "fixtures", "key": "data.sql"}},
			check: func(g Gomega, s Settings) {
				g.Expect(s.Seed).To(Equal(&SeedSource{Kind: "Secret", Name: "fixtures", Key: "data.sql"}))
			}},
		{name: "seed from both", params: map[string]any{"seed": map[string]any{"secret": "a", "config_map": "b"}},
			field: "parameters.seed", more: []string{"exactly one of config_map, secret or s3"}},
		{name: "seed from S3 with keys", params: map[string]any{"seed": map[string]any{"s3": map[string]any{"bucket": "dumps", "key": "a.pgdump", "region": "eu-central-1", "credentials_secret": "keys"}}},
			check: func(g Gomega, s Settings) {
				g.Expect(s.Seed).To(BeNil(), "nothing runs at initdb")
				g.Expect(s.SeedS3).To(Equal(&S3Seed{Bucket: "dumps", Key: "a.pgdump", Region: "eu-central-1", CredentialsSecret: "keys"}))
			}},
		{name: "seed from S3 through IRSA", params: map[string]any{"seed": map[string]any{"s3": map[string]any{"bucket": "dumps", "key": "a.pgdump", "service_account": "seeder"}}},
			check: func(g Gomega, s Settings) {
				g.Expect(s.SeedS3).To(Equal(&S3Seed{Bucket: "dumps", Key: "a.pgdump", ServiceAccount: "seeder"}))
			}},
		{name: "seed from S3 without credentials", params: map[string]any{"seed": map[string]any{"s3": map[string]any{"bucket": "dumps", "key": "a.pgdump"}}},
			field: "parameters.seed.s3", more: []string{"exactly one of credentials_secret", "service_account"}},
		{name: "seed from S3 and a Secret", params: map[string]any{"seed": map[string]any{"secret": "a", "s3": map[string]any{"bucket": "dumps", "key": "a.pgdump", "credentials_secret": "keys"}}},
			field: "parameters.seed", more: []string{"exactly one of config_map, secret or s3"}},
		{name: "seed from S3 and copy", params: map[string]any{"seed": map[string]any{"s3": map[string]any{"bucket": "dumps", "key": "a.pgdump", "credentials_secret": "keys"}}, "copy_of": map[string]any{"instance": "x", "mask": map[string]any{}}},
			field: "parameters.seed", more: []string{"cannot be combined"}},
		{name: "seed from neither", params: map[string]any{"seed": map[string]any{"key": "x.sql"}},
			field: "parameters.seed", more: []string{"exactly one", `"x.sql"`}},
		{name: "seed and copy", params: map[string]any{"seed": map[string]any{"secret": "a"}, "copy_of": map[string]any{"instance": "x", "mask": map[string]any{}}},
			field: "parameters.seed", more: []string{"cannot be combined", "psql -f"}},
		{name: "seed and restore", plan: "standard", params: map[string]any{"seed": map[string]any{"secret": "a"}, "restore": map[string]any{"from_instance": "x", "to_time": "latest"}},
			field: "parameters.seed", more: []string{"cannot be combined"}},
		{name: "copy and restore", plan: "standard", params: map[string]any{"copy_of": map[string]any{"instance": "x", "mask": map[string]any{}}, "restore": map[string]any{"from_instance": "x", "to_time": "latest"}},
			field: "parameters.copy_of", more: []string{"provision the restore, then a copy of it"}},
		{name: "rules sorted by column", params: copyParams(map[string]any{"public.b.x": "hash", "public.a.y": "null", "app.z.w": "email"}),
			check: func(g Gomega, s Settings) {
				keys := []string{}
				for _, r := range s.Mask {
					keys = append(keys, r.Key()+"="+r.Strategy)
				}
				g.Expect(keys).To(Equal([]string{"app.z.w=email", "public.a.y=null", "public.b.x=hash"}))
			}},
		{name: "no rules", params: copyParams(map[string]any{}),
			check: func(g Gomega, s Settings) { g.Expect(s.Mask).To(BeEmpty()) }},
		{name: "column without schema", params: copyParams(map[string]any{"customers.email": "hash"}),
			field: "parameters.copy_of.mask.customers.email", more: []string{"schema.table.column"}},
		{name: "quoted identifier", params: copyParams(map[string]any{`public."Customers".email`: "hash"}),
			field: `parameters.copy_of.mask.public."Customers".email`, more: []string{"lowercase unquoted"}},
		{name: "SQL in a column name", params: copyParams(map[string]any{"public.t.x'; drop table t; --": "hash"}),
			field: "parameters.copy_of.mask.public.t.x'; drop table t; --", more: []string{"schema.table.column"}},
		{name: "unknown strategy", params: copyParams(map[string]any{"public.customers.email": "shuffle"}),
			field: "parameters.copy_of.mask.public.customers.email", more: []string{`"shuffle"`, "hash, email, redact, null"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			plan := tc.plan
			if plan == "" {
				plan = "dev-lite"
			}
			_, p := testPlan(t, plan)
			s, err := Resolve(p, tc.params)
			if tc.field == "" {
				g.Expect(err).NotTo(HaveOccurred())
				tc.check(g, s)
				return
			}
			g.Expect(err).To(HaveOccurred())
			g.Expect(err.Error()).To(HavePrefix(tc.field + ":"))
			for _, m := range tc.more {
				g.Expect(err.Error()).To(ContainSubstring(m))
			}
		})
	}
}

// The catalog's schema and the builder agree on the strategies.
func TestMaskStrategiesAreTheCatalogs(t *testing.T) {
	g := NewWithT(t)
	g.Expect(MaskStrategies).To(ConsistOf(MaskHash, MaskEmail, MaskRedact, MaskNull))
	g.Expect(catalog.MaskStrategies).To(Equal(MaskStrategies))
}

func TestMaskSQL(t *testing.T) {
	g := NewWithT(t)
	g.Expect(MaskSQL(nil)).To(BeNil(), "no rules, nothing to run after the import")
	rules, err := parseMask(map[string]string{"public.customers.email": "email", "public.customers.phone": "null", "billing.invoices.note": "hash"})
	g.Expect(err).NotTo(HaveOccurred())
	sql := MaskSQL(rules)
	// One DO block (one transaction: all rules or none), then one
	// rewrite per masked table.
	g.Expect(sql).To(HaveLen(3))
	g.Expect(sql[0]).To(HavePrefix("DO $strata_mask$"))
	g.Expect(sql[1:]).To(Equal([]string{`VACUUM (FULL, ANALYZE) "billing"."invoices"`, `VACUUM (FULL, ANALYZE) "public"."customers"`}))
	for _, want := range []string{
		"set_config('session_replication_role', 'replica', true)",
		`UPDATE "public"."customers" SET "phone" = NULL WHERE "phone" IS NOT NULL;`,
		`'u' || substr(encode(sha256(convert_to("email"::text, 'UTF8')), 'hex'), 1, 16) || '@example.invalid'`,
		`'h' || substr(encode(sha256(convert_to("note"::text, 'UTF8')), 'hex'), 1, 16)`,
		"masking rule public.customers.email: the column is part of a primary or foreign key",
		"masking rule public.customers.phone: the column is NOT NULL",
		"masking rule billing.invoices.note: hash needs a text column",
	} {
		g.Expect(sql[0]).To(ContainSubstring(want))
	}
	// Rules in column order, whatever the map's order.
	g.Expect(strings.Index(sql[0], "-- billing.invoices.note")).To(BeNumerically("<", strings.Index(sql[0], "-- public.customers.email")))
}

func TestSeedSQLRunsTheSeedAsTheOwner(t *testing.T) {
	g := NewWithT(t)
	_, err := SeedSQL("  \n")
	g.Expect(err).To(MatchError(ContainSubstring("empty")))

	seed := "CREATE TABLE t (id int);\nINSERT INTO t VALUES (1);"
	sql, err := SeedSQL(seed)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(sql).To(ContainSubstring("SECURITY DEFINER"))
	g.Expect(sql).To(ContainSubstring("ALTER FUNCTION public.strata_seed(text) OWNER TO strata_owner;"))
	g.Expect(sql).To(ContainSubstring("\n" + seed + "\n"))
	g.Expect(sql).To(HaveSuffix("DROP FUNCTION public.strata_seed(text);\n"))
	again, _ := SeedSQL(seed)
	g.Expect(again).To(Equal(sql), "pure: the same seed renders the same")

	// A seed cannot end the literal it is passed in: the tag depends on
	// the seed itself.
	tag := sql[strings.Index(sql, "SELECT public.strata_seed(")+len("SELECT public.strata_seed(") : strings.Index(sql, "\n"+seed)]
	g.Expect(tag).To(HavePrefix("$strata_seed_"))
	other, err := SeedSQL("SELECT 1; " + tag + "); DROP TABLE t; --")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(other).NotTo(ContainSubstring("SELECT public.strata_seed(" + tag + "\n"))
}

func TestBuildSeedsAndCopies(t *testing.T) {
	g := NewWithT(t)
	p := &Provisioner{Config: DefaultConfig()}
	src := &provisioners.CopySource{InstanceID: testSourceID, Name: "pg-" + testSourceID, Database: "app", CASecret: "pg-" + testSourceID + "-ca"}

	// copy_of without a resolved source is a broker bug, not rendered.
	inst := testInstance(t, "dev-lite", copyParams(map[string]any{}))
	_, err := p.Build(inst)
	g.Expect(err).To(MatchError(ContainSubstring("parameters.copy_of: the source instance was not resolved")))

	// A plan with backups would archive the unmasked import.
	inst = testInstance(t, "standard", copyParams(map[string]any{}))
	inst.Copy = src
	_, err = (&Provisioner{Config: baseConfig()}).Build(inst)
	g.Expect(err).To(MatchError(HavePrefix("parameters.copy_of: plan standard keeps backups")))

	// Under OpenBao the import creates the management role, without a
	// password and before masking; the management DatabaseRole and its
	// Secret go with the instance if OpenBao never took the role over.
	inst = testInstance(t, "dev-lite", copyParams(map[string]any{}))
	inst.Copy = src
	ob := &Provisioner{Config: openBaoConfig()}
	objs, err := ob.Build(inst)
	g.Expect(err).NotTo(HaveOccurred())
	var sql []string
	for _, o := range objs {
		if o.GetKind() == "Cluster" {
			sql, _, _ = unstructured.NestedStringSlice(o.Object, "spec", "bootstrap", "initdb", "import", "postImportApplicationSQL")
		}
	}
	g.Expect(sql).To(HaveLen(5)) // the role's statements (this copy masks nothing)
	g.Expect(sql[1]).To(Equal("CREATE ROLE strata_openbao LOGIN CREATEROLE NOINHERIT CONNECTION LIMIT 10;"))
	g.Expect(sql[3]).To(Equal("GRANT strata_owner, strata_readwrite, strata_readonly TO strata_openbao WITH ADMIN OPTION;"))
	g.Expect(strings.Join(sql, "\n")).NotTo(ContainSubstring("PASSWORD"))
	g.Expect(ob.Leftovers(inst)).To(ConsistOf(HaveField("Name", inst.Name+"-server-tls"), HaveField("Name", inst.Name+"-copy-source"),
		And(HaveField("Name", inst.Name+"-openbao-login"), HaveField("GVK.Kind", "Secret")),
		And(HaveField("Name", inst.Name+"-openbao-login"), HaveField("GVK.Kind", "DatabaseRole"))))

	// A copy's login Secret and a seed's Secret go with the instance.
	inst = testInstance(t, "dev-lite", copyParams(map[string]any{}))
	inst.Copy = src
	g.Expect(p.Leftovers(inst)).To(ConsistOf(HaveField("Name", inst.Name+"-copy-source")))
	inst = testInstance(t, "dev-lite", map[string]any{"seed": map[string]any{"secret": "s"}})
	g.Expect(p.Leftovers(inst)).To(ConsistOf(HaveField("Name", inst.Name+"-seed")))
	g.Expect(p.Leftovers(testInstance(t, "dev-lite", nil))).To(BeEmpty())
}

func TestCopySource(t *testing.T) {
	g := NewWithT(t)
	p := &Provisioner{Config: DefaultConfig()}
	source := instanceWithID(t, "standard", testSourceID, map[string]any{"databases": []any{"orders", "audit"}})
	req := &provisioners.CopyRequest{FromInstance: testSourceID}
	got, err := p.CopySource(req, source)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal(&provisioners.CopySource{InstanceID: testSourceID, Name: source.Name, Database: "orders", CASecret: source.Name + "-ca"}))

	req.Database = "audit"
	got, err = p.CopySource(req, source)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.Database).To(Equal("audit"))

	req.Database = "billing"
	_, err = p.CopySource(req, source)
	g.Expect(err).To(MatchError(HavePrefix(`parameters.copy_of.database: instance ` + testSourceID + ` has no database "billing"`)))

	shared := instanceWithID(t, "shared", testSourceID, nil)
	_, err = p.CopySource(&provisioners.CopyRequest{FromInstance: testSourceID}, shared)
	g.Expect(err).To(MatchError(HavePrefix("parameters.copy_of.instance:")))

	// The copy verifies the source against the platform CA when the
	// platform issues the server certificates.
	got, err = (&Provisioner{Config: openBaoConfig()}).CopySource(&provisioners.CopyRequest{FromInstance: testSourceID}, source)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.CASecret).To(Equal(source.Name + "-server-tls"))
}

func TestCheckUpdateKeepsSeedAndCopy(t *testing.T) {
	p := &Provisioner{Config: DefaultConfig()}
	for _, key := range []string{"seed", "copy_of"} {
		t.Run(key, func(t *testing.T) {
			g := NewWithT(t)
			params := map[string]any{"seed": map[string]any{"secret": "a"}}
			changed := map[string]any{"seed": map[string]any{"secret": "b"}}
			if key == "copy_of" {
				params, changed = copyParams(map[string]any{}), copyParams(map[string]any{"public.t.c": "hash"})
			}
			old := testInstance(t, "dev-lite", params)
			g.Expect(p.CheckUpdate(old, testInstance(t, "dev-lite", params))).To(Succeed())
			g.Expect(p.CheckUpdate(old, testInstance(t, "dev-lite", map[string]any{}))).To(Succeed(), "left out: the instance stays what it was made as")
			err := p.CheckUpdate(old, testInstance(t, "dev-lite", changed))
			g.Expect(err).To(MatchError(HavePrefix("parameters." + key + ": an instance is")))
			g.Expect(slices.Contains([]string{"seeded", "copied"}, strings.Fields(err.Error())[4])).To(BeTrue(), err.Error())
		})
	}
}
