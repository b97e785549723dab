package catalog

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/onsi/gomega"
)

var kafkaUUID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestKafkaServiceIDsAndPlans(t *testing.T) {
	g := gomega.NewWithT(t)
	s := kafkaService()
	g.Expect(s.Engine).To(gomega.Equal(EngineKafka))
	g.Expect(s.Name).To(gomega.Equal("kafka"))
	ids := map[string]bool{PostgresServiceID: true, PostgresDevLiteID: true, PostgresStandardID: true, PostgresHAID: true}
	for _, id := range append([]string{s.ID}, KafkaDevLiteID, KafkaStandardID, KafkaHAID) {
		g.Expect(id).To(gomega.MatchRegexp(kafkaUUID.String()), "UUIDv4")
		g.Expect(ids).NotTo(gomega.HaveKey(id), "ids are unique across the catalog")
		ids[id] = true
	}
	g.Expect(s.ID).To(gomega.Equal(KafkaServiceID))
	g.Expect(s.Plans).To(gomega.HaveLen(3))
	names := []string{}
	for _, p := range s.Plans {
		names = append(names, p.Name)
		g.Expect(p.Kafka).NotTo(gomega.BeNil())
		g.Expect(p.Postgres).To(gomega.BeNil())
		g.Expect(p.MaximumPollingDuration).To(gomega.BeNumerically(">", 0))
		g.Expect(p.Metadata.Bullets).NotTo(gomega.BeEmpty())
		g.Expect(p.Metadata.DisplayName).NotTo(gomega.BeEmpty())
		g.Expect(p.UpdatableTo).To(gomega.BeEmpty(), "no Kafka plan change is in place")
		k := p.Kafka
		g.Expect(k.MinInSyncReplicas).To(gomega.BeNumerically("<=", k.ReplicationFactor))
		g.Expect(k.DefaultPartitions).To(gomega.BeNumerically("<=", k.MaxPartitions))
		g.Expect(k.DefaultRetentionMs).To(gomega.BeNumerically("<=", k.MaxRetentionMs))
		g.Expect(k.Quotas.ProducerByteRate).To(gomega.BeNumerically(">", 0))
		g.Expect(k.Quotas.ConsumerByteRate).To(gomega.BeNumerically(">", 0))
		g.Expect(k.Quotas.RequestPercentage).To(gomega.BeNumerically(">", 0))
		g.Expect(k.Dedicated).To(gomega.Equal(k.Cluster != nil))
	}
	g.Expect(names).To(gomega.Equal([]string{"dev-lite", "standard", "ha"}))

	// PRODUCT.md: dev-lite RF 1 shared; standard RF 3 min ISR 2 shared; ha dedicated.
	dl, st, ha := s.PlanByName("dev-lite").Kafka, s.PlanByName("standard").Kafka, s.PlanByName("ha").Kafka
	g.Expect([]any{dl.Dedicated, dl.ReplicationFactor, dl.MinInSyncReplicas}).To(gomega.Equal([]any{false, 1, 1}))
	g.Expect([]any{st.Dedicated, st.ReplicationFactor, st.MinInSyncReplicas}).To(gomega.Equal([]any{false, 3, 2}))
	g.Expect([]any{ha.Dedicated, ha.ReplicationFactor, ha.MinInSyncReplicas}).To(gomega.Equal([]any{true, 3, 2}))
	g.Expect(ha.Cluster.Controllers).To(gomega.Equal(3))
	g.Expect(ha.Cluster.Brokers).To(gomega.BeNumerically(">=", ha.ReplicationFactor))
}

func TestKafkaPlanChangesAreRefusedWithAReason(t *testing.T) {
	s := kafkaService()
	for _, from := range s.Plans {
		for _, to := range s.Plans {
			t.Run(from.Name+"->"+to.Name, func(t *testing.T) {
				g := gomega.NewWithT(t)
				err := s.CanUpdate(&from, &to)
				if from.ID == to.ID {
					g.Expect(err).NotTo(gomega.HaveOccurred())
					return
				}
				g.Expect(err).To(gomega.MatchError(gomega.ContainSubstring("migrate")))
				g.Expect(from.Kafka.ChangeReason(to.Kafka)).NotTo(gomega.BeEmpty())
			})
		}
	}
	g := gomega.NewWithT(t)
	dl, st, ha := s.PlanByName("dev-lite").Kafka, s.PlanByName("standard").Kafka, s.PlanByName("ha").Kafka
	g.Expect(dl.ChangeReason(st)).To(gomega.ContainSubstring("Cruise Control"))
	g.Expect(st.ChangeReason(ha)).To(gomega.ContainSubstring("another Kafka cluster"))
	g.Expect(st.ChangeReason(dl)).To(gomega.ContainSubstring("fewer copies"))
}

func kafkaSchemaDocs(t *testing.T) map[string]Schema {
	t.Helper()
	out := map[string]Schema{}
	for _, p := range kafkaService().Plans {
		s := SchemasFor(&p)
		out[p.Name+"/provision"] = s.Provision
		out[p.Name+"/update"] = s.Update
		out[p.Name+"/bind"] = s.Bind
	}
	return out
}

func TestKafkaSchemasFollowOSB(t *testing.T) {
	for name, doc := range kafkaSchemaDocs(t) {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			raw, err := json.Marshal(doc)
			g.Expect(err).NotTo(gomega.HaveOccurred())
			g.Expect(len(raw)).To(gomega.BeNumerically("<", 64*1024))
			var m map[string]any
			g.Expect(json.Unmarshal(raw, &m)).To(gomega.Succeed())
			g.Expect(m).To(gomega.HaveKeyWithValue("$schema", schemaDialect))
			g.Expect(m).To(gomega.HaveKeyWithValue("additionalProperties", false))
			if strings.HasSuffix(name, "/update") {
				g.Expect(string(raw)).NotTo(gomega.ContainSubstring(`"default"`), "update schemas say only what changes")
			}
		})
	}
}

func TestKafkaSchemaValidation(t *testing.T) {
	v := NewValidator()
	s := kafkaService()
	standard, ha := s.PlanByName("standard"), s.PlanByName("ha")
	tests := []struct {
		name    string
		plan    *Plan
		kind    Kind
		params  map[string]any
		wantErr string
	}{
		{"no parameters", standard, KindProvision, nil, ""},
		{"topics", standard, KindProvision, map[string]any{"topics": []any{
			map[string]any{"name": "orders", "partitions": 12, "retention_ms": 3_600_000, "cleanup_policy": "compact,delete"},
			map[string]any{"name": "order-events-v2"},
		}}, ""},
		{"dedicated storage", ha, KindProvision, map[string]any{"storage_gb": 500}, ""},
		{"storage on shared plan", standard, KindProvision, map[string]any{"storage_gb": 500}, "parameters.storage_gb: unknown parameter"},
		{"uppercase topic", standard, KindProvision, map[string]any{"topics": []any{map[string]any{"name": "Orders"}}}, "parameters.topics.0.name"},
		{"dotted topic", standard, KindProvision, map[string]any{"topics": []any{map[string]any{"name": "a.b"}}}, "parameters.topics.0.name"},
		{"underscore topic", standard, KindProvision, map[string]any{"topics": []any{map[string]any{"name": "a_b"}}}, "parameters.topics.0.name"},
		{"too long topic", standard, KindProvision, map[string]any{"topics": []any{map[string]any{"name": strings.Repeat("a", 49)}}}, "parameters.topics.0.name"},
		{"too many partitions", standard, KindProvision, map[string]any{"topics": []any{map[string]any{"name": "a", "partitions": 49}}}, "parameters.topics.0.partitions"},
		{"retention above plan", standard, KindProvision, map[string]any{"topics": []any{map[string]any{"name": "a", "retention_ms": 31 * 86_400_000}}}, "parameters.topics.0.retention_ms"},
		{"unknown topic field", standard, KindProvision, map[string]any{"topics": []any{map[string]any{"name": "a", "replicas": 1}}}, "parameters.topics.0.replicas: unknown parameter"},
		{"no name", standard, KindProvision, map[string]any{"topics": []any{map[string]any{"partitions": 1}}}, "parameters.topics.0"},
		{"too many topics", s.PlanByName("dev-lite"), KindProvision, map[string]any{"topics": manyTopics(11)}, "parameters.topics"},
		{"update allows deletion flag", standard, KindUpdate, map[string]any{"allow_topic_deletion": true, "topics": []any{map[string]any{"name": "a"}}}, ""},
		{"bind readwrite", standard, KindBind, map[string]any{"access": "read", "consumer_group": "billing"}, ""},
		{"bind bad access", standard, KindBind, map[string]any{"access": "admin"}, "parameters.access"},
		{"bind bad group", standard, KindBind, map[string]any{"consumer_group": "other.team"}, "parameters.consumer_group"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			err := v.Validate(tc.plan, tc.kind, tc.params)
			if tc.wantErr == "" {
				g.Expect(err).NotTo(gomega.HaveOccurred())
				return
			}
			g.Expect(err).To(gomega.MatchError(gomega.ContainSubstring(tc.wantErr)))
		})
	}
}

func TestKafkaSchemaDefaultsAreValid(t *testing.T) {
	v := NewValidator()
	for _, p := range kafkaService().Plans {
		for _, k := range []Kind{KindProvision, KindBind} {
			g := gomega.NewWithT(t)
			_, doc, err := v.schema(&p, k)
			g.Expect(err).NotTo(gomega.HaveOccurred())
			params := map[string]any{}
			for name, prop := range doc["properties"].(Schema) {
				if d, ok := prop.(Schema)["default"]; ok {
					params[name] = d
				}
			}
			raw, _ := json.Marshal(params)
			var decoded map[string]any
			g.Expect(json.Unmarshal(raw, &decoded)).To(gomega.Succeed())
			g.Expect(v.Validate(&p, k, decoded)).To(gomega.Succeed(), "%s %s defaults %s", p.Name, k, raw)
		}
	}
}

func manyTopics(n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = map[string]any{"name": "t" + strings.Repeat("x", i)}
	}
	return out
}
