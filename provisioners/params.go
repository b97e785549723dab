package provisioners

import (
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/api/resource"
)

// ParameterError is a parameter the broker cannot honour: it names the
// parameter (its JSON path, "parameters.storage_gb") and says why, so the
// broker answers 400 InvalidParameters (or 422 UnsupportedChange for an
// update) naming it.
type ParameterError struct {
	Field  string
	Reason string
}

func (e *ParameterError) Error() string { return e.Field + ": " + e.Reason }

// ParamErrorf returns a ParameterError of field.
func ParamErrorf(field, format string, args ...any) error {
	return &ParameterError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// AtMost checks that value is a positive quantity no larger than limit. A
// zero limit is no limit (the kubelet sets no CFS quota for a CPU limit of
// 0), so it would lift the plan's ceiling rather than respect it.
func AtMost(field, value, limit string) error {
	v, err := resource.ParseQuantity(value)
	if err != nil {
		return ParamErrorf(field, "%q is not a Kubernetes quantity: %v", value, err)
	}
	if v.Sign() <= 0 {
		return ParamErrorf(field, "%s must be more than 0 (at most %s on this plan)", value, limit)
	}
	if v.Cmp(resource.MustParse(limit)) > 0 {
		return ParamErrorf(field, "%s is more than this plan allows (%s); choose a larger plan", value, limit)
	}
	return nil
}

// Deref is *p, or def when p is nil: an absent parameter takes the plan's
// default.
func Deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// DecodeParams decodes an instance's (or binding's) parameters, as the
// broker received them, into the engine's struct mirroring its JSON Schema.
func DecodeParams(params map[string]any, into any) error {
	raw, _ := json.Marshal(params)
	if err := json.Unmarshal(raw, into); err != nil {
		return ParamErrorf("parameters", "%v", err)
	}
	return nil
}
