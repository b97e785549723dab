//go:build linux

package pgtest_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/integration/pgtest"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/postgres"
	"github.com/strata-dev/strata/provisioners/postgres/seedfetch"
)

// TestS3SeedRestoreOnRealPostgreSQL runs the restore step of the seed-from-S3
// Job (postgres.S3SeedRestoreScript, what its PostgreSQL container runs) on
// real PostgreSQL servers: a pg_dump -Fc of a seeded instance restored into
// a new one as a login that is a member of strata_owner, over TLS
// verify-full, leaves the seed's rows, owned by strata_owner; a restore that
// fails (the tables are there already; plain SQL violating a key) exits
// non-zero with a one-line termination message naming parameters.seed.s3
// and without the rows' values. The Job's paths (/seed, /tmp,
// /dev/termination-log) are moved into the test's directory; the S3 fetch
// before it is seedfetch's test, on versitygw.
func TestS3SeedRestoreOnRealPostgreSQL(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	bin := os.Getenv(pgtest.EnvBinDir)
	if bin == "" {
		bin = pgtest.DefaultBinDir
	}
	for _, b := range []string{"pg_dump", "pg_restore", "psql"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			t.Fatalf("PostgreSQL client %s is missing (%v): %s", filepath.Join(bin, b), err, pgtest.InstallHint)
		}
	}

	// The source: an instance seeded with the orders fixtures.
	cluster := pgtest.RenderCluster(t, "dev-lite", map[string]any{"seed": map[string]any{"secret": "orders-fixtures"}})
	source := pgtest.Start(t, cluster, seedSecret(t, cluster))
	dir := t.TempDir()
	dump := filepath.Join(dir, "seed", seedfetch.ArchiveFile)
	g.Expect(os.MkdirAll(filepath.Dir(dump), 0o755)).To(Succeed())
	out, err := exec.CommandContext(ctx, filepath.Join(bin, "pg_dump"), "-Fc", "-h", source.SocketDir, "-p", strconv.Itoa(source.Port),
		"-U", pgtest.SuperuserName, "-d", source.Database, "-f", dump).CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), string(out))
	head, err := os.ReadFile(dump)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(head[:5])).To(Equal("PGDMP"), "what seedfetch recognises as an archive")

	// The target: a new, empty instance and the Job's short-lived login.
	target := pgtest.Start(t, pgtest.RenderCluster(t, "dev-lite", nil))
	const login, password = "seed_s3_login", "a-password-only-the-job-sees"
	target.CreateLoginRole(t, login, password, postgres.OwnerRole)

	script := S3SeedScriptIn(dir)
	run := func() (string, error) {
		t.Helper()
		_ = os.Remove(filepath.Join(dir, "termination-log"))
		cmd := exec.CommandContext(ctx, "sh", "-c", script)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"),
			"PGHOST="+pgtest.Host, "PGPORT="+strconv.Itoa(target.Port), "PGDATABASE="+target.Database,
			"PGSSLMODE=verify-full", "PGSSLROOTCERT="+target.CAFile, "PGUSER="+login, "PGPASSWORD="+password)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		msg, _ := os.ReadFile(filepath.Join(dir, "termination-log"))
		if err != nil {
			t.Logf("restore failed: %v; log: %s", err, stderr.String())
		}
		return string(msg), err
	}

	begin := time.Now()
	msg, err := run()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(msg).To(BeEmpty())
	t.Logf("pg_restore of the orders archive (%d bytes) over TLS verify-full: %s", len(head), time.Since(begin).Round(time.Millisecond))
	app := target.Superuser(t)
	g.Expect(pgtest.CheckSeeded(ctx, app)).To(BeEmpty())
	rows, _ := app.Query(ctx, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
	owners, err := pgx.CollectRows(rows, pgx.RowTo[string])
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(owners).To(ConsistOf(postgres.OwnerRole))

	// Again: the tables exist, pg_restore stops at the first error and
	// rolls back (--single-transaction), the summary is one line.
	msg, err = run()
	g.Expect(err).To(HaveOccurred())
	g.Expect(msg).To(HavePrefix("parameters.seed.s3.key: pg_restore exited 1 restoring the dump: "))
	g.Expect(msg).To(ContainSubstring("already exists"))
	g.Expect(msg).NotTo(ContainSubstring("\n"))
	g.Expect(pgtest.CheckSeeded(ctx, app)).To(BeEmpty(), "the failed restore changed nothing")
	t.Logf("termination message: %s", msg)

	// A damaged archive fails (its table of contents cannot be read),
	// and does not pass as an empty restore.
	good, err := os.ReadFile(dump)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(os.WriteFile(dump, append([]byte("PGDMP"), bytes.Repeat([]byte{0xff}, 64)...), 0o600)).To(Succeed())
	msg, err = run()
	g.Expect(err).To(HaveOccurred())
	g.Expect(msg).To(HavePrefix("parameters.seed.s3.key: pg_restore exited 1 restoring the dump: pg_restore: error:"))
	t.Logf("termination message: %s", msg)
	g.Expect(os.WriteFile(dump, good, 0o600)).To(Succeed())

	// Plain SQL whose second row violates the key: the value stays out.
	const secretValue = "4111-1111-1111-1111"
	g.Expect(os.Remove(dump)).To(Succeed())
	g.Expect(os.WriteFile(filepath.Join(dir, "seed", seedfetch.SQLFile), []byte(
		"CREATE TABLE public.cards (number text PRIMARY KEY);\nINSERT INTO public.cards VALUES ('"+secretValue+"'), ('"+secretValue+"');\n"), 0o600)).To(Succeed())
	msg, err = run()
	g.Expect(err).To(HaveOccurred())
	g.Expect(msg).To(HavePrefix("parameters.seed.s3.key: psql exited 3 restoring the dump: "))
	g.Expect(msg).To(ContainSubstring("duplicate key value violates unique constraint"))
	g.Expect(msg).NotTo(ContainSubstring(secretValue))
	t.Logf("termination message: %s", msg)
	var tables int
	g.Expect(app.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'cards'").Scan(&tables)).To(Succeed())
	g.Expect(tables).To(BeZero(), "the failed SQL seed left its table (--single-transaction)")

	// A value quoted after a colon in the primary message is replaced.
	g.Expect(os.WriteFile(filepath.Join(dir, "seed", seedfetch.SQLFile), []byte("SELECT '"+secretValue+"'::int;\n"), 0o600)).To(Succeed())
	msg, err = run()
	g.Expect(err).To(HaveOccurred())
	g.Expect(msg).To(ContainSubstring("invalid input syntax for type integer"))
	g.Expect(msg).NotTo(ContainSubstring(secretValue))
	t.Logf("termination message: %s", msg)
}

// S3SeedScriptIn is the restore script with the Job's paths moved under
// dir.
func S3SeedScriptIn(dir string) string {
	return strings.NewReplacer("/seed/", filepath.Join(dir, "seed")+"/", "/tmp/", dir+"/", "/dev/termination-log", filepath.Join(dir, "termination-log")).
		Replace(postgres.S3SeedRestoreScript())
}

// seedSecret is the Secret the broker writes from the orders fixtures.
func seedSecret(t *testing.T, cluster *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	cat := catalog.Default()
	svc := &cat.Services[0]
	seed, err := postgres.SeedSecret(provisioners.Instance{ID: "x", Name: cluster.GetName(), Namespace: cluster.GetNamespace(), Service: svc, Plan: svc.PlanByName("dev-lite")}, pgtest.OrdersSeed)
	if err != nil {
		t.Fatal(err)
	}
	return seed
}
