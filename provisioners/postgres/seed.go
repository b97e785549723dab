package postgres

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/provisioners"
)

// Seeding at provision: the developer's SQL, from a ConfigMap or Secret of
// the tenant's namespace, runs once when the cluster is created
// (CloudNativePG's bootstrap.initdb.postInitApplicationSQLRefs). The
// operator runs that SQL as the superuser, which no tenant otherwise
// gets: a seed could create a superuser login, or a SECURITY DEFINER
// function owned by the superuser, and keep it. So the broker reads the
// developer's SQL once and wraps it (SeedSQL): it runs inside a SECURITY
// DEFINER function owned by strata_owner, i.e. with exactly the rights of
// an owner binding (PostgreSQL refuses SET ROLE and SET SESSION
// AUTHORIZATION inside such a function, so the seed cannot switch back).
// The wrapped SQL goes into a Secret of the instance (the seed may be a
// Secret; its content never goes into a ConfigMap or the Cluster spec).

// SeedSQLKey is the key of the instance's seed Secret.
const SeedSQLKey = "seed.sql"

// DefaultSeedKey is the key read from the developer's ConfigMap or Secret
// when the seed parameter names none.
const DefaultSeedKey = "seed.sql"

// SeedSource is the developer's ConfigMap or Secret with the seed SQL.
type SeedSource struct {
	// Kind is "ConfigMap" or "Secret".
	Kind, Name, Key string
}

// seedFunction is the temporary function the seed runs in.
const seedFunction = "public.strata_seed(text)"

// SeedSQL wraps the developer's SQL so that it runs as strata_owner, in
// one transaction with the rest of the file (CloudNativePG runs a
// referenced file as one multi-statement query). The SQL is passed as a
// dollar-quoted literal whose tag is derived from the SQL itself, so the
// SQL cannot contain it (and so cannot end the literal early).
func SeedSQL(seed string) (string, error) {
	if strings.TrimSpace(seed) == "" {
		return "", fmt.Errorf("the seed SQL is empty")
	}
	sum := sha256.Sum256([]byte(seed))
	tag := "$strata_seed_" + hex.EncodeToString(sum[:8]) + "$"
	if strings.Contains(seed, tag) {
		return "", fmt.Errorf("the seed SQL contains %s", tag)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE FUNCTION %s RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $strata$\nBEGIN\n  EXECUTE $1;\nEND\n$strata$;\n",
		strings.Replace(seedFunction, "(text)", "(seed text)", 1))
	fmt.Fprintf(&b, "REVOKE ALL ON FUNCTION %s FROM PUBLIC;\n", seedFunction)
	fmt.Fprintf(&b, "ALTER FUNCTION %s OWNER TO %s;\n", seedFunction, OwnerRole)
	fmt.Fprintf(&b, "SELECT public.strata_seed(%s\n%s\n%s);\n", tag, seed, tag)
	fmt.Fprintf(&b, "DROP FUNCTION %s;\n", seedFunction)
	return b.String(), nil
}

// SeedSecret renders the instance's seed Secret from the developer's SQL.
func SeedSecret(inst provisioners.Instance, seed string) (*unstructured.Unstructured, error) {
	sql, err := SeedSQL(seed)
	if err != nil {
		return nil, err
	}
	o := provisioners.NewObject(inst, "v1", "Secret", NamesOf(inst).Seed, nil)
	o.Object["type"] = "Opaque"
	o.Object["stringData"] = map[string]any{SeedSQLKey: sql}
	return o, nil
}

// CopyLoginUser is the PostgreSQL login, on the source, a copy reads the
// source as: a member of strata_readonly (pg_read_all_data), all pg_dump
// needs. Derived from the copy's name so each copy has its own.
func CopyLoginUser(inst provisioners.Instance) string {
	sum := sha256.Sum256([]byte(inst.Name))
	return "c_" + hex.EncodeToString(sum[:8])
}

// CopyLoginSecret is the basic-auth Secret of the copy's login on the
// source, with a password only the broker's I/O can draw (Prepare), so it
// is not part of Build: Build renders the DatabaseRole that names it.
func CopyLoginSecret(inst provisioners.Instance, password string) *unstructured.Unstructured {
	o := provisioners.NewObject(inst, "v1", "Secret", NamesOf(inst).CopyLogin, nil)
	// CloudNativePG requires basic-auth Secrets whose username is the
	// role's name.
	o.Object["type"] = "kubernetes.io/basic-auth"
	o.Object["stringData"] = map[string]any{"username": CopyLoginUser(inst), "password": password}
	return o
}
