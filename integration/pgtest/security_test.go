//go:build linux

package pgtest_test

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	. "github.com/onsi/gomega"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/integration/pgtest"
	"github.com/strata-dev/strata/provisioners/postgres"
)

// Cleartext passwords of the login roles; none may ever appear in the log.
const (
	ownerPassword     = "Owner-pw-7f3a9c1e5b"
	readWritePassword = "ReadWrite-pw-2d8e4b6a0c"
	readOnlyPassword  = "ReadOnly-pw-9b1c7e3f5d"
	wrongPassword     = "Wrong-pw-4e6a8c0b2d"
)

const (
	ownerUser     = "binding_owner"
	readWriteUser = "binding_rw"
	readOnlyUser  = "binding_ro"
)

// TestRenderedClusterSecurity runs PostgreSQL as CloudNativePG configures it
// from a rendered "standard" plan Cluster with xa on, and checks that what
// the builders promise holds on a real server: TLS-only, SCRAM, the group
// roles' rights, pgaudit, XA, the offered extensions.
func TestRenderedClusterSecurity(t *testing.T) {
	// The standard plan with XA on, as the provisioner renders it.
	cluster := pgtest.RenderCluster(t, "standard", map[string]any{"xa": true})

	start := time.Now()
	srv := pgtest.Start(t, cluster)
	t.Logf("PostgreSQL %s ready on %s:%d in %s", srv.Version, pgtest.Host, srv.Port, time.Since(start).Round(time.Millisecond))
	db := srv.Database

	srv.CreateLoginRole(t, ownerUser, ownerPassword, postgres.OwnerRole)
	srv.CreateLoginRole(t, readWriteUser, readWritePassword, postgres.ReadWriteRole)
	srv.CreateLoginRole(t, readOnlyUser, readOnlyPassword, postgres.ReadOnlyRole)

	// connect opens a verify-full (TLS + SCRAM) session.
	connect := func(t *testing.T, user, password string) *pgx.Conn {
		t.Helper()
		conn, err := srv.Connect(t, user, password, db, "verify-full")
		if err != nil {
			t.Fatalf("%s cannot connect with TLS (verify-full) and SCRAM: %v", user, err)
		}
		return conn
	}
	// ownerTable creates a table as strata_owner (SET ROLE, as bindings do
	// for migrations) and lets the other group roles at it.
	ownerTable := func(t *testing.T, name string) {
		t.Helper()
		g := NewWithT(t)
		conn := connect(t, ownerUser, ownerPassword)
		_, err := conn.Exec(t.Context(), "SET ROLE "+postgres.OwnerRole)
		g.Expect(err).NotTo(HaveOccurred(), "a binding in %s cannot SET ROLE to it", postgres.OwnerRole)
		_, err = conn.Exec(t.Context(), "CREATE TABLE public."+name+" (id serial PRIMARY KEY, name text NOT NULL)")
		g.Expect(err).NotTo(HaveOccurred(),
			"%s cannot CREATE TABLE in the public schema of %s: the bootstrap owner must be %s so that it owns public (pg_database_owner)",
			postgres.OwnerRole, db, postgres.OwnerRole)
	}

	t.Run("non-TLS connection is rejected by pg_hba", func(t *testing.T) {
		g := NewWithT(t)
		_, err := srv.Connect(t, readWriteUser, readWritePassword, db, "disable")
		g.Expect(err).To(HaveOccurred(), "a plaintext (sslmode=disable) connection with a valid login and password was accepted: the Cluster's pg_hba must reject hostnossl before CloudNativePG's default rule (which accepts non-TLS)")
		var pgErr *pgconn.PgError
		g.Expect(errors.As(err, &pgErr)).To(BeTrue(), "the plaintext connection failed, but not with a server error: %v", err)
		g.Expect(pgErr.Code).To(Equal("28000"), "want invalid_authorization_specification (a pg_hba rejection), got %s: %s", pgErr.Code, pgErr.Message)
		g.Expect(pgErr.Message).To(MatchRegexp(`(no pg_hba\.conf entry|pg_hba\.conf rejects connection).*(no encryption|SSL off)`),
			"the rejection must come from a pg_hba rule for non-TLS connections")
	})

	t.Run("TLS with SCRAM works and negotiates TLS 1.2 or later", func(t *testing.T) {
		g := NewWithT(t)
		conn := connect(t, readWriteUser, readWritePassword)
		var ssl bool
		var version string
		err := conn.QueryRow(t.Context(), "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl, &version)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(ssl).To(BeTrue(), "pg_stat_ssl says this session is not encrypted")
		g.Expect(version).To(BeElementOf("TLSv1.2", "TLSv1.3"), "negotiated %s, below the TLS 1.2 floor", version)
	})

	t.Run("a TLS 1.2-only client (older JDKs) can connect", func(t *testing.T) {
		// The builder lowers CloudNativePG's TLSv1.3 floor to TLSv1.2 on
		// purpose: check that it took.
		g := NewWithT(t)
		cfg := srv.ConnConfig(t, readOnlyUser, readOnlyPassword, db, "verify-full")
		g.Expect(cfg.TLSConfig).NotTo(BeNil())
		cfg.TLSConfig.MaxVersion = tls.VersionTLS12
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		conn, err := pgx.ConnectConfig(ctx, cfg)
		g.Expect(err).NotTo(HaveOccurred(), "a client limited to TLS 1.2 is refused: ssl_min_protocol_version must be TLSv1.2")
		defer conn.Close(context.Background())
		var version string
		g.Expect(conn.QueryRow(t.Context(), "SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&version)).To(Succeed())
		g.Expect(version).To(Equal("TLSv1.2"))
	})

	t.Run("a wrong password is refused", func(t *testing.T) {
		g := NewWithT(t)
		_, err := srv.Connect(t, readWriteUser, wrongPassword, db, "verify-full")
		g.Expect(err).To(HaveOccurred(), "a wrong password was accepted")
		var pgErr *pgconn.PgError
		g.Expect(errors.As(err, &pgErr)).To(BeTrue(), "want a server error, got %v", err)
		g.Expect(pgErr.Code).To(Equal("28P01"), "want invalid_password, got %s: %s", pgErr.Code, pgErr.Message)
	})

	t.Run("group rights", func(t *testing.T) {
		ownerTable(t, "items")

		t.Run("owner owns what it creates", func(t *testing.T) {
			g := NewWithT(t)
			conn := srv.Superuser(t)
			var owner string
			g.Expect(conn.QueryRow(t.Context(), "SELECT tableowner FROM pg_tables WHERE schemaname = 'public' AND tablename = 'items'").Scan(&owner)).To(Succeed())
			g.Expect(owner).To(Equal(postgres.OwnerRole), "a table created after SET ROLE %s must belong to it, so that every binding can migrate it", postgres.OwnerRole)
		})

		t.Run("readwrite reads and writes rows and uses sequences", func(t *testing.T) {
			g := NewWithT(t)
			conn := connect(t, readWriteUser, readWritePassword)
			ctx := t.Context()
			var id int
			err := conn.QueryRow(ctx, "INSERT INTO public.items (name) VALUES ('a') RETURNING id").Scan(&id)
			g.Expect(err).NotTo(HaveOccurred(), "%s cannot INSERT into the owner's table with a serial column (INSERT on the table and nextval on its sequence)", postgres.ReadWriteRole)
			var next int64
			err = conn.QueryRow(ctx, "SELECT nextval('public.items_id_seq')").Scan(&next)
			g.Expect(err).NotTo(HaveOccurred(), "%s cannot call nextval on the owner's sequence (Hibernate's sequence generators do)", postgres.ReadWriteRole)
			_, err = conn.Exec(ctx, "UPDATE public.items SET name = 'b' WHERE id = $1", id)
			g.Expect(err).NotTo(HaveOccurred(), "%s cannot UPDATE", postgres.ReadWriteRole)
			var name string
			g.Expect(conn.QueryRow(ctx, "SELECT name FROM public.items WHERE id = $1", id).Scan(&name)).To(Succeed(), "%s cannot SELECT", postgres.ReadWriteRole)
			g.Expect(name).To(Equal("b"))
			_, err = conn.Exec(ctx, "DELETE FROM public.items WHERE id = $1", id)
			g.Expect(err).NotTo(HaveOccurred(), "%s cannot DELETE", postgres.ReadWriteRole)
		})

		t.Run("readwrite cannot create or drop tables", func(t *testing.T) {
			g := NewWithT(t)
			conn := connect(t, readWriteUser, readWritePassword)
			_, err := conn.Exec(t.Context(), "CREATE TABLE public.rw_made (x int)")
			expectSQLState(g, err, "42501", "%s must not CREATE TABLE in public (DDL belongs to %s)", postgres.ReadWriteRole, postgres.OwnerRole)
			_, err = conn.Exec(t.Context(), "DROP TABLE public.items")
			expectSQLState(g, err, "42501", "%s must not DROP the owner's table", postgres.ReadWriteRole)
		})

		t.Run("readonly reads and cannot write", func(t *testing.T) {
			g := NewWithT(t)
			conn := connect(t, readOnlyUser, readOnlyPassword)
			var n int
			g.Expect(conn.QueryRow(t.Context(), "SELECT count(*) FROM public.items").Scan(&n)).To(Succeed(), "%s cannot SELECT the owner's table", postgres.ReadOnlyRole)
			_, err := conn.Exec(t.Context(), "INSERT INTO public.items (name) VALUES ('ro')")
			expectSQLState(g, err, "42501", "%s must not INSERT", postgres.ReadOnlyRole)
		})
	})

	t.Run("pgaudit logs DDL and writes and no password", func(t *testing.T) {
		g := NewWithT(t)
		ownerTable(t, "audited")
		conn := connect(t, readWriteUser, readWritePassword)
		_, err := conn.Exec(t.Context(), "INSERT INTO public.audited (name) VALUES ('x')")
		g.Expect(err).NotTo(HaveOccurred())
		// A failed login too: its password must not be logged either.
		_, _ = srv.Connect(t, readOnlyUser, wrongPassword, db, "verify-full")

		log := srv.Log(t)
		g.Expect(log).To(MatchRegexp(`AUDIT: SESSION,\d+,\d+,DDL,CREATE TABLE,TABLE,public\.audited,`),
			"no pgaudit SESSION line of class DDL for the CREATE TABLE: pgaudit.log must include ddl and pgaudit must be preloaded")
		g.Expect(log).To(MatchRegexp(`AUDIT: SESSION,\d+,\d+,WRITE,INSERT,TABLE,public\.audited,`),
			"no pgaudit SESSION line of class WRITE for the INSERT: pgaudit.log must include write")
		for _, pw := range []string{ownerPassword, readWritePassword, readOnlyPassword, wrongPassword} {
			g.Expect(log).NotTo(ContainSubstring(pw), "a cleartext password is in the server log %s", srv.LogFile)
		}
		// Any password literal that reaches the log must be a verifier.
		for _, m := range regexp.MustCompile(`(?i)PASSWORD\s+'([^']*)'`).FindAllStringSubmatch(log, -1) {
			g.Expect(m[1]).To(HavePrefix("SCRAM-SHA-256$4096:"), "a logged statement carries a password that is not a SCRAM verifier")
		}
		// pgaudit.log includes role: the login roles' creation is audited,
		// showing the verifier, or nothing (pgaudit 1.7+ redacts it).
		for _, user := range []string{ownerUser, readWriteUser, readOnlyUser} {
			m := regexp.MustCompile(`AUDIT: SESSION,\d+,\d+,ROLE,CREATE ROLE,.*CREATE ROLE ""` + user + `"" LOGIN PASSWORD ('[^']*'|[^\s",]+)`).FindStringSubmatch(log)
			g.Expect(m).NotTo(BeNil(), "the creation of login role %s is not audited (class ROLE)", user)
			if m != nil {
				g.Expect(m[1]).To(Or(Equal("<REDACTED>"), HavePrefix("'SCRAM-SHA-256$4096:")),
					"the audited CREATE ROLE %s shows a password that is neither redacted nor a SCRAM verifier", user)
			}
		}
	})

	t.Run("XA prepared transactions", func(t *testing.T) {
		g := NewWithT(t)
		su := srv.Superuser(t)
		var maxPrepared string
		g.Expect(su.QueryRow(t.Context(), "SHOW max_prepared_transactions").Scan(&maxPrepared)).To(Succeed())
		g.Expect(maxPrepared).To(Equal(strconv.Itoa(catalog.Default().Services[0].PlanByName("standard").Postgres.MaxConnections)), "xa: true must allow one prepared transaction per connection")

		ownerTable(t, "xa_items")
		ctx := t.Context()
		conn := connect(t, readWriteUser, readWritePassword)
		for _, stmt := range []string{"BEGIN", "INSERT INTO public.xa_items (name) VALUES ('xa')", "PREPARE TRANSACTION 'strata-xa-1'"} {
			_, err := conn.Exec(ctx, stmt)
			g.Expect(err).NotTo(HaveOccurred(), "%s: %s", postgres.ReadWriteRole, stmt)
		}
		// The transaction manager commits from another session.
		other := connect(t, readWriteUser, readWritePassword)
		_, err := other.Exec(ctx, "COMMIT PREPARED 'strata-xa-1'")
		g.Expect(err).NotTo(HaveOccurred(), "%s cannot COMMIT PREPARED its own transaction", postgres.ReadWriteRole)
		var n int
		g.Expect(other.QueryRow(ctx, "SELECT count(*) FROM public.xa_items WHERE name = 'xa'").Scan(&n)).To(Succeed())
		g.Expect(n).To(Equal(1), "the prepared transaction's row is not there after COMMIT PREPARED")

		// PostgreSQL lets only the role that prepared a transaction (or a
		// superuser) finish it, not a fellow member of strata_readwrite: an
		// in-doubt transaction prepared under a binding's role cannot be
		// recovered under a rotated binding's new role.
		const rotated = "binding_rw_rotated"
		srv.CreateLoginRole(t, rotated, readWritePassword+"-2", postgres.ReadWriteRole)
		for _, stmt := range []string{"BEGIN", "INSERT INTO public.xa_items (name) VALUES ('in-doubt')", "PREPARE TRANSACTION 'strata-xa-2'"} {
			_, err := conn.Exec(ctx, stmt)
			g.Expect(err).NotTo(HaveOccurred(), "%s: %s", postgres.ReadWriteRole, stmt)
		}
		_, err = connect(t, rotated, readWritePassword+"-2").Exec(ctx, "COMMIT PREPARED 'strata-xa-2'")
		expectSQLState(g, err, "42501", "another %s member finished a transaction it did not prepare", postgres.ReadWriteRole)
		_, err = other.Exec(ctx, "ROLLBACK PREPARED 'strata-xa-2'")
		g.Expect(err).NotTo(HaveOccurred(), "the preparing role cannot roll back its own prepared transaction")
	})

	t.Run("hypopg can be created", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(slices.Contains(catalog.PostgresExtensions, "hypopg")).To(BeTrue(), "hypopg is no longer an offered extension; drop this check")
		if _, err := os.Stat("/usr/share/postgresql/" + srv.Version + "/extension/hypopg.control"); err != nil {
			t.Fatalf("hypopg is not installed (%v): %s", err, pgtest.InstallHint)
		}
		su := srv.Superuser(t)
		_, err := su.Exec(t.Context(), "CREATE EXTENSION IF NOT EXISTS hypopg")
		g.Expect(err).NotTo(HaveOccurred(), "CREATE EXTENSION hypopg in %s", db)
		_, err = su.Exec(t.Context(), "CREATE TABLE public.hypo (name text)")
		g.Expect(err).NotTo(HaveOccurred())
		var n int
		g.Expect(su.QueryRow(t.Context(), "SELECT count(*) FROM hypopg_create_index('CREATE INDEX ON public.hypo (name)')").Scan(&n)).
			To(Succeed(), "hypopg is created but does not work")
		g.Expect(n).To(Equal(1))
	})

	t.Run("pg_stat_statements is loaded", func(t *testing.T) {
		g := NewWithT(t)
		su := srv.Superuser(t)
		var libs string
		g.Expect(su.QueryRow(t.Context(), "SHOW shared_preload_libraries").Scan(&libs)).To(Succeed())
		g.Expect(strings.Split(libs, ",")).To(ContainElements("pgaudit", "pg_stat_statements"))
		var n int64
		g.Expect(su.QueryRow(t.Context(), "SELECT count(*) FROM pg_stat_statements").Scan(&n)).
			To(Succeed(), "pg_stat_statements is not usable: CloudNativePG preloads it and creates the extension when a pg_stat_statements.* parameter is set")
		g.Expect(n).To(BeNumerically(">", 0))
	})
}

func expectSQLState(g *WithT, err error, code string, format string, args ...any) {
	g.THelper()
	g.Expect(err).To(HaveOccurred(), append([]any{format + ", yet it succeeded"}, args...)...)
	var pgErr *pgconn.PgError
	g.Expect(errors.As(err, &pgErr)).To(BeTrue(), "want SQLSTATE %s, got %v", code, err)
	g.Expect(pgErr.Code).To(Equal(code), append([]any{format + " (want SQLSTATE %s, got %s: %s)"}, append(args, code, pgErr.Code, pgErr.Message)...)...)
}
