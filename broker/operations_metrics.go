package broker

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/strata-dev/strata/provisioners"
)

// operationsCollector exports the state of the broker's operations, read
// from its records at every scrape: what the broker's alert rules watch
// (charts/strata-broker/rules/broker.rules.yaml). Gauges from the records
// rather than counters kept in memory, so every replica answers the same,
// a restart loses nothing, and an operation stuck since before the last
// restart still shows. Labels are bounded: service and operation type.
type operationsCollector struct {
	b                                     *Broker
	inProgress, pastDeadline, failed, age *prometheus.Desc
}

func newOperationsCollector(b *Broker) *operationsCollector {
	labels := []string{"service", "operation"}
	return &operationsCollector{
		b: b,
		inProgress: prometheus.NewDesc("strata_operations_in_progress",
			"Instance and binding operations in progress.", labels, nil),
		pastDeadline: prometheus.NewDesc("strata_operations_past_deadline",
			"Operations still in progress after their deadline (the plan's maximum polling duration): stuck.", labels, nil),
		failed: prometheus.NewDesc("strata_operations_failed",
			"Instances and bindings whose last operation failed.", labels, nil),
		age: prometheus.NewDesc("strata_operation_oldest_in_progress_seconds",
			"Age of the oldest operation in progress.", labels, nil),
	}
}

func (c *operationsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.inProgress, c.pastDeadline, c.failed, c.age} {
		ch <- d
	}
}

func (c *operationsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	insts, err := c.b.Store.ListInstances(ctx)
	if err != nil {
		c.b.Log.Warn("operation metrics: list instances", zap.Error(err))
		ch <- prometheus.NewInvalidMetric(c.inProgress, err)
		return
	}
	binds, err := c.b.Store.ListBindings(ctx)
	if err != nil {
		c.b.Log.Warn("operation metrics: list bindings", zap.Error(err))
		ch <- prometheus.NewInvalidMetric(c.inProgress, err)
		return
	}
	type key struct{ service, op string }
	serviceOf := map[string]string{}
	inProgress, past, failed := map[key]int{}, map[key]int{}, map[key]int{}
	oldest := map[key]time.Duration{}
	now := c.b.now()
	count := func(k key, op Operation, deleted bool) {
		switch {
		case op.State == provisioners.InProgress:
			inProgress[k]++
			if age := now.Sub(op.Started); age > oldest[k] {
				oldest[k] = age
			}
			if !op.Deadline.IsZero() && now.After(op.Deadline) {
				past[k]++
			}
		case op.State == provisioners.Failed && !deleted:
			failed[k]++
		}
	}
	for _, r := range insts {
		service := "unknown"
		if svc, _, err := c.b.Catalog.Find(r.ServiceID, r.PlanID); err == nil {
			service = svc.Name
		}
		serviceOf[r.ID] = service
		count(key{service, string(r.Operation.Type)}, r.Operation, r.Deleted)
	}
	for _, br := range binds {
		service, ok := serviceOf[br.InstanceID]
		if !ok {
			service = "unknown"
		}
		count(key{service, string(br.Operation.Type)}, br.Operation, br.Deleted)
	}
	// Every service and operation type has its series, zero or not, so an
	// alert on "> 0" resolves rather than going stale; records of a
	// service no longer in the catalog add theirs.
	keys := map[key]bool{}
	for _, t := range []OpType{OpProvision, OpUpdate, OpDeprovision, OpBind, OpUnbind} {
		for _, svc := range c.b.Catalog.Services {
			keys[key{svc.Name, string(t)}] = true
		}
	}
	for _, m := range []map[key]int{inProgress, failed} {
		for k := range m {
			keys[k] = true
		}
	}
	for k := range keys {
		ch <- prometheus.MustNewConstMetric(c.inProgress, prometheus.GaugeValue, float64(inProgress[k]), k.service, k.op)
		ch <- prometheus.MustNewConstMetric(c.pastDeadline, prometheus.GaugeValue, float64(past[k]), k.service, k.op)
		ch <- prometheus.MustNewConstMetric(c.failed, prometheus.GaugeValue, float64(failed[k]), k.service, k.op)
		ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, oldest[k].Seconds(), k.service, k.op)
	}
}
