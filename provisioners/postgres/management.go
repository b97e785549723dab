package postgres

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/provisioners"
)

// ManagementRole is the login OpenBao uses to create and drop the
// bindings' roles. It is not a superuser: it may create roles (CREATEROLE)
// and grant exactly the three group roles (ADMIN OPTION on them), and
// terminate the sessions of a revoked login (pg_signal_backend). It is
// NOINHERIT, so it holds no data privileges itself.
const ManagementRole = "strata_openbao"

// BootstrapSQLKey is the key of the bootstrap Secret with the SQL
// CloudNativePG runs at initdb (postInitApplicationSQLRefs).
const BootstrapSQLKey = "management-role.sql"

// ManagementRoleSQL creates the management role with a SCRAM verifier (never
// the password: pgaudit logs a multi-statement query's whole text) and the
// group roles it grants, if the operator has not created them yet; the
// Cluster's managed roles then adopt and shape them. It runs in the
// application database after initdb created the owner (strata_owner).
func ManagementRoleSQL(verifier string) string {
	return strings.Join(managementRoleStatements(verifier), "\n") + "\n"
}

// managementRoleStatements are ManagementRoleSQL's statements, one each;
// without a verifier the role has no password (ManagementRoleNoPasswordSQL).
func managementRoleStatements(verifier string) []string {
	var b strings.Builder
	b.WriteString("DO $$\nBEGIN\n")
	for _, g := range []string{ReadWriteRole, ReadOnlyRole} {
		fmt.Fprintf(&b, "  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '%s') THEN\n    CREATE ROLE %s NOLOGIN;\n  END IF;\n", g, g)
	}
	b.WriteString("END\n$$;")
	create := fmt.Sprintf("CREATE ROLE %s LOGIN CREATEROLE NOINHERIT CONNECTION LIMIT 10", ManagementRole)
	if verifier != "" {
		create += fmt.Sprintf(" PASSWORD '%s'", verifier)
	}
	return []string{
		b.String(),
		create + ";",
		fmt.Sprintf("COMMENT ON ROLE %s IS '%s';", ManagementRole, managementComment),
		fmt.Sprintf("GRANT %s, %s, %s TO %s WITH ADMIN OPTION;", OwnerRole, ReadWriteRole, ReadOnlyRole, ManagementRole),
		fmt.Sprintf("GRANT pg_signal_backend TO %s;", ManagementRole),
	}
}

// ManagementRoleSecret renders the bootstrap Secret of an instance, in its
// namespace: only the SQL of ManagementRoleSQL, with a verifier of
// password. The password itself never enters the tenant's namespace: the
// broker keeps it in its own until OpenBao has rotated it.
func ManagementRoleSecret(inst provisioners.Instance, password string) (*unstructured.Unstructured, error) {
	verifier, err := SCRAMVerifier(password)
	if err != nil {
		return nil, err
	}
	o := provisioners.NewObject(inst, "v1", "Secret", NamesOf(inst).Bootstrap, nil)
	o.Object["type"] = "Opaque"
	o.Object["stringData"] = map[string]any{BootstrapSQLKey: ManagementRoleSQL(verifier)}
	return o, nil
}

// ManagementHandOver says whether the management role of an instance is
// set up by a DatabaseRole the broker hands over to OpenBao, rather than
// by initdb SQL: restores and copies. A recovery bootstrap runs no SQL
// (and the recovered data holds the source's role, with a password only
// the source's OpenBao connection knows); CloudNativePG's import
// bootstrap does not run postInitApplicationSQLRefs. For these instances
// the broker writes the verifier into a basic-auth Secret and a
// DatabaseRole (ManagementDatabaseRole) that CloudNativePG applies once
// the cluster is up; once OpenBao has logged in with it, the broker
// deletes both (the role is retained) and only then rotates the password.
func ManagementHandOver(inst provisioners.Instance) bool {
	return inst.Restore != nil || inst.Copy != nil
}

// managementInRoles are the management role's memberships: the three
// group roles (WITH ADMIN OPTION, so OpenBao can grant them; see
// ManagementRoleSQL) and pg_signal_backend. A DatabaseRole revokes every
// membership it does not list and grants missing ones without ADMIN
// OPTION, so the list must be exactly what the role holds.
var managementInRoles = []string{OwnerRole, ReadWriteRole, ReadOnlyRole, "pg_signal_backend"}

// ManagementRoleNoPasswordSQL creates the management role and its
// memberships without a password (a copy's postImportApplicationSQL,
// which is inline in the Cluster: no secret may go there); the
// DatabaseRole sets the verifier afterwards.
func ManagementRoleNoPasswordSQL() []string {
	return managementRoleStatements("")
}

// ManagementLoginSecret is the basic-auth Secret, in the instance's
// namespace, the management DatabaseRole reads its password from: a
// SCRAM verifier of the first password, which CloudNativePG passes to
// ALTER ROLE as is (it encodes only plaintext; the passthrough
// annotation makes that explicit). The password itself never enters the
// tenant's namespace.
func ManagementLoginSecret(inst provisioners.Instance, password string) (*unstructured.Unstructured, error) {
	verifier, err := SCRAMVerifier(password)
	if err != nil {
		return nil, err
	}
	o := provisioners.NewObject(inst, "v1", "Secret", NamesOf(inst).ManagementLogin, nil)
	o.SetAnnotations(map[string]string{"cnpg.io/passwordPassthrough": "enabled"})
	o.Object["type"] = "kubernetes.io/basic-auth"
	o.Object["stringData"] = map[string]any{"username": ManagementRole, "password": verifier}
	return o, nil
}

// ManagementDatabaseRole sets up the management role of a restored or
// copied instance: its attributes as ManagementRoleSQL creates them, its
// memberships and the verifier of ManagementLoginSecret. It is retained
// when deleted: the broker deletes it once OpenBao has logged in, before
// OpenBao rotates the password (a DatabaseRole left in place would set
// the verifier again when reconciled, undoing the rotation, and would
// revoke the ADMIN memberships PostgreSQL gives strata_openbao on every
// login it creates, so that OpenBao could not drop them).
func ManagementDatabaseRole(inst provisioners.Instance) *unstructured.Unstructured {
	n := NamesOf(inst)
	in := make([]any, len(managementInRoles))
	for i, r := range managementInRoles {
		in[i] = r
	}
	return provisioners.NewObject(inst, cnpgAPI, "DatabaseRole", n.ManagementLogin, map[string]any{
		"cluster":                   map[string]any{"name": n.Cluster},
		"name":                      ManagementRole,
		"login":                     true,
		"createrole":                true,
		"inherit":                   false,
		"connectionLimit":           int64(10),
		"inRoles":                   in,
		"passwordSecret":            map[string]any{"name": n.ManagementLogin},
		"databaseRoleReclaimPolicy": "retain",
		"comment":                   managementComment,
	})
}

const managementComment = "Strata: OpenBao creates and drops binding logins as this role"
