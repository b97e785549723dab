package broker

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"
)

// drillCollector exports the last restore drill of each instance, read at
// every scrape from the results ConfigMap, so every replica (not only the
// one running the drills) shows the same figures. Labelled by instance
// like the restorable window (restore_metrics.go): one series per
// instance with backups, bounded by the instances themselves; an
// instance's series go with its record.
type drillCollector struct {
	core      kubernetes.Interface
	namespace string
	log       *zap.Logger

	rpo, rto, objRPO, objRTO, interval, success, run, result, failures, drills *prometheus.Desc
}

func newDrillCollector(core kubernetes.Interface, namespace string, log *zap.Logger) *drillCollector {
	labels := []string{"instance_id", "service", "plan", "namespace"}
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, labels, nil) }
	return &drillCollector{
		core: core, namespace: namespace, log: log,
		rpo: d("strata_drill_last_rpo_seconds",
			"RPO measured by the last successful restore drill: when it chose its target, now minus the newest restorable point."),
		rto: d("strata_drill_last_rto_seconds",
			"RTO measured by the last successful restore drill: from applying the throwaway Cluster to PostgreSQL answering with the drill's marker."),
		objRPO:   d("strata_drill_rpo_objective_seconds", "The plan's RPO objective for restore drills."),
		objRTO:   d("strata_drill_rto_objective_seconds", "The plan's RTO objective for restore drills."),
		interval: d("strata_drill_interval_seconds", "Time between two restore drills of the instance."),
		success:  d("strata_drill_last_success_timestamp_seconds", "When the last successful restore drill finished (Unix seconds)."),
		run:      d("strata_drill_last_run_timestamp_seconds", "When the last restore drill finished, whatever its result (Unix seconds)."),
		result:   d("strata_drill_last_result", "1 when the last restore drill succeeded, 0 when it failed."),
		failures: d("strata_drill_failures_total", "Restore drills that failed."),
		drills:   d("strata_drills_total", "Restore drills run."),
	}
}

func (c *drillCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.rpo, c.rto, c.objRPO, c.objRTO, c.interval, c.success, c.run, c.result, c.failures, c.drills} {
		ch <- d
	}
}

func (c *drillCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	results, err := readDrillResults(ctx, c.core, c.namespace)
	if err != nil {
		c.log.Warn("drill metrics: read the results", zap.Error(err))
		ch <- prometheus.NewInvalidMetric(c.result, err)
		return
	}
	for _, m := range drillMetrics(c, results) {
		ch <- m
	}
}

// drillMetrics is the pure part of Collect.
func drillMetrics(c *drillCollector, results map[string]DrillResult) []prometheus.Metric {
	var out []prometheus.Metric
	gauge := func(d *prometheus.Desc, v float64, l []string) {
		out = append(out, prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...))
	}
	for _, r := range results {
		l := []string{r.InstanceID, r.Service, r.Plan, r.Namespace}
		if !r.LastSuccess.IsZero() {
			gauge(c.success, float64(r.LastSuccess.Unix()), l)
			gauge(c.rpo, r.LastRPO, l)
			gauge(c.rto, r.LastRTO, l)
		}
		gauge(c.run, float64(r.Finished.Unix()), l)
		ok := 0.0
		if r.Succeeded {
			ok = 1
		}
		gauge(c.result, ok, l)
		gauge(c.interval, r.IntervalSecs, l)
		gauge(c.objRPO, r.RPOObjectiveSecs, l)
		gauge(c.objRTO, r.RTOObjectiveSecs, l)
		out = append(out, prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(r.Failures), l...))
		out = append(out, prometheus.MustNewConstMetric(c.drills, prometheus.CounterValue, float64(r.Drills), l...))
	}
	return out
}
