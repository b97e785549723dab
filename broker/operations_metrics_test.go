package broker

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
)

// operationSeries gathers the operations collector into
// "name{service,operation}" → value.
func operationSeries(t *testing.T, b *Broker) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newOperationsCollector(b))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			out[f.GetName()+"{"+labels["service"]+","+labels["operation"]+"}"] = gaugeValue(m)
		}
	}
	return out
}

func gaugeValue(m *dto.Metric) float64 { return m.GetGauge().GetValue() }

func TestOperationMetricsShowStuckAndFailedOperations(t *testing.T) {
	g := NewWithT(t)
	e := newTestEnv(t)
	svc, _, err := catalog.Default().Find(catalog.PostgresServiceID, catalog.PostgresDevLiteID)
	g.Expect(err).NotTo(HaveOccurred())
	pgService := svc.Name

	// Nothing yet: every service and operation has its zero series.
	series := operationSeries(t, e.b)
	g.Expect(series).To(HaveKeyWithValue("strata_operations_in_progress{"+pgService+",provision}", 0.0))
	g.Expect(series).To(HaveKeyWithValue("strata_operations_past_deadline{"+pgService+",deprovision}", 0.0))

	_, err = e.b.Provision(e.ctx, instanceID, pgDetails(catalog.PostgresDevLiteID, ""), true)
	g.Expect(err).NotTo(HaveOccurred())
	e.clock.Advance(10 * time.Minute)
	series = operationSeries(t, e.b)
	g.Expect(series).To(HaveKeyWithValue("strata_operations_in_progress{"+pgService+",provision}", 1.0))
	g.Expect(series).To(HaveKeyWithValue("strata_operation_oldest_in_progress_seconds{"+pgService+",provision}", 600.0))
	g.Expect(series).To(HaveKeyWithValue("strata_operations_past_deadline{"+pgService+",provision}", 0.0))

	// Past the plan's maximum polling duration (30 minutes) and still in
	// progress: stuck.
	e.clock.Advance(25 * time.Minute)
	series = operationSeries(t, e.b)
	g.Expect(series).To(HaveKeyWithValue("strata_operations_past_deadline{"+pgService+",provision}", 1.0))

	// A failed provision counts as failed, not in progress.
	rec := e.record(t, instanceID)
	rec.Operation.State = provisioners.Failed
	g.Expect(e.b.Store.UpdateInstance(e.ctx, rec)).To(Succeed())
	series = operationSeries(t, e.b)
	g.Expect(series).To(HaveKeyWithValue("strata_operations_in_progress{"+pgService+",provision}", 0.0))
	g.Expect(series).To(HaveKeyWithValue("strata_operations_failed{"+pgService+",provision}", 1.0))
	g.Expect(series).To(HaveKeyWithValue("strata_operations_past_deadline{"+pgService+",provision}", 0.0))
}
