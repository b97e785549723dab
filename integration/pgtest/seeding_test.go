//go:build linux

package pgtest_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	. "github.com/onsi/gomega"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/integration/pgtest"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/postgres"
)

// TestSeedAndMaskOnRealPostgreSQL runs what the builders render for a
// seeded instance and for a masked copy on a real PostgreSQL: the seed
// runs at bootstrap as strata_owner (and cannot become the superuser),
// and the masking SQL, run on a copy of the seeded database, leaves no
// original value of a masked column, keeps the unmasked columns and the
// joins, and refuses the rules it cannot apply without changing anything.
// (On the real platform, TestCloudNativePGOnRealPlatform does the same
// through the broker, CloudNativePG's bootstrap and its logical import.)
func TestSeedAndMaskOnRealPostgreSQL(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	params := map[string]any{"seed": map[string]any{"secret": "orders-fixtures"}}
	cluster := pgtest.RenderCluster(t, "dev-lite", params)
	// The Secret the broker writes at provision (binding.PostgresBinder
	// Prepare) from the developer's Secret orders-fixtures.
	cat := catalog.Default()
	svc := &cat.Services[0]
	seed, err := postgres.SeedSecret(provisioners.Instance{ID: "x", Name: cluster.GetName(), Namespace: cluster.GetNamespace(), Service: svc, Plan: svc.PlanByName("dev-lite")}, pgtest.OrdersSeed)
	g.Expect(err).NotTo(HaveOccurred())

	start := time.Now()
	srv := pgtest.Start(t, cluster, seed)
	t.Logf("PostgreSQL %s bootstrapped with the seed in %s", srv.Version, time.Since(start).Round(time.Millisecond))
	app := srv.Superuser(t)
	g.Expect(pgtest.CheckSeeded(ctx, app)).To(BeEmpty())

	t.Run("the seed ran as strata_owner", func(t *testing.T) {
		g := NewWithT(t)
		rows, _ := app.Query(ctx, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
		owners, err := pgx.CollectRows(rows, pgx.RowTo[string])
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(owners).To(ConsistOf(postgres.OwnerRole))
		var left int
		g.Expect(app.QueryRow(ctx, "SELECT count(*) FROM pg_proc WHERE proname = 'strata_seed'").Scan(&left)).To(Succeed())
		g.Expect(left).To(BeZero(), "the seed's function is dropped")
	})

	t.Run("a seed cannot become the superuser", func(t *testing.T) {
		for _, evil := range []string{
			"CREATE ROLE seed_evil SUPERUSER LOGIN PASSWORD 'x'",
			"RESET ROLE; CREATE ROLE seed_evil SUPERUSER",
			"SET ROLE postgres; CREATE ROLE seed_evil SUPERUSER",
			"SET SESSION AUTHORIZATION postgres; CREATE ROLE seed_evil SUPERUSER",
			"ALTER ROLE strata_owner SUPERUSER",
			"COPY (SELECT 1) TO PROGRAM 'true'",
		} {
			g := NewWithT(t)
			sql, err := postgres.SeedSQL(evil)
			g.Expect(err).NotTo(HaveOccurred())
			_, err = app.Exec(ctx, sql)
			g.Expect(err).To(HaveOccurred(), "the seed %q ran", evil)
			t.Logf("%q: %v", evil, err)
			var n int
			g.Expect(app.QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname = 'seed_evil' OR (rolname = 'strata_owner' AND rolsuper)").Scan(&n)).To(Succeed())
			g.Expect(n).To(BeZero())
		}
	})

	// The copy: a database made from the seeded one (CloudNativePG's
	// import is a pg_dump/pg_restore; the masking runs on its result).
	app.Close(ctx)
	su := srv.SuperuserTo(t, "postgres")
	_, err = su.Exec(ctx, "CREATE DATABASE masked TEMPLATE "+srv.Database)
	g.Expect(err).NotTo(HaveOccurred())
	source := srv.SuperuserTo(t, srv.Database)
	masked := srv.SuperuserTo(t, "masked")

	rules := func(m map[string]string) []postgres.MaskRule {
		t.Helper()
		anyMask := map[string]any{}
		for k, v := range m {
			anyMask[k] = v
		}
		s, err := postgres.Resolve(svc.PlanByName("dev-lite"), map[string]any{"copy_of": map[string]any{"instance": "src", "mask": anyMask}})
		if err != nil {
			t.Fatal(err)
		}
		return s.Mask
	}
	run := func(sql []string) error {
		for _, q := range sql {
			if _, err := masked.Exec(ctx, q); err != nil {
				return err
			}
		}
		return nil
	}

	t.Run("rules it cannot apply are refused and change nothing", func(t *testing.T) {
		for _, tc := range []struct {
			mask map[string]string
			want string
		}{
			{map[string]string{"public.customers.name": "hash", "public.orders.customer_id": "hash"}, "public.orders.customer_id: the column is part of a primary or foreign key"},
			{map[string]string{"public.customers.id": "null"}, "public.customers.id: the column is part of a primary or foreign key"},
			{map[string]string{"public.customers.email": "null"}, "public.customers.email: the column is NOT NULL"},
			{map[string]string{"public.orders.total": "hash"}, "public.orders.total: hash needs a text column"},
			{map[string]string{"public.customers.mail": "email"}, "public.customers.mail: the copied database has no such column"},
			{map[string]string{"public.clients.name": "hash"}, "public.clients.name: the copied database has no such column"},
			{map[string]string{"public.customers.email": "redact"}, "duplicate key value violates unique constraint"},
		} {
			g := NewWithT(t)
			err := run(postgres.MaskSQL(rules(tc.mask)))
			g.Expect(err).To(MatchError(ContainSubstring(tc.want)))
			// Nothing changed: the copy still equals the source.
			var differ int
			g.Expect(masked.QueryRow(ctx, "SELECT count(*) FROM public.customers WHERE name NOT LIKE 'Customer %' OR email NOT LIKE 'customer%@example.com'").Scan(&differ)).To(Succeed())
			g.Expect(differ).To(BeZero(), "a refused rule changed rows")
		}
	})

	t.Run("the masked copy", func(t *testing.T) {
		g := NewWithT(t)
		begin := time.Now()
		g.Expect(run(postgres.MaskSQL(rules(pgtest.OrdersMask)))).To(Succeed())
		t.Logf("masked %d customers and %d orders in %s", pgtest.OrdersCustomers, pgtest.OrdersOrders, time.Since(begin).Round(time.Millisecond))
		g.Expect(pgtest.CheckMaskedCopy(ctx, source, masked)).To(BeEmpty())
		// The copy's triggers did not fire, its FK still validates.
		_, err := masked.Exec(ctx, "ALTER TABLE public.orders VALIDATE CONSTRAINT orders_customer_id_fkey")
		g.Expect(err).NotTo(HaveOccurred())
	})
}
