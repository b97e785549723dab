package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners/kafka"
	"github.com/strata-dev/strata/provisioners/postgres"
	"github.com/strata-dev/strata/provisioners/redis"
)

// Prometheus reads the instance page's metrics and alerts with
// client_golang's Prometheus HTTP API client (query_range, alerts).
type Prometheus struct {
	api promv1.API
}

// NewPrometheus makes the page's client of the Prometheus at base
// ("http://prometheus.monitoring:9090"). Every request gives up after
// timeout, and an answer is read up to maxPromResponse only.
func NewPrometheus(base string, timeout time.Duration) (*Prometheus, error) {
	c, err := promapi.NewClient(promapi.Config{
		Address: base,
		Client:  &http.Client{Timeout: timeout, Transport: boundedBody{next: promapi.DefaultRoundTripper}},
	})
	if err != nil {
		return nil, err
	}
	return &Prometheus{api: promv1.NewAPI(c)}, nil
}

// promPoint is one sample of a range query.
type promPoint struct {
	T time.Time
	V float64
}

// promAlert is one pending or firing alert.
type promAlert struct {
	Labels      map[string]string
	Annotations map[string]string
	State       string
	ActiveAt    time.Time
}

// maxPromResponse bounds what is read from Prometheus: a page needs a
// few series of an hour at a minute's step.
const maxPromResponse = 4 << 20

// boundedBody cuts every response body at maxPromResponse (the client
// reads bodies whole, with no limit of its own): a runaway or hostile
// answer then fails to decode instead of filling the broker's memory.
type boundedBody struct{ next http.RoundTripper }

func (b boundedBody) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := b.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.LimitReader(resp.Body, maxPromResponse), resp.Body}
	return resp, nil
}

// QueryRange runs a range query and returns the first series' points
// (the page's queries aggregate to one series).
func (p *Prometheus) QueryRange(ctx context.Context, query string, start, end time.Time, step time.Duration) ([]promPoint, error) {
	v, _, err := p.api.QueryRange(ctx, query, promv1.Range{Start: start, End: end, Step: step})
	if err != nil {
		return nil, fmt.Errorf("prometheus: %w", err)
	}
	m, ok := v.(model.Matrix)
	if !ok {
		return nil, fmt.Errorf("prometheus: a range query answered %s", v.Type())
	}
	if len(m) == 0 {
		return nil, nil
	}
	out := make([]promPoint, 0, len(m[0].Values))
	for _, s := range m[0].Values {
		out = append(out, promPoint{T: s.Timestamp.Time().UTC(), V: float64(s.Value)})
	}
	return out, nil
}

// Alerts returns every alert Prometheus has pending or firing.
func (p *Prometheus) Alerts(ctx context.Context) ([]promAlert, error) {
	res, err := p.api.Alerts(ctx)
	if err != nil {
		return nil, fmt.Errorf("prometheus: %w", err)
	}
	out := make([]promAlert, 0, len(res.Alerts))
	for _, a := range res.Alerts {
		out = append(out, promAlert{
			Labels: labelMap(a.Labels), Annotations: labelMap(a.Annotations),
			State: string(a.State), ActiveAt: a.ActiveAt,
		})
	}
	return out, nil
}

func labelMap(ls model.LabelSet) map[string]string {
	out := make(map[string]string, len(ls))
	for k, v := range ls {
		out[string(k)] = string(v)
	}
	return out
}

// pageQuery is one chart of the page.
type pageQuery struct {
	Title, Unit, Query string
}

// promString quotes s as a PromQL string literal (Go's quoting is
// PromQL's for the names here, which are DNS labels).
func promString(s string) string { return strconv.Quote(s) }

// podsOf is a PromQL selector of the instance's pods in its namespace.
func podsOf(namespace, podRegex string) string {
	return fmt.Sprintf(`namespace=%s,pod=~%s`, promString(namespace), promString(podRegex))
}

// pageQueries are the charts of an instance: a few signals the tenant
// acts on, from the exporters the plans ship (CloudNativePG's, the Redis
// exporter, Strimzi's JMX rules). Instances on shared clusters have no
// pods of their own to select, so they get no charts.
func pageQueries(svc *catalog.Service, plan *catalog.Plan, r *InstanceRecord) []pageQuery {
	inst := pageInstance(r)
	switch svc.Engine {
	case catalog.EnginePostgres:
		if plan.Postgres == nil || plan.Postgres.Shared {
			return nil
		}
		sel := podsOf(r.Namespace, regexp.QuoteMeta(postgres.NamesOf(inst).Cluster)+"-[0-9]+")
		return []pageQuery{
			{Title: "connections", Query: "sum(cnpg_backends_total{" + sel + "})"},
			{Title: "replication lag", Unit: "s", Query: "max(cnpg_pg_replication_lag{" + sel + "})"},
			{Title: "database size", Unit: "bytes", Query: "max(sum by (pod) (cnpg_pg_database_size_bytes{" + sel + "}))"},
		}
	case catalog.EngineRedis:
		sel := podsOf(r.Namespace, regexp.QuoteMeta(redis.NamesOf(inst).StatefulSet)+"-[0-9]+")
		return []pageQuery{
			{Title: "connected clients", Query: "sum(redis_connected_clients{" + sel + "})"},
			{Title: "memory used", Unit: "bytes", Query: "max(redis_memory_used_bytes{" + sel + "})"},
		}
	case catalog.EngineKafka:
		if plan.Kafka == nil || !plan.Kafka.Dedicated {
			return nil
		}
		inst.Plan = plan
		sel := podsOf(r.Namespace, regexp.QuoteMeta(kafka.ClusterName(inst))+"-.*")
		return []pageQuery{
			{Title: "messages in per second", Query: "sum(rate(kafka_server_brokertopicmetrics_messagesin_total{" + sel + "}[5m]))"},
			{Title: "under-replicated partitions", Query: "sum(kafka_server_replicamanager_underreplicatedpartitions{" + sel + "})"},
		}
	}
	return nil
}

// pageRange is the span the charts cover, at pageStep.
const (
	pageRange = time.Hour
	pageStep  = time.Minute
)

// readPrometheus runs the page's queries and reads the alerts. A failing
// query is reported on its chart, not as a failed page.
func (p *Prometheus) readPrometheus(ctx context.Context, queries []pageQuery, now time.Time) *pagePrometheus {
	out := &pagePrometheus{}
	for _, q := range queries {
		pts, err := p.QueryRange(ctx, q.Query, now.Add(-pageRange), now, pageStep)
		s := pageSeriesInput{Title: q.Title, Unit: q.Unit, Points: pts}
		if err != nil {
			s.Err = promError(err)
		}
		out.Series = append(out.Series, s)
	}
	alerts, err := p.Alerts(ctx)
	if err != nil {
		out.Err = "alerts could not be read: " + promError(err)
	}
	out.Alerts = alerts
	return out
}

// promError says what failed without Prometheus's address (the page is
// for tenants; the broker's log has the detail).
func promError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return "Prometheus did not answer in time"
		}
		return "Prometheus could not be reached"
	}
	return strings.TrimPrefix(err.Error(), "prometheus: ")
}
