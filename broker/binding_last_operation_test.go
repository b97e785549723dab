package broker

import (
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/pivotal-cf/brokerapi/v12/domain"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
)

func TestBindingLastOperationFollowsTheLogins(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	provisioned(t, e)
	bound, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), true)
	g.Expect(err).NotTo(HaveOccurred())
	poll := domain.PollDetails{OperationData: bound.OperationData}

	op, err := e.b.LastBindingOperation(e.ctx, instanceID, bindingID, poll)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(op.State).To(Equal(domain.InProgress))
	// Whichever login is found waiting first, it is named.
	g.Expect(op.Description).To(MatchRegexp(`^waiting for CloudNativePG to create role b_[0-9a-f]{16}_(rw|ow)$`))
	g.Expect(e.bindingRecord(t, bindingID).Operation.Description).To(Equal(op.Description), "recorded")

	e.rolesApplied()
	op, err = e.b.LastBindingOperation(e.ctx, instanceID, bindingID, poll)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(op.State).To(Equal(domain.Succeeded))
	g.Expect(op.Description).To(Equal("credentials ready"))
	g.Expect(e.bindingRecord(t, bindingID).Operation.State).To(Equal(provisioners.Succeeded))
	g.Expect(e.secretRecord(t, bindingSecretName(bindingID)).Labels).To(HaveKeyWithValue(labelInProgress, "false"))
}

// A poll whose reading could not be recorded answers what is stored, so
// GET binding never disagrees with a "succeeded" the platform was told.
func TestBindingLastOperationAnswersWhatIsRecorded(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	provisioned(t, e)
	bound, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), true)
	g.Expect(err).NotTo(HaveOccurred())
	poll := domain.PollDetails{OperationData: bound.OperationData}
	e.rolesApplied()

	e.conflictOn(bindingSecretName(bindingID), 1)
	op, err := e.b.LastBindingOperation(e.ctx, instanceID, bindingID, poll)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(op.State).To(Equal(domain.InProgress), "the reading was not recorded")

	op, err = e.b.LastBindingOperation(e.ctx, instanceID, bindingID, poll)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(op.State).To(Equal(domain.Succeeded))
	_, err = e.b.GetBinding(e.ctx, instanceID, bindingID, domain.FetchBindingDetails{})
	g.Expect(err).NotTo(HaveOccurred())
}

func TestBindingLastOperationFailsAtTheDeadline(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	provisioned(t, e)
	bound, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), true)
	g.Expect(err).NotTo(HaveOccurred())

	e.clock.Advance(1801 * time.Second)
	op, err := e.b.LastBindingOperation(e.ctx, instanceID, bindingID, domain.PollDetails{OperationData: bound.OperationData})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(op.State).To(Equal(domain.Failed))
	g.Expect(op.Description).To(ContainSubstring("credentials did not become usable in time: waiting for CloudNativePG"))
}

// The reconcile loop or a poll finishes a bind whose request died before
// recording what it issued; past the deadline it is cleaned up and failed.
func TestBindingLastOperationOfAnInterruptedBind(t *testing.T) {
	t.Run("taken over", func(t *testing.T) {
		g := NewWithT(t)
		e := newTestEnv(t)
		provisioned(t, e)
		br := e.createBindingRecord(t, func(br *BindingRecord) {
			br.Operation.ClaimedBy, br.Operation.ClaimedUntil = "replica-dead", e.clock.Now().Add(claimTTL)
		})
		poll := domain.PollDetails{OperationData: br.Operation.ID}

		op, err := e.b.LastBindingOperation(e.ctx, instanceID, bindingID, poll)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(op.State).To(Equal(domain.InProgress))
		g.Expect(e.kube.ofKind("DatabaseRole")).To(BeEmpty(), "a live claim is left alone")

		e.clock.Advance(claimTTL + time.Second)
		op, err = e.b.LastBindingOperation(e.ctx, instanceID, bindingID, poll)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(op.State).To(Equal(domain.InProgress))
		got := e.bindingRecord(t, bindingID)
		g.Expect(got.SecretName).NotTo(BeEmpty(), "issued and recorded by the takeover")
		g.Expect(got.Operation.ClaimedBy).To(BeEmpty())
		g.Expect(e.kube.ofKind("DatabaseRole")).To(HaveLen(2))

		e.rolesApplied()
		op, err = e.b.LastBindingOperation(e.ctx, instanceID, bindingID, poll)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(op.State).To(Equal(domain.Succeeded))
	})
	t.Run("past its deadline", func(t *testing.T) {
		g := NewWithT(t)
		e := newTestEnv(t)
		provisioned(t, e)
		br := e.createBindingRecord(t, func(br *BindingRecord) {
			br.Operation.ClaimedBy, br.Operation.ClaimedUntil = "replica-dead", e.clock.Now().Add(claimTTL)
		})
		inst, eng := e.instance(t, instanceID)
		_, err := eng.Binder.Bind(e.ctx, inst, bindingID, map[string]any{})
		g.Expect(err).NotTo(HaveOccurred())

		e.clock.Advance(1801 * time.Second)
		op, err := e.b.LastBindingOperation(e.ctx, instanceID, bindingID, domain.PollDetails{OperationData: br.Operation.ID})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(op.State).To(Equal(domain.Failed))
		g.Expect(op.Description).To(ContainSubstring("interrupted and could not be completed in time"))
		g.Expect(e.kube.ofKind("DatabaseRole")).To(BeEmpty(), "what the dead request made is removed")
	})
}

func TestBindingLastOperationOfAbsentBindings(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	provisioned(t, e)

	_, err := e.b.LastBindingOperation(e.ctx, instanceID, bindingID, domain.PollDetails{OperationData: "bind-abc"})
	expectFailure(g, err, http.StatusNotFound, "NotFound", "does not exist")
	// An unbind finding nothing has succeeded (410).
	_, err = e.b.LastBindingOperation(e.ctx, instanceID, bindingID, domain.PollDetails{OperationData: "unbind-abc"})
	g.Expect(err).To(MatchError(bindingGone))

	_, err = e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), false)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = e.b.LastBindingOperation(e.ctx, otherID, bindingID, domain.PollDetails{})
	expectFailure(g, err, http.StatusNotFound, "NotFound", "does not exist")
	op, err := e.b.LastBindingOperation(e.ctx, instanceID, bindingID, domain.PollDetails{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(op.State).To(Equal(domain.Succeeded))
}

// The record keeps the logins' handles and the credentials; the logins
// rebuilt from it carry their usernames, which the readiness messages
// name (the migrations' owner login's is Flyway's user).
func TestResultOfNamesEveryLogin(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	provisioned(t, e)
	_, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), true)
	g.Expect(err).NotTo(HaveOccurred())
	br := e.bindingRecord(t, bindingID)

	res := resultOf(br)
	g.Expect(res.SecretName).To(Equal(br.SecretName))
	g.Expect(res.Logins).To(HaveLen(2))
	g.Expect(res.Logins["app"].Username).To(HaveSuffix("_rw"))
	g.Expect(res.Logins["migrations"].Username).To(HaveSuffix("_ow"))
	for name, l := range res.Logins {
		g.Expect(l.Handle).To(Equal(br.Handles[name]))
	}
}
