package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners/kafka"
	"github.com/strata-dev/strata/provisioners/postgres"
	"github.com/strata-dev/strata/provisioners/redis"
)

// Prometheus reads the instance page's metrics and alerts over the
// Prometheus HTTP API (/api/v1/query_range, /api/v1/alerts).
type Prometheus struct {
	// URL is Prometheus's base URL ("http://prometheus.monitoring:9090").
	URL    *url.URL
	Client *http.Client
}

// promPoint is one sample of a range query.
type promPoint struct {
	T time.Time
	V float64
}

// promAlert is one alert of /api/v1/alerts.
type promAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
	ActiveAt    time.Time         `json:"activeAt"`
}

// maxPromResponse bounds what is read from Prometheus: a page needs a
// few series of an hour at a minute's step.
const maxPromResponse = 4 << 20

func (p *Prometheus) get(ctx context.Context, path string, q url.Values, into any) error {
	u := p.URL.JoinPath(path)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := p.Client.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPromResponse))
	if err != nil {
		return err
	}
	var env struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("prometheus answered %s with no API response", resp.Status)
	}
	if env.Status != "success" {
		return fmt.Errorf("prometheus: %s", env.Error)
	}
	return json.Unmarshal(env.Data, into)
}

// QueryRange runs a range query and returns the first series' points
// (the page's queries aggregate to one series).
func (p *Prometheus) QueryRange(ctx context.Context, query string, start, end time.Time, step time.Duration) ([]promPoint, error) {
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Values [][2]any `json:"values"`
		} `json:"result"`
	}
	err := p.get(ctx, "api/v1/query_range", url.Values{
		"query": {query},
		"start": {strconv.FormatInt(start.Unix(), 10)},
		"end":   {strconv.FormatInt(end.Unix(), 10)},
		"step":  {strconv.Itoa(int(step.Seconds()))},
	}, &data)
	if err != nil {
		return nil, err
	}
	if data.ResultType != "matrix" {
		return nil, fmt.Errorf("prometheus: a range query answered %q", data.ResultType)
	}
	if len(data.Result) == 0 {
		return nil, nil
	}
	var out []promPoint
	for _, v := range data.Result[0].Values {
		ts, ok1 := v[0].(float64)
		s, ok2 := v[1].(string)
		if !ok1 || !ok2 {
			return nil, errors.New("prometheus: a sample is not [time, \"value\"]")
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("prometheus: sample %q: %w", s, err)
		}
		sec := int64(ts)
		out = append(out, promPoint{T: time.Unix(sec, int64((ts-float64(sec))*1e9)).UTC(), V: f})
	}
	return out, nil
}

// Alerts returns every alert Prometheus has pending or firing.
func (p *Prometheus) Alerts(ctx context.Context) ([]promAlert, error) {
	var data struct {
		Alerts []promAlert `json:"alerts"`
	}
	if err := p.get(ctx, "api/v1/alerts", nil, &data); err != nil {
		return nil, err
	}
	return data.Alerts, nil
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
