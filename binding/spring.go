package binding

import (
	"fmt"
	"net/url"
	"strconv"
)

// DefaultMountRoot is where bindings are mounted by convention
// (servicebinding.io's SERVICE_BINDING_ROOT): a binding Secret named s is
// mounted at /bindings/s, and paths inside the Secret (the CA file in the
// JDBC URL) point there.
const DefaultMountRoot = "/bindings"

// PostgresConn is everything the PostgreSQL binding Secret says.
type PostgresConn struct {
	// SecretName names the Secret, the mount directory and the SSL bundle.
	SecretName string
	// MountPath is where the Secret is mounted; empty means
	// DefaultMountRoot/SecretName.
	MountPath string
	// Host and Port are what the application connects to: the PgBouncer
	// pooler for readwrite bindings on plans that have one, else the
	// cluster's read-write or read-only service.
	Host string
	Port int
	// DirectHost is the primary's service, for migrations: Flyway needs
	// session state (advisory locks) that transaction pooling does not keep.
	DirectHost string
	Database   string
	Access     Access
	App        Login
	// Migrator is the owner login Flyway uses; nil for readonly bindings.
	Migrator *Login
	// OwnerRole is the group role migrations (and owner bindings) SET ROLE
	// to, so the objects they create belong to the group, not to a login
	// that is revoked at unbind.
	OwnerRole string
	// TransactionPooling says a transaction-mode pooler is in the path.
	TransactionPooling bool
	// PoolSize is HikariCP's maximum-pool-size.
	PoolSize int
	CAPEM    string
	// XA says the instance allows prepared transactions (parameters.xa).
	XA bool
}

func (c PostgresConn) mountPath() string {
	if c.MountPath != "" {
		return c.MountPath
	}
	return DefaultMountRoot + "/" + c.SecretName
}

// PostgresSecret renders the binding Secret's keys: Spring Boot properties
// (read by spring.config.import=optional:configtree:<mount>/) and
// servicebinding.io keys.
func PostgresSecret(c PostgresConn) map[string]string {
	caFile := c.mountPath() + "/ca.crt"
	jdbc := jdbcURL(c.Host, c.Port, c.Database, caFile, c.TransactionPooling)
	uri := (&url.URL{
		Scheme:   "postgresql",
		User:     url.UserPassword(c.App.Username, c.App.Password),
		Host:     c.Host + ":" + strconv.Itoa(c.Port),
		Path:     "/" + c.Database,
		RawQuery: "sslmode=verify-full&sslrootcert=" + url.QueryEscape(caFile),
	}).String()
	s := map[string]string{
		// servicebinding.io
		"type":        "postgresql",
		"provider":    "strata",
		"host":        c.Host,
		"port":        strconv.Itoa(c.Port),
		"database":    c.Database,
		"username":    c.App.Username,
		"password":    c.App.Password,
		"sslmode":     "verify-full",
		"sslrootcert": caFile,
		"uri":         uri,
		"jdbc-url":    jdbc,
		"ca.crt":      c.CAPEM,
		"access":      string(c.Access),

		// Spring Boot
		"spring.datasource.url":      jdbc,
		"spring.datasource.username": c.App.Username,
		"spring.datasource.password": c.App.Password,
		// Sized from the instance's connection budget (see PoolSize).
		"spring.datasource.hikari.maximum-pool-size":  strconv.Itoa(c.PoolSize),
		"spring.datasource.hikari.minimum-idle":       strconv.Itoa(min(2, c.PoolSize)),
		"spring.datasource.hikari.connection-timeout": "10000",
		"spring.datasource.hikari.validation-timeout": "5000",
		"spring.datasource.hikari.idle-timeout":       "300000",
		// Connections are replaced every 30 minutes, so server-side
		// changes (a failover, a new certificate) reach every connection.
		"spring.datasource.hikari.max-lifetime": "1800000",
		// Keeps idle connections alive through NAT, NLB and Envoy idle
		// timeouts (minimum HikariCP allows is 30 s).
		"spring.datasource.hikari.keepalive-time": "60000",
		"spring.datasource.hikari.pool-name":      "strata-" + c.SecretName,

		"spring.ssl.bundle.pem." + c.SecretName + ".truststore.certificate": c.CAPEM,
	}
	if c.Access == Owner {
		s["spring.datasource.hikari.connection-init-sql"] = "SET ROLE " + c.OwnerRole
	}
	if c.XA {
		// Spring Boot's XA DataSource properties, which it uses when a JTA
		// transaction manager is present (user and password come from
		// spring.datasource.*). PREPARE TRANSACTION holds session state a
		// transaction-mode pooler would not keep, so XA goes to the primary
		// directly.
		s["spring.datasource.xa.data-source-class-name"] = "org.postgresql.xa.PGXADataSource"
		s["spring.datasource.xa.properties.url"] = jdbcURL(c.DirectHost, c.Port, c.Database, caFile, false)
	}
	if c.Migrator != nil {
		s["spring.flyway.url"] = jdbcURL(c.DirectHost, c.Port, c.Database, caFile, false)
		s["spring.flyway.user"] = c.Migrator.Username
		s["spring.flyway.password"] = c.Migrator.Password
		s["spring.flyway.init-sqls"] = "SET ROLE " + c.OwnerRole
		// Liquibase users get the same owner credentials.
		s["spring.liquibase.url"] = s["spring.flyway.url"]
		s["spring.liquibase.user"] = c.Migrator.Username
		s["spring.liquibase.password"] = c.Migrator.Password
	} else {
		// A readonly binding cannot migrate: do not let Flyway try.
		s["spring.flyway.enabled"] = "false"
		s["spring.liquibase.enabled"] = "false"
	}
	return s
}

func jdbcURL(host string, port int, db, caFile string, transactionPooling bool) string {
	q := "sslmode=verify-full&sslrootcert=" + url.QueryEscape(caFile)
	if transactionPooling {
		// pgjdbc's server-side prepared statements are named per
		// connection; behind transaction pooling the next transaction may
		// run on another server connection.
		q += "&prepareThreshold=0"
	}
	return fmt.Sprintf("jdbc:postgresql://%s:%d/%s?%s", host, port, db, q)
}

// PoolSize is a binding's share of an instance's connections: a tenth of
// max_connections less ten kept for the operator, monitoring and
// superuser, at least 2. Behind PgBouncer, client connections are cheap
// and the pooler's own pool bounds the server side, so the pool is the
// pooler's default pool size.
func PoolSize(maxConnections, poolerPoolSize int) int {
	if poolerPoolSize > 0 {
		return poolerPoolSize
	}
	return max(2, (maxConnections-10)/10)
}
