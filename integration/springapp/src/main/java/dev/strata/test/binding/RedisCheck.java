package dev.strata.test.binding;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;

import org.springframework.boot.autoconfigure.condition.ConditionalOnProperty;
import org.springframework.data.redis.connection.RedisConnectionFactory;
import org.springframework.data.redis.connection.lettuce.LettuceClientConfiguration;
import org.springframework.data.redis.connection.lettuce.LettuceConnectionFactory;
import org.springframework.data.redis.core.RedisCallback;
import org.springframework.data.redis.core.StringRedisTemplate;
import org.springframework.stereotype.Component;

/**
 * Uses a Redis binding as an application does: writes and reads a key
 * through Spring Data Redis (Lettuce), and reports how Spring Boot
 * configured the client from the binding (address, TLS, peer verification,
 * Sentinel or not) and the server's version.
 */
@Component
@ConditionalOnProperty("spring.data.redis.host")
class RedisCheck implements BindingCheck {

    private final StringRedisTemplate redis;
    private final RedisConnectionFactory factory;

    RedisCheck(StringRedisTemplate redis, RedisConnectionFactory factory) {
        this.redis = redis;
        this.factory = factory;
    }

    @Override
    public String name() {
        return "redis";
    }

    @Override
    public Map<String, Object> check() {
        Map<String, Object> out = new LinkedHashMap<>();
        String key = "strata:check:" + UUID.randomUUID();
        String value = "strata-" + UUID.randomUUID();
        redis.opsForValue().set(key, value);
        out.put("wrote", value);
        out.put("read", redis.opsForValue().get(key));
        redis.delete(key);
        Properties info = redis.execute((RedisCallback<Properties>) c -> c.serverCommands().info("server"));
        out.put("serverVersion", info == null ? null : info.getProperty("redis_version"));
        if (factory instanceof LettuceConnectionFactory lettuce) {
            LettuceClientConfiguration cc = lettuce.getClientConfiguration();
            out.put("client", "lettuce");
            out.put("host", lettuce.getHostName());
            out.put("port", lettuce.getPort());
            out.put("ssl", cc.isUseSsl());
            out.put("verifyPeer", cc.isVerifyPeer());
            out.put("sentinel", lettuce.getSentinelConfiguration() != null);
        }
        return out;
    }
}
