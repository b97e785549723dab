// Package broker implements the Open Service Broker API v2.17 on top of
// brokerapi: instances and bindings whose state lives in Kubernetes
// (store.go), tenants from the request context (tenant.go), parameters
// checked against the plan schemas, and the engines of provisioners/ and
// binding/ doing the work.
//
// Every operation on an instance is asynchronous: provision, update and
// deprovision record the operation and apply (or delete) the objects, and
// each last_operation poll re-applies and re-reads them, so any broker
// replica can answer any poll and a crash mid-operation heals on the next
// poll.
package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"text/template"
	"time"

	"github.com/pivotal-cf/brokerapi/v12/domain"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/binding"
	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
)

// Kube is the object I/O the broker needs (provisioners.Kube has it).
type Kube interface {
	Apply(ctx context.Context, objs []*unstructured.Unstructured) error
	Observe(ctx context.Context, refs []provisioners.Ref) (map[provisioners.Ref]*unstructured.Unstructured, error)
	Delete(ctx context.Context, ref provisioners.Ref) error
	Get(ctx context.Context, ref provisioners.Ref) (*unstructured.Unstructured, error)
}

// Engine is one service's provisioner and binder.
type Engine struct {
	Provisioner provisioners.Provisioner
	Binder      binding.Binder
	// Prefix starts the names of the engine's objects ("pg-").
	Prefix string
}

// Broker is the OSB service broker.
type Broker struct {
	Catalog   *catalog.Catalog
	Validator *catalog.Validator
	Store     *Store
	Tenancy   *Tenancy
	Kube      Kube
	Engines   map[catalog.Engine]Engine
	Log       *zap.Logger
	// DashboardURL, when set, renders an instance's dashboard_url from
	// {{.Namespace}}, {{.Name}} and {{.InstanceID}} (e.g. a Grafana link).
	DashboardURL *template.Template
	// Now is the clock (tests move it).
	Now func() time.Time
	// Limits are the tenants' limits; Quotas reads a namespace's
	// ResourceQuotas, which provisions and updates must fit.
	Limits TenancyLimits
	Quotas Quotas
	// Baseline configures the objects every tenant namespace with an
	// instance gets (baseline.go).
	Baseline provisioners.BaselineConfig
}

var _ domain.ServiceBroker = (*Broker)(nil)

func (b *Broker) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

// Services is the catalog in brokerapi's types.
func (b *Broker) Services(context.Context) ([]domain.Service, error) {
	return b.Catalog.OSB(), nil
}

// instanceOf rebuilds the provisioner's view of a record.
func (b *Broker) instanceOf(r *InstanceRecord) (provisioners.Instance, Engine, error) {
	svc, plan, err := b.Catalog.Find(r.ServiceID, r.PlanID)
	if err != nil {
		return provisioners.Instance{}, Engine{}, fmt.Errorf("instance %s refers to a service or plan no longer in the catalog: %w", r.ID, err)
	}
	eng, ok := b.Engines[svc.Engine]
	if !ok {
		return provisioners.Instance{}, Engine{}, fmt.Errorf("no engine for service %s", svc.Name)
	}
	inst := provisioners.Instance{
		ID: r.ID, Name: r.Name, Namespace: r.Namespace, Service: svc, Plan: plan,
		Params: r.Parameters, Meshed: r.Meshed,
	}
	if r.Operation.Type == OpUpdate && r.Operation.State == provisioners.InProgress {
		inst.UpdatedAt = r.Operation.Started
	}
	return inst, eng, nil
}

func newOperation(t OpType, now time.Time, plan *catalog.Plan) Operation {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return Operation{
		Type: t, ID: string(t) + "-" + hex.EncodeToString(b), State: provisioners.InProgress,
		Started: now, Deadline: now.Add(time.Duration(plan.MaximumPollingDuration) * time.Second),
	}
}

// decodeParams reads the parameters object; absent means empty.
func decodeParams(raw json.RawMessage) (map[string]any, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return map[string]any{}, nil
	}
	var p map[string]any
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, badRequest("parameters must be a JSON object: " + err.Error())
	}
	if p == nil {
		p = map[string]any{}
	}
	return p, nil
}

// paramError turns a builder or validation error into a 400 naming the
// parameter, and anything else into a 500.
func paramError(err error) error {
	var pe *binding.ParameterError
	if errors.As(err, &pe) || strings.HasPrefix(err.Error(), "parameters") || strings.HasPrefix(err.Error(), "invalid parameters") {
		return invalidParameters(err)
	}
	return internal(err.Error())
}

func (b *Broker) checkMaintenance(mi *domain.MaintenanceInfo) error {
	if mi == nil || mi.Version == "" || mi.Version == b.Catalog.MaintenanceVersion {
		return nil
	}
	return unprocessable("MaintenanceInfoConflict", fmt.Errorf(
		"maintenance_info.version %s does not match the catalog's %s; fetch the catalog again", mi.Version, b.Catalog.MaintenanceVersion))
}

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
	rec := &InstanceRecord{
		ID: id, ServiceID: svc.ID, PlanID: plan.ID, Parameters: params, Context: d.RawContext,
		Namespace: tenant.Namespace, Name: provisioners.ResourceName(eng.Prefix, id), Meshed: tenant.Meshed,
		MaintenanceInfo: b.Catalog.MaintenanceVersion, Created: b.now(),
		Operation: newOperation(OpProvision, b.now(), plan),
	}
	rec.DashboardURL = b.dashboardURL(rec)
	inst, _, _ := b.instanceOf(rec)
	objs, err := eng.Provisioner.Build(inst)
	if err != nil {
		return domain.ProvisionedServiceSpec{}, paramError(err)
	}
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
		return b.repeatProvision(ctx, existing, rec, inst, eng, objs)
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
			b.Log.Warn("withdraw the record of a refused provision", zap.String("instance", id), zap.Error(derr))
		}
		return domain.ProvisionedServiceSpec{}, tenantError(err)
	}
	b.Log.Info("provisioning", zap.String("instance", id), zap.String("plan", plan.Name), zap.String("namespace", rec.Namespace))
	if err := b.ensureBaseline(ctx, rec.Namespace, rec.Meshed); err != nil {
		b.failOperation(ctx, rec, "could not prepare the tenant namespace: "+err.Error())
		return domain.ProvisionedServiceSpec{}, internal("could not prepare the tenant namespace: " + err.Error())
	}
	if err := eng.Binder.Prepare(ctx, inst); err != nil {
		b.failOperation(ctx, rec, "could not prepare the instance's credentials: "+err.Error())
		return domain.ProvisionedServiceSpec{}, internal("could not prepare the instance's credentials: " + err.Error())
	}
	if err := b.Kube.Apply(ctx, objs); err != nil {
		b.failOperation(ctx, rec, "could not create the instance's objects: "+err.Error())
		return domain.ProvisionedServiceSpec{}, internal("could not create the instance's objects: " + err.Error())
	}
	return domain.ProvisionedServiceSpec{IsAsync: true, OperationData: rec.Operation.ID, DashboardURL: rec.DashboardURL}, nil
}

// repeatProvision answers a PUT for an id that exists: the same request
// gets the state of the first (202 in progress, 200 done), a different one
// 409, and a failed provision is retried.
func (b *Broker) repeatProvision(ctx context.Context, existing, asked *InstanceRecord, inst provisioners.Instance, eng Engine, objs []*unstructured.Unstructured) (domain.ProvisionedServiceSpec, error) {
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
		if err := b.Store.UpdateInstance(ctx, existing); err != nil {
			return domain.ProvisionedServiceSpec{}, concurrencyError("the instance is changing; retry")
		}
		if err := b.ensureBaseline(ctx, existing.Namespace, existing.Meshed); err != nil {
			b.failOperation(ctx, existing, "could not prepare the tenant namespace: "+err.Error())
			return domain.ProvisionedServiceSpec{}, internal("could not prepare the tenant namespace: " + err.Error())
		}
		if err := eng.Binder.Prepare(ctx, inst); err != nil {
			b.failOperation(ctx, existing, "could not prepare the instance's credentials: "+err.Error())
			return domain.ProvisionedServiceSpec{}, internal("could not prepare the instance's credentials: " + err.Error())
		}
		if err := b.Kube.Apply(ctx, objs); err != nil {
			b.failOperation(ctx, existing, "could not create the instance's objects: "+err.Error())
			return domain.ProvisionedServiceSpec{}, internal("could not create the instance's objects: " + err.Error())
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
	if err := b.Store.UpdateInstance(ctx, r); err != nil {
		b.Log.Warn("record failed operation", zap.String("instance", r.ID), zap.Error(err))
	}
}

// mergeParameters: declarative platforms (Kubernetes: Crossplane, service
// catalogs) send the whole desired set, so it replaces the stored one and
// a removed key goes back to its default; other platforms (Cloud Foundry's
// `cf update-service -c`) send only what changes, so it is merged key by
// key, and a key set to null goes back to its default.
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
		if strings.HasPrefix(err.Error(), "parameters.") {
			return domain.UpdateServiceSpec{}, unprocessable("UnsupportedChange", err)
		}
		return domain.UpdateServiceSpec{}, paramError(err)
	}
	maintenance := d.MaintenanceInfo != nil && d.MaintenanceInfo.Version != "" && d.MaintenanceInfo.Version != rec.MaintenanceInfo
	if newPlan.ID == rec.PlanID && reflect.DeepEqual(params, rec.Parameters) && !maintenance {
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
	objs, err := eng.Provisioner.Build(updated)
	if err != nil {
		return domain.UpdateServiceSpec{}, paramError(err)
	}
	prevPlan, prevParams := rec.PlanID, rec.Parameters
	prevMaintenance, prevOperation := rec.MaintenanceInfo, rec.Operation
	rec.PlanID, rec.Parameters = newPlan.ID, params
	rec.MaintenanceInfo = b.Catalog.MaintenanceVersion
	rec.Operation = newOperation(OpUpdate, b.now(), newPlan)
	rec.Operation.PreviousPlanID = prevPlan
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
			if rerr := b.Store.UpdateInstance(ctx, rec); rerr != nil {
				b.Log.Error("restore the record of an update withdrawn for the tenant's limits", zap.String("instance", id), zap.Error(rerr))
			}
			return domain.UpdateServiceSpec{}, concurrencyError("another change of this tenant's instances was being checked against its limits at the same moment; retry")
		}
	}
	b.Log.Info("updating", zap.String("instance", id), zap.String("plan", newPlan.Name))
	if err := b.Kube.Apply(ctx, objs); err != nil {
		// Nothing may change on a failed update: put the old objects and
		// the old record back.
		if oldObjs, berr := eng.Provisioner.Build(old); berr == nil {
			_ = b.Kube.Apply(ctx, oldObjs)
		}
		rec.PlanID, rec.Parameters = prevPlan, prevParams
		rec.Operation.State = provisioners.Failed
		rec.Operation.Description = "the update could not be applied and was rolled back: " + err.Error()
		_ = b.Store.UpdateInstance(ctx, rec)
		return domain.UpdateServiceSpec{}, internal("the update could not be applied and was rolled back: " + err.Error())
	}
	b.prune(ctx, old, eng, objs)
	return domain.UpdateServiceSpec{IsAsync: true, OperationData: rec.Operation.ID, DashboardURL: rec.DashboardURL}, nil
}

// Deprovision deletes the instance's objects, except those kept for the
// backups' retention, and revokes its bindings.
func (b *Broker) Deprovision(ctx context.Context, id string, d domain.DeprovisionDetails, async bool) (domain.DeprovisionServiceSpec, error) {
	rec, err := b.Store.GetInstance(ctx, id)
	if errors.Is(err, ErrNotFound) || (err == nil && rec.Deleted) {
		return domain.DeprovisionServiceSpec{}, gone
	}
	if err != nil {
		return domain.DeprovisionServiceSpec{}, internal(err.Error())
	}
	if !async {
		return domain.DeprovisionServiceSpec{}, asyncRequired()
	}
	if rec.Operation.Type == OpDeprovision && rec.Operation.State == provisioners.InProgress {
		return domain.DeprovisionServiceSpec{IsAsync: true, OperationData: rec.Operation.ID}, nil
	}
	inst, eng, err := b.instanceOf(rec)
	if err != nil {
		return domain.DeprovisionServiceSpec{}, internal(err.Error())
	}
	// A deprovision may cut short a provision or update in progress:
	// deleting is always possible, and platforms rely on it to clean up
	// (orphan mitigation).
	rec.Operation = newOperation(OpDeprovision, b.now(), inst.Plan)
	if err := b.Store.UpdateInstance(ctx, rec); err != nil {
		return domain.DeprovisionServiceSpec{}, concurrencyError("the instance changed while deprovisioning; retry")
	}
	b.Log.Info("deprovisioning", zap.String("instance", id))
	if _, err := b.deprovisionStep(ctx, inst, eng); err != nil {
		// The polls retry; last_operation says what stands in the way.
		b.Log.Warn("deprovision step", zap.String("instance", id), zap.Error(err))
	}
	return domain.DeprovisionServiceSpec{IsAsync: true, OperationData: rec.Operation.ID}, nil
}

// deprovisionStep revokes the bindings, removes the instance from its
// credential source, then deletes its objects, and says whether they are
// all gone. Every part is idempotent, so each poll runs it again until it
// is done.
func (b *Broker) deprovisionStep(ctx context.Context, inst provisioners.Instance, eng Engine) (bool, error) {
	if err := b.unbindAll(ctx, inst, eng); err != nil {
		return false, fmt.Errorf("revoking the instance's bindings: %w", err)
	}
	if err := eng.Binder.Teardown(ctx, inst); err != nil {
		return false, fmt.Errorf("removing the instance's credentials setup: %w", err)
	}
	done, err := b.deleteObjects(ctx, inst, eng)
	if err != nil {
		return false, fmt.Errorf("deleting: %w", err)
	}
	return done, nil
}

// prune deletes what the instance rendered before an update and renders
// no more (a topic the update dropped), except retained objects. CheckUpdate
// has refused whatever would lose data unless the parameters allow it. A
// failure is logged and the object left (it keeps the instance's labels,
// by which an operator finds it).
func (b *Broker) prune(ctx context.Context, before provisioners.Instance, eng Engine, now []*unstructured.Unstructured) {
	old, err := eng.Provisioner.Build(before)
	if err != nil {
		return
	}
	keep := map[provisioners.Ref]bool{}
	for _, o := range now {
		keep[provisioners.RefOf(o)] = true
	}
	for _, o := range old {
		ref := provisioners.RefOf(o)
		if keep[ref] || o.GetAnnotations()[provisioners.AnnotationRetain] == "true" {
			continue
		}
		if err := b.Kube.Delete(ctx, ref); err != nil {
			b.Log.Warn("prune", zap.String("instance", before.ID), zap.String("object", ref.GVK.Kind+" "+ref.Namespace+"/"+ref.Name), zap.Error(err))
		}
	}
}

// deleteObjects deletes what Build renders, except retained objects, and
// says whether all of them are gone.
func (b *Broker) deleteObjects(ctx context.Context, inst provisioners.Instance, eng Engine) (bool, error) {
	objs, err := eng.Provisioner.Build(inst)
	if err != nil {
		return false, err
	}
	var refs []provisioners.Ref
	if l, ok := eng.Provisioner.(provisioners.LeftoverLister); ok {
		refs = append(refs, l.Leftovers(inst)...)
	}
	for _, o := range objs {
		if o.GetAnnotations()[provisioners.AnnotationRetain] == "true" {
			continue
		}
		refs = append(refs, provisioners.RefOf(o))
	}
	// Dependents first: a Pooler or Database without its Cluster only
	// produces errors.
	for i := len(refs) - 1; i >= 0; i-- {
		if err := b.Kube.Delete(ctx, refs[i]); err != nil {
			return false, err
		}
	}
	left, err := b.Kube.Observe(ctx, refs)
	if err != nil {
		return false, err
	}
	for _, o := range left {
		if o != nil {
			return false, nil
		}
	}
	return true, nil
}

func (b *Broker) unbindAll(ctx context.Context, inst provisioners.Instance, eng Engine) error {
	recs, err := b.Store.BindingsOf(ctx, inst.ID)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if err := eng.Binder.Unbind(ctx, inst, resultOf(r)); err != nil {
			return err
		}
		if err := b.Store.DeleteBinding(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

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

// LastOperationResult is a last_operation answer with the 2.17 fields
// brokerapi lacks.
type LastOperationResult struct {
	State            provisioners.State `json:"state"`
	Description      string             `json:"description,omitempty"`
	InstanceUsable   *bool              `json:"instance_usable,omitempty"`
	UpdateRepeatable *bool              `json:"update_repeatable,omitempty"`
}

// LastOperation implements brokerapi's interface; the HTTP layer uses
// InstanceOperation for the 2.17 fields.
func (b *Broker) LastOperation(ctx context.Context, id string, d domain.PollDetails) (domain.LastOperation, error) {
	r, err := b.InstanceOperation(ctx, id, d.OperationData)
	return domain.LastOperation{State: domain.LastOperationState(r.State), Description: r.Description}, err
}

// InstanceOperation reports (and advances) the instance's last operation.
func (b *Broker) InstanceOperation(ctx context.Context, id, operation string) (LastOperationResult, error) {
	rec, err := b.Store.GetInstance(ctx, id)
	if errors.Is(err, ErrNotFound) {
		// Only a deprovision may find the instance gone, and then that is
		// its success (410); otherwise the instance never existed.
		if strings.HasPrefix(operation, string(OpDeprovision)) {
			return LastOperationResult{}, gone
		}
		return LastOperationResult{}, notFound("instance " + id + " does not exist")
	}
	if err != nil {
		return LastOperationResult{}, internal(err.Error())
	}
	if rec.Operation.State == provisioners.InProgress {
		b.advance(ctx, rec)
	}
	op := rec.Operation
	res := LastOperationResult{State: op.State, Description: op.Description}
	if op.State == provisioners.Failed && (op.Type == OpUpdate || op.Type == OpDeprovision) {
		// A failed update leaves the instance as it was (rolled back or not
		// yet applied); a failed deprovision leaves it partly deleted.
		usable := op.Type == OpUpdate
		res.InstanceUsable = &usable
		if op.Type == OpUpdate {
			repeatable := true
			res.UpdateRepeatable = &repeatable
		}
	}
	return res, nil
}

// advance re-applies (or re-deletes) an in-progress operation's objects,
// reads the operator's status and records the outcome.
func (b *Broker) advance(ctx context.Context, rec *InstanceRecord) {
	inst, eng, err := b.instanceOf(rec)
	if err != nil {
		rec.Operation.State, rec.Operation.Description = provisioners.Failed, err.Error()
		_ = b.Store.UpdateInstance(ctx, rec)
		return
	}
	var progress provisioners.Progress
	switch rec.Operation.Type {
	case OpDeprovision:
		done, err := b.deprovisionStep(ctx, inst, eng)
		switch {
		case err != nil:
			progress = provisioners.Progress{State: provisioners.InProgress, Description: err.Error()}
		case done:
			progress = provisioners.Progress{State: provisioners.Succeeded, Description: "deprovisioned" + retainedNote(inst)}
			rec.Deleted = true
		default:
			progress = provisioners.Progress{State: provisioners.InProgress, Description: "waiting for the operators to remove the instance's resources"}
		}
	default:
		if err := b.ensureBaseline(ctx, inst.Namespace, inst.Meshed); err != nil {
			progress = provisioners.Progress{State: provisioners.InProgress, Description: err.Error()}
			break
		}
		if rec.Operation.Type == OpProvision {
			// A provision cut short (a crash, a cancelled request) before
			// its credentials' setup is completed here; Prepare is
			// idempotent.
			if err := eng.Binder.Prepare(ctx, inst); err != nil {
				progress = provisioners.Progress{State: provisioners.InProgress, Description: "preparing credentials: " + err.Error()}
				break
			}
		}
		progress = b.assess(ctx, inst, eng)
		if progress.State == provisioners.Succeeded {
			// The credential source joins once the database is up.
			if err := eng.Binder.Configure(ctx, inst); err != nil {
				progress = provisioners.Progress{State: provisioners.InProgress,
					Description: progress.Description + "; setting up credentials: " + err.Error()}
			}
		}
	}
	if progress.State == provisioners.InProgress && b.now().After(rec.Operation.Deadline) {
		progress = provisioners.Progress{State: provisioners.Failed, Description: fmt.Sprintf(
			"did not finish within %s (maximum polling duration of plan %s); last status: %s",
			rec.Operation.Deadline.Sub(rec.Operation.Started).Round(time.Second), inst.Plan.Name, progress.Description)}
	}
	if progress.State == rec.Operation.State && progress.Description == rec.Operation.Description {
		return
	}
	rec.Operation.State, rec.Operation.Description = progress.State, progress.Description
	if err := b.Store.UpdateInstance(ctx, rec); err != nil {
		// Another replica advanced it; our reading is still a fair answer.
		b.Log.Debug("record progress", zap.String("instance", rec.ID), zap.Error(err))
		return
	}
	if rec.Deleted {
		// Only once the record says so, so the tenant's other instances
		// are counted against an up-to-date list.
		if err := b.releaseBaseline(ctx, rec.Namespace); err != nil {
			b.Log.Warn("remove the tenant baseline", zap.String("namespace", rec.Namespace), zap.Error(err))
		}
	}
}

func (b *Broker) assess(ctx context.Context, inst provisioners.Instance, eng Engine) provisioners.Progress {
	objs, err := eng.Provisioner.Build(inst)
	if err != nil {
		return provisioners.Progress{State: provisioners.Failed, Description: err.Error()}
	}
	if err := b.Kube.Apply(ctx, objs); err != nil {
		return provisioners.Progress{State: provisioners.InProgress, Description: "applying: " + err.Error()}
	}
	observed, err := b.Kube.Observe(ctx, eng.Provisioner.Watched(inst))
	if err != nil {
		return provisioners.Progress{State: provisioners.InProgress, Description: "reading status: " + err.Error()}
	}
	return eng.Provisioner.Assess(inst, observed, b.now())
}

func retainedNote(inst provisioners.Instance) string {
	if pg := inst.Plan.Postgres; pg != nil && pg.Backup != nil {
		return "; backups are kept for their retention period so the instance can be restored"
	}
	return ""
}
