//go:build linux

package kafkatest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/binding"
	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/kafka"
)

// drUser is the user the platform gives a tenant on the DR cluster (the
// target's Secret names its password): prefix ACLs on "<namespace>.", which
// is everything the mirror writes there (docs/kafka.md lists these rules).
func drUser(name, namespace string) *unstructured.Unstructured {
	rule := func(typ string, ops ...any) map[string]any {
		return map[string]any{"type": "allow", "host": "*", "operations": ops,
			"resource": map[string]any{"type": typ, "name": namespace + ".", "patternType": "prefix"}}
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": kafka.API, "kind": "KafkaUser",
		"metadata": map[string]any{"name": name, "namespace": "kafka-dr"},
		"spec": map[string]any{
			"authentication": map[string]any{"type": "scram-sha-512"},
			"authorization": map[string]any{"type": "simple", "acls": []any{
				rule("topic", "Create", "Read", "Write", "Describe", "DescribeConfigs", "AlterConfigs"),
				rule("group", "Read", "Describe"),
			}},
		},
	}}
}

// endOffsets sums a topic's end offsets per partition.
func endOffsets(ctx context.Context, adm *kadm.Client, topic string) (map[int32]int64, error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	var ferr error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			ferr = o.Err
		}
		out[o.Partition] = o.Offset
	})
	return out, ferr
}

func sum(m map[int32]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// A disaster-recovery mirror as the ha plan renders it, run by a Kafka
// Connect worker with MirrorMaker 2's connectors from the same Kafka
// release, between two real clusters with TLS and SCRAM on both sides
// (Strimzi's operator, which would run the worker, is stood in for by
// TranslateMirrorMaker2). It copies the instance's topics under the same
// names, translates the binding's consumer group offsets onto the DR
// cluster, and the documented failover works: producers stop, the lag
// reaches 0, the mirror stops, the binding's users are replayed on the DR
// cluster, and the application, with only the bootstrap address and CA
// changed, resumes its group where it was without losing a record and
// re-reading at most offset.lag.max records per partition. The failback
// subtest (failback_test.go) continues on the same clusters.
func TestDisasterRecoveryMirrorAndFailover(t *testing.T) {
	g := NewWithT(t)
	start := time.Now()

	// Two clusters at once: the instance's, three brokers with the
	// rendered Kafka config (replication factor 3, min ISR 2), and the DR
	// cluster, one broker (a DR cluster's size is the platform's).
	_, _, kafkaObj, _, _ := haObjects(t, nil)
	brokerCfg, err := BrokerConfig(kafkaObj)
	g.Expect(err).NotTo(HaveOccurred())
	var src *Cluster
	var dst *Broker
	var srcErr, dstErr error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); src, srcErr = StartCluster(3, brokerCfg) }()
	go func() { defer wg.Done(); dst, dstErr = Start() }()
	wg.Wait()
	if src != nil {
		defer src.Stop()
	}
	if dst != nil {
		defer dst.Stop()
	}
	g.Expect(srcErr).NotTo(HaveOccurred())
	g.Expect(dstErr).NotTo(HaveOccurred())
	t.Logf("source (3 brokers) and DR cluster serving after %s", time.Since(start).Round(time.Millisecond))

	// The instance as the broker renders it, its cluster's address being
	// the source broker's.
	const ns = "team-dr"
	svc := catalog.KafkaService()
	inst := provisioners.Instance{
		ID: newUUID(), Namespace: ns, Service: &svc, Plan: svc.PlanByName("ha"),
		Params: map[string]any{
			"topics":            []any{map[string]any{"name": "orders", "partitions": float64(3)}},
			"disaster_recovery": map[string]any{"target": "dr-test"},
		},
	}
	inst.Name = provisioners.ResourceName("kafka-", inst.ID)
	cfg := kafka.DefaultConfig()
	cfg.DisasterRecovery = []kafka.DRTarget{{
		Name: "dr-test", BootstrapServers: dst.Addr, Secret: "strata-kafka-dr", Username: "dr-{namespace}",
	}}
	engine := &kafka.Provisioner{Config: cfg}
	objs, err := engine.Build(inst)
	g.Expect(err).NotTo(HaveOccurred())
	var mm, mirrorUser, topicObj *unstructured.Unstructured
	for _, o := range objs {
		switch {
		case o.GetKind() == "KafkaMirrorMaker2":
			mm = o
		case o.GetKind() == "KafkaUser" && o.GetName() == kafka.MirrorUserName(inst):
			mirrorUser = o
		case o.GetKind() == "KafkaTopic":
			topicObj = o
		}
	}
	g.Expect(mm).NotTo(BeNil())
	g.Expect(mirrorUser).NotTo(BeNil())
	g.Expect(topicObj).NotTo(BeNil())
	// The rendered source address is the in-cluster Service; here it is
	// the source brokers (the only thing changed in the rendered object).
	mirrors, _, _ := unstructured.NestedSlice(mm.Object, "spec", "mirrors")
	g.Expect(unstructured.SetNestedField(mirrors[0].(map[string]any), src.Bootstrap, "source", "bootstrapServers")).To(Succeed())
	g.Expect(unstructured.SetNestedSlice(mm.Object, mirrors, "spec", "mirrors")).To(Succeed())

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	kube := NewKube()
	// Strimzi's part on the source: the topic, the cluster CA Secret, the
	// mirror's KafkaUser and the Secret the User Operator generates for it.
	g.Expect(CreateTopic(ctx, src.Admin, topicObj)).To(Succeed())
	kube.Secret(ns, kafka.ClusterName(inst)+"-cluster-ca-cert", map[string]string{"ca.crt": src.CAPEM})
	mirrorPW := randomToken(24)
	g.Expect(ApplyUser(ctx, src.Admin, mirrorUser, mirrorPW)).To(Succeed())
	kube.Secret(ns, kafka.MirrorUserName(inst), map[string]string{"password": mirrorPW})
	// The platform's part on the DR cluster: the tenant's user there, and
	// the Secret in the tenant's namespace with its password and the DR CA.
	drPW := randomToken(24)
	g.Expect(ApplyUser(ctx, dst.Admin, drUser("dr-"+ns, ns), drPW)).To(Succeed())
	kube.Secret(ns, "strata-kafka-dr", map[string]string{"ca.crt": dst.CAPEM, "password": drPW})

	// An application's binding, made by the broker's binder, its
	// KafkaUser applied as the User Operator would.
	binder := &binding.KafkaBinder{Kube: kube, Engine: engine}
	r, err := binder.Bind(ctx, inst, newUUID(), nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ReconcileUsers(ctx, kube, src.Admin)).To(Succeed())
	creds, err := binder.Credentials(ctx, inst, r)
	g.Expect(err).NotTo(HaveOccurred())
	// The binding carries the cluster's in-cluster Service address; the
	// test brokers stand in for it, as for the mirror's source above.
	b := map[string]string{}
	for k, v := range creds {
		b[k] = v.(string)
		if b[k] == engine.TargetOf(inst).BootstrapServers {
			b[k] = src.Bootstrap
		}
	}
	group := b["consumer-group"]
	g.Expect(group).To(Equal(kafka.TopicPrefix(inst) + "app"))
	topic := kafka.TopicName(inst, "orders")
	users := kube.ByKind("KafkaUser")
	g.Expect(users).To(HaveLen(1))
	appUser := users[0]

	dir := t.TempDir()
	m, err := TranslateMirrorMaker2(mm, kube, dir)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(m.Connectors).To(HaveLen(2))
	connect, err := StartConnect(m, dir)
	g.Expect(err).NotTo(HaveOccurred())
	defer connect.Stop()
	for name := range m.Connectors {
		// The source connector has tasks as soon as a topic matches; the
		// checkpoint connector once a group does (below).
		minTasks := 1
		if strings.HasSuffix(name, ".MirrorCheckpointConnector") {
			minTasks = 0
		}
		g.Expect(connect.WaitRunning(name, minTasks, 5*time.Minute)).To(Succeed())
	}
	t.Logf("MirrorMaker 2 connectors running after %s", time.Since(start).Round(time.Millisecond))

	// The application produces N records and consumes 600 of them,
	// committing its group's offsets on the source.
	const n, consumed = 1500, 600
	prod := clientFrom(t, b, kgo.RetryTimeout(time.Minute))
	produced := time.Now()
	g.Expect(produceKeyed(ctx, t, prod, topic, "r-", n)).To(Succeed())
	srcEnds, err := endOffsets(ctx, src.Admin, topic)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(sum(srcEnds)).To(BeEquivalentTo(n))

	cons := clientFrom(t, b, kgo.ConsumeTopics(topic), kgo.ConsumerGroup(group), kgo.RetryTimeout(time.Minute),
		kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxPartitionBytes(2000))
	seen := map[string]bool{}
	for len(seen) < consumed {
		fs := cons.PollRecords(ctx, consumed-len(seen))
		g.Expect(ctx.Err()).NotTo(HaveOccurred())
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
		g.Expect(cons.CommitUncommittedOffsets(ctx)).To(Succeed())
	}
	committed := time.Now()
	cons.Close() // leaves the group: MirrorMaker 2 syncs only idle groups' offsets
	srcCommitted, err := src.Admin.FetchOffsets(ctx, group)
	g.Expect(err).NotTo(HaveOccurred())
	var srcPos int64
	srcCommitted.Each(func(o kadm.OffsetResponse) { srcPos += o.At })
	g.Expect(srcPos).To(BeEquivalentTo(len(seen)))

	// Replication lag reaches 0: every record is on the DR cluster under
	// the same topic name (IdentityReplicationPolicy).
	var dstEnds map[int32]int64
	g.Eventually(func() int64 {
		dstEnds, _ = endOffsets(ctx, dst.Admin, topic)
		return sum(dstEnds)
	}).WithTimeout(3*time.Minute).WithPolling(200*time.Millisecond).Should(BeEquivalentTo(n), "records on the DR cluster")
	t.Logf("replication: all %d records on the DR cluster %s after the last was acknowledged", n, time.Since(produced).Round(time.Millisecond))
	g.Expect(dstEnds).To(Equal(srcEnds))

	// The group's offsets are checkpointed and written to the DR
	// cluster's group.
	var dstPos int64
	g.Eventually(func() int64 {
		o, err := dst.Admin.FetchOffsets(ctx, group)
		if err != nil {
			return -1
		}
		dstPos = 0
		o.Each(func(r kadm.OffsetResponse) { dstPos += r.At })
		return dstPos
	}).WithTimeout(3*time.Minute).WithPolling(500*time.Millisecond).Should(BeNumerically(">=", int64(consumed-kafka.OffsetLagMax*3)),
		"the group's translated offsets on the DR cluster")
	t.Logf("group offsets: %d on the source, %d translated onto the DR cluster %s after the commit", srcPos, dstPos, time.Since(committed).Round(time.Millisecond))
	g.Expect(dstPos).To(BeNumerically("<=", srcPos), "a translated offset past the committed one would skip records")

	// Failover (docs/kafka.md, Failover). Producers are stopped (above),
	// the lag is 0 (above), the mirror stops, the binding's KafkaUser is
	// replayed on the DR cluster with the password from its Secret, and
	// the application reconnects with its binding's keys: only the
	// bootstrap servers and the CA changed.
	connect.Stop()
	pwSecret, _, _ := unstructured.NestedString(appUser.Object, "spec", "authentication", "password", "valueFrom", "secretKeyRef", "name")
	g.Expect(ApplyUser(ctx, dst.Admin, appUser, kube.SecretData(ns, pwSecret)["password"])).To(Succeed())
	failedOver := time.Now()
	drBinding := map[string]string{}
	changed := []string{}
	for k, v := range b {
		switch v {
		case src.Bootstrap:
			v = dst.Addr
			changed = append(changed, k)
		case src.CAPEM:
			v = dst.CAPEM
			changed = append(changed, k)
		}
		drBinding[k] = v
	}
	sort.Strings(changed)
	t.Logf("binding keys changed for the failover: %s", strings.Join(changed, ", "))
	g.Expect(changed).To(ContainElements("bootstrap-servers", "bootstrap.servers", "ca.crt", "spring.kafka.bootstrap-servers"))
	resume := clientFrom(t, drBinding, kgo.ConsumeTopics(topic), kgo.ConsumerGroup(group), kgo.RetryTimeout(time.Minute),
		kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	again := map[string]bool{}
	reread := 0
	for len(seen)+len(again) < n {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Minute)
		fs := resume.PollFetches(pctx)
		pcancel()
		g.Expect(fs.Err0()).NotTo(HaveOccurred(), "consuming on the DR cluster: have %d of %d", len(seen)+len(again), n)
		fs.EachRecord(func(r *kgo.Record) {
			v := string(r.Value)
			if seen[v] {
				reread++
				return
			}
			again[v] = true
		})
	}
	g.Expect(resume.CommitUncommittedOffsets(ctx)).To(Succeed())
	// Nothing lost: every record not consumed on the source is read on
	// the DR cluster; the re-read tail is within offset.lag.max per
	// partition (and the group did not restart from the beginning).
	g.Expect(len(seen) + len(again)).To(Equal(n))
	g.Expect(reread).To(BeNumerically("<=", kafka.OffsetLagMax*3))
	g.Expect(int64(reread)).To(Equal(srcPos - dstPos))
	t.Logf("failover: the group resumed on the DR cluster and read the %d remaining records in %s, re-reading %d already consumed (%d partitions, offset.lag.max %d)",
		len(again), time.Since(failedOver).Round(time.Millisecond), reread, len(srcEnds), kafka.OffsetLagMax)

	// The application works on the DR cluster with the same binding: it
	// produces, and its group consumes and commits.
	const onDR = 200
	dprod := clientFrom(t, drBinding, kgo.RetryTimeout(time.Minute))
	for i := range onDR {
		v := fmt.Sprintf("dr-%04d", i)
		g.Expect(dprod.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(v), Value: []byte(v)}).FirstErr()).To(Succeed())
	}
	drRead := 0
	for drRead < onDR {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Minute)
		fs := resume.PollFetches(pctx)
		pcancel()
		g.Expect(fs.Err0()).NotTo(HaveOccurred())
		fs.EachRecord(func(r *kgo.Record) {
			if strings.HasPrefix(string(r.Value), "dr-") {
				drRead++
			}
		})
	}
	g.Expect(resume.CommitUncommittedOffsets(ctx)).To(Succeed())
	resume.Close()
	dprod.Close()

	t.Run("failback", func(t *testing.T) {
		failback(t, ctx, src, dst, kube, mm, b, drBinding, topic, group)
	})
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}

// produceKeyed produces n records to topic, key and value "<prefix><i>"
// (four digits), and waits until all are acknowledged; a record refused is
// a test error.
func produceKeyed(ctx context.Context, t *testing.T, c *kgo.Client, topic, prefix string, n int) error {
	for i := range n {
		v := fmt.Sprintf("%s%04d", prefix, i)
		c.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(v), Value: []byte(v)}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Errorf("produce %s: %v", v, err)
			}
		})
	}
	return c.Flush(ctx)
}
