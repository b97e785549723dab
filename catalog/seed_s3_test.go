package catalog_test

import (
	"testing"

	. "github.com/onsi/gomega"

	"github.com/strata-dev/strata/catalog"
)

// A seed from S3 is not offered yet (docs/postgres.md, "Seeding"): its
// fetch and Job builder exist, the broker's part does not, so the
// parameter is refused with a 400 naming it instead of being ignored.
func TestSeedFromS3IsNotOfferedYet(t *testing.T) {
	g := NewWithT(t)
	plan := catalog.Default().Services[0].PlanByName("dev-lite")
	err := catalog.NewValidator().Validate(plan, catalog.KindProvision, map[string]any{
		"seed": map[string]any{"s3": map[string]any{"bucket": "dumps", "key": "orders.pgdump"}},
	})
	g.Expect(err).To(MatchError(ContainSubstring("parameters.seed.s3: unknown parameter")))
}
