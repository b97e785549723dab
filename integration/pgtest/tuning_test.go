//go:build linux

package pgtest_test

import (
	"maps"
	"regexp"
	"strconv"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// pg15Defaults are PostgreSQL 15's compiled-in values (kB) of the memory and
// WAL settings the tuning renders: what the stock server runs with.
var pg15Defaults = map[string]int64{
	"shared_buffers":       128 << 10,
	"effective_cache_size": 4 << 20,
	"work_mem":             4 << 10,
	"maintenance_work_mem": 64 << 10,
	"max_wal_size":         1 << 20,
	"min_wal_size":         80 << 10,
}

// TestPlanTunedConfigDiffersFromStock checks the configurations
// BenchmarkPlanTunedVsStockPostgres compares, so that it cannot compare
// stock with stock: the tuned Cluster carries the builder's resource-derived
// settings, away from PostgreSQL's defaults where it matters and within the
// plan's memory; the stock one is the same Cluster without them, and
// nothing else differs.
func TestPlanTunedConfigDiffersFromStock(t *testing.T) {
	g := NewWithT(t)
	tuned, stock := tunedAndStock(t, tunedBenchPlan)
	tp, _, _ := unstructured.NestedStringMap(tuned.Object, "spec", "postgresql", "parameters")
	sp, _, _ := unstructured.NestedStringMap(stock.Object, "spec", "postgresql", "parameters")
	tuning := planTuning(t, tunedBenchPlan)

	g.Expect(tuning).To(HaveKey("shared_buffers"))
	for k, v := range tuning {
		g.Expect(tp).To(HaveKeyWithValue(k, v), "the builder renders %s from the plan's resources", k)
		g.Expect(sp).NotTo(HaveKey(k), "the stock server leaves %s at PostgreSQL's default", k)
	}
	rest := maps.Clone(tp)
	maps.DeleteFunc(rest, func(k, _ string) bool { _, ok := tuning[k]; return ok })
	g.Expect(sp).To(Equal(rest), "everything but the tuning is the same on both")
	g.Expect(tp).NotTo(HaveKey("archive_timeout"), "inert without the operator's archiving")

	// standard: 1 CPU, 2Gi, 20Gi.
	kb := func(k string) int64 { return sizeKB(t, tp[k]) }
	for _, k := range mustDiffer {
		g.Expect(kb(k)).NotTo(Equal(pg15Defaults[k]), "%s %s is PostgreSQL's default", k, tp[k])
	}
	g.Expect(kb("shared_buffers")).To(Equal(int64(512<<10)), "a quarter of 2Gi")
	g.Expect(kb("effective_cache_size")).To(Equal(int64(1536<<10)), "three quarters of 2Gi")
	g.Expect(kb("maintenance_work_mem")).To(Equal(int64(128 << 10)))
	g.Expect(kb("max_wal_size")).To(BeNumerically(">", pg15Defaults["max_wal_size"]), "fewer checkpoints on the 20Gi volume")
	g.Expect(kb("work_mem")).To(BeNumerically(">=", pg15Defaults["work_mem"]))
	maxConn, err := strconv.ParseInt(tp["max_connections"], 10, 64)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(kb("shared_buffers")+kb("work_mem")*maxConn+kb("maintenance_work_mem")).To(BeNumerically("<=", int64(2<<20)),
		"shared_buffers, a sort in every connection and a VACUUM fit the 2Gi limit")
}

var sizeRE = regexp.MustCompile(`^(\d+)(kB|MB|GB)$`)

// sizeKB reads a rendered memory setting in kB.
func sizeKB(t *testing.T, v string) int64 {
	t.Helper()
	m := sizeRE.FindStringSubmatch(v)
	if m == nil {
		t.Fatalf("%q is not a size in kB, MB or GB", v)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n << map[string]int{"kB": 0, "MB": 10, "GB": 20}[m[2]]
}
