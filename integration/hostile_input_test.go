//go:build linux

package integration_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/strata-dev/strata/broker"
	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
)

// lockedBuffer is the broker's log, written by request goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// hostileCase is one request and the answer the spec asks for.
type hostileCase struct {
	name   string
	method string
	path   string
	body   any // nil, a raw string, or a value sent as JSON
	header map[string]string
	// noAuth sends no Authorization header at all.
	noAuth bool
	status int
	code   string // the OSB error code, "" when not checked
	// mention is what the description must name (the field, the header).
	mention string
	// refused ids: nothing may exist for them afterwards.
	instanceID, bindingID string
}

const (
	hostileNS     = "hostile-tenant"
	hostileDenied = "hostile-denied"
	// liveID is the one instance the suite provisions (for the update and
	// bind refusals that need an instance).
	liveID = "0b5e11e0-1111-4000-8000-000000000001"
)

// secretValue is a secret-looking value sent in the request n; none may
// reach the broker's log or an answer.
func secretValue(n int) string { return fmt.Sprintf("S3cr3t-%03d-hunter2-zq9", n) }

// TestHostileInput sends a few hundred hostile requests over every
// endpoint of a broker with the chart's RBAC: each is answered with the
// spec's status code and an OSB error body naming what is wrong, none is
// a 5xx, nothing is created in Kubernetes or the broker's records for
// them, and no secret value sent reaches the log.
func TestHostileInput(t *testing.T) {
	g := NewWithT(t)
	w := sharedWorld(t)
	ctx := context.Background()

	reserved := []string{"kube-system", "kube-public", "kube-node-lease", "default", brokerNS,
		"kafka", "strata-postgres", "cnpg-system", "redis-operator", "monitoring", hostileDenied}
	for _, ns := range append([]string{hostileNS}, reserved...) {
		w.ensureNamespace(t, ns, nil)
	}

	logs := &lockedBuffer{}
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	// Stack traces at error level: a refusal logged as an error would
	// show one.
	log := zap.New(zapcore.NewCore(enc, zapcore.AddSync(logs), zapcore.DebugLevel), zap.AddStacktrace(zapcore.ErrorLevel))
	b, err := broker.New(w.brokerConfig, broker.Options{
		Namespace: brokerNS, Postgres: pgConfig(), Log: log, Now: w.now.Now,
		DeniedNamespaces: []string{hostileDenied},
	})
	g.Expect(err).NotTo(HaveOccurred())
	srv := httptest.NewTLSServer(broker.NewHandler(b, broker.HandlerOptions{
		Credentials: func() (string, string, error) { return osbUser, osbPass, nil },
		Registry:    prometheus.NewRegistry(), Log: log,
	}))
	t.Cleanup(srv.Close)
	osb := &osbClient{t: t, base: srv.URL, http: srv.Client()}

	// One live instance, provisioned and reported ready, for the refusals
	// of update and bind that get past the edges.
	live := "/v2/service_instances/" + liveID
	r := osb.do(http.MethodPut, live+"?accepts_incomplete=true", provisionBody(catalog.PostgresDevLiteID, hostileNS, nil))
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	w.operatorReportsReady(t, hostileNS, "pg-"+liveID)
	g.Eventually(func() any {
		return osb.do(http.MethodGet, live+"/last_operation", nil).Body["state"]
	}).WithTimeout(30 * time.Second).Should(Equal("succeeded"))

	namespacesBefore := namespaceNames(t, w)
	cases := hostileCases()
	g.Expect(len(cases)).To(BeNumerically(">=", 250), "the suite sends at least 250 hostile requests")

	var secrets []string
	for i := range cases {
		secrets = append(secrets, secretValue(i))
	}
	fiveHundreds := 0
	for i, tc := range cases {
		t.Run(fmt.Sprintf("%03d %s", i, tc.name), func(t *testing.T) {
			g := NewWithT(t)
			c := &osbClient{t: t, base: osb.base, http: osb.http}
			r := c.do(tc.method, tc.path, tc.body, func(req *http.Request) {
				if tc.noAuth {
					req.Header.Del("Authorization")
				}
				for k, v := range tc.header {
					if v == "" {
						req.Header.Del(k)
						continue
					}
					req.Header.Set(k, v)
				}
			})
			if r.Code >= 500 {
				fiveHundreds++
			}
			g.Expect(r.Code).To(Equal(tc.status), "%s %s: %s", tc.method, clipPath(tc.path), clipRaw(r.Raw))
			g.Expect(r.Header.Get("Content-Type")).To(Equal("application/json"), clipRaw(r.Raw))
			g.Expect(r.Body).NotTo(BeNil(), "an OSB error body: %s", clipRaw(r.Raw))
			g.Expect(r.Body["description"]).To(BeAssignableToTypeOf(""), clipRaw(r.Raw))
			desc := r.Body["description"].(string)
			g.Expect(desc).NotTo(BeEmpty())
			if tc.code != "" {
				g.Expect(r.Body["error"]).To(Equal(tc.code), desc)
			}
			g.Expect(desc).To(ContainSubstring(tc.mention))
			for _, s := range secrets {
				g.Expect(r.Raw).NotTo(ContainSubstring(s), "an answer repeats a secret value")
			}
			g.Expect(len(r.Raw)).To(BeNumerically("<", 2048), "an answer does not echo a large input")
			if id := r.Header.Get("X-Broker-API-Request-Identity"); id != "" {
				g.Expect(len(id)).To(BeNumerically("<=", 256), "only a bounded request identity is echoed")
			}
		})
	}
	g.Expect(fiveHundreds).To(BeZero(), "no hostile request gets a 5xx")

	t.Run("nothing was created for a refused request", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(namespaceNames(t, w)).To(Equal(namespacesBefore), "no namespace was created (Cloud Foundry spaces included)")
		refused := map[string]bool{}
		for _, tc := range cases {
			for _, id := range []string{tc.instanceID, tc.bindingID} {
				if id != "" && id != liveID {
					refused[provisioners.LabelValue(id)] = true
				}
			}
		}
		g.Expect(len(refused)).To(BeNumerically(">", 100))
		for _, gvr := range append(allInstanceGVRs, certificateGVR) {
			for _, sel := range []string{provisioners.LabelInstanceID, provisioners.LabelBindingID} {
				for _, o := range w.list(gvr, "", sel) {
					l := o.GetLabels()
					g.Expect(refused).NotTo(HaveKey(l[sel]), "%s %s/%s was created for a refused request", gvr.Resource, o.GetNamespace(), o.GetName())
				}
			}
			// No tenant baseline in a reserved namespace (other tests'
			// shared instances may have objects in the shared clusters'
			// namespaces; those carry their own instance ids).
			for _, ns := range reserved {
				g.Expect(w.list(gvr, ns, "strata.dev/baseline=true")).To(BeEmpty(),
					"a tenant baseline %s in the reserved namespace %s", gvr.Resource, ns)
			}
		}
		store := broker.NewStore(w.core, brokerNS)
		for _, tc := range cases {
			if tc.instanceID != "" && tc.instanceID != liveID {
				_, err := store.GetInstance(ctx, tc.instanceID)
				g.Expect(err).To(MatchError(broker.ErrNotFound), "a record of instance %s exists", clipPath(tc.instanceID))
			}
			if tc.bindingID != "" {
				_, err := store.GetBinding(ctx, tc.bindingID)
				g.Expect(err).To(MatchError(broker.ErrNotFound), "a record of binding %s exists", clipPath(tc.bindingID))
			}
		}
		bindings, err := store.BindingsOf(ctx, liveID)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(bindings).To(BeEmpty(), "no refused bind left a record")
		rec, err := store.GetInstance(ctx, liveID)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(rec.PlanID).To(Equal(catalog.PostgresDevLiteID), "refused updates changed nothing")
		g.Expect(rec.Parameters).To(BeEmpty(), "refused updates changed nothing")
	})

	t.Run("the log names parameters, never their values", func(t *testing.T) {
		g := NewWithT(t)
		out := logs.String()
		g.Expect(out).NotTo(BeEmpty())
		for _, s := range append(secrets, "wrong-"+osbPass) {
			g.Expect(out).NotTo(ContainSubstring(s), "the log holds a secret value sent")
		}
		g.Expect(out).To(ContainSubstring(`"password"`), "refused parameters are logged by name")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		errorLines := 0
		for _, line := range lines {
			var entry map[string]any
			g.Expect(json.Unmarshal([]byte(line), &entry)).To(Succeed(), line)
			if entry["level"] == "error" {
				errorLines++
				t.Logf("error line: %.300s", line)
			}
			g.Expect(entry).NotTo(HaveKey("stacktrace"), "no stack trace for a client error: %.300s", line)
			g.Expect(len(line)).To(BeNumerically("<", 4096), "a hostile request makes no huge log line")
		}
		g.Expect(errorLines).To(BeZero(), "refusals (4xx) are logged at info, not error")
	})
}

func namespaceNames(t *testing.T, w *world) []string {
	t.Helper()
	l, err := w.core.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ns := range l.Items {
		names = append(names, ns.Name)
	}
	sort.Strings(names)
	return names
}

func clipPath(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}

func clipRaw(s string) string {
	if len(s) > 400 {
		return s[:400] + "…"
	}
	return s
}

// endpoint builds a well-formed request for one OSB endpoint and ids.
type endpoint struct {
	name     string
	method   string
	path     func(inst, bind string) string
	body     func(n int) any
	hasBody  bool
	binding  bool
	instance bool
}

func hostileEndpoints() []endpoint {
	inst := func(i, _ string) string { return "/v2/service_instances/" + i }
	bnd := func(i, b string) string { return "/v2/service_instances/" + i + "/service_bindings/" + b }
	q := "?service_id=" + catalog.PostgresServiceID + "&plan_id=" + catalog.PostgresDevLiteID
	provision := func(n int) any {
		return provisionBody(catalog.PostgresDevLiteID, hostileNS, map[string]any{"password": secretValue(n)})
	}
	return []endpoint{
		{name: "catalog", method: http.MethodGet, path: func(string, string) string { return "/v2/catalog" }},
		{name: "provision", method: http.MethodPut, instance: true, hasBody: true,
			path: func(i, b string) string { return inst(i, b) + "?accepts_incomplete=true" }, body: provision},
		{name: "update", method: http.MethodPatch, instance: true, hasBody: true,
			path: func(i, b string) string { return inst(i, b) + "?accepts_incomplete=true" },
			body: func(n int) any {
				return map[string]any{"service_id": catalog.PostgresServiceID, "parameters": map[string]any{"password": secretValue(n)}}
			}},
		{name: "deprovision", method: http.MethodDelete, instance: true,
			path: func(i, b string) string { return inst(i, b) + q + "&accepts_incomplete=true" }},
		{name: "get instance", method: http.MethodGet, instance: true, path: inst},
		{name: "instance last_operation", method: http.MethodGet, instance: true,
			path: func(i, b string) string { return inst(i, b) + "/last_operation" }},
		{name: "bind", method: http.MethodPut, instance: true, binding: true, hasBody: true,
			path: func(i, b string) string { return bnd(i, b) + "?accepts_incomplete=true" },
			body: func(n int) any {
				return map[string]any{"service_id": catalog.PostgresServiceID, "plan_id": catalog.PostgresDevLiteID,
					"parameters": map[string]any{"password": secretValue(n)}}
			}},
		{name: "unbind", method: http.MethodDelete, instance: true, binding: true,
			path: func(i, b string) string { return bnd(i, b) + q }},
		{name: "get binding", method: http.MethodGet, instance: true, binding: true, path: bnd},
		{name: "binding last_operation", method: http.MethodGet, instance: true, binding: true,
			path: func(i, b string) string { return bnd(i, b) + "/last_operation" }},
	}
}

func hostileCases() []hostileCase {
	var cases []hostileCase
	n := 0
	ids := func() (string, string) {
		n++
		return fmt.Sprintf("0b5e11e0-0000-4000-8000-%012d", n), fmt.Sprintf("0b5e11e0-b000-4000-8000-%012d", n)
	}
	add := func(c hostileCase) { cases = append(cases, c) }
	request := func(e endpoint, inst, bind string) (string, any) {
		var body any
		if e.body != nil {
			body = e.body(len(cases))
		}
		return e.path(inst, bind), body
	}

	// Authentication, on every endpoint.
	wrongPass := base64.StdEncoding.EncodeToString([]byte(osbUser + ":wrong-" + osbPass))
	for _, e := range hostileEndpoints() {
		for _, a := range []struct {
			name   string
			header string
		}{
			{"no credentials", ""}, {"wrong password", "Basic " + wrongPass},
			{"wrong user", "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+osbPass))},
			{"not base64", "Basic !!!not-base64"}, {"no colon", "Basic " + base64.StdEncoding.EncodeToString([]byte("platform"))},
			{"bearer token", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x"}, {"empty basic", "Basic "},
		} {
			inst, bind := ids()
			path, body := request(e, inst, bind)
			c := hostileCase{name: e.name + ": " + a.name, method: e.method, path: path, body: body,
				status: http.StatusUnauthorized, code: "Unauthorized", mention: "credentials", instanceID: inst, bindingID: bind}
			if a.header == "" {
				c.noAuth = true
			} else {
				c.header = map[string]string{"Authorization": a.header}
			}
			add(c)
		}
	}

	// API versions, on every endpoint.
	for _, e := range hostileEndpoints() {
		for _, v := range []string{"", "1.0", "1.13", "2.12", "3.0", "garbage", "2", "2.x", "v2.17", strings.Repeat("9", 300)} {
			inst, bind := ids()
			path, body := request(e, inst, bind)
			add(hostileCase{name: fmt.Sprintf("%s: version %.20q", e.name, v), method: e.method, path: path, body: body,
				header: map[string]string{"X-Broker-API-Version": v}, status: http.StatusPreconditionFailed,
				code: "PreconditionFailed", mention: "X-Broker-API-Version", instanceID: inst, bindingID: bind})
		}
	}

	// Bodies that are no JSON object, on every endpoint with a body.
	for _, e := range hostileEndpoints() {
		if !e.hasBody {
			continue
		}
		for _, b := range []string{"", "not json", "[]", `[{"service_id":"x"}]`, `"a string"`, "42", "null", "{", `{"service_id":"x"`, "\x00\x01\x02"} {
			inst, bind := ids()
			add(hostileCase{name: fmt.Sprintf("%s: body %.12q", e.name, b), method: e.method, path: e.path(inst, bind), body: b,
				status: http.StatusBadRequest, code: "MalformedRequest", mention: "JSON object", instanceID: inst, bindingID: bind})
		}
		for _, size := range []int{1<<20 + 1, 2 << 20, 10 << 20} {
			inst, bind := ids()
			huge := `{"parameters":{"blob":"` + strings.Repeat("x", size) + `"}}`
			add(hostileCase{name: fmt.Sprintf("%s: %d byte body", e.name, len(huge)), method: e.method, path: e.path(inst, bind), body: huge,
				status: http.StatusRequestEntityTooLarge, code: "RequestTooLarge", mention: "1 MiB", instanceID: inst, bindingID: bind})
		}
	}
	{
		inst, bind := ids()
		add(hostileCase{name: "catalog with a 2 MiB body", method: http.MethodGet, path: "/v2/catalog", body: strings.Repeat("x", 2<<20),
			status: http.StatusRequestEntityTooLarge, code: "RequestTooLarge", mention: "1 MiB", instanceID: inst, bindingID: bind})
	}

	// Fields of the wrong JSON type: 400 naming the field.
	pg, plan := catalog.PostgresServiceID, catalog.PostgresDevLiteID
	k8s := map[string]any{"platform": "kubernetes", "namespace": hostileNS}
	types := []struct {
		endpoint, field string
		body            map[string]any
		code            string
	}{
		{"provision", "service_id", map[string]any{"service_id": 123, "plan_id": plan, "context": k8s}, "MalformedRequest"},
		{"provision", "plan_id", map[string]any{"service_id": pg, "plan_id": map[string]any{}, "context": k8s}, "MalformedRequest"},
		{"provision", "context", map[string]any{"service_id": pg, "plan_id": plan, "context": "x"}, "MalformedRequest"},
		{"provision", "context", map[string]any{"service_id": pg, "plan_id": plan, "context": []any{k8s}}, "MalformedRequest"},
		{"provision", "parameters", map[string]any{"service_id": pg, "plan_id": plan, "context": k8s, "parameters": []any{}}, "InvalidParameters"},
		{"provision", "parameters", map[string]any{"service_id": pg, "plan_id": plan, "context": k8s, "parameters": "password=x"}, "InvalidParameters"},
		{"provision", "context.namespace", map[string]any{"service_id": pg, "plan_id": plan, "context": map[string]any{"platform": "kubernetes", "namespace": 5}}, "MalformedRequest"},
		{"provision", "context.platform", map[string]any{"service_id": pg, "plan_id": plan, "context": map[string]any{"platform": true, "namespace": hostileNS}}, "MalformedRequest"},
		{"provision", "context.space_guid", map[string]any{"service_id": pg, "plan_id": plan, "context": map[string]any{"platform": "cloudfoundry", "organization_guid": "x", "space_guid": []any{}}}, "MalformedRequest"},
		{"provision", "organization_guid", map[string]any{"service_id": pg, "plan_id": plan, "context": k8s, "organization_guid": 7}, "MalformedRequest"},
		{"provision", "maintenance_info", map[string]any{"service_id": pg, "plan_id": plan, "context": k8s, "maintenance_info": "1.0.0"}, "MalformedRequest"},
		{"provision", "maintenance_info.version", map[string]any{"service_id": pg, "plan_id": plan, "context": k8s, "maintenance_info": map[string]any{"version": 1}}, "MalformedRequest"},
		{"update", "service_id", map[string]any{"service_id": []any{pg}}, "MalformedRequest"},
		{"update", "plan_id", map[string]any{"service_id": pg, "plan_id": 1.5}, "MalformedRequest"},
		{"update", "parameters", map[string]any{"service_id": pg, "parameters": 1}, "InvalidParameters"},
		{"update", "previous_values", map[string]any{"service_id": pg, "previous_values": "x"}, "MalformedRequest"},
		{"update", "previous_values.plan_id", map[string]any{"service_id": pg, "previous_values": map[string]any{"plan_id": false}}, "MalformedRequest"},
		{"update", "context", map[string]any{"service_id": pg, "context": []any{}}, "MalformedRequest"},
		{"bind", "service_id", map[string]any{"service_id": false, "plan_id": plan}, "MalformedRequest"},
		{"bind", "plan_id", map[string]any{"service_id": pg, "plan_id": 1}, "MalformedRequest"},
		{"bind", "parameters", map[string]any{"service_id": pg, "plan_id": plan, "parameters": []any{"access"}}, "InvalidParameters"},
		{"bind", "bind_resource", map[string]any{"service_id": pg, "plan_id": plan, "bind_resource": "app"}, "MalformedRequest"},
		{"bind", "bind_resource.app_guid", map[string]any{"service_id": pg, "plan_id": plan, "bind_resource": map[string]any{"app_guid": 9}}, "MalformedRequest"},
		{"bind", "app_guid", map[string]any{"service_id": pg, "plan_id": plan, "app_guid": map[string]any{}}, "MalformedRequest"},
		{"bind", "context", map[string]any{"service_id": pg, "plan_id": plan, "context": "y"}, "MalformedRequest"},
		{"bind", "predecessor_binding_id", map[string]any{"predecessor_binding_id": 5}, "MalformedRequest"},
		// Mandatory fields.
		{"provision", "service_id", map[string]any{"plan_id": plan, "context": k8s}, "MalformedRequest"},
		{"provision", "plan_id", map[string]any{"service_id": pg, "context": k8s}, "MalformedRequest"},
		{"provision", "service_id", map[string]any{"service_id": "", "plan_id": plan, "context": k8s}, "MalformedRequest"},
		{"update", "service_id", map[string]any{"plan_id": plan}, "MalformedRequest"},
		{"bind", "service_id", map[string]any{"plan_id": plan}, "MalformedRequest"},
		{"bind", "plan_id", map[string]any{"service_id": pg}, "MalformedRequest"},
		// Ids not in the catalog.
		{"provision", "service_id", map[string]any{"service_id": "not-a-service", "plan_id": plan, "context": k8s}, "MalformedRequest"},
		{"provision", "plan_id", map[string]any{"service_id": pg, "plan_id": catalog.RedisDevLiteID, "context": k8s}, "MalformedRequest"},
		{"provision", "service_id", map[string]any{"service_id": strings.Repeat("s", 5000), "plan_id": plan, "context": k8s}, "MalformedRequest"},
	}
	byName := map[string]endpoint{}
	for _, e := range hostileEndpoints() {
		byName[e.name] = e
	}
	for _, tc := range types {
		inst, bind := ids()
		if tc.endpoint == "update" {
			inst = liveID
		}
		add(hostileCase{name: tc.endpoint + ": " + tc.field, method: byName[tc.endpoint].method, path: byName[tc.endpoint].path(inst, bind),
			body: tc.body, status: http.StatusBadRequest, code: tc.code, mention: tc.field, instanceID: inst, bindingID: bind})
	}

	// Ids: too long, odd characters, path-traversal-ish, on every
	// endpoint with ids.
	for _, e := range hostileEndpoints() {
		if !e.instance {
			continue
		}
		odd := []string{strings.Repeat("a", 257), "a%20b", "%3Cscript%3E", "..", ".", "%2e%2e", "$%7Bjndi:ldap%7D", "id%00null", "%E2%98%83"}
		for _, id := range odd {
			_, bind := ids()
			path, body := request(e, id, bind)
			add(hostileCase{name: fmt.Sprintf("%s: instance id %.16q", e.name, id), method: e.method, path: path, body: body,
				status: http.StatusBadRequest, code: "MalformedRequest", mention: "instance_id", bindingID: bind})
		}
		if e.binding {
			for _, id := range []string{strings.Repeat("b", 300), "..", "b%20c", "%27%3B--"} {
				inst, _ := ids()
				path, body := request(e, inst, id)
				add(hostileCase{name: fmt.Sprintf("%s: binding id %.16q", e.name, id), method: e.method, path: path, body: body,
					status: http.StatusBadRequest, code: "MalformedRequest", mention: "binding_id", instanceID: inst})
			}
		}
		// A path with more segments than the endpoint: no endpoint.
		inst, bind := ids()
		path, body := request(e, inst+"%2F..%2F..%2Fcatalog", bind)
		add(hostileCase{name: e.name + ": encoded slashes in the id", method: e.method, path: path, body: body,
			status: http.StatusNotFound, code: "NotFound", mention: "no OSB endpoint", instanceID: inst, bindingID: bind})
	}

	// DELETE without its mandatory query parameters.
	for _, e := range []string{"deprovision", "unbind"} {
		for _, drop := range []string{"service_id", "plan_id"} {
			inst, bind := ids()
			path := byName[e].path(inst, bind)
			path = strings.Replace(path, drop+"=", "x_"+drop+"=", 1)
			add(hostileCase{name: e + ": no " + drop, method: http.MethodDelete, path: path,
				status: http.StatusBadRequest, code: "MalformedRequest", mention: drop, instanceID: inst, bindingID: bind})
		}
	}

	// Parameters that break the plan's schema, with secret-looking values.
	schema := []struct {
		endpoint, name string
		params         func(secret string) map[string]any
	}{
		{"provision", "password", func(s string) map[string]any { return map[string]any{"password": s} }},
		{"provision", "api_key", func(s string) map[string]any { return map[string]any{"api_key": s, "replicas": 1} }},
		{"provision", "replicas", func(s string) map[string]any { return map[string]any{"replicas": s} }},
		{"provision", "databases", func(s string) map[string]any { return map[string]any{"databases": []any{s}} }},
		{"provision", "version", func(s string) map[string]any { return map[string]any{"version": s} }},
		{"provision", "extensions", func(s string) map[string]any { return map[string]any{"extensions": []any{s}} }},
		{"provision", "resources", func(s string) map[string]any { return map[string]any{"resources": map[string]any{"memory": s}} }},
		{"provision", "storage_gb", func(s string) map[string]any { return map[string]any{"storage_gb": s} }},
		{"update", "password", func(s string) map[string]any { return map[string]any{"password": s} }},
		{"update", "storage_gb", func(s string) map[string]any { return map[string]any{"storage_gb": s} }},
		{"update", "databases", func(s string) map[string]any { return map[string]any{"databases": []any{"app", s}} }},
		{"bind", "access", func(s string) map[string]any { return map[string]any{"access": s} }},
		{"bind", "password", func(s string) map[string]any { return map[string]any{"password": s} }},
		{"bind", "mount_path", func(s string) map[string]any { return map[string]any{"mount_path": s} }},
	}
	for _, tc := range schema {
		inst, bind := ids()
		secret := secretValue(len(cases))
		var body map[string]any
		switch tc.endpoint {
		case "provision":
			body = provisionBody(catalog.PostgresDevLiteID, hostileNS, tc.params(secret))
		case "update":
			inst = liveID
			body = map[string]any{"service_id": pg, "parameters": tc.params(secret)}
		case "bind":
			inst = liveID
			body = map[string]any{"service_id": pg, "plan_id": plan, "parameters": tc.params(secret)}
		}
		add(hostileCase{name: tc.endpoint + ": parameter " + tc.name, method: byName[tc.endpoint].method, path: byName[tc.endpoint].path(inst, bind),
			body: body, status: http.StatusBadRequest, code: "InvalidParameters", mention: "parameters." + tc.name, instanceID: inst, bindingID: bind})
	}

	// A bind that names another plan or service than the instance's.
	for _, b := range []struct{ field, service, plan string }{
		{"plan_id", pg, catalog.PostgresHAID}, {"plan_id", pg, catalog.RedisDevLiteID}, {"plan_id", pg, "not-a-plan"},
		{"service_id", catalog.RedisServiceID, catalog.RedisDevLiteID},
	} {
		_, bind := ids()
		add(hostileCase{name: "bind: another " + b.field, method: http.MethodPut, path: byName["bind"].path(liveID, bind),
			body: map[string]any{"service_id": b.service, "plan_id": b.plan}, status: http.StatusBadRequest, code: "BadRequest",
			mention: b.field, instanceID: liveID, bindingID: bind})
	}

	// Contexts: every reserved namespace, for each service; unknown fields
	// and a secret in the context are ignored, the namespace refused.
	reservedNS := []string{"kube-system", "kube-public", "kube-node-lease", "kube-anything", "default", brokerNS,
		"kafka", "strata-postgres", "cnpg-system", "redis-operator", "monitoring", hostileDenied}
	for _, svc := range []struct{ service, plan string }{
		{pg, plan}, {catalog.RedisServiceID, catalog.RedisDevLiteID}, {catalog.KafkaServiceID, catalog.KafkaDevLiteID},
	} {
		for _, ns := range reservedNS {
			inst, bind := ids()
			body := map[string]any{"service_id": svc.service, "plan_id": svc.plan, "surprise": []any{1, "two"},
				"context": map[string]any{"platform": "kubernetes", "namespace": ns, "token": secretValue(len(cases)), "extra": map[string]any{"a": 1}}}
			add(hostileCase{name: "provision: reserved namespace " + ns, method: http.MethodPut, path: byName["provision"].path(inst, bind),
				body: body, status: http.StatusBadRequest, code: "NamespaceNotAllowed", mention: ns, instanceID: inst, bindingID: bind})
		}
	}
	const org, space = "6f1c0d6e-2a1b-4c3d-9e8f-0a1b2c3d4e5f", "0b9a8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d"
	cf := func(o, s string) map[string]any {
		return map[string]any{"platform": "cloudfoundry", "organization_guid": o, "space_guid": s}
	}
	contexts := []struct {
		name, code, mention string
		body                map[string]any
	}{
		{"cf org o, space -", "BadRequest", "organization_guid", map[string]any{"context": cf("o", "-")}},
		{"cf org other-org, space __", "BadRequest", "organization_guid", map[string]any{"context": cf("other-org", "__")}},
		{"cf space not a GUID", "BadRequest", "space_guid", map[string]any{"context": cf(org, "not-a-guid")}},
		{"cf space a GUID too long", "BadRequest", "space_guid", map[string]any{"context": cf(org, space+"0")}},
		{"cf space path-ish", "BadRequest", "space_guid", map[string]any{"context": cf(org, "../../kube-system")}},
		{"cf space missing", "BadRequest", "space_guid", map[string]any{"context": map[string]any{"platform": "cloudfoundry", "organization_guid": org}}},
		{"cf top-level GUIDs not GUIDs", "BadRequest", "organization_guid", map[string]any{"organization_guid": "org", "space_guid": "space", "context": map[string]any{"platform": "cloudfoundry"}}},
		{"cf top level differs from context", "BadRequest", "differ", map[string]any{"organization_guid": org, "space_guid": "9f8e7d6c-5b4a-4c3d-8e2f-1a0b9c8d7e6f", "context": cf(org, space)}},
		{"cf valid space, invalid parameters", "InvalidParameters", "parameters.password", map[string]any{"context": cf(org, space), "parameters": map[string]any{"password": "x"}}},
		{"unknown platform", "BadRequest", "context.platform", map[string]any{"context": map[string]any{"platform": "openshift", "namespace": hostileNS}}},
		{"kubernetes without namespace", "BadRequest", "context.namespace", map[string]any{"context": map[string]any{"platform": "kubernetes"}}},
		{"namespace not a name", "BadRequest", "context.namespace", map[string]any{"context": map[string]any{"platform": "kubernetes", "namespace": "Team_A/../x"}}},
		{"namespace very long", "BadRequest", "context.namespace", map[string]any{"context": map[string]any{"platform": "kubernetes", "namespace": strings.Repeat("n", 5000)}}},
		{"namespace missing", "BadRequest", "context.namespace", map[string]any{"context": map[string]any{"platform": "kubernetes", "namespace": "hostile-does-not-exist"}}},
		{"no context at all", "BadRequest", "context.platform", map[string]any{}},
	}
	for _, tc := range contexts {
		inst, bind := ids()
		body := map[string]any{"service_id": pg, "plan_id": plan}
		for k, v := range tc.body {
			body[k] = v
		}
		add(hostileCase{name: "provision: " + tc.name, method: http.MethodPut, path: byName["provision"].path(inst, bind),
			body: body, status: http.StatusBadRequest, code: tc.code, mention: tc.mention, instanceID: inst, bindingID: bind})
	}

	// Wrong methods and paths that are no endpoint.
	for _, m := range []struct{ method, path string }{
		{http.MethodPost, "/v2/catalog"}, {http.MethodDelete, "/v2/catalog"}, {http.MethodPost, "/v2/service_instances/x"},
		{http.MethodPatch, "/v2/service_instances/x/service_bindings/y"}, {http.MethodPut, "/v2/service_instances/x/last_operation"},
	} {
		add(hostileCase{name: m.method + " " + m.path, method: m.method, path: m.path, status: http.StatusMethodNotAllowed, code: "MethodNotAllowed", mention: "serves"})
	}
	for _, p := range []string{"/v2/", "/v2/service_instances", "/v2/service_instances/x/service_bindings", "/v2/catalog/x", "/v2/service_instances/x/other"} {
		add(hostileCase{name: "GET " + p, method: http.MethodGet, path: p, status: http.StatusNotFound, code: "NotFound", mention: "no OSB endpoint"})
	}

	// Identity headers out of bounds do not change the answer (here, the
	// 404 of an instance that does not exist).
	for _, h := range []map[string]string{
		{"X-Broker-API-Request-Identity": strings.Repeat("r", 100<<10)},
		{"X-Broker-API-Request-Identity": "with spaces and \"quotes\""},
		{"X-Broker-API-Originating-Identity": "cloudfoundry !!!"},
		{"X-Broker-API-Originating-Identity": "kubernetes " + base64.StdEncoding.EncodeToString([]byte("[1,2]"))},
		{"X-Broker-API-Originating-Identity": strings.Repeat("z", 8000)},
		{"X-Broker-API-Originating-Identity": " "},
	} {
		inst, bind := ids()
		add(hostileCase{name: "GET instance with odd identity headers", method: http.MethodGet, path: "/v2/service_instances/" + inst,
			header: h, status: http.StatusNotFound, code: "NotFound", mention: inst, instanceID: inst, bindingID: bind})
	}
	return cases
}
