package postgres

import (
	"regexp"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/internal/provtest"
)

// sharedConfig names a shared cluster other than the defaults.
func sharedConfig() Config {
	c := DefaultConfig()
	c.Shared = SharedConfig{Namespace: "pg-shared", ClusterName: "tenants", OpenBaoConnection: "pg-tenants"}
	return c
}

var pgIdent = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func TestSharedNames(t *testing.T) {
	long := "a-very-long-tenant-namespace-name-that-goes-on-and-on-for-sixty3"
	tests := []struct {
		name, tenant, id string
		wantDB           string
	}{
		{"uuid", "team-a", "5f0c6d8e-3b1a-4c2e-9f4d-2a7b8c9d0e1f", "s_team_a_5f0c6d8e3b1a4c2e9f4d2a7b8c9d0e1f"},
		{"long tenant is cut", long, "5f0c6d8e-3b1a-4c2e-9f4d-2a7b8c9d0e1f", "s_a_very_long_tenant_5f0c6d8e3b1a4c2e9f4d2a7b8c9d0e1f"},
		{"cut never ends in _", "abcdefghijklmnopq-rst", "5f0c6d8e-3b1a-4c2e-9f4d-2a7b8c9d0e1f", "s_abcdefghijklmnopq_5f0c6d8e3b1a4c2e9f4d2a7b8c9d0e1f"},
		{"non-uuid id is hashed", "team-a", "Instance/With Odd Chars", ""},
		{"digit-first tenant", "9lives", "5f0c6d8e-3b1a-4c2e-9f4d-2a7b8c9d0e1f", "s_9lives_5f0c6d8e3b1a4c2e9f4d2a7b8c9d0e1f"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			inst := provtest.Instance(t, testService(), "shared", "pg-", tc.id, tc.tenant, nil)
			n := SharedNamesOf(inst)
			if tc.wantDB != "" {
				g.Expect(n.Database).To(Equal(tc.wantDB))
			}
			for _, name := range []string{n.Database, n.Owner, n.ReadWrite, n.ReadOnly} {
				g.Expect(name).To(MatchRegexp(pgIdent.String()), "a PostgreSQL name that needs no quoting, at most 63 bytes")
				g.Expect(name).NotTo(HavePrefix("pg_"))
			}
			for _, group := range []string{n.Owner, n.ReadWrite, n.ReadOnly} {
				g.Expect(group).To(MatchRegexp(SharedRolePattern))
			}
			g.Expect(n.Database).NotTo(MatchRegexp(SharedRolePattern), "the anchor is not a group the grant function hands out")
			g.Expect(n.Object).To(MatchRegexp(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`))
			g.Expect(len(n.Object + "-readwrite")).To(BeNumerically("<=", 63))
			// Deterministic.
			g.Expect(SharedNamesOf(inst)).To(Equal(n))
		})
	}
}

// Two tenants never get the same names, even with ids or prefixes alike.
func TestSharedNamesNeverCollide(t *testing.T) {
	g := NewWithT(t)
	seen := map[string]string{}
	tenants := []string{"team-a", "team_a", "team-a-but-much-longer-x", "team-a-but-much-longer-y"}
	for i, tenant := range tenants {
		for j := range 50 {
			id := provtest.UUIDFor(i*100 + j)
			inst := provtest.Instance(t, testService(), "shared", "pg-", id, tenant, nil)
			n := SharedNamesOf(inst)
			key := tenant + "/" + id
			g.Expect(seen).NotTo(HaveKey(n.Database), "%s and %s", key, seen[n.Database])
			seen[n.Database] = key
		}
	}
}

func TestSharedBuild(t *testing.T) {
	g := NewWithT(t)
	p := &Provisioner{Config: sharedConfig()}
	inst := testInstance(t, "shared", map[string]any{"extensions": []any{"citext"}})
	objs := build(t, p.Config, inst)
	n := SharedNamesOf(inst)
	g.Expect(objs).To(HaveLen(6))
	for _, o := range objs {
		g.Expect(o.GetNamespace()).To(Equal("pg-shared"), "%s %s lives next to the shared Cluster", o.GetKind(), o.GetName())
		g.Expect(o.GetLabels()).To(HaveKeyWithValue(provisioners.LabelTenant, testNamespace))
		g.Expect(o.GetLabels()).To(HaveKeyWithValue(provisioners.LabelPlan, "shared"))
		g.Expect(o.GetKind()).To(BeElementOf("DatabaseRole", "Database", "NetworkPolicy"))
		if o.GetKind() == "NetworkPolicy" {
			continue
		}
		cluster, _, _ := unstructured.NestedString(o.Object, "spec", "cluster", "name")
		g.Expect(cluster).To(Equal("tenants"))
	}
	// The tenant's namespace, and only it, reaches the shared cluster's
	// PostgreSQL port while the instance exists.
	nps := provtest.ByKind(objs, "NetworkPolicy")
	g.Expect(nps).To(HaveLen(1))
	g.Expect(nps[0].Object["spec"]).To(Equal(map[string]any{
		"podSelector": map[string]any{"matchLabels": map[string]any{"cnpg.io/cluster": "tenants"}},
		"policyTypes": []any{"Ingress"},
		"ingress": []any{map[string]any{
			"from":  []any{map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{provisioners.NamespaceLabel: testNamespace}}}},
			"ports": []any{map[string]any{"protocol": "TCP", "port": int64(5432)}},
		}},
	}))
	roles := provtest.ByKind(objs, "DatabaseRole")
	g.Expect(roles).To(HaveLen(4))
	for _, r := range roles {
		login, _, _ := unstructured.NestedBool(r.Object, "spec", "login")
		g.Expect(login).To(BeFalse())
		reclaim, _, _ := unstructured.NestedString(r.Object, "spec", "databaseRoleReclaimPolicy")
		g.Expect(reclaim).To(Equal("delete"), "deprovision drops the roles")
	}
	inRoles := func(i int) []string {
		l, _, _ := unstructured.NestedStringSlice(roles[i].Object, "spec", "inRoles")
		return l
	}
	g.Expect(inRoles(0)).To(BeEmpty(), "the anchor has no privileges")
	g.Expect(inRoles(1)).To(Equal([]string{n.Database}))
	g.Expect(inRoles(2)).To(Equal([]string{n.Database, "pg_read_all_data", "pg_write_all_data"}))
	g.Expect(inRoles(3)).To(Equal([]string{n.Database, "pg_read_all_data"}))
	db := provtest.One(t, objs, "Database")
	g.Expect(db.Object["spec"]).To(HaveKeyWithValue("owner", n.Owner))
	g.Expect(db.Object["spec"]).To(HaveKeyWithValue("name", n.Database))
	g.Expect(db.Object["spec"]).To(HaveKeyWithValue("databaseReclaimPolicy", "delete"))
	g.Expect(db.Object["spec"]).To(HaveKey("extensions"))

	size, err := p.Size(inst)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(size.CPU.IsZero() && size.Memory.IsZero() && size.Storage.IsZero()).To(BeTrue(), "no pods of the tenant's")
	g.Expect(p.Leftovers(inst)).To(BeEmpty())
	g.Expect(p.ServerCASecret(inst)).To(Equal("tenants-server-tls"))
}

func TestSharedAssess(t *testing.T) {
	p := &Provisioner{Config: DefaultConfig()}
	inst := testInstance(t, "shared", nil)
	n := SharedNamesOf(inst)
	refs := p.Watched(inst)
	withStatus := func(applied bool, gen int64, msg string) map[provisioners.Ref]*unstructured.Unstructured {
		out := map[provisioners.Ref]*unstructured.Unstructured{}
		for _, o := range build(t, p.Config, inst) {
			o.SetGeneration(1)
			st := map[string]any{"applied": applied, "observedGeneration": gen}
			if msg != "" {
				st["message"] = msg
			}
			o.Object["status"] = st
			out[provisioners.RefOf(o)] = o
		}
		return out
	}
	tests := []struct {
		name     string
		observed func() map[provisioners.Ref]*unstructured.Unstructured
		state    provisioners.State
		desc     string
	}{
		{"nothing yet", func() map[provisioners.Ref]*unstructured.Unstructured { return nil }, provisioners.InProgress, "waiting for the role anchor object " + n.Object + "-anchor"},
		{"not applied", func() map[provisioners.Ref]*unstructured.Unstructured { return withStatus(false, 0, "") }, provisioners.InProgress, "waiting for CloudNativePG to create the role anchor"},
		{"operator message", func() map[provisioners.Ref]*unstructured.Unstructured {
			return withStatus(false, 1, "cluster strata-shared is not ready")
		}, provisioners.InProgress, "waiting for CloudNativePG to create the role anchor: cluster strata-shared is not ready"},
		{"older generation", func() map[provisioners.Ref]*unstructured.Unstructured { return withStatus(true, 0, "") }, provisioners.InProgress, "waiting for CloudNativePG"},
		{"database missing", func() map[provisioners.Ref]*unstructured.Unstructured {
			m := withStatus(true, 1, "")
			delete(m, refs[len(refs)-1])
			return m
		}, provisioners.InProgress, "waiting for the database " + n.Database + " object " + n.Object},
		{"database failing", func() map[provisioners.Ref]*unstructured.Unstructured {
			m := withStatus(true, 1, "")
			db := m[refs[len(refs)-1]]
			db.Object["status"] = map[string]any{"applied": false, "observedGeneration": int64(1), "message": "role does not exist"}
			return m
		}, provisioners.InProgress, "waiting for CloudNativePG to create the database " + n.Database + ": role does not exist"},
		{"ready", func() map[provisioners.Ref]*unstructured.Unstructured { return withStatus(true, 1, "") }, provisioners.Succeeded, "database " + n.Database + " ready in the shared PostgreSQL cluster"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got := p.Assess(inst, tc.observed(), time.Now())
			g.Expect(got.State).To(Equal(tc.state))
			g.Expect(got.Description).To(HavePrefix(tc.desc))
		})
	}
	NewWithT(t).Expect(refs).To(HaveLen(5), "the roles and the database; the NetworkPolicy has no status")
}

func TestSharedCheckUpdate(t *testing.T) {
	g := NewWithT(t)
	p := &Provisioner{Config: DefaultConfig()}
	old := testInstance(t, "shared", map[string]any{"extensions": []any{"citext"}})
	updated := testInstance(t, "shared", map[string]any{"extensions": []any{"pg_trgm"}})
	g.Expect(p.CheckUpdate(old, updated)).To(Succeed())
}
