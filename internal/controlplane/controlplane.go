//go:build linux

// Package controlplane runs a real Kubernetes control plane (etcd and the
// kube-apiserver, no controllers, no nodes) and installs the upstream
// CustomResourceDefinitions Strata writes objects of. The broker's
// --embedded mode runs it, and integration/kubeenv wraps it for the tests.
//
// It is a small stand-in for controller-runtime's envtest: the API server
// validates objects against the real CRD schemas, enforces RBAC and runs the
// default admission chain, but nothing reconciles what is created.
//
// The package is Linux-only because the processes are tied to their parent
// with Pdeathsig, so a broker or test killed without cleaning up leaves no
// etcd or kube-apiserver behind.
package controlplane

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

const (
	modulePath = "github.com/strata-dev/strata"

	// EnvKubeAPIServer overrides the kube-apiserver binary
	// (default <repo>/.cache/bin/kube-apiserver).
	EnvKubeAPIServer = "STRATA_KUBE_APISERVER"
	// EnvCRDsDir points at the CRDs that have no Go module (Strimzi, the
	// redis operators); default <repo>/../shared/crds.
	EnvCRDsDir = "STRATA_CRDS_DIR"

	etcdBinary = "/usr/bin/etcd"

	// AdminUser is the user the Env's token authenticates as; it is in
	// system:masters, which RBAC lets do everything.
	AdminUser = "strata-admin"

	startTimeout = 60 * time.Second
	crdTimeout   = 60 * time.Second
)

// Env is a running control plane.
type Env struct {
	// Config talks to the kube-apiserver as AdminUser over TLS, trusting
	// the generated serving certificate.
	Config *rest.Config
	// Dir is the temporary directory holding etcd's data, the keys and the
	// processes' logs (etcd.log, kube-apiserver.log).
	Dir string

	procs    []*proc
	stopOnce sync.Once
	// apiserver and its command line, for RestartAPIServer.
	apiserver     *proc
	apiserverBin  string
	apiserverArgs []string
}

// proc is a started child process whose exit is observable without
// blocking, so startup loops notice a crash at once.
type proc struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
	err    error // set before exited is closed
}

// Start starts etcd and the kube-apiserver and returns once /readyz is ok.
// The caller must call Stop.
func Start() (_ *Env, err error) {
	apiserverBin, err := kubeAPIServerBinary()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(etcdBinary); err != nil {
		return nil, fmt.Errorf("etcd not found at %s: install it with `apt-get install etcd-server` (or `make deps`)", etcdBinary)
	}

	dir, err := os.MkdirTemp("", "strata-controlplane-")
	if err != nil {
		return nil, err
	}
	env := &Env{Dir: dir}
	defer func() {
		if err != nil {
			env.Stop()
		}
	}()

	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	apiPort := ports[2]

	etcd, err := env.spawn("etcd", etcdBinary,
		"--name=default",
		"--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL,
		"--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL,
	)
	if err != nil {
		return nil, err
	}
	// Wait for etcd first so that a port clash or a broken etcd is reported
	// with etcd's own log rather than as an API server that never gets ready.
	if err := waitFor(etcd, http.DefaultClient, etcdURL+"/health", `"health":"true"`); err != nil {
		return nil, err
	}

	files, err := writeSecrets(dir)
	if err != nil {
		return nil, err
	}
	env.apiserverBin = apiserverBin
	env.apiserverArgs = []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		// Without it the API server looks for a routable interface and
		// fails on hosts that have none.
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", apiPort),
		"--tls-cert-file=" + files.cert,
		"--tls-private-key-file=" + files.key,
		"--token-auth-file=" + files.tokens,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		// The private key file also carries the public key that verifies
		// the tokens the API server signs.
		"--service-account-key-file=" + files.saKey,
		"--service-account-signing-key-file=" + files.saKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--allow-privileged=true",
	}
	apiserver, err := env.spawn("kube-apiserver", apiserverBin, env.apiserverArgs...)
	if err != nil {
		return nil, err
	}
	env.apiserver = apiserver

	env.Config = &rest.Config{
		Host:            fmt.Sprintf("https://127.0.0.1:%d", apiPort),
		BearerToken:     files.token,
		TLSClientConfig: rest.TLSClientConfig{CAData: files.certPEM},
		// client-go's default 5 QPS would make installing CRDs and polling
		// them the slowest part of a start. (The broker sets its own
		// limits: broker.ClientConfig.)
		QPS:   1000,
		Burst: 2000,
	}
	hc, err := rest.HTTPClientFor(env.Config)
	if err != nil {
		return nil, err
	}
	if err := waitFor(apiserver, hc, env.Config.Host+"/readyz", "ok"); err != nil {
		return nil, err
	}
	return env, nil
}

// RestartAPIServer stops the API server (as a crash or an upgrade would:
// clients see refused connections meanwhile) and starts it again on the
// same address with the same etcd, and waits until it is ready.
func (e *Env) RestartAPIServer() error {
	e.apiserver.stop()
	p, err := e.spawn("kube-apiserver-restarted", e.apiserverBin, e.apiserverArgs...)
	if err != nil {
		return err
	}
	e.apiserver = p
	hc, err := rest.HTTPClientFor(e.Config)
	if err != nil {
		return err
	}
	// A restart under load (a whole test suite beside it) may take
	// longer than a first start on a quiet machine.
	return waitForWithin(p, hc, e.Config.Host+"/readyz", "ok", 3*startTimeout)
}

// Stop kills both processes and removes Dir. It is safe to call twice.
func (e *Env) Stop() {
	e.stopOnce.Do(func() {
		// The API server first, so it does not log etcd going away.
		for _, p := range slices.Backward(e.procs) {
			p.stop()
		}
		os.RemoveAll(e.Dir)
	})
}

// ConfigAs returns a copy of Config that impersonates user (e.g.
// "system:serviceaccount:ns:name") in groups, for RBAC checks.
func (e *Env) ConfigAs(user string, groups ...string) *rest.Config {
	cfg := rest.CopyConfig(e.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	return cfg
}

// RepoRoot returns the root of the Strata module: the first directory above
// the working directory whose go.mod declares it (nested modules such as
// integration/tools/kube-apiserver are passed over).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && declaresModule(data, modulePath) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s above the working directory", modulePath)
		}
		dir = parent
	}
}

func declaresModule(gomod []byte, path string) bool {
	for line := range strings.Lines(string(gomod)) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" && strings.Trim(f[1], `"`) == path {
			return true
		}
	}
	return false
}

func kubeAPIServerBinary() (string, error) {
	if bin := os.Getenv(EnvKubeAPIServer); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvKubeAPIServer, bin, err)
		}
		return bin, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, ".cache", "bin", "kube-apiserver")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("kube-apiserver not found at %s: build it with `make kube-apiserver` "+
			"(or `bash integration/scripts/build-kube-apiserver.sh`), or set %s", bin, EnvKubeAPIServer)
	}
	return bin, nil
}

// spawn starts a process with its output in <Dir>/<name>.log.
func (e *Env) spawn(name, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(e.Dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Killed with the test binary even if it dies without running Stop.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	e.procs = append(e.procs, p)
	return p, nil
}

func (p *proc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	// Errors mean the process is already gone, which is the aim.
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// logTail returns the last lines of the process's log for error messages.
func (p *proc) logTail() string {
	data, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return fmt.Sprintf("last lines of %s's output:\n%s", p.name, strings.Join(lines, "\n"))
}

// waitFor polls url until it answers 200 with a body containing want,
// failing early if the process exits and after startTimeout otherwise.
// (The status matters: a failing /readyz lists its passing checks as "ok".)
func waitFor(p *proc, hc *http.Client, url, want string) error {
	return waitForWithin(p, hc, url, want, startTimeout)
}

func waitForWithin(p *proc, hc *http.Client, url, want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited during startup (%w); %s", p.name, p.err, p.logTail())
		default:
		}
		status, body := probe(hc, url)
		if status == http.StatusOK && strings.Contains(body, want) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s (last answer of %s: %d %s); %s", p.name, timeout, url, status, body, p.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// probe returns the status and body of a GET, or 0 and the error.
func probe(hc *http.Client, url string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(bytes.TrimSpace(body))
}

func freePorts(n int) ([]int, error) {
	// All listeners stay open until every port is picked so the kernel
	// does not hand out the same port twice.
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

type secretFiles struct {
	cert, key, tokens, saKey string
	certPEM                  []byte
	token                    string
}

// writeSecrets generates the serving certificate, the admin token and the
// service-account signing key into dir.
func writeSecrets(dir string) (secretFiles, error) {
	f := secretFiles{
		cert:   filepath.Join(dir, "serving.crt"),
		key:    filepath.Join(dir, "serving.key"),
		tokens: filepath.Join(dir, "tokens.csv"),
		saKey:  filepath.Join(dir, "sa.key"),
	}

	// A self-signed certificate that is its own CA: clients trust it
	// directly, no separate CA is needed. ECDSA keys generate instantly.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "strata-controlplane"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return f, err
	}
	f.certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM, err := ecKeyPEM(key)
	if err != nil {
		return f, err
	}

	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	saKeyPEM, err := ecKeyPEM(saKey)
	if err != nil {
		return f, err
	}

	token := make([]byte, 16)
	if _, err := rand.Read(token); err != nil {
		return f, err
	}
	f.token = hex.EncodeToString(token)
	// token,user,uid,"groups"
	tokens := fmt.Sprintf("%s,%s,%s,\"system:masters\"\n", f.token, AdminUser, AdminUser)

	for path, data := range map[string][]byte{f.cert: f.certPEM, f.key: keyPEM, f.saKey: saKeyPEM, f.tokens: []byte(tokens)} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return f, err
		}
	}
	return f, nil
}

func ecKeyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// InstallCRDs creates or updates every CustomResourceDefinition found in
// paths (directories, whose *.yaml and *.yml files are read, or single
// files; multi-document YAML is fine; other kinds are skipped) and waits
// until all of them are Established.
func InstallCRDs(cfg *rest.Config, paths ...string) error {
	crds, err := readCRDs(paths)
	if err != nil {
		return err
	}
	// Upstream CRDs draw schema warnings (e.g. unknown format "binary")
	// that are not the test's business.
	cfg = rest.CopyConfig(cfg)
	cfg.WarningHandler = rest.NoWarnings{}
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	api := client.Resource(crdResource)
	ctx, cancel := context.WithTimeout(context.Background(), crdTimeout)
	defer cancel()

	for _, crd := range crds {
		_, err := api.Create(ctx, crd, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			// Update in place: a test may install the other redis CRD
			// or re-run against a reused Env.
			var cur *unstructured.Unstructured
			if cur, err = api.Get(ctx, crd.GetName(), metav1.GetOptions{}); err == nil {
				crd.SetResourceVersion(cur.GetResourceVersion())
				_, err = api.Update(ctx, crd, metav1.UpdateOptions{})
			}
		}
		if err != nil {
			return fmt.Errorf("installing CRD %s: %w", crd.GetName(), err)
		}
	}

	for _, crd := range crds {
		for {
			cur, err := api.Get(ctx, crd.GetName(), metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("waiting for CRD %s: %w", crd.GetName(), err)
			}
			if established(cur) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("CRD %s not Established after %s: conditions %v", crd.GetName(), crdTimeout, cur.Object["status"])
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

func established(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

func readCRDs(paths []string) ([]*unstructured.Unstructured, error) {
	var files []string
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !info.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
				files = append(files, filepath.Join(p, e.Name()))
			}
		}
	}

	var crds []*unstructured.Unstructured
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var obj map[string]any
			if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			u := &unstructured.Unstructured{Object: obj}
			if obj == nil || u.GetKind() != "CustomResourceDefinition" || u.GroupVersionKind().Group != crdResource.Group {
				continue // empty document or another kind
			}
			crds = append(crds, u)
		}
	}
	if len(crds) == 0 {
		return nil, fmt.Errorf("no CustomResourceDefinition in %v", paths)
	}
	return crds, nil
}

// The upstream releases whose CRDs Strata's objects must validate against.
// They are Go modules, so the module proxy (and its cache) serves them
// without any other network access. CRDs are never copied into the
// repository: they are read from the Go module cache, where
// DownloadCRDModules (the tests, `make deps`) or `go mod download` puts
// them.
var crdModules = []struct{ module, path string }{
	{"github.com/cloudnative-pg/cloudnative-pg@v1.30.0", "config/crd/bases"},
	{"github.com/cloudnative-pg/plugin-barman-cloud@v0.14.0", "config/crd/bases"},
	{"github.com/prometheus-operator/prometheus-operator@v0.85.0", "example/prometheus-operator-crd"},
	{"github.com/cert-manager/cert-manager@v1.19.1", "deploy/crds"},
	{"istio.io/api@v1.28.0", "kubernetes/customresourcedefinitions.gen.yaml"},
	// Flux 2.7's HelmRelease and sources: the platform bundle
	// (charts/strata-platform-operators) is made of them.
	{"github.com/fluxcd/helm-controller@v1.4.3", "config/crd/bases"},
	{"github.com/fluxcd/source-controller@v1.7.3", "config/crd/bases"},
}

// CRDModules returns the module@version of every Go module whose CRDs
// UpstreamCRDDirs reads.
func CRDModules() []string {
	out := make([]string, len(crdModules))
	for i, m := range crdModules {
		out[i] = m.module
	}
	return out
}

// UpstreamCRDDirs returns the directories (and, for Istio, the single file)
// holding the CRDs of CloudNativePG, the barman-cloud plugin,
// prometheus-operator, cert-manager, Istio, Flux (helm-controller and
// source-controller), Strimzi and the spotahome redis-operator. RedisForkCRDDir holds the other RedisFailover CRD.
// The modules must be in the Go module cache already: nothing is
// downloaded, and the error names the `go mod download` command that
// fetches what is missing.
func UpstreamCRDDirs() ([]string, error) {
	dirs, err := moduleCRDPaths()
	if err != nil {
		return nil, err
	}
	shared, err := sharedCRDsDir()
	if err != nil {
		return nil, err
	}
	return append(dirs, filepath.Join(shared, "strimzi"), filepath.Join(shared, "spotahome")), nil
}

// ModuleCRDDirs returns the directories (and Istio's single file) of the
// CRDs that are Go modules (crdModules) alone, for tests that need no
// CRD outside the module cache.
func ModuleCRDDirs() ([]string, error) { return moduleCRDPaths() }

// RedisForkCRDDir returns the directory of the RedisFailover CRD of the
// freshworks redis-operator fork. It defines the same CRD name as the
// spotahome one in UpstreamCRDDirs, so install one or the other.
func RedisForkCRDDir() (string, error) {
	shared, err := sharedCRDsDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(shared, "freshworks-redis-operator"), nil
}

// sharedCRDsDir locates the CRDs that are not Go modules.
func sharedCRDsDir() (string, error) {
	dir := os.Getenv(EnvCRDsDir)
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "..", "shared", "crds")
	}
	for _, sub := range []string{"strimzi", "spotahome", "freshworks-redis-operator"} {
		matches, _ := filepath.Glob(filepath.Join(dir, sub, "*.yaml"))
		if len(matches) == 0 {
			return "", fmt.Errorf("no CRDs in %s: set %s to a folder holding strimzi/ (the Strimzi 1.2.0 "+
				"packaging/install/cluster-operator/04x-Crd-*.yaml files), spotahome/ (spotahome/redis-operator "+
				"manifests/databases.spotahome.com_redisfailovers.yaml) and freshworks-redis-operator/ "+
				"(freshworks-oss/redis-operator v3.3.5 charts/redisoperator/crds/)", filepath.Join(dir, sub), EnvCRDsDir)
		}
	}
	return filepath.Clean(dir), nil
}

// moduleCRDPaths returns the CRD paths of crdModules in the module cache,
// or an error naming the command that downloads the missing modules.
func moduleCRDPaths() ([]string, error) {
	cache, err := moduleCache()
	if err != nil {
		return nil, err
	}
	var paths, missing []string
	for _, m := range crdModules {
		p := filepath.Join(cache, escapeModule(m.module), m.path)
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, m.module)
			continue
		}
		paths = append(paths, p)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("the CRDs of %s are not in the Go module cache (%s): download them with "+
			"`go mod download %s` (or `make crds`)", strings.Join(missing, ", "), cache, strings.Join(missing, " "))
	}
	return paths, nil
}

// moduleCache is the Go module cache: GOMODCACHE as the go command sees it
// (environment or `go env -w`), else its default under GOPATH or the home
// directory.
func moduleCache() (string, error) {
	if dir := os.Getenv("GOMODCACHE"); dir != "" {
		return dir, nil
	}
	if out, err := exec.Command("go", "env", "GOMODCACHE").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); dir != "" {
			return dir, nil
		}
	}
	if gopath := os.Getenv("GOPATH"); gopath != "" {
		return filepath.Join(filepath.SplitList(gopath)[0], "pkg", "mod"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cannot locate the Go module cache: set GOMODCACHE: %w", err)
	}
	return filepath.Join(home, "go", "pkg", "mod"), nil
}

// escapeModule is a module@version's directory in the module cache:
// capital letters become '!' and the lower-case letter.
func escapeModule(modVersion string) string {
	var b strings.Builder
	for _, r := range modVersion {
		if unicode.IsUpper(r) {
			b.WriteByte('!')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// DownloadCRDModules puts crdModules in the module cache with `go mod
// download` (run in a scratch module, so the repository's go.mod and go.sum
// stay untouched). The tests call it before UpstreamCRDDirs; the broker
// never does.
func DownloadCRDModules() error {
	tmp, err := os.MkdirTemp("", "strata-crd-modules-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.WriteFile(filepath.Join(tmp, "go.mod"), []byte("module crds\n\ngo 1.22\n"), 0o644); err != nil {
		return err
	}
	cmd := exec.Command("go", append([]string{"mod", "download"}, CRDModules()...)...)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go mod download of the CRD modules failed (%w): %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
