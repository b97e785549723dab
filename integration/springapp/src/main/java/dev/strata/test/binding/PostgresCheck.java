package dev.strata.test.binding;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.UUID;

import javax.sql.DataSource;

import com.zaxxer.hikari.HikariDataSource;
import org.flywaydb.core.Flyway;
import org.flywaydb.core.api.configuration.Configuration;

import org.springframework.beans.factory.ObjectProvider;
import org.springframework.boot.autoconfigure.condition.ConditionalOnProperty;
import org.springframework.boot.autoconfigure.flyway.FlywayProperties;
import org.springframework.jdbc.core.JdbcTemplate;
import org.springframework.jdbc.datasource.AbstractDriverBasedDataSource;
import org.springframework.stereotype.Component;
import org.springframework.transaction.support.TransactionTemplate;

/**
 * Uses a PostgreSQL binding as an application does: Flyway has migrated at
 * start-up (V1 creates {@code notes}); this writes and reads a row through
 * the HikariCP pool and reports who it is connected as, whether the session
 * is TLS, who ran the migration, and the pool and Flyway settings Spring Boot
 * bound from the binding.
 */
@Component
@ConditionalOnProperty("spring.datasource.url")
class PostgresCheck implements BindingCheck {

    private final JdbcTemplate jdbc;
    private final TransactionTemplate tx;
    private final DataSource dataSource;
    private final ObjectProvider<Flyway> flyway;
    private final ObjectProvider<FlywayProperties> flywayProperties;

    PostgresCheck(JdbcTemplate jdbc, TransactionTemplate tx, DataSource dataSource, ObjectProvider<Flyway> flyway,
            ObjectProvider<FlywayProperties> flywayProperties) {
        this.jdbc = jdbc;
        this.tx = tx;
        this.dataSource = dataSource;
        this.flyway = flyway;
        this.flywayProperties = flywayProperties;
    }

    @Override
    public String name() {
        return "postgresql";
    }

    @Override
    public Map<String, Object> check() {
        Map<String, Object> out = new LinkedHashMap<>();
        String body = "strata-" + UUID.randomUUID();
        out.put("wrote", body);
        out.put("inserted", jdbc.update("INSERT INTO notes (body) VALUES (?)", body));
        out.put("read", jdbc.queryForObject("SELECT body FROM notes WHERE body = ?", String.class, body));

        // One transaction, so one connection: pg_stat_ssl and the users are
        // those of the same session.
        Map<String, Object> session = tx.execute(status -> {
            Map<String, Object> m = new LinkedHashMap<>(
                    jdbc.queryForMap("SELECT current_user AS cur, session_user AS ses"));
            // pg_stat_ssl shows a session's TLS state only to roles with the
            // privileges of its session user: after SET ROLE (owner bindings'
            // connection-init-sql) not even to the session itself. ROLE NONE
            // for this transaction only; the pool's SET ROLE holds after it.
            jdbc.execute("SET LOCAL ROLE NONE");
            m.putAll(jdbc.queryForMap("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"));
            return m;
        });
        out.put("ssl", session.get("ssl"));
        out.put("tlsVersion", session.get("version"));
        out.put("currentUser", session.get("cur"));
        out.put("sessionUser", session.get("ses"));

        out.put("tableOwner", jdbc.queryForObject(
                "SELECT tableowner FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'notes'",
                String.class));
        // V1 records the users it ran as in the table's comment.
        out.put("migratedBy", jdbc.queryForObject(
                "SELECT obj_description(to_regclass('notes'), 'pg_class')", String.class));
        out.put("flywayInstalledBy", jdbc.queryForObject(
                "SELECT installed_by FROM flyway_schema_history WHERE version = '1' AND success", String.class));

        if (dataSource instanceof HikariDataSource h) {
            Map<String, Object> hikari = new LinkedHashMap<>();
            hikari.put("poolName", h.getPoolName());
            hikari.put("maximumPoolSize", h.getMaximumPoolSize());
            hikari.put("minimumIdle", h.getMinimumIdle());
            hikari.put("connectionTimeout", h.getConnectionTimeout());
            hikari.put("validationTimeout", h.getValidationTimeout());
            hikari.put("idleTimeout", h.getIdleTimeout());
            hikari.put("maxLifetime", h.getMaxLifetime());
            hikari.put("keepaliveTime", h.getKeepaliveTime());
            hikari.put("connectionInitSql", h.getConnectionInitSql());
            hikari.put("jdbcUrl", h.getJdbcUrl());
            hikari.put("username", h.getUsername());
            out.put("hikari", hikari);
        }
        Flyway f = flyway.getIfAvailable();
        FlywayProperties fp = flywayProperties.getIfAvailable();
        if (f != null && fp != null) {
            Map<String, Object> fw = new LinkedHashMap<>();
            // The properties, as bound...
            fw.put("url", fp.getUrl());
            fw.put("user", fp.getUser());
            fw.put("initSqls", fp.getInitSqls());
            // ...and what Flyway got from them: its own DataSource (not the
            // application's pool) and the init SQL.
            Configuration c = f.getConfiguration();
            DataSource fds = c.getDataSource();
            fw.put("ownDataSource", fds != null && fds != dataSource);
            if (fds instanceof AbstractDriverBasedDataSource d) {
                fw.put("dataSourceUrl", d.getUrl());
                fw.put("dataSourceUser", d.getUsername());
            } else if (fds instanceof HikariDataSource d) {
                fw.put("dataSourceUrl", d.getJdbcUrl());
                fw.put("dataSourceUser", d.getUsername());
            }
            fw.put("initSql", c.getInitSql());
            out.put("flyway", fw);
        }
        return out;
    }
}
