package broker

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/pivotal-cf/brokerapi/v12/domain"
	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
	"go.uber.org/zap"
)

// Provision creates an instance: records it, applies its objects and
// answers 202; repeats of the same request answer as the spec says.
func (b *Broker) Provision(ctx context.Context, id string, d domain.ProvisionDetails, async bool) (domain.ProvisionedServiceSpec, error) {
	return b.provision(ctx, id, d, async, 0)
}

// guardRetries bounds how often a provision checks its tenant's limits
// again because other provisions of the tenant were checked at the same
// moment.
const guardRetries = 8

func (b *Broker) provision(ctx context.Context, id string, d domain.ProvisionDetails, async bool, attempt int) (domain.ProvisionedServiceSpec, error) {
	svc, plan, err := b.Catalog.Find(d.ServiceID, d.PlanID)
	if err != nil {
		return domain.ProvisionedServiceSpec{}, badRequest(err.Error())
	}
	if !async {
		return domain.ProvisionedServiceSpec{}, asyncRequired()
	}
	if err := b.checkMaintenance(d.MaintenanceInfo); err != nil {
		return domain.ProvisionedServiceSpec{}, err
	}
	params, err := decodeParams(d.RawParameters)
	if err != nil {
		return domain.ProvisionedServiceSpec{}, err
	}
	if err := b.Validator.Validate(plan, catalog.KindProvision, params); err != nil {
		return domain.ProvisionedServiceSpec{}, invalidParameters(err)
	}
	tenant, err := b.Tenancy.Resolve(ctx, d.RawContext, d.OrganizationGUID, d.SpaceGUID)
	if err != nil {
		return domain.ProvisionedServiceSpec{}, err
	}
	eng := b.Engines[svc.Engine]
	restore, err := b.restoreSource(ctx, id, svc, eng, params)
	if err != nil {
		return domain.ProvisionedServiceSpec{}, err
	}
	copyOf, err := b.copySource(ctx, id, svc, eng, tenant.Namespace, params)
	if err != nil {
		return domain.ProvisionedServiceSpec{}, err
	}
	rec := &InstanceRecord{
		ID: id, ServiceID: svc.ID, PlanID: plan.ID, Parameters: params, Context: d.RawContext,
		Namespace: tenant.Namespace, Name: provisioners.ResourceName(eng.Prefix, id), Meshed: tenant.Meshed,
		MaintenanceInfo: b.Catalog.MaintenanceVersion, Created: b.now(),
		Operation: newOperation(OpProvision, b.now(), plan), Restore: restore, Copy: copyOf,
	}
	rec.DashboardURL = b.dashboardURL(rec)
	inst, _, _ := b.instanceOf(rec)
	want, err := b.desiredOf(inst, eng)
	if err != nil {
		return domain.ProvisionedServiceSpec{}, paramError(err)
	}
	if pc, ok := eng.Provisioner.(provisioners.ProvisionChecker); ok {
		if err := pc.CheckProvision(ctx, inst); err != nil {
			return domain.ProvisionedServiceSpec{}, paramError(err)
		}
	}
	// The record names every object before any is applied, so nothing
	// applied is ever unknown to deprovision; it is claimed while this
	// request applies them.
	rec.Objects, rec.AppliedHash, rec.AppliedAt = objectRefs(want.objects), want.hash, b.now()
	b.claim(&rec.Operation)
	var guard *TenantGuard
	switch _, err := b.Store.GetInstance(ctx, id); {
	case errors.Is(err, ErrNotFound):
		// A new instance must fit the tenant's limits and quotas (a
		// repeat was counted when it was new).
		if guard, err = b.checkTenant(ctx, inst, eng, nil); err != nil {
			return domain.ProvisionedServiceSpec{}, err
		}
	case err != nil:
		// Fail closed: an unreadable record must not skip the limits.
		return domain.ProvisionedServiceSpec{}, internal(err.Error())
	}

	switch err := b.Store.CreateInstance(ctx, rec); {
	case errors.Is(err, ErrConflict):
		existing, err := b.Store.GetInstance(ctx, id)
		if err != nil {
			return domain.ProvisionedServiceSpec{}, internal("read instance: " + err.Error())
		}
		if existing.Deleted {
			// A deprovisioned id may be provisioned again.
			if err := b.Store.DeleteInstance(ctx, existing); err != nil {
				return domain.ProvisionedServiceSpec{}, concurrencyError("the instance is changing; retry")
			}
			return b.provision(ctx, id, d, async, attempt)
		}
		return b.repeatProvision(ctx, existing, rec, inst, eng, want)
	case err != nil:
		return domain.ProvisionedServiceSpec{}, internal(err.Error())
	}
	if guard != nil {
		if err := b.Store.BumpTenantGuard(ctx, guard); err != nil {
			// Another change of the tenant was checked at the same moment:
			// take the record back and check again, counting it.
			if derr := b.Store.DeleteInstance(ctx, rec); derr != nil {
				return domain.ProvisionedServiceSpec{}, internal("withdrawing a provision to check the tenant's limits again: " + derr.Error())
			}
			if !errors.Is(err, ErrConflict) {
				return domain.ProvisionedServiceSpec{}, internal(err.Error())
			}
			if attempt+1 >= guardRetries {
				return domain.ProvisionedServiceSpec{}, concurrencyError("too many changes of this tenant's instances at once; retry")
			}
			return b.provision(ctx, id, d, async, attempt+1)
		}
	}
	// A Cloud Foundry space's namespace is created only now that every
	// check has passed; a refusal takes the record back (a 4xx changes
	// nothing).
	if err := b.Tenancy.Ensure(ctx, tenant); err != nil {
		if derr := b.Store.DeleteInstance(ctx, rec); derr != nil {
			b.logger(ctx).Warn("withdraw the record of a refused provision", zap.String("instance", id), zap.Error(derr))
		}
		return domain.ProvisionedServiceSpec{}, tenantError(err)
	}
	b.logger(ctx).Info("provisioning", zap.String("instance", id), zap.String("plan", plan.Name), zap.String("namespace", rec.Namespace))
	if err := b.startInstance(ctx, rec, inst, eng, want); err != nil {
		return domain.ProvisionedServiceSpec{}, err
	}
	return domain.ProvisionedServiceSpec{IsAsync: true, OperationData: rec.Operation.ID, DashboardURL: rec.DashboardURL}, nil
}

// startInstance does a provision's first work: the credential source's
// setup, then the baseline and the instance's objects. A failure is
// recorded on the operation and answered as an internal error.
func (b *Broker) startInstance(ctx context.Context, rec *InstanceRecord, inst provisioners.Instance, eng Engine, want desired) error {
	if err := eng.Binder.Prepare(ctx, inst); err != nil {
		var pe *provisioners.ParameterError
		if errors.As(err, &pe) {
			// A parameter only I/O could check (the seed's ConfigMap is
			// missing): refused with 400, and a 4xx changes nothing, so
			// the record is taken back, as for a refused namespace.
			if derr := b.Store.DeleteInstance(ctx, rec); derr != nil {
				b.logger(ctx).Warn("withdraw the record of a refused provision", zap.String("instance", rec.ID), zap.Error(derr))
			}
			return paramError(err)
		}
		b.failOperation(ctx, rec, "could not prepare the instance's credentials: "+err.Error())
		return internal("could not prepare the instance's credentials: " + err.Error())
	}
	if err := b.applyDesired(ctx, want); err != nil {
		b.failOperation(ctx, rec, "could not create the instance's objects: "+err.Error())
		var te *provisioners.TerminatingError
		if errors.As(err, &te) {
			// An earlier instance of this id is still going away.
			return concurrencyError(err.Error())
		}
		return internal("could not create the instance's objects: " + err.Error())
	}
	return nil
}

// repeatProvision answers a PUT for an id that exists: the same request
// gets the state of the first (202 in progress, 200 done), a different one
// 409, and a failed provision is retried.
func (b *Broker) repeatProvision(ctx context.Context, existing, asked *InstanceRecord, inst provisioners.Instance, eng Engine, want desired) (domain.ProvisionedServiceSpec, error) {
	same := existing.ServiceID == asked.ServiceID && existing.PlanID == asked.PlanID &&
		existing.Namespace == asked.Namespace && reflect.DeepEqual(existing.Parameters, asked.Parameters)
	if !same {
		return domain.ProvisionedServiceSpec{}, conflict("an instance with this id already exists with another service, plan, namespace or parameters")
	}
	op := existing.Operation
	switch {
	case op.Type == OpProvision && op.State == provisioners.InProgress:
		return domain.ProvisionedServiceSpec{IsAsync: true, OperationData: op.ID, DashboardURL: existing.DashboardURL}, nil
	case op.Type == OpProvision && op.State == provisioners.Failed:
		existing.Operation = asked.Operation
		recordObjects(existing, objectRefs(want.objects))
		existing.AppliedHash, existing.AppliedAt = want.hash, b.now()
		if err := b.Store.UpdateInstance(ctx, existing); err != nil {
			return domain.ProvisionedServiceSpec{}, concurrencyError("the instance is changing; retry")
		}
		if err := b.startInstance(ctx, existing, inst, eng, want); err != nil {
			return domain.ProvisionedServiceSpec{}, err
		}
		return domain.ProvisionedServiceSpec{IsAsync: true, OperationData: existing.Operation.ID, DashboardURL: existing.DashboardURL}, nil
	case op.State == provisioners.InProgress:
		return domain.ProvisionedServiceSpec{}, concurrencyError(fmt.Sprintf("the instance is being %s; retry when it is done", pastTense(op.Type)))
	default:
		return domain.ProvisionedServiceSpec{AlreadyExists: true, DashboardURL: existing.DashboardURL}, nil
	}
}

func pastTense(t OpType) string {
	return map[OpType]string{OpProvision: "provisioned", OpUpdate: "updated", OpDeprovision: "deprovisioned"}[t]
}

func (b *Broker) dashboardURL(r *InstanceRecord) string {
	if b.Page != nil {
		return b.Page.pageURL(r)
	}
	if b.DashboardURL == nil {
		return ""
	}
	var sb strings.Builder
	if err := b.DashboardURL.Execute(&sb, map[string]string{"Namespace": r.Namespace, "Name": r.Name, "InstanceID": r.ID}); err != nil {
		return ""
	}
	return sb.String()
}

// failOperation records a failed operation (best effort: a conflicting
// writer has newer news).
func (b *Broker) failOperation(ctx context.Context, r *InstanceRecord, why string) {
	r.Operation.State = provisioners.Failed
	r.Operation.Description = why
	r.Operation.ClaimedBy, r.Operation.ClaimedUntil = "", time.Time{}
	// Not applied as recorded: the next attempt applies again.
	r.AppliedHash = ""
	if err := b.Store.UpdateInstance(ctx, r); err != nil {
		b.logger(ctx).Warn("record failed operation", zap.String("instance", r.ID), zap.Error(err))
	}
}

// mergeParameters: declarative platforms (Kubernetes: Crossplane, service
// catalogs) send the whole desired set, so it replaces the stored one and
// a removed key goes back to its default; other platforms (Cloud Foundry's
// `cf update-service -c`) send only what changes, so it is merged key by
