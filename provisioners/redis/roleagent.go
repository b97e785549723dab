package redis

import (
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/provisioners"
)

// The role agent (cmd/strata-redis-role) runs in every Redis pod: it labels
// its pod master or replica (RoleLabel) from Redis's ROLE and the
// Sentinels' answer, fences a master the Sentinels no longer name, closes
// the TLS clients of a pod that is not the master, and hands the master
// role over when its pod is deleted. docs/redis.md#failover.

// roleAgentTokenDir is where the agent, and only the agent, finds its
// ServiceAccount token (client-go's in-cluster path).
const (
	roleAgentTokenDir        = "/var/run/secrets/kubernetes.io/serviceaccount"
	roleAgentTokenVolumeName = "strata-role-token"
)

// FencedMinReplicas is the min-replicas-to-write that makes a master
// refuse every write (more replicas than any instance has); the agent and
// the preStop hook set it (the agent's constant of the same value).
const FencedMinReplicas = 1000000

// roleAgentAccess is the agent's ServiceAccount, a Role that lets it read
// and patch the instance's Redis pods only (by name: the StatefulSet's pods
// up to the plan's largest size) and the RoleBinding. The ServiceAccount's
// token is not mounted into the pod's containers: only the agent's
// container mounts one (roleAgentTokenVolume), so Redis, the exporter and
// the reload sidecar hold no Kubernetes credential.
func roleAgentAccess(inst provisioners.Instance, s Settings, n Names) []*unstructured.Unstructured {
	sa := provisioners.NewObject(inst, "v1", "ServiceAccount", n.RoleAgent, nil)
	sa.Object["automountServiceAccountToken"] = false
	pods := []any{}
	for _, pod := range agentPods(inst, s, n) {
		pods = append(pods, pod)
	}
	role := provisioners.NewObject(inst, "rbac.authorization.k8s.io/v1", "Role", n.RoleAgent, nil)
	role.Object["rules"] = []any{map[string]any{
		"apiGroups": []any{""}, "resources": []any{"pods"}, "resourceNames": pods,
		"verbs": []any{"get", "patch"},
	}}
	binding := provisioners.NewObject(inst, "rbac.authorization.k8s.io/v1", "RoleBinding", n.RoleAgent, nil)
	binding.Object["roleRef"] = map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": n.RoleAgent}
	binding.Object["subjects"] = []any{map[string]any{"kind": "ServiceAccount", "name": n.RoleAgent, "namespace": inst.Namespace}}
	return []*unstructured.Unstructured{sa, role, binding}
}

// agentPods names the StatefulSet's pods up to the plan's largest size:
// the pods the agent may read and patch, and its peers (-peers).
func agentPods(inst provisioners.Instance, s Settings, n Names) []string {
	maxPods := s.Replicas
	if inst.Plan.Redis != nil && inst.Plan.Redis.MaxReplicas > maxPods {
		maxPods = inst.Plan.Redis.MaxReplicas
	}
	pods := make([]string, 0, maxPods)
	for i := 0; i < maxPods; i++ {
		pods = append(pods, n.StatefulSet+"-"+strconv.Itoa(i))
	}
	return pods
}

// roleAgentTokenVolume is what the kubelet would mount with an
// automounted token (a bound, expiring token, the cluster's CA and the
// namespace), for the agent's container alone.
func roleAgentTokenVolume() map[string]any {
	return map[string]any{
		"name": roleAgentTokenVolumeName,
		"projected": map[string]any{"sources": []any{
			map[string]any{"serviceAccountToken": map[string]any{"path": "token", "expirationSeconds": int64(3607)}},
			map[string]any{"configMap": map[string]any{"name": "kube-root-ca.crt", "items": []any{map[string]any{"key": "ca.crt", "path": "ca.crt"}}}},
			map[string]any{"downwardAPI": map[string]any{"items": []any{map[string]any{
				"path": "namespace", "fieldRef": map[string]any{"fieldPath": "metadata.namespace"},
			}}}},
		}},
	}
}

// roleAgent is the agent's container.
func roleAgent(image string, inst provisioners.Instance, s Settings, n Names) map[string]any {
	fieldEnv := func(name, path string) map[string]any {
		return map[string]any{"name": name, "valueFrom": map[string]any{"fieldRef": map[string]any{"fieldPath": path}}}
	}
	return map[string]any{
		"name":            "strata-redis-role",
		"image":           image,
		"imagePullPolicy": imagePullPolicy,
		"args": []any{
			"-sentinel", n.SentinelService + ":" + strconv.Itoa(SentinelPort),
			"-redis", "127.0.0.1:" + strconv.Itoa(RedisPort),
			"-tls-port", strconv.Itoa(TLSPort),
			"-label", RoleLabel,
			"-min-replicas", strconv.Itoa(s.MinReplicasToWrite),
			"-alone-ok=" + strconv.FormatBool(s.WritesWithoutReplica),
			"-peers", strings.Join(agentPods(inst, s, n), ","),
		},
		"env": []any{
			fieldEnv("POD_NAME", "metadata.name"),
			fieldEnv("POD_NAMESPACE", "metadata.namespace"),
			fieldEnv("POD_IP", "status.podIP"),
			// The password, from the auth Secret, in the environment (never
			// on the command line).
			map[string]any{
				"name":      "REDISCLI_AUTH",
				"valueFrom": map[string]any{"secretKeyRef": map[string]any{"name": n.AuthSecret, "key": PasswordKey}},
			},
		},
		"volumeMounts": []any{map[string]any{"name": roleAgentTokenVolumeName, "mountPath": roleAgentTokenDir, "readOnly": true}},
		"resources": map[string]any{
			"requests": map[string]any{"cpu": "10m", "memory": "32Mi"},
			"limits":   map[string]any{"cpu": "100m", "memory": "64Mi"},
		},
	}
}

// shutdownConfigMap holds the Redis container's preStop hook (the
// RedisFailover's shutdownConfigMap: the operator mounts its shutdown.sh
// instead of its own).
func shutdownConfigMap(inst provisioners.Instance, n Names) *unstructured.Unstructured {
	o := provisioners.NewObject(inst, "v1", "ConfigMap", n.Shutdown, nil)
	o.Object["data"] = map[string]any{"shutdown.sh": ShutdownScript(n)}
	return o
}

// ShutdownScript is the Redis container's preStop hook. When the pod of a
// master with replicas is deleted, the role agent pauses writes on the
// master and fences it,
// waits until the replicas have every write it acknowledged and asks the
// Sentinels for a failover; this hook keeps Redis running meanwhile (the
// kubelet sends SIGTERM when it returns), does the same itself if the
// agent did not within 20 s, and then makes this Redis a replica of the
// new master so that it cannot take writes again. A replica, or a master
// without replicas, stops at once. The operator's own hook asks for the
// failover without fencing and sleeps 31 s, during which the old master
// acknowledged writes that were then lost.
func ShutdownScript(n Names) string {
	return strings.TrimSpace(fmt.Sprintf(`
export REDISCLI_AUTH="$REDIS_PASSWORD"
redis="redis-cli --no-auth-warning -p %[1]d"
sentinel="redis-cli -h %[2]s -p %[3]d"
me=$(hostname -i)
master() { $sentinel --csv SENTINEL get-master-addr-by-name %[4]s 2>/dev/null | tr -d '"' | cut -d, -f1; }
[ "$($redis ROLE | head -n 1)" = master ] || exit 0
replicas=$($redis INFO replication | tr -d '\r' | sed -n 's/^connected_slaves://p')
[ "${replicas:-0}" -gt 0 ] || exit 0
i=0
while [ "$(master)" = "$me" ] && [ $i -lt 40 ]; do sleep 0.5; i=$((i+1)); done
if [ "$(master)" = "$me" ]; then
  $redis CLIENT PAUSE 30000 WRITE >/dev/null
  $redis CONFIG SET min-replicas-to-write %[5]d >/dev/null
  sleep 1
  $sentinel SENTINEL failover %[4]s
  i=0
  while [ "$(master)" = "$me" ] && [ $i -lt 20 ]; do sleep 0.5; i=$((i+1)); done
fi
new=$(master)
if [ -n "$new" ] && [ "$new" != "$me" ]; then $redis REPLICAOF "$new" %[1]d >/dev/null; fi
`, RedisPort, n.SentinelService, SentinelPort, MasterName, FencedMinReplicas)) + "\n"
}
