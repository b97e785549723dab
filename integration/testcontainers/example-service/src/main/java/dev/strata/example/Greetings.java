package dev.strata.example;

import java.time.Duration;

import org.springframework.data.redis.core.StringRedisTemplate;
import org.springframework.stereotype.Component;

/** A cache in Redis. */
@Component
public class Greetings {
    private final StringRedisTemplate redis;

    public Greetings(StringRedisTemplate redis) {
        this.redis = redis;
    }

    public void put(String name, String greeting) {
        redis.opsForValue().set("greeting:" + name, greeting, Duration.ofMinutes(5));
    }

    public String get(String name) {
        return redis.opsForValue().get("greeting:" + name);
    }
}
