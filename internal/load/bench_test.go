//go:build linux

package load_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/strata-dev/strata/integration/kafkatest"
	"github.com/strata-dev/strata/internal/load"
)

// The benchmarks run strata-load and the service's native tool against
// the same server with the same settings, interleaved (native, strata-load,
// native, strata-load …) so that the machine's load, which other builds
// share, weighs on both alike. Each reports both throughputs and their
// ratio (strata-load / native) as metrics; the figures are in
// docs/benchmarks.md. They assert no speed, only that both ran cleanly and
// that strata-load's run left the data it should.
//
//	make bench   (or: go test -run '^$' -bench . ./internal/load/)

// rounds of each tool per benchmark, alternating.
const rounds = 3

func nativeTool(b *testing.B, name, install string) string {
	b.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		b.Fatalf("%s is not installed (%v): %s", name, err, install)
	}
	return p
}

// cpuTime is the CPU (user + system) a run used: the native tool's
// process, or this process around strata-load's run (nothing else runs in
// it meanwhile; the servers are other processes).
type cpuTime struct{ native, ours time.Duration }

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runOurs runs strata-load's command, adding its CPU time to cpu.
func runOurs(b *testing.B, cpu *cpuTime, args ...string) (string, string, error) {
	b.Helper()
	before := selfCPU()
	out, errOut, err := runCLI(b, args...)
	cpu.ours += selfCPU() - before
	return out, errOut, err
}

// runNative runs a native tool, failing the benchmark with its output if
// it fails, and adds its CPU time to cpu.
func runNative(b *testing.B, cpu *cpuTime, env []string, name string, args ...string) string {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		b.Fatalf("%s failed: %v\n%s", name, err, out.String())
	}
	cpu.native += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return out.String()
}

// reportCPU reports each client's CPU per operation, in microseconds: on
// 2 cores shared with the server, a client that needs less CPU leaves more
// to the server, which shows in the throughput.
func reportCPU(b *testing.B, cpu cpuTime, nativeOps, ourOps float64, nativeName string) {
	b.Helper()
	n, o := float64(cpu.native.Microseconds())/nativeOps, float64(cpu.ours.Microseconds())/ourOps
	b.ReportMetric(n, nativeName+"-cpu-µs/op")
	b.ReportMetric(o, "strata-load-cpu-µs/op")
	b.Logf("client CPU per operation: %s %.1f µs, strata-load %.1f µs", nativeName, n, o)
}

func report(b *testing.B, native, ours float64, nativeName, unit string) {
	b.Helper()
	b.ReportMetric(native, nativeName+"-"+unit)
	b.ReportMetric(ours, "strata-load-"+unit)
	b.ReportMetric(ours/native, "ratio-"+unit)
	b.Logf("%s %.1f %s, strata-load %.1f %s: ratio %.3f", nativeName, native, unit, ours, unit, ours/native)
}

var pgbenchTxs = regexp.MustCompile(`number of transactions actually processed: (\d+)`)

var pgbenchTPS = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// BenchmarkPostgresTPCBVsPgbench: pgbench's built-in TPC-B-like script and
// strata-load's, scale 10, 8 clients, 2 threads, 8 s, -M prepared (both
// prepare each statement once per connection and run it with the extended
// protocol), TLS verify-full for both, no vacuum before the runs (-n).
func BenchmarkPostgresTPCBVsPgbench(b *testing.B) {
	pgbench := nativeTool(b, "pgbench", "apt-get install postgresql-15 (or make deps)")
	pg := startPostgres(b)
	const clients, threads, seconds, scale = "8", "2", "8", "10"
	if _, out, err := runCLI(b, "postgres", "--binding", pg.binding, "--init", "-s", scale); err != nil {
		b.Fatalf("--init: %v\n%s", err, out)
	}
	caFile := filepath.Join(pg.binding, "ca.crt")
	env := []string{"PGPASSWORD=" + loadPassword, "PGSSLMODE=verify-full", "PGSSLROOTCERT=" + caFile}
	var native, ours float64
	var txs, nativeTxs int64
	var cpu cpuTime
	hist := filepath.Join(b.TempDir(), "pg.html")
	for range b.N {
		for range rounds {
			out := runNative(b, &cpu, env, pgbench, "-h", "127.0.0.1", "-p", strconv.Itoa(pg.srv.Port), "-U", loadUser,
				"-c", clients, "-j", threads, "-T", seconds, "-M", "prepared", "-n", pg.srv.Database)
			m := pgbenchTPS.FindStringSubmatch(out)
			if m == nil {
				b.Fatalf("no tps in pgbench's output:\n%s", out)
			}
			v, _ := strconv.ParseFloat(m[1], 64)
			native += v
			b.Logf("pgbench: %s", m[0])
			if p := pgbenchTxs.FindStringSubmatch(out); p != nil {
				v, _ := strconv.ParseInt(p[1], 10, 64)
				nativeTxs += v
			}

			sum, errOut, err := runOurs(b, &cpu, "postgres", "--binding", pg.binding, "-c", clients, "-j", threads, "-T", seconds,
				"-M", "prepared", "-P", "0", "--histogram", hist)
			if err != nil {
				b.Fatalf("strata-load: %v\n%s\n%s", err, sum, errOut)
			}
			ours += throughput(b, sum)
			b.Logf("strata-load: %.1f tps", throughput(b, sum))
			txs += summaryInt(b, sum, "transactions")
			checkHistogram(b, hist, summaryInt(b, sum, "transactions"))
		}
	}
	// Both tools' transactions are in the history; the invariant holds.
	rows, err := load.CheckTPCB(context.Background(), mustPGConfig(b, pg))
	if err != nil {
		b.Fatal(err)
	}
	if rows < txs {
		b.Fatalf("pgbench_history has %d rows, fewer than strata-load's %d transactions", rows, txs)
	}
	n := float64(b.N * rounds)
	report(b, native/n, ours/n, "pgbench", "tps")
	reportCPU(b, cpu, float64(nativeTxs), float64(txs), "pgbench")
}

func mustPGConfig(b *testing.B, pg *pgEnv) *pgx.ConnConfig {
	b.Helper()
	bd, err := load.ReadBindingDir(pg.binding)
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := load.PostgresConfig(bd, "")
	if err != nil {
		b.Fatal(err)
	}
	return cfg
}

func throughput(b *testing.B, summary string) float64 {
	b.Helper()
	v, err := strconv.ParseFloat(strings.Fields(summaryValue(b, summary, "throughput"))[0], 64)
	if err != nil {
		b.Fatalf("throughput: %v", err)
	}
	return v
}

// BenchmarkRedisVsRedisBenchmark: redis-benchmark -t set and -t get and
// strata-load redis --ratio 1:0 and 0:1, alternately, each with 50 clients, pipeline
// 16, 3-byte values, 100000 random keys, 1,000,000 requests, TLS verified
// against the CA, AUTH.
func BenchmarkRedisVsRedisBenchmark(b *testing.B) {
	rb := nativeTool(b, "redis-benchmark", "apt-get install redis-tools (or make deps)")
	r := startRedis(b)
	const clients, pipeline, size, keyspace, requests = "50", "16", "3", "100000", "1000000"
	var nativeSet, nativeGet, oursSet, oursGet float64
	var cpu cpuTime
	hist := filepath.Join(b.TempDir(), "redis.html")
	for range b.N {
		for range rounds {
			// SET then GET, each tool in turn: redis-benchmark -t set,
			// strata-load --ratio 1:0, redis-benchmark -t get,
			// strata-load --ratio 0:1.
			for _, test := range []struct{ name, ratio string }{{"set", "1:0"}, {"get", "0:1"}} {
				out := runNative(b, &cpu, nil, rb, "-h", "127.0.0.1", "-p", strconv.Itoa(r.srv.TLSPort), "-a", loadPassword,
					"--tls", "--cacert", filepath.Join(r.binding, "ca.crt"), "-c", clients, "-P", pipeline, "-d", size,
					"-r", keyspace, "-n", requests, "-t", test.name, "--csv")
				native := redisBenchmarkRPS(b, out, strings.ToUpper(test.name))
				b.Logf("redis-benchmark -t %s: %.0f rps", test.name, native)
				sum, errOut, err := runOurs(b, &cpu, "redis", "--binding", r.binding, "-c", clients, "-P", pipeline, "-d", size,
					"-r", keyspace, "-n", requests, "--ratio", test.ratio, "--progress", "0", "--histogram", hist)
				if err != nil {
					b.Fatalf("strata-load: %v\n%s\n%s", err, sum, errOut)
				}
				checkHistogram(b, hist, summaryInt(b, sum, "requests"))
				b.Logf("strata-load --ratio %s: %.0f rps", test.ratio, throughput(b, sum))
				if test.name == "set" {
					nativeSet += native
					oursSet += throughput(b, sum)
					continue
				}
				nativeGet += native
				oursGet += throughput(b, sum)
				if n := summaryInt(b, sum, "get misses"); n > 0 {
					// 2 × 1,000,000 SETs over 100,000 keys leave none unwritten.
					b.Fatalf("%d GETs missed:\n%s", n, sum)
				}
			}
		}
	}
	n := float64(b.N * rounds)
	report(b, nativeSet/n, oursSet/n, "redis-benchmark", "set-rps")
	report(b, nativeGet/n, oursGet/n, "redis-benchmark", "get-rps")
	// Each tool made 2,000,000 requests a round (SETs and GETs).
	reportCPU(b, cpu, n*2e6, n*2e6, "redis-benchmark")
}

// redisBenchmarkRPS reads the requests per second of test (SET, GET) from
// redis-benchmark's --csv output.
func redisBenchmarkRPS(b *testing.B, out, test string) float64 {
	b.Helper()
	var lines []string
	for line := range strings.SplitSeq(out, "\n") {
		if strings.HasPrefix(line, `"`) {
			lines = append(lines, line)
		}
	}
	rows, err := csv.NewReader(strings.NewReader(strings.Join(lines, "\n"))).ReadAll()
	if err != nil {
		b.Fatalf("redis-benchmark's CSV: %v\n%s", err, out)
	}
	for _, row := range rows {
		if len(row) >= 2 && row[0] == test {
			if v, err := strconv.ParseFloat(row[1], 64); err == nil && v > 0 {
				return v
			}
		}
	}
	b.Fatalf("no %s rps in redis-benchmark's output:\n%s", test, out)
	return 0
}

var perfTestRate = regexp.MustCompile(`(\d+) records sent, ([0-9.]+) records/sec`)

// BenchmarkKafkaVsProducerPerfTest: kafka-producer-perf-test
// (org.apache.kafka.tools.ProducerPerformance, the class the script runs)
// and strata-load kafka, each producing 1,000,000 records of 100 bytes to
// a 3-partition topic with acks=all, linger.ms=5, batch.size=16384, no
// compression, one producer, over SASL_SSL SCRAM-SHA-512.
func BenchmarkKafkaVsProducerPerfTest(b *testing.B) {
	k := startKafka(b, 3)
	props := filepath.Join(b.TempDir(), "producer.properties")
	caFile := filepath.Join(k.binding, "ca.crt")
	// The client properties a binding gives a Java client (docs/bindings.md).
	cfg := strings.Join([]string{
		"security.protocol=SASL_SSL", "sasl.mechanism=SCRAM-SHA-512",
		"sasl.jaas.config=" + fmt.Sprintf(`org.apache.kafka.common.security.scram.ScramLoginModule required username="%s" password="%s";`, k.keys["username"], k.keys["password"]),
		"ssl.truststore.type=PEM", "ssl.truststore.location=" + caFile,
		"acks=all", "linger.ms=5", "batch.size=16384", "compression.type=none",
	}, "\n") + "\n"
	if err := os.WriteFile(props, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	const records, size = "1000000", "100"
	var native, ours float64
	var produced int64
	var cpu cpuTime
	hist := filepath.Join(b.TempDir(), "kafka.html")
	for range b.N {
		for range rounds {
			out := runNative(b, &cpu, nil, "java", "-Xmx512m", "-cp", filepath.Join(kafkatest.JarDir(), "*"),
				"org.apache.kafka.tools.ProducerPerformance", "--topic", k.topic, "--num-records", records,
				"--record-size", size, "--throughput", "-1", "--producer.config", props,
				"--producer-props", "bootstrap.servers="+k.broker.Addr)
			m := perfTestRate.FindAllStringSubmatch(out, -1)
			if m == nil || m[len(m)-1][1] != records {
				b.Fatalf("kafka-producer-perf-test did not send %s records:\n%s", records, out)
			}
			v, _ := strconv.ParseFloat(m[len(m)-1][2], 64)
			native += v
			b.Logf("kafka-producer-perf-test: %s", lastLine(out))
			produced += 1000000

			sum, errOut, err := runOurs(b, &cpu, "kafka", "--binding", k.binding, "--topic", "load", "--num-records", records,
				"--record-size", size, "--acks", "all", "--linger-ms", "5", "--batch-size", "16384", "--progress", "0", "--histogram", hist)
			if err != nil {
				b.Fatalf("strata-load: %v\n%s\n%s", err, sum, errOut)
			}
			ours += throughput(b, sum)
			b.Logf("strata-load: %.1f records/s, p50 %s, p99 %s", throughput(b, sum), summaryValue(b, sum, "latency p50"), summaryValue(b, sum, "latency p99"))
			produced += summaryInt(b, sum, "records")
			checkHistogram(b, hist, summaryInt(b, sum, "records"))
		}
	}
	// Every record both tools were acknowledged for is on the broker.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := k.broker.Admin.ListEndOffsets(ctx, k.topic)
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total != produced {
		b.Fatalf("the topic holds %d records, the tools were acknowledged for %d", total, produced)
	}
	n := float64(b.N * rounds)
	report(b, native/n, ours/n, "producer-perf-test", "records/s")
	// The JVM's start and JIT compilation count in the perf test's CPU.
	reportCPU(b, cpu, n*1e6, n*1e6, "producer-perf-test")
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
