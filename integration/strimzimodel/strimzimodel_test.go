//go:build linux

package strimzimodel

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/strata-dev/strata/binding"
	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/charts"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/kafka"
)

// rendered is one Kafka object and where it came from.
type rendered struct {
	source string
	obj    map[string]any
}

// planParams are representative parameters within each plan's limits:
// several topics with partitions, retention and cleanup policies.
func planParams(k *catalog.KafkaPlan) map[string]any {
	return map[string]any{
		"topics": []any{
			map[string]any{"name": "orders", "partitions": float64(k.MaxPartitions), "retention_ms": float64(k.MaxRetentionMs)},
			map[string]any{"name": "order-snapshots", "cleanup_policy": "compact"},
			map[string]any{"name": "audit", "partitions": float64(1), "retention_ms": float64(60_000), "cleanup_policy": "delete"},
		},
		"allow_topic_deletion": true,
	}
}

// renderAll is every Kafka object Strata renders: each plan's objects
// (shared-cluster topics; the ha plan's dedicated KRaft cluster and node
// pools, with and without a service mesh), every binding access level's
// KafkaUser on each plan, and the platform chart's shared cluster.
func renderAll(t *testing.T) []rendered {
	t.Helper()
	svc := catalog.KafkaService()
	cfg := kafka.DefaultConfig()
	cfg.StorageClass = "gp3-encrypted"
	// A platform with a disaster-recovery cluster, so the ha plan's
	// KafkaMirrorMaker2 and its KafkaUser are checked too.
	cfg.DisasterRecovery = []kafka.DRTarget{{
		Name: "dr-eu-west", BootstrapServers: "kafka-dr.eu-west.example.com:9093",
		Secret: "strata-kafka-dr-eu-west", Username: "mirror-{namespace}",
	}}
	p := &kafka.Provisioner{Config: cfg}
	var out []rendered
	add := func(source string, objs []*unstructured.Unstructured) {
		for _, o := range objs {
			// By group, so an object of the wrong version is checked (and
			// refused) rather than left out.
			if strings.HasPrefix(o.GetAPIVersion(), kafka.KafkaGVK.Group+"/") {
				out = append(out, rendered{source, o.Object})
			}
		}
	}
	for _, plan := range svc.Plans {
		for _, meshed := range []bool{false, true} {
			inst := provisioners.Instance{
				ID: "5f0c6d8e-3b1a-4c2e-9f4d-2a7b8c9d0e1f", Namespace: "team-orders",
				Service: &svc, Plan: svc.PlanByName(plan.Name), Params: planParams(plan.Kafka), Meshed: meshed,
			}
			inst.Name = provisioners.ResourceName("kafka-", inst.ID)
			if meshed {
				inst.Params["storage_gb"] = float64(50)
			}
			if plan.Kafka.Dedicated {
				inst.Params["disaster_recovery"] = map[string]any{"target": "dr-eu-west"}
			}
			objs, err := p.Build(inst)
			if err != nil {
				t.Fatalf("Build(%s, meshed=%v): %v", plan.Name, meshed, err)
			}
			source := fmt.Sprintf("plan %s (meshed=%v)", plan.Name, meshed)
			add(source, objs)
			target := p.TargetOf(inst)
			for _, access := range []binding.KafkaAccess{binding.KafkaRead, binding.KafkaWrite, binding.KafkaReadWrite} {
				id := fmt.Sprintf("b-%s-%s-%v", plan.Name, access, meshed)
				u := binding.KafkaUser(inst, target, id, access, kafka.TopicPrefix(inst)+"app")
				add(source+" binding "+string(access), []*unstructured.Unstructured{u})
			}
		}
	}
	for _, values := range []map[string]any{nil, {"sharedKafka": map[string]any{"storageClass": "gp3-encrypted"}}} {
		objs, err := charts.RenderPlatform(values, "strata-system")
		if err != nil {
			t.Fatalf("RenderPlatform(%v): %v", values, err)
		}
		for _, o := range objs {
			add(fmt.Sprintf("charts/strata-platform (values %v)", values), []*unstructured.Unstructured{{Object: o}})
		}
	}
	return out
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// write puts each object in its own YAML file and returns the paths and
// which object each file holds.
func write(t *testing.T, objs []rendered) ([]string, map[string]rendered) {
	t.Helper()
	dir := t.TempDir()
	var files []string
	byFile := map[string]rendered{}
	for i, r := range objs {
		u := unstructured.Unstructured{Object: r.obj}
		name := fmt.Sprintf("%03d-%s-%s.yaml", i, u.GetKind(), unsafeName.ReplaceAllString(u.GetName(), "_"))
		data, err := yaml.Marshal(r.obj)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, path)
		byFile[name] = r
	}
	return files, byFile
}

var buildLogged sync.Once

func checker(t *testing.T) *Checker {
	t.Helper()
	c, err := Build()
	if err != nil {
		t.Fatal(err)
	}
	if c.Built > 0 {
		buildLogged.Do(func() {
			t.Logf("built the Strimzi model check with %s in %s", c.JavaHome, c.Built.Round(time.Millisecond))
		})
	}
	return c
}

// Every Kafka object Strata renders is one Strimzi's own model accepts
// with nothing unknown, deprecated or forbidden in it.
func TestRenderedKafkaObjectsPassStrimziModel(t *testing.T) {
	g := NewWithT(t)
	c := checker(t)
	objs := renderAll(t)
	files, byFile := write(t, objs)
	start := time.Now()
	verdicts, err := c.Check(files)
	g.Expect(err).NotTo(HaveOccurred())
	t.Logf("checked %d objects with Strimzi's model in %s", len(files), time.Since(start).Round(time.Millisecond))

	kinds := map[string]int{}
	var failures []string
	for name, v := range verdicts {
		kinds[v.Kind]++
		if v.OK {
			continue
		}
		for _, p := range v.Problems {
			failures = append(failures, fmt.Sprintf("%s %s from %s: %s: %s", v.Kind, v.Name, byFile[name].source, p.Path, p.Reason))
		}
	}
	sort.Strings(failures)
	g.Expect(failures).To(BeEmpty(), "Strimzi's model objects to:\n%s", strings.Join(failures, "\n"))
	// Every kind is covered: the ha plan and the chart render Kafka and
	// node pools, every plan topics, every binding a user.
	g.Expect(kinds).To(HaveKeyWithValue("Kafka", BeNumerically(">=", 4)))
	g.Expect(kinds).To(HaveKeyWithValue("KafkaNodePool", BeNumerically(">=", 8)))
	g.Expect(kinds).To(HaveKeyWithValue("KafkaTopic", BeNumerically(">=", 18)))
	// 18 bindings' users and the two ha instances' mirror users.
	g.Expect(kinds).To(HaveKeyWithValue("KafkaUser", 20))
	g.Expect(kinds).To(HaveKeyWithValue("KafkaMirrorMaker2", 2))
}

// The check fails when it should: deliberately wrong objects, derived
// from rendered ones, are reported with the property and the reason.
func TestStrimziModelCheckReportsWrongObjects(t *testing.T) {
	g := NewWithT(t)
	c := checker(t)
	var kafkaObj, pool, topic, user, mm2 map[string]any
	for _, r := range renderAll(t) {
		switch r.obj["kind"] {
		case "Kafka":
			kafkaObj = r.obj
		case "KafkaNodePool":
			pool = r.obj
		case "KafkaTopic":
			topic = r.obj
		case "KafkaUser":
			user = r.obj
		case "KafkaMirrorMaker2":
			mm2 = r.obj
		}
	}
	g.Expect(kafkaObj).NotTo(BeNil())
	set := func(obj map[string]any, value any, path ...string) map[string]any {
		u := (&unstructured.Unstructured{Object: obj}).DeepCopy()
		g.Expect(unstructured.SetNestedField(u.Object, value, path...)).To(Succeed())
		return u.Object
	}
	listeners, _, _ := unstructured.NestedSlice(kafkaObj, "spec", "kafka", "listeners")
	ingress := append(listeners[:len(listeners):len(listeners)], map[string]any{
		"name": "external", "port": int64(9094), "type": "ingress", "tls": true,
	})
	cases := []struct {
		name        string
		obj         map[string]any
		path, cause string
	}{
		// spec.kafka.replicas was deprecated (node pools replace it) and is
		// gone from v1: Strimzi no longer knows it.
		{"unknown property", set(kafkaObj, int64(3), "spec", "kafka", "replicas"), "spec.kafka.replicas", "unknown property"},
		// Kubernetes types inside Strimzi's (fabric8's) are checked too.
		{"unknown Kubernetes property", set(pool, []any{"x"}, "metadata", "finalizerz"), "metadata.finalizerz", "unknown property"},
		{"unknown nested property", set(user, int64(5), "spec", "quotas", "controllerMutationRat"), "spec.quotas.controllerMutationRat", "unknown property"},
		// The one deprecation Strimzi 1.2's model carries: the ingress listener type.
		{"deprecated value", set(kafkaObj, ingress, "spec", "kafka", "listeners"), "spec.kafka.listeners[1].type", "deprecated value ingress"},
		{"forbidden config", set(kafkaObj, "/tmp/keystore", "spec", "kafka", "config", "ssl.keystore.location"), "spec.kafka.config.ssl.keystore.location", "forbidden by Strimzi"},
		{"wrong version", set(kafkaObj, "kafka.strimzi.io/v1beta2", "apiVersion"), "apiVersion", "is not kafka.strimzi.io/v1"},
		{"string for a number", set(topic, "3", "spec", "partitions"), "", "Cannot coerce String value"},
		{"number for a string", set(topic, int64(123), "spec", "topicName"), "", "Cannot coerce Integer value"},
		{"below minimum", set(topic, int64(0), "spec", "partitions"), "spec.partitions", "below the minimum 1"},
		// v1beta2's connectCluster is gone from v1 (spec.target replaces it).
		{"mirror: forbidden worker config", set(mm2, "other", "spec", "target", "config", "group.id"), "spec.target.config.group.id", "forbidden by Strimzi"},
		{"mirror: v1beta2 property", set(mm2, "dr-eu-west", "spec", "connectCluster"), "spec.connectCluster", "unknown property"},
	}
	var objs []rendered
	for _, tc := range cases {
		objs = append(objs, rendered{tc.name, tc.obj})
	}
	files, _ := write(t, objs)
	verdicts, err := c.Check(files)
	g.Expect(err).NotTo(HaveOccurred())
	for i, tc := range cases {
		v := verdicts[filepath.Base(files[i])]
		g.Expect(v.OK).To(BeFalse(), "%s: %s passed", tc.name, v.File)
		g.Expect(v.Problems).To(ContainElement(And(
			HaveField("Path", tc.path), HaveField("Reason", ContainSubstring(tc.cause)),
		)), "%s: %+v", tc.name, v.Problems)
	}
}

// The newest JDK >= 21 is found; without one the check fails saying
// what to install.
func TestFindJDK(t *testing.T) {
	g := NewWithT(t)
	home, major, err := FindJDK()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(major).To(BeNumerically(">=", MinJava))
	g.Expect(javaMajor(home)).To(Equal(major))

	// A machine with only Java 17: JAVA_HOME at it, nothing else installed.
	old := jvmDir
	t.Cleanup(func() { jvmDir = old })
	jvmDir = t.TempDir()
	java17 := filepath.Join(jvmDir, "java-17")
	g.Expect(os.MkdirAll(filepath.Join(java17, "bin"), 0o755)).To(Succeed())
	g.Expect(os.WriteFile(filepath.Join(java17, "bin", "java"), nil, 0o755)).To(Succeed())
	g.Expect(os.WriteFile(filepath.Join(java17, "release"), []byte("JAVA_VERSION=\"17.0.15\"\n"), 0o644)).To(Succeed())
	t.Setenv("JAVA_HOME", java17)
	_, _, err = FindJDK()
	g.Expect(err).To(MatchError(And(ContainSubstring("no JDK >= 21 found"), ContainSubstring("java-17 (Java 17)"),
		ContainSubstring("apt-get install temurin-21-jdk"))))
}
