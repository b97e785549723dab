package broker

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/pivotal-cf/brokerapi/v12/domain"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/strata-dev/strata/catalog"
)

// edgeHandler is the HTTP surface over a broker that has only a catalog:
// every request of these tests is refused before it reaches the broker.
func edgeHandler(log *zap.Logger) http.Handler {
	b := &Broker{Catalog: catalog.Default(), Log: log}
	return NewHandler(b, HandlerOptions{
		Credentials: func() (string, string, error) { return "platform", "pw", nil },
		Registry:    prometheus.NewRegistry(),
		Log:         log,
	})
}

type edgeCase struct {
	name, method, path, body string
	header                   map[string]string
	status                   int
	code, mention            string
}

func TestHTTPEdges(t *testing.T) {
	const inst = "/v2/service_instances/9d4bd1c2-2f8a-4b2f-9c1e-0d3c5e7f9a11"
	const bind = inst + "/service_bindings/2b8e8f0a-6a7c-4a51-8e1f-3c9d0b7a6e22"
	tests := []edgeCase{
		{name: "no credentials", method: "GET", path: "/v2/catalog", header: map[string]string{"Authorization": ""}, status: 401, code: "Unauthorized", mention: "credentials"},
		{name: "malformed authorization", method: "GET", path: "/v2/catalog", header: map[string]string{"Authorization": "Basic !!!"}, status: 401, code: "Unauthorized"},
		{name: "no version", method: "GET", path: "/v2/catalog", header: map[string]string{"X-Broker-API-Version": ""}, status: 412, code: "PreconditionFailed", mention: "X-Broker-API-Version"},
		{name: "version 3.0", method: "GET", path: "/v2/catalog", header: map[string]string{"X-Broker-API-Version": "3.0"}, status: 412, code: "PreconditionFailed"},
		{name: "version 2.12", method: "GET", path: "/v2/catalog", header: map[string]string{"X-Broker-API-Version": "2.12"}, status: 412, code: "PreconditionFailed"},
		{name: "body not JSON", method: "PUT", path: inst, body: "not json", status: 400, code: "MalformedRequest", mention: "JSON object"},
		{name: "body a JSON array", method: "PUT", path: inst, body: "[]", status: 400, code: "MalformedRequest", mention: "JSON object"},
		{name: "service_id a number", method: "PUT", path: inst, body: `{"service_id":123,"plan_id":"x"}`, status: 400, code: "MalformedRequest", mention: "service_id must be a string, not a number"},
		{name: "plan_id an object", method: "PUT", path: inst, body: `{"service_id":"x","plan_id":{}}`, status: 400, code: "MalformedRequest", mention: "plan_id must be a string, not an object"},
		{name: "context a string", method: "PUT", path: inst, body: `{"service_id":"x","plan_id":"y","context":"x"}`, status: 400, code: "MalformedRequest", mention: "context must be an object, not a string"},
		{name: "context.namespace a number", method: "PUT", path: inst, body: `{"service_id":"x","plan_id":"y","context":{"namespace":5}}`, status: 400, code: "MalformedRequest", mention: "context.namespace must be a string"},
		{name: "parameters an array", method: "PUT", path: inst, body: `{"service_id":"x","plan_id":"y","parameters":[]}`, status: 400, code: "InvalidParameters", mention: "parameters must be an object, not an array"},
		{name: "maintenance_info.version a number", method: "PATCH", path: inst, body: `{"service_id":"x","maintenance_info":{"version":1}}`, status: 400, code: "MalformedRequest", mention: "maintenance_info.version"},
		{name: "provision without service_id", method: "PUT", path: inst, body: `{"plan_id":"y"}`, status: 400, code: "MalformedRequest", mention: "service_id is required"},
		{name: "provision without plan_id", method: "PUT", path: inst, body: `{"service_id":"y"}`, status: 400, code: "MalformedRequest", mention: "plan_id is required"},
		{name: "update without service_id", method: "PATCH", path: inst, body: `{}`, status: 400, code: "MalformedRequest", mention: "service_id is required"},
		{name: "bind without plan_id", method: "PUT", path: bind, body: `{"service_id":"y"}`, status: 400, code: "MalformedRequest", mention: "plan_id is required"},
		{name: "unknown service", method: "PUT", path: inst, body: `{"service_id":"nope","plan_id":"y"}`, status: 400, code: "MalformedRequest", mention: "service_id \"nope\" is not in the catalog"},
		{name: "unknown plan", method: "PUT", path: inst, body: fmt.Sprintf(`{"service_id":%q,"plan_id":"nope"}`, catalog.PostgresServiceID), status: 400, code: "MalformedRequest", mention: "plan_id \"nope\" is not a plan"},
		{name: "deprovision without service_id", method: "DELETE", path: inst + "?plan_id=x", status: 400, code: "MalformedRequest", mention: "service_id"},
		{name: "unbind without plan_id", method: "DELETE", path: bind + "?service_id=x", status: 400, code: "MalformedRequest", mention: "plan_id"},
		{name: "instance id too long", method: "GET", path: "/v2/service_instances/" + strings.Repeat("a", 300), status: 400, code: "MalformedRequest", mention: "instance_id"},
		{name: "instance id with odd characters", method: "GET", path: "/v2/service_instances/a%20b%3Cc", status: 400, code: "MalformedRequest", mention: "instance_id"},
		{name: "binding id with odd characters", method: "GET", path: inst + "/service_bindings/%24%7Bjndi%7D", status: 400, code: "MalformedRequest", mention: "binding_id"},
		{name: "instance id ..", method: "GET", path: "/v2/service_instances/%2e%2e/last_operation", status: 400, code: "MalformedRequest", mention: "instance_id"},
		{name: "empty instance id", method: "GET", path: "/v2/service_instances//last_operation", status: 400, code: "MalformedRequest", mention: "instance_id"},
		{name: "no such endpoint", method: "GET", path: "/v2/service_instances/x/other", status: 404, code: "NotFound", mention: "no OSB endpoint"},
		{name: "an encoded slash in an id is no endpoint", method: "GET", path: "/v2/service_instances/a%2Fb", status: 404, code: "NotFound"},
		{name: "wrong method", method: "POST", path: "/v2/catalog", status: 405, code: "MethodNotAllowed", mention: "GET"},
		{name: "PATCH a binding", method: "PATCH", path: bind, body: "{}", status: 405, code: "MethodNotAllowed", mention: "PUT, DELETE, GET"},
		{name: "huge body", method: "PUT", path: inst, body: `{"parameters":{"x":"` + strings.Repeat("a", 2<<20) + `"}}`, status: 413, code: "RequestTooLarge", mention: "1 MiB"},
		{name: "unknown fields are ignored (then the catalog check)", method: "PUT", path: inst, body: `{"service_id":"nope","plan_id":"y","surprise":[1,2]}`, status: 400, mention: "not in the catalog"},
		{name: "a good catalog request", method: "GET", path: "/v2/catalog", status: 200},
	}
	h := edgeHandler(zap.NewNop())
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			req.SetBasicAuth("platform", "pw")
			req.Header.Set("X-Broker-API-Version", "2.17")
			for k, v := range tc.header {
				if v == "" {
					req.Header.Del(k)
				} else {
					req.Header.Set(k, v)
				}
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			g.Expect(rec.Code).To(Equal(tc.status), rec.Body.String())
			if tc.status < 400 {
				return
			}
			var body map[string]any
			g.Expect(json.Unmarshal(rec.Body.Bytes(), &body)).To(Succeed(), "an OSB error body: %s", rec.Body.String())
			g.Expect(body["description"]).NotTo(BeEmpty())
			if tc.code != "" {
				g.Expect(body["error"]).To(Equal(tc.code))
			}
			g.Expect(body["description"]).To(ContainSubstring(tc.mention))
			g.Expect(len(rec.Body.String())).To(BeNumerically("<", 1024), "a refusal does not echo a huge input")
		})
	}
}

func TestRequestIdentityEcho(t *testing.T) {
	h := edgeHandler(zap.NewNop())
	tests := []struct {
		name, id string
		echoed   bool
	}{
		{"a GUID", "e2a3f1c0-5b6d-4e7f-8a9b-0c1d2e3f4a5b", true},
		{"percent-encoded", "req%20one", true},
		{"256 characters", strings.Repeat("a", 256), true},
		{"257 characters", strings.Repeat("a", 257), false},
		{"100 KB", strings.Repeat("a", 100<<10), false},
		{"spaces and quotes", `a "b" c`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			for _, path := range []string{"/v2/catalog", "/v2/service_instances/x"} {
				req := httptest.NewRequest("GET", path, nil)
				req.SetBasicAuth("platform", "wrong") // refused by auth: still echoed
				req.Header.Set("X-Broker-API-Version", "2.17")
				req.Header.Set("X-Broker-API-Request-Identity", tc.id)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				g.Expect(rec.Code).To(Equal(http.StatusUnauthorized))
				if tc.echoed {
					g.Expect(rec.Header().Get("X-Broker-API-Request-Identity")).To(Equal(tc.id))
				} else {
					g.Expect(rec.Header().Values("X-Broker-API-Request-Identity")).To(BeEmpty())
				}
			}
		})
	}
}

func TestOriginatingIdentityNeverFails(t *testing.T) {
	g := NewWithT(t)
	core, logs := observer.New(zapcore.DebugLevel)
	h := edgeHandler(zap.New(core))
	for _, oi := range []string{
		"", "cloudfoundry", " ", "cloudfoundry !!!not-base64", "kubernetes " + "W10=", // [] is not an object
		"cloudfoundry eyJ1c2VyX2lkIjoiNjgzZWE3NDgifQ==", strings.Repeat("x", 10000) + " e30=", "kubernetes eyJ1c2VyX2lkIjoiNjgzZWE3NDgifQ",
	} {
		req := httptest.NewRequest("GET", "/v2/catalog", nil)
		req.SetBasicAuth("platform", "pw")
		req.Header.Set("X-Broker-API-Version", "2.17")
		req.Header.Set("X-Broker-API-Originating-Identity", oi)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		g.Expect(rec.Code).To(Equal(http.StatusOK), "%q", oi)
	}
	g.Expect(logs.FilterField(zap.String("originating_user_id", "683ea748")).Len()).To(Equal(2), "the user id of a well-formed header is logged")
	g.Expect(logs.FilterField(zap.Bool("originating_identity_invalid", true)).Len()).To(Equal(5), "no platform, blank, not base64, not an object, too long")
}

// TestTooLargeBodyIsAnswered: a client that writes its whole 10 MB body
// before reading (as most do) gets the 413, not a reset connection.
func TestTooLargeBodyIsAnswered(t *testing.T) {
	srv := httptest.NewTLSServer(edgeHandler(zap.NewNop()))
	defer srv.Close()
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			g := NewWithT(t)
			conn, err := tls.Dial("tcp", srv.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true})
			g.Expect(err).NotTo(HaveOccurred())
			defer conn.Close()
			body := bytes.Repeat([]byte("a"), 10<<20)
			head := "PUT /v2/service_instances/x HTTP/1.1\r\nHost: broker\r\nAuthorization: Basic cGxhdGZvcm06cHc=\r\n" +
				"X-Broker-API-Version: 2.17\r\nContent-Type: application/json\r\n"
			w := bufio.NewWriter(conn)
			if chunked {
				_, _ = w.WriteString(head + "Transfer-Encoding: chunked\r\n\r\n")
				for off := 0; off < len(body); off += 1 << 16 {
					_, _ = fmt.Fprintf(w, "%x\r\n", 1<<16)
					_, _ = w.Write(body[off : off+1<<16])
					_, _ = w.WriteString("\r\n")
				}
				_, _ = w.WriteString("0\r\n\r\n")
			} else {
				_, _ = fmt.Fprintf(w, "%sContent-Length: %d\r\n\r\n", head, len(body))
				_, _ = w.Write(body)
			}
			g.Expect(w.Flush()).To(Succeed(), "the whole body is sent without a reset")
			res, err := http.ReadResponse(bufio.NewReader(conn), nil)
			g.Expect(err).NotTo(HaveOccurred())
			defer res.Body.Close()
			g.Expect(res.StatusCode).To(Equal(http.StatusRequestEntityTooLarge))
			raw, _ := io.ReadAll(res.Body)
			g.Expect(string(raw)).To(ContainSubstring(`"error":"RequestTooLarge"`))
		})
	}
}

// TestBrokerAPILogs: brokerapi's records of a refused provision name the
// parameters, never their values, and a refusal is not an error.
func TestBrokerAPILogs(t *testing.T) {
	g := NewWithT(t)
	core, logs := observer.New(zapcore.DebugLevel)
	log := slog.New(newSlogHandler(zap.New(core)))
	details := domain.ProvisionDetails{ServiceID: "svc", PlanID: "plan", RawParameters: json.RawMessage(`{"password":"hunter2-secret","size":1}`),
		RawContext: json.RawMessage(`{"token":"ctx-secret"}`)}
	log.With(slog.Any("instance-details", details)).Error("provision.invalid-parameters", slog.Any("error", invalidParameters(fmt.Errorf("parameters.size: must be at least 10"))))
	log.With(slog.Any("instance-details", details)).Error("provision.unknown-error", slog.Any("error", fmt.Errorf("boom")))
	log.Error("provision.failed", slog.Any("error", internal("could not apply")))
	g.Expect(logs.Len()).To(Equal(3))
	all := ""
	for _, e := range logs.All() {
		raw, _ := json.Marshal(e.ContextMap())
		all += e.Message + string(raw) + "\n"
	}
	g.Expect(all).NotTo(ContainSubstring("hunter2-secret"))
	g.Expect(all).NotTo(ContainSubstring("ctx-secret"))
	g.Expect(all).To(ContainSubstring("password"), "the parameter's name is logged")
	g.Expect(logs.All()[0].Level).To(Equal(zapcore.InfoLevel), "a 400 is the platform's doing")
	g.Expect(logs.All()[1].Level).To(Equal(zapcore.ErrorLevel))
	g.Expect(logs.All()[2].Level).To(Equal(zapcore.ErrorLevel), "a 500 is the broker's")
}

func TestPublicDescription(t *testing.T) {
	tests := []struct{ in, want string }{
		{`could not create the instance's objects: Post "https://10.96.0.1:443/apis/postgresql.cnpg.io/v1/namespaces/team-a/clusters?fieldManager=strata": dial tcp 10.96.0.1:443: connect: connection refused`,
			"could not create the instance's objects: the Kubernetes API server could not be reached: it refused the connection"},
		{`read namespace team-a: Get "https://kube.internal.example:6443/api/v1/namespaces/team-a": context deadline exceeded`,
			"read namespace team-a: the Kubernetes API server could not be reached: it did not answer in time"},
		{`Get "https://[fd00::1]:6443/api": dial tcp [fd00::1]:6443: i/o timeout`, "the Kubernetes API server could not be reached: it did not answer in time"},
		{"the instance is changing; retry", "the instance is changing; retry"},
		{"connect to https://10.0.0.5:8200 failed", "connect to [address] failed"},
	}
	for _, tc := range tests {
		g := NewWithT(t)
		got := publicDescription(tc.in)
		g.Expect(got).To(Equal(tc.want))
		g.Expect(got).NotTo(MatchRegexp(`https?://|\d+\.\d+\.\d+\.\d+`))
	}
}

func TestLoggerFrom(t *testing.T) {
	g := NewWithT(t)
	core, logs := observer.New(zapcore.DebugLevel)
	var seen *zap.Logger
	h := requestLog(zap.New(core), http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		seen = LoggerFrom(req.Context())
		seen.Info("inside")
		w.WriteHeader(http.StatusTeapot)
	}))
	req := httptest.NewRequest("GET", "/v2/service_instances/i-1/service_bindings/b-1/last_operation", nil)
	req.Header.Set("X-Broker-API-Request-Identity", "rid-1")
	h.ServeHTTP(httptest.NewRecorder(), req)
	g.Expect(seen).NotTo(BeNil())
	inside := logs.FilterMessage("inside").All()
	g.Expect(inside).To(HaveLen(1))
	g.Expect(inside[0].ContextMap()).To(And(HaveKeyWithValue("request_id", "rid-1"), HaveKeyWithValue("instance_id", "i-1"), HaveKeyWithValue("binding_id", "b-1")))
	done := logs.FilterMessage("osb request").All()
	g.Expect(done).To(HaveLen(1))
	g.Expect(done[0].Level).To(Equal(zapcore.InfoLevel), "a 4xx is logged at info")
	g.Expect(done[0].ContextMap()).To(HaveKeyWithValue("status", int64(http.StatusTeapot)))
	g.Expect(LoggerFrom(t.Context())).NotTo(BeNil(), "outside a request: a logger that drops")
}

func TestErrorsAtTheEdge(t *testing.T) {
	g := NewWithT(t)
	core, logs := observer.New(zapcore.DebugLevel)
	ctx := WithLogger(t.Context(), zap.New(core))
	raw := fmt.Errorf(`read namespace team-a: Get "https://10.96.0.1:443/api/v1/namespaces/team-a": dial tcp 10.96.0.1:443: connect: connection refused`)
	status, code, desc := failureOf(g, atEdge(ctx, raw))
	g.Expect(status).To(Equal(http.StatusInternalServerError))
	g.Expect(code).To(Equal("InternalError"))
	g.Expect(desc).To(Equal("read namespace team-a: the Kubernetes API server could not be reached: it refused the connection"))
	g.Expect(logs.FilterMessage("the broker failed").Len()).To(Equal(1), "the full error is logged for the operator")

	refusal := badRequest("context.namespace is required")
	g.Expect(atEdge(ctx, refusal)).To(BeIdenticalTo(refusal), "an OSB failure passes unchanged")
	g.Expect(atEdge(ctx, nil)).To(BeNil())
}
