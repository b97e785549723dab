package main

import (
	"bytes"
	"context"
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

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/internal/controlplane"
)

// TestInstancePageInABrowser: the shipped binary (--embedded: a real etcd
// and kube-apiserver, the broker as main runs it) provisions an instance
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
	root, err := controlplane.RepoRoot()
	g.Expect(err).NotTo(HaveOccurred())
	dir := t.TempDir()
	bin := filepath.Join(dir, "strata-broker")
	build := exec.Command("go", "build", "-o", bin, ".")
	out, err := build.CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), "go build: %s", out)

	port := freePort(t)
	base := fmt.Sprintf("https://127.0.0.1:%d", port)
	config := filepath.Join(dir, "config.yaml")
	g.Expect(os.WriteFile(config, []byte("instancePage:\n  externalURL: "+base+"\n"), 0o600)).To(Succeed())
	logPath := filepath.Join(dir, "broker.log")
	state := filepath.Join(root, ".cache", "strata")
	var client *http.Client
	var spki string
	// The embedded control plane installs the upstream CRDs within a
	// minute or gives up; on a loaded machine it may, and the broker then
	// exits. Such a start is tried again (twice at most), and any other
	// failure fails the test.
	for attempt := 1; ; attempt++ {
		exited := startEmbeddedBroker(t, bin, port, config, logPath)
		ready := func() error {
			crt, err := os.ReadFile(filepath.Join(state, "tls.crt"))
			if err != nil {
				return err
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(crt) {
				return fmt.Errorf("no certificate in %s", state)
			}
			client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
			resp, err := client.Get(base + "/readyz")
			if err != nil {
				return err
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("readyz: %s", resp.Status)
			}
			block, _ := pem.Decode(crt)
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
			spki = base64.StdEncoding.EncodeToString(sum[:])
			return nil
		}
		deadline := time.Now().Add(5 * time.Minute)
		var err error
		for err = ready(); err != nil && time.Now().Before(deadline); err = ready() {
			select {
			case <-exited:
				err = fmt.Errorf("the broker exited before it was ready")
			case <-time.After(2 * time.Second):
				continue
			}
			break
		}
		if err == nil {
			break
		}
		l, _ := os.ReadFile(logPath)
		if attempt == 3 || !strings.Contains(string(l), "install CRDs") {
			t.Fatalf("the embedded broker did not get ready (attempt %d): %v\n%s", attempt, err, l)
		}
		t.Logf("attempt %d: the embedded control plane did not install its CRDs in time; starting again", attempt)
	}
	user := readTrimmed(t, filepath.Join(state, "credentials", "username"))
	pass := readTrimmed(t, filepath.Join(state, "credentials", "password"))

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

// startEmbeddedBroker starts the binary with --embedded; the channel is
// closed when it exits. It is stopped with SIGTERM (which stops its
// control plane) when the test ends.
func startEmbeddedBroker(t *testing.T, bin string, port int, config, logPath string) <-chan struct{} {
	t.Helper()
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--embedded", fmt.Sprintf("--listen=127.0.0.1:%d", port), "--config="+config, "--log-format=json")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = logFile.Close(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			l, _ := os.ReadFile(logPath)
			t.Logf("broker log:\n%s", l)
		}
	})
	return exited
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

func readTrimmed(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
