package broker

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/pivotal-cf/brokerapi/v12/domain"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
)

func pgUpdate(planID, params string) domain.UpdateDetails {
	d := domain.UpdateDetails{ServiceID: catalog.PostgresServiceID, PlanID: planID}
	if params != "" {
		d.RawParameters = []byte(params)
	}
	return d
}

func TestUpdatePlanChange(t *testing.T) {
	tests := []struct {
		name     string
		from, to string
		code     string
		mention  string
	}{
		{"dev-lite to standard grows", catalog.PostgresDevLiteID, catalog.PostgresStandardID, "", ""},
		{"dev-lite to ha grows", catalog.PostgresDevLiteID, catalog.PostgresHAID, "", ""},
		{"standard to dev-lite would lose the standby and backups", catalog.PostgresStandardID, catalog.PostgresDevLiteID, "PlanChangeNotSupported", `plan "standard" cannot change to "dev-lite"`},
		{"dev-lite to shared would move the data", catalog.PostgresDevLiteID, catalog.PostgresSharedID, "PlanChangeNotSupported", `cannot change to "shared"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			e := newTestEnv(t)
			before := e.provisionReady(t, instanceID, tc.from, "")
			spec, err := e.b.Update(e.ctx, instanceID, pgUpdate(tc.to, ""), true)
			rec := e.record(t, instanceID)
			if tc.code != "" {
				expectFailure(g, err, http.StatusUnprocessableEntity, tc.code, tc.mention)
				g.Expect(rec.PlanID).To(Equal(tc.from))
				g.Expect(rec.Operation).To(Equal(before.Operation))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(spec.IsAsync).To(BeTrue())
			g.Expect(spec.OperationData).To(HavePrefix("update-"))
			g.Expect(rec.PlanID).To(Equal(tc.to))
			g.Expect(rec.Operation.Type).To(Equal(OpUpdate))
			g.Expect(rec.Operation.ID).To(Equal(spec.OperationData))
			g.Expect(rec.Operation.PreviousPlanID).To(Equal(tc.from))
			g.Expect(rec.Operation.ClaimedBy).To(Equal(replica))
			_, plan, _ := e.b.Catalog.Find(catalog.PostgresServiceID, tc.to)
			cluster, err := e.kube.Get(e.ctx, refOf("postgresql.cnpg.io/v1", "Cluster", tenantNS, "pg-"+instanceID))
			g.Expect(err).NotTo(HaveOccurred())
			instances, _, _ := unstructured.NestedInt64(cluster.Object, "spec", "instances")
			g.Expect(instances).To(Equal(int64(plan.Postgres.Instances)), "the new plan is applied")
			inst, eng := e.instance(t, instanceID)
			want, err := e.b.desiredOf(inst, eng)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(rec.AppliedHash).To(Equal(want.hash))
			for _, o := range objectRefs(want.objects) {
				g.Expect(rec.Objects).To(ContainElement(o), "the new plan's %s is recorded", o.Kind)
			}
		})
	}
}

// Kubernetes platforms send the whole desired parameters; Cloud Foundry
// sends what changes (null removes a key).
func TestUpdateMergesParametersPerPlatform(t *testing.T) {
	const provisioned = `{"storage_gb": 2, "xa": true}`
	tests := []struct {
		name    string
		context json.RawMessage
		sent    string
		want    map[string]any
	}{
		{"kubernetes replaces", k8sContext(tenantNS), `{"storage_gb": 3}`, map[string]any{"storage_gb": float64(3)}},
		{"cloud foundry merges", cfContext(orgA, spaceA), `{"storage_gb": 3}`, map[string]any{"storage_gb": float64(3), "xa": true}},
		{"cloud foundry removes a key sent as null", cfContext(orgA, spaceA), `{"xa": null}`, map[string]any{"storage_gb": float64(2)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			e := newTestEnv(t)
			d := pgDetails(catalog.PostgresDevLiteID, provisioned)
			d.RawContext = tc.context
			_, err := e.b.Provision(e.ctx, instanceID, d, true)
			g.Expect(err).NotTo(HaveOccurred())
			e.operatorsAct(t, instanceID)
			_, err = e.b.InstanceOperation(e.ctx, instanceID, "")
			g.Expect(err).NotTo(HaveOccurred())

			_, err = e.b.Update(e.ctx, instanceID, pgUpdate("", tc.sent), true)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(e.record(t, instanceID).Parameters).To(Equal(tc.want))
		})
	}
}

func TestUpdateThatChangesNothingAnswers200(t *testing.T) {
	for name, d := range map[string]domain.UpdateDetails{
		"no parameters, same plan":     pgUpdate(catalog.PostgresDevLiteID, ""),
		"no plan, the same parameters": pgUpdate("", `{"storage_gb": 2}`),
		"the catalog's maintenance_info": func() domain.UpdateDetails {
			d := pgUpdate("", "")
			d.MaintenanceInfo = &domain.MaintenanceInfo{Version: "1.0.0"}
			return d
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			e := newTestEnv(t)
			before := e.provisionReady(t, instanceID, catalog.PostgresDevLiteID, `{"storage_gb": 2}`)
			applies := e.kube.applies.Load()
			// Even without accepts_incomplete: nothing is asynchronous.
			spec, err := e.b.Update(e.ctx, instanceID, d, false)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(spec).To(Equal(domain.UpdateServiceSpec{}))
			g.Expect(e.kube.applies.Load()).To(Equal(applies))
			g.Expect(e.record(t, instanceID).Operation).To(Equal(before.Operation))
		})
	}
}

func TestUpdateRefusals(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, e *testEnv)
		details domain.UpdateDetails
		async   bool
		status  int
		code    string
		mention string
	}{
		{"unknown instance", nil, pgUpdate("", `{"storage_gb": 3}`), true, http.StatusNotFound, "NotFound", "does not exist"},
		{"a change without accepts_incomplete", provisioned, pgUpdate("", `{"storage_gb": 3}`), false, http.StatusUnprocessableEntity, "AsyncRequired", "accepts_incomplete"},
		{"another service", provisioned, domain.UpdateDetails{ServiceID: catalog.RedisServiceID}, true, http.StatusBadRequest, "BadRequest", "service_id does not match"},
		{"an unknown plan", provisioned, pgUpdate("no-such-plan", ""), true, http.StatusBadRequest, "BadRequest", `plan_id "no-such-plan"`},
		{"invalid parameters", provisioned, pgUpdate("", `{"storage_gb": "big"}`), true, http.StatusBadRequest, "InvalidParameters", "storage_gb"},
		{"shrinking storage", func(t *testing.T, e *testEnv) {
			e.provisionReady(t, instanceID, catalog.PostgresDevLiteID, `{"storage_gb": 5}`)
		}, pgUpdate("", `{"storage_gb": 2}`), true, http.StatusUnprocessableEntity, "UnsupportedChange", "parameters.storage_gb"},
		{"another major version", provisioned, pgUpdate("", `{"version": "16"}`), true, http.StatusUnprocessableEntity, "UnsupportedChange", "parameters.version"},
		{"old maintenance_info", provisioned, func() domain.UpdateDetails {
			d := pgUpdate("", "")
			d.MaintenanceInfo = &domain.MaintenanceInfo{Version: "0.1.0"}
			return d
		}(), true, http.StatusUnprocessableEntity, "MaintenanceInfoConflict", "0.1.0"},
		{"an operation in progress", func(t *testing.T, e *testEnv) {
			_, err := e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, ""), true)
			if err != nil {
				t.Fatal(err)
			}
		}, pgUpdate("", `{"storage_gb": 3}`), true, http.StatusUnprocessableEntity, "ConcurrencyError", "being provisioned"},
		{"a failed provision", func(t *testing.T, e *testEnv) {
			e.kube.failOnKind("Cluster", errors.New("webhook down"))
			_, _ = e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, ""), true)
			e.kube.failApply = nil
		}, pgUpdate("", `{"storage_gb": 3}`), true, http.StatusUnprocessableEntity, "InstanceNotReady", "failed to provision"},
		{"a failed deprovision", func(t *testing.T, e *testEnv) {
			provisioned(t, e)
			// A finalizer keeps the Cluster past the deprovision's deadline.
			e.kube.finalized = func(ref provisioners.Ref) bool { return ref.GVK.Kind == "Cluster" }
			spec, err := e.b.Deprovision(e.ctx, instanceID, domain.DeprovisionDetails{}, true)
			if err != nil {
				t.Fatal(err)
			}
			e.clock.Advance(3 * time.Hour)
			res, err := e.b.InstanceOperation(e.ctx, instanceID, spec.OperationData)
			if err != nil || res.State != provisioners.Failed {
				t.Fatalf("the deprovision did not fail: %+v %v", res, err)
			}
		}, pgUpdate("", `{"storage_gb": 3}`), true, http.StatusUnprocessableEntity, "InstanceNotReady", "deprovision failed"},
		{"a deprovisioned instance", func(t *testing.T, e *testEnv) {
			provisioned(t, e)
			spec, err := e.b.Deprovision(e.ctx, instanceID, domain.DeprovisionDetails{}, true)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = e.b.InstanceOperation(e.ctx, instanceID, spec.OperationData)
		}, pgUpdate("", `{"storage_gb": 3}`), true, http.StatusNotFound, "NotFound", "does not exist"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			e := newTestEnv(t)
			if tc.setup != nil {
				tc.setup(t, e)
			}
			applies := e.kube.applies.Load()
			_, err := e.b.Update(e.ctx, instanceID, tc.details, tc.async)
			expectFailure(g, err, tc.status, tc.code, tc.mention)
			g.Expect(e.kube.applies.Load()).To(Equal(applies), "a refusal applies nothing")
		})
	}
}

func provisioned(t *testing.T, e *testEnv) {
	e.provisionReady(t, instanceID, catalog.PostgresDevLiteID, "")
}

// An update deletes what the record lists and the new desired state no
// longer renders (a dropped topic), except retained objects.
func TestUpdatePrunesByTheRecord(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	d := provisionDetails(catalog.KafkaServiceID, catalog.KafkaDevLiteID, `{"topics": [{"name": "orders"}, {"name": "audit"}]}`)
	_, err := e.b.Provision(e.ctx, instanceID, d, true)
	g.Expect(err).NotTo(HaveOccurred())
	e.operatorsAct(t, instanceID)
	res, err := e.b.InstanceOperation(e.ctx, instanceID, "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.State).To(Equal(provisioners.Succeeded))

	rec := e.record(t, instanceID)
	var audit ObjectRef
	for _, o := range rec.Objects {
		if o.Kind == "KafkaTopic" && strings.HasSuffix(o.Name, ".audit") {
			audit = o
		}
	}
	g.Expect(audit.Name).NotTo(BeEmpty())
	// Objects an earlier broker applied that nothing renders now: one
	// plain, one retained.
	stale := ObjectRef{APIVersion: "v1", Kind: "ConfigMap", Namespace: tenantNS, Name: "kafka-" + instanceID + "-old"}
	retained := ObjectRef{APIVersion: "v1", Kind: "ConfigMap", Namespace: tenantNS, Name: "kafka-" + instanceID + "-kept", Retain: true}
	for _, o := range []ObjectRef{stale, retained} {
		e.kube.Store(&unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": o.Name, "namespace": tenantNS},
		}})
	}
	rec.Objects = append(rec.Objects, stale, retained)
	g.Expect(e.b.Store.UpdateInstance(e.ctx, rec)).To(Succeed())

	update := domain.UpdateDetails{ServiceID: catalog.KafkaServiceID, RawParameters: []byte(`{"topics": [{"name": "orders"}]}`)}
	_, err = e.b.Update(e.ctx, instanceID, update, true)
	expectFailure(g, err, http.StatusUnprocessableEntity, "UnsupportedChange", "allow_topic_deletion")
	g.Expect(e.kube.has(audit.Ref())).To(BeTrue(), "a refused update deletes nothing")

	update.RawParameters = []byte(`{"topics": [{"name": "orders"}], "allow_topic_deletion": true}`)
	spec, err := e.b.Update(e.ctx, instanceID, update, true)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(spec.IsAsync).To(BeTrue())
	g.Expect(e.kube.has(audit.Ref())).To(BeFalse(), "the dropped topic is deleted")
	g.Expect(e.kube.has(stale.Ref())).To(BeFalse(), "what the record lists and nothing renders is deleted")
	g.Expect(e.kube.has(retained.Ref())).To(BeTrue(), "retained objects stay")
	for _, o := range e.record(t, instanceID).Objects {
		if o.Kind == "KafkaTopic" && strings.HasSuffix(o.Name, ".orders") {
			g.Expect(e.kube.has(o.Ref())).To(BeTrue(), "the kept topic stays")
		}
	}
}

// A failed update is rolled back: the old objects applied again and the
// record's plan and parameters as they were.
func TestUpdateFailureRollsBack(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	e.provisionReady(t, instanceID, catalog.PostgresDevLiteID, `{"storage_gb": 2}`)
	// The new plan's Pooler is refused; the Cluster goes through.
	e.kube.failOnKind("Pooler", errors.New("admission webhook denied the Pooler"))

	_, err := e.b.Update(e.ctx, instanceID, pgUpdate(catalog.PostgresStandardID, `{"storage_gb": 5}`), true)
	expectFailure(g, err, http.StatusInternalServerError, "InternalError", "rolled back")
	rec := e.record(t, instanceID)
	g.Expect(rec.PlanID).To(Equal(catalog.PostgresDevLiteID))
	g.Expect(rec.Parameters).To(Equal(map[string]any{"storage_gb": float64(2)}))
	g.Expect(rec.Operation.Type).To(Equal(OpUpdate))
	g.Expect(rec.Operation.State).To(Equal(provisioners.Failed))
	g.Expect(rec.Operation.ClaimedBy).To(BeEmpty())
	g.Expect(rec.AppliedHash).To(BeEmpty())
	cluster, err := e.kube.Get(e.ctx, refOf("postgresql.cnpg.io/v1", "Cluster", tenantNS, "pg-"+instanceID))
	g.Expect(err).NotTo(HaveOccurred())
	instances, _, _ := unstructured.NestedInt64(cluster.Object, "spec", "instances")
	g.Expect(instances).To(Equal(int64(1)), "the dev-lite Cluster is applied again")
	g.Expect(e.secretRecord(t, instanceSecretName(instanceID)).Labels).To(HaveKeyWithValue(labelInProgress, "false"))
}

// An update in progress is confirmed by the operators, then succeeds.
func TestUpdateSucceedsThroughPolls(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	e.provisionReady(t, instanceID, catalog.PostgresDevLiteID, "")
	e.clock.Advance(10 * time.Second)
	spec, err := e.b.Update(e.ctx, instanceID, pgUpdate("", `{"storage_gb": 4}`), true)
	g.Expect(err).NotTo(HaveOccurred())

	// Healthy, but CloudNativePG was not seen acting on the update yet.
	res, err := e.b.InstanceOperation(e.ctx, instanceID, spec.OperationData)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.State).To(Equal(provisioners.InProgress))
	g.Expect(res.Description).To(ContainSubstring("waiting for CloudNativePG to act on the update"))

	e.operatorsAct(t, instanceID) // Ready again after the update started
	res, err = e.b.InstanceOperation(e.ctx, instanceID, spec.OperationData)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.State).To(Equal(provisioners.Succeeded))
	got, err := e.b.GetInstance(e.ctx, instanceID, domain.FetchInstanceDetails{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.Parameters).To(Equal(map[string]any{"storage_gb": float64(4)}))
}

// An update whose record another replica wrote since it was read applies
// nothing: the platform retries.
func TestUpdateOfARecordChangedMeanwhile(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	before := e.provisionReady(t, instanceID, catalog.PostgresDevLiteID, "")
	applies := e.kube.applies.Load()
	e.conflictOn(instanceSecretName(instanceID), 1)

	_, err := e.b.Update(e.ctx, instanceID, pgUpdate("", `{"storage_gb": 4}`), true)
	expectFailure(g, err, http.StatusUnprocessableEntity, "ConcurrencyError", "changed while updating")
	g.Expect(e.kube.applies.Load()).To(Equal(applies))
	g.Expect(e.record(t, instanceID).Parameters).To(Equal(before.Parameters))
}

// An update racing another change of the tenant's instances (both checked
// against its limits at once) puts the record back as it was.
func TestUpdateWithdrawnWhenTheTenantGuardRaced(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	before := e.provisionReady(t, instanceID, catalog.PostgresDevLiteID, "")
	e.b.Limits = TenancyLimits{Default: TenantLimits{StorageGB: 100}}
	applies := e.kube.applies.Load()
	e.conflictOn(tenantGuardName(tenantNS), 1)

	_, err := e.b.Update(e.ctx, instanceID, pgUpdate(catalog.PostgresStandardID, ""), true)
	expectFailure(g, err, http.StatusUnprocessableEntity, "ConcurrencyError", "at the same moment")
	g.Expect(e.kube.applies.Load()).To(Equal(applies), "nothing applied")
	after := e.record(t, instanceID)
	g.Expect(after.PlanID).To(Equal(before.PlanID))
	g.Expect(after.Operation).To(Equal(before.Operation))
	g.Expect(after.Objects).To(Equal(before.Objects))
	g.Expect(after.AppliedHash).To(Equal(before.AppliedHash))
}

// A failed maintenance update leaves the record's maintenance version as
// it was, so that repeating the update tries it again rather than
// answering "nothing changes".
func TestFailedMaintenanceUpdateIsRepeatable(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	rec := e.provisionReady(t, instanceID, catalog.PostgresDevLiteID, "")
	rec.MaintenanceInfo = "0.9.0" // provisioned by an older broker
	g.Expect(e.b.Store.UpdateInstance(e.ctx, rec)).To(Succeed())
	upgrade := pgUpdate("", "")
	upgrade.MaintenanceInfo = &domain.MaintenanceInfo{Version: e.b.Catalog.MaintenanceVersion}

	e.kube.failOnKind("Cluster", errors.New("the API server is unavailable"))
	_, err := e.b.Update(e.ctx, instanceID, upgrade, true)
	expectFailure(g, err, http.StatusInternalServerError, "InternalError", "rolled back")
	g.Expect(e.record(t, instanceID).MaintenanceInfo).To(Equal("0.9.0"))

	e.kube.failApply = nil
	spec, err := e.b.Update(e.ctx, instanceID, upgrade, true)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(spec.IsAsync).To(BeTrue(), "the upgrade is tried again")
	g.Expect(e.record(t, instanceID).MaintenanceInfo).To(Equal(e.b.Catalog.MaintenanceVersion))
}

// An update that failed after it was applied (CloudNativePG never
// confirmed it before the deadline) keeps its plan and parameters in the
// record; repeating it (update_repeatable) must try again, not answer
// "nothing changes".
func TestUpdateFailedAtItsDeadlineIsRepeatable(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	e.provisionReady(t, instanceID, catalog.PostgresDevLiteID, "")
	e.clock.Advance(10 * time.Second)
	grow := pgUpdate("", `{"storage_gb": 4}`)
	spec, err := e.b.Update(e.ctx, instanceID, grow, true)
	g.Expect(err).NotTo(HaveOccurred())
	e.clock.Advance(1801 * time.Second)
	// The Cluster goes unhealthy on the update and stays so.
	e.kube.Lock()
	cluster := e.kube.Objs[refOf("postgresql.cnpg.io/v1", "Cluster", tenantNS, "pg-"+instanceID)]
	cluster.Object["status"].(map[string]any)["conditions"] = []any{map[string]any{"type": "Ready", "status": "False"}}
	e.kube.Unlock()
	res, err := e.b.InstanceOperation(e.ctx, instanceID, spec.OperationData)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.State).To(Equal(provisioners.Failed))
	g.Expect(res.UpdateRepeatable).To(HaveValue(BeTrue()))

	again, err := e.b.Update(e.ctx, instanceID, grow, true)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(again.IsAsync).To(BeTrue(), "the repeat is a new attempt")
	g.Expect(again.OperationData).NotTo(Equal(spec.OperationData))
	g.Expect(e.record(t, instanceID).Operation.State).To(Equal(provisioners.InProgress))
}
