package binding

import (
	"context"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/internal/testkube"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/kafka"
)

// memKube is an in-memory API server for the binder: Secrets' stringData
// becomes base64 data and Apply keeps the status, as the real one does.
// objs is the fake's map of objects (testkube.Kube.Objs).
type memKube struct {
	*testkube.Kube
	objs map[provisioners.Ref]*unstructured.Unstructured
}

func newMemKube() *memKube {
	k := testkube.New(true)
	return &memKube{Kube: k, objs: k.Objs}
}

func (k *memKube) put(o map[string]any) { k.Store(&unstructured.Unstructured{Object: o}) }

const (
	kafkaTestNS      = "team-orders"
	kafkaTestInst    = "5f0c6d8e-3b1a-4c2e-9f4d-2a7b8c9d0e1f"
	kafkaTestBinding = "9a8b7c6d-1111-4222-8333-444455556666"
	kafkaTestCA      = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
)

func kafkaInstance(t *testing.T, plan string) provisioners.Instance {
	t.Helper()
	svc := catalog.KafkaService()
	p := svc.PlanByName(plan)
	return provisioners.Instance{
		ID: kafkaTestInst, Name: provisioners.ResourceName("kafka-", kafkaTestInst), Namespace: kafkaTestNS,
		Service: &svc, Plan: p,
		Params: map[string]any{"topics": []any{map[string]any{"name": "orders"}, map[string]any{"name": "audit"}}},
	}
}

func kafkaBinderFor(t *testing.T, inst provisioners.Instance) (*KafkaBinder, *memKube, kafka.Target) {
	t.Helper()
	k := newMemKube()
	b := &KafkaBinder{Kube: k, Engine: &kafka.Provisioner{Config: kafka.DefaultConfig()}}
	target := b.Engine.TargetOf(inst)
	k.put(map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata":   map[string]any{"name": target.CASecret, "namespace": target.Namespace},
		"stringData": map[string]any{"ca.crt": kafkaTestCA},
	})
	return b, k, target
}

// strimziActs does what the User Operator does with a KafkaUser: writes
// the user Secret with the given password and reports Ready.
func strimziActs(k *memKube, target kafka.Target, user, password string) {
	ref := provisioners.Ref{GVK: kafka.KafkaUserGVK, Namespace: target.Namespace, Name: user}
	k.Lock()
	u := k.objs[ref]
	u.SetGeneration(1)
	u.Object["status"] = map[string]any{"observedGeneration": int64(1), "conditions": []any{
		map[string]any{"type": "Ready", "status": "True"},
	}}
	k.Unlock()
	k.put(map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": user, "namespace": target.Namespace},
		"stringData": map[string]any{
			"password": password, "sasl.jaas.config": JAASConfig(user, password),
		},
	})
}

func TestKafkaACLsAreConfinedToThePrefix(t *testing.T) {
	ops := func(acls []any) map[string][]string {
		out := map[string][]string{}
		for _, a := range acls {
			m := a.(map[string]any)
			res := m["resource"].(map[string]any)
			if res["patternType"] != "prefix" || res["name"] != "ns.inst." || m["type"] != "allow" {
				t.Fatalf("rule outside the prefix: %v", m)
			}
			for _, o := range m["operations"].([]any) {
				out[res["type"].(string)] = append(out[res["type"].(string)], o.(string))
			}
		}
		return out
	}
	g := NewWithT(t)
	g.Expect(ops(KafkaACLs("ns.inst.", KafkaReadWrite))).To(Equal(map[string][]string{
		"topic":           {"Read", "Write", "Describe", "DescribeConfigs"},
		"group":           {"Read", "Describe"},
		"transactionalId": {"Write", "Describe"},
	}))
	g.Expect(ops(KafkaACLs("ns.inst.", KafkaRead))).To(Equal(map[string][]string{
		"topic": {"Read", "Describe", "DescribeConfigs"},
		"group": {"Read", "Describe"},
	}))
	g.Expect(ops(KafkaACLs("ns.inst.", KafkaWrite))).To(Equal(map[string][]string{
		"topic":           {"Write", "Describe", "DescribeConfigs"},
		"transactionalId": {"Write", "Describe"},
	}))
}

func TestKafkaBindReadyUnbind(t *testing.T) {
	for _, plan := range []string{"dev-lite", "standard", "ha"} {
		t.Run(plan, func(t *testing.T) {
			g := NewWithT(t)
			ctx := context.Background()
			inst := kafkaInstance(t, plan)
			b, k, target := kafkaBinderFor(t, inst)

			r, err := b.Bind(ctx, inst, kafkaTestBinding, map[string]any{"consumer_group": "billing"})
			g.Expect(err).NotTo(HaveOccurred())
			user := KafkaUserName(kafkaTestBinding)
			g.Expect(r.Logins["app"].Handle).To(Equal(user))
			g.Expect(len(user)).To(BeNumerically("<=", 63))

			// The KafkaUser, in the cluster's namespace.
			ku, _ := k.Get(ctx, provisioners.Ref{GVK: kafka.KafkaUserGVK, Namespace: target.Namespace, Name: user})
			g.Expect(ku).NotTo(BeNil())
			g.Expect(ku.GetAPIVersion()).To(Equal("kafka.strimzi.io/v1"))
			g.Expect(ku.GetLabels()).To(HaveKeyWithValue(kafka.LabelCluster, target.Cluster))
			g.Expect(ku.GetLabels()).To(HaveKeyWithValue(provisioners.LabelInstanceID, kafkaTestInst))
			g.Expect(ku.GetLabels()).To(HaveKeyWithValue(provisioners.LabelBindingID, kafkaTestBinding))
			auth, _, _ := unstructured.NestedString(ku.Object, "spec", "authentication", "type")
			g.Expect(auth).To(Equal("scram-sha-512"))
			ref, _, _ := unstructured.NestedString(ku.Object, "spec", "authentication", "password", "valueFrom", "secretKeyRef", "name")
			g.Expect(ref).To(Equal(KafkaPasswordSecret(kafkaTestBinding)))
			q, _, _ := unstructured.NestedMap(ku.Object, "spec", "quotas")
			g.Expect(q).To(HaveKeyWithValue("producerByteRate", int64(inst.Plan.Kafka.Quotas.ProducerByteRate)))
			pwSecret, _ := k.Get(ctx, provisioners.Ref{GVK: secretGVK, Namespace: target.Namespace, Name: ref})
			pw := secretValue(pwSecret, "password")
			g.Expect(pw).To(HaveLen(43))

			// The credentials are final at bind.
			prefix := kafka.TopicPrefix(inst)
			g.Expect(r.Credentials).To(HaveKeyWithValue("password", pw))
			g.Expect(r.Credentials).To(HaveKeyWithValue("username", user))
			g.Expect(r.Credentials).To(HaveKeyWithValue("topic-prefix", prefix))
			g.Expect(r.Credentials).To(HaveKeyWithValue("bootstrap-servers", target.BootstrapServers))
			g.Expect(r.Credentials).To(HaveKeyWithValue("spring.kafka.consumer.group-id", prefix+"billing"))
			g.Expect(r.Credentials).To(HaveKeyWithValue("strata.kafka.topics.orders", prefix+"orders"))
			bound, _ := k.Get(ctx, provisioners.Ref{GVK: secretGVK, Namespace: kafkaTestNS, Name: r.SecretName})
			g.Expect(bound).NotTo(BeNil())
			g.Expect(bound.Object["type"]).To(Equal("servicebinding.io/kafka"))
			g.Expect(secretValue(bound, "spring.ssl.bundle.pem."+r.SecretName+".truststore.certificate")).To(Equal(kafkaTestCA))

			// Ready waits for Strimzi.
			p, err := b.Ready(ctx, inst, r)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(p.State).To(Equal(provisioners.InProgress))
			g.Expect(p.Description).To(ContainSubstring("User Operator"))
			strimziActs(k, target, user, pw)
			p, err = b.Ready(ctx, inst, r)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(p.State).To(Equal(provisioners.Succeeded), p.Description)

			// A password Strimzi chose otherwise wins, idempotently.
			strimziActs(k, target, user, "other-password")
			p, err = b.Ready(ctx, inst, r)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(p.State).To(Equal(provisioners.Succeeded))
			creds, err := b.Credentials(ctx, inst, r)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(creds).To(HaveKeyWithValue("password", "other-password"))
			g.Expect(creds["sasl.jaas.config"]).To(ContainSubstring(`password="other-password"`))
			g.Expect(creds).To(HaveKeyWithValue("spring.kafka.consumer.group-id", prefix+"billing"))

			// A repeated bind keeps the first password.
			r2, err := b.Bind(ctx, inst, kafkaTestBinding, map[string]any{"consumer_group": "billing"})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(r2.Credentials).To(HaveKeyWithValue("password", pw))

			g.Expect(b.Unbind(ctx, inst, r)).To(Succeed())
			g.Expect(b.Unbind(ctx, inst, r)).To(Succeed(), "idempotent")
			for ref := range k.objs {
				g.Expect(ref.Name).NotTo(ContainSubstring(user), "left behind: %v", ref)
				g.Expect(ref.Name).NotTo(Equal(r.SecretName))
			}
		})
	}
}

func TestKafkaBindBeforeTheClusterCA(t *testing.T) {
	g := NewWithT(t)
	inst := kafkaInstance(t, "standard")
	b := &KafkaBinder{Kube: newMemKube(), Engine: &kafka.Provisioner{Config: kafka.DefaultConfig()}}
	_, err := b.Bind(context.Background(), inst, kafkaTestBinding, nil)
	var nr *NotReadyError
	g.Expect(err).To(BeAssignableToTypeOf(nr))
	g.Expect(err.Error()).To(ContainSubstring("strata-shared-cluster-ca-cert"))
}

func TestKafkaSecretKeys(t *testing.T) {
	g := NewWithT(t)
	s := KafkaSecret(KafkaConn{
		SecretName: "binding-x", BootstrapServers: "b:9093", Username: "u", Password: "p",
		TopicPrefix: "ns.i.", ConsumerGroup: "ns.i.app", Access: KafkaReadWrite, CAPEM: kafkaTestCA,
		Topics: map[string]string{"orders": "ns.i.orders"},
	})
	want := map[string]string{
		"type": "kafka", "bootstrap-servers": "b:9093", "security.protocol": "SASL_SSL",
		"sasl.mechanism": "SCRAM-SHA-512", "username": "u", "password": "p", "topic-prefix": "ns.i.",
		"ca.crt":                                                                     kafkaTestCA,
		"spring.kafka.bootstrap-servers":                                             "b:9093",
		"spring.kafka.security.protocol":                                             "SASL_SSL",
		"spring.kafka.properties.sasl.mechanism":                                     "SCRAM-SHA-512",
		"spring.kafka.ssl.bundle":                                                    "binding-x",
		"spring.ssl.bundle.pem.binding-x.truststore.certificate":                     kafkaTestCA,
		"spring.cloud.stream.kafka.binder.brokers":                                   "b:9093",
		"spring.cloud.stream.kafka.binder.configuration.security.protocol":           "SASL_SSL",
		"spring.cloud.stream.kafka.binder.configuration.sasl.mechanism":              "SCRAM-SHA-512",
		"spring.cloud.stream.kafka.binder.configuration.ssl.truststore.type":         "PEM",
		"spring.cloud.stream.kafka.binder.configuration.ssl.truststore.certificates": kafkaTestCA,
		"spring.cloud.stream.default.group":                                          "ns.i.app",
		"strata.kafka.topics.orders":                                                 "ns.i.orders",
	}
	for k, v := range want {
		g.Expect(s).To(HaveKeyWithValue(k, v))
	}
	jaas := `org.apache.kafka.common.security.scram.ScramLoginModule required username="u" password="p";`
	g.Expect(s["sasl.jaas.config"]).To(Equal(jaas))
	g.Expect(s["spring.kafka.properties.sasl.jaas.config"]).To(Equal(jaas))
	g.Expect(s["spring.cloud.stream.kafka.binder.configuration.sasl.jaas.config"]).To(Equal(jaas))
	for k := range s {
		g.Expect(strings.ContainsAny(k, "/ ")).To(BeFalse(), "%q is not a file name configtree can read", k)
	}
}
