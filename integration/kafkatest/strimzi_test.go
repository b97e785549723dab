//go:build linux

package kafkatest

import (
	"testing"

	. "github.com/onsi/gomega"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/binding"
	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/kafka"
)

// The KafkaUser the binder renders translates into exactly the ACL
// bindings Strimzi's User Operator would create.
func TestTranslateRenderedKafkaUser(t *testing.T) {
	g := NewWithT(t)
	svc := catalog.KafkaService()
	inst := provisioners.Instance{
		ID: "11111111-2222-4333-8444-555555555555", Name: "kafka-11111111-2222-4333-8444-555555555555",
		Namespace: "team-a", Service: &svc, Plan: svc.PlanByName("standard"),
	}
	target := (&kafka.Provisioner{Config: kafka.DefaultConfig()}).TargetOf(inst)
	u := binding.KafkaUser(inst, target, "b-1", binding.KafkaReadWrite, "app")
	got, err := TranslateACLs(u)
	g.Expect(err).NotTo(HaveOccurred())
	p := kafka.TopicPrefix(inst)
	bind := func(rt kmsg.ACLResourceType, op kmsg.ACLOperation) ACLBinding {
		return ACLBinding{
			Principal: "User:" + binding.KafkaUserName("b-1"), Host: "*", ResourceType: rt, ResourceName: p,
			Pattern: kmsg.ACLResourcePatternTypePrefixed, Operation: op, Permission: kmsg.ACLPermissionTypeAllow,
		}
	}
	g.Expect(got).To(Equal([]ACLBinding{
		bind(kmsg.ACLResourceTypeTopic, kmsg.ACLOperationRead),
		bind(kmsg.ACLResourceTypeTopic, kmsg.ACLOperationWrite),
		bind(kmsg.ACLResourceTypeTopic, kmsg.ACLOperationDescribe),
		bind(kmsg.ACLResourceTypeTopic, kmsg.ACLOperationDescribeConfigs),
		bind(kmsg.ACLResourceTypeGroup, kmsg.ACLOperationRead),
		bind(kmsg.ACLResourceTypeGroup, kmsg.ACLOperationDescribe),
		bind(kmsg.ACLResourceTypeTransactionalId, kmsg.ACLOperationWrite),
		bind(kmsg.ACLResourceTypeTransactionalId, kmsg.ACLOperationDescribe),
	}))
	q := svc.PlanByName("standard").Kafka.Quotas
	g.Expect(TranslateQuotas(u)).To(ConsistOf(
		kadm.AlterClientQuotaOp{Key: "producer_byte_rate", Value: float64(q.ProducerByteRate)},
		kadm.AlterClientQuotaOp{Key: "consumer_byte_rate", Value: float64(q.ConsumerByteRate)},
		kadm.AlterClientQuotaOp{Key: "request_percentage", Value: float64(q.RequestPercentage)},
	))
}

func userWith(acls ...any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaUser",
		"metadata": map[string]any{"name": "u"},
		"spec":     map[string]any{"authorization": map[string]any{"type": "simple", "acls": acls}},
	}}
	return u
}

func TestTranslateACLRules(t *testing.T) {
	tests := []struct {
		name    string
		rule    map[string]any
		want    []ACLBinding
		wantErr string
	}{
		{
			name: "defaults: allow, host *, literal",
			rule: map[string]any{"resource": map[string]any{"type": "topic", "name": "t"}, "operations": []any{"Read"}},
			want: []ACLBinding{{"User:u", "*", kmsg.ACLResourceTypeTopic, "t", kmsg.ACLResourcePatternTypeLiteral, kmsg.ACLOperationRead, kmsg.ACLPermissionTypeAllow}},
		},
		{
			name: "cluster is kafka-cluster, literal",
			rule: map[string]any{"resource": map[string]any{"type": "cluster"}, "operations": []any{"IdempotentWrite"}},
			want: []ACLBinding{{"User:u", "*", kmsg.ACLResourceTypeCluster, "kafka-cluster", kmsg.ACLResourcePatternTypeLiteral, kmsg.ACLOperationIdempotentWrite, kmsg.ACLPermissionTypeAllow}},
		},
		{
			name: "deny from a host on a prefix",
			rule: map[string]any{"type": "deny", "host": "10.0.0.1", "resource": map[string]any{"type": "group", "name": "g", "patternType": "prefix"}, "operations": []any{"All"}},
			want: []ACLBinding{{"User:u", "10.0.0.1", kmsg.ACLResourceTypeGroup, "g", kmsg.ACLResourcePatternTypePrefixed, kmsg.ACLOperationAll, kmsg.ACLPermissionTypeDeny}},
		},
		{name: "unknown operation", rule: map[string]any{"resource": map[string]any{"type": "topic", "name": "t"}, "operations": []any{"Fly"}}, wantErr: `"Fly"`},
		{name: "unknown resource", rule: map[string]any{"resource": map[string]any{"type": "queue", "name": "t"}, "operations": []any{"Read"}}, wantErr: "resource.type"},
		{name: "no operations", rule: map[string]any{"resource": map[string]any{"type": "topic", "name": "t"}}, wantErr: "operations is empty"},
		{name: "no name", rule: map[string]any{"resource": map[string]any{"type": "topic"}, "operations": []any{"Read"}}, wantErr: "name is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := TranslateACLs(userWith(tc.rule))
			if tc.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tc.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tc.want))
		})
	}
}
