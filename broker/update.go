package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/pivotal-cf/brokerapi/v12/domain"
	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
	"go.uber.org/zap"
)

func mergeParameters(platform string, stored, sent map[string]any, sentPresent bool) map[string]any {
	if !sentPresent {
		return stored
	}
	if platform == "kubernetes" {
		return sent
	}
	out := make(map[string]any, len(stored)+len(sent))
	for k, v := range stored {
		out[k] = v
	}
	for k, v := range sent {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = v
	}
	return out
}

func platformOf(raw json.RawMessage) string {
	var c struct {
		Platform string `json:"platform"`
	}
	_ = json.Unmarshal(raw, &c)
	return c.Platform
}

// Update changes plan or parameters in place when that is safe.
func (b *Broker) Update(ctx context.Context, id string, d domain.UpdateDetails, async bool) (domain.UpdateServiceSpec, error) {
	rec, err := b.Store.GetInstance(ctx, id)
	if errors.Is(err, ErrNotFound) || (err == nil && rec.Deleted) {
		return domain.UpdateServiceSpec{}, notFound("instance " + id + " does not exist")
	}
	if err != nil {
		return domain.UpdateServiceSpec{}, internal(err.Error())
	}
	if rec.Operation.State == provisioners.InProgress {
		return domain.UpdateServiceSpec{}, concurrencyError(fmt.Sprintf("the instance is being %s; retry when that is done", pastTense(rec.Operation.Type)))
	}
	if rec.Operation.Type == OpProvision && rec.Operation.State == provisioners.Failed {
		return domain.UpdateServiceSpec{}, unprocessable("InstanceNotReady", errors.New("the instance failed to provision; deprovision it and provision again"))
	}
	if rec.Operation.Type == OpDeprovision {
		// A failed deprovision left the instance partly deleted: applying
		// it again would bring back half of it.
		return domain.UpdateServiceSpec{}, unprocessable("InstanceNotReady", errors.New("the instance's deprovision failed and it is partly deleted; deprovision it again"))
	}
	if d.ServiceID != "" && d.ServiceID != rec.ServiceID {
		return domain.UpdateServiceSpec{}, badRequest("service_id does not match the instance's service")
	}
	if err := b.checkMaintenance(d.MaintenanceInfo); err != nil {
		return domain.UpdateServiceSpec{}, err
	}
	old, eng, err := b.instanceOf(rec)
	if err != nil {
		return domain.UpdateServiceSpec{}, internal(err.Error())
	}
	newPlan := old.Plan
	if d.PlanID != "" && d.PlanID != rec.PlanID {
		_, p, err := b.Catalog.Find(rec.ServiceID, d.PlanID)
		if err != nil {
			return domain.UpdateServiceSpec{}, badRequest(err.Error())
		}
		if err := old.Service.CanUpdate(old.Plan, p); err != nil {
			return domain.UpdateServiceSpec{}, planChangeNotSupported(err)
		}
		newPlan = p
	}
	sent, err := decodeParams(d.RawParameters)
	if err != nil {
		return domain.UpdateServiceSpec{}, err
	}
	params := mergeParameters(platformOf(rec.Context), rec.Parameters, sent, len(d.RawParameters) > 0)
	if err := b.Validator.Validate(newPlan, catalog.KindUpdate, params); err != nil {
		return domain.UpdateServiceSpec{}, invalidParameters(err)
	}
	updated := old
	updated.Plan, updated.Params = newPlan, params
	if err := eng.Provisioner.CheckUpdate(old, updated); err != nil {
		// A change the engine refuses to make in place names the
		// parameter; anything else is the broker's failure.
		if pe := (*provisioners.ParameterError)(nil); errors.As(err, &pe) && strings.HasPrefix(pe.Field, "parameters.") {
			return domain.UpdateServiceSpec{}, unprocessable("UnsupportedChange", err)
		}
		return domain.UpdateServiceSpec{}, paramError(err)
	}
	maintenance := d.MaintenanceInfo != nil && d.MaintenanceInfo.Version != "" && d.MaintenanceInfo.Version != rec.MaintenanceInfo
	// A failed update is repeatable (last_operation says so): a repeat of
	// it is a new attempt even when the record already holds its plan and
	// parameters (it failed after they were applied).
	failedUpdate := rec.Operation.Type == OpUpdate && rec.Operation.State == provisioners.Failed
	if newPlan.ID == rec.PlanID && reflect.DeepEqual(params, rec.Parameters) && !maintenance && !failedUpdate {
		// Nothing changes: a cheap 200, as declarative clients re-send
		// their whole spec.
		return domain.UpdateServiceSpec{}, nil
	}
	if !async {
		return domain.UpdateServiceSpec{}, asyncRequired()
	}
	var before *provisioners.Size
	if sz, ok := eng.Provisioner.(provisioners.Sizer); ok {
		if s, err := sz.Size(old); err == nil {
			before = &s
		}
	}
	guard, err := b.checkTenant(ctx, updated, eng, before)
	if err != nil {
		return domain.UpdateServiceSpec{}, err
	}
	want, err := b.desiredOf(updated, eng)
	if err != nil {
		return domain.UpdateServiceSpec{}, paramError(err)
	}
	prevPlan, prevParams := rec.PlanID, rec.Parameters
	prevMaintenance, prevOperation := rec.MaintenanceInfo, rec.Operation
	rec.PlanID, rec.Parameters = newPlan.ID, params
	rec.MaintenanceInfo = b.Catalog.MaintenanceVersion
	prevObjects, prevHash, prevApplied := slices.Clone(rec.Objects), rec.AppliedHash, rec.AppliedAt
	prevToken, prevDashboard := rec.PageToken, rec.DashboardURL
	if b.Page != nil && fmt.Sprint(params[catalog.DashboardURLGeneration]) != fmt.Sprint(prevParams[catalog.DashboardURLGeneration]) {
		// A new generation replaces the page's token: a leaked link
		// stops working, and the platform gets the new one below.
		rec.PageToken = ""
		rec.DashboardURL = b.dashboardURL(rec)
	}
	rec.Operation = newOperation(OpUpdate, b.now(), newPlan)
	rec.Operation.PreviousPlanID = prevPlan
	b.claim(&rec.Operation)
	recordObjects(rec, objectRefs(want.objects))
	rec.AppliedHash, rec.AppliedAt = want.hash, b.now()
	if err := b.Store.UpdateInstance(ctx, rec); err != nil {
		return domain.UpdateServiceSpec{}, concurrencyError("the instance changed while updating; retry")
	}
	if guard != nil {
		if err := b.Store.BumpTenantGuard(ctx, guard); err != nil {
			// Another change of the tenant was checked at the same
			// moment: nothing was applied yet, so put the record back and
			// let the platform retry (it is then checked with the other
			// change counted).
			rec.PlanID, rec.Parameters, rec.MaintenanceInfo, rec.Operation = prevPlan, prevParams, prevMaintenance, prevOperation
			rec.Objects, rec.AppliedHash, rec.AppliedAt = prevObjects, prevHash, prevApplied
			rec.PageToken, rec.DashboardURL = prevToken, prevDashboard
			if rerr := b.Store.UpdateInstance(ctx, rec); rerr != nil {
				b.logger(ctx).Error("restore the record of an update withdrawn for the tenant's limits", zap.String("instance", id), zap.Error(rerr))
			}
			return domain.UpdateServiceSpec{}, concurrencyError("another change of this tenant's instances was being checked against its limits at the same moment; retry")
		}
	}
	b.logger(ctx).Info("updating", zap.String("instance", id), zap.String("plan", newPlan.Name))
	if err := b.applyDesired(ctx, want); err != nil {
		// Nothing may change on a failed update: put the old objects and
		// the old record back.
		if oldObjs, berr := eng.Provisioner.Build(old); berr == nil {
			_ = b.Kube.Apply(ctx, oldObjs)
		}
		rec.PlanID, rec.Parameters, rec.MaintenanceInfo = prevPlan, prevParams, prevMaintenance
		rec.PageToken, rec.DashboardURL = prevToken, prevDashboard
		rec.Operation.State = provisioners.Failed
		rec.Operation.Description = "the update could not be applied and was rolled back: " + err.Error()
		rec.Operation.ClaimedBy, rec.Operation.ClaimedUntil = "", time.Time{}
		rec.AppliedHash = ""
		_ = b.Store.UpdateInstance(ctx, rec)
		return domain.UpdateServiceSpec{}, internal("the update could not be applied and was rolled back: " + err.Error())
	}
	b.prune(ctx, rec, want.objects)
	return domain.UpdateServiceSpec{IsAsync: true, OperationData: rec.Operation.ID, DashboardURL: rec.DashboardURL}, nil
}
