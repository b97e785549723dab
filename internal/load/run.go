package load

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"
)

// Limits say when a run stops: after Duration, or after Count operations
// in all (whichever comes first; zero means no such limit, and one of them
// must be set).
type Limits struct {
	Duration time.Duration
	Count    int64
	// Progress is the interval of progress lines (pgbench's -P); zero
	// prints none.
	Progress time.Duration
	// Out receives progress lines (standard error in the command).
	Out io.Writer
}

// Worker is one client's view of a run: its own histogram and counter,
// and the shared stop conditions.
type Worker struct {
	ID      int
	Hist    *Histogram
	Counter *Counter
	run     *runState
}

type runState struct {
	ctx      context.Context // cancelled: stop (Ctrl-C)
	deadline time.Time
	left     atomic.Int64 // operations not yet handed out; <0: no count limit
	counted  bool
	stop     atomic.Bool
}

// Take asks for up to n more operations and returns how many the worker
// may do: 0 once the count is reached or the time is up.
func (w *Worker) Take(n int) int {
	r := w.run
	if r.stop.Load() || r.ctx.Err() != nil {
		return 0
	}
	if !r.deadline.IsZero() && time.Now().After(r.deadline) {
		r.stop.Store(true)
		return 0
	}
	if !r.counted {
		return n
	}
	for {
		left := r.left.Load()
		if left <= 0 {
			return 0
		}
		take := min(int64(n), left)
		if r.left.CompareAndSwap(left, left-take) {
			return int(take)
		}
	}
}

// Stopped says whether the run is over (for workers that do not Take,
// such as consumers).
func (w *Worker) Stopped() bool {
	r := w.run
	if r.stop.Load() || r.ctx.Err() != nil {
		return true
	}
	if !r.deadline.IsZero() && time.Now().After(r.deadline) {
		r.stop.Store(true)
		return true
	}
	return false
}

// Stop ends the run for every worker (e.g. consumers that have seen every
// record).
func (w *Worker) Stop() { w.run.stop.Store(true) }

// Run runs workers until the limits are reached and measures them. The
// workers' connections must already be open: the clock starts when they
// are all released together, so connection set-up is not measured
// (pgbench's "without initial connection time").
func Run(ctx context.Context, workload, unit string, workers int, lim Limits, fn func(ctx context.Context, w *Worker) error) (*Result, error) {
	if lim.Duration <= 0 && lim.Count <= 0 {
		return nil, fmt.Errorf("give a duration or a count")
	}
	if workers < 1 {
		return nil, fmt.Errorf("need at least one client, got %d", workers)
	}
	st := &runState{counted: lim.Count > 0}
	st.left.Store(lim.Count)
	counters := make([]Counter, workers)
	hists := make([]*Histogram, workers)
	start := time.Now()
	if lim.Duration > 0 {
		st.deadline = start.Add(lim.Duration)
	}
	st.ctx = ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var progressDone chan struct{}
	if lim.Progress > 0 && lim.Out != nil {
		progressDone = make(chan struct{})
		go func() {
			defer close(progressDone)
			progress(ctx, lim, start, counters, unit)
		}()
	}

	var wg sync.WaitGroup
	errs := make([]error, workers)
	for i := range workers {
		hists[i] = &Histogram{}
		w := &Worker{ID: i, Hist: hists[i], Counter: &counters[i], run: st}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(ctx, w)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cancel()
	if progressDone != nil {
		<-progressDone
	}
	res := &Result{Workload: workload, Unit: unit, Elapsed: elapsed, Latency: &Histogram{}, Extra: map[string]int64{}}
	for _, h := range hists {
		res.Latency.Merge(h)
	}
	s := sum(counters)
	res.Ops, res.Errors = s.Ops, s.Errors
	for _, err := range errs {
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// progress prints a line per interval, like pgbench -P: the interval's
// throughput, its mean latency and the errors so far. On a terminal the
// line is redrawn in place with a bar of the elapsed share of the run; a
// bar is a dozen lines of code, not worth a dependency.
func progress(ctx context.Context, lim Limits, start time.Time, counters []Counter, unit string) {
	tty := false
	if f, ok := lim.Out.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	tick := time.NewTicker(lim.Progress)
	defer tick.Stop()
	var last Snapshot
	lastT := start
	for {
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(lim.Out)
			}
			return
		case now := <-tick.C:
			s := sum(counters)
			dt := now.Sub(lastT).Seconds()
			ops := s.Ops - last.Ops
			lat := 0.0
			if ops > 0 {
				lat = float64(s.LatSum-last.LatSum) / float64(ops) / 1e6
			}
			line := fmt.Sprintf("progress: %.1f s, %.1f %s/s, lat %.3f ms, %d failed",
				now.Sub(start).Seconds(), float64(ops)/dt, unit, lat, s.Errors)
			if tty {
				// \x1b[K clears what a longer previous line left.
				fmt.Fprintf(lim.Out, "\r%s %s\x1b[K", bar(done(lim, now.Sub(start), s.Ops), 30), line)
			} else {
				fmt.Fprintln(lim.Out, line)
			}
			last, lastT = s, now
		}
	}
}

// done is the share of the run behind us: of the time or of the count,
// whichever is further.
func done(lim Limits, elapsed time.Duration, ops int64) float64 {
	f := 0.0
	if lim.Duration > 0 {
		f = elapsed.Seconds() / lim.Duration.Seconds()
	}
	if lim.Count > 0 {
		f = max(f, float64(ops)/float64(lim.Count))
	}
	return min(f, 1)
}

func bar(frac float64, width int) string {
	n := int(frac * float64(width))
	return fmt.Sprintf("[%s%s] %3.0f%%", strings.Repeat("#", n), strings.Repeat(" ", width-n), frac*100)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
