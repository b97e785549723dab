package dev.strata.testcontainers;

import java.time.Duration;

import org.testcontainers.containers.GenericContainer;
import org.testcontainers.containers.wait.strategy.Wait;
import org.testcontainers.images.builder.Transferable;
import org.testcontainers.utility.DockerImageName;

/**
 * PostgreSQL configured like a dev-lite instance (provisioners/postgres,
 * docs/postgres.md#security-model): TLS only (hostnossl rejected,
 * TLSv1.2 to TLSv1.3) with a server certificate of the module's CA,
 * SCRAM-SHA-256, max_connections 50, pg_stat_statements and pgaudit
 * (write, ddl, role), the group roles strata_owner (owns the database),
 * strata_readwrite (pg_read_all_data, pg_write_all_data) and
 * strata_readonly, and a readwrite binding's two logins b_h_rw and b_h_ow
 * as CloudNativePG's DatabaseRoles create them. No superuser is reachable
 * over TCP.
 *
 * <p>The image is Strata's locally built PostgreSQL image (Debian's
 * postgresql-15 with pgaudit; internal/platform builds it): PostgreSQL's
 * binaries on PATH, user 26, locale en_US.UTF-8.
 */
public class PostgresDevLiteContainer extends GenericContainer<PostgresDevLiteContainer> {
    public static final int PORT = 5432;
    public static final String OWNER_ROLE = "strata_owner";
    public static final String READWRITE_ROLE = "strata_readwrite";
    public static final String READONLY_ROLE = "strata_readonly";
    /** dev-lite's max_connections (catalog/postgres.go). */
    public static final int MAX_CONNECTIONS = 50;

    private final String database;
    private final String appUser;
    private final String appPassword;
    private final String migratorUser;
    private final String migratorPassword;

    /**
     * @param image    the PostgreSQL image (e.g. local/postgresql:15.20)
     * @param server   the server certificate (names the container is reached by)
     * @param caPem    the CA that signed it
     * @param database the database (a dev-lite instance's first database, "app" by default)
     * @param bindingId the binding id the logins are named after
     */
    public PostgresDevLiteContainer(DockerImageName image, Pki.ServerCert server, String caPem, String database,
            String bindingId) {
        super(image);
        if (!database.matches("[a-z][a-z0-9_]{0,62}")) {
            throw new IllegalArgumentException("database " + database + " does not match ^[a-z][a-z0-9_]{0,62}$");
        }
        this.database = database;
        String h = Secrets.bindingHash(bindingId);
        this.appUser = "b_" + h + "_rw";
        this.migratorUser = "b_" + h + "_ow";
        this.appPassword = Secrets.password();
        this.migratorPassword = Secrets.password();
        withExposedPorts(PORT);
        withCopyToContainer(Transferable.of(server.certificatePem(), 0644), "/strata/tls/tls.crt");
        withCopyToContainer(Transferable.of(server.privateKeyPem(), 0644), "/strata/tls/tls.key");
        withCopyToContainer(Transferable.of(caPem, 0644), "/strata/tls/ca.crt");
        withCopyToContainer(Transferable.of(setupSql(), 0644), "/strata/setup.sql");
        withCopyToContainer(Transferable.of(START, 0755), "/strata/start.sh");
        withCreateContainerCmdModifier(cmd -> cmd.withUser("26:26"));
        withTmpFs(java.util.Map.of("/var/lib/postgresql", "rw,uid=26,gid=26,mode=0700"));
        withCommand("bash", "/strata/start.sh");
        // Only the final server logs to the container's output (the
        // bootstrap server logs to a file), so one line means it listens.
        waitingFor(Wait.forLogMessage(".*database system is ready to accept connections.*\\n", 1)
                .withStartupTimeout(Duration.ofMinutes(2)));
    }

    public String database() {
        return database;
    }

    public String appUser() {
        return appUser;
    }

    String appPassword() {
        return appPassword;
    }

    public String migratorUser() {
        return migratorUser;
    }

    String migratorPassword() {
        return migratorPassword;
    }

    /**
     * The roles and the database, with SCRAM verifiers rather than passwords
     * (pgaudit logs role statements).
     */
    private String setupSql() {
        return String.join("\n",
                "CREATE ROLE " + OWNER_ROLE + " NOLOGIN;",
                "CREATE ROLE " + READWRITE_ROLE + " NOLOGIN IN ROLE pg_read_all_data, pg_write_all_data;",
                "CREATE ROLE " + READONLY_ROLE + " NOLOGIN IN ROLE pg_read_all_data;",
                "CREATE DATABASE " + database + " OWNER " + OWNER_ROLE + ";",
                "CREATE ROLE " + appUser + " LOGIN INHERIT IN ROLE " + READWRITE_ROLE + " PASSWORD '"
                        + Secrets.scramSha256Verifier(appPassword) + "';",
                "CREATE ROLE " + migratorUser + " LOGIN INHERIT IN ROLE " + OWNER_ROLE + " PASSWORD '"
                        + Secrets.scramSha256Verifier(migratorPassword) + "';",
                "COMMENT ON ROLE " + appUser + " IS 'strata-testcontainers: readwrite binding login';",
                "COMMENT ON ROLE " + migratorUser + " IS 'strata-testcontainers: the binding''s migration login';",
                "\\connect " + database,
                "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;",
                "");
    }

    /**
     * initdb, the instance's configuration, the roles (through a local
     * socket, before TCP is opened), then postgres in the foreground.
     */
    private static final String START = """
            set -euo pipefail
            export PGDATA=/var/lib/postgresql/data
            initdb --username=postgres --auth-local=peer --auth-host=reject --encoding=UTF8 \\
              --locale=en_US.UTF-8 --data-checksums -D "$PGDATA" >/dev/null
            install -m 0600 /strata/tls/tls.crt "$PGDATA/server.crt"
            install -m 0600 /strata/tls/tls.key "$PGDATA/server.key"
            install -m 0600 /strata/tls/ca.crt "$PGDATA/ca.crt"
            cat >> "$PGDATA/postgresql.conf" <<'CONF'
            listen_addresses = '*'
            port = 5432
            unix_socket_directories = '/var/run/postgresql'
            max_connections = 50
            password_encryption = 'scram-sha-256'
            ssl = on
            ssl_cert_file = 'server.crt'
            ssl_key_file = 'server.key'
            ssl_ca_file = 'ca.crt'
            ssl_min_protocol_version = 'TLSv1.2'
            ssl_max_protocol_version = 'TLSv1.3'
            shared_preload_libraries = 'pg_stat_statements,pgaudit'
            pgaudit.log = 'write,ddl,role'
            pgaudit.log_catalog = off
            log_destination = 'stderr'
            CONF
            cat > "$PGDATA/pg_hba.conf" <<'HBA'
            local all all peer
            hostnossl all all 0.0.0.0/0 reject
            hostnossl all all ::/0 reject
            hostssl all all 0.0.0.0/0 scram-sha-256
            hostssl all all ::/0 scram-sha-256
            HBA
            pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" -l /tmp/bootstrap.log start >/dev/null
            psql -v ON_ERROR_STOP=1 -q -X -U postgres -d postgres -f /strata/setup.sql >/dev/null
            pg_ctl -D "$PGDATA" -w -m fast stop >/dev/null
            exec postgres -D "$PGDATA"
            """;
}
