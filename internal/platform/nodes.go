//go:build linux

package platform

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ZoneLabel is the well-known label the nodes carry their zone in (the
// plans' zone spread keys on it).
const ZoneLabel = "topology.kubernetes.io/zone"

// maxNodes bounds Config.Nodes: the default ranges give each node a /30
// link out of the first /24 and a /24 of pods below the Service range.
const maxNodes = 8

// nodeSpec is what differs between the nodes' daemons. The first node
// (index 0) is the one a single-node platform always had: the control
// plane runs in its namespace and its files keep their places in the
// state directory. Every further node is a worker with a namespace, a
// containerd, a kubelet and a kube-proxy of its own, its files under
// nodes/<name>.
type nodeSpec struct {
	index      int
	name, zone string
	// netnsName is the node's network namespace (under /run/netns).
	netnsName string
	// dir is the base of the node's containerd, CNI, kubelet and
	// kube-proxy files.
	dir string
	// suffix is appended to the node's component names (log and pid
	// files): "" on the first node, "-<name>" on the others.
	suffix string
	// linkNet is the /30 the node's namespace is attached by: to the
	// host for the first node, to the first node's namespace for the
	// others (hubIP is the first node's end of it).
	linkNet         *net.IPNet
	nodeIP, hubIP   net.IP
	podNet          *net.IPNet
	bridgeIP        net.IP
	cgroupRoot      string
	kubeletConfig   string // kubeconfig
	kubeProxyConfig string // kubeconfig
	servingCert     string
	servingKey      string
}

func (n nodeSpec) path(elem ...string) string {
	return filepath.Join(append([]string{n.dir}, elem...)...)
}
func (n nodeSpec) netnsPath() string        { return filepath.Join("/run/netns", n.netnsName) }
func (n nodeSpec) containerdSocket() string { return n.path("containerd", "containerd.sock") }
func (n nodeSpec) component(name string) string {
	return name + n.suffix
}

// zoneName is node i's zone: NodeZone (strata-zone-a) for the first,
// strata-zone-b, strata-zone-c, ... for the others.
func zoneName(i int) string { return strings.TrimSuffix(NodeZone, "a") + string(rune('a'+i)) }

// nodeNameOf is node i's name: the first node keeps NodeName, the others
// are strata-node-2, strata-node-3, ...
func nodeNameOf(i int) string {
	if i == 0 {
		return NodeName
	}
	return fmt.Sprintf("%s-%d", NodeName, i+1)
}

// nodes lists the platform's nodes, the first one first.
func (p *Platform) nodes() []nodeSpec {
	out := make([]nodeSpec, p.nodeCount)
	for i := range out {
		n := nodeSpec{
			index:     i,
			name:      nodeNameOf(i),
			zone:      zoneName(i),
			linkNet:   p.linkNets[i],
			nodeIP:    nthIP(p.linkNets[i], 2),
			podNet:    p.podNets[i],
			bridgeIP:  nthIP(p.podNets[i], 1),
			netnsName: p.netnsName(),
		}
		if i == 0 {
			n.dir = p.StateDir()
			n.cgroupRoot = p.cgroupRoot()
			n.kubeletConfig = p.kubeconfigPath("kubelet")
			n.kubeProxyConfig = p.kubeconfigPath("kube-proxy")
			n.servingCert, n.servingKey = p.pki("kubelet-serving.crt"), p.pki("kubelet-serving.key")
		} else {
			n.dir = p.path("nodes", n.name)
			n.suffix = "-" + n.name
			n.netnsName = fmt.Sprintf("%s-%d", p.netnsName(), i+1)
			n.hubIP = nthIP(p.linkNets[i], 1)
			n.cgroupRoot = fmt.Sprintf("%s-%d", p.cgroupRoot(), i+1)
			n.kubeletConfig = p.kubeconfigPath("kubelet-" + n.name)
			n.kubeProxyConfig = p.kubeconfigPath("kube-proxy-" + n.name)
			n.servingCert, n.servingKey = p.pki("kubelet-serving-"+n.name+".crt"), p.pki("kubelet-serving-"+n.name+".key")
		}
		out[i] = n
	}
	return out
}

// workers are the nodes after the first.
func (p *Platform) workers() []nodeSpec { return p.nodes()[1:] }

// NodeNames are the names of the platform's nodes, the first one first.
func (p *Platform) NodeNames() []string {
	var names []string
	for _, n := range p.nodes() {
		names = append(names, n.name)
	}
	return names
}

// nodeCountFile records how many nodes the state directory's platform was
// started with, so that a Stop from another process (strata-platform
// down, a test's next run) stops them all whatever its own Config says.
func (p *Platform) nodeCountFile() string { return p.path("nodes.count") }

func (p *Platform) recordedNodeCount() int {
	b, err := os.ReadFile(p.nodeCountFile())
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// workerRanges derives node i's link /30 and pod range from the first
// node's: the i-th /30 after the first link, the i-th range of the pod
// range's size after it.
func workerRanges(link, pods *net.IPNet, i int) (*net.IPNet, *net.IPNet) {
	ones, bits := pods.Mask.Size()
	size := 1 << (bits - ones)
	l := &net.IPNet{IP: nthIP(link, 4*i), Mask: link.Mask}
	p := &net.IPNet{IP: nthIP(pods, size*i), Mask: pods.Mask}
	return l, p
}

// checkRangesDisjoint fails when two of the platform's ranges overlap
// (a pod range running into the Service range, say).
func checkRangesDisjoint(ranges []*net.IPNet) error {
	for i, a := range ranges {
		for _, b := range ranges[i+1:] {
			if a.Contains(b.IP) || b.Contains(a.IP) {
				return fmt.Errorf("platform: ranges %s and %s overlap", a, b)
			}
		}
	}
	return nil
}

// workerLink names the hub's and the worker's ends of worker n's veth
// pair: the worker's only link to the rest of the platform.
func (p *Platform) workerLink(n nodeSpec) (hubVeth, nodeVeth string) {
	return fmt.Sprintf("st%sa%d", p.id, n.index+1), fmt.Sprintf("st%sb%d", p.id, n.index+1)
}

// setUpWorkerNetwork creates a worker's namespace and links it to the
// first node's namespace, which routes between the nodes and the host.
//
// The first node is the hub: it already forwards (its namespace has
// ip_forward on) and the host already routes into it, so the workers need
// neither the host's ip_forward (which stays untouched) nor a bridge on
// the host. Each worker gets a veth /30 to the hub and routes, via the
// hub, for the other nodes' pod ranges and links and for the Services;
// the hub gets a route for the worker's pods; the host routes the
// worker's pods and link through the hub. Nothing is a default route.
func (p *Platform) setUpWorkerNetwork(ctx context.Context, n nodeSpec, all []nodeSpec) error {
	if _, err := os.Stat(n.netnsPath()); err == nil {
		p.cfg.Log("platform: network namespace %s exists, keeping it", n.netnsName)
		return nil
	}
	p.cfg.Log("platform: network namespace %s (node %s %s, pods %s, linked to %s)", n.netnsName, n.name, n.nodeIP, n.podNet, all[0].netnsName)
	hubVeth, nodeVeth := p.workerLink(n)
	hub := all[0]
	ones, _ := n.linkNet.Mask.Size()
	steps := [][]string{
		{"ip", "netns", "add", n.netnsName},
		{"ip", "link", "add", hubVeth, "type", "veth", "peer", "name", nodeVeth},
		{"ip", "link", "set", hubVeth, "netns", hub.netnsName},
		{"ip", "link", "set", nodeVeth, "netns", n.netnsName},
		{"ip", "-n", hub.netnsName, "addr", "add", fmt.Sprintf("%s/%d", n.hubIP, ones), "dev", hubVeth},
		{"ip", "-n", hub.netnsName, "link", "set", hubVeth, "up"},
		{"ip", "-n", n.netnsName, "link", "set", "lo", "up"},
		{"ip", "-n", n.netnsName, "addr", "add", fmt.Sprintf("%s/%d", n.nodeIP, ones), "dev", nodeVeth},
		{"ip", "-n", n.netnsName, "link", "set", nodeVeth, "up"},
		// Services are routed towards the hub so that the worker's own
		// kube-proxy rules see locally sent packets (as on the first node).
		{"ip", "-n", n.netnsName, "route", "add", p.svcNet.String(), "via", n.hubIP.String(), "dev", nodeVeth, "src", n.nodeIP.String()},
		// The hub reaches the worker's pods.
		{"ip", "-n", hub.netnsName, "route", "add", n.podNet.String(), "via", n.nodeIP.String(), "dev", hubVeth},
		// The host reaches the worker's pods and address through the hub.
		{"ip", "route", "add", n.podNet.String(), "via", hub.nodeIP.String(), "dev", p.hostVeth()},
		{"ip", "route", "add", n.linkNet.String(), "via", hub.nodeIP.String(), "dev", p.hostVeth()},
	}
	// The worker reaches every other node's pods and address (the hub's
	// link to the host included: the API server's address and the host)
	// through the hub.
	for _, o := range all {
		if o.index == n.index {
			continue
		}
		steps = append(steps,
			[]string{"ip", "-n", n.netnsName, "route", "add", o.podNet.String(), "via", n.hubIP.String(), "dev", nodeVeth},
			[]string{"ip", "-n", n.netnsName, "route", "add", o.linkNet.String(), "via", n.hubIP.String(), "dev", nodeVeth})
	}
	for _, s := range steps {
		if err := run(ctx, s[0], s[1:]...); err != nil {
			return err
		}
	}
	for _, sysctl := range []string{"net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables"} {
		if err := nsSysctl(ctx, n.netnsPath(), sysctl, "1"); err != nil {
			return err
		}
	}
	return nil
}

// writeWorkerPKI issues a worker's kubelet certificates (serving, for its
// name and address; client, as system:node:<name> so the Node authorizer
// gives it its own pods) and its kubelet's and kube-proxy's kubeconfigs,
// which reach the API server at the first node's address.
func (p *Platform) writeWorkerPKI(n nodeSpec) error {
	done := p.pki(n.name + ".done")
	if fileExists(done) {
		return nil
	}
	ca, caKey, err := p.loadCA()
	if err != nil {
		return err
	}
	if err := p.issueCert(ca, caKey, "kubelet-serving-"+n.name, "system:node:"+n.name, []string{"system:nodes"}, x509.ExtKeyUsageServerAuth,
		[]string{n.name, "localhost"}, []net.IP{net.ParseIP("127.0.0.1"), n.nodeIP}); err != nil {
		return err
	}
	if err := p.issueCert(ca, caKey, "kubelet-"+n.name, "system:node:"+n.name, []string{"system:nodes"}, x509.ExtKeyUsageClientAuth, nil, nil); err != nil {
		return err
	}
	for _, id := range []clientIdentity{
		{file: "kubelet-" + n.name, user: "system:node:" + n.name, kubeconfig: "kubelet-" + n.name, fromHost: true},
		{file: "kube-proxy", user: "system:kube-proxy", kubeconfig: "kube-proxy-" + n.name, fromHost: true},
	} {
		if err := p.writeKubeconfig(id); err != nil {
			return err
		}
	}
	return os.WriteFile(done, nil, 0o600)
}

// loadCA reads the cluster CA writePKI created.
func (p *Platform) loadCA() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPEM, err := os.ReadFile(p.pki("ca.crt"))
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(p.pki("ca.key"))
	if err != nil {
		return nil, nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("platform: the CA's certificate or key is not PEM")
	}
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	return ca, key, nil
}
