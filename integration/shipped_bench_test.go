//go:build linux

package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/strata-dev/strata/broker"
	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/postgres"
)

// These benchmarks compare the broker as shipped with a reference doing the
// least the same job needs, both measured in the same run, interleaved, so
// that the 2 shared cores' noise falls on both. Each reports the two
// times and their ratio (b.ReportMetric); docs/benchmarks.md has figures.

// shippedConfigFile is the configuration file of the benchmarked broker:
// only what the standard plan needs to render (a bucket). Everything else,
// the Kubernetes client rate limits in particular, is the binary's default.
const shippedConfigFile = "postgres:\n  backup:\n    bucket: strata-backups\n"

// startShippedBroker serves a broker built the way cmd/strata-broker builds
// it: broker.ParseConfig of a configuration file, Config.Options, New. Its
// rest config is the chart's ServiceAccount's (the test control plane's
// generous limits, which New replaces with the configuration's).
func (w *world) startShippedBroker(b *testing.B) (*httptest.Server, broker.Config) {
	b.Helper()
	cfg, err := broker.ParseConfig([]byte(shippedConfigFile))
	if err != nil {
		b.Fatal(err)
	}
	if cfg.Kubernetes != broker.DefaultKubernetesConfig() {
		b.Fatalf("the benchmark must run with the shipped limits, has %+v", cfg.Kubernetes)
	}
	br, err := broker.New(w.brokerConfig, cfg.Options(brokerNS, zap.NewNop()))
	if err != nil {
		b.Fatal(err)
	}
	h := broker.NewHandler(br, broker.HandlerOptions{
		Credentials: func() (string, string, error) { return osbUser, osbPass, nil },
		Ready:       br.Ready,
		Registry:    prometheus.NewRegistry(),
		Log:         zap.NewNop(),
	})
	srv := httptest.NewTLSServer(h)
	b.Cleanup(srv.Close)
	// Keep a connection per concurrent client: a new TLS handshake per
	// request would be the benchmark's cost, not the broker's.
	srv.Client().Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	return srv, cfg
}

// send makes one OSB request and returns its status and body.
func send(hc *http.Client, method, url string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.SetBasicAuth(osbUser, osbPass)
	req.Header.Set("X-Broker-API-Version", apiHeader)
	req.Header.Set("Content-Type", "application/json")
	res, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	return res.StatusCode, raw, err
}

// referenceClient is a bare client-go program: a typed client for the
// record's Secret and a dynamic client for server-side apply, with the
// resources mapped once, as the broker's ServiceAccount, with no
// client-side rate limit.
type referenceClient struct {
	core   kubernetes.Interface
	dyn    dynamic.Interface
	gvr    map[schema.GroupVersionKind]schema.GroupVersionResource
	pg     *postgres.Provisioner
	pgBase provisioners.BaselineConfig
}

func (w *world) newReferenceClient(b *testing.B, pg postgres.Config) *referenceClient {
	b.Helper()
	cfg := rest.CopyConfig(w.brokerConfig)
	cfg.QPS = -1 // no client-side limiter
	r := &referenceClient{
		core: kubernetes.NewForConfigOrDie(cfg), dyn: dynamic.NewForConfigOrDie(cfg),
		gvr: map[schema.GroupVersionKind]schema.GroupVersionResource{},
		pg:  &postgres.Provisioner{Config: pg}, pgBase: provisioners.BaselineConfig{PlaintextPorts: postgres.MeshPlaintextPorts()},
	}
	groups, err := restmapper.GetAPIGroupResources(r.core.Discovery())
	if err != nil {
		b.Fatal(err)
	}
	mapper := restmapper.NewDiscoveryRESTMapper(groups)
	inst := r.instance("be0cf000-0000-4000-8000-000000000000", "team-c")
	objs, err := r.objects(inst)
	if err != nil {
		b.Fatal(err)
	}
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			b.Fatal(err)
		}
		r.gvr[gvk] = m.Resource
	}
	return r
}

func (r *referenceClient) instance(id, namespace string) provisioners.Instance {
	svc, plan, err := catalog.Default().Find(catalog.PostgresServiceID, catalog.PostgresStandardID)
	if err != nil {
		panic(err)
	}
	return provisioners.Instance{
		ID: id, Name: provisioners.ResourceName("pg-", id), Namespace: namespace,
		Service: svc, Plan: plan, Params: map[string]any{"databases": []any{"app"}},
	}
}

// objects are what a provision applies: the tenant baseline, then the
// plan's objects.
func (r *referenceClient) objects(inst provisioners.Instance) ([]*unstructured.Unstructured, error) {
	objs, err := r.pg.Build(inst)
	if err != nil {
		return nil, err
	}
	return append(provisioners.Baseline(r.pgBase, provisioners.BaselineTenant{Namespace: inst.Namespace}), objs...), nil
}

// provision does what a provision must: create a record (a Secret of the
// broker's record size) and server-side apply every object.
func (r *referenceClient) provision(ctx context.Context, id string) error {
	inst := r.instance(id, "team-c")
	objs, err := r.objects(inst)
	if err != nil {
		return err
	}
	record, _ := json.Marshal(map[string]any{"id": id, "service_id": inst.Service.ID, "plan_id": inst.Plan.ID,
		"namespace": inst.Namespace, "name": inst.Name, "parameters": inst.Params,
		"operation": map[string]any{"type": "provision", "state": "in progress", "started": time.Now()}})
	if _, err := r.core.CoreV1().Secrets(brokerNS).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "reference-" + id, Labels: map[string]string{provisioners.LabelInstanceID: id}},
		Data:       map[string][]byte{"record": record},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	for _, o := range objs {
		if _, err := r.dyn.Resource(r.gvr[o.GroupVersionKind()]).Namespace(o.GetNamespace()).Apply(ctx, o.GetName(), o,
			metav1.ApplyOptions{FieldManager: provisioners.FieldManager, Force: true}); err != nil {
			return fmt.Errorf("apply %s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	return nil
}

// concurrently runs n calls of f at once and returns how long they took.
func concurrently(n int, f func(i int) error) (time.Duration, error) {
	start := time.Now()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = f(i) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// BenchmarkProvisionShippedVsClientGo provisions a standard PostgreSQL
// instance through the broker as shipped (HTTPS, the binary's
// configuration path and rate limits), alternately with the reference
// client applying the same objects; clients=16 sends 16 at once. Every
// iteration provisions new instances, so bursts are spent as in a busy
// platform's sustained load.
func BenchmarkProvisionShippedVsClientGo(b *testing.B) {
	w := sharedWorld(b)
	srv, cfg := w.startShippedBroker(b)
	ref := w.newReferenceClient(b, cfg.Postgres)
	body, _ := json.Marshal(provisionBody(catalog.PostgresStandardID, "team-c", map[string]any{"databases": []any{"app"}}))
	ctx := context.Background()
	run := 0
	for _, clients := range []int{1, 16} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			run++
			var brokerTime, refTime time.Duration
			n := 0
			for b.Loop() {
				n++
				id := func(kind, i int) string { return fmt.Sprintf("be0c%04d-%04d-4000-8%03d-%012d", run, kind, i, n) }
				viaBroker := func() (time.Duration, error) {
					return concurrently(clients, func(i int) error {
						code, raw, err := send(srv.Client(), http.MethodPut, srv.URL+"/v2/service_instances/"+id(1, i)+"?accepts_incomplete=true", body)
						if err == nil && code != http.StatusAccepted {
							err = fmt.Errorf("provision: %d %s", code, raw)
						}
						return err
					})
				}
				viaReference := func() (time.Duration, error) {
					return concurrently(clients, func(i int) error { return ref.provision(ctx, id(2, i)) })
				}
				// Alternate which goes first, so neither always meets the
				// other's leftovers (etcd compaction, watch fan-out).
				first, second := viaBroker, viaReference
				if n%2 == 0 {
					first, second = viaReference, viaBroker
				}
				d1, err := first()
				if err != nil {
					b.Fatal(err)
				}
				d2, err := second()
				if err != nil {
					b.Fatal(err)
				}
				if n%2 == 0 {
					d1, d2 = d2, d1
				}
				brokerTime += d1
				refTime += d2
			}
			perProvision := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(n*clients) }
			b.ReportMetric(perProvision(brokerTime), "broker-ms/provision")
			b.ReportMetric(perProvision(refTime), "clientgo-ms/provision")
			b.ReportMetric(float64(brokerTime)/float64(refTime), "broker/clientgo")
		})
	}
}

// BenchmarkCatalogVsPremarshalled is GET /v2/catalog from the broker
// against an HTTPS server writing the same bytes, on one core
// (GOMAXPROCS 1 for the benchmark: the broker, the reference server and
// the client share it). Both are alternated request by request.
func BenchmarkCatalogVsPremarshalled(b *testing.B) {
	w := sharedWorld(b)
	srv, _ := w.startShippedBroker(b)
	code, catalogBytes, err := send(srv.Client(), http.MethodGet, srv.URL+"/v2/catalog", nil)
	if err != nil || code != http.StatusOK {
		b.Fatalf("catalog: %d %v", code, err)
	}
	ref := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(catalogBytes)
	}))
	b.Cleanup(ref.Close)

	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	get := func(hc *http.Client, url string) time.Duration {
		start := time.Now()
		code, raw, err := send(hc, http.MethodGet, url, nil)
		if err != nil || code != http.StatusOK || len(raw) != len(catalogBytes) {
			b.Fatalf("GET %s: %d %v (%d bytes, want %d)", url, code, err, len(raw), len(catalogBytes))
		}
		return time.Since(start)
	}
	var brokerTime, refTime time.Duration
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		n++
		brokerTime += get(srv.Client(), srv.URL+"/v2/catalog")
		refTime += get(ref.Client(), ref.URL+"/v2/catalog")
	}
	b.ReportMetric(float64(n)/brokerTime.Seconds(), "broker-req/s")
	b.ReportMetric(float64(n)/refTime.Seconds(), "premarshalled-req/s")
	b.ReportMetric(refTime.Seconds()/brokerTime.Seconds(), "broker/premarshalled-throughput")
}

// BenchmarkPollVsFourReads is one last_operation poll of a standard
// instance in progress through the broker as shipped, against the four
// reads a poll needs: the record, the Cluster, the Database and the
// Pooler (their status is the instance's progress).
func BenchmarkPollVsFourReads(b *testing.B) {
	w := sharedWorld(b)
	srv, cfg := w.startShippedBroker(b)
	ref := w.newReferenceClient(b, cfg.Postgres)
	const id = "be0c2222-0000-4000-8000-000000000000"
	body, _ := json.Marshal(provisionBody(catalog.PostgresStandardID, "team-c", map[string]any{"databases": []any{"app"}}))
	if code, raw, err := send(srv.Client(), http.MethodPut, srv.URL+"/v2/service_instances/"+id+"?accepts_incomplete=true", body); err != nil || code != http.StatusAccepted {
		b.Fatalf("provision: %d %s %v", code, raw, err)
	}
	ctx := context.Background()
	records, err := ref.core.CoreV1().Secrets(brokerNS).List(ctx, metav1.ListOptions{LabelSelector: provisioners.LabelInstanceID + "=" + provisioners.LabelValue(id)})
	if err != nil || len(records.Items) != 1 {
		b.Fatalf("the instance's record: %v (%d found)", err, len(records.Items))
	}
	record := records.Items[0].Name
	// The objects whose status is the instance's progress, by name.
	objs, err := ref.objects(ref.instance(id, "team-c"))
	if err != nil {
		b.Fatal(err)
	}
	var watched []*unstructured.Unstructured
	for _, o := range objs {
		if k := o.GetKind(); k == "Cluster" || k == "Database" || k == "Pooler" {
			watched = append(watched, o)
		}
	}
	if len(watched) != 3 {
		b.Fatalf("the standard plan renders %d of Cluster, Database, Pooler; want one each", len(watched))
	}
	reads := func() error {
		if _, err := ref.core.CoreV1().Secrets(brokerNS).Get(ctx, record, metav1.GetOptions{}); err != nil {
			return err
		}
		for _, o := range watched {
			if _, err := ref.dyn.Resource(ref.gvr[o.GroupVersionKind()]).Namespace(o.GetNamespace()).Get(ctx, o.GetName(), metav1.GetOptions{}); err != nil {
				return err
			}
		}
		return nil
	}
	var brokerTime, refTime time.Duration
	n := 0
	for b.Loop() {
		n++
		start := time.Now()
		code, raw, err := send(srv.Client(), http.MethodGet, srv.URL+"/v2/service_instances/"+id+"/last_operation", nil)
		if err != nil || code != http.StatusOK {
			b.Fatalf("last_operation: %d %s %v", code, raw, err)
		}
		brokerTime += time.Since(start)
		start = time.Now()
		if err := reads(); err != nil {
			b.Fatal(err)
		}
		refTime += time.Since(start)
	}
	b.ReportMetric(float64(brokerTime.Microseconds())/1000/float64(n), "broker-ms/poll")
	b.ReportMetric(float64(refTime.Microseconds())/1000/float64(n), "4reads-ms/poll")
	b.ReportMetric(float64(brokerTime)/float64(refTime), "broker/4reads")
}
