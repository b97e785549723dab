package broker

import (
	"context"
	"errors"
	"fmt"

	"github.com/pivotal-cf/brokerapi/v12/domain"
	"github.com/strata-dev/strata/provisioners"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Deprovision deletes the instance's objects, except those kept for the
// backups' retention, and revokes its bindings.
func (b *Broker) Deprovision(ctx context.Context, id string, d domain.DeprovisionDetails, async bool) (domain.DeprovisionServiceSpec, error) {
	rec, err := b.Store.GetInstance(ctx, id)
	if errors.Is(err, ErrNotFound) || (err == nil && rec.Deleted) {
		return domain.DeprovisionServiceSpec{}, gone
	}
	if err != nil {
		return domain.DeprovisionServiceSpec{}, internal(err.Error())
	}
	if !async {
		return domain.DeprovisionServiceSpec{}, asyncRequired()
	}
	if rec.Operation.Type == OpDeprovision && rec.Operation.State == provisioners.InProgress {
		return domain.DeprovisionServiceSpec{IsAsync: true, OperationData: rec.Operation.ID}, nil
	}
	inst, eng, err := b.instanceOf(rec)
	if err != nil {
		return domain.DeprovisionServiceSpec{}, internal(err.Error())
	}
	// A deprovision may cut short a provision or update in progress:
	// deleting is always possible, and platforms rely on it to clean up
	// (orphan mitigation).
	rec.Operation = newOperation(OpDeprovision, b.now(), inst.Plan)
	if err := b.Store.UpdateInstance(ctx, rec); err != nil {
		return domain.DeprovisionServiceSpec{}, concurrencyError("the instance changed while deprovisioning; retry")
	}
	b.logger(ctx).Info("deprovisioning", zap.String("instance", id))
	if _, err := b.deprovisionStep(ctx, rec, inst, eng); err != nil {
		// The polls retry; last_operation says what stands in the way.
		b.logger(ctx).Warn("deprovision step", zap.String("instance", id), zap.Error(err))
	}
	return domain.DeprovisionServiceSpec{IsAsync: true, OperationData: rec.Operation.ID}, nil
}

// deprovisionStep revokes the bindings, removes the instance from its
// credential source, then deletes its objects, and says whether they are
// all gone. Every part is idempotent, so each poll runs it again until it
// is done.
func (b *Broker) deprovisionStep(ctx context.Context, rec *InstanceRecord, inst provisioners.Instance, eng Engine) (bool, error) {
	if err := b.unbindAll(ctx, inst, eng); err != nil {
		return false, fmt.Errorf("revoking the instance's bindings: %w", err)
	}
	if err := b.revokeS3SeedLoginIfAny(ctx, rec, inst, eng); err != nil {
		return false, fmt.Errorf("revoking the seed's login: %w", err)
	}
	if err := eng.Binder.Teardown(ctx, inst); err != nil {
		return false, fmt.Errorf("removing the instance's credentials setup: %w", err)
	}
	done, err := b.deleteObjects(ctx, rec, inst, eng)
	if err != nil {
		return false, fmt.Errorf("deleting: %w", err)
	}
	return done, nil
}

// prune deletes what the instance had before an update and renders no
// more (a topic the update dropped), except retained objects. CheckUpdate
// has refused whatever would lose data unless the parameters allow it. A
// failure is logged and the object left (it keeps the instance's labels,
// by which an operator finds it; deprovision deletes it with the rest).
func (b *Broker) prune(ctx context.Context, rec *InstanceRecord, now []*unstructured.Unstructured) {
	keep := map[provisioners.Ref]bool{}
	for _, o := range now {
		keep[provisioners.RefOf(o)] = true
	}
	for _, o := range rec.Objects {
		ref := o.Ref()
		if keep[ref] || o.Retain {
			continue
		}
		if err := b.Kube.Delete(ctx, ref); err != nil {
			b.logger(ctx).Warn("prune", zap.String("instance", rec.ID), zap.String("object", ref.GVK.Kind+" "+ref.Namespace+"/"+ref.Name), zap.Error(err))
		}
	}
}

// deleteObjects deletes every object the record says was applied, except
// retained ones, and says whether all of them are gone. Records from
// before the broker kept that list name none; their objects are found by
// rendering, as then.
func (b *Broker) deleteObjects(ctx context.Context, rec *InstanceRecord, inst provisioners.Instance, eng Engine) (bool, error) {
	objects := rec.Objects
	if len(objects) == 0 {
		objs, err := eng.Provisioner.Build(inst)
		if err != nil {
			return false, err
		}
		objects = objectRefs(objs)
	}
	var refs []provisioners.Ref
	if l, ok := eng.Provisioner.(provisioners.LeftoverLister); ok {
		refs = append(refs, l.Leftovers(inst)...)
	}
	for _, o := range objects {
		if !o.Retain {
			refs = append(refs, o.Ref())
		}
	}
	// Dependents first: a Pooler or Database without its Cluster only
	// produces errors.
	for i := len(refs) - 1; i >= 0; i-- {
		if err := b.Kube.Delete(ctx, refs[i]); err != nil {
			return false, err
		}
	}
	left, err := b.Kube.Observe(ctx, refs)
	if err != nil {
		return false, err
	}
	for _, o := range left {
		if o != nil {
			return false, nil
		}
	}
	return true, nil
}

func (b *Broker) unbindAll(ctx context.Context, inst provisioners.Instance, eng Engine) error {
	recs, err := b.Store.BindingsOf(ctx, inst.ID)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if err := errors.Join(eng.Binder.Unbind(ctx, inst, resultOf(r)), eng.Binder.Forget(ctx, inst, r.ID)); err != nil {
			return err
		}
		if err := b.Store.DeleteBinding(ctx, r); err != nil {
			return err
		}
	}
	return nil
}
