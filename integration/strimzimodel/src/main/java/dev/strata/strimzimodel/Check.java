package dev.strata.strimzimodel;

import com.fasterxml.jackson.databind.BeanDescription;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.MapperFeature;
import com.fasterxml.jackson.databind.cfg.CoercionAction;
import com.fasterxml.jackson.databind.cfg.CoercionInputShape;
import com.fasterxml.jackson.databind.type.LogicalType;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.introspect.AnnotatedMember;
import com.fasterxml.jackson.databind.introspect.BeanPropertyDefinition;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLMapper;
import io.strimzi.api.kafka.model.kafka.Kafka;
import io.strimzi.api.kafka.model.kafka.KafkaClusterSpec;
import io.strimzi.api.kafka.model.mirrormaker2.KafkaMirrorMaker2;
import io.strimzi.api.kafka.model.mirrormaker2.KafkaMirrorMaker2ClusterSpec;
import io.strimzi.api.kafka.model.mirrormaker2.KafkaMirrorMaker2MirrorSpec;
import io.strimzi.api.kafka.model.nodepool.KafkaNodePool;
import io.strimzi.api.kafka.model.topic.KafkaTopic;
import io.strimzi.api.kafka.model.user.KafkaUser;
import io.strimzi.crdgenerator.annotations.DeprecatedProperty;
import io.strimzi.crdgenerator.annotations.DeprecatedType;
import io.strimzi.crdgenerator.annotations.Description;
import io.strimzi.crdgenerator.annotations.Maximum;
import io.strimzi.crdgenerator.annotations.Minimum;
import io.strimzi.crdgenerator.annotations.Pattern;
import io.strimzi.crdgenerator.annotations.RequiredInVersions;

import java.io.File;
import java.lang.reflect.AnnotatedElement;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/**
 * Checks Kafka objects against Strimzi's own API model (io.strimzi:api), as
 * the Strimzi operator reads them: each file is deserialized with Jackson
 * into the model class of its kind, failing on unknown properties, then the
 * object graph is walked for what the operator only warns about or ignores:
 * unknown properties kept aside by the model, deprecated properties and
 * types, values its schema annotations reject, and spec.kafka.config keys
 * the operator forbids. Tests only.
 *
 * Usage: java dev.strata.strimzimodel.Check FILE...; prints one line per
 * file: "STRIMZI-MODEL " + JSON {file, kind, name, ok, problems: [{path, reason}]}.
 */
public final class Check {
    static final String PREFIX = "STRIMZI-MODEL ";
    static final String VERSION = "v1";

    static final Map<String, Class<?>> KINDS = Map.of(
            "Kafka", Kafka.class,
            "KafkaNodePool", KafkaNodePool.class,
            "KafkaTopic", KafkaTopic.class,
            "KafkaUser", KafkaUser.class,
            "KafkaMirrorMaker2", KafkaMirrorMaker2.class);

    // As strict as the API server's schema: no "3" for 3 nor 3 for "3".
    // Strimzi's classes keep unknown properties in a map rather than fail
    // (walk reports them); other classes fail on them here.
    final ObjectMapper yaml = YAMLMapper.builder()
            .disable(MapperFeature.ALLOW_COERCION_OF_SCALARS)
            .withCoercionConfig(LogicalType.Textual, c -> c
                    .setCoercion(CoercionInputShape.Integer, CoercionAction.Fail)
                    .setCoercion(CoercionInputShape.Float, CoercionAction.Fail)
                    .setCoercion(CoercionInputShape.Boolean, CoercionAction.Fail))
            .enable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
            .enable(DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES)
            .enable(DeserializationFeature.FAIL_ON_NUMBERS_FOR_ENUMS)
            .enable(DeserializationFeature.FAIL_ON_READING_DUP_TREE_KEY)
            .build();
    final ObjectMapper json = new ObjectMapper();
    final List<ObjectNode> problems = new ArrayList<>();
    final IdentityHashMap<Object, Boolean> seen = new IdentityHashMap<>();

    public static void main(String[] args) throws Exception {
        for (String file : args) {
            System.out.println(PREFIX + new Check().check(new File(file)));
        }
    }

    String check(File file) throws Exception {
        ObjectNode verdict = json.createObjectNode();
        verdict.put("file", file.getName());
        JsonNode tree = yaml.readTree(file);
        String kind = tree.path("kind").asText();
        verdict.put("kind", kind);
        verdict.put("name", tree.path("metadata").path("name").asText());
        Class<?> type = KINDS.get(kind);
        String apiVersion = tree.path("apiVersion").asText();
        if (type == null) {
            problem("kind", "not a kind this check knows: " + String.join(", ", KINDS.keySet()));
        } else if (!apiVersion.equals(Kafka.RESOURCE_GROUP + "/" + VERSION)) {
            problem("apiVersion", apiVersion + " is not " + Kafka.RESOURCE_GROUP + "/" + VERSION);
        } else {
            try {
                Object model = yaml.treeToValue(tree, type);
                walk("", model);
                if (model instanceof Kafka k && k.getSpec() != null && k.getSpec().getKafka() != null) {
                    forbidden("spec.kafka.config", k.getSpec().getKafka().getConfig(),
                            KafkaClusterSpec.FORBIDDEN_PREFIXES, KafkaClusterSpec.FORBIDDEN_PREFIX_EXCEPTIONS, "KafkaClusterSpec");
                }
                // The Connect worker's (target) and the source clusters'
                // config: Strimzi sets addresses, TLS and SASL itself.
                if (model instanceof KafkaMirrorMaker2 m && m.getSpec() != null) {
                    if (m.getSpec().getTarget() != null) {
                        forbidden("spec.target.config", m.getSpec().getTarget().getConfig(),
                                KafkaMirrorMaker2ClusterSpec.FORBIDDEN_PREFIXES, KafkaMirrorMaker2ClusterSpec.FORBIDDEN_PREFIX_EXCEPTIONS, "KafkaMirrorMaker2ClusterSpec");
                    }
                    List<KafkaMirrorMaker2MirrorSpec> mirrors = m.getSpec().getMirrors();
                    for (int i = 0; mirrors != null && i < mirrors.size(); i++) {
                        if (mirrors.get(i).getSource() != null) {
                            forbidden("spec.mirrors[" + i + "].source.config", mirrors.get(i).getSource().getConfig(),
                                    KafkaMirrorMaker2ClusterSpec.FORBIDDEN_PREFIXES, KafkaMirrorMaker2ClusterSpec.FORBIDDEN_PREFIX_EXCEPTIONS, "KafkaMirrorMaker2ClusterSpec");
                        }
                    }
                }
            } catch (Exception e) {
                // Jackson's message names the property and the model class.
                problem("", "Strimzi's model rejects it: " + e.getMessage().replace('\n', ' '));
            }
        }
        verdict.put("ok", problems.isEmpty());
        verdict.putArray("problems").addAll(problems);
        return json.writeValueAsString(verdict);
    }

    void problem(String path, String reason) {
        // Strimzi's classes expose unknown properties both as a property and
        // as a @JsonAnyGetter: report each once.
        for (ObjectNode seen : problems) {
            if (seen.get("path").asText().equals(path) && seen.get("reason").asText().equals(reason)) {
                return;
            }
        }
        ObjectNode p = json.createObjectNode();
        p.put("path", path);
        p.put("reason", reason);
        problems.add(p);
    }

    /** Walks a model object's properties as Jackson sees them (JSON names). */
    void walk(String path, Object o) {
        if (o == null) {
            return;
        }
        if (o instanceof Map<?, ?> m) {
            m.forEach((k, v) -> walk(path + "." + k, v));
            return;
        }
        if (o instanceof Collection<?> c) {
            int i = 0;
            for (Object v : c) {
                walk(path + "[" + i++ + "]", v);
            }
            return;
        }
        Class<?> cls = o.getClass();
        // Only the model's own classes (Strimzi's and fabric8's Kubernetes
        // types) have properties to check; strings, numbers and enums are leaves.
        if (!cls.getName().startsWith("io.strimzi.") && !cls.getName().startsWith("io.fabric8.")) {
            return;
        }
        if (cls.isEnum() || seen.put(o, true) != null) {
            return;
        }
        DeprecatedType dt = cls.getAnnotation(DeprecatedType.class);
        if (dt != null) {
            problem(path, "type " + cls.getSimpleName() + " is deprecated (@DeprecatedType, replaced with "
                    + dt.replacedWithType().getSimpleName() + ", removal in " + dt.removalVersion() + ")");
        }
        if (cls.isAnnotationPresent(Deprecated.class)) {
            problem(path, "type " + cls.getSimpleName() + " is @Deprecated");
        }
        BeanDescription bd = json.getSerializationConfig().introspect(json.constructType(cls));
        // fabric8's Kubernetes types keep unknown properties behind a
        // @JsonAnyGetter, which is not one of the bean's properties.
        AnnotatedMember anyGetter = bd.findAnyGetter();
        if (anyGetter != null) {
            unknown(path, cls, anyGetter.getValue(o));
        }
        for (BeanPropertyDefinition prop : bd.findProperties()) {
            AnnotatedMember getter = prop.getAccessor();
            if (getter == null) {
                continue;
            }
            String p = path.isEmpty() ? prop.getName() : path + "." + prop.getName();
            Object value;
            try {
                value = getter.getValue(o);
            } catch (Exception e) {
                continue;
            }
            if (prop.getName().equals("additionalProperties") || getter.hasAnnotation(com.fasterxml.jackson.annotation.JsonAnyGetter.class)) {
                unknown(path, cls, value);
                continue;
            }
            checkProperty(p, prop, value);
            walk(p, value);
        }
    }

    /**
     * The model keeps properties it does not know in a map instead of
     * failing; the operator only warns and ignores them.
     */
    void unknown(String path, Class<?> cls, Object extra) {
        if (extra instanceof Map<?, ?> m) {
            for (Object k : m.keySet()) {
                problem(path.isEmpty() ? String.valueOf(k) : path + "." + k, "unknown property (not in the model of " + cls.getSimpleName() + ")");
            }
        }
    }

    void checkProperty(String path, BeanPropertyDefinition prop, Object value) {
        List<AnnotatedElement> els = new ArrayList<>();
        for (AnnotatedMember m : Arrays.asList(prop.getGetter(), prop.getField(), prop.getSetter())) {
            if (m != null && m.getAnnotated() != null) {
                els.add(m.getAnnotated());
            }
        }
        for (AnnotatedElement el : els) {
            RequiredInVersions req = el.getAnnotation(RequiredInVersions.class);
            if (value == null && req != null && inV1(req.value())) {
                problem(path, "required in " + VERSION + " (@RequiredInVersions " + req.value() + ") but not set");
            }
        }
        if (value == null) {
            return;
        }
        String text = json.valueToTree(value).isValueNode() ? json.valueToTree(value).asText() : null;
        for (AnnotatedElement el : els) {
            DeprecatedProperty dp = el.getAnnotation(DeprecatedProperty.class);
            if (dp != null) {
                problem(path, "deprecated property (@DeprecatedProperty" + (dp.movedToPath().isEmpty() ? "" : ", moved to " + dp.movedToPath())
                        + (dp.description().isEmpty() ? "" : ": " + dp.description()) + ")");
            }
            if (el.isAnnotationPresent(Deprecated.class)) {
                problem(path, "deprecated property (@Deprecated)");
            }
            // Strimzi documents deprecated values of a property in its
            // description, e.g. listener type "`ingress` (deprecated)".
            Description d = el.getAnnotation(Description.class);
            if (d != null && text != null && d.value().contains("`" + text + "` (deprecated)")) {
                problem(path, "deprecated value " + text + " (Strimzi's description: `" + text + "` (deprecated))");
            }
            if (value instanceof Number n) {
                for (Minimum min : el.getAnnotationsByType(Minimum.class)) {
                    if (inV1(min.apiVersions()) && n.doubleValue() < min.value()) {
                        problem(path, n + " is below the minimum " + min.value());
                    }
                }
                for (Maximum max : el.getAnnotationsByType(Maximum.class)) {
                    if (inV1(max.apiVersions()) && n.doubleValue() > max.value()) {
                        problem(path, n + " is above the maximum " + max.value());
                    }
                }
            }
            if (value instanceof String s) {
                for (Pattern pat : el.getAnnotationsByType(Pattern.class)) {
                    if (inV1(pat.apiVersions()) && !java.util.regex.Pattern.compile(pat.value()).matcher(s).find()) {
                        problem(path, "\"" + s + "\" does not match " + pat.value());
                    }
                }
            }
        }
    }

    /** Whether an annotation's apiVersions ("all", "v1", "v1+", "v1beta2+") covers v1. */
    static boolean inV1(String versions) {
        return versions.isEmpty() || versions.equals("all") || versions.equals(VERSION) || (versions.startsWith("v1") && versions.endsWith("+"));
    }

    /**
     * Config keys the Cluster Operator forbids (it drops them with a
     * warning): those starting with a forbidden prefix unless listed as an
     * exception, and per-listener options other than the allowed ones.
     */
    void forbidden(String path, Map<String, Object> config, String forbiddenPrefixes, String prefixExceptions, String spec) {
        if (config == null) {
            return;
        }
        List<String> prefixes = split(forbiddenPrefixes);
        List<String> exceptions = split(prefixExceptions);
        List<String> perListener = split(KafkaClusterSpec.ALLOWED_PER_LISTENER_CONFIGS);
        for (String key : config.keySet()) {
            String k = key.toLowerCase();
            if (exceptions.contains(k)) {
                continue;
            }
            if (k.startsWith("listener.name.")) {
                String rest = k.substring("listener.name.".length());
                String option = rest.substring(rest.indexOf('.') + 1);
                if (rest.contains(".") && perListener.contains(option)) {
                    continue;
                }
            }
            for (String prefix : prefixes) {
                if (k.startsWith(prefix)) {
                    problem(path + "." + key, "forbidden by Strimzi (" + spec + ".FORBIDDEN_PREFIXES: " + prefix + "); the operator ignores it");
                    break;
                }
            }
        }
    }

    static List<String> split(String list) {
        return Arrays.stream(list.split(",")).map(String::trim).filter(s -> !s.isEmpty()).toList();
    }
}
