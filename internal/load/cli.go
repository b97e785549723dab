package load

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Usage is the command's help text.
const Usage = `strata-load runs a load test against a Strata binding's service.

usage:
  strata-load postgres --binding DIR [--hostaddr ADDR] [--init -s SCALE] [-c CLIENTS] [-j THREADS] [-T SECONDS | -t TX] [-M simple|extended|prepared] [-f SCRIPT.sql] [-P SECONDS] [--check]
  strata-load redis    --binding DIR [-c CLIENTS] [-P PIPELINE] [-d BYTES] [-r KEYSPACE] [--ratio SET:GET] [-n REQUESTS | -T SECONDS]
  strata-load kafka    --binding DIR --topic NAME [--num-records N | -T SECONDS] [--record-size BYTES] [--producers N] [--consumers N] [--acks all|1|0]

The binding is a directory with one file per key (a mounted binding Secret,
or make run's .cache/platform/dev/strata/binding/), or --secret NS/NAME read
with --kubeconfig (default: $KUBECONFIG, then ~/.kube/config).
Every workload takes --histogram FILE.html and --progress SECONDS.
docs/load-testing.md describes every flag and number.
`

// Main runs the command with args (without the program name). Progress
// goes to stderr, the summary to stdout.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, Usage)
		if len(args) == 0 {
			return errors.New("name a workload: postgres, redis or kafka")
		}
		return nil
	}
	service, args := args[0], args[1:]
	fs := flag.NewFlagSet("strata-load "+service, flag.ContinueOnError)
	fs.SetOutput(stderr)
	bindingDir := fs.String("binding", "", "the binding directory (one file per key)")
	secret := fs.String("secret", "", "the binding Secret, as namespace/name (instead of --binding)")
	kubeconfig := fs.String("kubeconfig", "", "the kubeconfig for --secret (default $KUBECONFIG, then ~/.kube/config)")
	histogram := fs.String("histogram", "", "write the latency histogram and summary to this HTML file")
	progressSec := fs.Float64("progress", 1, "seconds between progress lines (0: none)")
	seconds := fs.Float64("T", 0, "run for this many seconds")
	hostaddr := fs.String("hostaddr", "", "postgres, redis: connect to this address instead of resolving the binding's host (as libpq's hostaddr); the certificate is still verified for the host")

	var run func(Binding, Limits) (*Result, error)
	switch service {
	case "postgres", "postgresql":
		clients := fs.Int("c", 1, "concurrent clients (connections), as pgbench -c")
		threads := fs.Int("j", 0, "threads, as pgbench -j: the Go scheduler's processors (GOMAXPROCS); 0 keeps one per core")
		perClient := fs.Int64("t", 0, "transactions per client, as pgbench -t (default: 10 unless -T is given)")
		mode := fs.String("M", "simple", "query protocol, as pgbench -M: simple, extended or prepared")
		script := fs.String("f", "", "run this pgbench-style script (\\set and SQL) instead of the built-in TPC-B-like one")
		scale := fs.Int64("s", 0, "scale: with --init, the size to create (default 1); otherwise :scale (default: read from pgbench_branches)")
		initOnly := fs.Bool("init", false, "create and fill the TPC-B tables, as pgbench -i, and exit")
		fs.BoolVar(initOnly, "i", false, "same as --init")
		progressP := fs.Float64("P", -1, "same as --progress (pgbench's spelling)")
		check := fs.Bool("check", false, "after the run, check the TPC-B invariant (balances sum to the history's deltas)")
		run = func(b Binding, lim Limits) (*Result, error) {
			cfg, err := PostgresConfig(b, *hostaddr)
			if err != nil {
				return nil, err
			}
			if *threads > 0 {
				runtime.GOMAXPROCS(*threads)
			}
			if *initOnly {
				s := *scale
				if s == 0 {
					s = 1
				}
				return nil, PostgresInit(ctx, cfg, s, stderr)
			}
			if *progressP >= 0 {
				lim.Progress = time.Duration(*progressP * float64(time.Second))
			}
			o := PostgresOptions{Clients: *clients, Script: TPCBScript, Scale: *scale, Mode: *mode, Limits: lim}
			if *script != "" {
				text, err := os.ReadFile(*script)
				if err != nil {
					return nil, err
				}
				o.Script, o.ScriptName = string(text), *script
			}
			if lim.Duration == 0 {
				t := *perClient
				if t == 0 {
					t = 10
				}
				o.Count = t * int64(*clients)
			}
			res, err := PostgresRun(ctx, cfg, o)
			if err != nil || !*check {
				return res, err
			}
			rows, err := CheckTPCB(ctx, cfg)
			if err != nil {
				return res, err
			}
			res.Extra["history rows (invariant holds)"] = rows
			return res, nil
		}
	case "redis":
		clients := fs.Int("c", 50, "parallel connections, as redis-benchmark -c")
		pipeline := fs.Int("P", 1, "pipeline depth: requests per round trip, as redis-benchmark -P")
		size := fs.Int("d", 3, "SET value size in bytes, as redis-benchmark -d")
		keyspace := fs.Int("r", 100000, "keys key:000000000000 … below this number, drawn at random, as redis-benchmark -r")
		requests := fs.Int64("n", 0, "total requests, as redis-benchmark -n (default 100000 unless -T is given)")
		ratio := fs.String("ratio", "1:1", "SET:GET ratio (1:0 only SETs, 0:1 only GETs)")
		run = func(b Binding, lim Limits) (*Result, error) {
			sets, gets, err := parseRatio(*ratio)
			if err != nil {
				return nil, err
			}
			if lim.Duration == 0 {
				lim.Count = *requests
				if lim.Count == 0 {
					lim.Count = 100000
				}
			} else {
				lim.Count = *requests
			}
			client, err := RedisClient(b, *clients, *hostaddr)
			if err != nil {
				return nil, err
			}
			defer client.Close()
			return RedisRun(ctx, client, RedisOptions{Clients: *clients, Pipeline: *pipeline, DataSize: *size,
				Keyspace: *keyspace, Sets: sets, Gets: gets, Limits: lim})
		}
	case "kafka":
		topic := fs.String("topic", "", "the topic: its name in the instance (looked up in the binding's strata.kafka.topics.*) or its full name")
		records := fs.Int64("num-records", 0, "records to produce, as kafka-producer-perf-test --num-records (default 100000 unless -T is given)")
		size := fs.Int("record-size", 100, "bytes per record, as --record-size")
		producers := fs.Int("producers", 1, "producer clients")
		consumers := fs.Int("consumers", 0, "consumers reading what the run produces (0: none)")
		acks := fs.String("acks", "all", "acks: all, 1 or 0")
		linger := fs.Float64("linger-ms", 5, "linger.ms (Kafka 4's producer default: 5)")
		batch := fs.Int("batch-size", 16384, "batch.size in bytes (the Java producer's default: 16384)")
		run = func(b Binding, lim Limits) (*Result, error) {
			if lim.Duration == 0 {
				lim.Count = *records
				if lim.Count == 0 {
					lim.Count = 100000
				}
			} else {
				lim.Count = *records
			}
			opts, err := KafkaClientOpts(b)
			if err != nil {
				return nil, err
			}
			return KafkaRun(ctx, opts, KafkaOptions{Topic: KafkaTopic(b, *topic), RecordSize: *size, Producers: *producers,
				Consumers: *consumers, Acks: *acks, Linger: time.Duration(*linger * float64(time.Millisecond)),
				BatchBytes: *batch, Limits: lim})
		}
	default:
		fmt.Fprint(stderr, Usage)
		return fmt.Errorf("unknown workload %q: postgres, redis or kafka", service)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	b, err := LoadBinding(ctx, *bindingDir, *secret, *kubeconfig)
	if err != nil {
		return err
	}
	lim := Limits{Duration: time.Duration(*seconds * float64(time.Second)), Progress: time.Duration(*progressSec * float64(time.Second)), Out: stderr}
	res, err := run(b, lim)
	if res != nil {
		if werr := res.WriteSummary(stdout); werr != nil && err == nil {
			err = werr
		}
		if *histogram != "" {
			if herr := WriteHistogramFile(*histogram, res); herr != nil && err == nil {
				err = herr
			} else if herr == nil {
				fmt.Fprintf(stderr, "histogram written to %s\n", *histogram)
			}
		}
		if err == nil && res.Errors > 0 {
			err = fmt.Errorf("%d operations failed", res.Errors)
		}
	}
	return err
}

// LoadBinding reads a binding from its directory (dir) or from its Secret
// (secret, "namespace/name", through kubeconfig or the default rules), as
// the command-line tools take it (--binding, --secret).
func LoadBinding(ctx context.Context, dir, secret, kubeconfig string) (Binding, error) {
	switch {
	case dir != "" && secret != "":
		return nil, errors.New("give --binding or --secret, not both")
	case dir != "":
		return ReadBindingDir(dir)
	case secret != "":
		ns, name, ok := strings.Cut(secret, "/")
		if !ok || ns == "" || name == "" {
			return nil, fmt.Errorf("--secret is namespace/name, not %q", secret)
		}
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		rules.ExplicitPath = kubeconfig
		cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("the kubeconfig: %w", err)
		}
		kube, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return nil, err
		}
		return ReadBindingSecret(ctx, kube, ns, name)
	}
	return nil, errors.New("give the binding: --binding DIR or --secret NAMESPACE/NAME")
}

func parseRatio(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, ":")
	sets, err1 := strconv.Atoi(a)
	gets, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || sets < 0 || gets < 0 || sets+gets == 0 {
		return 0, 0, fmt.Errorf("--ratio is SET:GET, e.g. 1:1 or 1:0, not %q", s)
	}
	return sets, gets, nil
}
