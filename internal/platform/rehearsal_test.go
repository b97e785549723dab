//go:build linux

package platform

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/strata-dev/strata/integration/pgtest"
	"github.com/strata-dev/strata/integration/springtest"
)

// testMigrationRehearsalOnCopy runs the documented migration rehearsal
// (scripts/strata-migration-rehearsal.sh, a real Flyway) against a
// copy_of instance of the platform, with the copy's owner binding as the
// script reads it (a directory of its keys): the source was seeded, not
// migrated by Flyway, so the copy is baselined at V1. A bad V2 is caught
// and leaves the copy's schema as it was; a good V2 passes and is
// verified; the source (production) never changes. copy and source are
// connections to the copy and the source.
func testMigrationRehearsalOnCopy(ctx context.Context, t *testing.T, p *Platform, copyCreds map[string]string, copyConn, source *pgx.Conn) {
	clock := newStepClock(t)
	timing := clock.done
	jar := springtest.BuildJar(t, filepath.Join("..", "..", "integration", "migrationapp"), "strata-migration-runner.jar")
	timing("Flyway runner jar built or found")
	addrs, err := p.ClusterResolver().LookupHost(ctx, copyCreds["host"]+".cluster.local")
	if err != nil || len(addrs) == 0 {
		t.Fatalf("resolving %s: %v", copyCreds["host"], err)
	}
	// The script runs where the binding's host resolves. On this host it
	// does not: libpq takes the address from PGHOSTADDR (still verifying
	// the certificate against the host name), the JVM from a hosts file.
	hosts := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hosts, []byte(addrs[0]+" "+copyCreds["host"]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := pgtest.NewRehearsal(t, filepath.Join("..", ".."), jar, copyCreds["password"])
	r.Env = []string{"PGHOSTADDR=" + addrs[0], "JAVA_TOOL_OPTIONS=-Djdk.net.hosts.file=" + hosts,
		"FLYWAY_BASELINE_ON_MIGRATE=true", "FLYWAY_BASELINE_VERSION=1"}
	dir := pgtest.WriteBinding(t, map[string]string{
		"host": copyCreds["host"], "port": copyCreds["port"], "database": copyCreds["database"],
		"username": copyCreds["username"], "password": copyCreds["password"], "ca.crt": copyCreds["ca.crt"],
	})
	columns := func(conn *pgx.Conn) string {
		t.Helper()
		var s string
		if err := conn.QueryRow(ctx, "SELECT string_agg(table_name || '.' || column_name, ',' ORDER BY 1) FROM information_schema.columns WHERE table_schema = 'public' AND table_name IN ('customers', 'orders')").Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	before, production := columns(copyConn), columns(source)

	code, out := r.Run(t, dir, pgtest.Migrations(t, pgtest.MigrationBadV2), "")
	if code != 1 || !strings.Contains(out, "orders_total_small") || !strings.Contains(out, "the copy's schema is unchanged") {
		t.Errorf("a bad migration on the copy: exit %d, want 1 saying the schema is unchanged:\n%s", code, out)
	}
	if got := columns(copyConn); got != before {
		t.Errorf("the failed migration changed the copy's columns: %s, was %s", got, before)
	}
	timing("a bad migration caught on the copy, its schema unchanged")

	verify := `test "$(psql -X -A -t -c "SELECT count(*) FROM customers WHERE loyalty_tier = 'basic'")" = ` + strconv.Itoa(pgtest.OrdersCustomers)
	code, out = r.Run(t, dir, pgtest.Migrations(t, pgtest.MigrationGoodV2), verify)
	if code != 0 || !strings.Contains(out, `"schemaVersion": "2"`) || !strings.Contains(out, "rehearsal: verified") {
		t.Errorf("a good migration on the copy: exit %d, want 0, migrated to 2 and verified:\n%s", code, out)
	}
	if !strings.Contains(columns(copyConn), "customers.loyalty_tier") {
		t.Errorf("the good migration did not add customers.loyalty_tier to the copy")
	}
	if got := columns(source); got != production {
		t.Errorf("the rehearsal changed the source's columns: %s, was %s", got, production)
	}
	timing("a good migration passed and verified on the copy; the source unchanged")
}
