package redis

import (
	"fmt"

	"github.com/strata-dev/strata/provisioners"
)

// CheckUpdate refuses what cannot change in place safely: shrinking the
// volumes (they only grow), and a plan change that drops the append-only
// file or weakens its fsync policy, or stops keeping the volumes (each
// would lose data the instance was promised to keep).
func (p *Provisioner) CheckUpdate(old, updated provisioners.Instance) error {
	before, after, err := provisioners.ResolveUpdate(Resolve, old, updated)
	if err != nil {
		return err
	}
	if before.AOF == "" && after.AOF != "" {
		return fmt.Errorf("plan_id: plan %q has no append-only file and plan %q has one; Redis started with an append-only file on data that has only a snapshot starts empty, so this change is refused",
			old.Plan.Name, updated.Plan.Name)
	}
	if aofRank(after.AOF) < aofRank(before.AOF) {
		return fmt.Errorf("plan_id: plan %q has an append-only file with fsync %q and plan %q %s; writes acknowledged now could be lost, so this change is refused",
			old.Plan.Name, before.AOF, updated.Plan.Name, describeAOF(after.AOF))
	}
	if before.KeepVolumes && !after.KeepVolumes {
		return fmt.Errorf("plan_id: plan %q keeps the data volumes after deprovision and plan %q does not; this change is refused",
			old.Plan.Name, updated.Plan.Name)
	}
	if len(before.Snapshots) > 0 && len(after.Snapshots) == 0 {
		return fmt.Errorf("plan_id: plan %q takes RDB snapshots and plan %q does not; this change is refused", old.Plan.Name, updated.Plan.Name)
	}
	if err := provisioners.StorageGrows(before.StorageGB, after.StorageGB); err != nil {
		return err
	}
	return nil
}

func aofRank(policy string) int {
	switch policy {
	case "always":
		return 3
	case "everysec":
		return 2
	case "no":
		return 1
	}
	return 0
}

func describeAOF(policy string) string {
	if policy == "" {
		return "has none"
	}
	return "syncs it with " + policy
}
