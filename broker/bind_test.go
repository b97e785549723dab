package broker

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/pivotal-cf/brokerapi/v12/domain"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/binding"
	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/redis"
)

// roleSecretPasswords are the passwords in the DatabaseRoles' basic-auth
// Secrets: what CloudNativePG sets on the roles.
func (e *testEnv) roleSecretPasswords(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, s := range e.kube.ofKind("Secret") {
		if s.Object["type"] != "kubernetes.io/basic-auth" {
			continue
		}
		data := s.Object["data"].(map[string]any)
		pw, err := base64.StdEncoding.DecodeString(data["password"].(string))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(pw))
	}
	return out
}

func TestBindSynchronously(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	e.provisionReady(t, instanceID, catalog.PostgresDevLiteID, "")

	res, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, `{"access": "readwrite"}`), false)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.IsAsync).To(BeFalse())
	g.Expect(res.AlreadyExists).To(BeFalse())
	g.Expect(res.Credentials).To(HaveKey("password"))
	g.Expect(res.Credentials).To(HaveKeyWithValue("username", HavePrefix("b_")))
	g.Expect(res.Credentials).To(HaveKeyWithValue("uri", ContainSubstring("pg-"+instanceID+"-rw."+tenantNS+".svc")))
	g.Expect(res.Metadata).To(Equal(domain.BindingMetadata{}), "DatabaseRole logins do not expire")

	br := e.bindingRecord(t, bindingID)
	g.Expect(br.Operation.Type).To(Equal(OpBind))
	g.Expect(br.Operation.State).To(Equal(provisioners.Succeeded))
	g.Expect(br.Operation.ClaimedBy).To(BeEmpty())
	g.Expect(br.Credentials).To(Equal(res.Credentials))
	g.Expect(br.SecretName).To(Equal(binding.SecretName(bindingID)))
	g.Expect(br.Handles).To(HaveLen(2), "the application's login and the migrations' owner")
	g.Expect(br.AppGUID).To(Equal("app-1"))
	g.Expect(br.Parameters).To(Equal(map[string]any{"access": "readwrite"}))
	for _, h := range br.Handles {
		g.Expect(e.kube.has(refOf("postgresql.cnpg.io/v1", "DatabaseRole", tenantNS, h))).To(BeTrue())
	}
	g.Expect(e.kube.has(provisioners.Ref{GVK: secretGVKForTest, Namespace: tenantNS, Name: br.SecretName})).To(BeTrue())
	g.Expect(e.secretRecord(t, bindingSecretName(bindingID)).Labels).To(HaveKeyWithValue(labelInProgress, "false"))
}

func TestBindRefusals(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, e *testEnv)
		details domain.BindDetails
		status  int
		code    string
		mention string
	}{
		{"unknown instance", nil, pgBindDetails(catalog.PostgresDevLiteID, ""), http.StatusNotFound, "NotFound", "does not exist"},
		{"another plan", provisioned, pgBindDetails(catalog.PostgresStandardID, ""), http.StatusBadRequest, "BadRequest", "is not the instance's plan"},
		{"another service", provisioned, domain.BindDetails{ServiceID: catalog.RedisServiceID, PlanID: catalog.PostgresDevLiteID}, http.StatusBadRequest, "BadRequest", "service_id does not match"},
		{"invalid parameters", provisioned, pgBindDetails(catalog.PostgresDevLiteID, `{"access": "superuser"}`), http.StatusBadRequest, "InvalidParameters", "access"},
		{"a database the instance does not have", provisioned, pgBindDetails(catalog.PostgresDevLiteID, `{"database": "other"}`), http.StatusBadRequest, "InvalidParameters", `"other" is not a database of this instance`},
		{"an instance being provisioned", func(t *testing.T, e *testEnv) {
			if _, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, ""), true); err != nil {
				t.Fatal(err)
			}
		}, pgBindDetails(catalog.PostgresDevLiteID, ""), http.StatusUnprocessableEntity, "ConcurrencyError", "not ready for bindings (provision in progress)"},
		{"an instance being deprovisioned", func(t *testing.T, e *testEnv) {
			provisioned(t, e)
			if _, err := e.b.Deprovision(e.ctx, instanceID, domain.DeprovisionDetails{}, true); err != nil {
				t.Fatal(err)
			}
		}, pgBindDetails(catalog.PostgresDevLiteID, ""), http.StatusUnprocessableEntity, "ConcurrencyError", "not ready for bindings (deprovision"},
		{"the CA certificate does not exist yet", func(t *testing.T, e *testEnv) {
			provisioned(t, e)
			inst, _ := e.instance(t, instanceID)
			if err := e.kube.Delete(e.ctx, provisioners.Ref{GVK: secretGVKForTest, Namespace: tenantNS, Name: e.pg.ServerCASecret(inst)}); err != nil {
				t.Fatal(err)
			}
		}, pgBindDetails(catalog.PostgresDevLiteID, ""), http.StatusUnprocessableEntity, "ConcurrencyError", "does not exist yet"},
		{"a login object still being deleted", func(t *testing.T, e *testEnv) {
			provisioned(t, e)
			e.kube.failOnKind("DatabaseRole", &provisioners.TerminatingError{Kind: "DatabaseRole", Namespace: tenantNS, Name: "x"})
		}, pgBindDetails(catalog.PostgresDevLiteID, ""), http.StatusUnprocessableEntity, "ConcurrencyError", "still being deleted"},
		{"the API server failing", func(t *testing.T, e *testEnv) {
			provisioned(t, e)
			e.kube.failOnKind("DatabaseRole", errors.New("connection reset"))
		}, pgBindDetails(catalog.PostgresDevLiteID, ""), http.StatusInternalServerError, "InternalError", "could not issue credentials"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			e := newTestEnv(t)
			if tc.setup != nil {
				tc.setup(t, e)
			}
			_, err := e.b.Bind(e.ctx, instanceID, bindingID, tc.details, false)
			expectFailure(g, err, tc.status, tc.code, tc.mention)
			// Nothing of the refused bind is left: no record, no login, no
			// Secret.
			_, err = e.b.Store.GetBinding(e.ctx, bindingID)
			g.Expect(err).To(MatchError(ErrNotFound))
			g.Expect(e.kube.ofKind("DatabaseRole")).To(BeEmpty())
			g.Expect(e.kube.has(provisioners.Ref{GVK: secretGVKForTest, Namespace: tenantNS, Name: binding.SecretName(bindingID)})).To(BeFalse())
		})
	}
}

func TestBindRepeated(t *testing.T) {
	t.Run("the same bind answers 200 with the same credentials", func(t *testing.T) {
		g := NewWithT(t)
		e := newTestEnv(t)
		provisioned(t, e)
		first, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), false)
		g.Expect(err).NotTo(HaveOccurred())
		applies := e.kube.applies.Load()
		again, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), false)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(again.AlreadyExists).To(BeTrue())
		g.Expect(again.Credentials).To(Equal(first.Credentials))
		g.Expect(e.kube.applies.Load()).To(Equal(applies), "nothing issued again")
	})
	t.Run("a different bind conflicts", func(t *testing.T) {
		g := NewWithT(t)
		e := newTestEnv(t)
		provisioned(t, e)
		_, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), false)
		g.Expect(err).NotTo(HaveOccurred())
		_, err = e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, `{"access": "readonly"}`), false)
		expectFailure(g, err, http.StatusConflict, "Conflict", "other attributes")
	})
	t.Run("the same id on another instance conflicts", func(t *testing.T) {
		g := NewWithT(t)
		e := newTestEnv(t)
		provisioned(t, e)
		e.provisionReady(t, otherID, catalog.PostgresDevLiteID, "")
		_, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), false)
		g.Expect(err).NotTo(HaveOccurred())
		_, err = e.b.Bind(e.ctx, otherID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), false)
		expectFailure(g, err, http.StatusConflict, "Conflict", "other attributes")
	})
}

// An asynchronous bind answers 202 until the logins work; a repeat while
// it is in progress answers its operation (async) or asks to retry (sync).
func TestBindAsynchronously(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	provisioned(t, e)

	res, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), true)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.IsAsync).To(BeTrue())
	g.Expect(res.OperationData).To(HavePrefix("bind-"))
	g.Expect(res.Credentials).To(BeNil(), "credentials only once they work")
	br := e.bindingRecord(t, bindingID)
	g.Expect(br.Operation.State).To(Equal(provisioners.InProgress))
	g.Expect(br.SecretName).NotTo(BeEmpty(), "issued and recorded")
	g.Expect(br.Operation.ClaimedBy).To(BeEmpty(), "the request's work is done")

	again, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), true)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(again).To(Equal(domain.Binding{IsAsync: true, OperationData: res.OperationData}))
	_, err = e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), false)
	expectFailure(g, err, http.StatusUnprocessableEntity, "ConcurrencyError", "being created by an earlier request")
}

// createBindingRecord writes the record a bind request leaves when it dies
// or fails at some point.
func (e *testEnv) createBindingRecord(t *testing.T, mutate func(*BindingRecord)) *BindingRecord {
	t.Helper()
	_, plan, _ := e.b.Catalog.Find(catalog.PostgresServiceID, catalog.PostgresDevLiteID)
	br := &BindingRecord{
		ID: bindingID, InstanceID: instanceID, ServiceID: catalog.PostgresServiceID, PlanID: catalog.PostgresDevLiteID,
		Parameters: map[string]any{}, AppGUID: "app-1",
		Operation: newOperation(OpBind, e.clock.Now(), plan), Created: e.clock.Now(),
	}
	mutate(br)
	if err := e.b.Store.CreateBinding(e.ctx, br); err != nil {
		t.Fatal(err)
	}
	return br
}

func TestBindRepeatOfAClaimedBind(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	provisioned(t, e)
	br := e.createBindingRecord(t, func(br *BindingRecord) {
		br.Operation.ClaimedBy, br.Operation.ClaimedUntil = "replica-b", e.clock.Now().Add(claimTTL)
	})

	_, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), false)
	expectFailure(g, err, http.StatusUnprocessableEntity, "ConcurrencyError", "retry")
	res, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), true)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res).To(Equal(domain.Binding{IsAsync: true, OperationData: br.Operation.ID}))
	g.Expect(e.kube.ofKind("DatabaseRole")).To(BeEmpty(), "the other replica's work is left to it")
	g.Expect(e.bindingRecord(t, bindingID).Operation.ClaimedBy).To(Equal("replica-b"))
}

// A bind whose request died after issuing logins but before recording
// them is finished by the repeat: the logins are issued anew (the dead
// request's password is replaced) and answered.
func TestBindRepeatTakesOverAnInterruptedBind(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	provisioned(t, e)
	e.createBindingRecord(t, func(br *BindingRecord) {
		br.Operation.ClaimedBy, br.Operation.ClaimedUntil = "replica-dead", e.clock.Now().Add(claimTTL)
	})
	inst, _ := e.instance(t, instanceID)
	dead, err := (&binding.RoleSource{Kube: e.kube}).Issue(e.ctx, inst, bindingID, binding.ReadWrite)
	g.Expect(err).NotTo(HaveOccurred())

	// While the claim lasts the repeat waits for it...
	_, err = e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), false)
	expectFailure(g, err, http.StatusUnprocessableEntity, "ConcurrencyError", "")
	// ...once it has run out, the repeat takes over.
	e.clock.Advance(claimTTL + time.Second)
	res, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), false)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.IsAsync).To(BeFalse())
	g.Expect(res.Credentials).To(HaveKeyWithValue("username", dead.Username))
	g.Expect(res.Credentials).To(HaveKeyWithValue("password", Not(Equal(dead.Password))), "new credentials")
	g.Expect(e.roleSecretPasswords(t)).To(ContainElement(res.Credentials.(map[string]any)["password"]))
	g.Expect(e.roleSecretPasswords(t)).NotTo(ContainElement(dead.Password), "the dead request's password no longer works")

	br := e.bindingRecord(t, bindingID)
	g.Expect(br.Operation.State).To(Equal(provisioners.Succeeded))
	g.Expect(br.Operation.ClaimedBy).To(BeEmpty())
	g.Expect(br.Credentials).To(Equal(res.Credentials))
}

func TestBindRepeatRetriesAFailedBind(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	provisioned(t, e)
	e.createBindingRecord(t, func(br *BindingRecord) {
		br.Operation.State, br.Operation.Description = provisioners.Failed, "the bind failed and what it made could not all be removed yet"
	})

	res, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), false)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.Credentials).To(HaveKey("password"))
	g.Expect(e.bindingRecord(t, bindingID).Operation.State).To(Equal(provisioners.Succeeded))
}

// A bind whose cleanup failed keeps its record, failed, so that unbind and
// repeats find what it made.
func TestBindFailureWhoseCleanupFailsKeepsTheRecord(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	provisioned(t, e)
	e.kube.failOnKind("DatabaseRole", errors.New("connection reset"))
	deleteFails := &failingDeletes{memKube: e.kube, err: errors.New("connection refused")}
	e.b.Engines[catalog.EnginePostgres] = Engine{
		Provisioner: e.pg, Prefix: "pg-",
		Binder: &binding.PostgresBinder{Kube: deleteFails, Logins: &binding.RoleSource{Kube: deleteFails}, CASecret: e.pg.ServerCASecret},
	}

	_, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), false)
	expectFailure(g, err, http.StatusInternalServerError, "InternalError", "removing what was made failed")
	br := e.bindingRecord(t, bindingID)
	g.Expect(br.Operation.State).To(Equal(provisioners.Failed))
	g.Expect(br.Operation.ClaimedBy).To(BeEmpty())
}

// failingDeletes is a Kube whose deletes fail.
type failingDeletes struct {
	*memKube
	err error
}

func (k *failingDeletes) Delete(context.Context, provisioners.Ref) error { return k.err }

// A bind whose request was too slow, so that another replica took the
// bind over meanwhile, leaves what it made to that replica.
func TestBindTakenOverByAnotherReplicaMeanwhile(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	provisioned(t, e)
	e.conflictOn(bindingSecretName(bindingID), 1)

	_, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), false)
	expectFailure(g, err, http.StatusUnprocessableEntity, "ConcurrencyError", "being created by another request")
	g.Expect(e.kube.ofKind("DatabaseRole")).To(HaveLen(2), "not revoked: the other replica answers them")
	g.Expect(e.bindingRecord(t, bindingID).Operation.State).To(Equal(provisioners.InProgress))
}

func TestRotateBinding(t *testing.T) {
	const successor = "3c2b1a09-8f7e-4d6c-9b5a-493827161504"
	t.Run("a successor with the predecessor's parameters and new credentials", func(t *testing.T) {
		g := NewWithT(t)
		e := newTestEnv(t)
		provisioned(t, e)
		pred, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, `{"access": "owner"}`), false)
		g.Expect(err).NotTo(HaveOccurred())

		res, err := e.b.RotateBinding(e.ctx, instanceID, successor, bindingID, false)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(res.Credentials).To(HaveKeyWithValue("access", "owner"))
		g.Expect(res.Credentials).NotTo(HaveKeyWithValue("password", pred.Credentials.(map[string]any)["password"]))
		br := e.bindingRecord(t, successor)
		g.Expect(br.PredecessorID).To(Equal(bindingID))
		g.Expect(br.Parameters).To(Equal(map[string]any{"access": "owner"}))
		g.Expect(br.AppGUID).To(Equal("app-1"))
		g.Expect(e.bindingRecord(t, bindingID).Operation.State).To(Equal(provisioners.Succeeded), "the predecessor keeps working")

		// Repeated, the rotation answers the successor again.
		again, err := e.b.RotateBinding(e.ctx, instanceID, successor, bindingID, false)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(again.AlreadyExists).To(BeTrue())
		g.Expect(again.Credentials).To(Equal(res.Credentials))
	})
	refusals := []struct {
		name    string
		setup   func(t *testing.T, e *testEnv)
		status  int
		code    string
		mention string
	}{
		{"unknown predecessor", provisioned, http.StatusBadRequest, "BadRequest", "is not a binding of instance"},
		{"predecessor of another instance", func(t *testing.T, e *testEnv) {
			provisioned(t, e)
			e.createBindingRecord(t, func(br *BindingRecord) {
				br.InstanceID, br.Operation.State = otherID, provisioners.Succeeded
			})
		}, http.StatusBadRequest, "BadRequest", "is not a binding of instance"},
		{"predecessor not ready", func(t *testing.T, e *testEnv) {
			provisioned(t, e)
			e.createBindingRecord(t, func(br *BindingRecord) {})
		}, http.StatusUnprocessableEntity, "ConcurrencyError", "not ready yet"},
		{"predecessor expired", func(t *testing.T, e *testEnv) {
			provisioned(t, e)
			e.createBindingRecord(t, func(br *BindingRecord) {
				br.Operation.State, br.ExpiresAt = provisioners.Succeeded, e.clock.Now()
			})
		}, http.StatusBadRequest, "BadRequest", "expired at 2026-03-01T12:00:00.0Z"},
		{"a plan that is not binding_rotatable", func(t *testing.T, e *testEnv) {
			_, err := e.b.Provision(e.ctx, instanceID, provisionDetails(catalog.RedisServiceID, catalog.RedisDevLiteID, ""), true)
			if err != nil {
				t.Fatal(err)
			}
			e.createBindingRecord(t, func(br *BindingRecord) {
				br.ServiceID, br.PlanID, br.Operation.State = catalog.RedisServiceID, catalog.RedisDevLiteID, provisioners.Succeeded
			})
		}, http.StatusBadRequest, "BadRequest", "is not binding_rotatable"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			e := newTestEnv(t)
			tc.setup(t, e)
			_, err := e.b.RotateBinding(e.ctx, instanceID, successor, bindingID, false)
			expectFailure(g, err, tc.status, tc.code, tc.mention)
			_, err = e.b.Store.GetBinding(e.ctx, successor)
			g.Expect(err).To(MatchError(ErrNotFound))
		})
	}
}

// Redis credentials (the instance's password) work at once: an
// asynchronous bind answers 201 with them, sparing the platform a poll.
func TestBindAsynchronouslyAnswersAtOnceWhenTheCredentialsWork(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	_, err := e.b.Provision(e.ctx, instanceID, provisionDetails(catalog.RedisServiceID, catalog.RedisDevLiteID, ""), true)
	g.Expect(err).NotTo(HaveOccurred())
	inst, _ := e.instance(t, instanceID)
	auth, err := e.kube.Get(e.ctx, provisioners.Ref{GVK: secretGVKForTest, Namespace: tenantNS, Name: redis.NamesOf(inst).AuthSecret})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(auth).NotTo(BeNil(), "the provision prepared the instance's password")
	password, _ := base64.StdEncoding.DecodeString(auth.Object["data"].(map[string]any)[redis.PasswordKey].(string))
	// The operators are done (the RedisFailover's readiness is the redis
	// engine's tests' business) and cert-manager wrote the certificate.
	rec := e.record(t, instanceID)
	rec.Operation.State = provisioners.Succeeded
	g.Expect(e.b.Store.UpdateInstance(e.ctx, rec)).To(Succeed())
	e.kube.Store(&unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata":   map[string]any{"name": redis.NamesOf(inst).Certificate, "namespace": tenantNS},
		"stringData": map[string]any{"ca.crt": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"},
	}})

	res, err := e.b.Bind(e.ctx, instanceID, bindingID, domain.BindDetails{ServiceID: catalog.RedisServiceID, PlanID: catalog.RedisDevLiteID}, true)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.IsAsync).To(BeFalse())
	g.Expect(res.Credentials).To(HaveKeyWithValue("password", string(password)))
	g.Expect(e.bindingRecord(t, bindingID).Operation.State).To(Equal(provisioners.Succeeded))

	// Deprovision tears the password down with the instance.
	_, err = e.b.Deprovision(e.ctx, instanceID, domain.DeprovisionDetails{}, true)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(e.kube.has(provisioners.RefOf(auth))).To(BeFalse())
	g.Expect(e.kube.has(provisioners.Ref{GVK: secretGVKForTest, Namespace: tenantNS, Name: binding.SecretName(bindingID)})).To(BeFalse())
}

// expiringLogins are DatabaseRole logins that stop working after ttl, as
// OpenBao's do.
type expiringLogins struct {
	*binding.RoleSource
	ttl time.Duration
	now func() time.Time
}

func (s expiringLogins) Issue(ctx context.Context, inst provisioners.Instance, bindingID string, a binding.Access) (binding.Login, error) {
	l, err := s.RoleSource.Issue(ctx, inst, bindingID, a)
	l.Expires = s.now().Add(s.ttl)
	return l, err
}

// Expiring credentials are answered with when they expire and when the
// platform should rotate them (two thirds into their lifetime).
func TestBindOfExpiringCredentials(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	provisioned(t, e)
	e.b.Engines[catalog.EnginePostgres] = Engine{
		Provisioner: e.pg, Prefix: "pg-",
		Binder: &binding.PostgresBinder{Kube: e.kube, Logins: expiringLogins{&binding.RoleSource{Kube: e.kube}, time.Hour, e.clock.Now}, CASecret: e.pg.ServerCASecret},
	}
	want := domain.BindingMetadata{ExpiresAt: "2026-03-01T13:00:00.0Z", RenewBefore: "2026-03-01T12:40:00.0Z"}

	res, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), false)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.Metadata).To(Equal(want))
	again, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), false)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(again.Metadata).To(Equal(want))
	got, err := e.b.GetBinding(e.ctx, instanceID, bindingID, domain.FetchBindingDetails{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.Metadata).To(Equal(want))
}

// A failed bind repeated by a platform that can poll is a new attempt: it
// answers 202, and its poll follows the new logins rather than reporting
// the earlier failure.
func TestBindRepeatRetriesAFailedBindAsynchronously(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	provisioned(t, e)
	failed := e.createBindingRecord(t, func(br *BindingRecord) {
		br.Operation.State, br.Operation.Description = provisioners.Failed, "the bind failed and what it made could not all be removed yet"
	})

	res, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), true)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.IsAsync).To(BeTrue())
	g.Expect(res.OperationData).NotTo(Equal(failed.Operation.ID), "a new operation")
	op, err := e.b.LastBindingOperation(e.ctx, instanceID, bindingID, domain.PollDetails{OperationData: res.OperationData})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(op.State).To(Equal(domain.InProgress))
	g.Expect(op.Description).To(ContainSubstring("waiting for CloudNativePG to create role"))

	e.rolesApplied()
	op, err = e.b.LastBindingOperation(e.ctx, instanceID, bindingID, domain.PollDetails{OperationData: res.OperationData})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(op.State).To(Equal(domain.Succeeded))
}

// Identical binds racing: one issues the credentials, every other either
// waits (422, retry) or gets the same credentials (200).
func TestBindRacingIdenticalRequests(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	provisioned(t, e)
	const racers = 6
	results := make(chan domain.Binding, racers)
	errs := make(chan error, racers)
	var wg sync.WaitGroup
	for range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), false)
			if err != nil {
				errs <- err
				return
			}
			results <- res
		}()
	}
	wg.Wait()
	close(results)
	close(errs)
	for err := range errs {
		expectFailure(g, err, http.StatusUnprocessableEntity, "ConcurrencyError", "retry")
	}
	recorded := e.bindingRecord(t, bindingID)
	created := 0
	for res := range results {
		g.Expect(res.Credentials).To(Equal(recorded.Credentials))
		if !res.AlreadyExists {
			created++
		}
	}
	g.Expect(created).To(Equal(1), "one request issued the credentials")
	g.Expect(e.kube.ofKind("DatabaseRole")).To(HaveLen(2))
	g.Expect(e.roleSecretPasswords(t)).To(ContainElement(recorded.Credentials["password"]))
}
