package broker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/strata-dev/strata/catalog"
)

// catalogHandler serves GET /v2/catalog from bytes marshalled once: the
// catalog does not change while the broker runs, and building and
// marshalling its services, plans and JSON Schemas per request was most of
// the request's CPU. The bytes are what writeJSON would write.
func catalogHandler(c *catalog.Catalog) http.HandlerFunc {
	body, err := marshalCatalog(c)
	if err != nil {
		// The catalog is compiled in: a catalog that does not marshal is a
		// programming error, which the tests catch.
		panic(fmt.Sprintf("the catalog does not marshal: %v", err))
	}
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	}
}

// marshalCatalog encodes the catalog response as writeJSON does (no HTML
// escaping, a trailing newline).
func marshalCatalog(c *catalog.Catalog) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(map[string]any{"services": c.CatalogResponse()}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
