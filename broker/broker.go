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
	// Page, when set, serves each instance's page and makes it the
	// dashboard_url (page_handler.go); it excludes DashboardURL.
	Page *InstancePage
	// Now is the clock (tests move it).
	Now func() time.Time
	// Limits are the tenants' limits; Quotas reads a namespace's
	// ResourceQuotas, which provisions and updates must fit.
	Limits TenancyLimits
	Quotas Quotas
	// Baseline configures the objects every tenant namespace with an
	// instance gets (baseline.go).
	Baseline provisioners.BaselineConfig
	// Replica names this broker process in operation claims and in the
	// reconcile loop's leader election.
	Replica string
	// Resync is how long an unchanged desired state goes without being
	// applied again while an operation is in progress (healing hand-made
	// changes); zero means defaultResync.
	Resync time.Duration
	// Drills, when set, runs the scheduled restore drills beside the
	// reconcile loop (drill.go).
	Drills *Drills
}

const defaultResync = 5 * time.Minute

var _ domain.ServiceBroker = (*Broker)(nil)

// logger is the request's logger (request, instance and binding ids; see
// LoggerFrom), or the broker's outside a request.
func (b *Broker) logger(ctx context.Context) *zap.Logger {
	if l := requestLogger(ctx); l != nil {
		return l
	}
	return b.Log
}

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
		Params: r.Parameters, Meshed: r.Meshed, Restore: r.Restore, Copy: r.Copy,
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
	var pe *provisioners.ParameterError
	if errors.As(err, &pe) {
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
