package broker

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/pivotal-cf/brokerapi/v12/domain"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
)

const (
	restoredID = "3d2c1b0a-9f8e-4d7c-b6a5-948372615041"
	otherNS    = "team-b"
)

// restoreSourceReady provisions a standard source and plays the plugin
// and CloudNativePG: a recovery window for its serverName from
// first (the oldest base backup) and archiving working.
func (e *testEnv) restoreSourceReady(t *testing.T, id string, first time.Time) *InstanceRecord {
	t.Helper()
	rec := e.provisionReady(t, id, catalog.PostgresStandardID, `{"replicas": 1}`)
	e.kube.Lock()
	defer e.kube.Unlock()
	store := e.kube.Objs[refOf("barmancloud.cnpg.io/v1", "ObjectStore", rec.Namespace, rec.Name+"-backup")]
	store.Object["status"] = map[string]any{"serverRecoveryWindow": map[string]any{
		rec.Name: map[string]any{
			"firstRecoverabilityPoint": first.Format(time.RFC3339),
			"lastSuccessfulBackupTime": first.Add(time.Minute).Format(time.RFC3339),
		},
	}}
	cluster := e.kube.Objs[refOf("postgresql.cnpg.io/v1", "Cluster", rec.Namespace, rec.Name)]
	conds, _, _ := unstructured.NestedSlice(cluster.Object, "status", "conditions")
	conds = append(conds, map[string]any{"type": "ContinuousArchiving", "status": "True"})
	g := NewWithT(t)
	g.Expect(unstructured.SetNestedSlice(cluster.Object, conds, "status", "conditions")).To(Succeed())
	return rec
}

func restoreParams(from string, to any) string {
	return fmt.Sprintf(`{"replicas": 1, "restore": {"from_instance": %q, "to_time": %q}}`, from, to)
}

func TestRestoreProvisionsFromTheSourcesBackups(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	now := e.clock.Now()
	src := e.restoreSourceReady(t, instanceID, now.Add(-2*time.Hour))

	// GET instance shows the window: from the oldest backup to
	// archive_timeout (5 minutes) behind now.
	got, err := e.b.GetInstance(e.ctx, instanceID, domain.FetchInstanceDetails{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.Metadata.Attributes).To(HaveKeyWithValue("restorable_window", map[string]any{
		"first_restorable_time": "2026-03-01T10:00:00Z",
		"last_restorable_time":  "2026-03-01T11:55:00Z",
	}))
	g.Expect(got.Parameters).To(Equal(map[string]any{"replicas": float64(1)}), "the window is no parameter")

	target := now.Add(-30 * time.Minute)
	_, err = e.b.Provision(e.ctx, restoredID, pgDetails(catalog.PostgresStandardID, restoreParams(instanceID, target.Format(time.RFC3339))), true)
	g.Expect(err).NotTo(HaveOccurred())
	rec := e.record(t, restoredID)
	g.Expect(rec.Restore).To(Equal(&provisioners.RestoreSource{InstanceID: instanceID, Name: src.Name, Namespace: tenantNS, TargetTime: target}))

	cluster := e.kube.Objs[refOf("postgresql.cnpg.io/v1", "Cluster", tenantNS, rec.Name)]
	g.Expect(cluster).NotTo(BeNil())
	g.Expect(cluster.Object["spec"]).To(HaveKeyWithValue("bootstrap", map[string]any{"recovery": map[string]any{
		"source": "origin", "database": "app", "owner": "strata_owner",
		"recoveryTarget": map[string]any{"targetTime": "2026-03-01T11:30:00Z"},
	}}))
	ext, _, _ := unstructured.NestedSlice(cluster.Object, "spec", "externalClusters")
	g.Expect(ext).To(ConsistOf(map[string]any{"name": "origin", "plugin": map[string]any{
		"name": "barman-cloud.cloudnative-pg.io", "parameters": map[string]any{"barmanObjectName": src.Name + "-backup", "serverName": src.Name},
	}}))
	plugins, _, _ := unstructured.NestedSlice(cluster.Object, "spec", "plugins")
	g.Expect(plugins[0]).To(HaveKeyWithValue("parameters", map[string]any{"barmanObjectName": rec.Name + "-backup", "serverName": rec.Name}),
		"the restored instance archives under its own serverName")

	// Ready, it says what it was restored from.
	e.operatorsAct(t, restoredID)
	res, err := e.b.InstanceOperation(e.ctx, restoredID, "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.State).To(Equal(provisioners.Succeeded))
	got, err = e.b.GetInstance(e.ctx, restoredID, domain.FetchInstanceDetails{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.Metadata.Attributes).To(HaveKeyWithValue("restored_from", map[string]any{"instance_id": instanceID, "to_time": "2026-03-01T11:30:00Z"}))
	g.Expect(got.Metadata.Attributes).To(HaveKeyWithValue("restorable_window", map[string]any{"first_restorable_time": nil, "last_restorable_time": nil}),
		"no backup of its own yet")

	// The same request again is the same provision, though time moved.
	e.clock.Advance(3 * time.Hour)
	spec, err := e.b.Provision(e.ctx, restoredID, pgDetails(catalog.PostgresStandardID, restoreParams(instanceID, target.Format(time.RFC3339))), true)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(spec.AlreadyExists).To(BeTrue())

	// An update cannot restore again; leaving the parameter out is fine.
	_, err = e.b.Update(e.ctx, restoredID, pgUpdate("", restoreParams(instanceID, "latest")), true)
	expectFailure(g, err, http.StatusUnprocessableEntity, "", "parameters.restore: an instance is restored once")
}

func TestRestoreIsRefusedSayingWhatToChange(t *testing.T) {
	e := newTestEnv(t)
	_, err := e.client.CoreV1().Namespaces().Create(e.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: otherNS}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := e.clock.Now()
	e.restoreSourceReady(t, instanceID, now.Add(-2*time.Hour))
	e.provisionReady(t, otherID, catalog.PostgresDevLiteID, "")
	at := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }

	for _, tc := range []struct {
		name, plan, params string
		namespace          string
		status             int
		code, mention      string
	}{
		{name: "before the window", params: restoreParams(instanceID, at(-3*time.Hour)),
			status: http.StatusUnprocessableEntity, code: "RestoreOutsideWindow",
			mention: "parameters.restore.to_time: 2026-03-01T09:00:00Z is outside the restorable window of instance " + instanceID + ", 2026-03-01T10:00:00Z to 2026-03-01T11:55:00Z; choose a time inside it"},
		{name: "not yet archived", params: restoreParams(instanceID, at(-time.Minute)),
			status: http.StatusUnprocessableEntity, code: "RestoreOutsideWindow", mention: "outside the restorable window"},
		{name: "in the future", params: restoreParams(instanceID, at(time.Hour)),
			status: http.StatusUnprocessableEntity, code: "RestoreOutsideWindow", mention: "outside the restorable window"},
		{name: "unknown source", params: restoreParams("no-such-instance", "latest"),
			status: http.StatusBadRequest, code: "InvalidParameters", mention: "parameters.restore.from_instance: this broker knows no instance no-such-instance"},
		{name: "source without backups", params: restoreParams(otherID, "latest"),
			status: http.StatusBadRequest, code: "InvalidParameters", mention: "is on plan dev-lite, which keeps no backups"},
		{name: "target plan without backups", plan: catalog.PostgresDevLiteID, params: `{"restore": {"from_instance": "` + instanceID + `", "to_time": "latest"}}`,
			status: http.StatusBadRequest, code: "InvalidParameters", mention: "parameters.restore: plan dev-lite keeps no backups; restore into a plan with backups"},
		{name: "not a time", params: restoreParams(instanceID, "yesterday"),
			status: http.StatusBadRequest, code: "InvalidParameters", mention: "parameters.restore.to_time: does not match the pattern"},
		{name: "impossible date", params: restoreParams(instanceID, "2026-02-30T10:00:00Z"),
			status: http.StatusBadRequest, code: "InvalidParameters", mention: "parameters.restore.to_time: not an RFC 3339 time"},
		{name: "no time", params: `{"restore": {"from_instance": "` + instanceID + `"}}`,
			status: http.StatusBadRequest, code: "InvalidParameters", mention: "parameters.restore: missing property 'to_time'"},
		{name: "another namespace", namespace: otherNS, params: restoreParams(instanceID, "latest"),
			status: http.StatusBadRequest, code: "InvalidParameters", mention: "a restore reads only backups of its own namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			plan := tc.plan
			if plan == "" {
				plan = catalog.PostgresStandardID
			}
			e.expectProvisionRefused(g, restoredID, plan, tc.params, tc.namespace, tc.status, tc.code, tc.mention)
		})
	}
}

func TestRestoreFromADeprovisionedSourceWhileInRetention(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	now := e.clock.Now()
	src := e.restoreSourceReady(t, instanceID, now.Add(-2*time.Hour))
	dep, err := e.b.Deprovision(e.ctx, instanceID, domain.DeprovisionDetails{}, true)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = e.b.InstanceOperation(e.ctx, instanceID, dep.OperationData)
	g.Expect(err).To(MatchError(gone))
	g.Expect(e.kube.has(refOf("barmancloud.cnpg.io/v1", "ObjectStore", tenantNS, src.Name+"-backup"))).To(BeTrue(), "deprovision keeps the ObjectStore")

	// A day later: the window ends 5 minutes before the deprovision.
	e.clock.Advance(24 * time.Hour)
	_, err = e.b.Provision(e.ctx, restoredID, pgDetails(catalog.PostgresStandardID, restoreParams(instanceID, now.Format(time.RFC3339))), true)
	expectFailure(g, err, http.StatusUnprocessableEntity, "RestoreOutsideWindow", "2026-03-01T10:00:00Z to 2026-03-01T11:55:00Z")
	_, err = e.b.Provision(e.ctx, restoredID, pgDetails(catalog.PostgresStandardID, restoreParams(instanceID, now.Add(-time.Hour).Format(time.RFC3339))), true)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(e.record(t, restoredID).Restore.Name).To(Equal(src.Name))

	// Past the standard plan's 7-day retention nothing is left.
	e.clock.Advance(7 * 24 * time.Hour)
	_, err = e.b.Provision(e.ctx, otherID, pgDetails(catalog.PostgresStandardID, restoreParams(instanceID, "latest")), true)
	expectFailure(g, err, http.StatusUnprocessableEntity, "RestoreOutsideWindow", "was deprovisioned at 2026-03-01T12:00:00Z and none of its backups is within their retention")
}

func TestRestoreWindowMetrics(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	now := e.clock.Now()
	e.restoreSourceReady(t, instanceID, now.Add(-2*time.Hour))
	e.provisionReady(t, otherID, catalog.PostgresDevLiteID, "")

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newRestoreCollector(e.b))
	families, err := reg.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	series := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			series[f.GetName()+"{"+labels["instance_id"]+","+labels["plan"]+","+labels["namespace"]+"}"] = gaugeValue(m)
		}
	}
	g.Expect(series).To(Equal(map[string]float64{
		"strata_restorable_window_first_timestamp_seconds{" + instanceID + ",standard," + tenantNS + "}": float64(now.Add(-2 * time.Hour).Unix()),
		"strata_restorable_window_last_timestamp_seconds{" + instanceID + ",standard," + tenantNS + "}":  float64(now.Add(-5 * time.Minute).Unix()),
	}), "only the instance with backups has a window")
}
