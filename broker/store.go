package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"

	"github.com/strata-dev/strata/provisioners"
)

// Records are kept in Secrets in the broker's namespace: binding records
// hold credentials that GET binding must return, and instance parameters
// may be sensitive too. Secrets are encrypted at rest (EKS envelope
// encryption with KMS); ConfigMaps are not. Every write carries the
// resourceVersion it read, so two broker replicas never overwrite each
// other, and creation is a Create that only one replica can win.
const (
	recordKey         = "record.json"
	recordTypeInst    = "strata.dev/instance-record"
	recordTypeBinding = "strata.dev/binding-record"
	labelRecord       = "strata.dev/record"
	// labelInProgress is "true" on records whose operation is in
	// progress, so the reconcile loop lists only those.
	labelInProgress = "strata.dev/in-progress"
)

// OpType is the kind of an operation.
type OpType string

const (
	OpProvision   OpType = "provision"
	OpUpdate      OpType = "update"
	OpDeprovision OpType = "deprovision"
	OpBind        OpType = "bind"
	OpUnbind      OpType = "unbind"
)

// Operation is the last operation on an instance or binding.
type Operation struct {
	Type        OpType             `json:"type"`
	ID          string             `json:"id"`
	State       provisioners.State `json:"state"`
	Description string             `json:"description,omitempty"`
	Started     time.Time          `json:"started"`
	Deadline    time.Time          `json:"deadline"`
	// PreviousPlanID is the plan before an update, for rollback reporting.
	PreviousPlanID string `json:"previousPlanId,omitempty"`
	// ClaimedBy and ClaimedUntil say that a request is doing the
	// operation's work right now (a bind issuing credentials): the
	// reconcile loop and repeated requests leave it alone until the claim
	// ends, and take it over if its replica died.
	ClaimedBy    string    `json:"claimedBy,omitempty"`
	ClaimedUntil time.Time `json:"claimedUntil,omitzero"`
}

// claimed says whether a live request is doing the operation's work.
func (o Operation) claimed(now time.Time) bool { return o.ClaimedUntil.After(now) }

// ObjectRef names one object the broker applied for an instance, so that
// deprovision and updates delete by what was made rather than by what
// today's configuration would render.
type ObjectRef struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
	// Retain marks objects deprovision leaves in place (the backups'
	// ObjectStore, kept for their retention).
	Retain bool `json:"retain,omitempty"`
}

// Ref is the provisioners' form of r.
func (r ObjectRef) Ref() provisioners.Ref {
	return provisioners.Ref{GVK: schema.FromAPIVersionAndKind(r.APIVersion, r.Kind), Namespace: r.Namespace, Name: r.Name}
}

// InstanceRecord is the broker's memory of a service instance.
type InstanceRecord struct {
	ID        string `json:"id"`
	ServiceID string `json:"serviceId"`
	PlanID    string `json:"planId"`
	// Parameters exactly as the platform sent them (merged over earlier
	// ones for platforms that send only changes), so GET instance returns
	// what a declarative client expects to see.
	Parameters      map[string]any  `json:"parameters"`
	Context         json.RawMessage `json:"context,omitempty"`
	Namespace       string          `json:"namespace"`
	Name            string          `json:"name"`
	Meshed          bool            `json:"meshed,omitempty"`
	MaintenanceInfo string          `json:"maintenanceVersion,omitempty"`
	DashboardURL    string          `json:"dashboardUrl,omitempty"`
	// PageToken opens the instance page (page_handler.go); it is in
	// DashboardURL too, and shown nowhere else.
	PageToken string    `json:"pageToken,omitempty"`
	Operation Operation `json:"operation"`
	// Deleted marks a deprovisioned instance kept so a platform polling
	// after the fact still learns the deprovision succeeded.
	Deleted bool      `json:"deleted,omitempty"`
	Created time.Time `json:"created"`
	// Objects are every object applied for the instance (recorded before
	// they are applied, so a crash in between still leaves them known).
	Objects []ObjectRef `json:"objects,omitempty"`
	// AppliedHash is the hash of the objects last applied and AppliedAt
	// when: an unchanged desired state is not applied again until a
	// periodic resync is due.
	AppliedHash string    `json:"appliedHash,omitempty"`
	AppliedAt   time.Time `json:"appliedAt,omitzero"`
	// Prepared says the credential source's per-instance setup ran.
	Prepared bool `json:"prepared,omitempty"`
	// Restore is the source a restored instance was provisioned from,
	// resolved once from the restore parameter: the Cluster renders the
	// same recovery bootstrap after the source is gone.
	Restore *provisioners.RestoreSource `json:"restore,omitempty"`
	// Copy is the instance a copy was provisioned from (copy_of),
	// resolved once like Restore.
	Copy *provisioners.CopySource `json:"copy,omitempty"`
	// SeedS3 is the progress of a seed from S3 (seed_s3.go).
	SeedS3 *SeedS3State `json:"seedS3,omitempty"`

	resourceVersion string
}

// BindingRecord is the broker's memory of a binding.
type BindingRecord struct {
	ID         string          `json:"id"`
	InstanceID string          `json:"instanceId"`
	ServiceID  string          `json:"serviceId"`
	PlanID     string          `json:"planId"`
	Parameters map[string]any  `json:"parameters"`
	Context    json.RawMessage `json:"context,omitempty"`
	AppGUID    string          `json:"appGuid,omitempty"`
	// PredecessorID is the binding this one rotated (OSB 2.17).
	PredecessorID string `json:"predecessorId,omitempty"`
	// Credentials as returned in the bind response.
	Credentials map[string]any `json:"credentials,omitempty"`
	// SecretName is the Spring-Boot-ready Secret in the tenant namespace.
	SecretName string `json:"secretName"`
	// Handles are what the credential source needs to revoke (role names,
	// lease ids); never shown to users.
	Handles map[string]string `json:"handles,omitempty"`
	// ExpiresAt is when the credentials stop working (zero: never); the
	// platform rotates the binding before then.
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
	// RenewBefore is when the platform should rotate the binding.
	RenewBefore time.Time `json:"renewBefore,omitzero"`
	Operation   Operation `json:"operation"`
	Deleted     bool      `json:"deleted,omitempty"`
	Created     time.Time `json:"created"`

	resourceVersion string
}

// ErrNotFound is returned for absent records.
var ErrNotFound = errors.New("record not found")

// ErrConflict is returned when a record changed since it was read, or when
// a record being created already exists.
var ErrConflict = errors.New("record changed concurrently")

// Store keeps records in Secrets of one namespace.
type Store struct {
	client    kubernetes.Interface
	namespace string
}

// NewStore returns a store in namespace.
func NewStore(client kubernetes.Interface, namespace string) *Store {
	return &Store{client: client, namespace: namespace}
}

func instanceSecretName(id string) string { return provisioners.ResourceName("strata-instance-", id) }
func bindingSecretName(id string) string  { return provisioners.ResourceName("strata-binding-", id) }

// GetInstance reads an instance record.
func (s *Store) GetInstance(ctx context.Context, id string) (*InstanceRecord, error) {
	var r InstanceRecord
	rv, err := s.get(ctx, instanceSecretName(id), &r)
	if err != nil {
		return nil, err
	}
	if r.ID != id {
		// Hashed names can only collide by a SHA-256 collision; an id that
		// maps to another record's name is treated as absent.
		return nil, ErrNotFound
	}
	r.resourceVersion = rv
	return &r, nil
}

// CreateInstance stores a new record; ErrConflict if one exists.
func (s *Store) CreateInstance(ctx context.Context, r *InstanceRecord) error {
	rv, err := s.create(ctx, instanceSecretName(r.ID), recordTypeInst, r.labels(), r)
	r.resourceVersion = rv
	return err
}

// UpdateInstance writes r if nobody changed it since it was read.
func (s *Store) UpdateInstance(ctx context.Context, r *InstanceRecord) error {
	rv, err := s.update(ctx, instanceSecretName(r.ID), recordTypeInst, r.resourceVersion, r.labels(), r)
	if err == nil {
		r.resourceVersion = rv
	}
	return err
}

// DeleteInstance removes the record if it is unchanged since read.
func (s *Store) DeleteInstance(ctx context.Context, r *InstanceRecord) error {
	return s.delete(ctx, instanceSecretName(r.ID), r.resourceVersion)
}

// GetBinding reads a binding record.
func (s *Store) GetBinding(ctx context.Context, id string) (*BindingRecord, error) {
	var r BindingRecord
	rv, err := s.get(ctx, bindingSecretName(id), &r)
	if err != nil {
		return nil, err
	}
	if r.ID != id {
		return nil, ErrNotFound
	}
	r.resourceVersion = rv
	return &r, nil
}

// CreateBinding stores a new binding record; ErrConflict if one exists.
func (s *Store) CreateBinding(ctx context.Context, r *BindingRecord) error {
	rv, err := s.create(ctx, bindingSecretName(r.ID), recordTypeBinding, r.labels(), r)
	r.resourceVersion = rv
	return err
}

// UpdateBinding writes r if nobody changed it since it was read.
func (s *Store) UpdateBinding(ctx context.Context, r *BindingRecord) error {
	rv, err := s.update(ctx, bindingSecretName(r.ID), recordTypeBinding, r.resourceVersion, r.labels(), r)
	if err == nil {
		r.resourceVersion = rv
	}
	return err
}

// DeleteBinding removes the record if it is unchanged since read.
func (s *Store) DeleteBinding(ctx context.Context, r *BindingRecord) error {
	return s.delete(ctx, bindingSecretName(r.ID), r.resourceVersion)
}

// BindingsOf lists the live binding records of an instance.
func (s *Store) BindingsOf(ctx context.Context, instanceID string) ([]*BindingRecord, error) {
	recs, err := s.listBindings(ctx, labelRecord+"=binding,"+provisioners.LabelInstanceID+"="+provisioners.LabelValue(instanceID))
	if err != nil {
		return nil, err
	}
	out := recs[:0]
	for _, r := range recs {
		// A hashed label value could be shared by two ids.
		if r.InstanceID == instanceID {
			out = append(out, r)
		}
	}
	return out, nil
}

// ListBindings lists every binding record (for usage metrics).
func (s *Store) ListBindings(ctx context.Context) ([]*BindingRecord, error) {
	return s.listBindings(ctx, labelRecord+"=binding")
}

// InProgressInstances lists the instance records whose operation is in
// progress (for the reconcile loop).
func (s *Store) InProgressInstances(ctx context.Context) ([]*InstanceRecord, error) {
	return s.listInstances(ctx, labelRecord+"=instance,"+labelInProgress+"=true")
}

// InProgressBindings lists the binding records whose operation is in
// progress (for the reconcile loop).
func (s *Store) InProgressBindings(ctx context.Context) ([]*BindingRecord, error) {
	return s.listBindings(ctx, labelRecord+"=binding,"+labelInProgress+"=true")
}

func (s *Store) listBindings(ctx context.Context, selector string) ([]*BindingRecord, error) {
	list, err := s.client.CoreV1().Secrets(s.namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	var out []*BindingRecord
	for i := range list.Items {
		var r BindingRecord
		if err := json.Unmarshal(list.Items[i].Data[recordKey], &r); err != nil {
			continue
		}
		r.resourceVersion = list.Items[i].ResourceVersion
		out = append(out, &r)
	}
	return out, nil
}

// ListInstances lists every instance record.
func (s *Store) ListInstances(ctx context.Context) ([]*InstanceRecord, error) {
	return s.listInstances(ctx, labelRecord+"=instance")
}

// InstancesOf lists the instance records of one tenant namespace (by the
// records' tenant label, so the API server does the filtering).
func (s *Store) InstancesOf(ctx context.Context, namespace string) ([]*InstanceRecord, error) {
	recs, err := s.listInstances(ctx, labelRecord+"=instance,"+provisioners.LabelTenant+"="+namespace)
	if err != nil {
		return nil, err
	}
	out := recs[:0]
	for _, r := range recs {
		if r.Namespace == namespace {
			out = append(out, r)
		}
	}
	return out, nil
}

func (s *Store) listInstances(ctx context.Context, selector string) ([]*InstanceRecord, error) {
	list, err := s.client.CoreV1().Secrets(s.namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	var out []*InstanceRecord
	for i := range list.Items {
		var r InstanceRecord
		if err := json.Unmarshal(list.Items[i].Data[recordKey], &r); err != nil {
			continue
		}
		r.resourceVersion = list.Items[i].ResourceVersion
		out = append(out, &r)
	}
	return out, nil
}

func (s *Store) get(ctx context.Context, name string, into any) (string, error) {
	sec, err := s.client.CoreV1().Secrets(s.namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("read record %s: %w", name, err)
	}
	if err := json.Unmarshal(sec.Data[recordKey], into); err != nil {
		return "", fmt.Errorf("record %s is corrupt: %w", name, err)
	}
	return sec.ResourceVersion, nil
}

func (s *Store) create(ctx context.Context, name, typ string, labels map[string]string, rec any) (string, error) {
	raw, err := json.Marshal(rec)
	if err != nil {
		return "", err
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.namespace, Labels: labels},
		Type:       corev1.SecretType(typ),
		Data:       map[string][]byte{recordKey: raw},
	}
	out, err := s.client.CoreV1().Secrets(s.namespace).Create(ctx, sec, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return "", ErrConflict
	}
	if err != nil {
		return "", fmt.Errorf("create record %s: %w", name, err)
	}
	return out.ResourceVersion, nil
}

func inProgressLabel(o Operation) string {
	if o.State == provisioners.InProgress {
		return "true"
	}
	return "false"
}

func (r *InstanceRecord) labels() map[string]string {
	return map[string]string{
		labelRecord: "instance", provisioners.LabelInstanceID: provisioners.LabelValue(r.ID), provisioners.LabelTenant: r.Namespace,
		labelInProgress: inProgressLabel(r.Operation), provisioners.LabelManagedBy: provisioners.ManagedByStrata,
	}
}

func (r *BindingRecord) labels() map[string]string {
	return map[string]string{
		labelRecord: "binding", provisioners.LabelInstanceID: provisioners.LabelValue(r.InstanceID),
		provisioners.LabelBindingID: provisioners.LabelValue(r.ID), labelInProgress: inProgressLabel(r.Operation),
		provisioners.LabelManagedBy: provisioners.ManagedByStrata,
	}
}

// update replaces the record's Secret whole, carrying the resourceVersion
// it was read at: the API server refuses the write if anyone changed it
// since (no read needed first: a record is entirely ours).
func (s *Store) update(ctx context.Context, name, typ, resourceVersion string, labels map[string]string, rec any) (string, error) {
	raw, err := json.Marshal(rec)
	if err != nil {
		return "", err
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.namespace, Labels: labels, ResourceVersion: resourceVersion},
		Type:       corev1.SecretType(typ),
		Data:       map[string][]byte{recordKey: raw},
	}
	out, err := s.client.CoreV1().Secrets(s.namespace).Update(ctx, sec, metav1.UpdateOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return "", ErrNotFound
	case apierrors.IsConflict(err):
		return "", ErrConflict
	case err != nil:
		return "", fmt.Errorf("update record %s: %w", name, err)
	}
	return out.ResourceVersion, nil
}

func (s *Store) delete(ctx context.Context, name, resourceVersion string) error {
	err := s.client.CoreV1().Secrets(s.namespace).Delete(ctx, name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{ResourceVersion: &resourceVersion},
	})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case apierrors.IsConflict(err):
		return ErrConflict
	}
	return err
}

// TenantGuard serialises the limit checks of one tenant across broker
// replicas: a check reads the guard first, and the change it allowed is
// committed by bumping the guard with the resourceVersion it read. Two
// provisions that checked the same tenant at the same moment both read
// one version; the second bump fails, and that provision checks again,
// now counting the first one's record. (Kubernetes has no transactions;
// this is the optimistic-concurrency pattern it offers.)
type TenantGuard struct {
	secret *corev1.Secret
}

const (
	recordTypeGuard  = "strata.dev/tenant-guard"
	annotationChecks = "strata.dev/limit-checks"
)

func tenantGuardName(namespace string) string {
	return provisioners.ResourceName("strata-tenant-", namespace)
}

// ReadTenantGuard returns the tenant's guard, creating it on first use.
func (s *Store) ReadTenantGuard(ctx context.Context, namespace string) (*TenantGuard, error) {
	secrets := s.client.CoreV1().Secrets(s.namespace)
	name := tenantGuardName(namespace)
	sec, err := secrets.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		sec, err = secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.namespace, Labels: map[string]string{
				labelRecord: "tenant-guard", provisioners.LabelTenant: namespace, provisioners.LabelManagedBy: provisioners.ManagedByStrata,
			}},
			Type: corev1.SecretType(recordTypeGuard),
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			sec, err = secrets.Get(ctx, name, metav1.GetOptions{})
		}
	}
	if err != nil {
		return nil, fmt.Errorf("read the tenant guard of %s: %w", namespace, err)
	}
	return &TenantGuard{secret: sec}, nil
}

// BumpTenantGuard commits a checked change: ErrConflict when another
// change of the tenant was committed since the guard was read.
func (s *Store) BumpTenantGuard(ctx context.Context, g *TenantGuard) error {
	sec := g.secret.DeepCopy()
	n := 0
	_, _ = fmt.Sscan(sec.Annotations[annotationChecks], &n)
	if sec.Annotations == nil {
		sec.Annotations = map[string]string{}
	}
	sec.Annotations[annotationChecks] = fmt.Sprint(n + 1)
	// Update carries the resourceVersion read: the API server refuses it
	// if the guard changed since.
	_, err := s.client.CoreV1().Secrets(s.namespace).Update(ctx, sec, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		return ErrConflict
	}
	return err
}
