package redis

import (
	"fmt"
	"reflect"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/strata-dev/strata/provisioners"
)

var (
	failoverGVK    = schema.GroupVersionKind{Group: "databases.spotahome.com", Version: "v1", Kind: "RedisFailover"}
	certificateGVK = schema.GroupVersionKind{Group: "cert-manager.io", Version: "v1", Kind: "Certificate"}
	statefulSetGVK = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"}
	deploymentGVK  = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
)

// Watched lists the RedisFailover, the Certificate and what the operator
// creates from the RedisFailover: the Redis StatefulSet and the Sentinel
// Deployment. A RedisFailover has no status, so readiness is read from
// them.
func (p *Provisioner) Watched(inst provisioners.Instance) []provisioners.Ref {
	n := NamesOf(inst)
	ns := inst.Namespace
	return []provisioners.Ref{
		{GVK: failoverGVK, Namespace: ns, Name: n.Failover},
		{GVK: certificateGVK, Namespace: ns, Name: n.Certificate},
		{GVK: statefulSetGVK, Namespace: ns, Name: n.StatefulSet},
		{GVK: deploymentGVK, Namespace: ns, Name: n.Deployment},
	}
}

// Assess reads readiness from the Certificate's Ready condition and the
// workloads' status. The operator has acted on the current RedisFailover
// when the StatefulSet's Redis container has the RedisFailover's command
// and resources and both workloads have the RedisFailover's replica
// counts; the workloads have rolled out when their controllers observed
// their generation and every replica is updated and ready.
func (p *Provisioner) Assess(inst provisioners.Instance, observed map[provisioners.Ref]*unstructured.Unstructured, _ time.Time) provisioners.Progress {
	refs := p.Watched(inst)
	rf, cert, sts, dep := observed[refs[0]], observed[refs[1]], observed[refs[2]], observed[refs[3]]
	if rf == nil {
		return provisioners.Progressing("waiting for the RedisFailover to be created")
	}
	if cert == nil || !provisioners.ConditionTrue(cert, "Ready") {
		return provisioners.Progressing(provisioners.CertificateWait(cert, refs[1].Name, p.Config.ServerCertificates))
	}
	if sts == nil {
		return provisioners.Progressing("waiting for the redis-operator to create the Redis StatefulSet " + refs[2].Name)
	}
	if dep == nil {
		return provisioners.Progressing("waiting for the redis-operator to create the Sentinel Deployment " + refs[3].Name)
	}
	wantRedis, _, _ := unstructured.NestedInt64(rf.Object, "spec", "redis", "replicas")
	wantSentinels, _, _ := unstructured.NestedInt64(rf.Object, "spec", "sentinel", "replicas")
	if !stsMatches(rf, sts) || specReplicas(sts) != wantRedis || specReplicas(dep) != wantSentinels {
		return provisioners.Progressing("waiting for the redis-operator to apply the RedisFailover's changes")
	}
	if ok, d := rolledOut(sts, "Redis"); !ok {
		return provisioners.Progressing(d)
	}
	if ok, d := rolledOut(dep, "Sentinel"); !ok {
		return provisioners.Progressing(d)
	}
	return provisioners.Progress{State: provisioners.Succeeded,
		Description: fmt.Sprintf("Redis ready: %d Redis pod(s), %d Sentinel(s)", wantRedis, wantSentinels)}
}

func specReplicas(o *unstructured.Unstructured) int64 {
	n, found, _ := unstructured.NestedInt64(o.Object, "spec", "replicas")
	if !found {
		return 1
	}
	return n
}

// rolledOut says whether a StatefulSet or Deployment runs its current
// template on every replica, all ready.
func rolledOut(o *unstructured.Unstructured, what string) (bool, string) {
	want := specReplicas(o)
	observedGen, _, _ := unstructured.NestedInt64(o.Object, "status", "observedGeneration")
	ready, _, _ := unstructured.NestedInt64(o.Object, "status", "readyReplicas")
	updated, _, _ := unstructured.NestedInt64(o.Object, "status", "updatedReplicas")
	if observedGen < o.GetGeneration() {
		return false, what + ": waiting for the controller to see the change"
	}
	if updated < want || ready < want {
		return false, fmt.Sprintf("%s: %d of %d pods ready, %d updated", what, ready, want, updated)
	}
	return true, ""
}

// stsMatches says whether the StatefulSet's Redis container runs the
// RedisFailover's command with its resources.
func stsMatches(rf, sts *unstructured.Unstructured) bool {
	wantCmd, _, _ := unstructured.NestedSlice(rf.Object, "spec", "redis", "command")
	wantRes, _, _ := unstructured.NestedMap(rf.Object, "spec", "redis", "resources")
	containers, _, _ := unstructured.NestedSlice(sts.Object, "spec", "template", "spec", "containers")
	for _, c := range containers {
		m, ok := c.(map[string]any)
		if !ok || m["name"] != "redis" {
			continue
		}
		cmd, _ := m["command"].([]any)
		res, _ := m["resources"].(map[string]any)
		return reflect.DeepEqual(cmd, wantCmd) && sameResources(res, wantRes)
	}
	return false
}

// sameResources compares requests and limits as quantities: the API
// server renders a quantity in canonical form ("0.5" becomes "500m").
func sameResources(got, want map[string]any) bool {
	for _, k := range []string{"limits", "requests"} {
		g, _ := got[k].(map[string]any)
		w, _ := want[k].(map[string]any)
		if len(g) != len(w) {
			return false
		}
		for name, wv := range w {
			gq, err1 := resource.ParseQuantity(fmt.Sprint(g[name]))
			wq, err2 := resource.ParseQuantity(fmt.Sprint(wv))
			if err1 != nil || err2 != nil || gq.Cmp(wq) != 0 {
				return false
			}
		}
	}
	return true
}

var secretGVK = schema.GroupVersionKind{Version: "v1", Kind: "Secret"}

var _ provisioners.LeftoverLister = (*Provisioner)(nil)

// Leftovers is cert-manager's Secret of the TLS certificate (with the
// private key), which outlives the Certificate. The auth Secret is the
// binder's (Teardown deletes it); the data volumes go with the
// RedisFailover unless the plan keeps them (storage.keepAfterDeletion).
func (p *Provisioner) Leftovers(inst provisioners.Instance) []provisioners.Ref {
	return []provisioners.Ref{{GVK: secretGVK, Namespace: inst.Namespace, Name: NamesOf(inst).Certificate}}
}
