//go:build linux

package platform

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// pauseTag is the pause image's tag: the version of pause.c in the pinned
// Kubernetes module (build/pause/Makefile).
const pauseTag = "3.10.1"

// PostgreSQLMajor is the PostgreSQL major the platform's operand image
// carries (Debian bookworm's).
const PostgreSQLMajor = "15"

// Images are the references of the locally built images, known once
// BuildImages ran.
type Images struct {
	Pause, CoreDNS, CNPGOperator, PostgreSQL, CertManager string
	// RedisOperator, Redis and RedisExporter are the redis-operator and
	// its operands (Redis and Sentinel share the Redis image).
	RedisOperator, Redis, RedisExporter string
	// The Prometheus Operator, its config reloader and Prometheus
	// (prometheus.go).
	PrometheusOperator, PrometheusConfigReloader, Prometheus string
	// The add-ons' images: PgBouncer (CloudNativePG's Poolers), the
	// barman-cloud plugin and its sidecar, and versitygw (the local S3).
	PgBouncer, BarmanCloud, BarmanSidecar, VersityGW string
	// archives are the docker-archive files by image reference of the
	// images every start imports; addOns those of the add-ons' images,
	// imported when an add-on is installed.
	archives, addOns map[string]string
}

// BuildImages builds (or finds in the cache) every image the platform and
// its tests use (CloudNativePG and PostgreSQL, cert-manager, the
// redis-operator and Redis, and the add-ons: PgBouncer, the barman-cloud
// plugin and its sidecar, versitygw). It needs no running platform.
func (p *Platform) BuildImages(ctx context.Context) (Images, error) {
	if p.images != nil {
		return *p.images, nil
	}
	unlock, err := p.lockCache()
	if err != nil {
		return Images{}, err
	}
	defer unlock()
	imgs := Images{archives: map[string]string{}, addOns: map[string]string{}}
	steps := []struct {
		ref   *string
		build func(context.Context) (string, string, error)
		addOn bool
	}{
		{&imgs.Pause, p.buildPauseImage, false},
		{&imgs.CoreDNS, p.buildCoreDNSImage, false},
		{&imgs.CNPGOperator, p.buildCNPGImage, false},
		{&imgs.PostgreSQL, p.buildPostgreSQLImage, false},
		{&imgs.CertManager, p.buildCertManagerImage, false},
		{&imgs.RedisOperator, p.buildRedisOperatorImage, false},
		{&imgs.PrometheusOperator, p.buildPrometheusOperatorImage, false},
		{&imgs.PrometheusConfigReloader, p.buildPrometheusConfigReloaderImage, false},
		{&imgs.Prometheus, p.buildPrometheusImage, false},
		{&imgs.PgBouncer, p.buildPgBouncerImage, true},
		{&imgs.BarmanCloud, p.buildBarmanCloudImage, true},
		{&imgs.BarmanSidecar, p.buildBarmanSidecarImage, true},
		{&imgs.VersityGW, p.buildVersityGWImage, true},
	}
	for _, s := range steps {
		ref, archive, err := s.build(ctx)
		if err != nil {
			return Images{}, err
		}
		*s.ref = ref
		if s.addOn {
			imgs.addOns[ref] = archive
		} else {
			imgs.archives[ref] = archive
		}
	}
	redis, exporter, archives, err := p.buildRedisImages(ctx)
	if err != nil {
		return Images{}, err
	}
	imgs.Redis, imgs.RedisExporter = redis, exporter
	imgs.archives[redis], imgs.archives[exporter] = archives[0], archives[1]
	p.images = &imgs
	return imgs, nil
}

// importImages imports every image into the node's containerd.
func (p *Platform) importImages(ctx context.Context) error {
	imgs, err := p.BuildImages(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	out, err := exec.CommandContext(ctx, "ctr", "--address", p.containerdSocket(), "-n", "k8s.io", "images", "ls", "-q").Output()
	if err != nil {
		return fmt.Errorf("platform: listing containerd's images: %w", err)
	}
	present := map[string]bool{}
	for _, ref := range strings.Fields(string(out)) {
		present[ref] = true
	}
	imported := 0
	for ref, archive := range imgs.archives {
		if present[ref] {
			continue
		}
		if err := p.importImage(ctx, archive); err != nil {
			return err
		}
		imported++
	}
	p.cfg.Log("platform: imported %d images in %s", imported, time.Since(start).Round(time.Second))
	return nil
}

func (p *Platform) imageArchive(name, key string) string {
	return filepath.Join(p.cfg.CacheDir, "images", fmt.Sprintf("%s-%s.tar", name, key))
}

// buildPauseImage compiles Kubernetes' own pause.c statically (the real
// sandbox process: it reaps zombies and exits on SIGINT/SIGTERM; the
// module pins its source, gcc is a Debian package).
func (p *Platform) buildPauseImage(ctx context.Context) (string, string, error) {
	kdir, err := moduleDir(ctx, "k8s.io/kubernetes", KubernetesVersion)
	if err != nil {
		return "", "", err
	}
	src := filepath.Join(kdir, "build", "pause", "linux", "pause.c")
	srcHash, err := hashFile(src)
	if err != nil {
		return "", "", err
	}
	ref := imageRef("pause", pauseTag)
	archive := p.imageArchive("pause", hashStrings(ref, srcHash))
	if fileExists(archive) {
		return ref, archive, nil
	}
	if err := os.MkdirAll(filepath.Dir(archive), 0o755); err != nil {
		return "", "", err
	}
	bin := archive + ".pause"
	defer os.Remove(bin)
	if err := run(ctx, "gcc", "-Os", "-Wall", "-Werror", "-static", "-DVERSION=v"+pauseTag, "-o", bin, src); err != nil {
		return "", "", fmt.Errorf("platform: compiling pause (apt-get install gcc libc6-dev): %w", err)
	}
	entries := []layerEntry{{path: "pause", mode: 0o755, source: bin}}
	err = writeDockerArchive(archive, ref, imageConfig{Entrypoint: []string{"/pause"}, User: "65535:65535"}, writeEntries(entries))
	return ref, archive, err
}

// buildCoreDNSImage builds CoreDNS from the nested module
// internal/platform/tools/coredns (only the plugins the cluster needs).
func (p *Platform) buildCoreDNSImage(ctx context.Context) (string, string, error) {
	bin, err := p.buildModuleBinary(ctx, goBuild{
		name:      "coredns",
		moduleDir: filepath.Join(p.cfg.SourceDir, "internal", "platform", "tools", "coredns"),
		pkg:       ".",
	})
	if err != nil {
		return "", "", err
	}
	return p.binaryImage("coredns", strings.TrimPrefix(CoreDNSVersion, "v"), bin, []layerEntry{
		{path: "coredns", mode: 0o755, source: bin},
	}, imageConfig{Entrypoint: []string{"/coredns"}, User: "65532:65532"})
}

// buildCNPGImage builds the CloudNativePG operator from its module. The
// operator globs /operator/manager_* to learn which instance-manager
// architectures it can inject, so the binary is /operator/manager_amd64
// with /manager linking to it (as upstream's Dockerfile lays it out).
func (p *Platform) buildCNPGImage(ctx context.Context) (string, string, error) {
	dir, err := moduleDir(ctx, cnpgModule, "v"+CNPGVersion)
	if err != nil {
		return "", "", err
	}
	bin, err := p.buildModuleBinary(ctx, goBuild{
		name:      "cnpg-manager",
		moduleDir: dir,
		pkg:       "./cmd/manager",
		ldflags:   "-X github.com/cloudnative-pg/cloudnative-pg/pkg/versions.buildVersion=" + CNPGVersion,
	})
	if err != nil {
		return "", "", err
	}
	return p.binaryImage("cloudnative-pg", CNPGVersion, bin, []layerEntry{
		{path: "operator", mode: 0o755, dir: true},
		{path: "operator/manager_amd64", mode: 0o755, source: bin},
		{path: "manager", mode: 0o777, link: "operator/manager_amd64"},
	}, imageConfig{Entrypoint: []string{"/manager"}, User: "65532:65532"})
}

// binaryImage packs Go binaries with the base files into an image, cached
// by the binary's content.
func (p *Platform) binaryImage(name, tag, bin string, files []layerEntry, cfg imageConfig) (string, string, error) {
	binHash, err := hashFile(bin)
	if err != nil {
		return "", "", err
	}
	ref := imageRef(name, tag)
	archive := p.imageArchive(name, hashStrings(ref, binHash))
	if fileExists(archive) {
		return ref, archive, nil
	}
	if err := os.MkdirAll(filepath.Dir(archive), 0o755); err != nil {
		return "", "", err
	}
	cfg.WorkingDir = "/"
	err = writeDockerArchive(archive, ref, cfg, writeEntries(append(baseEntries(65532, "nonroot"), files...)))
	return ref, archive, err
}

// debootstrapBookworm is the start every Debian image's script shares
// (after it names its arguments: $root, $mirror, $sources): a bookworm
// minbase root filesystem, /proc mounted for the packages' scripts (and
// unmounted on exit), no service started by a package, and the machine's
// apt sources, so apt inside the image uses the same mirror.
const debootstrapBookworm = `debootstrap --variant=minbase bookworm "$root" "$mirror" >&2
mount -t proc proc "$root/proc"
trap 'umount "$root/proc" 2>/dev/null || true' EXIT
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
case "$sources" in
  *.sources) rm -f "$root/etc/apt/sources.list"; cp "$sources" "$root/etc/apt/sources.list.d/" ;;
  *) cp "$sources" "$root/etc/apt/sources.list" ;;
esac
`

// postgresScript builds the PostgreSQL operand's root filesystem with
// debootstrap. CloudNativePG runs postgres as uid/gid 26 (Debian's gid 26
// is "tape", moved away), wants the binaries on PATH and never a cluster
// created by the package (create_main_cluster = false).
const postgresScript = `set -euo pipefail
root="$1" mirror="$2" sources="$3" major="$4"
` + debootstrapBookworm + `if chroot "$root" getent group tape | grep -q ':26:'; then chroot "$root" groupmod -g 1026 tape; fi
chroot "$root" groupadd -g 26 postgres
chroot "$root" useradd -u 26 -g 26 -d /var/lib/postgresql -s /bin/bash -M postgres
install -d -o 26 -g 26 "$root/var/lib/postgresql" "$root/var/run/postgresql"
mkdir -p "$root/etc/postgresql-common"
echo 'create_main_cluster = false' > "$root/etc/postgresql-common/createcluster.conf"
chroot "$root" apt-get update -qq >&2
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  "postgresql-$major" "postgresql-$major-pgaudit" "postgresql-$major-hypopg" locales >&2
echo 'en_US.UTF-8 UTF-8' > "$root/etc/locale.gen"
chroot "$root" locale-gen >&2
chroot "$root" dpkg-query -W -f='${Version}' "postgresql-$major"
chroot "$root" apt-get clean
# JIT (libLLVM, ~105 MB) is optional: postgres runs without it.
rm -f "$root"/usr/lib/x86_64-linux-gnu/libLLVM-*.so* "$root/usr/lib/postgresql/$major/lib/llvmjit"*.so
rm -rf "$root/usr/lib/postgresql/$major/lib/bitcode"
rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/i18n/charmaps/* \
  "$root"/usr/share/locale/* "$root/usr/sbin/policy-rc.d" "$root/etc/resolv.conf" "$root"/var/cache/debconf/*-old
`

// buildPostgreSQLImage builds the PostgreSQL operand image from Debian
// packages (postgresql-15 with pg_stat_statements, pgaudit, HypoPG),
// tagged <major>.<minor> as CloudNativePG parses it from the image name.
func (p *Platform) buildPostgreSQLImage(ctx context.Context) (string, string, error) {
	key := hashStrings(postgresScript, PostgreSQLMajor)
	archive := p.imageArchive("postgresql", key)
	tagFile := archive + ".tag"
	if b, err := os.ReadFile(tagFile); err == nil && fileExists(archive) {
		return imageRef("postgresql", strings.TrimSpace(string(b))), archive, nil
	}
	if err := os.MkdirAll(filepath.Dir(archive), 0o755); err != nil {
		return "", "", err
	}
	root := archive + ".rootfs"
	defer os.RemoveAll(root)
	start := time.Now()
	out, err := p.debootstrapRootfs(ctx, "postgresql", root, postgresScript, PostgreSQLMajor)
	if err != nil {
		return "", "", err
	}
	// "15.14-0+deb12u1" -> "15.14"
	version := strings.TrimSpace(string(out))
	tag := strings.SplitN(version, "-", 2)[0]
	if !strings.HasPrefix(tag, PostgreSQLMajor+".") {
		return "", "", fmt.Errorf("platform: unexpected postgresql-%s version %q", PostgreSQLMajor, version)
	}
	ref := imageRef("postgresql", tag)
	cfg := imageConfig{
		Env: []string{
			"PATH=/usr/lib/postgresql/" + PostgreSQLMajor + "/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"LANG=en_US.UTF-8",
		},
		User:       "26",
		WorkingDir: "/",
	}
	if err := writeDockerArchive(archive, ref, cfg, writeTree(root)); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(tagFile, []byte(tag+"\n"), 0o644); err != nil {
		return "", "", err
	}
	p.cfg.Log("platform: built %s in %s", ref, time.Since(start).Round(time.Second))
	return ref, archive, nil
}

// debootstrapRootfs runs an image's build script (which starts with
// debootstrapBookworm) into root, with the machine's Debian mirror and apt
// sources, logging to the image's build log; it returns what the script
// printed on standard output.
func (p *Platform) debootstrapRootfs(ctx context.Context, name, root, script string, args ...string) (string, error) {
	mirror, sources, err := debianMirror()
	if err != nil {
		return "", err
	}
	os.RemoveAll(root)
	p.cfg.Log("platform: building the %s image with debootstrap (a minute or two; log %s)", name, p.buildLog(name))
	if err := os.MkdirAll(filepath.Dir(p.buildLog(name)), 0o755); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "bash", append([]string{"-c", script, name + "-image", root, mirror, sources}, args...)...)
	logFile, err := os.Create(p.buildLog(name))
	if err != nil {
		return "", err
	}
	defer logFile.Close()
	cmd.Stderr = logFile
	out, err := cmd.Output()
	if err != nil {
		b, _ := os.ReadFile(p.buildLog(name))
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		return "", fmt.Errorf("platform: building the %s image (needs debootstrap: apt-get install debootstrap): %w\n%s", name, err, b)
	}
	return string(out), nil
}

// debianMirror reads the Debian mirror from the machine's apt sources (no
// mirror is written in the repository) and returns it with the sources file
// to give the image's apt (the same Debian suites, security updates
// included).
func debianMirror() (mirror, sourcesFile string, err error) {
	const deb822 = "/etc/apt/sources.list.d/debian.sources"
	if f, err := os.Open(deb822); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		var uri string
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if v, ok := strings.CutPrefix(line, "URIs:"); ok {
				uri = strings.Fields(v)[0]
			}
			if v, ok := strings.CutPrefix(line, "Suites:"); ok && uri != "" {
				for _, s := range strings.Fields(v) {
					if s == "bookworm" {
						return uri, deb822, nil
					}
				}
			}
		}
	}
	const legacy = "/etc/apt/sources.list"
	if f, err := os.Open(legacy); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) >= 3 && fields[0] == "deb" && fields[2] == "bookworm" {
				return fields[1], legacy, nil
			}
		}
	}
	return "", "", fmt.Errorf("platform: no Debian bookworm mirror in %s or %s (the PostgreSQL image is built with debootstrap from the machine's apt mirror)", deb822, legacy)
}
