package broker

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/pivotal-cf/brokerapi/v12/domain"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
)

// An instance's drill settings: the plan's, under its parameter drills,
// the interval held to the plan's bounds and replaced by the override.
func TestInstanceDrill(t *testing.T) {
	plan := &catalog.DrillPlan{Interval: 24 * time.Hour, MinInterval: 6 * time.Hour, MaxInterval: 168 * time.Hour}
	for _, tc := range []struct {
		name     string
		params   string
		override time.Duration
		want     InstanceDrill
	}{
		{name: "no parameters: the plan's", params: `{}`, want: InstanceDrill{Enabled: true, Interval: 24 * time.Hour}},
		{name: "other parameters only", params: `{"replicas": 1}`, want: InstanceDrill{Enabled: true, Interval: 24 * time.Hour}},
		{name: "opted out", params: `{"drills": {"enabled": false}}`, want: InstanceDrill{Interval: 24 * time.Hour}},
		{name: "own interval", params: `{"drills": {"interval_hours": 12}}`, want: InstanceDrill{Enabled: true, Interval: 12 * time.Hour}},
		{name: "opted in explicitly, weekly", params: `{"drills": {"enabled": true, "interval_hours": 168}}`, want: InstanceDrill{Enabled: true, Interval: 168 * time.Hour}},
		{name: "below bounds narrowed since: the minimum", params: `{"drills": {"interval_hours": 1}}`, want: InstanceDrill{Enabled: true, Interval: 6 * time.Hour}},
		{name: "above bounds narrowed since: the maximum", params: `{"drills": {"interval_hours": 500}}`, want: InstanceDrill{Enabled: true, Interval: 168 * time.Hour}},
		{name: "the override replaces every interval", params: `{"drills": {"interval_hours": 12}}`, override: 2 * time.Minute, want: InstanceDrill{Enabled: true, Interval: 2 * time.Minute}},
		{name: "the override does not opt an instance back in", params: `{"drills": {"enabled": false}}`, override: 2 * time.Minute, want: InstanceDrill{Interval: 2 * time.Minute}},
		{name: "undecodable: the plan's", params: `{"drills": {"interval_hours": "24h"}}`, want: InstanceDrill{Enabled: true, Interval: 24 * time.Hour}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			var params map[string]any
			g.Expect(json.Unmarshal([]byte(tc.params), &params)).To(Succeed())
			g.Expect(instanceDrill(plan, params, tc.override)).To(Equal(tc.want))
		})
	}
}

// The schedule picks each instance's own settings: an instance that opted
// out is no candidate, one with its own interval is due at it.
func TestDrillSchedulePicksInstanceSettings(t *testing.T) {
	done := Operation{Type: OpProvision, State: provisioners.Succeeded}
	withParams := func(id, params string) *InstanceRecord {
		r := drillRecord(id, catalog.PostgresStandardID, done, false)
		if params != "" {
			if err := json.Unmarshal([]byte(params), &r.Parameters); err != nil {
				t.Fatal(err)
			}
		}
		return r
	}
	instanceOf := func(r *InstanceRecord) (provisioners.Instance, error) {
		inst, err := catalogInstanceOf(r)
		inst.Params = r.Parameters
		return inst, err
	}
	recs := []*InstanceRecord{
		withParams("default", ""),
		withParams("off", `{"drills": {"enabled": false}}`),
		withParams("twice-daily", `{"drills": {"interval_hours": 12}}`),
		withParams("weekly", `{"drills": {"enabled": true, "interval_hours": 168}}`),
	}
	g := NewWithT(t)
	cands := drillCandidates(recs, instanceOf, 0)
	got := map[string]time.Duration{}
	for _, c := range cands {
		got[c.rec.ID] = c.interval
	}
	g.Expect(got).To(Equal(map[string]time.Duration{"default": 24 * time.Hour, "twice-daily": 12 * time.Hour, "weekly": 168 * time.Hour}))

	// All last drilled 13 hours ago: only the twice-daily one is due.
	last := map[string]DrillResult{}
	for _, id := range []string{"default", "off", "twice-daily", "weekly"} {
		last[id] = DrillResult{InstanceID: id, Started: drillEpoch.Add(-13 * time.Hour)}
	}
	var due []string
	for _, c := range dueDrills(drillEpoch, cands, last) {
		due = append(due, c.rec.ID)
	}
	g.Expect(due).To(Equal([]string{"twice-daily"}))

	// The opted-out instance's result is stale (its series and alerts
	// go); a record being deprovisioned or gone is save's to drop.
	recs = append(recs, drillRecord("going", catalog.PostgresStandardID, Operation{Type: OpDeprovision, State: provisioners.InProgress}, false))
	last["going"] = DrillResult{InstanceID: "going"}
	last["unknown"] = DrillResult{InstanceID: "unknown"}
	g.Expect(staleDrillResults(recs, cands, last)).To(Equal([]string{"off"}))
}

// The drills parameter on the wire: provisioned and updated, refused out
// of bounds naming the field, shown by GET instance with the last drill;
// opting out drops the instance's result at the next schedule pass.
func TestDrillsParameterThroughOSB(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	e.b.Drills = &Drills{B: e.b, Opts: DrillOptions{Namespace: "strata-drills", Timeout: time.Hour}, Core: e.client}
	e.restoreSourceReady(t, instanceID, e.clock.Now().Add(-2*time.Hour))

	drills := func() map[string]any {
		t.Helper()
		got, err := e.b.GetInstance(e.ctx, instanceID, domain.FetchInstanceDetails{})
		g.Expect(err).NotTo(HaveOccurred())
		d, _ := got.Metadata.Attributes["drills"].(map[string]any)
		return d
	}
	g.Expect(drills()).To(Equal(map[string]any{"enabled": true, "interval_seconds": int64(86400), "last_drill": nil}))

	started := e.clock.Now().Add(-time.Hour)
	g.Expect(e.b.Drills.save(e.ctx, DrillResult{
		InstanceID: instanceID, Started: started, Finished: started.Add(4 * time.Minute), Succeeded: true,
		RPOSeconds: 20.5, RTOSeconds: 160, LastSuccess: started.Add(4 * time.Minute), Drills: 1, Target: started,
	})).To(Succeed())
	g.Expect(drills()).To(HaveKeyWithValue("last_drill", map[string]any{
		"started": started.UTC().Format(time.RFC3339), "finished": started.Add(4 * time.Minute).UTC().Format(time.RFC3339),
		"succeeded": true, "last_success": started.Add(4 * time.Minute).UTC().Format(time.RFC3339),
		"drills": 1, "failures": 0, "rpo_seconds": 20.5, "rto_seconds": float64(160),
		"point_in_time": false, "target": started.UTC().Format(time.RFC3339),
	}))

	// Out of the platform's bounds: 400 naming the field, nothing applied.
	applies := e.kube.applies.Load()
	_, err := e.b.Update(e.ctx, instanceID, pgUpdate("", `{"replicas": 1, "drills": {"interval_hours": 2}}`), true)
	expectFailure(g, err, http.StatusBadRequest, "InvalidParameters", "parameters.drills.interval_hours")
	g.Expect(e.kube.applies.Load()).To(Equal(applies))

	// Another interval, then opting out: both are ordinary updates.
	update := func(params string) {
		t.Helper()
		e.clock.Advance(10 * time.Second)
		spec, err := e.b.Update(e.ctx, instanceID, pgUpdate("", params), true)
		g.Expect(err).NotTo(HaveOccurred())
		e.operatorsAct(t, instanceID)
		res, err := e.b.InstanceOperation(e.ctx, instanceID, spec.OperationData)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(res.State).To(Equal(provisioners.Succeeded), res.Description)
	}
	update(`{"replicas": 1, "drills": {"interval_hours": 12}}`)
	g.Expect(drills()).To(HaveKeyWithValue("interval_seconds", int64(12*3600)))

	update(`{"replicas": 1, "drills": {"enabled": false}}`)
	g.Expect(drills()).To(Equal(map[string]any{"enabled": false, "interval_seconds": int64(86400), "last_drill": nil}))
	e.b.Drills.RunDue(e.ctx)
	res, err := e.b.Drills.Results(e.ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res).NotTo(HaveKey(instanceID), "an instance that opted out keeps no result (no series, no Missing alert)")

	// Opted in again on a broker without drills: not drilled, and it says so.
	e.b.Drills = nil
	update(`{"replicas": 1, "drills": {"enabled": true}}`)
	g.Expect(drills()).To(Equal(map[string]any{"enabled": false, "interval_seconds": int64(86400), "last_drill": nil}))
}
