package dev.strata.test.binding;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

import org.springframework.boot.autoconfigure.condition.ConditionalOnProperty;
import org.springframework.cloud.stream.function.StreamBridge;
import org.springframework.core.env.Environment;
import org.springframework.kafka.core.KafkaTemplate;
import org.springframework.stereotype.Component;

/**
 * Uses a Kafka binding as an application does: sends one record with Spring
 * Kafka's {@link KafkaTemplate} (configured from {@code spring.kafka.*}) and
 * one with Spring Cloud Stream's {@link StreamBridge} (configured from
 * {@code spring.cloud.stream.kafka.binder.*}) to the instance's
 * {@code events} topic, and waits until the function binding
 * {@code strataKafkaSink-in-0} (the binding's default consumer group) has
 * received both.
 */
@Component
@ConditionalOnProperty("spring.cloud.stream.kafka.binder.brokers")
class KafkaCheck implements BindingCheck {

    /** What the function binding received, as text. */
    static final BlockingQueue<String> RECEIVED = new LinkedBlockingQueue<>();

    private final StreamBridge bridge;
    private final KafkaTemplate<Object, Object> template;
    private final Environment env;

    KafkaCheck(StreamBridge bridge, KafkaTemplate<Object, Object> template, Environment env) {
        this.bridge = bridge;
        this.template = template;
        this.env = env;
    }

    @Override
    public String name() {
        return "kafka";
    }

    @Override
    public Map<String, Object> check() throws Exception {
        String topic = env.getRequiredProperty("strata.kafka.topics.events");
        String token = UUID.randomUUID().toString();
        String viaTemplate = "template-" + token;
        String viaBridge = "bridge-" + token;
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("topic", topic);
        out.put("group", env.getProperty("spring.cloud.stream.default.group"));
        Map<String, Object> producer = template.getProducerFactory().getConfigurationProperties();
        out.put("templateSecurityProtocol", String.valueOf(producer.get("security.protocol")));
        out.put("templateSslEngineFactory", String.valueOf(producer.get("ssl.engine.factory.class")));

        template.send(topic, viaTemplate.getBytes(StandardCharsets.UTF_8)).get(60, TimeUnit.SECONDS);
        out.put("sentViaKafkaTemplate", viaTemplate);
        if (!bridge.send(topic, viaBridge)) {
            throw new IllegalStateException("StreamBridge did not send to " + topic);
        }
        out.put("sentViaStreamBridge", viaBridge);

        List<String> received = new ArrayList<>();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
        while (!(contains(received, viaTemplate) && contains(received, viaBridge))) {
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                throw new IllegalStateException("the function binding received " + received + " from " + topic
                        + " within 90s, not both " + viaTemplate + " and " + viaBridge);
            }
            String r = RECEIVED.poll(left, TimeUnit.NANOSECONDS);
            if (r != null) {
                received.add(r);
            }
        }
        out.put("received", received);
        return out;
    }

    private static boolean contains(List<String> received, String token) {
        return received.stream().anyMatch(r -> r.contains(token));
    }
}
