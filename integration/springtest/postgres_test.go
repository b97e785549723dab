//go:build linux

package springtest_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	. "github.com/onsi/gomega"

	"github.com/strata-dev/strata/binding"
	"github.com/strata-dev/strata/integration/pgtest"
	"github.com/strata-dev/strata/integration/springtest"
	"github.com/strata-dev/strata/provisioners/postgres"
)

const (
	ownerUser         = "binding_owner"
	ownerPassword     = "Owner-pw-3c9e1a7f5b"
	readWriteUser     = "binding_rw"
	readWritePassword = "ReadWrite-pw-8d2f6b0e4a"

	secretName = "pg-x-binding"
	// appTimeout bounds one run of the application (JVM start, Flyway,
	// the checks) on a 2-core machine.
	appTimeout = 2 * time.Minute
)

// TestSpringBootUsesPostgresBinding starts a stock Spring Boot application
// (integration/springapp) against a real PostgreSQL configured from a
// rendered Cluster, with nothing but the binding Secret's keys imported as a
// config tree, and checks the contract of docs/bindings.md: Flyway migrates
// as the owner (SET ROLE to the group role), the application reads and
// writes as the readwrite login over verified TLS, and a wrong CA stops it
// with a certificate error.
func TestSpringBootUsesPostgresBinding(t *testing.T) {
	// Build first (minutes the first time on a machine), so PostgreSQL does
	// not wait idle.
	jar := springtest.Jar(t)

	srv := pgtest.Start(t, pgtest.RenderCluster(t, "standard", nil))
	db := srv.Database
	srv.CreateLoginRole(t, ownerUser, ownerPassword, postgres.OwnerRole)
	srv.CreateLoginRole(t, readWriteUser, readWritePassword, postgres.ReadWriteRole)

	dir := filepath.Join(t.TempDir(), secretName)
	conn := binding.PostgresConn{
		SecretName: secretName,
		// The JDBC URLs' sslrootcert points into the mount: here, the
		// directory the keys are written to.
		MountPath: dir,
		// pgtest's server certificate is for localhost and 127.0.0.1, and
		// verify-full checks the host against it.
		Host:       pgtest.Host,
		Port:       srv.Port,
		DirectHost: pgtest.Host,
		Database:   db,
		Access:     binding.ReadWrite,
		App:        binding.Login{Username: readWriteUser, Password: readWritePassword},
		Migrator:   &binding.Login{Username: ownerUser, Password: ownerPassword},
		OwnerRole:  postgres.OwnerRole,
		PoolSize:   5,
		CAPEM:      string(srv.CAPEM),
	}
	secret := binding.PostgresSecret(conn)

	t.Run("the app migrates as owner and reads and writes as readwrite over TLS", func(t *testing.T) {
		g := NewWithT(t)
		springtest.WriteBinding(t, dir, secret)
		res, out, err := springtest.Run(t, jar, dir, appTimeout)
		g.Expect(err).NotTo(HaveOccurred(), "the Spring Boot application failed with only the binding as configuration; its output:\n%s", out)
		for _, pw := range []string{ownerPassword, readWritePassword} {
			g.Expect(out).NotTo(ContainSubstring(pw), "a password is in the application's output")
		}
		pg := res.Postgres
		g.Expect(pg).NotTo(BeNil(), "the application did not run its PostgreSQL check (no spring.datasource.url?); output:\n%s", out)

		// Reads and writes.
		g.Expect(pg.Inserted).To(Equal(1))
		g.Expect(pg.Read).To(Equal(pg.Wrote), "the row the application wrote is not what it read back")
		g.Expect(pg.Wrote).NotTo(BeEmpty())

		// TLS, verified (sslmode=verify-full against the binding's ca.crt).
		g.Expect(pg.SSL).To(BeTrue(), "pg_stat_ssl says the application's session is not encrypted")
		g.Expect(pg.TLSVersion).To(BeElementOf("TLSv1.2", "TLSv1.3"))

		// The application runs as the readwrite login, with no SET ROLE.
		g.Expect(pg.SessionUser).To(Equal(readWriteUser))
		g.Expect(pg.CurrentUser).To(Equal(readWriteUser))

		// Flyway ran as the owner login, SET ROLE to the group role.
		g.Expect(pg.MigratedBy).To(Equal("session_user="+ownerUser+" current_user="+postgres.OwnerRole),
			"V1 must run as the binding's owner login after spring.flyway.init-sqls (SET ROLE %s)", postgres.OwnerRole)
		g.Expect(pg.TableOwner).To(Equal(postgres.OwnerRole))
		// Flyway's installed_by is current_user on PostgreSQL, so after the
		// SET ROLE it names the group role, not the (revocable) login: the
		// login is in migratedBy above.
		g.Expect(pg.FlywayInstalledBy).To(Equal(postgres.OwnerRole))

		// Spring Boot bound every pool and Flyway setting of the Secret.
		g.Expect(pg.Hikari).NotTo(BeNil(), "the DataSource is not HikariCP")
		h := pg.Hikari
		g.Expect(h.JDBCURL).To(Equal(secret["spring.datasource.url"]))
		g.Expect(h.Username).To(Equal(readWriteUser))
		g.Expect(h.PoolName).To(Equal(secret["spring.datasource.hikari.pool-name"]))
		g.Expect(strconv.Itoa(h.MaximumPoolSize)).To(Equal(secret["spring.datasource.hikari.maximum-pool-size"]))
		g.Expect(strconv.Itoa(h.MinimumIdle)).To(Equal(secret["spring.datasource.hikari.minimum-idle"]))
		g.Expect(strconv.FormatInt(h.ConnectionTimeout, 10)).To(Equal(secret["spring.datasource.hikari.connection-timeout"]))
		g.Expect(strconv.FormatInt(h.ValidationTimeout, 10)).To(Equal(secret["spring.datasource.hikari.validation-timeout"]))
		g.Expect(strconv.FormatInt(h.IdleTimeout, 10)).To(Equal(secret["spring.datasource.hikari.idle-timeout"]))
		g.Expect(strconv.FormatInt(h.MaxLifetime, 10)).To(Equal(secret["spring.datasource.hikari.max-lifetime"]))
		g.Expect(strconv.FormatInt(h.KeepaliveTime, 10)).To(Equal(secret["spring.datasource.hikari.keepalive-time"]))
		g.Expect(h.ConnectionInitSQL).To(BeEmpty(), "a readwrite binding must not SET ROLE")
		g.Expect(pg.Flyway).NotTo(BeNil(), "Flyway did not run")
		fw := pg.Flyway
		g.Expect(fw.URL).To(Equal(secret["spring.flyway.url"]))
		g.Expect(fw.User).To(Equal(ownerUser))
		g.Expect(fw.InitSQLs).To(Equal([]string{secret["spring.flyway.init-sqls"]}))
		g.Expect(fw.OwnDataSource).To(BeTrue(), "Flyway must migrate through its own DataSource (spring.flyway.url/user/password), not the application's readwrite pool")
		g.Expect(fw.DataSourceURL).To(Equal(secret["spring.flyway.url"]))
		g.Expect(fw.DataSourceUser).To(Equal(ownerUser))
		g.Expect(fw.InitSQL).To(Equal("SET ROLE " + postgres.OwnerRole))

		// The PEM SSL bundle loaded from PEM text.
		g.Expect(res.SSLBundles).To(HaveKey(secretName), "spring.ssl.bundle.pem.%s.truststore.certificate did not make a bundle", secretName)
		g.Expect(res.SSLBundles[secretName].TrustedSubjects).To(ConsistOf("CN=pgtest CA"))

		// What the server says.
		su := srv.Superuser(t)
		var owner string
		g.Expect(su.QueryRow(t.Context(), "SELECT tableowner FROM pg_tables WHERE schemaname = 'public' AND tablename = 'notes'").Scan(&owner)).To(Succeed())
		g.Expect(owner).To(Equal(postgres.OwnerRole), "the migrated table must belong to %s, not to the login that is revoked at unbind", postgres.OwnerRole)
		g.Expect(su.QueryRow(t.Context(), "SELECT tableowner FROM pg_tables WHERE schemaname = 'public' AND tablename = 'flyway_schema_history'").Scan(&owner)).To(Succeed())
		g.Expect(owner).To(Equal(postgres.OwnerRole), "Flyway's history table must belong to %s too", postgres.OwnerRole)
		var rows int
		g.Expect(su.QueryRow(t.Context(), "SELECT count(*) FROM public.notes WHERE body = $1", pg.Wrote).Scan(&rows)).To(Succeed())
		g.Expect(rows).To(Equal(1), "the application's row is not in the database")

		rw, err := srv.Connect(t, readWriteUser, readWritePassword, db, "verify-full")
		g.Expect(err).NotTo(HaveOccurred())
		_, err = rw.Exec(t.Context(), "DROP TABLE public.notes")
		var pgErr *pgconn.PgError
		g.Expect(errors.As(err, &pgErr)).To(BeTrue(), "the readwrite login could DROP the migrated table (err %v)", err)
		g.Expect(pgErr.Code).To(Equal("42501"), "want insufficient_privilege, got %s: %s", pgErr.Code, pgErr.Message)
	})

	t.Run("an owner binding runs the app as the group role", func(t *testing.T) {
		// Owner bindings SET ROLE on every pooled connection
		// (spring.datasource.hikari.connection-init-sql), so what the
		// application creates at run time belongs to the group role too.
		g := NewWithT(t)
		ownerDir := filepath.Join(t.TempDir(), secretName)
		c := conn
		c.MountPath, c.Access, c.App = ownerDir, binding.Owner, *conn.Migrator
		springtest.WriteBinding(t, ownerDir, binding.PostgresSecret(c))
		res, out, err := springtest.Run(t, jar, ownerDir, appTimeout)
		g.Expect(err).NotTo(HaveOccurred(), "the Spring Boot application failed with an owner binding; its output:\n%s", out)
		pg := res.Postgres
		g.Expect(pg).NotTo(BeNil(), "output:\n%s", out)
		g.Expect(pg.Hikari.ConnectionInitSQL).To(Equal("SET ROLE " + postgres.OwnerRole))
		g.Expect(pg.SessionUser).To(Equal(ownerUser))
		g.Expect(pg.CurrentUser).To(Equal(postgres.OwnerRole), "spring.datasource.hikari.connection-init-sql did not SET ROLE on the application's connection")
		g.Expect(pg.Inserted).To(Equal(1))
		g.Expect(pg.Read).To(Equal(pg.Wrote))
		g.Expect(pg.SSL).To(BeTrue())
		g.Expect(pg.TLSVersion).To(BeElementOf("TLSv1.2", "TLSv1.3"))
		g.Expect(pg.TableOwner).To(Equal(postgres.OwnerRole))
	})

	t.Run("the app fails to start with a certificate error when the CA is wrong", func(t *testing.T) {
		g := NewWithT(t)
		// The same binding, but its CA (ca.crt, which the JDBC URLs'
		// sslrootcert names, and the PEM SSL bundle) is another CA's.
		wrongDir := filepath.Join(t.TempDir(), secretName)
		c := conn
		c.MountPath, c.CAPEM = wrongDir, selfSignedCA(t, "not the pgtest CA")
		wrong := binding.PostgresSecret(c)
		g.Expect(wrong["ca.crt"]).To(Equal(c.CAPEM))
		g.Expect(wrong["spring.ssl.bundle.pem."+secretName+".truststore.certificate"]).To(Equal(c.CAPEM))
		springtest.WriteBinding(t, wrongDir, wrong)

		start := time.Now()
		_, out, err := springtest.Run(t, jar, wrongDir, appTimeout)
		g.Expect(err).To(HaveOccurred(), "the application started although the binding's CA did not sign the server certificate; output:\n%s", out)
		var exit *exec.ExitError
		g.Expect(errors.As(err, &exit)).To(BeTrue(), "want a non-zero exit, got %v; output:\n%s", err, out)
		g.Expect(time.Since(start)).To(BeNumerically("<", time.Minute), "the application took long to give up")
		g.Expect(out).NotTo(ContainSubstring(springtest.CheckPrefix))
		// pgjdbc's message for a server certificate that does not chain to
		// sslrootcert, from Flyway's first connection at start-up, in
		// Spring Boot's "Application run failed" report:
		//   ... 'flywayInitializer' ...: Unable to obtain connection from
		//   database: SSL error: PKIX path building failed: ... unable to
		//   find valid certification path to requested target
		g.Expect(out).To(ContainSubstring("Application run failed"), "output:\n%s", out)
		g.Expect(out).To(MatchRegexp(`Unable to obtain connection from database: SSL error: PKIX path building failed: .*unable to find valid certification path to requested target`),
			"the failure does not say that the server certificate is not trusted; output:\n%s", out)
		for _, pw := range []string{ownerPassword, readWritePassword} {
			g.Expect(out).NotTo(ContainSubstring(pw), "a password is in the application's output")
		}
	})
}

// selfSignedCA is the PEM of a fresh CA certificate that signed nothing.
func selfSignedCA(t *testing.T, cn string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
