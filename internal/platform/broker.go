//go:build linux

package platform

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/cli"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BrokerRelease is the Helm release name of the broker (its Service and
// Deployment are named after it).
const BrokerRelease = "strata-broker"

// BuildBrokerImage builds the broker from cmd/strata-broker of SourceDir
// into an image tagged with a hash of the binary, and imports it into the
// running platform's containerd.
func (p *Platform) BuildBrokerImage(ctx context.Context) (string, error) {
	unlock, err := p.lockCache()
	if err != nil {
		return "", err
	}
	defer unlock()
	bin, err := p.buildModuleBinary(ctx, goBuild{
		name:      "strata-broker",
		moduleDir: p.cfg.SourceDir,
		pkg:       "./cmd/strata-broker",
		// The cache key hashes only the module's top-level files, so the
		// broker's sources are hashed separately (sourceTreeHash).
		ldflags: "",
		extraKey: func() (string, error) {
			return sourceTreeHash(p.cfg.SourceDir)
		},
	})
	if err != nil {
		return "", err
	}
	binHash, err := hashFile(bin)
	if err != nil {
		return "", err
	}
	ref, archive, err := p.binaryImage("strata-broker", binHash[:12], bin, []layerEntry{
		{path: "strata-broker", mode: 0o755, source: bin},
	}, imageConfig{Entrypoint: []string{"/strata-broker"}, User: "65532:65532"})
	if err != nil {
		return "", err
	}
	if err := p.importImage(ctx, archive); err != nil {
		return "", err
	}
	return ref, nil
}

// BrokerInstall is what InstallBroker needs.
type BrokerInstall struct {
	Namespace string
	Image     string // from BuildBrokerImage
	Password  string // the OSB basic-auth password (user "strata")
	// Values are merged over the ones InstallBroker sets, nested maps
	// (map[string]any) key by key.
	Values map[string]any
}

// Broker is an installed broker, reachable from the host.
type Broker struct {
	// URL is https://<service>.<namespace>.svc.cluster.local (resolve it
	// with Resolver, or to ServiceIP, which the host routes to).
	URL       string
	ServiceIP string
	// CAPEM is the platform CA that signed the broker's certificate.
	CAPEM []byte
	// TLS trusts the platform CA that signed the broker's certificate.
	TLS *tls.Config
	// Resolver resolves cluster names through the cluster DNS.
	Resolver *net.Resolver
}

// InstallBroker installs charts/strata-broker with Helm's Go SDK (a real
// Helm release), with a serving certificate signed by the platform's own
// CA, instances' server certificates from cert-manager's PlatformIssuer
// (InstallCertManager must have run), the local images, and its
// monitors and rules when the Prometheus Operator's CRDs are installed
// (InstallPrometheus), and waits until the broker's pods are ready.
func (p *Platform) InstallBroker(ctx context.Context, in BrokerInstall) (*Broker, error) {
	host := fmt.Sprintf("%s.%s.svc", BrokerRelease, in.Namespace)
	if _, err := p.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: in.Namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	certPEM, keyPEM, err := p.issueServing([]string{BrokerRelease, BrokerRelease + "." + in.Namespace, host, host + ".cluster.local"})
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(p.pki("ca.crt"))
	if err != nil {
		return nil, err
	}
	tlsSecret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: BrokerRelease + "-local-tls", Namespace: in.Namespace},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM, "ca.crt": caPEM},
	}
	if _, err := p.Client.CoreV1().Secrets(in.Namespace).Create(ctx, tlsSecret, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}

	repo, tag := in.Image[:len(in.Image)-len(tagOf(in.Image))-1], tagOf(in.Image)
	imgs, err := p.BuildImages(ctx)
	if err != nil {
		return nil, err
	}
	// The broker's ServiceMonitor, PrometheusRule and instances'
	// PodMonitors (the product's defaults) when InstallPrometheus ran.
	monitoring, err := p.prometheusOperatorInstalled(ctx)
	if err != nil {
		return nil, err
	}
	values := map[string]any{
		"replicaCount":   1,
		"image":          map[string]any{"repository": repo, "tag": tag, "pullPolicy": "Never"},
		"credentials":    map[string]any{"password": in.Password},
		"tls":            map[string]any{"existingSecret": tlsSecret.Name},
		"serviceMonitor": map[string]any{"enabled": monitoring},
		"prometheusRule": map[string]any{"enabled": monitoring},
		"config": map[string]any{
			"postgres": map[string]any{
				"images":     map[string]any{PostgreSQLMajor: imgs.PostgreSQL},
				"podMonitor": monitoring,
				// Server certificates from cert-manager's platform CA
				// (InstallCertManager); Redis shares the issuer.
				"serverCertificates": map[string]any{"issuerName": PlatformIssuer, "issuerKind": "ClusterIssuer"},
			},
			"redis": map[string]any{
				"redisImage":    imgs.Redis,
				"exporterImage": imgs.RedisExporter,
				"podMonitor":    monitoring,
			},
		},
	}
	mergeValues(values, in.Values)

	settings := cli.New()
	settings.KubeConfig = p.Kubeconfig()
	settings.SetNamespace(in.Namespace)
	cfg := new(action.Configuration)
	if err := cfg.Init(settings.RESTClientGetter(), in.Namespace, "secret", func(format string, v ...any) {
		p.cfg.Log("helm: "+format, v...)
	}); err != nil {
		return nil, fmt.Errorf("platform: helm: %w", err)
	}
	chart, err := loader.Load(filepath.Join(p.cfg.SourceDir, "charts", "strata-broker"))
	if err != nil {
		return nil, fmt.Errorf("platform: loading the broker chart: %w", err)
	}
	// Installed already (a second start): upgrade the release instead.
	if _, err := action.NewGet(cfg).Run(BrokerRelease); err == nil {
		upgrade := action.NewUpgrade(cfg)
		upgrade.Namespace = in.Namespace
		upgrade.Wait = true
		upgrade.Timeout = 5 * time.Minute
		if _, err := upgrade.RunWithContext(ctx, BrokerRelease, chart, values); err != nil {
			return nil, fmt.Errorf("platform: helm upgrade %s: %w; pods: %s", BrokerRelease, err, p.podSummary(ctx, in.Namespace))
		}
	} else {
		install := action.NewInstall(cfg)
		install.ReleaseName = BrokerRelease
		install.Namespace = in.Namespace
		install.Wait = true
		install.Timeout = 5 * time.Minute
		if _, err := install.RunWithContext(ctx, chart, values); err != nil {
			return nil, fmt.Errorf("platform: helm install %s: %w; pods: %s", BrokerRelease, err, p.podSummary(ctx, in.Namespace))
		}
	}
	// Helm's wait was seen returning ("wait for resources succeeded")
	// while the broker's only pod was not ready yet: wait for it here.
	if err := p.WaitForDeployment(ctx, in.Namespace, BrokerRelease, 5*time.Minute); err != nil {
		return nil, err
	}

	svc, err := p.Client.CoreV1().Services(in.Namespace).Get(ctx, BrokerRelease, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &Broker{
		URL:       "https://" + host + ".cluster.local",
		ServiceIP: svc.Spec.ClusterIP,
		CAPEM:     caPEM,
		TLS:       &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		Resolver:  p.ClusterResolver(),
	}, nil
}

// ClusterResolver resolves names through the cluster DNS, reached from the
// host through its route into the node.
func (p *Platform) ClusterResolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, net.JoinHostPort(p.dnsServiceIP.String(), "53"))
	}}
}

// issueServing signs a serving certificate with the platform CA.
func (p *Platform) issueServing(dnsNames []string) (certPEM, keyPEM []byte, err error) {
	caPair, err := tls.LoadX509KeyPair(p.pki("ca.crt"), p.pki("ca.key"))
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(caPair.Certificate[0])
	if err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: dnsNames[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dnsNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caPair.PrivateKey)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

// mergeValues merges override into values: nested maps are merged key by
// key (as Helm coalesces them), anything else replaces what is there.
func mergeValues(values, override map[string]any) {
	for k, v := range override {
		sub, isMap := v.(map[string]any)
		have, haveMap := values[k].(map[string]any)
		if isMap && haveMap {
			mergeValues(have, sub)
			continue
		}
		values[k] = v
	}
}
