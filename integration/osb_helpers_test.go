//go:build linux

package integration_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/strata-dev/strata/broker"
	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/charts"
	"github.com/strata-dev/strata/integration/kubeenv"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/postgres"
)

const (
	brokerNS  = "strata-system"
	osbUser   = "platform"
	osbPass   = "s3cret-broker-password"
	apiHeader = "2.17"
	// requestIdentity is sent with every request; the broker echoes it.
	requestIdentity = "e2a3f1c0-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
)

// world is a real kube-apiserver with the upstream CRDs and one or more
// brokers serving over HTTPS against it. No operator runs: the tests write
// the status CloudNativePG would write (operator) and remove the
// foreground-deletion finalizers the garbage collector of
// kube-controller-manager would remove (collectGarbage).
type world struct {
	env  *kubeenv.Env
	core kubernetes.Interface
	dyn  dynamic.Interface
	now  *clock
	// brokerConfig impersonates the ServiceAccount of the broker's Helm
	// chart, which sharedWorld installs: every broker of the suite runs
	// with exactly the chart's RBAC, as the real API server enforces it.
	brokerConfig *rest.Config
	// chart is what the chart rendered.
	chart []map[string]any
}

// chartValues are the values the suite installs the chart with: OpenBao
// and platform-issued server certificates on, as in production.
func chartValues() map[string]any {
	return map[string]any{
		"credentials": map[string]any{"password": osbPass},
		"openBaoCA":   map[string]any{"existingSecret": "openbao-ca"},
		"config": map[string]any{
			"openBao":  map[string]any{"address": "https://openbao.openbao.svc:8200", "postgresCAFile": "/openbao/ca/platform-ca.crt"},
			"postgres": map[string]any{"serverCertificates": map[string]any{"issuerName": platformIssuer}},
		},
	}
}

// installChart applies every object of the rendered chart (as a cluster
// admin would with helm install) and returns the impersonating config of
// the chart's ServiceAccount.
func (w *world) installChart() (*rest.Config, error) {
	objs, err := charts.RenderBroker(chartValues(), brokerNS)
	if err != nil {
		return nil, err
	}
	kube, err := provisioners.NewKube(w.env.Config)
	if err != nil {
		return nil, err
	}
	sa := ""
	for _, o := range objs {
		u := &unstructured.Unstructured{Object: o}
		if u.GetNamespace() == "" && u.GetKind() != "ClusterRole" && u.GetKind() != "ClusterRoleBinding" {
			u.SetNamespace(brokerNS)
		}
		if u.GetKind() == "ServiceAccount" {
			sa = u.GetName()
		}
		if err := kube.Apply(context.Background(), []*unstructured.Unstructured{u}); err != nil {
			return nil, fmt.Errorf("the API server refuses the chart's %s %s: %w", u.GetKind(), u.GetName(), err)
		}
	}
	if sa == "" {
		return nil, errors.New("the chart renders no ServiceAccount")
	}
	w.chart = objs
	return w.env.ConfigAs("system:serviceaccount:"+brokerNS+":"+sa,
		"system:serviceaccounts", "system:serviceaccounts:"+brokerNS, "system:authenticated"), nil
}

type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.off) }

// claimExpiry is longer than a request's claim on the operation it works
// on (broker's claimTTL, 15 s): moving the clock by it makes the request
// look like one whose replica died.
const claimExpiry = 31 * time.Second

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

var (
	worldOnce sync.Once
	shared    *world
	worldErr  error
)

// sharedWorld starts one control plane for the package's OSB tests (CRD
// installation is most of the start-up time).
func sharedWorld(t testing.TB) *world {
	t.Helper()
	worldOnce.Do(func() {
		env, err := kubeenv.StartE()
		if err != nil {
			worldErr = err
			return
		}
		dirs, err := kubeenv.UpstreamCRDDirs()
		if err == nil {
			err = kubeenv.InstallCRDs(env.Config, dirs...)
		}
		if err != nil {
			env.Stop()
			worldErr = err
			return
		}
		w := &world{env: env, now: &clock{}}
		w.core = kubernetes.NewForConfigOrDie(env.Config)
		w.dyn = dynamic.NewForConfigOrDie(env.Config)
		for _, ns := range []string{brokerNS, "team-a", "team-b", "team-c"} {
			labels := map[string]string{}
			if ns == "team-b" {
				labels["istio-injection"] = "enabled"
			}
			if _, err := w.core.CoreV1().Namespaces().Create(context.Background(),
				&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{}); err != nil {
				worldErr = err
				return
			}
		}
		if w.brokerConfig, err = w.installChart(); err != nil {
			worldErr = err
			return
		}
		shared = w
	})
	if worldErr != nil {
		t.Fatalf("control plane: %v", worldErr)
	}
	return shared
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.env.Stop()
	}
	os.Exit(code)
}

// pgConfig is the platform configuration the suite's brokers use.
func pgConfig() postgres.Config {
	c := postgres.DefaultConfig()
	c.StorageClass = "gp3-encrypted"
	c.Backup = postgres.BackupConfig{BackupConfig: provisioners.BackupConfig{
		Bucket: "strata-backups", PathPrefix: "pg", Region: "eu-west-1",
		KMSKeyID:   "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
		IAMRoleARN: "arn:aws:iam::111122223333:role/strata-backups",
	}}
	return c
}

// osbClient talks to one broker over HTTPS as a platform would.
type osbClient struct {
	t    testing.TB
	base string
	http *http.Client
}

func (w *world) startBroker(t testing.TB) *osbClient {
	t.Helper()
	return w.startBrokerWith(t, nil)
}

// startBrokerWith starts a broker whose options configure may change.
func (w *world) startBrokerWith(t testing.TB, configure func(*broker.Options)) *osbClient {
	t.Helper()
	o := broker.Options{
		Namespace: brokerNS, Postgres: pgConfig(), Log: zap.NewNop(), Now: w.now.Now,
		DashboardURLTemplate: "https://grafana.example.com/d/cnpg?var-namespace={{.Namespace}}&var-cluster={{.Name}}",
	}
	if configure != nil {
		configure(&o)
	}
	b, err := broker.New(w.brokerConfig, o)
	if err != nil {
		t.Fatal(err)
	}
	h := broker.NewHandler(b, broker.HandlerOptions{
		Credentials:  func() (string, string, error) { return osbUser, osbPass, nil },
		PollInterval: 3 * time.Second,
		Registry:     prometheus.NewRegistry(),
		Log:          zap.NewNop(),
	})
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	return &osbClient{t: t, base: srv.URL, http: srv.Client()}
}

// expectGone asserts the answer to the poll of a finished deprovision:
// 410 Gone, which the spec makes the success of an asynchronous delete.
func expectGone(g Gomega, r response) {
	g.Expect(r.Code).To(Equal(http.StatusGone), "a deprovisioned instance's last_operation is 410 Gone: %s", r.Raw)
	g.Expect(r.Raw).To(MatchJSON(`{}`))
}

type response struct {
	Code   int
	Header http.Header
	Body   map[string]any
	Raw    string
}

func (c *osbClient) do(method, path string, body any, mutate ...func(*http.Request)) response {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.SetBasicAuth(osbUser, osbPass)
	req.Header.Set("X-Broker-API-Version", apiHeader)
	req.Header.Set("X-Broker-API-Request-Identity", requestIdentity)
	req.Header.Set("Content-Type", "application/json")
	for _, m := range mutate {
		m(req)
	}
	res, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := response{Code: res.StatusCode, Header: res.Header, Raw: string(raw)}
	_ = json.Unmarshal(raw, &out.Body)
	return out
}

func provisionBody(planID, namespace string, params map[string]any) map[string]any {
	b := map[string]any{
		"service_id": catalog.PostgresServiceID, "plan_id": planID,
		"organization_guid": "org-guid", "space_guid": "space-guid",
		"context": map[string]any{"platform": "kubernetes", "namespace": namespace, "clusterid": "c1", "instance_name": "db"},
	}
	if params != nil {
		b["parameters"] = params
	}
	return b
}

var (
	clusterGVR      = schema.GroupVersionResource{Group: "postgresql.cnpg.io", Version: "v1", Resource: "clusters"}
	poolerGVR       = schema.GroupVersionResource{Group: "postgresql.cnpg.io", Version: "v1", Resource: "poolers"}
	databaseGVR     = schema.GroupVersionResource{Group: "postgresql.cnpg.io", Version: "v1", Resource: "databases"}
	databaseRoleGVR = schema.GroupVersionResource{Group: "postgresql.cnpg.io", Version: "v1", Resource: "databaseroles"}
	objectStoreGVR  = schema.GroupVersionResource{Group: "barmancloud.cnpg.io", Version: "v1", Resource: "objectstores"}
	schedBackupGVR  = schema.GroupVersionResource{Group: "postgresql.cnpg.io", Version: "v1", Resource: "scheduledbackups"}
	podMonitorGVR   = schema.GroupVersionResource{Group: "monitoring.coreos.com", Version: "v1", Resource: "podmonitors"}
	netpolGVR       = schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"}
	peerAuthGVR     = schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "peerauthentications"}
	secretGVR       = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	certificateGVR  = schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "certificates"}
)

func (w *world) get(g Gomega, gvr schema.GroupVersionResource, ns, name string) *unstructured.Unstructured {
	o, err := w.dyn.Resource(gvr).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	g.Expect(err).NotTo(HaveOccurred(), "%s %s/%s", gvr.Resource, ns, name)
	return o
}

func (w *world) list(gvr schema.GroupVersionResource, ns, selector string) []unstructured.Unstructured {
	l, err := w.dyn.Resource(gvr).Namespace(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		panic(err)
	}
	return l.Items
}

// operatorReportsReady writes, for the cluster and its dependents, the
// status CloudNativePG reports once everything runs (the operator cannot
// run here: it needs a kubelet to run PostgreSQL pods), and the CA Secret
// it creates.
func (w *world) operatorReportsReady(t *testing.T, ns, cluster string) {
	t.Helper()
	ctx := context.Background()
	c, err := w.dyn.Resource(clusterGVR).Namespace(ns).Get(ctx, cluster, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	instances, _, _ := unstructured.NestedInt64(c.Object, "spec", "instances")
	// CloudNativePG's Ready follows its phase and names no generation; it
	// flips when the operator has gone through a change, which takes it
	// more than a second: the transition is stamped in a later second
	// than whatever the test did before.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	now := time.Now().UTC().Format(time.RFC3339)
	_ = unstructured.SetNestedField(c.Object, map[string]any{
		"phase": "Cluster in healthy state", "instances": instances, "readyInstances": instances,
		"currentPrimary": cluster + "-1",
		"conditions": []any{
			map[string]any{"type": "Ready", "status": "True", "reason": "ClusterIsReady", "message": "Cluster is Ready", "lastTransitionTime": now},
			map[string]any{"type": "ContinuousArchiving", "status": "True", "reason": "ContinuousArchivingSuccess", "message": "", "lastTransitionTime": now},
		},
	}, "status")
	if _, err := w.dyn.Resource(clusterGVR).Namespace(ns).UpdateStatus(ctx, c, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, db := range w.list(databaseGVR, ns, "") {
		if n, _, _ := unstructured.NestedString(db.Object, "spec", "cluster", "name"); n != cluster {
			continue
		}
		_ = unstructured.SetNestedField(db.Object, map[string]any{"applied": true, "observedGeneration": db.GetGeneration()}, "status")
		if _, err := w.dyn.Resource(databaseGVR).Namespace(ns).UpdateStatus(ctx, &db, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range w.list(poolerGVR, ns, "") {
		if n, _, _ := unstructured.NestedString(p.Object, "spec", "cluster", "name"); n != cluster {
			continue
		}
		want, _, _ := unstructured.NestedInt64(p.Object, "spec", "instances")
		_ = unstructured.SetNestedField(p.Object, map[string]any{"instances": want}, "status")
		if _, err := w.dyn.Resource(poolerGVR).Namespace(ns).UpdateStatus(ctx, &p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	caName := cluster + "-ca"
	if _, err := w.core.CoreV1().Secrets(ns).Get(ctx, caName, metav1.GetOptions{}); err != nil {
		if _, err := w.core.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: caName},
			Data:       map[string][]byte{"ca.crt": testCAPEM(t)},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// operatorAppliesRoles marks every DatabaseRole of the cluster applied.
func (w *world) operatorAppliesRoles(t *testing.T, ns, cluster string) {
	t.Helper()
	for _, r := range w.list(databaseRoleGVR, ns, "") {
		if n, _, _ := unstructured.NestedString(r.Object, "spec", "cluster", "name"); n != cluster {
			continue
		}
		_ = unstructured.SetNestedField(r.Object, map[string]any{"applied": true, "observedGeneration": r.GetGeneration()}, "status")
		if _, err := w.dyn.Resource(databaseRoleGVR).Namespace(ns).UpdateStatus(context.Background(), &r, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// collectGarbage removes the foregroundDeletion finalizer from objects being
// deleted in ns, as kube-controller-manager's garbage collector does once
// an object's dependents are gone (there are none here: no pods run).
func (w *world) collectGarbage(t *testing.T, ns string, gvrs ...schema.GroupVersionResource) {
	t.Helper()
	for _, gvr := range gvrs {
		for _, o := range w.list(gvr, ns, "") {
			if o.GetDeletionTimestamp() == nil {
				continue
			}
			o.SetFinalizers(nil)
			if _, err := w.dyn.Resource(gvr).Namespace(ns).Update(context.Background(), &o, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

var allInstanceGVRs = []schema.GroupVersionResource{clusterGVR, poolerGVR, databaseGVR, databaseRoleGVR, objectStoreGVR, schedBackupGVR, podMonitorGVR, netpolGVR, peerAuthGVR, secretGVR}

var (
	caOnce sync.Once
	caPEM  []byte
)

func testCAPEM(t *testing.T) []byte {
	caOnce.Do(func() {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
			NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	})
	return caPEM
}

// live drops objects that are being deleted (they wait for the garbage
// collector, which does not run here).
func live(objs []unstructured.Unstructured) []string {
	var names []string
	for _, o := range objs {
		if o.GetDeletionTimestamp() == nil {
			names = append(names, o.GetName())
		}
	}
	return names
}

// ensureNamespace creates a namespace the test needs, unless an earlier
// test of the shared world already did.
func (w *world) ensureNamespace(t testing.TB, name string, labels map[string]string) {
	t.Helper()
	_, err := w.core.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// operatorAppliesInstance stands for CloudNativePG having applied the
// instance's DatabaseRoles and Databases in ns (status applied for their
// generation), and returns them as the broker applied them, roles first.
func (w *world) operatorAppliesInstance(t testing.TB, ns, instanceID string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	sel := provisioners.LabelInstanceID + "=" + instanceID
	for _, gvr := range []schema.GroupVersionResource{databaseRoleGVR, databaseGVR} {
		for _, o := range w.list(gvr, ns, sel) {
			if o.GetDeletionTimestamp() != nil {
				continue
			}
			_ = unstructured.SetNestedField(o.Object, map[string]any{"applied": true, "observedGeneration": o.GetGeneration()}, "status")
			if _, err := w.dyn.Resource(gvr).Namespace(ns).UpdateStatus(context.Background(), &o, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			out = append(out, &o)
		}
	}
	return out
}

// standardInstance is the provisioners' view of a postgresql standard
// instance the broker made (names derive from it).
func standardInstance(t testing.TB, id, ns string) provisioners.Instance {
	t.Helper()
	svc, plan, err := catalog.Default().Find(catalog.PostgresServiceID, catalog.PostgresStandardID)
	if err != nil {
		t.Fatal(err)
	}
	return provisioners.Instance{ID: id, Name: provisioners.ResourceName("pg-", id), Namespace: ns, Service: svc, Plan: plan}
}

// interruptBind rewrites a binding's record into what a replica that died
// in the middle of the bind leaves: the operation in progress, nothing it
// issued recorded, and its request's claim run out. Whatever the bind had
// already made stays where it is.
func (w *world) interruptBind(t testing.TB, bindingID string) {
	t.Helper()
	ctx := context.Background()
	secrets := w.core.CoreV1().Secrets(brokerNS)
	name := provisioners.ResourceName("strata-binding-", bindingID)
	sec, err := secrets.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(sec.Data["record.json"], &rec); err != nil {
		t.Fatal(err)
	}
	delete(rec, "credentials")
	delete(rec, "handles")
	delete(rec, "expiresAt")
	delete(rec, "renewBefore")
	rec["secretName"] = ""
	op := rec["operation"].(map[string]any)
	op["state"], op["description"] = "in progress", ""
	op["claimedBy"], op["claimedUntil"] = "a-replica-that-died", w.now.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano)
	raw, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	sec.Data["record.json"] = raw
	sec.Labels["strata.dev/in-progress"] = "true"
	if _, err := secrets.Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
