package kafka

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/provisioners"
)

var (
	// Kubernetes object names of custom resources: DNS subdomains.
	dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	// Kafka topic names: legal characters, at most 249.
	kafkaTopicName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)
)

func TestTopicsFollowThePlan(t *testing.T) {
	for _, plan := range planNames {
		t.Run(plan, func(t *testing.T) {
			g := NewWithT(t)
			inst := testInstance(t, plan, topicsParam("orders", "audit"))
			p := &Provisioner{Config: baseConfig()}
			target := p.TargetOf(inst)
			topics := byKind(build(t, baseConfig(), inst), "KafkaTopic")
			g.Expect(topics).To(HaveLen(2))
			k := inst.Plan.Kafka
			for _, o := range topics {
				g.Expect(o.GetAPIVersion()).To(Equal("kafka.strimzi.io/v1"))
				g.Expect(o.GetNamespace()).To(Equal(target.Namespace))
				g.Expect(o.GetLabels()).To(HaveKeyWithValue(LabelCluster, target.Cluster))
				g.Expect(o.GetLabels()).To(HaveKeyWithValue(provisioners.LabelInstanceID, testInstanceID))
				g.Expect(o.GetLabels()).To(HaveKeyWithValue(provisioners.LabelTenant, testNamespace))
				name := o.GetName()
				g.Expect(name).To(HavePrefix(TopicPrefix(inst)))
				g.Expect(name).To(MatchRegexp(dnsSubdomain.String()))
				g.Expect(len(name)).To(BeNumerically("<=", 253))
				topicName, _, _ := unstructured.NestedString(o.Object, "spec", "topicName")
				g.Expect(topicName).To(Equal(name))
				g.Expect(topicName).To(MatchRegexp(kafkaTopicName.String()))
				replicas, _, _ := unstructured.NestedInt64(o.Object, "spec", "replicas")
				g.Expect(replicas).To(BeEquivalentTo(k.ReplicationFactor))
				minISR, _, _ := unstructured.NestedString(o.Object, "spec", "config", "min.insync.replicas")
				g.Expect(minISR).To(Equal(itoa(k.MinInSyncReplicas)))
				parts, _, _ := unstructured.NestedInt64(o.Object, "spec", "partitions")
				g.Expect(parts).To(BeEquivalentTo(k.DefaultPartitions))
			}
			if k.Dedicated {
				g.Expect(target.Namespace).To(Equal(testNamespace))
			} else {
				g.Expect(target.Namespace).To(Equal("kafka"))
				g.Expect(target.Cluster).To(Equal("strata-shared"))
				g.Expect(byKind(build(t, baseConfig(), inst), "Kafka")).To(BeEmpty())
			}
		})
	}
}

func TestDefaultTopic(t *testing.T) {
	g := NewWithT(t)
	inst := testInstance(t, "dev-lite", nil)
	topic := one(t, build(t, DefaultConfig(), inst), "KafkaTopic")
	g.Expect(topic.GetName()).To(Equal(TopicPrefix(inst) + "events"))
}

// No instance's topics, groups or transactional ids can fall under another
// instance's prefix, even with names chosen to collide.
func TestPrefixesAreCollisionFree(t *testing.T) {
	g := NewWithT(t)
	var insts []provisioners.Instance
	for _, ns := range []string{"team-a", "team-a-b", "team", "a"} {
		for _, id := range []string{uuidFor(1), uuidFor(12), uuidFor(123), "x", "x-y"} {
			insts = append(insts, instanceWithID(t, "standard", id, ns, nil))
		}
	}
	for i, a := range insts {
		for j, b := range insts {
			if i == j {
				continue
			}
			g.Expect(strings.HasPrefix(TopicPrefix(b), TopicPrefix(a))).To(BeFalse(), "%q is under %q", TopicPrefix(b), TopicPrefix(a))
		}
	}
	// Every object name in the shared namespace is unique across instances.
	seen := map[string]string{}
	for _, inst := range insts {
		for _, o := range build(t, baseConfig(), inst) {
			key := o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
			g.Expect(seen).NotTo(HaveKey(key))
			seen[key] = inst.ID
		}
	}
}

func TestDedicatedCluster(t *testing.T) {
	g := NewWithT(t)
	inst := testInstance(t, "ha", nil)
	objs := build(t, baseConfig(), inst)
	n := NamesOf(inst)
	k := one(t, objs, "Kafka")
	g.Expect(k.GetName()).To(Equal(n.Cluster))
	g.Expect(k.GetNamespace()).To(Equal(testNamespace))
	g.Expect(k.Object["spec"]).NotTo(HaveKey("zookeeper"))
	spec := k.Object["spec"].(map[string]any)["kafka"].(map[string]any)
	g.Expect(spec).NotTo(HaveKey("replicas"), "KRaft node pools own the replicas")
	g.Expect(spec["authorization"]).To(Equal(map[string]any{"type": "simple"}))
	cfg := spec["config"].(map[string]any)
	g.Expect(cfg).To(HaveKeyWithValue("default.replication.factor", int64(3)))
	g.Expect(cfg).To(HaveKeyWithValue("min.insync.replicas", int64(2)))
	g.Expect(cfg).To(HaveKeyWithValue("offsets.topic.replication.factor", int64(3)))
	g.Expect(cfg).To(HaveKeyWithValue("transaction.state.log.replication.factor", int64(3)))
	g.Expect(cfg).To(HaveKeyWithValue("transaction.state.log.min.isr", int64(2)))
	g.Expect(cfg).To(HaveKeyWithValue("auto.create.topics.enable", false))
	listeners := spec["listeners"].([]any)
	g.Expect(listeners).To(HaveLen(1), "no plaintext listener")
	l := listeners[0].(map[string]any)
	g.Expect(l).To(HaveKeyWithValue("tls", true))
	g.Expect(l).To(HaveKeyWithValue("port", int64(ListenerPort)))
	g.Expect(l["authentication"]).To(Equal(map[string]any{"type": "scram-sha-512"}))
	mc := spec["metricsConfig"].(map[string]any)
	g.Expect(mc["type"]).To(Equal("jmxPrometheusExporter"))
	cm := one(t, objs, "ConfigMap")
	g.Expect(cm.GetName()).To(Equal(n.Metrics))
	g.Expect(cm.Object["data"]).To(HaveKey(metricsKey))
	g.Expect(k.Object["spec"]).To(HaveKey("kafkaExporter"))

	pools := byKind(objs, "KafkaNodePool")
	g.Expect(pools).To(HaveLen(2))
	roles := map[string]int64{}
	for _, p := range pools {
		g.Expect(p.GetLabels()).To(HaveKeyWithValue(LabelCluster, n.Cluster))
		r, _, _ := unstructured.NestedStringSlice(p.Object, "spec", "roles")
		g.Expect(r).To(HaveLen(1), "dedicated roles")
		reps, _, _ := unstructured.NestedInt64(p.Object, "spec", "replicas")
		roles[r[0]] = reps
		vols, _, _ := unstructured.NestedSlice(p.Object, "spec", "storage", "volumes")
		g.Expect(vols[0]).To(HaveKeyWithValue("kraftMetadata", "shared"))
		g.Expect(vols[0]).To(HaveKeyWithValue("class", "gp3-encrypted"))
		// Deleting the Kafka or a pool must not delete the data.
		g.Expect(vols[0]).To(HaveKeyWithValue("deleteClaim", false))
		claimLabels, _, _ := unstructured.NestedStringMap(p.Object, "spec", "template", "persistentVolumeClaim", "metadata", "labels")
		for k, v := range inst.Labels() {
			g.Expect(claimLabels).To(HaveKeyWithValue(k, v), "kept claims are found by the instance's labels")
		}
		// Pod host names (<cluster>-<pool>-<id>) fit a DNS label.
		g.Expect(len(n.Cluster + "-" + p.GetName() + "-999")).To(BeNumerically("<=", 63))
	}
	g.Expect(roles).To(Equal(map[string]int64{"controller": 3, "broker": 3}))
	pm := one(t, objs, "PodMonitor")
	g.Expect(pm.Object["spec"].(map[string]any)["podMetricsEndpoints"]).To(ContainElement(HaveKeyWithValue("port", "tcp-prometheus")))
	np := one(t, objs, "NetworkPolicy")
	g.Expect(np.GetNamespace()).To(Equal(testNamespace))
}

func TestMeshedKeepsKafkaOutOfTheMesh(t *testing.T) {
	g := NewWithT(t)
	inst := testInstance(t, "ha", nil)
	inst.Meshed = true
	objs := build(t, baseConfig(), inst)
	label := HaveKeyWithValue("sidecar.istio.io/inject", "false")
	for _, p := range byKind(objs, "KafkaNodePool") {
		l, _, _ := unstructured.NestedStringMap(p.Object, "spec", "template", "pod", "metadata", "labels")
		g.Expect(l).To(label)
	}
	k := one(t, objs, "Kafka")
	for _, path := range [][]string{{"spec", "entityOperator"}, {"spec", "kafkaExporter"}} {
		l, _, _ := unstructured.NestedStringMap(k.Object, append(path, "template", "pod", "metadata", "labels")...)
		g.Expect(l).To(label, "%v", path)
	}
	// No sidecar, so nothing for a mesh PodMonitor to scrape, and the
	// NetworkPolicies keep the sidecar's stats port closed.
	for _, pm := range byKind(objs, "PodMonitor") {
		g.Expect(pm.GetName()).NotTo(HaveSuffix(provisioners.MeshMonitorSuffix))
	}
	for _, np := range byKind(objs, "NetworkPolicy") {
		g.Expect(fmt.Sprint(np.Object["spec"])).NotTo(ContainSubstring(strconv.Itoa(provisioners.MeshMetricsPort)), np.GetName())
	}
	inst.Meshed = false
	for _, p := range byKind(build(t, baseConfig(), inst), "KafkaNodePool") {
		l, _, _ := unstructured.NestedStringMap(p.Object, "spec", "template", "pod", "metadata", "labels")
		g.Expect(l).NotTo(HaveKey("sidecar.istio.io/inject"))
	}
}

func TestSharedAccessPolicy(t *testing.T) {
	g := NewWithT(t)
	inst := testInstance(t, "standard", nil)
	np := one(t, build(t, baseConfig(), inst), "NetworkPolicy")
	g.Expect(np.GetNamespace()).To(Equal("kafka"))
	ingress, _, _ := unstructured.NestedSlice(np.Object, "spec", "ingress")
	g.Expect(ingress).To(HaveLen(1))
	g.Expect(ingress[0]).To(Equal(provisioners.AllowFrom(provisioners.FromNamespace(testNamespace), 9093)))
}

func TestResolve(t *testing.T) {
	_, plan := testPlan(t, "standard")
	tests := []struct {
		name    string
		params  map[string]any
		want    []Topic
		wantErr string
	}{
		{"defaults", nil, []Topic{{"events", 3, 604_800_000, "delete"}}, ""},
		{"given", topicsParam("a", "b"), []Topic{{"a", 3, 604_800_000, "delete"}, {"b", 3, 604_800_000, "delete"}}, ""},
		{"duplicate", topicsParam("a", "a"), nil, "parameters.topics.1.name"},
		{"too many partitions", map[string]any{"topics": []any{map[string]any{"name": "a", "partitions": 1000}}}, nil, "parameters.topics.0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			s, err := Resolve(plan, tc.params)
			if tc.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tc.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(s.Topics).To(Equal(tc.want))
		})
	}
}

func TestBuildRefusesWithoutSharedCluster(t *testing.T) {
	g := NewWithT(t)
	c := DefaultConfig()
	c.Shared = SharedCluster{}
	_, err := (&Provisioner{Config: c}).Build(testInstance(t, "standard", nil))
	g.Expect(err).To(MatchError(ContainSubstring("kafka.shared.name")))
	// A dedicated plan needs no shared cluster.
	_, err = (&Provisioner{Config: c}).Build(testInstance(t, "ha", nil))
	g.Expect(err).NotTo(HaveOccurred())
}

func TestInventoryCoversEveryBuiltObject(t *testing.T) {
	for _, plan := range planNames {
		t.Run(plan, func(t *testing.T) {
			g := NewWithT(t)
			p := &Provisioner{Config: baseConfig()}
			inst := testInstance(t, plan, nil)
			inv := map[Inventory]bool{}
			for _, i := range p.InventoryOf(inst) {
				inv[i] = true
			}
			for _, o := range build(t, baseConfig(), inst) {
				g.Expect(inv).To(HaveKey(Inventory{o.GroupVersionKind(), o.GetNamespace()}), "%s %s", o.GetKind(), o.GetName())
				g.Expect(o.GetLabels()).To(HaveKeyWithValue(provisioners.LabelInstanceID, testInstanceID))
			}
		})
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
