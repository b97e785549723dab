package broker

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/strata-dev/strata/provisioners"
)

// restoreCollector exports each live instance's restorable window, read
// at every scrape from the same status GET instance shows: how far back
// and up to when it can be restored, so an alert can say that backups
// stopped (the first end not moving, the last falling behind). One series
// per instance with backups, labelled by its id: the one place the
// broker's metrics have an instance label, bounded by the instances
// themselves. A scrape reads two objects per such instance.
type restoreCollector struct {
	b           *Broker
	first, last *prometheus.Desc
}

func newRestoreCollector(b *Broker) *restoreCollector {
	labels := []string{"instance_id", "service", "plan", "namespace"}
	return &restoreCollector{
		b: b,
		first: prometheus.NewDesc("strata_restorable_window_first_timestamp_seconds",
			"Earliest time the instance can be restored to (Unix seconds).", labels, nil),
		last: prometheus.NewDesc("strata_restorable_window_last_timestamp_seconds",
			"Latest time the instance can surely be restored to (Unix seconds): archive_timeout behind now while WAL archiving works.", labels, nil),
	}
}

func (c *restoreCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.first
	ch <- c.last
}

func (c *restoreCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	insts, err := c.b.Store.ListInstances(ctx)
	if err != nil {
		c.b.Log.Warn("restore metrics: list instances", zap.Error(err))
		ch <- prometheus.NewInvalidMetric(c.first, err)
		return
	}
	for _, rec := range insts {
		if rec.Deleted || (rec.Operation.Type == OpProvision && rec.Operation.State != provisioners.Succeeded) {
			continue
		}
		inst, eng, err := c.b.instanceOf(rec)
		if err != nil {
			continue
		}
		r, ok := eng.Provisioner.(provisioners.Restorer)
		if !ok || len(r.WindowRefs(inst)) == 0 {
			continue
		}
		w, ok, err := c.b.restorableWindow(ctx, rec, inst, r)
		if err != nil {
			c.b.Log.Warn("restore metrics: read the window", zap.String("instance", rec.ID), zap.Error(err))
			continue
		}
		if !ok {
			continue
		}
		labels := []string{rec.ID, inst.Service.Name, inst.Plan.Name, rec.Namespace}
		ch <- prometheus.MustNewConstMetric(c.first, prometheus.GaugeValue, float64(w.First.Unix()), labels...)
		ch <- prometheus.MustNewConstMetric(c.last, prometheus.GaugeValue, float64(w.Last.Unix()), labels...)
	}
}
