package provisioners_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/np-guard/netpol-analyzer/pkg/netpol/eval"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	netv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/charts"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/kafka"
	"github.com/strata-dev/strata/provisioners/postgres"
	"github.com/strata-dev/strata/provisioners/redis"
)

// TestConnectivity evaluates the NetworkPolicies the three engines render
// for two tenants with np-guard's netpol-analyzer: each tenant's
// workloads reach their own data services on the client ports, and
// nothing of the other tenant's; the operators reach the ports they need
// and Prometheus the metrics ports; anything else is denied. Each tenant
// also has its baseline's default-deny policy, which must close data pods
// that no instance policy opens and leave the tenant's own workloads alone.
//
// Each protected pod is modelled with exactly the labels its policy
// selects (the labels the operators put on their pods). The shared Kafka
// cluster's own listener policy is modelled as Strimzi generates it from
// the platform chart (networkPolicyPeers: the cluster's namespace only).
func TestConnectivity(t *testing.T) {
	cat := catalog.Default()
	svc := func(e catalog.Engine) *catalog.Service {
		for i := range cat.Services {
			if cat.Services[i].Engine == e {
				return &cat.Services[i]
			}
		}
		t.Fatalf("no %s service", e)
		return nil
	}
	pgConf := postgres.DefaultConfig()
	pgConf.Backup.Bucket = "b"
	pgConf.CredentialManager = &postgres.CredentialManager{Namespace: "openbao"}
	pgConf.ServerCertificates.IssuerName = "ca"
	rdConf := redis.DefaultConfig()
	rdConf.ServerCertificates.IssuerName = "ca"
	engines := []struct {
		p      provisioners.Provisioner
		svc    *catalog.Service
		prefix string
		plan   string
		params map[string]any
	}{
		{&postgres.Provisioner{Config: pgConf}, svc(catalog.EnginePostgres), "pg-", "standard", nil},
		{&redis.Provisioner{Config: rdConf}, svc(catalog.EngineRedis), "rd-", "standard", nil},
		{&kafka.Provisioner{Config: kafka.DefaultConfig()}, svc(catalog.EngineKafka), "kafka-", "standard",
			map[string]any{"topics": []any{map[string]any{"name": "orders"}}}},
		{&kafka.Provisioner{Config: kafka.DefaultConfig()}, svc(catalog.EngineKafka), "kafka-", "ha", nil},
		{&postgres.Provisioner{Config: pgConf}, svc(catalog.EnginePostgres), "pg-", "shared", nil},
	}

	var objs []runtime.Object
	pods := map[string]string{} // "ns/name" → the policy that made it
	namespaces := map[string]bool{}
	addNS := func(ns string) {
		if !namespaces[ns] {
			namespaces[ns] = true
			objs = append(objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{provisioners.NamespaceLabel: ns}}})
		}
	}
	ip := 0
	addPod := func(ns, name string, labels map[string]string) {
		addNS(ns)
		ip++
		objs = append(objs, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
			Spec:       corev1.PodSpec{NodeName: "node-1"},
			Status: corev1.PodStatus{PodIP: fmt.Sprintf("10.1.%d.%d", ip/250, ip%250+1), HostIP: "10.0.0.1",
				PodIPs: []corev1.PodIP{{IP: fmt.Sprintf("10.1.%d.%d", ip/250, ip%250+1)}}},
		})
	}
	for _, tenant := range []string{"team-a", "team-b"} {
		addPod(tenant, "app", map[string]string{"app": "web"})
		addPod(tenant, "worker", map[string]string{"app": "worker"})
		// A data pod no instance policy selects (its policy deleted by
		// hand, or not applied yet): only the tenant baseline covers it.
		addPod(tenant, "unprotected-data", map[string]string{provisioners.LabelDataPod: tenant + "-orphan"})
		for _, o := range provisioners.Baseline(provisioners.BaselineConfig{}, provisioners.BaselineTenant{Namespace: tenant}) {
			var np netv1.NetworkPolicy
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &np); err != nil {
				t.Fatal(err)
			}
			objs = append(objs, &np)
		}
		for i, e := range engines {
			id := fmt.Sprintf("%s-%d", tenant, i)
			// team-a's namespace has Istio sidecars, team-b's not.
			built, err := e.p.Build(provisioners.Instance{ID: id, Name: provisioners.ResourceName(e.prefix, id), Namespace: tenant,
				Service: e.svc, Plan: e.svc.PlanByName(e.plan), Params: e.params, Meshed: tenant == "team-a"})
			if err != nil {
				t.Fatalf("%s %s: %v", e.svc.Name, e.plan, err)
			}
			for _, o := range built {
				if o.GetKind() != "NetworkPolicy" {
					continue
				}
				var np netv1.NetworkPolicy
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &np); err != nil {
					t.Fatal(err)
				}
				addNS(np.Namespace)
				objs = append(objs, &np)
				name := np.Name + "-pod"
				if _, dup := pods[np.Namespace+"/"+name]; !dup {
					pods[np.Namespace+"/"+name] = np.Name
					labels := map[string]string{}
					for k, v := range np.Spec.PodSelector.MatchLabels {
						labels[k] = v
					}
					if np.Namespace == tenant {
						// The operators copy the instance's labels to
						// its pods, so the tenant baseline selects them.
						labels[provisioners.LabelDataPod] = id
					}
					addPod(np.Namespace, name, labels)
				}
			}
		}
	}
	// Strimzi's policy for the shared cluster's TLS listener.
	shared := kafka.DefaultConfig().Shared
	objs = append(objs, &netv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: shared.Name + "-network-policy-kafka", Namespace: shared.Namespace},
		Spec: netv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"strimzi.io/cluster": shared.Name, "strimzi.io/broker-role": "true"}},
			PolicyTypes: []netv1.PolicyType{netv1.PolicyTypeIngress},
			Ingress: []netv1.NetworkPolicyIngressRule{{
				From:  []netv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}},
				Ports: []netv1.NetworkPolicyPort{{Port: ptrPort(kafka.ListenerPort)}},
			}},
		},
	})
	// The platform chart's policy of the shared PostgreSQL cluster, and one
	// of its pods.
	platform, err := charts.RenderPlatform(nil, "strata-system")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range platform {
		if o["kind"] != "NetworkPolicy" {
			continue
		}
		var np netv1.NetworkPolicy
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o, &np); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, &np)
	}
	sharedPG := postgres.DefaultSharedConfig()
	addPod(sharedPG.Namespace, sharedPG.ClusterName+"-1", map[string]string{"cnpg.io/cluster": sharedPG.ClusterName})
	for _, p := range []struct{ ns, name string }{
		{"cnpg-system", "operator"}, {"redis-operator", "operator"}, {"monitoring", "prometheus"},
		{"openbao", "openbao"}, {"elsewhere", "intruder"},
	} {
		addPod(p.ns, p.name, map[string]string{"app": p.name})
	}

	pe := eval.NewPolicyEngine()
	for _, o := range objs {
		if err := pe.UpsertObject(o); err != nil {
			t.Fatalf("netpol-analyzer refuses %T: %v", o, err)
		}
	}
	allowed := func(t *testing.T, src, dst string, port int) bool {
		t.Helper()
		ok, err := pe.CheckIfAllowed(src, dst, "TCP", strconv.Itoa(port))
		if err != nil {
			t.Fatalf("%s → %s:%d: %v", src, dst, port, err)
		}
		return ok
	}
	pod := func(ns, policy string) string { return ns + "/" + policy + "-pod" }
	name := func(i int, tenant string) string {
		return provisioners.ResourceName(engines[i].prefix, fmt.Sprintf("%s-%d", tenant, i))
	}

	sharedPGPod := sharedPG.Namespace + "/" + sharedPG.ClusterName + "-1"
	cases := []struct {
		name     string
		src, dst string
		port     int
		allowed  bool
	}{
		// PostgreSQL.
		{"own app → PostgreSQL", "team-a/app", pod("team-a", name(0, "team-a")), 5432, true},
		{"own app → PgBouncer", "team-a/app", pod("team-a", name(0, "team-a")+"-pooler"), 5432, true},
		{"other tenant → PostgreSQL", "team-b/app", pod("team-a", name(0, "team-a")), 5432, false},
		{"other tenant → PgBouncer", "team-b/app", pod("team-a", name(0, "team-a")+"-pooler"), 5432, false},
		{"elsewhere → PostgreSQL", "elsewhere/intruder", pod("team-a", name(0, "team-a")), 5432, false},
		{"operator → PostgreSQL status", "cnpg-system/operator", pod("team-a", name(0, "team-a")), 8000, true},
		{"Prometheus → PostgreSQL metrics", "monitoring/prometheus", pod("team-a", name(0, "team-a")), 9187, true},
		{"Prometheus → PostgreSQL itself", "monitoring/prometheus", pod("team-a", name(0, "team-a")), 5432, false},
		{"Prometheus → PgBouncer metrics", "monitoring/prometheus", pod("team-a", name(0, "team-a")+"-pooler"), 9127, true},
		{"OpenBao → PostgreSQL", "openbao/openbao", pod("team-a", name(0, "team-a")), 5432, true},
		{"OpenBao → PgBouncer", "openbao/openbao", pod("team-a", name(0, "team-a")+"-pooler"), 5432, false},
		{"other tenant's operator port", "team-b/app", pod("team-a", name(0, "team-a")), 8000, false},
		// The Istio sidecars' stats port (team-a is meshed), which no
		// PeerAuthentication or AuthorizationPolicy covers.
		{"Prometheus → meshed PostgreSQL's sidecar stats", "monitoring/prometheus", pod("team-a", name(0, "team-a")), provisioners.MeshMetricsPort, true},
		{"Prometheus → meshed PgBouncer's sidecar stats", "monitoring/prometheus", pod("team-a", name(0, "team-a")+"-pooler"), provisioners.MeshMetricsPort, true},
		{"own app → meshed PostgreSQL's sidecar stats", "team-a/app", pod("team-a", name(0, "team-a")), provisioners.MeshMetricsPort, false},
		{"other tenant → meshed PostgreSQL's sidecar stats", "team-b/app", pod("team-a", name(0, "team-a")), provisioners.MeshMetricsPort, false},
		{"Prometheus → PostgreSQL without sidecars, stats port", "monitoring/prometheus", pod("team-b", name(0, "team-b")), provisioners.MeshMetricsPort, false},
		{"Prometheus → meshed Redis (no sidecar), stats port", "monitoring/prometheus", pod("team-a", name(1, "team-a")+"-redis"), provisioners.MeshMetricsPort, false},
		// Redis.
		{"own app → Redis TLS", "team-a/app", pod("team-a", name(1, "team-a")+"-redis"), 6380, true},
		{"own app → Redis plaintext", "team-a/app", pod("team-a", name(1, "team-a")+"-redis"), 6379, false},
		{"own app → Sentinel", "team-a/app", pod("team-a", name(1, "team-a")+"-sentinel"), 26379, false},
		{"other tenant → Redis TLS", "team-b/app", pod("team-a", name(1, "team-a")+"-redis"), 6380, false},
		{"operator → Redis plaintext", "redis-operator/operator", pod("team-a", name(1, "team-a")+"-redis"), 6379, true},
		{"operator → Sentinel", "redis-operator/operator", pod("team-a", name(1, "team-a")+"-sentinel"), 26379, true},
		{"Sentinel → Redis plaintext", pod("team-a", name(1, "team-a")+"-sentinel"), pod("team-a", name(1, "team-a")+"-redis"), 6379, true},
		{"other tenant's Sentinel → Redis plaintext", pod("team-b", name(1, "team-b")+"-sentinel"), pod("team-a", name(1, "team-a")+"-redis"), 6379, false},
		{"Prometheus → Redis exporter", "monitoring/prometheus", pod("team-a", name(1, "team-a")+"-redis"), 9121, true},
		// The tenant baseline: data pods are closed unless an instance's
		// policy opens them; the tenant's other workloads are untouched.
		{"own app → unprotected data pod", "team-a/app", "team-a/unprotected-data", 5432, false},
		{"operator → unprotected data pod", "cnpg-system/operator", "team-a/unprotected-data", 8000, false},
		{"Prometheus → unprotected data pod", "monitoring/prometheus", "team-a/unprotected-data", 9187, false},
		{"own app → own worker", "team-a/app", "team-a/worker", 8080, true},
		{"other tenant → worker (not Strata's to close)", "team-b/app", "team-a/worker", 8080, true},
		// Kafka on the shared cluster: tenants reach the TLS listener (the
		// ACLs confine them to their topics); namespaces without instances
		// do not.
		{"tenant → shared Kafka", "team-a/app", pod("kafka", "team-a."+name(2, "team-a")), kafka.ListenerPort, true},
		{"other tenant → shared Kafka", "team-b/app", pod("kafka", "team-a."+name(2, "team-a")), kafka.ListenerPort, true},
		{"elsewhere → shared Kafka", "elsewhere/intruder", pod("kafka", "team-a."+name(2, "team-a")), kafka.ListenerPort, false},
		{"tenant → shared Kafka, another port", "team-a/app", pod("kafka", "team-a."+name(2, "team-a")), 9091, false},
		// The shared PostgreSQL cluster: tenants with an instance on it
		// reach 5432 (pg_hba then confines each login to its database),
		// namespaces without one do not.
		{"tenant → shared PostgreSQL", "team-a/app", sharedPGPod, 5432, true},
		{"other tenant with an instance → shared PostgreSQL", "team-b/app", sharedPGPod, 5432, true},
		{"elsewhere → shared PostgreSQL", "elsewhere/intruder", sharedPGPod, 5432, false},
		{"OpenBao → shared PostgreSQL", "openbao/openbao", sharedPGPod, 5432, true},
		{"tenant → shared PostgreSQL status port", "team-a/app", sharedPGPod, 8000, false},
		{"operator → shared PostgreSQL status port", "cnpg-system/operator", sharedPGPod, 8000, true},
		{"Prometheus → shared PostgreSQL metrics", "monitoring/prometheus", sharedPGPod, 9187, true},
		{"Prometheus → shared PostgreSQL itself", "monitoring/prometheus", sharedPGPod, 5432, false},
		// A dedicated cluster's exporter.
		{"Prometheus → dedicated Kafka exporter", "monitoring/prometheus", pod("team-a", kafkaExporterPolicy(t, objs, "team-a")), kafka.MetricsPort, true},
		{"other tenant → dedicated Kafka exporter", "team-b/app", pod("team-a", kafkaExporterPolicy(t, objs, "team-a")), kafka.MetricsPort, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, ok := pods[c.dst]; !ok && !strings.Contains(c.dst, "/unprotected-data") && !strings.HasSuffix(c.dst, "/worker") && c.dst != sharedPGPod {
				t.Fatalf("no protected pod %s (policies: %v)", c.dst, pods)
			}
			NewWithT(t).Expect(allowed(t, c.src, c.dst, c.port)).To(Equal(c.allowed), "%s → %s:%d", c.src, c.dst, c.port)
		})
	}
}

func ptrPort(p int) *intstr.IntOrString { v := intstr.FromInt32(int32(p)); return &v }

// kafkaExporterPolicy is the name of the dedicated cluster's exporter
// policy in ns.
func kafkaExporterPolicy(t *testing.T, objs []runtime.Object, ns string) string {
	t.Helper()
	for _, o := range objs {
		if np, ok := o.(*netv1.NetworkPolicy); ok && np.Namespace == ns && np.Spec.PodSelector.MatchLabels["strimzi.io/name"] != "" {
			return np.Name
		}
	}
	t.Fatalf("no Kafka exporter policy in %s", ns)
	return ""
}
