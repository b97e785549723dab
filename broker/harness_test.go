package broker

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/pivotal-cf/brokerapi/v12/domain"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/strata-dev/strata/binding"
	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/internal/testkube"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/kafka"
	"github.com/strata-dev/strata/provisioners/postgres"
	"github.com/strata-dev/strata/provisioners/redis"
)

// The endpoint tests run a Broker assembled as New assembles it, but on a
// fake clientset (records, tenancy, quotas) and an in-memory object store
// (the Kube the engines apply to), with a clock the tests move.

const (
	recordsNS  = "strata-system"
	tenantNS   = "team-a"
	instanceID = "0f3a3b9e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
	otherID    = "5e4d3c2b-1a09-4f8e-9d7c-6b5a49382716"
	bindingID  = "7c6b5a49-3d2e-4f10-9a8b-7c6d5e4f3a2b"
	replica    = "replica-a"
)

// memKube is the API server the engines see: testkube's objects (status
// kept across applies, as server-side apply of the spec does) plus
// Observe, a count of Apply calls and a way to make Apply fail.
type memKube struct {
	*testkube.Kube
	applies atomic.Int64
	// failApply, when set, is asked before every Apply; an error it
	// returns is Apply's, and nothing is stored.
	failApply func(objs []*unstructured.Unstructured) error
	// finalized, when set, names objects a finalizer keeps: Delete
	// succeeds on them but they stay.
	finalized func(ref provisioners.Ref) bool
}

func newMemKube() *memKube { return &memKube{Kube: testkube.New(true)} }

func (k *memKube) Apply(ctx context.Context, objs []*unstructured.Unstructured) error {
	k.applies.Add(1)
	if k.failApply != nil {
		if err := k.failApply(objs); err != nil {
			return err
		}
	}
	return k.Kube.Apply(ctx, objs)
}

func (k *memKube) Delete(ctx context.Context, ref provisioners.Ref) error {
	if k.finalized != nil && k.finalized(ref) {
		k.Lock()
		defer k.Unlock()
		k.Deleted = append(k.Deleted, ref)
		return nil
	}
	return k.Kube.Delete(ctx, ref)
}

func (k *memKube) Observe(ctx context.Context, refs []provisioners.Ref) (map[provisioners.Ref]*unstructured.Unstructured, error) {
	out := make(map[provisioners.Ref]*unstructured.Unstructured, len(refs))
	for _, r := range refs {
		o, err := k.Get(ctx, r)
		if err != nil {
			return nil, err
		}
		out[r] = o
	}
	return out, nil
}

// has says whether the object exists.
func (k *memKube) has(ref provisioners.Ref) bool {
	k.Lock()
	defer k.Unlock()
	return k.Objs[ref] != nil
}

// ofKind lists the stored objects of a kind.
func (k *memKube) ofKind(kind string) []*unstructured.Unstructured {
	k.Lock()
	defer k.Unlock()
	var out []*unstructured.Unstructured
	for ref, o := range k.Objs {
		if ref.GVK.Kind == kind {
			out = append(out, o.DeepCopy())
		}
	}
	return out
}

// failOnKind makes every Apply of an object of kind fail with err.
func (k *memKube) failOnKind(kind string, err error) {
	k.failApply = func(objs []*unstructured.Unstructured) error {
		for _, o := range objs {
			if o.GetKind() == kind {
				return err
			}
		}
		return nil
	}
}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type testEnv struct {
	b      *Broker
	kube   *memKube
	client *fake.Clientset
	clock  *testClock
	pg     *postgres.Provisioner
	ctx    context.Context
}

// newTestEnv wires a broker as New does: the default catalog and
// validator, the three engines, DatabaseRole logins (no OpenBao), one
// tenant namespace.
func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tenantNS}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: recordsNS}},
	)
	enforceResourceVersions(client)
	tenancy, err := NewTenancy(client, TenancyOptions{Reserved: map[string]string{recordsNS: "it is the broker's own namespace"}})
	if err != nil {
		t.Fatal(err)
	}
	kube := newMemKube()
	pgConfig := postgres.DefaultConfig()
	pgConfig.Backup.Bucket = "strata-backups"
	pgConfig.ServerCertificates.IssuerName = "strata-ca"
	redisConfig := redis.DefaultConfig()
	redisConfig.ServerCertificates = pgConfig.ServerCertificates
	pg := &postgres.Provisioner{Config: pgConfig}
	kp := &kafka.Provisioner{Config: kafka.DefaultConfig()}
	rp := &redis.Provisioner{Config: redisConfig}
	clock := &testClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	b := &Broker{
		Replica:   replica,
		Baseline:  provisioners.BaselineConfig{PlaintextPorts: postgres.MeshPlaintextPorts()},
		Catalog:   catalog.Default(),
		Validator: catalog.NewValidator(),
		Store:     NewStore(client, recordsNS),
		Tenancy:   tenancy,
		Kube:      kube,
		Engines: map[catalog.Engine]Engine{
			catalog.EngineRedis:    {Provisioner: rp, Binder: &binding.RedisBinder{Kube: kube}, Prefix: "rd-"},
			catalog.EngineKafka:    {Provisioner: kp, Binder: &binding.KafkaBinder{Kube: kube, Engine: kp}, Prefix: "kafka-"},
			catalog.EnginePostgres: {Provisioner: pg, Binder: &binding.PostgresBinder{Kube: kube, Logins: &binding.RoleSource{Kube: kube}, CASecret: pg.ServerCASecret}, Prefix: "pg-"},
		},
		Log: zap.NewNop(),
		Now: clock.Now,
		Quotas: func(ctx context.Context, ns string) ([]corev1.ResourceQuota, error) {
			l, err := client.CoreV1().ResourceQuotas(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return nil, err
			}
			return l.Items, nil
		},
	}
	return &testEnv{b: b, kube: kube, client: client, clock: clock, pg: pg, ctx: context.Background()}
}

func provisionDetails(serviceID, planID, params string) domain.ProvisionDetails {
	d := domain.ProvisionDetails{ServiceID: serviceID, PlanID: planID, RawContext: k8sContext(tenantNS)}
	if params != "" {
		d.RawParameters = json.RawMessage(params)
	}
	return d
}

func pgDetails(planID, params string) domain.ProvisionDetails {
	return provisionDetails(catalog.PostgresServiceID, planID, params)
}

func (e *testEnv) record(t *testing.T, id string) *InstanceRecord {
	t.Helper()
	rec, err := e.b.Store.GetInstance(e.ctx, id)
	if err != nil {
		t.Fatalf("instance record %s: %v", id, err)
	}
	return rec
}

func (e *testEnv) bindingRecord(t *testing.T, id string) *BindingRecord {
	t.Helper()
	br, err := e.b.Store.GetBinding(e.ctx, id)
	if err != nil {
		t.Fatalf("binding record %s: %v", id, err)
	}
	return br
}

// instance is the provisioner's view of a recorded instance.
func (e *testEnv) instance(t *testing.T, id string) (provisioners.Instance, Engine) {
	t.Helper()
	inst, eng, err := e.b.instanceOf(e.record(t, id))
	if err != nil {
		t.Fatal(err)
	}
	return inst, eng
}

// operatorsAct does what the operators do once an instance's objects are
// up: every watched object reports ready (CloudNativePG's Cluster,
// Database and Pooler, Strimzi's KafkaTopic), and cert-manager writes the
// server certificate's Secret that bindings read the CA from.
func (e *testEnv) operatorsAct(t *testing.T, id string) {
	t.Helper()
	inst, eng := e.instance(t, id)
	e.kube.Lock()
	for _, ref := range eng.Provisioner.Watched(inst) {
		o := e.kube.Objs[ref]
		if o == nil {
			continue
		}
		o.SetGeneration(1)
		st := map[string]any{
			"observedGeneration": int64(1),
			"conditions":         []any{map[string]any{"type": "Ready", "status": "True", "lastTransitionTime": e.clock.Now().Add(time.Second).Format(time.RFC3339)}},
		}
		switch ref.GVK.Kind {
		case "Cluster":
			n, _, _ := unstructured.NestedInt64(o.Object, "spec", "instances")
			st["readyInstances"], st["phase"] = n, "Cluster in healthy state"
		case "Database":
			st["applied"] = true
		case "Pooler":
			n, _, _ := unstructured.NestedInt64(o.Object, "spec", "instances")
			st["instances"] = n
		}
		o.Object["status"] = st
	}
	e.kube.Unlock()
	if inst.Service.Engine == catalog.EnginePostgres {
		e.kube.Store(&unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "Secret",
			"metadata":   map[string]any{"name": e.pg.ServerCASecret(inst), "namespace": inst.Namespace},
			"stringData": map[string]any{"ca.crt": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "tls.crt": "x", "tls.key": "y"},
		}})
	}
}

// rolesApplied does what CloudNativePG does with DatabaseRoles: creates
// the roles and says so in their status.
func (e *testEnv) rolesApplied() {
	e.kube.Lock()
	defer e.kube.Unlock()
	for ref, o := range e.kube.Objs {
		if ref.GVK.Kind == "DatabaseRole" {
			o.Object["status"] = map[string]any{"applied": true, "observedGeneration": int64(0)}
		}
	}
}

// provisionReady provisions a PostgreSQL instance of plan and drives it to
// succeeded through the operators and one poll.
func (e *testEnv) provisionReady(t *testing.T, id, planID, params string) *InstanceRecord {
	t.Helper()
	if _, err := e.b.Provision(e.ctx, id, pgDetails(planID, params), true); err != nil {
		t.Fatalf("provision %s: %v", id, err)
	}
	e.operatorsAct(t, id)
	res, err := e.b.InstanceOperation(e.ctx, id, "")
	if err != nil || res.State != provisioners.Succeeded {
		t.Fatalf("provision %s did not succeed: %+v %v", id, res, err)
	}
	return e.record(t, id)
}

func pgBindDetails(planID, params string) domain.BindDetails {
	d := domain.BindDetails{ServiceID: catalog.PostgresServiceID, PlanID: planID, AppGUID: "app-1"}
	if params != "" {
		d.RawParameters = json.RawMessage(params)
	}
	return d
}

// refOf names an object of the instance's engine by its kind and name.
func refOf(apiVersion, kind, namespace, name string) provisioners.Ref {
	return ObjectRef{APIVersion: apiVersion, Kind: kind, Namespace: namespace, Name: name}.Ref()
}

// secretRecord is the Secret a record is kept in.
func (e *testEnv) secretRecord(t *testing.T, name string) *corev1.Secret {
	t.Helper()
	s, err := e.client.CoreV1().Secrets(recordsNS).Get(e.ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// expectFailure checks an OSB refusal: status, error code and a part of
// the description.
func expectFailure(g Gomega, err error, status int, code, mention string) {
	g.Expect(err).To(HaveOccurred())
	gotStatus, gotCode, desc := failureOf(g, err)
	g.Expect(gotStatus).To(Equal(status), "%v", err)
	if code != "" {
		g.Expect(gotCode).To(Equal(code), "%v", err)
	}
	g.Expect(desc).To(ContainSubstring(mention))
}

var secretGVKForTest = schema.GroupVersionKind{Version: "v1", Kind: "Secret"}

// enforceResourceVersions makes the fake clientset's Secrets keep the
// optimistic concurrency the store relies on, as the API server does (the
// fake's tracker ignores resourceVersions): every write gets a new
// resourceVersion, and an update or a delete carrying another one than
// the stored is refused with a Conflict.
func enforceResourceVersions(client *fake.Clientset) {
	var version atomic.Int64
	secrets := corev1.SchemeGroupVersion.WithResource("secrets")
	stored := func(namespace, name string) (string, bool) {
		o, err := client.Tracker().Get(secrets, namespace, name)
		if err != nil {
			return "", false
		}
		return o.(metav1.Object).GetResourceVersion(), true
	}
	conflict := func(name string) error {
		return apierrors.NewConflict(secrets.GroupResource(), name, errors.New("the object has been modified; please apply your changes to the latest version and try again"))
	}
	next := func() string { return strconv.FormatInt(version.Add(1), 10) }
	client.PrependReactor("create", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		a.(k8stesting.CreateAction).GetObject().(metav1.Object).SetResourceVersion(next())
		return false, nil, nil
	})
	client.PrependReactor("update", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		obj := a.(k8stesting.UpdateAction).GetObject().(metav1.Object)
		if rv, ok := stored(a.GetNamespace(), obj.GetName()); ok && obj.GetResourceVersion() != "" && obj.GetResourceVersion() != rv {
			return true, nil, conflict(obj.GetName())
		}
		obj.SetResourceVersion(next())
		return false, nil, nil
	})
	client.PrependReactor("delete", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		d := a.(k8stesting.DeleteAction)
		if p := d.GetDeleteOptions().Preconditions; p != nil && p.ResourceVersion != nil {
			if rv, ok := stored(a.GetNamespace(), d.GetName()); ok && *p.ResourceVersion != rv {
				return true, nil, conflict(d.GetName())
			}
		}
		return false, nil, nil
	})
}

// conflictOn makes the next n updates of the record Secret name fail with
// a Conflict, as when another replica wrote it since it was read.
func (e *testEnv) conflictOn(name string, n int) {
	var left atomic.Int64
	left.Store(int64(n))
	e.client.PrependReactor("update", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		obj := a.(k8stesting.UpdateAction).GetObject().(metav1.Object)
		if obj.GetName() != name || left.Add(-1) < 0 {
			return false, nil, nil
		}
		return true, nil, apierrors.NewConflict(corev1.Resource("secrets"), name, errors.New("written by another replica"))
	})
}

// expectProvisionRefused provisions a PostgreSQL instance of plan with
// params (in namespace, when given) and expects the refusal described,
// with no record left behind.
func (e *testEnv) expectProvisionRefused(g Gomega, id, plan, params, namespace string, status int, code, mention string) {
	d := pgDetails(plan, params)
	if namespace != "" {
		d.RawContext = k8sContext(namespace)
	}
	_, err := e.b.Provision(e.ctx, id, d, true)
	expectFailure(g, err, status, code, mention)
	_, err = e.b.Store.GetInstance(e.ctx, id)
	g.Expect(errors.Is(err, ErrNotFound)).To(BeTrue(), "a refused provision leaves no record")
}
