package load

import (
	"fmt"
	"io"
	"math"
	"math/bits"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// subBits sets the histogram's precision: each power of two of nanoseconds
// is split into 2^subBits buckets, so a bucket is at most 1/32 (3%) wide,
// finer than the run-to-run noise of any of these services. The whole
// histogram is a fixed array: recording is an index computation and an
// increment, with no allocation and no lock.
const (
	subBits    = 5
	subBuckets = 1 << subBits
	numBuckets = (64 - subBits + 1) * subBuckets
)

// Histogram counts latencies in log-linear buckets (like HdrHistogram).
// One worker owns one Histogram; Merge combines them at the end.
type Histogram struct {
	counts [numBuckets]uint64
	n      uint64
	sum    float64 // nanoseconds
	sumSq  float64
	min    int64
	max    int64
}

func bucketOf(ns int64) int {
	if ns < subBuckets {
		if ns < 0 {
			return 0
		}
		return int(ns)
	}
	shift := bits.Len64(uint64(ns)) - subBits - 1
	return (shift+1)*subBuckets + int((uint64(ns)>>shift)&(subBuckets-1))
}

// bucketLow is the smallest value that falls in bucket i.
func bucketLow(i int) int64 {
	if i < subBuckets {
		return int64(i)
	}
	shift := i/subBuckets - 1
	return int64(subBuckets+i%subBuckets) << shift
}

// bucketHigh is the smallest value of the next bucket.
func bucketHigh(i int) int64 { return bucketLow(i + 1) }

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	ns := int64(d)
	h.counts[bucketOf(ns)]++
	if h.n == 0 || ns < h.min {
		h.min = ns
	}
	if ns > h.max {
		h.max = ns
	}
	h.n++
	f := float64(ns)
	h.sum += f
	h.sumSq += f * f
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
	h.sumSq += o.sumSq
}

// Count is the number of recorded latencies.
func (h *Histogram) Count() uint64 { return h.n }

// Mean is the average latency.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// StdDev is the standard deviation, as pgbench prints it.
func (h *Histogram) StdDev() time.Duration {
	if h.n < 2 {
		return 0
	}
	m := h.sum / float64(h.n)
	v := h.sumSq/float64(h.n) - m*m
	if v < 0 {
		v = 0
	}
	return time.Duration(math.Sqrt(v))
}

// Max is the largest latency recorded (exact).
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Min is the smallest latency recorded (exact).
func (h *Histogram) Min() time.Duration { return time.Duration(h.min) }

// Percentile is the latency below which p percent (0..100) of the
// recordings fall: the middle of the bucket that holds that rank, clamped
// to the exact min and max.
func (h *Histogram) Percentile(p float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(p / 100 * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := (bucketLow(i) + bucketHigh(i) - 1) / 2
			v = max(v, h.min)
			v = min(v, h.max)
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}

// Bucket is one non-empty bucket of a histogram: [Low, High) and a count.
type Bucket struct {
	Low, High time.Duration
	Count     uint64
}

// Buckets lists the non-empty buckets in order.
func (h *Histogram) Buckets() []Bucket {
	var out []Bucket
	for i, c := range h.counts {
		if c > 0 {
			out = append(out, Bucket{time.Duration(bucketLow(i)), time.Duration(bucketHigh(i)), c})
		}
	}
	return out
}

// Counter is what a worker publishes for the progress reporter while it
// runs: operations, errors and the sum of their latencies, updated
// atomically. Each worker has its own, padded to a cache line, so workers
// do not contend on one shared counter.
type Counter struct {
	ops    atomic.Int64
	errs   atomic.Int64
	latSum atomic.Int64 // nanoseconds
	_      [40]byte
}

// Add records n operations that took lat in total.
func (c *Counter) Add(n int64, lat time.Duration) {
	c.ops.Add(n)
	c.latSum.Add(int64(lat))
}

// Error records a failed operation.
func (c *Counter) Error() { c.errs.Add(1) }

// Snapshot sums counters.
type Snapshot struct {
	Ops, Errors int64
	LatSum      time.Duration
}

func sum(cs []Counter) Snapshot {
	var s Snapshot
	for i := range cs {
		s.Ops += cs[i].ops.Load()
		s.Errors += cs[i].errs.Load()
		s.LatSum += time.Duration(cs[i].latSum.Load())
	}
	return s
}

// Result is what a run measured.
type Result struct {
	// Workload names what ran, e.g. "postgres tpcb-like" or "redis set".
	Workload string
	// Unit is what one operation is: "transactions", "requests" or
	// "records".
	Unit string
	// Ops counts the operations that succeeded, Errors those that failed.
	Ops, Errors int64
	// Elapsed is the measured time, from the first operation started to
	// the last one finished (connections are made before it starts, as
	// pgbench's "without initial connection time" does).
	Elapsed time.Duration
	// Latency holds every successful operation's latency.
	Latency *Histogram
	// Bytes is the payload written (Kafka records, Redis values), for the
	// MB/s figure; 0 when it does not apply.
	Bytes int64
	// Extra holds workload-specific figures (e.g. "get misses", "consumed").
	Extra map[string]int64
}

// Throughput is operations per second.
func (r *Result) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

// WriteSummary prints the final table.
func (r *Result) WriteSummary(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	ms := func(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }
	rows := [][2]string{
		{"workload", r.Workload},
		{r.Unit, fmt.Sprint(r.Ops)},
		{"errors", fmt.Sprint(r.Errors)},
		{"duration", fmt.Sprintf("%.3f s", r.Elapsed.Seconds())},
		{"throughput", fmt.Sprintf("%.1f %s/s", r.Throughput(), r.Unit)},
	}
	if r.Bytes > 0 && r.Elapsed > 0 {
		rows = append(rows, [2]string{"bandwidth", fmt.Sprintf("%.2f MB/s", float64(r.Bytes)/r.Elapsed.Seconds()/1024/1024)})
	}
	h := r.Latency
	rows = append(rows,
		[2]string{"latency avg", ms(h.Mean())},
		[2]string{"latency stddev", ms(h.StdDev())},
		[2]string{"latency min", ms(h.Min())},
		[2]string{"latency p50", ms(h.Percentile(50))},
		[2]string{"latency p95", ms(h.Percentile(95))},
		[2]string{"latency p99", ms(h.Percentile(99))},
		[2]string{"latency p99.9", ms(h.Percentile(99.9))},
		[2]string{"latency max", ms(h.Max())},
	)
	for _, k := range sortedKeys(r.Extra) {
		rows = append(rows, [2]string{k, fmt.Sprint(r.Extra[k])})
	}
	for _, row := range rows {
		fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
	}
	return tw.Flush()
}
