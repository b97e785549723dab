package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
)

// Point-in-time restore as a provision: the restore parameter names a
// source instance by its id and a time; the broker finds the source in
// its records (a deprovisioned instance's record is kept, marked
// deleted, and so are its ObjectStore and backups), checks the time
// against the source's restorable window and records the resolved
// source, from which the engine renders the recovery.

// restoreOutsideWindow is the error code of a restore the source's
// backups cannot serve now (422: the request is well formed, the state
// of the source refuses it).
const restoreOutsideWindow = "RestoreOutsideWindow"

// restoreSource resolves the restore parameter of a provision (nil when
// there is none), answering 400 for a source that cannot be restored
// from and 422 for a time outside its restorable window.
func (b *Broker) restoreSource(ctx context.Context, id string, svc *catalog.Service, eng Engine, params map[string]any) (*provisioners.RestoreSource, error) {
	r, ok := eng.Provisioner.(provisioners.Restorer)
	if !ok {
		return nil, nil
	}
	req, err := r.RestoreRequest(params)
	if err != nil || req == nil {
		return nil, paramErrorOrNil(err)
	}
	if existing, err := b.Store.GetInstance(ctx, id); err == nil && !existing.Deleted && existing.Restore != nil &&
		existing.Restore.InstanceID == req.FromInstance {
		// A repeated provision (or the retry of a failed one) restores
		// what the first resolved, though the window has moved since.
		return existing.Restore, nil
	}
	field := "parameters.restore.from_instance"
	src, srcInst, err := b.sourceInstance(ctx, id, svc, field, req.FromInstance, "restored from")
	if err != nil {
		return nil, err
	}
	srcPlan := srcInst.Plan
	if srcPlan.Postgres == nil || srcPlan.Postgres.Backup == nil || srcPlan.Postgres.Shared {
		return nil, invalidParameters(fmt.Errorf("%s: instance %s is on plan %s, which keeps no backups of its own; only instances of a plan with backups (standard, ha) can be restored from", field, req.FromInstance, srcPlan.Name))
	}
	if src.Operation.Type == OpProvision && src.Operation.State != provisioners.Succeeded {
		return nil, unprocessable(restoreOutsideWindow, fmt.Errorf("%s: instance %s has not finished provisioning, so it has no backups yet; retry once it has and its first backup completed", field, req.FromInstance))
	}
	w, ok, err := b.restorableWindow(ctx, src, srcInst, r)
	if err != nil {
		return nil, internal("reading the source's restorable window: " + err.Error())
	}
	if !ok {
		if deleted := deprovisionedAt(src); !deleted.IsZero() {
			return nil, unprocessable(restoreOutsideWindow, fmt.Errorf("%s: instance %s was deprovisioned at %s and none of its backups is within their retention any more; nothing of it can be restored",
				field, req.FromInstance, deleted.UTC().Format(time.RFC3339)))
		}
		return nil, unprocessable(restoreOutsideWindow, fmt.Errorf("%s: instance %s has no restorable backup yet; retry once its first backup completed (GET the instance: metadata.attributes.restorable_window)", field, req.FromInstance))
	}
	if !req.ToTime.IsZero() && !w.Contains(req.ToTime) {
		return nil, unprocessable(restoreOutsideWindow, fmt.Errorf("parameters.restore.to_time: %s is outside the restorable window of instance %s, %s to %s; choose a time inside it, or \"latest\"",
			req.ToTime.Format(time.RFC3339Nano), req.FromInstance, w.First.Format(time.RFC3339), w.Last.Format(time.RFC3339)))
	}
	return &provisioners.RestoreSource{InstanceID: src.ID, Name: src.Name, Namespace: src.Namespace, TargetTime: req.ToTime}, nil
}

// sourceInstance finds the instance a provision names as where its data
// comes from (restore.from_instance, copy_of.instance): one this broker
// provisioned (a deprovisioned one's record is kept), of the same
// service, not the new instance itself. verb says what is done from it.
func (b *Broker) sourceInstance(ctx context.Context, id string, svc *catalog.Service, field, from, verb string) (*InstanceRecord, provisioners.Instance, error) {
	if from == id {
		return nil, provisioners.Instance{}, invalidParameters(fmt.Errorf("%s: an instance cannot be %s itself; name another instance", field, verb))
	}
	src, err := b.Store.GetInstance(ctx, from)
	if errors.Is(err, ErrNotFound) {
		return nil, provisioners.Instance{}, invalidParameters(fmt.Errorf("%s: this broker knows no instance %s; name the id of a PostgreSQL instance it provisioned", field, from))
	}
	if err != nil {
		return nil, provisioners.Instance{}, internal("reading the source instance: " + err.Error())
	}
	srcSvc, _, err := b.Catalog.Find(src.ServiceID, src.PlanID)
	if err != nil || srcSvc.ID != svc.ID {
		return nil, provisioners.Instance{}, invalidParameters(fmt.Errorf("%s: instance %s is not a %s instance; name an instance of the same service", field, from, svc.Name))
	}
	srcInst, _, err := b.instanceOf(src)
	if err != nil {
		return nil, provisioners.Instance{}, internal(err.Error())
	}
	return src, srcInst, nil
}

// copySource resolves the copy_of parameter of a provision (nil when
// there is none): a live instance of the same namespace whose provision
// succeeded. The copy reads it over the network at bootstrap, so unlike a
// restore it cannot come from a deprovisioned instance, and an instance
// id (no secret) must not open another tenant's data.
func (b *Broker) copySource(ctx context.Context, id string, svc *catalog.Service, eng Engine, namespace string, params map[string]any) (*provisioners.CopySource, error) {
	c, ok := eng.Provisioner.(provisioners.Copier)
	if !ok {
		return nil, nil
	}
	req, err := c.CopyRequest(params)
	if err != nil || req == nil {
		return nil, paramErrorOrNil(err)
	}
	if existing, err := b.Store.GetInstance(ctx, id); err == nil && !existing.Deleted && existing.Copy != nil &&
		existing.Copy.InstanceID == req.FromInstance {
		// A repeated provision (or the retry of a failed one) copies
		// what the first resolved.
		return existing.Copy, nil
	}
	field := "parameters.copy_of.instance"
	src, srcInst, err := b.sourceInstance(ctx, id, svc, field, req.FromInstance, "a copy of")
	if err != nil {
		return nil, err
	}
	if src.Namespace != namespace {
		return nil, invalidParameters(fmt.Errorf("%s: instance %s is in namespace %s and the copy would be in %s; a copy reads only an instance of its own namespace", field, req.FromInstance, src.Namespace, namespace))
	}
	if src.Deleted || src.Operation.Type == OpDeprovision {
		return nil, invalidParameters(fmt.Errorf("%s: instance %s is deprovisioned; a copy reads a live instance (to start from a deprovisioned one's backups, use restore)", field, req.FromInstance))
	}
	if src.Operation.Type == OpProvision && src.Operation.State != provisioners.Succeeded {
		return nil, unprocessable(sourceNotReady, fmt.Errorf("%s: instance %s has not finished provisioning; retry once its last_operation has succeeded", field, req.FromInstance))
	}
	cs, err := c.CopySource(req, srcInst)
	if err != nil {
		return nil, paramError(err)
	}
	return cs, nil
}

// sourceNotReady is the error code of a copy whose source is not ready
// yet (422: retry later).
const sourceNotReady = "SourceNotReady"

func paramErrorOrNil(err error) error {
	if err == nil {
		return nil
	}
	return paramError(err)
}

// deprovisionedAt is when the instance's deprovision began (zero while it
// lives): from then on nothing new is archived.
func deprovisionedAt(r *InstanceRecord) time.Time {
	if r.Deleted || r.Operation.Type == OpDeprovision {
		return r.Operation.Started
	}
	return time.Time{}
}

// restorableWindow reads an instance's restorable window from its
// objects' status.
func (b *Broker) restorableWindow(ctx context.Context, rec *InstanceRecord, inst provisioners.Instance, r provisioners.Restorer) (provisioners.Window, bool, error) {
	refs := r.WindowRefs(inst)
	if len(refs) == 0 {
		return provisioners.Window{}, false, nil
	}
	observed, err := b.Kube.Observe(ctx, refs)
	if err != nil {
		return provisioners.Window{}, false, err
	}
	w, ok := r.Window(inst, observed, deprovisionedAt(rec), b.now())
	return w, ok, nil
}

// windowAttributes is the restorable window as GET instance shows it
// (metadata.attributes.restorable_window); nil when the instance's
// engine or plan has none.
func windowAttributes(w provisioners.Window, ok bool) map[string]any {
	if !ok {
		return map[string]any{"first_restorable_time": nil, "last_restorable_time": nil}
	}
	return map[string]any{
		"first_restorable_time": w.First.UTC().Format(time.RFC3339),
		"last_restorable_time":  w.Last.UTC().Format(time.RFC3339),
	}
}
