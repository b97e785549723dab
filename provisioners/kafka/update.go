package kafka

import (
	"fmt"

	"github.com/strata-dev/strata/provisioners"
)

// CheckUpdate refuses what cannot change in place: fewer partitions (Kafka
// cannot remove partitions), another replication factor (a reassignment),
// a smaller broker volume, and a topic left out of the list (a rename is a
// removal and an addition) unless allow_topic_deletion says so: its records
// would be deleted.
func (p *Provisioner) CheckUpdate(old, updated provisioners.Instance) error {
	before, after, err := provisioners.ResolveUpdate(Resolve, old, updated)
	if err != nil {
		return err
	}
	ok, uk := old.Plan.Kafka, updated.Plan.Kafka
	if ok.Dedicated != uk.Dedicated {
		return fmt.Errorf("plan: the topics would move to another Kafka cluster and their records would stay behind; provision a new instance and migrate (MirrorMaker 2 or the application)")
	}
	if ok.ReplicationFactor != uk.ReplicationFactor {
		return fmt.Errorf("plan: the replication factor of existing topics cannot change in place (%d now, %d on plan %q); provision a new instance and migrate",
			ok.ReplicationFactor, uk.ReplicationFactor, updated.Plan.Name)
	}
	if err := provisioners.StorageGrows(before.StorageGB, after.StorageGB); err != nil {
		return err
	}
	next := map[string]Topic{}
	for _, t := range after.Topics {
		next[t.Name] = t
	}
	for _, t := range before.Topics {
		n, kept := next[t.Name]
		if !kept {
			if after.AllowTopicDeletion {
				continue
			}
			return provisioners.ParamErrorf("parameters.topics", "topic %q is left out, which would delete it and its records (topics cannot be renamed: a new name is a new, empty topic); keep it in the list, or set parameters.allow_topic_deletion to true to delete it",
				t.Name)
		}
		if n.Partitions < t.Partitions {
			return provisioners.ParamErrorf("parameters.topics[name="+t.Name+"].partitions", "Kafka cannot remove partitions (%d now, %d asked); keep %d or more",
				t.Partitions, n.Partitions, t.Partitions)
		}
	}
	return nil
}
