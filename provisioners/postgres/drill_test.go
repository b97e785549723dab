package postgres

import (
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/provisioners"
)

const testDrillNamespace = "strata-drills"

func drillOf(t *testing.T, plan string) (provisioners.Instance, provisioners.Instance) {
	t.Helper()
	src := instanceWithID(t, plan, testSourceID, map[string]any{"storage_gb": float64(30), "replicas": float64(2)})
	return src, DrillInstance(src, testDrillNamespace, provisioners.RestoreSource{InstanceID: src.ID, Name: src.Name, Namespace: src.Namespace})
}

func kindsOf(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	return out
}

// The drill's Cluster is the restore provision's (same recovery
// bootstrap, same ObjectStore over the source's backups) with nothing that
// writes to a bucket and nothing beyond one instance.
func TestBuildDrill(t *testing.T) {
	for _, tc := range []struct {
		name   string
		plan   string
		config func() Config
		kinds  []string
	}{
		{name: "standard, IAM role", plan: "standard", config: baseConfig, kinds: []string{
			"ObjectStore/drill-pg-" + testSourceID + "-restore-source", "Cluster/drill-pg-" + testSourceID, "NetworkPolicy/drill-pg-" + testSourceID,
		}},
		{name: "ha, static keys", plan: "ha", config: fullBackupConfigWithKeys, kinds: []string{
			"Secret/drill-pg-" + testSourceID + "-backup-s3", "ObjectStore/drill-pg-" + testSourceID + "-restore-source",
			"Cluster/drill-pg-" + testSourceID, "NetworkPolicy/drill-pg-" + testSourceID,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			p := &Provisioner{Config: tc.config()}
			p.Config.ServerCertificates.IssuerName = "platform-ca"
			src, drill := drillOf(t, tc.plan)
			objs, err := p.BuildDrill(drill, "strata-system")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(kindsOf(objs)).To(Equal(tc.kinds))
			for _, o := range objs {
				g.Expect(o.GetNamespace()).To(Equal(testDrillNamespace))
				g.Expect(o.GetLabels()).To(HaveKeyWithValue(DrillLabel, src.ID))
			}

			// The restore provision's bootstrap, from the source's backups.
			restoreInst := src
			restoreInst.Name, restoreInst.Namespace = drill.Name, drill.Namespace
			restoreInst.Restore = drill.Restore
			full, err := (&Provisioner{Config: func() Config { c := tc.config(); c.Restore.AcrossNamespaces = true; return c }()}).Build(restoreInst)
			g.Expect(err).NotTo(HaveOccurred())
			var want *unstructured.Unstructured
			for _, o := range full {
				if o.GetKind() == "Cluster" {
					want = o
				}
			}
			cluster := objs[len(objs)-2]
			for _, f := range []string{"bootstrap", "externalClusters", "imageName", "storage", "resources", "postgresql"} {
				g.Expect(cluster.Object["spec"].(map[string]any)[f]).To(Equal(want.Object["spec"].(map[string]any)[f]), "spec.%s as the restore provision renders it", f)
			}
			ext, _, _ := unstructured.NestedSlice(cluster.Object, "spec", "externalClusters")
			g.Expect(ext[0].(map[string]any)["plugin"].(map[string]any)["parameters"]).To(Equal(map[string]any{
				"barmanObjectName": "drill-pg-" + testSourceID + "-restore-source", "serverName": src.Name,
			}))

			// Nothing archives or backs up: the source's serverName is
			// never written to, and no retention deletes anything.
			spec := cluster.Object["spec"].(map[string]any)
			g.Expect(spec).NotTo(HaveKey("plugins"))
			g.Expect(spec).NotTo(HaveKey("certificates"))
			g.Expect(spec["instances"]).To(Equal(int64(1)))
			g.Expect(spec["enablePDB"]).To(Equal(false))
			for _, o := range objs {
				g.Expect(o.GetKind()).NotTo(BeElementOf("ScheduledBackup", "Pooler", "Database", "PodMonitor", "Certificate"))
				if o.GetKind() == "ObjectStore" {
					g.Expect(o.Object["spec"]).NotTo(HaveKey("retentionPolicy"))
					path, _, _ := unstructured.NestedString(o.Object, "spec", "configuration", "destinationPath")
					g.Expect(path).To(Equal("s3://" + testBucket + "/" + testNamespace))
				}
			}

			// The operator and the broker reach it, nobody else.
			np := objs[len(objs)-1]
			ingress, _, _ := unstructured.NestedSlice(np.Object, "spec", "ingress")
			g.Expect(ingress).To(HaveLen(2))
			g.Expect(ingress[1]).To(Equal(provisioners.AllowFrom(provisioners.FromNamespace("strata-system"), postgresPort)))
		})
	}
}

func fullBackupConfigWithKeys() Config {
	c := baseConfig()
	c.Backup.Credentials = &S3Keys{AccessKeyID: "AKIA", SecretAccessKey: "secret"}
	return c
}

func TestBuildDrillRefuses(t *testing.T) {
	g := NewWithT(t)
	p := &Provisioner{Config: baseConfig()}
	_, drill := drillOf(t, "standard")
	drill.Plan = testInstance(t, "dev-lite", nil).Plan
	_, err := p.BuildDrill(drill, "strata-system")
	g.Expect(err).To(MatchError(ContainSubstring("keeps no backups")))

	_, drill = drillOf(t, "standard")
	p.Config.Backup.Bucket = ""
	_, err = p.BuildDrill(drill, "strata-system")
	g.Expect(err).To(MatchError(ContainSubstring("no backup bucket")))
}

func TestDrillLogin(t *testing.T) {
	g := NewWithT(t)
	src, _ := drillOf(t, "standard")
	role := DrillLoginRole(src)
	g.Expect(role.GetNamespace()).To(Equal(testNamespace))
	g.Expect(role.Object["spec"]).To(And(
		HaveKeyWithValue("name", DrillRole),
		HaveKeyWithValue("passwordSecret", map[string]any{"name": "pg-" + testSourceID + "-drill"}),
		HaveKeyWithValue("cluster", map[string]any{"name": "pg-" + testSourceID}),
	))
	// Least privilege: a member of no role (applying it without inRoles
	// makes CloudNativePG revoke the owner group from a login made before).
	g.Expect(role.Object["spec"]).NotTo(HaveKey("inRoles"))
}

// The marker schema is declared on the instance's own Database object of
// its first database (same object name, cluster and database), owned by
// the drill login, and nothing else of that object is the drill's.
func TestDrillSchemaDatabase(t *testing.T) {
	g := NewWithT(t)
	p := &Provisioner{Config: baseConfig()}
	src, _ := drillOf(t, "standard")
	objs, err := p.Build(src)
	g.Expect(err).NotTo(HaveOccurred())
	var own *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "Database" && own == nil {
			own = o
		}
	}
	g.Expect(own).NotTo(BeNil())
	g.Expect(own.Object["spec"]).NotTo(HaveKey("schemas"), "the instance's reconcile must not own the drill's schema list")
	d, err := DrillSchemaDatabase(src)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(d.GetKind()).To(Equal("Database"))
	g.Expect(d.GetName()).To(Equal(own.GetName()))
	g.Expect(d.GetNamespace()).To(Equal(own.GetNamespace()))
	ownSpec := own.Object["spec"].(map[string]any)
	g.Expect(d.Object["spec"]).To(Equal(map[string]any{
		"cluster": ownSpec["cluster"],
		"name":    ownSpec["name"],
		"schemas": []any{map[string]any{"name": "strata_drill", "owner": "strata_drill", "ensure": "present"}},
	}))
	ref, err := DrillSchemaDatabaseRef(src)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ref.Name).To(Equal(own.GetName()))
	g.Expect(ref.GVK.Kind).To(Equal("Database"))
}

func TestDrillLoginSecret(t *testing.T) {
	g := NewWithT(t)
	src, _ := drillOf(t, "standard")
	secret := DrillLoginSecret(src, "pw")
	g.Expect(secret.Object["stringData"]).To(Equal(map[string]any{"username": DrillRole, "password": "pw"}))
}

// With drills on, the broker's namespace reaches 5432 of the instances
// with backups, and deprovision deletes the drill login.
func TestDrillClientNamespace(t *testing.T) {
	g := NewWithT(t)
	p := &Provisioner{Config: baseConfig()}
	p.Config.DrillClientNamespace = "strata-system"
	src := testInstance(t, "standard", nil)
	objs, err := p.Build(src)
	g.Expect(err).NotTo(HaveOccurred())
	var rules []any
	for _, o := range objs {
		if o.GetKind() == "NetworkPolicy" && o.GetName() == src.Name {
			rules, _, _ = unstructured.NestedSlice(o.Object, "spec", "ingress")
		}
	}
	g.Expect(rules).To(ContainElement(provisioners.AllowFrom(provisioners.FromNamespace("strata-system"), postgresPort)))
	left := p.Leftovers(src)
	g.Expect(left).To(HaveLen(2))
	g.Expect(left[1].GVK.Kind).To(Equal("DatabaseRole"))

	dev := testInstance(t, "dev-lite", nil)
	g.Expect(p.Leftovers(dev)).To(BeEmpty())
	// Drills turned off since: the login they made still goes.
	p.Config.DrillClientNamespace = ""
	g.Expect(p.Leftovers(src)).To(HaveLen(2))
}
