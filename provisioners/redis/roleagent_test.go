package redis

import (
	"slices"
	"strconv"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Every plan runs the role agent with the plan's write rule, under its own
// ServiceAccount whose token only the agent's container mounts, and the
// Redis pods use Strata's preStop hook.
func TestRoleAgentPerPlan(t *testing.T) {
	want := map[string]struct {
		minReplicas string
		aloneOK     string
		downAfter   bool
	}{
		"dev-lite": {"0", "false", false},
		"standard": {"1", "true", true},
		"ha":       {"1", "false", true},
	}
	for _, plan := range planNames {
		t.Run(plan, func(t *testing.T) {
			g := NewWithT(t)
			inst := testInstance(t, plan, nil)
			n := NamesOf(inst)
			objs := build(t, baseConfig(), inst)
			rf := one(t, objs, "RedisFailover")
			redis, _, _ := unstructured.NestedMap(rf.Object, "spec", "redis")
			g.Expect(redis).To(HaveKeyWithValue("serviceAccountName", n.RoleAgent))
			g.Expect(redis).To(HaveKeyWithValue("shutdownConfigMap", n.Shutdown))

			command, _, _ := unstructured.NestedStringSlice(rf.Object, "spec", "redis", "command")
			i := slices.Index(command, "--min-replicas-to-write")
			if want[plan].minReplicas == "0" {
				g.Expect(i).To(Equal(-1), "no min-replicas-to-write without replicas")
			} else {
				g.Expect(i).To(BeNumerically(">", 0))
				g.Expect(command[i+1]).To(Equal(want[plan].minReplicas))
				g.Expect(command).To(ContainElement("--min-replicas-max-lag"))
			}

			var agent map[string]any
			containers, _, _ := unstructured.NestedSlice(rf.Object, "spec", "redis", "extraContainers")
			for _, c := range containers {
				c := c.(map[string]any)
				mounts, _ := c["volumeMounts"].([]any)
				tokenMounted := false
				for _, m := range mounts {
					if m.(map[string]any)["mountPath"] == roleAgentTokenDir {
						tokenMounted = true
					}
				}
				if c["name"] == "strata-redis-role" {
					agent = c
					g.Expect(tokenMounted).To(BeTrue(), "the agent mounts its token")
				} else {
					g.Expect(tokenMounted).To(BeFalse(), "%s must not hold the agent's token", c["name"])
				}
			}
			g.Expect(agent).NotTo(BeNil())
			g.Expect(agent["image"]).To(Equal(baseConfig().RoleAgentImage))
			args := agent["args"].([]any)
			g.Expect(args).To(ContainElements("-min-replicas", want[plan].minReplicas, "-alone-ok="+want[plan].aloneOK,
				"-label", RoleLabel, n.SentinelService+":"+strconv.Itoa(SentinelPort)))
			// Redis's own mounts do not include the token either.
			mounts, _, _ := unstructured.NestedSlice(rf.Object, "spec", "redis", "extraVolumeMounts")
			for _, m := range mounts {
				g.Expect(m.(map[string]any)["mountPath"]).NotTo(Equal(roleAgentTokenDir))
			}

			sa := byKind(objs, "ServiceAccount")
			g.Expect(sa).To(HaveLen(1))
			g.Expect(sa[0].Object["automountServiceAccountToken"]).To(BeFalse())

			// The Role: get and patch of the instance's Redis pods, by
			// name, up to the plan's largest size; nothing else.
			role := one(t, objs, "Role")
			rules := role.Object["rules"].([]any)
			g.Expect(rules).To(HaveLen(1))
			rule := rules[0].(map[string]any)
			g.Expect(rule["resources"]).To(Equal([]any{"pods"}))
			g.Expect(rule["verbs"]).To(Equal([]any{"get", "patch"}))
			names := rule["resourceNames"].([]any)
			g.Expect(names).To(HaveLen(inst.Plan.Redis.MaxReplicas))
			g.Expect(names[0]).To(Equal(n.StatefulSet + "-0"))
			rb := one(t, objs, "RoleBinding")
			g.Expect(rb.Object["roleRef"]).To(HaveKeyWithValue("name", n.RoleAgent))
			g.Expect(rb.Object["subjects"]).To(Equal([]any{map[string]any{"kind": "ServiceAccount", "name": n.RoleAgent, "namespace": testNamespace}}))

			var shutdown *unstructured.Unstructured
			for _, cm := range byKind(objs, "ConfigMap") {
				if cm.GetName() == n.Shutdown {
					shutdown = cm
				}
			}
			g.Expect(shutdown).NotTo(BeNil())
			g.Expect(shutdown.Object["data"]).To(HaveKeyWithValue("shutdown.sh", ShutdownScript(n)))

			custom, found, _ := unstructured.NestedStringSlice(rf.Object, "spec", "sentinel", "customConfig")
			if want[plan].downAfter {
				g.Expect(custom).To(ContainElement("down-after-milliseconds " + strconv.Itoa(SentinelDownAfterMillis)))
			} else {
				g.Expect(found).To(BeFalse())
			}

			// Everything the pods need is applied before the RedisFailover.
			order := map[string]int{}
			for i, o := range objs {
				order[o.GetKind()+"/"+o.GetName()] = i
			}
			for _, k := range []string{"ServiceAccount/" + n.RoleAgent, "Role/" + n.RoleAgent, "RoleBinding/" + n.RoleAgent, "ConfigMap/" + n.Shutdown} {
				g.Expect(order[k]).To(BeNumerically("<", order["RedisFailover/"+n.Failover]), k)
			}
		})
	}
}
