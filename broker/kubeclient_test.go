package broker

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/strata-dev/strata/provisioners"
)

// fakeAPIServer answers discovery (legacy, non-aggregated) for the core
// group, /version, and 404 for every object; it counts the requests per
// path so a test sees which reached it.
type fakeAPIServer struct {
	mu       sync.Mutex
	requests map[string]int
}

func (f *fakeAPIServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests[r.URL.Path]++
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/version":
		_, _ = w.Write([]byte(`{"major":"1","minor":"34","gitVersion":"v1.34.4"}`))
	case "/api":
		_, _ = w.Write([]byte(`{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1:6443"}]}`))
	case "/apis":
		_, _ = w.Write([]byte(`{"kind":"APIGroupList","apiVersion":"v1","groups":[]}`))
	case "/api/v1":
		_, _ = w.Write([]byte(`{"kind":"APIResourceList","groupVersion":"v1","resources":[` +
			`{"name":"configmaps","singularName":"configmap","namespaced":true,"kind":"ConfigMap","verbs":["get","list"]},` +
			`{"name":"resourcequotas","singularName":"resourcequota","namespaced":true,"kind":"ResourceQuota","verbs":["get","list"]}]}`))
	default:
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`))
	}
}

func (f *fakeAPIServer) count(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[path]
}

// TestNewAppliesTheRateLimitsToEveryClient gives New a rest config with
// generous limits and a configuration with a tiny rate and a burst of 3,
// then spends each client's burst: the next request of every client (the
// clientset of the records, tenants, quotas and readiness; the dynamic
// client of server-side apply) is refused by its own limiter without
// reaching the API server. With client-go's defaults
// (5/s, bursts of 10) or the input's, all of them would get through.
func TestNewAppliesTheRateLimitsToEveryClient(t *testing.T) {
	g := NewWithT(t)
	api := &fakeAPIServer{requests: map[string]int{}}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)

	inputLimiter := &countingLimiter{}
	in := &rest.Config{Host: srv.URL, QPS: 1000, Burst: 2000, RateLimiter: inputLimiter}
	b, err := New(in, Options{Namespace: "strata-system", Kubernetes: KubernetesConfig{QPS: 0.001, Burst: 3}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(in.QPS).To(Equal(float32(1000)), "New must not change the caller's config")

	// The limiter refuses at once a wait beyond the deadline; the deadline
	// only bounds a broken test.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	refused := func(err error) bool { return err != nil && strings.Contains(err.Error(), "rate limiter") }

	// The clientset: one readiness check and two quota lists spend its
	// burst of 3 (its group clients and its discovery share one limiter).
	g.Expect(b.Ready(ctx)).To(Succeed())
	for range 2 {
		_, err := b.Quotas(ctx, "team-a")
		g.Expect(refused(err)).To(BeFalse(), "%v", err)
	}
	_, err = b.Quotas(ctx, "team-a")
	g.Expect(refused(err)).To(BeTrue(), "the clientset's fourth request: %v", err)
	g.Expect(b.Ready(ctx)).To(MatchError(ContainSubstring("rate limiter")))
	g.Expect(api.count("/api/v1/namespaces/team-a/resourcequotas")).To(Equal(2))
	g.Expect(api.count("/version")).To(Equal(1))

	// The dynamic client: the first Get also spends the discovery client's
	// burst (/api, /apis, /api/v1), then three Gets spend the dynamic
	// client's own.
	cm := provisioners.Ref{GVK: schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, Namespace: "team-a", Name: "x"}
	for range 3 {
		_, err := b.Kube.Get(ctx, cm)
		g.Expect(err).NotTo(HaveOccurred())
	}
	_, err = b.Kube.Get(ctx, cm)
	g.Expect(refused(err)).To(BeTrue(), "the dynamic client's fourth request: %v", err)
	g.Expect(api.count("/api/v1/namespaces/team-a/configmaps/x")).To(Equal(3))

	g.Expect(api.count("/api")).To(Equal(1))
	g.Expect(api.count("/api/v1")).To(Equal(1))

	// No client used a limiter of the input config: each built its own
	// from QPS and Burst. (The discovery client behind the dynamic one
	// cannot be shown refusing: it waits without a deadline.)
	g.Expect(inputLimiter.calls.Load()).To(BeZero())
}

// countingLimiter is a rate limiter that lets everything through and
// counts the calls, to show that no client uses it.
type countingLimiter struct{ calls atomic.Int64 }

func (l *countingLimiter) TryAccept() bool                { l.calls.Add(1); return true }
func (l *countingLimiter) Accept()                        { l.calls.Add(1) }
func (l *countingLimiter) Stop()                          {}
func (l *countingLimiter) QPS() float32                   { return 1e6 }
func (l *countingLimiter) Wait(ctx context.Context) error { l.calls.Add(1); return nil }

func TestClientConfig(t *testing.T) {
	g := NewWithT(t)
	in := &rest.Config{Host: "https://127.0.0.1:6443", QPS: 5, Burst: 10}

	out := ClientConfig(in, KubernetesConfig{})
	g.Expect(out.QPS).To(Equal(float32(DefaultKubernetesQPS)))
	g.Expect(out.Burst).To(Equal(DefaultKubernetesBurst))
	g.Expect(out.Host).To(Equal(in.Host))
	g.Expect(in.QPS).To(Equal(float32(5)), "the input is copied, not changed")

	out = ClientConfig(in, KubernetesConfig{QPS: 40, Burst: 80})
	g.Expect(out.QPS).To(Equal(float32(40)))
	g.Expect(out.Burst).To(Equal(80))

	// Negative: client-go makes no client-side limiter.
	out = ClientConfig(in, KubernetesConfig{QPS: -1})
	g.Expect(out.QPS).To(Equal(float32(-1)))
}

func TestKubernetesConfigFile(t *testing.T) {
	g := NewWithT(t)
	c, err := ParseConfig(nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.Kubernetes).To(Equal(KubernetesConfig{QPS: DefaultKubernetesQPS, Burst: DefaultKubernetesBurst}))

	c, err = ParseConfig([]byte("kubernetes:\n  qps: 50\n  burst: 75\n"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.Kubernetes).To(Equal(KubernetesConfig{QPS: 50, Burst: 75}))

	c, err = ParseConfig([]byte("kubernetes:\n  qps: 300\n"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.Kubernetes).To(Equal(KubernetesConfig{QPS: 300, Burst: 600}))

	_, err = ParseConfig([]byte("kubernetes:\n  qps: 50\n  burst: 10\n"))
	g.Expect(err).To(MatchError(ContainSubstring("kubernetes.burst (10) must be at least kubernetes.qps (50)")))
	_, err = ParseConfig([]byte("kubernetes:\n  burst: -1\n"))
	g.Expect(err).To(MatchError(ContainSubstring("kubernetes.burst must not be negative")))
	_, err = ParseConfig([]byte("kubernetes:\n  qsp: 50\n"))
	g.Expect(err).To(MatchError(ContainSubstring("qsp")))
}
