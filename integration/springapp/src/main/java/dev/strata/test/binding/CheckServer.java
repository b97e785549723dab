package dev.strata.test.binding;

import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Executors;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpsConfigurator;
import com.sun.net.httpserver.HttpsServer;

import org.springframework.beans.factory.annotation.Value;
import org.springframework.boot.ApplicationArguments;
import org.springframework.boot.ApplicationRunner;
import org.springframework.boot.autoconfigure.condition.ConditionalOnProperty;
import org.springframework.boot.ssl.SslBundles;
import org.springframework.stereotype.Component;

/**
 * Serve mode, for running the application as a pod (internal/platform's
 * test): with {@code strata.serve.port} set, the application keeps running
 * and answers {@code GET /check} over HTTPS (the SSL bundle
 * {@code strata-serve}) with the same report as the STRATA-CHECK line,
 * running every check again (for PostgreSQL: a row written and read as the
 * binding's login). Requests need {@code Authorization: Bearer
 * <strata.serve.token>}; {@code GET /healthz} (the readiness probe) does not.
 * The JDK's own HTTPS server, so no web framework is added to the project.
 */
@Component
@ConditionalOnProperty("strata.serve.port")
class CheckServer implements ApplicationRunner {

    static final String BUNDLE = "strata-serve";

    private final List<BindingCheck> checks;
    private final SslBundles bundles;
    private final int port;
    private final byte[] token;

    CheckServer(List<BindingCheck> checks, SslBundles bundles, @Value("${strata.serve.port}") int port,
            @Value("${strata.serve.token}") String token) {
        if (token.length() < 16) {
            throw new IllegalStateException("strata.serve.token must be at least 16 characters");
        }
        this.checks = checks;
        this.bundles = bundles;
        this.port = port;
        this.token = ("Bearer " + token).getBytes(StandardCharsets.UTF_8);
    }

    @Override
    public void run(ApplicationArguments args) throws Exception {
        HttpsServer server = HttpsServer.create(new InetSocketAddress(port), 16);
        server.setHttpsConfigurator(new HttpsConfigurator(bundles.getBundle(BUNDLE).createSslContext()));
        server.createContext("/healthz", ex -> reply(ex, 200, "ok"));
        server.createContext("/check", this::check);
        // Non-daemon threads: they keep the JVM running (BindingApp.main
        // does not exit in serve mode).
        server.setExecutor(Executors.newFixedThreadPool(2));
        server.start();
        System.out.println("STRATA-SERVE listening on " + port);
    }

    private void check(HttpExchange ex) throws IOException {
        String auth = ex.getRequestHeaders().getFirst("Authorization");
        if (auth == null || !MessageDigest.isEqual(token, auth.getBytes(StandardCharsets.UTF_8))) {
            reply(ex, 401, "{\"error\": \"unauthorized\"}");
            return;
        }
        if (!"GET".equals(ex.getRequestMethod())) {
            reply(ex, 405, "{\"error\": \"GET only\"}");
            return;
        }
        try {
            Map<String, Object> report = new LinkedHashMap<>();
            for (BindingCheck c : checks) {
                report.put(c.name(), c.check());
            }
            reply(ex, 200, Json.write(report));
        } catch (Exception e) {
            reply(ex, 500, Json.write(Map.of("error", String.valueOf(e.getMessage()))));
        }
    }

    private static void reply(HttpExchange ex, int code, String body) throws IOException {
        byte[] b = body.getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().set("Content-Type", "application/json");
        ex.sendResponseHeaders(code, b.length);
        try (OutputStream out = ex.getResponseBody()) {
            out.write(b);
        }
    }
}
