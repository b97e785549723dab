//go:build linux

package load_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/integration/kafkatest"
	"github.com/strata-dev/strata/integration/pgtest"
	"github.com/strata-dev/strata/integration/redistest"
	"github.com/strata-dev/strata/internal/load"
	"github.com/strata-dev/strata/provisioners"
	rd "github.com/strata-dev/strata/provisioners/redis"
)

// The tests here run strata-load's workloads against real servers, through
// binding directories written as the binders write the Secrets' keys
// (docs/bindings.md), and check what the workloads must leave behind. They
// are short; the comparisons with the native tools are the benchmarks in
// bench_test.go (make bench).

const (
	loadUser     = "strata_load"
	loadPassword = "Load-test_pw-0123456789abcdefghijklmnopqrs"
)

// writeBinding writes keys as a binding directory, one file per key.
func writeBinding(t testing.TB, keys map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for k, v := range keys {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type pgEnv struct {
	srv     *pgtest.Server
	binding string
}

// startPostgres runs a dev-lite PostgreSQL (TLS 1.3 only, SCRAM) with a
// login in the database owner's role, as an owner binding has.
func startPostgres(t testing.TB) *pgEnv {
	t.Helper()
	srv := pgtest.Start(t, pgtest.RenderCluster(t, "dev-lite", nil))
	srv.CreateLoginRole(t, loadUser, loadPassword, srv.Owner)
	dir := writeBinding(t, map[string]string{
		"type": "postgresql", "provider": "strata",
		"host": pgtest.Host, "port": strconv.Itoa(srv.Port), "database": srv.Database,
		"username": loadUser, "password": loadPassword,
		"sslmode": "verify-full", "ca.crt": string(srv.CAPEM),
	})
	return &pgEnv{srv: srv, binding: dir}
}

type redisEnv struct {
	srv     *redistest.Server
	certs   *redistest.Certs
	binding string
}

// startRedis runs redis-server with the standard plan's rendered command
// (TLS port, AUTH).
func startRedis(t testing.TB) *redisEnv {
	t.Helper()
	svc := catalog.RedisService()
	inst := provisioners.Instance{
		ID: "0b7e3c1a-5d2f-4e6a-8b9c-1d2e3f4a5b6c", Name: "rd-load", Namespace: "team-a",
		Service: &svc, Plan: svc.PlanByName("standard"),
	}
	cfg := rd.DefaultConfig()
	cfg.ServerCertificates.IssuerName = "test-ca"
	objs, err := (&rd.Provisioner{Config: cfg}).Build(inst)
	if err != nil {
		t.Fatalf("rendering the Redis instance: %v", err)
	}
	var command []string
	for _, o := range objs {
		if o.GetKind() == "RedisFailover" {
			command = redistest.CommandOf(t, o)
		}
	}
	if command == nil {
		t.Fatal("no RedisFailover rendered")
	}
	dir := t.TempDir()
	certs := redistest.NewCerts(t, filepath.Join(dir, "tls"))
	srv := redistest.StartServer(t, redistest.ServerOptions{Command: command, Certs: certs, Password: loadPassword, Dir: filepath.Join(dir, "pod-0")})
	b := writeBinding(t, map[string]string{
		"type": "redis", "provider": "strata", "host": "127.0.0.1", "port": strconv.Itoa(srv.TLSPort),
		"password": loadPassword, "ssl": "true", "ca.crt": string(certs.CAPEM),
		"uri": fmt.Sprintf("rediss://default:%s@127.0.0.1:%d", loadPassword, srv.TLSPort),
	})
	return &redisEnv{srv: srv, certs: certs, binding: b}
}

var (
	kafkaOnce   sync.Once
	kafkaBroker *kafkatest.Broker
	kafkaErr    error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if kafkaBroker != nil {
		kafkaBroker.Stop()
	}
	os.Exit(code)
}

type kafkaEnv struct {
	broker  *kafkatest.Broker
	topic   string
	binding string
	keys    map[string]string
}

// startKafka runs (once per test binary) the SASL_SSL SCRAM-SHA-512 broker
// of integration/kafkatest and creates a topic for the test.
func startKafka(t testing.TB, partitions int32) *kafkaEnv {
	t.Helper()
	kafkaOnce.Do(func() { kafkaBroker, kafkaErr = kafkatest.Start() })
	if kafkaErr != nil {
		t.Fatalf("starting Kafka: %v", kafkaErr)
	}
	b := kafkaBroker
	prefix := "team-a.kafka-load."
	topic := fmt.Sprintf("%sload-%d", prefix, time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := b.Admin.CreateTopic(ctx, partitions, 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("creating topic %s: %v", topic, err)
	}
	// The broker's super user stands for the binding's user: the tool
	// reads the same keys either way, and the user's ACLs are
	// integration/kafkatest's subject, not this package's.
	keys := map[string]string{
		"type": "kafka", "provider": "strata", "bootstrap-servers": b.Addr, "bootstrap.servers": b.Addr,
		"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
		"username": kafkatest.AdminUser, "password": b.AdminPassword, "ca.crt": b.CAPEM,
		"topic-prefix": prefix, "strata.kafka.topics.load": topic,
	}
	return &kafkaEnv{broker: b, topic: topic, binding: writeBinding(t, keys), keys: keys}
}

// runCLI runs the command as a user would, returning stdout and stderr.
func runCLI(t testing.TB, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	err := load.Main(ctx, args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// summaryValue reads a row of the summary table.
func summaryValue(t testing.TB, summary, row string) string {
	t.Helper()
	for line := range strings.SplitSeq(summary, "\n") {
		if rest, ok := strings.CutPrefix(line, row+"  "); ok {
			return strings.TrimSpace(rest)
		}
	}
	t.Fatalf("the summary has no %q row:\n%s", row, summary)
	return ""
}

func summaryInt(t testing.TB, summary, row string) int64 {
	t.Helper()
	v, err := strconv.ParseInt(strings.Fields(summaryValue(t, summary, row))[0], 10, 64)
	if err != nil {
		t.Fatalf("summary row %q: %v", row, err)
	}
	return v
}

func TestPostgresTPCBKeepsTheInvariant(t *testing.T) {
	pg := startPostgres(t)
	_, initOut, err := runCLI(t, "postgres", "--binding", pg.binding, "--init", "-s", "1")
	if err != nil {
		t.Fatalf("--init: %v\n%s", err, initOut)
	}
	hist := filepath.Join(t.TempDir(), "pg.html")
	out, errOut, err := runCLI(t, "postgres", "--binding", pg.binding, "-c", "4", "-j", "2", "-t", "100", "-M", "prepared",
		"-P", "0.2", "--check", "--histogram", hist)
	if err != nil {
		t.Fatalf("run: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	// -t is per client, as in pgbench.
	if n := summaryInt(t, out, "transactions"); n != 400 {
		t.Fatalf("ran %d transactions, want 4 clients × 100:\n%s", n, out)
	}
	if n := summaryInt(t, out, "errors"); n != 0 {
		t.Fatalf("%d transactions failed:\n%s", n, out)
	}
	// --check verified sum(balances) = sum(deltas) and counted the
	// history; check it again here, independently of the tool.
	if n := summaryInt(t, out, "history rows (invariant holds)"); n != 400 {
		t.Fatalf("pgbench_history has %d rows, want one per transaction (400):\n%s", n, out)
	}
	conn := pg.srv.Superuser(t)
	var accounts, deltas, rows, accountRows int64
	if err := conn.QueryRow(context.Background(), `select (select sum(abalance) from pgbench_accounts), (select sum(delta) from pgbench_history),
		(select count(*) from pgbench_history), (select count(*) from pgbench_accounts)`).Scan(&accounts, &deltas, &rows, &accountRows); err != nil {
		t.Fatal(err)
	}
	if accounts != deltas || rows != 400 || accountRows != 100000 {
		t.Fatalf("after the run: sum(abalance) %d, sum(delta) %d, %d history rows, %d accounts", accounts, deltas, rows, accountRows)
	}
	checkHistogram(t, hist, 400)
	// Progress lines come every -P seconds, and 400 transactions can
	// take less than one interval on a quiet machine (pgbench then
	// prints none either): a run of a set duration shows them.
	_, timedErr, err := runCLI(t, "postgres", "--binding", pg.binding, "-c", "2", "-T", "1", "-P", "0.2")
	if err != nil {
		t.Fatalf("timed run: %v\n%s", err, timedErr)
	}
	if !strings.Contains(timedErr, "progress: ") {
		t.Fatalf("no progress line on stderr in a 1 s run with -P 0.2:\n%s", timedErr)
	}
	errOut += timedErr
	for _, s := range []string{out, errOut} {
		if strings.Contains(s, loadPassword) {
			t.Fatal("the output shows the binding's password")
		}
	}
	// --hostaddr, as make run's binding needs (its host resolves only in
	// the cluster): the address is used, the name verified.
	named := writeBinding(t, map[string]string{
		"type": "postgresql", "host": "localhost", "port": strconv.Itoa(pg.srv.Port), "database": pg.srv.Database,
		"username": loadUser, "password": loadPassword, "sslmode": "verify-full", "ca.crt": string(pg.srv.CAPEM),
	})
	if out, errOut, err := runCLI(t, "postgres", "--binding", named, "--hostaddr", pgtest.Host, "-t", "2"); err != nil {
		t.Fatalf("--hostaddr %s: %v\n%s\n%s", pgtest.Host, err, out, errOut)
	}
	if _, _, err := runCLI(t, "postgres", "--binding", named, "--hostaddr", "127.0.0.2", "-t", "2"); err == nil {
		t.Fatal("--hostaddr 127.0.0.2 (nothing listens there) connected: the address was not used")
	}
	// A binding whose CA is another one is refused (verify-full).
	other := writeBinding(t, map[string]string{
		"type": "postgresql", "host": pgtest.Host, "port": strconv.Itoa(pg.srv.Port), "database": pg.srv.Database,
		"username": loadUser, "password": loadPassword, "sslmode": "verify-full", "ca.crt": string(redistest.NewCerts(t, t.TempDir()).CAPEM),
	})
	if _, _, err := runCLI(t, "postgres", "--binding", other, "-t", "1"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a server not signed by the binding's CA was accepted (err %v)", err)
	}
}

func TestPostgresCustomScript(t *testing.T) {
	pg := startPostgres(t)
	conn := pg.srv.Superuser(t)
	if _, err := conn.Exec(context.Background(), "create table load_events(client int, n bigint); grant all on load_events to "+loadUser); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "custom.sql")
	if err := os.WriteFile(script, []byte("\\set n random(1, 1000) * 2\nINSERT INTO load_events VALUES (:client_id, :n);\nSELECT :n::bigint + 1;\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := runCLI(t, "postgres", "--binding", pg.binding, "-c", "3", "-t", "20", "-f", script, "-M", "extended")
	if err != nil {
		t.Fatalf("run: %v\n%s\n%s", err, out, errOut)
	}
	var rows, odd, clients int64
	if err := conn.QueryRow(context.Background(), "select count(*), count(*) filter (where n % 2 = 1 or n < 2 or n > 2000), count(distinct client) from load_events").Scan(&rows, &odd, &clients); err != nil {
		t.Fatal(err)
	}
	if rows != 60 || odd != 0 || clients != 3 {
		t.Fatalf("the script inserted %d rows (want 60), %d out of range, from %d clients (want 3)", rows, odd, clients)
	}
}

func TestRedisWritesEveryKey(t *testing.T) {
	r := startRedis(t)
	hist := filepath.Join(t.TempDir(), "redis.html")
	// 20000 SETs over 500 keys: every key is written (the chance that one
	// is missed is 500 × (1 - 1/500)^20000, about 1e-15).
	out, errOut, err := runCLI(t, "redis", "--binding", r.binding, "-c", "4", "-P", "8", "-d", "64", "-r", "500",
		"-n", "20000", "--ratio", "1:0", "--histogram", hist)
	if err != nil {
		t.Fatalf("run: %v\n%s\n%s", err, out, errOut)
	}
	if n := summaryInt(t, out, "requests"); n != 20000 {
		t.Fatalf("%d requests, want 20000:\n%s", n, out)
	}
	checkHistogram(t, hist, 20000)
	c := r.srv.TLS(r.certs, loadPassword)
	defer c.Close()
	ctx := context.Background()
	if n, err := c.DBSize(ctx).Result(); err != nil || n != 500 {
		t.Fatalf("DBSIZE = %d (%v), want the 500 keys written", n, err)
	}
	for i := range 500 {
		v, err := c.Get(ctx, load.RedisKey(i)).Result()
		if err != nil || v != strings.Repeat("x", 64) {
			t.Fatalf("key %s: %q, %v; want 64 bytes written by the tool", load.RedisKey(i), v, err)
		}
	}
	// Now reads only: every GET finds its key.
	out, errOut, err = runCLI(t, "redis", "--binding", r.binding, "-c", "2", "-P", "4", "-r", "500", "-n", "4000", "--ratio", "0:1")
	if err != nil {
		t.Fatalf("run: %v\n%s\n%s", err, out, errOut)
	}
	if n := summaryInt(t, out, "get misses"); n != 0 {
		t.Fatalf("%d GETs missed keys the SET run wrote:\n%s", n, out)
	}
	if strings.Contains(out+errOut, loadPassword) {
		t.Fatal("the output shows the binding's password")
	}
	// --hostaddr: the connection goes to that address, the certificate is
	// verified for the binding's host (localhost, in the certificate).
	named := writeBinding(t, map[string]string{"type": "redis", "host": "localhost", "port": strconv.Itoa(r.srv.TLSPort),
		"password": loadPassword, "ca.crt": string(r.certs.CAPEM)})
	if out, errOut, err := runCLI(t, "redis", "--binding", named, "--hostaddr", "127.0.0.1", "-n", "100"); err != nil {
		t.Fatalf("--hostaddr 127.0.0.1: %v\n%s\n%s", err, out, errOut)
	}
	if _, _, err := runCLI(t, "redis", "--binding", named, "--hostaddr", "127.0.0.2", "-n", "100"); err == nil {
		t.Fatal("--hostaddr 127.0.0.2 (nothing listens there) connected: the address was not used")
	}
	// A wrong password is refused by the server and reported.
	bad := writeBinding(t, map[string]string{"type": "redis", "host": "127.0.0.1", "port": strconv.Itoa(r.srv.TLSPort),
		"password": "wrong", "ca.crt": string(r.certs.CAPEM)})
	if _, _, err := runCLI(t, "redis", "--binding", bad, "-n", "10"); err == nil {
		t.Fatal("a wrong password was accepted")
	}
}

func TestKafkaConsumesWhatItProduces(t *testing.T) {
	k := startKafka(t, 3)
	hist := filepath.Join(t.TempDir(), "kafka.html")
	out, errOut, err := runCLI(t, "kafka", "--binding", k.binding, "--topic", "load", "--num-records", "20000",
		"--record-size", "200", "--producers", "2", "--consumers", "2", "--acks", "all", "--histogram", hist)
	if err != nil {
		t.Fatalf("run: %v\n%s\n%s", err, out, errOut)
	}
	produced := summaryInt(t, out, "records")
	consumed := summaryInt(t, out, "consumed records")
	if produced != 20000 || consumed != produced {
		t.Fatalf("produced %d (want 20000), consumed %d:\n%s", produced, consumed, out)
	}
	checkHistogram(t, hist, 20000)
	// The broker holds exactly those records.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := k.broker.Admin.ListEndOffsets(ctx, k.topic)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total != 20000 {
		t.Fatalf("the topic holds %d records, want 20000", total)
	}
	if strings.Contains(out+errOut, k.broker.AdminPassword) {
		t.Fatal("the output shows the binding's password")
	}
}
