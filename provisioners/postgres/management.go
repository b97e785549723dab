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
	var b strings.Builder
	b.WriteString("DO $$\nBEGIN\n")
	for _, g := range []string{ReadWriteRole, ReadOnlyRole} {
		fmt.Fprintf(&b, "  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '%s') THEN\n    CREATE ROLE %s NOLOGIN;\n  END IF;\n", g, g)
	}
	b.WriteString("END\n$$;\n")
	fmt.Fprintf(&b, "CREATE ROLE %s LOGIN CREATEROLE NOINHERIT CONNECTION LIMIT 10 PASSWORD '%s';\n", ManagementRole, verifier)
	fmt.Fprintf(&b, "COMMENT ON ROLE %s IS 'Strata: OpenBao creates and drops binding logins as this role';\n", ManagementRole)
	fmt.Fprintf(&b, "GRANT %s, %s, %s TO %s WITH ADMIN OPTION;\n", OwnerRole, ReadWriteRole, ReadOnlyRole, ManagementRole)
	fmt.Fprintf(&b, "GRANT pg_signal_backend TO %s;\n", ManagementRole)
	return b.String()
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
