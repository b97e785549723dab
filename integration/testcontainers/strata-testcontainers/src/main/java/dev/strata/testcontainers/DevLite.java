package dev.strata.testcontainers;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.attribute.BasicFileAttributes;
import java.time.Duration;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.EnumSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;

import org.testcontainers.DockerClientFactory;
import org.testcontainers.containers.GenericContainer;
import org.testcontainers.lifecycle.Startables;
import org.testcontainers.utility.DockerImageName;

/**
 * Strata's dev-lite services on a local Docker daemon: PostgreSQL, Redis
 * and Kafka configured like the dev-lite plans, each with a binding
 * directory that holds exactly the keys of the broker's binding Secret
 * for it (docs/bindings.md), so that a Spring Boot service imports them
 * as config trees, as it does in the cluster.
 *
 * <pre>
 * try (DevLite devLite = DevLite.builder().build().start()) {
 *     Path pg = devLite.bindingDirectory(Service.POSTGRESQL);
 *     // spring.config.import=optional:configtree:pg/
 * }
 * </pre>
 *
 * Spring Boot tests use {@link StrataDevLite} instead. Testcontainers' Ryuk
 * is not needed: {@link #close()} removes the containers (and a JVM
 * shutdown hook does for {@link StrataDevLite}).
 *
 * <p>No image is pulled (Strata's images are built locally, there is no
 * registry): the images must be in the daemon. Their names come from the
 * builder, else the system properties strata.testcontainers.(service).image,
 * else the environment variables STRATA_TC_(SERVICE)_IMAGE, else
 * {@link #DEFAULT_POSTGRESQL_IMAGE}, {@link #DEFAULT_REDIS_IMAGE} and
 * {@link #DEFAULT_KAFKA_IMAGE}, the names `strata-platform dev-images`
 * gives them.
 */
public final class DevLite implements AutoCloseable {
    public static final String DEFAULT_POSTGRESQL_IMAGE = "strata/postgresql:15";
    public static final String DEFAULT_REDIS_IMAGE = "strata/redis:7.0";
    public static final String DEFAULT_KAFKA_IMAGE = "strata/kafka:4.3";
    /** How to get the images, in every error about them. */
    public static final String BUILD_HINT = "build and load Strata's images with `go run ./internal/platform/cmd/strata-platform dev-images`"
            + " as root in a Strata checkout (docs/spring-boot.md, \"Local development\")";
    /** How to get a Docker daemon. */
    public static final String DOCKER_HINT = "install Docker (Debian: apt-get install docker.io) and start dockerd, or point"
            + " DOCKER_HOST at a running one (docs/spring-boot.md, \"Local development\")";

    private final Builder cfg;
    private final Map<Service, Path> bindings = new EnumMap<>(Service.class);
    private final List<GenericContainer<?>> containers = new ArrayList<>();
    private PostgresDevLiteContainer postgres;
    private RedisDevLiteContainer redis;
    private KafkaDevLiteContainer kafka;
    private Path root;
    private boolean deleteRoot;
    private Duration startDuration;

    private DevLite(Builder cfg) {
        this.cfg = cfg;
    }

    public static Builder builder() {
        return new Builder();
    }

    /** Starts the services (in parallel) and writes their binding directories. */
    public synchronized DevLite start() {
        if (startDuration != null) {
            return this;
        }
        long t0 = System.nanoTime();
        if (!DockerClientFactory.instance().isDockerAvailable()) {
            throw new IllegalStateException("strata-testcontainers: no Docker daemon is reachable: " + DOCKER_HINT);
        }
        Pki pki = new Pki("strata-testcontainers-ca");
        String host = DockerClientFactory.instance().dockerHostIpAddress();
        Set<String> names = new LinkedHashSet<>(List.of("localhost", "127.0.0.1", host));
        Pki.ServerCert cert = pki.issueServer("strata-dev-lite", List.copyOf(names));
        String ca = pki.caPem();
        Map<Service, String> ids = new EnumMap<>(Service.class);
        for (Service s : cfg.services) {
            ids.put(s, UUID.randomUUID().toString());
        }
        if (cfg.services.contains(Service.POSTGRESQL)) {
            postgres = new PostgresDevLiteContainer(image(Service.POSTGRESQL), cert, ca, cfg.database,
                    ids.get(Service.POSTGRESQL));
            containers.add(postgres);
        }
        if (cfg.services.contains(Service.REDIS)) {
            redis = new RedisDevLiteContainer(image(Service.REDIS), cert, ca);
            containers.add(redis);
        }
        if (cfg.services.contains(Service.KAFKA)) {
            String prefix = cfg.namespace + ".kafka-" + UUID.randomUUID() + ".";
            kafka = new KafkaDevLiteContainer(image(Service.KAFKA), cert, ca, ids.get(Service.KAFKA), prefix,
                    cfg.kafkaTopics);
            containers.add(kafka);
        }
        for (GenericContainer<?> c : containers) {
            c.withImagePullPolicy(name -> false);
        }
        try {
            Startables.deepStart(containers).join();
            root = cfg.bindingRoot;
            deleteRoot = root == null;
            root = root != null ? Files.createDirectories(root) : Files.createTempDirectory("strata-bindings-");
            if (postgres != null) {
                String secret = "binding-" + ids.get(Service.POSTGRESQL);
                Path dir = root.resolve(secret).toAbsolutePath();
                Bindings.write(dir, new Bindings.Postgres(secret, dir.toString(), postgres.getHost(),
                        postgres.getMappedPort(PostgresDevLiteContainer.PORT), postgres.database(), postgres.appUser(),
                        postgres.appPassword(), postgres.migratorUser(), postgres.migratorPassword(),
                        PostgresDevLiteContainer.OWNER_ROLE, poolSize(), ca).keys());
                bindings.put(Service.POSTGRESQL, dir);
            }
            if (redis != null) {
                String secret = "binding-" + ids.get(Service.REDIS);
                Path dir = root.resolve(secret).toAbsolutePath();
                Bindings.write(dir, new Bindings.Redis(secret, redis.getHost(),
                        redis.getMappedPort(RedisDevLiteContainer.TLS_PORT), redis.password(), ca).keys());
                bindings.put(Service.REDIS, dir);
            }
            if (kafka != null) {
                String secret = "binding-" + ids.get(Service.KAFKA);
                Path dir = root.resolve(secret).toAbsolutePath();
                Bindings.write(dir, new Bindings.Kafka(secret, kafka.bootstrapServers(), kafka.username(),
                        kafka.password(), kafka.topicPrefix(), kafka.topicPrefix() + cfg.consumerGroup, ca,
                        kafka.topics()).keys());
                bindings.put(Service.KAFKA, dir);
            }
        } catch (RuntimeException | IOException e) {
            close();
            throw e instanceof IOException io ? new UncheckedIOException(io) : (RuntimeException) e;
        }
        startDuration = Duration.ofNanos(System.nanoTime() - t0);
        return this;
    }

    /**
     * dev-lite's HikariCP pool (binding/spring.go PoolSize): a tenth of
     * max_connections less ten, at least 2; no pooler.
     */
    static int poolSize() {
        return Math.max(2, (PostgresDevLiteContainer.MAX_CONNECTIONS - 10) / 10);
    }

    private DockerImageName image(Service s) {
        String name = cfg.images.get(s);
        if (name == null) {
            String key = s.name().toLowerCase();
            name = System.getProperty("strata.testcontainers." + key + ".image");
            if (name == null || name.isBlank()) {
                name = System.getenv("STRATA_TC_" + s.name() + "_IMAGE");
            }
            if (name == null || name.isBlank()) {
                name = switch (s) {
                    case POSTGRESQL -> DEFAULT_POSTGRESQL_IMAGE;
                    case REDIS -> DEFAULT_REDIS_IMAGE;
                    case KAFKA -> DEFAULT_KAFKA_IMAGE;
                };
            }
        }
        try {
            DockerClientFactory.instance().client().inspectImageCmd(name).exec();
        } catch (com.github.dockerjava.api.exception.NotFoundException e) {
            throw new IllegalStateException("strata-testcontainers: the " + s.name().toLowerCase() + " image " + name
                    + " is not in the Docker daemon (there is no registry to pull it from): " + BUILD_HINT);
        }
        return DockerImageName.parse(name);
    }

    /** The binding directory of a service (one file per key of its binding Secret). */
    public Path bindingDirectory(Service s) {
        Path p = bindings.get(s);
        if (p == null) {
            throw new IllegalStateException(s + " is not started (services: " + cfg.services + ")");
        }
        return p;
    }

    public Map<Service, Path> bindingDirectories() {
        return Map.copyOf(bindings);
    }

    /** How long {@link #start()} took. */
    public Duration startDuration() {
        return startDuration;
    }

    public PostgresDevLiteContainer postgres() {
        return postgres;
    }

    public RedisDevLiteContainer redis() {
        return redis;
    }

    public KafkaDevLiteContainer kafka() {
        return kafka;
    }

    /** Removes the containers, and the binding directories unless the builder named where they go. */
    @Override
    public synchronized void close() {
        for (GenericContainer<?> c : containers) {
            try {
                c.stop();
            } catch (RuntimeException e) {
                System.err.println("strata-testcontainers: removing " + c.getContainerName() + ": " + e);
            }
        }
        containers.clear();
        if (deleteRoot && root != null) {
            deleteTree(root);
            root = null;
        }
    }

    private static void deleteTree(Path p) {
        try {
            Files.walkFileTree(p, new SimpleFileVisitor<>() {
                @Override
                public FileVisitResult visitFile(Path f, BasicFileAttributes a) throws IOException {
                    Files.delete(f);
                    return FileVisitResult.CONTINUE;
                }

                @Override
                public FileVisitResult postVisitDirectory(Path d, IOException e) throws IOException {
                    Files.delete(d);
                    return FileVisitResult.CONTINUE;
                }
            });
        } catch (IOException e) {
            System.err.println("strata-testcontainers: deleting " + p + ": " + e);
        }
    }

    /** What to start and how. */
    public static final class Builder {
        private final Set<Service> services = EnumSet.allOf(Service.class);
        private final Map<Service, String> images = new EnumMap<>(Service.class);
        private String database = "app";
        private List<String> kafkaTopics = List.of("events");
        private String consumerGroup = "app";
        private String namespace = "dev";
        private Path bindingRoot;

        /** Only these services (default: all three). */
        public Builder services(Service... s) {
            services.clear();
            services.addAll(List.of(s));
            return this;
        }

        public Builder image(Service s, String image) {
            images.put(s, image);
            return this;
        }

        /** The PostgreSQL database (default "app", dev-lite's default). */
        public Builder database(String name) {
            database = name;
            return this;
        }

        /** The Kafka instance's topics (default ["events"], dev-lite's default). */
        public Builder kafkaTopics(String... topics) {
            kafkaTopics = List.of(topics);
            return this;
        }

        /** The binding's consumer group after the prefix (default "app"). */
        public Builder consumerGroup(String group) {
            consumerGroup = group;
            return this;
        }

        /** The tenant namespace in the Kafka topic prefix (default "dev"). */
        public Builder namespace(String ns) {
            namespace = ns;
            return this;
        }

        /** Where the binding directories go; they are then kept after close (default: a temporary directory). */
        public Builder bindingRoot(Path dir) {
            bindingRoot = dir;
            return this;
        }

        public DevLite build() {
            return new DevLite(this);
        }
    }
}
