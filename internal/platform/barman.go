//go:build linux

package platform

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The barman-cloud plugin (CNPG-I) that the standard and ha plans use for
// WAL archiving and backups: the version charts/strata-platform-operators
// pins (chart 0.7.1), and the barman release its sidecar image carries
// (the version upstream pins in containers/sidecar-requirements.in).
const (
	BarmanCloudVersion = "0.14.0"
	barmanCloudModule  = "github.com/cloudnative-pg/plugin-barman-cloud"
	barmanVersion      = "3.19.1"
	// barmanExtras are the optional barman dependencies the sidecar needs:
	// boto3 for S3 and zstandard for the WAL compression the broker
	// renders (gzip, the base backups', is Python's own). Upstream's
	// image adds Azure, Google, snappy and lz4, which the broker never
	// asks for.
	barmanExtras = "cloud,zstandard"
	// BarmanCloudDeployment is the plugin's Deployment (and Service) in
	// the operator's namespace, as upstream's manifest names it.
	BarmanCloudDeployment = "barman-cloud"
)

// buildBarmanCloudBinary builds the plugin from its module (cmd/manager:
// the same binary is the plugin's operator and the instance sidecar).
func (p *Platform) buildBarmanCloudBinary(ctx context.Context) (string, error) {
	dir, err := moduleDir(ctx, barmanCloudModule, "v"+BarmanCloudVersion)
	if err != nil {
		return "", err
	}
	return p.buildModuleBinary(ctx, goBuild{
		name:      "barman-cloud-manager",
		moduleDir: dir,
		pkg:       "./cmd/manager",
	})
}

// buildBarmanCloudImage is the plugin's operator image.
func (p *Platform) buildBarmanCloudImage(ctx context.Context) (string, string, error) {
	bin, err := p.buildBarmanCloudBinary(ctx)
	if err != nil {
		return "", "", err
	}
	return p.binaryImage("plugin-barman-cloud", BarmanCloudVersion, bin, []layerEntry{
		{path: "manager", mode: 0o755, source: bin},
	}, imageConfig{Entrypoint: []string{"/manager"}, User: "65532:65532"})
}

// barmanSidecarScript builds the sidecar's root filesystem: Debian
// bookworm with Python and psycopg2 from Debian, and a virtualenv (which
// sees the system's psycopg2) with barman-cloud from PyPI, first on PATH;
// uid/gid 26 like the PostgreSQL pods it runs in. The machine reaches PyPI
// through a CA that only the host's bundle holds: pip gets that bundle for
// the install step alone, and it is removed before the image is packed.
const barmanSidecarScript = `set -euo pipefail
root="$1" mirror="$2" sources="$3" requirement="$4" hostca="$5"
debootstrap --variant=minbase bookworm "$root" "$mirror" >&2
mount -t proc proc "$root/proc"
trap 'umount "$root/proc" 2>/dev/null || true; rm -f "$root/tmp/host-ca.crt"' EXIT
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
case "$sources" in
  *.sources) rm -f "$root/etc/apt/sources.list"; cp "$sources" "$root/etc/apt/sources.list.d/" ;;
  *) cp "$sources" "$root/etc/apt/sources.list" ;;
esac
if chroot "$root" getent group tape | grep -q ':26:'; then chroot "$root" groupmod -g 1026 tape; fi
chroot "$root" groupadd -g 26 postgres
chroot "$root" useradd -u 26 -g 26 -d /var/lib/postgresql -s /bin/sh -M postgres
install -d -o 26 -g 26 "$root/var/lib/postgresql"
chroot "$root" apt-get update -qq >&2
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  python3 python3-venv python3-psycopg2 ca-certificates >&2
chroot "$root" python3 -m venv --system-site-packages /venv >&2
cp "$hostca" "$root/tmp/host-ca.crt"
chroot "$root" env -i PATH=/venv/bin:/usr/bin:/bin HOME=/tmp \
  PIP_CERT=/tmp/host-ca.crt REQUESTS_CA_BUNDLE=/tmp/host-ca.crt SSL_CERT_FILE=/tmp/host-ca.crt \
  PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_DEFAULT_TIMEOUT=120 \
  /venv/bin/pip install --only-binary=:all: "$requirement" >&2
rm -f "$root/tmp/host-ca.crt"
chroot "$root" /venv/bin/barman-cloud-wal-archive --version >&2
chroot "$root" /venv/bin/python3 -c 'import boto3, zstandard, psycopg2' >&2
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/* \
  "$root/usr/sbin/policy-rc.d" "$root/etc/resolv.conf" "$root"/var/cache/debconf/*-old
find "$root/venv" -name '__pycache__' -prune -exec rm -rf {} +
`

// buildBarmanSidecarImage builds the image the plugin injects into every
// instance pod as its sidecar: the plugin's binary at /manager (its
// entrypoint, the "instance" command) and barman-cloud, which it calls.
// Cached by the plugin binary, the script and the barman requirement.
func (p *Platform) buildBarmanSidecarImage(ctx context.Context) (string, string, error) {
	bin, err := p.buildBarmanCloudBinary(ctx)
	if err != nil {
		return "", "", err
	}
	binHash, err := hashFile(bin)
	if err != nil {
		return "", "", err
	}
	mirror, sources, err := debianMirror()
	if err != nil {
		return "", "", err
	}
	requirement := fmt.Sprintf("barman[%s]==%s", barmanExtras, barmanVersion)
	ref := imageRef("plugin-barman-cloud-sidecar", BarmanCloudVersion)
	archive := p.imageArchive("plugin-barman-cloud-sidecar", hashStrings(ref, binHash, barmanSidecarScript, requirement))
	if fileExists(archive) {
		return ref, archive, nil
	}
	hostCA, err := hostCABundle()
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(filepath.Dir(archive), 0o755); err != nil {
		return "", "", err
	}
	root := archive + ".rootfs"
	os.RemoveAll(root)
	defer os.RemoveAll(root)
	logPath := p.buildLog("barman-cloud-sidecar")
	p.cfg.Log("platform: building the barman-cloud sidecar image (debootstrap, pip %s; a few minutes; log %s)", requirement, logPath)
	start := time.Now()
	cmd := exec.CommandContext(ctx, "bash", "-c", barmanSidecarScript, "barman-sidecar-image", root, mirror, sources, requirement, hostCA)
	if err := runLogged(cmd, logPath); err != nil {
		return "", "", fmt.Errorf("platform: building the barman-cloud sidecar image (needs debootstrap and PyPI): %w", err)
	}
	if fileExists(filepath.Join(root, "tmp", "host-ca.crt")) {
		return "", "", fmt.Errorf("platform: the host's CA bundle was left in the sidecar image's root filesystem")
	}
	manager := filepath.Join(root, "manager")
	if err := copyFile(bin, manager, 0o755); err != nil {
		return "", "", err
	}
	cfg := imageConfig{
		Entrypoint: []string{"/manager"},
		Env: []string{
			"PATH=/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"HOME=/var/lib/postgresql",
		},
		User:       "26:26",
		WorkingDir: "/",
	}
	if err := writeDockerArchive(archive, ref, cfg, writeTree(root)); err != nil {
		return "", "", err
	}
	p.cfg.Log("platform: built %s in %s", ref, time.Since(start).Round(time.Second))
	return ref, archive, nil
}

// hostCABundle is the host's CA bundle, which pip needs to reach PyPI
// from here (only for the build step; never put in an image).
func hostCABundle() (string, error) {
	for _, f := range []string{os.Getenv("PIP_CERT"), os.Getenv("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"} {
		if f != "" && fileExists(f) {
			return f, nil
		}
	}
	return "", fmt.Errorf("platform: no CA bundle on the host for pip (apt-get install ca-certificates)")
}

func copyFile(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, mode)
}

// InstallBarmanCloud installs the barman-cloud plugin from upstream's
// manifest.yaml in its Go module (read from the module cache, never copied
// into the repository): the ObjectStore CRD, RBAC, the plugin's Deployment
// and Service in the CloudNativePG operator's namespace, with the local
// plugin and sidecar images (pull policy IfNotPresent). CloudNativePG must
// be installed first (InstallCNPG). The plugin's TLS (the operator and the
// plugin authenticate each other) comes from cert-manager as upstream's
// manifest has it when cert-manager runs on the platform; without it,
// self-signed barman-cloud-server-tls and barman-cloud-client-tls Secrets
// stand in (what the manifest's Certificates would produce). It waits until
// the plugin serves.
func (p *Platform) InstallBarmanCloud(ctx context.Context) error {
	imgs, err := p.BuildImages(ctx)
	if err != nil {
		return err
	}
	if err := p.importIfMissing(ctx, imgs.BarmanCloud, imgs.BarmanSidecar); err != nil {
		return err
	}
	dir, err := moduleDir(ctx, barmanCloudModule, "v"+BarmanCloudVersion)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, "manifest.yaml")
	manifest, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("platform: the barman-cloud plugin manifest: %w", err)
	}
	objs, err := decodeManifest(manifest)
	if err != nil {
		return fmt.Errorf("platform: %s: %w", path, err)
	}
	certManager, err := p.certManagerRuns(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	var kept []*unstructured.Unstructured
	deployments, sidecarSecrets := 0, 0
	for _, obj := range objs {
		if obj.GetNamespace() != "" && obj.GetNamespace() != CNPGNamespace {
			return fmt.Errorf("platform: %s %s in namespace %s: upstream's plugin manifest installs into %s", obj.GetKind(), obj.GetName(), obj.GetNamespace(), CNPGNamespace)
		}
		switch {
		case strings.HasPrefix(obj.GetAPIVersion(), "cert-manager.io/") && !certManager:
			continue // stood in for by ensurePluginTLS below
		case obj.GetKind() == "Secret" && hasKey(obj, "data", "SIDECAR_IMAGE"):
			if err := unstructured.SetNestedField(obj.Object, base64.StdEncoding.EncodeToString([]byte(imgs.BarmanSidecar)), "data", "SIDECAR_IMAGE"); err != nil {
				return err
			}
			sidecarSecrets++
		case obj.GetKind() == "Deployment" && obj.GetName() == BarmanCloudDeployment:
			if err := useLocalImage(obj, imgs.BarmanCloud); err != nil {
				return err
			}
			deployments++
		}
		kept = append(kept, obj)
	}
	if deployments != 1 || sidecarSecrets != 1 {
		return fmt.Errorf("platform: %s: found %d %s Deployments and %d SIDECAR_IMAGE Secrets, want one each (has upstream's layout changed?)", path, deployments, BarmanCloudDeployment, sidecarSecrets)
	}
	if !certManager {
		if err := p.ensurePluginTLS(ctx); err != nil {
			return err
		}
	}
	if err := p.applyObjects(ctx, kept); err != nil {
		return err
	}
	if err := p.WaitForDeployment(ctx, CNPGNamespace, BarmanCloudDeployment, 5*time.Minute); err != nil {
		return err
	}
	how := "self-signed TLS Secrets (no cert-manager on the platform)"
	if certManager {
		how = "cert-manager certificates"
	}
	p.cfg.Log("platform: barman-cloud plugin %s installed in %s (%s)", BarmanCloudVersion, time.Since(start).Round(time.Second), how)
	return nil
}

func hasKey(obj *unstructured.Unstructured, fields ...string) bool {
	_, found, _ := unstructured.NestedFieldNoCopy(obj.Object, fields...)
	return found
}

// useLocalImage points every container of a Deployment at a local image,
// pull policy IfNotPresent (there is no registry).
func useLocalImage(deploy *unstructured.Unstructured, image string) error {
	containers, _, err := unstructured.NestedSlice(deploy.Object, "spec", "template", "spec", "containers")
	if err != nil {
		return fmt.Errorf("platform: Deployment %s: %w", deploy.GetName(), err)
	}
	if len(containers) == 0 {
		return fmt.Errorf("platform: Deployment %s has no containers", deploy.GetName())
	}
	for _, c := range containers {
		c.(map[string]any)["image"] = image
		c.(map[string]any)["imagePullPolicy"] = "IfNotPresent"
	}
	return unstructured.SetNestedSlice(deploy.Object, containers, "spec", "template", "spec", "containers")
}

// certManagerRuns says whether cert-manager is installed: its Certificate
// API is served and its controller's Deployment (labelled as upstream's
// chart does) is available.
func (p *Platform) certManagerRuns(ctx context.Context) (bool, error) {
	if _, err := p.Client.Discovery().ServerResourcesForGroupVersion("cert-manager.io/v1"); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("platform: is cert-manager installed: %w", err)
	}
	deploys, err := p.Client.AppsV1().Deployments("").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=cert-manager,app.kubernetes.io/component=controller"})
	if err != nil {
		return false, err
	}
	for _, d := range deploys.Items {
		if d.Status.AvailableReplicas > 0 {
			return true, nil
		}
	}
	// The API without a running controller: CRDs left behind. The
	// stand-in Secrets work regardless.
	return false, nil
}

// ensurePluginTLS creates the two Secrets upstream's Certificates would:
// the plugin's serving certificate (CN and SAN barman-cloud, the Service
// name the operator dials) and the operator's client certificate, each
// self-signed with ca.crt = tls.crt (the plugin trusts exactly the client
// certificate; the operator verifies the server against ca.crt). Existing
// Secrets are kept.
func (p *Platform) ensurePluginTLS(ctx context.Context) error {
	for _, s := range []struct {
		name, cn string
		dns      []string
		server   bool
	}{
		{"barman-cloud-server-tls", BarmanCloudDeployment, []string{BarmanCloudDeployment}, true},
		{"barman-cloud-client-tls", "barman-cloud-client", nil, false},
	} {
		if _, err := p.Client.CoreV1().Secrets(CNPGNamespace).Get(ctx, s.name, metav1.GetOptions{}); err == nil {
			continue
		} else if !apierrors.IsNotFound(err) {
			return err
		}
		certPEM, keyPEM, err := selfSigned(s.cn, s.dns, s.server)
		if err != nil {
			return err
		}
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: CNPGNamespace},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM, "ca.crt": certPEM},
		}
		if _, err := p.Client.CoreV1().Secrets(CNPGNamespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	return nil
}

// importIfMissing imports images that a node's containerd does not have yet (the
// add-ons' images are not imported at start, so that a platform without
// them starts as fast as before).
func (p *Platform) importIfMissing(ctx context.Context, refs ...string) error {
	imgs, err := p.BuildImages(ctx)
	if err != nil {
		return err
	}
	for _, n := range p.nodes() {
		present, err := containerdImages(ctx, n)
		if err != nil {
			return err
		}
		for _, ref := range refs {
			if present[ref] {
				continue
			}
			archive, ok := imgs.addOns[ref]
			if !ok {
				return fmt.Errorf("platform: no archive for image %s", ref)
			}
			if err := importImageInto(ctx, n, archive); err != nil {
				return err
			}
		}
	}
	return nil
}

// selfSigned makes a self-signed certificate (ECDSA P-256, 90 days, like
// upstream's Certificates) for server or client authentication.
func selfSigned(cn string, dnsNames []string, server bool) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	usage := x509.ExtKeyUsageClientAuth
	if server {
		usage = x509.ExtKeyUsageServerAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(90 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     dnsNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
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
