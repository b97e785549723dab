package dev.strata.test.binding;

import java.util.Map;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.env.EnvironmentPostProcessor;
import org.springframework.core.Ordered;
import org.springframework.core.env.ConfigurableEnvironment;
import org.springframework.core.env.MapPropertySource;

/**
 * Lets the application run with a binding that is not a PostgreSQL one
 * (Redis, Kafka): without {@code spring.datasource.url} the JDBC and Flyway
 * auto-configurations would fail start-up ("no embedded datasource"), so
 * they are excluded. Runs after the binding has been imported (config data
 * is processed first), and keeps any exclusions already set.
 */
public class DataSourceOnlyWithUrl implements EnvironmentPostProcessor, Ordered {

    static final String EXCLUDE = "spring.autoconfigure.exclude";

    static final String JDBC = String.join(",",
            "org.springframework.boot.autoconfigure.jdbc.DataSourceAutoConfiguration",
            "org.springframework.boot.autoconfigure.jdbc.DataSourceTransactionManagerAutoConfiguration",
            "org.springframework.boot.autoconfigure.jdbc.JdbcTemplateAutoConfiguration",
            "org.springframework.boot.autoconfigure.flyway.FlywayAutoConfiguration");

    @Override
    public void postProcessEnvironment(ConfigurableEnvironment env, SpringApplication application) {
        if (env.containsProperty("spring.datasource.url")) {
            return;
        }
        String existing = env.getProperty(EXCLUDE, "");
        String value = existing.isBlank() ? JDBC : existing + "," + JDBC;
        env.getPropertySources().addFirst(new MapPropertySource("strataNoDataSource", Map.of(EXCLUDE, value)));
    }

    @Override
    public int getOrder() {
        return Ordered.LOWEST_PRECEDENCE;
    }
}
