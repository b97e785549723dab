package postgres

import (
	"github.com/robfig/cron/v3"

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
	// Seed is the developer's SQL run once at provision; nil without.
	Seed *SeedSource
	// SeedS3 is a dump in S3 restored once the instance is ready
	// (seeds3.go); nil without. Never set with Seed.
	SeedS3 *S3Seed
	// Mask are a copy's masking rules, sorted by column (copy_of.mask).
	Mask []MaskRule
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
	// Restore is read by the broker at provision (RestoreRequest), not
	// by Resolve: it says where the data comes from, not what runs.
	Restore *struct {
		FromInstance string `json:"from_instance"`
		ToTime       string `json:"to_time"`
	} `json:"restore"`
	// Seed and CopyOf are chosen at provision only (like Restore): what
	// the new instance starts with.
	Seed *struct {
		ConfigMap string  `json:"config_map"`
		Secret    string  `json:"secret"`
		Key       *string `json:"key"`
		S3        *struct {
			Bucket            string `json:"bucket"`
			Key               string `json:"key"`
			Endpoint          string `json:"endpoint"`
			Region            string `json:"region"`
			CredentialsSecret string `json:"credentials_secret"`
			ServiceAccount    string `json:"service_account"`
		} `json:"s3"`
	} `json:"seed"`
	CopyOf *struct {
		Instance string            `json:"instance"`
		Database string            `json:"database"`
		Mask     map[string]string `json:"mask"`
	} `json:"copy_of"`
}

// cronSeconds parses CloudNativePG's six-field schedules (seconds first).
var cronSeconds = cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

// Resolve applies the plan's defaults to schema-valid parameters and checks
// what a JSON Schema cannot: cron syntax and resource ceilings.
func Resolve(plan *catalog.Plan, params map[string]any) (Settings, error) {
	pg := plan.Postgres
	var p rawParams
	if err := provisioners.DecodeParams(params, &p); err != nil {
		return Settings{}, err
	}
	s := Settings{
		Version:      provisioners.Deref(p.Version, catalog.DefaultPostgresVersion),
		StorageGB:    provisioners.Deref(p.StorageGB, pg.StorageGB),
		Replicas:     provisioners.Deref(p.Replicas, pg.Instances-1),
		CPU:          pg.CPU,
		Memory:       pg.Memory,
		Databases:    p.Databases,
		Extensions:   p.Extensions,
		AuditClasses: catalog.DefaultAuditClasses,
		XA:           provisioners.Deref(p.XA, false),
	}
	if p.Resources != nil {
		s.CPU = provisioners.Deref(p.Resources.CPU, pg.CPU)
		s.Memory = provisioners.Deref(p.Resources.Memory, pg.Memory)
	}
	if len(s.Databases) == 0 {
		s.Databases = []string{"app"}
	}
	if p.Audit != nil && len(p.Audit.Classes) > 0 {
		s.AuditClasses = p.Audit.Classes
	}
	if err := resolveStartingData(&s, p); err != nil {
		return Settings{}, err
	}
	if err := provisioners.AtMost("parameters.resources.cpu", s.CPU, pg.MaxCPU); err != nil {
		return Settings{}, err
	}
	if err := provisioners.AtMost("parameters.resources.memory", s.Memory, pg.MaxMemory); err != nil {
		return Settings{}, err
	}
	if pg.Backup != nil {
		s.BackupCron = pg.Backup.Schedule
		s.RetentionDays = pg.Backup.RetentionDays
		if p.Backup != nil {
			s.BackupCron = provisioners.Deref(p.Backup.Schedule, s.BackupCron)
			s.RetentionDays = provisioners.Deref(p.Backup.RetentionDays, s.RetentionDays)
		}
		if _, err := cronSeconds.Parse(s.BackupCron); err != nil {
			return Settings{}, provisioners.ParamErrorf("parameters.backup.schedule", "%q is not a six-field cron expression with seconds first (e.g. \"0 0 3 * * *\"): %v", s.BackupCron, err)
		}
	}
	return s, nil
}

// resolveStartingData checks what the new instance starts with: empty, a
// seed, a restore or a copy, never two of them (each replaces or races
// the other's data).
func resolveStartingData(s *Settings, p rawParams) error {
	if p.Seed != nil {
		if p.Restore != nil || p.CopyOf != nil {
			return provisioners.ParamErrorf("parameters.seed", "a seed fills a new, empty instance and cannot be combined with restore or copy_of; seed the source, or run the seed against the restored or copied instance through an owner binding (psql -f)")
		}
		seed := &SeedSource{Key: provisioners.Deref(p.Seed.Key, DefaultSeedKey)}
		switch {
		case p.Seed.ConfigMap != "" && p.Seed.Secret == "" && p.Seed.S3 == nil:
			seed.Kind, seed.Name = "ConfigMap", p.Seed.ConfigMap
		case p.Seed.Secret != "" && p.Seed.ConfigMap == "" && p.Seed.S3 == nil:
			seed.Kind, seed.Name = "Secret", p.Seed.Secret
		case p.Seed.S3 != nil && p.Seed.ConfigMap == "" && p.Seed.Secret == "":
			s3 := p.Seed.S3
			if (s3.CredentialsSecret == "") == (s3.ServiceAccount == "") {
				return provisioners.ParamErrorf("parameters.seed.s3", "name exactly one of credentials_secret (a Secret of the instance's namespace with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) "+
					"or service_account (a ServiceAccount of the namespace whose IAM role, through IRSA or EKS Pod Identity, may read the object)")
			}
			s.SeedS3 = &S3Seed{Bucket: s3.Bucket, Key: s3.Key, Endpoint: s3.Endpoint, Region: s3.Region,
				CredentialsSecret: s3.CredentialsSecret, ServiceAccount: s3.ServiceAccount}
		default:
			return provisioners.ParamErrorf("parameters.seed", "name exactly one of config_map, secret or s3: the ConfigMap or Secret, in the instance's namespace, whose key %q holds the SQL, or a dump in S3", seed.Key)
		}
		if s.SeedS3 == nil {
			s.Seed = seed
		}
	}
	if p.CopyOf != nil {
		if p.Restore != nil {
			return provisioners.ParamErrorf("parameters.copy_of", "a copy and a restore cannot be combined; provision the restore, then a copy of it")
		}
		rules, err := parseMask(p.CopyOf.Mask)
		if err != nil {
			return err
		}
		s.Mask = rules
	}
	return nil
}

// Size is what the instance requests: each PostgreSQL instance's CPU,
// memory and volume (PgBouncer's pods request nothing of their own).
func (p *Provisioner) Size(inst provisioners.Instance) (provisioners.Size, error) {
	if inst.Plan.Postgres.Shared {
		// The shared cluster is the platform's: a database in it costs
		// the tenant no pods of its own.
		return provisioners.Size{}, nil
	}
	s, err := Resolve(inst.Plan, inst.Params)
	if err != nil {
		return provisioners.Size{}, err
	}
	size, err := provisioners.Pods(s.Instances(), s.CPU, s.Memory, s.StorageGB)
	if err != nil {
		return provisioners.Size{}, err
	}
	// Every pod the instance's objects produce counts: the barman-cloud
	// sidecar in each instance pod, and the PgBouncer pods.
	if b := inst.Plan.Postgres.Backup; b != nil {
		sidecars, err := provisioners.Pods(s.Instances(), b.SidecarCPU, b.SidecarMemory, 0)
		if err != nil {
			return provisioners.Size{}, err
		}
		size = size.Add(sidecars)
	}
	if pp := inst.Plan.Postgres.Pooler; pp != nil {
		poolers, err := provisioners.Pods(pp.Instances, pp.CPU, pp.Memory, 0)
		if err != nil {
			return provisioners.Size{}, err
		}
		size = size.Add(poolers)
	}
	return size, nil
}
