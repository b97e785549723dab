package catalog

import (
	"fmt"
	"strings"

	"github.com/pivotal-cf/brokerapi/v12/domain"
)

// Ids are stable forever: platforms store them.
const (
	RedisServiceID  = "a3aca14a-6f5a-4b96-b713-058be211a532"
	RedisDevLiteID  = "0c70e503-56b7-430d-bab8-14c08062f86d"
	RedisStandardID = "6f695b23-ad25-41d5-b91e-cc1d8d5dde23"
	RedisHAID       = "811af8de-717d-4531-99bc-787c02d6a918"
)

// RedisPlan is what a Redis plan stands for: a RedisFailover (Spotahome
// redis-operator API) with Sentinel; the builders in provisioners/redis
// turn it, with the parameters, into the operator's objects.
type RedisPlan struct {
	// Replicas is the default number of Redis pods (one master, the rest
	// replicas); the replicas parameter moves it within
	// [MinReplicas, MaxReplicas].
	Replicas    int
	MinReplicas int
	MaxReplicas int
	// Sentinels is the number of Sentinel pods. The operator's Sentinels
	// need a quorum of 2, so with fewer than 3 there is no failover.
	Sentinels int
	// ZoneSpread spreads the Redis and Sentinel pods across availability
	// zones: "preferred" (the scheduler tries), "required" (a zone's loss
	// never takes the Sentinel quorum or every Redis; pods wait rather
	// than share a zone beyond the skew), "" (no spread).
	ZoneSpread string

	// Memory and CPU of each Redis pod (requests = limits); maxmemory is
	// derived from the memory (see provisioners/redis).
	Memory    string
	MaxMemory string
	CPU       string
	MaxCPU    string

	StorageGB    int
	MinStorageGB int
	MaxStorageGB int

	Persistence RedisPersistence

	// MinReplicasToWrite is Redis's min-replicas-to-write on the master:
	// with 1, a master whose replica was promoted (its link dropped)
	// refuses writes at once instead of acknowledging writes the new
	// master never sees. 0 on a plan without replicas.
	MinReplicasToWrite int
	// WritesWithoutReplica lets a master the Sentinels name accept writes
	// while it has no replica at all (the role agent sets
	// min-replicas-to-write 0 then): availability over a second copy.
	// standard has one replica, which is away during every failover and
	// restart; ha keeps two and refuses writes with neither.
	WritesWithoutReplica bool
	// Backup copies RDB snapshots off the cluster, to the broker's
	// redis.backup bucket; nil: none (dev-lite).
	Backup *RedisBackupPlan
}

// RedisBackupPlan is a plan's off-cluster snapshot policy: a CronJob per
// instance takes an RDB from a replica and uploads it (provisioners/redis).
type RedisBackupPlan struct {
	// Schedule is a five-field cron expression, in UTC (the CronJob's
	// timeZone is Etc/UTC).
	Schedule string
	// RetentionDays is how long snapshots are kept; the newest one is
	// kept whatever its age, so an instance always has one to restore.
	RetentionDays int
	// CPU and Memory of the snapshot job (requests = limits): it streams
	// the RDB to a file and uploads it, so it needs little of either.
	CPU, Memory string
}

// RedisPersistence is how a plan keeps Redis data across restarts.
type RedisPersistence struct {
	// AOF is the append-only file's fsync policy: "no" (the kernel
	// flushes, about every 30 s), "everysec" or "always"; "" means no
	// append-only file. Every plan has one: Redis started with an AOF on a
	// volume that has only an RDB snapshot starts empty (proved in
	// integration/redistest), so a plan without one could never move to
	// a plan with one.
	AOF string
	// Snapshots are RDB save points, each "<seconds> <changes>": a snapshot
	// is written when at least <changes> writes happened in <seconds>.
	Snapshots []string
	// KeepVolumes keeps the data volumes (PVCs) when the instance is
	// deleted (the RedisFailover's storage.keepAfterDeletion).
	KeepVolumes bool
}

// AOFPolicies are the append-only fsync policies the catalog offers.
var AOFPolicies = []string{"no", "everysec", "always"}

// MaxmemoryPolicies are Redis's eviction policies.
var MaxmemoryPolicies = []string{
	"noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random",
	"volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl",
}

// DefaultMaxmemoryPolicy suits a cache: the least recently used keys go
// when memory is full.
const DefaultMaxmemoryPolicy = "allkeys-lru"

// RedisService returns the Redis service until the broker lists it in
// Default (the catalog tests and the engine's tests use it).
func RedisService() Service { return redisService() }

func redisService() Service {
	snapshots := []string{"3600 1", "300 100", "60 10000"}
	devLite := Plan{
		ID:          RedisDevLiteID,
		Name:        "dev-lite",
		Description: "One Redis and one Sentinel, RDB snapshots and an append-only file flushed by the OS, no failover: for development and tests.",
		UpdatableTo: []string{"standard"},
		// Two pods and a PVC.
		MaximumPollingDuration: 1200,
		Redis: &RedisPlan{
			Replicas: 1, MinReplicas: 1, MaxReplicas: 1, Sentinels: 1,
			Memory: "256Mi", MaxMemory: "1Gi", CPU: "100m", MaxCPU: "500m",
			StorageGB: 1, MinStorageGB: 1, MaxStorageGB: 5,
			Persistence: RedisPersistence{AOF: "no", Snapshots: snapshots},
		},
	}
	standard := Plan{
		ID:   RedisStandardID,
		Name: "standard",
		Description: "Master and replica with three Sentinels for automatic failover, " +
			"AOF (fsync every second) and RDB snapshots on persistent volumes.",
		UpdatableTo:            []string{"ha"},
		MaximumPollingDuration: 2400,
		Redis: &RedisPlan{
			Replicas: 2, MinReplicas: 2, MaxReplicas: 5, Sentinels: 3, ZoneSpread: "preferred",
			MinReplicasToWrite: 1, WritesWithoutReplica: true,
			Memory: "1Gi", MaxMemory: "8Gi", CPU: "500m", MaxCPU: "2",
			StorageGB: 5, MinStorageGB: 2, MaxStorageGB: 100,
			Persistence: RedisPersistence{AOF: "everysec", Snapshots: snapshots},
			Backup:      &RedisBackupPlan{Schedule: "17 */6 * * *", RetentionDays: 7, CPU: "200m", Memory: "128Mi"},
		},
	}
	ha := Plan{
		ID:   RedisHAID,
		Name: "ha",
		Description: "Master and two replicas with three Sentinels, AOF with fsync on every " +
			"write, RDB snapshots, volumes kept after deletion.",
		MaximumPollingDuration: 3600,
		Redis: &RedisPlan{
			Replicas: 3, MinReplicas: 3, MaxReplicas: 7, Sentinels: 3, ZoneSpread: "required",
			MinReplicasToWrite: 1, WritesWithoutReplica: false,
			Memory: "4Gi", MaxMemory: "32Gi", CPU: "1", MaxCPU: "4",
			StorageGB: 20, MinStorageGB: 5, MaxStorageGB: 500,
			Persistence: RedisPersistence{AOF: "always", Snapshots: snapshots, KeepVolumes: true},
			Backup:      &RedisBackupPlan{Schedule: "7 * * * *", RetentionDays: 30, CPU: "500m", Memory: "256Mi"},
		},
	}
	for _, p := range []*Plan{&devLite, &standard, &ha} {
		p.Metadata = redisPlanMetadata(p)
	}
	return Service{
		ID:     RedisServiceID,
		Name:   "redis",
		Engine: EngineRedis,
		Description: "Redis with Sentinel managed by the redis-operator (RedisFailover) in your " +
			"namespace: password and TLS on every client connection, persistence, Spring-Boot-ready bindings.",
		Tags: []string{"redis", "cache", "key-value", "sentinel"},
		Metadata: serviceMetadata("Redis",
			"Redis master/replica sets watched by Sentinel, run by the redis-operator in the tenant's namespace, from a single dev instance to three replicas with AOF fsync on every write.",
			"docs/redis.md"),
		Plans: []Plan{devLite, standard, ha},
	}
}

func redisPlanMetadata(p *Plan) domain.ServicePlanMetadata {
	r := p.Redis
	failover := "no automatic failover"
	if r.Sentinels >= 3 && r.Replicas >= 2 {
		failover = "automatic failover"
	}
	bullets := []string{
		fmt.Sprintf("%d Redis pod(s) (%d–%d), %d Sentinel(s): %s", r.Replicas, r.MinReplicas, r.MaxReplicas, r.Sentinels, failover),
		fmt.Sprintf("%s memory, %s CPU per Redis pod by default (at most %s, %s)", r.Memory, r.CPU, r.MaxMemory, r.MaxCPU),
		fmt.Sprintf("%d GB volume per Redis pod by default (%d–%d GB)", r.StorageGB, r.MinStorageGB, r.MaxStorageGB),
		"password and TLS on every client connection",
		"RDB snapshots (" + strings.Join(r.Persistence.Snapshots, ", ") + ")",
	}
	switch r.Persistence.AOF {
	case "no":
		bullets = append(bullets, "append-only file flushed by the OS: the last seconds of writes can be lost")
	case "":
		bullets = append(bullets, "no append-only file: writes since the last snapshot can be lost")
	default:
		bullets = append(bullets, "append-only file, fsync "+r.Persistence.AOF)
	}
	if r.Persistence.KeepVolumes {
		bullets = append(bullets, "volumes kept after deprovision")
	}
	if b := r.Backup; b != nil {
		bullets = append(bullets, fmt.Sprintf("RDB snapshots copied to S3 (cron %q, UTC), kept %d days", b.Schedule, b.RetentionDays))
	}
	return domain.ServicePlanMetadata{
		DisplayName: planDisplayName(p.Name),
		Bullets:     bullets,
		AdditionalMetadata: map[string]any{
			"redis_replicas":    r.Replicas,
			"sentinels":         r.Sentinels,
			"storage_gb":        r.StorageGB,
			"aof":               r.Persistence.AOF,
			"offsite_snapshots": r.Backup != nil,
		},
	}
}

func redisSchemas(r *RedisPlan) PlanSchemas {
	return PlanSchemas{
		Provision: redisInstanceSchema(r, false),
		Update:    redisInstanceSchema(r, true),
		Bind:      redisBindSchema(),
	}
}

func redisInstanceSchema(r *RedisPlan, update bool) Schema {
	props := Schema{
		"replicas": Schema{
			"type": "integer", "minimum": r.MinReplicas, "maximum": r.MaxReplicas, "default": r.Replicas,
			"description": "Redis pods: one master, the others replicas that Sentinel promotes on failure.",
		},
		"storage_gb": Schema{
			"type": "integer", "minimum": r.MinStorageGB, "maximum": r.MaxStorageGB, "default": r.StorageGB,
			"description": "Volume size of each Redis pod in GB (GiB), for the RDB snapshots and the append-only file. It can grow on update, never shrink.",
		},
		"resources": resourcesSchema(
			fmt.Sprintf("CPU and memory of each Redis pod (requests = limits). At most %s CPU and %s memory on this plan. maxmemory is 75%% of the memory.", r.MaxCPU, r.MaxMemory),
			r.CPU, r.Memory),
		"maxmemory_policy": Schema{
			"type": "string", "enum": MaxmemoryPolicies, "default": DefaultMaxmemoryPolicy,
			"description": "What Redis evicts when maxmemory is reached; noeviction refuses writes instead.",
		},
	}
	if !update {
		// A restore is chosen at provision only: it fills the new
		// instance's empty volumes once.
		props["restore"] = Schema{
			"type": "object", "additionalProperties": false, "required": []string{"from_instance"},
			"description": "Start from an off-cluster RDB snapshot of another Redis instance of this namespace (standard and ha take them; a deprovisioned instance's stay for their retention).",
			"properties": Schema{
				"from_instance": Schema{
					"type": "string", "minLength": 1, "maxLength": 255,
					"description": "OSB instance id of the source instance.",
				},
				"snapshot": Schema{
					"type": "string", "minLength": 1,
					"description": "\"latest\" (the default), or an RFC 3339 time: the newest snapshot taken at or before it.",
				},
			},
		}
	}
	return instanceSchema("Redis", props, update)
}

// RestoreLatest restores the newest snapshot.
const RestoreLatest = "latest"

func redisBindSchema() Schema {
	// Every binding gets the instance's password and the master's TLS
	// address: there is nothing to choose.
	return objectSchema("Redis binding parameters", Schema{})
}
