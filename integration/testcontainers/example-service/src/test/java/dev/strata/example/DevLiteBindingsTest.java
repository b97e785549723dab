package dev.strata.example;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.time.Duration;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import javax.sql.DataSource;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.errors.SaslAuthenticationException;
import org.apache.kafka.common.errors.TopicAuthorizationException;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.springframework.beans.factory.annotation.Autowired;
import org.springframework.boot.test.context.SpringBootTest;
import org.springframework.core.env.Environment;
import org.springframework.data.redis.connection.RedisConnectionFactory;
import org.springframework.data.redis.connection.lettuce.LettuceConnectionFactory;
import org.springframework.data.redis.core.StringRedisTemplate;
import org.springframework.jdbc.core.JdbcTemplate;
import org.springframework.kafka.core.KafkaTemplate;

import com.zaxxer.hikari.HikariDataSource;

import dev.strata.testcontainers.DevLite;
import dev.strata.testcontainers.Pki;
import dev.strata.testcontainers.Service;
import dev.strata.testcontainers.StrataContextCustomizerFactory;
import dev.strata.testcontainers.StrataDevLite;
import io.lettuce.core.RedisClient;
import io.lettuce.core.RedisCommandExecutionException;
import io.lettuce.core.RedisConnectionException;
import io.lettuce.core.RedisURI;
import io.lettuce.core.SslOptions;
import io.lettuce.core.ClientOptions;

/**
 * The example service against Strata's dev-lite services, configured by
 * nothing but the binding directories @StrataDevLite imports: the
 * assertions the broker's binding tests make of a real instance
 * (integration/springtest, integration/redistest, integration/kafkatest).
 */
@SpringBootTest
@StrataDevLite
class DevLiteBindingsTest {
    private static final String LOGIN_RW = "b_[0-9a-f]{16}_rw";
    private static final String LOGIN_OW = "b_[0-9a-f]{16}_ow";
    /** What the tests saw of the instances' settings, for the Go test to compare with the plans. */
    private static final Map<String, String> OBSERVED = new java.util.concurrent.ConcurrentSkipListMap<>();

    @Autowired
    Environment env;
    @Autowired
    JdbcTemplate jdbc;
    @Autowired
    DataSource dataSource;
    @Autowired
    Orders orders;
    @Autowired
    Greetings greetings;
    @Autowired
    StringRedisTemplate redis;
    @Autowired
    RedisConnectionFactory redisConnections;
    @Autowired
    OrderEvents events;
    @Autowired
    KafkaTemplate<String, String> kafkaTemplate;

    private static DevLite devLite() {
        return StrataContextCustomizerFactory.Shared.get(EnumSet.allOf(Service.class));
    }

    @Test
    void theApplicationRunsAsTheReadwriteLoginOverVerifiedTls() {
        Map<String, Object> s = jdbc.queryForMap("SELECT session_user::text AS login, current_user::text AS role,"
                + " pg_has_role(current_user, 'strata_readwrite', 'MEMBER') AS rw,"
                + " pg_has_role(current_user, 'strata_owner', 'MEMBER') AS owner,"
                + " ssl.ssl, ssl.version FROM pg_stat_ssl ssl WHERE ssl.pid = pg_backend_pid()");
        assertThat((String) s.get("login")).matches(LOGIN_RW).isEqualTo(env.getProperty("spring.datasource.username"));
        assertThat(s.get("role")).isEqualTo(s.get("login"));
        assertThat(s.get("rw")).isEqualTo(true);
        assertThat(s.get("owner")).isEqualTo(false);
        assertThat(s.get("ssl")).isEqualTo(true);
        assertThat((String) s.get("version")).isIn("TLSv1.2", "TLSv1.3");

        String url = env.getProperty("spring.datasource.url");
        Path ca = devLite().bindingDirectory(Service.POSTGRESQL).resolve("ca.crt");
        assertThat(url).contains("sslmode=verify-full").contains("sslrootcert=" + ca.toString().replace("/", "%2F"));
        HikariDataSource hikari = (HikariDataSource) dataSource;
        assertThat(hikari.getJdbcUrl()).isEqualTo(url);
        // dev-lite: max_connections 50, so a pool of (50 - 10) / 10.
        assertThat(hikari.getMaximumPoolSize()).isEqualTo(4);
        assertThat(hikari.getPoolName()).isEqualTo("strata-" + ca.getParent().getFileName());
        assertThat(jdbc.queryForObject("SHOW max_connections", String.class)).isEqualTo("50");
        OBSERVED.put("postgresql.max_connections", jdbc.queryForObject("SHOW max_connections", String.class));
        OBSERVED.put("postgresql.server_version", jdbc.queryForObject("SHOW server_version", String.class));
        OBSERVED.put("postgresql.pgaudit.log", jdbc.queryForObject("SHOW pgaudit.log", String.class));

        assertThat(jdbc.queryForObject("SHOW server_version_num", Integer.class) / 10000).isEqualTo(15);
        // pg_stat_statements answers only when preloaded (with pgaudit).
        assertThat(jdbc.queryForObject("SELECT count(*) FROM pg_stat_statements", Long.class)).isPositive();
    }

    @Test
    void flywayMigratedAsTheOwnerLoginActingAsStrataOwner() {
        Map<String, Object> m = jdbc.queryForMap("SELECT session_login, acting_role FROM migration_session");
        assertThat((String) m.get("session_login")).matches(LOGIN_OW).isEqualTo(env.getProperty("spring.flyway.user"));
        assertThat(m.get("acting_role")).isEqualTo("strata_owner");
        assertThat(jdbc.queryForObject("SELECT tableowner FROM pg_tables WHERE tablename = 'orders'", String.class))
                .isEqualTo("strata_owner");
        assertThat(jdbc.queryForObject("SELECT bool_and(success) FROM flyway_schema_history", Boolean.class)).isTrue();
        assertThat(jdbc.queryForObject("SELECT count(*) FROM flyway_schema_history WHERE version = '1'", Integer.class))
                .isEqualTo(1);
    }

    @Test
    void theApplicationWritesAndReadsButCannotChangeTheSchema() {
        String body = "order-" + UUID.randomUUID();
        long id = orders.add(body);
        assertThat(orders.find(id)).contains(body);
        assertThatThrownBy(() -> jdbc.execute("CREATE TABLE not_allowed (i int)"))
                .hasRootCauseInstanceOf(SQLException.class)
                .rootCause().satisfies(e -> assertThat(((SQLException) e).getSQLState()).isEqualTo("42501"));
    }

    @Test
    void postgresRefusesPlaintextAndAnotherCa() throws Exception {
        String url = env.getProperty("spring.datasource.url");
        Properties login = new Properties();
        login.setProperty("user", env.getProperty("spring.datasource.username"));
        login.setProperty("password", env.getProperty("spring.datasource.password"));
        String plain = url.replace("sslmode=verify-full", "sslmode=disable");
        assertThatThrownBy(() -> close(DriverManager.getConnection(plain, login)))
                .isInstanceOf(SQLException.class).hasMessageContaining("no encryption");

        Path otherCa = Files.createTempFile("other-ca", ".crt");
        try {
            Files.writeString(otherCa, new Pki("another-ca").caPem());
            String foreign = url.replaceAll("sslrootcert=[^&]*", "sslrootcert=" + otherCa.toString().replace("/", "%2F"));
            assertThatThrownBy(() -> close(DriverManager.getConnection(foreign, login)))
                    .isInstanceOf(SQLException.class).hasMessageContaining("SSL");
        } finally {
            Files.delete(otherCa);
        }
        // The binding's own URL works outside the pool too.
        try (Connection c = DriverManager.getConnection(url, login)) {
            assertThat(c.isValid(5)).isTrue();
        }
    }

    @Test
    void redisOverVerifiedTlsWithThePassword() {
        greetings.put("ada", "hello ada");
        assertThat(greetings.get("ada")).isEqualTo("hello ada");

        LettuceConnectionFactory lettuce = (LettuceConnectionFactory) redisConnections;
        assertThat(lettuce.isUseSsl()).isTrue();
        assertThat(lettuce.isVerifyPeer()).isTrue();
        assertThat(lettuce.getPort()).isEqualTo(Integer.parseInt(env.getProperty("spring.data.redis.port")));
        Properties info = redis.execute((org.springframework.data.redis.core.RedisCallback<Properties>) c ->
                c.serverCommands().info("server"));
        assertThat(info.getProperty("redis_version")).startsWith("7.0.");
        List<String> maxmemory = redis.execute((org.springframework.data.redis.core.RedisCallback<List<String>>) c -> {
            Properties p = c.serverCommands().getConfig("maxmemory*");
            return List.of(p.getProperty("maxmemory"), p.getProperty("maxmemory-policy"));
        });
        OBSERVED.put("redis.maxmemory", maxmemory.get(0));
        OBSERVED.put("redis.maxmemory-policy", maxmemory.get(1));
        OBSERVED.put("redis.redis_version", info.getProperty("redis_version"));
        OBSERVED.put("redis.save", redis.execute((org.springframework.data.redis.core.RedisCallback<String>) c ->
                c.serverCommands().getConfig("save").getProperty("save")));
        for (String key : List.of("appendonly", "appendfsync")) {
            OBSERVED.put("redis." + key, redis.execute((org.springframework.data.redis.core.RedisCallback<String>) c ->
                    c.serverCommands().getConfig(key).getProperty(key)));
        }
        // dev-lite: 75% of 256Mi, allkeys-lru.
        assertThat(maxmemory).containsExactly("201326592", "allkeys-lru");
    }

    @Test
    void redisRefusesClientsWithoutThePassword() {
        Path ca = devLite().bindingDirectory(Service.REDIS).resolve("ca.crt");
        RedisURI uri = RedisURI.builder().withHost(env.getProperty("spring.data.redis.host"))
                .withPort(Integer.parseInt(env.getProperty("spring.data.redis.port")))
                .withSsl(true).withVerifyPeer(true).withTimeout(Duration.ofSeconds(10)).build();
        RedisClient client = RedisClient.create(uri);
        client.setOptions(ClientOptions.builder()
                .sslOptions(SslOptions.builder().trustManager(new File(ca.toString())).build()).build());
        try {
            // The TLS handshake against the binding's CA succeeds; the
            // server then refuses the session without the password.
            assertThatThrownBy(() -> client.connect().sync().ping())
                    .isInstanceOf(RedisConnectionException.class)
                    .hasRootCauseInstanceOf(RedisCommandExecutionException.class)
                    .rootCause().hasMessageStartingWith("NOAUTH");
        } finally {
            client.shutdown();
        }
    }

    @Test
    void kafkaOverSaslSslScram() throws Exception {
        assertThat(kafkaTemplate.getProducerFactory().getConfigurationProperties())
                .containsEntry("security.protocol", "SASL_SSL")
                .containsEntry("sasl.mechanism", "SCRAM-SHA-512");
        String topic = env.getProperty("strata.kafka.topics.events");
        assertThat(topic).isEqualTo(events.topic()).startsWith(env.getProperty("topic-prefix", ""))
                .matches("dev\\.kafka-[0-9a-f-]{36}\\.events");
        String event = "created-" + UUID.randomUUID();
        events.publish("order-1", event);
        String got;
        do {
            got = events.received().poll(60, TimeUnit.SECONDS);
        } while (got != null && !got.equals(event));
        assertThat(got).isEqualTo(event);
    }

    @Test
    void kafkaConfinesTheBindingToItsInstanceAndRefusesAWrongPassword() throws Exception {
        Map<String, Object> base = Map.of(
                "bootstrap.servers", env.getProperty("spring.kafka.bootstrap-servers"),
                "security.protocol", "SASL_SSL",
                "sasl.mechanism", "SCRAM-SHA-512",
                "ssl.truststore.type", "PEM",
                "ssl.truststore.certificates", Files.readString(devLite().bindingDirectory(Service.KAFKA).resolve("ca.crt")));
        Properties p = new Properties();
        p.putAll(base);
        p.put("sasl.jaas.config", env.getProperty("spring.kafka.properties.sasl.jaas.config"));
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        p.put("max.block.ms", "15000");
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            assertThatThrownBy(() -> producer.send(new ProducerRecord<>("another-instance.events", "x")).get(30, TimeUnit.SECONDS))
                    .isInstanceOf(ExecutionException.class).hasCauseInstanceOf(TopicAuthorizationException.class);
        }
        // The binding may describe its instance's topics: the plan's settings.
        Properties own = new Properties();
        own.putAll(base);
        own.put("sasl.jaas.config", env.getProperty("spring.kafka.properties.sasl.jaas.config"));
        String topic = env.getProperty("strata.kafka.topics.events");
        try (Admin admin = Admin.create(own)) {
            var description = admin.describeTopics(List.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS).get(topic);
            OBSERVED.put("kafka.partitions", Integer.toString(description.partitions().size()));
            OBSERVED.put("kafka.replicas", Integer.toString(description.partitions().get(0).replicas().size()));
            var resource = new org.apache.kafka.common.config.ConfigResource(
                    org.apache.kafka.common.config.ConfigResource.Type.TOPIC, topic);
            var config = admin.describeConfigs(List.of(resource)).all().get(30, TimeUnit.SECONDS).get(resource);
            for (String key : List.of("retention.ms", "max.message.bytes", "min.insync.replicas", "cleanup.policy")) {
                OBSERVED.put("kafka." + key, config.get(key).value());
            }
        }
        assertThat(OBSERVED).containsEntry("kafka.partitions", "1").containsEntry("kafka.replicas", "1");
        Properties wrong = new Properties();
        wrong.putAll(base);
        wrong.put("sasl.jaas.config", env.getProperty("spring.kafka.properties.sasl.jaas.config")
                .replaceAll("password=\"[^\"]*\"", "password=\"wrong\""));
        wrong.put("request.timeout.ms", "10000");
        wrong.put("default.api.timeout.ms", "15000");
        try (Admin admin = Admin.create(wrong)) {
            assertThatThrownBy(() -> admin.listTopics().names().get(30, TimeUnit.SECONDS))
                    .isInstanceOf(ExecutionException.class).hasCauseInstanceOf(SaslAuthenticationException.class);
        }
    }

    /** What the Go test reads: how long the services took to start and where the bindings are. */
    @AfterAll
    static void report() throws Exception {
        String file = System.getenv("STRATA_TC_REPORT");
        if (file == null || file.isBlank()) {
            return;
        }
        DevLite d = devLite();
        StringBuilder b = new StringBuilder("{\"startMillis\":").append(d.startDuration().toMillis()).append(",\"bindings\":{");
        String sep = "";
        for (Service s : Service.values()) {
            b.append(sep).append('"').append(s.name().toLowerCase()).append("\":\"").append(d.bindingDirectory(s)).append('"');
            sep = ",";
        }
        b.append("},\"observed\":{");
        sep = "";
        for (Map.Entry<String, String> e : OBSERVED.entrySet()) {
            b.append(sep).append('"').append(e.getKey()).append("\":\"").append(e.getValue().replace("\\", "\\\\").replace("\"", "\\\""))
                    .append('"');
            sep = ",";
        }
        b.append("}}\n");
        Files.writeString(Path.of(file), b.toString());
    }

    private static void close(Connection c) throws SQLException {
        if (c != null) {
            c.close();
        }
    }
}
