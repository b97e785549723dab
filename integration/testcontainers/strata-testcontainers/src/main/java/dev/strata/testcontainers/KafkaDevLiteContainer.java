package dev.strata.testcontainers;

import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.quota.ClientQuotaAlteration;
import org.apache.kafka.common.quota.ClientQuotaEntity;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;
import org.testcontainers.containers.GenericContainer;
import org.testcontainers.containers.wait.strategy.Wait;
import org.testcontainers.images.builder.Transferable;
import org.testcontainers.utility.DockerImageName;

import com.github.dockerjava.api.command.InspectContainerResponse;

/**
 * One Kafka node (KRaft, broker and controller) configured like Strata's
 * shared cluster for dev-lite topics (provisioners/kafka,
 * integration/kafkatest): clients on a SASL_SSL listener with
 * SCRAM-SHA-512 and a server certificate of the module's CA, the
 * StandardAuthorizer with no access unless an ACL allows it, and what
 * Strimzi's operators would create for an instance and a readwrite
 * binding: the instance's topics (replication factor 1, min ISR 1,
 * retention one day, max.message.bytes 1048588), the user kb-(binding id)
 * with prefix ACLs on the instance's topics, groups and transactional ids,
 * and dev-lite's quotas.
 *
 * <p>The image is Strata's locally built Kafka image (Debian's Java 17
 * runtime and the Apache Kafka jars in /opt/kafka/libs; internal/platform
 * builds it).
 */
public class KafkaDevLiteContainer extends GenericContainer<KafkaDevLiteContainer> {
    public static final int CLIENT_PORT = 9093;
    public static final String ADMIN_USER = "strata-admin";
    /** dev-lite (catalog/kafka.go). */
    public static final int PARTITIONS = 1;
    public static final short REPLICATION_FACTOR = 1;
    public static final long RETENTION_MS = 86_400_000L;
    public static final int MAX_MESSAGE_BYTES = 1_048_588;
    public static final double PRODUCER_BYTE_RATE = 1_048_576;
    public static final double CONSUMER_BYTE_RATE = 2_097_152;
    public static final double REQUEST_PERCENTAGE = 25;

    private static final String START_SCRIPT = "/tmp/strata-start.sh";

    private final Pki.ServerCert server;
    private final String adminPassword = Secrets.password();
    private final String userPassword = Secrets.password();
    private final String username;
    private final String topicPrefix;
    private final Map<String, String> topics = new LinkedHashMap<>();
    private final String caPem;

    /**
     * @param topicPrefix the instance's prefix, "(namespace).kafka-(instance id)."
     * @param topicNames  the instance's topics (without the prefix)
     */
    public KafkaDevLiteContainer(DockerImageName image, Pki.ServerCert server, String caPem, String bindingId,
            String topicPrefix, List<String> topicNames) {
        super(image);
        this.server = server;
        this.caPem = caPem;
        this.username = "kb-" + bindingId;
        this.topicPrefix = topicPrefix;
        for (String t : topicNames) {
            topics.put(t, topicPrefix + t);
        }
        withExposedPorts(CLIENT_PORT);
        // The advertised listener needs the mapped port, known only once the
        // container runs: it waits for its start script (containerIsStarting).
        withCommand("sh", "-c", "while [ ! -f " + START_SCRIPT + " ]; do sleep 0.1; done; exec sh " + START_SCRIPT);
        waitingFor(Wait.forLogMessage(".*Kafka Server started.*\\n", 1).withStartupTimeout(Duration.ofMinutes(2)));
    }

    public String username() {
        return username;
    }

    String password() {
        return userPassword;
    }

    public String topicPrefix() {
        return topicPrefix;
    }

    /** The instance's topics: name to Kafka name. */
    public Map<String, String> topics() {
        return Map.copyOf(topics);
    }

    /** host:port of the SASL_SSL listener. */
    public String bootstrapServers() {
        return getHost() + ":" + getMappedPort(CLIENT_PORT);
    }

    @Override
    protected void containerIsStarting(InspectContainerResponse info) {
        String props = String.join("\n",
                "process.roles=broker,controller",
                "node.id=1",
                "controller.quorum.voters=1@127.0.0.1:9094",
                "listeners=CLIENT://0.0.0.0:" + CLIENT_PORT + ",REPLICATION://127.0.0.1:9092,CONTROLLER://127.0.0.1:9094",
                "advertised.listeners=CLIENT://" + bootstrapServers() + ",REPLICATION://127.0.0.1:9092",
                "listener.security.protocol.map=CLIENT:SASL_SSL,REPLICATION:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=REPLICATION",
                "controller.listener.names=CONTROLLER",
                "listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-512",
                "listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;",
                "listener.name.client.ssl.keystore.type=PEM",
                "listener.name.client.ssl.keystore.location=/tmp/strata/server.pem",
                "listener.name.client.ssl.client.auth=none",
                "ssl.enabled.protocols=TLSv1.3,TLSv1.2",
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                "super.users=User:" + ADMIN_USER + ";User:ANONYMOUS",
                "allow.everyone.if.no.acl.found=false",
                "log.dirs=/tmp/strata/data",
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "auto.create.topics.enable=false",
                "group.initial.rebalance.delay.ms=0",
                "");
        copyFileToContainer(Transferable.of(props, 0644), "/tmp/strata-in/server.properties");
        copyFileToContainer(Transferable.of(server.keyStorePem(), 0644), "/tmp/strata-in/server.pem");
        // The SCRAM credentials go into the metadata log at format time.
        String script = String.join("\n",
                "set -euf", // no globbing: the class path's * is Java's
                "umask 077",
                "mkdir -p /tmp/strata",
                "cp /tmp/strata-in/server.properties /tmp/strata-in/server.pem /tmp/strata/",
                "JAVA='java -Xmx512m -Xms128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true"
                        + " -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties -cp /opt/kafka/libs/*'",
                "$JAVA kafka.tools.StorageTool format --config /tmp/strata/server.properties --cluster-id "
                        + clusterId() + " --add-scram 'SCRAM-SHA-512=[name=" + ADMIN_USER + ",password=" + adminPassword
                        + "]' --add-scram 'SCRAM-SHA-512=[name=" + username + ",password=" + userPassword
                        + "]' >/dev/null",
                "exec $JAVA kafka.Kafka /tmp/strata/server.properties",
                "");
        // Files copied in belong to root: readable, so the image's user can run it.
        copyFileToContainer(Transferable.of(script, 0644), START_SCRIPT);
    }

    @Override
    protected void containerIsStarted(InspectContainerResponse info) {
        try (Admin admin = Admin.create(adminConfig())) {
            List<NewTopic> newTopics = new ArrayList<>();
            for (String topic : topics.values()) {
                newTopics.add(new NewTopic(topic, PARTITIONS, REPLICATION_FACTOR).configs(Map.of(
                        "min.insync.replicas", "1",
                        "retention.ms", Long.toString(RETENTION_MS),
                        "cleanup.policy", "delete",
                        "max.message.bytes", Integer.toString(MAX_MESSAGE_BYTES))));
            }
            admin.createTopics(newTopics).all().get(60, TimeUnit.SECONDS);
            admin.createAcls(acls()).all().get(60, TimeUnit.SECONDS);
            ClientQuotaEntity user = new ClientQuotaEntity(Map.of(ClientQuotaEntity.USER, username));
            admin.alterClientQuotas(List.of(new ClientQuotaAlteration(user, List.of(
                    new ClientQuotaAlteration.Op("producer_byte_rate", PRODUCER_BYTE_RATE),
                    new ClientQuotaAlteration.Op("consumer_byte_rate", CONSUMER_BYTE_RATE),
                    new ClientQuotaAlteration.Op("request_percentage", REQUEST_PERCENTAGE)))))
                    .all().get(60, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("setting up the Kafka instance", e);
        } catch (ExecutionException | TimeoutException e) {
            throw new IllegalStateException("setting up the Kafka instance (topics, ACLs, quotas): " + e.getMessage(), e);
        }
    }

    /** binding/kafka.go KafkaACLs for readwrite: prefix rules on the instance's prefix. */
    private List<AclBinding> acls() {
        List<AclBinding> acls = new ArrayList<>();
        Map<ResourceType, List<AclOperation>> rules = new LinkedHashMap<>();
        rules.put(ResourceType.TOPIC, List.of(AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE,
                AclOperation.DESCRIBE_CONFIGS));
        rules.put(ResourceType.GROUP, List.of(AclOperation.READ, AclOperation.DESCRIBE));
        rules.put(ResourceType.TRANSACTIONAL_ID, List.of(AclOperation.WRITE, AclOperation.DESCRIBE));
        rules.forEach((type, ops) -> {
            for (AclOperation op : ops) {
                acls.add(new AclBinding(new ResourcePattern(type, topicPrefix, PatternType.PREFIXED),
                        new AccessControlEntry("User:" + username, "*", op, AclPermissionType.ALLOW)));
            }
        });
        return acls;
    }

    /** An admin client's configuration (the super user, as Strimzi's operators log in). */
    Properties adminConfig() {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers());
        p.put(AdminClientConfig.SECURITY_PROTOCOL_CONFIG, "SASL_SSL");
        p.put("sasl.mechanism", "SCRAM-SHA-512");
        p.put("sasl.jaas.config", Bindings.jaasConfig(ADMIN_USER, adminPassword));
        p.put("ssl.truststore.type", "PEM");
        p.put("ssl.truststore.certificates", caPem);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "20000");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "60000");
        return p;
    }

    /** A random Kafka cluster id (16 bytes, URL-safe base64) that does not start with '-'. */
    private static String clusterId() {
        while (true) {
            byte[] b = new byte[16];
            new java.security.SecureRandom().nextBytes(b);
            String id = java.util.Base64.getUrlEncoder().withoutPadding().encodeToString(b);
            if (id.charAt(0) != '-') {
                return id;
            }
        }
    }
}
