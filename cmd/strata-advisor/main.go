// Command strata-advisor prints recommendations for query optimization and
// resource tuning (requirement 7.5) for the PostgreSQL, Redis or Kafka
// instance of a Strata binding: missing indexes verified with HypoPG,
// unused and duplicate indexes, memory settings and connections on
// PostgreSQL; memory, evictions and big keys on Redis; consumer lag and
// partition balance on Kafka. It connects only with the binding's values
// (TLS verified against the binding's CA) and only reads. The logic is in
// broker/advisor; docs/advisor.md describes it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/strata-dev/strata/broker/advisor"
	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/internal/load"
)

const usage = `strata-advisor: recommendations for a Strata instance, from one of its bindings

usage: strata-advisor (--binding DIR | --secret NAMESPACE/NAME) [flags]

The binding's "type" key (postgresql, redis, kafka) says which service it is.
The advisor only reads; see docs/advisor.md.

`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "strata-advisor:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("strata-advisor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	bindingDir := fs.String("binding", "", "the binding directory (one file per key, as the binding Secret is mounted)")
	secret := fs.String("secret", "", "the binding Secret, as namespace/name (instead of --binding)")
	kubeconfig := fs.String("kubeconfig", "", "the kubeconfig for --secret (default $KUBECONFIG, then ~/.kube/config)")
	asJSON := fs.Bool("json", false, "print the report as JSON instead of text")
	hostaddr := fs.String("hostaddr", "", "postgresql, redis: connect to this address instead of resolving the binding's host; the certificate is still verified for the host")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	// PostgreSQL
	memory := fs.String("memory", "", "postgresql: the instance's memory limit (a Kubernetes quantity such as 2Gi: its resources.memory), to judge the memory settings")
	plan := fs.String("plan", "", "postgresql: the instance's plan (dev-lite, standard, ha): its default memory when --memory is not given")
	sample := fs.Duration("sample", 0, "postgresql: watch the number of connections this long for its peak (0: one look)")
	top := fs.Int("top", advisor.DefaultPostgresOptions.TopStatements, "postgresql: examine this many statements with the most total time")
	minRows := fs.Int64("min-rows", advisor.DefaultPostgresOptions.MinTableRows, "postgresql: a sequential scan matters on tables with at least this many rows")
	minGain := fs.Float64("min-gain", advisor.DefaultPostgresOptions.MinGain, "postgresql: recommend an index only if HypoPG shows it cuts the planned cost by this fraction")
	// Redis
	bigKey := fs.Int64("big-key-bytes", advisor.DefaultRedisOptions.BigKeyBytes, "redis: report keys using at least this many bytes")
	maxKeys := fs.Int("max-keys", advisor.DefaultRedisOptions.MaxScanKeys, "redis: measure at most this many keys")
	// Kafka
	lag := fs.Int64("lag-threshold", advisor.DefaultKafkaOptions.LagThreshold, "kafka: report a running group this many records behind")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	b, err := load.LoadBinding(ctx, *bindingDir, *secret, *kubeconfig)
	if err != nil {
		return err
	}

	var rep advisor.Report
	switch t := b.Type(); t {
	case "postgresql":
		o := advisor.PostgresOptions{TopStatements: *top, MinTableRows: *minRows, MinGain: *minGain}
		if o.MemoryLimit, err = memoryLimit(*memory, *plan); err != nil {
			return err
		}
		rep, err = advisePostgres(ctx, b, *hostaddr, o, *sample)
	case "redis":
		o := advisor.RedisOptions{BigKeyBytes: *bigKey, MaxScanKeys: *maxKeys}
		rep, err = adviseRedis(ctx, b, *hostaddr, o)
	case "kafka":
		rep, err = adviseKafka(ctx, b, advisor.KafkaOptions{LagThreshold: *lag})
	default:
		return fmt.Errorf("the binding's type is %q: the advisor knows postgresql, redis and kafka", t)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return rep.WriteJSON(stdout)
	}
	return rep.WriteText(stdout)
}

// memoryLimit is --memory, else the plan's default memory, else 0
// (unknown: the memory settings are not judged, and the report says so).
func memoryLimit(memory, plan string) (int64, error) {
	if memory == "" && plan != "" {
		svc := &catalog.Default().Services[0]
		p := svc.PlanByName(plan)
		if p == nil || p.Postgres == nil {
			return 0, fmt.Errorf("--plan %q is not a PostgreSQL plan", plan)
		}
		memory = p.Postgres.Memory
	}
	if memory == "" {
		return 0, nil
	}
	q, err := resource.ParseQuantity(memory)
	if err != nil {
		return 0, fmt.Errorf("--memory %q: %w", memory, err)
	}
	return q.Value(), nil
}

func advisePostgres(ctx context.Context, b load.Binding, hostaddr string, o advisor.PostgresOptions, sample time.Duration) (advisor.Report, error) {
	cfg, err := load.PostgresConfig(b, hostaddr)
	if err != nil {
		return advisor.Report{}, err
	}
	cfg.RuntimeParams["application_name"] = "strata-advisor"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return advisor.Report{}, fmt.Errorf("connecting to the binding's database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	in, err := advisor.CollectPostgres(ctx, conn, o, sample)
	if err != nil {
		return advisor.Report{}, err
	}
	return advisor.AdvisePostgres(in, o, time.Now()), nil
}

func adviseRedis(ctx context.Context, b load.Binding, hostaddr string, o advisor.RedisOptions) (advisor.Report, error) {
	c, err := load.RedisClient(b, 1, hostaddr)
	if err != nil {
		return advisor.Report{}, err
	}
	defer c.Close()
	in, err := advisor.CollectRedis(ctx, c, o)
	if err != nil {
		return advisor.Report{}, err
	}
	return advisor.AdviseRedis(in, o, time.Now()), nil
}

func adviseKafka(ctx context.Context, b load.Binding, o advisor.KafkaOptions) (advisor.Report, error) {
	opts, err := load.KafkaClientOpts(b)
	if err != nil {
		return advisor.Report{}, err
	}
	prefix, err := b.Get("topic-prefix")
	if err != nil {
		return advisor.Report{}, err
	}
	cl, err := kgo.NewClient(append(opts, kgo.RequestRetries(2))...)
	if err != nil {
		return advisor.Report{}, err
	}
	defer cl.Close()
	// Groups and topics share the instance's prefix; the binding's ACLs
	// allow exactly those.
	in, err := advisor.CollectKafka(ctx, kadm.NewClient(cl), prefix, prefix)
	if err != nil {
		return advisor.Report{}, err
	}
	return advisor.AdviseKafka(in, o, time.Now()), nil
}
