package broker

import (
	"net/http"
	"net/http/httptest"
	"testing"

	. "github.com/onsi/gomega"
	"go.uber.org/zap"

	"github.com/strata-dev/strata/catalog"
)

// TestCatalogServedFromBytesAsBefore compares GET /v2/catalog through the
// whole handler with what the broker answered when it built and marshalled
// the catalog per request (writeJSON of CatalogResponse): status, headers
// and every byte.
func TestCatalogServedFromBytesAsBefore(t *testing.T) {
	g := NewWithT(t)
	b := &Broker{Catalog: catalog.Default()}
	h := NewHandler(b, HandlerOptions{
		Credentials: func() (string, string, error) { return "platform", "secret", nil },
		Log:         zap.NewNop(),
	})

	perRequest := httptest.NewRecorder()
	writeJSON(perRequest, http.StatusOK, map[string]any{"services": b.Catalog.CatalogResponse()})

	for range 2 { // the second answer is the same bytes again
		req := httptest.NewRequest(http.MethodGet, "/v2/catalog", nil)
		req.SetBasicAuth("platform", "secret")
		req.Header.Set("X-Broker-API-Version", "2.17")
		got := httptest.NewRecorder()
		h.ServeHTTP(got, req)

		g.Expect(got.Code).To(Equal(http.StatusOK))
		g.Expect(got.Header()).To(Equal(perRequest.Header()))
		g.Expect(got.Body.String()).To(Equal(perRequest.Body.String()))
	}
	g.Expect(perRequest.Body.Len()).To(BeNumerically(">", 10_000), "the whole catalog, with its schemas")
}
