package broker

import (
	"errors"
	"net/http"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/pivotal-cf/brokerapi/v12/domain"

	"github.com/strata-dev/strata/binding"
	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
)

func TestUnbindRevokesTheLoginsAndDeletesTheSecret(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	provisioned(t, e)
	_, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), false)
	g.Expect(err).NotTo(HaveOccurred())
	// Another binding of the instance is not touched.
	const otherBinding = "1d2c3b4a-5968-4a7b-8c9d-0e1f2a3b4c5d"
	_, err = e.b.Bind(e.ctx, instanceID, otherBinding, pgBindDetails(catalog.PostgresDevLiteID, ""), false)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(e.kube.ofKind("DatabaseRole")).To(HaveLen(4))

	spec, err := e.b.Unbind(e.ctx, instanceID, bindingID, domain.UnbindDetails{}, false)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(spec.IsAsync).To(BeFalse())
	_, err = e.b.Store.GetBinding(e.ctx, bindingID)
	g.Expect(err).To(MatchError(ErrNotFound))
	g.Expect(e.kube.has(provisioners.Ref{GVK: secretGVKForTest, Namespace: tenantNS, Name: binding.SecretName(bindingID)})).To(BeFalse())
	for _, role := range e.kube.ofKind("DatabaseRole") {
		g.Expect(role.GetLabels()).To(HaveKeyWithValue(provisioners.LabelBindingID, otherBinding))
	}
	g.Expect(e.kube.ofKind("DatabaseRole")).To(HaveLen(2))
	g.Expect(e.kube.has(provisioners.Ref{GVK: secretGVKForTest, Namespace: tenantNS, Name: binding.SecretName(otherBinding)})).To(BeTrue())

	// Unbound: a repeat is gone.
	_, err = e.b.Unbind(e.ctx, instanceID, bindingID, domain.UnbindDetails{}, false)
	g.Expect(err).To(MatchError(bindingGone))
}

// A bind interrupted before it recorded its logins leaves a record with no
// handles; unbind still finds its DatabaseRoles and Secret by the binding
// id.
func TestUnbindOfAnInterruptedBindForgetsByTheBindingID(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	provisioned(t, e)
	br := e.createBindingRecord(t, func(br *BindingRecord) {})
	g.Expect(br.Handles).To(BeEmpty())
	g.Expect(br.SecretName).To(BeEmpty())
	inst, eng := e.instance(t, instanceID)
	_, err := eng.Binder.Bind(e.ctx, inst, bindingID, map[string]any{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(e.kube.ofKind("DatabaseRole")).To(HaveLen(2))
	g.Expect(e.kube.has(provisioners.Ref{GVK: secretGVKForTest, Namespace: tenantNS, Name: binding.SecretName(bindingID)})).To(BeTrue())

	_, err = e.b.Unbind(e.ctx, instanceID, bindingID, domain.UnbindDetails{}, false)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(e.kube.ofKind("DatabaseRole")).To(BeEmpty())
	g.Expect(e.roleSecretPasswords(t)).To(BeEmpty())
	g.Expect(e.kube.has(provisioners.Ref{GVK: secretGVKForTest, Namespace: tenantNS, Name: binding.SecretName(bindingID)})).To(BeFalse())
	_, err = e.b.Store.GetBinding(e.ctx, bindingID)
	g.Expect(err).To(MatchError(ErrNotFound))
}

func TestUnbindOfWhatDoesNotExist(t *testing.T) {
	t.Run("unknown binding", func(t *testing.T) {
		e := newTestEnv(t)
		provisioned(t, e)
		_, err := e.b.Unbind(e.ctx, instanceID, bindingID, domain.UnbindDetails{}, false)
		NewWithT(t).Expect(err).To(MatchError(bindingGone))
	})
	t.Run("a binding of another instance", func(t *testing.T) {
		g := NewWithT(t)
		e := newTestEnv(t)
		provisioned(t, e)
		_, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), false)
		g.Expect(err).NotTo(HaveOccurred())
		_, err = e.b.Unbind(e.ctx, otherID, bindingID, domain.UnbindDetails{}, false)
		g.Expect(err).To(MatchError(bindingGone))
		g.Expect(e.bindingRecord(t, bindingID).Operation.State).To(Equal(provisioners.Succeeded), "left alone")
		g.Expect(e.kube.ofKind("DatabaseRole")).To(HaveLen(2))
	})
	t.Run("the instance is gone: the record is forgotten", func(t *testing.T) {
		g := NewWithT(t)
		e := newTestEnv(t)
		e.createBindingRecord(t, func(br *BindingRecord) { br.Operation.State = provisioners.Succeeded })
		_, err := e.b.Unbind(e.ctx, instanceID, bindingID, domain.UnbindDetails{}, false)
		g.Expect(err).NotTo(HaveOccurred())
		_, err = e.b.Store.GetBinding(e.ctx, bindingID)
		g.Expect(err).To(MatchError(ErrNotFound))
	})
}

// A revocation that fails keeps the binding's record, so that the
// platform's retry of the unbind finds it.
func TestUnbindWhoseRevocationFails(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	provisioned(t, e)
	_, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), false)
	g.Expect(err).NotTo(HaveOccurred())
	broken := &failingDeletes{memKube: e.kube, err: errors.New("the admission webhook is down")}
	e.b.Engines[catalog.EnginePostgres] = Engine{
		Provisioner: e.pg, Prefix: "pg-",
		Binder: &binding.PostgresBinder{Kube: broken, Logins: &binding.RoleSource{Kube: broken}, CASecret: e.pg.ServerCASecret},
	}

	_, err = e.b.Unbind(e.ctx, instanceID, bindingID, domain.UnbindDetails{}, false)
	expectFailure(g, err, http.StatusInternalServerError, "InternalError", "revoke credentials")
	g.Expect(e.bindingRecord(t, bindingID).Operation.State).To(Equal(provisioners.Succeeded), "kept for the retry")

	e.b.Engines[catalog.EnginePostgres] = Engine{
		Provisioner: e.pg, Prefix: "pg-",
		Binder: &binding.PostgresBinder{Kube: e.kube, Logins: &binding.RoleSource{Kube: e.kube}, CASecret: e.pg.ServerCASecret},
	}
	_, err = e.b.Unbind(e.ctx, instanceID, bindingID, domain.UnbindDetails{}, false)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(e.kube.ofKind("DatabaseRole")).To(BeEmpty())
}
