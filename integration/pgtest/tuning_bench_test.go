//go:build linux

package pgtest_test

import (
	"bufio"
	"bytes"
	"context"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/integration/pgtest"
	"github.com/strata-dev/strata/provisioners/postgres"
)

// BenchmarkPlanTunedVsStockPostgres compares, in the same run, PostgreSQL
// configured as the broker renders a plan (its resource-derived memory,
// WAL and parallelism settings, provisioners/postgres/tuning.go) with the
// same server left at PostgreSQL's stock values for those settings, on
// pgbench's TPC-B-like script. See tunedBenchPlan for the plan and
// docs/benchmarks.md for the figures; like the other benchmarks it asserts
// no speed.
//
//	go test -run '^$' -bench PlanTunedVsStock -benchtime 1x ./integration/pgtest/
//
// Both servers are pgtest's (the same Debian binaries, the same harness,
// data directories on the same filesystem with no quota), configured from
// the same rendered Cluster: everything the broker renders besides the
// tuning (TLS, SCRAM, pgaudit, pg_stat_statements, connection logging,
// CloudNativePG's defaults) is the same on both. The only difference is
// the keys postgres.Tuning returns, which the stock server does not get.
//
// Each sub-benchmark initialises both with the same pgbench scale, reads
// the tables into shared_buffers as far as they hold (pg_prewarm), runs an
// untimed 5 s warm-up on each, then alternates them (tuned, stock, stock,
// tuned, …) so the machine's load, which other work shares, weighs on both
// alike. Each run is pgbench -c 8 -j 2 -M prepared -n over the unix socket
// (the client's TLS cost is not what is compared). Reported per server: the
// mean tps and latency and the tps ratio (tuned / stock); the server's CPU
// per transaction (its processes' user and system time, which depends far
// less on the machine's load than tps); the shared-buffer hit ratio and
// the blocks read in per transaction; WAL bytes per transaction.
//
//   - scale=1 (about 25MB), 4 runs of 8 s: fits stock shared_buffers
//     (128MB) as well as the tuned one; the control.
//   - scale=20 (about 310MB), 4 runs of 8 s: fits the tuned shared_buffers
//     (512MB for the standard plan's 2Gi), not the stock 128MB.
//   - scale=20-select-only: the same with pgbench -S.
//   - scale=20-sustained: 2 runs of 60 s, for the WAL settings.
//
// The whole benchmark takes about 10 minutes on 2 loaded cores.
func BenchmarkPlanTunedVsStockPostgres(b *testing.B) {
	pgbench := pgbenchPath(b)
	tuned, stock := tunedAndStock(b, tunedBenchPlan)
	checkMemory(b, tuned)
	for _, c := range []struct {
		name    string
		scale   int
		script  []string // pgbench's options for the script
		rounds  int
		seconds string // per run
	}{
		{"scale=1", 1, nil, 4, "8"},
		{"scale=20", 20, nil, 4, "8"},
		// The built-in select-only script: one primary-key lookup per
		// transaction, where a buffer miss is a larger share of the work.
		{"scale=20-select-only", 20, []string{"-S"}, 4, "8"},
		// Two minutes of writes per server, for max_wal_size: the stock
		// 1GB forces a checkpoint (and then a full-page image of every
		// page first written after it) after about 540MB of WAL, the
		// tuned 2560MB after about 1350MB. At the ~2,000 tps and ~1.2kB
		// of WAL per transaction measured here that is 3.5 minutes away,
		// so neither server checkpoints; the WAL and checkpoint figures
		// the benchmark logs show it (docs/benchmarks.md).
		{"scale=20-sustained", 20, nil, 2, "60"},
	} {
		b.Run(c.name, func(b *testing.B) {
			ts := pgtest.Start(b, tuned)
			ss := pgtest.Start(b, stock)
			checkServersDiffer(b, ts, ss)
			servers := []*benchServer{{name: "tuned", srv: ts}, {name: "stock", srv: ss}}
			for _, s := range servers {
				s.init(b, pgbench, c.scale)
			}
			for _, s := range servers { // warm-up, not counted
				s.pgbench(b, pgbench, "5", c.script)
				s.resetStats(b)
			}
			for range b.N {
				for r := range c.rounds {
					// tuned, stock, stock, tuned, …: neither always runs
					// first after the other.
					order := []*benchServer{servers[0], servers[1]}
					if r%2 == 1 {
						order[0], order[1] = order[1], order[0]
					}
					for _, s := range order {
						cpu, children := s.serverCPU(b)
						res := s.pgbench(b, pgbench, c.seconds, c.script)
						s.cpu += s.cpuAfter(b, children) - cpu
						s.tps += res.tps
						s.latency += res.latency
						s.txs += res.txs
						b.Logf("%s: %.1f tps, latency %.3f ms", s.name, res.tps, res.latency)
					}
				}
			}
			n := float64(b.N * c.rounds)
			t, s := servers[0], servers[1]
			b.ReportMetric(t.tps/n, "tuned-tps")
			b.ReportMetric(s.tps/n, "stock-tps")
			b.ReportMetric(t.tps/s.tps, "ratio-tps")
			b.ReportMetric(t.latency/n, "tuned-latency-ms")
			b.ReportMetric(s.latency/n, "stock-latency-ms")
			// The server's CPU per transaction depends far less on what
			// else the machine runs than its throughput does.
			tc, sc := float64(t.cpu.Microseconds())/float64(t.txs), float64(s.cpu.Microseconds())/float64(s.txs)
			b.ReportMetric(tc, "tuned-server-cpu-µs/tx")
			b.ReportMetric(sc, "stock-server-cpu-µs/tx")
			for _, srv := range servers {
				bytes, fpi, timed, req := srv.walStats(b)
				tx := float64(srv.txs)
				b.ReportMetric(bytes/tx, srv.name+"-wal-B/tx")
				b.Logf("%s: %.0f bytes of WAL and %.2f full-page images per transaction; %d timed and %d requested checkpoints during the runs",
					srv.name, bytes/tx, fpi/tx, timed, req)
			}
			var hits [2]float64
			for i, srv := range servers {
				hit, read := srv.blocks(b)
				hits[i] = hit / max(hit+read, 1)
				b.ReportMetric(hits[i]*100, srv.name+"-hit-%")
				b.ReportMetric(read/float64(srv.txs), srv.name+"-reads/tx")
				b.Logf("%s: %.1f block accesses per transaction, %.2f of them read in", srv.name, (hit+read)/float64(srv.txs), read/float64(srv.txs))
			}
			th, sh := hits[0], hits[1]
			b.Logf("%s, database %s: tuned %.1f tps %.3f ms %.0f µs CPU/tx (hit %.2f%%), stock %.1f tps %.3f ms %.0f µs CPU/tx (hit %.2f%%): ratio %.3f; load average %s",
				c.name, t.size(b), t.tps/n, t.latency/n, tc, th*100, s.tps/n, s.latency/n, sc, sh*100, t.tps/s.tps, loadAvg())
		})
	}
}

// tunedBenchPlan is the plan whose rendering is measured: standard (1 CPU,
// 2Gi, 20Gi, max_connections 200), at its default resources, which this
// 2-core, 24GiB machine can give a server (checkMemory).
const tunedBenchPlan = "standard"

// tunedAndStock renders plan's Cluster with the real builder (pgtest.
// RenderCluster: the provisioner's Build) and derives the stock Cluster
// from it: the same Cluster without the keys postgres.Tuning gives for the
// plan's resources, which PostgreSQL then leaves at its defaults.
func tunedAndStock(t testing.TB, plan string) (tuned, stock *unstructured.Unstructured) {
	t.Helper()
	tuned = pgtest.RenderCluster(t, plan, nil)
	// archive_timeout forces a WAL switch for CloudNativePG's archiving;
	// archive_mode is the operator's and the harness has no archive, so
	// it is inert here: left out of both.
	unstructured.RemoveNestedField(tuned.Object, "spec", "postgresql", "parameters", "archive_timeout")
	stock = tuned.DeepCopy()
	for k := range planTuning(t, plan) {
		unstructured.RemoveNestedField(stock.Object, "spec", "postgresql", "parameters", k)
	}
	return tuned, stock
}

// planTuning is postgres.Tuning for plan's default resources, as Build
// resolves them (PostgreSQL 15, what the harness runs).
func planTuning(t testing.TB, plan string) map[string]string {
	t.Helper()
	p := planNamed(t, plan)
	s, err := postgres.Resolve(p, map[string]any{"version": "15"})
	if err != nil {
		t.Fatal(err)
	}
	tuning, err := postgres.Tuning(s, p.Postgres.MaxConnections)
	if err != nil {
		t.Fatal(err)
	}
	return tuning
}

func planNamed(t testing.TB, name string) *catalog.Plan {
	t.Helper()
	cat := catalog.Default()
	p := cat.Services[0].PlanByName(name)
	if p == nil || p.Postgres == nil {
		t.Fatalf("the catalog has no %q PostgreSQL plan", name)
	}
	return p
}

// checkMemory fails unless the machine has memory for the plan's pod as
// well as the stock server: the tuned server's settings assume the plan's
// memory limit, and the harness does not confine the servers to it (see
// docs/benchmarks.md).
func checkMemory(b *testing.B, cluster *unstructured.Unstructured) {
	b.Helper()
	limit, _, _ := unstructured.NestedString(cluster.Object, "spec", "resources", "limits", "memory")
	q, err := resource.ParseQuantity(limit)
	if err != nil {
		b.Fatalf("the Cluster's memory limit %q: %v", limit, err)
	}
	avail := memAvailable(b)
	if need := 2 * q.Value(); avail < need {
		b.Fatalf("the machine has %d MiB available, the tuned server is configured for a %s pod and the stock one runs beside it: %d MiB needed",
			avail>>20, limit, need>>20)
	}
	b.Logf("the plan's pod memory %s; available on the machine %d MiB", limit, avail>>20)
}

func memAvailable(b *testing.B) int64 {
	b.Helper()
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatalf("MemAvailable %q: %v", v, err)
			}
			return kb << 10
		}
	}
	b.Fatal("no MemAvailable in /proc/meminfo")
	return 0
}

// mustDiffer are the settings that must differ between the two running
// servers, or the benchmark would compare stock with stock.
var mustDiffer = []string{"shared_buffers", "effective_cache_size", "maintenance_work_mem", "max_wal_size", "min_wal_size"}

// checkServersDiffer reads the settings from both running servers.
func checkServersDiffer(b *testing.B, tuned, stock *pgtest.Server) {
	b.Helper()
	ts, ss := settings(b, tuned), settings(b, stock)
	for _, k := range mustDiffer {
		if ts[k] == ss[k] {
			b.Fatalf("%s is %s on both servers: the benchmark would compare stock with stock", k, ts[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(ts)) {
		b.Logf("%s: tuned %s, stock %s", k, ts[k], ss[k])
	}
}

func settings(b *testing.B, srv *pgtest.Server) map[string]string {
	b.Helper()
	conn := srv.Superuser(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	names := slices.Collect(maps.Keys(planTuning(b, tunedBenchPlan)))
	rows, err := conn.Query(ctx, `SELECT name, CASE unit WHEN '8kB' THEN (setting::bigint * 8)::text || 'kB' ELSE setting || coalesce(unit, '') END
		FROM pg_settings WHERE name = ANY($1)`, names)
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			b.Fatal(err)
		}
		out[k] = v
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	return out
}

type benchServer struct {
	name         string
	srv          *pgtest.Server
	tps, latency float64
	txs          int64
	cpu          time.Duration
}

func pgbenchPath(b *testing.B) string {
	b.Helper()
	bin := os.Getenv(pgtest.EnvBinDir)
	if bin == "" {
		bin = pgtest.DefaultBinDir
	}
	p := filepath.Join(bin, "pgbench")
	if _, err := os.Stat(p); err != nil {
		b.Fatalf("pgbench is missing (%v): %s", err, pgtest.InstallHint)
	}
	return p
}

// run runs a PostgreSQL client program against the server over its unix
// socket as the superuser (peer authentication maps this OS user to it).
func (s *benchServer) run(b *testing.B, name string, args ...string) string {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "PGHOST="+s.srv.SocketDir, "PGPORT="+strconv.Itoa(s.srv.Port),
		"PGUSER="+pgtest.SuperuserName, "PGDATABASE="+s.srv.Database, "PGSSLMODE=disable")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		b.Fatalf("%s (%s server) failed: %v\n%s", filepath.Base(name), s.name, err, out.String())
	}
	return out.String()
}

// init loads pgbench's tables at scale, then checkpoints, so both servers
// start the runs from the same state.
func (s *benchServer) init(b *testing.B, pgbench string, scale int) {
	b.Helper()
	start := time.Now()
	s.run(b, pgbench, "-i", "-q", "-s", strconv.Itoa(scale))
	// pgbench -i loads and vacuums through small ring buffers, which
	// leaves most of the data out of shared_buffers: pg_prewarm reads the
	// tables and indexes into them, as far as they hold, so the runs start
	// near the steady state a longer run would reach.
	s.exec(b, "CREATE EXTENSION IF NOT EXISTS pg_prewarm")
	s.exec(b, "SELECT pg_prewarm(c.oid) FROM pg_class c WHERE c.relname LIKE 'pgbench_%' AND c.relkind IN ('r', 'i')")
	s.exec(b, "CHECKPOINT")
	b.Logf("%s: pgbench -i -s %d took %s; database %s", s.name, scale, time.Since(start).Round(time.Millisecond), s.size(b))
}

var (
	pgbenchTPS     = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	pgbenchLatency = regexp.MustCompile(`latency average = ([0-9.]+) ms`)
	pgbenchTxs     = regexp.MustCompile(`number of transactions actually processed: (\d+)`)
)

type pgbenchResult struct {
	tps, latency float64 // latency in ms
	txs          int64
}

// pgbench runs a script (the TPC-B-like one unless script says otherwise)
// for seconds with 8 clients.
func (s *benchServer) pgbench(b *testing.B, pgbench, seconds string, script []string) pgbenchResult {
	b.Helper()
	args := append([]string{"-c", "8", "-j", "2", "-T", seconds, "-M", "prepared", "-n"}, script...)
	out := s.run(b, pgbench, args...)
	tps, lat, txs := pgbenchTPS.FindStringSubmatch(out), pgbenchLatency.FindStringSubmatch(out), pgbenchTxs.FindStringSubmatch(out)
	if tps == nil || lat == nil || txs == nil {
		b.Fatalf("no tps, latency or transaction count in pgbench's output (%s server):\n%s", s.name, out)
	}
	var r pgbenchResult
	r.tps, _ = strconv.ParseFloat(tps[1], 64)
	r.latency, _ = strconv.ParseFloat(lat[1], 64)
	r.txs, _ = strconv.ParseInt(txs[1], 10, 64)
	return r
}

// serverCPU is the CPU time (user and system) the server has used so far:
// the postmaster's, its running children's (checkpointer, WAL writer, …)
// and that of the children it has reaped (the backends of finished
// pgbench runs), and how many children it has. Clock ticks are 1/100 s on
// Linux.
func (s *benchServer) serverCPU(b *testing.B) (time.Duration, int) {
	b.Helper()
	raw, err := os.ReadFile(filepath.Join(s.srv.DataDir, "postmaster.pid"))
	if err != nil {
		b.Fatal(err)
	}
	pm := strings.SplitN(string(raw), "\n", 2)[0]
	procs, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		b.Fatal(err)
	}
	var ticks int64
	children := 0
	for _, p := range procs {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid … utime(14) stime(15) cutime(16) cstime(17)
		f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
		pid := strings.TrimSuffix(strings.TrimPrefix(p, "/proc/"), "/stat")
		if len(f) < 15 || (pid != pm && f[1] != pm) {
			continue
		}
		fields := f[11:13] // utime, stime
		if pid != pm {
			children++
		} else {
			fields = f[11:15] // and the reaped children's
		}
		for _, v := range fields {
			n, _ := strconv.ParseInt(v, 10, 64)
			ticks += n
		}
	}
	return time.Duration(ticks) * 10 * time.Millisecond, children
}

// cpuAfter is serverCPU once a run's backends, which end after pgbench
// has exited, are gone (reaped, so their CPU is in the postmaster's
// children's time): back to the children the server had before the run.
func (s *benchServer) cpuAfter(b *testing.B, children int) time.Duration {
	b.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		cpu, n := s.serverCPU(b)
		if n <= children || time.Now().After(deadline) {
			return cpu
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *benchServer) exec(b *testing.B, sql string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := s.srv.Superuser(b).Exec(ctx, sql); err != nil {
		b.Fatalf("%s (%s server): %v", sql, s.name, err)
	}
}

func (s *benchServer) resetStats(b *testing.B) {
	b.Helper()
	s.exec(b, "SELECT pg_stat_reset()")
	s.exec(b, "SELECT pg_stat_reset_shared('wal')")
	s.exec(b, "SELECT pg_stat_reset_shared('bgwriter')")
}

// walStats is the WAL written since the warm-up (bytes and full-page
// images) and the checkpoints made meanwhile (timed and requested: a
// requested one is forced by max_wal_size here).
func (s *benchServer) walStats(b *testing.B) (bytes, fpi float64, timed, requested int64) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.srv.Superuser(b).QueryRow(ctx,
		"SELECT wal_bytes::float8, wal_fpi::float8, checkpoints_timed, checkpoints_req FROM pg_stat_wal, pg_stat_bgwriter").Scan(&bytes, &fpi, &timed, &requested); err != nil {
		b.Fatal(err)
	}
	return bytes, fpi, timed, requested
}

// blocks are the database's block accesses since the warm-up: found in
// shared_buffers (hit), or read in (from the page cache or the disk: here
// the page cache, which holds the whole database).
func (s *benchServer) blocks(b *testing.B) (hit, read float64) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.srv.Superuser(b).QueryRow(ctx,
		"SELECT blks_hit::float8, blks_read::float8 FROM pg_stat_database WHERE datname = current_database()").Scan(&hit, &read); err != nil {
		b.Fatal(err)
	}
	return hit, read
}

func (s *benchServer) size(b *testing.B) string {
	b.Helper()
	var size string
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.srv.Superuser(b).QueryRow(ctx, "SELECT pg_size_pretty(pg_database_size(current_database()))").Scan(&size); err != nil {
		b.Fatal(err)
	}
	return size
}

func loadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(raw))[:3], " ")
}
