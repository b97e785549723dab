package postgres

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/strata-dev/strata/provisioners"
)

// Restore drills: the broker proves, on a schedule, that an instance's
// backups restore. A drill is a throwaway Cluster in the drill namespace,
// rendered by the same builders as a restore provision (the recovery
// bootstrap and the ObjectStore over the source's backups), minus
// everything that would make it more than a check: no WAL archiver and
// no backups (nothing is ever written to, or deleted from, the source's
// object store), one instance, no pooler, no monitors.

// DrillRole is the login the broker writes the drill's marker into the
// source as, and reads it back from the restored copy with: the restored
// data holds the role and its password, so the same credentials log in to
// both.
const DrillRole = "strata_drill"

// DrillSchema holds the broker's marker table in the instance's first
// database.
const DrillSchema = "strata_drill"

// DrillLabel marks the objects of a drill (its value is the source's
// instance id).
const DrillLabel = "strata.dev/drill-of"

// DrillInstance is the throwaway instance a drill of source restores into
// drillNamespace: the source's plan and parameters (its version, storage
// and resources, which the restored data needs), its own name, and the
// source's backups as the restore source.
func DrillInstance(source provisioners.Instance, drillNamespace string, r provisioners.RestoreSource) provisioners.Instance {
	d := source
	d.Name = "drill-" + source.Name
	d.Namespace = drillNamespace
	d.Meshed = false
	// Restored from backups only: a copy's source is not read again.
	d.Copy = nil
	d.Restore = &r
	return d
}

// DrillLoginName names the Secret and DatabaseRole of the drill login in
// the source's namespace.
func DrillLoginName(source provisioners.Instance) string { return source.Name + "-drill" }

// DrillLoginSecret is the password of the drill login, in the source's
// namespace (created once: the password is random, and the restored
// copies hold its verifier).
func DrillLoginSecret(source provisioners.Instance, password string) *unstructured.Unstructured {
	o := provisioners.NewObject(source, "v1", "Secret", DrillLoginName(source), nil)
	o.Object["type"] = "kubernetes.io/basic-auth"
	o.Object["stringData"] = map[string]any{"username": DrillRole, "password": password}
	return o
}

// DrillLoginRole is the CloudNativePG DatabaseRole of the drill login:
// least privilege. It is a member of no role (the first drills made it a
// member of the owner group, to create the marker schema; applying this
// without inRoles makes CloudNativePG revoke that membership, so an
// instance drilled before converges at its next drill). It may connect
// (PUBLIC's CONNECT) and use its own schema, DrillSchemaDatabase.
func DrillLoginRole(source provisioners.Instance) *unstructured.Unstructured {
	name := DrillLoginName(source)
	return provisioners.NewObject(source, cnpgAPI, "DatabaseRole", name, map[string]any{
		"cluster":         map[string]any{"name": NamesOf(source).Cluster},
		"name":            DrillRole,
		"login":           true,
		"inherit":         true,
		"connectionLimit": int64(2),
		"passwordSecret":  map[string]any{"name": name},
		// Deleting the object (deprovision) drops the role.
		"databaseRoleReclaimPolicy": "delete",
		"comment":                   "Strata: the broker's restore drills write a marker as this role",
	})
}

// DrillFieldManager is the server-side apply field manager of the drill's
// part of the first database's Database object (DrillSchemaDatabase): its
// own, so the instance's reconcile (FieldManager, which renders no
// schemas) neither removes the drill schema from the list nor conflicts.
const DrillFieldManager = "strata-broker-drills"

// DrillSchemaDatabase is the drill's part of the Database object of the
// instance's first database, applied as DrillFieldManager: the marker
// schema, declared and owned by the drill login, which CloudNativePG
// creates (or, for an instance drilled before, whose login created it,
// keeps with that owner). The login needs no CREATE on the database: it
// creates its table in the schema it owns, and nothing anywhere else.
// It names the same cluster and database as the instance's own Database
// object (identical values, shared by both managers).
func DrillSchemaDatabase(source provisioners.Instance) (*unstructured.Unstructured, error) {
	db, err := FirstDatabase(source)
	if err != nil {
		return nil, err
	}
	return provisioners.NewObject(source, cnpgAPI, "Database", DatabaseObjectName(source, db), map[string]any{
		"cluster": map[string]any{"name": NamesOf(source).Cluster},
		"name":    db,
		"schemas": []any{map[string]any{"name": DrillSchema, "owner": DrillRole, "ensure": "present"}},
	}), nil
}

// DrillSchemaDatabaseRef is the Database object DrillSchemaDatabase
// applies to.
func DrillSchemaDatabaseRef(source provisioners.Instance) (provisioners.Ref, error) {
	db, err := FirstDatabase(source)
	if err != nil {
		return provisioners.Ref{}, err
	}
	return provisioners.Ref{GVK: databaseGVK, Namespace: source.Namespace, Name: DatabaseObjectName(source, db)}, nil
}

// BuildDrill renders the throwaway instance of a drill (DrillInstance) in
// apply order. clientNamespace is the broker's, let in on 5432 to check
// the restored data.
func (p *Provisioner) BuildDrill(drill provisioners.Instance, clientNamespace string) ([]*unstructured.Unstructured, error) {
	pg := drill.Plan.Postgres
	if pg.Shared || pg.Backup == nil || drill.Restore == nil {
		return nil, fmt.Errorf("plan %s keeps no backups of its own: nothing to drill", drill.Plan.Name)
	}
	if p.Config.Backup.Bucket == "" {
		return nil, fmt.Errorf("the broker has no backup bucket (postgres.backup.bucket): nothing to drill")
	}
	s, err := Resolve(drill.Plan, drill.Params)
	if err != nil {
		return nil, err
	}
	image, ok := p.Config.Images[s.Version]
	if !ok {
		return nil, fmt.Errorf("no image is configured for PostgreSQL %s (postgres.images)", s.Version)
	}
	// The source's own settings: the restored data runs as it did there.
	tuning, err := Tuning(s, pg.MaxConnections)
	if err != nil {
		return nil, err
	}
	n := NamesOf(drill)
	var objs []*unstructured.Unstructured
	if p.Config.Backup.Credentials != nil {
		objs = append(objs, p.backupCredentials(drill, n))
	}
	if drill.Restore.Namespace != drill.Namespace {
		objs = append(objs, p.restoreSourceStore(drill, n))
	}
	cluster := p.cluster(drill, s, n, image, tuning)
	spec := cluster.Object["spec"].(map[string]any)
	// No WAL archiver, so nothing of the drill reaches any object store
	// (and the source's serverName is never written to).
	delete(spec, "plugins")
	// Its own CA from CloudNativePG: the broker verifies the copy against
	// it, and no Certificate outlives the drill.
	delete(spec, "certificates")
	spec["instances"] = int64(1)
	spec["enablePDB"] = false
	spec["description"] = fmt.Sprintf("Strata restore drill of %s instance %s", drill.Plan.Name, drill.ID)
	objs = append(objs, cluster)
	objs = append(objs, provisioners.IngressPolicy(drill, n.Cluster, map[string]any{"cnpg.io/cluster": n.Cluster},
		provisioners.AllowFrom(provisioners.FromNamespace(p.Config.OperatorNamespace), statusPort, postgresPort),
		provisioners.AllowFrom(provisioners.FromNamespace(clientNamespace), postgresPort),
	))
	for _, o := range objs {
		labels := o.GetLabels()
		labels[DrillLabel] = provisioners.LabelValue(drill.ID)
		o.SetLabels(labels)
	}
	return objs, nil
}

// DrillLoginRefs are the drill login's DatabaseRole and Secret.
func DrillLoginRefs(source provisioners.Instance) (role, secret provisioners.Ref) {
	name := DrillLoginName(source)
	return provisioners.Ref{GVK: databaseRoleGVK, Namespace: source.Namespace, Name: name},
		provisioners.Ref{GVK: schema.GroupVersionKind{Version: "v1", Kind: "Secret"}, Namespace: source.Namespace, Name: name}
}

// DrillClusterRef is the throwaway Cluster of a drill.
func DrillClusterRef(drill provisioners.Instance) provisioners.Ref {
	return provisioners.Ref{GVK: clusterGVK, Namespace: drill.Namespace, Name: NamesOf(drill).Cluster}
}

// DrillCASecret names the Secret (key ca.crt) of the CA CloudNativePG
// made for the drill's Cluster.
func DrillCASecret(drill provisioners.Instance) string { return NamesOf(drill).Cluster + "-ca" }

// ServerName is the name a client verifies the instance's primary as
// (its -rw Service, which every server certificate names).
func ServerName(inst provisioners.Instance) string {
	return NamesOf(inst).Cluster + "-rw." + inst.Namespace + ".svc"
}

// FirstDatabase is the instance's first database (where the drill marker
// is written).
func FirstDatabase(inst provisioners.Instance) (string, error) {
	s, err := Resolve(inst.Plan, inst.Params)
	if err != nil {
		return "", err
	}
	return s.Databases[0], nil
}

// ClusterNetworkPolicy is the instance's NetworkPolicy in front of its
// PostgreSQL pods, as Build renders it: a drill applies it before writing
// its marker, so an instance provisioned before drills were turned on
// lets the broker in (DrillClientNamespace) without waiting for an update.
func (p *Provisioner) ClusterNetworkPolicy(inst provisioners.Instance) *unstructured.Unstructured {
	return p.networkPolicies(inst, NamesOf(inst))[0]
}
