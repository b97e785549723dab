package broker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/pivotal-cf/brokerapi/v12"
	"github.com/pivotal-cf/brokerapi/v12/domain"
	"github.com/pivotal-cf/brokerapi/v12/domain/apiresponses"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/strata-dev/strata/provisioners"
)

// Credentials returns the broker's basic-auth user and password. It is
// called per request (cheaply: implementations cache) so a rotated Secret
// takes effect without a restart.
type Credentials func() (user, password string, err error)

// HandlerOptions configure the HTTP surface.
type HandlerOptions struct {
	Credentials Credentials
	// PollInterval is sent as Retry-After on in-progress operations.
	PollInterval time.Duration
	// Ready reports whether the broker can serve (API server reachable).
	Ready    func(context.Context) error
	Registry *prometheus.Registry
	Log      *zap.Logger
}

// NewHandler assembles the broker's HTTP API: the OSB API under /v2 behind
// basic auth and the version check, and /healthz, /readyz and /metrics
// without auth (they reveal nothing but liveness and counts).
//
// brokerapi serves most OSB routes. Three are served here because OSB
// 2.17 asks for more than brokerapi v12 gives: the catalog
// (binding_rotatable), and both last_operation endpoints (Retry-After,
// instance_usable, update_repeatable). Malformed JSON bodies get 400, as
// the spec says, where brokerapi answers 422.
func NewHandler(b *Broker, o HandlerOptions) http.Handler {
	if o.PollInterval <= 0 {
		o.PollInterval = 10 * time.Second
	}
	slogger := slog.New(zapSlogHandler(o.Log))
	m := newHTTPMetrics(o.Registry)
	if o.Registry != nil {
		o.Registry.MustRegister(newUsageCollector(b))
	}

	// Authentication, then the version check, on every /v2 route; brokerapi
	// runs its own version check after ours, which then always passes.
	authMW := basicAuth(o.Credentials, o.Log)
	osb := brokerapi.NewWithOptions(b, slogger)
	own := func(h http.HandlerFunc) http.Handler {
		return identity(o.Log, authMW(apiVersion(h)))
	}

	r := mux.NewRouter()
	r.Use(m.middleware)
	r.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	r.HandleFunc("/readyz", func(w http.ResponseWriter, req *http.Request) {
		if o.Ready != nil {
			if err := o.Ready(req.Context()); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	r.Handle("/metrics", promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{}))

	r.Handle("/v2/catalog", own(catalogHandler(b.Catalog))).Methods(http.MethodGet)
	r.Handle("/v2/service_instances/{instance_id}/last_operation", own(func(w http.ResponseWriter, req *http.Request) {
		res, err := b.InstanceOperation(req.Context(), mux.Vars(req)["instance_id"], req.URL.Query().Get("operation"))
		writeOperation(w, res, err, o.PollInterval)
	})).Methods(http.MethodGet)
	r.Handle("/v2/service_instances/{instance_id}/service_bindings/{binding_id}/last_operation", own(func(w http.ResponseWriter, req *http.Request) {
		v := mux.Vars(req)
		lo, err := b.LastBindingOperation(req.Context(), v["instance_id"], v["binding_id"], pollDetails(req))
		writeOperation(w, LastOperationResult{State: provisioners.State(lo.State), Description: lo.Description}, err, o.PollInterval)
	})).Methods(http.MethodGet)
	r.Handle("/v2/service_instances/{instance_id}/service_bindings/{binding_id}",
		identity(o.Log, authMW(apiVersion(requireJSONBody(rotationAware(b, osb.ServeHTTP)))))).Methods(http.MethodPut)
	r.PathPrefix("/v2/").Handler(identity(o.Log, authMW(apiVersion(requireJSONBody(osb.ServeHTTP)))))
	return r
}

// rotationAware serves a binding request whose body names a
// predecessor_binding_id (OSB 2.17 rotation, which brokerapi v12 does not
// know: it would refuse the body for its missing service_id) and hands
// every other one to brokerapi.
func rotationAware(b *Broker, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		var rot struct {
			Predecessor *string `json:"predecessor_binding_id"`
		}
		if json.Unmarshal(body, &rot) != nil || rot.Predecessor == nil {
			next(w, req)
			return
		}
		if *rot.Predecessor == "" {
			writeFailure(w, badRequest("predecessor_binding_id must name a binding of this instance"))
			return
		}
		v := mux.Vars(req)
		async := req.URL.Query().Get("accepts_incomplete") == "true"
		res, err := b.RotateBinding(req.Context(), v["instance_id"], v["binding_id"], *rot.Predecessor, async)
		if err != nil {
			writeFailure(w, err)
			return
		}
		writeBinding(w, res)
	}
}

// writeBinding answers a bind as brokerapi does: 202 with the operation,
// 200 for a repeat, 201 with the credentials.
func writeBinding(w http.ResponseWriter, res domain.Binding) {
	switch {
	case res.IsAsync:
		writeJSON(w, http.StatusAccepted, map[string]any{"operation": res.OperationData})
	default:
		out := map[string]any{"credentials": res.Credentials}
		if !res.Metadata.IsEmpty() {
			out["metadata"] = res.Metadata
		}
		status := http.StatusCreated
		if res.AlreadyExists {
			status = http.StatusOK
		}
		writeJSON(w, status, out)
	}
}

func writeOperation(w http.ResponseWriter, res LastOperationResult, err error, poll time.Duration) {
	if err != nil {
		writeFailure(w, err)
		return
	}
	if res.State == provisioners.InProgress {
		w.Header().Set("Retry-After", strconv.Itoa(int(poll.Seconds())))
	}
	writeJSON(w, http.StatusOK, res)
}

func writeFailure(w http.ResponseWriter, err error) {
	var fr *apiresponses.FailureResponse
	if errors.As(err, &fr) {
		writeJSON(w, fr.ValidatedStatusCode(nil), fr.ErrorResponse())
		return
	}
	writeJSON(w, http.StatusInternalServerError, apiresponses.ErrorResponse{Error: "InternalError", Description: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// basicAuth checks the platform's credentials. brokerapi's own check
// answers 401 in plain text; this one answers with an OSB error body.
func basicAuth(creds Credentials, log *zap.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			user, pass, err := creds()
			if err != nil {
				log.Error("broker credentials unavailable", zap.Error(err))
				writeJSON(w, http.StatusInternalServerError, apiresponses.ErrorResponse{Error: "InternalError", Description: "the broker's credentials are not configured"})
				return
			}
			u, p, ok := req.BasicAuth()
			// Compare digests in constant time, so neither the length nor
			// the content of the secrets leaks through timing.
			wantU, wantP := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(pass))
			gotU, gotP := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
			if !ok || subtle.ConstantTimeCompare(wantU[:], gotU[:])&subtle.ConstantTimeCompare(wantP[:], gotP[:]) != 1 {
				w.Header().Set("WWW-Authenticate", `Basic realm="strata-broker"`)
				writeJSON(w, http.StatusUnauthorized, apiresponses.ErrorResponse{Error: "Unauthorized", Description: "missing or wrong broker credentials"})
				return
			}
			next.ServeHTTP(w, req)
		})
	}
}

// apiVersion requires X-Broker-API-Version 2.x with x >= 13 (the oldest
// version whose semantics this broker follows: context, GET endpoints
// and maintenance_info came later, but 2.13 clients work without them);
// anything else is 412 with an OSB error body (brokerapi's body spells
// "Description" with a capital, which clients do not read).
func apiVersion(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		v := req.Header.Get("X-Broker-API-Version")
		var major, minor int
		if n, err := fmt.Sscanf(v, "%d.%d", &major, &minor); err != nil || n != 2 || major != 2 || minor < 13 {
			writeJSON(w, http.StatusPreconditionFailed, apiresponses.ErrorResponse{Error: "PreconditionFailed",
				Description: fmt.Sprintf("X-Broker-API-Version %q is not supported: send 2.17 (2.13 or later)", v)})
			return
		}
		next.ServeHTTP(w, req)
	})
}

// identity logs who asked (X-Broker-API-Originating-Identity: "<platform>
// <base64 JSON>") and echoes X-Broker-API-Request-Identity, on every
// answer: it wraps authentication and the version check too.
func identity(log *zap.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if id := req.Header.Get("X-Broker-API-Request-Identity"); id != "" {
			w.Header().Set("X-Broker-API-Request-Identity", id)
		}
		fields := []zap.Field{zap.String("method", req.Method), zap.String("path", req.URL.Path)}
		if rid := req.Header.Get("X-Broker-API-Request-Identity"); rid != "" {
			fields = append(fields, zap.String("request_id", rid))
		}
		if oi := req.Header.Get("X-Broker-API-Originating-Identity"); oi != "" {
			platform, value, _ := strings.Cut(oi, " ")
			who, _ := base64.StdEncoding.DecodeString(value)
			fields = append(fields, zap.String("platform", platform), zap.ByteString("originating_identity", who))
		}
		log.Info("osb request", fields...)
		next.ServeHTTP(w, req)
	})
}

// requireJSONBody answers 400 for a PUT or PATCH whose body is not a JSON
// object (the spec's "malformed request").
func requireJSONBody(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPut && req.Method != http.MethodPatch {
			next(w, req)
			return
		}
		body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, apiresponses.ErrorResponse{Error: "MalformedRequest", Description: "could not read the request body"})
			return
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
			writeJSON(w, http.StatusBadRequest, apiresponses.ErrorResponse{Error: "MalformedRequest", Description: "the request body must be a JSON object"})
			return
		}
		if p, ok := obj["parameters"]; ok && string(p) != "null" {
			var params map[string]any
			if json.Unmarshal(p, &params) != nil {
				writeJSON(w, http.StatusBadRequest, apiresponses.ErrorResponse{Error: "InvalidParameters", Description: "parameters must be a JSON object"})
				return
			}
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		next(w, req)
	}
}

func pollDetails(req *http.Request) domain.PollDetails {
	q := req.URL.Query()
	return domain.PollDetails{ServiceID: q.Get("service_id"), PlanID: q.Get("plan_id"), OperationData: q.Get("operation")}
}
