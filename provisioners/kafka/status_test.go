package kafka

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/provisioners"
)

// withStatus is o as Strimzi would report it.
func withStatus(o *unstructured.Unstructured, gen, observed int64, conds ...map[string]any) *unstructured.Unstructured {
	c := o.DeepCopy()
	c.SetGeneration(gen)
	cs := make([]any, len(conds))
	for i, x := range conds {
		cs[i] = x
	}
	c.Object["status"] = map[string]any{"observedGeneration": observed, "conditions": cs}
	return c
}

func ready() map[string]any { return map[string]any{"type": "Ready", "status": "True"} }

func notReady(reason, msg string) map[string]any {
	return map[string]any{"type": "NotReady", "status": "True", "reason": reason, "message": msg}
}

func observedAll(t *testing.T, p *Provisioner, inst provisioners.Instance, f func(o *unstructured.Unstructured) *unstructured.Unstructured) map[provisioners.Ref]*unstructured.Unstructured {
	objs := build(t, p.Config, inst)
	out := map[provisioners.Ref]*unstructured.Unstructured{}
	for _, ref := range p.Watched(inst) {
		for _, o := range objs {
			if provisioners.RefOf(o) == ref {
				out[ref] = f(o)
			}
		}
	}
	return out
}

func TestWatched(t *testing.T) {
	g := NewWithT(t)
	p := &Provisioner{Config: baseConfig()}
	shared := testInstance(t, "standard", topicsParam("a", "b"))
	refs := p.Watched(shared)
	g.Expect(refs).To(HaveLen(2))
	for _, r := range refs {
		g.Expect(r.GVK).To(Equal(KafkaTopicGVK))
		g.Expect(r.Namespace).To(Equal("kafka"))
	}
	ha := testInstance(t, "ha", topicsParam("a"))
	refs = p.Watched(ha)
	g.Expect(refs).To(HaveLen(2))
	g.Expect(refs[0]).To(Equal(provisioners.Ref{GVK: KafkaGVK, Namespace: testNamespace, Name: ClusterName(ha)}))
}

func TestAssess(t *testing.T) {
	p := &Provisioner{Config: baseConfig()}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		plan  string
		obs   func(o *unstructured.Unstructured) *unstructured.Unstructured
		state provisioners.State
		desc  string
	}{
		{"absent", "standard", func(*unstructured.Unstructured) *unstructured.Unstructured { return nil }, provisioners.InProgress, "to be created"},
		{"no status yet", "standard", func(o *unstructured.Unstructured) *unstructured.Unstructured { return o }, provisioners.InProgress, "waiting for Strimzi to reconcile"},
		{"ready", "standard", func(o *unstructured.Unstructured) *unstructured.Unstructured { return withStatus(o, 1, 1, ready()) }, provisioners.Succeeded, "2 of 2 topics"},
		{"ready for an older generation", "standard", func(o *unstructured.Unstructured) *unstructured.Unstructured { return withStatus(o, 2, 1, ready()) }, provisioners.InProgress, "waiting for Strimzi to reconcile"},
		{"transient kafka error", "standard", func(o *unstructured.Unstructured) *unstructured.Unstructured {
			return withStatus(o, 1, 1, notReady("KafkaError", "timed out"))
		}, provisioners.InProgress, "KafkaError: timed out"},
		{"partition decrease refused", "standard", func(o *unstructured.Unstructured) *unstructured.Unstructured {
			return withStatus(o, 1, 1, notReady("NotSupported", "Decreasing partitions not supported"))
		}, provisioners.Failed, "NotSupported"},
		{"conflict", "dev-lite", func(o *unstructured.Unstructured) *unstructured.Unstructured {
			return withStatus(o, 1, 1, notReady("ResourceConflict", "Managed by another KafkaTopic"))
		}, provisioners.Failed, "ResourceConflict"},
		{"dedicated ready", "ha", func(o *unstructured.Unstructured) *unstructured.Unstructured { return withStatus(o, 3, 3, ready()) }, provisioners.Succeeded, "dedicated Kafka cluster"},
		{"dedicated invalid", "ha", func(o *unstructured.Unstructured) *unstructured.Unstructured {
			if o.GetKind() == "Kafka" {
				return withStatus(o, 1, 1, notReady("InvalidResourceException", "bad listener"))
			}
			return withStatus(o, 1, 1, ready())
		}, provisioners.Failed, "InvalidResourceException: bad listener"},
		{"dedicated starting", "ha", func(o *unstructured.Unstructured) *unstructured.Unstructured {
			if o.GetKind() == "Kafka" {
				return withStatus(o, 1, 1, notReady("Creating", "pods starting"))
			}
			return nil
		}, provisioners.InProgress, "waiting for Kafka cluster"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			inst := testInstance(t, tc.plan, topicsParam("a", "b"))
			got := p.Assess(inst, observedAll(t, p, inst, tc.obs), now)
			g.Expect(got.State).To(Equal(tc.state), got.Description)
			g.Expect(got.Description).To(ContainSubstring(tc.desc))
		})
	}
}
