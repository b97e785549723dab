package advisor

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// KafkaOptions tune the Kafka advice. The zero value means the defaults.
type KafkaOptions struct {
	// LagThreshold is the total lag of a group (records) from which a
	// group with running consumers is reported as falling behind.
	LagThreshold int64
	// TopPartitions is how many of a group's most lagging partitions a
	// recommendation names.
	TopPartitions int
}

// DefaultKafkaOptions are used for every zero field.
var DefaultKafkaOptions = KafkaOptions{LagThreshold: 1000, TopPartitions: 5}

func (o KafkaOptions) withDefaults() KafkaOptions {
	if o.LagThreshold <= 0 {
		o.LagThreshold = DefaultKafkaOptions.LagThreshold
	}
	if o.TopPartitions <= 0 {
		o.TopPartitions = DefaultKafkaOptions.TopPartitions
	}
	return o
}

// PartitionLag is a group's position on one partition.
type PartitionLag struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Committed int64  `json:"committed"`
	End       int64  `json:"end"`
	Lag       int64  `json:"lag"`
}

// GroupLag is a consumer group with its lag per partition.
type GroupLag struct {
	Group   string
	State   string // Stable, Empty, PreparingRebalance, …
	Members int
	Lags    []PartitionLag
}

// PartitionPlacement is where a partition's leader and replicas are.
type PartitionPlacement struct {
	Topic     string
	Partition int32
	Leader    int32
	Replicas  []int32
}

// KafkaInputs is what the Kafka advice is computed from.
type KafkaInputs struct {
	Groups     []GroupLag
	Brokers    []int32
	Partitions []PartitionPlacement
	Notes      []string
}

// AdviseKafka turns the collected inputs into a report.
func AdviseKafka(in KafkaInputs, o KafkaOptions, now time.Time) Report {
	o = o.withDefaults()
	r := Report{Service: "kafka", CheckedAt: now, Notes: append([]string(nil), in.Notes...)}
	partitionsOf := map[string]int{}
	for _, p := range in.Partitions {
		partitionsOf[p.Topic]++
	}
	for _, g := range in.Groups {
		var total int64
		lags := append([]PartitionLag(nil), g.Lags...)
		for _, l := range lags {
			if l.Lag > 0 {
				total += l.Lag
			}
		}
		if total == 0 {
			continue
		}
		sort.SliceStable(lags, func(i, j int) bool { return lags[i].Lag > lags[j].Lag })
		var worst []string
		for _, l := range lags {
			if l.Lag <= 0 || len(worst) >= o.TopPartitions {
				break
			}
			worst = append(worst, fmt.Sprintf("%s-%d: %d behind (committed %d, end %d)", l.Topic, l.Partition, l.Lag, l.Committed, l.End))
		}
		m := map[string]float64{"total_lag": float64(total), "members": float64(g.Members), "partitions": float64(len(g.Lags))}
		stopped := g.Members == 0 || g.State == "Empty" || g.State == "Dead"
		switch {
		case stopped:
			r.Recommendations = append(r.Recommendations, Recommendation{
				Service: "kafka", Kind: KindConsumerLag, Severity: Critical, Target: g.Group,
				Summary: fmt.Sprintf("group %s has no running consumer (state %s) and %d records are waiting: %s",
					g.Group, g.State, total, strings.Join(worst, "; ")),
				Action:  "start the group's consumers; if the group is no longer used, delete it so that its committed offsets stop counting",
				Metrics: m,
			})
		case total >= o.LagThreshold:
			action := "speed up the consumers' processing, or run more of them (one partition feeds at most one consumer of a group)"
			topics := map[string]bool{}
			for _, l := range g.Lags {
				topics[l.Topic] = true
			}
			parts := 0
			for t := range topics {
				parts += partitionsOf[t]
			}
			if parts > 0 && g.Members >= parts {
				action = fmt.Sprintf("the group already has a consumer per partition (%d members, %d partitions): add partitions to the topics (their partitions parameter) or speed up processing", g.Members, parts)
			}
			r.Recommendations = append(r.Recommendations, Recommendation{
				Service: "kafka", Kind: KindConsumerLag, Severity: Warning, Target: g.Group,
				Summary: fmt.Sprintf("group %s (%d consumers, %s) is %d records behind: %s", g.Group, g.Members, g.State, total, strings.Join(worst, "; ")),
				Action:  action, Metrics: m,
			})
		}
	}
	r.Recommendations = append(r.Recommendations, partitionBalance(in)...)
	sortRecommendations(r.Recommendations)
	return r
}

// partitionBalance compares how many partition leaders, and replicas,
// each broker holds. Leaders serve every produce and fetch, so a broker
// with more of them than the others is the one that saturates first.
func partitionBalance(in KafkaInputs) []Recommendation {
	if len(in.Brokers) < 2 || len(in.Partitions) == 0 {
		return nil
	}
	leaders, replicas := map[int32]int{}, map[int32]int{}
	for _, b := range in.Brokers {
		leaders[b], replicas[b] = 0, 0
	}
	for _, p := range in.Partitions {
		if p.Leader >= 0 {
			leaders[p.Leader]++
		}
		for _, r := range p.Replicas {
			replicas[r]++
		}
	}
	var out []Recommendation
	check := func(what string, counts map[int32]int, action string) {
		lo, hi := int32(-1), int32(-1)
		for b, n := range counts {
			if lo < 0 || n < counts[lo] || (n == counts[lo] && b < lo) {
				lo = b
			}
			if hi < 0 || n > counts[hi] || (n == counts[hi] && b < hi) {
				hi = b
			}
		}
		// One apart is the best an uneven count can do.
		if counts[hi]-counts[lo] <= 1 {
			return
		}
		var per []string
		ids := make([]int32, 0, len(counts))
		for b := range counts {
			ids = append(ids, b)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		m := map[string]float64{}
		for _, b := range ids {
			per = append(per, fmt.Sprintf("broker %d: %d", b, counts[b]))
			m[fmt.Sprintf("broker_%d", b)] = float64(counts[b])
		}
		out = append(out, Recommendation{
			Service: "kafka", Kind: KindPartitionBalance, Severity: Warning, Target: what,
			Summary: fmt.Sprintf("the %d partitions' %s are unevenly spread (%s): broker %d carries the most",
				len(in.Partitions), what, strings.Join(per, ", "), hi),
			Action:  action,
			Metrics: m,
		})
	}
	check("leaders", leaders, "a preferred leader election moves leadership back to the first replicas; if the replicas themselves are uneven, rebalance them (Strimzi: a KafkaRebalance with Cruise Control), which is the platform's to run")
	check("replicas", replicas, "rebalance the replicas across brokers (Strimzi: a KafkaRebalance with Cruise Control), which is the platform's to run")
	return out
}
