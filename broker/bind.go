package broker

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"time"

	"github.com/pivotal-cf/brokerapi/v12/domain"
	"github.com/strata-dev/strata/binding"
	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
	"go.uber.org/zap"
)

// Bind issues credentials for the binding and writes its Secret. With
// accepts_incomplete the answer is 202 until the credentials work.
func (b *Broker) Bind(ctx context.Context, instanceID, bindingID string, d domain.BindDetails, async bool) (domain.Binding, error) {
	return b.bind(ctx, instanceID, bindingID, d, "", async)
}

// RotateBinding creates a successor of a binding (OSB 2.17 binding
// rotation): new credentials with the predecessor's service, plan,
// parameters and context, while the predecessor keeps working until the
// platform unbinds it or it expires.
func (b *Broker) RotateBinding(ctx context.Context, instanceID, bindingID, predecessorID string, async bool) (domain.Binding, error) {
	pred, err := b.Store.GetBinding(ctx, predecessorID)
	switch {
	case errors.Is(err, ErrNotFound) || err == nil && (pred.Deleted || pred.InstanceID != instanceID):
		return domain.Binding{}, badRequest("predecessor_binding_id " + predecessorID + " is not a binding of instance " + instanceID)
	case err != nil:
		return domain.Binding{}, internal(err.Error())
	case pred.Operation.State != provisioners.Succeeded:
		return domain.Binding{}, concurrencyError("predecessor binding " + predecessorID + " is not ready yet; retry once it is")
	case !pred.ExpiresAt.IsZero() && !b.now().Before(pred.ExpiresAt):
		return domain.Binding{}, badRequest("predecessor binding " + predecessorID + " expired at " + pred.ExpiresAt.UTC().Format(osbTime) + "; create a new binding instead")
	}
	inst, err := b.liveInstance(ctx, instanceID)
	if err != nil {
		return domain.Binding{}, err
	}
	// The instance's plan now, which an update may have changed since the
	// predecessor was bound.
	_, plan, err := b.Catalog.Find(inst.ServiceID, inst.PlanID)
	if err != nil {
		return domain.Binding{}, internal(err.Error())
	}
	if !plan.BindingRotatable {
		return domain.Binding{}, badRequest("plan " + plan.Name + " is not binding_rotatable; create a new binding instead")
	}
	params, err := json.Marshal(pred.Parameters)
	if err != nil {
		return domain.Binding{}, internal(err.Error())
	}
	return b.bind(ctx, instanceID, bindingID, domain.BindDetails{
		ServiceID: pred.ServiceID, PlanID: inst.PlanID, AppGUID: pred.AppGUID,
		RawParameters: params, RawContext: pred.Context,
	}, predecessorID, async)
}

func (b *Broker) bind(ctx context.Context, instanceID, bindingID string, d domain.BindDetails, predecessorID string, async bool) (domain.Binding, error) {
	rec, err := b.liveInstance(ctx, instanceID)
	if err != nil {
		return domain.Binding{}, err
	}
	if rec.Operation.Type == OpProvision && rec.Operation.State != provisioners.Succeeded ||
		rec.Operation.Type == OpDeprovision {
		return domain.Binding{}, concurrencyError("the instance is not ready for bindings (" + string(rec.Operation.Type) + " " + string(rec.Operation.State) + ")")
	}
	if d.ServiceID != rec.ServiceID {
		return domain.Binding{}, badRequest("service_id does not match the instance's service")
	}
	if d.PlanID != rec.PlanID {
		return domain.Binding{}, badRequest("plan_id " + brief(d.PlanID) + " is not the instance's plan " + rec.PlanID)
	}
	inst, eng, err := b.instanceOf(rec)
	if err != nil {
		return domain.Binding{}, internal(err.Error())
	}
	params, err := decodeParams(d.RawParameters)
	if err != nil {
		return domain.Binding{}, err
	}
	if err := b.Validator.Validate(inst.Plan, catalog.KindBind, params); err != nil {
		return domain.Binding{}, invalidParameters(err)
	}

	existing, err := b.Store.GetBinding(ctx, bindingID)
	switch {
	case err == nil:
		return b.repeatBind(ctx, existing, inst, eng, d, params, predecessorID, async)
	case !errors.Is(err, ErrNotFound):
		return domain.Binding{}, internal(err.Error())
	}

	// Record first, claimed by this request: only one replica issues
	// credentials for an id, and everything the bind creates is named from
	// the binding id, so a bind cut short here is found and cleaned up
	// (binding.Binder.Forget) by whoever takes it over.
	br := &BindingRecord{
		ID: bindingID, InstanceID: instanceID, ServiceID: d.ServiceID, PlanID: rec.PlanID,
		Parameters: params, Context: d.RawContext, AppGUID: d.AppGUID, PredecessorID: predecessorID,
		Operation: newOperation(OpBind, b.now(), inst.Plan), Created: b.now(),
	}
	b.claim(&br.Operation)
	if err := b.Store.CreateBinding(ctx, br); err != nil {
		if errors.Is(err, ErrConflict) {
			return domain.Binding{}, concurrencyError("the binding is being created by another request; retry")
		}
		return domain.Binding{}, internal(err.Error())
	}
	return b.issue(ctx, br, inst, eng, async)
}

// claim marks an operation as being worked on by this replica for
// claimTTL: long enough for any one request's work, short enough that a
// repeat or the reconcile loop soon takes over the work of a replica
// that died.
func (b *Broker) claim(op *Operation) {
	op.ClaimedBy, op.ClaimedUntil = b.Replica, b.now().Add(claimTTL)
}

const claimTTL = 15 * time.Second

// issue runs a claimed bind: credentials and Secret from the binder, then
// the record of them. On failure nothing the bind made is left, and the
// record goes (a platform repeats the bind, or unbinds).
func (b *Broker) issue(ctx context.Context, br *BindingRecord, inst provisioners.Instance, eng Engine, async bool) (domain.Binding, error) {
	res, err := eng.Binder.Bind(ctx, inst, br.ID, br.Parameters)
	// Clean-up must happen even when the platform gave up on the request.
	cleanup := context.WithoutCancel(ctx)
	if err != nil {
		if ferr := eng.Binder.Forget(cleanup, inst, br.ID); ferr != nil {
			// Keep the record: unbind, deprovision and the reconcile loop
			// find what is left by the binding id.
			b.failBinding(cleanup, br, "the bind failed and what it made could not all be removed yet; unbind it, or bind again")
			return domain.Binding{}, internal("could not issue credentials, and removing what was made failed: " + errors.Join(err, ferr).Error())
		}
		_ = b.Store.DeleteBinding(cleanup, br)
		var pe *binding.ParameterError
		var nr *binding.NotReadyError
		var ue *binding.UnsupportedError
		var te *provisioners.TerminatingError
		switch {
		case errors.As(err, &pe):
			return domain.Binding{}, invalidParameters(err)
		case errors.As(err, &ue):
			return domain.Binding{}, unprocessable("BindingNotSupported", err)
		case errors.As(err, &nr), errors.As(err, &te):
			return domain.Binding{}, concurrencyError(err.Error())
		}
		return domain.Binding{}, internal("could not issue credentials: " + err.Error())
	}
	if async {
		// Credentials that work at once (OpenBao's) are answered at once:
		// a 201 spares the platform a poll.
		if p, err := eng.Binder.Ready(ctx, inst, res); err == nil && p.State == provisioners.Succeeded {
			async = false
		}
	}
	br.Credentials, br.SecretName, br.Handles = res.Credentials, res.SecretName, handlesOf(res)
	if exp := res.Expires(); !exp.IsZero() {
		// Rotate when two thirds of the lifetime have passed: a third is
		// left for a platform that polls only now and then.
		br.ExpiresAt, br.RenewBefore = exp, exp.Add(-exp.Sub(b.now())/3)
	}
	br.Operation.ClaimedBy, br.Operation.ClaimedUntil = "", time.Time{}
	if !async {
		// Ready, or the platform cannot poll: the credentials are returned
		// now (CloudNativePG creates a DatabaseRole within seconds).
		br.Operation.State, br.Operation.Description = provisioners.Succeeded, "bound"
	}
	if err := b.Store.UpdateBinding(ctx, br); err != nil {
		if errors.Is(err, ErrConflict) {
			// Another replica took the bind over (this one was too slow):
			// what it made is now that replica's to finish.
			return domain.Binding{}, concurrencyError("the binding is being created by another request; retry")
		}
		_ = eng.Binder.Unbind(cleanup, inst, res)
		_ = eng.Binder.Forget(cleanup, inst, br.ID)
		_ = b.Store.DeleteBinding(cleanup, br)
		return domain.Binding{}, internal("record binding: " + err.Error())
	}
	b.logger(ctx).Info("bound", zap.String("instance", br.InstanceID), zap.String("binding", br.ID), zap.String("secret", res.SecretName))
	if async {
		return domain.Binding{IsAsync: true, OperationData: br.Operation.ID}, nil
	}
	return domain.Binding{Credentials: br.Credentials, Metadata: bindingMetadata(br)}, nil
}

// interrupted says a bind's request stopped before it recorded what it
// issued (its replica died, or it was cut short) and nobody works on it.
func (b *Broker) interrupted(br *BindingRecord) bool {
	return br.Operation.State == provisioners.InProgress && br.SecretName == "" && !br.Operation.claimed(b.now())
}

// takeOver claims an interrupted (or failed) bind and runs it again:
// whatever the first attempt issued that a new run would not replace is
// revoked first, so no login it issued stays alive.
func (b *Broker) takeOver(ctx context.Context, br *BindingRecord, inst provisioners.Instance, eng Engine, async bool) (domain.Binding, error) {
	b.claim(&br.Operation)
	if err := b.Store.UpdateBinding(ctx, br); err != nil {
		return domain.Binding{}, concurrencyError("the binding is being created by another request; retry")
	}
	b.logger(ctx).Info("taking over an interrupted or failed bind", zap.String("instance", br.InstanceID), zap.String("binding", br.ID))
	// Not Forget: deleting the objects the first attempt made and applying
	// them again at once would apply to objects being deleted.
	if err := eng.Binder.RevokeUnrecorded(ctx, inst, br.ID); err != nil {
		b.failBinding(context.WithoutCancel(ctx), br, "the bind failed and what it made could not all be removed yet; unbind it, or bind again")
		return domain.Binding{}, internal("could not remove what an earlier attempt of this bind made: " + err.Error())
	}
	return b.issue(ctx, br, inst, eng, async)
}

func (b *Broker) failBinding(ctx context.Context, br *BindingRecord, why string) {
	br.Operation.State, br.Operation.Description = provisioners.Failed, why
	br.Operation.ClaimedBy, br.Operation.ClaimedUntil = "", time.Time{}
	if err := b.Store.UpdateBinding(ctx, br); err != nil {
		b.logger(ctx).Warn("record failed bind", zap.String("binding", br.ID), zap.Error(err))
	}
}

// osbTime is the spec's timestamp layout (yyyy-mm-ddThh:mm:ss.sZ).
const osbTime = "2006-01-02T15:04:05.0Z"

func bindingMetadata(br *BindingRecord) domain.BindingMetadata {
	if br.ExpiresAt.IsZero() {
		return domain.BindingMetadata{}
	}
	return domain.BindingMetadata{
		ExpiresAt: br.ExpiresAt.UTC().Format(osbTime), RenewBefore: br.RenewBefore.UTC().Format(osbTime),
	}
}

func (b *Broker) repeatBind(ctx context.Context, existing *BindingRecord, inst provisioners.Instance, eng Engine, d domain.BindDetails, params map[string]any, predecessorID string, async bool) (domain.Binding, error) {
	if existing.Deleted || existing.InstanceID != inst.ID || (d.PlanID != "" && existing.PlanID != d.PlanID) ||
		!reflect.DeepEqual(existing.Parameters, params) || existing.PredecessorID != predecessorID {
		return domain.Binding{}, conflict("a binding with this id already exists with other attributes")
	}
	switch existing.Operation.State {
	case provisioners.InProgress:
		if b.interrupted(existing) {
			// The first request died mid-bind: this repeat finishes it.
			return b.takeOver(ctx, existing, inst, eng, async)
		}
		if !async {
			// 202 is only for a platform that said it can poll.
			return domain.Binding{}, concurrencyError("the binding is being created by an earlier request; retry")
		}
		return domain.Binding{IsAsync: true, OperationData: existing.Operation.ID}, nil
	case provisioners.Failed:
		// A bind that failed without being able to clean up is kept so that
		// unbind finds what it made; repeating it tries again from a clean
		// slate.
		return b.takeOver(ctx, existing, inst, eng, async)
	}
	return domain.Binding{AlreadyExists: true, Credentials: existing.Credentials, Metadata: bindingMetadata(existing)}, nil
}
