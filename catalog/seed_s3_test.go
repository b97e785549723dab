package catalog_test

import (
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/strata-dev/strata/catalog"
)

// seed.s3 (docs/postgres.md, "Seeding"): what the schema accepts and
// what it refuses, each refusal naming the parameter.
func TestSeedFromS3Schema(t *testing.T) {
	plan := catalog.Default().Services[0].PlanByName("dev-lite")
	v := catalog.NewValidator()
	s3 := func(kv ...any) map[string]any {
		m := map[string]any{"bucket": "orders-dumps", "key": "prod/2026-12-01.pgdump", "credentials_secret": "orders-s3"}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
				continue
			}
			m[kv[i].(string)] = kv[i+1]
		}
		return map[string]any{"seed": map[string]any{"s3": m}}
	}
	for name, c := range map[string]struct {
		params map[string]any
		err    string
	}{
		"keys":                      {params: s3()},
		"an S3-compatible endpoint": {params: s3("endpoint", "https://s3.example.net:9000", "region", "eu-central-1")},
		"IRSA":                      {params: s3("credentials_secret", nil, "service_account", "orders-seeder")},
		"no bucket":                 {params: s3("bucket", nil), err: "parameters.seed.s3: missing property 'bucket'"},
		"no key":                    {params: s3("key", nil), err: "parameters.seed.s3: missing property 'key'"},
		"a bucket name S3 refuses":  {params: s3("bucket", "Orders_Dumps"), err: "parameters.seed.s3.bucket"},
		"a key with a newline":      {params: s3("key", "a\nb"), err: "parameters.seed.s3.key"},
		"a key too long":            {params: s3("key", strings.Repeat("k", 1025)), err: "parameters.seed.s3.key"},
		"plain http":                {params: s3("endpoint", "http://s3.example.net"), err: "parameters.seed.s3.endpoint"},
		"an unknown field":          {params: s3("acl", "public"), err: "parameters.seed.s3.acl: unknown parameter"},
		"a Secret name":             {params: s3("credentials_secret", "Orders S3"), err: "parameters.seed.s3.credentials_secret"},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			err := v.Validate(plan, catalog.KindProvision, c.params)
			if c.err == "" {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(MatchError(ContainSubstring(c.err)))
		})
	}
}
