package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/cert"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/internal/controlplane"
)

// TestInstancePageInABrowser: the shipped binary, started as the chart
// starts it (configuration, TLS and credentials files) against a real etcd
// and kube-apiserver, provisions an instance
// whose dashboard_url headless Chromium (Debian's chromium) opens over
// HTTPS, trusting only the broker's key. The DOM must show the instance's
// status and plan, and the screenshot must show the page's own style:
// Chromium enforces the page's Content-Security-Policy, so a style the
// policy did not allow would leave the header white.
func TestInstancePageInABrowser(t *testing.T) {
	g := NewWithT(t)
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: apt-get install -y --no-install-recommends chromium (integration/scripts/install-deps.sh does)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "strata-broker")
	build := exec.Command("go", "build", "-o", bin, ".")
	out, err := build.CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), "go build: %s", out)

	// A real etcd and kube-apiserver (internal/controlplane, which
	// --embedded and the integration tests use) with only the CRDs a
	// dev-lite PostgreSQL instance is made of: all upstream CRDs take
	// longer to install than the control plane waits on a loaded machine.
	envt, err := controlplane.Start()
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(envt.Stop)
	crds := pageCRDFiles(t)
	// Installing is idempotent (an existing CRD is updated), so a try
	// that timed out on a loaded machine is made again, twice at most.
	for attempt := 1; ; attempt++ {
		if err = controlplane.InstallCRDs(envt.Config, crds...); err == nil || attempt == 3 {
			break
		}
		t.Logf("attempt %d to install the CRDs: %v", attempt, err)
	}
	g.Expect(err).NotTo(HaveOccurred())
	core, err := kubernetes.NewForConfig(envt.Config)
	g.Expect(err).NotTo(HaveOccurred())
	for _, ns := range []string{"strata-system", "dev"} {
		_, err := core.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		g.Expect(err).NotTo(HaveOccurred())
	}

	// The binary's files, as the chart mounts them: configuration, TLS,
	// the platform's credentials.
	port := freePort(t)
	base := fmt.Sprintf("https://127.0.0.1:%d", port)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		g.Expect(os.MkdirAll(filepath.Dir(p), 0o700)).To(Succeed())
		g.Expect(os.WriteFile(p, []byte(content), 0o600)).To(Succeed())
		return p
	}
	config := write("config.yaml", "instancePage:\n  externalURL: "+base+"\npostgres:\n  backup: {bucket: strata-test-backups}\n  serverCertificates: {issuerName: strata-test-ca}\n")
	crt, key, err := cert.GenerateSelfSignedCertKey("127.0.0.1", []net.IP{net.ParseIP("127.0.0.1")}, nil)
	g.Expect(err).NotTo(HaveOccurred())
	tlsCert, tlsKey := write("tls/tls.crt", string(crt)), write("tls/tls.key", string(key))
	const user = "platform"
	pw := make([]byte, 18)
	_, _ = rand.Read(pw)
	pass := base64.RawURLEncoding.EncodeToString(pw)
	write("credentials/username", user)
	write("credentials/password", pass)
	kubeconfig := write("kubeconfig", string(kubeconfigOf(t, envt.Config)))
	logPath := filepath.Join(dir, "broker.log")
	exited := startBroker(t, bin, logPath, fmt.Sprintf("--listen=127.0.0.1:%d", port), "--config="+config,
		"--tls-cert-file="+tlsCert, "--tls-key-file="+tlsKey, "--credentials-dir="+filepath.Join(dir, "credentials"),
		"--namespace=strata-system", "--kubeconfig="+kubeconfig, "--log-format=json")

	pool := x509.NewCertPool()
	g.Expect(pool.AppendCertsFromPEM(crt)).To(BeTrue())
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	g.Eventually(func(g Gomega) {
		select {
		case <-exited:
			StopTrying("the broker exited").Now()
		default:
		}
		resp, err := client.Get(base + "/readyz")
		g.Expect(err).NotTo(HaveOccurred())
		_ = resp.Body.Close()
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	}).WithTimeout(3 * time.Minute).WithPolling(time.Second).Should(Succeed())
	block, _ := pem.Decode(crt)
	leaf, err := x509.ParseCertificate(block.Bytes)
	g.Expect(err).NotTo(HaveOccurred())
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	spki := base64.StdEncoding.EncodeToString(sum[:])

	id := fmt.Sprintf("page-browser-%d", time.Now().UnixNano())
	body := fmt.Sprintf(`{"service_id":%q,"plan_id":%q,"context":{"platform":"kubernetes","namespace":"dev"},"parameters":{"storage_gb":3}}`,
		catalog.PostgresServiceID, catalog.PostgresDevLiteID)
	req, _ := http.NewRequest(http.MethodPut, base+"/v2/service_instances/"+id+"?accepts_incomplete=true", strings.NewReader(body))
	req.SetBasicAuth(user, pass)
	req.Header.Set("X-Broker-API-Version", "2.17")
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	raw, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusAccepted), "%s", raw)
	var prov struct {
		DashboardURL string `json:"dashboard_url"`
	}
	g.Expect(json.Unmarshal(raw, &prov)).To(Succeed())
	g.Expect(prov.DashboardURL).To(HavePrefix(base + "/instances/" + id + "/page/"))

	shots, err := os.MkdirTemp("", "strata-page-screenshot-")
	g.Expect(err).NotTo(HaveOccurred())
	browse := func(args ...string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		// No sandbox: the tests run as root, where Chromium's sandbox
		// refuses to start. The broker's key is the only one trusted
		// beyond the system's CAs.
		all := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
			"--user-data-dir=" + filepath.Join(dir, "chromium"), "--ignore-certificate-errors-spki-list=" + spki,
			"--window-size=1280,1400"}, args...)
		cmd := exec.CommandContext(ctx, chromium, append(all, prov.DashboardURL)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		g.Expect(cmd.Run()).To(Succeed(), "chromium %v: %s", args, stderr.String())
		return stdout.Bytes()
	}
	dom := string(browse("--dump-dom"))
	g.Expect(dom).To(ContainSubstring(`<span id="status" class="badge busy">provision in progress</span>`), "no operators here: the provision stays in progress")
	g.Expect(dom).To(ContainSubstring(`<b id="plan-name">dev-lite</b>`))
	g.Expect(dom).To(ContainSubstring("<th>storage_gb</th><td>3</td>"))
	g.Expect(dom).To(ContainSubstring("metrics: no Prometheus configured"))
	g.Expect(dom).NotTo(ContainSubstring(pass))

	shot := filepath.Join(shots, "instance-page.png")
	browse("--screenshot=" + shot)
	t.Logf("screenshot of the instance page: %s", shot)
	f, err := os.Open(shot)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = f.Close() }()
	img, err := png.Decode(f)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(img.Bounds().Dx()).To(Equal(1280))
	// The header's dark background (#0f172a) is the page's CSS at work.
	r, gr, b, _ := img.At(8, 8).RGBA()
	g.Expect([]uint32{r >> 8, gr >> 8, b >> 8}).To(Equal([]uint32{0x0f, 0x17, 0x2a}), "the header is styled: the CSP let the page's style in")
	// And the page is more than its background: text and tables.
	bg := 0
	total := 0
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y += 4 {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x += 4 {
			total++
			r, gr, b, _ := img.At(x, y).RGBA()
			if (r>>8 == 0xf8 && gr>>8 == 0xfa && b>>8 == 0xfc) || (r>>8 == 0xff && gr>>8 == 0xff && b>>8 == 0xff) {
				bg++
			}
		}
	}
	g.Expect(float64(total-bg)/float64(total)).To(BeNumerically(">", 0.05), "the screenshot has content beyond the background")

	// The broker logged the page without its token.
	logs, _ := os.ReadFile(logPath)
	g.Expect(string(logs)).To(ContainSubstring(`"instance page"`))
	g.Expect(string(logs)).NotTo(ContainSubstring(prov.DashboardURL[strings.LastIndexByte(prov.DashboardURL, '/')+1:]))
}

// startBroker starts the binary; the channel is closed when it exits. It
// is stopped with SIGTERM when the test ends.
func startBroker(t *testing.T, bin, logPath string, args ...string) <-chan struct{} {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = logFile.Close(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			l, _ := os.ReadFile(logPath)
			t.Logf("broker log:\n%s", l)
		}
	})
	return exited
}

// pageCRDFiles are the upstream CRDs of a dev-lite PostgreSQL instance's
// objects (and the Backups the page lists), from the Go module cache.
func pageCRDFiles(t *testing.T) []string {
	t.Helper()
	dirs, err := controlplane.UpstreamCRDDirs()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		"postgresql.cnpg.io_clusters.yaml": true, "postgresql.cnpg.io_databases.yaml": true, "postgresql.cnpg.io_backups.yaml": true,
		"monitoring.coreos.com_podmonitors.yaml": true, "cert-manager.io_certificates.yaml": true,
	}
	var files []string
	for _, d := range dirs {
		for name := range want {
			if _, err := os.Stat(filepath.Join(d, name)); err == nil {
				files = append(files, filepath.Join(d, name))
				delete(want, name)
			}
		}
	}
	if len(want) > 0 {
		t.Fatalf("CRDs not in the module cache: %v (make crds)", want)
	}
	return files
}

func kubeconfigOf(t *testing.T, cfg *rest.Config) []byte {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["broker"] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken, ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts["broker"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "broker"}
	kc.CurrentContext = "broker"
	raw, err := clientcmd.Write(*kc)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}
