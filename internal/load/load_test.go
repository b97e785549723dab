package load_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/strata-dev/strata/internal/load"
)

func TestTPCBScriptIsPgbenchs(t *testing.T) {
	s, err := load.ParseScript(load.TPCBScript)
	if err != nil {
		t.Fatal(err)
	}
	var sql []string
	for _, st := range s.Steps {
		if st.Set < 0 {
			sql = append(sql, st.SQL)
		}
	}
	want := []string{
		"BEGIN",
		"UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
		"SELECT abalance FROM pgbench_accounts WHERE aid = $1",
		"UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2",
		"UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2",
		"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)",
		"END",
	}
	if !slices.Equal(sql, want) {
		t.Fatalf("statements:\n%s\nwant:\n%s", strings.Join(sql, "\n"), strings.Join(want, "\n"))
	}
	if !s.UsesScale {
		t.Fatal("the TPC-B script reads :scale")
	}
	// The \set ranges: aid in [1, 100000 × scale], delta in [-5000, 5000].
	env := s.NewEnv(3, 0, 42)
	idx := func(name string) int { return slices.Index(s.Vars, name) }
	minAid, maxAid, minDelta, maxDelta := int64(1<<62), int64(0), int64(0), int64(0)
	for range 20000 {
		for _, st := range s.Steps {
			if st.Set >= 0 {
				env.Vals[st.Set] = st.Expr(env)
			}
		}
		aid, delta := env.Vals[idx("aid")], env.Vals[idx("delta")]
		minAid, maxAid = min(minAid, aid), max(maxAid, aid)
		minDelta, maxDelta = min(minDelta, delta), max(maxDelta, delta)
		if tid := env.Vals[idx("tid")]; tid < 1 || tid > 30 {
			t.Fatalf("tid %d outside [1, 30] at scale 3", tid)
		}
		if bid := env.Vals[idx("bid")]; bid < 1 || bid > 3 {
			t.Fatalf("bid %d outside [1, 3] at scale 3", bid)
		}
	}
	if minAid < 1 || maxAid > 300000 || maxAid < 290000 || minDelta > -4900 || maxDelta < 4900 || minDelta < -5000 || maxDelta > 5000 {
		t.Fatalf("aid in [%d, %d], delta in [%d, %d]", minAid, maxAid, minDelta, maxDelta)
	}
}

func TestScriptExpressionsAndCasts(t *testing.T) {
	s, err := load.ParseScript("-- a comment\n\\set a (2 + 3) * -4 % 7\n\\set b greatest(:a, abs(:a)) / 2\nSELECT :a::int,\n  :b, :a;\n")
	if err != nil {
		t.Fatal(err)
	}
	env := s.NewEnv(1, 0, 1)
	var sql string
	var args []int64
	for _, st := range s.Steps {
		if st.Set >= 0 {
			env.Vals[st.Set] = st.Expr(env)
			continue
		}
		sql = st.SQL
		for _, a := range st.Args {
			args = append(args, env.Vals[a])
		}
	}
	// (5 × -4) % 7 = -6 (Go and pgbench truncate); greatest(-6, 6) / 2 = 3.
	if sql != "SELECT $1::int,\n  $2, $1" || !slices.Equal(args, []int64{-6, 3}) {
		t.Fatalf("got %q with %v", sql, args)
	}
	for _, bad := range []string{"\\sleep 1\nSELECT 1;", "\\set x random(1)\nSELECT 1;", "\\set x nosuch(1)\nSELECT 1;", "\\set x 1 +\nSELECT 1;", "\\set x 1\n"} {
		if _, err := load.ParseScript(bad); err == nil {
			t.Errorf("script %q was accepted", bad)
		}
	}
}

func TestHistogramPercentiles(t *testing.T) {
	var h load.Histogram
	// 1..10000 µs, uniformly: pN is N% of 10 ms, within the buckets' 3%.
	for i := 1; i <= 10000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 5 * time.Millisecond}, {95, 9500 * time.Microsecond}, {99, 9900 * time.Microsecond}} {
		got := h.Percentile(c.p)
		if diff := float64(got-c.want) / float64(c.want); diff > 0.03 || diff < -0.03 {
			t.Errorf("p%g = %s, want %s ± 3%%", c.p, got, c.want)
		}
	}
	if h.Min() != time.Microsecond || h.Max() != 10*time.Millisecond || h.Count() != 10000 {
		t.Fatalf("min %s max %s count %d", h.Min(), h.Max(), h.Count())
	}
	if m := h.Mean(); m < 5000*time.Microsecond || m > 5001*time.Microsecond {
		t.Fatalf("mean %s, want 5.0005 ms", m)
	}
	// Merging two halves gives the same histogram.
	var a, b load.Histogram
	r := rand.New(rand.NewPCG(1, 2))
	var all load.Histogram
	for i := range 5000 {
		d := time.Duration(r.Int64N(int64(time.Second)))
		all.Record(d)
		if i%2 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	a.Merge(&b)
	if a.Percentile(99) != all.Percentile(99) || a.Count() != all.Count() || a.Max() != all.Max() {
		t.Fatal("merged histogram differs")
	}
	var sumCounts uint64
	for _, bk := range all.Buckets() {
		if bk.High <= bk.Low || float64(bk.High-bk.Low) > 0.04*float64(bk.Low)+1 {
			t.Fatalf("bucket [%s, %s) wider than 1/32", bk.Low, bk.High)
		}
		sumCounts += bk.Count
	}
	if sumCounts != 5000 {
		t.Fatalf("buckets count %d, want 5000", sumCounts)
	}
}

func TestHistogramPage(t *testing.T) {
	h := &load.Histogram{}
	for i := range 1000 {
		h.Record(time.Duration(100+i%50) * time.Microsecond)
	}
	r := &load.Result{Workload: "test <&> workload", Unit: "requests", Ops: 1000, Elapsed: time.Second, Latency: h, Extra: map[string]int64{}}
	path := filepath.Join(t.TempDir(), "h.html")
	if err := load.WriteHistogramFile(path, r); err != nil {
		t.Fatal(err)
	}
	checkHistogram(t, path, 1000)
}

func TestSummaryTable(t *testing.T) {
	h := &load.Histogram{}
	h.Record(2 * time.Millisecond)
	h.Record(4 * time.Millisecond)
	r := &load.Result{Workload: "w", Unit: "transactions", Ops: 2, Errors: 1, Elapsed: 2 * time.Second, Latency: h, Extra: map[string]int64{"get misses": 7}}
	var out bytes.Buffer
	if err := r.WriteSummary(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"transactions    2\n", "errors          1\n", "throughput      1.0 transactions/s\n", "latency avg     3.000 ms\n", "latency max     4.000 ms\n", "get misses      7\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
}

func TestBindingFromDirectoryAndSecret(t *testing.T) {
	// A mounted Secret: keys are symlinks into ..data.
	dir := t.TempDir()
	data := filepath.Join(dir, "..2026_12_06")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"host": "db.example.svc", "port": "5432", "password": "pw"} {
		if err := os.WriteFile(filepath.Join(data, k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", k), filepath.Join(dir, k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Base(data), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	b, err := load.ReadBindingDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 3 || b["host"] != "db.example.svc" || b["password"] != "pw" {
		t.Fatalf("read %v", keysOf(b))
	}

	kube := fake.NewClientset(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "binding-1"},
		Data:       map[string][]byte{"type": []byte("redis"), "host": []byte("rd.team-a.svc"), "port": []byte("6380"), "password": []byte("secret-pw")},
	})
	sb, err := load.ReadBindingSecret(context.Background(), kube, "team-a", "binding-1")
	if err != nil {
		t.Fatal(err)
	}
	if sb.Type() != "redis" || sb["port"] != "6380" {
		t.Fatalf("read %v", keysOf(sb))
	}
	// No CA, no connection: the tool never connects without verification.
	if _, err := load.RedisClient(sb, 1, ""); err == nil || !strings.Contains(err.Error(), "ca.crt") || strings.Contains(err.Error(), "secret-pw") {
		t.Fatalf("a binding without ca.crt: %v", err)
	}
	// A Redis binding is not taken for PostgreSQL.
	if _, err := load.PostgresConfig(sb, ""); err == nil || !strings.Contains(err.Error(), `"redis"`) {
		t.Fatalf("a Redis binding given to postgres: %v", err)
	}
	if _, err := load.ReadBindingSecret(context.Background(), kube, "team-a", "nope"); err == nil {
		t.Fatal("a missing Secret was read")
	}
}

func TestCommandLineErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sslmode"), []byte("disable"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "name a workload"},
		{[]string{"mysql"}, "unknown workload"},
		{[]string{"postgres"}, "--binding DIR or --secret"},
		{[]string{"postgres", "--binding", dir, "--secret", "a/b"}, "not both"},
		{[]string{"redis", "--secret", "nonamespace"}, "namespace/name"},
		{[]string{"redis", "--binding", dir, "--ratio", "x"}, "--ratio is SET:GET"},
		{[]string{"postgres", "--binding", filepath.Join(dir, "missing")}, "binding directory"},
	} {
		var out, errOut bytes.Buffer
		err := load.Main(context.Background(), c.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one saying %q", c.args, err, c.want)
		}
	}
	// sslmode=disable in a binding is refused, not obeyed.
	full := map[string]string{"host": "h", "port": "1", "database": "d", "username": "u", "password": "p", "sslmode": "disable", "ca.crt": "x"}
	for k, v := range full {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	err := load.Main(context.Background(), []string{"postgres", "--binding", dir}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "verify-full") {
		t.Fatalf("sslmode=disable: %v", err)
	}
}

func keysOf(b load.Binding) []string {
	var ks []string
	for k := range b {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
