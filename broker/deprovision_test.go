package broker

import (
	"errors"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/pivotal-cf/brokerapi/v12/domain"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/strata-dev/strata/binding"
	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
)

// Deprovision deletes what the record says was applied, not what today's
// rendering gives, and keeps what is retained for the backups.
func TestDeprovisionDeletesWhatTheRecordLists(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	rec := e.provisionReady(t, instanceID, catalog.PostgresStandardID, "")

	var podMonitor, objectStore ObjectRef
	var kept []ObjectRef
	for _, o := range rec.Objects {
		switch o.Kind {
		case "PodMonitor":
			podMonitor = o
			continue
		case "ObjectStore":
			objectStore = o
		}
		kept = append(kept, o)
	}
	g.Expect(podMonitor.Name).NotTo(BeEmpty())
	g.Expect(objectStore.Retain).To(BeTrue(), "the backups' ObjectStore is retained")
	// An object an older broker version applied and today's rendering no
	// longer has, and a rendered one the record (made by hand here) does
	// not list.
	legacy := ObjectRef{APIVersion: "v1", Kind: "ConfigMap", Namespace: tenantNS, Name: "pg-" + instanceID + "-legacy"}
	e.kube.Store(&unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": legacy.Name, "namespace": tenantNS},
	}})
	rec.Objects = append(kept, legacy)
	g.Expect(e.b.Store.UpdateInstance(e.ctx, rec)).To(Succeed())

	spec, err := e.b.Deprovision(e.ctx, instanceID, domain.DeprovisionDetails{}, true)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(spec.IsAsync).To(BeTrue())
	g.Expect(spec.OperationData).To(HavePrefix("deprovision-"))

	g.Expect(e.kube.has(legacy.Ref())).To(BeFalse(), "listed in the record: deleted")
	g.Expect(e.kube.has(podMonitor.Ref())).To(BeTrue(), "not listed in the record: left")
	g.Expect(e.kube.has(objectStore.Ref())).To(BeTrue(), "retained: left")
	for _, o := range kept {
		if !o.Retain {
			g.Expect(e.kube.has(o.Ref())).To(BeFalse(), "%s %s deleted", o.Kind, o.Name)
		}
	}
	// Dependents before what they depend on: the Cluster goes last.
	var deletedKinds []string
	for _, ref := range e.kube.Deleted {
		deletedKinds = append(deletedKinds, ref.GVK.Kind)
	}
	g.Expect(deletedKinds).To(ContainElements("Pooler", "Cluster"))
	g.Expect(indexOf(deletedKinds, "Pooler")).To(BeNumerically("<", indexOf(deletedKinds, "Cluster")))

	// The record stays in progress until a poll (or the reconcile loop)
	// sees everything gone.
	g.Expect(e.record(t, instanceID).Operation.State).To(Equal(provisioners.InProgress))
	res, err := e.b.InstanceOperation(e.ctx, instanceID, spec.OperationData)
	g.Expect(err).To(MatchError(gone))
	g.Expect(res.State).To(BeEmpty())
	rec = e.record(t, instanceID)
	g.Expect(rec.Deleted).To(BeTrue())
	g.Expect(rec.Operation.State).To(Equal(provisioners.Succeeded))
	g.Expect(rec.Operation.Description).To(ContainSubstring("backups are kept for their retention period"))
	// The tenant's last instance is gone, and its baseline with it.
	for _, ref := range provisioners.BaselineRefs(tenantNS) {
		g.Expect(e.kube.has(ref)).To(BeFalse(), "baseline %s removed", ref.GVK.Kind)
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func TestDeprovisionKeepsTheBaselineForTheTenantsOtherInstances(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	e.provisionReady(t, instanceID, catalog.PostgresDevLiteID, "")
	e.provisionReady(t, otherID, catalog.PostgresDevLiteID, "")
	baselineNP := provisioners.Ref{GVK: provisioners.NetworkPolicyGVK, Namespace: tenantNS, Name: provisioners.BaselineName}
	g.Expect(e.kube.has(baselineNP)).To(BeTrue())

	spec, err := e.b.Deprovision(e.ctx, instanceID, domain.DeprovisionDetails{}, true)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = e.b.InstanceOperation(e.ctx, instanceID, spec.OperationData)
	g.Expect(err).To(MatchError(gone))
	g.Expect(e.kube.has(baselineNP)).To(BeTrue(), "another instance lives in the tenant")
	g.Expect(e.kube.has(refOf("postgresql.cnpg.io/v1", "Cluster", tenantNS, "pg-"+otherID))).To(BeTrue())

	spec, err = e.b.Deprovision(e.ctx, otherID, domain.DeprovisionDetails{}, true)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = e.b.InstanceOperation(e.ctx, otherID, spec.OperationData)
	g.Expect(err).To(MatchError(gone))
	g.Expect(e.kube.has(baselineNP)).To(BeFalse())
}

func TestDeprovisionRefusalsAndRepeats(t *testing.T) {
	t.Run("unknown instance is gone", func(t *testing.T) {
		e := newTestEnv(t)
		_, err := e.b.Deprovision(e.ctx, instanceID, domain.DeprovisionDetails{}, true)
		NewWithT(t).Expect(err).To(MatchError(gone))
	})
	t.Run("a deprovisioned instance is gone", func(t *testing.T) {
		g := NewWithT(t)
		e := newTestEnv(t)
		e.provisionReady(t, instanceID, catalog.PostgresDevLiteID, "")
		spec, err := e.b.Deprovision(e.ctx, instanceID, domain.DeprovisionDetails{}, true)
		g.Expect(err).NotTo(HaveOccurred())
		_, err = e.b.InstanceOperation(e.ctx, instanceID, spec.OperationData)
		g.Expect(err).To(MatchError(gone))
		_, err = e.b.Deprovision(e.ctx, instanceID, domain.DeprovisionDetails{}, true)
		g.Expect(err).To(MatchError(gone))
	})
	t.Run("synchronous request", func(t *testing.T) {
		g := NewWithT(t)
		e := newTestEnv(t)
		e.provisionReady(t, instanceID, catalog.PostgresDevLiteID, "")
		deletes := len(e.kube.Deleted)
		_, err := e.b.Deprovision(e.ctx, instanceID, domain.DeprovisionDetails{}, false)
		expectFailure(g, err, http.StatusUnprocessableEntity, "AsyncRequired", "accepts_incomplete")
		g.Expect(e.kube.Deleted).To(HaveLen(deletes), "nothing deleted")
		g.Expect(e.record(t, instanceID).Operation.Type).To(Equal(OpProvision))
	})
	t.Run("a repeat in progress answers the same operation", func(t *testing.T) {
		g := NewWithT(t)
		e := newTestEnv(t)
		e.provisionReady(t, instanceID, catalog.PostgresDevLiteID, "")
		first, err := e.b.Deprovision(e.ctx, instanceID, domain.DeprovisionDetails{}, true)
		g.Expect(err).NotTo(HaveOccurred())
		again, err := e.b.Deprovision(e.ctx, instanceID, domain.DeprovisionDetails{}, true)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(again).To(Equal(first))
	})
	t.Run("a provision in progress is cut short", func(t *testing.T) {
		g := NewWithT(t)
		e := newTestEnv(t)
		_, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, ""), true)
		g.Expect(err).NotTo(HaveOccurred())
		spec, err := e.b.Deprovision(e.ctx, instanceID, domain.DeprovisionDetails{}, true)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(spec.OperationData).To(HavePrefix("deprovision-"))
		g.Expect(e.kube.has(refOf("postgresql.cnpg.io/v1", "Cluster", tenantNS, "pg-"+instanceID))).To(BeFalse())
	})
}

func TestDeprovisionRevokesTheBindings(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	e.provisionReady(t, instanceID, catalog.PostgresDevLiteID, "")
	_, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), false)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(e.kube.ofKind("DatabaseRole")).To(HaveLen(2), "the application's login and the migrations' owner login")

	_, err = e.b.Deprovision(e.ctx, instanceID, domain.DeprovisionDetails{}, true)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = e.b.Store.GetBinding(e.ctx, bindingID)
	g.Expect(err).To(MatchError(ErrNotFound))
	g.Expect(e.kube.ofKind("DatabaseRole")).To(BeEmpty())
	g.Expect(e.kube.has(provisioners.Ref{GVK: secretGVKForTest, Namespace: tenantNS, Name: binding.SecretName(bindingID)})).To(BeFalse())
}

// A step that cannot finish leaves the deprovision in progress, saying
// what stands in the way, and the next poll tries again.
func TestDeprovisionRetriedByPolls(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	e.provisionReady(t, instanceID, catalog.PostgresDevLiteID, "")
	_, err := e.b.Bind(e.ctx, instanceID, bindingID, pgBindDetails(catalog.PostgresDevLiteID, ""), false)
	g.Expect(err).NotTo(HaveOccurred())
	// The bindings' records cannot be listed for now.
	listFails := errors.New("etcd leader changed")
	e.client.PrependReactor("list", "secrets", func(action k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, listFails
	})
	spec, err := e.b.Deprovision(e.ctx, instanceID, domain.DeprovisionDetails{}, true)
	g.Expect(err).NotTo(HaveOccurred())
	res, err := e.b.InstanceOperation(e.ctx, instanceID, spec.OperationData)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.State).To(Equal(provisioners.InProgress))
	g.Expect(res.Description).To(ContainSubstring("revoking the instance's bindings"))
	g.Expect(e.kube.has(refOf("postgresql.cnpg.io/v1", "Cluster", tenantNS, "pg-"+instanceID))).To(BeTrue(), "nothing deleted before the bindings are revoked")

	e.client.ReactionChain = e.client.ReactionChain[1:]
	_, err = e.b.InstanceOperation(e.ctx, instanceID, spec.OperationData)
	g.Expect(err).To(MatchError(gone))
	g.Expect(e.kube.ofKind("DatabaseRole")).To(BeEmpty())
}

// Records from before the broker listed the objects it applied name none:
// their objects are found by rendering, as then.
func TestDeprovisionOfARecordWithoutObjects(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	rec := e.provisionReady(t, instanceID, catalog.PostgresDevLiteID, "")
	objects := rec.Objects
	rec.Objects = nil
	g.Expect(e.b.Store.UpdateInstance(e.ctx, rec)).To(Succeed())

	spec, err := e.b.Deprovision(e.ctx, instanceID, domain.DeprovisionDetails{}, true)
	g.Expect(err).NotTo(HaveOccurred())
	for _, o := range objects {
		g.Expect(e.kube.has(o.Ref())).To(BeFalse(), "%s %s deleted", o.Kind, o.Name)
	}
	_, err = e.b.InstanceOperation(e.ctx, instanceID, spec.OperationData)
	g.Expect(err).To(MatchError(gone))
}

// A deprovision waits for the operators to remove what it deleted (a
// finalizer keeps the Cluster until its pods are gone); past the deadline
// it fails, the instance no longer usable, and a repeated DELETE starts
// again.
func TestDeprovisionWaitsForTheOperatorsUntilItsDeadline(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	e.provisionReady(t, instanceID, catalog.PostgresDevLiteID, "")
	e.kube.finalized = func(ref provisioners.Ref) bool { return ref.GVK.Kind == "Cluster" }

	spec, err := e.b.Deprovision(e.ctx, instanceID, domain.DeprovisionDetails{}, true)
	g.Expect(err).NotTo(HaveOccurred())
	res, err := e.b.InstanceOperation(e.ctx, instanceID, spec.OperationData)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.State).To(Equal(provisioners.InProgress))
	g.Expect(res.Description).To(Equal("waiting for the operators to remove the instance's resources"))
	g.Expect(e.record(t, instanceID).Deleted).To(BeFalse())
	g.Expect(e.kube.has(provisioners.Ref{GVK: provisioners.NetworkPolicyGVK, Namespace: tenantNS, Name: provisioners.BaselineName})).To(BeTrue(), "the baseline stays while the instance is there")

	e.clock.Advance(1801 * time.Second)
	res, err = e.b.InstanceOperation(e.ctx, instanceID, spec.OperationData)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.State).To(Equal(provisioners.Failed))
	g.Expect(res.Description).To(ContainSubstring("did not finish within 30m0s"))
	g.Expect(res.InstanceUsable).To(HaveValue(BeFalse()))

	// The finalizer's work is done; the platform deletes again.
	e.kube.finalized = nil
	again, err := e.b.Deprovision(e.ctx, instanceID, domain.DeprovisionDetails{}, true)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(again.OperationData).NotTo(Equal(spec.OperationData))
	_, err = e.b.InstanceOperation(e.ctx, instanceID, again.OperationData)
	g.Expect(err).To(MatchError(gone))
}
