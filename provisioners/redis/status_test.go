package redis

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/provisioners"
)

// observedWorld is what the operator would have made of the instance:
// a ready certificate, the StatefulSet and Deployment with the RF's
// command, resources and replica counts, all rolled out.
func observedWorld(t *testing.T, inst provisioners.Instance) (map[provisioners.Ref]*unstructured.Unstructured, []provisioners.Ref) {
	t.Helper()
	p := &Provisioner{Config: baseConfig()}
	objs := build(t, baseConfig(), inst)
	rf := one(t, objs, "RedisFailover")
	refs := p.Watched(inst)
	cmd, _, _ := unstructured.NestedSlice(rf.Object, "spec", "redis", "command")
	res, _, _ := unstructured.NestedMap(rf.Object, "spec", "redis", "resources")
	r, _, _ := unstructured.NestedInt64(rf.Object, "spec", "redis", "replicas")
	s, _, _ := unstructured.NestedInt64(rf.Object, "spec", "sentinel", "replicas")
	cert := &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{"conditions": []any{
		map[string]any{"type": "Ready", "status": "True"}}}}}
	workload := func(replicas int64, containers []any) *unstructured.Unstructured {
		o := &unstructured.Unstructured{Object: map[string]any{
			"spec":   map[string]any{"replicas": replicas, "template": map[string]any{"spec": map[string]any{"containers": containers}}},
			"status": map[string]any{"observedGeneration": int64(2), "readyReplicas": replicas, "updatedReplicas": replicas},
		}}
		o.SetGeneration(2)
		return o
	}
	sts := workload(r, []any{map[string]any{"name": "redis", "command": cmd, "resources": res}, map[string]any{"name": "redis-exporter"}})
	dep := workload(s, []any{map[string]any{"name": "sentinel"}})
	return map[provisioners.Ref]*unstructured.Unstructured{refs[0]: rf, refs[1]: cert, refs[2]: sts, refs[3]: dep}, refs
}

func TestAssess(t *testing.T) {
	p := &Provisioner{Config: baseConfig()}
	inst := testInstance(t, "standard", nil)
	now := time.Now()
	tests := []struct {
		name   string
		change func(map[provisioners.Ref]*unstructured.Unstructured, []provisioners.Ref)
		state  provisioners.State
		desc   string
	}{
		{"ready", func(map[provisioners.Ref]*unstructured.Unstructured, []provisioners.Ref) {}, provisioners.Succeeded, "Redis ready: 2 Redis pod(s), 3 Sentinel(s)"},
		{"no RedisFailover", func(o map[provisioners.Ref]*unstructured.Unstructured, r []provisioners.Ref) { delete(o, r[0]) }, provisioners.InProgress, "RedisFailover"},
		{"certificate not ready", func(o map[provisioners.Ref]*unstructured.Unstructured, r []provisioners.Ref) {
			_ = unstructured.SetNestedSlice(o[r[1]].Object, []any{map[string]any{"type": "Ready", "status": "False"}}, "status", "conditions")
		}, provisioners.InProgress, "certificate"},
		{"no StatefulSet", func(o map[provisioners.Ref]*unstructured.Unstructured, r []provisioners.Ref) { delete(o, r[2]) }, provisioners.InProgress, "StatefulSet"},
		{"no Deployment", func(o map[provisioners.Ref]*unstructured.Unstructured, r []provisioners.Ref) { delete(o, r[3]) }, provisioners.InProgress, "Deployment"},
		{"operator has not applied a new command", func(o map[provisioners.Ref]*unstructured.Unstructured, r []provisioners.Ref) {
			_ = unstructured.SetNestedStringSlice(o[r[0]].Object, []string{"redis-server", "/redis/redis.conf", "--appendfsync", "always"}, "spec", "redis", "command")
		}, provisioners.InProgress, "apply the RedisFailover"},
		{"operator has not scaled yet", func(o map[provisioners.Ref]*unstructured.Unstructured, r []provisioners.Ref) {
			_ = unstructured.SetNestedField(o[r[0]].Object, int64(4), "spec", "redis", "replicas")
		}, provisioners.InProgress, "apply the RedisFailover"},
		{"canonical quantities still match", func(o map[provisioners.Ref]*unstructured.Unstructured, r []provisioners.Ref) {
			cs, _, _ := unstructured.NestedSlice(o[r[2]].Object, "spec", "template", "spec", "containers")
			cs[0].(map[string]any)["resources"] = map[string]any{
				"limits":   map[string]any{"cpu": "0.5", "memory": "1024Mi"},
				"requests": map[string]any{"cpu": "500m", "memory": "1Gi"},
			}
			_ = unstructured.SetNestedSlice(o[r[2]].Object, cs, "spec", "template", "spec", "containers")
		}, provisioners.Succeeded, "Redis ready"},
		{"replica not ready", func(o map[provisioners.Ref]*unstructured.Unstructured, r []provisioners.Ref) {
			_ = unstructured.SetNestedField(o[r[2]].Object, int64(1), "status", "readyReplicas")
		}, provisioners.InProgress, "Redis: 1 of 2 pods ready"},
		{"sentinel rollout pending", func(o map[provisioners.Ref]*unstructured.Unstructured, r []provisioners.Ref) {
			o[r[3]].SetGeneration(3)
		}, provisioners.InProgress, "Sentinel: waiting"},
		{"redis pods not updated", func(o map[provisioners.Ref]*unstructured.Unstructured, r []provisioners.Ref) {
			_ = unstructured.SetNestedField(o[r[2]].Object, int64(1), "status", "updatedReplicas")
		}, provisioners.InProgress, "1 updated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			observed, refs := observedWorld(t, inst)
			tc.change(observed, refs)
			got := p.Assess(inst, observed, now)
			g.Expect(got.State).To(Equal(tc.state), got.Description)
			g.Expect(got.Description).To(ContainSubstring(tc.desc))
			g.Expect(got.Description).NotTo(ContainSubstring("password"))
		})
	}
}

func TestWatchedNamesTheOperatorsObjects(t *testing.T) {
	g := NewWithT(t)
	inst := testInstance(t, "ha", nil)
	refs := (&Provisioner{}).Watched(inst)
	g.Expect(refs).To(HaveLen(4))
	g.Expect(refs[2].Name).To(Equal("rfr-" + inst.Name))
	g.Expect(refs[3].Name).To(Equal("rfs-" + inst.Name))
	g.Expect(refs[2].GVK.Kind).To(Equal("StatefulSet"))
	g.Expect(refs[3].GVK.Kind).To(Equal("Deployment"))
}

func TestLeftoversAreTheCertificateSecret(t *testing.T) {
	g := NewWithT(t)
	inst := testInstance(t, "standard", nil)
	refs := (&Provisioner{}).Leftovers(inst)
	g.Expect(refs).To(HaveLen(1))
	g.Expect(refs[0].GVK.Kind).To(Equal("Secret"))
	g.Expect(refs[0].Name).To(Equal(NamesOf(inst).Certificate))
}
