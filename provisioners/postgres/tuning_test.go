package postgres

import (
	"regexp"
	"strconv"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/strata-dev/strata/catalog"
)

// TestTuningFitsEveryPlan: for every dedicated plan at its default, smallest
// and largest resources, the tuning is valid PostgreSQL (whole units, the
// floors PostgreSQL needs) and, from 512Mi up, shared_buffers plus a sort
// in every connection fits the memory limit (strata-advisor's OOM rule;
// below, work_mem stays at PostgreSQL's 4MB default, as it was untuned).
func TestTuningFitsEveryPlan(t *testing.T) {
	g := NewWithT(t)
	size := regexp.MustCompile(`^(\d+)(kB|MB)$`)
	kb := func(v string) int64 {
		m := size.FindStringSubmatch(v)
		g.Expect(m).NotTo(BeNil(), "%q is a size", v)
		n, _ := strconv.ParseInt(m[1], 10, 64)
		if m[2] == "MB" {
			n <<= 10
		}
		return n
	}
	for _, p := range catalog.Default().Services[0].Plans {
		pg := p.Postgres
		if pg == nil || pg.Shared {
			continue
		}
		for _, res := range []struct {
			cpu, memory string
			storage     int
		}{{pg.CPU, pg.Memory, pg.StorageGB}, {"100m", "256Mi", pg.MinStorageGB}, {pg.MaxCPU, pg.MaxMemory, pg.MaxStorageGB}} {
			tu, err := Tuning(Settings{CPU: res.cpu, Memory: res.memory, StorageGB: res.storage}, pg.MaxConnections)
			g.Expect(err).NotTo(HaveOccurred())
			q := resource.MustParse(res.memory)
			mem := q.Value() >> 10
			what := p.Name + " " + res.cpu + "/" + res.memory
			g.Expect(kb(tu["shared_buffers"])).To(Equal(max(mem/4, 16<<10)), what)
			g.Expect(kb(tu["effective_cache_size"])).To(Equal(mem*3/4), what)
			g.Expect(kb(tu["work_mem"])).To(BeNumerically(">=", 4<<10), what)
			g.Expect(kb(tu["maintenance_work_mem"])).To(And(BeNumerically(">=", 64<<10), BeNumerically("<=", 2<<20)), what)
			g.Expect(kb(tu["min_wal_size"])).To(BeNumerically(">=", 32<<10), "two 16MB segments: "+what)
			g.Expect(kb(tu["max_wal_size"])).To(BeNumerically(">=", 4*kb(tu["min_wal_size"])), what)
			g.Expect(kb(tu["max_wal_size"])).To(BeNumerically("<=", int64(res.storage)<<20/8), "an eighth of the volume at most: "+what)
			if mem >= 512<<10 {
				g.Expect(kb(tu["shared_buffers"])+kb(tu["work_mem"])*int64(pg.MaxConnections)).To(BeNumerically("<=", mem), what)
			}
			workers, _ := strconv.Atoi(tu["max_parallel_workers"])
			perQuery, _ := strconv.Atoi(tu["max_parallel_workers_per_gather"])
			g.Expect(workers).To(BeNumerically(">=", 2), what)
			g.Expect(perQuery).To(And(BeNumerically(">=", 1), BeNumerically("<=", workers)), what)
		}
	}
	_, err := Tuning(Settings{CPU: "1", Memory: "lots", StorageGB: 1}, 10)
	g.Expect(err).To(MatchError(ContainSubstring("parameters.resources.memory")))
}
