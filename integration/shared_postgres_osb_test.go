//go:build linux

package integration_test

import (
	"net/http"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/postgres"
)

// TestSharedPostgresLifecycle drives the shared plan over HTTPS as a
// platform would, on the real API server with CloudNativePG 1.30's CRDs and
// the chart's RBAC: provision puts the instance's DatabaseRoles and
// Database next to the platform's shared cluster (accepted by the CRDs),
// last_operation follows the operator's status (written here to stand for
// CloudNativePG, which does not run), two tenants' instances never share a
// name, a bind without OpenBao is refused saying what to configure, and
// deprovision removes everything it made.
func TestSharedPostgresLifecycle(t *testing.T) {
	w := sharedWorld(t)
	shared := postgres.DefaultSharedConfig()
	w.ensureNamespace(t, shared.Namespace, nil)
	osb := w.startBroker(t)
	const (
		idA = "5ba7ed00-0000-4000-8000-00000000000a"
		idB = "5ba7ed00-0000-4000-8000-00000000000b"
	)
	path := func(id string) string { return "/v2/service_instances/" + id }
	objects := func(id string) []unstructured.Unstructured {
		var out []unstructured.Unstructured
		sel := provisioners.LabelInstanceID + "=" + id
		for _, o := range append(w.list(databaseRoleGVR, shared.Namespace, sel), w.list(databaseGVR, shared.Namespace, sel)...) {
			if o.GetDeletionTimestamp() == nil {
				out = append(out, o)
			}
		}
		return out
	}

	t.Run("provision", func(t *testing.T) {
		g := NewWithT(t)
		for id, ns := range map[string]string{idA: "team-a", idB: "team-c"} {
			r := osb.do(http.MethodPut, path(id)+"?accepts_incomplete=true", provisionBody(catalog.PostgresSharedID, ns, map[string]any{"extensions": []any{"pgcrypto"}}))
			g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
		}
		a, b := objects(idA), objects(idB)
		g.Expect(a).To(HaveLen(5), "anchor, owner, readwrite and readonly roles, and the database")
		g.Expect(b).To(HaveLen(5))
		names := map[string]string{}
		for _, o := range append(a, b...) {
			g.Expect(o.GetLabels()).To(HaveKeyWithValue(provisioners.LabelManagedBy, provisioners.ManagedByStrata))
			pgName, _, _ := unstructured.NestedString(o.Object, "spec", "name")
			g.Expect(names).NotTo(HaveKey(o.GetKind()+"/"+pgName), "two instances share the PostgreSQL name %s", pgName)
			names[o.GetKind()+"/"+pgName] = o.GetLabels()[provisioners.LabelTenant]
			cluster, _, _ := unstructured.NestedString(o.Object, "spec", "cluster", "name")
			g.Expect(cluster).To(Equal(shared.ClusterName))
		}
		g.Expect(a[0].GetLabels()).To(HaveKeyWithValue(provisioners.LabelTenant, "team-a"), "usage and cleanup find the tenant's objects in the shared namespace")
		g.Expect(b[0].GetLabels()).To(HaveKeyWithValue(provisioners.LabelTenant, "team-c"))
		db := w.get(g, databaseGVR, shared.Namespace, postgres.SharedNamesOf(provisioners.Instance{ID: idA, Namespace: "team-a"}).Object)
		owner, _, _ := unstructured.NestedString(db.Object, "spec", "owner")
		g.Expect(owner).To(HaveSuffix(postgres.SharedOwnerSuffix))
		g.Expect(w.list(clusterGVR, "team-a", provisioners.LabelInstanceID+"="+idA)).To(BeEmpty(), "no cluster of its own")
		np := w.get(g, netpolGVR, shared.Namespace, postgres.SharedNamesOf(provisioners.Instance{ID: idA, Namespace: "team-a"}).Object+"-clients")
		g.Expect(np.GetLabels()).To(HaveKeyWithValue(provisioners.LabelTenant, "team-a"), "the tenant's way in to the shared cluster")
	})

	t.Run("last_operation follows CloudNativePG", func(t *testing.T) {
		g := NewWithT(t)
		r := osb.do(http.MethodGet, path(idA)+"/last_operation", nil)
		g.Expect(r.Body["state"]).To(Equal("in progress"), r.Raw)
		g.Expect(r.Body["description"]).To(ContainSubstring("waiting for CloudNativePG"))
		w.operatorAppliesInstance(t, shared.Namespace, idA)
		r = osb.do(http.MethodGet, path(idA)+"/last_operation", nil)
		g.Expect(r.Body["state"]).To(Equal("succeeded"), r.Raw)
		g.Expect(r.Body["description"]).To(ContainSubstring("ready in the shared PostgreSQL cluster"))
	})

	t.Run("bind without OpenBao says what to configure", func(t *testing.T) {
		g := NewWithT(t)
		r := osb.do(http.MethodPut, path(idA)+"/service_bindings/5ba7ed00-0000-4000-8000-0000000000b1?accepts_incomplete=true", map[string]any{
			"service_id": catalog.PostgresServiceID, "plan_id": catalog.PostgresSharedID,
		})
		g.Expect(r.Code).To(Equal(http.StatusUnprocessableEntity), r.Raw)
		g.Expect(r.Body["description"]).To(ContainSubstring("openBao"))
	})

	t.Run("a plan change out of shared is refused", func(t *testing.T) {
		g := NewWithT(t)
		r := osb.do(http.MethodPatch, path(idA)+"?accepts_incomplete=true", map[string]any{
			"service_id": catalog.PostgresServiceID, "plan_id": catalog.PostgresStandardID,
		})
		g.Expect(r.Code).To(Equal(http.StatusUnprocessableEntity), r.Raw)
		g.Expect(r.Body["error"]).To(Equal("PlanChangeNotSupported"))
		g.Expect(r.Body["description"]).To(ContainSubstring("migrate the data"))
	})

	t.Run("deprovision removes what it made", func(t *testing.T) {
		g := NewWithT(t)
		for _, id := range []string{idA, idB} {
			r := osb.do(http.MethodDelete, path(id)+"?accepts_incomplete=true&service_id="+catalog.PostgresServiceID+"&plan_id="+catalog.PostgresSharedID, nil)
			g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
			w.collectGarbage(t, shared.Namespace, databaseRoleGVR, databaseGVR, netpolGVR)
			r = osb.do(http.MethodGet, path(id)+"/last_operation?operation="+r.Body["operation"].(string), nil)
			expectGone(g, r)
			g.Expect(objects(id)).To(BeEmpty())
			g.Expect(live(w.list(netpolGVR, shared.Namespace, provisioners.LabelInstanceID+"="+id))).To(BeEmpty(), "the tenant's way in goes with its last shared instance")
		}
	})
}
