package broker

import (
	"context"
	"errors"

	"github.com/pivotal-cf/brokerapi/v12/domain"
	"go.uber.org/zap"
)

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
	// What was recorded, then whatever else carries the binding's names
	// (a bind interrupted before it recorded its logins).
	if err := errors.Join(eng.Binder.Unbind(ctx, inst, resultOf(br)), eng.Binder.Forget(ctx, inst, br.ID)); err != nil {
		return domain.UnbindSpec{}, internal("revoke credentials: " + err.Error())
	}
	if err := b.Store.DeleteBinding(ctx, br); err != nil {
		return domain.UnbindSpec{}, concurrencyError("the binding changed while unbinding; retry")
	}
	b.logger(ctx).Info("unbound", zap.String("instance", instanceID), zap.String("binding", bindingID))
	return domain.UnbindSpec{}, nil
}
