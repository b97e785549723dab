package dev.strata.testcontainers;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.EnumSet;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import org.springframework.boot.env.ConfigTreePropertySource;
import org.springframework.context.ConfigurableApplicationContext;
import org.springframework.core.env.MutablePropertySources;
import org.springframework.core.env.StandardEnvironment;
import org.springframework.test.context.ContextConfigurationAttributes;
import org.springframework.test.context.ContextCustomizer;
import org.springframework.test.context.ContextCustomizerFactory;
import org.springframework.test.context.MergedContextConfiguration;
import org.springframework.test.context.TestContextAnnotationUtils;

/**
 * Registered in META-INF/spring.factories: gives test classes annotated
 * {@link StrataDevLite} the services' binding directories as config trees.
 */
public class StrataContextCustomizerFactory implements ContextCustomizerFactory {
    @Override
    public ContextCustomizer createContextCustomizer(Class<?> testClass,
            List<ContextConfigurationAttributes> configAttributes) {
        StrataDevLite a = TestContextAnnotationUtils.findMergedAnnotation(testClass, StrataDevLite.class);
        if (a == null) {
            return null;
        }
        Set<Service> services = EnumSet.noneOf(Service.class);
        services.addAll(Arrays.asList(a.value()));
        return new Customizer(services);
    }

    /**
     * The running services, one set per combination asked for, removed when
     * the JVM exits: what {@link StrataDevLite} test classes share.
     */
    public static final class Shared {
        private Shared() {
        }

        private static final Map<Set<Service>, DevLite> RUNNING = new HashMap<>();
        private static boolean hooked;

        /** The started services of this set (started now if no test started them yet). */
        public static synchronized DevLite get(Set<Service> services) {
            DevLite d = RUNNING.get(services);
            if (d == null) {
                DevLite.Builder b = DevLite.builder().services(services.toArray(new Service[0]));
                String root = System.getProperty("strata.testcontainers.binding-root");
                if (root == null || root.isBlank()) {
                    root = System.getenv("STRATA_TC_BINDING_ROOT");
                }
                if (root != null && !root.isBlank()) {
                    b.bindingRoot(Path.of(root));
                }
                d = b.build().start();
                RUNNING.put(EnumSet.copyOf(services), d);
                if (!hooked) {
                    hooked = true;
                    Runtime.getRuntime().addShutdownHook(new Thread(Shared::closeAll, "strata-testcontainers-cleanup"));
                }
            }
            return d;
        }

        static synchronized void closeAll() {
            RUNNING.values().forEach(DevLite::close);
            RUNNING.clear();
        }
    }

    record Customizer(Set<Service> services) implements ContextCustomizer {
        @Override
        public void customizeContext(ConfigurableApplicationContext context, MergedContextConfiguration merged) {
            DevLite devLite = Shared.get(services);
            MutablePropertySources sources = context.getEnvironment().getPropertySources();
            String after = sources.contains(StandardEnvironment.SYSTEM_ENVIRONMENT_PROPERTY_SOURCE_NAME)
                    ? StandardEnvironment.SYSTEM_ENVIRONMENT_PROPERTY_SOURCE_NAME
                    : null;
            for (Service s : services) {
                Path dir = devLite.bindingDirectory(s);
                // As spring.config.import=optional:configtree:<dir>/ reads it.
                ConfigTreePropertySource tree = new ConfigTreePropertySource(
                        "Config tree 'strata-testcontainers " + s.name().toLowerCase() + " binding " + dir + "'", dir,
                        ConfigTreePropertySource.Option.AUTO_TRIM_TRAILING_NEW_LINE);
                if (after != null) {
                    sources.addAfter(after, tree);
                    after = tree.getName();
                } else {
                    sources.addLast(tree);
                }
            }
        }
    }
}
