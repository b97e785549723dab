//go:build linux

package integration_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/catalog"
)

// TestPostgresLifecycle drives one broker through an instance's whole life
// over HTTP, as a platform would: catalog → provision → poll → update →
// bind → get binding → unbind → deprovision → gone.
func TestPostgresLifecycle(t *testing.T) {
	g := NewWithT(t)
	w := sharedWorld(t)
	osb := w.startBroker(t)
	const id = "6b4a3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"
	const path = "/v2/service_instances/" + id
	const cluster = "pg-" + id
	params := map[string]any{"replicas": 2, "databases": []any{"app", "reports"}, "extensions": []any{"pg_trgm"}, "xa": true}

	t.Run("catalog", func(t *testing.T) {
		g := NewWithT(t)
		r := osb.do(http.MethodGet, "/v2/catalog", nil)
		g.Expect(r.Code).To(Equal(http.StatusOK), r.Raw)
		var cat struct {
			Services []struct {
				ID, Name string
				Plans    []struct {
					ID, Name               string
					MaximumPollingDuration int                      `json:"maximum_polling_duration"`
					MaintenanceInfo        struct{ Version string } `json:"maintenance_info"`
					Schemas                map[string]map[string]map[string]map[string]any
				}
			}
		}
		g.Expect(json.Unmarshal([]byte(r.Raw), &cat)).To(Succeed())
		var names []string
		for _, s := range cat.Services {
			names = append(names, s.Name)
		}
		g.Expect(names).To(ConsistOf("postgresql", "redis", "kafka"))
		for _, s := range cat.Services {
			want := 3 // dev-lite, standard, ha
			if s.Name == "postgresql" {
				want = 4 // and shared
			}
			g.Expect(s.Plans).To(HaveLen(want), "%s: dev-lite, standard, ha (postgresql: and shared)", s.Name)
			for _, p := range s.Plans {
				g.Expect(p.ID).To(MatchRegexp(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`), "plan ids must be UUIDs for Crossplane")
				g.Expect(p.MaximumPollingDuration).To(BeNumerically(">", 0))
				g.Expect(p.MaintenanceInfo.Version).To(Equal("1.0.0"))
				g.Expect(p.Schemas["service_instance"]["create"]["parameters"]).To(HaveKey("$schema"), "%s %s", s.Name, p.Name)
			}
		}
	})

	var operation string
	t.Run("provision answers 202 and creates the objects", func(t *testing.T) {
		g := NewWithT(t)
		r := osb.do(http.MethodPut, path+"?accepts_incomplete=true", provisionBody(catalog.PostgresStandardID, "team-a", params))
		g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
		operation, _ = r.Body["operation"].(string)
		g.Expect(operation).To(HavePrefix("provision-"))
		g.Expect(r.Body["dashboard_url"]).To(ContainSubstring("var-cluster=" + cluster))

		c := w.get(g, clusterGVR, "team-a", cluster)
		g.Expect(c.GetLabels()).To(HaveKeyWithValue("strata.dev/instance-id", id))
		g.Expect(c.GetLabels()).To(HaveKeyWithValue("strata.dev/plan", "standard"))
		g.Expect(c.GetLabels()).To(HaveKeyWithValue("strata.dev/tenant", "team-a"))
		instances, _, _ := unstructured.NestedInt64(c.Object, "spec", "instances")
		g.Expect(instances).To(Equal(int64(3)))
		w.get(g, poolerGVR, "team-a", cluster+"-pooler")
		w.get(g, objectStoreGVR, "team-a", cluster+"-backup")
		w.get(g, schedBackupGVR, "team-a", cluster+"-daily")
		w.get(g, databaseGVR, "team-a", cluster+"-db-app")
		w.get(g, databaseGVR, "team-a", cluster+"-db-reports")
		w.get(g, netpolGVR, "team-a", cluster)
		w.get(g, podMonitorGVR, "team-a", cluster)
	})

	t.Run("repeats and conflicts while provisioning", func(t *testing.T) {
		g := NewWithT(t)
		r := osb.do(http.MethodPut, path+"?accepts_incomplete=true", provisionBody(catalog.PostgresStandardID, "team-a", params))
		g.Expect(r.Code).To(Equal(http.StatusAccepted), "an identical PUT in progress gets 202 with the same operation")
		g.Expect(r.Body["operation"]).To(Equal(operation))

		other := map[string]any{"replicas": 1}
		r = osb.do(http.MethodPut, path+"?accepts_incomplete=true", provisionBody(catalog.PostgresStandardID, "team-a", other))
		g.Expect(r.Code).To(Equal(http.StatusConflict), r.Raw)

		r = osb.do(http.MethodGet, path, nil)
		g.Expect(r.Code).To(Equal(http.StatusNotFound), "GET instance while provisioning is 404")

		r = osb.do(http.MethodGet, path+"/last_operation?operation="+operation, nil)
		g.Expect(r.Code).To(Equal(http.StatusOK))
		g.Expect(r.Body["state"]).To(Equal("in progress"))
		g.Expect(r.Header.Get("Retry-After")).To(Equal("3"))
		g.Expect(r.Body["description"]).To(ContainSubstring("0 of 3 instances ready"))
	})

	t.Run("operator reports ready: succeeded", func(t *testing.T) {
		g := NewWithT(t)
		w.operatorReportsReady(t, "team-a", cluster)
		r := osb.do(http.MethodGet, path+"/last_operation?operation="+operation+"&plan_id="+catalog.PostgresStandardID, nil)
		g.Expect(r.Code).To(Equal(http.StatusOK), r.Raw)
		g.Expect(r.Body["state"]).To(Equal("succeeded"), r.Raw)
		g.Expect(r.Body["description"]).To(ContainSubstring("3 of 3 instances"))
		g.Expect(r.Header.Get("Retry-After")).To(BeEmpty())

		r = osb.do(http.MethodPut, path+"?accepts_incomplete=true", provisionBody(catalog.PostgresStandardID, "team-a", params))
		g.Expect(r.Code).To(Equal(http.StatusOK), "an identical PUT after completion gets 200")
	})

	t.Run("GET instance returns the plan and exactly the parameters sent", func(t *testing.T) {
		g := NewWithT(t)
		// Crossplane sends empty hints; they must not be refused.
		r := osb.do(http.MethodGet, path+"?plan_id=&service_id=", nil)
		g.Expect(r.Code).To(Equal(http.StatusOK), r.Raw)
		g.Expect(r.Body["plan_id"]).To(Equal(catalog.PostgresStandardID))
		g.Expect(r.Body["service_id"]).To(Equal(catalog.PostgresServiceID))
		sent, _ := json.Marshal(params)
		var want map[string]any
		_ = json.Unmarshal(sent, &want)
		g.Expect(r.Body["parameters"]).To(Equal(want))
	})

	t.Run("update", func(t *testing.T) {
		g := NewWithT(t)
		patch := func(planID string, p map[string]any) response {
			body := map[string]any{"service_id": catalog.PostgresServiceID, "parameters": p,
				"context": map[string]any{"platform": "kubernetes", "namespace": "team-a"}}
			if planID != "" {
				body["plan_id"] = planID
			}
			return osb.do(http.MethodPatch, path+"?accepts_incomplete=true", body)
		}
		r := patch("", params)
		g.Expect(r.Code).To(Equal(http.StatusOK), "an identical PATCH is a cheap no-op: %s", r.Raw)
		g.Expect(r.Raw).To(MatchJSON(`{}`))

		grown := map[string]any{"replicas": 3, "databases": []any{"app", "reports"}, "extensions": []any{"pg_trgm"}, "xa": true, "storage_gb": 40}
		r = patch("", grown)
		g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
		op := r.Body["operation"].(string)
		g.Expect(op).To(HavePrefix("update-"))

		c := w.get(g, clusterGVR, "team-a", cluster)
		instances, _, _ := unstructured.NestedInt64(c.Object, "spec", "instances")
		size, _, _ := unstructured.NestedString(c.Object, "spec", "storage", "size")
		g.Expect(instances).To(Equal(int64(4)))
		g.Expect(size).To(Equal("40Gi"))

		g.Expect(osb.do(http.MethodGet, path, nil).Body["error"]).To(Equal("ConcurrencyError"), "GET instance while updating")
		r = patch("", params)
		g.Expect(r.Code).To(Equal(http.StatusUnprocessableEntity))
		g.Expect(r.Body["error"]).To(Equal("ConcurrencyError"))

		r = osb.do(http.MethodGet, path+"/last_operation?operation="+op, nil)
		g.Expect(r.Body["state"]).To(Equal("in progress"), "a fourth instance is wanted")
		g.Expect(r.Body["description"]).To(ContainSubstring("3 of 4 instances ready"))
		w.operatorReportsReady(t, "team-a", cluster)
		r = osb.do(http.MethodGet, path+"/last_operation?operation="+op, nil)
		g.Expect(r.Body["state"]).To(Equal("succeeded"), r.Raw)

		r = patch(catalog.PostgresHAID, grown)
		g.Expect(r.Code).To(Equal(http.StatusAccepted), "standard → ha is a safe path: %s", r.Raw)
		c = w.get(g, clusterGVR, "team-a", cluster)
		method, _, _ := unstructured.NestedString(c.Object, "spec", "postgresql", "synchronous", "method")
		g.Expect(method).To(Equal("any"))
		haOp := r.Body["operation"].(string)
		r = osb.do(http.MethodGet, path+"/last_operation?operation="+haOp, nil)
		g.Expect(r.Body["state"]).To(Equal("in progress"), "healthy, but Ready is from before the update: %s", r.Raw)
		g.Expect(r.Body["description"]).To(ContainSubstring("waiting for CloudNativePG to act on the update"))
		w.operatorReportsReady(t, "team-a", cluster)
		r = osb.do(http.MethodGet, path+"/last_operation?operation="+haOp+"&plan_id="+catalog.PostgresStandardID, nil)
		g.Expect(r.Body["state"]).To(Equal("succeeded"), r.Raw)

		r = patch(catalog.PostgresStandardID, grown)
		g.Expect(r.Code).To(Equal(http.StatusUnprocessableEntity))
		g.Expect(r.Body["error"]).To(Equal("PlanChangeNotSupported"))
		g.Expect(r.Body["description"]).To(ContainSubstring("synchronous replication"))

		shrunk := map[string]any{"replicas": 3, "databases": []any{"app", "reports"}, "storage_gb": 10}
		r = patch("", shrunk)
		g.Expect(r.Code).To(Equal(http.StatusUnprocessableEntity), r.Raw)
		g.Expect(r.Body["description"]).To(ContainSubstring("parameters.storage_gb"))

		r = patch("", map[string]any{"replicas": 99})
		g.Expect(r.Code).To(Equal(http.StatusBadRequest))
		g.Expect(r.Body["description"]).To(ContainSubstring("parameters.replicas"))
		r = osb.do(http.MethodGet, path, nil)
		g.Expect(r.Body["plan_id"]).To(Equal(catalog.PostgresHAID), "refused updates change nothing")
		params = grown
	})

	t.Run("bind asynchronously, get binding, unbind", func(t *testing.T) {
		g := NewWithT(t)
		const bid = "b1b2b3b4-0000-4000-8000-000000000001"
		bpath := path + "/service_bindings/" + bid
		body := map[string]any{"service_id": catalog.PostgresServiceID, "plan_id": catalog.PostgresHAID,
			"parameters": map[string]any{"access": "readwrite", "database": "reports"}}
		r := osb.do(http.MethodPut, bpath+"?accepts_incomplete=true", body)
		g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
		g.Expect(r.Body).NotTo(HaveKey("credentials"), "no credentials in a 202")
		op := r.Body["operation"].(string)

		g.Expect(osb.do(http.MethodGet, bpath, nil).Code).To(Equal(http.StatusNotFound), "GET binding while binding is 404")
		r = osb.do(http.MethodPut, bpath, body)
		g.Expect(r.Code).To(Equal(http.StatusUnprocessableEntity), "a repeat without accepts_incomplete may not get a 202: %s", r.Raw)
		g.Expect(r.Body["error"]).To(Equal("ConcurrencyError"))
		r = osb.do(http.MethodGet, bpath+"/last_operation?operation="+op, nil)
		g.Expect(r.Body["state"]).To(Equal("in progress"), r.Raw)
		g.Expect(r.Body["description"]).To(ContainSubstring("role"))
		roles := w.list(databaseRoleGVR, "team-a", "strata.dev/binding-id="+bid)
		g.Expect(roles).To(HaveLen(2), "an application role and a migration (owner) role")

		w.operatorAppliesRoles(t, "team-a", cluster)
		r = osb.do(http.MethodGet, bpath+"/last_operation?operation="+op, nil)
		g.Expect(r.Body["state"]).To(Equal("succeeded"), r.Raw)

		r = osb.do(http.MethodGet, bpath, nil)
		g.Expect(r.Code).To(Equal(http.StatusOK), r.Raw)
		creds := r.Body["credentials"].(map[string]any)
		g.Expect(creds["spring.datasource.url"]).To(HavePrefix("jdbc:postgresql://" + cluster + "-pooler.team-a.svc:5432/reports?sslmode=verify-full"))
		g.Expect(creds["spring.datasource.url"]).To(ContainSubstring("prepareThreshold=0"))
		g.Expect(creds["spring.flyway.url"]).To(HavePrefix("jdbc:postgresql://" + cluster + "-rw.team-a.svc:5432/reports"))
		g.Expect(creds["ca.crt"]).To(Equal(string(testCAPEM(t))))
		g.Expect(creds["type"]).To(Equal("postgresql"))
		g.Expect(r.Body["parameters"]).To(Equal(body["parameters"]))

		secret, err := w.core.CoreV1().Secrets("team-a").Get(context.Background(), "binding-"+bid, metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(secret.Data["spring.datasource.password"])).To(Equal(creds["password"]))
		g.Expect(string(secret.Type)).To(Equal("servicebinding.io/postgresql"))

		r = osb.do(http.MethodPut, bpath+"?accepts_incomplete=true", body)
		g.Expect(r.Code).To(Equal(http.StatusOK), "an identical bind after completion is 200")
		g.Expect(r.Body["credentials"]).To(Equal(creds))
		body2 := map[string]any{"service_id": catalog.PostgresServiceID, "plan_id": catalog.PostgresHAID, "parameters": map[string]any{"access": "readonly"}}
		g.Expect(osb.do(http.MethodPut, bpath+"?accepts_incomplete=true", body2).Code).To(Equal(http.StatusConflict))

		r = osb.do(http.MethodDelete, bpath+"?service_id="+catalog.PostgresServiceID+"&plan_id="+catalog.PostgresHAID, nil)
		g.Expect(r.Code).To(Equal(http.StatusOK), r.Raw)
		g.Expect(live(w.list(databaseRoleGVR, "team-a", "strata.dev/binding-id="+bid))).To(BeEmpty(), "the roles are being deleted")
		secret, err = w.core.CoreV1().Secrets("team-a").Get(context.Background(), "binding-"+bid, metav1.GetOptions{})
		g.Expect(err != nil || secret.DeletionTimestamp != nil).To(BeTrue(), "the binding Secret is deleted")
		r = osb.do(http.MethodDelete, bpath+"?service_id="+catalog.PostgresServiceID+"&plan_id="+catalog.PostgresHAID, nil)
		g.Expect(r.Code).To(Equal(http.StatusGone))
	})

	t.Run("bind synchronously", func(t *testing.T) {
		g := NewWithT(t)
		const bid = "b1b2b3b4-0000-4000-8000-000000000002"
		r := osb.do(http.MethodPut, path+"/service_bindings/"+bid, map[string]any{
			"service_id": catalog.PostgresServiceID, "plan_id": catalog.PostgresHAID,
			"parameters": map[string]any{"access": "readonly"}})
		g.Expect(r.Code).To(Equal(http.StatusCreated), r.Raw)
		creds := r.Body["credentials"].(map[string]any)
		g.Expect(creds["host"]).To(Equal(cluster+"-ro.team-a.svc"), "readonly goes to the standbys")
		g.Expect(creds["spring.flyway.enabled"]).To(Equal("false"))
		g.Expect(w.list(databaseRoleGVR, "team-a", "strata.dev/binding-id="+bid)).To(HaveLen(1))
		r = osb.do(http.MethodPut, path+"/service_bindings/"+bid, map[string]any{
			"service_id": catalog.PostgresServiceID, "plan_id": catalog.PostgresHAID, "parameters": map[string]any{"database": "nope"}})
		g.Expect(r.Code).To(Equal(http.StatusConflict))
	})

	t.Run("deprovision keeps the backups and then the instance is gone", func(t *testing.T) {
		g := NewWithT(t)
		r := osb.do(http.MethodDelete, path+"?service_id="+catalog.PostgresServiceID+"&plan_id="+catalog.PostgresHAID, nil)
		g.Expect(r.Code).To(Equal(http.StatusUnprocessableEntity), "deprovision is asynchronous")
		g.Expect(r.Body["error"]).To(Equal("AsyncRequired"))

		r = osb.do(http.MethodDelete, path+"?accepts_incomplete=true&service_id="+catalog.PostgresServiceID+"&plan_id="+catalog.PostgresHAID, nil)
		g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
		op := r.Body["operation"].(string)
		g.Expect(op).To(HavePrefix("deprovision-"))
		g.Expect(live(w.list(databaseRoleGVR, "team-a", "strata.dev/instance-id="+id))).To(BeEmpty(), "bindings are revoked with the instance")

		r = osb.do(http.MethodGet, path+"/last_operation?operation="+op, nil)
		g.Expect(r.Body["state"]).To(Equal("in progress"), "foreground deletion waits for the garbage collector: %s", r.Raw)
		g.Expect(r.Body["description"]).To(ContainSubstring("backups are kept"))
		w.collectGarbage(t, "team-a", allInstanceGVRs...)
		r = osb.do(http.MethodGet, path+"/last_operation?operation="+op, nil)
		expectGone(g, r)
		r = osb.do(http.MethodGet, path+"/last_operation?operation="+op, nil)
		expectGone(g, r)
		r = osb.do(http.MethodGet, path+"/last_operation", nil)
		expectGone(g, r)

		_, err := w.dyn.Resource(clusterGVR).Namespace("team-a").Get(context.Background(), cluster, metav1.GetOptions{})
		g.Expect(err).To(HaveOccurred(), "the Cluster is deleted")
		w.get(g, objectStoreGVR, "team-a", cluster+"-backup") // retained for restores
		g.Expect(osb.do(http.MethodGet, path, nil).Code).To(Equal(http.StatusNotFound))
		r = osb.do(http.MethodDelete, path+"?accepts_incomplete=true&service_id="+catalog.PostgresServiceID+"&plan_id="+catalog.PostgresHAID, nil)
		g.Expect(r.Code).To(Equal(http.StatusGone))
	})

	_ = g
}

// TestRequestsThePlatformGetsWrong checks the status codes the spec requires
// for bad requests.
func TestRequestsThePlatformGetsWrong(t *testing.T) {
	w := sharedWorld(t)
	osb := w.startBroker(t)
	const path = "/v2/service_instances/0badbad0-0000-4000-8000-000000000000"
	put := func(body any, mutate ...func(*http.Request)) response {
		return osb.do(http.MethodPut, path+"?accepts_incomplete=true", body, mutate...)
	}
	cases := []struct {
		name   string
		res    func() response
		code   int
		error  string
		substr string
	}{
		{"no credentials", func() response {
			return osb.do(http.MethodGet, "/v2/catalog", nil, func(r *http.Request) { r.Header.Del("Authorization") })
		}, 401, "Unauthorized", ""},
		{"wrong password", func() response {
			return osb.do(http.MethodGet, "/v2/catalog", nil, func(r *http.Request) { r.SetBasicAuth(osbUser, "nope") })
		}, 401, "Unauthorized", ""},
		{"no version header", func() response {
			return osb.do(http.MethodGet, "/v2/catalog", nil, func(r *http.Request) { r.Header.Del("X-Broker-API-Version") })
		}, 412, "PreconditionFailed", "2.17"},
		{"version 1.x", func() response {
			return osb.do(http.MethodGet, "/v2/catalog", nil, func(r *http.Request) { r.Header.Set("X-Broker-API-Version", "1.0") })
		}, 412, "PreconditionFailed", ""},
		{"malformed JSON", func() response { return put("{nope") }, 400, "MalformedRequest", ""},
		{"parameters not an object", func() response {
			b := provisionBody(catalog.PostgresDevLiteID, "team-c", nil)
			b["parameters"] = []any{1}
			return put(b)
		}, 400, "InvalidParameters", ""},
		{"no accepts_incomplete", func() response {
			return osb.do(http.MethodPut, path, provisionBody(catalog.PostgresDevLiteID, "team-c", nil))
		}, 422, "AsyncRequired", ""},
		{"unknown plan", func() response { return put(provisionBody("nope", "team-c", nil)) }, 400, "", ""},
		{"invalid parameter", func() response {
			return put(provisionBody(catalog.PostgresDevLiteID, "team-c", map[string]any{"storage_gb": 5000}))
		}, 400, "InvalidParameters", "parameters.storage_gb"},
		{"backup on a plan without backups", func() response {
			return put(provisionBody(catalog.PostgresDevLiteID, "team-c", map[string]any{"backup": map[string]any{"retention_days": 3}}))
		}, 400, "InvalidParameters", "parameters.backup: unknown parameter"},
		{"bad cron", func() response {
			return put(provisionBody(catalog.PostgresStandardID, "team-c", map[string]any{"backup": map[string]any{"schedule": "0 3 * * *"}}))
		}, 400, "InvalidParameters", "parameters.backup.schedule"},
		{"namespace missing", func() response { return put(provisionBody(catalog.PostgresDevLiteID, "no-such-ns", nil)) }, 400, "BadRequest", "does not exist"},
		{"maintenance_info mismatch", func() response {
			b := provisionBody(catalog.PostgresDevLiteID, "team-c", nil)
			b["maintenance_info"] = map[string]any{"version": "0.9.0"}
			return put(b)
		}, 422, "MaintenanceInfoConflict", ""},
		{"deprovision unknown", func() response {
			return osb.do(http.MethodDelete, path+"?accepts_incomplete=true&service_id="+catalog.PostgresServiceID+"&plan_id="+catalog.PostgresDevLiteID, nil)
		}, 410, "", ""},
		{"deprovision without ids", func() response { return osb.do(http.MethodDelete, path+"?accepts_incomplete=true", nil) }, 400, "", ""},
		{"last_operation unknown", func() response { return osb.do(http.MethodGet, path+"/last_operation", nil) }, 404, "NotFound", ""},
		{"last_operation after a finished deprovision", func() response {
			return osb.do(http.MethodGet, path+"/last_operation?operation=deprovision", nil)
		}, 410, "", ""},
		{"GET unknown instance", func() response { return osb.do(http.MethodGet, path, nil) }, 404, "", ""},
		{"unbind unknown", func() response {
			return osb.do(http.MethodDelete, path+"/service_bindings/x?service_id="+catalog.PostgresServiceID+"&plan_id="+catalog.PostgresDevLiteID, nil)
		}, 410, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			r := c.res()
			g.Expect(r.Code).To(Equal(c.code), r.Raw)
			g.Expect(r.Header.Get("X-Broker-API-Request-Identity")).To(Equal(requestIdentity), "the request identity is echoed on every answer")
			if c.error != "" {
				g.Expect(r.Body["error"]).To(Equal(c.error), r.Raw)
			}
			if r.Code >= 400 && r.Code != 410 {
				g.Expect(r.Body["description"]).NotTo(BeEmpty(), "error bodies carry a description: %s", r.Raw)
			}
			if c.substr != "" {
				g.Expect(r.Body["description"]).To(ContainSubstring(c.substr))
			}
		})
	}
}

// TestTwoBrokersRacing: two replicas receive the same provision at once;
// exactly one Cluster and one record result, and both answers agree.
func TestTwoBrokersRacing(t *testing.T) {
	g := NewWithT(t)
	w := sharedWorld(t)
	a, b := w.startBroker(t), w.startBroker(t)
	const id = "7ace7ace-0000-4000-8000-000000000000"
	body := provisionBody(catalog.PostgresDevLiteID, "team-c", map[string]any{"storage_gb": 2})
	results := make(chan response, 8)
	for i := range 8 {
		c := a
		if i%2 == 1 {
			c = b
		}
		go func() { results <- c.do(http.MethodPut, "/v2/service_instances/"+id+"?accepts_incomplete=true", body) }()
	}
	ops := map[string]int{}
	for range 8 {
		r := <-results
		g.Expect(r.Code).To(Or(Equal(http.StatusAccepted), Equal(http.StatusUnprocessableEntity)), r.Raw)
		if r.Code == http.StatusAccepted {
			ops[r.Body["operation"].(string)]++
		}
	}
	g.Expect(ops).To(HaveLen(1), "every 202 names the same operation")
	g.Expect(w.list(clusterGVR, "team-c", "strata.dev/instance-id="+id)).To(HaveLen(1))
	recs, err := w.core.CoreV1().Secrets(brokerNS).List(context.Background(), metav1.ListOptions{LabelSelector: "strata.dev/instance-id=" + id})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(recs.Items).To(HaveLen(1))
}

// TestEveryPlanAndPlatformIsAccepted provisions every plan, in a meshed
// namespace, from a Cloud Foundry context and from Crossplane's camelCase
// context: the API server accepts every object (CRD schemas and CEL rules).
func TestEveryPlanAndPlatformIsAccepted(t *testing.T) {
	w := sharedWorld(t)
	osb := w.startBroker(t)
	t.Run("dev-lite", func(t *testing.T) {
		g := NewWithT(t)
		r := osb.do(http.MethodPut, "/v2/service_instances/d0000000-0000-4000-8000-000000000001?accepts_incomplete=true",
			provisionBody(catalog.PostgresDevLiteID, "team-c", map[string]any{"version": "16", "audit": map[string]any{"classes": []any{"ddl"}}}))
		g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
		g.Expect(w.list(objectStoreGVR, "team-c", "strata.dev/instance-id=d0000000-0000-4000-8000-000000000001")).To(BeEmpty(), "dev-lite keeps no backups")
	})
	t.Run("ha in a meshed namespace", func(t *testing.T) {
		g := NewWithT(t)
		const id = "a0000000-0000-4000-8000-000000000002"
		r := osb.do(http.MethodPut, "/v2/service_instances/"+id+"?accepts_incomplete=true", provisionBody(catalog.PostgresHAID, "team-b", nil))
		g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
		pa := w.get(g, peerAuthGVR, "team-b", "pg-"+id)
		mode, _, _ := unstructured.NestedString(pa.Object, "portLevelMtls", "8000", "mode")
		if mode == "" {
			mode, _, _ = unstructured.NestedString(pa.Object, "spec", "portLevelMtls", "8000", "mode")
		}
		g.Expect(mode).To(Equal("PERMISSIVE"))
		c := w.get(g, clusterGVR, "team-b", "pg-"+id)
		ann, _, _ := unstructured.NestedString(c.Object, "spec", "inheritedMetadata", "annotations", "proxy.istio.io/config")
		g.Expect(ann).To(ContainSubstring("holdApplicationUntilProxyStarts"))
	})
	t.Run("cloud foundry context", func(t *testing.T) {
		g := NewWithT(t)
		const id = "cf000000-0000-4000-8000-000000000003"
		body := map[string]any{"service_id": catalog.PostgresServiceID, "plan_id": catalog.PostgresDevLiteID,
			"organization_guid": "0A1B2C3D-0000-4000-8000-00000000000A", "space_guid": "5BACE000-0000-4000-8000-00000000000B",
			"context": map[string]any{"platform": "cloudfoundry", "organization_guid": "0A1B2C3D-0000-4000-8000-00000000000A", "space_guid": "5BACE000-0000-4000-8000-00000000000B", "organization_name": "acme", "space_name": "dev"}}
		r := osb.do(http.MethodPut, "/v2/service_instances/"+id+"?accepts_incomplete=true", body)
		g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
		ns, err := w.core.CoreV1().Namespaces().Get(context.Background(), "cf-5bace000-0000-4000-8000-00000000000b", metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred(), "the space's namespace is created")
		g.Expect(ns.Labels).To(HaveKeyWithValue("app.kubernetes.io/managed-by", "strata"))
		w.get(g, clusterGVR, "cf-5bace000-0000-4000-8000-00000000000b", "pg-"+id)
	})
	t.Run("crossplane camelCase context", func(t *testing.T) {
		g := NewWithT(t)
		const id = "c0000000-0000-4000-8000-000000000004"
		body := map[string]any{"service_id": catalog.PostgresServiceID, "plan_id": catalog.PostgresDevLiteID,
			"organization_guid": "x", "space_guid": "y",
			"context": map[string]any{"platform": "kubernetes", "namespace": "team-c", "clusterId": "c1", "instanceName": "db", "namespaceAnnotations": map[string]any{}}}
		r := osb.do(http.MethodPut, "/v2/service_instances/"+id+"?accepts_incomplete=true", body)
		g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	})
}

// TestPollingDeadline: an operation that outlives the plan's maximum
// polling duration fails with a reason, and the platform's orphan
// mitigation (deprovision) then works.
func TestPollingDeadline(t *testing.T) {
	g := NewWithT(t)
	w := sharedWorld(t)
	osb := w.startBroker(t)
	const id = "dead0000-0000-4000-8000-000000000000"
	path := "/v2/service_instances/" + id
	r := osb.do(http.MethodPut, path+"?accepts_incomplete=true", provisionBody(catalog.PostgresDevLiteID, "team-c", nil))
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	w.now.Advance(31 * time.Minute)
	defer w.now.Advance(-31 * time.Minute)
	r = osb.do(http.MethodGet, path+"/last_operation", nil)
	g.Expect(r.Body["state"]).To(Equal("failed"), r.Raw)
	g.Expect(r.Body["description"]).To(ContainSubstring("maximum polling duration"))
	g.Expect(r.Body).NotTo(HaveKey("instance_usable"), "instance_usable is only for update and deprovision")
	r = osb.do(http.MethodDelete, path+"?accepts_incomplete=true&service_id="+catalog.PostgresServiceID+"&plan_id="+catalog.PostgresDevLiteID, nil)
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	g.Expect(strings.HasPrefix(r.Body["operation"].(string), "deprovision-")).To(BeTrue())
}
