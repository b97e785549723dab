package load

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// RedisOptions mirror redis-benchmark's options.
type RedisOptions struct {
	// Clients is -c: connections, each running its own pipeline.
	Clients int
	// Pipeline is -P: requests sent per round trip.
	Pipeline int
	// DataSize is -d: the SET value's size in bytes.
	DataSize int
	// Keyspace is -r: keys are key:<12 digits> with the number drawn at
	// random below it. (redis-benchmark without -r uses one key.)
	Keyspace int
	// Sets and Gets are the SET:GET ratio (e.g. 1:0 is redis-benchmark
	// -t set, 0:1 -t get, 1:10 a read-heavy mix).
	Sets, Gets int
	Limits
}

// RedisClient is a client of the binding's Redis: TLS verified against the
// binding's CA, AUTH with the binding's password. poolSize connections.
// hostaddr, when not empty, is the address to connect to instead of
// resolving the host; the certificate is still verified for the host.
func RedisClient(b Binding, poolSize int, hostaddr string) (*goredis.Client, error) {
	if err := b.checkType("redis"); err != nil {
		return nil, err
	}
	v, err := b.Values("host", "port", "password")
	if err != nil {
		return nil, err
	}
	host, port, password := v[0], v[1], v[2]
	tc, err := b.TLSConfig(host)
	if err != nil {
		return nil, err
	}
	var dialer func(ctx context.Context, network, addr string) (net.Conn, error)
	if hostaddr != "" {
		// go-redis does TLS itself only with its own dialer.
		dialer = func(ctx context.Context, network, _ string) (net.Conn, error) {
			d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: tc}
			return d.DialContext(ctx, network, net.JoinHostPort(hostaddr, port))
		}
	}
	return goredis.NewClient(&goredis.Options{
		Dialer: dialer,
		Addr:   net.JoinHostPort(host, port), Password: password, TLSConfig: tc,
		PoolSize: poolSize, MinIdleConns: poolSize, MaxIdleConns: poolSize,
		DialTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		// A failed request is counted as an error, not retried behind the
		// tool's back.
		MaxRetries: -1,
		// Skip go-redis's CLIENT SETINFO at connect: one round trip less
		// per connection, and nothing to measure.
		DisableIdentity: true,
	}), nil
}

// RedisKey is the key of number n, as redis-benchmark's key:__rand_int__.
func RedisKey(n int) string { return fmt.Sprintf("key:%012d", n) }

// putKeyNumber writes n's twelve digits into a key made by RedisKey.
func putKeyNumber(key []byte, n int) {
	for i := len(key) - 1; i >= len("key:"); i-- {
		key[i] = byte('0' + n%10)
		n /= 10
	}
}

// RedisRun runs the GET/SET workload.
func RedisRun(ctx context.Context, client *goredis.Client, o RedisOptions) (*Result, error) {
	if o.Pipeline < 1 {
		o.Pipeline = 1
	}
	if o.Keyspace < 1 {
		o.Keyspace = 1
	}
	if o.Sets < 0 || o.Gets < 0 || o.Sets+o.Gets == 0 {
		return nil, fmt.Errorf("the SET:GET ratio needs a positive side, got %d:%d", o.Sets, o.Gets)
	}
	var value any = bytes.Repeat([]byte("x"), o.DataSize)
	// Every connection is opened and authenticated before the clock
	// starts, as redis-benchmark does.
	warm := make(chan error, o.Clients)
	for range o.Clients {
		go func() { warm <- client.Ping(ctx).Err() }()
	}
	for range o.Clients {
		if err := <-warm; err != nil {
			return nil, fmt.Errorf("connecting: %w", err)
		}
	}
	var misses atomic.Int64
	period := o.Sets + o.Gets
	seed := uint64(time.Now().UnixNano())
	name := fmt.Sprintf("redis set:get %d:%d (%d clients, pipeline %d, %d bytes, %d keys)", o.Sets, o.Gets, o.Clients, o.Pipeline, o.DataSize, o.Keyspace)
	res, err := Run(ctx, name, "requests", o.Clients, o.Limits, func(ctx context.Context, w *Worker) error {
		env := (&Script{Vars: []string{"scale", "client_id"}}).NewEnv(0, int64(w.ID), seed)
		pipe := client.Pipeline()
		// Each slot of the pipeline has its SET and its GET command, made
		// once, and a key buffer both commands refer to: each round writes
		// the slot's random key number into the buffer, as redis-benchmark
		// writes it into its request template. go-redis overwrites a
		// command's reply and error when it reads the next, so per request
		// the client allocates only the reply, and reads no table of keys
		// (drawn at random from a large one, they missed the CPU's caches).
		keyBufs := make([][]byte, o.Pipeline)
		sets := make([]*goredis.StatusCmd, o.Pipeline)
		gets := make([]*goredis.StringCmd, o.Pipeline)
		for i := range o.Pipeline {
			keyBufs[i] = []byte(RedisKey(0))
			sets[i] = goredis.NewStatusCmd(ctx, "set", keyBufs[i], value)
			gets[i] = goredis.NewStringCmd(ctx, "get", keyBufs[i])
		}
		cmds := make([]goredis.Cmder, 0, o.Pipeline)
		var seq int
		for {
			n := w.Take(o.Pipeline)
			if n == 0 {
				return nil
			}
			cmds = cmds[:0]
			for i := range n {
				var c goredis.Cmder = gets[i]
				if seq%period < o.Sets {
					c = sets[i]
				}
				putKeyNumber(keyBufs[i], env.Rand.IntN(o.Keyspace))
				cmds = append(cmds, c)
				_ = pipe.Process(ctx, c) // queues it: the pipeline has no error to give yet
				seq++
			}
			start := time.Now()
			_, err := pipe.Exec(ctx)
			lat := time.Since(start)
			if ctx.Err() != nil {
				return nil // interrupted: the batch's replies are not all in
			}
			if err != nil && !errors.Is(err, goredis.Nil) && ctx.Err() == nil && !isReplyError(err) {
				// The connection failed: the whole batch is lost.
				for range n {
					w.Counter.Error()
				}
				return fmt.Errorf("client %d: %w", w.ID, err)
			}
			ok := 0
			for _, c := range cmds {
				switch err := c.Err(); {
				case err == nil:
					ok++
				case errors.Is(err, goredis.Nil):
					ok++ // a GET of a key not written yet is a valid answer
					misses.Add(1)
				default:
					w.Counter.Error()
				}
			}
			// Every request of a pipeline waited for the batch: each gets
			// its latency, as in redis-benchmark.
			for range ok {
				w.Hist.Record(lat)
			}
			w.Counter.Add(int64(ok), lat*time.Duration(ok))
		}
	})
	if res != nil {
		res.Extra["get misses"] = misses.Load()
		if o.Gets == 0 {
			res.Bytes = res.Ops * int64(o.DataSize)
		}
	}
	return res, err
}

// isReplyError says whether err is an error reply of the server (e.g.
// WRONGTYPE), which fails a request but not the connection.
func isReplyError(err error) bool {
	var re goredis.Error
	return errors.As(err, &re)
}
