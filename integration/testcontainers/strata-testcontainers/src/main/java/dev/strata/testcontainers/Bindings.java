package dev.strata.testcontainers;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Map;
import java.util.TreeMap;

/**
 * The keys of the broker's binding Secrets, rendered exactly as
 * binding/spring.go (PostgresSecret), binding/redis.go (RedisSecret) and
 * binding/kafka.go (KafkaSecret) render them, and written one file per key
 * as Kubernetes mounts a Secret. integration/testcontainers/tc_test.go
 * checks every directory the example service's test used against the Go
 * binders.
 */
public final class Bindings {
    private Bindings() {
    }

    /** A readwrite PostgreSQL binding of a dev-lite instance (no pooler, no XA). */
    record Postgres(String secretName, String mountPath, String host, int port, String database,
            String appUser, String appPassword, String migratorUser, String migratorPassword,
            String ownerRole, int poolSize, String caPem) {
        Map<String, String> keys() {
            String caFile = mountPath + "/ca.crt";
            String jdbc = jdbcUrl(host, port, database, caFile);
            String uri = "postgresql://" + userInfo(appUser) + ":" + userInfo(appPassword) + "@" + host + ":" + port
                    + "/" + database + "?sslmode=verify-full&sslrootcert=" + queryEscape(caFile);
            Map<String, String> s = new TreeMap<>();
            s.put("type", "postgresql");
            s.put("provider", "strata");
            s.put("host", host);
            s.put("port", Integer.toString(port));
            s.put("database", database);
            s.put("username", appUser);
            s.put("password", appPassword);
            s.put("sslmode", "verify-full");
            s.put("sslrootcert", caFile);
            s.put("uri", uri);
            s.put("jdbc-url", jdbc);
            s.put("ca.crt", caPem);
            s.put("access", "readwrite");
            s.put("spring.datasource.url", jdbc);
            s.put("spring.datasource.username", appUser);
            s.put("spring.datasource.password", appPassword);
            s.put("spring.datasource.hikari.maximum-pool-size", Integer.toString(poolSize));
            s.put("spring.datasource.hikari.minimum-idle", Integer.toString(Math.min(2, poolSize)));
            s.put("spring.datasource.hikari.connection-timeout", "10000");
            s.put("spring.datasource.hikari.validation-timeout", "5000");
            s.put("spring.datasource.hikari.idle-timeout", "300000");
            s.put("spring.datasource.hikari.max-lifetime", "1800000");
            s.put("spring.datasource.hikari.keepalive-time", "60000");
            s.put("spring.datasource.hikari.pool-name", "strata-" + secretName);
            s.put("spring.ssl.bundle.pem." + secretName + ".truststore.certificate", caPem);
            // dev-lite has no pooler: migrations go to the same primary.
            s.put("spring.flyway.url", jdbc);
            s.put("spring.flyway.user", migratorUser);
            s.put("spring.flyway.password", migratorPassword);
            s.put("spring.flyway.init-sqls", "SET ROLE " + ownerRole);
            s.put("spring.liquibase.url", jdbc);
            s.put("spring.liquibase.user", migratorUser);
            s.put("spring.liquibase.password", migratorPassword);
            return s;
        }
    }

    /** A Redis binding (the instance's one password, TLS port). */
    record Redis(String secretName, String host, int port, String password, String caPem) {
        Map<String, String> keys() {
            String p = Integer.toString(port);
            Map<String, String> s = new TreeMap<>();
            s.put("type", "redis");
            s.put("provider", "strata");
            s.put("host", host);
            s.put("port", p);
            s.put("password", password);
            s.put("ssl", "true");
            s.put("ca.crt", caPem);
            s.put("uri", "rediss://default:" + userInfo(password) + "@" + host + ":" + p);
            s.put("spring.data.redis.host", host);
            s.put("spring.data.redis.port", p);
            s.put("spring.data.redis.password", password);
            s.put("spring.data.redis.ssl.enabled", "true");
            s.put("spring.data.redis.ssl.bundle", secretName);
            s.put("spring.data.redis.timeout", "5s");
            s.put("spring.data.redis.connect-timeout", "5s");
            s.put("spring.ssl.bundle.pem." + secretName + ".truststore.certificate", caPem);
            return s;
        }
    }

    /** A readwrite Kafka binding (SCRAM-SHA-512 user with prefix ACLs). */
    record Kafka(String secretName, String bootstrapServers, String username, String password,
            String topicPrefix, String consumerGroup, String caPem, Map<String, String> topics) {
        Map<String, String> keys() {
            String jaas = jaasConfig(username, password);
            String binder = "spring.cloud.stream.kafka.binder.";
            Map<String, String> s = new TreeMap<>();
            s.put("type", "kafka");
            s.put("provider", "strata");
            s.put("bootstrap-servers", bootstrapServers);
            s.put("bootstrap.servers", bootstrapServers);
            s.put("security.protocol", "SASL_SSL");
            s.put("sasl.mechanism", "SCRAM-SHA-512");
            s.put("sasl.jaas.config", jaas);
            s.put("username", username);
            s.put("password", password);
            s.put("topic-prefix", topicPrefix);
            s.put("consumer-group", consumerGroup);
            s.put("access", "readwrite");
            s.put("ca.crt", caPem);
            s.put("spring.kafka.bootstrap-servers", bootstrapServers);
            s.put("spring.kafka.security.protocol", "SASL_SSL");
            s.put("spring.kafka.properties.sasl.mechanism", "SCRAM-SHA-512");
            s.put("spring.kafka.properties.sasl.jaas.config", jaas);
            s.put("spring.kafka.ssl.bundle", secretName);
            s.put("spring.kafka.consumer.group-id", consumerGroup);
            s.put("spring.ssl.bundle.pem." + secretName + ".truststore.certificate", caPem);
            s.put(binder + "brokers", bootstrapServers);
            s.put(binder + "configuration.security.protocol", "SASL_SSL");
            s.put(binder + "configuration.sasl.mechanism", "SCRAM-SHA-512");
            s.put(binder + "configuration.sasl.jaas.config", jaas);
            s.put(binder + "configuration.ssl.truststore.type", "PEM");
            s.put(binder + "configuration.ssl.truststore.certificates", caPem);
            s.put(binder + "auto-create-topics", "false");
            s.put(binder + "auto-add-partitions", "false");
            s.put("spring.cloud.stream.default.group", consumerGroup);
            topics.forEach((name, topic) -> s.put("strata.kafka.topics." + name, topic));
            return s;
        }
    }

    /** binding/kafka.go JAASConfig. */
    static String jaasConfig(String user, String password) {
        return "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"" + user
                + "\" password=\"" + password + "\";";
    }

    static String jdbcUrl(String host, int port, String database, String caFile) {
        return "jdbc:postgresql://" + host + ":" + port + "/" + database + "?sslmode=verify-full&sslrootcert="
                + queryEscape(caFile);
    }

    /** Writes each key as a file (0600) in a new directory dir (0700), content verbatim. */
    static void write(Path dir, Map<String, String> keys) {
        try {
            Files.createDirectories(dir.getParent());
            Files.createDirectory(dir, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
            for (Map.Entry<String, String> e : keys.entrySet()) {
                Path f = dir.resolve(e.getKey());
                Files.createFile(f, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")));
                Files.writeString(f, e.getValue(), StandardCharsets.UTF_8);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("writing the binding directory " + dir, e);
        }
    }

    /** Go's url.QueryEscape. */
    static String queryEscape(String s) {
        return escape(s, true);
    }

    /** Go's escaping of a URL's user name and password (url.UserPassword). */
    static String userInfo(String s) {
        return escape(s, false);
    }

    private static String escape(String s, boolean query) {
        StringBuilder b = new StringBuilder();
        for (byte x : s.getBytes(StandardCharsets.UTF_8)) {
            char c = (char) (x & 0xff);
            boolean unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                    || c == '-' || c == '_' || c == '.' || c == '~';
            if (unreserved || (!query && "$&+,;=".indexOf(c) >= 0)) {
                b.append(c);
            } else if (query && c == ' ') {
                b.append('+');
            } else {
                b.append('%').append(String.format("%02X", x & 0xff));
            }
        }
        return b.toString();
    }
}
