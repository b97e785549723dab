//go:build linux

package platform

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// netnsName is the node's network namespace (under /run/netns).
func (p *Platform) netnsName() string { return "strata-" + p.id }

// netnsPath is what nsenter --net= takes.
func (p *Platform) netnsPath() string { return filepath.Join("/run/netns", p.netnsName()) }

// Host and node ends of the veth pair (interface names are at most 15 bytes).
func (p *Platform) hostVeth() string { return "st" + p.id + "h" }
func (p *Platform) nodeVeth() string { return "st" + p.id + "n" }

// bridgeName is the pod bridge inside the node namespace.
const bridgeName = "cni0"

// setUpNetwork creates the node's namespace, its link to the host and the
// host routes into it. It is idempotent: an existing namespace is kept.
func (p *Platform) setUpNetwork(ctx context.Context) error {
	if _, err := os.Stat(p.netnsPath()); err == nil {
		p.cfg.Log("platform: network namespace %s exists, keeping it", p.netnsName())
		return nil
	}
	if err := p.checkRoutesFree(); err != nil {
		return err
	}
	p.cfg.Log("platform: network namespace %s (node %s, pods %s, services %s)", p.netnsName(), p.nodeIP, p.podNet, p.svcNet)
	ones, _ := p.linkNet.Mask.Size()
	steps := [][]string{
		{"ip", "netns", "add", p.netnsName()},
		{"ip", "link", "add", p.hostVeth(), "type", "veth", "peer", "name", p.nodeVeth()},
		{"ip", "link", "set", p.nodeVeth(), "netns", p.netnsName()},
		{"ip", "addr", "add", fmt.Sprintf("%s/%d", p.hostIP, ones), "dev", p.hostVeth()},
		{"ip", "link", "set", p.hostVeth(), "up"},
		{"ip", "-n", p.netnsName(), "link", "set", "lo", "up"},
		{"ip", "-n", p.netnsName(), "addr", "add", fmt.Sprintf("%s/%d", p.nodeIP, ones), "dev", p.nodeVeth()},
		{"ip", "-n", p.netnsName(), "link", "set", p.nodeVeth(), "up"},
		// The Service range is routed to the node so that kube-proxy's
		// rules see the packets; there is deliberately no default route.
		{"ip", "-n", p.netnsName(), "route", "add", p.svcNet.String(), "dev", p.nodeVeth(), "src", p.nodeIP.String()},
		// The host reaches pods and Services through the node.
		{"ip", "route", "add", p.podNet.String(), "via", p.nodeIP.String(), "dev", p.hostVeth()},
		{"ip", "route", "add", p.svcNet.String(), "via", p.nodeIP.String(), "dev", p.hostVeth()},
	}
	for _, s := range steps {
		if err := run(ctx, s[0], s[1:]...); err != nil {
			return err
		}
	}
	// Forwarding (node <-> pods) and bridged traffic through iptables (a
	// pod reaching a Service backed by a pod on the same bridge) are on in
	// the node's namespace only; the host's ip_forward is not touched.
	for _, sysctl := range []string{"net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables"} {
		if err := nsSysctl(ctx, p.netnsPath(), sysctl, "1"); err != nil {
			return err
		}
	}
	return nil
}

// nsSysctl writes a per-namespace sysctl inside a node's namespace.
func nsSysctl(ctx context.Context, netnsPath, name, value string) error {
	return run(ctx, "nsenter", "--net="+netnsPath, "--", "sh", "-c",
		fmt.Sprintf("echo %s > /proc/sys/%s", value, name))
}

// checkRoutesFree fails when a host route already covers or falls inside
// one of the platform's ranges (another platform running, or a network of
// the machine).
func (p *Platform) checkRoutesFree() error {
	routes, err := hostRoutes()
	if err != nil {
		return err
	}
	for _, mine := range p.ranges() {
		for _, r := range routes {
			if ones, _ := r.Mask.Size(); ones == 0 {
				continue // the default route covers everything by design
			}
			if r.Contains(mine.IP) || mine.Contains(r.IP) {
				return fmt.Errorf("platform: range %s overlaps the host route %s (another platform running? see `ip route`); choose other ranges in platform.Config", mine, r)
			}
		}
	}
	return nil
}

// hostRoutes reads the host's IPv4 routes from /proc/net/route.
func hostRoutes() ([]*net.IPNet, error) {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var routes []*net.IPNet
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 {
			continue
		}
		dst, err1 := strconv.ParseUint(fields[1], 16, 32)
		mask, err2 := strconv.ParseUint(fields[7], 16, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		// /proc/net/route prints addresses in host (little-endian) order.
		ip, m := make(net.IP, 4), make(net.IPMask, 4)
		binary.LittleEndian.PutUint32(ip, uint32(dst))
		binary.LittleEndian.PutUint32(m, uint32(mask))
		routes = append(routes, &net.IPNet{IP: ip, Mask: m})
	}
	return routes, sc.Err()
}

// ranges are the platform's address ranges: the Services' and every
// node's link and pods.
func (p *Platform) ranges() []*net.IPNet {
	return append(append([]*net.IPNet{p.svcNet}, p.linkNets...), p.podNets...)
}

// tearDownNetwork deletes the workers' namespaces (each deletes its veth
// pair to the first node), then the first node's (which deletes its veth
// pair and so the host routes through it).
func (p *Platform) tearDownNetwork(ctx context.Context) error {
	for _, n := range p.workers() {
		if fileExists(n.netnsPath()) {
			if err := run(ctx, "ip", "netns", "delete", n.netnsName); err != nil {
				return err
			}
		}
	}
	if _, err := os.Stat(p.netnsPath()); err != nil {
		return nil
	}
	if err := run(ctx, "ip", "netns", "delete", p.netnsName()); err != nil {
		return err
	}
	// The veth pair (and the routes through it) goes with the namespace's
	// last reference, a moment after the delete returns.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if !p.hostRoutesPresent() {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("platform: host routes into %s still present 10s after deleting it", p.netnsName())
}

// hostRoutesPresent tells whether the host still routes one of the
// platform's ranges.
func (p *Platform) hostRoutesPresent() bool {
	routes, _ := hostRoutes()
	for _, r := range routes {
		for _, mine := range p.ranges() {
			if r.String() == mine.String() {
				return true
			}
		}
	}
	return false
}

// run runs a command and returns its output in the error.
func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
