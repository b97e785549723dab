package broker

import (
	"errors"
	"net/http"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/pivotal-cf/brokerapi/v12/domain"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/strata-dev/strata/catalog"
)

// When the records cannot be read (the API server is unreachable), every
// endpoint answers 500 InternalError without the server's address, and
// none acts as if the record were absent: a provision must not skip the
// tenant's limits, a deprovision must not answer 410.
func TestEndpointsWhenRecordsCannotBeRead(t *testing.T) {
	unreachable := errors.New(`Get "https://10.96.0.1:443/api/v1/namespaces/strata-system/secrets/x": dial tcp 10.96.0.1:443: connect: connection refused`)
	endpoints := map[string]func(e *testEnv) error{
		"provision": func(e *testEnv) error {
			_, err := e.b.Provision(e.ctx, otherID, pgDetails(catalog.PostgresDevLiteID, ""), true)
			return err
		},
		"update": func(e *testEnv) error {
			_, err := e.b.Update(e.ctx, instanceID, pgUpdate("", `{"storage_gb": 4}`), true)
			return err
		},
		"deprovision": func(e *testEnv) error {
			_, err := e.b.Deprovision(e.ctx, instanceID, domain.DeprovisionDetails{}, true)
			return err
		},
		"last_operation": func(e *testEnv) error {
			_, err := e.b.InstanceOperation(e.ctx, instanceID, "deprovision-1")
			return err
		},
		"get instance": func(e *testEnv) error {
			_, err := e.b.GetInstance(e.ctx, instanceID, domain.FetchInstanceDetails{})
			return err
		},
		"bind": func(e *testEnv) error {
			_, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), false)
			return err
		},
		"unbind": func(e *testEnv) error {
			_, err := e.b.Unbind(e.ctx, instanceID, bindingID, domain.UnbindDetails{}, false)
			return err
		},
		"get binding": func(e *testEnv) error {
			_, err := e.b.GetBinding(e.ctx, instanceID, bindingID, domain.FetchBindingDetails{})
			return err
		},
		"binding last_operation": func(e *testEnv) error {
			_, err := e.b.LastBindingOperation(e.ctx, instanceID, bindingID, domain.PollDetails{OperationData: "unbind-1"})
			return err
		},
	}
	for name, call := range endpoints {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			e := newTestEnv(t)
			provisioned(t, e)
			_, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), false)
			g.Expect(err).NotTo(HaveOccurred())
			e.client.PrependReactor("get", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, unreachable
			})
			applies, deletes := e.kube.applies.Load(), len(e.kube.Deleted)

			err = call(e)
			expectFailure(g, err, http.StatusInternalServerError, "InternalError", "the Kubernetes API server could not be reached")
			_, _, desc := failureOf(g, err)
			g.Expect(desc).NotTo(ContainSubstring("10.96.0.1"))
			g.Expect(e.kube.applies.Load()).To(Equal(applies), "nothing applied")
			g.Expect(e.kube.Deleted).To(HaveLen(deletes), "nothing deleted")
		})
	}
}
