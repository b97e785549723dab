package broker

import (
	"errors"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
)

func TestDesiredStateHash(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	svc, plan, err := e.b.Catalog.Find(catalog.PostgresServiceID, catalog.PostgresDevLiteID)
	g.Expect(err).NotTo(HaveOccurred())
	eng := e.b.Engines[catalog.EnginePostgres]
	inst := provisioners.Instance{ID: instanceID, Name: "pg-" + instanceID, Namespace: tenantNS, Service: svc, Plan: plan, Params: map[string]any{}}
	hash := func(i provisioners.Instance) string {
		d, err := e.b.desiredOf(i, eng)
		g.Expect(err).NotTo(HaveOccurred())
		return d.hash
	}

	base := hash(inst)
	g.Expect(base).To(HaveLen(64))
	g.Expect(hash(inst)).To(Equal(base), "stable")

	more := inst
	more.Params = map[string]any{"storage_gb": float64(3)}
	g.Expect(hash(more)).NotTo(Equal(base), "the instance's objects count")

	meshed := inst
	meshed.Meshed = true
	g.Expect(hash(meshed)).NotTo(Equal(base), "the tenant baseline counts")

	d, err := e.b.desiredOf(inst, eng)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(d.baseline).NotTo(BeEmpty())
	g.Expect(d.objects).NotTo(BeEmpty())

	bad := inst
	bad.Params = map[string]any{"resources": map[string]any{"cpu": "64"}}
	_, err = e.b.desiredOf(bad, eng)
	g.Expect(err).To(MatchError(ContainSubstring("parameters.resources.cpu")))
}

func TestObjectRefsFlagRetainedObjects(t *testing.T) {
	g := NewWithT(t)
	obj := func(kind, name string, annotations map[string]string) *unstructured.Unstructured {
		o := &unstructured.Unstructured{}
		o.SetAPIVersion("example.com/v1")
		o.SetKind(kind)
		o.SetNamespace(tenantNS)
		o.SetName(name)
		o.SetAnnotations(annotations)
		return o
	}
	refs := objectRefs([]*unstructured.Unstructured{
		obj("Cluster", "a", nil),
		obj("ObjectStore", "b", map[string]string{provisioners.AnnotationRetain: "true"}),
		obj("Other", "c", map[string]string{provisioners.AnnotationRetain: "false"}),
	})
	g.Expect(refs).To(Equal([]ObjectRef{
		{APIVersion: "example.com/v1", Kind: "Cluster", Namespace: tenantNS, Name: "a"},
		{APIVersion: "example.com/v1", Kind: "ObjectStore", Namespace: tenantNS, Name: "b", Retain: true},
		{APIVersion: "example.com/v1", Kind: "Other", Namespace: tenantNS, Name: "c"},
	}))
}

func TestRecordObjects(t *testing.T) {
	a := ObjectRef{APIVersion: "v1", Kind: "ConfigMap", Namespace: tenantNS, Name: "a"}
	b := ObjectRef{APIVersion: "v1", Kind: "ConfigMap", Namespace: tenantNS, Name: "b"}
	c := ObjectRef{APIVersion: "v1", Kind: "Secret", Namespace: tenantNS, Name: "a"}
	retained := func(r ObjectRef) ObjectRef { r.Retain = true; return r }
	tests := []struct {
		name      string
		recorded  []ObjectRef
		applied   []ObjectRef
		want      []ObjectRef
		wantAdded bool
	}{
		{"nothing recorded yet", nil, []ObjectRef{a, b}, []ObjectRef{a, b}, true},
		{"the same objects again", []ObjectRef{a, b}, []ObjectRef{b, a}, []ObjectRef{a, b}, false},
		{"a new one goes last, the order of first application kept", []ObjectRef{b}, []ObjectRef{a, b}, []ObjectRef{b, a}, true},
		{"another kind of the same name is another object", []ObjectRef{a}, []ObjectRef{c}, []ObjectRef{a, c}, true},
		{"objects no longer applied stay recorded", []ObjectRef{a, b}, []ObjectRef{a}, []ObjectRef{a, b}, false},
		{"a change of retention is recorded", []ObjectRef{a}, []ObjectRef{retained(a)}, []ObjectRef{retained(a)}, true},
		{"and back", []ObjectRef{retained(a)}, []ObjectRef{a}, []ObjectRef{a}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			rec := &InstanceRecord{Objects: tc.recorded}
			g.Expect(recordObjects(rec, tc.applied)).To(Equal(tc.wantAdded))
			g.Expect(rec.Objects).To(Equal(tc.want))
		})
	}
}

func TestNeedsApply(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const hash = "h1"
	tests := []struct {
		name   string
		resync time.Duration
		rec    InstanceRecord
		want   bool
	}{
		{"applied as desired, claim alive", 0, InstanceRecord{AppliedHash: hash, AppliedAt: now, Operation: Operation{ClaimedBy: "r", ClaimedUntil: now.Add(time.Second)}}, false},
		{"applied as desired, nobody claims it", 0, InstanceRecord{AppliedHash: hash, AppliedAt: now.Add(-time.Minute)}, false},
		{"desired state changed", 0, InstanceRecord{AppliedHash: "h0", AppliedAt: now}, true},
		{"never applied", 0, InstanceRecord{AppliedAt: now}, true},
		{"the claim ran out", 0, InstanceRecord{AppliedHash: hash, AppliedAt: now, Operation: Operation{ClaimedBy: "r", ClaimedUntil: now}}, true},
		{"resync due", 0, InstanceRecord{AppliedHash: hash, AppliedAt: now.Add(-defaultResync)}, true},
		{"resync not yet due", 0, InstanceRecord{AppliedHash: hash, AppliedAt: now.Add(-defaultResync + time.Second)}, false},
		{"a shorter resync configured", time.Minute, InstanceRecord{AppliedHash: hash, AppliedAt: now.Add(-time.Minute)}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := &Broker{Now: func() time.Time { return now }, Resync: tc.resync}
			rec := tc.rec
			NewWithT(t).Expect(b.needsApply(&rec, desired{hash: hash})).To(Equal(tc.want))
		})
	}
}

// The baseline goes first: the tenant's policies are in place before its
// instance's pods start.
func TestApplyDesiredAppliesTheBaselineFirst(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	var order [][]string
	e.kube.failApply = func(objs []*unstructured.Unstructured) error {
		var kinds []string
		for _, o := range objs {
			kinds = append(kinds, o.GetKind())
		}
		order = append(order, kinds)
		return nil
	}
	_, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, ""), true)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(order).To(HaveLen(2))
	g.Expect(order[0]).To(ContainElement("NetworkPolicy"))
	g.Expect(order[0]).NotTo(ContainElement("Cluster"))
	g.Expect(order[1]).To(ContainElement("Cluster"))

	// A failing baseline stops the instance's objects.
	e2 := newTestEnv(t)
	e2.kube.failOnKind("NetworkPolicy", errBaselineRefused)
	_, err = e2.b.Provision(e2.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, ""), true)
	g.Expect(err).To(MatchError(ContainSubstring("applying the tenant baseline")))
	g.Expect(e2.kube.ofKind("Cluster")).To(BeEmpty())
}

var errBaselineRefused = errors.New("admission webhook refused the NetworkPolicy")
