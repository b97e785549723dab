//go:build linux

package platform

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
)

// Losing a zone, on the multi-node platform: one worker node (a zone of
// its own) is cut off from everything else. A worker's only link is its
// veth pair to the first node (the hub, which also holds the API server),
// so dropping every packet through the hub's end, in both directions and
// for the hub itself, isolates the node, its pods and its kubelet as a
// zone's network failure would; the node's processes keep running, as an
// isolated zone's do. Undoing it deletes the same rules.

// zoneRules are the hub's iptables rules that drop a worker's traffic.
func zoneRules(hubVeth string) [][]string {
	return [][]string{
		{"FORWARD", "-i", hubVeth, "-j", "DROP"},
		{"FORWARD", "-o", hubVeth, "-j", "DROP"},
		{"INPUT", "-i", hubVeth, "-j", "DROP"},
		{"OUTPUT", "-o", hubVeth, "-j", "DROP"},
	}
}

// loseZone is the fault that cuts off the node of the primary. The
// primary must be on a worker (prepareZoneLoss puts it there).
func loseZone(p *Platform) pgFault {
	return pgFault{what: "zone of the primary cut off", inject: func(ctx context.Context, ns, primary string) (func(context.Context) error, error) {
		pod, err := p.Client.CoreV1().Pods(ns).Get(ctx, primary, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		nodes := p.nodes()
		var worker *nodeSpec
		for i := range nodes[1:] {
			if nodes[i+1].name == pod.Spec.NodeName {
				worker = &nodes[i+1]
			}
		}
		if worker == nil {
			return nil, fmt.Errorf("the primary %s is on %s, not on a worker: the first node holds the API server", primary, pod.Spec.NodeName)
		}
		hubVeth, _ := p.workerLink(*worker)
		iptables := func(ctx context.Context, op string, rule []string) error {
			args := append([]string{"netns", "exec", nodes[0].netnsName, "iptables", "-w", op}, rule...)
			if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
				return fmt.Errorf("iptables %s %v in %s: %w: %s", op, rule, nodes[0].netnsName, err, out)
			}
			return nil
		}
		heal := func(ctx context.Context) error {
			var errs []error
			for _, r := range zoneRules(hubVeth) {
				errs = append(errs, iptables(ctx, "-D", r))
			}
			return errors.Join(errs...)
		}
		for _, r := range zoneRules(hubVeth) {
			if err := iptables(ctx, "-I", r); err != nil {
				_ = heal(context.Background())
				return nil, err
			}
		}
		return heal, nil
	}}
}

// prepareZoneLoss chooses the zone to lose and puts the instance's
// primary there. The zone lost holds only the tenant's pods: the
// platform's own (the operators, cert-manager, the broker) are moved out
// of it first, as on EKS, where the control plane is AWS's and the
// operators run in the zones that survive or come back within the pod
// eviction timeout; a worker whose platform pods cannot move (a volume
// bound to the node: the local S3) is not chosen. It returns the node.
func prepareZoneLoss(ctx context.Context, t *testing.T, p *Platform, dyn dynamic.Interface, ns, name string) string {
	t.Helper()
	pods, err := p.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pinned := map[string][]string{}
	for _, pod := range pods.Items {
		if pod.Namespace == ns || pod.Spec.NodeName == "" {
			continue
		}
		for _, v := range pod.Spec.Volumes {
			if v.PersistentVolumeClaim != nil {
				pinned[pod.Spec.NodeName] = append(pinned[pod.Spec.NodeName], pod.Namespace+"/"+pod.Name)
			}
		}
	}
	cluster, err := dyn.Resource(clustersGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	primary, _, _ := unstructured.NestedString(cluster.Object, "status", "currentPrimary")
	instanceOn := map[string]string{}
	for _, pod := range pods.Items {
		if pod.Namespace == ns && pod.Labels["cnpg.io/cluster"] == name && pod.Labels["cnpg.io/podRole"] == "instance" {
			instanceOn[pod.Spec.NodeName] = pod.Name
		}
	}
	var node string
	for _, n := range p.nodes()[1:] {
		if len(pinned[n.name]) > 0 || instanceOn[n.name] == "" {
			continue
		}
		if node == "" || instanceOn[n.name] == primary {
			node = n.name
		}
	}
	if node == "" {
		t.Fatalf("no worker holds an instance and no platform pod bound to its volumes: instances %v, pinned %v", instanceOn, pinned)
	}

	// Move the platform's pods off the node: cordoned, their pods deleted
	// (their Deployments make them again elsewhere), then uncordoned.
	cordon := func(on bool) {
		patch := fmt.Sprintf(`{"spec":{"unschedulable":%t}}`, on)
		if _, err := p.Client.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cordon(true)
	var moved []string
	for _, pod := range pods.Items {
		if pod.Namespace == ns || pod.Spec.NodeName != node || pod.DeletionTimestamp != nil {
			continue
		}
		if owner := metav1.GetControllerOf(&pod); owner == nil || owner.Kind == "DaemonSet" {
			continue
		}
		if err := p.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		moved = append(moved, pod.Namespace+"/"+pod.Name)
	}
	if err := wait.PollUntilContextTimeout(ctx, 2*time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		all, err := p.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, pod := range all.Items {
			done := pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
			if pod.Namespace == ns || done || metav1.GetControllerOf(&pod) == nil {
				continue
			}
			if pod.Spec.NodeName == node || !podReady(&pod) {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		t.Fatalf("the platform's pods did not move off %s: %v; %s", node, err, p.podSummary(ctx, ""))
	}
	cordon(false)
	t.Logf("zone to lose: node %s; platform pods moved off it: %v", node, moved)

	// The primary onto the node: a switchover, as the cnpg plugin's
	// promote makes one (the Cluster's status names the target).
	target := instanceOn[node]
	if target != primary {
		patch := fmt.Sprintf(`{"status":{"targetPrimary":%q,"phase":"Switchover in progress","phaseReason":"Switching over to %s"}}`, target, target)
		if _, err := dyn.Resource(clustersGVR).Namespace(ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
			t.Fatal(err)
		}
		if err := wait.PollUntilContextTimeout(ctx, 2*time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
			c, err := dyn.Resource(clustersGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			current, _, _ := unstructured.NestedString(c.Object, "status", "currentPrimary")
			ready, _, _ := unstructured.NestedInt64(c.Object, "status", "readyInstances")
			return current == target && ready == 3 && conditionTrue(c, "Ready"), nil
		}); err != nil {
			t.Fatalf("switchover to %s: %v; pods %s", target, err, p.podSummary(ctx, ns))
		}
		t.Logf("switched the primary over from %s to %s (on %s)", primary, target, node)
	}
	return node
}
