// Package postgres turns a PostgreSQL plan and its parameters into
// CloudNativePG objects (pure builders, like CloudNativePG's own pkg/specs)
// and reads readiness back from the operator's status.
package postgres

import (
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/strata-dev/strata/provisioners"
)

// The group roles every cluster has. Bindings get login roles that are
// members of exactly one of them, so a binding's rights are the group's.
const (
	// OwnerRole owns the databases and their public schemas: DDL.
	OwnerRole = "strata_owner"
	// ReadWriteRole reads and writes all data (PostgreSQL's predefined
	// pg_read_all_data and pg_write_all_data) but cannot create objects:
	// since PostgreSQL 15, CREATE on public belongs to the database owner.
	ReadWriteRole = "strata_readwrite"
	// ReadOnlyRole reads all data.
	ReadOnlyRole = "strata_readonly"
)

const (
	barmanPlugin = "barman-cloud.cloudnative-pg.io"
	cnpgAPI      = "postgresql.cnpg.io/v1"
	zoneKey      = "topology.kubernetes.io/zone"
	hostnameKey  = "kubernetes.io/hostname"
	// poolerNameLabel is the label CloudNativePG puts on a Pooler's pods.
	poolerNameLabel = "cnpg.io/poolerName"
	postgresPort    = 5432
	// smartShutdownSeconds bounds a stopping instance's wait for its
	// sessions (Cluster spec.smartShutdownTimeout).
	smartShutdownSeconds = 15
	statusPort           = 8000 // instance manager, reached by the operator
	metricsPort          = 9187
	poolerMetrics        = 9127
)

// Config is what the platform team sets for every PostgreSQL instance.
type Config struct {
	// Images maps a major version to a pinned operand image. CloudNativePG's
	// "standard" images carry pgaudit and the offered extensions.
	Images       map[string]string `json:"images"`
	StorageClass string            `json:"storageClass"`
	Backup       BackupConfig      `json:"backup"`
	Restore      RestoreConfig     `json:"restore"`
	// PodMonitor creates prometheus-operator PodMonitors (the Cluster's own
	// enablePodMonitor is deprecated since CloudNativePG 1.26.2).
	PodMonitor bool `json:"podMonitor"`
	// OperatorNamespace and MonitoringNamespace are allowed through the
	// instances' NetworkPolicies on the ports they need.
	OperatorNamespace   string `json:"operatorNamespace"`
	MonitoringNamespace string `json:"monitoringNamespace"`
	// ServerCertificates, when an issuer is named, has cert-manager issue
	// every cluster's server certificate from one platform CA instead of
	// CloudNativePG's self-signed CA per cluster, so that OpenBao (and any
	// client) verifies every instance against one CA.
	ServerCertificates CertificatesConfig `json:"serverCertificates"`
	// Shared names the platform's shared cluster, where the shared plan's
	// databases live (shared.go).
	Shared SharedConfig `json:"shared"`
	// SeedImage is the broker's own image: it runs postgres-seed-fetch in
	// the Job of a seed from S3 (seeds3.go). The chart sets it.
	SeedImage string `json:"seedImage"`
	// SeedCABundle is PEM: the CAs an S3-compatible store's certificate
	// chains to when it is not a public one (a private CA); the seed's
	// fetch trusts them besides the image's roots. Empty: public roots.
	SeedCABundle string `json:"seedCABundle"`
	// CredentialManager is set by the broker when OpenBao issues the
	// credentials (broker configuration openBao): each cluster then gets
	// the management role OpenBao logs in as, and OpenBao's pods are let
	// through the NetworkPolicy on 5432.
	CredentialManager *CredentialManager `json:"-"`
	// DrillClientNamespace is set by the broker when it runs restore
	// drills (broker configuration drills): the broker's namespace, let in
	// on 5432 to write each drill's marker into the instance.
	DrillClientNamespace string `json:"-"`
}

// CertificatesConfig names the cert-manager issuer of the server
// certificates (shared by every engine).
type CertificatesConfig = provisioners.CertificatesConfig

// CredentialManager is where OpenBao runs.
type CredentialManager struct {
	// Namespace of the OpenBao pods.
	Namespace string
}

// BackupConfig says where backups go: the settings every engine's backups
// share (provisioners.BackupConfig, also Redis's snapshots), inlined in
// the configuration, and PostgreSQL's own.
type BackupConfig struct {
	provisioners.BackupConfig
	// ArchiveTimeoutSeconds is PostgreSQL's archive_timeout on instances
	// with backups: a WAL segment with changes is archived at the latest
	// this long after it was begun. It is also how far behind now (or
	// behind a deprovision) the restorable window ends, since what was
	// committed later may not be in the bucket yet. 0: 300 (CloudNativePG's
	// own default).
	ArchiveTimeoutSeconds int `json:"archiveTimeoutSeconds"`
}

// defaultArchiveTimeout is CloudNativePG's archive_timeout.
const defaultArchiveTimeout = 5 * time.Minute

// ArchiveTimeout is the configured archive_timeout.
func (b BackupConfig) ArchiveTimeout() time.Duration {
	if b.ArchiveTimeoutSeconds > 0 {
		return time.Duration(b.ArchiveTimeoutSeconds) * time.Second
	}
	return defaultArchiveTimeout
}

// RestoreConfig says where restores may read backups from.
type RestoreConfig struct {
	// AcrossNamespaces lets an instance be restored from an instance of
	// another namespace (tenant). Off, a restore reads only backups of
	// its own namespace: an instance id is not a secret, and reading
	// another tenant's backups is reading its data.
	AcrossNamespaces bool `json:"acrossNamespaces"`
}

// S3Keys are static S3 credentials.
type S3Keys = provisioners.S3Keys

// The files of BackupConfig.CredentialsDir and the keys of the instances'
// Secret N-backup-s3 (the names barman-cloud's s3Credentials take).
const (
	AccessKeyIDFile     = provisioners.AccessKeyIDFile
	SecretAccessKeyFile = provisioners.SecretAccessKeyFile
	accessKeyIDKey      = "ACCESS_KEY_ID"
	secretAccessKeyKey  = "ACCESS_SECRET_KEY"
)

// DefaultConfig is used for every field the broker configuration leaves out.
func DefaultConfig() Config {
	return Config{
		Images: map[string]string{
			"15": "ghcr.io/cloudnative-pg/postgresql:15.17-standard-trixie",
			"16": "ghcr.io/cloudnative-pg/postgresql:16.13-standard-trixie",
			"17": "ghcr.io/cloudnative-pg/postgresql:17.9-standard-trixie",
			"18": "ghcr.io/cloudnative-pg/postgresql:18.3-standard-trixie",
		},
		PodMonitor:          true,
		OperatorNamespace:   "cnpg-system",
		MonitoringNamespace: "monitoring",
		Shared:              DefaultSharedConfig(),
	}
}

// Provisioner is the PostgreSQL engine.
type Provisioner struct {
	Config Config
}

var _ provisioners.Provisioner = (*Provisioner)(nil)

// Names of an instance's objects.
type Names struct {
	Cluster, Pooler, ObjectStore, ScheduledBackup string
	// BackupCredentials is the Secret with the static S3 keys the
	// ObjectStore names, when the broker has some (CredentialsDir).
	BackupCredentials string
	// ServerCertificate is the cert-manager Certificate (and its Secret)
	// of the server certificate, when the platform issues them.
	ServerCertificate string
	// Bootstrap is the Secret with the SQL that creates the management
	// role at initdb, when OpenBao manages credentials.
	Bootstrap string
	// RestoreSource is the ObjectStore, in the instance's namespace, that
	// reads the backups of a source in another namespace (restores
	// across namespaces only).
	RestoreSource string
	// Seed is the Secret with the wrapped seed SQL (seed.go), written
	// once by the broker at provision.
	Seed string
	// CopyLogin is the DatabaseRole, on the source cluster, a copy reads
	// the source as, and the Secret with its password.
	CopyLogin string
	// ManagementLogin is the DatabaseRole that sets the management role's
	// first verifier on a restored or copied instance, and its
	// basic-auth Secret (ManagementHandOver).
	ManagementLogin string
}

// NamesOf returns the object names of an instance.
func NamesOf(inst provisioners.Instance) Names {
	return Names{
		Cluster:           inst.Name,
		Pooler:            inst.Name + "-pooler",
		ObjectStore:       inst.Name + "-backup",
		BackupCredentials: inst.Name + "-backup-s3",
		ScheduledBackup:   inst.Name + "-daily",
		ServerCertificate: inst.Name + "-server-tls",
		Bootstrap:         inst.Name + "-bootstrap",
		RestoreSource:     inst.Name + "-restore-source",
		Seed:              inst.Name + "-seed",
		CopyLogin:         inst.Name + "-copy-source",
		ManagementLogin:   inst.Name + "-openbao-login",
	}
}

// Leftovers is cert-manager's Secret of the server certificate, which
// holds its private key: cert-manager keeps it when the Certificate goes
// (unless it runs with --enable-certificate-owner-ref).
// The seed Secret and a copy's login Secret are written by the broker
// once (PrepareSecrets), not rendered, and go with the instance too.
//
// And on plans with backups the drill login the restore drills made
// (drill.go), whether or not drills are on now (they may have been once):
// its DatabaseRole is deleted before its Secret (leftovers go in reverse).
func (p *Provisioner) Leftovers(inst provisioners.Instance) []provisioners.Ref {
	if inst.Plan.Postgres.Shared {
		return nil
	}
	n := NamesOf(inst)
	secret := func(name string) provisioners.Ref {
		return provisioners.Ref{GVK: schema.GroupVersionKind{Version: "v1", Kind: "Secret"}, Namespace: inst.Namespace, Name: name}
	}
	var refs []provisioners.Ref
	if p.Config.ServerCertificates.IssuerName != "" {
		refs = append(refs, secret(n.ServerCertificate))
	}
	if s, err := Resolve(inst.Plan, inst.Params); err == nil && s.Seed != nil {
		refs = append(refs, secret(n.Seed))
	} else if err == nil && s.SeedS3 != nil {
		// The seed Job (kept after a failure, for its log), deleted
		// with its pods (foreground) before the Cluster goes.
		refs = append(refs, S3SeedJobRef(inst))
	}
	if inst.Copy != nil {
		refs = append(refs, secret(n.CopyLogin))
	}
	if p.Config.CredentialManager != nil && ManagementHandOver(inst) {
		// Normally gone once OpenBao took the role over (the broker's
		// Configure); still there if the instance never became ready.
		refs = append(refs, secret(n.ManagementLogin), provisioners.Ref{GVK: databaseRoleGVK, Namespace: inst.Namespace, Name: n.ManagementLogin})
	}
	if inst.Plan.Postgres.Backup != nil {
		name := DrillLoginName(inst)
		refs = append(refs, secret(name), provisioners.Ref{GVK: databaseRoleGVK, Namespace: inst.Namespace, Name: name})
	}
	return refs
}

// ServerCASecret names the Secret whose ca.crt signs the instance's
// server certificate: cert-manager's Secret when the platform issues the
// certificates, else the CA CloudNativePG generates (<cluster>-ca).
func (p *Provisioner) ServerCASecret(inst provisioners.Instance) string {
	if inst.Plan.Postgres.Shared {
		return p.Config.SharedCluster().CASecret
	}
	n := NamesOf(inst)
	if p.Config.ServerCertificates.IssuerName != "" {
		return n.ServerCertificate
	}
	return n.Cluster + "-ca"
}

// DatabaseObjectName is the name of the Database object of database db
// (database names have no '-', so the mapping is one to one).
func DatabaseObjectName(inst provisioners.Instance, db string) string {
	return inst.Name + "-db-" + strings.ReplaceAll(db, "_", "-")
}

// Build renders the instance's objects in apply order.
func (p *Provisioner) Build(inst provisioners.Instance) ([]*unstructured.Unstructured, error) {
	if inst.Plan.Postgres.Shared {
		return p.buildShared(inst)
	}
	s, err := Resolve(inst.Plan, inst.Params)
	if err != nil {
		return nil, err
	}
	tuning, err := Tuning(s, inst.Plan.Postgres.MaxConnections)
	if err != nil {
		return nil, err
	}
	image, ok := p.Config.Images[s.Version]
	if !ok {
		return nil, provisioners.ParamErrorf("parameters.version", "no image is configured for PostgreSQL %s; the platform team sets postgres.images in the broker configuration", s.Version)
	}
	pg := inst.Plan.Postgres
	if pg.Backup != nil && p.Config.Backup.Bucket == "" {
		return nil, fmt.Errorf("plan %q keeps backups but the broker has no backup bucket: set postgres.backup.bucket in the broker configuration", inst.Plan.Name)
	}
	if p.Config.CredentialManager != nil && p.Config.ServerCertificates.IssuerName == "" {
		return nil, fmt.Errorf("OpenBao verifies PostgreSQL against one CA: set postgres.serverCertificates.issuerName in the broker configuration to the cert-manager issuer of that CA")
	}
	if err := p.checkRestore(inst); err != nil {
		return nil, err
	}
	if err := p.checkCopy(inst); err != nil {
		return nil, err
	}
	n := NamesOf(inst)
	var objs []*unstructured.Unstructured
	if p.Config.ServerCertificates.IssuerName != "" {
		objs = append(objs, p.serverCertificate(inst, n))
	}
	if pg.Backup != nil {
		if p.Config.Backup.Credentials != nil {
			objs = append(objs, p.backupCredentials(inst, n))
		}
		objs = append(objs, p.objectStore(inst, s, n))
		if r := inst.Restore; r != nil && r.Namespace != inst.Namespace {
			objs = append(objs, p.restoreSourceStore(inst, n))
		}
	}
	if inst.Copy != nil {
		objs = append(objs, copyLogin(inst, n))
	}
	objs = append(objs, p.cluster(inst, s, n, image, tuning))
	for _, db := range s.Databases {
		objs = append(objs, database(inst, s, db))
	}
	if pg.Pooler != nil {
		objs = append(objs, pooler(inst, n))
	}
	if pg.Backup != nil {
		objs = append(objs, scheduledBackup(inst, s, n))
	}
	objs = append(objs, p.networkPolicies(inst, n)...)
	if p.Config.PodMonitor {
		objs = append(objs, podMonitor(inst, inst.Name, map[string]any{"cnpg.io/cluster": n.Cluster}))
		if pg.Pooler != nil {
			objs = append(objs, podMonitor(inst, n.Pooler, map[string]any{"cnpg.io/poolerName": n.Pooler}))
		}
		if inst.Meshed {
			// The instances' and PgBouncer's sidecars: connections by
			// source, mTLS or not, and Envoy's error flags
			// (provisioners/mesh.go).
			objs = append(objs, provisioners.MeshPodMonitor(inst, inst.Name))
		}
	}
	if inst.Meshed {
		objs = append(objs, peerAuthentication(inst, n.Cluster, map[string]any{"cnpg.io/cluster": n.Cluster}, statusPort, metricsPort))
		if pg.Pooler != nil {
			objs = append(objs, peerAuthentication(inst, n.Pooler, map[string]any{"cnpg.io/poolerName": n.Pooler}, poolerMetrics))
		}
	}
	return objs, nil
}

// holdUntilProxyStarts makes a (non-native) Istio sidecar start before the
// pod's containers, which call the API server at start-up.
const holdUntilProxyStarts = `{"holdApplicationUntilProxyStarts": true}`

func (p *Provisioner) cluster(inst provisioners.Instance, s Settings, n Names, image string, tuning map[string]string) *unstructured.Unstructured {
	pg := inst.Plan.Postgres
	params := provisioners.StringMap(tuning) // sized from the resources (tuning.go)
	maps.Copy(params, map[string]any{
		"max_connections": strconv.Itoa(pg.MaxConnections),
		// TLS 1.2 is the floor every supported pgjdbc/JDK pair speaks;
		// CloudNativePG's default floor (1.3) locks out older JDKs.
		"ssl_min_protocol_version": "TLSv1.2",
		"ssl_max_protocol_version": "TLSv1.3",
		"password_encryption":      "scram-sha-256",
		// Access is audited: who connected, and (pgaudit) what they changed.
		"log_connections":     "on",
		"log_disconnections":  "on",
		"pgaudit.log":         strings.Join(s.AuditClasses, ", "),
		"pgaudit.log_catalog": "off",
		// Bind parameters can carry personal data and secrets; the
		// statement text is enough to audit.
		"pgaudit.log_parameter": "off",
		"pgaudit.log_relation":  "on",
		// Setting a pg_stat_statements parameter makes CloudNativePG preload
		// it and create the extension: per-query statistics for tuning.
		"pg_stat_statements.max":   "10000",
		"pg_stat_statements.track": "top",
	})
	if pg.Backup != nil {
		// Set, not left to CloudNativePG's default: the restorable window
		// ends this far behind now (restore.go), so both come from one
		// setting.
		params["archive_timeout"] = fmt.Sprintf("%ds", int(p.Config.Backup.ArchiveTimeout().Seconds()))
	}
	if s.XA {
		// One prepared transaction per connection is the most XA can use.
		params["max_prepared_transactions"] = strconv.Itoa(pg.MaxConnections)
	}
	postgresql := map[string]any{
		"parameters": params,
		// CloudNativePG's own rules (local peer, streaming_replica and the
		// pooler's cert auth) come first; its final default accepts
		// non-TLS connections, so every non-TLS connection is rejected here.
		"pg_hba": []any{
			"hostnossl all all 0.0.0.0/0 reject",
			"hostnossl all all ::/0 reject",
			"hostssl all all 0.0.0.0/0 scram-sha-256",
			"hostssl all all ::/0 scram-sha-256",
		},
	}
	if pg.SynchronousStandbys > 0 {
		postgresql["synchronous"] = map[string]any{
			"method": "any", "number": int64(pg.SynchronousStandbys), "dataDurability": "required",
			// Without it, a failover may promote the one standby that had
			// not confirmed the latest commits (ANY 1 of 2): CloudNativePG's
			// failover documentation shows exactly this setup losing
			// acknowledged commits. With it, the operator promotes only
			// when enough standbys are reachable that one of them surely
			// holds every acknowledged commit, and otherwise waits.
			"failoverQuorum": true,
		}
		// No syncReplicaElectionConstraint: CloudNativePG 1.30 reads it only
		// for the legacy minSyncReplicas form, not with synchronous. The
		// zone spread (topologySpreadConstraints below) puts the default
		// three instances in three zones, so every standby that can confirm
		// a commit is in another zone than the primary.
	}
	storage := map[string]any{"size": fmt.Sprintf("%dGi", s.StorageGB)}
	if p.Config.StorageClass != "" {
		// Encryption at rest comes from the storage class (EBS with KMS).
		storage["storageClass"] = p.Config.StorageClass
	}
	inherited := map[string]any{"labels": provisioners.StringMap(inst.Labels())}
	if inst.Meshed {
		// Under a (non-native) Istio sidecar the instance manager starts
		// before Envoy and cannot reach the API server.
		inherited["annotations"] = map[string]any{"proxy.istio.io/config": holdUntilProxyStarts}
	}
	spec := map[string]any{
		"description":           fmt.Sprintf("Strata %s %s instance %s", inst.Service.Name, inst.Plan.Name, inst.ID),
		"imageName":             image,
		"instances":             int64(s.Instances()),
		"primaryUpdateStrategy": "unsupervised",
		// A stopping primary waits this long for its sessions to end
		// before it terminates them (CloudNativePG's default is 180 s).
		// PgBouncer's server connections never end by themselves, so
		// with the default every switchover (an update, a node drain)
		// and every graceful pod deletion held the old primary for three
		// minutes; seen on the real platform. Clients retry their
		// terminated sessions on the new primary.
		"smartShutdownTimeout":  int64(smartShutdownSeconds),
		"enableSuperuserAccess": false,
		"storage":               storage,
		"resources":             requestsEqualLimits(s.CPU, s.Memory),
		"inheritedMetadata":     inherited,
		"affinity":              affinity(pg.ZoneSpread),
		// CloudNativePG's primary PodDisruptionBudget allows no disruption
		// of the primary: with one instance there is nothing to switch over
		// to, so it would block every node drain forever (its docs advise
		// enablePDB false for single-instance clusters). A drain restarts a
		// single instance instead, as a node failure would.
		"enablePDB":  s.Instances() > 1,
		"postgresql": postgresql,
		"bootstrap": map[string]any{"initdb": map[string]any{
			"database": s.Databases[0], "owner": OwnerRole, "dataChecksums": true,
		}},
		"managed": map[string]any{"roles": []any{
			groupRole(OwnerRole, "owns the databases: DDL and migrations"),
			groupRole(ReadWriteRole, "reads and writes data, no DDL", "pg_read_all_data", "pg_write_all_data"),
			groupRole(ReadOnlyRole, "reads data", "pg_read_all_data"),
		}},
	}
	if pg.ZoneSpread == "required" {
		spec["topologySpreadConstraints"] = []any{map[string]any{
			"maxSkew": int64(1), "topologyKey": zoneKey, "whenUnsatisfiable": "DoNotSchedule",
			"labelSelector": map[string]any{"matchLabels": map[string]any{"cnpg.io/cluster": n.Cluster}},
		}}
	}
	switch {
	case p.Config.ServerCertificates.IssuerName != "":
		// cert-manager's Secret holds tls.crt, tls.key and ca.crt: the
		// server certificate and, without ca.key, a CA CloudNativePG only
		// trusts. Client and replication certificates stay the operator's.
		spec["certificates"] = map[string]any{
			"serverTLSSecret": n.ServerCertificate, "serverCASecret": n.ServerCertificate,
		}
	case pg.Pooler != nil:
		// PgBouncer presents the cluster's server certificate, so clients
		// verifying the host name (sslmode=verify-full) need its names in it.
		spec["certificates"] = map[string]any{"serverAltDNSNames": provisioners.ServiceNames(n.Pooler, inst.Namespace)}
	}
	initdb := spec["bootstrap"].(map[string]any)["initdb"].(map[string]any)
	var initSQL []any
	if p.Config.CredentialManager != nil {
		// The management role OpenBao logs in as is created at initdb, by
		// SQL in a Secret the broker writes once (ManagementRoleSecret):
		// its password is random, so it cannot be part of this pure build.
		initSQL = append(initSQL, map[string]any{"name": n.Bootstrap, "key": BootstrapSQLKey})
	}
	if s.Seed != nil {
		// After the management role: the seed runs as strata_owner
		// (seed.go), which exists by then (initdb's owner).
		initSQL = append(initSQL, map[string]any{"name": n.Seed, "key": SeedSQLKey})
	}
	if len(initSQL) > 0 {
		initdb["postInitApplicationSQLRefs"] = map[string]any{"secretRefs": initSQL}
	}
	if inst.Copy != nil {
		copyBootstrap(spec, inst, s, n, p.Config.CredentialManager != nil)
	}
	if r := inst.Restore; r != nil {
		restoreBootstrap(spec, inst, s, n)
	}
	if pg.Backup != nil {
		// A restored instance archives under its own serverName (its
		// Cluster's name), never the source's: the source's WAL stays as
		// it was, and the source can still be restored from.
		spec["plugins"] = []any{map[string]any{
			"name": barmanPlugin, "isWALArchiver": true,
			"parameters": map[string]any{"barmanObjectName": n.ObjectStore, "serverName": n.Cluster},
		}}
		if arn := p.Config.Backup.IAMRoleARN; arn != "" {
			spec["serviceAccountTemplate"] = map[string]any{"metadata": map[string]any{
				"annotations": map[string]any{"eks.amazonaws.com/role-arn": arn},
			}}
		}
	}
	return provisioners.NewObject(inst, cnpgAPI, "Cluster", n.Cluster, spec)
}

func affinity(zoneSpread string) map[string]any {
	switch zoneSpread {
	case "preferred":
		return map[string]any{"enablePodAntiAffinity": true, "topologyKey": zoneKey, "podAntiAffinityType": "preferred"}
	case "required":
		// Never two instances on one node; the zone spread itself is a
		// topology spread constraint, so more instances than zones still
		// schedule.
		return map[string]any{"enablePodAntiAffinity": true, "topologyKey": hostnameKey, "podAntiAffinityType": "required"}
	default:
		return map[string]any{"enablePodAntiAffinity": true, "topologyKey": hostnameKey, "podAntiAffinityType": "preferred"}
	}
}

func groupRole(name, comment string, inRoles ...string) map[string]any {
	r := map[string]any{
		"name": name, "ensure": "present", "login": false, "inherit": true,
		"comment": "Strata group role: " + comment,
	}
	if len(inRoles) > 0 {
		list := make([]any, len(inRoles))
		for i, v := range inRoles {
			list[i] = v
		}
		r["inRoles"] = list
	}
	return r
}

func database(inst provisioners.Instance, s Settings, db string) *unstructured.Unstructured {
	exts := make([]any, 0, len(s.Extensions))
	for _, e := range s.Extensions {
		exts = append(exts, map[string]any{"name": e, "ensure": "present"})
	}
	spec := map[string]any{
		"cluster": map[string]any{"name": inst.Name},
		"name":    db,
		"owner":   OwnerRole,
		"ensure":  "present",
	}
	if len(exts) > 0 {
		spec["extensions"] = exts
	}
	return provisioners.NewObject(inst, cnpgAPI, "Database", DatabaseObjectName(inst, db), spec)
}

func pooler(inst provisioners.Instance, n Names) *unstructured.Unstructured {
	pp := inst.Plan.Postgres.Pooler
	// The pooler's pods are built from its template alone (the Cluster's
	// inheritedMetadata does not reach them): the instance's labels for
	// finding and billing them, and the same mesh start-up order as the
	// instances, since PgBouncer's manager calls the API server too.
	podMeta := map[string]any{"labels": provisioners.StringMap(inst.Labels())}
	if inst.Meshed {
		podMeta["annotations"] = map[string]any{"proxy.istio.io/config": holdUntilProxyStarts}
	}
	podSpec := map[string]any{
		// CloudNativePG merges its containers into these by name; only
		// the resources are ours. Its bootstrap-controller init
		// container (which copies the operator's manager into the pod)
		// otherwise has none, and a namespace with a ResourceQuota on
		// CPU or memory refuses the pod; with PgBouncer's own, the
		// pod's effective requests stay PgBouncer's.
		"initContainers": []any{map[string]any{"name": "bootstrap-controller", "resources": requestsEqualLimits(pp.CPU, pp.Memory)}},
		"containers":     []any{map[string]any{"name": "pgbouncer", "resources": requestsEqualLimits(pp.CPU, pp.Memory)}},
	}
	// CloudNativePG spreads instances itself but leaves the Pooler's pods to
	// the scheduler, which may put them all on one node: the pooler must
	// survive what the instances survive, so it is spread the same way.
	selector := map[string]any{"matchLabels": map[string]any{poolerNameLabel: n.Pooler}}
	podSpec["affinity"] = map[string]any{"podAntiAffinity": map[string]any{
		"preferredDuringSchedulingIgnoredDuringExecution": []any{map[string]any{
			"weight":          int64(100),
			"podAffinityTerm": map[string]any{"topologyKey": hostnameKey, "labelSelector": selector},
		}},
	}}
	if zs := inst.Plan.Postgres.ZoneSpread; zs != "" {
		when := "ScheduleAnyway"
		if zs == "required" {
			when = "DoNotSchedule"
		}
		podSpec["topologySpreadConstraints"] = []any{map[string]any{
			"maxSkew": int64(1), "topologyKey": zoneKey, "whenUnsatisfiable": when, "labelSelector": selector,
		}}
	}
	return provisioners.NewObject(inst, cnpgAPI, "Pooler", n.Pooler, map[string]any{
		"cluster":   map[string]any{"name": n.Cluster},
		"type":      "rw",
		"instances": int64(pp.Instances),
		"template":  map[string]any{"metadata": podMeta, "spec": podSpec},
		"pgbouncer": map[string]any{
			"poolMode": pp.Mode,
			"parameters": map[string]any{
				// CloudNativePG's default (prefer) accepts plaintext clients.
				"client_tls_sslmode": "require",
				"max_client_conn":    strconv.Itoa(pp.MaxClientConn),
				"default_pool_size":  strconv.Itoa(pp.DefaultPoolSize),
				// Protocol-level prepared statements survive transaction
				// pooling (PgBouncer >= 1.21).
				"max_prepared_statements": "200",
			},
		},
	})
}

// backupPath is where the backups of a namespace's instances go (each
// instance's under its serverName below it).
func (b BackupConfig) backupPath(namespace string) string { return b.Path(namespace) }

func (p *Provisioner) objectStore(inst provisioners.Instance, s Settings, n Names) *unstructured.Unstructured {
	spec := p.objectStoreSpec(inst, n, inst.Namespace)
	spec["retentionPolicy"] = fmt.Sprintf("%dd", s.RetentionDays)
	o := provisioners.NewObject(inst, "barmancloud.cnpg.io/v1", "ObjectStore", n.ObjectStore, spec)
	// Deprovision keeps the ObjectStore: a restore reads the backups through
	// it, and its retention policy is what the bucket lifecycle mirrors.
	o.SetAnnotations(map[string]string{provisioners.AnnotationRetain: "true"})
	return o
}

// objectStoreSpec is an ObjectStore of the backups of pathNamespace's
// instances, without a retention policy.
func (p *Provisioner) objectStoreSpec(inst provisioners.Instance, n Names, pathNamespace string) map[string]any {
	b := p.Config.Backup
	path := b.backupPath(pathNamespace)
	creds := map[string]any{"inheritFromIAMRole": true}
	if b.Credentials != nil {
		creds = map[string]any{
			"accessKeyId":     map[string]any{"name": n.BackupCredentials, "key": accessKeyIDKey},
			"secretAccessKey": map[string]any{"name": n.BackupCredentials, "key": secretAccessKeyKey},
		}
	}
	wal := map[string]any{"compression": "zstd", "encryption": "aws:kms", "maxParallel": int64(2)}
	data := map[string]any{"compression": "gzip", "encryption": "aws:kms", "jobs": int64(2)}
	if b.KMSKeyID != "" {
		// The barman-cloud API has no key id field; the tools take it as a
		// flag, in --flag=value form so it is never appended twice.
		arg := []any{"--sse-kms-key-id=" + b.KMSKeyID}
		wal["archiveAdditionalCommandArgs"] = arg
		data["additionalCommandArgs"] = arg
	}
	conf := map[string]any{"destinationPath": path, "s3Credentials": creds, "wal": wal, "data": data}
	if b.EndpointURL != "" {
		conf["endpointURL"] = b.EndpointURL
	}
	bp := inst.Plan.Postgres.Backup
	sidecar := map[string]any{"resources": requestsEqualLimits(bp.SidecarCPU, bp.SidecarMemory)}
	if b.Region != "" {
		// s3Credentials.region only takes a Secret reference; the sidecar
		// that runs barman-cloud reads the region from its environment,
		// as boto3 does.
		sidecar["env"] = []any{
			map[string]any{"name": "AWS_REGION", "value": b.Region},
			map[string]any{"name": "AWS_DEFAULT_REGION", "value": b.Region},
		}
	}
	return map[string]any{
		"configuration": conf,
		// The sidecar runs in every instance pod.
		"instanceSidecarConfiguration": sidecar,
	}
}

// backupCredentials is the Secret with the broker's static S3 keys that
// the ObjectStore names (its namespace's, as CloudNativePG requires). It is
// kept at deprovision with the ObjectStore: a restore reads the backups
// with these keys.
func (p *Provisioner) backupCredentials(inst provisioners.Instance, n Names) *unstructured.Unstructured {
	keys := p.Config.Backup.Credentials
	o := provisioners.NewObject(inst, "v1", "Secret", n.BackupCredentials, nil)
	o.Object["type"] = "Opaque"
	o.Object["stringData"] = map[string]any{accessKeyIDKey: keys.AccessKeyID, secretAccessKeyKey: keys.SecretAccessKey}
	o.SetAnnotations(map[string]string{provisioners.AnnotationRetain: "true"})
	return o
}

func scheduledBackup(inst provisioners.Instance, s Settings, n Names) *unstructured.Unstructured {
	return provisioners.NewObject(inst, cnpgAPI, "ScheduledBackup", n.ScheduledBackup, map[string]any{
		"cluster":             map[string]any{"name": n.Cluster},
		"schedule":            s.BackupCron,
		"method":              "plugin",
		"pluginConfiguration": map[string]any{"name": barmanPlugin},
		// A first base backup right away: point-in-time recovery starts at
		// provisioning, not at the first scheduled run.
		"immediate": true,
		// Backup objects outlive the Cluster, like the backups themselves.
		"backupOwnerReference": "none",
		"target":               "prefer-standby",
	})
}

func (p *Provisioner) networkPolicies(inst provisioners.Instance, n Names) []*unstructured.Unstructured {
	clusterRules := []any{
		// The tenant's own workloads, the pooler and the other instances
		// (replication) are in this namespace.
		provisioners.AllowFrom(provisioners.SameNamespace(), postgresPort),
		provisioners.AllowFrom(provisioners.FromNamespace(p.Config.OperatorNamespace), statusPort, postgresPort),
		provisioners.AllowFrom(provisioners.FromNamespace(p.Config.MonitoringNamespace), monitoredPorts(inst, metricsPort)...),
	}
	if cm := p.Config.CredentialManager; cm != nil {
		// OpenBao creates and drops the bindings' roles.
		clusterRules = append(clusterRules, provisioners.AllowFrom(provisioners.FromNamespace(cm.Namespace), postgresPort))
	}
	if ns := p.Config.DrillClientNamespace; ns != "" && inst.Plan.Postgres.Backup != nil {
		// The broker writes each restore drill's marker (drill.go).
		clusterRules = append(clusterRules, provisioners.AllowFrom(provisioners.FromNamespace(ns), postgresPort))
	}
	out := []*unstructured.Unstructured{provisioners.IngressPolicy(inst, n.Cluster, map[string]any{"cnpg.io/cluster": n.Cluster}, clusterRules...)}
	if inst.Plan.Postgres.Pooler != nil {
		out = append(out, provisioners.IngressPolicy(inst, n.Pooler, map[string]any{"cnpg.io/poolerName": n.Pooler},
			provisioners.AllowFrom(provisioners.SameNamespace(), postgresPort),
			provisioners.AllowFrom(provisioners.FromNamespace(p.Config.MonitoringNamespace), monitoredPorts(inst, poolerMetrics)...),
		))
	}
	return out
}

// serverCertificate is the cert-manager Certificate of the cluster's
// server certificate, valid for every name a client may use: the rw, ro
// and r services and the pooler's.
func (p *Provisioner) serverCertificate(inst provisioners.Instance, n Names) *unstructured.Unstructured {
	var dns []any
	for _, svc := range []string{n.Cluster + "-rw", n.Cluster + "-ro", n.Cluster + "-r", n.Pooler} {
		dns = append(dns, provisioners.ServiceNames(svc, inst.Namespace)...)
	}
	// cnpg.io/reload: the instances load a renewed certificate.
	return provisioners.ServerCertificate(inst, p.Config.ServerCertificates, n.ServerCertificate, n.Cluster+"-rw", dns,
		map[string]any{"cnpg.io/reload": "true"})
}

func podMonitor(inst provisioners.Instance, name string, selector map[string]any) *unstructured.Unstructured {
	return provisioners.NewObject(inst, "monitoring.coreos.com/v1", "PodMonitor", name, map[string]any{
		"selector":            map[string]any{"matchLabels": selector},
		"podMetricsEndpoints": []any{map[string]any{"port": "metrics"}},
	})
}

// peerAuthentication keeps mTLS STRICT for clients while the ports used by
// out-of-mesh callers (the operator, Prometheus) accept plain connections;
// those ports carry their own TLS or only metrics.
func peerAuthentication(inst provisioners.Instance, name string, selector map[string]any, permissive ...int) *unstructured.Unstructured {
	ports := map[string]any{}
	for _, port := range permissive {
		ports[strconv.Itoa(port)] = map[string]any{"mode": "PERMISSIVE"}
	}
	return provisioners.NewObject(inst, "security.istio.io/v1", "PeerAuthentication", name, map[string]any{
		"selector":      map[string]any{"matchLabels": selector},
		"mtls":          map[string]any{"mode": "STRICT"},
		"portLevelMtls": ports,
	})
}

// requestsEqualLimits is a container's resources asking for exactly what
// it may use: Guaranteed QoS when every container of the pod does, and
// what a ResourceQuota on requests or limits counts.
func requestsEqualLimits(cpu, memory string) map[string]any {
	return map[string]any{
		"requests": map[string]any{"cpu": cpu, "memory": memory},
		"limits":   map[string]any{"cpu": cpu, "memory": memory},
	}
}
