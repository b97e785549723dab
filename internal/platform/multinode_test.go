//go:build linux

package platform

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/strata-dev/strata/catalog"
)

// haTenant is the tenant namespace of the ha instance.
const haTenant = "team-ha"

// TestHAPostgresOnMultiNodePlatform proves the ha plan where it can be
// placed: a platform of three nodes in three zones. The nodes are Ready in
// distinct zones with no default route in any node's namespace; with
// cert-manager, CloudNativePG, the barman-cloud plugin, versitygw and the
// broker (its chart) installed as the standard plan's test has them, an
// ha PostgreSQL provisioned over OSB reaches succeeded with its three
// instances (required anti-affinity per node, DoNotSchedule spread per
// zone, synchronous quorum with failoverQuorum) on three nodes and zones
// and its three PgBouncers in three zones; a readwrite binding connects
// through PgBouncer (TLS verify-full) and keeps writing while the primary
// pod is deleted: no acknowledged commit may be lost, and the time to the
// first acknowledged write after the deletion is logged (TIMING failover).
func TestHAPostgresOnMultiNodePlatform(t *testing.T) {
	t.Parallel() // each on a platform of its own (docs/platform.md, Tests)
	begin := time.Now()
	const nodes = 3
	ctx, p, stopped := startTestPlatformNodes(t, "multinode", 75*time.Minute, nodes)
	step := time.Now()
	timing := func(what string) {
		t.Logf("TIMING %s: %s", what, time.Since(step).Round(time.Second))
		step = time.Now()
	}

	t.Run("Nodes", func(t *testing.T) { checkNodes(ctx, t, p, nodes) })

	osb, b, _ := installBackupStack(ctx, t, p, nil)
	timing("cert-manager, CloudNativePG, barman-cloud plugin, versitygw (add-on images imported into 3 nodes) and the broker with its chart, backups to the local S3")

	t.Run("HA", func(t *testing.T) { testHAPlan(ctx, t, p, osb, b) })

	step = time.Now()
	*stopped = true
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if left := p.Leftovers(); len(left) > 0 {
		t.Fatalf("left on the host after Stop: %v", left)
	}
	if err := p.Purge(); err != nil {
		t.Fatal(err)
	}
	timing("stop and purge (3 nodes)")
	t.Logf("TIMING the whole test: %s", time.Since(begin).Round(time.Second))
}

// checkNodes checks that every node is Ready in a zone of its own, and
// that no node's namespace has a default route (the network rule holds on
// the workers as on the first node).
func checkNodes(ctx context.Context, t *testing.T, p *Platform, want int) {
	list, err := p.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	zones := map[string]string{}
	for _, n := range list.Items {
		ready := false
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		if !ready {
			t.Errorf("node %s is not Ready", n.Name)
		}
		zone := n.Labels[ZoneLabel]
		if zone == "" {
			t.Errorf("node %s has no %s label", n.Name, ZoneLabel)
		}
		for other, z := range zones {
			if z == zone {
				t.Errorf("nodes %s and %s are both in zone %q", other, n.Name, zone)
			}
		}
		zones[n.Name] = zone
	}
	if len(list.Items) != want {
		t.Errorf("%d nodes, want %d: %v", len(list.Items), want, zones)
	}
	t.Logf("nodes and zones: %v", zones)
	for _, n := range p.nodes() {
		out, err := exec.CommandContext(ctx, "ip", "-n", n.netnsName, "route", "show", "default").CombinedOutput()
		if err != nil {
			t.Fatalf("ip -n %s route: %v: %s", n.netnsName, err, out)
		}
		if strings.TrimSpace(string(out)) != "" {
			t.Errorf("node %s's namespace has a default route: %s", n.name, out)
		}
	}
}

func testHAPlan(ctx context.Context, t *testing.T, p *Platform, osb *osbClient, b *Broker) {
	dyn := dynamic.NewForConfigOrDie(p.AdminConfig)
	step := time.Now()
	timing := func(what string) {
		t.Logf("TIMING %s: %s", what, time.Since(step).Round(time.Second))
		step = time.Now()
	}
	if err := p.Apply(ctx, []byte(fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n", haTenant))); err != nil {
		t.Fatal(err)
	}
	instanceID := "6b8e4d3c-9f0a-4b2c-8d3e-" + randomHex(t, 6)
	name := "pg-" + instanceID
	instancePath := "/v2/service_instances/" + instanceID
	// Three nodes of 2 CPUs each on a machine of 2: the instances ask for
	// little (the plan's default is 2 CPUs and 8Gi each); everything else
	// (3 instances, placement, quorum, 3 PgBouncers, backups) is the plan's.
	code, body, err := osb.do(ctx, http.MethodPut, instancePath+"?accepts_incomplete=true", map[string]any{
		"service_id": catalog.PostgresServiceID,
		"plan_id":    catalog.PostgresHAID,
		"context":    map[string]any{"platform": "kubernetes", "namespace": haTenant},
		"parameters": map[string]any{
			"version":    PostgreSQLMajor,
			"storage_gb": 10,
			"resources":  map[string]any{"cpu": "100m", "memory": "512Mi"},
		},
	})
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("provision ha: %d %s %v", code, body, err)
	}
	desc, err := waitLastOperation(ctx, osb, instancePath+"/last_operation", 20*time.Minute)
	if err != nil {
		t.Fatalf("ha provision: %v; pods in %s: %s; events: %s", err, haTenant, p.podSummary(ctx, haTenant), warningEvents(ctx, p, haTenant))
	}
	timing("ha provision over OSB → succeeded (3 instances on 3 nodes, 3 PgBouncers, plugin sidecars)")
	t.Logf("last_operation: %s", desc)

	cluster, err := dyn.Resource(clustersGVR).Namespace(haTenant).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The Cluster is the ha builder's: what makes it need three nodes.
	if v, _, _ := unstructured.NestedString(cluster.Object, "spec", "affinity", "podAntiAffinityType"); v != "required" {
		t.Errorf("spec.affinity.podAntiAffinityType %q, want required", v)
	}
	spread, _, _ := unstructured.NestedSlice(cluster.Object, "spec", "topologySpreadConstraints")
	if len(spread) != 1 || fmt.Sprint(spread[0].(map[string]any)["whenUnsatisfiable"]) != "DoNotSchedule" {
		t.Errorf("spec.topologySpreadConstraints %v, want one DoNotSchedule zone spread", spread)
	}
	if v, _, _ := unstructured.NestedBool(cluster.Object, "spec", "postgresql", "synchronous", "failoverQuorum"); !v {
		t.Errorf("spec.postgresql.synchronous.failoverQuorum is not true: %v", cluster.Object["spec"].(map[string]any)["postgresql"])
	}
	if ready, _, _ := unstructured.NestedInt64(cluster.Object, "status", "readyInstances"); ready != 3 || !conditionTrue(cluster, "Ready") {
		t.Errorf("succeeded with %d ready instances, conditions %v", ready, conditions(cluster))
	}
	checkSpread(ctx, t, p, "cnpg.io/cluster="+name+",cnpg.io/podRole=instance", 3)
	checkSpread(ctx, t, p, "cnpg.io/poolerName="+name+"-pooler", 3)

	step = time.Now()
	owner, err := bindAndConnect(ctx, p, osb, b, catalog.PostgresHAID, instanceID, "c0a1c2d3-0000-4000-8000-"+randomHex(t, 6), "owner")
	if err != nil {
		t.Fatal(err)
	}
	writer, err := bindAndConnect(ctx, p, osb, b, catalog.PostgresHAID, instanceID, "c0a1c2d3-1111-4000-8000-"+randomHex(t, 6), "readwrite")
	if err != nil {
		t.Fatal(err)
	}
	timing("bind (owner, readwrite) and connect through PgBouncer over TLS verify-full")

	t.Run("Failover", func(t *testing.T) {
		f := testFailover(ctx, t, p, dyn, haTenant, name, 3, owner, writer, "failover_probe", deletePrimary(p))
		t.Logf("ha failover figures: %d writes acknowledged, %d lost, %d failed after the deletion; new primary after %s, first acknowledged write after the deletion %s later",
			f.acked, f.lost, f.failedOps, f.promoted.Round(100*time.Millisecond), f.resumed.Round(100*time.Millisecond))
		// Healed: the deleted pod came back on its node (its volume is
		// that node's), the three still on three nodes and zones.
		checkSpread(ctx, t, p, "cnpg.io/cluster="+name+",cnpg.io/podRole=instance", 3)
	})

	// A zone lost: the primary's node cut off from the rest under the same
	// write load. The quorum makes the failover lose nothing; the
	// outage is the node's grace period, the promotion, and PgBouncer's
	// endpoints in the lost zone going.
	t.Run("ZoneLoss", func(t *testing.T) {
		node := prepareZoneLoss(ctx, t, p, dyn, haTenant, name)
		f := testFailover(ctx, t, p, dyn, haTenant, name, 3, owner, writer, "zone_loss_probe", loseZone(p))
		t.Logf("ha zone loss figures (%s cut off): %d writes acknowledged, %d lost, %d failed after the cut; new primary after %s, first acknowledged write after the cut %s later",
			node, f.acked, f.lost, f.failedOps, f.promoted.Round(100*time.Millisecond), f.resumed.Round(100*time.Millisecond))
		// Back: the zone's instance rejoined as a standby, three on three
		// nodes and zones, and its PgBouncer ready.
		checkSpread(ctx, t, p, "cnpg.io/cluster="+name+",cnpg.io/podRole=instance", 3)
		checkSpread(ctx, t, p, "cnpg.io/poolerName="+name+"-pooler", 3)
	})
}

// checkSpread checks that the pods a selector selects in haTenant are
// want, all ready, on as many distinct nodes in as many distinct zones.
func checkSpread(ctx context.Context, t *testing.T, p *Platform, selector string, want int) {
	t.Helper()
	pods, err := p.Client.CoreV1().Pods(haTenant).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	nodes, zones := map[string]bool{}, map[string]bool{}
	var where []string
	running := 0
	for _, pod := range pods.Items {
		if pod.Status.Phase == corev1.PodSucceeded || pod.DeletionTimestamp != nil {
			continue
		}
		running++
		if !podReady(&pod) {
			t.Errorf("pod %s is not ready: %s", pod.Name, p.podSummary(ctx, haTenant))
		}
		node, err := p.Client.CoreV1().Nodes().Get(ctx, pod.Spec.NodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("pod %s's node %q: %v", pod.Name, pod.Spec.NodeName, err)
		}
		nodes[node.Name], zones[node.Labels[ZoneLabel]] = true, true
		where = append(where, fmt.Sprintf("%s on %s (%s)", pod.Name, node.Name, node.Labels[ZoneLabel]))
	}
	t.Logf("%s: %s", selector, strings.Join(where, ", "))
	if running != want || len(nodes) != want || len(zones) != want {
		t.Errorf("%s: %d pods on %d nodes in %d zones, want %d on %d distinct nodes and zones: %s",
			selector, running, len(nodes), len(zones), want, want, p.podSummary(ctx, haTenant))
	}
}
