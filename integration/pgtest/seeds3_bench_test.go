//go:build linux

package pgtest_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/strata-dev/strata/integration/pgtest"
	"github.com/strata-dev/strata/integration/s3test"
	"github.com/strata-dev/strata/provisioners/postgres"
	"github.com/strata-dev/strata/provisioners/postgres/seedfetch"
)

// The dumped database: pgbench's tables at seedBenchScale (5 million
// accounts, whose blank filler compresses to almost nothing) and
// seedBenchEvents rows of 128 random hex characters, which compress as
// the data of a real service would and make most of the archive.
const (
	seedBenchScale  = 50
	seedBenchEvents = 5_000_000
)

// BenchmarkSeedFromS3LargeDump measures a seed from S3 (parameters.seed.s3)
// of a large dump against the reference a DBA would use by hand, in the
// same run: the seed Job's two steps — seedfetch downloading the archive
// from S3 (versitygw on loopback) and the Job's restore script
// (postgres.S3SeedRestoreScript: pg_restore as a login of strata_owner,
// over TLS verify-full, one transaction, the dump's extensions left out) —
// against plain pg_restore --single-transaction of the same local file as
// the superuser over the unix socket, each into a new, empty dev-lite
// server. Both restores are checked to hold every row. Reported: the
// archive's size, the fetch, the seed's restore, the reference's restore
// and the seed's whole time over the reference's. Like the other
// benchmarks it asserts no speed; docs/benchmarks.md has the figures.
//
//	go test -run '^$' -bench SeedFromS3LargeDump -benchtime 1x -timeout 30m ./integration/pgtest/
func BenchmarkSeedFromS3LargeDump(b *testing.B) {
	ctx := context.Background()
	pgbench := pgbenchPath(b)
	bin := filepath.Dir(pgbench)
	source := pgtest.Start(b, pgtest.RenderCluster(b, "dev-lite", nil))
	native := func(name string, args ...string) {
		b.Helper()
		cmd := exec.CommandContext(ctx, filepath.Join(bin, name), args...)
		cmd.Env = append(os.Environ(), "PGHOST="+source.SocketDir, "PGUSER="+pgtest.SuperuserName, "PGSSLMODE=disable")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	began := time.Now()
	native("pgbench", "-i", "-q", "-s", strconv.Itoa(seedBenchScale), "-p", strconv.Itoa(source.Port), source.Database)
	native("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-p", strconv.Itoa(source.Port), "-d", source.Database, "-c",
		"CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz NOT NULL, payload text NOT NULL); "+
			"INSERT INTO events SELECT g, now() - g * interval '1 second', md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) "+
			"FROM generate_series(1, "+strconv.Itoa(seedBenchEvents)+") g")
	dump := filepath.Join(b.TempDir(), "large.pgdump")
	native("pg_dump", "-Fc", "-p", strconv.Itoa(source.Port), "-d", source.Database, "-f", dump)
	info, err := os.Stat(dump)
	if err != nil {
		b.Fatal(err)
	}
	var size int64
	if err := source.Superuser(b).QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&size); err != nil {
		b.Fatal(err)
	}
	b.Logf("pgbench scale %d and %d events written (database %d MB) and dumped (%d MB) in %s",
		seedBenchScale, seedBenchEvents, size/1e6, info.Size()/1e6, time.Since(began).Round(time.Second))

	srv := s3test.Start(b)
	srv.CreateBucket(b, "seeds")
	f, err := os.Open(dump)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := srv.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("seeds"), Key: aws.String("large.pgdump"), Body: f}); err != nil {
		b.Fatalf("upload the archive to S3: %v", err)
	}

	var fetch, seed, reference time.Duration
	b.ResetTimer()
	for range b.N {
		// The seed: the Job's fetch, then its restore script.
		dir := b.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "seed"), 0o700); err != nil { // the Job's emptyDir
			b.Fatal(err)
		}
		target := pgtest.Start(b, pgtest.RenderCluster(b, "dev-lite", nil))
		const login, password = "seed_s3_login", "a-password-only-the-job-sees"
		target.CreateLoginRole(b, login, password, postgres.OwnerRole)
		start := time.Now()
		name, _, err := seedfetch.Fetch(ctx, seedfetch.Config{Bucket: "seeds", Key: "large.pgdump", Region: s3test.Region,
			EndpointURL: srv.Endpoint, AllowHTTP: true, Dir: filepath.Join(dir, "seed")}, srv.Client())
		if err != nil || name != seedfetch.ArchiveFile {
			b.Fatalf("fetch: %q %v", name, err)
		}
		fetch += time.Since(start)
		start = time.Now()
		cmd := exec.CommandContext(ctx, "sh", "-c", S3SeedScriptIn(dir))
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"),
			"PGHOST="+pgtest.Host, "PGPORT="+strconv.Itoa(target.Port), "PGDATABASE="+target.Database,
			"PGSSLMODE=verify-full", "PGSSLROOTCERT="+target.CAFile, "PGUSER="+login, "PGPASSWORD="+password)
		if out, err := cmd.CombinedOutput(); err != nil {
			msg, _ := os.ReadFile(filepath.Join(dir, "termination-log"))
			b.Fatalf("the seed's restore: %v: %s\n%s", err, msg, out)
		}
		seed += time.Since(start)
		checkAccounts(b, target)

		// The reference: pg_restore of the local file, as the superuser.
		plain := pgtest.Start(b, pgtest.RenderCluster(b, "dev-lite", nil))
		start = time.Now()
		cmd = exec.CommandContext(ctx, filepath.Join(bin, "pg_restore"), "--single-transaction", "--no-owner", "--exit-on-error",
			"-h", plain.SocketDir, "-p", strconv.Itoa(plain.Port), "-U", pgtest.SuperuserName, "-d", plain.Database, dump)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("reference pg_restore: %v\n%s", err, out)
		}
		reference += time.Since(start)
		checkAccounts(b, plain)
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(info.Size())/1e6, "MB-archive")
	b.ReportMetric(fetch.Seconds()/n, "s-fetch")
	b.ReportMetric(seed.Seconds()/n, "s-seed-restore")
	b.ReportMetric(reference.Seconds()/n, "s-reference-restore")
	b.ReportMetric((fetch+seed).Seconds()/reference.Seconds(), "seed/reference")
}

// checkAccounts fails unless every account and event of the dumped
// database is there.
func checkAccounts(b *testing.B, s *pgtest.Server) {
	b.Helper()
	var accounts, events int
	if err := s.Superuser(b).QueryRow(context.Background(), "SELECT (SELECT count(*) FROM pgbench_accounts), (SELECT count(*) FROM events)").Scan(&accounts, &events); err != nil {
		b.Fatal(err)
	}
	if accounts != seedBenchScale*100_000 || events != seedBenchEvents {
		b.Fatalf("%d accounts and %d events restored, want %d and %d", accounts, events, seedBenchScale*100_000, seedBenchEvents)
	}
}
