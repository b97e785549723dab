package dev.strata.test.binding;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.springframework.boot.CommandLineRunner;
import org.springframework.stereotype.Component;

/**
 * Runs every {@link BindingCheck} and prints their reports as one line:
 * {@code STRATA-CHECK {"<check name>": {...}, ...}}.
 */
@Component
class CheckRunner implements CommandLineRunner {

    static final String PREFIX = "STRATA-CHECK ";

    private final List<BindingCheck> checks;

    CheckRunner(List<BindingCheck> checks) {
        this.checks = checks;
    }

    @Override
    public void run(String... args) throws Exception {
        if (checks.stream().noneMatch(c -> !(c instanceof SslBundleCheck))) {
            throw new IllegalStateException(
                    "no binding to check: pass --spring.config.import=optional:configtree:<binding dir>/ "
                            + "with a binding's keys (spring.datasource.url, ...)");
        }
        Map<String, Object> report = new LinkedHashMap<>();
        for (BindingCheck c : checks) {
            report.put(c.name(), c.check());
        }
        System.out.println(PREFIX + Json.write(report));
        System.out.flush();
    }
}
