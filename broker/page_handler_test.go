package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/strata-dev/strata/catalog"
)

// The instance page through the broker's HTTP handler, on the endpoint
// tests' broker (the default catalog, the three engines, records in
// Secrets with the API server's optimistic concurrency).

const (
	pagePlatformUser = "platform"
	pagePlatformPass = "platform-password-never-on-a-page"
)

// List is the objectLister the page needs, over the in-memory objects.
func (k *memKube) List(_ context.Context, gvk schema.GroupVersionKind, namespace string) ([]*unstructured.Unstructured, error) {
	k.Lock()
	defer k.Unlock()
	var out []*unstructured.Unstructured
	for ref, o := range k.Objs {
		if ref.GVK == gvk && ref.Namespace == namespace {
			out = append(out, o.DeepCopy())
		}
	}
	return out, nil
}

type pageTestEnv struct {
	*testEnv
	h    http.Handler
	logs *observer.ObservedLogs
}

func newPageEnv(t *testing.T, prom *Prometheus) *pageTestEnv {
	t.Helper()
	e := newTestEnv(t)
	core, logs := observer.New(zap.DebugLevel)
	e.b.Log = zap.New(core)
	u, _ := url.Parse("https://broker.example.com/strata")
	e.b.Page = &InstancePage{ExternalURL: u, Prometheus: prom}
	h := NewHandler(e.b, HandlerOptions{
		Credentials: func() (string, string, error) { return pagePlatformUser, pagePlatformPass, nil },
		Registry:    prometheus.NewRegistry(),
		Log:         e.b.Log,
	})
	return &pageTestEnv{testEnv: e, h: h, logs: logs}
}

// osb calls the OSB API as the platform.
func (e *pageTestEnv) osb(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.SetBasicAuth(pagePlatformUser, pagePlatformPass)
	req.Header.Set("X-Broker-API-Version", "2.17")
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	out := map[string]any{}
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, out
}

// page opens a path as a browser does: no credentials.
func (e *pageTestEnv) page(t *testing.T, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

// provisionThroughOSB provisions a PostgreSQL instance of plan through the
// handler, drives it to succeeded, and returns its dashboard_url as
// provision and GET instance answered it (they must agree).
func (e *pageTestEnv) provisionThroughOSB(t *testing.T, id, planID, params string) string {
	t.Helper()
	g := NewWithT(t)
	body := fmt.Sprintf(`{"service_id":%q,"plan_id":%q,"context":{"platform":"kubernetes","namespace":%q},"parameters":%s}`,
		catalog.PostgresServiceID, planID, tenantNS, params)
	status, res := e.osb(t, "PUT", "/v2/service_instances/"+id+"?accepts_incomplete=true", body)
	g.Expect(status).To(Equal(http.StatusAccepted), "%v", res)
	dash, _ := res["dashboard_url"].(string)
	g.Expect(dash).To(HavePrefix("https://broker.example.com/strata/instances/"+id+"/page/"), "OSB: dashboard_url with the provision's first answer")
	e.operatorsAct(t, id)
	status, _ = e.osb(t, "GET", "/v2/service_instances/"+id+"/last_operation", "")
	g.Expect(status).To(Equal(http.StatusOK))
	status, got := e.osb(t, "GET", "/v2/service_instances/"+id, "")
	g.Expect(status).To(Equal(http.StatusOK), "%v", got)
	g.Expect(got["dashboard_url"]).To(Equal(dash), "GET instance returns the same dashboard_url")
	return dash
}

// pathOf is the path of a dashboard_url on this handler.
func pathOf(t *testing.T, dash string) string {
	t.Helper()
	u, err := url.Parse(dash)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/strata")
}

func tokenOf(dash string) string { return dash[strings.LastIndexByte(dash, '/')+1:] }

func cnpgBackup(name, cluster, phase, started string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "postgresql.cnpg.io/v1", "kind": "Backup",
		"metadata": map[string]any{"name": name, "namespace": tenantNS},
		"spec":     map[string]any{"cluster": map[string]any{"name": cluster}},
		"status":   map[string]any{"phase": phase, "startedAt": started},
	}}
}

func TestInstancePageOpensOnlyItsInstance(t *testing.T) {
	g := NewWithT(t)
	e := newPageEnv(t, nil)
	dashA := e.provisionThroughOSB(t, instanceID, catalog.PostgresStandardID, `{"storage_gb": 20}`)
	dashB := e.provisionThroughOSB(t, otherID, catalog.PostgresStandardID, `{}`)
	g.Expect(tokenOf(dashA)).To(HaveLen(43), "256 bits, base64url")
	g.Expect(tokenOf(dashA)).NotTo(Equal(tokenOf(dashB)))
	g.Expect(e.record(t, instanceID).PageToken).To(Equal(tokenOf(dashA)), "kept in the instance's record Secret")

	res, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresStandardID, ""), false)
	g.Expect(err).NotTo(HaveOccurred())
	bindingPassword, _ := res.Credentials.(map[string]any)["password"].(string)
	g.Expect(bindingPassword).NotTo(BeEmpty())

	recA, recB := e.record(t, instanceID), e.record(t, otherID)
	e.kube.Store(cnpgBackup(recA.Name+"-daily-20260301000000", recA.Name, "completed", "2026-03-01T00:00:05Z"))
	e.kube.Store(cnpgBackup(recB.Name+"-daily-20260301000000", recB.Name, "failed", "2026-03-01T00:00:07Z"))

	ok := e.page(t, pathOf(t, dashA))
	g.Expect(ok.Code).To(Equal(http.StatusOK), ok.Body.String())
	html := ok.Body.String()
	g.Expect(html).To(ContainSubstring(`<span id="status" class="badge ok">ready</span>`))
	g.Expect(html).To(ContainSubstring(`<b id="plan-name">standard</b>`))
	g.Expect(html).To(ContainSubstring("<tr><th>storage_gb</th><td>20</td></tr>"))
	g.Expect(html).To(ContainSubstring(recA.Name + "-rw." + tenantNS + ".svc"))
	g.Expect(html).To(ContainSubstring(recA.Name + "-daily-20260301000000"))
	g.Expect(html).To(ContainSubstring(`<td id="window">not known</td>`), "no ObjectStore status yet")
	g.Expect(html).To(ContainSubstring("bind " + bindingID[:8]))
	g.Expect(html).To(ContainSubstring("metrics: no Prometheus configured"))
	// Nothing of instance B, and no secret of anyone.
	g.Expect(html).NotTo(ContainSubstring(recB.Name))
	g.Expect(html).NotTo(ContainSubstring(otherID))
	for name, secret := range map[string]string{
		"A's binding password": bindingPassword, "the broker's password": pagePlatformPass,
		"A's own token": tokenOf(dashA), "B's token": tokenOf(dashB),
	} {
		g.Expect(html).NotTo(ContainSubstring(secret), name)
	}
	h := ok.Header()
	g.Expect(h.Get("Content-Security-Policy")).To(HavePrefix("default-src 'none'; style-src 'sha256-"))
	g.Expect(h.Get("Content-Security-Policy")).NotTo(ContainSubstring("unsafe"))
	g.Expect(h.Get("Referrer-Policy")).To(Equal("no-referrer"))
	g.Expect(h.Get("Cache-Control")).To(Equal("no-store"))
	g.Expect(html).NotTo(MatchRegexp(`(?i)<script|<link|<img|src=|https?://`), "no external asset, no script")

	// The refusals are one 404, whatever was wrong.
	refused := map[string]string{
		"A's token on B":                   "/instances/" + otherID + "/page/" + tokenOf(dashA),
		"B's token on A":                   "/instances/" + instanceID + "/page/" + tokenOf(dashB),
		"a wrong token":                    "/instances/" + instanceID + "/page/" + strings.Repeat("A", 43),
		"a token one character short":      "/instances/" + instanceID + "/page/" + tokenOf(dashA)[:42],
		"no token":                         "/instances/" + instanceID + "/page/",
		"no token, no slash":               "/instances/" + instanceID + "/page",
		"an unknown instance":              "/instances/00000000-0000-4000-8000-000000000000/page/" + tokenOf(dashA),
		"the platform's credentials alone": "/instances/" + instanceID + "/page/x",
	}
	for name, path := range refused {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		if name == "the platform's credentials alone" {
			req.SetBasicAuth(pagePlatformUser, pagePlatformPass)
		}
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		g.Expect(rec.Code).To(Equal(http.StatusNotFound), name)
		g.Expect(rec.Body.String()).NotTo(ContainSubstring(recA.Name), name)
		g.Expect(rec.Body.String()).NotTo(ContainSubstring(recB.Name), name)
	}

	// B's own page has B's backup and not A's.
	okB := e.page(t, pathOf(t, dashB))
	g.Expect(okB.Code).To(Equal(http.StatusOK))
	g.Expect(okB.Body.String()).To(ContainSubstring(recB.Name + "-daily-20260301000000"))
	g.Expect(okB.Body.String()).NotTo(ContainSubstring(recA.Name))

	// No token in any log line.
	for _, entry := range e.logs.All() {
		line := fmt.Sprint(entry.Message, entry.ContextMap())
		g.Expect(line).NotTo(ContainSubstring(tokenOf(dashA)))
		g.Expect(line).NotTo(ContainSubstring(tokenOf(dashB)))
	}
	// Every request that reached the page handler logged one line: the
	// refusals but the two without a token (no route), and A's and B's.
	g.Expect(e.logs.FilterMessage("instance page").Len()).To(Equal(len(refused) - 2 + 2))

	// After deprovision, the page is gone too.
	status, _ := e.osb(t, "DELETE", fmt.Sprintf("/v2/service_instances/%s/service_bindings/%s?service_id=%s&plan_id=%s", instanceID, bindingID, catalog.PostgresServiceID, catalog.PostgresStandardID), "")
	g.Expect(status).To(BeNumerically("<", 300))
	status, _ = e.osb(t, "DELETE", fmt.Sprintf("/v2/service_instances/%s?accepts_incomplete=true&service_id=%s&plan_id=%s", instanceID, catalog.PostgresServiceID, catalog.PostgresStandardID), "")
	g.Expect(status).To(Equal(http.StatusAccepted))
	g.Expect(e.page(t, pathOf(t, dashA)).Code).To(Equal(http.StatusOK), "while deprovisioning, the page says so")
	g.Expect(e.page(t, pathOf(t, dashA)).Body.String()).To(ContainSubstring("deprovision in progress"))
}

func TestInstancePageOffWithoutExternalURL(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	h := NewHandler(e.b, HandlerOptions{
		Credentials: func() (string, string, error) { return "p", "p", nil }, Registry: prometheus.NewRegistry(), Log: zap.NewNop(),
	})
	e.provisionReady(t, instanceID, catalog.PostgresDevLiteID, "")
	rec := e.record(t, instanceID)
	g.Expect(rec.PageToken).To(BeEmpty())
	g.Expect(rec.DashboardURL).To(BeEmpty())
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/instances/"+instanceID+"/page/x", nil))
	g.Expect(w.Code).To(Equal(http.StatusNotFound))
}

func TestInstancePageUnreadableRecordIs500WithoutDetail(t *testing.T) {
	g := NewWithT(t)
	e := newPageEnv(t, nil)
	dash := e.provisionThroughOSB(t, instanceID, catalog.PostgresDevLiteID, `{}`)
	// A record the store cannot parse: an internal error, said in words
	// with no detail, and logged.
	sec := e.secretRecord(t, instanceSecretName(instanceID))
	sec.Data[recordKey] = []byte("{not json")
	_, err := e.client.CoreV1().Secrets(recordsNS).Update(e.ctx, sec, metav1.UpdateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	w := e.page(t, pathOf(t, dash))
	g.Expect(w.Code).To(Equal(http.StatusInternalServerError))
	body, _ := io.ReadAll(w.Body)
	g.Expect(string(body)).To(ContainSubstring("could not be built"))
	g.Expect(string(body)).NotTo(ContainSubstring("corrupt"))
	g.Expect(e.logs.FilterMessage("instance page").FilterField(zap.Int("status", 500)).Len()).To(Equal(1))
}

// Changing dashboard_url_generation on an update replaces the page's
// token: the update answers with the new dashboard_url, GET instance
// agrees, the old link is a 404 and the new one opens the page. Sending the
// same parameters again is a no-op that keeps the link.
func TestInstancePageLinkRotatesOnANewGeneration(t *testing.T) {
	g := NewWithT(t)
	e := newPageEnv(t, nil)
	old := e.provisionThroughOSB(t, instanceID, catalog.PostgresDevLiteID, `{}`)
	g.Expect(e.page(t, pathOf(t, old)).Code).To(Equal(http.StatusOK))

	update := fmt.Sprintf(`{"service_id":%q,"plan_id":%q,"parameters":{%q:1}}`, catalog.PostgresServiceID, catalog.PostgresDevLiteID, catalog.DashboardURLGeneration)
	status, res := e.osb(t, "PATCH", "/v2/service_instances/"+instanceID+"?accepts_incomplete=true", update)
	g.Expect(status).To(Equal(http.StatusAccepted), "%v", res)
	rotated, _ := res["dashboard_url"].(string)
	g.Expect(rotated).To(HavePrefix("https://broker.example.com/strata/instances/"+instanceID+"/page/"), "the update answers with the new link")
	g.Expect(tokenOf(rotated)).NotTo(Equal(tokenOf(old)))
	e.operatorsAct(t, instanceID)
	status, res = e.osb(t, "GET", "/v2/service_instances/"+instanceID+"/last_operation", "")
	g.Expect(status).To(Equal(http.StatusOK))
	g.Expect(res["state"]).To(Equal("succeeded"), "%v", res)
	status, got := e.osb(t, "GET", "/v2/service_instances/"+instanceID, "")
	g.Expect(status).To(Equal(http.StatusOK), "%v", got)
	g.Expect(got["dashboard_url"]).To(Equal(rotated))
	g.Expect(e.page(t, pathOf(t, old)).Code).To(Equal(http.StatusNotFound), "the old link no longer opens the page")
	g.Expect(e.page(t, pathOf(t, rotated)).Code).To(Equal(http.StatusOK))

	// A platform re-sending the same parameters changes nothing.
	status, res = e.osb(t, "PATCH", "/v2/service_instances/"+instanceID+"?accepts_incomplete=true", update)
	g.Expect(status).To(Equal(http.StatusOK), "%v", res)
	g.Expect(e.record(t, instanceID).DashboardURL).To(Equal(rotated))
	g.Expect(e.page(t, pathOf(t, rotated)).Code).To(Equal(http.StatusOK))
}
