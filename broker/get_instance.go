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
	if d := b.drillAttributes(ctx, rec, inst); d != nil {
		attrs["drills"] = d
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

// drillAttributes are an instance's restore drills as GET instance shows
// them (plans with a drill only): whether it is drilled (its parameter
// and the broker's configuration), at what interval, and its last drill
// (from the results ConfigMap, which holds no secrets; left out, and
// logged, when it cannot be read).
func (b *Broker) drillAttributes(ctx context.Context, rec *InstanceRecord, inst provisioners.Instance) map[string]any {
	if inst.Plan.Postgres == nil || inst.Plan.Postgres.Drill == nil {
		return nil
	}
	var override time.Duration
	if b.Drills != nil {
		override = b.Drills.Opts.Interval
	}
	s := instanceDrill(inst.Plan.Postgres.Drill, inst.Params, override)
	out := map[string]any{
		"enabled":          s.Enabled && b.Drills != nil,
		"interval_seconds": int64(s.Interval.Seconds()),
		"last_drill":       nil,
	}
	if b.Drills == nil || !s.Enabled {
		return out
	}
	results, err := b.Drills.Results(ctx)
	if err != nil {
		b.logger(ctx).Warn("read the drill results", zap.String("instance", rec.ID), zap.Error(err))
		delete(out, "last_drill")
		return out
	}
	if r, ok := results[rec.ID]; ok {
		out["last_drill"] = lastDrillAttributes(r)
	}
	return out
}

// lastDrillAttributes is a drill result as GET instance shows it.
func lastDrillAttributes(r DrillResult) map[string]any {
	ts := func(t time.Time) any {
		if t.IsZero() {
			return nil
		}
		return t.UTC().Format(time.RFC3339)
	}
	out := map[string]any{
		"started":      ts(r.Started),
		"finished":     ts(r.Finished),
		"succeeded":    r.Succeeded,
		"last_success": ts(r.LastSuccess),
		"drills":       r.Drills,
		"failures":     r.Failures,
	}
	if r.Succeeded {
		out["rpo_seconds"], out["rto_seconds"] = r.RPOSeconds, r.RTOSeconds
		out["point_in_time"], out["target"] = r.PointInTime, ts(r.Target)
	} else {
		out["failed_step"], out["error"] = r.FailedStep, r.Error
	}
	return out
}
