package broker

import (
	"net/http"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/pivotal-cf/brokerapi/v12/domain"

	"github.com/strata-dev/strata/catalog"
)

func TestGetBinding(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	provisioned(t, e)

	_, err := e.b.GetBinding(e.ctx, instanceID, bindingID, domain.FetchBindingDetails{})
	expectFailure(g, err, http.StatusNotFound, "NotFound", "does not exist")

	bound, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, `{"access": "readonly"}`), true)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(bound.IsAsync).To(BeTrue())
	_, err = e.b.GetBinding(e.ctx, instanceID, bindingID, domain.FetchBindingDetails{})
	expectFailure(g, err, http.StatusNotFound, "NotFound", "is being created")

	e.rolesApplied()
	_, err = e.b.LastBindingOperation(e.ctx, instanceID, bindingID, domain.PollDetails{OperationData: bound.OperationData})
	g.Expect(err).NotTo(HaveOccurred())
	got, err := e.b.GetBinding(e.ctx, instanceID, bindingID, domain.FetchBindingDetails{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.Credentials).To(Equal(e.bindingRecord(t, bindingID).Credentials))
	g.Expect(got.Credentials).To(HaveKeyWithValue("username", HaveSuffix("_ro")))
	g.Expect(got.Parameters).To(Equal(map[string]any{"access": "readonly"}))

	// Only under its own instance.
	_, err = e.b.GetBinding(e.ctx, otherID, bindingID, domain.FetchBindingDetails{})
	expectFailure(g, err, http.StatusNotFound, "NotFound", "does not exist")
}
