package postgres

import (
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/provisioners"
)

// A copy (copy_of) is a new instance bootstrapped by CloudNativePG's
// logical import, microservice type: pg_dump of one database of a source
// instance of the same namespace, over the source's read-write Service
// with TLS verified against the source's CA (verify-full), restored into
// the copy's first database and owned by strata_owner, then masked
// (mask.go). The copy reads the source as a login of its own, a member of
// strata_readonly only (all pg_dump needs): a DatabaseRole on the source
// cluster, rendered with the copy (labelled as the copy's, so it is
// dropped when the copy is deprovisioned), whose password Secret the
// broker writes once (CopyLoginSecret).

var _ provisioners.Copier = (*Provisioner)(nil)

// copyOrigin names the source in the copy's externalClusters.
const copyOrigin = "copy-source"

// CopyRequest reads parameters.copy_of (schema-valid): nil without one.
func (p *Provisioner) CopyRequest(params map[string]any) (*provisioners.CopyRequest, error) {
	var raw rawParams
	if err := provisioners.DecodeParams(params, &raw); err != nil {
		return nil, err
	}
	if raw.CopyOf == nil {
		return nil, nil
	}
	return &provisioners.CopyRequest{FromInstance: raw.CopyOf.Instance, Database: raw.CopyOf.Database}, nil
}

// CopySource completes a copy request from the source instance the broker
// found: its database (the first by default) and the CA of its server
// certificate.
func (p *Provisioner) CopySource(req *provisioners.CopyRequest, source provisioners.Instance) (*provisioners.CopySource, error) {
	if source.Plan.Postgres.Shared {
		return nil, provisioners.ParamErrorf("parameters.copy_of.instance", "instance %s is a database of the shared cluster; copy an instance of dev-lite, standard or ha (or pg_dump the shared database through a binding)", req.FromInstance)
	}
	s, err := Resolve(source.Plan, source.Params)
	if err != nil {
		return nil, err
	}
	db := s.Databases[0]
	if req.Database != "" {
		if !slices.Contains(s.Databases, req.Database) {
			return nil, provisioners.ParamErrorf("parameters.copy_of.database", "instance %s has no database %q; it has %v", req.FromInstance, req.Database, s.Databases)
		}
		db = req.Database
	}
	return &provisioners.CopySource{InstanceID: req.FromInstance, Name: source.Name, Database: db, CASecret: p.ServerCASecret(source)}, nil
}

// checkCopy refuses copies this build cannot render safely.
func (p *Provisioner) checkCopy(inst provisioners.Instance) error {
	s, err := Resolve(inst.Plan, inst.Params)
	if err != nil {
		return err
	}
	asked := s.Mask != nil
	if asked && inst.Copy == nil {
		return provisioners.ParamErrorf("parameters.copy_of", "the source instance was not resolved (the broker resolves copy_of at provision)")
	}
	if !asked {
		return nil
	}
	if inst.Plan.Postgres.Backup != nil {
		// The copy's WAL from the import holds the rows as they were
		// before masking; a plan with backups would archive it to S3,
		// and its retention would keep it there.
		return provisioners.ParamErrorf("parameters.copy_of", "plan %s keeps backups, whose WAL archive would keep the rows as they were before masking; provision the copy on dev-lite", inst.Plan.Name)
	}
	return nil
}

// copyBootstrap makes initdb import the source's database and mask it.
// Under OpenBao the import also creates the management role, without a
// password (the import runs no postInitApplicationSQLRefs, and this SQL
// is inline in the Cluster): its memberships need ADMIN OPTION, which
// only SQL can grant; the DatabaseRole the broker writes
// (ManagementDatabaseRole) sets its verifier afterwards.
func copyBootstrap(spec map[string]any, inst provisioners.Instance, s Settings, n Names, openBao bool) {
	src := inst.Copy
	imp := map[string]any{
		"type":      "microservice",
		"databases": []any{src.Database},
		"source":    map[string]any{"externalCluster": copyOrigin},
	}
	var sql []string
	if openBao {
		sql = append(sql, ManagementRoleNoPasswordSQL()...)
	}
	sql = append(sql, MaskSQL(s.Mask)...)
	if len(sql) > 0 {
		stmts := make([]any, len(sql))
		for i, q := range sql {
			stmts[i] = q
		}
		imp["postImportApplicationSQL"] = stmts
	}
	spec["bootstrap"].(map[string]any)["initdb"].(map[string]any)["import"] = imp
	host := src.Name + "-rw." + inst.Namespace + ".svc"
	spec["externalClusters"] = []any{map[string]any{
		"name": copyOrigin,
		"connectionParameters": map[string]any{
			"host": host, "port": "5432", "dbname": src.Database, "user": CopyLoginUser(inst),
			"sslmode": "verify-full",
		},
		"password":    map[string]any{"name": n.CopyLogin, "key": "password"},
		"sslRootCert": map[string]any{"name": src.CASecret, "key": "ca.crt"},
	}}
}

// copyLogin is the copy's read-only login on the source cluster.
func copyLogin(inst provisioners.Instance, n Names) *unstructured.Unstructured {
	return provisioners.NewObject(inst, cnpgAPI, "DatabaseRole", n.CopyLogin, map[string]any{
		"cluster":        map[string]any{"name": inst.Copy.Name},
		"name":           CopyLoginUser(inst),
		"login":          true,
		"inherit":        true,
		"inRoles":        []any{ReadOnlyRole},
		"passwordSecret": map[string]any{"name": n.CopyLogin},
		// Deleting the DatabaseRole (the copy's deprovision) drops the
		// login from the source.
		"databaseRoleReclaimPolicy": "delete",
		"comment":                   "Strata: copy " + inst.ID + " reads this instance",
	})
}
