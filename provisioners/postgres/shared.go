package postgres

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/strata-dev/strata/provisioners"
)

// The shared plan: a database and its roles inside the platform's shared
// CloudNativePG cluster (charts/strata-platform, shared-postgres.yaml).
// Tenants are separated at the database level:
//
//   - every instance has a NOLOGIN anchor role named like its database and
//     three group roles (owner, readwrite, readonly) that are members of
//     the anchor; a binding's login is a member of one group;
//   - the shared cluster's pg_hba lets a login connect (over TLS, with
//     SCRAM) only to a database named like a role it is a member of
//     ("samerole"): its own instance's database, through group → anchor;
//     everything else is rejected before CloudNativePG's permissive default.
//
// The readwrite and readonly groups hold PostgreSQL's predefined
// pg_read_all_data (and pg_write_all_data), as on the dedicated plans.
// Those act in whichever database a session is connected to, and the only
// database a tenant's login can connect to is its own: pg_hba, not a
// privilege, keeps them out of other tenants' databases. (CloudNativePG
// has no declarative per-database GRANT, and a database's CONNECT
// privilege cannot be revoked from PUBLIC through its Database object.)

// SharedConfig names the platform's shared cluster.
type SharedConfig struct {
	// Namespace holds the shared Cluster; every shared instance's
	// DatabaseRoles and Database live there too (CloudNativePG wants them
	// next to their Cluster).
	Namespace string `json:"namespace"`
	// ClusterName is the shared Cluster's name; clients connect to its
	// <ClusterName>-rw Service.
	ClusterName string `json:"clusterName"`
	// OpenBaoConnection is the database secrets engine connection the
	// platform configured once for the shared cluster (docs/openbao.md);
	// the broker writes only roles that use it.
	OpenBaoConnection string `json:"openBaoConnection"`
	// CASecret is the Secret in Namespace whose ca.crt signs the shared
	// cluster's server certificate; default: <ClusterName>-server-tls
	// (cert-manager's, as the platform chart issues it).
	CASecret string `json:"caSecret"`
}

// DefaultSharedConfig matches charts/strata-platform's sharedPostgres
// defaults.
func DefaultSharedConfig() SharedConfig {
	return SharedConfig{Namespace: "strata-postgres", ClusterName: "strata-shared", OpenBaoConnection: "strata-shared"}
}

// SharedCluster is the configured shared cluster with defaults for every
// field left empty.
func (c Config) SharedCluster() SharedConfig {
	s, d := c.Shared, DefaultSharedConfig()
	if s.Namespace == "" {
		s.Namespace = d.Namespace
	}
	if s.ClusterName == "" {
		s.ClusterName = d.ClusterName
	}
	if s.OpenBaoConnection == "" {
		s.OpenBaoConnection = d.OpenBaoConnection
	}
	if s.CASecret == "" {
		s.CASecret = s.ClusterName + "-server-tls"
	}
	return s
}

// The group roles of a shared instance are named <database>_<suffix>.
const (
	SharedOwnerSuffix     = "_owner"
	SharedReadWriteSuffix = "_readwrite"
	SharedReadOnlySuffix  = "_readonly"
)

// SharedNames are a shared instance's PostgreSQL and Kubernetes names.
type SharedNames struct {
	// Database is the database's name and its anchor role's.
	Database string
	// Owner, ReadWrite and ReadOnly are the group roles.
	Owner, ReadWrite, ReadOnly string
	// Object is the base name of the Kubernetes objects in the shared
	// namespace: the Database is Object, the DatabaseRoles
	// Object-anchor, -owner, -readwrite, -readonly.
	Object string
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// tenantPrefixLen keeps the longest role name (<database>_readwrite) at
// PostgreSQL's 63 bytes: "s_" + 18 + "_" + 32 hex + "_readwrite".
const tenantPrefixLen = 18

// SharedNamesOf derives the names from the tenant and the instance id:
// "s_<tenant, up to 18 characters>_<32 hex>", where the hex is the
// instance id's when it is a UUID (instance ids are unique in the broker,
// so no two instances, of one tenant or two, get the same name) and
// otherwise the first 32 hex digits of its SHA-256. The tenant part makes
// the names readable; only [a-z0-9_] is used, so no name needs quoting,
// and the "s_" prefix keeps clear of PostgreSQL's pg_ and CloudNativePG's
// cnpg_ reserved prefixes.
func SharedNamesOf(inst provisioners.Instance) SharedNames {
	id := strings.ReplaceAll(inst.ID, "-", "")
	if !uuidRE.MatchString(inst.ID) {
		sum := sha256.Sum256([]byte(inst.ID))
		id = hex.EncodeToString(sum[:])[:32]
	}
	tenant := strings.ReplaceAll(inst.Namespace, "-", "_")
	if len(tenant) > tenantPrefixLen {
		tenant = strings.TrimRight(tenant[:tenantPrefixLen], "_")
	}
	db := "s_" + tenant + "_" + id
	return SharedNames{
		Database:  db,
		Owner:     db + SharedOwnerSuffix,
		ReadWrite: db + SharedReadWriteSuffix,
		ReadOnly:  db + SharedReadOnlySuffix,
		Object:    strings.ReplaceAll(db, "_", "-"),
	}
}

// SharedRolePattern matches every group role of a shared instance (and
// nothing else); the shared cluster's grant function checks it.
const SharedRolePattern = `^s_[a-z0-9_]*_[0-9a-f]{32}_(owner|readwrite|readonly)$`

// SharedGrantFunction is the function the platform creates in the shared
// cluster's postgres database (charts/strata-platform,
// shared-postgres.yaml): SECURITY DEFINER, executable only by the
// management role, it grants a group matching SharedRolePattern to a
// plain login. It stands in for ADMIN OPTION on every tenant's groups,
// which CloudNativePG cannot grant.
const SharedGrantFunction = "strata.grant_tenant_role"

var databaseRoleGVK = schema.GroupVersionKind{Group: "postgresql.cnpg.io", Version: "v1", Kind: "DatabaseRole"}

// inShared places an object of the instance in the shared cluster's
// namespace; its labels (strata.dev/tenant among them) still name the
// instance and its tenant, for usage and cleanup.
func (p *Provisioner) inShared(inst provisioners.Instance, kind, name string, spec map[string]any) *unstructured.Unstructured {
	o := provisioners.NewObject(inst, cnpgAPI, kind, name, spec)
	o.SetNamespace(p.Config.SharedCluster().Namespace)
	return o
}

// buildShared renders a shared instance: the anchor and group
// DatabaseRoles, the Database, and a NetworkPolicy letting the tenant's
// namespace through to the shared cluster's 5432 (the platform chart's
// own policy lets in only OpenBao and the cluster itself, so a namespace
// reaches the shared cluster only while it has an instance there, as on
// the shared Kafka cluster). No Pooler, backup or monitor of its own: the
// platform's cluster has them.
func (p *Provisioner) buildShared(inst provisioners.Instance) ([]*unstructured.Unstructured, error) {
	s, err := ResolveShared(inst.Params)
	if err != nil {
		return nil, err
	}
	n := SharedNamesOf(inst)
	cluster := p.Config.SharedCluster().ClusterName
	role := func(suffix, name, comment string, inRoles ...string) *unstructured.Unstructured {
		spec := map[string]any{
			"cluster": map[string]any{"name": cluster},
			"name":    name,
			"ensure":  "present",
			"login":   false,
			"inherit": true,
			// Deprovision drops the role (the default, retain, would leave
			// it behind in the shared cluster).
			"databaseRoleReclaimPolicy": "delete",
			"comment":                   fmt.Sprintf("Strata shared instance %s of %s: %s", inst.ID, inst.Namespace, comment),
		}
		if len(inRoles) > 0 {
			list := make([]any, len(inRoles))
			for i, r := range inRoles {
				list[i] = r
			}
			spec["inRoles"] = list
		}
		return p.inShared(inst, "DatabaseRole", n.Object+suffix, spec)
	}
	exts := make([]any, 0, len(s.Extensions))
	for _, e := range s.Extensions {
		exts = append(exts, map[string]any{"name": e, "ensure": "present"})
	}
	dbSpec := map[string]any{
		"cluster": map[string]any{"name": cluster},
		"name":    n.Database,
		"owner":   n.Owner,
		"ensure":  "present",
		// Deprovisioning a shared instance is its tenant deleting the
		// database: it is dropped. The shared cluster's backups still hold
		// it for their retention, so a restore can bring it back.
		"databaseReclaimPolicy": "delete",
		// One tenant cannot take the shared cluster's connections.
		"connectionLimit": int64(inst.Plan.Postgres.MaxConnections),
	}
	if len(exts) > 0 {
		dbSpec["extensions"] = exts
	}
	return []*unstructured.Unstructured{
		// The anchor: no login, no privileges; only its name matters, to
		// pg_hba's samerole.
		role("-anchor", n.Database, "anchor role; members may connect to database "+n.Database),
		role("-owner", n.Owner, "owns the database: DDL and migrations", n.Database),
		role("-readwrite", n.ReadWrite, "reads and writes data, no DDL", n.Database, "pg_read_all_data", "pg_write_all_data"),
		role("-readonly", n.ReadOnly, "reads data", n.Database, "pg_read_all_data"),
		p.inShared(inst, "Database", n.Object, dbSpec),
		sharedClientPolicy(inst, n, p.Config.SharedCluster()),
	}, nil
}

// sharedClientPolicy admits the tenant's workloads to the shared cluster's
// PostgreSQL port.
func sharedClientPolicy(inst provisioners.Instance, n SharedNames, sc SharedConfig) *unstructured.Unstructured {
	np := provisioners.IngressPolicy(inst, n.Object+"-clients", map[string]any{"cnpg.io/cluster": sc.ClusterName},
		provisioners.AllowFrom(provisioners.FromNamespace(inst.Namespace), postgresPort))
	np.SetNamespace(sc.Namespace)
	return np
}

// SharedSettings are a shared instance's parameters.
type SharedSettings struct {
	Extensions []string
}

// ResolveShared reads a shared instance's (schema-valid) parameters.
func ResolveShared(params map[string]any) (SharedSettings, error) {
	var raw struct {
		Extensions []string `json:"extensions"`
	}
	if err := provisioners.DecodeParams(params, &raw); err != nil {
		return SharedSettings{}, err
	}
	return SharedSettings{Extensions: raw.Extensions}, nil
}

// watchedShared are the DatabaseRoles and the Database, in Build order
// (the NetworkPolicy has no status to wait for).
func (p *Provisioner) watchedShared(inst provisioners.Instance) []provisioners.Ref {
	objs, err := p.buildShared(inst)
	if err != nil {
		return nil
	}
	var refs []provisioners.Ref
	for _, o := range objs {
		if o.GetKind() == "DatabaseRole" || o.GetKind() == "Database" {
			refs = append(refs, provisioners.RefOf(o))
		}
	}
	return refs
}

// assessShared reads CloudNativePG 1.30's status of each DatabaseRole and
// of the Database: applied for the object's generation, else the
// operator's message.
func (p *Provisioner) assessShared(inst provisioners.Instance, observed map[provisioners.Ref]*unstructured.Unstructured) provisioners.Progress {
	n := SharedNamesOf(inst)
	for _, ref := range p.watchedShared(inst) {
		o := observed[ref]
		what := "database " + n.Database
		if ref.GVK == databaseRoleGVK {
			what = "role " + strings.TrimPrefix(ref.Name, n.Object+"-")
		}
		if o == nil {
			return provisioners.Progressing("waiting for the " + what + " object " + ref.Name)
		}
		applied, _, _ := unstructured.NestedBool(o.Object, "status", "applied")
		gen, _, _ := unstructured.NestedInt64(o.Object, "status", "observedGeneration")
		if applied && gen >= o.GetGeneration() {
			continue
		}
		d := "waiting for CloudNativePG to create the " + what
		if msg, _, _ := unstructured.NestedString(o.Object, "status", "message"); msg != "" {
			d += ": " + msg
		}
		return provisioners.Progressing(d)
	}
	return provisioners.Progress{State: provisioners.Succeeded,
		Description: fmt.Sprintf("database %s ready in the shared PostgreSQL cluster", n.Database)}
}

// checkSharedUpdate allows any extension list (removing one stops
// managing it, as on dedicated plans).
func checkSharedUpdate(_, updated provisioners.Instance) error {
	_, err := ResolveShared(updated.Params)
	return err
}
