package provisioners_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/strata-dev/strata/provisioners"
)

// TestKubeSaysWhyAKindIsUnknown: an API server that does not answer
// discovery (it restarts) is not "a kind not served, is its operator
// installed?"; once it answers, a kind it lacks is.
func TestKubeSaysWhyAKindIsUnknown(t *testing.T) {
	g := NewWithT(t)
	var up atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !up.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch req.URL.Path {
		case "/api":
			_, _ = w.Write([]byte(`{"kind":"APIVersions","versions":["v1"]}`))
		case "/api/v1":
			_, _ = w.Write([]byte(`{"kind":"APIResourceList","groupVersion":"v1","resources":[]}`))
		case "/apis":
			_, _ = w.Write([]byte(`{"kind":"APIGroupList","apiVersion":"v1","groups":[]}`))
		default:
			http.NotFound(w, req)
		}
	}))
	defer srv.Close()
	kube, err := provisioners.NewKube(&rest.Config{Host: srv.URL})
	g.Expect(err).NotTo(HaveOccurred())
	ref := provisioners.Ref{GVK: schema.GroupVersionKind{Group: "postgresql.cnpg.io", Version: "v1", Kind: "DatabaseRole"}, Namespace: "team-a", Name: "r"}

	_, err = kube.Get(context.Background(), ref)
	g.Expect(err).To(MatchError(ContainSubstring("could not look DatabaseRole up in the API server's discovery")))
	g.Expect(err.Error()).NotTo(ContainSubstring("is its operator installed"))

	up.Store(true)
	_, err = kube.Get(context.Background(), ref)
	g.Expect(err).To(MatchError(ContainSubstring("DatabaseRole is not served by this cluster (is its operator installed?)")),
		"a failed discovery does not stick: once the API server answers, the kind is looked up again")
}
