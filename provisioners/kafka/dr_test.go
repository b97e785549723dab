package kafka

import (
	"regexp"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/provisioners"
)

// drConfig is a platform with one disaster-recovery cluster.
func drConfig() Config {
	c := baseConfig()
	c.DisasterRecovery = []DRTarget{{
		Name: "dr-eu-west", BootstrapServers: "kafka-dr.eu-west.example.com:9093",
		Secret: "strata-kafka-dr-eu-west", Username: "mirror-{namespace}",
	}}
	return c
}

func drParams() map[string]any {
	return map[string]any{
		"topics":            []any{map[string]any{"name": "orders"}},
		"disaster_recovery": map[string]any{"target": "dr-eu-west"},
	}
}

// The mirror copies exactly the instance's topics and groups (a regex of
// its prefix), keeps topic names (IdentityReplicationPolicy in both
// connectors), checkpoints and syncs group offsets, and logs in to both
// clusters with TLS and SCRAM-SHA-512: the instance's cluster as a
// read-only KafkaUser of its own, the DR cluster as the platform's
// per-tenant user from the platform's Secret.
func TestDisasterRecoveryMirror(t *testing.T) {
	g := NewWithT(t)
	inst := testInstance(t, "ha", drParams())
	objs := build(t, drConfig(), inst)
	mm := one(t, objs, "KafkaMirrorMaker2")
	g.Expect(mm.GetName()).To(Equal(MirrorName(inst)))
	g.Expect(mm.GetNamespace()).To(Equal(testNamespace))
	g.Expect(mm.GetLabels()).NotTo(HaveKey(LabelCluster))
	g.Expect(mm.GetLabels()).To(HaveKeyWithValue(provisioners.LabelInstanceID, testInstanceID))
	spec := mm.Object["spec"].(map[string]any)

	target := spec["target"].(map[string]any)
	g.Expect(target).To(HaveKeyWithValue("alias", "dr-eu-west"))
	g.Expect(target).To(HaveKeyWithValue("bootstrapServers", "kafka-dr.eu-west.example.com:9093"))
	prefix := TopicPrefix(inst)
	for _, k := range []string{"groupId", "configStorageTopic", "offsetStorageTopic", "statusStorageTopic"} {
		g.Expect(target[k]).To(HavePrefix(prefix + "mirror."))
	}
	auth, _, _ := unstructured.NestedMap(target, "authentication")
	g.Expect(auth).To(HaveKeyWithValue("type", "scram-sha-512"))
	g.Expect(auth).To(HaveKeyWithValue("username", "mirror-"+testNamespace))
	g.Expect(auth["passwordSecret"]).To(Equal(map[string]any{"secretName": "strata-kafka-dr-eu-west", "password": "password"}))
	g.Expect(target["tls"]).To(Equal(map[string]any{"trustedCertificates": []any{map[string]any{"secretName": "strata-kafka-dr-eu-west", "certificate": "ca.crt"}}}))

	mirrors := spec["mirrors"].([]any)
	g.Expect(mirrors).To(HaveLen(1))
	m := mirrors[0].(map[string]any)
	source := m["source"].(map[string]any)
	g.Expect(source["alias"]).To(Equal(SourceAlias(inst)))
	g.Expect(SourceAlias(inst) + ".").To(Equal(prefix))
	g.Expect(source["bootstrapServers"]).To(Equal(ClusterName(inst) + "-kafka-bootstrap." + testNamespace + ".svc:9093"))
	g.Expect(source["tls"]).To(Equal(map[string]any{"trustedCertificates": []any{map[string]any{"secretName": ClusterName(inst) + "-cluster-ca-cert", "certificate": "ca.crt"}}}))
	sauth := source["authentication"].(map[string]any)
	g.Expect(sauth["username"]).To(Equal(MirrorUserName(inst)))
	g.Expect(sauth["passwordSecret"]).To(Equal(map[string]any{"secretName": MirrorUserName(inst), "password": "password"}))

	// The filters select the instance's names and nothing else (the
	// prefix's '.' is literal: another instance whose name only differs
	// there is left out).
	for _, k := range []string{"topicsPattern", "groupsPattern"} {
		re := regexp.MustCompile("^(?:" + m[k].(string) + ")$")
		g.Expect(re.MatchString(prefix+"orders")).To(BeTrue(), k)
		g.Expect(re.MatchString(prefix+"app")).To(BeTrue(), k)
		g.Expect(re.MatchString(testNamespace+"."+inst.Name+"xorders")).To(BeFalse(), k)
		g.Expect(re.MatchString("other-team."+inst.Name+".orders")).To(BeFalse(), k)
		g.Expect(re.MatchString("__consumer_offsets")).To(BeFalse(), k)
	}
	// The exclusion leaves out every Connect topic a mirror keeps under the
	// prefix (this one's on the DR cluster, a failback mirror's on the
	// instance's cluster) and the checkpoints topic, and no tenant topic:
	// without it a reversed mirror copies the forward worker's connector
	// configs into its own and runs them (docs/kafka.md, Failback).
	ex := regexp.MustCompile("^(?:" + m["topicsExcludePattern"].(string) + ")$")
	for _, tp := range []string{"mirror.configs.internal", "mirror.offsets.internal", "mirror.status.internal",
		"failback.configs.internal", "failback.offsets.internal", "failback.status.internal", "checkpoints.internal"} {
		g.Expect(ex.MatchString(prefix+tp)).To(BeTrue(), tp)
	}
	for _, tp := range []string{"orders", "internal", "orders-internal", "x-internal"} {
		g.Expect(ex.MatchString(prefix+tp)).To(BeFalse(), tp)
	}
	g.Expect(ex.MatchString("other-team." + inst.Name + ".mirror.configs.internal")).To(BeFalse())
	g.Expect(target["configStorageTopic"]).To(MatchRegexp(m["topicsExcludePattern"].(string)))
	sc, _, _ := unstructured.NestedMap(m, "sourceConnector", "config")
	cc, _, _ := unstructured.NestedMap(m, "checkpointConnector", "config")
	for _, c := range []map[string]any{sc, cc} {
		g.Expect(c).To(HaveKeyWithValue("replication.policy.class", "org.apache.kafka.connect.mirror.IdentityReplicationPolicy"))
		g.Expect(c).To(HaveKeyWithValue("offset-syncs.topic.location", "source"))
	}
	g.Expect(sc).To(HaveKeyWithValue("sync.topic.acls.enabled", false))
	g.Expect(cc).To(HaveKeyWithValue("emit.checkpoints.enabled", true))
	g.Expect(cc).To(HaveKeyWithValue("sync.group.offsets.enabled", true))
	g.Expect(cc).To(HaveKeyWithValue("sync.group.offsets.interval.seconds", int64(CheckpointIntervalSeconds)))

	// The mirror's user on the instance's cluster reads; it writes only
	// its offset-syncs topic.
	var mirrorUser *unstructured.Unstructured
	for _, u := range byKind(objs, "KafkaUser") {
		if u.GetName() == MirrorUserName(inst) {
			mirrorUser = u
		}
	}
	g.Expect(mirrorUser).NotTo(BeNil())
	g.Expect(mirrorUser.GetLabels()).To(HaveKeyWithValue(LabelCluster, ClusterName(inst)))
	acls, _, _ := unstructured.NestedSlice(mirrorUser.Object, "spec", "authorization", "acls")
	for _, a := range acls {
		rule := a.(map[string]any)
		res := rule["resource"].(map[string]any)
		ops := rule["operations"].([]any)
		if res["name"] == OffsetSyncsTopic("dr-eu-west") {
			g.Expect(res["patternType"]).To(Equal("literal"))
			continue
		}
		g.Expect(res["name"]).To(Equal(prefix))
		g.Expect(ops).NotTo(ContainElements("Write", "Create", "Delete", "Alter", "All"))
	}

	// Readiness waits for the mirror; its pod counts against the tenant.
	p := &Provisioner{Config: drConfig()}
	g.Expect(p.Watched(inst)).To(ContainElement(provisioners.Ref{GVK: KafkaMirrorMaker2GVK, Namespace: testNamespace, Name: MirrorName(inst)}))
	with, err := p.Size(inst)
	g.Expect(err).NotTo(HaveOccurred())
	without, err := p.Size(testInstance(t, "ha", topicsParam("orders")))
	g.Expect(err).NotTo(HaveOccurred())
	with.CPU.Sub(without.CPU)
	g.Expect(with.CPU.String()).To(Equal(mirrorCPU))
}

// Without the parameter nothing is mirrored; a target the platform does
// not have, a platform without targets and a shared plan are refused
// with the parameter's path.
func TestDisasterRecoveryRefusals(t *testing.T) {
	g := NewWithT(t)
	g.Expect(byKind(build(t, drConfig(), testInstance(t, "ha", topicsParam("orders"))), "KafkaMirrorMaker2")).To(BeEmpty())

	p := &Provisioner{Config: drConfig()}
	params := drParams()
	params["disaster_recovery"] = map[string]any{"target": "dr-mars"}
	_, err := p.Build(testInstance(t, "ha", params))
	g.Expect(err).To(MatchError(And(ContainSubstring("parameters.disaster_recovery.target"), ContainSubstring("dr-mars"), ContainSubstring("dr-eu-west"))))

	_, err = (&Provisioner{Config: baseConfig()}).Build(testInstance(t, "ha", drParams()))
	g.Expect(err).To(MatchError(ContainSubstring("no disaster-recovery cluster configured")))

	_, err = p.Build(testInstance(t, "standard", drParams()))
	g.Expect(err).To(MatchError(ContainSubstring("disaster_recovery is for dedicated plans")))
}

func TestDisasterRecoveryConfigIsValidated(t *testing.T) {
	g := NewWithT(t)
	g.Expect(drConfig().Validate()).To(Succeed())
	g.Expect(DefaultConfig().Validate()).To(Succeed())
	c := drConfig()
	c.DisasterRecovery = append(c.DisasterRecovery, c.DisasterRecovery[0])
	g.Expect(c.Validate()).To(MatchError(ContainSubstring("listed twice")))
	c = drConfig()
	c.DisasterRecovery[0].Name = "DR_1"
	g.Expect(c.Validate()).To(MatchError(ContainSubstring("kafka.disasterRecovery[0].name")))
	c = drConfig()
	c.DisasterRecovery[0].Secret = ""
	g.Expect(c.Validate()).To(MatchError(ContainSubstring("required")))
}
