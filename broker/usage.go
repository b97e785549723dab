package broker

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// usageCollector exports what each tenant holds, read from the broker's
// records at every scrape (any replica answers the same): the basis of
// cost allocation (docs/tenancy.md has the recording rules and the cost
// model). Labels are bounded: tenants, services and plans, never ids.
type usageCollector struct {
	b                                      *Broker
	instances, cpu, memory, storage, binds *prometheus.Desc
	topics, partitions                     *prometheus.Desc
}

func newUsageCollector(b *Broker) *usageCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("strata_tenant_"+name, help, labels, nil)
	}
	return &usageCollector{
		b:          b,
		instances:  d("instances", "Instances a tenant holds, by service and plan.", "tenant", "service", "plan"),
		cpu:        d("cpu_cores", "CPU the tenant's instances request, in cores, by service and plan.", "tenant", "service", "plan"),
		memory:     d("memory_bytes", "Memory the tenant's instances request, by service and plan.", "tenant", "service", "plan"),
		storage:    d("storage_bytes", "Volume storage the tenant's instances request, by service and plan.", "tenant", "service", "plan"),
		binds:      d("bindings", "Bindings of the tenant's instances.", "tenant", "service"),
		topics:     d("topics", "Kafka topics the tenant's instances hold, by service and plan.", "tenant", "service", "plan"),
		partitions: d("partitions", "Partitions of those topics (what a shared cluster's cost is split by).", "tenant", "service", "plan"),
	}
}

func (c *usageCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.instances, c.cpu, c.memory, c.storage, c.binds, c.topics, c.partitions} {
		ch <- d
	}
}

func (c *usageCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recs, err := c.b.Store.ListInstances(ctx)
	if err != nil {
		c.b.Log.Warn("usage metrics: list instances", zap.Error(err))
		ch <- prometheus.NewInvalidMetric(c.instances, err)
		return
	}
	type plan struct{ tenant, service, plan string }
	type svc struct{ tenant, service string }
	count := map[plan]int{}
	var cpu, mem, sto = map[plan]float64{}, map[plan]float64{}, map[plan]float64{}
	topics, partitions := map[plan]int{}, map[plan]int{}
	serviceOf := map[string]svc{}
	for _, r := range recs {
		if r.Deleted {
			continue
		}
		u, err := c.b.usageOf(r)
		if err != nil {
			continue
		}
		serviceOf[r.ID] = svc{r.Namespace, u.Service}
		k := plan{r.Namespace, u.Service, u.Plan}
		count[k]++
		cpu[k] += u.Size.CPU.AsApproximateFloat64()
		mem[k] += u.Size.Memory.AsApproximateFloat64()
		sto[k] += u.Size.Storage.AsApproximateFloat64()
		if u.Size.Topics > 0 {
			p := plan{r.Namespace, u.Service, u.Plan}
			topics[p] += u.Size.Topics
			partitions[p] += u.Size.Partitions
		}
	}
	for k, n := range count {
		ch <- prometheus.MustNewConstMetric(c.instances, prometheus.GaugeValue, float64(n), k.tenant, k.service, k.plan)
	}
	for k := range cpu {
		ch <- prometheus.MustNewConstMetric(c.cpu, prometheus.GaugeValue, cpu[k], k.tenant, k.service, k.plan)
		ch <- prometheus.MustNewConstMetric(c.memory, prometheus.GaugeValue, mem[k], k.tenant, k.service, k.plan)
		ch <- prometheus.MustNewConstMetric(c.storage, prometheus.GaugeValue, sto[k], k.tenant, k.service, k.plan)
	}
	for k, n := range topics {
		ch <- prometheus.MustNewConstMetric(c.topics, prometheus.GaugeValue, float64(n), k.tenant, k.service, k.plan)
		ch <- prometheus.MustNewConstMetric(c.partitions, prometheus.GaugeValue, float64(partitions[k]), k.tenant, k.service, k.plan)
	}
	binds, err := c.b.Store.ListBindings(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.binds, err)
		return
	}
	bcount := map[svc]int{}
	for _, br := range binds {
		if k, ok := serviceOf[br.InstanceID]; ok && !br.Deleted {
			bcount[k]++
		}
	}
	for k, n := range bcount {
		ch <- prometheus.MustNewConstMetric(c.binds, prometheus.GaugeValue, float64(n), k.tenant, k.service)
	}
}
