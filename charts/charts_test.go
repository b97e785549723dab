package charts_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	. "github.com/onsi/gomega"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/strata-dev/strata/broker"
	"github.com/strata-dev/strata/charts"
	"github.com/strata-dev/strata/provisioners/postgres"
)

const namespace = "strata-system"

// withPassword is the smallest values override the chart renders with.
func withPassword() map[string]any {
	return map[string]any{"credentials": map[string]any{"password": "test"}}
}

func render(t *testing.T, values map[string]any) []map[string]any {
	t.Helper()
	objs, err := charts.RenderBroker(values, namespace)
	if err != nil {
		t.Fatalf("RenderBroker: %v", err)
	}
	return objs
}

// find returns the rendered objects of a kind.
func find(objs []map[string]any, kind string) []map[string]any {
	var out []map[string]any
	for _, o := range objs {
		if o["kind"] == kind {
			out = append(out, o)
		}
	}
	return out
}

// one returns the only rendered object of a kind, failing otherwise.
func one(t *testing.T, objs []map[string]any, kind string) map[string]any {
	t.Helper()
	found := find(objs, kind)
	if len(found) != 1 {
		t.Fatalf("want exactly one %s, rendered %d", kind, len(found))
	}
	return found[0]
}

// get walks a decoded object along map keys and slice indexes.
func get(t *testing.T, v any, path ...any) any {
	t.Helper()
	for i, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("path %v: element %d is %T, not a map", path, i, v)
			}
			v = m[k]
		case int:
			s, ok := v.([]any)
			if !ok || k >= len(s) {
				t.Fatalf("path %v: element %d is %T (len?), not a slice with index %d", path, i, v, k)
			}
			v = s[k]
		}
	}
	return v
}

func strs(v any) []string {
	var out []string
	xs, _ := v.([]any) // absent: none
	for _, x := range xs {
		out = append(out, x.(string))
	}
	return out
}

type rule struct {
	groups, resources, verbs, names []string
}

func rules(t *testing.T, role map[string]any) []rule {
	t.Helper()
	var out []rule
	for _, r := range get(t, role, "rules").([]any) {
		m := r.(map[string]any)
		out = append(out, rule{strs(m["apiGroups"]), strs(m["resources"]), strs(m["verbs"]), strs(m["resourceNames"])})
	}
	return out
}

// grants reports whether any rule grants verb on resource in group.
func grants(rs []rule, group, resource, verb string) bool {
	for _, r := range rs {
		if slices.Contains(r.groups, group) && slices.Contains(r.resources, resource) && slices.Contains(r.verbs, verb) {
			return true
		}
	}
	return false
}

func TestLint(t *testing.T) {
	lintChart(t, charts.BrokerChartDir(), withPassword())
}

// lintChart runs Helm's linter; warnings fail too.
func lintChart(t *testing.T, dir string, values map[string]any) {
	t.Helper()
	g := NewWithT(t)
	kv := &chartutil.KubeVersion{Version: charts.RenderKubeVersion, Major: "1", Minor: "31"}
	linter := lint.AllWithKubeVersion(dir, values, namespace, kv)
	for _, m := range linter.Messages {
		t.Log(m.Error())
	}
	g.Expect(linter.HighestSeverity).To(BeNumerically("<", support.ErrorSev), "lint reported errors")
	g.Expect(linter.HighestSeverity).To(BeNumerically("<", support.WarningSev), "lint reported warnings")
}

func TestDefaultRender(t *testing.T) {
	objs := render(t, withPassword())

	t.Run("every namespaced object is in the release namespace", func(t *testing.T) {
		g := NewWithT(t)
		for _, o := range objs {
			ns := get(t, o, "metadata", "namespace")
			if k := o["kind"]; k == "ClusterRole" || k == "ClusterRoleBinding" || k == "Namespace" {
				g.Expect(ns).To(BeNil(), "%s is cluster-scoped", k)
				continue
			}
			if get(t, o, "metadata", "name") == "strata-broker-drills" {
				// The restore drills' Role and RoleBinding.
				g.Expect(ns).To(Equal("strata-drills"), "%s %s", o["kind"], get(t, o, "metadata", "name"))
				continue
			}
			g.Expect(ns).To(Equal(namespace), "%s %s", o["kind"], get(t, o, "metadata", "name"))
		}
	})

	t.Run("deployment", func(t *testing.T) {
		g := NewWithT(t)
		d := one(t, objs, "Deployment")
		g.Expect(get(t, d, "spec", "replicas")).To(Equal(int64(2)))
		g.Expect(get(t, d, "spec", "template", "metadata", "annotations", "checksum/config")).To(MatchRegexp(`^[0-9a-f]{64}$`))
		pod := get(t, d, "spec", "template", "spec")
		g.Expect(get(t, pod, "automountServiceAccountToken")).To(BeTrue())
		g.Expect(get(t, pod, "affinity", "podAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution", 0, "podAffinityTerm", "topologyKey")).To(Equal("kubernetes.io/hostname"))
		g.Expect(get(t, pod, "topologySpreadConstraints", 0, "topologyKey")).To(Equal("topology.kubernetes.io/zone"))
		g.Expect(get(t, pod, "topologySpreadConstraints", 0, "whenUnsatisfiable")).To(Equal("ScheduleAnyway"))

		c := get(t, pod, "containers", 0)
		g.Expect(get(t, c, "image")).To(Equal("ghcr.io/strata-dev/strata-broker:0.1.0"))
		sc := get(t, c, "securityContext")
		g.Expect(get(t, sc, "runAsNonRoot")).To(BeTrue())
		g.Expect(get(t, sc, "runAsUser")).To(Equal(int64(65532)))
		g.Expect(get(t, sc, "readOnlyRootFilesystem")).To(BeTrue())
		g.Expect(get(t, sc, "allowPrivilegeEscalation")).To(BeFalse())
		g.Expect(get(t, sc, "capabilities", "drop")).To(Equal([]any{"ALL"}))
		g.Expect(get(t, sc, "seccompProfile", "type")).To(Equal("RuntimeDefault"))

		g.Expect(get(t, c, "livenessProbe", "httpGet", "path")).To(Equal("/healthz"))
		g.Expect(get(t, c, "livenessProbe", "httpGet", "scheme")).To(Equal("HTTPS"))
		g.Expect(get(t, c, "readinessProbe", "httpGet", "path")).To(Equal("/readyz"))
		g.Expect(get(t, c, "readinessProbe", "httpGet", "scheme")).To(Equal("HTTPS"))
		g.Expect(get(t, c, "ports", 0, "containerPort")).To(Equal(int64(8443)))

		g.Expect(get(t, c, "resources", "requests", "cpu")).To(Equal("100m"))
		g.Expect(get(t, c, "resources", "requests", "memory")).To(Equal("128Mi"))
		g.Expect(get(t, c, "resources", "limits", "memory")).To(Equal("512Mi"))

		g.Expect(get(t, c, "env", 0, "name")).To(Equal("POD_NAMESPACE"))
		g.Expect(get(t, c, "env", 0, "valueFrom", "fieldRef", "fieldPath")).To(Equal("metadata.namespace"))
		g.Expect(strs(get(t, c, "args"))).To(ContainElements(
			"--listen=:8443",
			"--tls-cert-file=/etc/strata/tls/tls.crt",
			"--tls-key-file=/etc/strata/tls/tls.key",
			"--credentials-dir=/etc/strata/credentials",
			"--config=/etc/strata/config/config.yaml",
			"--log-level=info",
		))

		mounts := map[string]string{}
		for _, m := range get(t, c, "volumeMounts").([]any) {
			mounts[get(t, m, "name").(string)] = get(t, m, "mountPath").(string)
		}
		g.Expect(mounts).To(Equal(map[string]string{
			"config": "/etc/strata/config", "credentials": "/etc/strata/credentials",
			"tls": "/etc/strata/tls", "tmp": "/tmp",
		}))
		volumes := map[string]any{}
		for _, v := range get(t, pod, "volumes").([]any) {
			volumes[get(t, v, "name").(string)] = v
		}
		g.Expect(get(t, volumes["config"], "configMap", "name")).To(Equal("strata-broker-config"))
		g.Expect(get(t, volumes["credentials"], "secret", "secretName")).To(Equal("strata-broker-credentials"))
		g.Expect(get(t, volumes["credentials"], "secret", "defaultMode")).To(Equal(int64(0o440)))
		g.Expect(get(t, volumes["tls"], "secret", "secretName")).To(Equal("strata-broker-tls"))
		g.Expect(get(t, volumes["tmp"], "emptyDir")).NotTo(BeNil())
	})

	t.Run("service", func(t *testing.T) {
		g := NewWithT(t)
		s := one(t, objs, "Service")
		g.Expect(get(t, s, "spec", "ports", 0, "name")).To(Equal("https"))
		g.Expect(get(t, s, "spec", "ports", 0, "port")).To(Equal(int64(443)))
		g.Expect(get(t, s, "spec", "ports", 0, "targetPort")).To(Equal("https"))
	})

	t.Run("credentials secret", func(t *testing.T) {
		g := NewWithT(t)
		s := one(t, objs, "Secret")
		g.Expect(get(t, s, "metadata", "name")).To(Equal("strata-broker-credentials"))
		g.Expect(get(t, s, "data", "username")).To(Equal("c3RyYXRh")) // strata
		g.Expect(get(t, s, "data", "password")).To(Equal("dGVzdA==")) // test
	})

	t.Run("config", func(t *testing.T) {
		g := NewWithT(t)
		cfg := renderedConfig(t, objs)
		g.Expect(cfg.BrokerNamespace).To(Equal(namespace))
		g.Expect(cfg.PollIntervalSeconds).To(Equal(10))
		// The chart states the binary's defaults, not client-go's 5/s.
		g.Expect(cfg.Kubernetes).To(Equal(broker.DefaultKubernetesConfig()))
		g.Expect(cfg.DashboardURLTemplate).To(BeEmpty())
		g.Expect(cfg.Tenancy.CloudFoundryNamespaceTemplate).To(Equal("cf-{{.SpaceGUID}}"),
			"space GUIDs are unique; org/space names can collide between tenants")
		// The binary's pinned images apply: the chart pins none of its own.
		g.Expect(cfg.Postgres.Images).To(Equal(postgres.DefaultConfig().Images))
		g.Expect(cfg.Postgres.PodMonitor).To(BeTrue())
		g.Expect(cfg.Postgres.OperatorNamespace).To(Equal("cnpg-system"))
		g.Expect(cfg.Postgres.MonitoringNamespace).To(Equal("monitoring"))
		g.Expect(cfg.Postgres.StorageClass).To(BeEmpty())
		g.Expect(cfg.Postgres.Backup).To(Equal(postgres.BackupConfig{}))
	})

	t.Run("certificate", func(t *testing.T) {
		g := NewWithT(t)
		c := one(t, objs, "Certificate")
		g.Expect(c["apiVersion"]).To(Equal("cert-manager.io/v1"))
		g.Expect(get(t, c, "spec", "secretName")).To(Equal("strata-broker-tls"))
		g.Expect(get(t, c, "spec", "issuerRef", "kind")).To(Equal("ClusterIssuer"))
		g.Expect(get(t, c, "spec", "issuerRef", "name")).To(Equal("strata-ca"))
		g.Expect(strs(get(t, c, "spec", "dnsNames"))).To(ContainElements(
			"strata-broker.strata-system.svc", "strata-broker.strata-system.svc.cluster.local"))
	})

	t.Run("service monitor", func(t *testing.T) {
		g := NewWithT(t)
		sm := one(t, objs, "ServiceMonitor")
		ep := get(t, sm, "spec", "endpoints", 0)
		g.Expect(get(t, ep, "path")).To(Equal("/metrics"))
		g.Expect(get(t, ep, "scheme")).To(Equal("https"))
		g.Expect(get(t, ep, "port")).To(Equal("https"))
		g.Expect(get(t, ep, "tlsConfig", "serverName")).To(Equal("strata-broker.strata-system.svc"))
		g.Expect(get(t, ep, "tlsConfig", "ca", "secret", "name")).To(Equal("strata-broker-tls"))
	})

	t.Run("pod disruption budget", func(t *testing.T) {
		g := NewWithT(t)
		pdb := one(t, objs, "PodDisruptionBudget")
		g.Expect(get(t, pdb, "spec", "minAvailable")).To(Equal(int64(1)))
	})

	t.Run("network policy", func(t *testing.T) {
		g := NewWithT(t)
		np := one(t, objs, "NetworkPolicy")
		g.Expect(strs(get(t, np, "spec", "policyTypes"))).To(ConsistOf("Ingress", "Egress"))
		in := get(t, np, "spec", "ingress").([]any)
		g.Expect(in).To(HaveLen(1))
		g.Expect(get(t, in[0], "ports")).To(Equal([]any{map[string]any{"protocol": "TCP", "port": int64(8443)}}))
		g.Expect(strs(get(t, in[0], "from", 0, "namespaceSelector", "matchExpressions", 0, "values"))).To(
			ConsistOf("crossplane-system", "monitoring"))
		var egress []string
		for _, r := range get(t, np, "spec", "egress").([]any) {
			g.Expect(r).NotTo(HaveKey("to"), "egress ports are allowed to any destination")
			for _, p := range get(t, r, "ports").([]any) {
				egress = append(egress, fmt.Sprintf("%s/%v", get(t, p, "protocol"), get(t, p, "port")))
			}
		}
		// No OpenBao rule: this release's broker does not call it. 5432:
		// the restore drills' markers.
		g.Expect(egress).To(ConsistOf("TCP/443", "TCP/6443", "UDP/53", "TCP/53", "TCP/5432"))
	})

	t.Run("cluster role is least privilege", func(t *testing.T) {
		g := NewWithT(t)
		cr := one(t, objs, "ClusterRole")
		rs := rules(t, cr)
		for _, r := range rs {
			g.Expect(r.groups).NotTo(ContainElement("*"))
			g.Expect(r.resources).NotTo(ContainElement("*"))
			g.Expect(r.verbs).NotTo(ContainElement("*"))
			for _, res := range r.resources {
				g.Expect(res).NotTo(ContainSubstring("/"), "no subresources (%s)", res)
			}
		}
		// Exactly what the code does (see the comments in rbac.yaml):
		// server-side apply is create + patch, status reads and "is it
		// gone yet" are get, deprovision and unbind are delete.
		apply := []string{"create", "delete", "get", "patch"}
		g.Expect(grantTable(rs)).To(Equal(map[string][]string{
			"namespaces":     {"create", "get"},
			"resourcequotas": {"list"},
			"secrets":        apply,
			"configmaps":     apply,
			// The Redis role agent's ServiceAccount, Role and RoleBinding,
			// and the pod rights that Role grants (a Role grants only what
			// its creator holds).
			"serviceaccounts":                        apply,
			"roles.rbac.authorization.k8s.io":        apply,
			"rolebindings.rbac.authorization.k8s.io": apply,
			// and list: the seed Job's pods, for its termination message.
			"pods":                                   {"get", "list", "patch"},
			"services":                               apply,
			"redisfailovers.databases.spotahome.com": apply,
			"cronjobs.batch":                         apply,
			// CloudNativePG's bootstrap Job of a seed or a copy: status;
			// the seed Job of a seed from S3: created, read, deleted.
			"jobs.batch":                              {"create", "delete", "get"},
			"destinationrules.networking.istio.io":    apply,
			"statefulsets.apps":                       {"get"},
			"deployments.apps":                        {"get"},
			"kafkatopics.kafka.strimzi.io":            apply,
			"kafkausers.kafka.strimzi.io":             apply,
			"kafkas.kafka.strimzi.io":                 apply,
			"kafkanodepools.kafka.strimzi.io":         apply,
			"kafkamirrormaker2s.kafka.strimzi.io":     apply,
			"certificates.cert-manager.io":            apply,
			"clusters.postgresql.cnpg.io":             apply,
			"poolers.postgresql.cnpg.io":              apply,
			"databases.postgresql.cnpg.io":            apply,
			"databaseroles.postgresql.cnpg.io":        apply,
			"scheduledbackups.postgresql.cnpg.io":     apply,
			"objectstores.barmancloud.cnpg.io":        {"create", "get", "patch"},
			"backups.postgresql.cnpg.io":              {"list"},
			"networkpolicies.networking.k8s.io":       apply,
			"podmonitors.monitoring.coreos.com":       apply,
			"peerauthentications.security.istio.io":   apply,
			"authorizationpolicies.security.istio.io": {"create", "delete", "patch"},
		}))
		g.Expect(grants(rs, "", "secrets", "list")).To(BeFalse(), "secrets list cluster-wide")
		g.Expect(grants(rs, "", "secrets", "watch")).To(BeFalse(), "secrets watch cluster-wide")
		g.Expect(grants(rs, "", "namespaces", "list")).To(BeFalse())
		g.Expect(grants(rs, "", "namespaces", "delete")).To(BeFalse())
		g.Expect(grants(rs, "postgresql.cnpg.io", "backups", "create")).To(BeFalse())
		for _, verb := range []string{"escalate", "bind", "impersonate"} {
			for _, r := range rs {
				g.Expect(r.verbs).NotTo(ContainElement(verb))
			}
		}

		crb := one(t, objs, "ClusterRoleBinding")
		g.Expect(get(t, crb, "roleRef", "name")).To(Equal(get(t, cr, "metadata", "name")))
		g.Expect(get(t, crb, "subjects", 0, "name")).To(Equal("strata-broker"))
		g.Expect(get(t, crb, "subjects", 0, "namespace")).To(Equal(namespace))
	})

	t.Run("role grants the records in the release namespace", func(t *testing.T) {
		g := NewWithT(t)
		var role map[string]any
		for _, r := range find(objs, "Role") {
			if get(t, r, "metadata", "namespace") == namespace {
				g.Expect(role).To(BeNil(), "one Role in the release namespace")
				role = r
			}
		}
		g.Expect(role).NotTo(BeNil())
		// broker/store.go: Get, List (by label), Create, Update (with the
		// resourceVersion read), Delete (with a precondition); the
		// reconcile loop's Lease (broker/reconcile.go): created once, then
		// read and renewed by name only.
		g.Expect(grantTable(rules(t, role))).To(Equal(map[string][]string{
			"secrets":                    {"create", "delete", "get", "list", "update"},
			"leases.coordination.k8s.io": {"create", "get", "update"},
			// The restore drills' results (broker/drill.go).
			"configmaps": {"create", "get", "update"},
		}))
		for _, r := range rules(t, role) {
			if slices.Contains(r.verbs, "update") && slices.Contains(r.resources, "configmaps") {
				g.Expect(r.names).To(Equal([]string{"strata-drill-results"}), "only the drill results may be updated")
			}
		}
		for _, r := range rules(t, role) {
			if slices.Contains(r.verbs, "update") && slices.Contains(r.resources, "leases") {
				g.Expect(r.names).To(Equal([]string{"strata-broker-reconciler"}), "only the reconciler's Lease may be renewed")
			}
		}
		var rb map[string]any
		for _, r := range find(objs, "RoleBinding") {
			if get(t, r, "metadata", "namespace") == namespace {
				rb = r
			}
		}
		g.Expect(rb).NotTo(BeNil())
		g.Expect(get(t, rb, "roleRef", "kind")).To(Equal("Role"))
		g.Expect(get(t, rb, "subjects", 0, "name")).To(Equal("strata-broker"))
		sa := one(t, objs, "ServiceAccount")
		g.Expect(get(t, sa, "metadata", "name")).To(Equal("strata-broker"))
	})
}

// renderedConfig decodes the chart's config.yaml with the broker's own
// strict loader, so a key the chart writes that the broker does not know
// fails here instead of at start-up.
func renderedConfig(t *testing.T, objs []map[string]any) broker.Config {
	t.Helper()
	var configMap map[string]any
	for _, cm := range find(objs, "ConfigMap") {
		if get(t, cm, "metadata", "name") == "strata-broker-config" {
			configMap = cm
		}
	}
	if configMap == nil {
		t.Fatal("no ConfigMap strata-broker-config")
	}
	raw, ok := get(t, configMap, "data", "config.yaml").(string)
	if !ok {
		t.Fatal("the ConfigMap has no config.yaml")
	}
	cfg, err := broker.ParseConfig([]byte(raw))
	if err != nil {
		t.Fatalf("the broker refuses the rendered configuration: %v\n%s", err, raw)
	}
	return cfg
}

// grantTable maps "resource.group" (just "resource" for the core group) to
// the sorted verbs granted on it.
func grantTable(rs []rule) map[string][]string {
	out := map[string][]string{}
	for _, r := range rs {
		for _, g := range r.groups {
			for _, res := range r.resources {
				key := res
				if g != "" {
					key += "." + g
				}
				out[key] = append(out[key], r.verbs...)
			}
		}
	}
	for k, v := range out {
		slices.Sort(v)
		out[k] = slices.Compact(v)
	}
	return out
}

// TestBuiltInKindsDecodeStrictly decodes every rendered object of a built-in
// Kubernetes kind into its Go type, rejecting unknown or duplicate fields, so
// a misspelt or misplaced field fails here rather than at install time.
// Custom resources (Certificate, ServiceMonitor) are not registered and are
// skipped.
func TestBuiltInKindsDecodeStrictly(t *testing.T) {
	g := NewWithT(t)
	codec := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
		kjson.SerializerOptions{Strict: true})
	decoded := 0
	for _, o := range render(t, withPassword()) {
		js, err := json.Marshal(o)
		g.Expect(err).NotTo(HaveOccurred())
		_, _, err = codec.Decode(js, nil, nil)
		if runtime.IsNotRegisteredError(err) {
			t.Logf("skipping %s %s (custom resource)", o["apiVersion"], o["kind"])
			continue
		}
		g.Expect(err).NotTo(HaveOccurred(), "%s %s", o["kind"], get(t, o, "metadata", "name"))
		decoded++
	}
	g.Expect(decoded).To(BeNumerically(">=", 10))
}

func TestRequiresPassword(t *testing.T) {
	g := NewWithT(t)
	_, err := charts.RenderBroker(nil, namespace)
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(ContainSubstring("credentials.password"))

	_, err = charts.RenderBroker(map[string]any{"credentials": map[string]any{"password": ""}}, namespace)
	g.Expect(err).To(MatchError(ContainSubstring("credentials.password")))
}

func TestExistingCredentialsSecret(t *testing.T) {
	g := NewWithT(t)
	objs := render(t, map[string]any{"credentials": map[string]any{"existingSecret": "broker-auth"}})
	g.Expect(find(objs, "Secret")).To(BeEmpty())
	d := one(t, objs, "Deployment")
	var names []string
	for _, v := range get(t, d, "spec", "template", "spec", "volumes").([]any) {
		if s, ok := v.(map[string]any)["secret"]; ok {
			names = append(names, get(t, s, "secretName").(string))
		}
	}
	g.Expect(names).To(ContainElement("broker-auth"))
}

func TestExistingTLSSecret(t *testing.T) {
	g := NewWithT(t)
	values := withPassword()
	values["tls"] = map[string]any{"existingSecret": "foo"}
	objs := render(t, values)
	g.Expect(find(objs, "Certificate")).To(BeEmpty())

	d := one(t, objs, "Deployment")
	var tls any
	for _, v := range get(t, d, "spec", "template", "spec", "volumes").([]any) {
		if get(t, v, "name") == "tls" {
			tls = v
		}
	}
	g.Expect(tls).NotTo(BeNil())
	g.Expect(get(t, tls, "secret", "secretName")).To(Equal("foo"))
	sm := one(t, objs, "ServiceMonitor")
	g.Expect(get(t, sm, "spec", "endpoints", 0, "tlsConfig", "ca", "secret", "name")).To(Equal("foo"))
}

func TestOptionalObjectsCanBeDisabled(t *testing.T) {
	g := NewWithT(t)
	values := withPassword()
	values["serviceMonitor"] = map[string]any{"enabled": false}
	values["networkPolicy"] = map[string]any{"enabled": false}
	values["replicaCount"] = 1
	objs := render(t, values)
	g.Expect(find(objs, "ServiceMonitor")).To(BeEmpty())
	g.Expect(find(objs, "NetworkPolicy")).To(BeEmpty())
	g.Expect(find(objs, "PodDisruptionBudget")).To(BeEmpty(), "a PDB with minAvailable 1 would block drains of a single replica")
	g.Expect(get(t, one(t, objs, "Deployment"), "spec", "replicas")).To(Equal(int64(1)))
}

func TestConfigChangeRollsPods(t *testing.T) {
	g := NewWithT(t)
	checksum := func(values map[string]any) any {
		return get(t, one(t, render(t, values), "Deployment"), "spec", "template", "metadata", "annotations", "checksum/config")
	}
	before := checksum(withPassword())
	values := withPassword()
	values["config"] = map[string]any{"pollIntervalSeconds": 30}
	g.Expect(checksum(values)).NotTo(Equal(before))
}

// TestOpenBaoInstall renders the chart as docs/openbao.md sets it up: the
// broker's configuration carries the openBao section the broker accepts,
// OpenBao's CA is mounted where the configuration says, and the broker may
// reach OpenBao.
func TestOpenBaoInstall(t *testing.T) {
	g := NewWithT(t)
	values := withPassword()
	values["openBaoCA"] = map[string]any{"existingSecret": "openbao-ca"}
	values["config"] = map[string]any{
		"tenancy": map[string]any{"limits": map[string]any{"default": map[string]any{
			"instancesPerService": map[string]any{"postgresql": 5}, "storageGB": 500, "cpu": "32",
		}}},
		"openBao": map[string]any{
			"address":        "https://openbao.openbao.svc:8200",
			"postgresCAFile": "/openbao/userconfig/platform-ca/ca.crt",
		},
		"postgres": map[string]any{"serverCertificates": map[string]any{"issuerName": "platform-ca"}},
	}
	objs := render(t, values)
	cfg := renderedConfig(t, objs)
	g.Expect(cfg.OpenBao.Address).To(Equal("https://openbao.openbao.svc:8200"))
	g.Expect(cfg.OpenBao.CACertFile).To(Equal("/etc/strata/openbao/ca.crt"))
	g.Expect(cfg.OpenBao.Auth.Method).To(Equal("kubernetes"))
	g.Expect(cfg.OpenBao.Auth.Role).To(Equal("strata-broker"))
	g.Expect(cfg.OpenBao.Namespace).To(Equal("openbao"))
	g.Expect(cfg.OpenBao.BindingTokenRole).To(Equal("strata-binding"))
	g.Expect(cfg.Postgres.ServerCertificates.IssuerName).To(Equal("platform-ca"))
	g.Expect(cfg.Tenancy.Limits.Default.InstancesPerService).To(HaveKeyWithValue("postgresql", 5))
	g.Expect(cfg.Tenancy.Limits.Default.CPU).To(Equal("32"))

	d := one(t, objs, "Deployment")
	mounts := map[string]string{}
	for _, m := range get(t, d, "spec", "template", "spec", "containers", 0, "volumeMounts").([]any) {
		mounts[get(t, m, "name").(string)] = get(t, m, "mountPath").(string)
	}
	g.Expect(mounts).To(HaveKeyWithValue("openbao-ca", "/etc/strata/openbao"))

	var egress []string
	for _, r := range get(t, one(t, objs, "NetworkPolicy"), "spec", "egress").([]any) {
		for _, p := range get(t, r, "ports").([]any) {
			egress = append(egress, fmt.Sprintf("%s/%v", get(t, p, "protocol"), get(t, p, "port")))
		}
	}
	g.Expect(egress).To(ContainElement("TCP/8200"))

	values["config"].(map[string]any)["openBao"].(map[string]any)["adress"] = "typo"
	_, err := charts.RenderBroker(values, namespace)
	g.Expect(err).To(MatchError(ContainSubstring("config.openBao.adress is not a broker configuration key")))
}

// TestBackupCredentials renders the chart for an S3-compatible store
// without IAM: the keys' Secret is mounted where the configuration's
// credentialsDir says, under the file names the broker reads.
func TestBackupCredentials(t *testing.T) {
	g := NewWithT(t)
	values := withPassword()
	values["backupCredentials"] = map[string]any{"existingSecret": "s3-keys", "accessKeyIdKey": "id", "secretAccessKeyKey": "secret"}
	values["config"] = map[string]any{"postgres": map[string]any{"backup": map[string]any{
		"bucket": "strata-backups", "endpointURL": "http://minio.minio.svc:9000",
	}}}
	objs := render(t, values)
	cfg := renderedConfig(t, objs)
	g.Expect(cfg.Postgres.Backup.CredentialsDir).To(Equal("/etc/strata/backup"))
	g.Expect(cfg.Postgres.Backup.Bucket).To(Equal("strata-backups"))

	d := one(t, objs, "Deployment")
	mounts := map[string]string{}
	for _, m := range get(t, d, "spec", "template", "spec", "containers", 0, "volumeMounts").([]any) {
		mounts[get(t, m, "name").(string)] = get(t, m, "mountPath").(string)
	}
	g.Expect(mounts).To(HaveKeyWithValue("backup-credentials", "/etc/strata/backup"))
	var items []any
	for _, v := range get(t, d, "spec", "template", "spec", "volumes").([]any) {
		if get(t, v, "name") == "backup-credentials" {
			g.Expect(get(t, v, "secret", "secretName")).To(Equal("s3-keys"))
			items = get(t, v, "secret", "items").([]any)
		}
	}
	g.Expect(items).To(ConsistOf(
		map[string]any{"key": "id", "path": postgres.AccessKeyIDFile},
		map[string]any{"key": "secret", "path": postgres.SecretAccessKeyFile},
	))

	// Without the Secret, nothing is mounted and the keys stay unset.
	objs = render(t, withPassword())
	g.Expect(renderedConfig(t, objs).Postgres.Backup.CredentialsDir).To(BeEmpty())
	g.Expect(renderedConfig(t, objs).Redis.Backup.CredentialsDir).To(BeEmpty())
}

// TestRedisSnapshotConfig: redis.backup takes postgres.backup's keys and
// the same mounted static keys, and the snapshot jobs run the broker's own
// image unless told otherwise.
func TestRedisSnapshotConfig(t *testing.T) {
	g := NewWithT(t)
	values := withPassword()
	values["image"] = map[string]any{"repository": "registry.example/strata-broker", "tag": "v9.9.9"}
	values["backupCredentials"] = map[string]any{"existingSecret": "s3-keys"}
	values["config"] = map[string]any{"redis": map[string]any{"backup": map[string]any{
		"bucket": "strata-snapshots", "pathPrefix": "redis", "endpointURL": "http://minio.minio.svc:9000", "region": "eu-west-1", "kmsKeyId": "k",
	}}}
	cfg := renderedConfig(t, render(t, values))
	g.Expect(cfg.Redis.Backup.Bucket).To(Equal("strata-snapshots"))
	g.Expect(cfg.Redis.Backup.PathPrefix).To(Equal("redis"))
	g.Expect(cfg.Redis.Backup.CredentialsDir).To(Equal("/etc/strata/backup"), "the one mounted Secret")
	g.Expect(cfg.Postgres.Backup.CredentialsDir).To(Equal("/etc/strata/backup"))
	g.Expect(cfg.Redis.SnapshotImage).To(Equal("registry.example/strata-broker:v9.9.9"))

	values["config"].(map[string]any)["redis"].(map[string]any)["snapshotImage"] = "other/image:1"
	g.Expect(renderedConfig(t, render(t, values)).Redis.SnapshotImage).To(Equal("other/image:1"))

	// An IAM role for the snapshots keeps the shared static keys away
	// from them (the broker refuses both).
	iam := map[string]any{"bucket": "strata-snapshots", "iamRoleArn": "arn:aws:iam::111122223333:role/r"}
	values["config"].(map[string]any)["redis"].(map[string]any)["backup"] = iam
	cfg = renderedConfig(t, render(t, values))
	g.Expect(cfg.Redis.Backup.CredentialsDir).To(BeEmpty())
	g.Expect(cfg.Postgres.Backup.CredentialsDir).To(Equal("/etc/strata/backup"))

	values["config"].(map[string]any)["redis"].(map[string]any)["backup"].(map[string]any)["buckt"] = "typo"
	_, err := charts.RenderBroker(values, namespace)
	g.Expect(err).To(MatchError(ContainSubstring("config.redis.backup.buckt is not a broker configuration key")))
}

// TestPostgresSeedConfig: a seed from S3 fetches with the broker's own
// image unless told otherwise, and the CA bundle reaches the broker.
func TestPostgresSeedConfig(t *testing.T) {
	g := NewWithT(t)
	values := withPassword()
	values["image"] = map[string]any{"repository": "registry.example/strata-broker", "tag": "v9.9.9"}
	g.Expect(renderedConfig(t, render(t, values)).Postgres.SeedImage).To(Equal("registry.example/strata-broker:v9.9.9"))
	values["config"] = map[string]any{"postgres": map[string]any{"seedImage": "other/image:1", "seedCABundle": "-----BEGIN CERTIFICATE-----\n"}}
	cfg := renderedConfig(t, render(t, values))
	g.Expect(cfg.Postgres.SeedImage).To(Equal("other/image:1"))
	g.Expect(cfg.Postgres.SeedCABundle).To(Equal("-----BEGIN CERTIFICATE-----\n"))
}

// TestInstancePageConfig: config.instancePage reaches the broker's
// configuration as the broker parses it, and a misspelt key fails the
// install naming it.
func TestInstancePageConfig(t *testing.T) {
	g := NewWithT(t)
	values := withPassword()
	values["config"] = map[string]any{"instancePage": map[string]any{
		"externalURL": "https://strata-broker.example.com", "prometheusURL": "http://prometheus-operated.monitoring:9090",
	}}
	cfg := renderedConfig(t, render(t, values))
	g.Expect(cfg.InstancePage.ExternalURL).To(Equal("https://strata-broker.example.com"))
	g.Expect(cfg.InstancePage.PrometheusURL).To(Equal("http://prometheus-operated.monitoring:9090"))

	g.Expect(renderedConfig(t, render(t, withPassword())).InstancePage.ExternalURL).To(BeEmpty(), "no page by default")

	values["config"] = map[string]any{"instancePage": map[string]any{"externalUrl": "https://strata-broker.example.com"}}
	_, err := charts.RenderBroker(values, namespace)
	g.Expect(err).To(MatchError(ContainSubstring("config.instancePage.externalUrl is not a broker configuration key")))
}

// TestDrillsRBAC: with drills on (the default) the chart makes the drill
// namespace and grants exactly what broker/drill.go does there; off, none
// of it is rendered.
func TestDrillsRBAC(t *testing.T) {
	g := NewWithT(t)
	objs := render(t, withPassword())
	ns := one(t, objs, "Namespace")
	g.Expect(get(t, ns, "metadata", "name")).To(Equal("strata-drills"))
	var drills map[string]any
	for _, r := range find(objs, "Role") {
		if get(t, r, "metadata", "namespace") == "strata-drills" {
			drills = r
		}
	}
	g.Expect(drills).NotTo(BeNil())
	g.Expect(grantTable(rules(t, drills))).To(Equal(map[string][]string{
		"clusters.postgresql.cnpg.io":       {"create", "delete", "get", "patch"},
		"objectstores.barmancloud.cnpg.io":  {"create", "delete", "get", "patch"},
		"secrets":                           {"create", "delete", "get", "patch"},
		"networkpolicies.networking.k8s.io": {"create", "delete", "get", "patch"},
		"jobs.batch":                        {"get"},
		"persistentvolumeclaims":            {"deletecollection", "list"},
		"pods":                              {"list"},
	}))
	for _, r := range find(objs, "RoleBinding") {
		if get(t, r, "metadata", "namespace") == "strata-drills" {
			g.Expect(get(t, r, "roleRef", "name")).To(Equal(get(t, drills, "metadata", "name")))
		}
	}

	values := withPassword()
	values["config"] = map[string]any{"drills": map[string]any{"enabled": false}}
	off := render(t, values)
	g.Expect(find(off, "Namespace")).To(BeEmpty())
	for _, r := range find(off, "Role") {
		g.Expect(get(t, r, "metadata", "namespace")).To(Equal(namespace))
		g.Expect(grantTable(rules(t, r))).NotTo(HaveKey("configmaps"))
	}
	g.Expect(fmt.Sprint(one(t, off, "NetworkPolicy"))).NotTo(ContainSubstring("5432"))
}
