package broker

import (
	"errors"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/pivotal-cf/brokerapi/v12/domain"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
)

// A poll applies the desired state only when it must: it changed since the
// last apply, the request that applied it died (its claim ran out) or a
// resync is due. Everything else is a read.
func TestLastOperationAppliesOnlyWhenNeeded(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	spec, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, ""), true)
	g.Expect(err).NotTo(HaveOccurred())
	cluster := refOf("postgresql.cnpg.io/v1", "Cluster", tenantNS, "pg-"+instanceID)

	poll := func() LastOperationResult {
		t.Helper()
		res, err := e.b.InstanceOperation(e.ctx, instanceID, spec.OperationData)
		g.Expect(err).NotTo(HaveOccurred())
		return res
	}
	appliesBy := func(f func()) int64 {
		before := e.kube.applies.Load()
		f()
		return e.kube.applies.Load() - before
	}

	// Right after the provision: applied as recorded, claim alive.
	g.Expect(appliesBy(func() {
		res := poll()
		g.Expect(res.State).To(Equal(provisioners.InProgress))
		// The instance waits for its server certificate first (the
		// harness names an issuer, and nothing issues it yet).
		g.Expect(res.Description).To(ContainSubstring("waiting for cert-manager to issue the TLS certificate"))
	})).To(BeZero())
	g.Expect(appliesBy(func() { poll() })).To(BeZero(), "a second poll with nothing changed applies nothing")

	// The request's claim runs out while the operation is in progress: it
	// may have died between recording and applying, so the poll applies.
	e.clock.Advance(claimTTL + time.Second)
	g.Expect(appliesBy(func() { poll() })).To(Equal(int64(2)), "baseline and objects")
	rec := e.record(t, instanceID)
	g.Expect(rec.Operation.ClaimedBy).To(BeEmpty(), "the ended claim is cleared")
	g.Expect(rec.AppliedAt).To(Equal(e.clock.Now()))
	g.Expect(appliesBy(func() { poll() })).To(BeZero())

	// The desired state changed since it was applied (another broker
	// version rendered it, say).
	rec.AppliedHash = "rendered-by-an-older-broker"
	g.Expect(e.b.Store.UpdateInstance(e.ctx, rec)).To(Succeed())
	g.Expect(appliesBy(func() { poll() })).To(Equal(int64(2)))
	inst, eng := e.instance(t, instanceID)
	want, err := e.b.desiredOf(inst, eng)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(e.record(t, instanceID).AppliedHash).To(Equal(want.hash))
	g.Expect(appliesBy(func() { poll() })).To(BeZero())

	// Someone deletes the Cluster by hand: the resync puts it back.
	g.Expect(e.kube.Delete(e.ctx, cluster)).To(Succeed())
	e.clock.Advance(defaultResync - time.Second)
	g.Expect(appliesBy(func() { poll() })).To(BeZero(), "no resync before it is due")
	g.Expect(e.kube.has(cluster)).To(BeFalse())
	e.clock.Advance(time.Second)
	g.Expect(appliesBy(func() { poll() })).To(Equal(int64(2)))
	g.Expect(e.kube.has(cluster)).To(BeTrue())

	// A broker configured with a shorter resync resyncs sooner.
	e.b.Resync = time.Minute
	e.clock.Advance(time.Minute)
	g.Expect(appliesBy(func() { poll() })).To(Equal(int64(2)))
}

func TestLastOperationFollowsTheOperators(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	spec, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, ""), true)
	g.Expect(err).NotTo(HaveOccurred())

	e.operatorsAct(t, instanceID)
	res, err := e.b.InstanceOperation(e.ctx, instanceID, spec.OperationData)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.State).To(Equal(provisioners.Succeeded))
	g.Expect(res.Description).To(ContainSubstring("PostgreSQL ready: 1 of 1 instances"))
	g.Expect(res.InstanceUsable).To(BeNil())
	rec := e.record(t, instanceID)
	g.Expect(rec.Operation.State).To(Equal(provisioners.Succeeded))
	g.Expect(rec.Prepared).To(BeTrue())
	g.Expect(e.secretRecord(t, instanceSecretName(instanceID)).Labels).To(HaveKeyWithValue(labelInProgress, "false"))

	// A finished operation is only reported: nothing is applied again.
	applies := e.kube.applies.Load()
	e.clock.Advance(time.Hour)
	lo, err := e.b.LastOperation(e.ctx, instanceID, domain.PollDetails{OperationData: spec.OperationData})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(lo.State).To(Equal(domain.Succeeded))
	g.Expect(e.kube.applies.Load()).To(Equal(applies))
}

func TestLastOperationFailsAtTheDeadline(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	spec, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, ""), true)
	g.Expect(err).NotTo(HaveOccurred())

	e.clock.Advance(1800 * time.Second)
	res, err := e.b.InstanceOperation(e.ctx, instanceID, spec.OperationData)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.State).To(Equal(provisioners.InProgress), "at the deadline, not yet past it")

	e.clock.Advance(time.Second)
	res, err = e.b.InstanceOperation(e.ctx, instanceID, spec.OperationData)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.State).To(Equal(provisioners.Failed))
	g.Expect(res.Description).To(And(
		ContainSubstring("did not finish within 30m0s"),
		ContainSubstring("plan dev-lite"),
		ContainSubstring("last status: waiting for cert-manager"),
	))
	g.Expect(e.record(t, instanceID).Operation.State).To(Equal(provisioners.Failed))
}

func TestLastOperationOfAbsentInstances(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)

	_, err := e.b.InstanceOperation(e.ctx, instanceID, "provision-abc")
	expectFailure(g, err, http.StatusNotFound, "NotFound", "does not exist")
	_, err = e.b.InstanceOperation(e.ctx, instanceID, "")
	expectFailure(g, err, http.StatusNotFound, "NotFound", "does not exist")
	// A deprovision finding nothing has succeeded (410).
	_, err = e.b.InstanceOperation(e.ctx, instanceID, "deprovision-abc")
	g.Expect(err).To(MatchError(gone))

	e.provisionReady(t, instanceID, catalog.PostgresDevLiteID, "")
	dep, err := e.b.Deprovision(e.ctx, instanceID, domain.DeprovisionDetails{}, true)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = e.b.InstanceOperation(e.ctx, instanceID, dep.OperationData)
	g.Expect(err).To(MatchError(gone), "the poll that finishes the deprovision answers 410")
	for _, op := range []string{dep.OperationData, "", "provision-abc"} {
		_, err = e.b.InstanceOperation(e.ctx, instanceID, op)
		g.Expect(err).To(MatchError(gone), "deleted, polled with %q", op)
	}
}

func TestLastOperationOfAFailedUpdate(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	e.provisionReady(t, instanceID, catalog.PostgresDevLiteID, "")
	e.kube.failOnKind("Cluster", errors.New("the API server is unavailable"))

	_, err := e.b.Update(e.ctx, instanceID, domain.UpdateDetails{ServiceID: catalog.PostgresServiceID, RawParameters: []byte(`{"storage_gb": 4}`)}, true)
	expectFailure(g, err, http.StatusInternalServerError, "InternalError", "rolled back")

	rec := e.record(t, instanceID)
	res, err := e.b.InstanceOperation(e.ctx, instanceID, rec.Operation.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.State).To(Equal(provisioners.Failed))
	g.Expect(res.Description).To(ContainSubstring("the API server is unavailable"))
	g.Expect(res.InstanceUsable).To(HaveValue(BeTrue()))
	g.Expect(res.UpdateRepeatable).To(HaveValue(BeTrue()))
}

func TestLastOperationOfAFailedDeprovision(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	e.provisionReady(t, instanceID, catalog.PostgresDevLiteID, "")
	rec := e.record(t, instanceID)
	rec.Operation = Operation{Type: OpDeprovision, ID: "deprovision-1", State: provisioners.Failed, Description: "could not delete"}
	g.Expect(e.b.Store.UpdateInstance(e.ctx, rec)).To(Succeed())

	res, err := e.b.InstanceOperation(e.ctx, instanceID, "deprovision-1")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.State).To(Equal(provisioners.Failed))
	g.Expect(res.InstanceUsable).To(HaveValue(BeFalse()), "partly deleted")
	g.Expect(res.UpdateRepeatable).To(BeNil())
}

// A record whose plan left the catalog cannot be advanced: its operation
// fails, saying why, instead of staying in progress for ever.
func TestLastOperationOfAPlanNoLongerInTheCatalog(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	spec, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, ""), true)
	g.Expect(err).NotTo(HaveOccurred())
	rec := e.record(t, instanceID)
	rec.PlanID = "retired-plan"
	g.Expect(e.b.Store.UpdateInstance(e.ctx, rec)).To(Succeed())

	res, err := e.b.InstanceOperation(e.ctx, instanceID, spec.OperationData)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.State).To(Equal(provisioners.Failed))
	g.Expect(res.Description).To(ContainSubstring("no longer in the catalog"))
}

// A poll whose reading could not be recorded (another replica or the
// reconcile loop wrote the record first) answers what is stored: a
// platform told "succeeded" binds next, and a bind reads the record.
func TestLastOperationAnswersWhatIsRecorded(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	_, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, ""), true)
	g.Expect(err).NotTo(HaveOccurred())
	e.operatorsAct(t, instanceID)

	e.conflictOn(instanceSecretName(instanceID), 1)
	res, err := e.b.InstanceOperation(e.ctx, instanceID, "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.State).To(Equal(e.record(t, instanceID).Operation.State))
	g.Expect(res.State).To(Equal(provisioners.InProgress), "the reading was not recorded")

	res, err = e.b.InstanceOperation(e.ctx, instanceID, "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.State).To(Equal(provisioners.Succeeded))
	_, err = e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), false)
	g.Expect(err).NotTo(HaveOccurred(), "a bind right after the answer succeeded")
}
