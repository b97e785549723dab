package catalog

import (
	"fmt"
	"time"

	"github.com/pivotal-cf/brokerapi/v12/domain"
)

// Ids are stable forever: platforms store them. Plan ids are UUIDs because
// Crossplane's provider-osb requires it.
const (
	PostgresServiceID  = "989a5ffa-5083-482c-8122-b1b1578dab99"
	PostgresDevLiteID  = "fe977e91-db4f-40e2-b8d5-054528136ce4"
	PostgresStandardID = "27eb9dad-107b-42d1-bd60-0eb91b725073"
	PostgresHAID       = "65460486-b60d-4be2-a53b-7100a42d16b6"
	PostgresSharedID   = "1f3fc1e3-a95e-41c8-b38c-c66ebdc258d8"
)

// PostgresPlan is what a PostgreSQL plan stands for; the builders in
// provisioners/postgres turn it, with the parameters, into CloudNativePG
// objects.
type PostgresPlan struct {
	// Shared is true for a database (and its roles) inside the platform's
	// shared cluster: the platform sizes, replicates and backs up that
	// cluster, so none of the sizing fields below apply and the instance
	// has no pods of its own.
	Shared bool

	// Instances is the default number of PostgreSQL instances (primary +
	// standbys); the replicas parameter moves it within
	// [MinReplicas+1, MaxReplicas+1].
	Instances   int
	MinReplicas int
	MaxReplicas int

	StorageGB    int
	MinStorageGB int
	MaxStorageGB int

	CPU       string // Kubernetes quantity, requests = limits
	Memory    string
	MaxCPU    string
	MaxMemory string

	// MaxConnections is max_connections; bindings size their pools from it.
	MaxConnections int

	// Pooler is nil when the plan has no PgBouncer.
	Pooler *PoolerPlan
	// Backup is nil when the plan keeps no backups (dev-lite).
	Backup *BackupPlan
	// Drill is the plan's scheduled restore drill (docs/disaster-recovery.md,
	// Restore drills); nil on plans without backups, which have nothing to
	// restore.
	Drill *DrillPlan
	// SynchronousStandbys is the number of standbys that must confirm a
	// commit (quorum, method "any"); 0 means asynchronous replication.
	SynchronousStandbys int
	// ZoneSpread: "" (none), "preferred" or "required" spread of instances
	// across availability zones.
	ZoneSpread string
}

// PoolerPlan sizes the PgBouncer Pooler in front of the primary.
type PoolerPlan struct {
	Instances int
	// Mode is PgBouncer's pool_mode. Transaction mode is what makes a
	// pooler worth having for many application connections; bindings add
	// prepareThreshold=0 so pgjdbc's named statements are not relied on.
	Mode            string
	DefaultPoolSize int
	MaxClientConn   int
	// CPU and Memory are each PgBouncer pod's (requests = limits): a
	// namespace with a ResourceQuota on cpu or memory admits only pods
	// that ask for them.
	CPU, Memory string
}

// DrillPlan is how often the broker proves an instance of the plan can
// be restored, and the objectives a drill's measured RPO and RTO are held
// to (the alerts compare with them; the figures themselves are only
// measured).
type DrillPlan struct {
	// Interval is the time between two drills of one instance.
	Interval time.Duration
	// RPOObjective bounds the drill's RPO: the drill's start minus the
	// newest restorable point.
	RPOObjective time.Duration
	// RTOObjective bounds the drill's RTO: from applying the throwaway
	// Cluster to PostgreSQL answering with the drill's marker.
	RTOObjective time.Duration
	// MinInterval and MaxInterval bound an instance's own interval
	// (parameter drills.interval_hours); the platform sets them for every
	// plan (broker configuration drills, SetDrillBounds).
	MinInterval, MaxInterval time.Duration
}

// Default bounds of an instance's drill interval: a drill holds a second
// copy of the instance's storage and CPU for its RTO, so not more often
// than every 6 hours; and at least weekly, or a broken backup goes
// unnoticed for longer than a week.
const (
	DefaultDrillMinInterval = 6 * time.Hour
	DefaultDrillMaxInterval = 7 * 24 * time.Hour
)

// DrillIntervalHours is the parameter drills.interval_hours of an
// instance, as hours: drill intervals are whole hours.
func DrillIntervalHours(d time.Duration) int { return int(d / time.Hour) }

// SetDrillBounds makes [min, max] the bounds of every plan's per-instance
// drill interval (what the schemas publish and validate), pulling a
// plan's own interval into them.
func (c *Catalog) SetDrillBounds(minIv, maxIv time.Duration) {
	for i := range c.Services {
		for j := range c.Services[i].Plans {
			pg := c.Services[i].Plans[j].Postgres
			if pg == nil || pg.Drill == nil {
				continue
			}
			pg.Drill.MinInterval, pg.Drill.MaxInterval = minIv, maxIv
			pg.Drill.Interval = min(max(pg.Drill.Interval, minIv), maxIv)
		}
	}
}

// BackupPlan is the plan's default backup policy.
type BackupPlan struct {
	// SidecarCPU and SidecarMemory are the barman-cloud plugin's sidecar
	// in each instance pod (requests = limits), which archives the WAL and
	// takes the backups: without them a namespace with a ResourceQuota on
	// cpu or memory refuses the instance's pods.
	SidecarCPU, SidecarMemory string
	// Schedule is a 6-field cron expression, seconds first (CloudNativePG's
	// ScheduledBackup format), in UTC.
	Schedule         string
	RetentionDays    int
	MaxRetentionDays int
}

// PostgresVersions maps the offered major versions to nothing but their
// existence; images come from the broker configuration (pinned there).
var PostgresVersions = []string{"15", "16", "17", "18"}

// DefaultPostgresVersion is used when the version parameter is absent.
const DefaultPostgresVersion = "17"

// PostgresExtensions are the extensions a database may ask for; all ship in
// CloudNativePG's "standard" operand images. pgaudit and pg_stat_statements
// are always on and managed by the operator, so they are not listed.
var PostgresExtensions = []string{
	"btree_gin", "btree_gist", "citext", "hstore", "hypopg", "pg_trgm",
	"pgcrypto", "postgres_fdw", "tablefunc", "unaccent", "uuid-ossp", "vector",
}

// AuditClasses are pgaudit's pgaudit.log classes. At least one is always on.
var AuditClasses = []string{"read", "write", "function", "role", "ddl", "misc", "misc_set"}

// DefaultAuditClasses is what is audited when the audit parameter is absent:
// every change of data, schema or role, not reads (they are the bulk).
var DefaultAuditClasses = []string{"write", "ddl", "role"}

func postgresService() Service {
	devLite := Plan{
		ID:          PostgresDevLiteID,
		Name:        "dev-lite",
		Description: "One PostgreSQL instance, no backups: for development and tests.",
		UpdatableTo: []string{"standard", "ha"},
		// One pod and a PVC: minutes, not hours.
		MaximumPollingDuration: 1800,
		Postgres: &PostgresPlan{
			Instances: 1, MinReplicas: 0, MaxReplicas: 0,
			StorageGB: 1, MinStorageGB: 1, MaxStorageGB: 20,
			CPU: "250m", Memory: "512Mi", MaxCPU: "1", MaxMemory: "2Gi",
			MaxConnections: 50,
		},
	}
	standard := Plan{
		ID:   PostgresStandardID,
		Name: "standard",
		Description: "Primary and standby with automatic failover, PgBouncer, " +
			"daily backups to S3 and 7-day point-in-time recovery.",
		UpdatableTo:            []string{"ha"},
		MaximumPollingDuration: 3600,
		Postgres: &PostgresPlan{
			Instances: 2, MinReplicas: 1, MaxReplicas: 4,
			StorageGB: 20, MinStorageGB: 5, MaxStorageGB: 500,
			CPU: "1", Memory: "2Gi", MaxCPU: "4", MaxMemory: "16Gi",
			MaxConnections: 200,
			Pooler:         &PoolerPlan{Instances: 2, Mode: "transaction", DefaultPoolSize: 20, MaxClientConn: 1000, CPU: "250m", Memory: "256Mi"},
			Backup:         &BackupPlan{Schedule: "0 0 3 * * *", RetentionDays: 7, MaxRetentionDays: 35, SidecarCPU: "250m", SidecarMemory: "512Mi"},
			// Daily; the RPO objective is archive_timeout's default (300 s)
			// with a margin, the RTO objective what a restore of the
			// plan's default size takes with room for a loaded node.
			Drill: &DrillPlan{Interval: 24 * time.Hour, RPOObjective: 10 * time.Minute, RTOObjective: 30 * time.Minute,
				MinInterval: DefaultDrillMinInterval, MaxInterval: DefaultDrillMaxInterval},
			ZoneSpread: "preferred",
		},
	}
	ha := Plan{
		ID:   PostgresHAID,
		Name: "ha",
		Description: "Three instances across availability zones with synchronous quorum " +
			"replication, PgBouncer, daily backups and 30-day point-in-time recovery.",
		MaximumPollingDuration: 7200,
		Postgres: &PostgresPlan{
			Instances: 3, MinReplicas: 2, MaxReplicas: 8,
			StorageGB: 50, MinStorageGB: 10, MaxStorageGB: 2000,
			CPU: "2", Memory: "8Gi", MaxCPU: "16", MaxMemory: "64Gi",
			MaxConnections: 400,
			Pooler:         &PoolerPlan{Instances: 3, Mode: "transaction", DefaultPoolSize: 40, MaxClientConn: 2000, CPU: "500m", Memory: "512Mi"},
			Backup:         &BackupPlan{Schedule: "0 0 3 * * *", RetentionDays: 30, MaxRetentionDays: 90, SidecarCPU: "500m", SidecarMemory: "512Mi"},
			Drill: &DrillPlan{Interval: 24 * time.Hour, RPOObjective: 10 * time.Minute, RTOObjective: time.Hour,
				MinInterval: DefaultDrillMinInterval, MaxInterval: DefaultDrillMaxInterval},
			SynchronousStandbys: 1,
			ZoneSpread:          "required",
		},
	}
	// No plan change into or out of shared: the data would have to move
	// between clusters (a dump and restore), which is not an in-place
	// update. UpdatableTo stays empty and ChangeReason says why.
	shared := Plan{
		ID:   PostgresSharedID,
		Name: "shared",
		Description: "A database and its roles in the platform's shared PostgreSQL cluster: " +
			"database-level tenant separation, TLS-only, backed up with the cluster.",
		// Two CloudNativePG objects on a running cluster: seconds.
		MaximumPollingDuration: 600,
		// MaxConnections is the database's connection limit: one tenant
		// cannot take the shared cluster's connections from the others.
		Postgres: &PostgresPlan{Shared: true, MaxConnections: 50},
	}
	for _, p := range []*Plan{&devLite, &standard, &ha, &shared} {
		p.Metadata = postgresPlanMetadata(p)
		// OpenBao credentials expire (binding metadata expires_at): a
		// platform renews them with a successor binding.
		p.BindingRotatable = true
	}
	return Service{
		ID:     PostgresServiceID,
		Name:   "postgresql",
		Engine: EnginePostgres,
		Description: "PostgreSQL managed by CloudNativePG in your namespace: TLS-only, " +
			"audited, with OpenBao-issued credentials and Spring-Boot-ready bindings.",
		Tags: []string{"postgresql", "relational", "sql", "cloudnative-pg"},
		Metadata: serviceMetadata("PostgreSQL",
			"PostgreSQL clusters run by the CloudNativePG operator in the tenant's namespace, from a single dev instance to a zone-spread synchronous cluster with point-in-time recovery.",
			"docs/postgres.md"),
		Plans: []Plan{devLite, standard, ha, shared},
	}
}

func postgresPlanMetadata(p *Plan) domain.ServicePlanMetadata {
	pg := p.Postgres
	if pg.Shared {
		return domain.ServicePlanMetadata{
			DisplayName: planDisplayName(p.Name),
			Bullets: []string{
				"a database and its roles in the platform's shared PostgreSQL cluster",
				"database-level separation: logins connect only to their own database",
				fmt.Sprintf("at most %d connections to the database", pg.MaxConnections),
				"TLS-only connections, pgaudit on",
				"backed up and replicated with the shared cluster",
			},
			AdditionalMetadata: map[string]any{"shared": true, "backups": true, "max_connections": pg.MaxConnections},
		}
	}
	bullets := []string{
		fmt.Sprintf("%d instance(s), %d–%d read replicas", pg.Instances, pg.MinReplicas, pg.MaxReplicas),
		fmt.Sprintf("%d GB storage by default (%d–%d GB)", pg.StorageGB, pg.MinStorageGB, pg.MaxStorageGB),
		fmt.Sprintf("%s CPU, %s memory per instance by default", pg.CPU, pg.Memory),
		fmt.Sprintf("max_connections %d", pg.MaxConnections),
		"TLS-only connections, pgaudit on",
	}
	if pg.Pooler != nil {
		bullets = append(bullets, fmt.Sprintf("PgBouncer (%s pooling, %d instances)", pg.Pooler.Mode, pg.Pooler.Instances))
	}
	if pg.Backup != nil {
		bullets = append(bullets, fmt.Sprintf("daily backups, %d-day point-in-time recovery", pg.Backup.RetentionDays))
	} else {
		bullets = append(bullets, "no backups")
	}
	if pg.SynchronousStandbys > 0 {
		bullets = append(bullets, fmt.Sprintf("synchronous quorum replication (%d standby)", pg.SynchronousStandbys))
	}
	if pg.ZoneSpread != "" {
		bullets = append(bullets, fmt.Sprintf("spread across availability zones (%s)", pg.ZoneSpread))
	}
	return domain.ServicePlanMetadata{
		DisplayName: planDisplayName(p.Name),
		Bullets:     bullets,
		AdditionalMetadata: map[string]any{
			"instances":       pg.Instances,
			"storage_gb":      pg.StorageGB,
			"max_connections": pg.MaxConnections,
			"backups":         pg.Backup != nil,
		},
	}
}

// downgradeReason says what a move from p to q would lose.
func (p *PostgresPlan) downgradeReason(q *PostgresPlan) string {
	switch {
	case p.Shared != q.Shared:
		return "the data would have to move between the shared cluster and a dedicated one, which is not an in-place change"
	case p.Backup != nil && q.Backup == nil:
		return "the target plan keeps no backups, so point-in-time recovery would be lost"
	case p.SynchronousStandbys > q.SynchronousStandbys:
		return "the target plan drops synchronous replication, so committed data could be lost on failover"
	case p.Instances > q.Instances || p.MinStorageGB > q.MaxStorageGB:
		return "the target plan is smaller, and storage and redundancy cannot shrink in place"
	default:
		return "it is not a supported plan change"
	}
}
