//go:build linux

package advisor_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/strata-dev/strata/binding"
	"github.com/strata-dev/strata/broker/advisor"
	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/integration/kafkatest"
	"github.com/strata-dev/strata/internal/load"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/kafka"
)

// TestKafkaAdvisorOnRealBroker: on a real Kafka broker configured as
// Strata's shared cluster (SASL_SSL, SCRAM, ACLs), a binding's consumer
// reads 100 of 500 records, commits and stops; the advisor, connecting
// with nothing but the binding's keys, reports the stopped group's lag.
func TestKafkaAdvisorOnRealBroker(t *testing.T) {
	g := NewWithT(t)
	br, err := kafkatest.Start()
	g.Expect(err).NotTo(HaveOccurred(), "starting the Kafka broker")
	defer br.Stop()
	t.Logf("Kafka %s serving after %s (jars fetched in %s, 0 = cached)", kafkatest.KafkaVersion, br.Started.Round(time.Millisecond), br.JarFetch.Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The shared cluster as Strata sees it, Strimzi's operators played by
	// kafkatest: a dev-lite instance with a topic, and a binding.
	cfg := kafka.DefaultConfig()
	cfg.Shared.BootstrapServers = br.Addr
	kube := kafkatest.NewKube()
	kube.Secret(cfg.Shared.Namespace, cfg.Shared.Name+"-cluster-ca-cert", map[string]string{"ca.crt": br.CAPEM})
	engine := &kafka.Provisioner{Config: cfg}
	svc := catalog.KafkaService()
	id := "7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d"
	inst := provisioners.Instance{ID: id, Name: provisioners.ResourceName("kafka-", id), Namespace: "team-a",
		Service: &svc, Plan: svc.PlanByName("dev-lite"), Params: map[string]any{"topics": []any{map[string]any{"name": "orders"}}}}
	objs, err := engine.Build(inst)
	g.Expect(err).NotTo(HaveOccurred())
	for _, o := range objs {
		if o.GetKind() == "KafkaTopic" {
			g.Expect(kafkatest.CreateTopic(ctx, br.Admin, o)).To(Succeed())
		}
	}
	binder := &binding.KafkaBinder{Kube: kube, Engine: engine}
	res, err := binder.Bind(ctx, inst, "c0ffee00-0000-4000-8000-000000000001", nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(kafkatest.ReconcileUsers(ctx, kube, br.Admin)).To(Succeed())
	p, err := binder.Ready(ctx, inst, res)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.State).To(Equal(provisioners.Succeeded), p.Description)
	creds, err := binder.Credentials(ctx, inst, res)
	g.Expect(err).NotTo(HaveOccurred())
	b := load.Binding{}
	for k, v := range creds {
		b[k] = fmt.Sprint(v)
	}
	base, err := load.KafkaClientOpts(b)
	g.Expect(err).NotTo(HaveOccurred())
	topic, group := b["strata.kafka.topics.orders"], b["consumer-group"]
	g.Expect(topic).NotTo(BeEmpty())

	producer, err := kgo.NewClient(append(base, kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	g.Expect(err).NotTo(HaveOccurred())
	recs := make([]*kgo.Record, 500)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Partition: 0, Value: fmt.Appendf(nil, "order %d", i)}
	}
	g.Expect(producer.ProduceSync(ctx, recs...).FirstErr()).To(Succeed())
	producer.Close()

	// The consumer reads, commits exactly 100 records, and stops.
	consumer, err := kgo.NewClient(append(base, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())...)
	g.Expect(err).NotTo(HaveOccurred())
	var got []*kgo.Record
	for len(got) < 100 {
		fs := consumer.PollFetches(ctx)
		g.Expect(fs.Err0()).NotTo(HaveOccurred())
		got = append(got, fs.Records()...)
	}
	g.Expect(consumer.CommitRecords(ctx, got[:100]...)).To(Succeed())
	consumer.Close() // leaves the group: it is Empty now

	cl, err := kgo.NewClient(base...)
	g.Expect(err).NotTo(HaveOccurred())
	defer cl.Close()
	in, err := advisor.CollectKafka(ctx, kadm.NewClient(cl), b["topic-prefix"], b["topic-prefix"])
	g.Expect(err).NotTo(HaveOccurred())
	rep := advisor.AdviseKafka(in, advisor.KafkaOptions{}, time.Now())
	var text strings.Builder
	g.Expect(rep.WriteText(&text)).To(Succeed())
	t.Logf("%s", text.String())

	lag := rep.Find(advisor.KindConsumerLag, group)
	g.Expect(lag).To(HaveLen(1), "the stopped group's lag is reported")
	g.Expect(lag[0].Severity).To(Equal(advisor.Critical))
	g.Expect(lag[0].Metrics["total_lag"]).To(BeNumerically("==", 400))
	g.Expect(lag[0].Metrics["members"]).To(BeNumerically("==", 0))
	g.Expect(lag[0].Summary).To(ContainSubstring(topic + "-0: 400 behind (committed 100, end 500)"))
	g.Expect(in.Brokers).To(HaveLen(1))
	g.Expect(in.Partitions).To(HaveLen(1), "the instance's one topic, one partition on dev-lite")
	g.Expect(rep.Find(advisor.KindPartitionBalance, "")).To(BeEmpty(), "one broker is always balanced")
}
