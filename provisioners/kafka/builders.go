// Package kafka turns a Kafka plan and its parameters into Strimzi 1.2
// objects (kafka.strimzi.io/v1): KafkaTopics on the platform's shared
// cluster for the shared plans, a dedicated KRaft cluster (Kafka,
// KafkaNodePools, metrics, monitors) for the dedicated plan. It reads
// readiness back from Strimzi's status conditions.
package kafka

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/strata-dev/strata/provisioners"
)

const (
	// API is Strimzi's only served API version since 1.0.
	API = "kafka.strimzi.io/v1"
	// LabelCluster tells Strimzi which cluster a node pool, topic or user
	// belongs to.
	LabelCluster = "strimzi.io/cluster"
	// ListenerName and ListenerPort are the TLS + SCRAM-SHA-512 listener of
	// dedicated clusters (and, by default, of the shared cluster).
	ListenerName = "tls"
	ListenerPort = 9093
	// MetricsPort is where the JMX exporter and the Kafka Exporter serve.
	MetricsPort     = 9404
	metricsPortName = "tcp-prometheus"
	metricsKey      = "kafka-metrics-config.yml"
	zoneKey         = "topology.kubernetes.io/zone"
	// poolLabel is put on a node pool's pods so its zone spread counts
	// them alone.
	poolLabel = "strata.dev/kafka-pool"
)

var (
	KafkaGVK         = schema.GroupVersionKind{Group: "kafka.strimzi.io", Version: "v1", Kind: "Kafka"}
	KafkaNodePoolGVK = schema.GroupVersionKind{Group: "kafka.strimzi.io", Version: "v1", Kind: "KafkaNodePool"}
	KafkaTopicGVK    = schema.GroupVersionKind{Group: "kafka.strimzi.io", Version: "v1", Kind: "KafkaTopic"}
	KafkaUserGVK     = schema.GroupVersionKind{Group: "kafka.strimzi.io", Version: "v1", Kind: "KafkaUser"}
)

// Config is what the platform team sets for every Kafka instance.
type Config struct {
	// Shared is the platform-owned cluster of the shared plans.
	Shared SharedCluster `json:"shared"`
	// KafkaVersion and MetadataVersion of dedicated clusters; Strimzi maps
	// the version to its image.
	KafkaVersion    string `json:"kafkaVersion"`
	MetadataVersion string `json:"metadataVersion"`
	// StorageClass of dedicated clusters' volumes (encrypted at rest).
	StorageClass string `json:"storageClass"`
	// PodMonitor creates prometheus-operator PodMonitors for dedicated
	// clusters (brokers, controllers and the Kafka Exporter).
	PodMonitor bool `json:"podMonitor"`
	// MonitoringNamespace is let through to the Kafka Exporter's metrics.
	MonitoringNamespace string `json:"monitoringNamespace"`
	// DisasterRecovery are the clusters dedicated instances may mirror to
	// (parameters.disaster_recovery.target names one); none by default.
	DisasterRecovery []DRTarget `json:"disasterRecovery"`
}

// SharedCluster names the shared cluster the shared plans put topics on.
// Its Topic and User Operators watch Namespace, so every KafkaTopic and
// KafkaUser of a shared instance lives there.
type SharedCluster struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// BootstrapServers is host:port of its TLS + SCRAM-SHA-512 listener.
	BootstrapServers string `json:"bootstrapServers"`
	// Listener is the name of that listener in the Kafka resource.
	Listener string `json:"listener"`
}

// DefaultConfig is used for every field the broker configuration leaves out.
func DefaultConfig() Config {
	return Config{
		Shared: SharedCluster{
			Name:             "strata-shared",
			Namespace:        "kafka",
			BootstrapServers: "strata-shared-kafka-bootstrap.kafka.svc:9093",
			Listener:         ListenerName,
		},
		KafkaVersion:        "4.3.1",
		MetadataVersion:     "4.3-IV0",
		PodMonitor:          true,
		MonitoringNamespace: "monitoring",
	}
}

// Provisioner is the Kafka engine.
type Provisioner struct {
	Config Config
}

var _ provisioners.Provisioner = (*Provisioner)(nil)

// Target is the cluster an instance's topics and users live on.
type Target struct {
	// Cluster is the Kafka resource's name (the strimzi.io/cluster label).
	Cluster string
	// Namespace holds the cluster, its KafkaTopics, KafkaUsers and their
	// Secrets: the shared cluster's namespace, or the tenant's.
	Namespace string
	// BootstrapServers is host:port of the TLS + SCRAM listener.
	BootstrapServers string
	// CASecret is <cluster>-cluster-ca-cert (key ca.crt) in Namespace.
	CASecret string
	// Dedicated says the cluster is the instance's own.
	Dedicated bool
}

// TargetOf returns where the instance's topics and users live.
func (p *Provisioner) TargetOf(inst provisioners.Instance) Target {
	if inst.Plan.Kafka.Dedicated {
		c := ClusterName(inst)
		return Target{
			Cluster: c, Namespace: inst.Namespace, Dedicated: true,
			BootstrapServers: fmt.Sprintf("%s-kafka-bootstrap.%s.svc:%d", c, inst.Namespace, ListenerPort),
			CASecret:         c + "-cluster-ca-cert",
		}
	}
	s := p.Config.Shared
	return Target{Cluster: s.Name, Namespace: s.Namespace, BootstrapServers: s.BootstrapServers, CASecret: s.Name + "-cluster-ca-cert"}
}

// ClusterName is the Kafka resource of a dedicated instance: short, since
// Strimzi derives pod host names (at most 63 characters) from the cluster
// and node pool names.
func ClusterName(inst provisioners.Instance) string {
	sum := sha256.Sum256([]byte(inst.ID))
	return "kafka-" + hex.EncodeToString(sum[:])[:12]
}

// TopicPrefix starts the name of every topic, consumer group and
// transactional id of the instance: "<tenant namespace>.<instance name>.".
// Namespaces and instance names have no '.', so no instance's prefix is a
// prefix of another's, and prefix ACLs confine each binding to its
// instance. The tenant in front lets per-topic metrics be billed per
// tenant.
func TopicPrefix(inst provisioners.Instance) string {
	return inst.Namespace + "." + inst.Name + "."
}

// TopicName is the Kafka name (and KafkaTopic object name) of a topic.
func TopicName(inst provisioners.Instance, topic string) string { return TopicPrefix(inst) + topic }

// Names of a dedicated instance's objects (shared instances have only
// topics and a NetworkPolicy in the shared namespace).
type Names struct {
	Cluster, ControllerPool, BrokerPool, Metrics string
}

// NamesOf returns the object names of a dedicated instance.
func NamesOf(inst provisioners.Instance) Names {
	c := ClusterName(inst)
	return Names{Cluster: c, ControllerPool: c + "-controller", BrokerPool: c + "-broker", Metrics: c + "-kafka-metrics"}
}

// Build renders the instance's objects in apply order.
func (p *Provisioner) Build(inst provisioners.Instance) ([]*unstructured.Unstructured, error) {
	s, err := Resolve(inst.Plan, inst.Params)
	if err != nil {
		return nil, err
	}
	t := p.TargetOf(inst)
	if t.Cluster == "" || t.Namespace == "" {
		return nil, fmt.Errorf("plan %q puts topics on the shared Kafka cluster but the broker has none: set kafka.shared.name and kafka.shared.namespace in the broker configuration", inst.Plan.Name)
	}
	if n := len(TopicName(inst, "")) + 48; n > 249 {
		return nil, fmt.Errorf("namespace %q and instance name %q make topic names longer than Kafka's 249 characters", inst.Namespace, inst.Name)
	}
	var objs []*unstructured.Unstructured
	if t.Dedicated {
		objs = append(objs, p.dedicated(inst, s)...)
	} else {
		objs = append(objs, sharedAccessPolicy(inst, t))
	}
	for _, topic := range s.Topics {
		objs = append(objs, kafkaTopic(inst, t, topic))
	}
	if s.DisasterRecovery != "" {
		// After the topics: the mirror starts copying what exists.
		dr, err := p.drTarget(s.DisasterRecovery)
		if err != nil {
			return nil, err
		}
		objs = append(objs, mirrorUser(inst, t, dr.Name), p.mirror(inst, t, dr))
	}
	return objs, nil
}

// inTarget is an object of the instance in the target's namespace.
func inTarget(inst provisioners.Instance, t Target, kind, name string, spec map[string]any) *unstructured.Unstructured {
	o := provisioners.NewObject(inst, API, kind, name, spec)
	o.SetNamespace(t.Namespace)
	labels := o.GetLabels()
	labels[LabelCluster] = t.Cluster
	o.SetLabels(labels)
	return o
}

func kafkaTopic(inst provisioners.Instance, t Target, topic Topic) *unstructured.Unstructured {
	k := inst.Plan.Kafka
	name := TopicName(inst, topic.Name)
	return inTarget(inst, t, "KafkaTopic", name, map[string]any{
		"topicName":  name,
		"partitions": int64(topic.Partitions),
		"replicas":   int64(k.ReplicationFactor),
		"config": map[string]any{
			"min.insync.replicas": strconv.Itoa(k.MinInSyncReplicas),
			"retention.ms":        strconv.FormatInt(topic.RetentionMs, 10),
			"cleanup.policy":      topic.CleanupPolicy,
			"max.message.bytes":   strconv.Itoa(k.MaxMessageBytes),
		},
	})
}

// sharedAccessPolicy admits the tenant's pods to the shared cluster's
// brokers on the client listener. NetworkPolicies add up: the platform's
// Kafka resource restricts the shared listener's networkPolicyPeers (for
// example to [{podSelector: {}}], its own namespace; without peers Strimzi's
// generated policy admits everyone), and each instance opens it to its own
// tenant only.
func sharedAccessPolicy(inst provisioners.Instance, t Target) *unstructured.Unstructured {
	port := ListenerPort
	if _, p, ok := cutLast(t.BootstrapServers, ':'); ok {
		if n, err := strconv.Atoi(p); err == nil {
			port = n
		}
	}
	o := provisioners.IngressPolicy(inst, inst.Namespace+"."+inst.Name,
		map[string]any{LabelCluster: t.Cluster, "strimzi.io/broker-role": "true"},
		provisioners.AllowFrom(provisioners.FromNamespace(inst.Namespace), port))
	o.SetNamespace(t.Namespace)
	return o
}

func cutLast(s string, sep byte) (string, string, bool) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// dedicated renders the instance's own cluster: metrics ConfigMap, Kafka,
// node pools, monitors and policies.
func (p *Provisioner) dedicated(inst provisioners.Instance, s Settings) []*unstructured.Unstructured {
	n := NamesOf(inst)
	k := inst.Plan.Kafka
	c := k.Cluster
	t := p.TargetOf(inst)
	podLabels := map[string]any{}
	if inst.Meshed {
		// Strimzi already encrypts every connection (listener TLS, mTLS on
		// 9090/9091), and clients reach brokers by their per-pod names on
		// a headless service, which sidecars have handled badly: keep the
		// cluster's pods out of the mesh; auto mTLS then sends meshed
		// clients' (TLS) traffic to them as is.
		podLabels["sidecar.istio.io/inject"] = "false"
		// And out of ambient mode's ztunnel, likewise.
		podLabels["istio.io/dataplane-mode"] = "none"
	}
	podTemplate := func() map[string]any {
		if len(podLabels) == 0 {
			return nil
		}
		return map[string]any{"pod": map[string]any{"metadata": map[string]any{"labels": copyMap(podLabels)}}}
	}

	metrics := provisioners.NewObject(inst, "v1", "ConfigMap", n.Metrics, nil)
	metrics.Object["data"] = map[string]any{metricsKey: jmxExporterConfig}

	kafkaSpec := map[string]any{
		"version":         p.Config.KafkaVersion,
		"metadataVersion": p.Config.MetadataVersion,
		"listeners": []any{map[string]any{
			"name": ListenerName, "port": int64(ListenerPort), "type": "internal", "tls": true,
			"authentication": map[string]any{"type": "scram-sha-512"},
			// Strimzi's generated NetworkPolicy admits the tenant's own
			// pods only.
			"networkPolicyPeers": []any{provisioners.SameNamespace()},
		}},
		"authorization": map[string]any{"type": "simple"},
		"rack":          map[string]any{"topologyKey": zoneKey},
		"config": map[string]any{
			"default.replication.factor":               int64(k.ReplicationFactor),
			"min.insync.replicas":                      int64(k.MinInSyncReplicas),
			"offsets.topic.replication.factor":         int64(k.ReplicationFactor),
			"transaction.state.log.replication.factor": int64(k.ReplicationFactor),
			"transaction.state.log.min.isr":            int64(k.MinInSyncReplicas),
			"auto.create.topics.enable":                false,
			"message.max.bytes":                        int64(k.MaxMessageBytes),
		},
		"metricsConfig": map[string]any{
			"type": "jmxPrometheusExporter",
			"valueFrom": map[string]any{"configMapKeyRef": map[string]any{
				"name": n.Metrics, "key": metricsKey,
			}},
		},
	}
	entity := map[string]any{
		"topicOperator": map[string]any{"resources": resources("100m", "256Mi")},
		"userOperator":  map[string]any{"resources": resources("100m", "256Mi")},
	}
	exporter := map[string]any{
		"topicRegex": ".*", "groupRegex": ".*",
		"resources": resources("100m", "128Mi"),
	}
	if tpl := podTemplate(); tpl != nil {
		entity["template"] = tpl
		exporter["template"] = podTemplate()
	}
	kafkaObj := provisioners.NewObject(inst, API, "Kafka", n.Cluster, map[string]any{
		"kafka":          kafkaSpec,
		"entityOperator": entity,
		"kafkaExporter":  exporter,
	})

	pool := func(name, role string, replicas, storageGB int, cpu, memory string, spread string) *unstructured.Unstructured {
		vol := map[string]any{
			"id": int64(0), "type": "persistent-claim", "size": fmt.Sprintf("%dGi", storageGB),
			"kraftMetadata": "shared",
			// The data outlives a deleted Kafka or node pool (a mistaken
			// kubectl delete, a failed GitOps sync) and a deprovision:
			// Strimzi reattaches claims of the same names when the pool is
			// created again. Deleting them is a separate, deliberate step
			// (docs/kafka.md, Deprovision).
			"deleteClaim": false,
		}
		if p.Config.StorageClass != "" {
			vol["class"] = p.Config.StorageClass
		}
		tpl := map[string]any{"pod": map[string]any{
			"topologySpreadConstraints": []any{map[string]any{
				"maxSkew": int64(1), "topologyKey": zoneKey, "whenUnsatisfiable": spread,
				"labelSelector": map[string]any{"matchLabels": map[string]any{poolLabel: name}},
			}},
		}}
		labels := copyMap(podLabels)
		labels[poolLabel] = name
		tpl["pod"].(map[string]any)["metadata"] = map[string]any{"labels": labels}
		// The instance's labels on the claims find them after a deprovision.
		tpl["persistentVolumeClaim"] = map[string]any{"metadata": map[string]any{"labels": provisioners.StringMap(inst.Labels())}}
		o := inTarget(inst, t, "KafkaNodePool", name, map[string]any{
			"replicas":  int64(replicas),
			"roles":     []any{role},
			"storage":   map[string]any{"type": "jbod", "volumes": []any{vol}},
			"resources": resources(cpu, memory),
			"template":  tpl,
		})
		return o
	}
	objs := []*unstructured.Unstructured{
		metrics,
		kafkaObj,
		pool(n.ControllerPool, "controller", c.Controllers, c.ControllerStorageGB, c.ControllerCPU, c.ControllerMemory, "DoNotSchedule"),
		pool(n.BrokerPool, "broker", c.Brokers, s.StorageGB, c.BrokerCPU, c.BrokerMemory, "DoNotSchedule"),
		// The Kafka Exporter has no policy of Strimzi's: only the
		// monitoring namespace reads its consumer-lag metrics.
		provisioners.IngressPolicy(inst, n.Cluster+"-kafka-exporter",
			map[string]any{"strimzi.io/name": n.Cluster + "-kafka-exporter"},
			provisioners.AllowFrom(provisioners.FromNamespace(p.Config.MonitoringNamespace), MetricsPort)),
	}
	if p.Config.PodMonitor {
		objs = append(objs, provisioners.NewObject(inst, "monitoring.coreos.com/v1", "PodMonitor", n.Cluster+"-metrics", map[string]any{
			// Brokers, controllers and the Kafka Exporter all serve on
			// tcp-prometheus; the entity operator has no such port.
			"selector":            map[string]any{"matchLabels": map[string]any{LabelCluster: n.Cluster}},
			"podMetricsEndpoints": []any{map[string]any{"port": metricsPortName, "path": "/metrics"}},
		}))
	}
	return objs
}

func resources(cpu, memory string) map[string]any {
	return map[string]any{
		"requests": map[string]any{"cpu": cpu, "memory": memory},
		"limits":   map[string]any{"cpu": cpu, "memory": memory},
	}
}

func copyMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Inventory says where the instance's objects may be, for deprovision and
// for pruning what an update dropped (a deleted topic): every object Strata
// creates carries the instance-id label, so the broker lists each kind in
// each namespace with that selector and deletes what Build no longer
// renders.
type Inventory struct {
	GVK       schema.GroupVersionKind
	Namespace string
}

// InventoryOf lists the kinds and namespaces of an instance's objects
// (KafkaUsers are the binder's, listed too so deprovision can sweep
// bindings the platform never unbound).
func (p *Provisioner) InventoryOf(inst provisioners.Instance) []Inventory {
	t := p.TargetOf(inst)
	np := schema.GroupVersionKind{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicy"}
	out := []Inventory{{KafkaTopicGVK, t.Namespace}, {KafkaUserGVK, t.Namespace}, {np, t.Namespace}}
	if t.Dedicated {
		out = append(out,
			Inventory{KafkaGVK, t.Namespace},
			Inventory{KafkaNodePoolGVK, t.Namespace},
			Inventory{KafkaMirrorMaker2GVK, t.Namespace},
			Inventory{schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, t.Namespace},
			Inventory{schema.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: "PodMonitor"}, t.Namespace})
	}
	return out
}

// jmxExporterConfig is the Prometheus JMX exporter configuration of
// dedicated clusters: throughput, request latency, replication health,
// controller state and log sizes, as Prometheus-style names.
// JMXExporterConfig is the JMX Prometheus exporter configuration of every
// Strata Kafka cluster, dedicated or the platform's shared one (the
// strata-platform chart carries the same text; a test keeps them equal).
const JMXExporterConfig = jmxExporterConfig

const jmxExporterConfig = `lowercaseOutputName: true
lowercaseOutputLabelNames: true
rules:
# Throughput per topic: bytes and messages in and out, failed requests.
- pattern: kafka.server<type=BrokerTopicMetrics, name=(BytesInPerSec|BytesOutPerSec|MessagesInPerSec|FailedProduceRequestsPerSec|FailedFetchRequestsPerSec|TotalProduceRequestsPerSec|TotalFetchRequestsPerSec), topic=(.+)><>Count
  name: kafka_server_brokertopicmetrics_$1_total
  type: COUNTER
  labels:
    topic: "$2"
- pattern: kafka.server<type=BrokerTopicMetrics, name=(BytesInPerSec|BytesOutPerSec|MessagesInPerSec|FailedProduceRequestsPerSec|FailedFetchRequestsPerSec|TotalProduceRequestsPerSec|TotalFetchRequestsPerSec)><>Count
  name: kafka_server_brokertopicmetrics_$1_total
  type: COUNTER
# Request latency percentiles per request type.
- pattern: kafka.network<type=RequestMetrics, name=(TotalTimeMs|RequestQueueTimeMs|LocalTimeMs|RemoteTimeMs|ResponseQueueTimeMs|ResponseSendTimeMs), request=(Produce|FetchConsumer|FetchFollower|Metadata|OffsetCommit|JoinGroup|SyncGroup|Heartbeat)><>(50thPercentile|99thPercentile|999thPercentile)
  name: kafka_network_requestmetrics_$1
  type: GAUGE
  labels:
    request: "$2"
    quantile: "$3"
- pattern: kafka.network<type=RequestMetrics, name=RequestsPerSec, request=(.+), version=(.+)><>Count
  name: kafka_network_requestmetrics_requests_total
  type: COUNTER
  labels:
    request: "$1"
    version: "$2"
# Replication health.
- pattern: kafka.server<type=ReplicaManager, name=(UnderReplicatedPartitions|UnderMinIsrPartitionCount|AtMinIsrPartitionCount|OfflineReplicaCount|PartitionCount|LeaderCount)><>Value
  name: kafka_server_replicamanager_$1
  type: GAUGE
- pattern: kafka.server<type=ReplicaManager, name=(IsrShrinksPerSec|IsrExpandsPerSec)><>Count
  name: kafka_server_replicamanager_$1_total
  type: COUNTER
- pattern: kafka.server<type=ReplicaFetcherManager, name=MaxLag, clientId=(.+)><>Value
  name: kafka_server_replicafetchermanager_maxlag
  type: GAUGE
  labels:
    clientid: "$1"
# KRaft controller state.
- pattern: kafka.controller<type=KafkaController, name=(ActiveControllerCount|OfflinePartitionsCount|GlobalPartitionCount|GlobalTopicCount|ActiveBrokerCount|FencedBrokerCount)><>Value
  name: kafka_controller_kafkacontroller_$1
  type: GAUGE
- pattern: kafka.server<type=raft-metrics><>(current-state|current-leader|commit-latency-avg|high-watermark|log-end-offset)
  name: kafka_server_raftmetrics_$1
  type: GAUGE
# Thread pools, quotas and connections.
- pattern: kafka.server<type=KafkaRequestHandlerPool, name=RequestHandlerAvgIdlePercent><>OneMinuteRate
  name: kafka_server_kafkarequesthandlerpool_requesthandleravgidlepercent
  type: GAUGE
- pattern: kafka.network<type=SocketServer, name=NetworkProcessorAvgIdlePercent><>Value
  name: kafka_network_socketserver_networkprocessoravgidlepercent
  type: GAUGE
- pattern: kafka.server<type=(Produce|Fetch|Request), user=(.+), client-id=(.*)><>(throttle-time|byte-rate|request-time)
  name: kafka_server_quota_$4
  type: GAUGE
  labels:
    quota: "$1"
    user: "$2"
    clientid: "$3"
- pattern: kafka.server<type=socket-server-metrics, listener=(.+), networkProcessor=(.+)><>connection-count
  name: kafka_server_socketservermetrics_connection_count
  type: GAUGE
  labels:
    listener: "$1"
    networkprocessor: "$2"
# Log size per partition (disk use per tenant topic).
- pattern: kafka.log<type=Log, name=Size, topic=(.+), partition=(.+)><>Value
  name: kafka_log_log_size
  type: GAUGE
  labels:
    topic: "$1"
    partition: "$2"
`
