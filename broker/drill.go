package broker

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/postgres"
)

// Scheduled restore drills (docs/disaster-recovery.md, Restore drills).
// The replica that runs the reconcile loop also runs the drills, one at a
// time: each instance of a plan with a drill is restored, once per
// interval, into a throwaway Cluster in the drill namespace, rendered by
// the restore provision's own builders. The drill writes a marker into
// the source, waits until the marker is restorable, restores the newest
// restorable point, checks that PostgreSQL answers with the marker, and
// deletes the throwaway Cluster and its volumes whatever happened. Each
// result is kept in a ConfigMap of the broker's namespace (no secrets in
// it), which the metrics read at every scrape and the schedule resumes
// from after a restart.

// DrillResultsConfigMap keeps the last drill of each instance.
const DrillResultsConfigMap = "strata-drill-results"

// DefaultDrillNamespace is where the throwaway Clusters go.
const DefaultDrillNamespace = "strata-drills"

// DrillsConfig is the drills' part of the broker configuration.
type DrillsConfig struct {
	// Enabled runs the drills; unset: on.
	Enabled *bool `json:"enabled"`
	// Namespace is where the throwaway Clusters go; it must exist and be
	// no tenant's (the chart creates it and grants the broker exactly
	// what a drill needs there).
	Namespace string `json:"namespace"`
	// IntervalSeconds, when positive, replaces every plan's interval (a
	// test runs drills every few minutes).
	IntervalSeconds int `json:"intervalSeconds"`
	// TimeoutSeconds bounds one drill from its start to its check; 0:
	// 3600.
	TimeoutSeconds int `json:"timeoutSeconds"`
	// MinIntervalHours and MaxIntervalHours bound the interval an
	// instance may ask for (parameter drills.interval_hours); 0: 6 and
	// 168 (catalog.DefaultDrillMinInterval, ...MaxInterval).
	MinIntervalHours int `json:"minIntervalHours"`
	MaxIntervalHours int `json:"maxIntervalHours"`
}

// DrillOptions are the validated DrillsConfig (New); a zero Namespace
// means no drills.
type DrillOptions struct {
	Namespace string
	Interval  time.Duration
	Timeout   time.Duration
	// MinInterval and MaxInterval bound an instance's own interval (set
	// whether or not drills run: the parameter's schema publishes them).
	MinInterval, MaxInterval time.Duration
}

// Options turns the configuration into DrillOptions.
func (c DrillsConfig) Options() (DrillOptions, error) {
	if c.MinIntervalHours < 0 || c.MaxIntervalHours < 0 {
		return DrillOptions{}, fmt.Errorf("drills.minIntervalHours and drills.maxIntervalHours must not be negative")
	}
	bounds := DrillOptions{MinInterval: catalog.DefaultDrillMinInterval, MaxInterval: catalog.DefaultDrillMaxInterval}
	if c.MinIntervalHours > 0 {
		bounds.MinInterval = time.Duration(c.MinIntervalHours) * time.Hour
	}
	if c.MaxIntervalHours > 0 {
		bounds.MaxInterval = time.Duration(c.MaxIntervalHours) * time.Hour
	}
	if bounds.MinInterval > bounds.MaxInterval {
		return DrillOptions{}, fmt.Errorf("drills.minIntervalHours (%d h) is above drills.maxIntervalHours (%d h): set the minimum at or below the maximum",
			catalog.DrillIntervalHours(bounds.MinInterval), catalog.DrillIntervalHours(bounds.MaxInterval))
	}
	if c.Enabled != nil && !*c.Enabled {
		return bounds, nil
	}
	if c.IntervalSeconds < 0 || c.TimeoutSeconds < 0 {
		return DrillOptions{}, fmt.Errorf("drills.intervalSeconds and drills.timeoutSeconds must not be negative")
	}
	o := bounds
	o.Namespace, o.Interval, o.Timeout = c.Namespace, time.Duration(c.IntervalSeconds)*time.Second, time.Duration(c.TimeoutSeconds)*time.Second
	if o.Namespace == "" {
		o.Namespace = DefaultDrillNamespace
	}
	if o.Timeout == 0 {
		o.Timeout = time.Hour
	}
	return o, nil
}

// DrillResult is the last drill of one instance, as kept in the results
// ConfigMap and exported on /metrics.
type DrillResult struct {
	InstanceID string    `json:"instanceId"`
	Service    string    `json:"service"`
	Plan       string    `json:"plan"`
	Namespace  string    `json:"namespace"`
	Started    time.Time `json:"started"`
	Finished   time.Time `json:"finished"`
	// Target is the point in time restored to: a random point of the
	// window (PointInTime), or else the newest restorable point when the
	// drill chose it (the recovery replays all archived WAL, at or past it).
	Target      time.Time `json:"target,omitzero"`
	PointInTime bool      `json:"pointInTime,omitempty"`
	Succeeded   bool      `json:"succeeded"`
	// RPOSeconds: when the drill chose its target, now minus the newest
	// restorable point (the commits a loss at that moment would lose).
	RPOSeconds float64 `json:"rpoSeconds"`
	// RTOSeconds: from applying the throwaway Cluster to PostgreSQL
	// answering with the marker.
	RTOSeconds float64 `json:"rtoSeconds"`
	// LastSuccess is when the newest successful drill finished (kept
	// across failures).
	LastSuccess  time.Time `json:"lastSuccess,omitzero"`
	LastRPO      float64   `json:"lastSuccessRpoSeconds"`
	LastRTO      float64   `json:"lastSuccessRtoSeconds"`
	Failures     int       `json:"failures"`
	Drills       int       `json:"drills"`
	FailedStep   string    `json:"failedStep,omitempty"`
	Error        string    `json:"error,omitempty"`
	IntervalSecs float64   `json:"intervalSeconds"`
	// The plan's objectives when the drill ran.
	RPOObjectiveSecs float64 `json:"rpoObjectiveSeconds"`
	RTOObjectiveSecs float64 `json:"rtoObjectiveSeconds"`
}

// drillCandidate is an instance the schedule may drill.
type drillCandidate struct {
	rec      *InstanceRecord
	inst     provisioners.Instance
	drill    *catalog.DrillPlan
	interval time.Duration
}

// InstanceDrill is one instance's drill settings: the plan's, under the
// instance's parameter drills.
type InstanceDrill struct {
	Enabled  bool
	Interval time.Duration
}

// drillParams mirrors the drills parameter (catalog/schema.go).
type drillParams struct {
	Drills *struct {
		Enabled       *bool `json:"enabled"`
		IntervalHours *int  `json:"interval_hours"`
	} `json:"drills"`
}

// instanceDrill is the instance's drill settings: its own (parameter
// drills) over the plan's; the interval held to the plan's bounds (the
// platform may have narrowed them since the parameter was set) and
// replaced by the configuration's override when that is positive (a test,
// or an operator drilling the fleet at once). Parameters that do not
// decode (never schema-valid ones) leave the plan's settings.
func instanceDrill(plan *catalog.DrillPlan, params map[string]any, override time.Duration) InstanceDrill {
	out := InstanceDrill{Enabled: true, Interval: plan.Interval}
	var p drillParams
	if err := provisioners.DecodeParams(params, &p); err == nil && p.Drills != nil {
		out.Enabled = provisioners.Deref(p.Drills.Enabled, true)
		if p.Drills.IntervalHours != nil {
			out.Interval = time.Duration(*p.Drills.IntervalHours) * time.Hour
		}
	}
	if plan.MinInterval > 0 && out.Interval < plan.MinInterval {
		out.Interval = plan.MinInterval
	}
	if plan.MaxInterval > 0 && out.Interval > plan.MaxInterval {
		out.Interval = plan.MaxInterval
	}
	if override > 0 {
		out.Interval = override
	}
	return out
}

// drillCandidates are the live, provisioned instances of plans with a
// drill that did not opt out, with their interval (instanceDrill).
func drillCandidates(recs []*InstanceRecord, instanceOf func(*InstanceRecord) (provisioners.Instance, error), override time.Duration) []drillCandidate {
	var out []drillCandidate
	for _, r := range recs {
		if r.Deleted || r.Operation.Type == OpDeprovision || (r.Operation.Type == OpProvision && r.Operation.State != provisioners.Succeeded) {
			continue
		}
		inst, err := instanceOf(r)
		if err != nil || inst.Plan.Postgres == nil || inst.Plan.Postgres.Drill == nil {
			continue
		}
		s := instanceDrill(inst.Plan.Postgres.Drill, inst.Params, override)
		if !s.Enabled {
			continue
		}
		out = append(out, drillCandidate{rec: r, inst: inst, drill: inst.Plan.Postgres.Drill, interval: s.Interval})
	}
	return out
}

// staleDrillResults are the results of instances that are no drill
// candidate (any more): opted out, or moved to a plan without drills.
// Their series would otherwise stay on /metrics, and the Missing alert
// fire for an instance nobody drills.
func staleDrillResults(recs []*InstanceRecord, cands []drillCandidate, last map[string]DrillResult) []string {
	keep := map[string]bool{}
	for _, c := range cands {
		keep[c.rec.ID] = true
	}
	// An instance whose record exists but is not a candidate only because
	// it is being provisioned has no result; one being deprovisioned is
	// dropped by save. Only records that exist and are settled count.
	live := map[string]bool{}
	for _, r := range recs {
		if !r.Deleted && r.Operation.Type != OpDeprovision {
			live[r.ID] = true
		}
	}
	var out []string
	for id := range last {
		if live[id] && !keep[id] {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// dueDrills are the candidates due at now, the most overdue first: a
// drill is due an interval after the last one began, and an instance
// never drilled is due since the epoch (ties by id, for a stable order).
func dueDrills(now time.Time, cands []drillCandidate, last map[string]DrillResult) []drillCandidate {
	due := func(c drillCandidate) time.Time {
		if r, ok := last[c.rec.ID]; ok && !r.Started.IsZero() {
			return r.Started.Add(c.interval)
		}
		return time.Time{}
	}
	var out []drillCandidate
	for _, c := range cands {
		if !due(c).After(now) {
			out = append(out, c)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		di, dj := due(out[i]), due(out[j])
		if !di.Equal(dj) {
			return di.Before(dj)
		}
		return out[i].rec.ID < out[j].rec.ID
	})
	return out
}

// awaitingFirstBackup says whether an instance without a restorable
// window waits for its drill instead of failing it: until one drill of it
// succeeded, no window means its first backup has not completed (a new
// instance, or a restored one, whose provision alone takes minutes), which
// the backup alerts watch (StrataPostgreSQLBackupFailed, ...Late). Once
// an instance was restored, losing its window is a failed drill.
func awaitingFirstBackup(prev DrillResult) bool { return prev.LastSuccess.IsZero() }

// DrillDB is the SQL a drill runs: the I/O edge the platform test drives
// for real (drill_sql.go).
type DrillDB interface {
	// WriteMarker inserts token into the marker table (creating it the
	// first time) and returns its commit time as the server saw it.
	WriteMarker(ctx context.Context, c DrillConn, token string) (time.Time, error)
	// Markers are the markers in the table and when each was written
	// (none when the table does not exist: a copy from before the first
	// drill).
	Markers(ctx context.Context, c DrillConn) (map[string]time.Time, error)
}

// markerMargin keeps markers this close to a target time out of the
// check: a marker's time is taken just before its commit, and recovery
// stops by commit time.
const markerMargin = 2 * time.Second

// drillTarget is the point a drill restores to: every second drill of an
// instance (the n-th, counting from 1) a random point, chosen by u in
// [0, 1), between the later of the window's start and the oldest marker
// (the drill login that checks the copy exists only from shortly before
// it, so a copy of an earlier point could not be logged in to) and the
// drill's own marker (written at markedAt: a commit must follow the
// target, or PostgreSQL fails the recovery); the others, and a span too
// short for that, the newest point ("latest": zero).
func drillTarget(n int, first, oldestMarker, markedAt time.Time, u float64) time.Time {
	if n%2 == 1 {
		return time.Time{}
	}
	if start := oldestMarker.Add(markerMargin); start.After(first) {
		first = start
	}
	end := markedAt.Add(-markerMargin)
	if !end.After(first) {
		return time.Time{}
	}
	t := first.Add(time.Duration(u * float64(end.Sub(first))))
	if tr := t.Truncate(time.Second); !tr.Before(first) {
		t = tr
	}
	return t
}

// oldestMarker is when the oldest marker was written (markedAt when there
// is no other).
func oldestMarker(markers map[string]time.Time, markedAt time.Time) time.Time {
	oldest := markedAt
	for _, at := range markers {
		if at.Before(oldest) {
			oldest = at
		}
	}
	return oldest
}

// checkMarkers compares the copy's markers with the source's, read just
// after the drill wrote token: restored to the newest point (zero target)
// the copy has every one of them; restored to a target, it has those
// written before it and none written after it (token among them).
func checkMarkers(source, restored map[string]time.Time, token string, target time.Time) error {
	if _, ok := source[token]; !ok {
		return fmt.Errorf("the source has no marker %s", token)
	}
	var missing, extra []string
	for tok, at := range source {
		_, in := restored[tok]
		switch {
		case (target.IsZero() || !at.After(target.Add(-markerMargin))) && !in:
			missing = append(missing, tok+" ("+at.UTC().Format(time.RFC3339Nano)+")")
		case !target.IsZero() && !at.Before(target.Add(markerMargin)) && in:
			extra = append(extra, tok+" ("+at.UTC().Format(time.RFC3339Nano)+")")
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		return fmt.Errorf("the restored copy lacks markers written before its target %v and has %v written after it", missing, extra)
	}
	return nil
}

// DrillConn is where and as whom a drill connects; the password is never
// logged.
type DrillConn struct {
	Host, ServerName, Database, User, Password string
	CAPEM                                      []byte
}

// Drills runs the restore drills.
type Drills struct {
	B    *Broker
	Opts DrillOptions
	// Core reads and writes the results ConfigMap and lists the drill
	// namespace's PVCs and pods.
	Core kubernetes.Interface
	DB   DrillDB
	// Poll is the pause between two looks at something a drill waits for;
	// zero: 5 s.
	Poll time.Duration
}

// Run drills until ctx ends (while this replica leads).
func (d *Drills) Run(ctx context.Context) {
	log := d.B.Log.With(zap.String("component", "drills"))
	log.Info("restore drills scheduled", zap.String("namespace", d.Opts.Namespace), zap.Duration("interval_override", d.Opts.Interval))
	tick := 30 * time.Second
	if d.Opts.Interval > 0 && d.Opts.Interval/4 < tick {
		tick = max(d.Opts.Interval/4, time.Second)
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		d.RunDue(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RunDue runs the most overdue drill, if one is due.
func (d *Drills) RunDue(ctx context.Context) {
	recs, err := d.B.Store.ListInstances(ctx)
	if err != nil {
		d.B.Log.Warn("drills: list instances", zap.Error(err))
		return
	}
	last, err := d.Results(ctx)
	if err != nil {
		d.B.Log.Warn("drills: read the results", zap.Error(err))
		return
	}
	cands := drillCandidates(recs, func(r *InstanceRecord) (provisioners.Instance, error) {
		inst, _, err := d.B.instanceOf(r)
		return inst, err
	}, d.Opts.Interval)
	if stale := staleDrillResults(recs, cands, last); len(stale) > 0 {
		if err := d.forget(ctx, stale); err != nil {
			d.B.Log.Warn("drills: forget the results of instances no longer drilled", zap.Strings("instance_ids", stale), zap.Error(err))
		} else {
			d.B.Log.Info("drills: results forgotten; the instances are no longer drilled", zap.Strings("instance_ids", stale))
		}
	}
	// One drill per pass, the most overdue whose instance has something
	// to restore.
	for _, c := range dueDrills(d.B.now(), cands, last) {
		if r, ok := d.B.Engines[c.inst.Service.Engine].Provisioner.(provisioners.Restorer); ok && awaitingFirstBackup(last[c.rec.ID]) {
			if _, ok, err := d.B.restorableWindow(ctx, c.rec, c.inst, r); err == nil && !ok {
				d.B.Log.Debug("drills: waiting for the first backup", zap.String("instance_id", c.rec.ID))
				continue
			}
		}
		res := d.drill(ctx, c, last[c.rec.ID])
		if ctx.Err() != nil {
			// This replica stopped leading (a rollout, say): the drill was
			// cut short, not failed; the next leader runs it again.
			d.B.Log.Info("drill interrupted; not recorded", zap.String("instance_id", c.rec.ID))
			return
		}
		d.record(ctx, res)
		return
	}
}

func (d *Drills) record(ctx context.Context, res DrillResult) {
	if err := d.save(context.WithoutCancel(ctx), res); err != nil {
		d.B.Log.Warn("drills: record the result", zap.String("instance_id", res.InstanceID), zap.Error(err))
	}
}

// drillFailure is a drill that failed at a step.
type drillFailure struct {
	step string
	err  error
}

func (f *drillFailure) Error() string { return f.step + ": " + f.err.Error() }

func failAt(step string, err error) error {
	if err == nil {
		return nil
	}
	return &drillFailure{step: step, err: err}
}

// drill runs one drill of c and returns its result over prev's counts.
func (d *Drills) drill(ctx context.Context, c drillCandidate, prev DrillResult) DrillResult {
	now := d.B.now()
	res := DrillResult{
		InstanceID: c.rec.ID, Service: c.inst.Service.Name, Plan: c.inst.Plan.Name, Namespace: c.rec.Namespace,
		Started: now, LastSuccess: prev.LastSuccess, LastRPO: prev.LastRPO, LastRTO: prev.LastRTO,
		Failures: prev.Failures, Drills: prev.Drills + 1, IntervalSecs: c.interval.Seconds(),
		RPOObjectiveSecs: c.drill.RPOObjective.Seconds(), RTOObjectiveSecs: c.drill.RTOObjective.Seconds(),
	}
	log := d.B.Log.With(zap.String("component", "drills"), zap.String("instance_id", c.rec.ID), zap.String("plan", c.inst.Plan.Name))
	ctx, cancel := context.WithTimeout(ctx, d.Opts.Timeout)
	defer cancel()
	// A deprovision of the instance ends its drill (which would otherwise
	// wait for a window that no longer moves) without a result.
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	go d.watchGone(ctx, c.rec.ID, stop)
	err := d.steps(ctx, log, c, &res)
	if errors.Is(context.Cause(ctx), errInstanceGone) {
		err = failAt("instance", errInstanceGone)
	}
	res.Finished = d.B.now()
	if err != nil {
		res.Failures++
		var f *drillFailure
		if errors.As(err, &f) {
			res.FailedStep = f.step
		}
		res.Error = err.Error()
		log.Error("drill failed", zap.String("step", res.FailedStep), zap.Error(err), zap.Duration("took", res.Finished.Sub(res.Started)))
		return res
	}
	res.Succeeded = true
	res.LastSuccess, res.LastRPO, res.LastRTO = res.Finished, res.RPOSeconds, res.RTOSeconds
	log.Info("drill succeeded", zap.Time("target", res.Target), zap.Float64("rpo_seconds", res.RPOSeconds), zap.Float64("rto_seconds", res.RTOSeconds))
	return res
}

var errInstanceGone = errors.New("the instance is being deprovisioned")

// watchGone cancels the drill once the instance's record says it is
// deprovisioned (or is gone).
func (d *Drills) watchGone(ctx context.Context, id string, stop context.CancelCauseFunc) {
	_ = wait.PollUntilContextCancel(ctx, d.poll(), false, func(ctx context.Context) (bool, error) {
		r, err := d.B.Store.GetInstance(ctx, id)
		if errors.Is(err, ErrNotFound) || (err == nil && (r.Deleted || r.Operation.Type == OpDeprovision)) {
			stop(errInstanceGone)
			return true, nil
		}
		return false, nil
	})
}

func (d *Drills) poll() time.Duration {
	if d.Poll > 0 {
		return d.Poll
	}
	return 5 * time.Second
}

// steps are the drill proper; every step logs a line as it begins, and
// the throwaway Cluster is deleted whatever happens once it was applied.
func (d *Drills) steps(ctx context.Context, log *zap.Logger, c drillCandidate, res *DrillResult) (err error) {
	step := func(name string, fields ...zap.Field) { log.Info("drill step: "+name, fields...) }
	r, ok := d.B.Engines[c.inst.Service.Engine].Provisioner.(provisioners.Restorer)
	pg, isPG := d.B.Engines[c.inst.Service.Engine].Provisioner.(*postgres.Provisioner)
	if !ok || !isPG {
		return failAt("plan", fmt.Errorf("service %s has no restore", c.inst.Service.Name))
	}
	step("window")
	if _, ok, err := d.B.restorableWindow(ctx, c.rec, c.inst, r); err != nil {
		return failAt("window", err)
	} else if !ok {
		return failAt("window", errors.New("the instance has no restorable backup"))
	}

	step("login", zap.String("role", postgres.DrillRole))
	// The instance's NetworkPolicy as rendered now, which lets the broker
	// in: an instance provisioned before drills were on has none yet.
	if err := d.B.Kube.Apply(ctx, []*unstructured.Unstructured{pg.ClusterNetworkPolicy(c.inst)}); err != nil {
		return failAt("login", err)
	}
	src, err := d.login(ctx, pg, c.inst)
	if err != nil {
		return failAt("login", err)
	}

	token := newDrillToken()
	step("marker", zap.String("token", token))
	markedAt, err := d.DB.WriteMarker(ctx, src, token)
	if err != nil {
		return failAt("marker", err)
	}

	// The marker is restorable once the window's end has passed it: at
	// most archive_timeout later while archiving works.
	step("archived", zap.Time("marker_at", markedAt))
	var w provisioners.Window
	err = wait.PollUntilContextCancel(ctx, d.poll(), true, func(ctx context.Context) (bool, error) {
		var ok bool
		w, ok, err = d.B.restorableWindow(ctx, c.rec, c.inst, r)
		return err == nil && ok && !w.Last.Before(markedAt), nil
	})
	if err != nil {
		return failAt("archived", fmt.Errorf("the marker written at %s never became restorable (window ends %s): %w", markedAt.UTC().Format(time.RFC3339), w.Last.UTC().Format(time.RFC3339), err))
	}
	now := d.B.now()
	res.RPOSeconds = now.Sub(w.Last).Seconds()
	sourceMarkers, err := d.DB.Markers(ctx, src)
	if err != nil {
		return failAt("marker", err)
	}

	// "latest" (zero) is the end of the archived WAL, at or past w.Last;
	// every second drill a random point of the window instead.
	target := drillTarget(res.Drills, w.First, oldestMarker(sourceMarkers, markedAt), markedAt, randomFraction())
	res.Target, res.PointInTime = w.Last, !target.IsZero()
	if res.PointInTime {
		res.Target = target
	}
	drill := postgres.DrillInstance(c.inst, d.Opts.Namespace, provisioners.RestoreSource{
		InstanceID: c.rec.ID, Name: c.inst.Name, Namespace: c.inst.Namespace, TargetTime: target,
	})
	objs, err := pg.BuildDrill(drill, d.B.Store.namespace)
	if err != nil {
		return failAt("build", err)
	}
	// A drill cut short (a restart) left its objects: gone before this one.
	step("cleanup of an earlier drill")
	if err := d.cleanup(ctx, drill, objs); err != nil {
		return failAt("cleanup", err)
	}
	defer func() {
		// A fresh context: the drill's may have timed out, and the volumes
		// must go anyway.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
		defer cancel()
		step("cleanup", zap.String("drill_namespace", drill.Namespace))
		if cerr := d.cleanup(cctx, drill, objs); cerr != nil && err == nil {
			err = failAt("cleanup", cerr)
		}
	}()

	step("restore", zap.String("cluster", drill.Name), zap.String("drill_namespace", drill.Namespace),
		zap.Bool("point_in_time", res.PointInTime), zap.Time("target", res.Target), zap.Time("window_first", w.First), zap.Time("window_last", w.Last))
	start := d.B.now()
	if err := d.B.Kube.Apply(ctx, objs); err != nil {
		return failAt("restore", err)
	}
	step("ready")
	if err := d.waitReady(ctx, drill); err != nil {
		return failAt("ready", err)
	}
	step("verify")
	ca, err := d.caPEM(ctx, drill.Namespace, postgres.DrillCASecret(drill))
	if err != nil {
		return failAt("verify", err)
	}
	copyConn := src
	copyConn.Host, copyConn.ServerName, copyConn.CAPEM = postgres.ServerName(drill), postgres.ServerName(drill), ca
	var lastErr error
	err = wait.PollUntilContextCancel(ctx, d.poll(), true, func(ctx context.Context) (bool, error) {
		restored, qerr := d.DB.Markers(ctx, copyConn)
		if qerr != nil {
			// The Service may lag the Ready condition by a moment.
			lastErr = qerr
			log.Debug("drill: the restored copy does not answer yet", zap.Error(qerr))
			return false, nil
		}
		return true, checkMarkers(sourceMarkers, restored, token, target)
	})
	if err != nil && lastErr != nil {
		err = fmt.Errorf("%w (last answer of the copy: %w)", err, lastErr)
	}
	if err != nil {
		return failAt("verify", err)
	}
	res.RTOSeconds = d.B.now().Sub(start).Seconds()
	return nil
}

// randomFraction is in [0, 1), from crypto/rand (no seeding to get wrong).
func randomFraction() float64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return float64(binary.BigEndian.Uint64(b[:])>>11) / (1 << 53)
}

func newDrillToken() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// login makes sure the drill login exists in the source (its Secret once,
// with a random password; the DatabaseRole applied), waits until
// CloudNativePG created the role, and returns how to reach the source.
func (d *Drills) login(ctx context.Context, pg *postgres.Provisioner, inst provisioners.Instance) (DrillConn, error) {
	roleRef, secretRef := postgres.DrillLoginRefs(inst)
	secrets := d.Core.CoreV1().Secrets(inst.Namespace)
	secret, err := secrets.Get(ctx, secretRef.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		var s corev1.Secret
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(postgres.DrillLoginSecret(inst, newDrillPassword()).Object, &s); err != nil {
			return DrillConn{}, err
		}
		secret, err = secrets.Create(ctx, &s, metav1.CreateOptions{FieldManager: provisioners.FieldManager})
		if apierrors.IsAlreadyExists(err) {
			secret, err = secrets.Get(ctx, secretRef.Name, metav1.GetOptions{})
		}
	}
	if err != nil {
		return DrillConn{}, fmt.Errorf("the drill login's Secret %s: %w", secretRef.Name, err)
	}
	password := string(secret.Data["password"])
	if password == "" {
		password = secret.StringData["password"]
	}
	if err := d.B.Kube.Apply(ctx, []*unstructured.Unstructured{postgres.DrillLoginRole(inst)}); err != nil {
		return DrillConn{}, err
	}
	if err := d.waitApplied(ctx, roleRef); err != nil {
		return DrillConn{}, fmt.Errorf("CloudNativePG did not create the role %s (or revoke its memberships): %w", postgres.DrillRole, err)
	}
	// The marker schema, declared on the first database's Database object
	// once the role that owns it exists.
	schemaDB, err := postgres.DrillSchemaDatabase(inst)
	if err != nil {
		return DrillConn{}, err
	}
	applier, ok := d.B.Kube.(fieldManagerApplier)
	if !ok {
		return DrillConn{}, fmt.Errorf("the broker's Kubernetes client cannot apply as field manager %s", postgres.DrillFieldManager)
	}
	if err := applier.ApplyAs(ctx, postgres.DrillFieldManager, []*unstructured.Unstructured{schemaDB}); err != nil {
		return DrillConn{}, err
	}
	dbRef, err := postgres.DrillSchemaDatabaseRef(inst)
	if err != nil {
		return DrillConn{}, err
	}
	if err := d.waitApplied(ctx, dbRef); err != nil {
		return DrillConn{}, fmt.Errorf("CloudNativePG did not create the schema %s owned by %s (Database %s): %w", postgres.DrillSchema, postgres.DrillRole, dbRef.Name, err)
	}
	db, err := postgres.FirstDatabase(inst)
	if err != nil {
		return DrillConn{}, err
	}
	ca, err := d.caPEM(ctx, inst.Namespace, pg.ServerCASecret(inst))
	if err != nil {
		return DrillConn{}, err
	}
	return DrillConn{Host: postgres.ServerName(inst), ServerName: postgres.ServerName(inst), Database: db, User: postgres.DrillRole, Password: password, CAPEM: ca}, nil
}

// fieldManagerApplier is the Kube that applies as another field manager
// (provisioners.Kube): the drill's part of the Database object is its own.
type fieldManagerApplier interface {
	ApplyAs(ctx context.Context, manager string, objs []*unstructured.Unstructured) error
}

// waitApplied waits until CloudNativePG applied the object's current
// generation (a DatabaseRole or Database), and says its last message if
// it never does.
func (d *Drills) waitApplied(ctx context.Context, ref provisioners.Ref) error {
	var msg string
	err := wait.PollUntilContextCancel(ctx, d.poll(), true, func(ctx context.Context) (bool, error) {
		o, err := d.B.Kube.Get(ctx, ref)
		if err != nil || o == nil {
			return false, nil
		}
		applied, _, _ := unstructured.NestedBool(o.Object, "status", "applied")
		gen, _, _ := unstructured.NestedInt64(o.Object, "status", "observedGeneration")
		msg, _, _ = unstructured.NestedString(o.Object, "status", "message")
		return applied && gen >= o.GetGeneration(), nil
	})
	if err != nil && msg != "" {
		return fmt.Errorf("%w (CloudNativePG: %s)", err, msg)
	}
	return err
}

func newDrillPassword() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (d *Drills) caPEM(ctx context.Context, ns, name string) ([]byte, error) {
	s, err := d.Core.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading the CA Secret %s/%s: %w", ns, name, err)
	}
	if len(s.Data["ca.crt"]) == 0 {
		return nil, fmt.Errorf("the CA Secret %s/%s has no ca.crt", ns, name)
	}
	return s.Data["ca.crt"], nil
}

var jobGVK = schema.GroupVersionKind{Group: "batch", Version: "v1", Kind: "Job"}

// waitReady waits for the drill's Cluster to be Ready, and gives up at
// soon as CloudNativePG's recovery Job failed twice (a backup that cannot
// be restored fails there, not by timing out).
func (d *Drills) waitReady(ctx context.Context, drill provisioners.Instance) error {
	ref := postgres.DrillClusterRef(drill)
	job := provisioners.Ref{GVK: jobGVK, Namespace: drill.Namespace, Name: ref.Name + "-1-full-recovery"}
	var phase string
	err := wait.PollUntilContextCancel(ctx, d.poll(), true, func(ctx context.Context) (bool, error) {
		if j, err := d.B.Kube.Get(ctx, job); err == nil && j != nil {
			// Twice: one failed pod may be a hiccup the Job's retry heals.
			if failed, _, _ := unstructured.NestedInt64(j.Object, "status", "failed"); failed >= 2 {
				return false, fmt.Errorf("CloudNativePG's recovery job %s failed %d times (its pods' logs say why)", job.Name, failed)
			}
		}
		c, err := d.B.Kube.Get(ctx, ref)
		if err != nil || c == nil {
			return false, nil
		}
		phase, _, _ = unstructured.NestedString(c.Object, "status", "phase")
		return provisioners.ConditionTrue(c, "Ready"), nil
	})
	if err != nil {
		return fmt.Errorf("the restored Cluster %s is not ready (phase %q): %w", ref.Name, phase, err)
	}
	return nil
}

// cleanup deletes the drill's objects (the Cluster first, so its pods
// stop reading the backups) and its volumes, and waits until its pods
// and claims are gone.
func (d *Drills) cleanup(ctx context.Context, drill provisioners.Instance, objs []*unstructured.Unstructured) error {
	var errs []error
	for i := len(objs) - 1; i >= 0; i-- {
		if err := d.B.Kube.Delete(ctx, provisionersRef(objs[i])); err != nil {
			errs = append(errs, err)
		}
	}
	sel := metav1.ListOptions{LabelSelector: "cnpg.io/cluster=" + postgres.NamesOf(drill).Cluster}
	pvcs := d.Core.CoreV1().PersistentVolumeClaims(drill.Namespace)
	if err := pvcs.DeleteCollection(ctx, metav1.DeleteOptions{}, sel); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("deleting the drill's volumes: %w", err))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return wait.PollUntilContextCancel(ctx, d.poll(), true, func(ctx context.Context) (bool, error) {
		pods, err := d.Core.CoreV1().Pods(drill.Namespace).List(ctx, sel)
		if err != nil {
			return false, nil
		}
		claims, err := pvcs.List(ctx, sel)
		if err != nil {
			return false, nil
		}
		c, err := d.B.Kube.Get(ctx, postgres.DrillClusterRef(drill))
		return err == nil && c == nil && len(pods.Items) == 0 && len(claims.Items) == 0, nil
	})
}

func provisionersRef(o *unstructured.Unstructured) provisioners.Ref {
	return provisioners.Ref{GVK: o.GroupVersionKind(), Namespace: o.GetNamespace(), Name: o.GetName()}
}

// forget removes the results of the instances from the ConfigMap.
func (d *Drills) forget(ctx context.Context, ids []string) error {
	cms := d.Core.CoreV1().ConfigMaps(d.B.Store.namespace)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := cms.Get(ctx, DrillResultsConfigMap, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, id := range ids {
			delete(cm.Data, id)
		}
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
		return err
	})
}

// Results reads the last drill of every instance.
func (d *Drills) Results(ctx context.Context) (map[string]DrillResult, error) {
	return readDrillResults(ctx, d.Core, d.B.Store.namespace)
}

func readDrillResults(ctx context.Context, core kubernetes.Interface, ns string) (map[string]DrillResult, error) {
	cm, err := core.CoreV1().ConfigMaps(ns).Get(ctx, DrillResultsConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return map[string]DrillResult{}, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeDrillResults(cm.Data), nil
}

// decodeDrillResults skips an entry it cannot read (a result written by a
// newer broker, say) rather than losing every other.
func decodeDrillResults(data map[string]string) map[string]DrillResult {
	out := make(map[string]DrillResult, len(data))
	for id, raw := range data {
		var r DrillResult
		if err := json.Unmarshal([]byte(raw), &r); err == nil {
			out[id] = r
		}
	}
	return out
}

// save writes one result into the ConfigMap, dropping instances that no
// longer exist (their series disappear from /metrics with them), this one
// too if it was deprovisioned while drilled.
func (d *Drills) save(ctx context.Context, res DrillResult) error {
	raw, err := json.Marshal(res)
	if err != nil {
		return err
	}
	cms := d.Core.CoreV1().ConfigMaps(d.B.Store.namespace)
	recs, err := d.B.Store.ListInstances(ctx)
	if err != nil {
		return err
	}
	live := map[string]bool{}
	for _, r := range recs {
		if !r.Deleted && r.Operation.Type != OpDeprovision {
			live[r.ID] = true
		}
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := cms.Get(ctx, DrillResultsConfigMap, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			data := map[string]string{}
			if live[res.InstanceID] {
				data[res.InstanceID] = string(raw)
			}
			_, err = cms.Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: DrillResultsConfigMap, Namespace: d.B.Store.namespace,
					Labels: map[string]string{provisioners.LabelManagedBy: provisioners.ManagedByStrata}},
				Data: data,
			}, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		for id := range cm.Data {
			if !live[id] {
				delete(cm.Data, id)
			}
		}
		if live[res.InstanceID] {
			cm.Data[res.InstanceID] = string(raw)
		}
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
		return err
	})
}
