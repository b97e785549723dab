// Package provisioners is the seam between the broker and the engines. Each
// engine (provisioners/postgres, …) is a pure builder — plan + parameters +
// tenant → Kubernetes objects — plus a pure assessment of the objects the
// upstream operator reports on. All Kubernetes I/O is in kube.go.
package provisioners

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/strata-dev/strata/catalog"
)

// Labels put on everything Strata creates, so a platform engineer can find,
// count and bill it, and so the broker can clean it up.
const (
	LabelManagedBy  = "app.kubernetes.io/managed-by"
	ManagedByStrata = "strata"
	LabelInstanceID = "strata.dev/instance-id"
	LabelBindingID  = "strata.dev/binding-id"
	LabelService    = "strata.dev/service"
	LabelPlan       = "strata.dev/plan"
	LabelTenant     = "strata.dev/tenant"
	// AnnotationRetain marks objects that deprovision leaves in place, such
	// as the backup ObjectStore, which a restore needs until the backups'
	// retention has run out.
	AnnotationRetain = "strata.dev/retain-on-deprovision"
)

// Instance is everything a builder needs to know about a service instance.
type Instance struct {
	ID string
	// Name is the base name of the instance's objects in its namespace.
	Name      string
	Namespace string
	Service   *catalog.Service
	Plan      *catalog.Plan
	// Params are the validated parameters as the platform sent them
	// (defaults are applied by the builders, not stored).
	Params map[string]any
	// Meshed says the namespace has Istio injection or ambient mode on.
	Meshed bool
	// UpdatedAt is when the update being confirmed started; zero when no
	// update is in progress.
	UpdatedAt time.Time
	// Restore is the instance this one is restored from, resolved by the
	// broker from the restore parameter when the instance was provisioned
	// (nil for a new, empty instance). It is resolved once and kept in the
	// broker's record, so rendering stays pure and the same after the
	// source is gone.
	Restore *RestoreSource
	// Copy is the instance this one is a (masked) logical copy of,
	// resolved by the broker from the copy_of parameter at provision and
	// kept in its record, like Restore.
	Copy *CopySource
}

// CopySource is the instance a copy's data is read from, over its
// read-write Service, when the copy is bootstrapped.
type CopySource struct {
	InstanceID string `json:"instanceId"`
	// Name is the source's object base name; the source is always in the
	// copy's namespace.
	Name string `json:"name"`
	// Database is the source's database the copy imports.
	Database string `json:"database"`
	// CASecret names the Secret whose ca.crt signs the source's server
	// certificate: the copy verifies the source (verify-full).
	CASecret string `json:"caSecret"`
}

// CopyRequest is what a copy_of parameter asks for.
type CopyRequest struct {
	FromInstance string
	// Database is the source's database to copy; empty for its first.
	Database string
}

// Copier is implemented by engines whose instances can be provisioned as
// a logical copy of another instance of the same namespace.
type Copier interface {
	// CopyRequest reads the copy parameter; nil when there is none.
	CopyRequest(params map[string]any) (*CopyRequest, error)
	// CopySource completes the request from the source instance, as
	// the broker found it: which database, which CA.
	CopySource(req *CopyRequest, source Instance) (*CopySource, error)
}

// RestoreSource is where a restored instance's data comes from: another
// instance's backups, replayed to a point in time.
type RestoreSource struct {
	InstanceID string `json:"instanceId"`
	// Name and Namespace are the source's object base name and namespace,
	// which name its backups.
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// TargetTime is the point in time to recover to; zero means the end
	// of the archived WAL ("latest").
	TargetTime time.Time `json:"targetTime,omitzero"`
}

// Window is the span of time an instance's backups can restore to, both
// ends included.
type Window struct {
	First, Last time.Time
}

// Contains says whether t is inside the window.
func (w Window) Contains(t time.Time) bool { return !t.Before(w.First) && !t.After(w.Last) }

// RestoreRequest is what a restore parameter asks for.
type RestoreRequest struct {
	FromInstance string
	// ToTime is zero for the latest restorable point.
	ToTime time.Time
}

// Restorer is implemented by engines whose instances can be provisioned
// from another instance's backups (point-in-time restore).
type Restorer interface {
	// RestoreRequest reads the restore parameter; nil when the
	// parameters ask for no restore.
	RestoreRequest(params map[string]any) (*RestoreRequest, error)
	// WindowRefs lists the objects whose status tells an instance's
	// restorable window.
	WindowRefs(inst Instance) []Ref
	// Window is the instance's restorable window as of now, from the
	// observed WindowRefs; deprovisioned is when the instance was
	// deprovisioned (zero while it lives). ok is false when nothing is
	// restorable (no completed backup yet, or past the retention).
	Window(inst Instance, observed map[Ref]*unstructured.Unstructured, deprovisioned, now time.Time) (w Window, ok bool)
}

// Labels returns the labels of every object of the instance.
func (i Instance) Labels() map[string]string {
	return map[string]string{
		LabelManagedBy:  ManagedByStrata,
		LabelInstanceID: LabelValue(i.ID),
		LabelService:    i.Service.Name,
		LabelPlan:       i.Plan.Name,
		LabelTenant:     i.Namespace,
	}
}

// State is the state of an operation in OSB terms.
type State string

const (
	InProgress State = "in progress"
	Succeeded  State = "succeeded"
	Failed     State = "failed"
)

// Progress is where an instance stands, with a user-facing description.
// Descriptions never carry secrets: they are shown to end users.
type Progress struct {
	State       State
	Description string
}

// Ref names one object.
type Ref struct {
	GVK       schema.GroupVersionKind
	Namespace string
	Name      string
}

// RefOf returns the Ref of an object.
func RefOf(o *unstructured.Unstructured) Ref {
	return Ref{GVK: o.GroupVersionKind(), Namespace: o.GetNamespace(), Name: o.GetName()}
}

// Provisioner is one engine.
type Provisioner interface {
	// Build renders every object of the instance, in apply order.
	Build(inst Instance) ([]*unstructured.Unstructured, error)
	// CheckUpdate refuses parameter and plan changes that cannot be applied
	// in place safely, saying why.
	CheckUpdate(old, updated Instance) error
	// Watched lists the objects whose status tells whether the instance is
	// ready.
	Watched(inst Instance) []Ref
	// Assess turns the observed Watched objects (absent ones are nil) into
	// progress, as of now.
	Assess(inst Instance, observed map[Ref]*unstructured.Unstructured, now time.Time) Progress
}

// ProvisionChecker is implemented by engines that check a new instance
// against something outside the cluster before the broker accepts it (a
// restore's source snapshots). An error that is a ParameterError refuses
// the provision with 400; the engine itself decides what it cannot know.
type ProvisionChecker interface {
	CheckProvision(ctx context.Context, inst Instance) error
}

// LeftoverLister is implemented by engines whose instances have objects
// that Build does not render but an operator makes from what it renders
// (cert-manager's Secret of a Certificate) and that deprovision must
// delete all the same.
type LeftoverLister interface {
	Leftovers(inst Instance) []Ref
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// ResourceName derives the base name of an instance's (or binding's)
// objects from its OSB id: prefix + id when the id is a short lowercase DNS
// label (UUIDs are), otherwise prefix + a hash of the id. The prefix makes
// the name start with a letter, as Service names must.
func ResourceName(prefix, id string) string {
	if len(id) <= 40 && dnsLabel.MatchString(id) {
		return prefix + id
	}
	sum := sha256.Sum256([]byte(id))
	return prefix + hex.EncodeToString(sum[:])[:32]
}

// LabelValue makes an OSB id usable as a label value (at most 63 characters
// of [-A-Za-z0-9_.]); other ids are hashed.
func LabelValue(id string) string {
	if len(id) <= 63 && labelValue.MatchString(id) {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "h-" + hex.EncodeToString(sum[:])[:40]
}

var labelValue = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
