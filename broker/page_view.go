package broker

import (
	"fmt"
	"html/template"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/postgres"
	"github.com/strata-dev/strata/provisioners/redis"
)

// The instance page's view model. Everything here is pure: the handler
// (page_handler.go) reads the record, the objects and Prometheus, and
// hands what it read to buildPage, so every rule of what the page shows
// (and, above all, what it never shows) is table-tested without I/O.

// pageInputs is everything the page is built from.
type pageInputs struct {
	Record  *InstanceRecord
	Service *catalog.Service
	Plan    *catalog.Plan
	// KafkaBootstrap is the bootstrap host:port of a Kafka instance.
	KafkaBootstrap string
	// Objects are the instance's objects as observed (absent ones nil).
	Objects map[ObjectRef]*unstructured.Unstructured
	// Backups are CloudNativePG's Backup objects of the instance's cluster.
	Backups []*unstructured.Unstructured
	// Bindings are the instance's binding records (only their operations
	// are shown).
	Bindings []*BindingRecord
	// Prometheus is nil when none is configured.
	Prometheus *pagePrometheus
	Now        time.Time
}

// pagePrometheus is what was read from Prometheus for the page.
type pagePrometheus struct {
	Series []pageSeriesInput
	Alerts []promAlert
	// Err is why Prometheus could not be read (shown, never fatal).
	Err string
}

type pageSeriesInput struct {
	Title, Unit string
	Points      []promPoint
	Err         string
}

// pageView is what the template renders.
type pageView struct {
	Title, Service, Plan, PlanDescription string
	Namespace, Name, InstanceID           string
	Status, StatusClass                   string
	Operation                             pageOperation
	Parameters                            []pageKV
	Endpoints                             []pageEndpoint
	// Backups is nil for an engine without backups.
	Backups    *pageBackups
	Operations []pageOperation
	Metrics    pageMetrics
	Generated  string
}

type pageKV struct{ Key, Value string }

type pageEndpoint struct {
	Role, Host string
	Port       int
	Note       string
}

type pageOperation struct {
	What, State, Description, Started string
	started                           time.Time
}

type pageBackups struct {
	// PlanKeepsNone: the plan takes no backups (dev-lite).
	PlanKeepsNone bool
	// Schedule is the ScheduledBackup's cron schedule ("" when none).
	Schedule, LastSchedule, NextSchedule string
	Latest                               []pageBackup
	// Window is the restorable window, or "not known".
	WindowFirst, WindowLast string
	WindowKnown             bool
}

type pageBackup struct{ Name, Phase, Started, Stopped, Error string }

type pageMetrics struct {
	Configured bool
	Err        string
	Charts     []pageChart
	Alerts     []pageAlert
}

type pageChart struct {
	Title, Unit, Last, Err string
	SVG                    template.HTML
}

type pageAlert struct{ Name, Severity, State, Summary, Since string }

const pageTimeFormat = "2006-01-02 15:04:05 UTC"

func pageTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(pageTimeFormat)
}

// secretLikeKey matches parameter names whose values are never shown,
// should a plan ever take one: the page is for everyone who can see the
// instance on the platform, a binding's credentials are not.
var secretLikeKey = regexp.MustCompile(`(?i)pass|secret|token|key|credential|cert`)

func buildPage(in pageInputs) pageView {
	r := in.Record
	v := pageView{
		Title:      in.Service.Name + " " + in.Plan.Name + " " + r.Name,
		Service:    in.Service.Name,
		Plan:       in.Plan.Name,
		Namespace:  r.Namespace,
		Name:       r.Name,
		InstanceID: r.ID,
		Generated:  pageTime(in.Now),
	}
	v.PlanDescription = in.Plan.Description
	v.Status, v.StatusClass = pageStatus(r.Operation)
	v.Operation = operationView(string(r.Operation.Type), r.Operation)
	v.Parameters = flattenParams("", r.Parameters)
	v.Endpoints = endpointsOf(in)
	if in.Service.Engine == catalog.EnginePostgres && in.Plan.Postgres != nil && !isSharedPostgres(in) {
		b := pageBackups{PlanKeepsNone: true}
		if in.Plan.Postgres.Backup != nil {
			b = backupsOf(in)
		}
		v.Backups = &b
	}
	v.Operations = append(v.Operations, v.Operation)
	for _, br := range in.Bindings {
		v.Operations = append(v.Operations, operationView(string(br.Operation.Type)+" "+shortID(br.ID), br.Operation))
	}
	sort.SliceStable(v.Operations, func(i, j int) bool { return v.Operations[i].started.After(v.Operations[j].started) })
	v.Metrics = metricsOf(in)
	return v
}

// pageStatus says in a word what the instance is, and the CSS class.
func pageStatus(op Operation) (string, string) {
	switch {
	case op.State == provisioners.InProgress:
		return string(op.Type) + " in progress", "busy"
	case op.State == provisioners.Failed:
		return string(op.Type) + " failed", "bad"
	case op.Type == OpDeprovision:
		return "deprovisioned", "bad"
	default:
		return "ready", "ok"
	}
}

func operationView(what string, op Operation) pageOperation {
	return pageOperation{
		What: what, State: string(op.State), Started: pageTime(op.Started), started: op.Started,
		// The same words the platform gets in last_operation (no API
		// server addresses).
		Description: publicDescription(op.Description),
	}
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8] + "…"
	}
	return id
}

// flattenParams lists the parameters as dotted keys, sorted, with the
// values of secret-like keys withheld.
func flattenParams(prefix string, p map[string]any) []pageKV {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []pageKV
	for _, k := range keys {
		name := k
		if prefix != "" {
			name = prefix + "." + k
		}
		if secretLikeKey.MatchString(k) {
			out = append(out, pageKV{name, "(withheld)"})
			continue
		}
		switch val := p[k].(type) {
		case map[string]any:
			out = append(out, flattenParams(name, val)...)
		case []any:
			parts := make([]string, len(val))
			for i, e := range val {
				parts[i] = fmt.Sprint(e)
			}
			out = append(out, pageKV{name, strings.Join(parts, ", ")})
		default:
			out = append(out, pageKV{name, fmt.Sprint(val)})
		}
	}
	return out
}

// pageInstance is the provisioners' view of the record, enough for the
// engines' naming functions.
func pageInstance(r *InstanceRecord) provisioners.Instance {
	return provisioners.Instance{ID: r.ID, Name: r.Name, Namespace: r.Namespace}
}

func isSharedPostgres(in pageInputs) bool {
	return in.Plan.Postgres != nil && in.Plan.Postgres.Shared
}

// endpointsOf is where applications reach the instance: host names and
// ports only (credentials come with bindings).
func endpointsOf(in pageInputs) []pageEndpoint {
	r := in.Record
	svc := func(name string) string { return name + "." + r.Namespace + ".svc" }
	switch in.Service.Engine {
	case catalog.EnginePostgres:
		if isSharedPostgres(in) {
			return []pageEndpoint{{Role: "database", Note: "on the platform's shared PostgreSQL cluster: the host is in each binding"}}
		}
		n := postgres.NamesOf(pageInstance(r))
		eps := []pageEndpoint{
			{Role: "primary (read-write)", Host: svc(n.Cluster + "-rw"), Port: 5432},
			{Role: "replicas (read-only)", Host: svc(n.Cluster + "-ro"), Port: 5432},
		}
		if hasKind(in.Objects, "Pooler") {
			eps = append(eps, pageEndpoint{Role: "pooler (PgBouncer)", Host: svc(n.Pooler), Port: 5432})
		}
		return eps
	case catalog.EngineRedis:
		n := redis.NamesOf(pageInstance(r))
		return []pageEndpoint{{Role: "Redis (TLS)", Host: svc(n.TLSService), Port: redis.TLSPort}}
	case catalog.EngineKafka:
		host, port := splitHostPort(in.KafkaBootstrap)
		return []pageEndpoint{{Role: "bootstrap (TLS, SCRAM-SHA-512)", Host: host, Port: port}}
	}
	return nil
}

func splitHostPort(hp string) (string, int) {
	i := strings.LastIndexByte(hp, ':')
	if i < 0 {
		return hp, 0
	}
	p, _ := strconv.Atoi(hp[i+1:])
	return hp[:i], p
}

func hasKind(objs map[ObjectRef]*unstructured.Unstructured, kind string) bool {
	for ref, o := range objs {
		if ref.Kind == kind && o != nil {
			return true
		}
	}
	return false
}

func objectOfKind(objs map[ObjectRef]*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	for ref, o := range objs {
		if ref.Kind == kind && o != nil {
			return o
		}
	}
	return nil
}

// maxBackupsShown bounds the list of backups: the latest are what tell
// whether backups work.
const maxBackupsShown = 5

func backupsOf(in pageInputs) pageBackups {
	var b pageBackups
	if sb := objectOfKind(in.Objects, "ScheduledBackup"); sb != nil {
		b.Schedule, _, _ = unstructured.NestedString(sb.Object, "spec", "schedule")
		b.LastSchedule = statusTime(sb, "lastScheduleTime")
		b.NextSchedule = statusTime(sb, "nextScheduleTime")
	}
	backups := append([]*unstructured.Unstructured(nil), in.Backups...)
	started := func(o *unstructured.Unstructured) string {
		if s, _, _ := unstructured.NestedString(o.Object, "status", "startedAt"); s != "" {
			return s
		}
		return o.GetCreationTimestamp().UTC().Format(time.RFC3339)
	}
	// RFC 3339 times in UTC sort as strings.
	sort.SliceStable(backups, func(i, j int) bool { return started(backups[i]) > started(backups[j]) })
	for i, o := range backups {
		if i == maxBackupsShown {
			break
		}
		phase, _, _ := unstructured.NestedString(o.Object, "status", "phase")
		if phase == "" {
			phase = "pending"
		}
		msg, _, _ := unstructured.NestedString(o.Object, "status", "error")
		b.Latest = append(b.Latest, pageBackup{
			Name: o.GetName(), Phase: phase, Started: statusTime(o, "startedAt"), Stopped: statusTime(o, "stoppedAt"),
			Error: publicDescription(msg),
		})
	}
	b.WindowFirst, b.WindowLast, b.WindowKnown = restorableWindow(objectOfKind(in.Objects, "ObjectStore"), in.Record.Name)
	return b
}

// restorableWindow reads the barman-cloud ObjectStore's recovery window
// for the instance's server (status.serverRecoveryWindow.<name>): from
// the first recoverability point to the last successful backup. Absent
// (no ObjectStore read, no completed backup yet, an older plugin) it is
// not known, which the page says rather than failing.
func restorableWindow(store *unstructured.Unstructured, server string) (first, last string, ok bool) {
	if store == nil {
		return "", "", false
	}
	w, found, _ := unstructured.NestedMap(store.Object, "status", "serverRecoveryWindow", server)
	if !found {
		return "", "", false
	}
	f, _ := w["firstRecoverabilityPoint"].(string)
	l, _ := w["lastSuccessfulBackupTime"].(string)
	ft, err := time.Parse(time.RFC3339, f)
	if err != nil {
		return "", "", false
	}
	first = pageTime(ft)
	if lt, err := time.Parse(time.RFC3339, l); err == nil {
		last = pageTime(lt)
	}
	return first, last, true
}

func statusTime(o *unstructured.Unstructured, field string) string {
	s, _, _ := unstructured.NestedString(o.Object, "status", field)
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return pageTime(t)
	}
	return s
}

func metricsOf(in pageInputs) pageMetrics {
	if in.Prometheus == nil {
		return pageMetrics{}
	}
	m := pageMetrics{Configured: true, Err: in.Prometheus.Err}
	for _, s := range in.Prometheus.Series {
		c := pageChart{Title: s.Title, Unit: s.Unit, Err: s.Err}
		if s.Err == "" {
			c.SVG = sparkline(s.Points)
			if n := len(s.Points); n > 0 {
				c.Last = formatValue(s.Points[n-1].V, s.Unit)
			}
		}
		m.Charts = append(m.Charts, c)
	}
	for _, a := range alertsOf(in.Prometheus.Alerts, in.Record) {
		m.Alerts = append(m.Alerts, pageAlert{
			Name: a.Labels["alertname"], Severity: a.Labels["severity"], State: a.State,
			Summary: a.Annotations["summary"], Since: pageTime(a.ActiveAt),
		})
	}
	return m
}

// alertsOf keeps the alerts about the instance: those of its namespace
// with a label naming one of its objects (a pod "pg-…-1", a cluster
// "pg-…"). An alert of the namespace that names no object (Kafka's
// namespace-wide sums) is kept too: a tenant namespace is one tenant's,
// so it tells the tenant nothing of another.
func alertsOf(alerts []promAlert, r *InstanceRecord) []promAlert {
	var out []promAlert
	for _, a := range alerts {
		if a.Labels["namespace"] != r.Namespace {
			continue
		}
		named, mine := false, false
		for _, l := range []string{"pod", "cluster", "service", "job", "redisfailover", "strimzi_io_cluster"} {
			if v := a.Labels[l]; v != "" {
				named = true
				mine = mine || strings.Contains(v, r.Name)
			}
		}
		if mine || !named {
			out = append(out, a)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Labels["alertname"] < out[j].Labels["alertname"] })
	return out
}

func formatValue(v float64, unit string) string {
	switch unit {
	case "bytes":
		const mi = 1 << 20
		return strconv.FormatFloat(v/mi, 'f', 1, 64) + " MiB"
	case "s":
		return strconv.FormatFloat(v, 'f', 1, 64) + " s"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// Sparkline geometry (SVG user units).
const (
	sparkW, sparkH, sparkPad = 240.0, 48.0, 2.0
)

// sparkline draws the points as an inline SVG polyline. Only numbers the
// code formats reach the markup, so it is safe as template.HTML; colours
// are presentation attributes, not style, so the page's CSP needs no
// 'unsafe-inline'.
func sparkline(pts []promPoint) template.HTML {
	var finite []promPoint
	for _, p := range pts {
		if !math.IsNaN(p.V) && !math.IsInf(p.V, 0) {
			finite = append(finite, p)
		}
	}
	if len(finite) == 0 {
		return template.HTML(`<svg class="spark" viewBox="0 0 240 48" width="240" height="48" role="img" aria-label="no data"><text x="4" y="28" fill="#888" font-size="12">no data</text></svg>`)
	}
	t0, t1 := finite[0].T, finite[len(finite)-1].T
	lo, hi := finite[0].V, finite[0].V
	for _, p := range finite {
		lo, hi = math.Min(lo, p.V), math.Max(hi, p.V)
	}
	if lo > 0 {
		// Charts of counts and sizes start at zero, so a flat series
		// is not drawn as a dramatic line.
		lo = 0
	}
	x := func(t time.Time) float64 {
		if !t1.After(t0) {
			return sparkW / 2
		}
		return sparkPad + (sparkW-2*sparkPad)*float64(t.Sub(t0))/float64(t1.Sub(t0))
	}
	y := func(v float64) float64 {
		if hi == lo {
			return sparkH / 2
		}
		return sparkH - sparkPad - (sparkH-2*sparkPad)*(v-lo)/(hi-lo)
	}
	var sb strings.Builder
	for i, p := range finite {
		if i > 0 {
			sb.WriteByte(' ')
		}
		fmt.Fprintf(&sb, "%.1f,%.1f", x(p.T), y(p.V))
	}
	return template.HTML(fmt.Sprintf(`<svg class="spark" viewBox="0 0 240 48" width="240" height="48" role="img" aria-label="%d points"><polyline fill="none" stroke="#2563eb" stroke-width="1.5" points="%s"/></svg>`, len(finite), sb.String()))
}
