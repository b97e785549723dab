//go:build linux

package advisor_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	. "github.com/onsi/gomega"

	"github.com/strata-dev/strata/broker/advisor"
	"github.com/strata-dev/strata/integration/pgtest"
	"github.com/strata-dev/strata/provisioners/postgres"
)

const (
	appLogin    = "app_rw"
	appPassword = "App-pw-5c1e9a7b3d"
)

// TestPostgresAdvisorOnRealServer runs the advisor against a real
// PostgreSQL 15 configured from the dev-lite plan (pg_stat_statements
// preloaded, track = top) with hypopg created, as a readwrite binding's
// login, after a workload of lookups on a column of a 200,000-row table
// that has no index.
func TestPostgresAdvisorOnRealServer(t *testing.T) {
	g := NewWithT(t)
	start := time.Now()
	srv := pgtest.Start(t, pgtest.RenderCluster(t, "dev-lite", nil))
	t.Logf("PostgreSQL %s ready in %s", srv.Version, time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	su := srv.Superuser(t)
	createHypoPG(t, srv, su)
	// The schema as a migration (strata_owner) creates it: orders has an
	// index nobody uses (note) and one (status) that the wider
	// (status, created_at) makes redundant.
	mustExec(t, su, "SET ROLE "+postgres.OwnerRole)
	mustExec(t, su, `CREATE TABLE public.orders (
	    id bigserial PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL,
	    created_at timestamptz NOT NULL, note text)`)
	mustExec(t, su, `INSERT INTO public.orders (customer_id, status, created_at, note)
	    SELECT i % 10000, (ARRAY['new','paid','shipped','done'])[1 + i % 4], now() - i * interval '1 minute', 'n' || i
	    FROM generate_series(1, 200000) AS i`)
	mustExec(t, su, "CREATE INDEX orders_note_idx ON public.orders (note)")
	mustExec(t, su, "CREATE INDEX orders_status_idx ON public.orders (status)")
	mustExec(t, su, "CREATE INDEX orders_status_created_idx ON public.orders (status, created_at)")
	mustExec(t, su, "ANALYZE public.orders")
	mustExec(t, su, "RESET ROLE")
	srv.CreateLoginRole(t, appLogin, appPassword, postgres.ReadWriteRole)

	app, err := srv.Connect(t, appLogin, appPassword, srv.Database, "verify-full")
	g.Expect(err).NotTo(HaveOccurred())
	// The workload: lookups by customer (no index on customer_id), and
	// updates by customer, which the advisor must plan but never run.
	workload := func() {
		for i := range 60 {
			rows, err := app.Query(ctx, "SELECT id, status FROM public.orders WHERE customer_id = $1", i*7)
			g.Expect(err).NotTo(HaveOccurred())
			rows.Close()
			g.Expect(rows.Err()).NotTo(HaveOccurred())
		}
		for i := range 3 {
			_, err := app.Exec(ctx, "UPDATE public.orders SET note = $2 WHERE customer_id = $1", 5000+i, "updated")
			g.Expect(err).NotTo(HaveOccurred())
		}
	}
	workload()
	// A statement on a table dropped since: it cannot be planned any more,
	// which must cost a note, not the report.
	mustExec(t, su, "CREATE TABLE public.gone (id int)")
	mustExec(t, su, "GRANT SELECT ON public.gone TO "+postgres.ReadWriteRole)
	_, err = app.Exec(ctx, "SELECT id FROM public.gone WHERE id = $1", 1)
	g.Expect(err).NotTo(HaveOccurred())
	mustExec(t, su, "DROP TABLE public.gone")
	checksum := func() (sum int64) {
		g.Expect(su.QueryRow(ctx, "SELECT sum(hashtext(id || note || status)) FROM public.orders").Scan(&sum)).To(Succeed())
		return sum
	}
	before := checksum()

	// The advisor connects as the binding's login (TLS, SCRAM), as
	// strata-advisor does with the binding's files.
	adv, err := srv.Connect(t, appLogin, appPassword, srv.Database, "verify-full")
	g.Expect(err).NotTo(HaveOccurred())
	opts := advisor.PostgresOptions{MemoryLimit: 512 << 20} // dev-lite's memory
	t0 := time.Now()
	in, err := advisor.CollectPostgres(ctx, adv, opts, 0)
	g.Expect(err).NotTo(HaveOccurred())
	rep := advisor.AdvisePostgres(in, opts, time.Now())
	var text strings.Builder
	g.Expect(rep.WriteText(&text)).To(Succeed())
	t.Logf("advisor took %s:\n%s", time.Since(t0).Round(time.Millisecond), text.String())

	g.Expect(in.MaxConnections).To(BeNumerically("==", 50), "dev-lite's max_connections")
	g.Expect(in.PeakConnections).To(BeNumerically(">=", 3), "the superuser's, the application's and the advisor's sessions")
	g.Expect(in.Settings).To(HaveKeyWithValue("work_mem", BeNumerically("==", 4<<20)))

	missing := rep.Find(advisor.KindMissingIndex, "public.orders (customer_id)")
	g.Expect(missing).To(HaveLen(1), "the index on orders(customer_id) is recommended")
	m := missing[0].Metrics
	g.Expect(m["cost_before"]).To(BeNumerically(">", 0))
	g.Expect(m["cost_after"]).To(BeNumerically("<", m["cost_before"]/2), "HypoPG's costs show a clear gain")
	g.Expect(m["calls"]).To(BeNumerically(">=", 60))
	g.Expect(missing[0].Query).To(ContainSubstring("customer_id = $1"))
	g.Expect(missing[0].Action).To(HavePrefix(`CREATE INDEX CONCURRENTLY ON "public"."orders" ("customer_id");`))

	g.Expect(rep.Find(advisor.KindUnusedIndex, "public.orders_note_idx")).To(HaveLen(1), "the never-scanned index on note is reported")
	g.Expect(rep.Find(advisor.KindUnusedIndex, "public.orders_pkey")).To(BeEmpty(), "a primary key is never 'unused'")
	dup := rep.Find(advisor.KindDuplicateIndex, "public.orders_status_idx")
	g.Expect(dup).To(HaveLen(1), "(status) is a prefix of (status, created_at)")
	g.Expect(dup[0].Summary).To(ContainSubstring("orders_status_created_idx"))
	g.Expect(rep.Find(advisor.KindDuplicateIndex, "public.orders_status_created_idx")).To(BeEmpty())
	// The broker renders the memory settings from dev-lite's 512Mi
	// (provisioners/postgres/tuning.go): the advisor, judging them against
	// the same memory, has nothing to say about them.
	g.Expect(in.Settings).To(HaveKeyWithValue("effective_cache_size", BeNumerically("==", 384<<20)))
	g.Expect(in.Settings).To(HaveKeyWithValue("shared_buffers", BeNumerically("==", 128<<20)))
	g.Expect(rep.Find(advisor.KindPostgresSetting, "effective_cache_size")).To(BeEmpty())
	g.Expect(rep.Find(advisor.KindPostgresSetting, "shared_buffers")).To(BeEmpty())
	g.Expect(rep.Find(advisor.KindPostgresSetting, "work_mem")).To(BeEmpty())
	g.Expect(strings.Join(rep.Notes, "\n")).To(MatchRegexp(`statement -?\d+ could not be planned \(relation "public.gone" does not exist, SQLSTATE 42P01\): SELECT id FROM public.gone`))

	// Read-only: the UPDATE was planned, not run; no index was created;
	// the hypothetical one is gone from the advisor's session too.
	g.Expect(checksum()).To(Equal(before), "the advisor changed data")
	var indexes, hypothetical int
	g.Expect(su.QueryRow(ctx, "SELECT count(*) FROM pg_indexes WHERE tablename = 'orders'").Scan(&indexes)).To(Succeed())
	g.Expect(indexes).To(Equal(4), "pkey, note, status, status+created_at: the advisor created none")
	g.Expect(adv.QueryRow(ctx, "SELECT count(*) FROM hypopg_list_indexes").Scan(&hypothetical)).To(Succeed())
	g.Expect(hypothetical).To(BeZero(), "hypothetical indexes are dropped after each try")

	// The tenant follows the advice; the same workload then uses the index
	// and the advisor no longer recommends it.
	mustExec(t, su, "SET ROLE "+postgres.OwnerRole)
	mustExec(t, su, "CREATE INDEX orders_customer_idx ON public.orders (customer_id)")
	mustExec(t, su, "RESET ROLE")
	workload()
	// A backend reports its scan counters when it goes idle, up to 10
	// seconds later: wait for them, as a tenant's next run would.
	g.Eventually(func() (n int64) {
		_ = su.QueryRow(ctx, "SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'orders_customer_idx'").Scan(&n)
		return n
	}).WithTimeout(30 * time.Second).WithPolling(200 * time.Millisecond).Should(BeNumerically(">", 0))
	in, err = advisor.CollectPostgres(ctx, adv, opts, 0)
	g.Expect(err).NotTo(HaveOccurred())
	rep = advisor.AdvisePostgres(in, opts, time.Now())
	g.Expect(rep.Find(advisor.KindMissingIndex, "")).To(BeEmpty(), "no missing index once it exists: %+v", rep.Find(advisor.KindMissingIndex, ""))
	g.Expect(rep.Find(advisor.KindUnusedIndex, "public.orders_customer_idx")).To(BeEmpty(), "the new index is used by the workload")
	g.Expect(rep.Find(advisor.KindUnusedIndex, "public.orders_note_idx")).To(HaveLen(1))
}

// TestPostgresAdvisorWithoutHypoPG: without the extension no index is
// recommended (none could be verified), and a note says why.
func TestPostgresAdvisorWithoutHypoPG(t *testing.T) {
	g := NewWithT(t)
	srv := pgtest.Start(t, pgtest.RenderCluster(t, "dev-lite", nil))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	su := srv.Superuser(t)
	mustExec(t, su, "SET ROLE "+postgres.OwnerRole)
	mustExec(t, su, "CREATE TABLE public.events (id bigserial PRIMARY KEY, kind int NOT NULL)")
	mustExec(t, su, "INSERT INTO public.events (kind) SELECT i % 1000 FROM generate_series(1, 50000) AS i")
	mustExec(t, su, "ANALYZE public.events")
	mustExec(t, su, "RESET ROLE")
	srv.CreateLoginRole(t, appLogin, appPassword, postgres.ReadWriteRole)
	app, err := srv.Connect(t, appLogin, appPassword, srv.Database, "verify-full")
	g.Expect(err).NotTo(HaveOccurred())
	for i := range 20 {
		_, err := app.Exec(ctx, "SELECT id FROM public.events WHERE kind = $1", i)
		g.Expect(err).NotTo(HaveOccurred())
	}
	in, err := advisor.CollectPostgres(ctx, app, advisor.PostgresOptions{}, 0)
	g.Expect(err).NotTo(HaveOccurred())
	rep := advisor.AdvisePostgres(in, advisor.PostgresOptions{}, time.Now())
	g.Expect(rep.Find(advisor.KindMissingIndex, "")).To(BeEmpty())
	g.Expect(strings.Join(rep.Notes, "\n")).To(ContainSubstring("hypopg extension is not created"))
	g.Expect(strings.Join(rep.Notes, "\n")).To(ContainSubstring("memory limit is unknown"))
}

// createHypoPG does what CloudNativePG's Database controller does for an
// instance whose extensions parameter lists hypopg; a machine without
// Debian's postgresql-15-hypopg fails with the command that installs it.
func createHypoPG(t *testing.T, srv *pgtest.Server, su *pgx.Conn) {
	t.Helper()
	if _, err := os.Stat("/usr/share/postgresql/" + srv.Version + "/extension/hypopg.control"); err != nil {
		t.Fatalf("hypopg is not installed (%v): %s", err, pgtest.InstallHint)
	}
	mustExec(t, su, "CREATE EXTENSION IF NOT EXISTS hypopg")
}

func mustExec(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", strings.Fields(sql)[0], err)
	}
}
