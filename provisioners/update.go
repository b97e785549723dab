package provisioners

import (
	"github.com/strata-dev/strata/catalog"
)

// ResolveUpdate resolves an update's settings before and after with the
// engine's Resolve, for CheckUpdate to compare.
func ResolveUpdate[S any](resolve func(*catalog.Plan, map[string]any) (S, error), old, updated Instance) (before, after S, err error) {
	if before, err = resolve(old.Plan, old.Params); err != nil {
		return before, after, err
	}
	after, err = resolve(updated.Plan, updated.Params)
	return before, after, err
}

// StorageGrows refuses a smaller volume: volumes can grow but not shrink.
func StorageGrows(beforeGB, afterGB int) error {
	if afterGB < beforeGB {
		return ParamErrorf("parameters.storage_gb", "volumes can grow but not shrink (%d GB now, %d asked); keep %d or more",
			beforeGB, afterGB, beforeGB)
	}
	return nil
}
