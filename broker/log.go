package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"math"
	"net/http"
	"regexp"
	"sort"
	"strings"

	"github.com/pivotal-cf/brokerapi/v12/domain"
	"github.com/pivotal-cf/brokerapi/v12/domain/apiresponses"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
)

type loggerKey struct{}

// WithLogger returns ctx carrying the request's logger.
func WithLogger(ctx context.Context, log *zap.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, log)
}

// LoggerFrom returns the logger of the request ctx belongs to: it carries
// the request id and the instance and binding ids of the path. Outside a
// request it returns a logger that drops everything.
func LoggerFrom(ctx context.Context) *zap.Logger {
	if l := requestLogger(ctx); l != nil {
		return l
	}
	return zap.NewNop()
}

// requestLogger is the logger ctx carries, or nil.
func requestLogger(ctx context.Context) *zap.Logger {
	l, _ := ctx.Value(loggerKey{}).(*zap.Logger)
	return l
}

// maxRequestIdentity bounds the X-Broker-API-Request-Identity the broker
// echoes and logs: a GUID is 36 characters; a 100 KB header echoed back
// breaks clients.
const maxRequestIdentity = 256

// requestIdentityChars are RFC 3986's unreserved characters and '%' (the
// spec asks platforms to percent-encode anything else).
var requestIdentityChars = regexp.MustCompile(`^[A-Za-z0-9._~%-]+$`)

// requestIdentity returns the platform's request identity when it is one
// the broker echoes (bounded, unreserved characters), else "".
func requestIdentity(req *http.Request) string {
	id := req.Header.Get("X-Broker-API-Request-Identity")
	if len(id) > maxRequestIdentity || !requestIdentityChars.MatchString(id) {
		return ""
	}
	return id
}

// originatingIdentity parses "X-Broker-API-Originating-Identity: <platform>
// <base64 JSON object>" into log fields. A header that is not of that form
// is logged as invalid, never refused (it is informational) and never
// logged raw.
func originatingIdentity(header string) []zap.Field {
	if header == "" {
		return nil
	}
	const maxHeader = 4096
	platform, value, ok := strings.Cut(header, " ")
	if len(header) > maxHeader || !ok || platform == "" || len(platform) > 64 {
		return []zap.Field{zap.Bool("originating_identity_invalid", true)}
	}
	raw, err := decodeBase64(strings.TrimSpace(value))
	var who map[string]any
	if err != nil || json.Unmarshal(raw, &who) != nil || who == nil {
		return []zap.Field{zap.String("platform", clip(platform)), zap.Bool("originating_identity_invalid", true)}
	}
	// The user's id only: the object may hold more than an audit log needs.
	fields := []zap.Field{zap.String("platform", clip(platform))}
	for _, k := range []string{"user_id", "username"} {
		if v, ok := who[k].(string); ok {
			fields = append(fields, zap.String("originating_"+k, clip(v)))
		}
	}
	return fields
}

// idsOf reads the instance and binding ids from an OSB path.
func idsOf(path string) (instanceID, bindingID string) {
	rest, ok := strings.CutPrefix(path, "/v2/service_instances/")
	if !ok {
		return "", ""
	}
	parts := strings.Split(rest, "/")
	instanceID = parts[0]
	if len(parts) >= 3 && parts[1] == "service_bindings" {
		bindingID = parts[2]
	}
	return instanceID, bindingID
}

func newRequestID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "strata-" + hex.EncodeToString(b)
}

// slogHandler carries brokerapi's log records (log/slog) to zap, with two
// corrections:
//
//   - brokerapi logs the request details (domain.ProvisionDetails, …) with
//     every outcome, parameters included: a password parameter appeared
//     verbatim. They become service_id, plan_id and the parameters'
//     names.
//   - brokerapi logs every refusal at error level; a refusal the platform
//     caused (a 4xx) is logged at info, so error means the broker failed.
type slogHandler struct{ next slog.Handler }

func newSlogHandler(log *zap.Logger) slog.Handler {
	// No stack traces (zapslog adds them at error level by default): the
	// records say what failed in words.
	return slogHandler{next: zapslog.NewHandler(log.Core(), zapslog.AddStacktraceAt(slog.Level(math.MaxInt32)))}
}

func (h slogHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }
func (h slogHandler) WithGroup(name string) slog.Handler             { return slogHandler{h.next.WithGroup(name)} }

func (h slogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = redactAttr(a)
	}
	return slogHandler{h.next.WithAttrs(out)}
}

func (h slogHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	clientError := true
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "error" {
			clientError = isClientError(a.Value.Any())
		}
		out.AddAttrs(redactAttr(a))
		return true
	})
	if out.Level >= slog.LevelError && clientError && !strings.HasSuffix(r.Message, "unknown-error") {
		out.Level = slog.LevelInfo
	}
	if !h.next.Enabled(ctx, out.Level) {
		return nil
	}
	return h.next.Handle(ctx, out)
}

// isClientError says whether an error brokerapi logs is a refusal the
// platform caused (a 4xx); brokerapi's own checks (missing service_id, a
// body it cannot decode) log plain errors, which are 4xx too, and its
// failures of the broker are logged as "unknown-error".
func isClientError(v any) bool {
	if fr, ok := v.(*apiresponses.FailureResponse); ok {
		return fr.ValidatedStatusCode(nil) < http.StatusInternalServerError
	}
	return true
}

// redactAttr replaces request details with what a log may hold.
func redactAttr(a slog.Attr) slog.Attr {
	if a.Value.Kind() != slog.KindAny {
		return a
	}
	switch d := a.Value.Any().(type) {
	case domain.ProvisionDetails:
		return detailsAttr(a.Key, d.ServiceID, d.PlanID, d.RawParameters)
	case domain.UpdateDetails:
		return detailsAttr(a.Key, d.ServiceID, d.PlanID, d.RawParameters)
	case domain.BindDetails:
		return detailsAttr(a.Key, d.ServiceID, d.PlanID, d.RawParameters)
	case domain.UnbindDetails:
		return detailsAttr(a.Key, d.ServiceID, d.PlanID, nil)
	case domain.DeprovisionDetails:
		return detailsAttr(a.Key, d.ServiceID, d.PlanID, nil)
	case json.RawMessage, []byte:
		return slog.String(a.Key, "[redacted]")
	case domain.ProvisionedServiceSpec, domain.UpdateServiceSpec, domain.Binding, domain.GetBindingSpec, domain.GetInstanceDetailsSpec:
		// Answers may hold credentials.
		return slog.String(a.Key, "[redacted]")
	}
	return a
}

func detailsAttr(key, serviceID, planID string, params json.RawMessage) slog.Attr {
	attrs := []any{slog.String("service_id", clip(serviceID)), slog.String("plan_id", clip(planID))}
	if names := parameterNames(params); len(names) > 0 {
		attrs = append(attrs, slog.Any("parameter_names", names))
	}
	return slog.Group(key, attrs...)
}

// parameterNames lists the top-level keys of a parameters object: what a
// log may say about parameters (their values may be secrets).
func parameterNames(raw json.RawMessage) []string {
	var p map[string]json.RawMessage
	if json.Unmarshal(raw, &p) != nil {
		return nil
	}
	names := make([]string, 0, len(p))
	for k := range p {
		names = append(names, clip(k))
	}
	sort.Strings(names)
	return names
}

// clip cuts a value for a log field: a hostile request must not make the
// log line huge.
func clip(s string) string {
	const max = 128
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
