package dev.strata.test.binding;

import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.springframework.beans.factory.ObjectProvider;
import org.springframework.boot.ssl.SslBundle;
import org.springframework.boot.ssl.SslBundles;
import org.springframework.stereotype.Component;

/**
 * Reports the SSL bundles (spring.ssl.bundle.*) the bindings defined, with
 * the subjects of their trusted certificates: proves that the binding's
 * {@code spring.ssl.bundle.pem.<name>.truststore.certificate} (PEM text, not a
 * location) loads.
 */
@Component
class SslBundleCheck implements BindingCheck {

    private final ObjectProvider<SslBundles> bundles;

    SslBundleCheck(ObjectProvider<SslBundles> bundles) {
        this.bundles = bundles;
    }

    @Override
    public String name() {
        return "sslBundles";
    }

    @Override
    public Map<String, Object> check() throws Exception {
        Map<String, Object> out = new LinkedHashMap<>();
        SslBundles registry = bundles.getIfAvailable();
        if (registry == null) {
            return out;
        }
        for (String name : registry.getBundleNames()) {
            SslBundle bundle = registry.getBundle(name);
            Map<String, Object> b = new LinkedHashMap<>();
            KeyStore trust = bundle.getStores().getTrustStore();
            List<String> subjects = new ArrayList<>();
            if (trust != null) {
                for (String alias : Collections.list(trust.aliases())) {
                    Certificate c = trust.getCertificate(alias);
                    if (c instanceof X509Certificate x) {
                        subjects.add(x.getSubjectX500Principal().getName());
                    }
                }
            }
            b.put("trustedSubjects", subjects);
            out.put(name, b);
        }
        return out;
    }
}
