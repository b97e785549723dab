package postgres

import (
	"encoding/json"
	"fmt"

	"github.com/robfig/cron/v3"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
)

// Settings are an instance's parameters with the plan's defaults filled in:
// the one place where "absent" turns into a value.
type Settings struct {
	Version       string
	StorageGB     int
	Replicas      int
	CPU           string
	Memory        string
	Databases     []string
	Extensions    []string
	AuditClasses  []string
	XA            bool
	BackupCron    string // empty when the plan has no backups
	RetentionDays int
}

// Instances is the number of PostgreSQL instances.
func (s Settings) Instances() int { return 1 + s.Replicas }

// rawParams mirrors the JSON Schema in catalog/postgres.go.
type rawParams struct {
	Version   *string `json:"version"`
	StorageGB *int    `json:"storage_gb"`
	Replicas  *int    `json:"replicas"`
	Resources *struct {
		CPU    *string `json:"cpu"`
		Memory *string `json:"memory"`
	} `json:"resources"`
	Databases  []string `json:"databases"`
	Extensions []string `json:"extensions"`
	Audit      *struct {
		Classes []string `json:"classes"`
	} `json:"audit"`
	XA     *bool `json:"xa"`
	Backup *struct {
		Schedule      *string `json:"schedule"`
		RetentionDays *int    `json:"retention_days"`
	} `json:"backup"`
}

// cronSeconds parses CloudNativePG's six-field schedules (seconds first).
var cronSeconds = cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

// Resolve applies the plan's defaults to schema-valid parameters and checks
// what a JSON Schema cannot: cron syntax and resource ceilings.
func Resolve(plan *catalog.Plan, params map[string]any) (Settings, error) {
	pg := plan.Postgres
	var p rawParams
	raw, _ := json.Marshal(params)
	if err := json.Unmarshal(raw, &p); err != nil {
		return Settings{}, fmt.Errorf("parameters: %v", err)
	}
	s := Settings{
		Version:      deref(p.Version, catalog.DefaultPostgresVersion),
		StorageGB:    deref(p.StorageGB, pg.StorageGB),
		Replicas:     deref(p.Replicas, pg.Instances-1),
		CPU:          pg.CPU,
		Memory:       pg.Memory,
		Databases:    p.Databases,
		Extensions:   p.Extensions,
		AuditClasses: catalog.DefaultAuditClasses,
		XA:           deref(p.XA, false),
	}
	if p.Resources != nil {
		s.CPU = deref(p.Resources.CPU, pg.CPU)
		s.Memory = deref(p.Resources.Memory, pg.Memory)
	}
	if len(s.Databases) == 0 {
		s.Databases = []string{"app"}
	}
	if p.Audit != nil && len(p.Audit.Classes) > 0 {
		s.AuditClasses = p.Audit.Classes
	}
	if err := atMost("parameters.resources.cpu", s.CPU, pg.MaxCPU); err != nil {
		return Settings{}, err
	}
	if err := atMost("parameters.resources.memory", s.Memory, pg.MaxMemory); err != nil {
		return Settings{}, err
	}
	if pg.Backup != nil {
		s.BackupCron = pg.Backup.Schedule
		s.RetentionDays = pg.Backup.RetentionDays
		if p.Backup != nil {
			s.BackupCron = deref(p.Backup.Schedule, s.BackupCron)
			s.RetentionDays = deref(p.Backup.RetentionDays, s.RetentionDays)
		}
		if _, err := cronSeconds.Parse(s.BackupCron); err != nil {
			return Settings{}, fmt.Errorf("parameters.backup.schedule: %q is not a six-field cron expression with seconds first (e.g. \"0 0 3 * * *\"): %v", s.BackupCron, err)
		}
	}
	return s, nil
}

// atMost checks that value is a positive quantity no larger than limit. A
// zero limit is no limit (the kubelet sets no CFS quota for a CPU limit of
// 0), so it would lift the plan's ceiling rather than respect it.
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

// Size is what the instance requests: each PostgreSQL instance's CPU,
// memory and volume (PgBouncer's pods request nothing of their own).
func (p *Provisioner) Size(inst provisioners.Instance) (provisioners.Size, error) {
	s, err := Resolve(inst.Plan, inst.Params)
	if err != nil {
		return provisioners.Size{}, err
	}
	n := int64(s.Instances())
	times := func(q string) resource.Quantity {
		v := resource.MustParse(q)
		return *resource.NewMilliQuantity(v.MilliValue()*n, v.Format)
	}
	return provisioners.Size{
		CPU: times(s.CPU), Memory: times(s.Memory),
		Storage: *resource.NewQuantity(int64(s.StorageGB)*n<<30, resource.BinarySI),
	}, nil
}
