package advisor

import (
	"bufio"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// RedisOptions tune the Redis advice. The zero value means the defaults.
type RedisOptions struct {
	// BigKeyBytes: a key using at least this much memory (MEMORY USAGE)
	// is reported.
	BigKeyBytes int64
	// MaxScanKeys bounds the keys sampled with SCAN and MEMORY USAGE, so
	// the advisor's work is bounded whatever the size of the instance.
	MaxScanKeys int
	// ScanBudget bounds the time spent sampling.
	ScanBudget time.Duration
	// NearFull is the used_memory / maxmemory ratio from which memory is
	// reported as near its limit.
	NearFull float64
	// TopKeys is how many big keys are reported at most.
	TopKeys int
}

// DefaultRedisOptions are used for every zero field.
var DefaultRedisOptions = RedisOptions{BigKeyBytes: 1 << 20, MaxScanKeys: 10000, ScanBudget: 10 * time.Second, NearFull: 0.8, TopKeys: 10}

func (o RedisOptions) withDefaults() RedisOptions {
	d := DefaultRedisOptions
	if o.BigKeyBytes <= 0 {
		o.BigKeyBytes = d.BigKeyBytes
	}
	if o.MaxScanKeys <= 0 {
		o.MaxScanKeys = d.MaxScanKeys
	}
	if o.ScanBudget <= 0 {
		o.ScanBudget = d.ScanBudget
	}
	if o.NearFull <= 0 || o.NearFull >= 1 {
		o.NearFull = d.NearFull
	}
	if o.TopKeys <= 0 {
		o.TopKeys = d.TopKeys
	}
	return o
}

// KeySample is a key's memory as MEMORY USAGE estimates it.
type KeySample struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Bytes int64  `json:"bytes"`
}

// RedisInputs is what the Redis advice is computed from: INFO memory and
// stats, MEMORY DOCTOR, and a bounded sample of the keys.
type RedisInputs struct {
	Info map[string]string
	// Doctor is MEMORY DOCTOR's report.
	Doctor string
	// Keys is DBSIZE summed over the databases; Sampled how many of them
	// were measured.
	Keys    int64
	Sampled int
	// BigKeys are the sampled keys of at least BigKeyBytes, biggest first.
	BigKeys []KeySample
	Notes   []string
}

// ParseInfo reads the output of INFO: "field:value" lines, "# Section"
// headers and blank lines ignored.
func ParseInfo(info string) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = v
		}
	}
	return out
}

func infoInt(info map[string]string, k string) int64 {
	n, _ := strconv.ParseInt(info[k], 10, 64)
	return n
}

func infoFloat(info map[string]string, k string) float64 {
	f, _ := strconv.ParseFloat(info[k], 64)
	return f
}

// Redis's MEMORY DOCTOR says one of these when it has nothing to report.
var doctorHealthy = []string{"can't find any memory issue", "instance is empty or is using very little memory"}

// AdviseRedis turns the collected inputs into a report.
func AdviseRedis(in RedisInputs, o RedisOptions, now time.Time) Report {
	o = o.withDefaults()
	r := Report{Service: "redis", CheckedAt: now, Notes: append([]string(nil), in.Notes...)}
	add := func(kind, target string, sev Severity, summary, action string, m map[string]float64) {
		r.Recommendations = append(r.Recommendations, Recommendation{Service: "redis", Kind: kind, Severity: sev, Target: target, Summary: summary, Action: action, Metrics: m})
	}
	used, maxmem := infoInt(in.Info, "used_memory"), infoInt(in.Info, "maxmemory")
	rss := infoInt(in.Info, "used_memory_rss")
	policy := in.Info["maxmemory_policy"]
	evicted := infoInt(in.Info, "evicted_keys")

	switch {
	case maxmem == 0:
		add(KindRedisMemory, "maxmemory", Warning,
			fmt.Sprintf("maxmemory is not set: Redis (%s used) grows until the pod's memory limit kills it", bytesHuman(used)),
			"set maxmemory below the pod's memory limit (Strata's instances have it; this one was changed)",
			map[string]float64{"used_memory": float64(used)})
	case float64(used) >= o.NearFull*float64(maxmem):
		ratio := float64(used) / float64(maxmem)
		sev := Warning
		if ratio >= 0.95 {
			sev = Critical
		}
		what := fmt.Sprintf("keys are evicted (%s) once it is reached", policy)
		if policy == "noeviction" {
			what = "writes fail with OOM once it is reached (maxmemory-policy noeviction)"
		}
		add(KindRedisMemory, "maxmemory", sev,
			fmt.Sprintf("%s of the %s maxmemory is used (%.0f%%): %s", bytesHuman(used), bytesHuman(maxmem), 100*ratio, what),
			"give keys a TTL, shrink the big keys reported here, or raise the instance's resources.memory (maxmemory is 75% of it) or plan",
			map[string]float64{"used_memory": float64(used), "maxmemory": float64(maxmem), "used_ratio": ratio})
	}
	if evicted > 0 {
		add(KindRedisEvictions, "evicted_keys", Warning,
			fmt.Sprintf("%d keys were evicted since Redis started (policy %s): the data set does not fit in maxmemory, and a cache that evicts what it needs misses more", evicted, policy),
			"if the evicted keys are needed (compare keyspace_hits and keyspace_misses), raise resources.memory; if not, give them a TTL so that they expire instead",
			map[string]float64{"evicted_keys": float64(evicted), "keyspace_hits": float64(infoInt(in.Info, "keyspace_hits")), "keyspace_misses": float64(infoInt(in.Info, "keyspace_misses"))})
	}
	// The ratio alone misleads on a small instance (a few MiB of
	// allocator overhead make it 5): only a large absolute waste counts.
	if frag := infoFloat(in.Info, "mem_fragmentation_ratio"); frag > 1.5 && rss-used >= 64<<20 {
		add(KindRedisFragment, "mem_fragmentation_ratio", Warning,
			fmt.Sprintf("the process holds %s for %s of data (fragmentation ratio %.2f): %s is wasted", bytesHuman(rss), bytesHuman(used), frag, bytesHuman(rss-used)),
			"after a past peak this is harmless and shrinks with a restart (an update of the instance restarts its pods); if it persists, the pod's memory limit must hold the RSS: raise resources.memory",
			map[string]float64{"mem_fragmentation_ratio": frag, "used_memory_rss": float64(rss), "used_memory": float64(used)})
	}
	if d := strings.TrimSpace(in.Doctor); d != "" {
		healthy := false
		for _, h := range doctorHealthy {
			healthy = healthy || strings.Contains(d, h)
		}
		if !healthy {
			add(KindRedisDoctor, "MEMORY DOCTOR", Info, oneLine(d, 600), "", nil)
		}
	}
	big := append([]KeySample(nil), in.BigKeys...)
	sort.SliceStable(big, func(i, j int) bool { return big[i].Bytes > big[j].Bytes })
	n := 0
	for _, k := range big {
		if k.Bytes < o.BigKeyBytes || n >= o.TopKeys {
			break
		}
		n++
		m := map[string]float64{"bytes": float64(k.Bytes)}
		share := ""
		if used > 0 {
			m["share_of_used_memory"] = float64(k.Bytes) / float64(used)
			share = fmt.Sprintf(", %.0f%% of the memory in use", 100*float64(k.Bytes)/float64(used))
		}
		add(KindBigKey, k.Key, Warning,
			fmt.Sprintf("%s key of %s%s: reading, writing or deleting it at once blocks Redis for everyone", k.Type, bytesHuman(k.Bytes), share),
			bigKeyAction(k.Type), m)
	}
	if in.Keys > int64(in.Sampled) {
		r.Notes = append(r.Notes, fmt.Sprintf("big keys: %d of %d keys were measured (the sample is bounded); a big key outside it is not reported", in.Sampled, in.Keys))
	}
	sortRecommendations(r.Recommendations)
	return r
}

func bigKeyAction(typ string) string {
	switch typ {
	case "string":
		return "keep large values out of Redis (object storage, compressed, or chunked); delete with UNLINK"
	case "hash", "set", "zset", "list":
		return "split it into smaller keys (by id range or hash bucket) and read it with H/S/ZSCAN or LRANGE pages, never all at once; delete with UNLINK"
	case "stream":
		return "trim it (XADD … MAXLEN ~ n, or XTRIM)"
	}
	return "split it into smaller keys; delete with UNLINK"
}
