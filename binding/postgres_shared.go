package binding

import (
	"context"
	"fmt"

	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/postgres"
)

// A shared instance's logins come from OpenBao only: they are created in
// the platform's shared cluster through the one connection the platform
// configured for it (docs/openbao.md). CloudNativePG DatabaseRole logins,
// the development fallback of dedicated instances, would put a Secret
// with each tenant's password into the shared cluster's namespace.

// sharedCluster is the configured shared cluster, with defaults.
func (b *PostgresBinder) sharedCluster() postgres.SharedConfig {
	return postgres.Config{Shared: b.Shared}.SharedCluster()
}

func (b *PostgresBinder) bindShared(ctx context.Context, inst provisioners.Instance, bindingID string, p postgresBindParams) (Result, error) {
	if _, ok := b.Logins.(*OpenBaoSource); !ok {
		return Result{}, &UnsupportedError{"the shared plan issues credentials through OpenBao, which this broker is not configured with: " +
			"the platform team sets openBao (and the shared cluster's OpenBao connection, postgres.shared.openBaoConnection) in the broker configuration"}
	}
	sc := b.sharedCluster()
	ca, err := secretCA(ctx, b.Kube, sc.Namespace, sc.CASecret, "shared cluster's CA certificate")
	if err != nil {
		return Result{}, err
	}
	n := postgres.SharedNamesOf(inst)
	host := sc.ClusterName + "-rw." + sc.Namespace + ".svc"
	conn := PostgresConn{
		SecretName: SecretName(bindingID), Port: 5432, Database: n.Database, Access: p.Access,
		Host: host, DirectHost: host, OwnerRole: n.Owner, CAPEM: ca, MountPath: p.MountPath,
		PoolSize: PoolSize(inst.Plan.Postgres.MaxConnections, 0),
	}
	return b.issueAndWrite(ctx, inst, bindingID, p.Access, conn)
}

// sharedGroupRole maps an access level to the shared instance's group.
func sharedGroupRole(inst provisioners.Instance, a Access) string {
	n := postgres.SharedNamesOf(inst)
	switch a {
	case Owner:
		return n.Owner
	case ReadOnly:
		return n.ReadOnly
	default:
		return n.ReadWrite
	}
}

// SharedRolePrefix starts every OpenBao role of a shared instance; the
// shared connection's allowed_roles is SharedRolePrefix + "*". Dedicated
// instances' roles never contain '.', so they never match it.
const SharedRolePrefix = "strata-shared."

// sharedRoleName is the OpenBao role of an access level of a shared
// instance: strata-shared.<tenant>.<instance name>-<access>.
func sharedRoleName(inst provisioners.Instance, a Access) string {
	return SharedRolePrefix + inst.Namespace + "." + inst.Name + "-" + string(a)
}

// SharedRoleStatements are the creation statements of a shared
// instance's access level: a login in exactly the level's group of the
// instance. The management role cannot GRANT a group it does not hold
// with ADMIN OPTION (PostgreSQL 16 and later), and CloudNativePG creates
// the groups as the superuser; the platform's grant function
// (postgres.SharedGrantFunction, created with the shared cluster) does
// that one grant, and only of a Strata group to a plain login.
func SharedRoleStatements(inst provisioners.Instance, a Access) []string {
	group := sharedGroupRole(inst, a)
	stmts := []string{
		`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`,
		fmt.Sprintf(`SELECT %s('{{name}}', '%s');`, postgres.SharedGrantFunction, group),
	}
	if a == Owner {
		stmts = append(stmts, fmt.Sprintf(`ALTER ROLE "{{name}}" SET role = '%s';`, group))
	}
	return stmts
}
