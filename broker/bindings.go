package broker

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"

	"github.com/pivotal-cf/brokerapi/v12/domain"
	"go.uber.org/zap"

	"github.com/strata-dev/strata/binding"
	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
)

func resultOf(r *BindingRecord) binding.Result {
	logins := map[string]binding.Login{}
	for k, h := range r.Handles {
		logins[k] = binding.Login{Handle: h}
	}
	if u, ok := r.Credentials["username"].(string); ok {
		if l, ok := logins["app"]; ok {
			l.Username = u
			logins["app"] = l
		}
	}
	return binding.Result{Credentials: r.Credentials, SecretName: r.SecretName, Logins: logins}
}

func handlesOf(res binding.Result) map[string]string {
	h := map[string]string{}
	for k, l := range res.Logins {
		h[k] = l.Handle
	}
	return h
}

// liveInstance reads an instance that can take bindings.
func (b *Broker) liveInstance(ctx context.Context, id string) (*InstanceRecord, error) {
	rec, err := b.Store.GetInstance(ctx, id)
	if errors.Is(err, ErrNotFound) || (err == nil && rec.Deleted) {
		return nil, notFound("instance " + id + " does not exist")
	}
	if err != nil {
		return nil, internal(err.Error())
	}
	return rec, nil
}

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

// Unbind revokes the credentials and deletes the Secret.
func (b *Broker) Unbind(ctx context.Context, instanceID, bindingID string, _ domain.UnbindDetails, _ bool) (domain.UnbindSpec, error) {
	br, err := b.Store.GetBinding(ctx, bindingID)
	if errors.Is(err, ErrNotFound) || (err == nil && (br.Deleted || br.InstanceID != instanceID)) {
		return domain.UnbindSpec{}, bindingGone
	}
	if err != nil {
		return domain.UnbindSpec{}, internal(err.Error())
	}
	rec, err := b.Store.GetInstance(ctx, instanceID)
	if errors.Is(err, ErrNotFound) || err == nil && rec.Deleted {
		// The instance is gone, and with it what the binding could reach
		// (its deprovision revoked every binding it knew of): forget it.
		if err := b.Store.DeleteBinding(ctx, br); err != nil {
			return domain.UnbindSpec{}, concurrencyError("the binding changed while unbinding; retry")
		}
		return domain.UnbindSpec{}, nil
	}
	if err != nil {
		return domain.UnbindSpec{}, internal(err.Error())
	}
	inst, eng, err := b.instanceOf(rec)
	if err != nil {
		return domain.UnbindSpec{}, internal(err.Error())
	}
	if err := eng.Binder.Unbind(ctx, inst, resultOf(br)); err != nil {
		return domain.UnbindSpec{}, internal("revoke credentials: " + err.Error())
	}
	if err := b.Store.DeleteBinding(ctx, br); err != nil {
		return domain.UnbindSpec{}, concurrencyError("the binding changed while unbinding; retry")
	}
	b.Log.Info("unbound", zap.String("instance", instanceID), zap.String("binding", bindingID))
	return domain.UnbindSpec{}, nil
}

// GetBinding returns a binding's credentials and parameters.
func (b *Broker) GetBinding(ctx context.Context, instanceID, bindingID string, _ domain.FetchBindingDetails) (domain.GetBindingSpec, error) {
	br, err := b.Store.GetBinding(ctx, bindingID)
	if errors.Is(err, ErrNotFound) || (err == nil && (br.Deleted || br.InstanceID != instanceID)) {
		return domain.GetBindingSpec{}, notFound("binding " + bindingID + " does not exist")
	}
	if err != nil {
		return domain.GetBindingSpec{}, internal(err.Error())
	}
	if br.Operation.State != provisioners.Succeeded {
		return domain.GetBindingSpec{}, notFound("binding " + bindingID + " is being created")
	}
	return domain.GetBindingSpec{Credentials: br.Credentials, Parameters: br.Parameters, Metadata: bindingMetadata(br)}, nil
}

// LastBindingOperation reports (and advances) an async bind.
func (b *Broker) LastBindingOperation(ctx context.Context, instanceID, bindingID string, _ domain.PollDetails) (domain.LastOperation, error) {
	br, err := b.Store.GetBinding(ctx, bindingID)
	if errors.Is(err, ErrNotFound) || (err == nil && br.InstanceID != instanceID) {
		return domain.LastOperation{}, notFound("binding " + bindingID + " does not exist")
	}
	if err != nil {
		return domain.LastOperation{}, internal(err.Error())
	}
	if br.Operation.State == provisioners.InProgress {
		b.advanceBinding(ctx, br)
	}
	return domain.LastOperation{State: domain.LastOperationState(br.Operation.State), Description: br.Operation.Description}, nil
}

func (b *Broker) advanceBinding(ctx context.Context, br *BindingRecord) {
	rec, err := b.liveInstance(ctx, br.InstanceID)
	if err != nil {
		return
	}
	inst, eng, err := b.instanceOf(rec)
	if err != nil {
		return
	}
	var p provisioners.Progress
	if br.SecretName == "" {
		// The bind that made this record stopped before recording what it
		// issued (a crash or a cancelled request): there is nothing to
		// wait for.
		p = provisioners.Progress{State: provisioners.Failed, Description: "the bind was interrupted before its credentials were recorded; unbind and bind again"}
	} else {
		p, err = eng.Binder.Ready(ctx, inst, resultOf(br))
	}
	if err != nil {
		p = provisioners.Progress{State: provisioners.InProgress, Description: "checking credentials: " + err.Error()}
	}
	if p.State == provisioners.InProgress && b.now().After(br.Operation.Deadline) {
		p = provisioners.Progress{State: provisioners.Failed, Description: "credentials did not become usable in time: " + p.Description}
	}
	br.Operation.State, br.Operation.Description = p.State, p.Description
	if err := b.Store.UpdateBinding(ctx, br); err != nil {
		b.Log.Debug("record binding progress", zap.String("binding", br.ID), zap.Error(err))
	}
}
