package redis

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
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
	// MinReplicasToWrite and WritesWithoutReplica are the plan's (see
	// catalog.RedisPlan); the role agent applies the second.
	MinReplicasToWrite   int
	WritesWithoutReplica bool
	// Restore fills the new instance from an off-cluster snapshot; nil:
	// it starts empty.
	Restore *Restore
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
	Restore         *struct {
		FromInstance string  `json:"from_instance"`
		Snapshot     *string `json:"snapshot"`
	} `json:"restore"`
}

// Resolve applies the plan's defaults to schema-valid parameters and checks
// what a JSON Schema cannot: resource ceilings.
func Resolve(plan *catalog.Plan, params map[string]any) (Settings, error) {
	r := plan.Redis
	if r == nil {
		return Settings{}, fmt.Errorf("plan %q is not a Redis plan", plan.Name)
	}
	var p rawParams
	err := provisioners.DecodeParams(params, &p)
	if err != nil {
		return Settings{}, err
	}
	s := Settings{
		Replicas:        provisioners.Deref(p.Replicas, r.Replicas),
		Sentinels:       r.Sentinels,
		StorageGB:       provisioners.Deref(p.StorageGB, r.StorageGB),
		CPU:             r.CPU,
		Memory:          r.Memory,
		MaxmemoryPolicy: provisioners.Deref(p.MaxmemoryPolicy, catalog.DefaultMaxmemoryPolicy),
		AOF:             r.Persistence.AOF,
		Snapshots:       r.Persistence.Snapshots,
		KeepVolumes:     r.Persistence.KeepVolumes,

		MinReplicasToWrite:   r.MinReplicasToWrite,
		WritesWithoutReplica: r.WritesWithoutReplica,
	}
	if p.Resources != nil {
		s.CPU = provisioners.Deref(p.Resources.CPU, r.CPU)
		s.Memory = provisioners.Deref(p.Resources.Memory, r.Memory)
	}
	if s.Replicas < r.MinReplicas || s.Replicas > r.MaxReplicas {
		return Settings{}, provisioners.ParamErrorf("parameters.replicas", "%d is outside this plan's %d–%d", s.Replicas, r.MinReplicas, r.MaxReplicas)
	}
	if s.StorageGB < r.MinStorageGB || s.StorageGB > r.MaxStorageGB {
		return Settings{}, provisioners.ParamErrorf("parameters.storage_gb", "%d is outside this plan's %d–%d GB", s.StorageGB, r.MinStorageGB, r.MaxStorageGB)
	}
	if err := provisioners.AtMost("parameters.resources.cpu", s.CPU, r.MaxCPU); err != nil {
		return Settings{}, err
	}
	if err := provisioners.AtMost("parameters.resources.memory", s.Memory, r.MaxMemory); err != nil {
		return Settings{}, err
	}
	if p.Restore != nil {
		if s.Restore, err = resolveRestore(p.Restore.FromInstance, p.Restore.Snapshot); err != nil {
			return Settings{}, err
		}
	}
	mem := resource.MustParse(s.Memory)
	s.MaxmemoryBytes = mem.Value() * MaxmemoryPercent / 100
	return s, nil
}

// Size is what the instance requests: each Redis pod's CPU, memory and
// volume (the Sentinels' small requests are not counted).
func (p *Provisioner) Size(inst provisioners.Instance) (provisioners.Size, error) {
	s, err := Resolve(inst.Plan, inst.Params)
	if err != nil {
		return provisioners.Size{}, err
	}
	return provisioners.Pods(s.Replicas, s.CPU, s.Memory, s.StorageGB)
}
