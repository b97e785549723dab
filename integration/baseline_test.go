//go:build linux

package integration_test

import (
	"net/http"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
)

var authzPolicyGVR = schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "authorizationpolicies"}

// TestTenantBaseline: a tenant's first instance brings the baseline into
// its namespace (accepted by the real API server with Istio's CRDs in a
// meshed namespace), its other instances keep it, and it goes with the
// last one; another tenant's baseline is its own.
func TestTenantBaseline(t *testing.T) {
	w := sharedWorld(t)
	for ns, labels := range map[string]map[string]string{"team-g": nil, "team-h": {"istio-injection": "enabled"}} {
		w.ensureNamespace(t, ns, labels)
	}
	osb := w.startBroker(t)
	baselineGVRs := []schema.GroupVersionResource{netpolGVR, peerAuthGVR, authzPolicyGVR}
	baseline := func(ns string) map[string][]string {
		out := map[string][]string{}
		for _, gvr := range baselineGVRs {
			if names := live(w.list(gvr, ns, provisioners.LabelBaseline+"=true")); len(names) > 0 {
				out[gvr.Resource] = names
			}
		}
		return out
	}
	provision := func(g Gomega, id, ns string) {
		r := osb.do(http.MethodPut, "/v2/service_instances/"+id+"?accepts_incomplete=true", provisionBody(catalog.PostgresDevLiteID, ns, nil))
		g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	}
	deprovision := func(g Gomega, id, ns string) {
		path := "/v2/service_instances/" + id
		r := osb.do(http.MethodDelete, path+"?accepts_incomplete=true&service_id="+catalog.PostgresServiceID+"&plan_id="+catalog.PostgresDevLiteID, nil)
		g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
		op := r.Body["operation"].(string)
		// The API server alone runs no garbage collector: finish the
		// foreground deletions it would finish.
		w.collectGarbage(t, ns, allInstanceGVRs...)
		r = osb.do(http.MethodGet, path+"/last_operation?operation="+op, nil)
		expectGone(g, r)
		w.collectGarbage(t, ns, baselineGVRs...)
	}
	const (
		g1 = "ba5e0000-0000-4000-8000-000000000001"
		g2 = "ba5e0000-0000-4000-8000-000000000002"
		h1 = "ba5e0000-0000-4000-8000-000000000003"
	)

	t.Run("the first instance brings it", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(baseline("team-g")).To(BeEmpty())
		provision(g, g1, "team-g")
		g.Expect(baseline("team-g")).To(Equal(map[string][]string{"networkpolicies": {provisioners.BaselineName}}),
			"not meshed: the default-deny policy and no Istio objects")
		np := w.get(g, netpolGVR, "team-g", provisioners.BaselineName)
		g.Expect(np.GetLabels()).To(HaveKeyWithValue(provisioners.LabelTenant, "team-g"))
		g.Expect(np.GetLabels()).To(HaveKeyWithValue(provisioners.LabelManagedBy, provisioners.ManagedByStrata))

		provision(g, h1, "team-h")
		g.Expect(baseline("team-h")).To(Equal(map[string][]string{
			"networkpolicies":       {provisioners.BaselineName},
			"peerauthentications":   {provisioners.BaselineName},
			"authorizationpolicies": {provisioners.BaselineName},
		}), "meshed: STRICT mTLS and the tenant-only authorization too")
		ap := w.get(g, authzPolicyGVR, "team-h", provisioners.BaselineName)
		g.Expect(ap.Object["spec"].(map[string]any)["selector"]).To(Equal(map[string]any{"matchLabels": map[string]any{provisioners.LabelTenant: "team-h"}}))
	})

	t.Run("it stays while the tenant has an instance", func(t *testing.T) {
		g := NewWithT(t)
		provision(g, g2, "team-g")
		deprovision(g, g1, "team-g")
		g.Expect(baseline("team-g")).To(HaveKey("networkpolicies"), "g2 is still there")
	})

	t.Run("the last instance takes it away, and only its tenant's", func(t *testing.T) {
		g := NewWithT(t)
		deprovision(g, g2, "team-g")
		g.Expect(baseline("team-g")).To(BeEmpty())
		g.Expect(baseline("team-h")).To(HaveLen(3), "team-h still has h1")
		deprovision(g, h1, "team-h")
		g.Expect(baseline("team-h")).To(BeEmpty())
	})

	t.Run("a new first instance brings it back", func(t *testing.T) {
		g := NewWithT(t)
		const again = "ba5e0000-0000-4000-8000-000000000004"
		provision(g, again, "team-g")
		g.Expect(baseline("team-g")).To(HaveKey("networkpolicies"))
		deprovision(g, again, "team-g")
		g.Expect(baseline("team-g")).To(BeEmpty())
	})
}
