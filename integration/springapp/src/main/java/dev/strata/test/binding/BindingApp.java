package dev.strata.test.binding;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.context.ConfigurableApplicationContext;

/**
 * A stock Spring Boot application that gets all its connection settings from
 * a Strata binding, imported with
 * {@code --spring.config.import=optional:configtree:<binding dir>/}. Every
 * {@link BindingCheck} bean exercises one kind of binding; {@link CheckRunner}
 * runs them once and prints one {@code STRATA-CHECK <json>} line. The process
 * then exits 0, or non-zero when the application cannot start (Spring Boot
 * has logged why). With {@code strata.serve.port} set it keeps serving
 * {@link CheckServer} instead.
 */
@SpringBootApplication
public class BindingApp {

    public static void main(String[] args) {
        ConfigurableApplicationContext ctx;
        try {
            ctx = SpringApplication.run(BindingApp.class, args);
        } catch (Throwable e) {
            // SpringApplication has already reported the failure.
            System.exit(1);
            return;
        }
        // Serve mode (CheckServer) keeps running until the pod stops.
        if (ctx.getEnvironment().containsProperty("strata.serve.port")) {
            return;
        }
        System.exit(SpringApplication.exit(ctx));
    }
}
