package broker

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

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
	spec := domain.GetInstanceDetailsSpec{
		ServiceID: rec.ServiceID, PlanID: rec.PlanID, DashboardURL: rec.DashboardURL, Parameters: rec.Parameters,
	}
	if attrs := b.restoreAttributes(ctx, rec); attrs != nil {
		// OSB 2.17's metadata.attributes, not parameters: a declarative
		// platform compares parameters with what it sent.
		spec.Metadata.Attributes = attrs
	}
	return spec, nil
}

// restoreAttributes are the attributes an instance with backups shows:
// its restorable window (null ends while nothing is restorable yet) and,
// for a restored instance, what it was restored from. nil for instances
// without backups. The window is left out, and logged, when its objects
// cannot be read: GET instance still answers.
func (b *Broker) restoreAttributes(ctx context.Context, rec *InstanceRecord) map[string]any {
	inst, eng, err := b.instanceOf(rec)
	if err != nil {
		return nil
	}
	r, ok := eng.Provisioner.(provisioners.Restorer)
	if !ok || len(r.WindowRefs(inst)) == 0 {
		return nil
	}
	attrs := map[string]any{}
	if w, ok, err := b.restorableWindow(ctx, rec, inst, r); err != nil {
		b.logger(ctx).Warn("read the restorable window", zap.String("instance", rec.ID), zap.Error(err))
	} else {
		attrs["restorable_window"] = windowAttributes(w, ok)
	}
	if src := rec.Restore; src != nil {
		from := map[string]any{"instance_id": src.InstanceID, "to_time": "latest"}
		if !src.TargetTime.IsZero() {
			from["to_time"] = src.TargetTime.UTC().Format(time.RFC3339Nano)
		}
		attrs["restored_from"] = from
	}
	return attrs
}
