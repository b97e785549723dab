// Package advisor turns what a PostgreSQL, Redis or Kafka instance says
// about itself into recommendations for query optimization and resource
// tuning (requirement 7.5; docs/advisor.md).
//
// Each service has two halves, kept apart so that the rules can be tested
// with tables and the I/O against real servers:
//
//   - Collect* (postgres_collect.go, redis_collect.go, kafka_collect.go)
//     reads statistics over a connection the caller opened with a binding's
//     credentials. They only read: the PostgreSQL session is read-only and
//     HypoPG's hypothetical indexes exist only in the advisor's own session.
//   - Advise* (postgres.go, redis.go, kafka.go) are pure functions from
//     those inputs to a Report.
package advisor

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Severity orders recommendations: what hurts now comes first.
type Severity string

const (
	// Critical: the service is failing or losing data now (evictions at
	// maxmemory, a consumer that has stopped).
	Critical Severity = "critical"
	// Warning: a clear gain is available or a limit is near.
	Warning Severity = "warning"
	// Info: worth knowing; no urgency.
	Info Severity = "info"
)

func (s Severity) rank() int {
	switch s {
	case Critical:
		return 0
	case Warning:
		return 1
	}
	return 2
}

// Kinds of recommendation. They are stable strings: JSON consumers match
// on them.
const (
	KindMissingIndex     = "missing-index"
	KindUnusedIndex      = "unused-index"
	KindDuplicateIndex   = "duplicate-index"
	KindPostgresSetting  = "setting"
	KindConnections      = "connections"
	KindCacheHitRatio    = "cache-hit-ratio"
	KindRedisMemory      = "memory"
	KindRedisEvictions   = "evictions"
	KindRedisFragment    = "fragmentation"
	KindRedisDoctor      = "memory-doctor"
	KindBigKey           = "big-key"
	KindConsumerLag      = "consumer-lag"
	KindPartitionBalance = "partition-balance"
)

// Recommendation is one piece of advice with the numbers behind it.
type Recommendation struct {
	Service  string   `json:"service"` // postgresql, redis or kafka
	Kind     string   `json:"kind"`
	Severity Severity `json:"severity"`
	// Target is what the advice is about: a table, an index, a setting, a
	// key, a consumer group.
	Target string `json:"target"`
	// Summary says what was found, in one sentence.
	Summary string `json:"summary"`
	// Action is what to do about it: SQL to run, a parameter to change.
	// The advisor never does it itself.
	Action string `json:"action,omitempty"`
	// Query is the normalized statement (pg_stat_statements) the advice
	// is for, when there is one.
	Query string `json:"query,omitempty"`
	// Metrics are the numbers the advice rests on (for an index: the
	// planner's cost before and after, as HypoPG measured them).
	Metrics map[string]float64 `json:"metrics,omitempty"`
}

// Report is what one run of the advisor found.
type Report struct {
	Service         string           `json:"service"`
	CheckedAt       time.Time        `json:"checked_at"`
	Recommendations []Recommendation `json:"recommendations"`
	// Notes say what could not be checked, and why, so that an empty list
	// of recommendations is not mistaken for a clean bill of health.
	Notes []string `json:"notes,omitempty"`
}

// sortRecommendations puts the most severe first, then by kind and target
// so that output is stable from run to run.
func sortRecommendations(rs []Recommendation) {
	sort.SliceStable(rs, func(i, j int) bool {
		a, b := rs[i], rs[j]
		if a.Severity.rank() != b.Severity.rank() {
			return a.Severity.rank() < b.Severity.rank()
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Target < b.Target
	})
}

// Find returns the recommendations of kind about target ("" matches any
// target).
func (r *Report) Find(kind, target string) []Recommendation {
	var out []Recommendation
	for _, rec := range r.Recommendations {
		if rec.Kind == kind && (target == "" || rec.Target == target) {
			out = append(out, rec)
		}
	}
	return out
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	if r.Recommendations == nil {
		r.Recommendations = []Recommendation{} // [] rather than null for consumers
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for a person to read.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d recommendation(s), checked %s\n", r.Service, len(r.Recommendations), r.CheckedAt.UTC().Format(time.RFC3339))
	for i, rec := range r.Recommendations {
		fmt.Fprintf(&b, "\n%d. [%s] %s: %s\n   %s\n", i+1, rec.Severity, rec.Kind, rec.Target, rec.Summary)
		if rec.Query != "" {
			fmt.Fprintf(&b, "   query: %s\n", oneLine(rec.Query, 200))
		}
		if rec.Action != "" {
			fmt.Fprintf(&b, "   do: %s\n", rec.Action)
		}
		if len(rec.Metrics) > 0 {
			keys := make([]string, 0, len(rec.Metrics))
			for k := range rec.Metrics {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			parts := make([]string, len(keys))
			for i, k := range keys {
				parts[i] = fmt.Sprintf("%s=%s", k, formatNumber(rec.Metrics[k]))
			}
			fmt.Fprintf(&b, "   %s\n", strings.Join(parts, " "))
		}
	}
	if len(r.Notes) > 0 {
		b.WriteString("\nnotes:\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "  - %s\n", n)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func formatNumber(f float64) string {
	if f == float64(int64(f)) {
		return fmt.Sprintf("%d", int64(f))
	}
	return fmt.Sprintf("%.2f", f)
}

// oneLine collapses whitespace and cuts s to at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// bytesHuman formats a byte count with binary units, as Kubernetes
// quantities and PostgreSQL settings are read.
func bytesHuman(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB"}
	f := float64(n) / unit
	i := 0
	for f >= unit && i < len(units)-1 {
		f /= unit
		i++
	}
	if f == float64(int64(f)) {
		return fmt.Sprintf("%d%s", int64(f), units[i])
	}
	return fmt.Sprintf("%.1f%s", f, units[i])
}
