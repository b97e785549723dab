package broker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
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
// instance_usable, update_repeatable). Malformed JSON bodies and fields of
// the wrong type get 400 naming the field, as the spec says, where
// brokerapi answers 422 with Go's decoder text (edges.go).
func NewHandler(b *Broker, o HandlerOptions) http.Handler {
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollIntervalSeconds * time.Second
	}
	slogger := slog.New(newSlogHandler(o.Log))
	m := newHTTPMetrics(o.Registry)
	if o.Registry != nil {
		o.Registry.MustRegister(newUsageCollector(b), newOperationsCollector(b), newRestoreCollector(b))
		if b.Drills != nil {
			o.Registry.MustRegister(newDrillCollector(b.Drills.Core, b.Store.namespace, b.Log))
		}
	}

	// Every /v2 route: the request's logger (and the echo of its identity),
	// authentication, the version check, then the request's edges: ids,
	// body size, body shape. brokerapi runs its own version check after
	// ours, which then always passes, and finds the body well-formed.
	authMW := basicAuth(o.Credentials, o.Log)
	osb := brokerapi.NewWithOptions(edgeBroker{b}, slogger)
	edges := func(h http.Handler) http.Handler {
		return requestLog(o.Log, authMW(apiVersion(checkRoute(readBody(checkBody(b)(h))))))
	}
	own := func(h http.HandlerFunc) http.Handler { return edges(h) }

	// Paths are not cleaned: "/v2/service_instances/../x" is an id the
	// edges refuse with an OSB error, not a redirect.
	r := mux.NewRouter().SkipClean(true)
	r.Use(m.middleware)
	r.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	r.HandleFunc("/readyz", func(w http.ResponseWriter, req *http.Request) {
		if o.Ready != nil {
			if err := o.Ready(req.Context()); err != nil {
				// Unauthenticated: say what, not where.
				o.Log.Warn("not ready", zap.Error(err))
				http.Error(w, "not ready: "+publicDescription(err.Error()), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	r.Handle("/metrics", promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{}))

	// The instance page authenticates by its capability URL, not the
	// platform's credentials, and logs itself (requestLog would log the
	// path, which holds the token).
	if b.Page != nil {
		r.HandleFunc(pagePath, b.servePage).Methods(http.MethodGet, http.MethodHead)
	}

	r.Handle("/v2/catalog", own(catalogHandler(b.Catalog))).Methods(http.MethodGet)
	r.Handle("/v2/service_instances/{instance_id}/last_operation", own(func(w http.ResponseWriter, req *http.Request) {
		res, err := b.InstanceOperation(req.Context(), mux.Vars(req)["instance_id"], req.URL.Query().Get("operation"))
		writeOperation(w, res, atEdge(req.Context(), err), o.PollInterval)
	})).Methods(http.MethodGet)
	r.Handle("/v2/service_instances/{instance_id}/service_bindings/{binding_id}/last_operation", own(func(w http.ResponseWriter, req *http.Request) {
		v := mux.Vars(req)
		lo, err := b.LastBindingOperation(req.Context(), v["instance_id"], v["binding_id"], pollDetails(req))
		writeOperation(w, LastOperationResult{State: provisioners.State(lo.State), Description: lo.Description}, atEdge(req.Context(), err), o.PollInterval)
	})).Methods(http.MethodGet)
	r.Handle("/v2/service_instances/{instance_id}/service_bindings/{binding_id}",
		edges(rotationAware(b, osb.ServeHTTP))).Methods(http.MethodPut)
	r.PathPrefix("/v2/").Handler(edges(osb))
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
			writeFailure(w, atEdge(req.Context(), err))
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
	res.Description = publicDescription(res.Description)
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
	writeJSON(w, http.StatusInternalServerError, apiresponses.ErrorResponse{Error: "InternalError", Description: publicDescription(err.Error())})
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

// requestLog gives the request its logger (LoggerFrom), carrying the
// request id and the path's instance and binding ids, logs the request's
// outcome, and echoes X-Broker-API-Request-Identity when it is bounded
// (maxRequestIdentity, RFC 3986 unreserved characters): a longer or odd
// one is neither echoed nor logged, and the request is served (the header
// is informational; docs/api.md). It wraps authentication and the version
// check, so their refusals are logged and echo too.
func requestLog(base *zap.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		start := time.Now()
		fields := []zap.Field{zap.String("method", req.Method), zap.String("path", clip(req.URL.Path))}
		rid := requestIdentity(req)
		switch {
		case rid != "":
			w.Header().Set("X-Broker-API-Request-Identity", rid)
		case req.Header.Get("X-Broker-API-Request-Identity") != "":
			// brokerapi would echo it: it is not sent on.
			req.Header.Del("X-Broker-API-Request-Identity")
			fields = append(fields, zap.Bool("request_identity_refused", true))
			rid = newRequestID()
		default:
			rid = newRequestID()
		}
		log := base.With(zap.String("request_id", rid))
		if instanceID, bindingID := idsOf(req.URL.Path); instanceID != "" {
			log = log.With(zap.String("instance_id", clip(instanceID)))
			if bindingID != "" {
				log = log.With(zap.String("binding_id", clip(bindingID)))
			}
		}
		fields = append(fields, originatingIdentity(req.Header.Get("X-Broker-API-Originating-Identity"))...)
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, req.WithContext(WithLogger(req.Context(), log)))
		fields = append(fields, zap.Int("status", rec.code), zap.Duration("duration", time.Since(start)))
		// A refusal is the platform's doing (info); error is for the
		// broker failing.
		level := zap.InfoLevel
		if rec.code >= http.StatusInternalServerError {
			level = zap.ErrorLevel
		}
		log.Log(level, "osb request", fields...)
	})
}

func pollDetails(req *http.Request) domain.PollDetails {
	q := req.URL.Query()
	return domain.PollDetails{ServiceID: q.Get("service_id"), PlanID: q.Get("plan_id"), OperationData: q.Get("operation")}
}
