package broker

import (
	"context"
	"errors"

	"github.com/pivotal-cf/brokerapi/v12/domain"
	"github.com/pivotal-cf/brokerapi/v12/domain/apiresponses"
	"go.uber.org/zap"
)

// edgeBroker is the Broker as brokerapi sees it: every error it returns
// is an OSB failure (brokerapi answers any other error with a 500 whose
// body has no error code and carries the raw text, API server URL
// included). The broker's code may return plain errors; they become an
// InternalError here, once, logged in full with the request's logger.
type edgeBroker struct{ *Broker }

var _ domain.ServiceBroker = edgeBroker{}

// atEdge turns an error into what the platform may read.
func atEdge(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var fr *apiresponses.FailureResponse
	if errors.As(err, &fr) {
		return fr
	}
	LoggerFrom(ctx).Error("the broker failed", zap.Error(err))
	return internal(err.Error())
}

func (e edgeBroker) Provision(ctx context.Context, id string, d domain.ProvisionDetails, async bool) (domain.ProvisionedServiceSpec, error) {
	res, err := e.Broker.Provision(ctx, id, d, async)
	return res, atEdge(ctx, err)
}

func (e edgeBroker) Update(ctx context.Context, id string, d domain.UpdateDetails, async bool) (domain.UpdateServiceSpec, error) {
	res, err := e.Broker.Update(ctx, id, d, async)
	return res, atEdge(ctx, err)
}

func (e edgeBroker) Deprovision(ctx context.Context, id string, d domain.DeprovisionDetails, async bool) (domain.DeprovisionServiceSpec, error) {
	res, err := e.Broker.Deprovision(ctx, id, d, async)
	return res, atEdge(ctx, err)
}

func (e edgeBroker) GetInstance(ctx context.Context, id string, d domain.FetchInstanceDetails) (domain.GetInstanceDetailsSpec, error) {
	res, err := e.Broker.GetInstance(ctx, id, d)
	return res, atEdge(ctx, err)
}

func (e edgeBroker) LastOperation(ctx context.Context, id string, d domain.PollDetails) (domain.LastOperation, error) {
	res, err := e.Broker.LastOperation(ctx, id, d)
	return res, atEdge(ctx, err)
}

func (e edgeBroker) Bind(ctx context.Context, instanceID, bindingID string, d domain.BindDetails, async bool) (domain.Binding, error) {
	res, err := e.Broker.Bind(ctx, instanceID, bindingID, d, async)
	return res, atEdge(ctx, err)
}

func (e edgeBroker) Unbind(ctx context.Context, instanceID, bindingID string, d domain.UnbindDetails, async bool) (domain.UnbindSpec, error) {
	res, err := e.Broker.Unbind(ctx, instanceID, bindingID, d, async)
	return res, atEdge(ctx, err)
}

func (e edgeBroker) GetBinding(ctx context.Context, instanceID, bindingID string, d domain.FetchBindingDetails) (domain.GetBindingSpec, error) {
	res, err := e.Broker.GetBinding(ctx, instanceID, bindingID, d)
	return res, atEdge(ctx, err)
}

func (e edgeBroker) LastBindingOperation(ctx context.Context, instanceID, bindingID string, d domain.PollDetails) (domain.LastOperation, error) {
	res, err := e.Broker.LastBindingOperation(ctx, instanceID, bindingID, d)
	return res, atEdge(ctx, err)
}
