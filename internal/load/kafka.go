package load

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// KafkaOptions mirror kafka-producer-perf-test's options, plus consumers.
type KafkaOptions struct {
	// Topic is the topic's name in the instance (e.g. orders, looked up
	// as the binding's strata.kafka.topics.orders) or its full Kafka name.
	Topic string
	// RecordSize is --record-size: bytes of random payload per record.
	RecordSize int
	// Producers is how many producer clients run (the perf test has one).
	Producers int
	// Consumers read what the run produces from the topic's end offsets at
	// the start; 0 runs no consumer.
	Consumers int
	// Acks is all (the default, -1), 1 or 0.
	Acks string
	// Linger is linger.ms (Kafka 4's producer default is 5 ms).
	Linger time.Duration
	// BatchBytes is batch.size, the largest batch per partition (the
	// Java default is 16384); 0 keeps franz-go's default (1 MB).
	BatchBytes int
	Limits
}

// KafkaTopic resolves the topic name through the binding's
// strata.kafka.topics.<name> keys.
func KafkaTopic(b Binding, topic string) string {
	if full := strings.TrimSpace(b["strata.kafka.topics."+topic]); full != "" {
		return full
	}
	return topic
}

// KafkaClientOpts are the options of a client of the binding's cluster:
// SASL_SSL with SCRAM-SHA-512, TLS verified against the binding's CA.
func KafkaClientOpts(b Binding) ([]kgo.Opt, error) {
	if err := b.checkType("kafka"); err != nil {
		return nil, err
	}
	v, err := b.Values("bootstrap-servers", "username", "password")
	if err != nil {
		return nil, err
	}
	servers, user, password := v[0], v[1], v[2]
	if p := b["security.protocol"]; p != "" && p != "SASL_SSL" {
		return nil, fmt.Errorf("the binding's security.protocol is %q: the load tool needs SASL_SSL", p)
	}
	if m := b["sasl.mechanism"]; m != "" && m != "SCRAM-SHA-512" {
		return nil, fmt.Errorf("the binding's sasl.mechanism is %q: the load tool speaks SCRAM-SHA-512", m)
	}
	seeds := strings.Split(servers, ",")
	host, _, err := net.SplitHostPort(strings.TrimSpace(seeds[0]))
	if err != nil {
		return nil, fmt.Errorf("the binding's bootstrap-servers: %w", err)
	}
	// One TLS configuration for every broker: the ServerName is set per
	// connection by franz-go from the broker's advertised host.
	tc, err := b.TLSConfig(host)
	if err != nil {
		return nil, err
	}
	tc.ServerName = ""
	return []kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.DialTLSConfig(tc),
		kgo.SASL(scram.Auth{User: user, Pass: password}.AsSha512Mechanism()),
	}, nil
}

// KafkaRun produces (and optionally consumes) records.
func KafkaRun(ctx context.Context, base []kgo.Opt, o KafkaOptions) (*Result, error) {
	if o.Topic == "" {
		return nil, errors.New("give a --topic")
	}
	if o.Producers < 1 {
		o.Producers = 1
	}
	var acks kgo.Acks
	popts := append([]kgo.Opt{kgo.DefaultProduceTopic(o.Topic), kgo.ProducerLinger(o.Linger)}, base...)
	switch o.Acks {
	case "", "all", "-1":
		acks = kgo.AllISRAcks()
	case "1":
		acks = kgo.LeaderAck()
		popts = append(popts, kgo.DisableIdempotentWrite())
	case "0":
		acks = kgo.NoAck()
		popts = append(popts, kgo.DisableIdempotentWrite())
	default:
		return nil, fmt.Errorf("--acks is all, 1 or 0, not %q", o.Acks)
	}
	popts = append(popts, kgo.RequiredAcks(acks))
	if o.BatchBytes > 0 {
		popts = append(popts, kgo.ProducerBatchMaxBytes(int32(o.BatchBytes)))
	}

	producers := make([]*kgo.Client, o.Producers)
	defer func() {
		for _, p := range producers {
			if p != nil {
				p.Close()
			}
		}
	}()
	for i := range producers {
		p, err := kgo.NewClient(popts...)
		if err != nil {
			return nil, err
		}
		producers[i] = p
		// Connect, authenticate and load the topic's metadata before the
		// clock starts, as the Java producer does in its constructor and
		// first send.
		if err := p.Ping(ctx); err != nil {
			return nil, fmt.Errorf("connecting: %w", err)
		}
	}
	adm := kadm.NewClient(producers[0])
	ends, err := adm.ListEndOffsets(ctx, o.Topic)
	if err != nil {
		return nil, fmt.Errorf("reading the end offsets of %s: %w", o.Topic, err)
	}
	if err := ends.Error(); err != nil {
		return nil, fmt.Errorf("reading the end offsets of %s: %w", o.Topic, err)
	}
	if _, ok := ends[o.Topic]; !ok {
		return nil, fmt.Errorf("the topic %s does not exist", o.Topic)
	}

	var consumed atomic.Int64
	consumeCtx, stopConsumers := context.WithCancel(ctx)
	defer stopConsumers()
	var cwg sync.WaitGroup
	cerrs := make(chan error, o.Consumers)
	for i := range o.Consumers {
		parts := map[int32]kgo.Offset{}
		for p, e := range ends[o.Topic] {
			if int(p)%o.Consumers == i {
				parts[p] = kgo.NewOffset().At(e.Offset)
			}
		}
		if len(parts) == 0 {
			continue
		}
		c, err := kgo.NewClient(append([]kgo.Opt{kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{o.Topic: parts})}, base...)...)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			for consumeCtx.Err() == nil {
				fs := c.PollFetches(consumeCtx)
				if err := fs.Err0(); err != nil && !errors.Is(err, context.Canceled) {
					cerrs <- err
					return
				}
				consumed.Add(int64(fs.NumRecords()))
			}
		}()
	}

	payload := make([]byte, o.RecordSize)
	_, _ = rand.Read(payload) // random, as the perf test's payload: compressible data would flatter nothing but still
	name := fmt.Sprintf("kafka produce %s (%d producers, %d consumers, %d-byte records, acks=%s)", o.Topic, o.Producers, o.Consumers, o.RecordSize, orDefault(o.Acks, "all"))
	res, err := Run(ctx, name, "records", o.Producers, o.Limits, func(ctx context.Context, w *Worker) error {
		p := producers[w.ID]
		var mu sync.Mutex // promises may run on franz-go's goroutines
		var firstErr error
		promise := func(r *kgo.Record, err error) {
			lat := time.Since(r.Timestamp)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && ctx.Err() != nil {
				return // interrupted (Ctrl-C): not the service's failure
			}
			if err != nil {
				w.Counter.Error()
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			w.Hist.Record(lat)
			w.Counter.Add(1, lat)
		}
		// Records are allocated in slabs: one allocation per 256 records
		// instead of one each.
		var slab []kgo.Record
		for w.Take(1) == 1 {
			if len(slab) == 0 {
				slab = make([]kgo.Record, 256)
			}
			r := &slab[0]
			slab = slab[1:]
			r.Value = payload
			// The record's timestamp is when it was handed to the
			// producer; the latency is from then to the acknowledgement,
			// as the perf test measures it.
			r.Timestamp = time.Now()
			p.Produce(ctx, r, promise)
		}
		if err := p.Flush(ctx); err != nil && ctx.Err() == nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if firstErr != nil {
			return fmt.Errorf("producer %d: %w", w.ID, firstErr)
		}
		return nil
	})
	if res != nil {
		res.Bytes = res.Ops * int64(o.RecordSize)
	}
	if o.Consumers > 0 && res != nil {
		// Let the consumers catch up with everything produced.
		deadline := time.Now().Add(60 * time.Second)
		for consumed.Load() < res.Ops && time.Now().Before(deadline) && len(cerrs) == 0 {
			time.Sleep(20 * time.Millisecond)
		}
		stopConsumers()
		cwg.Wait()
		res.Extra["consumed records"] = consumed.Load()
		select {
		case cerr := <-cerrs:
			if err == nil {
				err = fmt.Errorf("consuming: %w", cerr)
			}
		default:
		}
	}
	return res, err
}
