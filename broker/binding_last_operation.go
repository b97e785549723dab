package broker

import (
	"context"
	"errors"
	"strings"

	"github.com/pivotal-cf/brokerapi/v12/domain"
	"go.uber.org/zap"

	"github.com/strata-dev/strata/provisioners"
)

// LastBindingOperation reports (and advances) an asynchronous bind. A
// binding that is gone answers 410 to the poll of an unbind (the spec's
// success for asynchronous deletes) and 404 otherwise.
func (b *Broker) LastBindingOperation(ctx context.Context, instanceID, bindingID string, d domain.PollDetails) (domain.LastOperation, error) {
	br, err := b.Store.GetBinding(ctx, bindingID)
	if errors.Is(err, ErrNotFound) || (err == nil && br.InstanceID != instanceID) {
		if strings.HasPrefix(d.OperationData, string(OpUnbind)) {
			return domain.LastOperation{}, bindingGone
		}
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

// advanceBinding moves an in-progress bind on: an interrupted one is taken
// over and run again, one whose credentials were issued is checked for
// readiness. The reconcile loop and polls both call it.
func (b *Broker) advanceBinding(ctx context.Context, br *BindingRecord) {
	rec, err := b.liveInstance(ctx, br.InstanceID)
	if err != nil {
		return
	}
	inst, eng, err := b.instanceOf(rec)
	if err != nil {
		return
	}
	if br.Operation.claimed(b.now()) {
		// A request is issuing the credentials right now.
		return
	}
	if b.interrupted(br) {
		if b.now().After(br.Operation.Deadline) {
			if err := eng.Binder.Forget(ctx, inst, br.ID); err != nil {
				b.logger(ctx).Warn("clean up an interrupted bind", zap.String("binding", br.ID), zap.Error(err))
				return
			}
			b.failBinding(ctx, br, "the bind was interrupted and could not be completed in time; unbind and bind again")
			return
		}
		if _, err := b.takeOver(ctx, br, inst, eng, true); err != nil {
			b.logger(ctx).Info("interrupted bind not completed yet", zap.String("binding", br.ID), zap.Error(err))
		}
		return
	}
	p, err := eng.Binder.Ready(ctx, inst, resultOf(br))
	if err != nil {
		p = provisioners.Progress{State: provisioners.InProgress, Description: "checking credentials: " + err.Error()}
	}
	if p.State == provisioners.InProgress && b.now().After(br.Operation.Deadline) {
		p = provisioners.Progress{State: provisioners.Failed, Description: "credentials did not become usable in time: " + p.Description}
	}
	if p.State == br.Operation.State && p.Description == br.Operation.Description {
		return
	}
	br.Operation.State, br.Operation.Description = p.State, p.Description
	if err := b.Store.UpdateBinding(ctx, br); err != nil {
		// Written by someone else since it was read: answer what is stored
		// (GET binding reads the record), as an instance's poll does.
		b.logger(ctx).Debug("record binding progress", zap.String("binding", br.ID), zap.Error(err))
		if stored, gerr := b.Store.GetBinding(ctx, br.ID); gerr == nil {
			*br = *stored
		} else {
			br.Operation.State, br.Operation.Description = provisioners.InProgress, "recording progress: "+err.Error()
		}
	}
}
