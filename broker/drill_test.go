package broker

import (
	"context"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
)

var drillEpoch = time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)

func drillRecord(id, planID string, op Operation, deleted bool) *InstanceRecord {
	return &InstanceRecord{ID: id, ServiceID: catalog.PostgresServiceID, PlanID: planID, Namespace: "team-a", Name: "pg-" + id, Operation: op, Deleted: deleted}
}

func catalogInstanceOf(r *InstanceRecord) (provisioners.Instance, error) {
	svc, plan, err := catalog.Default().Find(r.ServiceID, r.PlanID)
	if err != nil {
		return provisioners.Instance{}, err
	}
	return provisioners.Instance{ID: r.ID, Name: r.Name, Namespace: r.Namespace, Service: svc, Plan: plan}, nil
}

// Only live, provisioned instances of plans with a drill are drilled, at
// the plan's interval unless the configuration overrides it.
func TestDrillCandidates(t *testing.T) {
	done := Operation{Type: OpProvision, State: provisioners.Succeeded}
	recs := []*InstanceRecord{
		drillRecord("std", catalog.PostgresStandardID, done, false),
		drillRecord("ha", catalog.PostgresHAID, Operation{Type: OpUpdate, State: provisioners.InProgress}, false),
		drillRecord("dev", catalog.PostgresDevLiteID, done, false),
		drillRecord("shared", catalog.PostgresSharedID, done, false),
		drillRecord("provisioning", catalog.PostgresStandardID, Operation{Type: OpProvision, State: provisioners.InProgress}, false),
		drillRecord("failed", catalog.PostgresStandardID, Operation{Type: OpProvision, State: provisioners.Failed}, false),
		drillRecord("going", catalog.PostgresStandardID, Operation{Type: OpDeprovision, State: provisioners.InProgress}, false),
		drillRecord("gone", catalog.PostgresStandardID, done, true),
	}
	ids := func(cs []drillCandidate) map[string]time.Duration {
		out := map[string]time.Duration{}
		for _, c := range cs {
			out[c.rec.ID] = c.interval
		}
		return out
	}
	g := NewWithT(t)
	g.Expect(ids(drillCandidates(recs, catalogInstanceOf, 0))).To(Equal(map[string]time.Duration{"std": 24 * time.Hour, "ha": 24 * time.Hour}))
	g.Expect(ids(drillCandidates(recs, catalogInstanceOf, 2*time.Minute))).To(Equal(map[string]time.Duration{"std": 2 * time.Minute, "ha": 2 * time.Minute}))
}

func TestDueDrills(t *testing.T) {
	cands := func(ids ...string) []drillCandidate {
		var out []drillCandidate
		for _, id := range ids {
			out = append(out, drillCandidate{rec: &InstanceRecord{ID: id}, interval: time.Hour})
		}
		return out
	}
	started := func(ago time.Duration) DrillResult { return DrillResult{Started: drillEpoch.Add(-ago)} }
	for _, tc := range []struct {
		name  string
		cands []drillCandidate
		last  map[string]DrillResult
		want  []string
	}{
		{name: "nothing to drill", cands: nil},
		{name: "never drilled is due at once", cands: cands("a"), want: []string{"a"}},
		{name: "never drilled goes first, by id", cands: cands("c", "b", "a"), last: map[string]DrillResult{"a": started(2 * time.Hour)}, want: []string{"b", "c", "a"}},
		{name: "not due yet", cands: cands("a"), last: map[string]DrillResult{"a": started(59 * time.Minute)}},
		{name: "due exactly at the interval", cands: cands("a"), last: map[string]DrillResult{"a": started(time.Hour)}, want: []string{"a"}},
		{name: "the most overdue first", cands: cands("a", "b", "c"),
			last: map[string]DrillResult{"a": started(90 * time.Minute), "b": started(3 * time.Hour), "c": started(time.Minute)}, want: []string{"b", "a"}},
		{name: "a failed drill waits its interval too", cands: cands("a"),
			last: map[string]DrillResult{"a": {Started: drillEpoch.Add(-10 * time.Minute), Failures: 3}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			var got []string
			for _, c := range dueDrills(drillEpoch, tc.cands, tc.last) {
				got = append(got, c.rec.ID)
			}
			g.Expect(got).To(Equal(tc.want))
		})
	}
}

// Until an instance has been restored once, no window means its first
// backup is still to come; afterwards, losing it fails the drill.
func TestAwaitingFirstBackup(t *testing.T) {
	g := NewWithT(t)
	g.Expect(awaitingFirstBackup(DrillResult{})).To(BeTrue())
	g.Expect(awaitingFirstBackup(DrillResult{Failures: 2, Started: drillEpoch})).To(BeTrue())
	g.Expect(awaitingFirstBackup(DrillResult{LastSuccess: drillEpoch})).To(BeFalse())
}

func TestDrillsConfig(t *testing.T) {
	off := false
	for _, tc := range []struct {
		name    string
		yaml    string
		want    DrillOptions
		wantErr string
	}{
		{name: "on by default, daily per plan", yaml: "", want: DrillOptions{Namespace: "strata-drills", Timeout: time.Hour, MinInterval: 6 * time.Hour, MaxInterval: 168 * time.Hour}},
		{name: "test interval", yaml: "drills: {namespace: drills, intervalSeconds: 120, timeoutSeconds: 600}",
			want: DrillOptions{Namespace: "drills", Interval: 2 * time.Minute, Timeout: 10 * time.Minute, MinInterval: 6 * time.Hour, MaxInterval: 168 * time.Hour}},
		{name: "off: no namespace, the parameter's bounds still", yaml: "drills: {enabled: false}", want: DrillOptions{MinInterval: 6 * time.Hour, MaxInterval: 168 * time.Hour}},
		{name: "the platform's bounds", yaml: "drills: {minIntervalHours: 24, maxIntervalHours: 72}",
			want: DrillOptions{Namespace: "strata-drills", Timeout: time.Hour, MinInterval: 24 * time.Hour, MaxInterval: 72 * time.Hour}},
		{name: "bounds crossed", yaml: "drills: {minIntervalHours: 48, maxIntervalHours: 24}", wantErr: "drills.minIntervalHours (48 h) is above drills.maxIntervalHours (24 h)"},
		{name: "negative bound", yaml: "drills: {maxIntervalHours: -1}", wantErr: "must not be negative"},
		{name: "negative", yaml: "drills: {intervalSeconds: -1}", wantErr: "must not be negative"},
		{name: "unknown key", yaml: "drills: {every: 1}", wantErr: "every"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			c, err := ParseConfig([]byte(tc.yaml))
			if tc.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tc.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(c.Options("strata-system", zap.NewNop()).Drills).To(Equal(tc.want))
		})
	}
	g := NewWithT(t)
	o, err := DrillsConfig{Enabled: &off, Namespace: "x"}.Options()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(o.Namespace).To(BeEmpty(), "disabled drills run nowhere")
}

// The drill namespace is never a tenant's.
func TestDrillNamespaceIsReserved(t *testing.T) {
	g := NewWithT(t)
	r := reservedNamespaces(Options{Namespace: "strata-system", Drills: DrillOptions{Namespace: "strata-drills"}})
	g.Expect(r).To(HaveKey("strata-drills"))
}

func TestDrillMetrics(t *testing.T) {
	g := NewWithT(t)
	results := decodeDrillResults(map[string]string{
		"a": `{"instanceId":"a","service":"postgresql","plan":"standard","namespace":"team-a","started":"2026-12-06T03:00:00Z","finished":"2026-12-06T03:05:00Z",
		       "succeeded":true,"rpoSeconds":21,"rtoSeconds":240,"lastSuccess":"2026-12-06T03:05:00Z","lastSuccessRpoSeconds":21,"lastSuccessRtoSeconds":240,
		       "failures":1,"drills":4,"intervalSeconds":86400,"rpoObjectiveSeconds":600,"rtoObjectiveSeconds":1800}`,
		// Never succeeded: no success, RPO or RTO series.
		"b": `{"instanceId":"b","service":"postgresql","plan":"ha","namespace":"team-b","finished":"2026-12-06T04:00:00Z","failures":2,"drills":2,
		       "failedStep":"ready","error":"the restored Cluster is not ready","intervalSeconds":86400,"rpoObjectiveSeconds":600,"rtoObjectiveSeconds":3600}`,
		// Unreadable entries are skipped, the others kept.
		"c": `{`,
	})
	g.Expect(results).To(HaveLen(2))
	c := newDrillCollector(nil, "strata-system", zap.NewNop())
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectorFunc(func(ch chan<- prometheus.Metric) {
		for _, m := range drillMetrics(c, results) {
			ch <- m
		}
	}, c))
	want := `
# HELP strata_drill_failures_total Restore drills that failed.
# TYPE strata_drill_failures_total counter
strata_drill_failures_total{instance_id="a",namespace="team-a",plan="standard",service="postgresql"} 1
strata_drill_failures_total{instance_id="b",namespace="team-b",plan="ha",service="postgresql"} 2
# HELP strata_drill_last_result 1 when the last restore drill succeeded, 0 when it failed.
# TYPE strata_drill_last_result gauge
strata_drill_last_result{instance_id="a",namespace="team-a",plan="standard",service="postgresql"} 1
strata_drill_last_result{instance_id="b",namespace="team-b",plan="ha",service="postgresql"} 0
# HELP strata_drill_last_rpo_seconds RPO measured by the last successful restore drill: when it chose its target, now minus the newest restorable point.
# TYPE strata_drill_last_rpo_seconds gauge
strata_drill_last_rpo_seconds{instance_id="a",namespace="team-a",plan="standard",service="postgresql"} 21
# HELP strata_drill_last_success_timestamp_seconds When the last successful restore drill finished (Unix seconds).
# TYPE strata_drill_last_success_timestamp_seconds gauge
strata_drill_last_success_timestamp_seconds{instance_id="a",namespace="team-a",plan="standard",service="postgresql"} 1.7965263e+09
`
	g.Expect(testutil.GatherAndCompare(reg, strings.NewReader(want),
		"strata_drill_failures_total", "strata_drill_last_result", "strata_drill_last_rpo_seconds", "strata_drill_last_success_timestamp_seconds")).To(Succeed())
	n, err := testutil.GatherAndCount(reg)
	g.Expect(err).NotTo(HaveOccurred())
	// a: 10 series; b: 7 (no success, RPO, RTO).
	g.Expect(n).To(Equal(17))
}

// collectorFunc registers a function as a collector of c's descriptions.
type collectorFn struct {
	collect func(chan<- prometheus.Metric)
	c       *drillCollector
}

func collectorFunc(f func(chan<- prometheus.Metric), c *drillCollector) prometheus.Collector {
	return collectorFn{collect: f, c: c}
}

func (f collectorFn) Describe(ch chan<- *prometheus.Desc) { f.c.Describe(ch) }
func (f collectorFn) Collect(ch chan<- prometheus.Metric) { f.collect(ch) }

// Results are kept per instance in one ConfigMap of the broker's
// namespace; an instance deprovisioned meanwhile loses its entry.
func TestDrillResultsKeptPerLiveInstance(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	client := fake.NewClientset()
	b := &Broker{Store: NewStore(client, "strata-system"), Log: zap.NewNop()}
	d := &Drills{B: b, Core: client}
	done := Operation{Type: OpProvision, State: provisioners.Succeeded}
	for _, r := range []*InstanceRecord{
		drillRecord("a", catalog.PostgresStandardID, done, false),
		drillRecord("b", catalog.PostgresStandardID, done, false),
	} {
		g.Expect(b.Store.CreateInstance(ctx, r)).To(Succeed())
	}
	g.Expect(d.save(ctx, DrillResult{InstanceID: "a", Succeeded: true, Drills: 1})).To(Succeed())
	g.Expect(d.save(ctx, DrillResult{InstanceID: "b", Failures: 1, Drills: 1})).To(Succeed())
	got, err := d.Results(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(HaveLen(2))
	g.Expect(got["a"].Succeeded).To(BeTrue())
	g.Expect(got["b"].Failures).To(Equal(1))

	// b is deprovisioned; a drill of it that ends now is not kept, and
	// the next save drops its entry.
	rec, err := b.Store.GetInstance(ctx, "b")
	g.Expect(err).NotTo(HaveOccurred())
	rec.Operation = Operation{Type: OpDeprovision, State: provisioners.InProgress}
	g.Expect(b.Store.UpdateInstance(ctx, rec)).To(Succeed())
	g.Expect(d.save(ctx, DrillResult{InstanceID: "b", Failures: 2, Drills: 2})).To(Succeed())
	got, err = d.Results(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(HaveKey("a"))
	g.Expect(got).NotTo(HaveKey("b"))
}

func TestDrillTarget(t *testing.T) {
	first := drillEpoch.Add(-24 * time.Hour)
	marked := drillEpoch
	for _, tc := range []struct {
		name   string
		n      int
		first  time.Time
		oldest time.Time
		u      float64
		want   time.Time
		latest bool
	}{
		{name: "the first drill restores the newest point", n: 1, first: first, oldest: first, u: 0.5, latest: true},
		{name: "odd drills too", n: 7, first: first, oldest: first, u: 0.5, latest: true},
		{name: "the second, a random point: the window's start", n: 2, first: first, oldest: first.Add(-time.Hour), u: 0, want: first},
		{name: "the middle", n: 2, first: first, oldest: first.Add(-time.Hour), u: 0.5, want: first.Add(12*time.Hour - time.Second)},
		{name: "never after the marker less the margin", n: 4, first: first, oldest: first, u: 0.99999999999, want: marked.Add(-markerMargin - time.Second)},
		{name: "never before the drill login existed (the oldest marker)", n: 2, first: first, oldest: marked.Add(-time.Hour), u: 0, want: marked.Add(-time.Hour + markerMargin)},
		{name: "a window too short for a point before the marker", n: 2, first: marked.Add(-time.Second), oldest: first, u: 0.5, latest: true},
		{name: "only this drill's marker: the newest point", n: 2, first: first, oldest: marked, u: 0.5, latest: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got := drillTarget(tc.n, tc.first, tc.oldest, marked, tc.u)
			if tc.latest {
				g.Expect(got.IsZero()).To(BeTrue())
				return
			}
			g.Expect(got).To(Equal(tc.want))
			g.Expect(got.Before(marked.Add(-markerMargin))).To(BeTrue())
			g.Expect(got.Before(tc.first)).To(BeFalse())
			g.Expect(got.Before(tc.oldest.Add(markerMargin))).To(BeFalse())
		})
	}
}

func TestOldestMarker(t *testing.T) {
	g := NewWithT(t)
	g.Expect(oldestMarker(nil, drillEpoch)).To(Equal(drillEpoch))
	g.Expect(oldestMarker(map[string]time.Time{"a": drillEpoch.Add(-time.Hour), "b": drillEpoch.Add(-2 * time.Hour)}, drillEpoch)).To(Equal(drillEpoch.Add(-2 * time.Hour)))
}

func TestCheckMarkers(t *testing.T) {
	at := func(m int) time.Time { return drillEpoch.Add(time.Duration(m) * time.Minute) }
	source := map[string]time.Time{"old": at(-60), "mid": at(-30), "new": at(0)}
	for _, tc := range []struct {
		name     string
		restored map[string]time.Time
		target   time.Time
		wantErr  string
	}{
		{name: "newest point: every marker", restored: source},
		{name: "newest point: the drill's own missing", restored: map[string]time.Time{"old": at(-60), "mid": at(-30)}, wantErr: "lacks markers written before its target [new"},
		{name: "a point: those before it", restored: map[string]time.Time{"old": at(-60)}, target: at(-45)},
		{name: "a point: one written after it", restored: map[string]time.Time{"old": at(-60), "mid": at(-30)}, target: at(-45), wantErr: "has [mid"},
		{name: "a point: one before it missing", restored: map[string]time.Time{}, target: at(-45), wantErr: "lacks markers written before its target [old"},
		{name: "a point before the table existed", restored: map[string]time.Time{}, target: at(-90)},
		{name: "a marker within the margin of the target is not judged", restored: map[string]time.Time{"old": at(-60)}, target: at(-30).Add(time.Second)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			err := checkMarkers(source, tc.restored, "new", tc.target)
			if tc.wantErr == "" {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(MatchError(ContainSubstring(tc.wantErr)))
		})
	}
	NewWithT(t).Expect(checkMarkers(source, source, "absent", time.Time{})).To(MatchError(ContainSubstring("the source has no marker absent")))
}
