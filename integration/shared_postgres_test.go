//go:build linux

package integration_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/binding"
	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/charts"
	"github.com/strata-dev/strata/integration/pgtest"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/postgres"
)

// Database-level separation of the shared plan on a real PostgreSQL: the
// platform chart's shared Cluster (its pg_hba and its initdb SQL), two
// tenants' instances created as CloudNativePG creates them from the
// rendered DatabaseRoles and Databases, and logins created as the
// management role by OpenBao's creation statements.
func TestSharedPostgresSeparatesTenants(t *testing.T) {
	g := NewWithT(t)
	srv := startSharedPostgres(t)

	cat := catalog.Default()
	svc := &cat.Services[0]
	prov := &postgres.Provisioner{Config: postgres.DefaultConfig()}
	instance := func(tenant, id string) provisioners.Instance {
		return provisioners.Instance{ID: id, Name: "pg-" + id, Namespace: tenant, Service: svc, Plan: svc.PlanByName("shared")}
	}
	a := instance("team-a", "0c8e2f4a-1b3d-4e5f-8a7b-9c0d1e2f3a4b")
	b := instance("team-b", "7d6c5b4a-3e2f-4a1b-9c8d-7e6f5a4b3c2d")

	for _, inst := range []provisioners.Instance{a, b} {
		built, err := prov.Build(inst)
		g.Expect(err).NotTo(HaveOccurred())
		applySharedAsCloudNativePG(t, srv, built)
	}

	// The platform engineer's one step: the management role's password.
	const mgmtPassword = "Mgmt-pw-4c2b9e7d1a"
	setManagementPassword(t, srv, mgmtPassword)
	mgmt, err := srv.Connect(t, "strata_openbao", mgmtPassword, "postgres", "verify-full")
	g.Expect(err).NotTo(HaveOccurred(), "OpenBao's connection: the management role to the postgres database")

	// OpenBao's creation statements, run as the management role.
	n := 0
	login := func(inst provisioners.Instance, access binding.Access) (string, string) {
		n++
		user, pw := fmt.Sprintf("v-%s-%d", access, n), fmt.Sprintf("Login-pw-%d-%s", n, access)
		for _, st := range binding.SharedRoleStatements(inst, access) {
			st = strings.NewReplacer("{{name}}", user, "{{password}}", pw,
				"{{expiration}}", time.Now().Add(time.Hour).UTC().Format("2006-01-02 15:04:05-0700")).Replace(st)
			_, err := mgmt.Exec(context.Background(), st)
			g.Expect(err).NotTo(HaveOccurred(), st)
		}
		return user, pw
	}
	dbA, dbB := postgres.SharedNamesOf(a).Database, postgres.SharedNamesOf(b).Database
	ownerA, ownerPW := login(a, binding.Owner)
	rwA, rwPW := login(a, binding.ReadWrite)
	roA, roPW := login(a, binding.ReadOnly)
	rwB, rwBPW := login(b, binding.ReadWrite)
	ownerB, ownerBPW := login(b, binding.Owner)

	ctx := context.Background()
	exec := func(c *pgx.Conn, sql string) error { _, err := c.Exec(ctx, sql); return err }

	// A's owner creates, A's readwrite writes and reads, A's readonly reads.
	ow, err := srv.Connect(t, ownerA, ownerPW, dbA, "verify-full")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(exec(ow, "CREATE TABLE notes (id int PRIMARY KEY, body text)")).To(Succeed())
	rw, err := srv.Connect(t, rwA, rwPW, dbA, "verify-full")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(exec(rw, "INSERT INTO notes VALUES (1, 'a')")).To(Succeed())
	var body string
	g.Expect(rw.QueryRow(ctx, "SELECT body FROM notes WHERE id = 1").Scan(&body)).To(Succeed())
	g.Expect(body).To(Equal("a"))
	g.Expect(exec(rw, "CREATE TABLE other (id int)")).To(MatchError(ContainSubstring("permission denied")), "readwrite has no DDL")
	ro, err := srv.Connect(t, roA, roPW, dbA, "verify-full")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ro.QueryRow(ctx, "SELECT body FROM notes WHERE id = 1").Scan(&body)).To(Succeed())
	g.Expect(exec(ro, "INSERT INTO notes VALUES (2, 'b')")).To(MatchError(ContainSubstring("permission denied")), "readonly cannot write")

	// Nobody crosses: A's logins cannot connect to B's database, B's
	// cannot connect to A's, and none to the postgres or platform database.
	for _, c := range []struct{ user, pw, db string }{
		{ownerA, ownerPW, dbB}, {rwA, rwPW, dbB}, {roA, roPW, dbB},
		{rwB, rwBPW, dbA}, {ownerB, ownerBPW, dbA},
		{rwA, rwPW, "postgres"}, {rwA, rwPW, "strata_platform"}, {rwA, rwPW, "template1"},
	} {
		_, err := srv.Connect(t, c.user, c.pw, c.db, "verify-full")
		g.Expect(err).To(MatchError(ContainSubstring("pg_hba.conf rejects connection")), "%s to %s", c.user, c.db)
	}
	// B's own login does reach B's database (the rejections above are not
	// a broken login).
	_, err = srv.Connect(t, rwB, rwBPW, dbB, "verify-full")
	g.Expect(err).NotTo(HaveOccurred())
	// The management role reaches only the postgres database.
	_, err = srv.Connect(t, "strata_openbao", mgmtPassword, dbA, "verify-full")
	g.Expect(err).To(MatchError(ContainSubstring("pg_hba.conf rejects connection")))
	// Without TLS nobody gets in, not even to their own database.
	_, err = srv.Connect(t, rwA, rwPW, dbA, "disable")
	g.Expect(err).To(MatchError(ContainSubstring("no encryption")))

	// The grant function hands out tenant groups to new plain logins only.
	g.Expect(exec(mgmt, "CREATE ROLE v_probe LOGIN")).To(Succeed())
	g.Expect(exec(mgmt, "SELECT strata.grant_tenant_role('v_probe', 'pg_read_server_files')")).To(MatchError(ContainSubstring("is not a Strata tenant group role")))
	g.Expect(exec(mgmt, "SELECT strata.grant_tenant_role('v_probe', '"+dbA+"')")).To(MatchError(ContainSubstring("is not a Strata tenant group role")), "not the anchor")
	g.Expect(exec(mgmt, fmt.Sprintf("SELECT strata.grant_tenant_role('%s', '%s_readwrite')", rwA, dbB))).To(MatchError(ContainSubstring("is not a new plain login")), "no second tenant for a login")
	g.Expect(exec(mgmt, fmt.Sprintf("SELECT strata.grant_tenant_role('strata_openbao', '%s_owner')", dbA))).To(MatchError(ContainSubstring("is not a new plain login")))
	// And only the management role may call it: it lives in the postgres
	// database, which tenants cannot reach, and EXECUTE is not PUBLIC's.
	g.Expect(exec(rw, fmt.Sprintf("SELECT strata.grant_tenant_role('v_probe', '%s_owner')", dbA))).To(MatchError(ContainSubstring("does not exist")))
	var canExec bool
	g.Expect(srv.SuperuserTo(t, "postgres").QueryRow(ctx, "SELECT has_function_privilege($1, 'strata.grant_tenant_role(name, name)', 'EXECUTE')", rwA).Scan(&canExec)).To(Succeed())
	g.Expect(canExec).To(BeFalse())

	// Revocation as OpenBao does it: the login is gone.
	for _, st := range []string{`SET ROLE pg_signal_backend;`, fmt.Sprintf(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '%s';`, roA), `RESET ROLE;`, fmt.Sprintf(`DROP ROLE IF EXISTS "%s";`, roA)} {
		g.Expect(exec(mgmt, st)).To(Succeed(), st)
	}
	_, err = srv.Connect(t, roA, roPW, dbA, "verify-full")
	g.Expect(err).To(HaveOccurred())
}

// startSharedPostgres starts a real PostgreSQL configured from the platform
// chart's shared Cluster (its pg_hba and its initdb SQL).
func startSharedPostgres(t *testing.T) *pgtest.Server {
	t.Helper()
	objs, err := charts.RenderPlatform(map[string]any{"sharedPostgres": map[string]any{
		// The harness runs Debian's PostgreSQL 15.
		"image": "ghcr.io/cloudnative-pg/postgresql:15.17-standard-trixie",
	}}, "strata-system")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o["kind"] == "Cluster" {
			return pgtest.Start(t, &unstructured.Unstructured{Object: o})
		}
	}
	t.Fatal("the platform chart renders no shared Cluster")
	return nil
}

// applySharedAsCloudNativePG does, as the superuser, what CloudNativePG
// does with a shared instance's DatabaseRoles and Database.
func applySharedAsCloudNativePG(t *testing.T, srv *pgtest.Server, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, o := range objs {
		switch o.GetKind() {
		case "DatabaseRole":
			name, _, _ := unstructured.NestedString(o.Object, "spec", "name")
			if login, _, _ := unstructured.NestedBool(o.Object, "spec", "login"); login {
				t.Fatalf("DatabaseRole %s may log in", name)
			}
			stmts := []string{fmt.Sprintf("CREATE ROLE %s NOLOGIN INHERIT", name)}
			in, _, _ := unstructured.NestedStringSlice(o.Object, "spec", "inRoles")
			for _, r := range in {
				stmts = append(stmts, fmt.Sprintf("GRANT %s TO %s", r, name))
			}
			superExec(t, srv, "postgres", stmts...)
		case "Database":
			srv.ApplyDatabase(t, o)
		}
	}
}

// setManagementPassword is the platform engineer's step of docs/openbao.md:
// the management role's first password (OpenBao rotates it).
func setManagementPassword(t *testing.T, srv *pgtest.Server, password string) {
	t.Helper()
	verifier, err := postgres.SCRAMVerifier(password)
	if err != nil {
		t.Fatal(err)
	}
	superExec(t, srv, "postgres", fmt.Sprintf("ALTER ROLE strata_openbao PASSWORD '%s'", verifier))
}

func superExec(t *testing.T, srv *pgtest.Server, db string, stmts ...string) {
	t.Helper()
	c := srv.SuperuserTo(t, db)
	for _, st := range stmts {
		if _, err := c.Exec(context.Background(), st); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
	}
}
