package kafka

import (
	"fmt"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
)

// KafkaMirrorMaker2GVK is the kind of an instance's disaster-recovery
// mirror.
var KafkaMirrorMaker2GVK = schema.GroupVersionKind{Group: "kafka.strimzi.io", Version: "v1", Kind: "KafkaMirrorMaker2"}

// DRTarget is a Kafka cluster, typically in another region, that the
// platform team runs (or buys) for disaster recovery. Tenants pick one by
// name (parameters.disaster_recovery.target on the ha plan); they never see
// its address or credentials.
type DRTarget struct {
	// Name is what parameters.disaster_recovery.target says, and the
	// target's alias in MirrorMaker 2 (the source offset-sync topic is
	// mm2-offset-syncs.<name>.internal).
	Name string `json:"name"`
	// BootstrapServers is host:port of its TLS + SCRAM-SHA-512 listener,
	// reachable from tenant namespaces.
	BootstrapServers string `json:"bootstrapServers"`
	// Secret is the name of a Secret the platform provides in every tenant
	// namespace that may use the target (its tenant onboarding, or an
	// external-secrets sync): ca.crt, the PEM CA that signed the target's
	// listener, and password, the SCRAM-SHA-512 password of Username.
	// Strata reads neither: Strimzi mounts them into the mirror's pods.
	Secret string `json:"secret"`
	// Username is the SCRAM user on the target; "{namespace}" in it is
	// replaced with the tenant's namespace. One user per tenant with prefix
	// ACLs on "<namespace>." keeps tenants apart on the DR cluster too:
	// everything the mirror writes there starts with the instance's prefix
	// (docs/kafka.md, Disaster recovery).
	Username string `json:"username"`
}

// DR resource names and the mirror's fixed settings.
const (
	// replicationPolicy keeps topic names on the target: a binding's
	// topic-prefix, topics and consumer group are the same on both
	// clusters, so a failover changes only the bootstrap servers, CA and
	// credentials (DefaultReplicationPolicy would rename every topic to
	// <source alias>.<topic>, breaking the prefix ACLs and every client's
	// topic names). The price: no cycle detection, so mirroring must only
	// ever run one way at a time (failback reverses it deliberately).
	replicationPolicy  = "org.apache.kafka.connect.mirror.IdentityReplicationPolicy"
	byteArrayConverter = "org.apache.kafka.connect.converters.ByteArrayConverter"
	// CheckpointIntervalSeconds is how often consumer group offsets are
	// checkpointed and written to the target's groups: with the records'
	// replication lag, the RPO of a consumer's position.
	CheckpointIntervalSeconds = 10
	// OffsetLagMax is how far (in records per partition) the source
	// connector lets the offset translation fall behind before it emits an
	// offset sync: a failed-over consumer re-reads at most this many
	// records per partition beyond the un-checkpointed tail.
	OffsetLagMax = 100
	mirrorCPU    = "500m"
	mirrorMemory = "1Gi"
)

// MirrorName is the KafkaMirrorMaker2 of a dedicated instance.
func MirrorName(inst provisioners.Instance) string { return ClusterName(inst) + "-dr" }

// MirrorUserName is the KafkaUser MirrorMaker 2 reads the instance's
// cluster as; the User Operator puts its generated password into a Secret
// of the same name (key password).
func MirrorUserName(inst provisioners.Instance) string { return ClusterName(inst) + "-mirror" }

// SourceAlias is the instance's cluster in MirrorMaker 2: its prefix
// without the final '.', so the checkpoints topic MirrorMaker 2 creates on
// the target, <alias>.checkpoints.internal, falls under the prefix too
// (no topic parameter has a '.', so it cannot collide with a topic).
func SourceAlias(inst provisioners.Instance) string {
	return strings.TrimSuffix(TopicPrefix(inst), ".")
}

// OffsetSyncsTopic is the topic the source connector keeps on the
// instance's cluster to translate offsets.
func OffsetSyncsTopic(target string) string { return "mm2-offset-syncs." + target + ".internal" }

var drTargetName = regexp.MustCompile(catalog.KafkaDRTargetPattern)

// Validate checks the disaster-recovery targets at start, so a typo is a
// broker that does not start rather than a mirror that never gets ready.
func (c Config) Validate() error {
	seen := map[string]bool{}
	for i, t := range c.DisasterRecovery {
		switch {
		case !drTargetName.MatchString(t.Name):
			return fmt.Errorf("kafka.disasterRecovery[%d].name %q: want %s", i, t.Name, catalog.KafkaDRTargetPattern)
		case seen[t.Name]:
			return fmt.Errorf("kafka.disasterRecovery[%d].name %q is listed twice", i, t.Name)
		case t.BootstrapServers == "" || t.Secret == "" || t.Username == "":
			return fmt.Errorf("kafka.disasterRecovery[%d] (%s): bootstrapServers, secret and username are required", i, t.Name)
		}
		seen[t.Name] = true
	}
	return nil
}

// drTarget finds the configured target a parameter names.
func (p *Provisioner) drTarget(name string) (DRTarget, error) {
	var names []string
	for _, t := range p.Config.DisasterRecovery {
		if t.Name == name {
			return t, nil
		}
		names = append(names, t.Name)
	}
	if len(names) == 0 {
		return DRTarget{}, provisioners.ParamErrorf("parameters.disaster_recovery.target", "this broker has no disaster-recovery cluster configured (kafka.disasterRecovery); ask the platform team")
	}
	return DRTarget{}, provisioners.ParamErrorf("parameters.disaster_recovery.target", "%q is not a disaster-recovery cluster of this platform; the clusters are %s", name, strings.Join(names, ", "))
}

// prefixPattern is a Java regex matching every name under the prefix.
func prefixPattern(inst provisioners.Instance) string {
	return regexp.QuoteMeta(TopicPrefix(inst)) + ".*"
}

// InternalTopicsPattern is a Java regex matching every topic under the
// instance's prefix that ends in ".internal": the mirror's Connect
// topics (<prefix>mirror.configs.internal, ...), a failback mirror's
// (<prefix>failback.*.internal) and the checkpoints topic. No topic
// parameter has a '.', so no tenant topic matches.
//
// The mirror must exclude them itself: MirrorMaker 2 4.x leaves out only
// its own topics (mm2*.internal, *.checkpoints.internal, __*, .*), not a
// Connect worker's. Without this, a reverse mirror (failback) copied the
// forward mirror's Connect topics from the DR cluster into the
// same-named topics of its own worker on the old cluster; that worker then
// loaded the forward connector's configuration and ran it with its own
// producer, which writes to the old cluster: the old cluster's topics were
// copied onto themselves (1700 records became 67 000 in under three
// minutes, TestDisasterRecoveryMirrorAndFailover/failback before this).
func InternalTopicsPattern(inst provisioners.Instance) string {
	return regexp.QuoteMeta(TopicPrefix(inst)) + `.*\.internal`
}

// mirrorUser is the KafkaUser MirrorMaker 2 logs in to the instance's
// cluster with: read and describe the instance's topics and groups (the
// checkpoint connector lists the groups and their offsets), and its own
// offset-syncs topic. Nothing else: it cannot write a tenant topic.
func mirrorUser(inst provisioners.Instance, t Target, target string) *unstructured.Unstructured {
	prefix := TopicPrefix(inst)
	rule := func(typ, name, pattern string, ops ...string) map[string]any {
		o := make([]any, len(ops))
		for i, op := range ops {
			o[i] = op
		}
		return map[string]any{
			"type": "allow", "host": "*", "operations": o,
			"resource": map[string]any{"type": typ, "name": name, "patternType": pattern},
		}
	}
	return inTarget(inst, t, "KafkaUser", MirrorUserName(inst), map[string]any{
		// No password given: the User Operator generates one into the
		// Secret named after the user, which the mirror mounts.
		"authentication": map[string]any{"type": "scram-sha-512"},
		"authorization": map[string]any{"type": "simple", "acls": []any{
			rule("topic", prefix, "prefix", "Read", "Describe", "DescribeConfigs"),
			rule("group", prefix, "prefix", "Describe"),
			rule("topic", OffsetSyncsTopic(target), "literal", "Create", "Read", "Write", "Describe", "DescribeConfigs"),
		}},
	})
}

// mirror renders the KafkaMirrorMaker2 that copies the instance's topics
// and consumer group offsets to the DR target. It runs in the tenant's
// namespace beside the cluster, which Strata manages and whose listener
// admits the namespace's pods; it reaches the target over TLS.
func (p *Provisioner) mirror(inst provisioners.Instance, t Target, dr DRTarget) *unstructured.Unstructured {
	prefix := TopicPrefix(inst)
	source, target := SourceAlias(inst), dr.Name
	common := map[string]any{
		"replication.policy.class": replicationPolicy,
		// Records are copied as bytes, never re-serialized.
		"key.converter":    byteArrayConverter,
		"value.converter":  byteArrayConverter,
		"header.converter": byteArrayConverter,
		// Both connectors must agree where the offset syncs are: on the
		// instance's cluster, where the mirror user may write only that
		// topic.
		"offset-syncs.topic.location": "source",
	}
	with := func(extra map[string]any) map[string]any {
		m := copyMap(common)
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	mirrorSpec := map[string]any{
		"source": map[string]any{
			"alias":            source,
			"bootstrapServers": t.BootstrapServers,
			"tls":              map[string]any{"trustedCertificates": []any{map[string]any{"secretName": t.CASecret, "certificate": "ca.crt"}}},
			"authentication": map[string]any{
				"type": "scram-sha-512", "username": MirrorUserName(inst),
				"passwordSecret": map[string]any{"secretName": MirrorUserName(inst), "password": "password"},
			},
		},
		"sourceConnector": map[string]any{
			"tasksMax": int64(2),
			"config": with(map[string]any{
				// -1: the target's default.replication.factor (3 on a
				// production cluster), so the mirror never asks for more
				// replicas than the DR cluster has.
				"replication.factor":                    int64(-1),
				"offset-syncs.topic.replication.factor": int64(-1),
				// Retention, cleanup policy and max.message.bytes follow
				// the source; ACLs do not (the target's users are the
				// platform's, not the bindings').
				"sync.topic.configs.enabled": true,
				"sync.topic.acls.enabled":    false,
				// Topics added by an update are mirrored within a minute.
				"refresh.topics.interval.seconds": int64(60),
				"offset.lag.max":                  int64(OffsetLagMax),
			}),
			"autoRestart": map[string]any{"enabled": true},
		},
		"checkpointConnector": map[string]any{
			"tasksMax": int64(1),
			"config": with(map[string]any{
				"checkpoints.topic.replication.factor": int64(-1),
				"emit.checkpoints.enabled":             true,
				"emit.checkpoints.interval.seconds":    int64(CheckpointIntervalSeconds),
				// The translated offsets are committed to the target's
				// groups, so a consumer that fails over resumes there with
				// nothing but a new bootstrap address.
				"sync.group.offsets.enabled":          true,
				"sync.group.offsets.interval.seconds": int64(CheckpointIntervalSeconds),
				"refresh.groups.interval.seconds":     int64(60),
			}),
			"autoRestart": map[string]any{"enabled": true},
		},
		// Only the instance's topics and groups. Its own Connect topics and
		// a failback mirror's are under the prefix too: excluded
		// (InternalTopicsPattern says why). MirrorMaker 2's own exclusions
		// (mm2*.internal, checkpoints, __consumer_offsets) still apply:
		// its replication policy drops those whatever the patterns say.
		"topicsPattern":        prefixPattern(inst),
		"topicsExcludePattern": InternalTopicsPattern(inst),
		"groupsPattern":        prefixPattern(inst),
	}
	username := strings.ReplaceAll(dr.Username, "{namespace}", inst.Namespace)
	spec := map[string]any{
		"version":  p.Config.KafkaVersion,
		"replicas": int64(1),
		// The Connect worker runs against the target, as Strimzi's
		// KafkaMirrorMaker2 always does; its group and internal topics are
		// under the instance's prefix there, named with a '.' no topic
		// parameter can have, and ending in .internal so that
		// topicsExcludePattern leaves them out, of this mirror and of a
		// reversed one at failback.
		"target": map[string]any{
			"alias":              target,
			"bootstrapServers":   dr.BootstrapServers,
			"groupId":            prefix + "mirror.connect",
			"configStorageTopic": prefix + "mirror.configs.internal",
			"offsetStorageTopic": prefix + "mirror.offsets.internal",
			"statusStorageTopic": prefix + "mirror.status.internal",
			"tls":                map[string]any{"trustedCertificates": []any{map[string]any{"secretName": dr.Secret, "certificate": "ca.crt"}}},
			"authentication": map[string]any{
				"type": "scram-sha-512", "username": username,
				"passwordSecret": map[string]any{"secretName": dr.Secret, "password": "password"},
			},
			"config": map[string]any{
				"config.storage.replication.factor": int64(-1),
				"offset.storage.replication.factor": int64(-1),
				"status.storage.replication.factor": int64(-1),
			},
		},
		"mirrors":   []any{mirrorSpec},
		"resources": resources(mirrorCPU, mirrorMemory),
	}
	// Not labelled with strimzi.io/cluster: the mirror is no part of the
	// Kafka cluster (its pods must not match the cluster's PodMonitor or
	// policies).
	return provisioners.NewObject(inst, API, "KafkaMirrorMaker2", MirrorName(inst), spec)
}

// mirrorSize is what the mirror's pod requests of the tenant.
func mirrorSize() (provisioners.Size, error) {
	return provisioners.Pods(1, mirrorCPU, mirrorMemory, 0)
}
