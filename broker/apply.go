package broker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/provisioners"
)

// desired is what an instance should have in Kubernetes now: its tenant's
// baseline and its own objects, with their hash.
type desired struct {
	baseline, objects []*unstructured.Unstructured
	hash              string
}

// desiredOf renders the instance's objects and the tenant baseline.
func (b *Broker) desiredOf(inst provisioners.Instance, eng Engine) (desired, error) {
	objs, err := eng.Provisioner.Build(inst)
	if err != nil {
		return desired{}, err
	}
	d := desired{
		baseline: provisioners.Baseline(b.Baseline, provisioners.BaselineTenant{Namespace: inst.Namespace, Meshed: inst.Meshed}),
		objects:  objs,
	}
	h := sha256.New()
	for _, o := range append(slices.Clone(d.baseline), d.objects...) {
		raw, err := json.Marshal(o.Object)
		if err != nil {
			return desired{}, err
		}
		h.Write(raw)
	}
	d.hash = hex.EncodeToString(h.Sum(nil))
	return d, nil
}

// objectRefs names the objects, flagging the ones deprovision keeps.
func objectRefs(objs []*unstructured.Unstructured) []ObjectRef {
	out := make([]ObjectRef, 0, len(objs))
	for _, o := range objs {
		out = append(out, ObjectRef{
			APIVersion: o.GetAPIVersion(), Kind: o.GetKind(), Namespace: o.GetNamespace(), Name: o.GetName(),
			Retain: o.GetAnnotations()[provisioners.AnnotationRetain] == "true",
		})
	}
	return out
}

// recordObjects adds refs to the record's objects (keeping the order of
// first application: deprovision deletes in reverse) and says whether any
// was new.
func recordObjects(rec *InstanceRecord, refs []ObjectRef) bool {
	added := false
	for _, r := range refs {
		i := slices.IndexFunc(rec.Objects, func(o ObjectRef) bool {
			return o.APIVersion == r.APIVersion && o.Kind == r.Kind && o.Namespace == r.Namespace && o.Name == r.Name
		})
		switch {
		case i < 0:
			rec.Objects = append(rec.Objects, r)
			added = true
		case rec.Objects[i].Retain != r.Retain:
			rec.Objects[i].Retain = r.Retain
			added = true
		}
	}
	return added
}

// applyDesired applies the baseline and the instance's objects.
func (b *Broker) applyDesired(ctx context.Context, d desired) error {
	if err := b.Kube.Apply(ctx, d.baseline); err != nil {
		return fmt.Errorf("applying the tenant baseline: %w", err)
	}
	return b.Kube.Apply(ctx, d.objects)
}

// needsApply says whether an in-progress operation must apply its desired
// state: it changed since the last apply, the request that applied it may
// have died mid-way (a claim that ran out), or a resync is due.
func (b *Broker) needsApply(rec *InstanceRecord, d desired) bool {
	resync := b.Resync
	if resync <= 0 {
		resync = defaultResync
	}
	interrupted := rec.Operation.ClaimedBy != "" && !rec.Operation.claimed(b.now())
	return rec.AppliedHash != d.hash || interrupted || b.now().Sub(rec.AppliedAt) >= resync
}
