package postgres

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/strata-dev/strata/provisioners"
)

// variant is one way of provisioning a plan; the properties below hold for
// every plan in every variant.
type variant struct {
	name   string
	config func() Config
	params map[string]any
	meshed bool
}

var variants = []variant{
	{name: "defaults", config: baseConfig},
	{name: "meshed", config: baseConfig, meshed: true},
	{name: "full backup config", config: fullBackupConfig},
	{name: "no storage class, no pod monitors", config: func() Config {
		c := baseConfig()
		c.StorageClass = ""
		c.PodMonitor = false
		return c
	}},
	{name: "every parameter", config: fullBackupConfig, params: map[string]any{
		"version":    "16",
		"databases":  []any{"orders", "order_audit", "reports"},
		"extensions": []any{"citext", "pg_trgm", "uuid-ossp"},
		"audit":      map[string]any{"classes": []any{"write", "ddl", "role", "misc_set"}},
		"xa":         true,
	}},
}

// forEachRendering builds every plan in every variant.
func forEachRendering(t *testing.T, f func(t *testing.T, g Gomega, inst provisioners.Instance, objs []*unstructured.Unstructured)) {
	for _, plan := range planNames {
		for _, v := range variants {
			t.Run(plan+"/"+v.name, func(t *testing.T) {
				inst := testInstance(t, plan, v.params)
				inst.Meshed = v.meshed
				f(t, NewWithT(t), inst, build(t, v.config(), inst))
			})
		}
	}
}

func TestEveryObjectHasTheInstanceLabelsAndNamespace(t *testing.T) {
	forEachRendering(t, func(t *testing.T, g Gomega, inst provisioners.Instance, objs []*unstructured.Unstructured) {
		g.Expect(objs).NotTo(BeEmpty())
		for _, o := range objs {
			what := o.GetKind() + " " + o.GetName()
			g.Expect(o.GetNamespace()).To(Equal(testNamespace), what)
			labels := o.GetLabels()
			g.Expect(labels).To(HaveKeyWithValue(provisioners.LabelInstanceID, testInstanceID), what)
			g.Expect(labels).To(HaveKeyWithValue(provisioners.LabelPlan, inst.Plan.Name), what)
			g.Expect(labels).To(HaveKeyWithValue(provisioners.LabelTenant, testNamespace), what)
			g.Expect(labels).To(HaveKeyWithValue(provisioners.LabelService, "postgresql"), what)
			g.Expect(labels).To(HaveKeyWithValue("app.kubernetes.io/managed-by", "strata"), what)
		}
		// The Cluster passes them on to its pods, PVCs and Services.
		inherited := nestedMap(t, one(t, objs, "Cluster"), "spec", "inheritedMetadata", "labels")
		for k, v := range inst.Labels() {
			g.Expect(inherited).To(HaveKeyWithValue(k, v))
		}
	})
}

func TestObjectNamesAreValidAndUnique(t *testing.T) {
	forEachRendering(t, func(t *testing.T, g Gomega, inst provisioners.Instance, objs []*unstructured.Unstructured) {
		seen := map[string]bool{}
		for _, o := range objs {
			key := o.GetAPIVersion() + "/" + o.GetKind() + "/" + o.GetName()
			g.Expect(seen).NotTo(HaveKey(key), "duplicate object")
			seen[key] = true
			g.Expect(validation.IsDNS1123Subdomain(o.GetName())).To(BeEmpty(), key)
			for k, v := range o.GetLabels() {
				g.Expect(validation.IsQualifiedName(k)).To(BeEmpty(), key)
				g.Expect(validation.IsValidLabelValue(v)).To(BeEmpty(), key)
			}
		}
	})
}

// CloudNativePG's webhook wants a DNS-1035 Cluster name of at most 50
// characters; the Pooler's name becomes a Service name (DNS-1035, 63).
func TestNamesFitKubernetesLimitsForAnyInstanceID(t *testing.T) {
	ids := []string{
		testInstanceID,
		strings.Repeat("a", 40),          // longest id used verbatim
		strings.Repeat("b", 41),          // hashed
		"Upper-Case-ID",                  // hashed: not a DNS label
		"0123",                           // starts with a digit
		"tenant/instance:with?odd chars", // hashed
		strings.Repeat("9", 300),         // very long
		"a7c2e1b0-3f44-4c1d-8e2a-9b1c0d2e3f4a-extra", // UUID-like, too long
	}
	for _, id := range ids {
		t.Run(id[:min(len(id), 20)], func(t *testing.T) {
			g := NewWithT(t)
			inst := instanceWithID(t, "ha", id, map[string]any{"databases": []any{"a_database_name_that_is_long_enough"}})
			n := NamesOf(inst)
			g.Expect(validation.IsDNS1035Label(n.Cluster)).To(BeEmpty())
			g.Expect(len(n.Cluster)).To(BeNumerically("<=", 50))
			g.Expect(validation.IsDNS1035Label(n.Pooler)).To(BeEmpty())
			g.Expect(n.Pooler).NotTo(Equal(n.Cluster))
			objs := build(t, baseConfig(), inst)
			for _, o := range objs {
				g.Expect(validation.IsDNS1123Subdomain(o.GetName())).To(BeEmpty(), o.GetKind())
				for _, v := range o.GetLabels() {
					g.Expect(validation.IsValidLabelValue(v)).To(BeEmpty(), o.GetKind())
				}
			}
		})
	}
}

func TestPgHBARejectsNonTLSFirst(t *testing.T) {
	forEachRendering(t, func(t *testing.T, g Gomega, inst provisioners.Instance, objs []*unstructured.Unstructured) {
		rules := nestedSlice(t, one(t, objs, "Cluster"), "spec", "postgresql", "pg_hba")
		idx := func(rule string) int {
			return slices.IndexFunc(rules, func(r any) bool { return strings.Join(strings.Fields(r.(string)), " ") == rule })
		}
		v4, v6 := idx("hostnossl all all 0.0.0.0/0 reject"), idx("hostnossl all all ::/0 reject")
		g.Expect(v4).To(BeNumerically(">=", 0), "no IPv4 hostnossl reject")
		g.Expect(v6).To(BeNumerically(">=", 0), "no IPv6 hostnossl reject")
		firstSSL := slices.IndexFunc(rules, func(r any) bool { return strings.HasPrefix(r.(string), "hostssl") })
		g.Expect(firstSSL).To(BeNumerically(">", max(v4, v6)), "a hostssl rule comes before the rejects")
		for _, r := range rules {
			fields := strings.Fields(r.(string))
			// Nothing may accept a plain "host" connection or a weak method.
			g.Expect(fields[0]).To(BeElementOf("hostssl", "hostnossl"), r)
			g.Expect(fields[len(fields)-1]).To(BeElementOf("reject", "scram-sha-256"), r)
		}
	})
}

func TestClusterSecurityDefaults(t *testing.T) {
	forEachRendering(t, func(t *testing.T, g Gomega, inst provisioners.Instance, objs []*unstructured.Unstructured) {
		cluster := one(t, objs, "Cluster")
		params := nestedMap(t, cluster, "spec", "postgresql", "parameters")
		g.Expect(params).To(HaveKeyWithValue("ssl_min_protocol_version", "TLSv1.2"))
		g.Expect(params).To(HaveKeyWithValue("password_encryption", "scram-sha-256"))
		g.Expect(params).To(HaveKeyWithValue("log_connections", "on"))
		g.Expect(params).To(HaveKey("pgaudit.log"))
		g.Expect(params["pgaudit.log"]).NotTo(BeEmpty())
		super, found, err := unstructured.NestedBool(cluster.Object, "spec", "enableSuperuserAccess")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(found).To(BeTrue(), "enableSuperuserAccess must be explicit")
		g.Expect(super).To(BeFalse())
		// Every parameter value is a string, as the CRD requires.
		for k, v := range params {
			g.Expect(v).To(BeAssignableToTypeOf(""), k)
		}
		// None of the parameters CloudNativePG fixes or blocks.
		for k := range params {
			g.Expect(k).NotTo(BeElementOf("shared_preload_libraries", "archive_mode", "archive_command",
				"synchronous_standby_names", "listen_addresses", "port", "ssl", "log_destination"), k)
		}
	})
}

// TestClusterIsTunedForItsResources: every dedicated Cluster carries the
// settings Tuning derives from its own resolved resources, whatever the
// parameters resized.
func TestClusterIsTunedForItsResources(t *testing.T) {
	forEachRendering(t, func(t *testing.T, g Gomega, inst provisioners.Instance, objs []*unstructured.Unstructured) {
		s, err := Resolve(inst.Plan, inst.Params)
		g.Expect(err).NotTo(HaveOccurred())
		tuning, err := Tuning(s, inst.Plan.Postgres.MaxConnections)
		g.Expect(err).NotTo(HaveOccurred())
		params := nestedMap(t, one(t, objs, "Cluster"), "spec", "postgresql", "parameters")
		for k, v := range tuning {
			g.Expect(params).To(HaveKeyWithValue(k, v), "%s for %s/%s", k, s.CPU, s.Memory)
		}
	})
}

func TestHAHasQuorumAndZoneSpread(t *testing.T) {
	forEachRendering(t, func(t *testing.T, g Gomega, inst provisioners.Instance, objs []*unstructured.Unstructured) {
		cluster := one(t, objs, "Cluster")
		sync, hasSync, _ := unstructured.NestedMap(cluster.Object, "spec", "postgresql", "synchronous")
		tsc, hasTSC, _ := unstructured.NestedSlice(cluster.Object, "spec", "topologySpreadConstraints")
		if inst.Plan.Name != "ha" {
			g.Expect(hasSync).To(BeFalse(), "only ha replicates synchronously")
			g.Expect(hasTSC).To(BeFalse())
			return
		}
		g.Expect(hasSync).To(BeTrue())
		g.Expect(sync).To(HaveKeyWithValue("method", "any"))
		g.Expect(sync).To(HaveKeyWithValue("number", int64(1)))
		g.Expect(sync).To(HaveKeyWithValue("dataDurability", "required"))
		// ANY 1 of 2 standbys without a quorum check can promote the
		// standby that missed the latest acknowledged commits.
		g.Expect(sync).To(HaveKeyWithValue("failoverQuorum", true))
		g.Expect(hasTSC).To(BeTrue())
		g.Expect(tsc).To(ContainElement(And(
			HaveKeyWithValue("topologyKey", "topology.kubernetes.io/zone"),
			HaveKeyWithValue("whenUnsatisfiable", "DoNotSchedule"),
			HaveKeyWithValue("maxSkew", int64(1)),
			HaveKeyWithValue("labelSelector", HaveKeyWithValue("matchLabels",
				HaveKeyWithValue("cnpg.io/cluster", NamesOf(inst).Cluster))),
		)))
		g.Expect(nestedString(t, cluster, "spec", "affinity", "podAntiAffinityType")).To(Equal("required"))
		// A quorum of 1 needs at least one standby beyond it to survive the
		// loss of a standby.
		instances, _, _ := unstructured.NestedInt64(cluster.Object, "spec", "instances")
		g.Expect(instances).To(BeNumerically(">=", 3))
	})
}

// A single instance has no standby to switch over to, so CloudNativePG's
// primary PDB (no disruption allowed) would block node drains forever.
func TestPodDisruptionBudgetsOnlyWithAStandby(t *testing.T) {
	forEachRendering(t, func(t *testing.T, g Gomega, inst provisioners.Instance, objs []*unstructured.Unstructured) {
		enabled, found, err := unstructured.NestedBool(one(t, objs, "Cluster").Object, "spec", "enablePDB")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(found).To(BeTrue(), "enablePDB is always explicit")
		g.Expect(enabled).To(Equal(inst.Plan.Postgres.Instances > 1), "plan %s", inst.Plan.Name)
	})
}

// The pooler must survive what the instances survive: spread across nodes
// always, and across zones as the plan spreads its instances.
func TestPoolerIsSpreadLikeTheInstances(t *testing.T) {
	forEachRendering(t, func(t *testing.T, g Gomega, inst provisioners.Instance, objs []*unstructured.Unstructured) {
		poolers := byKind(objs, "Pooler")
		if inst.Plan.Postgres.Pooler == nil {
			return
		}
		selector := HaveKeyWithValue("matchLabels", HaveKeyWithValue("cnpg.io/poolerName", NamesOf(inst).Pooler))
		terms := nestedSlice(t, poolers[0], "spec", "template", "spec", "affinity", "podAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution")
		g.Expect(terms).To(ContainElement(HaveKeyWithValue("podAffinityTerm", And(
			HaveKeyWithValue("topologyKey", "kubernetes.io/hostname"), HaveKeyWithValue("labelSelector", selector)))))
		want := map[string]string{"preferred": "ScheduleAnyway", "required": "DoNotSchedule"}[inst.Plan.Postgres.ZoneSpread]
		g.Expect(want).NotTo(BeEmpty(), "every plan with a pooler spreads it across zones")
		g.Expect(nestedSlice(t, poolers[0], "spec", "template", "spec", "topologySpreadConstraints")).To(ConsistOf(And(
			HaveKeyWithValue("topologyKey", "topology.kubernetes.io/zone"),
			HaveKeyWithValue("whenUnsatisfiable", want),
			HaveKeyWithValue("maxSkew", int64(1)),
			HaveKeyWithValue("labelSelector", selector))))
	})
}

func TestPoolerRequiresClientTLS(t *testing.T) {
	forEachRendering(t, func(t *testing.T, g Gomega, inst provisioners.Instance, objs []*unstructured.Unstructured) {
		poolers := byKind(objs, "Pooler")
		if inst.Plan.Postgres.Pooler == nil {
			g.Expect(poolers).To(BeEmpty())
			return
		}
		g.Expect(poolers).To(HaveLen(1))
		pgb := nestedMap(t, poolers[0], "spec", "pgbouncer", "parameters")
		g.Expect(pgb).To(HaveKeyWithValue("client_tls_sslmode", "require"))
		g.Expect(nestedString(t, poolers[0], "spec", "pgbouncer", "poolMode")).To(BeElementOf("session", "transaction"))
		g.Expect(nestedString(t, poolers[0], "spec", "cluster", "name")).To(Equal(NamesOf(inst).Cluster))
		// PgBouncer presents the Cluster's server certificate, so the
		// pooler's Service names must be in it.
		alt := nestedSlice(t, one(t, objs, "Cluster"), "spec", "certificates", "serverAltDNSNames")
		g.Expect(alt).To(ContainElement(NamesOf(inst).Pooler + "." + testNamespace + ".svc"))
	})
}

func TestBackupObjects(t *testing.T) {
	forEachRendering(t, func(t *testing.T, g Gomega, inst provisioners.Instance, objs []*unstructured.Unstructured) {
		cluster := one(t, objs, "Cluster")
		if inst.Plan.Postgres.Backup == nil {
			g.Expect(byKind(objs, "ObjectStore")).To(BeEmpty())
			g.Expect(byKind(objs, "ScheduledBackup")).To(BeEmpty())
			g.Expect(byKind(objs, "Pooler")).To(BeEmpty())
			_, hasPlugins, _ := unstructured.NestedSlice(cluster.Object, "spec", "plugins")
			g.Expect(hasPlugins).To(BeFalse())
			return
		}
		n := NamesOf(inst)
		store := one(t, objs, "ObjectStore")
		g.Expect(store.GetName()).To(Equal(n.ObjectStore))
		g.Expect(store.GetAnnotations()).To(HaveKeyWithValue(provisioners.AnnotationRetain, "true"))
		for _, part := range []string{"wal", "data"} {
			g.Expect(nestedString(t, store, "spec", "configuration", part, "encryption")).To(Equal("aws:kms"), part)
		}
		g.Expect(nestedString(t, store, "spec", "configuration", "destinationPath")).To(
			And(HavePrefix("s3://"+testBucket+"/"), HaveSuffix("/"+testNamespace)))
		creds := nestedMap(t, store, "spec", "configuration", "s3Credentials")
		g.Expect(creds).To(Equal(map[string]any{"inheritFromIAMRole": true}), "no keys are ever stored")
		g.Expect(nestedString(t, store, "spec", "retentionPolicy")).To(MatchRegexp(`^[1-9][0-9]*[dwm]$`))
		_, hasServerName, _ := unstructured.NestedString(store.Object, "spec", "configuration", "serverName")
		g.Expect(hasServerName).To(BeFalse(), "the plugin parameter carries the server name")

		plugins := nestedSlice(t, cluster, "spec", "plugins")
		g.Expect(plugins).To(ConsistOf(And(
			HaveKeyWithValue("name", "barman-cloud.cloudnative-pg.io"),
			HaveKeyWithValue("isWALArchiver", true),
			HaveKeyWithValue("parameters", HaveKeyWithValue("barmanObjectName", n.ObjectStore)),
		)))
		sb := one(t, objs, "ScheduledBackup")
		g.Expect(nestedString(t, sb, "spec", "method")).To(Equal("plugin"))
		g.Expect(nestedString(t, sb, "spec", "pluginConfiguration", "name")).To(Equal("barman-cloud.cloudnative-pg.io"))
		g.Expect(strings.Fields(nestedString(t, sb, "spec", "schedule"))).To(HaveLen(6), "six-field cron")
		g.Expect(nestedString(t, sb, "spec", "cluster", "name")).To(Equal(n.Cluster))

		// The ObjectStore comes before the Cluster that names it.
		g.Expect(slices.Index(objs, store)).To(BeNumerically("<", slices.Index(objs, cluster)))
	})
}

// With static keys (an S3-compatible store without IAM), each instance
// gets them in a Secret of its namespace, named by the ObjectStore and kept
// with it at deprovision; no IAM role is inherited.
func TestStaticS3KeysSecret(t *testing.T) {
	g := NewWithT(t)
	for _, plan := range []string{"standard", "ha"} {
		inst := testInstance(t, plan, nil)
		n := NamesOf(inst)
		objs := build(t, staticKeysConfig(), inst)
		secret := one(t, objs, "Secret")
		g.Expect(secret.GetName()).To(Equal(n.BackupCredentials))
		g.Expect(secret.GetNamespace()).To(Equal(testNamespace))
		g.Expect(secret.GetAnnotations()).To(HaveKeyWithValue(provisioners.AnnotationRetain, "true"))
		g.Expect(secret.Object["stringData"]).To(Equal(map[string]any{accessKeyIDKey: testAccessKeyID, secretAccessKeyKey: testSecretKey}))
		store := one(t, objs, "ObjectStore")
		g.Expect(nestedMap(t, store, "spec", "configuration", "s3Credentials")).To(Equal(map[string]any{
			"accessKeyId":     map[string]any{"name": n.BackupCredentials, "key": accessKeyIDKey},
			"secretAccessKey": map[string]any{"name": n.BackupCredentials, "key": secretAccessKeyKey},
		}))
		g.Expect(nestedString(t, store, "spec", "configuration", "endpointURL")).To(Equal(staticKeysConfig().Backup.EndpointURL))
		// The Secret comes before the ObjectStore that names it.
		g.Expect(slices.Index(objs, secret)).To(BeNumerically("<", slices.Index(objs, store)))
		_, found, _ := unstructured.NestedFieldNoCopy(one(t, objs, "Cluster").Object, "spec", "serviceAccountTemplate")
		g.Expect(found).To(BeFalse(), "no IAM role annotation with static keys")
	}
	// dev-lite keeps no backups: no keys are rendered.
	g.Expect(byKind(build(t, staticKeysConfig(), testInstance(t, "dev-lite", nil)), "Secret")).To(BeEmpty())
}

func TestLoadCredentials(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	g.Expect(os.WriteFile(filepath.Join(dir, AccessKeyIDFile), []byte("AKID\n"), 0o600)).To(Succeed())
	b := BackupConfig{BackupConfig: provisioners.BackupConfig{CredentialsDir: dir}}
	g.Expect(b.LoadCredentials("postgres.backup")).To(MatchError(ContainSubstring(SecretAccessKeyFile)), "a missing file is named")
	g.Expect(os.WriteFile(filepath.Join(dir, SecretAccessKeyFile), []byte("s3cr3t"), 0o600)).To(Succeed())
	g.Expect(b.LoadCredentials("postgres.backup")).To(Succeed())
	g.Expect(b.Credentials).To(Equal(&S3Keys{AccessKeyID: "AKID", SecretAccessKey: "s3cr3t"}))

	b = BackupConfig{BackupConfig: provisioners.BackupConfig{CredentialsDir: dir, IAMRoleARN: testIAMRole}}
	g.Expect(b.LoadCredentials("postgres.backup")).To(MatchError(ContainSubstring("exclude each other")))
	b = BackupConfig{}
	g.Expect(b.LoadCredentials("postgres.backup")).To(Succeed())
	g.Expect(b.Credentials).To(BeNil())
}

func TestKMSKeyIsPassedToBothBarmanTools(t *testing.T) {
	g := NewWithT(t)
	objs := build(t, fullBackupConfig(), testInstance(t, "standard", nil))
	store := one(t, objs, "ObjectStore")
	want := []any{"--sse-kms-key-id=" + testKMSKey}
	g.Expect(nestedSlice(t, store, "spec", "configuration", "wal", "archiveAdditionalCommandArgs")).To(Equal(want))
	g.Expect(nestedSlice(t, store, "spec", "configuration", "data", "additionalCommandArgs")).To(Equal(want))
	g.Expect(nestedString(t, store, "spec", "configuration", "destinationPath")).To(Equal("s3://" + testBucket + "/pg/eu/" + testNamespace))
	g.Expect(nestedString(t, store, "spec", "configuration", "endpointURL")).To(Equal(testEndpoint))
	env := nestedSlice(t, store, "spec", "instanceSidecarConfiguration", "env")
	g.Expect(env).To(ContainElement(map[string]any{"name": "AWS_REGION", "value": testRegion}))
	cluster := one(t, objs, "Cluster")
	g.Expect(nestedMap(t, cluster, "spec", "serviceAccountTemplate", "metadata", "annotations")).To(
		HaveKeyWithValue("eks.amazonaws.com/role-arn", testIAMRole))

	// Without the optional settings none of these fields is rendered.
	store = one(t, build(t, baseConfig(), testInstance(t, "standard", nil)), "ObjectStore")
	for _, path := range [][]string{
		{"spec", "configuration", "wal", "archiveAdditionalCommandArgs"},
		{"spec", "configuration", "data", "additionalCommandArgs"},
		{"spec", "configuration", "endpointURL"},
		{"spec", "instanceSidecarConfiguration", "env"},
	} {
		_, found, _ := unstructured.NestedFieldNoCopy(store.Object, path...)
		g.Expect(found).To(BeFalse(), strings.Join(path, "."))
	}
}

func TestXASetsMaxPreparedTransactions(t *testing.T) {
	for _, plan := range planNames {
		t.Run(plan, func(t *testing.T) {
			g := NewWithT(t)
			_, p := testPlan(t, plan)
			on := nestedMap(t, one(t, build(t, baseConfig(), testInstance(t, plan, map[string]any{"xa": true})), "Cluster"),
				"spec", "postgresql", "parameters")
			g.Expect(on).To(HaveKeyWithValue("max_prepared_transactions", on["max_connections"]))
			g.Expect(on["max_prepared_transactions"]).NotTo(Equal("0"))
			g.Expect(on["max_connections"]).To(Equal(strconv.Itoa(p.Postgres.MaxConnections)))
			for _, params := range []map[string]any{nil, {"xa": false}} {
				off := nestedMap(t, one(t, build(t, baseConfig(), testInstance(t, plan, params)), "Cluster"),
					"spec", "postgresql", "parameters")
				g.Expect(off).NotTo(HaveKey("max_prepared_transactions"))
			}
		})
	}
}

func TestDatabasesAndExtensions(t *testing.T) {
	g := NewWithT(t)
	inst := testInstance(t, "standard", map[string]any{
		"databases": []any{"orders", "order_audit"}, "extensions": []any{"vector", "citext"},
	})
	objs := build(t, baseConfig(), inst)
	dbs := byKind(objs, "Database")
	g.Expect(dbs).To(HaveLen(2))
	for i, name := range []string{"orders", "order_audit"} {
		g.Expect(dbs[i].GetName()).To(Equal(DatabaseObjectName(inst, name)))
		g.Expect(nestedString(t, dbs[i], "spec", "name")).To(Equal(name))
		g.Expect(nestedString(t, dbs[i], "spec", "owner")).To(Equal(OwnerRole))
		g.Expect(nestedString(t, dbs[i], "spec", "cluster", "name")).To(Equal(NamesOf(inst).Cluster))
		g.Expect(nestedSlice(t, dbs[i], "spec", "extensions")).To(Equal([]any{
			map[string]any{"name": "vector", "ensure": "present"},
			map[string]any{"name": "citext", "ensure": "present"},
		}))
	}
	g.Expect(DatabaseObjectName(inst, "order_audit")).To(HaveSuffix("-db-order-audit"))
	// The first database is the one initdb creates.
	g.Expect(nestedString(t, one(t, objs, "Cluster"), "spec", "bootstrap", "initdb", "database")).To(Equal("orders"))

	// No extensions, no extensions field.
	db := one(t, build(t, baseConfig(), testInstance(t, "dev-lite", nil)), "Database")
	_, found, _ := unstructured.NestedSlice(db.Object, "spec", "extensions")
	g.Expect(found).To(BeFalse())
}

func TestMeshedNamespaces(t *testing.T) {
	forEachRendering(t, func(t *testing.T, g Gomega, inst provisioners.Instance, objs []*unstructured.Unstructured) {
		pas := byKind(objs, "PeerAuthentication")
		annotations, _, _ := unstructured.NestedStringMap(one(t, objs, "Cluster").Object, "spec", "inheritedMetadata", "annotations")
		if !inst.Meshed {
			g.Expect(pas).To(BeEmpty())
			g.Expect(annotations).NotTo(HaveKey("proxy.istio.io/config"))
			return
		}
		g.Expect(annotations).To(HaveKeyWithValue("proxy.istio.io/config", ContainSubstring(`"holdApplicationUntilProxyStarts": true`)))
		want := 1
		if inst.Plan.Postgres.Pooler != nil {
			want = 2
		}
		g.Expect(pas).To(HaveLen(want))
		cluster := pas[0]
		g.Expect(nestedString(t, cluster, "spec", "mtls", "mode")).To(Equal("STRICT"))
		ports := nestedMap(t, cluster, "spec", "portLevelMtls")
		g.Expect(ports).To(HaveKeyWithValue("8000", map[string]any{"mode": "PERMISSIVE"}), "the operator is outside the mesh")
		g.Expect(ports).To(HaveKeyWithValue("9187", map[string]any{"mode": "PERMISSIVE"}))
		g.Expect(ports).NotTo(HaveKey("5432"), "clients stay on mesh mTLS")
	})
}

// meshMonitors are the PodMonitors of the sidecars among objs.
func meshMonitors(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, pm := range byKind(objs, "PodMonitor") {
		if strings.HasSuffix(pm.GetName(), provisioners.MeshMonitorSuffix) {
			out = append(out, pm)
		}
	}
	return out
}

// TestMeshMetrics: in a meshed namespace with PodMonitors on, one more
// PodMonitor scrapes the Istio sidecars of exactly the instance's pods
// (instances and PgBouncer) on Envoy's Prometheus port and keeps only the
// istio_tcp_* series, and the NetworkPolicies admit the monitoring
// namespace to that port; otherwise neither exists.
func TestMeshMetrics(t *testing.T) {
	forEachRendering(t, func(t *testing.T, g Gomega, inst provisioners.Instance, objs []*unstructured.Unstructured) {
		monitors := meshMonitors(objs)
		podMonitors := len(byKind(objs, "PodMonitor")) > 0
		for _, np := range byKind(objs, "NetworkPolicy") {
			for _, rule := range nestedSlice(t, np, "spec", "ingress") {
				r := rule.(map[string]any)
				for _, port := range r["ports"].([]any) {
					if port.(map[string]any)["port"] != int64(provisioners.MeshMetricsPort) {
						continue
					}
					g.Expect(inst.Meshed).To(BeTrue(), "%s admits the sidecar's port in a namespace without sidecars", np.GetName())
					g.Expect(r["from"]).To(Equal([]any{provisioners.FromNamespace("monitoring")}), "%s: only Prometheus reaches the sidecar's port", np.GetName())
				}
			}
			if inst.Meshed {
				var monitoring []any
				for _, rule := range nestedSlice(t, np, "spec", "ingress") {
					r := rule.(map[string]any)
					if reflect.DeepEqual(r["from"], []any{provisioners.FromNamespace("monitoring")}) {
						monitoring = append(monitoring, r["ports"].([]any)...)
					}
				}
				g.Expect(monitoring).To(ContainElement(map[string]any{"protocol": "TCP", "port": int64(provisioners.MeshMetricsPort)}), "%s", np.GetName())
			}
		}
		if !inst.Meshed || !podMonitors {
			g.Expect(monitors).To(BeEmpty())
			return
		}
		g.Expect(monitors).To(HaveLen(1))
		pm := monitors[0]
		g.Expect(pm.GetName()).To(Equal(inst.Name + "-mesh"))
		g.Expect(nestedMap(t, pm, "spec", "selector")).To(Equal(map[string]any{
			"matchLabels": map[string]any{provisioners.LabelInstanceID: testInstanceID},
		}), "every pod of the instance, and only its pods")
		// The instances and the pooler carry that label.
		inherited := nestedMap(t, one(t, objs, "Cluster"), "spec", "inheritedMetadata", "labels")
		g.Expect(inherited).To(HaveKeyWithValue(provisioners.LabelInstanceID, testInstanceID))
		if inst.Plan.Postgres.Pooler != nil {
			g.Expect(nestedMap(t, one(t, objs, "Pooler"), "spec", "template", "metadata", "labels")).To(HaveKeyWithValue(provisioners.LabelInstanceID, testInstanceID))
		}
		eps := nestedSlice(t, pm, "spec", "podMetricsEndpoints")
		g.Expect(eps).To(HaveLen(1))
		ep := eps[0].(map[string]any)
		g.Expect(ep).To(HaveKeyWithValue("port", "http-envoy-prom"))
		g.Expect(ep).To(HaveKeyWithValue("path", "/stats/prometheus"))
		g.Expect(ep["metricRelabelings"]).To(Equal([]any{map[string]any{
			"action": "keep", "sourceLabels": []any{"__name__"}, "regex": "istio_tcp_.+",
		}}))
		g.Expect(ep["relabelings"]).To(ContainElement(map[string]any{
			"action": "replace", "targetLabel": "strata_instance_id", "replacement": testInstanceID,
		}))
	})
}

// The sidecar's stats port is outside Envoy's inbound capture, so the
// PeerAuthentications and the baseline's AuthorizationPolicy have no say
// on it and do not list it.
func TestMeshMetricsPortIsNotAPlaintextPort(t *testing.T) {
	g := NewWithT(t)
	g.Expect(MeshPlaintextPorts()).NotTo(ContainElement(provisioners.MeshMetricsPort))
	inst := testInstance(t, "standard", nil)
	inst.Meshed = true
	for _, pa := range byKind(build(t, baseConfig(), inst), "PeerAuthentication") {
		g.Expect(nestedMap(t, pa, "spec", "portLevelMtls")).NotTo(HaveKey(strconv.Itoa(provisioners.MeshMetricsPort)))
	}
}

func TestNetworkPolicies(t *testing.T) {
	forEachRendering(t, func(t *testing.T, g Gomega, inst provisioners.Instance, objs []*unstructured.Unstructured) {
		nps := byKind(objs, "NetworkPolicy")
		want := 1
		if inst.Plan.Postgres.Pooler != nil {
			want = 2
		}
		g.Expect(nps).To(HaveLen(want))
		for _, np := range nps {
			g.Expect(nestedSlice(t, np, "spec", "policyTypes")).To(Equal([]any{"Ingress"}))
			for _, rule := range nestedSlice(t, np, "spec", "ingress") {
				// Every source is this namespace or a named platform namespace:
				// no rule admits the whole cluster.
				for _, from := range rule.(map[string]any)["from"].([]any) {
					peer := from.(map[string]any)
					if ns, ok := peer["namespaceSelector"]; ok {
						g.Expect(ns).To(HaveKeyWithValue("matchLabels", HaveKey("kubernetes.io/metadata.name")))
					} else {
						g.Expect(peer).To(HaveKey("podSelector"))
					}
				}
			}
		}
		sel := nestedMap(t, nps[0], "spec", "podSelector", "matchLabels")
		g.Expect(sel).To(Equal(map[string]any{"cnpg.io/cluster": NamesOf(inst).Cluster}))
	})
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name   string
		plan   string
		config func() Config
		params map[string]any
		want   string
	}{
		{"standard without a bucket", "standard", DefaultConfig, nil, "postgres.backup.bucket"},
		{"ha without a bucket", "ha", func() Config { c := baseConfig(); c.Backup.Bucket = ""; return c }, nil, "postgres.backup.bucket"},
		{"no image for the version", "standard", func() Config {
			c := baseConfig()
			delete(c.Images, "15")
			return c
		}, map[string]any{"version": "15"}, "parameters.version"},
		{"no image for the default version", "dev-lite", func() Config { c := baseConfig(); c.Images = nil; return c }, nil, "parameters.version"},
		{"bad parameters", "dev-lite", baseConfig, map[string]any{"resources": map[string]any{"memory": "64Gi"}}, "parameters.resources.memory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			objs, err := (&Provisioner{Config: tc.config()}).Build(testInstance(t, tc.plan, tc.params))
			g.Expect(err).To(MatchError(ContainSubstring(tc.want)))
			g.Expect(objs).To(BeNil())
		})
	}
	// dev-lite needs no bucket.
	g := NewWithT(t)
	_, err := (&Provisioner{Config: DefaultConfig()}).Build(testInstance(t, "dev-lite", nil))
	g.Expect(err).NotTo(HaveOccurred())
}

// Build must not mutate its input nor share state between renderings.
func TestBuildDoesNotAliasInputs(t *testing.T) {
	g := NewWithT(t)
	params := map[string]any{"databases": []any{"orders"}, "extensions": []any{"citext"}}
	inst := testInstance(t, "ha", params)
	c := fullBackupConfig()
	first := build(t, c, inst)
	want, err := renderYAML(first)
	g.Expect(err).NotTo(HaveOccurred())
	// Scribble over the first rendering's labels and specs.
	for _, o := range first {
		o.SetLabels(map[string]string{"x": "y"})
		o.Object["spec"] = map[string]any{}
	}
	g.Expect(params).To(Equal(map[string]any{"databases": []any{"orders"}, "extensions": []any{"citext"}}))
	again, err := renderYAML(build(t, c, inst))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(again)).To(Equal(string(want)))
}

// Every container the instance's objects put in a pod asks for cpu and
// memory, requests and limits alike: a tenant namespace with a
// ResourceQuota on any of them admits no pod that does not, and CloudNativePG
// would then never get its instances, sidecars or PgBouncers running.
func TestEveryContainerHasResources(t *testing.T) {
	for _, plan := range planNames {
		t.Run(plan, func(t *testing.T) {
			g := NewWithT(t)
			objs := build(t, baseConfig(), testInstance(t, plan, nil))
			containers := map[string]map[string]any{
				"PostgreSQL": nestedMap(t, one(t, objs, "Cluster"), "spec", "resources"),
			}
			if p := testInstance(t, plan, nil).Plan.Postgres; p.Backup != nil {
				containers["barman-cloud sidecar"] = nestedMap(t, one(t, objs, "ObjectStore"), "spec", "instanceSidecarConfiguration", "resources")
			}
			if p := testInstance(t, plan, nil).Plan.Postgres; p.Pooler != nil {
				cs, _, _ := unstructured.NestedSlice(one(t, objs, "Pooler").Object, "spec", "template", "spec", "containers")
				g.Expect(cs).To(HaveLen(1))
				g.Expect(cs[0]).To(HaveKeyWithValue("name", "pgbouncer"))
				containers["PgBouncer"] = cs[0].(map[string]any)["resources"].(map[string]any)
				// CloudNativePG's init container of the Pooler's pods, which
				// has no resources of its own (seen refused by a quota on
				// the real platform).
				inits, _, _ := unstructured.NestedSlice(one(t, objs, "Pooler").Object, "spec", "template", "spec", "initContainers")
				g.Expect(inits).To(HaveLen(1))
				g.Expect(inits[0]).To(HaveKeyWithValue("name", "bootstrap-controller"))
				containers["PgBouncer's bootstrap-controller"] = inits[0].(map[string]any)["resources"].(map[string]any)
			}
			for name, res := range containers {
				for _, kind := range []string{"requests", "limits"} {
					g.Expect(res).To(HaveKey(kind), "%s %s", name, kind)
					g.Expect(res[kind]).To(And(HaveKey("cpu"), HaveKey("memory")), "%s %s", name, kind)
				}
			}
		})
	}
}
