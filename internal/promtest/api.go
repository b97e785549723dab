package promtest

import (
	"context"
	"fmt"
	"net/http"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// API reads a Prometheus's HTTP API for a test, with client_golang's
// client, in the plain shapes the tests compare (label maps, values as
// text).
type API struct{ v1 promv1.API }

// NewAPI is the API of the Prometheus at base ("http://127.0.0.1:9090");
// each request gives up after 15 s (a test polls again).
func NewAPI(base string) (*API, error) {
	c, err := promapi.NewClient(promapi.Config{Address: base, Client: &http.Client{Timeout: 15 * time.Second}})
	if err != nil {
		return nil, err
	}
	return &API{v1: promv1.NewAPI(c)}, nil
}

// Sample is one series of an instant query's vector.
type Sample struct {
	Metric map[string]string
	// Value is the sample as Prometheus writes it ("1", "0.5", "NaN").
	Value string
}

// Query runs an instant query that answers a vector.
func (a *API) Query(ctx context.Context, expr string) ([]Sample, error) {
	v, _, err := a.v1.Query(ctx, expr, time.Now())
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", expr, err)
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("query %s answered %s, not a vector", expr, v.Type())
	}
	out := make([]Sample, len(vec))
	for i, s := range vec {
		out[i] = Sample{Metric: labels(model.LabelSet(s.Metric)), Value: s.Value.String()}
	}
	return out, nil
}

// Alert is one pending or firing alert.
type Alert struct {
	Labels   map[string]string
	State    string
	ActiveAt time.Time
}

// Alerts are the pending and firing alerts.
func (a *API) Alerts(ctx context.Context) ([]Alert, error) {
	res, err := a.v1.Alerts(ctx)
	if err != nil {
		return nil, fmt.Errorf("alerts: %w", err)
	}
	out := make([]Alert, len(res.Alerts))
	for i, al := range res.Alerts {
		out[i] = Alert{Labels: labels(al.Labels), State: string(al.State), ActiveAt: al.ActiveAt}
	}
	return out, nil
}

// AlertState is the state of alert among the series whose labels include
// match: "firing" when any fires, else "pending" when any is, else ""
// (inactive).
func (a *API) AlertState(ctx context.Context, alert string, match map[string]string) (string, error) {
	alerts, err := a.Alerts(ctx)
	if err != nil {
		return "", err
	}
	state := ""
	for _, al := range alerts {
		if al.Labels["alertname"] != alert || !includes(al.Labels, match) {
			continue
		}
		if al.State == "firing" || state == "" {
			state = al.State
		}
	}
	return state, nil
}

// Target is one active scrape target.
type Target struct {
	ScrapePool, ScrapeURL, Health, LastError string
}

// ActiveTargets are the targets Prometheus scrapes.
func (a *API) ActiveTargets(ctx context.Context) ([]Target, error) {
	res, err := a.v1.Targets(ctx)
	if err != nil {
		return nil, fmt.Errorf("targets: %w", err)
	}
	out := make([]Target, len(res.Active))
	for i, tg := range res.Active {
		out[i] = Target{ScrapePool: tg.ScrapePool, ScrapeURL: tg.ScrapeURL, Health: string(tg.Health), LastError: tg.LastError}
	}
	return out, nil
}

// RuleGroupFiles are the loaded rule groups' names with their files.
func (a *API) RuleGroupFiles(ctx context.Context) (map[string]string, error) {
	res, err := a.v1.Rules(ctx)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	out := make(map[string]string, len(res.Groups))
	for _, g := range res.Groups {
		out[g.Name] = g.File
	}
	return out, nil
}

func labels(ls model.LabelSet) map[string]string {
	out := make(map[string]string, len(ls))
	for k, v := range ls {
		out[string(k)] = string(v)
	}
	return out
}

func includes(ls, match map[string]string) bool {
	for k, v := range match {
		if ls[k] != v {
			return false
		}
	}
	return true
}
