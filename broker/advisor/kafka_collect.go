package advisor

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
)

// CollectKafka reads, with the Admin API, the lag of the consumer groups
// named with groupPrefix and where the partitions of the topics named with
// topicPrefix are (a binding's consumer-group and topic-prefix: what the
// binding's ACLs let it describe, and no other tenant's). It writes
// nothing: it lists and describes groups, fetches their committed offsets
// and lists the partitions' end offsets.
func CollectKafka(ctx context.Context, adm *kadm.Client, groupPrefix, topicPrefix string) (KafkaInputs, error) {
	var in KafkaInputs
	listed, err := adm.ListGroups(ctx)
	if err != nil {
		return in, fmt.Errorf("listing consumer groups: %w", err)
	}
	var groups []string
	for _, g := range listed.Groups() {
		if strings.HasPrefix(g, groupPrefix) {
			groups = append(groups, g)
		}
	}
	sort.Strings(groups)
	if len(groups) > 0 {
		lags, err := adm.Lag(ctx, groups...)
		if err != nil {
			if _, auth := errors.AsType[*kadm.AuthError](err); !auth {
				return in, fmt.Errorf("consumer lag: %w", err)
			}
			in.Notes = append(in.Notes, "the binding may not read some groups' offsets: "+err.Error())
		}
		for _, l := range lags.Sorted() {
			if e := l.Error(); e != nil {
				in.Notes = append(in.Notes, fmt.Sprintf("group %s: %v", l.Group, e))
				continue
			}
			g := GroupLag{Group: l.Group, State: l.State, Members: len(l.Members)}
			for _, m := range l.Lag.Sorted() {
				if m.Err != nil {
					in.Notes = append(in.Notes, fmt.Sprintf("group %s, %s-%d: %v", l.Group, m.Topic, m.Partition, m.Err))
					continue
				}
				g.Lags = append(g.Lags, PartitionLag{Topic: m.Topic, Partition: m.Partition, Committed: m.Commit.At, End: m.End.Offset, Lag: m.Lag})
			}
			in.Groups = append(in.Groups, g)
		}
	}

	md, err := adm.Metadata(ctx)
	if err != nil {
		return in, fmt.Errorf("metadata: %w", err)
	}
	in.Brokers = md.Brokers.NodeIDs()
	for _, t := range md.Topics.Sorted() {
		if t.IsInternal || !strings.HasPrefix(t.Topic, topicPrefix) || t.Err != nil {
			continue
		}
		for _, p := range t.Partitions.Sorted() {
			in.Partitions = append(in.Partitions, PartitionPlacement{Topic: t.Topic, Partition: p.Partition, Leader: p.Leader, Replicas: p.Replicas})
		}
	}
	return in, nil
}
