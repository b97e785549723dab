package broker

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/strata-dev/strata/catalog"
)

// The endpoint tests call the Broker's methods; this one runs an
// instance's and a binding's whole life through the HTTP handler, so the
// status codes the platform sees are the ones those results stand for.
func TestOSBFlowThroughTheHandler(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	h := NewHandler(e.b, HandlerOptions{
		Credentials: func() (string, string, error) { return "platform", "pw", nil },
		Registry:    prometheus.NewRegistry(),
		Log:         e.b.Log,
	})
	type answer struct {
		status int
		header http.Header
		body   map[string]any
	}
	call := func(method, path, body string) answer {
		t.Helper()
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.SetBasicAuth("platform", "pw")
		req.Header.Set("X-Broker-API-Version", "2.17")
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		raw, _ := io.ReadAll(rec.Body)
		out := answer{status: rec.Code, header: rec.Header(), body: map[string]any{}}
		if len(raw) > 0 {
			g.Expect(json.Unmarshal(raw, &out.body)).To(Succeed(), "%s %s answered %s", method, path, raw)
		}
		return out
	}
	inst := "/v2/service_instances/" + instanceID
	bind := inst + "/service_bindings/" + bindingID
	ids := fmt.Sprintf("service_id=%s&plan_id=%s", catalog.PostgresServiceID, catalog.PostgresDevLiteID)
	provision := fmt.Sprintf(`{"service_id":%q,"plan_id":%q,"context":{"platform":"kubernetes","namespace":%q},"parameters":{"storage_gb":2}}`,
		catalog.PostgresServiceID, catalog.PostgresDevLiteID, tenantNS)
	bindBody := fmt.Sprintf(`{"service_id":%q,"plan_id":%q}`, catalog.PostgresServiceID, catalog.PostgresDevLiteID)

	g.Expect(call("PUT", inst, provision).status).To(Equal(http.StatusUnprocessableEntity), "without accepts_incomplete")
	first := call("PUT", inst+"?accepts_incomplete=true", provision)
	g.Expect(first.status).To(Equal(http.StatusAccepted))
	g.Expect(first.body["operation"]).To(HavePrefix("provision-"))
	repeat := call("PUT", inst+"?accepts_incomplete=true", provision)
	g.Expect(repeat.status).To(Equal(http.StatusAccepted), "an identical repeat in progress")
	g.Expect(repeat.body).To(Equal(first.body))
	g.Expect(call("GET", inst, "").status).To(Equal(http.StatusNotFound), "being provisioned")

	polled := call("GET", inst+"/last_operation?operation="+first.body["operation"].(string), "")
	g.Expect(polled.status).To(Equal(http.StatusOK))
	g.Expect(polled.body["state"]).To(Equal("in progress"))
	g.Expect(polled.header.Get("Retry-After")).To(Equal("10"))
	e.operatorsAct(t, instanceID)
	polled = call("GET", inst+"/last_operation", "")
	g.Expect(polled.body["state"]).To(Equal("succeeded"))
	g.Expect(polled.header.Get("Retry-After")).To(BeEmpty())
	g.Expect(call("PUT", inst+"?accepts_incomplete=true", provision).status).To(Equal(http.StatusOK), "a repeat once done")
	got := call("GET", inst, "")
	g.Expect(got.status).To(Equal(http.StatusOK))
	g.Expect(got.body["parameters"]).To(Equal(map[string]any{"storage_gb": float64(2)}))

	bound := call("PUT", bind, bindBody)
	g.Expect(bound.status).To(Equal(http.StatusCreated))
	g.Expect(bound.body["credentials"]).To(HaveKey("password"))
	again := call("PUT", bind, bindBody)
	g.Expect(again.status).To(Equal(http.StatusOK))
	g.Expect(again.body["credentials"]).To(Equal(bound.body["credentials"]))
	fetched := call("GET", bind, "")
	g.Expect(fetched.status).To(Equal(http.StatusOK))
	g.Expect(fetched.body["credentials"]).To(Equal(bound.body["credentials"]))
	g.Expect(call("DELETE", bind+"?"+ids, "").status).To(Equal(http.StatusOK))
	g.Expect(call("DELETE", bind+"?"+ids, "").status).To(Equal(http.StatusGone))
	g.Expect(call("GET", bind, "").status).To(Equal(http.StatusNotFound))

	deprovision := call("DELETE", inst+"?accepts_incomplete=true&"+ids, "")
	g.Expect(deprovision.status).To(Equal(http.StatusAccepted))
	g.Expect(deprovision.body["operation"]).To(HavePrefix("deprovision-"))
	g.Expect(call("GET", inst+"/last_operation?operation="+deprovision.body["operation"].(string), "").status).To(Equal(http.StatusGone))
	g.Expect(call("DELETE", inst+"?accepts_incomplete=true&"+ids, "").status).To(Equal(http.StatusGone))
	g.Expect(call("GET", inst, "").status).To(Equal(http.StatusNotFound))
}
