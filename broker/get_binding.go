package broker

import (
	"context"
	"errors"

	"github.com/pivotal-cf/brokerapi/v12/domain"
	"github.com/strata-dev/strata/provisioners"
)

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
