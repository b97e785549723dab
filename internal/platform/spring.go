//go:build linux

package platform

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The Spring Boot test application (integration/springapp) as a pod: a
// Debian image with Java 17 and the application's jar, run in serve mode
// (HTTPS /check) with a binding Secret mounted as docs/spring-boot.md says.

// springScript adds the Java 17 runtime to the bookworm root filesystem
// and a non-root user for the application.
const springScript = `set -euo pipefail
root="$1" mirror="$2" sources="$3"
` + debootstrapBookworm + `chroot "$root" apt-get update -qq >&2
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless >&2
chroot "$root" groupadd -g 65532 app
chroot "$root" useradd -u 65532 -g 65532 -d /app -s /usr/sbin/nologin -M app
install -d -o 65532 -g 65532 "$root/app"
chroot "$root" dpkg-query -W -f='${Version}' openjdk-17-jre-headless
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/* \
  "$root/usr/sbin/policy-rc.d" "$root/etc/resolv.conf" "$root"/var/cache/debconf/*-old
`

// springAppDir is the Maven project of the test application.
func (p *Platform) springAppDir() string {
	return filepath.Join(p.cfg.SourceDir, "integration", "springapp")
}

// springAppSourceHash hashes the project's pom.xml and src/, the cache key
// of its jar.
func (p *Platform) springAppSourceHash() (string, error) {
	dir := p.springAppDir()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			if rel == "target" {
				return filepath.SkipDir
			}
			return nil
		}
		if rel != "pom.xml" && !strings.HasPrefix(rel, "src"+string(filepath.Separator)) {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		fmt.Fprintf(h, "%s\n", rel)
		_, err = io.Copy(h, f)
		return err
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// buildSpringAppJar builds the application's jar with Maven (Java 17 and
// Maven from Debian) in a copy of the project, so the source tree's
// target/ is left to integration/springtest; cached by the sources' hash.
func (p *Platform) buildSpringAppJar(ctx context.Context) (string, error) {
	key, err := p.springAppSourceHash()
	if err != nil {
		return "", err
	}
	jar := filepath.Join(p.cfg.CacheDir, "springapp", "strata-binding-app-"+key+".jar")
	if fileExists(jar) {
		return jar, nil
	}
	for _, tool := range []string{"java", "mvn"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("platform: %s is not installed: apt-get install openjdk-17-jdk-headless maven", tool)
		}
	}
	if err := os.MkdirAll(filepath.Dir(jar), 0o755); err != nil {
		return "", err
	}
	work, err := os.MkdirTemp(filepath.Dir(jar), ".build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	if err := run(ctx, "cp", "-r", filepath.Join(p.springAppDir(), "pom.xml"), filepath.Join(p.springAppDir(), "src"), work); err != nil {
		return "", err
	}
	p.cfg.Log("platform: building the Spring Boot application with Maven (log %s)", p.buildLog("springapp"))
	start := time.Now()
	cmd := exec.CommandContext(ctx, "mvn", "-q", "-B", "package", "-DskipTests")
	cmd.Dir = work
	if err := runLogged(cmd, p.buildLog("springapp")); err != nil {
		return "", fmt.Errorf("platform: building the Spring Boot application: %w", err)
	}
	if err := os.Rename(filepath.Join(work, "target", "strata-binding-app.jar"), jar); err != nil {
		return "", err
	}
	p.cfg.Log("platform: built the Spring Boot application in %s", time.Since(start).Round(time.Second))
	return jar, nil
}

// BuildSpringAppImage builds (or finds in the cache) the application's
// image, keyed by the build script and the jar's hash, and imports it.
func (p *Platform) BuildSpringAppImage(ctx context.Context) (string, error) {
	ref, archive, err := p.buildSpringAppArchive(ctx)
	if err != nil {
		return "", err
	}
	if err := p.importImage(ctx, archive); err != nil {
		return "", err
	}
	return ref, nil
}

// buildSpringAppArchive builds the application's image archive (Debian,
// Java 17, the jar) unless the cache has it.
func (p *Platform) buildSpringAppArchive(ctx context.Context) (string, string, error) {
	unlock, err := p.lockCache()
	if err != nil {
		return "", "", err
	}
	defer unlock()
	jar, err := p.buildSpringAppJar(ctx)
	if err != nil {
		return "", "", err
	}
	jarHash, err := hashFile(jar)
	if err != nil {
		return "", "", err
	}
	key := hashStrings(springScript, jarHash)
	ref := imageRef("strata-springapp", key[:12])
	archive := p.imageArchive("strata-springapp", key)
	if !fileExists(archive) {
		root := archive + ".rootfs"
		defer os.RemoveAll(root)
		start := time.Now()
		version, err := p.debootstrapRootfs(ctx, "springapp-image", root, springScript)
		if err != nil {
			return "", "", err
		}
		if err := run(ctx, "install", "-o", "65532", "-g", "65532", "-m", "0644", jar, filepath.Join(root, "app", "app.jar")); err != nil {
			return "", "", err
		}
		cfg := imageConfig{
			Entrypoint: []string{"java", "-jar", "/app/app.jar"},
			Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"},
			User:       "65532:65532",
			WorkingDir: "/app",
		}
		if err := writeDockerArchive(archive, ref, cfg, writeTree(root)); err != nil {
			return "", "", err
		}
		p.cfg.Log("platform: built %s (openjdk-17-jre-headless %s) in %s", ref, version, time.Since(start).Round(time.Second))
	}
	return ref, archive, nil
}

// SpringApp is the application running as a Deployment, reachable from
// the host through its Service.
type SpringApp struct {
	// URL is https://springapp.<namespace>.svc.cluster.local:443.
	URL    string
	client *http.Client
	token  string
}

// SpringAppInstall is what DeploySpringApp needs.
type SpringAppInstall struct {
	Image     string // from BuildSpringAppImage
	Namespace string // the binding's (tenant) namespace
	// BindingSecret is the binding Secret's name, mounted at
	// /bindings/<name> and imported as a Spring Boot config tree.
	BindingSecret string
}

// DeploySpringApp runs the application as a Deployment in the tenant
// namespace with the binding Secret mounted exactly as docs/spring-boot.md
// says (SPRING_CONFIG_IMPORT=optional:configtree:/bindings/<secret>/), a
// serving certificate from the platform CA for its Service and a random
// bearer token for its /check endpoint, and waits until it is ready
// (Flyway has migrated and the start-up check passed).
func (p *Platform) DeploySpringApp(ctx context.Context, in SpringAppInstall) (*SpringApp, error) {
	const name = "springapp"
	host := name + "." + in.Namespace + ".svc"
	certPEM, keyPEM, err := p.issueServing([]string{host, host + ".cluster.local", name + "." + in.Namespace})
	if err != nil {
		return nil, err
	}
	tokenBytes := make([]byte, 24)
	if _, err := rand.Read(tokenBytes); err != nil {
		return nil, err
	}
	token := hex.EncodeToString(tokenBytes)
	for _, s := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: name + "-tls", Namespace: in.Namespace}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM}},
		{ObjectMeta: metav1.ObjectMeta{Name: name + "-token", Namespace: in.Namespace},
			Data: map[string][]byte{"token": []byte(token)}},
	} {
		if err := p.applySecret(ctx, s); err != nil {
			return nil, err
		}
	}
	mount := "/bindings/" + in.BindingSecret
	manifest := fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s, namespace: %[2]s, labels: {app: %[1]s}}
spec:
  replicas: 1
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      automountServiceAccountToken: false
      securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532}
      containers:
      - name: app
        image: %[3]s
        imagePullPolicy: Never
        args:
        - --strata.serve.port=8443
        - --spring.ssl.bundle.pem.strata-serve.keystore.certificate=file:/etc/springapp/tls/tls.crt
        - --spring.ssl.bundle.pem.strata-serve.keystore.private-key=file:/etc/springapp/tls/tls.key
        env:
        - {name: SPRING_CONFIG_IMPORT, value: "optional:configtree:%[4]s/"}
        - name: STRATA_SERVE_TOKEN
          valueFrom: {secretKeyRef: {name: %[1]s-token, key: token}}
        - {name: JAVA_TOOL_OPTIONS, value: "-XX:MaxRAMPercentage=60 -XX:TieredStopAtLevel=1"}
        ports: [{name: https, containerPort: 8443}]
        readinessProbe:
          httpGet: {path: /healthz, port: 8443, scheme: HTTPS}
          periodSeconds: 2
        resources:
          requests: {cpu: 100m, memory: 256Mi}
          limits: {memory: 768Mi}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        volumeMounts:
        - {name: binding, mountPath: %[4]s, readOnly: true}
        - {name: tls, mountPath: /etc/springapp/tls, readOnly: true}
        - {name: tmp, mountPath: /tmp}
      volumes:
      - {name: binding, secret: {secretName: %[5]s}}
      - {name: tls, secret: {secretName: %[1]s-tls}}
      - {name: tmp, emptyDir: {}}
---
apiVersion: v1
kind: Service
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  selector: {app: %[1]s}
  ports: [{name: https, port: 443, targetPort: 8443}]
`, name, in.Namespace, in.Image, mount, in.BindingSecret)
	if err := p.Apply(ctx, []byte(manifest)); err != nil {
		return nil, err
	}
	if err := p.WaitForDeployment(ctx, in.Namespace, name, 5*time.Minute); err != nil {
		return nil, fmt.Errorf("%w; the application's log: %s", err, p.podLogTail(ctx, in.Namespace, "app="+name))
	}
	caPEM, err := os.ReadFile(p.pki("ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &SpringApp{
		URL:   "https://" + host + ".cluster.local",
		token: token,
		client: &http.Client{Timeout: time.Minute, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			DialContext:     (&net.Dialer{Resolver: p.ClusterResolver(), Timeout: 10 * time.Second}).DialContext,
		}},
	}, nil
}

// SpringCheck is the part of the application's /check report the
// platform test reads (integration/springtest.Result has all of it).
type SpringCheck struct {
	Postgres struct {
		Wrote       string `json:"wrote"`
		Inserted    int    `json:"inserted"`
		Read        string `json:"read"`
		SSL         bool   `json:"ssl"`
		TLSVersion  string `json:"tlsVersion"`
		CurrentUser string `json:"currentUser"`
		SessionUser string `json:"sessionUser"`
		MigratedBy  string `json:"migratedBy"`
		TableOwner  string `json:"tableOwner"`
	} `json:"postgresql"`
}

// Check calls the application's /check from the host through its Service:
// it writes and reads a row as the binding's login and reports its session.
func (a *SpringApp) Check(ctx context.Context) (*SpringCheck, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.URL+"/check", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/check: %d %s", a.URL, resp.StatusCode, body)
	}
	var c SpringCheck
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, fmt.Errorf("GET %s/check: %w: %s", a.URL, err, body)
	}
	return &c, nil
}

// podLogTail is the end of the log of the pods a selector picks (for
// error messages).
func (p *Platform) podLogTail(ctx context.Context, namespace, selector string) string {
	pods, err := p.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	tail := int64(40)
	for _, pod := range pods.Items {
		raw, err := p.Client.CoreV1().Pods(namespace).GetLogs(pod.Name, &corev1.PodLogOptions{TailLines: &tail}).DoRaw(ctx)
		fmt.Fprintf(&b, "--- %s (%v)\n%s\n", pod.Name, err, raw)
	}
	return b.String()
}
