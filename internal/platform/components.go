//go:build linux

package platform

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// startControlPlane starts etcd, kube-apiserver, kube-controller-manager
// and kube-scheduler, each waited for before the next.
func (p *Platform) startControlPlane(ctx context.Context) error {
	// etcd listens on the node namespace's loopback only: nothing outside
	// the namespace reaches it, so plain HTTP stays on the node.
	if err := p.startDaemon("etcd", "/usr/bin/etcd",
		"--name", "strata",
		"--data-dir", p.path("etcd"),
		"--listen-client-urls", "http://127.0.0.1:2379",
		"--advertise-client-urls", "http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380",
		"--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "strata=http://127.0.0.1:2380",
		"--listen-metrics-urls", "http://127.0.0.1:2381",
	); err != nil {
		return err
	}
	if err := p.waitReady(ctx, "etcd", time.Minute, p.nsHTTPCheck("http://127.0.0.1:2381/health", false)); err != nil {
		return err
	}
	if err := p.startDaemon("kube-apiserver", p.bins.component("kube-apiserver"),
		"--etcd-servers", "http://127.0.0.1:2379",
		"--bind-address", "0.0.0.0",
		"--advertise-address", p.nodeIP.String(),
		"--secure-port", fmt.Sprint(apiServerPort),
		"--tls-cert-file", p.pki("apiserver.crt"),
		"--tls-private-key-file", p.pki("apiserver.key"),
		"--client-ca-file", p.pki("ca.crt"),
		"--kubelet-client-certificate", p.pki("apiserver-kubelet-client.crt"),
		"--kubelet-client-key", p.pki("apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority", p.pki("ca.crt"),
		// The node's name resolves nowhere (no upstream DNS): reach the
		// kubelet (logs, exec) at its InternalIP, which its serving
		// certificate covers.
		"--kubelet-preferred-address-types", "InternalIP,Hostname",
		"--service-account-key-file", p.pki("service-account.pub"),
		"--service-account-signing-key-file", p.pki("service-account.key"),
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range", p.svcNet.String(),
		"--authorization-mode", "Node,RBAC",
		"--anonymous-auth=false",
		"--allow-privileged=true",
		// Webhooks and aggregated APIs are called at their pod's address
		// (the API server runs on the node, not behind a Service VIP it
		// could not route otherwise).
		"--enable-aggregator-routing=true",
		"--profiling=false",
		"--v=1",
	); err != nil {
		return err
	}
	if err := p.waitReady(ctx, "kube-apiserver", 2*time.Minute, p.nsHTTPCheck(fmt.Sprintf("https://127.0.0.1:%d/readyz", apiServerPort), true)); err != nil {
		return err
	}
	if err := p.startDaemon("kube-controller-manager", p.bins.component("kube-controller-manager"),
		"--kubeconfig", p.kubeconfigPath("controller-manager"),
		"--authentication-kubeconfig", p.kubeconfigPath("controller-manager"),
		"--authorization-kubeconfig", p.kubeconfigPath("controller-manager"),
		"--bind-address", "127.0.0.1",
		"--service-account-private-key-file", p.pki("service-account.key"),
		"--root-ca-file", p.pki("ca.crt"),
		"--cluster-signing-cert-file", p.pki("ca.crt"),
		"--cluster-signing-key-file", p.pki("ca.key"),
		"--use-service-account-credentials=true",
		"--service-cluster-ip-range", p.svcNet.String(),
		"--leader-elect=false",
		"--profiling=false",
		"--v=1",
	); err != nil {
		return err
	}
	if err := p.startDaemon("kube-scheduler", p.bins.component("kube-scheduler"),
		"--kubeconfig", p.kubeconfigPath("scheduler"),
		"--authentication-kubeconfig", p.kubeconfigPath("scheduler"),
		"--authorization-kubeconfig", p.kubeconfigPath("scheduler"),
		"--bind-address", "127.0.0.1",
		"--leader-elect=false",
		"--profiling=false",
		"--v=1",
	); err != nil {
		return err
	}
	if err := p.waitReady(ctx, "kube-controller-manager", time.Minute, p.nsHTTPCheck("https://127.0.0.1:10257/healthz", false)); err != nil {
		return err
	}
	return p.waitReady(ctx, "kube-scheduler", time.Minute, p.nsHTTPCheck("https://127.0.0.1:10259/healthz", false))
}

// startNode starts a node's containerd, imports the images, then its
// kubelet and kube-proxy, and waits for the node to be Ready.
func (p *Platform) startNode(ctx context.Context, n nodeSpec) error {
	if err := p.writeNodeConfigs(n); err != nil {
		return err
	}
	if err := p.startDaemonIn(n.netnsPath(), n.component("containerd"), "/usr/bin/containerd", "--config", n.path("containerd", "config.toml")); err != nil {
		return err
	}
	if err := p.waitReady(ctx, n.component("containerd"), time.Minute, func(ctx context.Context) error {
		return run(ctx, "ctr", "--address", n.containerdSocket(), "version")
	}); err != nil {
		return err
	}
	if err := p.importImages(ctx, n); err != nil {
		return err
	}
	if err := p.startDaemonIn(n.netnsPath(), n.component("kubelet"), p.bins.component("kubelet"),
		"--config", n.path("kubelet", "config.yaml"),
		"--kubeconfig", n.kubeletConfig,
		"--root-dir", n.path("kubelet", "root"),
		"--cert-dir", n.path("kubelet", "pki"),
		"--node-ip", n.nodeIP.String(),
		"--hostname-override", n.name,
		// Plans that spread across zones with DoNotSchedule (PostgreSQL
		// and Redis ha) need every node to be in a zone: a node without
		// the label is never eligible for their pods. Every node has a
		// zone of its own.
		"--node-labels", ZoneLabel+"="+n.zone,
		"--v=1",
	); err != nil {
		return err
	}
	if err := p.startDaemonIn(n.netnsPath(), n.component("kube-proxy"), p.bins.component("kube-proxy"),
		"--config", n.path("kube-proxy", "config.yaml"),
		"--v=1",
	); err != nil {
		return err
	}
	return p.waitReady(ctx, n.component("kubelet"), 2*time.Minute, func(ctx context.Context) error {
		node, err := p.Client.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				if c.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("node %s not Ready: %s", n.name, c.Message)
			}
		}
		return fmt.Errorf("node %s has no Ready condition yet", n.name)
	})
}

// writeNodeConfigs writes a node's containerd, CNI, kubelet and kube-proxy
// configuration files.
func (p *Platform) writeNodeConfigs(n nodeSpec) error {
	containerd := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = %[3]q

[plugins."io.containerd.internal.v1.opt"]
  path = %[4]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  # Root here lacks CAP_SYS_RESOURCE: the negative oom_score_adj Kubernetes
  # asks for would make every container fail to start.
  restrict_oom_score_adj = true
  # Pod network namespaces under containerd's state directory, so Stop
  # finds and unmounts them with the rest.
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = %[6]q
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[7]q
`, n.path("containerd", "root"), n.path("containerd", "state"), n.containerdSocket(),
		n.path("containerd", "opt"), imageRef("pause", pauseTag), n.path("runc"), n.path("cni", "net.d"))

	// The bridge does not masquerade: pods reach only the node, the host
	// and each other (the node's namespace has no default route anyway).
	cni := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "strata",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": %q,
        "ranges": [[{"subnet": %q, "gateway": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, bridgeName, n.path("cni", "ipam"), n.podNet.String(), n.bridgeIP.String())

	kubelet := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %[2]q}
authorization: {mode: Webhook}
tlsCertFile: %[3]q
tlsPrivateKeyFile: %[4]q
containerRuntimeEndpoint: unix://%[5]s
cgroupDriver: cgroupfs
cgroupRoot: %[6]s
failCgroupV1: false
failSwapOn: false
clusterDomain: cluster.local
clusterDNS: [%[7]s]
# No resolv.conf from the host: pods resolve cluster names only.
resolvConf: ""
podLogsDir: %[8]q
# No registry to pull images back from: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
serializeImagePulls: false
maxPods: 110
`, n.nodeIP, p.pki("ca.crt"), n.servingCert, n.servingKey,
		n.containerdSocket(), n.cgroupRoot, p.dnsServiceIP, n.path("kubelet", "pod-logs"))

	proxy := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: %q}
hostnameOverride: %s
bindAddress: %s
clusterCIDR: %s
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [primary]
# Do not touch the machine-wide nf_conntrack_max.
conntrack: {maxPerCore: 0}
`, n.kubeProxyConfig, n.name, n.nodeIP, n.podNet)

	files := map[string]string{
		n.path("containerd", "config.toml"):          containerd,
		n.path("cni", "net.d", "10-strata.conflist"): cni,
		n.path("kubelet", "config.yaml"):             kubelet,
		n.path("kube-proxy", "config.yaml"):          proxy,
	}
	for path, content := range files {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		// Unchanged files are not rewritten: kube-proxy exits when its
		// configuration file is written to (a second Start would stop it).
		if old, err := os.ReadFile(path); err == nil && string(old) == content {
			continue
		}
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			return err
		}
	}
	for _, d := range []string{n.path("kubelet", "pod-logs"), n.path("cni", "ipam"), n.path("runc")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	return nil
}

// nsHTTPCheck probes a URL on the node namespace's loopback: the probe runs
// through a dialer that enters the namespace (a check from the host could
// not reach 127.0.0.1 inside it). withClientCert authenticates as admin.
func (p *Platform) nsHTTPCheck(url string, withClientCert bool) func(context.Context) error {
	tlsConfig := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // a local health probe; TLS is verified for every API call
	if withClientCert {
		pool := x509.NewCertPool()
		if ca, err := os.ReadFile(p.pki("ca.crt")); err == nil {
			pool.AppendCertsFromPEM(ca)
		}
		tlsConfig = &tls.Config{RootCAs: pool, ServerName: "localhost"}
		if cert, err := tls.LoadX509KeyPair(p.pki("admin.crt"), p.pki("admin.key")); err == nil {
			tlsConfig.Certificates = []tls.Certificate{cert}
		}
	}
	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: tlsConfig,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return dialInNetns(ctx, p.netnsPath(), network, addr)
			},
		},
	}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
		}
		return nil
	}
}
