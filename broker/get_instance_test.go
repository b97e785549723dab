package broker

import (
	"net/http"
	"testing"
	"text/template"

	. "github.com/onsi/gomega"
	"github.com/pivotal-cf/brokerapi/v12/domain"

	"github.com/strata-dev/strata/catalog"
)

func TestGetInstance(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	e.b.DashboardURL = template.Must(template.New("d").Parse("https://grafana.example/{{.Namespace}}/{{.Name}}"))
	get := func() (domain.GetInstanceDetailsSpec, error) {
		return e.b.GetInstance(e.ctx, instanceID, domain.FetchInstanceDetails{})
	}

	_, err := get()
	expectFailure(g, err, http.StatusNotFound, "NotFound", "does not exist")

	spec, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, `{"storage_gb": 3}`), true)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = get()
	expectFailure(g, err, http.StatusNotFound, "NotFound", "is being provisioned")

	e.operatorsAct(t, instanceID)
	_, err = e.b.InstanceOperation(e.ctx, instanceID, spec.OperationData)
	g.Expect(err).NotTo(HaveOccurred())
	got, err := get()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal(domain.GetInstanceDetailsSpec{
		ServiceID: catalog.PostgresServiceID, PlanID: catalog.PostgresDevLiteID,
		DashboardURL: "https://grafana.example/team-a/pg-" + instanceID,
		Parameters:   map[string]any{"storage_gb": float64(3)},
	}))

	_, err = e.b.Update(e.ctx, instanceID, pgUpdate("", `{"storage_gb": 4}`), true)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = get()
	expectFailure(g, err, http.StatusUnprocessableEntity, "ConcurrencyError", "is being updated")

	dep, err := e.b.Deprovision(e.ctx, instanceID, domain.DeprovisionDetails{}, true)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = e.b.InstanceOperation(e.ctx, instanceID, dep.OperationData)
	g.Expect(err).To(MatchError(gone))
	_, err = get()
	expectFailure(g, err, http.StatusNotFound, "NotFound", "does not exist")
}

func TestGetInstanceOfAFailedProvision(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	_, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, ""), true)
	g.Expect(err).NotTo(HaveOccurred())
	rec := e.record(t, instanceID)
	rec.Operation.State = "failed"
	g.Expect(e.b.Store.UpdateInstance(e.ctx, rec)).To(Succeed())
	_, err = e.b.GetInstance(e.ctx, instanceID, domain.FetchInstanceDetails{})
	expectFailure(g, err, http.StatusNotFound, "NotFound", "is being provisioned")
}
