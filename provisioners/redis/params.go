package redis

import (
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/strata-dev/strata/catalog"
)

// Settings are an instance's parameters with the plan's defaults filled
// in: the one place where "absent" turns into a value.
type Settings struct {
	Replicas  int
	Sentinels int
	StorageGB int
	CPU       string
	Memory    string
	// MaxmemoryBytes is Redis's maxmemory: MaxmemoryPercent of Memory, so
	// that replication buffers, the fork of a snapshot or AOF rewrite and
	// fragmentation fit under the container's limit.
	MaxmemoryBytes  int64
	MaxmemoryPolicy string
	// AOF is the appendfsync policy; "" means no append-only file.
	AOF string
	// Snapshots are the RDB save points ("<seconds> <changes>").
	Snapshots   []string
	KeepVolumes bool
}

// MaxmemoryPercent is the share of the memory limit Redis may fill with data.
const MaxmemoryPercent = 75

// rawParams mirrors the JSON Schema in catalog/redis.go.
type rawParams struct {
	Replicas  *int `json:"replicas"`
	StorageGB *int `json:"storage_gb"`
	Resources *struct {
		CPU    *string `json:"cpu"`
		Memory *string `json:"memory"`
	} `json:"resources"`
	MaxmemoryPolicy *string `json:"maxmemory_policy"`
}

// Resolve applies the plan's defaults to schema-valid parameters and checks
// what a JSON Schema cannot: resource ceilings.
func Resolve(plan *catalog.Plan, params map[string]any) (Settings, error) {
	r := plan.Redis
	if r == nil {
		return Settings{}, fmt.Errorf("plan %q is not a Redis plan", plan.Name)
	}
	var p rawParams
	raw, _ := json.Marshal(params)
	if err := json.Unmarshal(raw, &p); err != nil {
		return Settings{}, fmt.Errorf("parameters: %v", err)
	}
	s := Settings{
		Replicas:        deref(p.Replicas, r.Replicas),
		Sentinels:       r.Sentinels,
		StorageGB:       deref(p.StorageGB, r.StorageGB),
		CPU:             r.CPU,
		Memory:          r.Memory,
		MaxmemoryPolicy: deref(p.MaxmemoryPolicy, catalog.DefaultMaxmemoryPolicy),
		AOF:             r.Persistence.AOF,
		Snapshots:       r.Persistence.Snapshots,
		KeepVolumes:     r.Persistence.KeepVolumes,
	}
	if p.Resources != nil {
		s.CPU = deref(p.Resources.CPU, r.CPU)
		s.Memory = deref(p.Resources.Memory, r.Memory)
	}
	if s.Replicas < r.MinReplicas || s.Replicas > r.MaxReplicas {
		return Settings{}, fmt.Errorf("parameters.replicas: %d is outside this plan's %d–%d", s.Replicas, r.MinReplicas, r.MaxReplicas)
	}
	if s.StorageGB < r.MinStorageGB || s.StorageGB > r.MaxStorageGB {
		return Settings{}, fmt.Errorf("parameters.storage_gb: %d is outside this plan's %d–%d GB", s.StorageGB, r.MinStorageGB, r.MaxStorageGB)
	}
	if err := atMost("parameters.resources.cpu", s.CPU, r.MaxCPU); err != nil {
		return Settings{}, err
	}
	if err := atMost("parameters.resources.memory", s.Memory, r.MaxMemory); err != nil {
		return Settings{}, err
	}
	mem := resource.MustParse(s.Memory)
	s.MaxmemoryBytes = mem.Value() * MaxmemoryPercent / 100
	return s, nil
}

// atMost checks that value is a positive quantity no larger than limit.
func atMost(field, value, limit string) error {
	v, err := resource.ParseQuantity(value)
	if err != nil {
		return fmt.Errorf("%s: %q is not a Kubernetes quantity: %v", field, value, err)
	}
	if v.Sign() <= 0 {
		return fmt.Errorf("%s: %s must be more than 0 (at most %s on this plan)", field, value, limit)
	}
	if v.Cmp(resource.MustParse(limit)) > 0 {
		return fmt.Errorf("%s: %s is more than this plan allows (%s); choose a larger plan", field, value, limit)
	}
	return nil
}

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}
