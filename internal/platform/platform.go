//go:build linux

// Package platform runs a real single-node Kubernetes on this machine: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
// kube-proxy (iptables mode), containerd with runc and the CNI bridge, and
// CoreDNS, with every image built locally (no registry exists).
//
// Every node daemon runs inside a network namespace of its own holding only
// loopback, a veth /30 to the host and the pod bridge. That namespace has no
// default route and is the only place IP forwarding is on, and the CNI
// bridge does not masquerade, so nothing the cluster does can leave the
// machine (the project's network rule). The host reaches the API server at
// the node address and pods and Services through routes into the namespace.
//
// The daemons are started with `nsenter --net=...` rather than
// `ip netns exec`, which would also give each its own mount namespace:
// kubelet and containerd must see each other's mounts.
//
// All state (keys, etcd data, containerd's root, logs) lives under
// Config.StateDir; Stop removes everything the platform started or changed.
package platform

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Config says where the platform keeps its state and which address ranges
// it uses. The zero values of the ranges are replaced by defaults.
type Config struct {
	// StateDir holds everything of this platform instance; it is created.
	StateDir string
	// CacheDir holds built binaries and image archives, reused across
	// instances (e.g. <repo>/.cache/platform).
	CacheDir string
	// SourceDir is the Strata repository, whose nested modules
	// internal/platform/tools/{kube,coredns} pin what is built.
	SourceDir string

	// LinkCIDR is the /30 between the host (first address) and the node
	// (second address). Empty ranges get defaults (see below).
	LinkCIDR string
	// PodCIDR is the pods' range on the node's bridge (the bridge takes
	// the first address).
	PodCIDR string
	// ServiceCIDR is the Services' range (the API server's Service takes
	// the first address, cluster DNS the tenth).
	ServiceCIDR string

	// Nodes is how many nodes the platform runs (0 means 1). Every node
	// after the first is a worker with a network namespace, a containerd,
	// a kubelet and a kube-proxy of its own; node i is named
	// strata-node-<i+1> (the first keeps NodeName), sits in zone
	// strata-zone-<a+i> (ZoneLabel) and takes the i-th /30 after LinkCIDR and
	// the i-th range of PodCIDR's size after PodCIDR.
	Nodes int

	// Log receives progress lines (one per step); nil discards them.
	Log func(format string, args ...any)
}

// The default address ranges are private, 10.N.0.0/30 (link), 10.N.1.0/24
// (pods) and 10.N.16.0/20 (Services), N between 200 and 249 chosen by a
// hash of the state directory, so that platforms of different state
// directories (two worktrees' tests) rarely collide; Start refuses ranges
// that overlap a host route, so a collision fails clearly and never
// shadows anything the machine reaches.
const (
	defaultSecondOctetBase  = 200
	defaultSecondOctetRange = 50

	// NodeName is the first (on a single-node platform, the only) node's
	// name.
	NodeName = "strata-node"
	// NodeZone is the first node's topology.kubernetes.io/zone (ZoneLabel).
	NodeZone = "strata-zone-a"
	// AdminUser is the user of AdminConfig (in system:masters).
	AdminUser = "strata-admin"

	apiServerPort = 6443
)

// Platform is a started (or starting) platform instance.
type Platform struct {
	cfg Config

	// id names this instance's host-level objects (network namespace,
	// veth, cgroup) after a hash of its state directory, so two state
	// directories never share them.
	id string

	hostIP, nodeIP          net.IP
	linkNet, podNet, svcNet *net.IPNet
	bridgeIP, apiServiceIP  net.IP
	dnsServiceIP            net.IP

	// nodeCount is Config.Nodes, or more when the state directory's
	// platform was started with more (so Stop finds them all); linkNets
	// and podNets are every node's ranges, the first node's first.
	nodeCount         int
	linkNets, podNets []*net.IPNet

	bins   binaries
	images *Images

	// AdminConfig talks to the API server from the host over TLS as
	// AdminUser.
	AdminConfig *rest.Config
	// Client is a clientset for AdminConfig.
	Client kubernetes.Interface
}

// New validates the configuration and computes the instance's names and
// addresses; it starts nothing.
func New(cfg Config) (*Platform, error) {
	if cfg.StateDir == "" || cfg.CacheDir == "" || cfg.SourceDir == "" {
		return nil, errors.New("platform: StateDir, CacheDir and SourceDir are required")
	}
	for _, d := range []*string{&cfg.StateDir, &cfg.CacheDir, &cfg.SourceDir} {
		abs, err := filepath.Abs(*d)
		if err != nil {
			return nil, err
		}
		*d = resolveSymlinks(abs)
	}
	sum := sha256.Sum256([]byte(cfg.StateDir))
	octet := defaultSecondOctetBase + int(sum[0])%defaultSecondOctetRange
	if cfg.LinkCIDR == "" {
		cfg.LinkCIDR = fmt.Sprintf("10.%d.0.0/30", octet)
	}
	if cfg.PodCIDR == "" {
		cfg.PodCIDR = fmt.Sprintf("10.%d.1.0/24", octet)
	}
	if cfg.ServiceCIDR == "" {
		cfg.ServiceCIDR = fmt.Sprintf("10.%d.16.0/20", octet)
	}
	if cfg.Log == nil {
		cfg.Log = func(string, ...any) {}
	}
	p := &Platform{cfg: cfg}
	p.id = hex.EncodeToString(sum[:])[:8]

	var err error
	if _, p.linkNet, err = net.ParseCIDR(cfg.LinkCIDR); err != nil {
		return nil, fmt.Errorf("platform: LinkCIDR: %w", err)
	}
	if ones, _ := p.linkNet.Mask.Size(); ones != 30 {
		return nil, fmt.Errorf("platform: LinkCIDR %s must be a /30", cfg.LinkCIDR)
	}
	if _, p.podNet, err = net.ParseCIDR(cfg.PodCIDR); err != nil {
		return nil, fmt.Errorf("platform: PodCIDR: %w", err)
	}
	if _, p.svcNet, err = net.ParseCIDR(cfg.ServiceCIDR); err != nil {
		return nil, fmt.Errorf("platform: ServiceCIDR: %w", err)
	}
	p.hostIP = nthIP(p.linkNet, 1)
	p.nodeIP = nthIP(p.linkNet, 2)
	p.bridgeIP = nthIP(p.podNet, 1)
	p.apiServiceIP = nthIP(p.svcNet, 1)
	p.dnsServiceIP = nthIP(p.svcNet, 10)

	p.nodeCount = max(cfg.Nodes, 1, p.recordedNodeCount())
	if p.nodeCount > maxNodes {
		return nil, fmt.Errorf("platform: %d nodes, at most %d", p.nodeCount, maxNodes)
	}
	for i := 0; i < p.nodeCount; i++ {
		link, pods := workerRanges(p.linkNet, p.podNet, i)
		p.linkNets = append(p.linkNets, link)
		p.podNets = append(p.podNets, pods)
	}
	if err := checkRangesDisjoint(append(append([]*net.IPNet{p.svcNet}, p.linkNets...), p.podNets...)); err != nil {
		return nil, err
	}
	return p, nil
}

// Start brings the platform up and waits until every node is Ready and
// cluster DNS answers. It is idempotent: a component already running from
// this state directory is kept. On error the caller should still call Stop.
func (p *Platform) Start(ctx context.Context) error {
	start := time.Now()
	if err := checkRequirements(); err != nil {
		return err
	}
	for _, d := range []string{p.StateDir(), p.logDir(), p.runDir(), p.cfg.CacheDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	var err error
	if p.bins, err = p.buildBinaries(ctx); err != nil {
		return err
	}
	if err := p.saveHostSettings(); err != nil {
		return err
	}
	if err := os.WriteFile(p.nodeCountFile(), []byte(fmt.Sprintln(p.nodeCount)), 0o600); err != nil {
		return err
	}
	if err := p.setUpNetwork(ctx); err != nil {
		return err
	}
	for _, n := range p.workers() {
		if err := p.setUpWorkerNetwork(ctx, n, p.nodes()); err != nil {
			return err
		}
	}
	if err := p.writePKI(); err != nil {
		return err
	}
	for _, n := range p.workers() {
		if err := p.writeWorkerPKI(n); err != nil {
			return err
		}
	}
	if err := p.setUpCgroups(); err != nil {
		return err
	}
	if err := p.startControlPlane(ctx); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", p.kubeconfigPath("admin-host"))
	if err != nil {
		return err
	}
	p.AdminConfig = cfg
	if p.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	for _, n := range p.nodes() {
		if err := p.startNode(ctx, n); err != nil {
			return err
		}
	}
	if err := p.installAddons(ctx); err != nil {
		return err
	}
	p.cfg.Log("platform: up in %s (state %s)", time.Since(start).Round(time.Second), p.StateDir())
	return nil
}

// Build builds (or finds in the cache) every binary and image the
// platform and its tests run, without starting anything.
func (p *Platform) Build(ctx context.Context) error {
	if err := checkRequirements(); err != nil {
		return err
	}
	if _, err := p.buildBinaries(ctx); err != nil {
		return err
	}
	if _, err := p.BuildImages(ctx); err != nil {
		return err
	}
	// The images only the tests run (OpenBao's, the Spring Boot test
	// application's): built here too, so that `make test` pays their
	// cold builds before the tests' timeout starts.
	if _, _, err := p.buildOpenBaoImage(); err != nil {
		return err
	}
	_, _, err := p.buildSpringAppArchive(ctx)
	return err
}

// StateDir is the instance's state directory.
func (p *Platform) StateDir() string { return p.cfg.StateDir }

// Kubeconfig is the path of the admin kubeconfig usable from the host.
func (p *Platform) Kubeconfig() string { return p.kubeconfigPath("admin-host") }

// NodeIP is the node's address, reachable from the host.
func (p *Platform) NodeIP() net.IP { return p.nodeIP }

// LogDir holds one log file per component.
func (p *Platform) LogDir() string { return p.logDir() }

func (p *Platform) logDir() string { return filepath.Join(p.cfg.StateDir, "logs") }
func (p *Platform) runDir() string { return filepath.Join(p.cfg.StateDir, "run") }
func (p *Platform) pkiDir() string { return filepath.Join(p.cfg.StateDir, "pki") }
func (p *Platform) path(elem ...string) string {
	return filepath.Join(append([]string{p.cfg.StateDir}, elem...)...)
}

// nthIP returns the n-th address of a network (0 is the network address).
func nthIP(n *net.IPNet, i int) net.IP {
	ip := n.IP.To4()
	out := make(net.IP, 4)
	copy(out, ip)
	v := uint32(out[0])<<24 | uint32(out[1])<<16 | uint32(out[2])<<8 | uint32(out[3])
	v += uint32(i)
	out[0], out[1], out[2], out[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
	return out
}

// resolveSymlinks resolves the symbolic links of a path's longest existing
// prefix (the rest may not exist yet). The kernel lists mounts by their
// resolved paths: with a state directory under a symlink (a worktree's
// .cache linked to a shared one), Stop would otherwise not find the pods'
// mounts to detach.
func resolveSymlinks(path string) string {
	rest := ""
	for dir := path; ; dir = filepath.Dir(dir) {
		if resolved, err := filepath.EvalSymlinks(dir); err == nil {
			return filepath.Join(resolved, rest)
		}
		if dir == filepath.Dir(dir) {
			return path
		}
		rest = filepath.Join(filepath.Base(dir), rest)
	}
}
