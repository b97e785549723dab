package advisor

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// CollectRedis reads INFO memory and stats and MEMORY DOCTOR, and samples
// keys of the client's database with SCAN and MEMORY USAGE. It writes
// nothing. The sampling is bounded by MaxScanKeys keys and ScanBudget:
// SCAN returns small batches, so Redis serves other clients in between,
// and MEMORY USAGE estimates an aggregate from 5 of its elements
// (SAMPLES 5) instead of walking all of them.
func CollectRedis(ctx context.Context, c *goredis.Client, o RedisOptions) (RedisInputs, error) {
	o = o.withDefaults()
	var in RedisInputs
	info, err := c.Info(ctx, "memory", "stats").Result()
	if err != nil {
		return in, fmt.Errorf("INFO: %w", err)
	}
	in.Info = ParseInfo(info)
	if in.Doctor, err = c.Do(ctx, "MEMORY", "DOCTOR").Text(); err != nil {
		// Not fatal: the rest of the advice stands without it.
		in.Notes = append(in.Notes, "MEMORY DOCTOR failed: "+err.Error())
	}
	if in.Keys, err = c.DBSize(ctx).Result(); err != nil {
		return in, fmt.Errorf("DBSIZE: %w", err)
	}

	deadline := time.Now().Add(o.ScanBudget)
	var cursor uint64
	var samples []KeySample
	for {
		keys, next, err := c.Scan(ctx, cursor, "", 200).Result()
		if err != nil {
			return in, fmt.Errorf("SCAN: %w", err)
		}
		if len(keys) > o.MaxScanKeys-in.Sampled {
			keys = keys[:o.MaxScanKeys-in.Sampled]
		}
		pipe := c.Pipeline()
		usage := make([]*goredis.IntCmd, len(keys))
		types := make([]*goredis.StatusCmd, len(keys))
		for i, k := range keys {
			usage[i] = pipe.MemoryUsage(ctx, k, 5)
			types[i] = pipe.Type(ctx, k)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
			return in, fmt.Errorf("MEMORY USAGE: %w", err)
		}
		for i, k := range keys {
			n, err := usage[i].Result()
			if err != nil {
				continue // expired or deleted since SCAN returned it
			}
			in.Sampled++
			if n >= o.BigKeyBytes {
				samples = append(samples, KeySample{Key: k, Type: types[i].Val(), Bytes: n})
			}
		}
		cursor = next
		if cursor == 0 || in.Sampled >= o.MaxScanKeys {
			break
		}
		if time.Now().After(deadline) {
			in.Notes = append(in.Notes, fmt.Sprintf("key sampling stopped after %s (its budget)", o.ScanBudget))
			break
		}
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i].Bytes > samples[j].Bytes })
	in.BigKeys = samples
	return in, nil
}
