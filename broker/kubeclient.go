package broker

import (
	"context"
	"fmt"

	"k8s.io/client-go/rest"
)

// The shipped client-side rate limits of every Kubernetes client the broker
// makes. client-go's own defaults (5 requests/s, bursts of 10) hold one
// replica to about one provision every two seconds. docs/benchmarks.md
// promises about 25 provisions a second and a few hundred operations in
// progress per replica: a provision makes about 13 requests of the dynamic
// client (325/s) and a poll of an operation in progress about 14 (300
// operations polled every 10 s: 420/s). 500/s with bursts of 1,000 per
// client sustains both, where 100/s made 16 concurrent provisions take 1.6
// to 2 times as long as an unlimited client (measured in docs/benchmarks.md),
// and still stops a runaway loop from flooding the API server.
const (
	DefaultKubernetesQPS   = 500
	DefaultKubernetesBurst = 1000
)

// KubernetesConfig is the `kubernetes` section of the configuration file:
// the client-side rate limits of the broker's Kubernetes clients. Each
// client (the typed clientset, the dynamic client of server-side apply and
// their discovery) gets its own limiter with these settings.
type KubernetesConfig struct {
	// QPS is the sustained requests per second of each client; 0 means
	// DefaultKubernetesQPS. A negative value turns client-side limiting
	// off, leaving it to the API server's priority and fairness.
	QPS float32 `json:"qps"`
	// Burst is how many requests a client may make at once above QPS; 0
	// means twice QPS (DefaultKubernetesBurst with the default QPS).
	Burst int `json:"burst"`
}

// DefaultKubernetesConfig is the shipped configuration.
func DefaultKubernetesConfig() KubernetesConfig {
	return KubernetesConfig{QPS: DefaultKubernetesQPS, Burst: DefaultKubernetesBurst}
}

// Validate refuses settings client-go would misread.
func (k KubernetesConfig) Validate() error {
	if k.Burst < 0 {
		return fmt.Errorf("kubernetes.burst must not be negative (got %d)", k.Burst)
	}
	if k.QPS > 0 && k.Burst > 0 && float32(k.Burst) < k.QPS {
		// client-go would accept it, but a burst below the rate means
		// requests queue even at the steady rate.
		return fmt.Errorf("kubernetes.burst (%d) must be at least kubernetes.qps (%g)", k.Burst, k.QPS)
	}
	return nil
}

// withDefaults fills the zero fields with the shipped values.
func (k KubernetesConfig) withDefaults() KubernetesConfig {
	if k.QPS == 0 {
		k.QPS = DefaultKubernetesQPS
	}
	if k.Burst == 0 {
		k.Burst = DefaultKubernetesBurst
		if k.QPS > 0 {
			k.Burst = int(2 * k.QPS)
		}
	}
	return k
}

// ClientConfig returns a copy of cfg with the rate limits of k (its zero
// fields taking the shipped defaults). It is the one place the broker's
// client limits are set: New builds every client from its result, so the
// binary, the embedded broker and the tests run with the same limits.
// A rate limiter already on cfg is dropped, since client-go would use it
// instead of QPS and Burst.
func ClientConfig(cfg *rest.Config, k KubernetesConfig) *rest.Config {
	k = k.withDefaults()
	out := rest.CopyConfig(cfg)
	out.RateLimiter = nil
	out.QPS, out.Burst = k.QPS, k.Burst
	return out
}

// Ready reports whether the API server answers, through the broker's own
// (rate-limited) clientset: the /readyz check.
func (b *Broker) Ready(ctx context.Context) error {
	return b.Store.client.Discovery().RESTClient().Get().AbsPath("/version").Do(ctx).Error()
}
