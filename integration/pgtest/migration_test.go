//go:build linux

package pgtest_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/strata-dev/strata/integration/pgtest"
	"github.com/strata-dev/strata/integration/springtest"
	"github.com/strata-dev/strata/provisioners/postgres"
)

// TestMigrationRehearsalOnRealPostgreSQL runs scripts/strata-migration-rehearsal.sh,
// the documented procedure, with a real Flyway (its Java API, the test-only
// integration/migrationapp) against copies of a "production" database on a
// real PostgreSQL configured from a rendered dev-lite Cluster, connecting
// as an owner login over verify-full TLS as a binding does. A bad migration
// is caught on the copy (while it passes on an empty database) and leaves
// the copy's schema unchanged; a good one passes and is verified; the
// copies are discarded and production never changed. (The copy itself is
// made here with CREATE DATABASE … TEMPLATE; on the platform it is a
// copy_of instance, TestCloudNativePGOnRealPlatform.)
func TestMigrationRehearsalOnRealPostgreSQL(t *testing.T) {
	g := NewWithT(t)
	jar := springtest.BuildJar(t, filepath.Join("..", "migrationapp"), "strata-migration-runner.jar")
	srv := pgtest.Start(t, pgtest.RenderCluster(t, "dev-lite", nil))
	const user, password = "migrator", "Migrator-pw-5c1e9a7b3d"
	srv.CreateLoginRole(t, user, password, postgres.OwnerRole)
	ca, err := os.ReadFile(srv.CAFile)
	g.Expect(err).NotTo(HaveOccurred())
	r := pgtest.NewRehearsal(t, filepath.Join("..", ".."), jar, password)

	// bindingDir writes an owner binding of database db, as mounted.
	bindingDir := func(db string) string {
		return pgtest.WriteBinding(t, map[string]string{"host": pgtest.Host, "port": strconv.Itoa(srv.Port), "database": db, "username": user, "password": password, "ca.crt": string(ca)})
	}
	migrations := func(v2 string) string { return pgtest.Migrations(t, v2) }
	rehearse := func(db, migrationDir, verify string) (int, string) {
		t.Helper()
		return r.Run(t, bindingDir(db), migrationDir, verify)
	}
	// sql and exec use a connection of their own each, closed at once:
	// a database is copied only while nobody is connected to it.
	sql := func(db, query string) string {
		t.Helper()
		conn := srv.SuperuserTo(t, db)
		defer conn.Close(t.Context())
		var s string
		g.Expect(conn.QueryRow(t.Context(), query).Scan(&s)).To(Succeed())
		return s
	}
	execSQL := func(db, stmt string) {
		t.Helper()
		conn := srv.SuperuserTo(t, db)
		defer conn.Close(t.Context())
		_, err := conn.Exec(t.Context(), stmt)
		g.Expect(err).NotTo(HaveOccurred())
	}
	newDatabase := func(name, template string) {
		t.Helper()
		q := "CREATE DATABASE " + name + " OWNER " + postgres.OwnerRole
		if template != "" {
			q += " TEMPLATE " + template
		}
		execSQL("postgres", q)
	}
	const history = "SELECT string_agg(version || ':' || success, ',' ORDER BY installed_rank) FROM flyway_schema_history"

	// Production: the service's V1, applied by Flyway as the owner, and
	// the rows the service wrote since.
	code, _ := rehearse(srv.Database, migrations(""), "")
	g.Expect(code).To(BeZero())
	execSQL(srv.Database, pgtest.OrdersSeed[len(pgtest.MigrationV1):])
	g.Expect(sql(srv.Database, history)).To(Equal("1:true"))
	g.Expect(sql(srv.Database, "SELECT tableowner::text FROM pg_tables WHERE tablename = 'flyway_schema_history'")).To(Equal(postgres.OwnerRole))

	t.Run("a bad migration is caught on the copy and leaves it unchanged", func(t *testing.T) {
		g := NewWithT(t)
		// On an empty database the same migration passes: only a copy
		// of the data shows it is wrong.
		newDatabase("empty", "")
		code, _ := rehearse("empty", migrations(pgtest.MigrationBadV2), "")
		g.Expect(code).To(BeZero(), "the bad migration should pass on an empty database")

		newDatabase("copy_bad", srv.Database)
		columns := "SELECT string_agg(table_name || '.' || column_name, ',' ORDER BY 1) FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> 'flyway_schema_history'"
		constraints := "SELECT string_agg(conname, ',' ORDER BY 1) FROM pg_constraint WHERE connamespace = 'public'::regnamespace"
		beforeColumns, beforeConstraints := sql("copy_bad", columns), sql("copy_bad", constraints)
		code, out := rehearse("copy_bad", migrations(pgtest.MigrationBadV2), "")
		g.Expect(code).To(Equal(1))
		g.Expect(out).To(ContainSubstring(`STRATA-MIGRATE {"success": false`))
		g.Expect(out).To(ContainSubstring("orders_total_small"))
		g.Expect(out).To(ContainSubstring("the copy's schema is unchanged (PostgreSQL rolled the failed migration back)"))
		// Transactional DDL: the column added before the failing
		// statement is gone too; Flyway recorded nothing.
		g.Expect(sql("copy_bad", columns)).To(Equal(beforeColumns))
		g.Expect(sql("copy_bad", constraints)).To(Equal(beforeConstraints))
		g.Expect(sql("copy_bad", history)).To(Equal("1:true"))
	})

	t.Run("a good migration passes and is verified", func(t *testing.T) {
		g := NewWithT(t)
		newDatabase("copy_good", srv.Database)
		verify := `test "$(psql -X -A -t -c "SELECT count(*) FROM customers WHERE loyalty_tier = 'basic'")" = 50`
		code, out := rehearse("copy_good", migrations(pgtest.MigrationGoodV2), verify)
		g.Expect(code).To(BeZero())
		g.Expect(out).To(ContainSubstring(`STRATA-MIGRATE {"success": true, "migrationsExecuted": 1, "schemaVersion": "2"}`))
		g.Expect(out).To(ContainSubstring("rehearsal: verified"))
		g.Expect(sql("copy_good", history)).To(Equal("1:true,2:true"))
		g.Expect(sql("copy_good", "SELECT tableowner::text FROM pg_tables WHERE tablename = 'customers'")).To(Equal(postgres.OwnerRole))

		// A verification that fails is reported as such.
		newDatabase("copy_verify", srv.Database)
		code, out = rehearse("copy_verify", migrations(pgtest.MigrationGoodV2), `psql -X -v ON_ERROR_STOP=1 -c "SELECT no_such_column FROM customers"`)
		g.Expect(code).To(Equal(2))
		g.Expect(out).To(ContainSubstring("VERIFICATION FAILED"))
	})

	t.Run("an instance Flyway never migrated is baselined on the copy", func(t *testing.T) {
		g := NewWithT(t)
		// Its schema came from a seed, not from Flyway: no history table.
		newDatabase("seeded_copy", "")
		execSQL("seeded_copy", "SET ROLE "+postgres.OwnerRole+";\n"+pgtest.OrdersSeed)
		r.Env = []string{"FLYWAY_BASELINE_ON_MIGRATE=true", "FLYWAY_BASELINE_VERSION=1"}
		defer func() { r.Env = nil }()
		code, out := rehearse("seeded_copy", migrations(pgtest.MigrationBadV2), "")
		g.Expect(code).To(Equal(1))
		g.Expect(out).To(ContainSubstring("the copy's schema is unchanged"), "Flyway's own history table is not the service's schema")
		g.Expect(sql("seeded_copy", history)).To(Equal("1:true"), "baselined at V1; the failed V2 recorded nothing")
		code, out = rehearse("seeded_copy", migrations(pgtest.MigrationGoodV2), "")
		g.Expect(code).To(BeZero())
		g.Expect(out).To(ContainSubstring(`"schemaVersion": "2"`))
	})

	// Discarding the copies is the rollback: production never changed.
	for _, db := range []string{"empty", "copy_bad", "copy_good", "copy_verify", "seeded_copy"} {
		execSQL("postgres", "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)")
	}
	g.Expect(sql(srv.Database, history)).To(Equal("1:true"))
	g.Expect(strings.Contains(sql(srv.Database, "SELECT string_agg(column_name, ',') FROM information_schema.columns WHERE table_name = 'customers'"), "loyalty_tier")).To(BeFalse())
}
