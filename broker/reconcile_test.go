package broker

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/pivotal-cf/brokerapi/v12/domain"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stesting "k8s.io/client-go/testing"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
)

// recordWrites lists the names of the record Secrets written (updated)
// since the clientset's actions were last cleared.
func (e *testEnv) recordWrites() []string {
	var out []string
	for _, a := range e.client.Actions() {
		if u, ok := a.(k8stesting.UpdateAction); ok && a.GetResource().Resource == "secrets" {
			out = append(out, u.GetObject().(metav1.Object).GetName())
		}
	}
	return out
}

// The reconcile loop finishes operations no platform polls: a provision,
// a binding, a deprovision.
func TestReconcileOnceAdvancesWhatIsInProgress(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	const (
		provisioning   = instanceID
		deprovisioning = otherID
		untouched      = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
	)
	// Provisioning, its operators done.
	_, err := e.b.Provision(e.ctx, provisioning, pgDetails(catalog.PostgresDevLiteID, ""), true)
	g.Expect(err).NotTo(HaveOccurred())
	e.operatorsAct(t, provisioning)
	// Deprovisioning, with a binding being created on another instance.
	e.provisionReady(t, deprovisioning, catalog.PostgresDevLiteID, "")
	_, err = e.b.Deprovision(e.ctx, deprovisioning, domain.DeprovisionDetails{}, true)
	g.Expect(err).NotTo(HaveOccurred())
	// Done, with a binding whose logins CloudNativePG has just created.
	e.provisionReady(t, untouched, catalog.PostgresDevLiteID, "")
	bound, err := e.b.Bind(e.ctx, untouched, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), true)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(bound.IsAsync).To(BeTrue())
	e.rolesApplied()

	e.client.ClearActions()
	e.b.ReconcileOnce(e.ctx, 2, false)

	g.Expect(e.record(t, provisioning).Operation.State).To(Equal(provisioners.Succeeded))
	dep := e.record(t, deprovisioning)
	g.Expect(dep.Deleted).To(BeTrue())
	g.Expect(dep.Operation.State).To(Equal(provisioners.Succeeded))
	g.Expect(e.bindingRecord(t, bindingID).Operation.State).To(Equal(provisioners.Succeeded), "bound without a poll")
	g.Expect(e.recordWrites()).NotTo(ContainElement(instanceSecretName(untouched)), "a record not in progress is not touched")

	// Nothing in progress is left: a second pass writes nothing.
	e.client.ClearActions()
	applies := e.kube.applies.Load()
	e.b.ReconcileOnce(e.ctx, 2, false)
	g.Expect(e.recordWrites()).To(BeEmpty())
	g.Expect(e.kube.applies.Load()).To(Equal(applies))
}

// Records written before they carried the in-progress label are found by
// the passes that read every record.
func TestReconcileOnceAllFindsUnlabelledRecords(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	_, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, ""), true)
	g.Expect(err).NotTo(HaveOccurred())
	e.operatorsAct(t, instanceID)
	sec := e.secretRecord(t, instanceSecretName(instanceID))
	delete(sec.Labels, labelInProgress)
	_, err = e.client.CoreV1().Secrets(recordsNS).Update(e.ctx, sec, metav1.UpdateOptions{})
	g.Expect(err).NotTo(HaveOccurred())

	e.b.ReconcileOnce(e.ctx, 1, false)
	g.Expect(e.record(t, instanceID).Operation.State).To(Equal(provisioners.InProgress), "not listed by its label")

	e.b.ReconcileOnce(e.ctx, 1, true)
	g.Expect(e.record(t, instanceID).Operation.State).To(Equal(provisioners.Succeeded))
	g.Expect(e.secretRecord(t, instanceSecretName(instanceID)).Labels).To(HaveKeyWithValue(labelInProgress, "false"))
}

// A pass with every record finished, including deleted ones, changes
// nothing.
func TestReconcileOnceLeavesFinishedRecordsAlone(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	e.provisionReady(t, instanceID, catalog.PostgresDevLiteID, "")
	e.provisionReady(t, otherID, catalog.PostgresDevLiteID, "")
	dep, err := e.b.Deprovision(e.ctx, otherID, domain.DeprovisionDetails{}, true)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = e.b.InstanceOperation(e.ctx, otherID, dep.OperationData)
	g.Expect(err).To(MatchError(gone))

	e.client.ClearActions()
	applies, deletes := e.kube.applies.Load(), len(e.kube.Deleted)
	e.b.ReconcileOnce(e.ctx, 4, true)
	g.Expect(e.recordWrites()).To(BeEmpty())
	g.Expect(e.kube.applies.Load()).To(Equal(applies))
	g.Expect(e.kube.Deleted).To(HaveLen(deletes))
}

// RunReconciler runs the passes while this replica holds the Lease, and
// stops (releasing it) when its context ends.
func TestRunReconcilerLeadsAndStops(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	_, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, ""), true)
	g.Expect(err).NotTo(HaveOccurred())
	e.operatorsAct(t, instanceID)

	ctx, cancel := context.WithCancel(e.ctx)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		e.b.RunReconciler(ctx, ReconcileOptions{Interval: 10 * time.Millisecond})
	}()
	g.Eventually(func() provisioners.State {
		return e.record(t, instanceID).Operation.State
	}).WithTimeout(10 * time.Second).Should(Equal(provisioners.Succeeded))
	lease, err := e.client.CoordinationV1().Leases(recordsNS).Get(e.ctx, ReconcilerLease, metav1.GetOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(lease.Spec.HolderIdentity).To(HaveValue(Equal(replica)))

	cancel()
	g.Eventually(stopped).WithTimeout(10 * time.Second).Should(BeClosed())
}
