package broker

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	. "github.com/onsi/gomega"
	"github.com/pivotal-cf/brokerapi/v12/domain"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
)

func TestProvisionRecordsEveryObjectBeforeApplying(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	// What the record says when the instance's objects are applied: the
	// record must name every one of them already.
	var recordedAtApply []ObjectRef
	e.kube.failApply = func(objs []*unstructured.Unstructured) error {
		for _, o := range objs {
			if o.GetKind() == "Cluster" {
				recordedAtApply = e.record(t, instanceID).Objects
			}
		}
		return nil
	}

	spec, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, `{"storage_gb": 2}`), true)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(spec.IsAsync).To(BeTrue())
	g.Expect(spec.OperationData).To(HavePrefix("provision-"))

	rec := e.record(t, instanceID)
	g.Expect(rec.Operation.ID).To(Equal(spec.OperationData))
	g.Expect(rec.Operation.Type).To(Equal(OpProvision))
	g.Expect(rec.Operation.State).To(Equal(provisioners.InProgress))
	g.Expect(rec.Operation.Deadline).To(Equal(e.clock.Now().Add(1800 * time.Second)))
	g.Expect(rec.Namespace).To(Equal(tenantNS))
	g.Expect(rec.Name).To(Equal("pg-" + instanceID))
	g.Expect(rec.Parameters).To(Equal(map[string]any{"storage_gb": float64(2)}))
	// The request's claim: other replicas leave the work to it meanwhile.
	g.Expect(rec.Operation.ClaimedBy).To(Equal(replica))
	g.Expect(rec.Operation.ClaimedUntil).To(Equal(e.clock.Now().Add(claimTTL)))

	inst, eng := e.instance(t, instanceID)
	want, err := e.b.desiredOf(inst, eng)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(rec.AppliedHash).To(Equal(want.hash))
	g.Expect(rec.Objects).To(Equal(objectRefs(want.objects)))
	g.Expect(recordedAtApply).To(Equal(rec.Objects), "the record named the objects before they were applied")
	kinds := []string{}
	for _, o := range rec.Objects {
		kinds = append(kinds, o.Kind)
		g.Expect(e.kube.has(o.Ref())).To(BeTrue(), "%s %s applied", o.Kind, o.Name)
	}
	g.Expect(kinds).To(ConsistOf("Certificate", "Cluster", "Database", "NetworkPolicy", "PodMonitor"))
	for _, ref := range provisioners.BaselineRefs(tenantNS) {
		if ref.GVK.Kind == "NetworkPolicy" {
			g.Expect(e.kube.has(ref)).To(BeTrue(), "the tenant baseline is applied with the instance")
		}
	}
	// The reconcile loop finds it by its label.
	g.Expect(e.secretRecord(t, instanceSecretName(instanceID)).Labels).To(HaveKeyWithValue(labelInProgress, "true"))
}

func TestProvisionRefusals(t *testing.T) {
	tests := []struct {
		name    string
		details domain.ProvisionDetails
		async   bool
		status  int
		code    string
		mention string
	}{
		{"synchronous request", pgDetails(catalog.PostgresDevLiteID, ""), false, http.StatusUnprocessableEntity, "AsyncRequired", "accepts_incomplete=true"},
		{"unknown plan", pgDetails("no-such-plan", ""), true, http.StatusBadRequest, "BadRequest", `plan_id "no-such-plan" is not a plan of service "postgresql"`},
		{"unknown service", provisionDetails("no-such-service", catalog.PostgresDevLiteID, ""), true, http.StatusBadRequest, "BadRequest", "is not in the catalog"},
		{"storage over the plan's maximum", pgDetails(catalog.PostgresDevLiteID, `{"storage_gb": 999}`), true, http.StatusBadRequest, "InvalidParameters", "storage_gb"},
		{"unknown parameter", pgDetails(catalog.PostgresDevLiteID, `{"colour": "blue"}`), true, http.StatusBadRequest, "InvalidParameters", "colour"},
		{"parameters not an object", pgDetails(catalog.PostgresDevLiteID, `[1]`), true, http.StatusBadRequest, "BadRequest", "parameters must be a JSON object"},
		{"cpu over the plan's ceiling (checked by the builder)", pgDetails(catalog.PostgresDevLiteID, `{"resources": {"cpu": "8"}}`), true, http.StatusBadRequest, "InvalidParameters", "parameters.resources.cpu"},
		{"old maintenance_info", func() domain.ProvisionDetails {
			d := pgDetails(catalog.PostgresDevLiteID, "")
			d.MaintenanceInfo = &domain.MaintenanceInfo{Version: "0.9.0"}
			return d
		}(), true, http.StatusUnprocessableEntity, "MaintenanceInfoConflict", "0.9.0"},
		{"namespace that does not exist", func() domain.ProvisionDetails {
			d := pgDetails(catalog.PostgresDevLiteID, "")
			d.RawContext = k8sContext("team-missing")
			return d
		}(), true, http.StatusBadRequest, "BadRequest", `"team-missing" does not exist`},
		{"the broker's own namespace", func() domain.ProvisionDetails {
			d := pgDetails(catalog.PostgresDevLiteID, "")
			d.RawContext = k8sContext(recordsNS)
			return d
		}(), true, http.StatusBadRequest, "NamespaceNotAllowed", "broker's own"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			e := newTestEnv(t)
			_, err := e.b.Provision(e.ctx, instanceID, tc.details, tc.async)
			expectFailure(g, err, tc.status, tc.code, tc.mention)
			// A refusal changes nothing.
			_, err = e.b.Store.GetInstance(e.ctx, instanceID)
			g.Expect(err).To(MatchError(ErrNotFound))
			g.Expect(e.kube.applies.Load()).To(BeZero())
		})
	}
}

func TestProvisionRepeated(t *testing.T) {
	const params = `{"storage_gb": 5}`
	t.Run("the same request in progress answers its operation again", func(t *testing.T) {
		g := NewWithT(t)
		e := newTestEnv(t)
		first, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, params), true)
		g.Expect(err).NotTo(HaveOccurred())
		applies := e.kube.applies.Load()
		again, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, params), true)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(again).To(Equal(first))
		g.Expect(e.kube.applies.Load()).To(Equal(applies), "a repeat applies nothing")
	})
	t.Run("a different request conflicts", func(t *testing.T) {
		for name, d := range map[string]domain.ProvisionDetails{
			"other parameters": pgDetails(catalog.PostgresDevLiteID, `{"storage_gb": 6}`),
			"other plan":       pgDetails(catalog.PostgresStandardID, params),
			"other namespace": func() domain.ProvisionDetails {
				d := pgDetails(catalog.PostgresDevLiteID, params)
				d.RawContext = k8sContext("team-b")
				return d
			}(),
		} {
			t.Run(name, func(t *testing.T) {
				g := NewWithT(t)
				e := newTestEnv(t)
				_, err := e.client.CoreV1().Namespaces().Create(e.ctx, namespace("team-b", nil), metav1.CreateOptions{})
				g.Expect(err).NotTo(HaveOccurred())
				_, err = e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, params), true)
				g.Expect(err).NotTo(HaveOccurred())
				_, err = e.b.Provision(e.ctx, instanceID, d, true)
				expectFailure(g, err, http.StatusConflict, "Conflict", "already exists")
				g.Expect(e.record(t, instanceID).Parameters).To(Equal(map[string]any{"storage_gb": float64(5)}))
			})
		}
	})
	t.Run("the same request once done answers 200", func(t *testing.T) {
		g := NewWithT(t)
		e := newTestEnv(t)
		e.provisionReady(t, instanceID, catalog.PostgresDevLiteID, params)
		spec, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, params), true)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(spec.AlreadyExists).To(BeTrue())
		g.Expect(spec.IsAsync).To(BeFalse())
	})
	t.Run("the same request while an update is in progress is refused for now", func(t *testing.T) {
		g := NewWithT(t)
		e := newTestEnv(t)
		e.provisionReady(t, instanceID, catalog.PostgresDevLiteID, params)
		_, err := e.b.Update(e.ctx, instanceID, domain.UpdateDetails{ServiceID: catalog.PostgresServiceID, RawParameters: []byte(`{"storage_gb": 6}`)}, true)
		g.Expect(err).NotTo(HaveOccurred())
		_, err = e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, `{"storage_gb": 6}`), true)
		expectFailure(g, err, http.StatusUnprocessableEntity, "ConcurrencyError", "being updated")
	})
}

func TestProvisionFailedApplyIsRecordedAndRetried(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	e.kube.failOnKind("Cluster", errors.New("admission webhook denied the request"))

	_, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, ""), true)
	expectFailure(g, err, http.StatusInternalServerError, "InternalError", "could not create the instance's objects")

	rec := e.record(t, instanceID)
	g.Expect(rec.Operation.State).To(Equal(provisioners.Failed))
	g.Expect(rec.Operation.Description).To(ContainSubstring("admission webhook denied the request"))
	g.Expect(rec.Operation.ClaimedBy).To(BeEmpty())
	g.Expect(rec.AppliedHash).To(BeEmpty(), "not applied as recorded: the retry applies again")
	g.Expect(rec.Objects).NotTo(BeEmpty(), "the objects stay named for deprovision")
	res, err := e.b.InstanceOperation(e.ctx, instanceID, rec.Operation.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.State).To(Equal(provisioners.Failed))
	g.Expect(res.InstanceUsable).To(BeNil())

	// The platform repeats the provision: it is tried again.
	e.kube.failApply = nil
	spec, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, ""), true)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(spec.IsAsync).To(BeTrue())
	g.Expect(spec.OperationData).NotTo(Equal(rec.Operation.ID))
	rec = e.record(t, instanceID)
	g.Expect(rec.Operation.State).To(Equal(provisioners.InProgress))
	g.Expect(rec.Operation.ID).To(Equal(spec.OperationData))
	g.Expect(rec.AppliedHash).NotTo(BeEmpty())
	g.Expect(e.kube.has(refOf("postgresql.cnpg.io/v1", "Cluster", tenantNS, "pg-"+instanceID))).To(BeTrue())
}

func TestProvisionOntoObjectsBeingDeletedIsAConcurrencyError(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	e.kube.failOnKind("Cluster", &provisioners.TerminatingError{Kind: "Cluster", Namespace: tenantNS, Name: "pg-" + instanceID})

	_, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, ""), true)
	expectFailure(g, err, http.StatusUnprocessableEntity, "ConcurrencyError", "still being deleted")
	g.Expect(e.record(t, instanceID).Operation.State).To(Equal(provisioners.Failed))
}

func TestProvisionAgainAfterDeprovision(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	first := e.provisionReady(t, instanceID, catalog.PostgresDevLiteID, "")
	dep, err := e.b.Deprovision(e.ctx, instanceID, domain.DeprovisionDetails{}, true)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = e.b.InstanceOperation(e.ctx, instanceID, dep.OperationData)
	g.Expect(err).To(MatchError(gone))
	g.Expect(e.record(t, instanceID).Deleted).To(BeTrue())

	// Another plan, even: the id is free again.
	spec, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresStandardID, ""), true)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(spec.IsAsync).To(BeTrue())
	rec := e.record(t, instanceID)
	g.Expect(rec.Deleted).To(BeFalse())
	g.Expect(rec.PlanID).To(Equal(catalog.PostgresStandardID))
	g.Expect(rec.Operation.Type).To(Equal(OpProvision))
	g.Expect(rec.Operation.ID).NotTo(Equal(first.Operation.ID))
	g.Expect(e.kube.has(refOf("postgresql.cnpg.io/v1", "Pooler", tenantNS, "pg-"+instanceID+"-pooler"))).To(BeTrue())
}

func TestProvisionDashboardURL(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	e.b.DashboardURL = template.Must(template.New("d").Parse("https://grafana.example/d/pg?ns={{.Namespace}}&name={{.Name}}&id={{.InstanceID}}"))
	spec, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, ""), true)
	g.Expect(err).NotTo(HaveOccurred())
	want := "https://grafana.example/d/pg?ns=team-a&name=pg-" + instanceID + "&id=" + instanceID
	g.Expect(spec.DashboardURL).To(Equal(want))
	g.Expect(e.record(t, instanceID).DashboardURL).To(Equal(want))
	g.Expect(strings.Count(want, instanceID)).To(Equal(2))
}

func TestProvisionWithinTenantLimits(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	e.b.Limits = TenancyLimits{Default: TenantLimits{InstancesPerService: map[string]int{"postgresql": 1}}}
	_, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, ""), true)
	g.Expect(err).NotTo(HaveOccurred())
	// A repeat of the first is not counted against itself.
	_, err = e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, ""), true)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = e.b.Provision(e.ctx, otherID, pgDetails(catalog.PostgresDevLiteID, ""), true)
	expectFailure(g, err, http.StatusUnprocessableEntity, "TenantLimitExceeded", "instancesPerService.postgresql")
	_, err = e.b.Store.GetInstance(e.ctx, otherID)
	g.Expect(err).To(MatchError(ErrNotFound))
}

// Two provisions of one tenant checked against its limits at the same
// moment: the one whose guard bump fails takes its record back and checks
// again, counting the other.
func TestProvisionChecksTheTenantAgainWhenAnotherChangeRaced(t *testing.T) {
	limits := TenancyLimits{Default: TenantLimits{InstancesPerService: map[string]int{"postgresql": 5}}}
	t.Run("checked again and provisioned", func(t *testing.T) {
		g := NewWithT(t)
		e := newTestEnv(t)
		e.b.Limits = limits
		e.conflictOn(tenantGuardName(tenantNS), 2)
		spec, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, ""), true)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(spec.IsAsync).To(BeTrue())
		g.Expect(e.record(t, instanceID).Operation.ID).To(Equal(spec.OperationData))
		guard := e.secretRecord(t, tenantGuardName(tenantNS))
		g.Expect(guard.Annotations).To(HaveKeyWithValue(annotationChecks, "1"), "committed once")
	})
	t.Run("too many races", func(t *testing.T) {
		g := NewWithT(t)
		e := newTestEnv(t)
		e.b.Limits = limits
		e.conflictOn(tenantGuardName(tenantNS), guardRetries)
		_, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, ""), true)
		expectFailure(g, err, http.StatusUnprocessableEntity, "ConcurrencyError", "too many changes of this tenant's instances")
		_, err = e.b.Store.GetInstance(e.ctx, instanceID)
		g.Expect(err).To(MatchError(ErrNotFound), "the record is taken back")
		g.Expect(e.kube.applies.Load()).To(BeZero())
	})
}

// Identical provisions racing (a platform's retries, or two replicas):
// one creates the record, every other answers its operation.
func TestProvisionRacingIdenticalRequests(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	const racers = 6
	ops := make(chan string, racers)
	errs := make(chan error, racers)
	var wg sync.WaitGroup
	for range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			spec, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, ""), true)
			if err != nil {
				errs <- err
				return
			}
			ops <- spec.OperationData
		}()
	}
	wg.Wait()
	close(ops)
	close(errs)
	for err := range errs {
		g.Expect(err).NotTo(HaveOccurred())
	}
	rec := e.record(t, instanceID)
	n := 0
	for op := range ops {
		g.Expect(op).To(Equal(rec.Operation.ID))
		n++
	}
	g.Expect(n).To(Equal(racers))
	g.Expect(e.kube.has(refOf("postgresql.cnpg.io/v1", "Cluster", tenantNS, "pg-"+instanceID))).To(BeTrue())
}
