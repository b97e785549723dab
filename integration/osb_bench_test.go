//go:build linux

package integration_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/strata-dev/strata/catalog"
)

// The request-handling benchmarks run the whole broker over HTTPS against
// the real kube-apiserver and etcd, so they measure what a platform sees:
// authentication, validation, building the objects, the record's create
// and the server-side apply of every object. docs/benchmarks.md has the
// figures of the reference machine.

// BenchmarkCatalogRequest is GET /v2/catalog.
func BenchmarkCatalogRequest(b *testing.B) {
	osb := sharedWorld(b).startBroker(b)
	b.ReportAllocs()
	for b.Loop() {
		if r := osb.do(http.MethodGet, "/v2/catalog", nil); r.Code != http.StatusOK {
			b.Fatalf("catalog: %d %s", r.Code, r.Raw)
		}
	}
}

// BenchmarkProvisionRequest is one asynchronous provision of a new
// standard instance (the record, then the nine objects the plan renders, applied) answered 202.
func BenchmarkProvisionRequest(b *testing.B) {
	osb := sharedWorld(b).startBroker(b)
	body := provisionBody(catalog.PostgresStandardID, "team-c", map[string]any{"databases": []any{"app"}})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		id := fmt.Sprintf("be0c0000-0000-4000-8000-%012d", i)
		if r := osb.do(http.MethodPut, "/v2/service_instances/"+id+"?accepts_incomplete=true", body); r.Code != http.StatusAccepted {
			b.Fatalf("provision %s: %d %s", id, r.Code, r.Raw)
		}
	}
}

// BenchmarkLastOperationPoll is one last_operation poll of an instance in
// progress (re-apply, read status, record).
func BenchmarkLastOperationPoll(b *testing.B) {
	osb := sharedWorld(b).startBroker(b)
	const id = "be0c1111-0000-4000-8000-000000000000"
	if r := osb.do(http.MethodPut, "/v2/service_instances/"+id+"?accepts_incomplete=true",
		provisionBody(catalog.PostgresStandardID, "team-c", nil)); r.Code != http.StatusAccepted {
		b.Fatalf("provision: %d %s", r.Code, r.Raw)
	}
	b.ReportAllocs()
	for b.Loop() {
		if r := osb.do(http.MethodGet, "/v2/service_instances/"+id+"/last_operation", nil); r.Code != http.StatusOK {
			b.Fatalf("last_operation: %d %s", r.Code, r.Raw)
		}
	}
}
