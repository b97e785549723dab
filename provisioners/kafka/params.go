package kafka

import (
	"fmt"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
)

// Topic is one requested topic with the plan's defaults filled in.
type Topic struct {
	// Name is the topic's name within the instance (the parameter); the
	// Kafka topic is TopicPrefix + Name.
	Name          string
	Partitions    int
	RetentionMs   int64
	CleanupPolicy string
}

// Settings are an instance's parameters with the plan's defaults filled in.
type Settings struct {
	Topics             []Topic
	AllowTopicDeletion bool
	// StorageGB is each broker's volume (dedicated plans only).
	StorageGB int
	// DisasterRecovery names the platform's DR cluster the instance is
	// mirrored to ("" for none; dedicated plans only).
	DisasterRecovery string
}

// rawParams mirrors the JSON Schema in catalog/kafka.go.
type rawParams struct {
	Topics []struct {
		Name          string  `json:"name"`
		Partitions    *int    `json:"partitions"`
		RetentionMs   *int64  `json:"retention_ms"`
		CleanupPolicy *string `json:"cleanup_policy"`
	} `json:"topics"`
	AllowTopicDeletion *bool `json:"allow_topic_deletion"`
	StorageGB          *int  `json:"storage_gb"`
	DisasterRecovery   *struct {
		Target string `json:"target"`
	} `json:"disaster_recovery"`
}

// Resolve applies the plan's defaults to schema-valid parameters and checks
// what the JSON Schema cannot: topic names are unique.
func Resolve(plan *catalog.Plan, params map[string]any) (Settings, error) {
	k := plan.Kafka
	if k == nil {
		return Settings{}, fmt.Errorf("plan %q is not a Kafka plan", plan.Name)
	}
	var p rawParams
	if err := provisioners.DecodeParams(params, &p); err != nil {
		return Settings{}, err
	}
	s := Settings{AllowTopicDeletion: provisioners.Deref(p.AllowTopicDeletion, false)}
	if k.Cluster != nil {
		s.StorageGB = provisioners.Deref(p.StorageGB, k.Cluster.StorageGB)
	}
	if p.DisasterRecovery != nil {
		if !k.Dedicated {
			// The schema offers it on dedicated plans only; the shared
			// cluster's DR is the platform's own.
			return Settings{}, provisioners.ParamErrorf("parameters.disaster_recovery", "plan %q puts topics on the shared cluster, whose disaster recovery is the platform's; disaster_recovery is for dedicated plans", plan.Name)
		}
		s.DisasterRecovery = p.DisasterRecovery.Target
	}
	if len(p.Topics) == 0 {
		s.Topics = []Topic{{Name: catalog.DefaultKafkaTopic}}
	}
	seen := map[string]int{}
	for i, t := range p.Topics {
		if j, dup := seen[t.Name]; dup {
			return Settings{}, provisioners.ParamErrorf(fmt.Sprintf("parameters.topics.%d.name", i), "topic %q is already parameters.topics.%d; topic names are unique", t.Name, j)
		}
		seen[t.Name] = i
		s.Topics = append(s.Topics, Topic{
			Name:          t.Name,
			Partitions:    provisioners.Deref(t.Partitions, 0),
			RetentionMs:   provisioners.Deref(t.RetentionMs, 0),
			CleanupPolicy: provisioners.Deref(t.CleanupPolicy, ""),
		})
	}
	for i := range s.Topics {
		t := &s.Topics[i]
		if t.Partitions == 0 {
			t.Partitions = k.DefaultPartitions
		}
		if t.RetentionMs == 0 {
			t.RetentionMs = k.DefaultRetentionMs
		}
		if t.CleanupPolicy == "" {
			t.CleanupPolicy = "delete"
		}
		if t.Partitions > k.MaxPartitions || t.RetentionMs > k.MaxRetentionMs {
			return Settings{}, provisioners.ParamErrorf(fmt.Sprintf("parameters.topics.%d", i), "%d partitions and retention %d ms exceed plan %q (at most %d partitions, %d ms)",
				t.Partitions, t.RetentionMs, plan.Name, k.MaxPartitions, k.MaxRetentionMs)
		}
	}
	if len(s.Topics) > k.MaxTopics {
		return Settings{}, provisioners.ParamErrorf("parameters.topics", "%d topics, plan %q allows %d", len(s.Topics), plan.Name, k.MaxTopics)
	}
	return s, nil
}

// Size is what the instance requests of its tenant: a dedicated cluster's
// brokers and controllers; topics on the shared cluster cost the tenant no
// pods (the platform's cluster carries them).
func (p *Provisioner) Size(inst provisioners.Instance) (provisioners.Size, error) {
	s, err := Resolve(inst.Plan, inst.Params)
	if err != nil {
		return provisioners.Size{}, err
	}
	topics := provisioners.Size{Topics: len(s.Topics)}
	for _, t := range s.Topics {
		topics.Partitions += t.Partitions
	}
	c := inst.Plan.Kafka.Cluster
	if c == nil || !inst.Plan.Kafka.Dedicated {
		// A shared cluster's topics cost the tenant no pods of its own.
		return topics, nil
	}
	brokers, err := provisioners.Pods(c.Brokers, c.BrokerCPU, c.BrokerMemory, s.StorageGB)
	if err != nil {
		return provisioners.Size{}, err
	}
	controllers, err := provisioners.Pods(c.Controllers, c.ControllerCPU, c.ControllerMemory, c.ControllerStorageGB)
	if err != nil {
		return provisioners.Size{}, err
	}
	total := brokers.Add(controllers).Add(topics)
	if s.DisasterRecovery != "" {
		m, err := mirrorSize()
		if err != nil {
			return provisioners.Size{}, err
		}
		total = total.Add(m)
	}
	return total, nil
}
