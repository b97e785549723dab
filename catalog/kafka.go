package catalog

import (
	"fmt"

	"github.com/pivotal-cf/brokerapi/v12/domain"
)

// Ids are stable forever: platforms store them.
const (
	KafkaServiceID  = "0bc61ed6-a963-42a1-b423-3e4d7e7a2e13"
	KafkaDevLiteID  = "7258edb5-6bd5-4214-9e69-6c733bbcd7b2"
	KafkaStandardID = "9768e80a-a031-4d35-bf8c-8bf66dc11fe8"
	KafkaHAID       = "21866a93-4997-4f96-bd4b-fe51c0661595"
)

// KafkaPlan is what a Kafka plan stands for. Shared plans are topics (and,
// per binding, users) on the platform's shared Strimzi cluster; a
// dedicated plan is a Strimzi cluster of the instance's own in the
// tenant's namespace. provisioners/kafka turns it into Strimzi objects.
type KafkaPlan struct {
	// Dedicated is true when the instance gets its own cluster (Cluster is
	// then set); false means topics on the shared cluster.
	Dedicated bool
	// ReplicationFactor and MinInSyncReplicas apply to every topic of the
	// instance. They are fixed per plan: Strimzi's Topic Operator changes a
	// topic's replication factor only with Cruise Control.
	ReplicationFactor int
	MinInSyncReplicas int

	// MaxTopics bounds the topics an instance may have.
	MaxTopics         int
	DefaultPartitions int
	MaxPartitions     int
	// Topic retention in milliseconds (retention.ms).
	DefaultRetentionMs int64
	MaxRetentionMs     int64
	// MaxMessageBytes is the largest record batch a topic accepts
	// (max.message.bytes), the same for every topic of the plan.
	MaxMessageBytes int

	// Quotas are set on every binding's KafkaUser.
	Quotas KafkaQuotas

	// Cluster sizes the dedicated cluster; nil on shared plans.
	Cluster *KafkaClusterPlan
}

// KafkaQuotas are Kafka client quotas per user (Strimzi KafkaUser quotas).
type KafkaQuotas struct {
	// ProducerByteRate and ConsumerByteRate are bytes per second per broker.
	ProducerByteRate int
	ConsumerByteRate int
	// RequestPercentage is the share of a broker's network and I/O threads
	// time (percent of one thread) a user may take.
	RequestPercentage int
}

// KafkaClusterPlan sizes a dedicated KRaft cluster: broker and controller
// node pools with separate roles.
type KafkaClusterPlan struct {
	Brokers      int
	Controllers  int
	StorageGB    int
	MinStorageGB int
	MaxStorageGB int
	// ControllerStorageGB is each controller's metadata volume.
	ControllerStorageGB int
	BrokerCPU           string // Kubernetes quantities, requests = limits
	BrokerMemory        string
	ControllerCPU       string
	ControllerMemory    string
}

// KafkaCleanupPolicies are the cleanup.policy values a topic may have.
var KafkaCleanupPolicies = []string{"delete", "compact", "compact,delete"}

// KafkaTopicNamePattern is what a topic name parameter may be: the topic's
// Kubernetes object name and its Kafka name are both derived from it with
// the instance's prefix, so it must satisfy both (lowercase DNS characters,
// no '.' or '_', which Kafka's metric names confuse).
const KafkaTopicNamePattern = `^[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?$`

// KafkaConsumerGroupPattern is what the consumer_group bind parameter may
// be: a suffix of the instance's prefix.
const KafkaConsumerGroupPattern = `^[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?$`

// KafkaDRTargetPattern is what a disaster-recovery target name may be (a
// MirrorMaker 2 cluster alias, and part of a topic name on the instance's
// cluster).
const KafkaDRTargetPattern = `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`

// DefaultKafkaTopic is the topic an instance gets when it asks for none.
const DefaultKafkaTopic = "events"

// KafkaAccessLevels are what a binding may do with the instance's topics.
var KafkaAccessLevels = []string{"readwrite", "read", "write"}

func kafkaService() Service {
	devLite := Plan{
		ID:   KafkaDevLiteID,
		Name: "dev-lite",
		Description: "Topics on the platform's shared Kafka cluster without replication " +
			"(replication factor 1): for development and tests.",
		// Topics are created in seconds once the cluster exists.
		MaximumPollingDuration: 600,
		Kafka: &KafkaPlan{
			ReplicationFactor: 1, MinInSyncReplicas: 1,
			MaxTopics: 10, DefaultPartitions: 1, MaxPartitions: 6,
			DefaultRetentionMs: 86_400_000, MaxRetentionMs: 3 * 86_400_000,
			MaxMessageBytes: 1_048_588,
			Quotas:          KafkaQuotas{ProducerByteRate: 1_048_576, ConsumerByteRate: 2_097_152, RequestPercentage: 25},
		},
	}
	standard := Plan{
		ID:   KafkaStandardID,
		Name: "standard",
		Description: "Topics on the platform's shared Kafka cluster, replicated three times " +
			"with at least two in-sync replicas for every acknowledged write.",
		MaximumPollingDuration: 600,
		Kafka: &KafkaPlan{
			ReplicationFactor: 3, MinInSyncReplicas: 2,
			MaxTopics: 50, DefaultPartitions: 3, MaxPartitions: 48,
			DefaultRetentionMs: 7 * 86_400_000, MaxRetentionMs: 30 * 86_400_000,
			MaxMessageBytes: 1_048_588,
			Quotas:          KafkaQuotas{ProducerByteRate: 10_485_760, ConsumerByteRate: 20_971_520, RequestPercentage: 50},
		},
	}
	ha := Plan{
		ID:   KafkaHAID,
		Name: "ha",
		Description: "A dedicated Kafka cluster in your namespace: KRaft with three dedicated " +
			"controllers, three brokers across zones, replication factor 3, min ISR 2.",
		// Five pods with volumes, certificates and a rolling start.
		MaximumPollingDuration: 3600,
		Kafka: &KafkaPlan{
			Dedicated:         true,
			ReplicationFactor: 3, MinInSyncReplicas: 2,
			MaxTopics: 200, DefaultPartitions: 6, MaxPartitions: 256,
			DefaultRetentionMs: 7 * 86_400_000, MaxRetentionMs: 90 * 86_400_000,
			MaxMessageBytes: 8_388_608,
			Quotas:          KafkaQuotas{ProducerByteRate: 52_428_800, ConsumerByteRate: 104_857_600, RequestPercentage: 100},
			Cluster: &KafkaClusterPlan{
				Brokers: 3, Controllers: 3,
				StorageGB: 100, MinStorageGB: 20, MaxStorageGB: 2000,
				ControllerStorageGB: 10,
				BrokerCPU:           "2", BrokerMemory: "8Gi",
				ControllerCPU: "500m", ControllerMemory: "2Gi",
			},
		},
	}
	// No plan changes: dev-lite → standard would need the replication
	// factor of existing topics raised, which Strimzi's Topic Operator does
	// only through Cruise Control (a reassignment, not a config change);
	// shared → ha moves topics to another cluster (their data would stay
	// behind); the other directions lose redundancy. A new instance and a
	// migration (MirrorMaker 2 or the application) are the safe way.
	for _, p := range []*Plan{&devLite, &standard, &ha} {
		p.Metadata = kafkaPlanMetadata(p)
		// A binding is a KafkaUser with a password that does not expire:
		// rotation is by a successor binding.
		p.BindingRotatable = true
	}
	return Service{
		ID:     KafkaServiceID,
		Name:   "kafka",
		Engine: EngineKafka,
		Description: "Apache Kafka managed by Strimzi: topics on a shared cluster or a " +
			"dedicated KRaft cluster, TLS with SCRAM-SHA-512, per-binding users and ACLs.",
		Tags: []string{"kafka", "streaming", "messaging", "strimzi"},
		Metadata: serviceMetadata("Apache Kafka",
			"Kafka topics run by the Strimzi operator: shared-cluster topics isolated by per-binding users and prefix ACLs, or a dedicated KRaft cluster with dedicated controllers. Every connection is TLS with SCRAM-SHA-512; bindings are ready for Spring Kafka and Spring Cloud Stream.",
			"docs/kafka.md"),
		Plans: []Plan{devLite, standard, ha},
	}
}

func kafkaPlanMetadata(p *Plan) domain.ServicePlanMetadata {
	k := p.Kafka
	var bullets []string
	if k.Dedicated {
		c := k.Cluster
		bullets = append(bullets,
			fmt.Sprintf("dedicated KRaft cluster: %d brokers, %d dedicated controllers", c.Brokers, c.Controllers),
			fmt.Sprintf("%d GB storage per broker by default (%d–%d GB)", c.StorageGB, c.MinStorageGB, c.MaxStorageGB),
			fmt.Sprintf("%s CPU, %s memory per broker", c.BrokerCPU, c.BrokerMemory))
	} else {
		bullets = append(bullets, "topics on the shared Kafka cluster")
	}
	bullets = append(bullets,
		fmt.Sprintf("replication factor %d, min in-sync replicas %d", k.ReplicationFactor, k.MinInSyncReplicas),
		fmt.Sprintf("up to %d topics of up to %d partitions", k.MaxTopics, k.MaxPartitions),
		fmt.Sprintf("retention up to %d days", k.MaxRetentionMs/86_400_000),
		fmt.Sprintf("per-binding quotas: produce %d KiB/s, consume %d KiB/s per broker", k.Quotas.ProducerByteRate/1024, k.Quotas.ConsumerByteRate/1024),
		"TLS with SCRAM-SHA-512, a user and prefix ACLs per binding")
	meta := map[string]any{
		"dedicated":           k.Dedicated,
		"replication_factor":  k.ReplicationFactor,
		"min_insync_replicas": k.MinInSyncReplicas,
		"max_topics":          k.MaxTopics,
		"max_partitions":      k.MaxPartitions,
	}
	if k.Cluster != nil {
		meta["brokers"] = k.Cluster.Brokers
		meta["controllers"] = k.Cluster.Controllers
	}
	return domain.ServicePlanMetadata{
		DisplayName:        planDisplayName(p.Name),
		Bullets:            bullets,
		AdditionalMetadata: meta,
	}
}

// ChangeReason says why an instance of plan p cannot move to plan q (no
// Kafka plan change is in place; see kafkaService).
func (p *KafkaPlan) ChangeReason(q *KafkaPlan) string {
	switch {
	case p.Dedicated != q.Dedicated:
		return "the topics would move to another Kafka cluster and their data would stay behind"
	case q.ReplicationFactor > p.ReplicationFactor:
		return "raising the replication factor of existing topics is a partition reassignment (Cruise Control), not an in-place change"
	case q.ReplicationFactor < p.ReplicationFactor || q.MinInSyncReplicas < p.MinInSyncReplicas:
		return "the target plan keeps fewer copies of every record, so acknowledged writes could be lost"
	default:
		return "it is not a supported plan change"
	}
}

func kafkaSchemas(k *KafkaPlan) PlanSchemas {
	return PlanSchemas{
		Provision: kafkaInstanceSchema(k, false),
		Update:    kafkaInstanceSchema(k, true),
		Bind:      kafkaBindSchema(),
	}
}

func kafkaInstanceSchema(k *KafkaPlan, update bool) Schema {
	topic := Schema{
		"type": "object", "additionalProperties": false, "required": []string{"name"},
		"properties": Schema{
			"name": Schema{
				"type": "string", "pattern": KafkaTopicNamePattern,
				"description": "Topic name within the instance (lowercase letters, digits, '-'; up to 48). The Kafka topic is named <topic-prefix><name>; bindings carry the prefix. Topics cannot be renamed.",
			},
			"partitions": Schema{
				"type": "integer", "minimum": 1, "maximum": k.MaxPartitions, "default": k.DefaultPartitions,
				"description": "Partitions; they can be added on update, never removed.",
			},
			"retention_ms": Schema{
				"type": "integer", "minimum": 60_000, "maximum": k.MaxRetentionMs, "default": k.DefaultRetentionMs,
				"description": "How long records are kept (retention.ms), in milliseconds.",
			},
			"cleanup_policy": Schema{
				"type": "string", "enum": KafkaCleanupPolicies, "default": "delete",
				"description": "cleanup.policy: delete old segments, compact by key, or both.",
			},
		},
	}
	props := Schema{
		"topics": Schema{
			"type": "array", "minItems": 1, "maxItems": k.MaxTopics,
			"default":     []any{Schema{"name": DefaultKafkaTopic}},
			"description": fmt.Sprintf("Topics of the instance (at most %d). Replication factor %d and min.insync.replicas %d come from the plan. Topics can be added and grown on update; removing one needs allow_topic_deletion.", k.MaxTopics, k.ReplicationFactor, k.MinInSyncReplicas),
			"items":       topic,
		},
		"allow_topic_deletion": Schema{
			"type": "boolean", "default": false,
			"description": "Allow an update that leaves a topic out of topics to delete it and its records.",
		},
	}
	if c := k.Cluster; c != nil {
		props["storage_gb"] = Schema{
			"type": "integer", "minimum": c.MinStorageGB, "maximum": c.MaxStorageGB, "default": c.StorageGB,
			"description": "Volume size of each broker in GB (GiB). It can grow on update, never shrink.",
		}
		// Dedicated clusters only: the shared cluster's DR is the
		// platform's. The target is a name the platform team configures
		// (its address and credentials stay with the platform), so the
		// schema can say only its form.
		props["disaster_recovery"] = Schema{
			"type": "object", "additionalProperties": false, "required": []string{"target"},
			"description": "Mirror the instance's topics and consumer group offsets to the platform's disaster-recovery Kafka cluster with MirrorMaker 2 (same topic names; offsets checkpointed every 10 s). Set on provision or update; leave it out on update to stop mirroring (the copy on the DR cluster stays). See docs/kafka.md, Disaster recovery.",
			"properties": Schema{
				"target": Schema{
					"type": "string", "pattern": KafkaDRTargetPattern,
					"description": "Name of a disaster-recovery cluster the platform team configured (kafka.disasterRecovery in the broker configuration).",
				},
			},
		}
	}
	if update {
		withoutDefaults(topic["properties"].(Schema))
	}
	return instanceSchema("Kafka", props, update)
}

func kafkaBindSchema() Schema {
	return objectSchema("Kafka binding parameters", Schema{
		"access": Schema{
			"type": "string", "enum": KafkaAccessLevels, "default": "readwrite",
			"description": "readwrite: produce and consume the instance's topics. read: consume only. write: produce only.",
		},
		"consumer_group": Schema{
			"type": "string", "pattern": KafkaConsumerGroupPattern, "default": "app",
			"description": "Consumer group of the binding, after the instance's prefix (spring.kafka.consumer.group-id and Spring Cloud Stream's default group). Any group with the instance's prefix is allowed.",
		},
	})
}

// KafkaService is the Kafka service as the catalog offers it, for the
// engine's packages and tests.
func KafkaService() Service { return kafkaService() }
