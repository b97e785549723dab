package integration_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/cert"

	"github.com/strata-dev/strata/charts"
	"github.com/strata-dev/strata/integration/kubeenv"
)

// The suites that prove what users run drive the broker binary built from
// cmd/strata-broker, started with the arguments and the configuration
// file of the Helm chart's Deployment (rendered with the chart's default
// values), against the real API server as the chart's ServiceAccount:
// only the paths (the chart mounts files under /etc/strata) and the
// listen address (loopback) differ.

var (
	brokerBinaryOnce sync.Once
	brokerBinary     string
	brokerBinaryErr  error
)

// buildBrokerBinary builds cmd/strata-broker once per test process.
func buildBrokerBinary(t testing.TB) string {
	t.Helper()
	brokerBinaryOnce.Do(func() {
		root, err := kubeenv.RepoRoot()
		if err != nil {
			brokerBinaryErr = err
			return
		}
		dir, err := os.MkdirTemp("", "strata-broker-bin-")
		if err != nil {
			brokerBinaryErr = err
			return
		}
		brokerBinary = filepath.Join(dir, "strata-broker")
		cmd := exec.Command("go", "build", "-o", brokerBinary, "./cmd/strata-broker")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			brokerBinaryErr = fmt.Errorf("go build ./cmd/strata-broker: %w\n%s", err, out)
		}
	})
	if brokerBinaryErr != nil {
		t.Fatal(brokerBinaryErr)
	}
	return brokerBinary
}

// brokerProcess is one replica of the broker binary.
type brokerProcess struct {
	t       testing.TB
	name    string
	bin     string
	args    []string
	env     []string
	logPath string
	base    string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// startBrokerBinary starts a replica of the broker binary with the chart's
// arguments and configuration; it is killed when the test ends.
func (w *world) startBrokerBinary(t testing.TB, name string) *brokerProcess {
	t.Helper()
	bin := buildBrokerBinary(t)
	dir := t.TempDir()

	objs, err := charts.RenderBroker(map[string]any{"credentials": map[string]any{"password": osbPass}}, brokerNS)
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	var config string
	for _, o := range objs {
		switch o["kind"] {
		case "ConfigMap":
			// The chart's other ConfigMaps (Grafana dashboards) have no
			// config.yaml.
			if c, ok := o["data"].(map[string]any)["config.yaml"].(string); ok {
				config = c
			}
		case "Deployment":
			spec := o["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
			c := spec["containers"].([]any)[0].(map[string]any)
			for _, a := range c["args"].([]any) {
				args = append(args, a.(string))
			}
		}
	}
	if config == "" || len(args) == 0 {
		t.Fatal("the chart renders no broker configuration or arguments")
	}
	write := func(rel, content string) string {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("config/config.yaml", config)
	write("credentials/username", osbUser)
	write("credentials/password", osbPass)
	crt, key, err := cert.GenerateSelfSignedCertKey("127.0.0.1", []net.IP{net.ParseIP("127.0.0.1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	write("tls/tls.crt", string(crt))
	write("tls/tls.key", string(key))
	kubeconfig := write("kubeconfig", string(kubeconfigOf(t, w.brokerConfig)))

	port := freePort(t)
	for i, a := range args {
		a = strings.ReplaceAll(a, "/etc/strata/", dir+"/")
		if strings.HasPrefix(a, "--listen=") {
			a = fmt.Sprintf("--listen=127.0.0.1:%d", port)
		}
		args[i] = a
	}
	args = append(args, "--kubeconfig="+kubeconfig)

	p := &brokerProcess{
		t: t, name: name, bin: bin, args: args, logPath: filepath.Join(dir, name+".log"),
		// The chart sets POD_NAMESPACE from the pod's namespace.
		env:  append(os.Environ(), "POD_NAMESPACE="+brokerNS),
		base: fmt.Sprintf("https://127.0.0.1:%d", port),
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(crt)
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			if log, err := os.ReadFile(p.logPath); err == nil {
				t.Logf("%s log (last 4 KiB):\n%s", name, tail(string(log), 4096))
			}
		}
	})
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if err := p.waitReady(client); err != nil {
		t.Fatal(err)
	}
	return p
}

// client returns an OSB client of the replica.
func (p *brokerProcess) client(t testing.TB) *osbClient {
	pool := x509.NewCertPool()
	crt, err := os.ReadFile(filepath.Join(filepath.Dir(p.logPath), "tls", "tls.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(crt)
	return &osbClient{t: t, base: p.base, http: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
}

func (p *brokerProcess) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	log, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = log, log
	// The replica dies with the test process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait(); _ = log.Close() }()
	p.cmd = cmd
	return nil
}

// Kill ends the replica with SIGKILL: no graceful shutdown, requests in
// flight are cut.
func (p *brokerProcess) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
	}
	p.cmd = nil
}

// Restart starts the replica again after a Kill, on the same address.
func (p *brokerProcess) Restart(client *http.Client) error {
	if err := p.start(); err != nil {
		return err
	}
	return p.waitReady(client)
}

func (p *brokerProcess) waitReady(client *http.Client) error {
	// Generous: a replica restarted while the API server restarts, on
	// cores shared with the rest of the suite, takes a while.
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		res, err := client.Get(p.base + "/readyz")
		if err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	log, _ := os.ReadFile(p.logPath)
	return fmt.Errorf("broker replica %s did not become ready; its log:\n%s", p.name, tail(string(log), 4096))
}

// kubeconfigOf writes cfg (the chart ServiceAccount's impersonating
// config) as a kubeconfig file's content.
func kubeconfigOf(t testing.TB, cfg *rest.Config) []byte {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["broker"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken,
		Impersonate: cfg.Impersonate.UserName, ImpersonateGroups: cfg.Impersonate.Groups,
	}
	kc.Contexts["broker"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "broker"}
	kc.CurrentContext = "broker"
	raw, err := clientcmd.Write(*kc)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
