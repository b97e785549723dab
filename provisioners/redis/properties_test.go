package redis

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/provisioners"
)

// every rendering of every plan, meshed or not.
func allRenderings(t *testing.T) map[string][]*unstructured.Unstructured {
	out := map[string][]*unstructured.Unstructured{}
	for _, plan := range planNames {
		for _, meshed := range []bool{false, true} {
			inst := testInstance(t, plan, nil)
			inst.Meshed = meshed
			name := plan
			if meshed {
				name += "-meshed"
			}
			out[name] = build(t, baseConfig(), inst)
			// With off-cluster snapshots (a bucket and static keys).
			out[name+"-snapshots"] = build(t, staticKeysConfig(), inst)
		}
	}
	return out
}

func TestEveryObjectIsLabelledAndInTheTenantNamespace(t *testing.T) {
	for name, objs := range allRenderings(t) {
		g := NewWithT(t)
		inst := testInstance(t, "standard", nil)
		for _, o := range objs {
			g.Expect(o.GetNamespace()).To(Equal(testNamespace), "%s %s", name, o.GetKind())
			labels := o.GetLabels()
			for k := range inst.Labels() {
				g.Expect(labels).To(HaveKey(k), "%s: %s %s", name, o.GetKind(), o.GetName())
			}
			g.Expect(labels[provisioners.LabelService]).To(Equal("redis"))
		}
	}
}

func args(t *testing.T, objs []*unstructured.Unstructured) []string {
	t.Helper()
	rf := one(t, objs, "RedisFailover")
	cmd, _, _ := unstructured.NestedStringSlice(rf.Object, "spec", "redis", "command")
	return cmd
}

// argValue is the value after the last occurrence of flag.
func argValue(cmd []string, flag string) (string, bool) {
	for i := len(cmd) - 2; i >= 0; i-- {
		if cmd[i] == flag {
			return cmd[i+1], true
		}
	}
	return "", false
}

func TestTLSPortAndPersistenceReachRedisServerAtStart(t *testing.T) {
	for _, plan := range planNames {
		g := NewWithT(t)
		inst := testInstance(t, plan, nil)
		cmd := args(t, build(t, baseConfig(), inst))
		g.Expect(cmd[:2]).To(Equal([]string{"redis-server", ConfigFile}), "the operator's config file comes first, so the flags win")
		v, _ := argValue(cmd, "--tls-port")
		g.Expect(v).To(Equal("6380"))
		for _, f := range []string{"--tls-cert-file", "--tls-key-file", "--tls-ca-cert-file"} {
			v, ok := argValue(cmd, f)
			g.Expect(ok).To(BeTrue(), f)
			g.Expect(v).To(HavePrefix(CertDir + "/"))
		}
		// Never override what the operator owns.
		for _, f := range []string{"--port", "--bind", "--dir", "--requirepass", "--masterauth", "--replicaof", "--slaveof"} {
			g.Expect(cmd).NotTo(ContainElement(f), plan)
		}
		aof := inst.Plan.Redis.Persistence.AOF
		v, _ = argValue(cmd, "--appendonly")
		if aof == "" {
			g.Expect(v).To(Equal("no"), plan)
		} else {
			g.Expect(v).To(Equal("yes"), plan)
			v, _ = argValue(cmd, "--appendfsync")
			g.Expect(v).To(Equal(aof), plan)
		}
		v, _ = argValue(cmd, "--save")
		g.Expect(v).To(Equal(strings.Join(inst.Plan.Redis.Persistence.Snapshots, " ")))
		// No customConfig: it is applied only with CONFIG SET and is lost
		// at restart.
		rf := one(t, build(t, baseConfig(), inst), "RedisFailover")
		_, found, _ := unstructured.NestedFieldNoCopy(rf.Object, "spec", "redis", "customConfig")
		g.Expect(found).To(BeFalse())
	}
}

func TestPlansRenderTheirTopology(t *testing.T) {
	tests := map[string]struct {
		redis, sentinels int64
		keep             bool
	}{"dev-lite": {1, 1, false}, "standard": {2, 3, false}, "ha": {3, 3, true}}
	for plan, want := range tests {
		g := NewWithT(t)
		rf := one(t, build(t, baseConfig(), testInstance(t, plan, nil)), "RedisFailover")
		r, _, _ := unstructured.NestedInt64(rf.Object, "spec", "redis", "replicas")
		s, _, _ := unstructured.NestedInt64(rf.Object, "spec", "sentinel", "replicas")
		k, _, _ := unstructured.NestedBool(rf.Object, "spec", "redis", "storage", "keepAfterDeletion")
		g.Expect([]any{r, s, k}).To(Equal([]any{want.redis, want.sentinels, want.keep}), plan)
		secret, _, _ := unstructured.NestedString(rf.Object, "spec", "auth", "secretPath")
		g.Expect(secret).To(Equal(NamesOf(testInstance(t, plan, nil)).AuthSecret))
		exp, _, _ := unstructured.NestedBool(rf.Object, "spec", "redis", "exporter", "enabled")
		g.Expect(exp).To(BeTrue())
	}
}

// The plaintext port is reachable only from the instance's own pods and the
// operator; tenants get the TLS port; monitoring the exporter; nothing else.
func TestNetworkPoliciesAdmitPlaintextOnlyFromInstancePodsAndOperator(t *testing.T) {
	for name, objs := range allRenderings(t) {
		g := NewWithT(t)
		pols := byKind(objs, "NetworkPolicy")
		g.Expect(pols).To(HaveLen(2), name)
		for _, pol := range pols {
			rules, _, _ := unstructured.NestedSlice(pol.Object, "spec", "ingress")
			for _, r := range rules {
				rule := r.(map[string]any)
				peer := rule["from"].([]any)[0].(map[string]any)
				var ports []int64
				for _, p := range rule["ports"].([]any) {
					ports = append(ports, p.(map[string]any)["port"].(int64))
				}
				switch {
				case slices.Contains(ports, RedisPort) || slices.Contains(ports, SentinelPort):
					if ps, ok := peer["podSelector"].(map[string]any); ok {
						g.Expect(ps["matchLabels"]).To(Or(HaveKey(labelName), HaveKey(labelSnapshotOf)), "%s: plaintext from the instance's own pods (and its snapshot job) only", name)
					} else {
						g.Expect(peer["namespaceSelector"]).To(Equal(provisioners.FromNamespace("redis-operator")["namespaceSelector"]), name)
					}
				case slices.Contains(ports, TLSPort):
					g.Expect(peer).To(Equal(provisioners.SameNamespace()), name)
				case slices.Contains(ports, ExporterPort):
					g.Expect(peer).To(Equal(provisioners.FromNamespace("monitoring")), name)
				default:
					t.Fatalf("%s: unexpected rule %v", name, rule)
				}
			}
		}
	}
}

func TestTLSServiceTargetsTheMasterTLSPort(t *testing.T) {
	g := NewWithT(t)
	inst := testInstance(t, "ha", nil)
	objs := build(t, baseConfig(), inst)
	svc := one(t, objs, "Service")
	g.Expect(svc.GetName()).To(Equal(NamesOf(inst).TLSService))
	sel, _, _ := unstructured.NestedStringMap(svc.Object, "spec", "selector")
	g.Expect(sel).To(HaveKeyWithValue(RoleLabel, "master"))
	// Not the operator's label, which moves a minute or more after a failover.
	g.Expect(sel).NotTo(HaveKey("redisfailovers-role"))
	g.Expect(sel).To(HaveKeyWithValue(labelName, inst.Name))
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	g.Expect(ports).To(HaveLen(1))
	g.Expect(ports[0].(map[string]any)["port"]).To(Equal(int64(TLSPort)))
	cert := one(t, objs, "Certificate")
	dns, _, _ := unstructured.NestedSlice(cert.Object, "spec", "dnsNames")
	g.Expect(dns).To(ContainElement(svc.GetName() + "." + testNamespace + ".svc"))
	rf := one(t, objs, "RedisFailover")
	vols, _, _ := unstructured.NestedSlice(rf.Object, "spec", "redis", "extraVolumes")
	g.Expect(vols[0].(map[string]any)["secret"]).To(HaveKeyWithValue("secretName", cert.GetName()))
}

func TestMeshedInstancesStayOutOfTheMesh(t *testing.T) {
	g := NewWithT(t)
	inst := testInstance(t, "standard", nil)
	inst.Meshed = true
	objs := build(t, baseConfig(), inst)
	rf := one(t, objs, "RedisFailover")
	g.Expect(rf.GetLabels()).To(HaveKeyWithValue("istio.io/dataplane-mode", "none"))
	for _, part := range []string{"redis", "sentinel"} {
		ann, _, _ := unstructured.NestedStringMap(rf.Object, "spec", part, "podAnnotations")
		g.Expect(ann).To(HaveKeyWithValue("sidecar.istio.io/inject", "false"))
	}
	g.Expect(byKind(objs, "DestinationRule")).To(HaveLen(2))
	// No sidecar, so nothing for a mesh PodMonitor to scrape, and the
	// NetworkPolicies keep the sidecar's stats port closed.
	g.Expect(byKind(objs, "PodMonitor")).To(HaveLen(1))
	g.Expect(one(t, objs, "PodMonitor").GetName()).NotTo(HaveSuffix(provisioners.MeshMonitorSuffix))
	for _, np := range byKind(objs, "NetworkPolicy") {
		g.Expect(fmt.Sprint(np.Object["spec"])).NotTo(ContainSubstring(strconv.Itoa(provisioners.MeshMetricsPort)), np.GetName())
	}
	inst.Meshed = false
	g.Expect(byKind(build(t, baseConfig(), inst), "DestinationRule")).To(BeEmpty())
}

func TestBuildRefusesWhatItCannotRender(t *testing.T) {
	g := NewWithT(t)
	_, err := (&Provisioner{Config: DefaultConfig()}).Build(testInstance(t, "standard", nil))
	g.Expect(err).To(MatchError(ContainSubstring("redis.serverCertificates.issuerName")))
	inst := testInstance(t, "standard", map[string]any{"resources": map[string]any{"memory": "64Gi"}})
	_, err = (&Provisioner{Config: baseConfig()}).Build(inst)
	g.Expect(err).To(MatchError(ContainSubstring("parameters.resources.memory")))
	inst = testInstance(t, "standard", nil)
	inst.Name = strings.Repeat("r", 49)
	_, err = (&Provisioner{Config: baseConfig()}).Build(inst)
	g.Expect(err).To(MatchError(ContainSubstring("48")))
}

func TestResolve(t *testing.T) {
	tests := []struct {
		plan    string
		params  map[string]any
		want    func(Settings) bool
		wantErr string
	}{
		{"standard", nil, func(s Settings) bool {
			return s.Replicas == 2 && s.Sentinels == 3 && s.AOF == "everysec" && s.MaxmemoryPolicy == "allkeys-lru" && s.MaxmemoryBytes == 805306368
		}, ""},
		{"ha", map[string]any{"resources": map[string]any{"memory": "8Gi"}, "maxmemory_policy": "noeviction"}, func(s Settings) bool {
			return s.MaxmemoryBytes == 6*1024*1024*1024 && s.MaxmemoryPolicy == "noeviction" && s.CPU == "1"
		}, ""},
		{"standard", map[string]any{"resources": map[string]any{"cpu": "3"}}, nil, "parameters.resources.cpu"},
		{"standard", map[string]any{"replicas": float64(9)}, nil, "parameters.replicas"},
		{"dev-lite", map[string]any{"storage_gb": float64(50)}, nil, "parameters.storage_gb"},
	}
	for _, tc := range tests {
		g := NewWithT(t)
		inst := testInstance(t, tc.plan, tc.params)
		s, err := Resolve(inst.Plan, inst.Params)
		if tc.wantErr != "" {
			g.Expect(err).To(MatchError(ContainSubstring(tc.wantErr)))
			continue
		}
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(tc.want(s)).To(BeTrue(), "%+v", s)
	}
}

// Every Redis pod has the reload sidecar: it mounts the certificate, gets
// the password from the auth Secret by reference (never inline) and runs
// CertReloadArgs against the plaintext port on localhost.
func TestCertificateReloadSidecar(t *testing.T) {
	for _, plan := range planNames {
		g := NewWithT(t)
		inst := testInstance(t, plan, nil)
		rf := one(t, build(t, baseConfig(), inst), "RedisFailover")
		cs, _, _ := unstructured.NestedSlice(rf.Object, "spec", "redis", "extraContainers")
		// The reload sidecar and the role agent (roleagent_test.go).
		g.Expect(cs).To(HaveLen(2))
		c := cs[0].(map[string]any)
		g.Expect(c["name"]).To(Equal("strata-tls-reload"))
		g.Expect(c["image"]).To(Equal(baseConfig().RedisImage))
		script := c["command"].([]any)[2].(string)
		g.Expect(script).To(ContainSubstring(strings.Join(CertReloadArgs(), " ")))
		g.Expect(script).To(ContainSubstring("-h 127.0.0.1 -p 6379"))
		env := c["env"].([]any)[0].(map[string]any)
		g.Expect(env["name"]).To(Equal("REDISCLI_AUTH"))
		g.Expect(env["valueFrom"]).To(Equal(map[string]any{"secretKeyRef": map[string]any{"name": NamesOf(inst).AuthSecret, "key": PasswordKey}}))
		g.Expect(c["volumeMounts"]).To(ContainElement(HaveKeyWithValue("mountPath", CertDir)))
	}
}

// Plans with failover spread across zones; on ha strictly, so that a
// zone's loss can never take the Sentinel quorum or every Redis.
func TestZoneSpreadOnPlansWithFailover(t *testing.T) {
	for plan, want := range map[string]string{"dev-lite": "", "standard": "ScheduleAnyway", "ha": "DoNotSchedule"} {
		g := NewWithT(t)
		rf := one(t, build(t, baseConfig(), testInstance(t, plan, nil)), "RedisFailover")
		for _, part := range []string{"redis", "sentinel"} {
			spread, found, _ := unstructured.NestedSlice(rf.Object, "spec", part, "topologySpreadConstraints")
			g.Expect(found).To(Equal(want != ""), "%s %s", plan, part)
			if want != "" {
				c := spread[0].(map[string]any)
				g.Expect(c).To(HaveKeyWithValue("whenUnsatisfiable", want), "%s %s", plan, part)
				g.Expect(c).To(HaveKeyWithValue("topologyKey", "topology.kubernetes.io/zone"))
				sel := c["labelSelector"].(map[string]any)["matchLabels"].(map[string]any)
				g.Expect(sel).To(HaveKeyWithValue(labelComponent, part))
			}
		}
	}
}
