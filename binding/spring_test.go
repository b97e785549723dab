package binding

import (
	"net/url"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

func testConn() PostgresConn {
	return PostgresConn{
		SecretName: "binding-b1", Host: "pg-i-pooler.team.svc", DirectHost: "pg-i-rw.team.svc", Port: 5432,
		Database: "app", Access: ReadWrite, OwnerRole: "strata_owner", PoolSize: 20, CAPEM: "-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n",
		App:      Login{Username: "app_user", Password: "app-pw"},
		Migrator: &Login{Username: "owner_user", Password: "owner-pw"},
	}
}

func TestPostgresSecret(t *testing.T) {
	tests := []struct {
		name   string
		change func(*PostgresConn)
		want   map[string]string
		absent []string
	}{
		{
			name: "readwrite behind a transaction-mode pooler",
			change: func(c *PostgresConn) {
				c.TransactionPooling = true
			},
			want: map[string]string{
				"type": "postgresql", "host": "pg-i-pooler.team.svc", "port": "5432", "database": "app",
				"username": "app_user", "password": "app-pw", "sslmode": "verify-full",
				"sslrootcert":                "/bindings/binding-b1/ca.crt",
				"spring.datasource.url":      "jdbc:postgresql://pg-i-pooler.team.svc:5432/app?sslmode=verify-full&sslrootcert=%2Fbindings%2Fbinding-b1%2Fca.crt&prepareThreshold=0",
				"spring.datasource.username": "app_user", "spring.datasource.password": "app-pw",
				"spring.datasource.hikari.maximum-pool-size": "20",
				"spring.datasource.hikari.minimum-idle":      "2",
				// Migrations go to the primary, without the pooler.
				"spring.flyway.url":       "jdbc:postgresql://pg-i-rw.team.svc:5432/app?sslmode=verify-full&sslrootcert=%2Fbindings%2Fbinding-b1%2Fca.crt",
				"spring.flyway.user":      "owner_user",
				"spring.flyway.password":  "owner-pw",
				"spring.flyway.init-sqls": "SET ROLE strata_owner",
				"spring.ssl.bundle.pem.binding-b1.truststore.certificate": testConn().CAPEM,
				"ca.crt": testConn().CAPEM,
			},
			absent: []string{"spring.flyway.enabled", "spring.datasource.xa.properties.url", "spring.datasource.hikari.connection-init-sql"},
		},
		{
			name: "readonly: no migrations",
			change: func(c *PostgresConn) {
				c.Access, c.Migrator, c.Host = ReadOnly, nil, "pg-i-ro.team.svc"
			},
			want: map[string]string{
				"access": "readonly", "spring.flyway.enabled": "false", "spring.liquibase.enabled": "false",
				"spring.datasource.url": "jdbc:postgresql://pg-i-ro.team.svc:5432/app?sslmode=verify-full&sslrootcert=%2Fbindings%2Fbinding-b1%2Fca.crt",
			},
			absent: []string{"spring.flyway.url", "spring.flyway.user", "spring.flyway.password"},
		},
		{
			name: "owner: the application acts as the owner group",
			change: func(c *PostgresConn) {
				c.Access = Owner
				c.Migrator = &c.App
			},
			want: map[string]string{"spring.datasource.hikari.connection-init-sql": "SET ROLE strata_owner", "spring.flyway.user": "app_user"},
		},
		{
			name:   "mount path parameter",
			change: func(c *PostgresConn) { c.MountPath = "/etc/db" },
			want:   map[string]string{"sslrootcert": "/etc/db/ca.crt"},
		},
		{
			name:   "XA goes to the primary, not the pooler",
			change: func(c *PostgresConn) { c.XA, c.TransactionPooling = true, true },
			want: map[string]string{
				"spring.datasource.xa.data-source-class-name": "org.postgresql.xa.PGXADataSource",
				"spring.datasource.xa.properties.url":         "jdbc:postgresql://pg-i-rw.team.svc:5432/app?sslmode=verify-full&sslrootcert=%2Fbindings%2Fbinding-b1%2Fca.crt",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			c := testConn()
			tc.change(&c)
			s := PostgresSecret(c)
			for k, v := range tc.want {
				g.Expect(s).To(HaveKeyWithValue(k, v), k)
			}
			for _, k := range tc.absent {
				g.Expect(s).NotTo(HaveKey(k))
			}
			// The URI is a valid URL whose user and password round-trip.
			u, err := url.Parse(s["uri"])
			g.Expect(err).NotTo(HaveOccurred())
			pw, _ := u.User.Password()
			g.Expect(u.User.Username()).To(Equal(c.App.Username))
			g.Expect(pw).To(Equal(c.App.Password))
			// Passwords appear only under password keys.
			for k, v := range s {
				if strings.Contains(v, c.App.Password) && k != "password" && k != "uri" && !strings.HasSuffix(k, "password") {
					t.Errorf("key %s carries the password", k)
				}
			}
		})
	}
}

func TestPoolSize(t *testing.T) {
	g := NewWithT(t)
	g.Expect(PoolSize(50, 0)).To(Equal(4), "dev-lite: a tenth of what is left after ten reserved")
	g.Expect(PoolSize(200, 20)).To(Equal(20), "behind PgBouncer: its pool size")
	g.Expect(PoolSize(15, 0)).To(Equal(2), "never below 2")
}
