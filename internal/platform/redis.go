//go:build linux

package platform

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The redis-operator the platform runs: the version
// charts/strata-platform-operators pins (chart 3.2.9, operator 1.2.4).
const (
	RedisOperatorVersion = "1.2.4"
	redisOperatorModule  = "github.com/spotahome/redis-operator"
	// RedisOperatorNamespace is the operator's namespace, as in
	// charts/strata-platform-operators (and the broker's default
	// redis.operatorNamespace, which its NetworkPolicies let in).
	RedisOperatorNamespace = "redis-operator"
	// redisOperatorMetricsPort is where the operator serves its metrics
	// (its default --listen-address, the upstream chart's container port).
	redisOperatorMetricsPort = 9710
)

// buildRedisOperatorImage builds the redis-operator from its module.
func (p *Platform) buildRedisOperatorImage(ctx context.Context) (string, string, error) {
	dir, err := moduleDir(ctx, redisOperatorModule, "v"+RedisOperatorVersion)
	if err != nil {
		return "", "", err
	}
	bin, err := p.buildModuleBinary(ctx, goBuild{
		name:      "redis-operator",
		moduleDir: dir,
		pkg:       "./cmd/redisoperator",
	})
	if err != nil {
		return "", "", err
	}
	return p.binaryImage("redis-operator", RedisOperatorVersion, bin, []layerEntry{
		{path: "redis-operator", mode: 0o755, source: bin},
	}, imageConfig{Entrypoint: []string{"/redis-operator"}, User: "1000:1000"})
}

// redisScript builds the Redis operand's root filesystem: Debian's
// redis-server and redis-tools (Redis 7.0, built with TLS), hostname (the
// operator's Sentinel readiness probe runs `hostname`) and Debian's
// prometheus-redis-exporter. The operator runs every container as uid 1000
// (its default securityContext); /data is the volume's mount point. It
// prints redis-server's package version.
const redisScript = `set -euo pipefail
root="$1" mirror="$2" sources="$3"
` + debootstrapBookworm + `chroot "$root" apt-get update -qq >&2
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  redis-server redis-tools hostname prometheus-redis-exporter >&2
# Redis must speak TLS (the broker serves clients on a TLS port only).
chroot "$root" sh -c 'ldd "$(command -v redis-server)"' | grep -q libssl
install -d -o 1000 -g 1000 "$root/data"
chroot "$root" dpkg-query -W -f='${Version}' redis-server
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/* \
  "$root/usr/sbin/policy-rc.d" "$root/etc/resolv.conf" "$root"/var/cache/debconf/*-old
`

// buildRedisImages builds the Redis operand image and the exporter image
// from one Debian root filesystem (Redis 7.0.15 and redis_exporter 1.45,
// bookworm's), cached by the script's content: the exporter image is the
// same tree with the exporter as its entrypoint, since the operator gives
// the exporter container arguments only (identical trees give identical
// layers, which containerd stores once). Both are tagged with Redis's
// upstream version.
//
// Debian's Redis keeps protected-mode on by default (the official image
// patches it off): the broker's RedisFailover passes --protected-mode no
// (provisioners/redis), harmless since every connection needs the password.
func (p *Platform) buildRedisImages(ctx context.Context) (redis, exporter string, archives []string, err error) {
	key := hashStrings(redisScript)
	archives = []string{p.imageArchive("redis", key), p.imageArchive("redis-exporter", key)}
	tagFile := archives[0] + ".tag"
	if b, err := os.ReadFile(tagFile); err == nil && fileExists(archives[0]) && fileExists(archives[1]) {
		tag := strings.TrimSpace(string(b))
		return imageRef("redis", tag), imageRef("redis-exporter", tag), archives, nil
	}
	if err := os.MkdirAll(filepath.Dir(archives[0]), 0o755); err != nil {
		return "", "", nil, err
	}
	root := archives[0] + ".rootfs"
	defer os.RemoveAll(root)
	start := time.Now()
	out, err := p.debootstrapRootfs(ctx, "redis", root, redisScript)
	if err != nil {
		return "", "", nil, err
	}
	// "5:7.0.15-1~deb12u1" -> "7.0.15"
	version := strings.TrimSpace(out)
	tag := version
	if _, upstream, epoch := strings.Cut(tag, ":"); epoch {
		tag = upstream
	}
	tag, _, _ = strings.Cut(tag, "-")
	if !strings.HasPrefix(tag, "7.") {
		return "", "", nil, fmt.Errorf("platform: unexpected redis-server version %q", version)
	}
	redis, exporter = imageRef("redis", tag), imageRef("redis-exporter", tag)
	if err := writeDockerArchive(archives[0], redis, imageConfig{
		Cmd: []string{"redis-server"}, User: "1000:1000", WorkingDir: "/data",
	}, writeTree(root)); err != nil {
		return "", "", nil, err
	}
	if err := writeDockerArchive(archives[1], exporter, imageConfig{
		Entrypoint: []string{"/usr/bin/prometheus-redis-exporter"}, User: "1000:1000", WorkingDir: "/",
	}, writeTree(root)); err != nil {
		return "", "", nil, err
	}
	if err := os.WriteFile(tagFile, []byte(tag+"\n"), 0o644); err != nil {
		return "", "", nil, err
	}
	p.cfg.Log("platform: built %s and %s in %s", redis, exporter, time.Since(start).Round(time.Second))
	return redis, exporter, archives, nil
}

// InstallRedisOperator installs the redis-operator: the RedisFailover CRD
// of the chart in the operator's module (read from the module cache, never
// copied into the repository), the ClusterRole its kustomize manifests
// give, a ServiceAccount and binding, and a Deployment of the local image
// with the values of charts/strata-platform-operators (resources; every
// namespace watched), and waits until it is available.
func (p *Platform) InstallRedisOperator(ctx context.Context) error {
	imgs, err := p.BuildImages(ctx)
	if err != nil {
		return err
	}
	dir, err := moduleDir(ctx, redisOperatorModule, "v"+RedisOperatorVersion)
	if err != nil {
		return err
	}
	var objs []*unstructured.Unstructured
	for _, file := range []string{
		filepath.Join("charts", "redisoperator", "crds", "databases.spotahome.com_redisfailovers.yaml"),
		filepath.Join("manifests", "kustomize", "components", "rbac", "clusterrole.yaml"),
	} {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			return fmt.Errorf("platform: the redis-operator module's %s: %w", file, err)
		}
		decoded, err := decodeManifest(b)
		if err != nil {
			return fmt.Errorf("platform: %s: %w", file, err)
		}
		objs = append(objs, decoded...)
	}
	own, err := decodeManifest([]byte(redisOperatorManifest(imgs.RedisOperator)))
	if err != nil {
		return err
	}
	objs = append(objs, own...)
	start := time.Now()
	if err := p.applyObjects(ctx, objs); err != nil {
		return err
	}
	if err := p.WaitForDeployment(ctx, RedisOperatorNamespace, "redis-operator", 5*time.Minute); err != nil {
		return fmt.Errorf("%w; pods: %s", err, p.podSummary(ctx, RedisOperatorNamespace))
	}
	p.cfg.Log("platform: redis-operator %s installed in %s", RedisOperatorVersion, time.Since(start).Round(time.Second))
	return nil
}

// redisOperatorManifest is the operator's namespace, ServiceAccount,
// ClusterRoleBinding (to the module's ClusterRole "redis-operator") and
// Deployment, shaped like the upstream chart's: the resources are
// charts/strata-platform-operators' redisOperator.resources; the probes
// and security context are the upstream chart's.
func redisOperatorManifest(image string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: redis-operator, namespace: %[1]s}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: redis-operator}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: redis-operator}
subjects:
- {kind: ServiceAccount, name: redis-operator, namespace: %[1]s}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: redis-operator, namespace: %[1]s, labels: {app.kubernetes.io/name: redis-operator}}
spec:
  replicas: 1
  selector: {matchLabels: {app.kubernetes.io/name: redis-operator}}
  template:
    metadata: {labels: {app.kubernetes.io/name: redis-operator}}
    spec:
      serviceAccountName: redis-operator
      containers:
      - name: redis-operator
        image: %[2]s
        imagePullPolicy: IfNotPresent
        ports: [{name: metrics, containerPort: %[3]d, protocol: TCP}]
        readinessProbe: {tcpSocket: {port: %[3]d}, initialDelaySeconds: 10, periodSeconds: 3, timeoutSeconds: 3}
        livenessProbe: {tcpSocket: {port: %[3]d}, initialDelaySeconds: 30, periodSeconds: 5, timeoutSeconds: 5, failureThreshold: 6}
        securityContext: {readOnlyRootFilesystem: true, runAsNonRoot: true, runAsUser: 1000}
        resources:
          requests: {cpu: 50m, memory: 64Mi}
          limits: {cpu: 500m, memory: 256Mi}
`, RedisOperatorNamespace, image, redisOperatorMetricsPort)
}
