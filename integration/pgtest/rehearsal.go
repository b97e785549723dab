package pgtest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The service's migrations of the migration rehearsal tests, shared by
// the test on a local PostgreSQL and the one on a copy_of instance of the
// real platform (internal/platform), so both prove the same thing. V1 made
// production's schema (OrdersSeed's, without its rows); the bad V2 passes
// on an empty database and fails on real data (a CHECK the existing
// orders violate); the good V2 adds a column and an index.
const (
	MigrationBadV2  = "ALTER TABLE customers ADD COLUMN loyalty_tier text;\nALTER TABLE orders ADD CONSTRAINT orders_total_small CHECK (total < 100);\n"
	MigrationGoodV2 = "ALTER TABLE customers ADD COLUMN loyalty_tier text NOT NULL DEFAULT 'basic';\nCREATE INDEX orders_customer_id ON orders (customer_id);\n"
)

// MigrationV1 is the fixture's schema without its rows: the service's
// first migration.
var MigrationV1 = OrdersSeed[:strings.Index(OrdersSeed, "INSERT INTO")]

// Rehearsal runs scripts/strata-migration-rehearsal.sh with the test-only
// Flyway runner (integration/migrationapp's jar) as the migrate command.
type Rehearsal struct {
	Script, Jar string
	// Env is added to the script's environment (PGHOSTADDR, say).
	Env []string
	// Password must never appear in the script's output.
	Password string
}

// NewRehearsal finds the script under root, the repository's root
// relative to the calling test's package directory.
func NewRehearsal(t testing.TB, root, jar, password string) *Rehearsal {
	t.Helper()
	script, err := filepath.Abs(filepath.Join(root, "scripts", "strata-migration-rehearsal.sh"))
	if err != nil {
		t.Fatal(err)
	}
	return &Rehearsal{Script: script, Jar: jar, Password: password}
}

// Migrations writes the service's migration directory: V1 and, when
// given, V2.
func Migrations(t testing.TB, v2 string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "V1__orders.sql"), []byte(MigrationV1), 0o600); err != nil {
		t.Fatal(err)
	}
	if v2 != "" {
		if err := os.WriteFile(filepath.Join(dir, "V2__next.sql"), []byte(v2), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Run rehearses the migrations in migrationDir on the database of the
// owner binding in bindingDir, with verify (when given), and returns the
// script's exit code and output.
func (r *Rehearsal) Run(t testing.TB, bindingDir, migrationDir, verify string) (int, string) {
	t.Helper()
	bin := os.Getenv(EnvBinDir)
	if bin == "" {
		bin = DefaultBinDir
	}
	args := []string{"--binding-dir", bindingDir}
	if verify != "" {
		args = append(args, "--verify", verify)
	}
	args = append(args, "--", "java", "-jar", r.Jar)
	cmd := exec.CommandContext(t.Context(), r.Script, args...)
	cmd.Env = append(append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "FLYWAY_LOCATIONS=filesystem:"+migrationDir), r.Env...)
	begin := time.Now()
	out, err := cmd.CombinedOutput()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running %s: %v", r.Script, err)
	}
	t.Logf("rehearsal on %s: exit %d in %s\n%s", bindingDir, code, time.Since(begin).Round(time.Millisecond), out)
	if r.Password != "" && strings.Contains(string(out), r.Password) {
		t.Errorf("the rehearsal script printed the password")
	}
	return code, string(out)
}

// WriteBinding writes a binding's values as a mounted binding Secret: one
// file per key.
func WriteBinding(t testing.TB, values map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for k, v := range values {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
