package advisor

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// The rules are pure functions: these tables pin them down without a
// server. The *_real_test.go files check the collectors on real servers.

func TestFilterColumns(t *testing.T) {
	for _, c := range []struct {
		filter string
		want   []string
	}{
		{"(orders.customer_id = $1)", []string{"customer_id"}},
		{"((orders.status)::text = $1)", []string{"status"}},
		{"((o.a = $1) AND (o.b > $2) AND (o.c = $3))", []string{"a", "c", "b"}},
		{"((o.a > $1) AND (o.b < $2))", []string{"a"}},
		{"((o.a = $1) OR (o.b = $2))", nil},
		{"(lower(o.email) = $1)", nil},
		{`(o."customerId" = $1)`, []string{"customerId"}},
		{"(o.deleted_at IS NULL)", []string{"deleted_at"}},
		{"(o.id = ANY ($1))", []string{"id"}},
		{"(o.a = o.b)", nil},
		{"(o.note ~~ $1)", nil},
		{"((o.kind = 'x'::text) AND (o.n >= 10))", []string{"kind", "n"}},
		{"((o.a = $1) AND (o.b = $2) AND (o.c = $3) AND (o.d = $4))", []string{"a", "b", "c"}},
		{"((o.a = $1) AND ((o.b = $2) OR (o.c = $3)))", []string{"a"}},
	} {
		t.Run(c.filter, func(t *testing.T) {
			NewWithT(t).Expect(FilterColumns(c.filter)).To(Equal(c.want))
		})
	}
}

const nestedPlan = `[{"Plan": {"Node Type": "Gather", "Total Cost": 5000.5, "Plans": [
  {"Node Type": "Hash Join", "Total Cost": 4900, "Plans": [
    {"Node Type": "Seq Scan", "Relation Name": "orders", "Schema": "public", "Filter": "(orders.customer_id = $1)", "Total Cost": 4000},
    {"Node Type": "Seq Scan", "Relation Name": "small", "Schema": "public", "Filter": "(small.x = $2)", "Total Cost": 10},
    {"Node Type": "Index Scan", "Relation Name": "items", "Schema": "public", "Index Name": "items_pkey", "Total Cost": 8}
  ]}]}}]`

func TestIndexCandidates(t *testing.T) {
	g := NewWithT(t)
	plan, err := ParsePlan([]byte(nestedPlan))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(plan.TotalCost).To(Equal(5000.5))
	got := IndexCandidates(plan, map[string]bool{"public.orders": true})
	g.Expect(got).To(Equal([]IndexCandidate{{Schema: "public", Table: "orders", Columns: []string{"customer_id"}}}),
		"the small table's scan is the right plan; only the large one gets a candidate")
	g.Expect(plan.UsesIndex("items_pkey")).To(BeTrue())
	g.Expect(plan.UsesIndex("orders_x")).To(BeFalse())
	g.Expect(got[0].CreateIndex(false)).To(Equal(`CREATE INDEX ON "public"."orders" ("customer_id")`))
	g.Expect(got[0].CreateIndex(true)).To(HavePrefix(`CREATE INDEX CONCURRENTLY ON`))
	_, err = ParsePlan([]byte(`[]`))
	g.Expect(err).To(HaveOccurred())
}

func TestTopStatements(t *testing.T) {
	g := NewWithT(t)
	stmts := []Statement{
		{QueryID: 1, Query: "SELECT * FROM t WHERE a = $1", TotalMs: 10},
		{QueryID: 2, Query: "INSERT INTO t VALUES ($1)", TotalMs: 100},
		{QueryID: 3, Query: "select relname from pg_catalog.pg_class", TotalMs: 90},
		{QueryID: 4, Query: "/* app */ UPDATE t SET b = $1 WHERE a = $2", TotalMs: 50},
		{QueryID: 5, Query: "WITH x AS (SELECT 1) SELECT * FROM x", TotalMs: 20},
		{QueryID: 6, Query: "DELETE FROM t WHERE a < $1", TotalMs: 5},
	}
	var ids []int64
	for _, s := range TopStatements(stmts, 3) {
		ids = append(ids, s.QueryID)
	}
	g.Expect(ids).To(Equal([]int64{4, 5, 1}), "explainable ones, most total time first, at most n")
}

func TestMissingIndexes(t *testing.T) {
	c := IndexCandidate{Schema: "public", Table: "orders", Columns: []string{"customer_id"}}
	slow := Statement{QueryID: 1, Query: "SELECT … customer_id = $1", Calls: 100, TotalMs: 900}
	slower := Statement{QueryID: 2, Query: "UPDATE … customer_id = $1", Calls: 10, TotalMs: 1200}
	for _, tc := range []struct {
		name    string
		trials  []IndexTrial
		indexes []IndexStats
		want    []int64 // the statement each recommendation names
	}{
		{"clear gain", []IndexTrial{{Statement: slow, Candidate: c, CostBefore: 4000, CostAfter: 80, Used: true}}, nil, []int64{1}},
		{"gain below half", []IndexTrial{{Statement: slow, Candidate: c, CostBefore: 4000, CostAfter: 2100, Used: true}}, nil, nil},
		{"hypothetical index not used", []IndexTrial{{Statement: slow, Candidate: c, CostBefore: 4000, CostAfter: 80, Used: false}}, nil, nil},
		{"already indexed", []IndexTrial{{Statement: slow, Candidate: c, CostBefore: 4000, CostAfter: 80, Used: true}},
			[]IndexStats{{Schema: "public", Table: "orders", Name: "o_c_d", Keys: []string{"customer_id", "d"}, Method: "btree", Valid: true}}, nil},
		{"an invalid index does not count", []IndexTrial{{Statement: slow, Candidate: c, CostBefore: 4000, CostAfter: 80, Used: true}},
			[]IndexStats{{Schema: "public", Table: "orders", Name: "o_c", Keys: []string{"customer_id"}, Method: "btree", Valid: false}}, []int64{1}},
		{"one per index, for the statement with most time", []IndexTrial{
			{Statement: slow, Candidate: c, CostBefore: 4000, CostAfter: 80, Used: true},
			{Statement: slower, Candidate: c, CostBefore: 4100, CostAfter: 90, Used: true},
		}, nil, []int64{2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			r := AdvisePostgres(PostgresInputs{Trials: tc.trials, Indexes: tc.indexes,
				Tables: []TableStats{{Schema: "public", Name: "orders", LiveRows: 200000}}}, PostgresOptions{}, time.Now())
			recs := r.Find(KindMissingIndex, "")
			var got []int64
			for _, rec := range recs {
				got = append(got, map[string]int64{slow.Query: 1, slower.Query: 2}[rec.Query])
				g.Expect(rec.Target).To(Equal("public.orders (customer_id)"))
				g.Expect(rec.Metrics).To(HaveKey("cost_before"))
				g.Expect(rec.Metrics).To(HaveKey("cost_after"))
				g.Expect(rec.Metrics["table_rows"]).To(Equal(200000.0))
			}
			g.Expect(got).To(Equal(tc.want))
		})
	}
}

func TestUnusedAndDuplicateIndexes(t *testing.T) {
	ix := func(name string, keys []string, mod func(*IndexStats)) IndexStats {
		i := IndexStats{Schema: "public", Table: "t", Name: name, Keys: keys, Method: "btree", Valid: true, Scans: 5, Bytes: 2 << 20}
		if mod != nil {
			mod(&i)
		}
		return i
	}
	unused := func(i *IndexStats) { i.Scans = 0 }
	for _, tc := range []struct {
		name       string
		idx        []IndexStats
		unused     []string
		duplicates []string
	}{
		{"never scanned", []IndexStats{ix("t_a", []string{"a"}, unused)}, []string{"public.t_a"}, nil},
		{"primary key, unique, constraint are needed", []IndexStats{
			ix("t_pkey", []string{"id"}, func(i *IndexStats) { i.Scans, i.Primary, i.Unique, i.Constraint = 0, true, true, true }),
			ix("t_u", []string{"u"}, func(i *IndexStats) { i.Scans, i.Unique = 0, true }),
			ix("t_excl", []string{"r"}, func(i *IndexStats) { i.Scans, i.Method, i.Constraint = 0, "gist", true }),
		}, nil, nil},
		{"prefix", []IndexStats{ix("t_a", []string{"a"}, nil), ix("t_a_b", []string{"a", "b"}, nil)}, nil, []string{"public.t_a"}},
		{"not a prefix", []IndexStats{ix("t_b", []string{"b"}, nil), ix("t_a_b", []string{"a", "b"}, nil)}, nil, nil},
		{"identical pair: one reported", []IndexStats{ix("t_a1", []string{"a"}, nil), ix("t_a2", []string{"a"}, nil)}, nil, []string{"public.t_a2"}},
		{"identical to a unique one: the plain one goes", []IndexStats{
			ix("t_a", []string{"a"}, func(i *IndexStats) { i.Unique = true }), ix("t_a_plain", []string{"a"}, nil)}, nil, []string{"public.t_a_plain"}},
		{"a unique prefix stays (it enforces uniqueness)", []IndexStats{
			ix("t_a", []string{"a"}, func(i *IndexStats) { i.Unique = true }), ix("t_a_b", []string{"a", "b"}, nil)}, nil, nil},
		{"other predicate", []IndexStats{ix("t_a", []string{"a"}, func(i *IndexStats) { i.Predicate = "(b IS NULL)" }), ix("t_a_b", []string{"a", "b"}, nil)}, nil, nil},
		{"other method", []IndexStats{ix("t_a", []string{"a"}, func(i *IndexStats) { i.Method = "hash" }), ix("t_a_b", []string{"a", "b"}, nil)}, nil, nil},
		{"other table", []IndexStats{ix("t_a", []string{"a"}, nil), ix("u_a_b", []string{"a", "b"}, func(i *IndexStats) { i.Table = "u" })}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			r := AdvisePostgres(PostgresInputs{Indexes: tc.idx}, PostgresOptions{}, time.Now())
			targets := func(kind string) (out []string) {
				for _, rec := range r.Find(kind, "") {
					out = append(out, rec.Target)
				}
				return out
			}
			g.Expect(targets(KindUnusedIndex)).To(Equal(tc.unused))
			g.Expect(targets(KindDuplicateIndex)).To(Equal(tc.duplicates))
		})
	}
}

func TestPostgresSettingsAdvice(t *testing.T) {
	const gi = int64(1 << 30)
	base := func() PostgresInputs {
		return PostgresInputs{Database: "app",
			Settings:       map[string]int64{"shared_buffers": gi / 2, "effective_cache_size": gi * 3 / 2, "work_mem": 4 << 20},
			MaxConnections: 100, PeakConnections: 30}
	}
	for _, tc := range []struct {
		name   string
		mod    func(*PostgresInputs)
		memory int64
		want   []string // kind/target
		note   string
	}{
		{"well tuned", nil, 2 * gi, nil, ""},
		{"memory unknown", nil, 0, nil, "memory limit is unknown"},
		{"shared_buffers small", func(in *PostgresInputs) { in.Settings["shared_buffers"] = 128 << 20 }, 2 * gi, []string{"setting/shared_buffers"}, ""},
		{"shared_buffers large", func(in *PostgresInputs) { in.Settings["shared_buffers"] = gi }, 2 * gi, []string{"setting/shared_buffers"}, ""},
		{"effective_cache_size above the memory", func(in *PostgresInputs) { in.Settings["effective_cache_size"] = 4 * gi }, 2 * gi, []string{"setting/effective_cache_size"}, ""},
		{"work_mem × connections over memory", func(in *PostgresInputs) { in.Settings["work_mem"] = 64 << 20 }, 2 * gi, []string{"setting/work_mem"}, ""},
		{"temp files bigger than work_mem", func(in *PostgresInputs) { in.TempFiles, in.TempBytes = 10, 100<<20 }, 2 * gi, []string{"setting/work_mem"}, ""},
		{"connections near the limit", func(in *PostgresInputs) { in.PeakConnections = 85 }, 2 * gi, []string{"connections/max_connections"}, ""},
		{"connections mostly unused", func(in *PostgresInputs) { in.PeakConnections = 5 }, 2 * gi, []string{"connections/max_connections"}, ""},
		{"cache hit ratio low", func(in *PostgresInputs) { in.BlocksHit, in.BlocksRead = 80000, 20000 }, 2 * gi, []string{"cache-hit-ratio/app"}, ""},
		{"cache hit ratio fine", func(in *PostgresInputs) { in.BlocksHit, in.BlocksRead = 999000, 1000 }, 2 * gi, nil, ""},
		{"too few reads to judge", func(in *PostgresInputs) { in.BlocksHit, in.BlocksRead = 10, 900 }, 2 * gi, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			in := base()
			if tc.mod != nil {
				tc.mod(&in)
			}
			r := AdvisePostgres(in, PostgresOptions{MemoryLimit: tc.memory}, time.Now())
			var got []string
			for _, rec := range r.Recommendations {
				got = append(got, rec.Kind+"/"+rec.Target)
			}
			g.Expect(got).To(Equal(tc.want))
			if tc.note != "" {
				g.Expect(strings.Join(r.Notes, "\n")).To(ContainSubstring(tc.note))
			}
		})
	}
}

func TestSettingBytes(t *testing.T) {
	g := NewWithT(t)
	for _, c := range []struct {
		setting, unit string
		want          int64
	}{
		{"16384", "8kB", 128 << 20}, {"4096", "kB", 4 << 20}, {"100", "", 100}, {"2", "MB", 2 << 20}, {"-1", "kB", 0},
	} {
		n, err := SettingBytes(c.setting, c.unit)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(n).To(Equal(c.want), "%s %s", c.setting, c.unit)
	}
	_, err := SettingBytes("x", "kB")
	g.Expect(err).To(HaveOccurred())
	_, err = SettingBytes("1", "parsec")
	g.Expect(err).To(HaveOccurred())
}

func TestAdviseRedis(t *testing.T) {
	info := func(kv ...string) map[string]string {
		m := map[string]string{"maxmemory_policy": "allkeys-lru", "maxmemory": "100000000", "used_memory": "10000000", "used_memory_rss": "12000000", "mem_fragmentation_ratio": "1.2"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name string
		in   RedisInputs
		want []string // severity/kind/target
		note string
	}{
		{"healthy", RedisInputs{Info: info(), Doctor: "Hi Sam, I can't find any memory issue in your instance."}, nil, ""},
		{"no maxmemory", RedisInputs{Info: info("maxmemory", "0")}, []string{"warning/memory/maxmemory"}, ""},
		{"near maxmemory", RedisInputs{Info: info("used_memory", "85000000")}, []string{"warning/memory/maxmemory"}, ""},
		{"at maxmemory", RedisInputs{Info: info("used_memory", "97000000")}, []string{"critical/memory/maxmemory"}, ""},
		{"evictions", RedisInputs{Info: info("evicted_keys", "42")}, []string{"warning/evictions/evicted_keys"}, ""},
		{"fragmented small instance is fine", RedisInputs{Info: info("used_memory", "1000000", "used_memory_rss", "8000000", "mem_fragmentation_ratio", "8")}, nil, ""},
		{"fragmented large instance", RedisInputs{Info: info("used_memory", "50000000", "used_memory_rss", "150000000", "mem_fragmentation_ratio", "3")}, []string{"warning/fragmentation/mem_fragmentation_ratio"}, ""},
		{"doctor has something", RedisInputs{Info: info(), Doctor: "Sam, I detected a few issues: * Peak memory: …"}, []string{"info/memory-doctor/MEMORY DOCTOR"}, ""},
		{"doctor on an empty instance", RedisInputs{Info: info(), Doctor: "Hi Sam, this instance is empty or is using very little memory, my issues detector can't be used"}, nil, ""},
		{"big keys, biggest first, small ones not", RedisInputs{Info: info(), Keys: 3, Sampled: 3, BigKeys: []KeySample{
			{Key: "b", Type: "hash", Bytes: 2 << 20}, {Key: "a", Type: "string", Bytes: 5 << 20}, {Key: "c", Type: "set", Bytes: 1000}}},
			[]string{"warning/big-key/a", "warning/big-key/b"}, ""},
		{"bounded sample is said", RedisInputs{Info: info(), Keys: 1000000, Sampled: 10000}, nil, "10000 of 1000000 keys"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			r := AdviseRedis(tc.in, RedisOptions{}, time.Now())
			var got []string
			for _, rec := range r.Recommendations {
				got = append(got, string(rec.Severity)+"/"+rec.Kind+"/"+rec.Target)
			}
			g.Expect(got).To(ConsistOf(toAny(tc.want)...))
			if tc.note != "" {
				g.Expect(strings.Join(r.Notes, "\n")).To(ContainSubstring(tc.note))
			}
		})
	}
	g := NewWithT(t)
	r := AdviseRedis(RedisInputs{Info: map[string]string{"maxmemory": "100", "used_memory": "99", "maxmemory_policy": "noeviction"}}, RedisOptions{}, time.Now())
	g.Expect(r.Recommendations[0].Summary).To(ContainSubstring("writes fail with OOM"))
}

func TestAdviseKafka(t *testing.T) {
	lags := func(ls ...int64) []PartitionLag {
		out := make([]PartitionLag, len(ls))
		for i, l := range ls {
			out[i] = PartitionLag{Topic: "p.orders", Partition: int32(i), Committed: 10, End: 10 + l, Lag: l}
		}
		return out
	}
	parts := func(leaders ...int32) []PartitionPlacement {
		out := make([]PartitionPlacement, len(leaders))
		for i, l := range leaders {
			out[i] = PartitionPlacement{Topic: "p.orders", Partition: int32(i), Leader: l, Replicas: []int32{l}}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		in   KafkaInputs
		want []string
	}{
		{"caught up", KafkaInputs{Groups: []GroupLag{{Group: "p.app", State: "Stable", Members: 1, Lags: lags(0, 0)}}}, nil},
		{"stopped with lag", KafkaInputs{Groups: []GroupLag{{Group: "p.app", State: "Empty", Lags: lags(5, 0)}}}, []string{"critical/consumer-lag/p.app"}},
		{"running, small lag", KafkaInputs{Groups: []GroupLag{{Group: "p.app", State: "Stable", Members: 2, Lags: lags(300, 200)}}}, nil},
		{"running, behind", KafkaInputs{Groups: []GroupLag{{Group: "p.app", State: "Stable", Members: 2, Lags: lags(3000, 200)}}}, []string{"warning/consumer-lag/p.app"}},
		{"balanced", KafkaInputs{Brokers: []int32{0, 1, 2}, Partitions: parts(0, 1, 2, 0, 1)}, nil},
		{"one broker leads most", KafkaInputs{Brokers: []int32{0, 1, 2}, Partitions: parts(0, 0, 0, 0, 1, 2)},
			[]string{"warning/partition-balance/leaders", "warning/partition-balance/replicas"}},
		{"a broker with nothing counts", KafkaInputs{Brokers: []int32{0, 1, 2}, Partitions: parts(0, 0, 1, 1)},
			[]string{"warning/partition-balance/leaders", "warning/partition-balance/replicas"}},
		{"one broker", KafkaInputs{Brokers: []int32{0}, Partitions: parts(0, 0, 0)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			r := AdviseKafka(tc.in, KafkaOptions{}, time.Now())
			var got []string
			for _, rec := range r.Recommendations {
				got = append(got, string(rec.Severity)+"/"+rec.Kind+"/"+rec.Target)
			}
			g.Expect(got).To(Equal(tc.want))
		})
	}
	g := NewWithT(t)
	r := AdviseKafka(KafkaInputs{
		Groups:     []GroupLag{{Group: "p.app", State: "Stable", Members: 3, Lags: lags(3000, 10, 10)}},
		Partitions: parts(0, 0, 0),
	}, KafkaOptions{}, time.Now())
	g.Expect(r.Recommendations[0].Action).To(ContainSubstring("a consumer per partition"), "more consumers would not help")
	g.Expect(r.Recommendations[0].Summary).To(ContainSubstring("p.orders-0: 3000 behind"))
}

func TestReportOutput(t *testing.T) {
	g := NewWithT(t)
	r := Report{Service: "kafka", CheckedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	var js bytes.Buffer
	g.Expect(r.WriteJSON(&js)).To(Succeed())
	var back map[string]any
	g.Expect(json.Unmarshal(js.Bytes(), &back)).To(Succeed())
	g.Expect(back["recommendations"]).To(Equal([]any{}), "an empty list, not null")

	r.Recommendations = []Recommendation{
		{Kind: KindPartitionBalance, Severity: Info, Target: "b", Summary: "s1"},
		{Kind: KindConsumerLag, Severity: Critical, Target: "a", Summary: "s2", Action: "do it", Metrics: map[string]float64{"lag": 5, "ratio": 0.25}},
	}
	sortRecommendations(r.Recommendations)
	r.Notes = []string{"a note"}
	var txt bytes.Buffer
	g.Expect(r.WriteText(&txt)).To(Succeed())
	g.Expect(txt.String()).To(Equal(`kafka: 2 recommendation(s), checked 2026-01-02T03:04:05Z

1. [critical] consumer-lag: a
   s2
   do: do it
   lag=5 ratio=0.25

2. [info] partition-balance: b
   s1

notes:
  - a note
`))
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}
