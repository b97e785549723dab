package dev.strata.example;

import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;

import org.springframework.beans.factory.annotation.Value;
import org.springframework.kafka.annotation.KafkaListener;
import org.springframework.kafka.core.KafkaTemplate;
import org.springframework.stereotype.Component;

/** Order events on the Kafka instance's events topic, named by the binding. */
@Component
public class OrderEvents {
    private final KafkaTemplate<String, String> template;
    private final String topic;
    private final BlockingQueue<String> received = new LinkedBlockingQueue<>();

    public OrderEvents(KafkaTemplate<String, String> template, @Value("${strata.kafka.topics.events}") String topic) {
        this.template = template;
        this.topic = topic;
    }

    public void publish(String key, String event) throws Exception {
        template.send(topic, key, event).get();
    }

    @KafkaListener(topics = "${strata.kafka.topics.events}")
    void onEvent(String event) {
        received.add(event);
    }

    public BlockingQueue<String> received() {
        return received;
    }

    public String topic() {
        return topic;
    }
}
