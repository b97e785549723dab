package postgres

import (
	"reflect"
	"slices"

	"github.com/strata-dev/strata/provisioners"
)

// CheckUpdate refuses what cannot change in place: the major version (that
// is a migration), shrinking storage (volumes only grow) and dropping a
// database (its data would go).
func (p *Provisioner) CheckUpdate(old, updated provisioners.Instance) error {
	if updated.Plan.Postgres.Shared {
		// The catalog refuses plan changes into or out of shared.
		return checkSharedUpdate(old, updated)
	}
	before, after, err := provisioners.ResolveUpdate(Resolve, old, updated)
	if err != nil {
		return err
	}
	for _, key := range []string{"restore", "seed", "copy_of"} {
		if err := checkStartUnchanged(key, old.Params, updated.Params); err != nil {
			return err
		}
	}
	if before.Version != after.Version {
		return provisioners.ParamErrorf("parameters.version", "PostgreSQL %s cannot become %s in place; provision a new instance with version %s and migrate the data (pg_dump or logical replication)",
			before.Version, after.Version, after.Version)
	}
	if err := provisioners.StorageGrows(before.StorageGB, after.StorageGB); err != nil {
		return err
	}
	for _, db := range before.Databases {
		if !slices.Contains(after.Databases, db) {
			return provisioners.ParamErrorf("parameters.databases", "database %q would be dropped with its data; keep it in the list (databases can be added, not removed)", db)
		}
	}
	if before.Databases[0] != after.Databases[0] {
		return provisioners.ParamErrorf("parameters.databases", "the first database (%q) is the one the cluster was created with and must stay first", before.Databases[0])
	}
	return nil
}

// checkStartUnchanged refuses a restore, seed or copy_of parameter other
// than the one the instance was provisioned with: each says what a new
// instance starts with, once, at provision. Leaving it out is fine (a
// Kubernetes platform may send the parameters without it); the instance
// stays what it was made as.
func checkStartUnchanged(key string, old, updated map[string]any) error {
	sent, ok := updated[key]
	if !ok || reflect.DeepEqual(sent, old[key]) {
		return nil
	}
	what := map[string]string{"restore": "restored", "seed": "seeded", "copy_of": "copied"}[key]
	return provisioners.ParamErrorf("parameters."+key, "an instance is %s once, when it is provisioned; to do it again, provision a new instance with the %s parameter", what, key)
}
