package redis

import (
	"testing"

	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/internal/provtest"
)

// BenchmarkBuild1000Instances renders 1,000 distinct instances of the three
// plans per iteration, a quarter of them meshed.
func BenchmarkBuild1000Instances(b *testing.B) {
	p := &Provisioner{Config: baseConfig()}
	insts := make([]provisioners.Instance, 1000)
	for i := range insts {
		plan := planNames[i%3]
		insts[i] = instanceWithID(b, plan, uuidFor(i), map[string]any{"maxmemory_policy": "allkeys-lfu"})
		insts[i].Meshed = i%4 == 0
	}
	provtest.BenchBuild(b, p, insts)
}
