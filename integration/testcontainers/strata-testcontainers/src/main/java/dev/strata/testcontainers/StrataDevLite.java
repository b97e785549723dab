package dev.strata.testcontainers;

import java.lang.annotation.Documented;
import java.lang.annotation.ElementType;
import java.lang.annotation.Inherited;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/**
 * On a Spring Boot test class: starts Strata's dev-lite services (once per
 * JVM and set of services, shared by every test context that asks for the
 * same) and imports each one's binding directory into the test's
 * environment as a config tree, exactly as
 * SPRING_CONFIG_IMPORT=optional:configtree:/bindings/(secret)/ imports the
 * mounted binding Secret in the cluster. The service needs no other
 * configuration: DataSource, Flyway, Redis and Kafka are configured by
 * Spring Boot from the broker's keys.
 *
 * <p>The imported properties rank like config data imported from
 * spring.config.import: above application.properties, below system
 * properties, environment variables and the test's own properties.
 */
@Target(ElementType.TYPE)
@Retention(RetentionPolicy.RUNTIME)
@Documented
@Inherited
public @interface StrataDevLite {
    /** The services to start and bind (default: PostgreSQL, Redis and Kafka). */
    Service[] value() default { Service.POSTGRESQL, Service.REDIS, Service.KAFKA };
}
