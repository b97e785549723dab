package dev.strata.test.binding;

import java.nio.charset.StandardCharsets;
import java.util.function.Consumer;

import org.springframework.boot.autoconfigure.condition.ConditionalOnProperty;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.PropertySource;
import org.springframework.messaging.Message;

/**
 * The function binding of {@link KafkaCheck}: its destination is the
 * binding's events topic (strata-kafka-check.properties), its group the
 * binding's default group (spring.cloud.stream.default.group).
 */
@Configuration(proxyBeanMethods = false)
@ConditionalOnProperty("spring.cloud.stream.kafka.binder.brokers")
@PropertySource("classpath:strata-kafka-check.properties")
class KafkaCheckFunctions {

    @Bean
    Consumer<Message<byte[]>> strataKafkaSink() {
        return m -> KafkaCheck.RECEIVED.add(new String(m.getPayload(), StandardCharsets.UTF_8));
    }
}
