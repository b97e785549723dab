package broker

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/pivotal-cf/brokerapi/v12/domain/apiresponses"
)

// maxBodyBytes bounds an OSB request body. The largest legitimate one is a
// provision with parameters, a few kilobytes; the plans' schemas are at
// most 64 kB (OSB) and parameters conform to them. Not configurable: a
// larger body is a mistake or an attack.
const maxBodyBytes = 1 << 20

// maxDrainBytes is how much of a too-large body the broker still reads
// (and discards) before answering. Most HTTP clients write the whole body
// before reading the answer: a server that answers and closes with data
// unread resets the connection, and the client sees "connection reset"
// instead of the 413. Beyond this the broker stops paying for it and
// closes the connection.
const maxDrainBytes = 64 << 20

// maxIDLength bounds instance and binding ids. Platforms send GUIDs (36
// characters); the spec sets no bound but recommends RFC 3986 unreserved
// characters.
const maxIDLength = 256

var idChars = regexp.MustCompile(`^[A-Za-z0-9._~-]+$`)

func malformed(w http.ResponseWriter, description string) {
	writeJSON(w, http.StatusBadRequest, apiresponses.ErrorResponse{Error: "MalformedRequest", Description: description})
}

// osbRoutes are the OSB endpoints by path shape ("{id}" for an id), with
// their methods.
var osbRoutes = map[string][]string{
	"v2/catalog":                                                     {http.MethodGet},
	"v2/service_instances/{id}":                                      {http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodGet},
	"v2/service_instances/{id}/last_operation":                       {http.MethodGet},
	"v2/service_instances/{id}/service_bindings/{id}":                {http.MethodPut, http.MethodDelete, http.MethodGet},
	"v2/service_instances/{id}/service_bindings/{id}/last_operation": {http.MethodGet},
}

// checkRoute answers with an OSB error body for a path that is no OSB
// endpoint (404) or a method the endpoint does not serve (405), and 400
// for instance and binding ids that are not bounded strings of unreserved
// characters (also "." and "..": a path, not an id).
func checkRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		segs := strings.Split(strings.TrimPrefix(req.URL.Path, "/"), "/")
		shape := make([]string, len(segs))
		var ids []struct{ name, value string }
		for i, seg := range segs {
			shape[i] = seg
			if i > 0 && (segs[i-1] == "service_instances" || segs[i-1] == "service_bindings") {
				shape[i] = "{id}"
				name := map[string]string{"service_instances": "instance_id", "service_bindings": "binding_id"}[segs[i-1]]
				ids = append(ids, struct{ name, value string }{name, seg})
			}
		}
		methods, ok := osbRoutes[strings.Join(shape, "/")]
		if !ok {
			writeJSON(w, http.StatusNotFound, apiresponses.ErrorResponse{Error: "NotFound", Description: "no OSB endpoint at this path; see docs/api.md"})
			return
		}
		if !slices.Contains(methods, req.Method) {
			w.Header().Set("Allow", strings.Join(methods, ", "))
			writeJSON(w, http.StatusMethodNotAllowed, apiresponses.ErrorResponse{Error: "MethodNotAllowed", Description: "this endpoint serves " + strings.Join(methods, ", ")})
			return
		}
		for _, id := range ids {
			if len(id.value) > maxIDLength || !idChars.MatchString(id.value) || id.value == "." || id.value == ".." {
				malformed(w, fmt.Sprintf("%s must be 1 to %d characters of A-Z, a-z, 0-9, '-', '.', '_', '~' (a GUID is best)", id.name, maxIDLength))
				return
			}
		}
		next.ServeHTTP(w, req)
	})
}

// readBody reads the request body, at most maxBodyBytes, so every later
// handler reads it from memory. A larger body is answered with 413 and an
// OSB error body, after draining (see maxDrainBytes).
func readBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Body == nil || req.Body == http.NoBody {
			next.ServeHTTP(w, req)
			return
		}
		original := req.Body
		if req.ContentLength > maxBodyBytes {
			tooLarge(w, original, req.ContentLength)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, original, maxBodyBytes))
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			tooLarge(w, original, -1)
			return
		case err != nil:
			malformed(w, "could not read the request body")
			return
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, req)
	})
}

func tooLarge(w http.ResponseWriter, body io.Reader, length int64) {
	if length <= maxDrainBytes {
		_, _ = io.CopyN(io.Discard, body, maxDrainBytes)
	}
	w.Header().Set("Connection", "close")
	writeJSON(w, http.StatusRequestEntityTooLarge, apiresponses.ErrorResponse{Error: "RequestTooLarge",
		Description: fmt.Sprintf("the request body is larger than %d bytes (1 MiB); OSB bodies are small JSON objects: send fewer or smaller parameters", maxBodyBytes)})
}

// jsonKind names the JSON type of a raw value as the spec does.
func jsonKind(raw json.RawMessage) string {
	switch t := bytes.TrimSpace(raw); {
	case len(t) == 0:
		return "nothing"
	case t[0] == '{':
		return "an object"
	case t[0] == '[':
		return "an array"
	case t[0] == '"':
		return "a string"
	case t[0] == 't' || t[0] == 'f':
		return "a boolean"
	case t[0] == 'n':
		return "null"
	default:
		return "a number"
	}
}

// bodyFields are the request body fields OSB defines, with their JSON
// type; unknown fields are ignored, as the spec says.
var bodyFields = map[string]string{
	"service_id": "a string", "plan_id": "a string", "organization_guid": "a string", "space_guid": "a string",
	"app_guid": "a string", "predecessor_binding_id": "a string",
	"context": "an object", "parameters": "an object", "maintenance_info": "an object",
	"previous_values": "an object", "bind_resource": "an object",
}

// nestedFields are the string fields of the objects above that the broker
// reads (the Kubernetes profile in both spellings, and Cloud Foundry's).
var nestedFields = map[string][]string{
	"context": {"platform", "namespace", "organization_guid", "space_guid", "organization_name", "space_name",
		"instance_name", "instanceName", "clusterid", "clusterId"},
	"maintenance_info": {"version"},
	"previous_values":  {"service_id", "plan_id", "organization_id", "space_id"},
	"bind_resource":    {"app_guid", "route"},
}

// requiredFields are what each body must carry (OSB: "MUST be returned if
// the request is malformed or missing mandatory data"): 400 naming the
// field instead of brokerapi's answer without an error code.
func requiredFields(req *http.Request, body map[string]json.RawMessage) []string {
	_, bindingID := idsOf(req.URL.Path)
	switch {
	case req.Method == http.MethodPatch:
		return []string{"service_id"}
	case req.Method == http.MethodPut && bindingID != "":
		if _, rotation := body["predecessor_binding_id"]; rotation {
			return nil
		}
		return []string{"service_id", "plan_id"}
	case req.Method == http.MethodPut:
		return []string{"service_id", "plan_id"}
	}
	return nil
}

// checkBody answers 400 for a PUT or PATCH whose body is not a JSON object,
// has a field of the wrong JSON type (naming the field and both types,
// where brokerapi answers 422 with Go's decoder text), or lacks a field
// the request must carry; and for a DELETE without the service_id and
// plan_id query parameters.
func checkBody(b *Broker) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			switch req.Method {
			case http.MethodDelete:
				for _, q := range []string{"service_id", "plan_id"} {
					if req.URL.Query().Get(q) == "" {
						malformed(w, "the query parameter "+q+" is required: the instance's "+q+" from the catalog")
						return
					}
				}
			case http.MethodPut, http.MethodPatch:
				body, _ := io.ReadAll(req.Body)
				req.Body = io.NopCloser(bytes.NewReader(body))
				if desc := bodyProblem(b, req, body); desc != "" {
					code := "MalformedRequest"
					if strings.HasPrefix(desc, "parameters ") {
						code = "InvalidParameters"
					}
					writeJSON(w, http.StatusBadRequest, apiresponses.ErrorResponse{Error: code, Description: desc})
					return
				}
			}
			next.ServeHTTP(w, req)
		})
	}
}

func bodyProblem(b *Broker, req *http.Request, raw []byte) string {
	var body map[string]json.RawMessage
	if err := json.Unmarshal(raw, &body); err != nil || body == nil {
		return "the request body must be a JSON object"
	}
	for field, want := range bodyFields {
		v, ok := body[field]
		if !ok {
			continue
		}
		if got := jsonKind(v); got != want && got != "null" {
			return fmt.Sprintf("%s must be %s, not %s", field, want, got)
		}
		if want != "an object" || jsonKind(v) == "null" {
			continue
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(v, &obj) != nil {
			return fmt.Sprintf("%s must be %s", field, want)
		}
		for _, sub := range nestedFields[field] {
			if sv, ok := obj[sub]; ok {
				if got := jsonKind(sv); got != "a string" && got != "null" {
					return fmt.Sprintf("%s.%s must be a string, not %s", field, sub, got)
				}
			}
		}
	}
	strField := func(name string) string {
		var s string
		_ = json.Unmarshal(body[name], &s)
		return s
	}
	for _, field := range requiredFields(req, body) {
		if strField(field) == "" {
			return field + " is required: the id from the catalog (GET /v2/catalog)"
		}
	}
	if _, bindingID := idsOf(req.URL.Path); req.Method == http.MethodPut && bindingID == "" {
		// A provision names a service and plan of the catalog.
		svc, plan := strField("service_id"), strField("plan_id")
		if _, p, err := b.Catalog.Find(svc, plan); err != nil || p == nil {
			if s, _, _ := b.Catalog.Find(svc, ""); s == nil {
				return fmt.Sprintf("service_id %s is not in the catalog; GET /v2/catalog lists the services", brief(svc))
			}
			return fmt.Sprintf("plan_id %s is not a plan of service_id %s; GET /v2/catalog lists them", brief(plan), brief(svc))
		}
	}
	return ""
}

// decodeBase64 accepts padded and unpadded standard base64.
func decodeBase64(s string) ([]byte, error) {
	if raw, err := base64.StdEncoding.DecodeString(s); err == nil {
		return raw, nil
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// An internal error's description reaches the platform's users: it says
// what failed, never where the API server is. client-go's errors carry
// the request (url.Error: `Post "https://10.0.0.1:6443/apis/…": dial tcp
// 10.0.0.1:6443: connect: connection refused`).
var (
	urlErrorPrefix = regexp.MustCompile(`\b(?:Get|Post|Put|Patch|Delete|Head|Options) "[^"]*": `)
	netOp          = regexp.MustCompile(`\b(?:dial|read|write) (?:tcp|udp|unix)[46]? [^\s]+?: `)
	address        = regexp.MustCompile(`https?://[^\s"']+|\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b|\[[0-9A-Fa-f:]+\](?::\d+)?`)
)

// publicDescription rewrites an internal error for the platform.
func publicDescription(s string) string {
	if urlErrorPrefix.MatchString(s) {
		s = urlErrorPrefix.ReplaceAllString(s, "the Kubernetes API server could not be reached: ")
		s = netOp.ReplaceAllString(s, "")
		for from, to := range map[string]string{
			"connect: connection refused": "it refused the connection",
			"i/o timeout":                 "it did not answer in time",
			"context deadline exceeded":   "it did not answer in time",
			"connection reset by peer":    "it closed the connection",
		} {
			s = strings.ReplaceAll(s, from, to)
		}
	}
	s = address.ReplaceAllString(s, "[address]")
	return s
}
