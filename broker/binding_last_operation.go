package broker

import (
	"context"
	"errors"

	"github.com/pivotal-cf/brokerapi/v12/domain"
	"github.com/strata-dev/strata/provisioners"
	"go.uber.org/zap"
)

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
