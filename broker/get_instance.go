package broker

import (
	"context"
	"errors"

	"github.com/pivotal-cf/brokerapi/v12/domain"
	"github.com/strata-dev/strata/provisioners"
)

// GetInstance returns the instance as the platform asked for it.
func (b *Broker) GetInstance(ctx context.Context, id string, _ domain.FetchInstanceDetails) (domain.GetInstanceDetailsSpec, error) {
	rec, err := b.Store.GetInstance(ctx, id)
	if errors.Is(err, ErrNotFound) || (err == nil && rec.Deleted) {
		return domain.GetInstanceDetailsSpec{}, notFound("instance " + id + " does not exist")
	}
	if err != nil {
		return domain.GetInstanceDetailsSpec{}, internal(err.Error())
	}
	op := rec.Operation
	switch {
	case op.Type == OpProvision && op.State != provisioners.Succeeded:
		return domain.GetInstanceDetailsSpec{}, notFound("instance " + id + " is being provisioned")
	case op.Type == OpUpdate && op.State == provisioners.InProgress:
		return domain.GetInstanceDetailsSpec{}, concurrencyError("instance " + id + " is being updated")
	}
	return domain.GetInstanceDetailsSpec{
		ServiceID: rec.ServiceID, PlanID: rec.PlanID, DashboardURL: rec.DashboardURL, Parameters: rec.Parameters,
	}, nil
}
