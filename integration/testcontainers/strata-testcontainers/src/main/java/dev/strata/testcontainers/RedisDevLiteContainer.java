package dev.strata.testcontainers;

import java.time.Duration;

import org.testcontainers.containers.GenericContainer;
import org.testcontainers.containers.wait.strategy.Wait;
import org.testcontainers.images.builder.Transferable;
import org.testcontainers.utility.DockerImageName;

/**
 * Redis configured like a dev-lite instance (provisioners/redis RedisArgs,
 * catalog/redis.go): clients on the TLS port 6380 only (TLSv1.2 and 1.3,
 * a server certificate of the module's CA, no client certificates), the
 * instance's one password (AUTH as "default"), maxmemory 75% of dev-lite's
 * 256Mi with allkeys-lru, the plan's RDB save points and an append-only
 * file flushed by the OS (appendfsync no). The plaintext port the redis-operator keeps for itself and the
 * Sentinels is closed here (port 0): no client of a binding may use it.
 *
 * <p>The image is Strata's locally built Redis image (Debian's
 * redis-server 7.0 with TLS; internal/platform builds it), user 1000.
 */
public class RedisDevLiteContainer extends GenericContainer<RedisDevLiteContainer> {
    public static final int TLS_PORT = 6380;
    /** 75% (provisioners/redis MaxmemoryPercent) of dev-lite's 256Mi. */
    public static final long MAXMEMORY_BYTES = 256L * 1024 * 1024 * 75 / 100;
    public static final String MAXMEMORY_POLICY = "allkeys-lru";
    public static final String SAVE = "3600 1 300 100 60 10000";
    /** dev-lite's append-only file, flushed by the OS. */
    public static final String APPENDFSYNC = "no";

    private final String password = Secrets.password();

    public RedisDevLiteContainer(DockerImageName image, Pki.ServerCert server, String caPem) {
        super(image);
        withExposedPorts(TLS_PORT);
        withCopyToContainer(Transferable.of(server.certificatePem(), 0644), "/strata/tls/tls.crt");
        withCopyToContainer(Transferable.of(server.privateKeyPem(), 0644), "/strata/tls/tls.key");
        withCopyToContainer(Transferable.of(caPem, 0644), "/strata/tls/ca.crt");
        // The password is in a file, not on the command line.
        withCopyToContainer(Transferable.of(config(), 0644), "/strata/redis.conf.in");
        withCreateContainerCmdModifier(cmd -> cmd.withUser("1000:1000"));
        withCommand("sh", "-c", String.join(" && ",
                "umask 077",
                "mkdir -p /tmp/strata",
                "cp /strata/tls/tls.crt /strata/tls/tls.key /strata/tls/ca.crt /strata/redis.conf.in /tmp/strata/",
                "exec redis-server /tmp/strata/redis.conf.in"));
        waitingFor(Wait.forLogMessage(".*Ready to accept connections.*\\n", 1)
                .withStartupTimeout(Duration.ofMinutes(1)));
    }

    String password() {
        return password;
    }

    private String config() {
        return String.join("\n",
                "protected-mode no",
                "port 0",
                "tls-port " + TLS_PORT,
                "tls-cert-file /tmp/strata/tls.crt",
                "tls-key-file /tmp/strata/tls.key",
                "tls-ca-cert-file /tmp/strata/ca.crt",
                "tls-auth-clients no",
                "tls-protocols \"TLSv1.2 TLSv1.3\"",
                "tls-prefer-server-ciphers yes",
                "requirepass " + password,
                "maxmemory " + MAXMEMORY_BYTES,
                "maxmemory-policy " + MAXMEMORY_POLICY,
                "save \"" + SAVE + "\"",
                "appendonly yes",
                "appendfsync " + APPENDFSYNC,
                "aof-use-rdb-preamble yes",
                "dir /data",
                "");
    }
}
