package integration_test

import (
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/strata-dev/strata/catalog"
)

// TestPlatformsThatNeverPoll runs whole lifecycles through the broker
// binary, as the chart configures it, for two kinds of platform the OSB
// spec allows and real ones are: one that never polls a binding's
// last_operation but GETs the binding until it answers (Crossplane's
// provider), and one that stops polling a deprovision and expects 410 Gone
// afterwards. Operations finish by themselves (the reconcile loop); no
// request of the test asks for progress.
func TestPlatformsThatNeverPoll(t *testing.T) {
	w := sharedWorld(t)
	w.ensureNamespace(t, "team-n", nil)
	osb := w.startBrokerBinary(t, "solo").client(t)
	g := NewWithT(t)

	const id = "0e0e0000-0000-4000-8000-000000000001"
	const bid = "0e0e0000-0000-4000-8000-0000000000b1"
	path := "/v2/service_instances/" + id
	bpath := path + "/service_bindings/" + bid
	cluster := "pg-" + id

	r := osb.do(http.MethodPut, path+"?accepts_incomplete=true", provisionBody(catalog.PostgresDevLiteID, "team-n", nil))
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	w.operatorReportsReady(t, "team-n", cluster)
	// The platform only GETs the instance, which is 404 until the
	// provision succeeded.
	g.Eventually(func() int { return osb.do(http.MethodGet, path, nil).Code }, 60*time.Second, 500*time.Millisecond).
		Should(Equal(http.StatusOK), "the provision finishes without a poll")

	body := map[string]any{"service_id": catalog.PostgresServiceID, "plan_id": catalog.PostgresDevLiteID}
	r = osb.do(http.MethodPut, bpath+"?accepts_incomplete=true", body)
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	g.Expect(osb.do(http.MethodGet, bpath, nil).Code).To(Equal(http.StatusNotFound), "GET binding while binding is 404")
	w.operatorAppliesRoles(t, "team-n", cluster)
	var got response
	g.Eventually(func() int { got = osb.do(http.MethodGet, bpath, nil); return got.Code }, 60*time.Second, 500*time.Millisecond).
		Should(Equal(http.StatusOK), "the bind finishes without a poll")
	g.Expect(got.Body["credentials"]).To(HaveKey("spring.datasource.url"))

	r = osb.do(http.MethodDelete, bpath+"?service_id="+catalog.PostgresServiceID+"&plan_id="+catalog.PostgresDevLiteID, nil)
	g.Expect(r.Code).To(Equal(http.StatusOK), r.Raw)
	g.Expect(live(w.list(databaseRoleGVR, "team-n", "strata.dev/binding-id="+bid))).To(BeEmpty())

	r = osb.do(http.MethodDelete, path+"?accepts_incomplete=true&service_id="+catalog.PostgresServiceID+"&plan_id="+catalog.PostgresDevLiteID, nil)
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	// The platform stops polling; the API server alone runs no garbage
	// collector, so the test finishes the foreground deletions it would.
	g.Eventually(func() int {
		w.collectGarbage(t, "team-n", allInstanceGVRs...)
		return osb.do(http.MethodGet, path, nil).Code
	}, 60*time.Second, 500*time.Millisecond).Should(Equal(http.StatusNotFound), "the deprovision finishes without a poll")

	expectGone(g, osb.do(http.MethodGet, path+"/last_operation", nil))
	r = osb.do(http.MethodDelete, path+"?accepts_incomplete=true&service_id="+catalog.PostgresServiceID+"&plan_id="+catalog.PostgresDevLiteID, nil)
	g.Expect(r.Code).To(Equal(http.StatusGone), "deleting it again: 410, which platforms take as done: %s", r.Raw)
	g.Expect(live(w.list(clusterGVR, "team-n", "strata.dev/instance-id="+id))).To(BeEmpty())
}
