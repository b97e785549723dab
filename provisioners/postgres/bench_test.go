package postgres

import (
	"testing"

	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/internal/provtest"
)

// benchInstances are n distinct instances, alternating standard and ha,
// with a few parameters so Resolve does real work.
func benchInstances(b *testing.B, n int) []provisioners.Instance {
	b.Helper()
	out := make([]provisioners.Instance, n)
	for i := range out {
		plan := "standard"
		params := map[string]any{"databases": []any{"app", "reports"}, "storage_gb": float64(20 + i%100)}
		if i%2 == 1 {
			plan = "ha"
			params = map[string]any{"xa": true, "extensions": []any{"pg_trgm"}, "replicas": float64(2 + i%3)}
		}
		out[i] = instanceWithID(b, plan, uuidFor(i), params)
		out[i].Meshed = i%4 == 0
	}
	return out
}

// BenchmarkBuild1000Instances renders 1,000 distinct standard and ha
// instances per iteration: the work of a broker re-applying a busy
// platform's instances.
func BenchmarkBuild1000Instances(b *testing.B) {
	p := &Provisioner{Config: fullBackupConfig()}
	insts := benchInstances(b, 1000)
	provtest.BenchBuild(b, p, insts)
}

func BenchmarkBuildOne(b *testing.B) {
	for _, plan := range []string{"standard", "ha"} {
		b.Run(plan, func(b *testing.B) {
			p := &Provisioner{Config: fullBackupConfig()}
			inst := instanceWithID(b, plan, testInstanceID, map[string]any{"databases": []any{"app", "reports"}})
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := p.Build(inst); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
