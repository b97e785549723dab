package kafka

import (
	"testing"

	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/internal/provtest"
)

// BenchmarkBuild1000Instances renders 1,000 distinct instances of the three
// plans per iteration: the work of a broker re-applying a busy platform.
func BenchmarkBuild1000Instances(b *testing.B) {
	p := &Provisioner{Config: baseConfig()}
	insts := make([]provisioners.Instance, 1000)
	for i := range insts {
		plan := planNames[i%3]
		params := map[string]any{"topics": []any{
			map[string]any{"name": "orders", "partitions": float64(1 + i%6)},
			map[string]any{"name": "audit", "cleanup_policy": "compact"},
			map[string]any{"name": "events"},
		}}
		insts[i] = instanceWithID(b, plan, uuidFor(i), "team-"+uuidFor(i % 50)[:8], params)
		insts[i].Meshed = i%4 == 0
	}
	provtest.BenchBuild(b, p, insts)
}
