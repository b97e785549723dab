//go:build linux

package platform

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
)

// repoRoot is the Strata repository (the test runs in internal/platform).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "internal", "platform", "tools", "kube", "go.mod")); err != nil {
		t.Fatalf("repository root not found at %s: %v", root, err)
	}
	return root
}

// TestCloudNativePGOnRealPlatform brings the platform up, installs the real
// CloudNativePG operator, creates a 1-instance Cluster, waits until the
// operator reports it healthy, queries it from the host over TLS through
// its -rw Service (resolved by the cluster's DNS), then stops the platform
// and checks that nothing is left on the host.
func TestCloudNativePGOnRealPlatform(t *testing.T) {
	t.Parallel() // each on a platform of its own (docs/platform.md, Tests)
	hostForward := readSysctl(t, "net/ipv4/ip_forward")
	begin := time.Now()
	ctx, p, stopped := startTestPlatform(t, "test-state", 45*time.Minute)
	imgs, err := p.BuildImages(ctx)
	if err != nil {
		t.Fatal(err)
	}

	checkNetworkRule(ctx, t, p, hostForward)

	// Start is idempotent: a second call keeps everything running.
	step := time.Now()
	if err := p.Start(ctx); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	t.Logf("TIMING second (idempotent) start: %s", time.Since(step).Round(time.Second))

	step = time.Now()
	if err := p.InstallCNPG(ctx); err != nil {
		t.Fatalf("%v\n(component logs in %s)", err, p.LogDir())
	}
	t.Logf("TIMING CloudNativePG operator installed: %s", time.Since(step).Round(time.Second))

	t.Run("CloudNativePGCluster", func(t *testing.T) {
		const ns, cluster = "strata-e2e", "pg"
		step = time.Now()
		if err := p.Apply(ctx, []byte(fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
---
apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  instances: 1
  imageName: %[3]s
  imagePullPolicy: IfNotPresent
  storage: {size: 1Gi, storageClass: %[4]s}
  bootstrap:
    initdb: {database: app, owner: app}
`, ns, cluster, imgs.PostgreSQL, StorageClass))); err != nil {
			t.Fatal(err)
		}
		dyn, err := dynamic.NewForConfig(p.AdminConfig)
		if err != nil {
			t.Fatal(err)
		}
		clusters := dyn.Resource(schema.GroupVersionResource{Group: "postgresql.cnpg.io", Version: "v1", Resource: "clusters"}).Namespace(ns)
		var phase string
		err = wait.PollUntilContextTimeout(ctx, time.Second, 10*time.Minute, true, func(ctx context.Context) (bool, error) {
			c, err := clusters.Get(ctx, cluster, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			phase, _, _ = unstructured.NestedString(c.Object, "status", "phase")
			return phase == "Cluster in healthy state", nil
		})
		if err != nil {
			t.Fatalf("Cluster %s/%s not healthy, phase %q; pods: %s\n(component logs in %s)", ns, cluster, phase, p.podSummary(ctx, ns), p.LogDir())
		}
		t.Logf("TIMING 1-instance Cluster healthy: %s", time.Since(step).Round(time.Second))

		// The application credentials and the server CA the operator made.
		app, err := p.Client.CoreV1().Secrets(ns).Get(ctx, cluster+"-app", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		caSecret, err := p.Client.CoreV1().Secrets(ns).Get(ctx, cluster+"-ca", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		version := queryThroughService(ctx, t, p, app, caSecret, fmt.Sprintf("%s-rw.%s.svc", cluster, ns))
		if want := "PostgreSQL " + tagOf(imgs.PostgreSQL); !strings.HasPrefix(version, want) {
			t.Errorf("server version %q, want it to start with %q (the image's tag)", version, want)
		}
		t.Logf("TIMING start to first query: %s", time.Since(begin).Round(time.Second))
	})
	t.Run("BrokerProvisionsDevLite", func(t *testing.T) {
		testBrokerProvisionsDevLite(ctx, t, p)
	})
	// Seeding and a masked copy over OSB (docs/postgres.md). make run's
	// broker issues credentials with OpenBao, under which copies are
	// refused: the broker is installed again with the chart's defaults
	// (DatabaseRole logins), on the same platform.
	// A seed from S3 fetches from versitygw over TLS (a certificate of
	// the platform CA, which the broker's postgres.seedCABundle names, as
	// a platform team does for an S3-compatible store with a private CA).
	t.Run("SeededInstanceAndMaskedCopy", func(t *testing.T) {
		store, err := p.InstallS3(ctx)
		if err != nil {
			t.Fatal(err)
		}
		osb, _ := installTestBroker(ctx, t, p, map[string]any{"config": map[string]any{"postgres": map[string]any{"seedCABundle": string(store.CAPEM)}}})
		testSeedAndMaskedCopy(ctx, t, p, osb, "dev", store)
	})

	step = time.Now()
	*stopped = true
	if err := p.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if left := p.Leftovers(); len(left) > 0 {
		t.Fatalf("left on the host after Stop: %v", left)
	}
	if err := p.Purge(); err != nil {
		t.Fatal(err)
	}
	t.Logf("TIMING stop and purge: %s", time.Since(step).Round(time.Second))
}

// queryThroughService connects from the host to a Service name, resolved
// by the cluster's DNS (reached through the host's route into the node),
// over TLS verified against the cluster's CA, and returns version().
func queryThroughService(ctx context.Context, t *testing.T, p *Platform, app, caSecret *corev1.Secret, host string) string {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caSecret.Data["ca.crt"]) {
		t.Fatalf("no CA in secret %s", caSecret.Name)
	}
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=5432 dbname=app connect_timeout=10", host))
	if err != nil {
		t.Fatal(err)
	}
	cfg.User = string(app.Data["username"])
	cfg.Password = string(app.Data["password"])
	cfg.TLSConfig = &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}
	clusterDNS := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, net.JoinHostPort(p.dnsServiceIP.String(), "53"))
	}}
	cfg.LookupFunc = func(ctx context.Context, host string) ([]string, error) {
		return clusterDNS.LookupHost(ctx, host+".cluster.local")
	}
	var version string
	var lastErr error
	// The Service's endpoints follow the pod's readiness by a moment.
	err = wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			lastErr = err
			return false, nil
		}
		defer conn.Close(ctx)
		if err := conn.QueryRow(ctx, "select version()").Scan(&version); err != nil {
			lastErr = err
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("querying %s from the host: %v (last error: %v)", host, err, lastErr)
	}
	t.Logf("%s answered: %s", host, version)
	return version
}

// TestPinnedVersionsMatchModules keeps the version constants in step with
// the nested modules that build the binaries.
func TestPinnedVersionsMatchModules(t *testing.T) {
	root := repoRoot(t)
	for dir, want := range map[string]string{
		"kube":        "k8s.io/kubernetes " + KubernetesVersion,
		"coredns":     "github.com/coredns/coredns " + CoreDNSVersion,
		"certmanager": certManagerModule + " " + CertManagerVersion,
	} {
		b, err := os.ReadFile(filepath.Join(root, "internal", "platform", "tools", dir, "go.mod"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "require "+want+"\n") && !strings.Contains(string(b), "\n\t"+want+"\n") {
			t.Errorf("tools/%s/go.mod does not require %s", dir, want)
		}
	}
}

// checkNetworkRule checks the project's network rule on the running
// platform: the host's forwarding is untouched, the node's namespace has
// no default route, and it has no route to an address outside the machine.
func checkNetworkRule(ctx context.Context, t *testing.T, p *Platform, hostForward string) {
	t.Helper()
	if got := readSysctl(t, "net/ipv4/ip_forward"); got != hostForward {
		t.Errorf("host net.ipv4.ip_forward is %s, was %s before the platform started", got, hostForward)
	}
	out, err := exec.CommandContext(ctx, "ip", "-n", p.netnsName(), "route", "show", "default").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("the node namespace has a default route (or ip failed: %v): %s", err, out)
	}
	// A route lookup only (nothing is sent, even if the check failed).
	out, err = exec.CommandContext(ctx, "ip", "-n", p.netnsName(), "route", "get", "192.0.2.1").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "unreachable") {
		t.Errorf("the node namespace routes to an outside address: %s", out)
	}
}

func readSysctl(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
