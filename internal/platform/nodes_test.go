//go:build linux

package platform

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNodeRanges checks the nodes New derives from Config.Nodes: names,
// zones, links, pod ranges, namespaces and cgroups, and that ranges that
// would overlap, or too many nodes, are refused before anything starts.
func TestNodeRanges(t *testing.T) {
	dir := t.TempDir()
	p, err := New(Config{StateDir: dir, CacheDir: dir, SourceDir: dir, Nodes: 3,
		LinkCIDR: "10.99.0.0/30", PodCIDR: "10.99.1.0/24", ServiceCIDR: "10.99.16.0/20"})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ name, zone, nodeIP, link, pods, hub string }{
		{"strata-node", "strata-zone-a", "10.99.0.2", "10.99.0.0/30", "10.99.1.0/24", "<nil>"},
		{"strata-node-2", "strata-zone-b", "10.99.0.6", "10.99.0.4/30", "10.99.2.0/24", "10.99.0.5"},
		{"strata-node-3", "strata-zone-c", "10.99.0.10", "10.99.0.8/30", "10.99.3.0/24", "10.99.0.9"},
	}
	nodes := p.nodes()
	if len(nodes) != len(want) {
		t.Fatalf("%d nodes, want %d", len(nodes), len(want))
	}
	seen := map[string]bool{}
	for i, n := range nodes {
		w := want[i]
		if n.name != w.name || n.zone != w.zone || n.nodeIP.String() != w.nodeIP || n.linkNet.String() != w.link || n.podNet.String() != w.pods || n.hubIP.String() != w.hub {
			t.Errorf("node %d: %s %s %s %s %s hub %s, want %+v", i, n.name, n.zone, n.nodeIP, n.linkNet, n.podNet, n.hubIP, w)
		}
		for _, unique := range []string{n.netnsName, n.cgroupRoot, n.containerdSocket(), n.component("kubelet"), n.kubeletConfig, n.servingCert} {
			if seen[unique] {
				t.Errorf("node %s shares %s with another node", n.name, unique)
			}
			seen[unique] = true
		}
	}
	// The first node is the single-node platform's, unchanged.
	if nodes[0].netnsName != p.netnsName() || nodes[0].cgroupRoot != p.cgroupRoot() || nodes[0].dir != p.StateDir() || nodes[0].component("kubelet") != "kubelet" {
		t.Errorf("the first node moved: %+v", nodes[0])
	}
	if zones := nodes[0].zone; zones != NodeZone {
		t.Errorf("first node's zone %s, want NodeZone %s", zones, NodeZone)
	}

	// A Stop from another process finds every node.
	if err := os.WriteFile(filepath.Join(dir, "nodes.count"), []byte("3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	q, err := New(Config{StateDir: dir, CacheDir: dir, SourceDir: dir,
		LinkCIDR: "10.99.0.0/30", PodCIDR: "10.99.1.0/24", ServiceCIDR: "10.99.16.0/20"})
	if err != nil {
		t.Fatal(err)
	}
	if len(q.nodes()) != 3 || len(q.daemons()) != 3*3+4 {
		t.Errorf("a platform of the same state directory without Nodes sees %d nodes and %d daemons, want 3 and 13", len(q.nodes()), len(q.daemons()))
	}

	other := t.TempDir()
	if _, err := New(Config{StateDir: other, CacheDir: other, SourceDir: other, Nodes: 3,
		LinkCIDR: "10.99.0.0/30", PodCIDR: "10.99.14.0/24", ServiceCIDR: "10.99.16.0/20"}); err == nil || !strings.Contains(err.Error(), "overlap") {
		t.Errorf("pod ranges running into the Service range: %v, want an overlap error", err)
	}
	if _, err := New(Config{StateDir: other, CacheDir: other, SourceDir: other, Nodes: maxNodes + 1}); err == nil {
		t.Errorf("%d nodes accepted", maxNodes+1)
	}
}
