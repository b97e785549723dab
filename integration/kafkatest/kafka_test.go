//go:build linux

package kafkatest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/strata-dev/strata/binding"
	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/kafka"
)

var (
	brokerOnce sync.Once
	broker     *Broker
	brokerErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if broker != nil {
		broker.Stop()
	}
	os.Exit(code)
}

// sharedBroker starts the package's broker on first use.
func sharedBroker(t *testing.T) *Broker {
	t.Helper()
	brokerOnce.Do(func() {
		broker, brokerErr = Start()
		if brokerErr == nil {
			fmt.Printf("kafkatest: Kafka %s jars fetched in %s (0 = cached), broker serving after %s\n",
				KafkaVersion, broker.JarFetch.Round(time.Millisecond), broker.Started.Round(time.Millisecond))
		}
	})
	if brokerErr != nil {
		t.Fatalf("starting the Kafka broker: %v", brokerErr)
	}
	return broker
}

// env is the shared cluster as Strata sees it: the broker as the shared
// cluster's TLS listener, an in-memory API server holding its CA Secret,
// the Kafka engine and binder, and Strimzi's operators played by this
// package.
type env struct {
	br     *Broker
	kube   *Kube
	engine *kafka.Provisioner
	binder *binding.KafkaBinder
}

func newEnv(t *testing.T) *env {
	br := sharedBroker(t)
	cfg := kafka.DefaultConfig()
	cfg.Shared.BootstrapServers = br.Addr
	e := &env{br: br, kube: NewKube(), engine: &kafka.Provisioner{Config: cfg}}
	e.binder = &binding.KafkaBinder{Kube: e.kube, Engine: e.engine}
	e.kube.Secret(cfg.Shared.Namespace, cfg.Shared.Name+"-cluster-ca-cert", map[string]string{"ca.crt": br.CAPEM})
	return e
}

func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// instance provisions a dev-lite instance (replication factor 1, which a
// one-node broker can host exactly as rendered) in namespace ns: every
// KafkaTopic Build renders becomes a topic, as the Topic Operator makes it.
func (e *env) instance(t *testing.T, ns string, topics ...string) provisioners.Instance {
	t.Helper()
	svc := catalog.KafkaService()
	id := newUUID()
	ts := make([]any, len(topics))
	for i, n := range topics {
		ts[i] = map[string]any{"name": n}
	}
	inst := provisioners.Instance{
		ID: id, Name: provisioners.ResourceName("kafka-", id), Namespace: ns,
		Service: &svc, Plan: svc.PlanByName("dev-lite"), Params: map[string]any{"topics": ts},
	}
	objs, err := e.engine.Build(inst)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, o := range objs {
		if o.GetKind() == "KafkaTopic" {
			if err := CreateTopic(ctx, e.br.Admin, o); err != nil {
				t.Fatalf("creating topic from %s: %v", o.GetName(), err)
			}
		}
	}
	return inst
}

// bind binds through the KafkaBinder, lets the User Operator act, and
// returns the binding Secret's keys once Ready succeeds.
func (e *env) bind(t *testing.T, inst provisioners.Instance, params map[string]any) map[string]string {
	t.Helper()
	g := NewWithT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := e.binder.Bind(ctx, inst, newUUID(), params)
	g.Expect(err).NotTo(HaveOccurred())
	p, err := e.binder.Ready(ctx, inst, r)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.State).To(Equal(provisioners.InProgress), "Ready before Strimzi acted")
	g.Expect(ReconcileUsers(ctx, e.kube, e.br.Admin)).To(Succeed())
	p, err = e.binder.Ready(ctx, inst, r)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.State).To(Equal(provisioners.Succeeded), p.Description)
	creds, err := e.binder.Credentials(ctx, inst, r)
	g.Expect(err).NotTo(HaveOccurred())
	out := map[string]string{}
	for k, v := range creds {
		out[k] = v.(string)
		g.Expect(r.Credentials).To(HaveKeyWithValue(k, v), "the bind response carried the final credentials")
	}
	return out
}

// clientFrom is a client made from nothing but the binding Secret's
// servicebinding.io keys.
func clientFrom(t *testing.T, b map[string]string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	if b["security.protocol"] != "SASL_SSL" || b["sasl.mechanism"] != "SCRAM-SHA-512" {
		t.Fatalf("binding says %s / %s", b["security.protocol"], b["sasl.mechanism"])
	}
	tc, err := TLSConfig(b["ca.crt"])
	if err != nil {
		t.Fatal(err)
	}
	base := []kgo.Opt{
		kgo.SeedBrokers(strings.Split(b["bootstrap-servers"], ",")...),
		kgo.DialTLSConfig(tc),
		kgo.SASL(scram.Auth{User: b["username"], Pass: b["password"]}.AsSha512Mechanism()),
		kgo.RequestRetries(1),
		kgo.RetryTimeout(5 * time.Second),
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestBindingProducesAndConsumesItsTopics(t *testing.T) {
	g := NewWithT(t)
	e := newEnv(t)
	inst := e.instance(t, "team-a", "orders", "audit")
	b := e.bind(t, inst, nil)
	topic := b["strata.kafka.topics.orders"]
	g.Expect(topic).To(Equal(kafka.TopicPrefix(inst) + "orders"))
	group := b["spring.kafka.consumer.group-id"]
	g.Expect(group).To(HavePrefix(b["topic-prefix"]))

	// Idempotent producing (franz-go's default) with topic Write alone.
	producer := clientFrom(t, b)
	for i := range 3 {
		rec := &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, "order-%d", i)}
		g.Expect(producer.ProduceSync(ctxFor(t, 20*time.Second), rec).FirstErr()).To(Succeed())
	}
	consumer := clientFrom(t, b, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	var got []string
	ctx := ctxFor(t, 30*time.Second)
	for len(got) < 3 && ctx.Err() == nil {
		fs := consumer.PollFetches(ctx)
		for _, fe := range fs.Errors() {
			// NOT_COORDINATOR and the like while __consumer_offsets is
			// created are retried by the client.
			if !errors.Is(fe.Err, context.DeadlineExceeded) && !kerr.IsRetriable(fe.Err) {
				t.Fatalf("fetch %s: %v", fe.Topic, fe.Err)
			}
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	g.Expect(got).To(Equal([]string{"order-0", "order-1", "order-2"}))
	g.Expect(consumer.CommitUncommittedOffsets(ctxFor(t, 20*time.Second))).To(Succeed(), "the binding's group may commit")

	// Transactions with a transactional id under the prefix.
	tx := clientFrom(t, b, kgo.TransactionalID(b["topic-prefix"]+"tx-1"))
	g.Expect(tx.BeginTransaction()).To(Succeed())
	g.Expect(tx.ProduceSync(ctxFor(t, 20*time.Second), &kgo.Record{Topic: b["strata.kafka.topics.audit"], Value: []byte("tx")}).FirstErr()).To(Succeed())
	g.Expect(tx.EndTransaction(ctxFor(t, 20*time.Second), kgo.TryCommit)).To(Succeed())

	// The binding sees its own topics only.
	listed, err := kadm.NewClient(clientFrom(t, b)).ListTopics(ctxFor(t, 20*time.Second))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(listed.Names()).To(ConsistOf(kafka.TopicPrefix(inst)+"orders", kafka.TopicPrefix(inst)+"audit"))
}

func TestBindingIsDeniedOtherTenantsTopicsAndGroups(t *testing.T) {
	g := NewWithT(t)
	e := newEnv(t)
	mine := e.instance(t, "team-a", "orders")
	other := e.instance(t, "team-b", "orders")
	sibling := e.instance(t, "team-a", "orders") // same tenant, another instance
	b := e.bind(t, mine, nil)
	otherB := e.bind(t, other, nil)
	cl := clientFrom(t, b)

	for _, inst := range []provisioners.Instance{other, sibling} {
		foreign := kafka.TopicName(inst, "orders")
		err := cl.ProduceSync(ctxFor(t, 20*time.Second), &kgo.Record{Topic: foreign, Value: []byte("x")}).FirstErr()
		g.Expect(errors.Is(err, kerr.TopicAuthorizationFailed)).To(BeTrue(), "produce to %s: %v", foreign, err)

		// Fetching another instance's topic, in the binding's own group.
		consumer := clientFrom(t, b, kgo.ConsumerGroup(b["spring.kafka.consumer.group-id"]+"-x"), kgo.ConsumeTopics(foreign))
		g.Expect(firstFetchError(t, consumer)).To(MatchError(kerr.TopicAuthorizationFailed))
	}

	// Joining another tenant's group, even to read the binding's own topic.
	consumer := clientFrom(t, b, kgo.ConsumerGroup(otherB["spring.kafka.consumer.group-id"]), kgo.ConsumeTopics(b["strata.kafka.topics.orders"]))
	g.Expect(firstFetchError(t, consumer)).To(MatchError(kerr.GroupAuthorizationFailed))

	// Another tenant's transactional ids.
	tx := clientFrom(t, b, kgo.TransactionalID(kafka.TopicPrefix(other)+"tx"))
	err := tx.BeginTransaction()
	if err == nil {
		err = tx.ProduceSync(ctxFor(t, 20*time.Second), &kgo.Record{Topic: b["strata.kafka.topics.orders"], Value: []byte("x")}).FirstErr()
	}
	g.Expect(errors.Is(err, kerr.TransactionalIDAuthorizationFailed)).To(BeTrue(), "%v", err)

	// Topics are the Topic Operator's: a binding cannot create one, not
	// even under its own prefix.
	resp, err := kadm.NewClient(cl).CreateTopic(ctxFor(t, 20*time.Second), 1, 1, nil, b["topic-prefix"]+"sneaky")
	if err == nil {
		err = resp.Err
	}
	g.Expect(err).To(MatchError(kerr.TopicAuthorizationFailed))
}

// firstFetchError polls until the client reports an error (bounded).
func firstFetchError(t *testing.T, cl *kgo.Client) error {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		for _, fe := range fs.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) && !kerr.IsRetriable(fe.Err) {
				return fe.Err
			}
		}
	}
	t.Fatal("no error within 30s")
	return nil
}

func TestAccessLevels(t *testing.T) {
	g := NewWithT(t)
	e := newEnv(t)
	inst := e.instance(t, "team-a", "orders")
	read := e.bind(t, inst, map[string]any{"access": "read", "consumer_group": "reader"})
	write := e.bind(t, inst, map[string]any{"access": "write"})
	topic := kafka.TopicName(inst, "orders")

	// An idempotent producer cannot even get a producer id (Write on a
	// topic is what grants it); a plain one is refused the topic.
	err := clientFrom(t, read).ProduceSync(ctxFor(t, 20*time.Second), &kgo.Record{Topic: topic, Value: []byte("x")}).FirstErr()
	g.Expect(errors.Is(err, kerr.ClusterAuthorizationFailed)).To(BeTrue(), "read binding produced: %v", err)
	err = clientFrom(t, read, kgo.DisableIdempotentWrite()).ProduceSync(ctxFor(t, 20*time.Second), &kgo.Record{Topic: topic, Value: []byte("x")}).FirstErr()
	g.Expect(errors.Is(err, kerr.TopicAuthorizationFailed)).To(BeTrue(), "read binding produced: %v", err)
	g.Expect(clientFrom(t, write).ProduceSync(ctxFor(t, 20*time.Second), &kgo.Record{Topic: topic, Value: []byte("x")}).FirstErr()).To(Succeed())

	reader := clientFrom(t, read, kgo.ConsumerGroup(read["spring.kafka.consumer.group-id"]), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx := ctxFor(t, 30*time.Second)
	n := 0
	for n == 0 && ctx.Err() == nil {
		fs := reader.PollFetches(ctx)
		for _, fe := range fs.Errors() {
			g.Expect(errors.Is(fe.Err, context.DeadlineExceeded) || kerr.IsRetriable(fe.Err)).To(BeTrue(), "fetch: %v", fe.Err)
		}
		n += fs.NumRecords()
	}
	g.Expect(n).To(BeNumerically(">", 0))

	writer := clientFrom(t, write, kgo.ConsumerGroup(write["spring.kafka.consumer.group-id"]), kgo.ConsumeTopics(topic))
	g.Expect(firstFetchError(t, writer)).To(Or(MatchError(kerr.GroupAuthorizationFailed), MatchError(kerr.TopicAuthorizationFailed)))
}

func TestPlaintextIsRefused(t *testing.T) {
	g := NewWithT(t)
	e := newEnv(t)
	b := e.bind(t, e.instance(t, "team-a", "orders"), nil)
	// SASL without TLS, on the listener the binding names.
	cl, err := kgo.NewClient(kgo.SeedBrokers(b["bootstrap-servers"]),
		kgo.SASL(scram.Auth{User: b["username"], Pass: b["password"]}.AsSha512Mechanism()),
		kgo.RequestRetries(0), kgo.DialTimeout(5*time.Second))
	g.Expect(err).NotTo(HaveOccurred())
	defer cl.Close()
	g.Expect(cl.Ping(ctxFor(t, 15*time.Second))).NotTo(Succeed())
	// TLS without SASL.
	tc, _ := TLSConfig(b["ca.crt"])
	cl2, err := kgo.NewClient(kgo.SeedBrokers(b["bootstrap-servers"]), kgo.DialTLSConfig(tc), kgo.RequestRetries(0))
	g.Expect(err).NotTo(HaveOccurred())
	defer cl2.Close()
	g.Expect(cl2.Ping(ctxFor(t, 15*time.Second))).NotTo(Succeed())
	// A CA other than the cluster's.
	other, _, err := makePKI()
	g.Expect(err).NotTo(HaveOccurred())
	tc3, _ := TLSConfig(other)
	cl3, err := kgo.NewClient(kgo.SeedBrokers(b["bootstrap-servers"]), kgo.DialTLSConfig(tc3), kgo.RequestRetries(0),
		kgo.SASL(scram.Auth{User: b["username"], Pass: b["password"]}.AsSha512Mechanism()))
	g.Expect(err).NotTo(HaveOccurred())
	defer cl3.Close()
	err = cl3.Ping(ctxFor(t, 15*time.Second))
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(ContainSubstring("certificate"))
}

func TestWrongPasswordIsRefused(t *testing.T) {
	g := NewWithT(t)
	e := newEnv(t)
	b := e.bind(t, e.instance(t, "team-a", "orders"), nil)
	b["password"] = b["password"] + "x"
	err := clientFrom(t, b).Ping(ctxFor(t, 15*time.Second))
	g.Expect(errors.Is(err, kerr.SaslAuthenticationFailed)).To(BeTrue(), "%v", err)
}

type throttleHook struct{ max atomic.Int64 }

func (h *throttleHook) OnBrokerThrottle(_ kgo.BrokerMetadata, d time.Duration, _ bool) {
	for {
		cur := h.max.Load()
		if int64(d) <= cur || h.max.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

func TestProduceQuotaIsEnforced(t *testing.T) {
	g := NewWithT(t)
	e := newEnv(t)
	inst := e.instance(t, "team-a", "orders")
	b := e.bind(t, inst, nil)
	rate := inst.Plan.Kafka.Quotas.ProducerByteRate

	// The quota is on the user, as the plan says. Under KRaft a quota
	// reaches the broker's metadata cache a moment after the alteration
	// is acknowledged, so the description may lag it briefly.
	user := b["username"]
	var qs kadm.DescribedClientQuotas
	g.Eventually(func(g Gomega) {
		var err error
		qs, err = e.br.Admin.DescribeClientQuotas(ctxFor(t, 20*time.Second), true, []kadm.DescribeClientQuotaComponent{
			{Type: "user", MatchName: &user, MatchType: kmsg.QuotasMatchTypeExact},
		})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(qs).To(HaveLen(1))
	}).WithTimeout(10 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	g.Expect(qs[0].Values).To(ContainElement(kadm.ClientQuotaValue{Key: "producer_byte_rate", Value: float64(rate)}))

	// Producing faster than the rate makes the broker throttle: bounded by
	// a number of records (24 times the per-second quota), not by time.
	// Kafka measures a new user's rate over at least (quota.window.num - 1)
	// windows of quota.window.size.seconds (10 s by default), so it takes
	// more than ten seconds' worth of quota before a throttle shows.
	h := &throttleHook{}
	cl := clientFrom(t, b, kgo.WithHooks(h), kgo.ProducerLinger(0))
	// Random bytes: the client compresses batches, and zeros would shrink
	// to nothing.
	value := make([]byte, 256*1024)
	_, _ = rand.Read(value)
	sent := 0
	for i := 0; i < 24*rate/len(value) && h.max.Load() == 0; i++ {
		g.Expect(cl.ProduceSync(ctxFor(t, 60*time.Second), &kgo.Record{Topic: kafka.TopicName(inst, "orders"), Value: value}).FirstErr()).To(Succeed())
		sent += len(value)
	}
	g.Expect(time.Duration(h.max.Load())).To(BeNumerically(">", 0), "no throttle after %d bytes at a %d B/s quota", sent, rate)
	t.Logf("throttled after %d bytes (quota %d B/s): %s", sent, rate, time.Duration(h.max.Load()))
}
