package broker

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"

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
		return b.repeatBind(existing, instanceID, d, params, predecessorID, async)
	case !errors.Is(err, ErrNotFound):
		return domain.Binding{}, internal(err.Error())
	}

	// Record first: only one replica may issue credentials for an id.
	br := &BindingRecord{
		ID: bindingID, InstanceID: instanceID, ServiceID: d.ServiceID, PlanID: d.PlanID,
		Parameters: params, Context: d.RawContext, AppGUID: d.AppGUID, PredecessorID: predecessorID,
		Operation: newOperation(OpBind, b.now(), inst.Plan), Created: b.now(),
	}
	if err := b.Store.CreateBinding(ctx, br); err != nil {
		if errors.Is(err, ErrConflict) {
			return domain.Binding{}, concurrencyError("the binding is being created by another request; retry")
		}
		return domain.Binding{}, internal(err.Error())
	}
	res, err := eng.Binder.Bind(ctx, inst, bindingID, params)
	// Clean-up must happen even when the platform gave up on the request.
	cleanup := context.WithoutCancel(ctx)
	if err != nil {
		_ = b.Store.DeleteBinding(cleanup, br)
		var pe *binding.ParameterError
		var nr *binding.NotReadyError
		var ue *binding.UnsupportedError
		switch {
		case errors.As(err, &pe):
			return domain.Binding{}, invalidParameters(err)
		case errors.As(err, &ue):
			return domain.Binding{}, unprocessable("BindingNotSupported", err)
		case errors.As(err, &nr):
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
	if !async {
		// Ready, or the platform cannot poll: the credentials are returned
		// now (CloudNativePG creates a DatabaseRole within seconds).
		br.Operation.State, br.Operation.Description = provisioners.Succeeded, "bound"
	}
	if err := b.Store.UpdateBinding(ctx, br); err != nil {
		_ = eng.Binder.Unbind(cleanup, inst, res)
		_ = b.Store.DeleteBinding(cleanup, br)
		return domain.Binding{}, internal("record binding: " + err.Error())
	}
	b.Log.Info("bound", zap.String("instance", instanceID), zap.String("binding", bindingID), zap.String("secret", res.SecretName))
	if async {
		return domain.Binding{IsAsync: true, OperationData: br.Operation.ID}, nil
	}
	return domain.Binding{Credentials: br.Credentials, Metadata: bindingMetadata(br)}, nil
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

func (b *Broker) repeatBind(existing *BindingRecord, instanceID string, d domain.BindDetails, params map[string]any, predecessorID string, async bool) (domain.Binding, error) {
	if existing.Deleted || existing.InstanceID != instanceID || existing.PlanID != d.PlanID ||
		!reflect.DeepEqual(existing.Parameters, params) || existing.PredecessorID != predecessorID {
		return domain.Binding{}, conflict("a binding with this id already exists with other attributes")
	}
	switch existing.Operation.State {
	case provisioners.InProgress:
		if !async {
			// 202 is only for a platform that said it can poll.
			return domain.Binding{}, concurrencyError("the binding is being created by an earlier request; retry")
		}
		return domain.Binding{IsAsync: true, OperationData: existing.Operation.ID}, nil
	case provisioners.Failed:
		return domain.Binding{}, conflict("this binding failed (" + existing.Operation.Description + "); unbind it and bind again")
	}
	return domain.Binding{AlreadyExists: true, Credentials: existing.Credentials, Metadata: bindingMetadata(existing)}, nil
}
