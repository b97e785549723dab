package dashboards

// All are Strata's dashboards, in the order docs/dashboards.md describes
// them.
func All() []Dashboard {
	return []Dashboard{PostgreSQL(), Redis(), Kafka(), Broker(), TenantUsage()}
}

// The series selectors of one instance. Prometheus Operator names a
// PodMonitor's job "<namespace>/<PodMonitor name>", and the broker names
// each instance's PodMonitor after the instance's object: pg-<id> (its
// pooler's pg-<id>-pooler), rd-<id>, and kafka-<hash>-metrics for a
// dedicated Kafka cluster kafka-<hash>.
const (
	pgSel     = `namespace="$namespace", job="$namespace/$instance"`
	poolerSel = `namespace="$namespace", job="$namespace/$instance-pooler"`
	// meshSel is the instance's mesh PodMonitor (pg-<id>-mesh): its
	// pods' Istio sidecars, in meshed namespaces only; inbound is what
	// the receiving sidecar (the data pod's) reported.
	meshSel   = `namespace="$namespace", job="$namespace/$instance-mesh"`
	inbound   = meshSel + `, reporter="destination"`
	redisSel  = `namespace="$namespace", job="$namespace/$instance"`
	kafkaSel  = `namespace="$namespace", job="$namespace/$instance-metrics"`
	brokerSel = `namespace="$namespace", pod=~"$instance"`
	tenantSel = `tenant=~"$namespace"`
)

// instanceOfJob keeps the instance's name out of a job label
// "<namespace>/<name>".
const instanceOfJob = `/^[^/]+/(.+)$/`

func tenantNamespace(selector string) Variable {
	return Variable{
		Label: "Namespace", Selector: selector, LabelName: "namespace",
		Description: "The tenant's namespace (the instance's).",
	}
}

// PostgreSQL is one CloudNativePG instance (its cnpg_* series: the
// instance manager's collector and CloudNativePG's default monitoring
// queries) and its PgBouncer pooler (standard and ha plans).
func PostgreSQL() Dashboard {
	return Dashboard{
		File: "postgresql.json", UID: "strata-postgresql", Title: "Strata / PostgreSQL",
		Description: "One PostgreSQL instance of Strata (CloudNativePG) and its PgBouncer pooler.",
		Namespace:   tenantNamespace(`cnpg_collector_up`),
		Instance: &Variable{
			Label: "Instance", Selector: `cnpg_collector_up{namespace="$namespace"}`, LabelName: "job", Regex: instanceOfJob,
			Description: "The instance's Cluster (pg-<instance id>).",
		},
		Panels: []Panel{
			{Row: "PostgreSQL"},
			{Title: "Instances up", Type: "stat", Description: "Pods whose exporter reached PostgreSQL (cnpg_collector_up).",
				Targets: []Target{{Expr: `sum(cnpg_collector_up{` + pgSel + `})`}}},
			{Title: "Primaries", Type: "stat", Description: "Pods out of recovery: 1 when healthy.",
				Targets: []Target{{Expr: `count(cnpg_pg_replication_in_recovery{` + pgSel + `} == 0)`}}},
			{Title: "Uptime of the longest-running pod", Type: "stat", Unit: "s",
				Targets: []Target{{Expr: `time() - min(cnpg_pg_postmaster_start_time{` + pgSel + `})`}}},
			{Title: "Connections used of max_connections", Type: "stat", Unit: "percentunit",
				Targets: []Target{{Expr: `max(sum by (pod) (cnpg_backends_total{` + pgSel + `}) / on (pod) max by (pod) (cnpg_pg_settings_setting{` + pgSel + `, name="max_connections"}))`}}},
			{Title: "Connections by state", Description: "Backends per pod and state (active, idle, idle in transaction).",
				Targets: []Target{{Expr: `sum by (pod, state) (cnpg_backends_total{` + pgSel + `})`, Legend: "{{pod}} {{state}}"}}},
			{Title: "Transactions", Unit: "ops",
				Targets: []Target{
					{Expr: `sum by (pod) (rate(cnpg_pg_stat_database_xact_commit{` + pgSel + `}[$__rate_interval]))`, Legend: "{{pod}} commits"},
					{Expr: `sum by (pod) (rate(cnpg_pg_stat_database_xact_rollback{` + pgSel + `}[$__rate_interval]))`, Legend: "{{pod}} rollbacks"},
				}},
			{Title: "Buffer cache hit ratio", Unit: "percentunit", Description: "Blocks found in shared buffers over blocks read (empty while nothing is read).",
				Targets: []Target{{Expr: `sum by (pod) (rate(cnpg_pg_stat_database_blks_hit{` + pgSel + `}[$__rate_interval])) / (sum by (pod) (rate(cnpg_pg_stat_database_blks_hit{` + pgSel + `}[$__rate_interval])) + sum by (pod) (rate(cnpg_pg_stat_database_blks_read{` + pgSel + `}[$__rate_interval])))`, Legend: "{{pod}}"}}},
			{Title: "Rows written", Unit: "ops",
				Targets: []Target{
					{Expr: `sum by (pod) (rate(cnpg_pg_stat_database_tup_inserted{` + pgSel + `}[$__rate_interval]))`, Legend: "{{pod}} inserted"},
					{Expr: `sum by (pod) (rate(cnpg_pg_stat_database_tup_updated{` + pgSel + `}[$__rate_interval]))`, Legend: "{{pod}} updated"},
					{Expr: `sum by (pod) (rate(cnpg_pg_stat_database_tup_deleted{` + pgSel + `}[$__rate_interval]))`, Legend: "{{pod}} deleted"},
				}},
			{Title: "Database size", Unit: "bytes",
				Targets: []Target{{Expr: `max by (datname) (cnpg_pg_database_size_bytes{` + pgSel + `})`, Legend: "{{datname}}"}}},
			{Title: "Replication lag", Unit: "s", Description: "How far each replica replays behind the primary (0 on the primary).",
				Targets: []Target{{Expr: `max by (pod) (cnpg_pg_replication_lag{` + pgSel + `})`, Legend: "{{pod}}"}}},
			{Title: "Longest transaction", Unit: "s",
				Targets: []Target{{Expr: `max by (pod) (cnpg_backends_max_tx_duration_seconds{` + pgSel + `})`, Legend: "{{pod}}"}}},
			{Title: "Transaction ID age", Description: "Transactions since each database's oldest unfrozen XID: writes stop at 2^31.",
				Targets: []Target{{Expr: `max by (datname) (cnpg_pg_database_xid_age{` + pgSel + `})`, Legend: "{{datname}}"}}},
			{Title: "WAL archiving", Unit: "ops", Description: "WAL segments archived and failed (plans with backups).",
				Targets: []Target{
					{Expr: `sum by (pod) (rate(cnpg_pg_stat_archiver_archived_count{` + pgSel + `}[$__rate_interval]))`, Legend: "{{pod}} archived"},
					{Expr: `sum by (pod) (rate(cnpg_pg_stat_archiver_failed_count{` + pgSel + `}[$__rate_interval]))`, Legend: "{{pod}} failed"},
				}},
			{Title: "Deadlocks and conflicts", Unit: "ops",
				Targets: []Target{
					{Expr: `sum by (pod) (rate(cnpg_pg_stat_database_deadlocks{` + pgSel + `}[$__rate_interval]))`, Legend: "{{pod}} deadlocks"},
					{Expr: `sum by (pod) (rate(cnpg_pg_stat_database_conflicts{` + pgSel + `}[$__rate_interval]))`, Legend: "{{pod}} conflicts"},
				}},
			{Row: "PgBouncer (standard and ha plans)"},
			{Title: "PgBouncers answering", Type: "stat",
				Description: "Pooler pods whose exporter reached PgBouncer at its last scrape (cnpg_pgbouncer_last_collection_error 0; CloudNativePG 1.30 declares cnpg_pgbouncer_up but never serves it).",
				Targets:     []Target{{Expr: `sum(1 - cnpg_pgbouncer_last_collection_error{` + poolerSel + `})`}}},
			{Title: "Clients waiting", Type: "stat", Description: "Clients queued for a server connection: the pool is exhausted.",
				Targets: []Target{{Expr: `sum(cnpg_pgbouncer_pools_cl_waiting{` + poolerSel + `})`}}},
			{Title: "Longest client wait", Type: "stat", Unit: "s",
				Targets: []Target{{Expr: `max(cnpg_pgbouncer_pools_maxwait{` + poolerSel + `})`}}},
			{Title: "Client connections in use", Type: "stat",
				Targets: []Target{{Expr: `sum(cnpg_pgbouncer_lists_used_clients{` + poolerSel + `})`}}},
			{Title: "Client connections by database",
				Targets: []Target{
					{Expr: `sum by (database) (cnpg_pgbouncer_pools_cl_active{` + poolerSel + `})`, Legend: "{{database}} active"},
					{Expr: `sum by (database) (cnpg_pgbouncer_pools_cl_waiting{` + poolerSel + `})`, Legend: "{{database}} waiting"},
				}},
			{Title: "Server connections by database",
				Targets: []Target{
					{Expr: `sum by (database) (cnpg_pgbouncer_pools_sv_active{` + poolerSel + `})`, Legend: "{{database}} active"},
					{Expr: `sum by (database) (cnpg_pgbouncer_pools_sv_idle{` + poolerSel + `})`, Legend: "{{database}} idle"},
				}},
			{Title: "Transactions and queries through PgBouncer", Unit: "ops",
				Targets: []Target{
					{Expr: `sum by (database) (rate(cnpg_pgbouncer_stats_total_xact_count{` + poolerSel + `}[$__rate_interval]))`, Legend: "{{database}} transactions"},
					{Expr: `sum by (database) (rate(cnpg_pgbouncer_stats_total_query_count{` + poolerSel + `}[$__rate_interval]))`, Legend: "{{database}} queries"},
				}},
			{Title: "Average wait for a server connection", Unit: "µs",
				Targets: []Target{{Expr: `max by (database) (cnpg_pgbouncer_stats_avg_wait_time{` + poolerSel + `})`, Legend: "{{database}}"}}},
			{Row: "Mesh (meshed namespaces: the pods' Istio sidecars, empty elsewhere)"},
			{Title: "Connections opened by client workload", Unit: "cps",
				Description: "New connections to the instance's pods, by the workload that opened them (unknown: a caller outside the mesh, such as the operator or Prometheus).",
				Targets:     []Target{{Expr: `sum by (source_workload_namespace, source_workload) (rate(istio_tcp_connections_opened_total{` + inbound + `}[$__rate_interval]))`, Legend: "{{source_workload_namespace}}/{{source_workload}}"}}},
			{Title: "Connections by security policy", Unit: "cps",
				Description: "mutual_tls: Istio mTLS; none: plaintext to the sidecar, expected only on the ports of the operator and Prometheus (passthrough), never on a Service's (StrataMeshPlaintextConnections).",
				Targets:     []Target{{Expr: `sum by (connection_security_policy, destination_service) (rate(istio_tcp_connections_opened_total{` + inbound + `}[$__rate_interval]))`, Legend: "{{connection_security_policy}} {{destination_service}}"}}},
			{Title: "Connections closed with an error flag", Unit: "cps",
				Description: "Envoy's response flags of connections the sidecar could not hand to PostgreSQL or PgBouncer (UF: nothing listens; UO: overflow; NR: no route); see StrataMeshConnectionErrors.",
				Targets:     []Target{{Expr: `sum by (pod, response_flags) (rate(istio_tcp_connections_closed_total{` + inbound + `, response_flags!="-"}[$__rate_interval]))`, Legend: "{{pod}} {{response_flags}}"}}},
			{Title: "Bytes through the sidecars", Unit: "Bps",
				Description: "Received from and sent to the clients of the instance's pods.",
				Targets: []Target{
					{Expr: `sum by (pod) (rate(istio_tcp_received_bytes_total{` + inbound + `}[$__rate_interval]))`, Legend: "{{pod}} received"},
					{Expr: `sum by (pod) (rate(istio_tcp_sent_bytes_total{` + inbound + `}[$__rate_interval]))`, Legend: "{{pod}} sent"},
				}},
		},
	}
}

// Redis is one RedisFailover: its Redis pods through the exporter beside
// each (redis_exporter's redis_* series).
func Redis() Dashboard {
	return Dashboard{
		File: "redis.json", UID: "strata-redis", Title: "Strata / Redis",
		Description: "One Redis instance of Strata (RedisFailover): its Redis pods, through the exporter beside each.",
		Namespace:   tenantNamespace(`redis_up`),
		Instance: &Variable{
			Label: "Instance", Selector: `redis_up{namespace="$namespace"}`, LabelName: "job", Regex: instanceOfJob,
			Description: "The instance's RedisFailover (rd-<instance id>).",
		},
		Panels: []Panel{
			{Title: "Redis pods up", Type: "stat", Description: "Pods whose exporter reaches Redis with the instance's password.",
				Targets: []Target{{Expr: `sum(redis_up{` + redisSel + `})`}}},
			{Title: "Masters", Type: "stat", Description: "1 when healthy; Sentinel promotes a replica when the master fails.",
				Targets: []Target{{Expr: `count(redis_instance_info{` + redisSel + `, role="master"})`}}},
			{Title: "Keys", Type: "stat",
				Targets: []Target{{Expr: `max(sum by (pod) (redis_db_keys{` + redisSel + `}))`}}},
			{Title: "Memory used of maxmemory", Type: "stat", Unit: "percentunit", Description: "Empty when maxmemory is not set.",
				Targets: []Target{{Expr: `max(redis_memory_used_bytes{` + redisSel + `} / (redis_memory_max_bytes{` + redisSel + `} > 0))`}}},
			{Title: "Memory", Unit: "bytes",
				Targets: []Target{
					{Expr: `max by (pod) (redis_memory_used_bytes{` + redisSel + `})`, Legend: "{{pod}} used"},
					{Expr: `max by (pod) (redis_memory_max_bytes{` + redisSel + `})`, Legend: "{{pod}} maxmemory"},
				}},
			{Title: "Cache hit ratio", Unit: "percentunit", Description: "Key lookups that found the key (empty while nothing is read).",
				Targets: []Target{{Expr: `sum(rate(redis_keyspace_hits_total{` + redisSel + `}[$__rate_interval])) / (sum(rate(redis_keyspace_hits_total{` + redisSel + `}[$__rate_interval])) + sum(rate(redis_keyspace_misses_total{` + redisSel + `}[$__rate_interval])))`, Legend: "hit ratio"}}},
			{Title: "Commands", Unit: "ops",
				Targets: []Target{{Expr: `sum by (pod) (rate(redis_commands_processed_total{` + redisSel + `}[$__rate_interval]))`, Legend: "{{pod}}"}}},
			{Title: "Commands by type", Unit: "ops",
				Targets: []Target{{Expr: `topk(10, sum by (cmd) (rate(redis_commands_total{` + redisSel + `}[$__rate_interval])))`, Legend: "{{cmd}}"}}},
			{Title: "Average command latency", Unit: "s",
				Targets: []Target{{Expr: `sum by (cmd) (rate(redis_commands_duration_seconds_total{` + redisSel + `}[$__rate_interval])) / sum by (cmd) (rate(redis_commands_total{` + redisSel + `}[$__rate_interval]))`, Legend: "{{cmd}}"}}},
			{Title: "Clients",
				Targets: []Target{
					{Expr: `sum by (pod) (redis_connected_clients{` + redisSel + `})`, Legend: "{{pod}} connected"},
					{Expr: `sum by (pod) (redis_blocked_clients{` + redisSel + `})`, Legend: "{{pod}} blocked"},
				}},
			{Title: "Evicted, expired and rejected", Unit: "ops", Description: "Evictions mean maxmemory is reached; rejected connections, maxclients.",
				Targets: []Target{
					{Expr: `sum(rate(redis_evicted_keys_total{` + redisSel + `}[$__rate_interval]))`, Legend: "evicted keys"},
					{Expr: `sum(rate(redis_expired_keys_total{` + redisSel + `}[$__rate_interval]))`, Legend: "expired keys"},
					{Expr: `sum(rate(redis_rejected_connections_total{` + redisSel + `}[$__rate_interval]))`, Legend: "rejected connections"},
				}},
			{Title: "Network", Unit: "Bps",
				Targets: []Target{
					{Expr: `sum by (pod) (rate(redis_net_input_bytes_total{` + redisSel + `}[$__rate_interval]))`, Legend: "{{pod}} in"},
					{Expr: `sum by (pod) (rate(redis_net_output_bytes_total{` + redisSel + `}[$__rate_interval]))`, Legend: "{{pod}} out"},
				}},
			{Title: "Replicas connected to each master",
				Targets: []Target{{Expr: `max by (pod) (redis_connected_slaves{` + redisSel + `})`, Legend: "{{pod}}"}}},
			{Title: "Persistence", Description: "1: the last RDB save and the last AOF write succeeded; 0: Redis cannot persist.",
				Targets: []Target{
					{Expr: `min by (pod) (redis_rdb_last_bgsave_status{` + redisSel + `})`, Legend: "{{pod}} RDB save"},
					{Expr: `min by (pod) (redis_aof_last_write_status{` + redisSel + `})`, Legend: "{{pod}} AOF write"},
				}},
		},
	}
}

// Kafka is one dedicated Kafka cluster (the ha plan): the brokers' and
// controllers' JMX series, named by the rules of
// kafka.JMXExporterConfig, and the Kafka Exporter's consumer lag.
func Kafka() Dashboard {
	return Dashboard{
		File: "kafka.json", UID: "strata-kafka", Title: "Strata / Kafka",
		Description: "One dedicated Kafka cluster of Strata (Strimzi, ha plan): brokers and controllers through the JMX exporter, consumer lag through the Kafka Exporter.",
		Namespace:   tenantNamespace(`kafka_server_replicamanager_partitioncount`),
		Instance: &Variable{
			Label: "Instance", Selector: `kafka_server_replicamanager_partitioncount{namespace="$namespace"}`, LabelName: "job",
			Regex:       `/^[^/]+/(.+)-metrics$/`,
			Description: "The instance's Kafka cluster (kafka-<hash of the instance id>).",
		},
		Panels: []Panel{
			{Title: "Active controllers", Type: "stat", Description: "Exactly 1 in a healthy KRaft cluster.",
				Targets: []Target{{Expr: `sum(kafka_controller_kafkacontroller_activecontrollercount{` + kafkaSel + `})`}}},
			{Title: "Offline partitions", Type: "stat",
				Targets: []Target{{Expr: `max(kafka_controller_kafkacontroller_offlinepartitionscount{` + kafkaSel + `})`}}},
			{Title: "Under-replicated partitions", Type: "stat",
				Targets: []Target{{Expr: `sum(kafka_server_replicamanager_underreplicatedpartitions{` + kafkaSel + `})`}}},
			{Title: "Brokers", Type: "stat", Description: "Brokers the Kafka Exporter sees.",
				Targets: []Target{{Expr: `max(kafka_brokers{` + kafkaSel + `})`}}},
			{Title: "Bytes in and out by topic", Unit: "Bps",
				Targets: []Target{
					{Expr: `sum by (topic) (rate(kafka_server_brokertopicmetrics_bytesinpersec_total{` + kafkaSel + `, topic!=""}[$__rate_interval]))`, Legend: "{{topic}} in"},
					{Expr: `sum by (topic) (rate(kafka_server_brokertopicmetrics_bytesoutpersec_total{` + kafkaSel + `, topic!=""}[$__rate_interval]))`, Legend: "{{topic}} out"},
				}},
			{Title: "Messages in by topic", Unit: "ops",
				Targets: []Target{{Expr: `sum by (topic) (rate(kafka_server_brokertopicmetrics_messagesinpersec_total{` + kafkaSel + `, topic!=""}[$__rate_interval]))`, Legend: "{{topic}}"}}},
			{Title: "Consumer group lag", Description: "Messages each group is behind, per topic.",
				Targets: []Target{{Expr: `sum by (consumergroup, topic) (kafka_consumergroup_lag{` + kafkaSel + `})`, Legend: "{{consumergroup}} {{topic}}"}}},
			{Title: "Request latency, 99th percentile", Unit: "ms",
				Targets: []Target{{Expr: `max by (request) (kafka_network_requestmetrics_totaltimems{` + kafkaSel + `, quantile="99thPercentile", request=~"Produce|FetchConsumer|FetchFollower"})`, Legend: "{{request}}"}}},
			{Title: "Partitions and leaders by broker",
				Targets: []Target{
					{Expr: `sum by (pod) (kafka_server_replicamanager_partitioncount{` + kafkaSel + `})`, Legend: "{{pod}} partitions"},
					{Expr: `sum by (pod) (kafka_server_replicamanager_leadercount{` + kafkaSel + `})`, Legend: "{{pod}} leaders"},
				}},
			{Title: "In-sync replica set changes", Unit: "ops",
				Targets: []Target{
					{Expr: `sum by (pod) (rate(kafka_server_replicamanager_isrshrinkspersec_total{` + kafkaSel + `}[$__rate_interval]))`, Legend: "{{pod}} shrinks"},
					{Expr: `sum by (pod) (rate(kafka_server_replicamanager_isrexpandspersec_total{` + kafkaSel + `}[$__rate_interval]))`, Legend: "{{pod}} expands"},
				}},
			{Title: "Request handler and network idle", Unit: "percentunit", Description: "Near 0: the brokers' threads are saturated.",
				Targets: []Target{
					{Expr: `avg by (pod) (kafka_server_kafkarequesthandlerpool_requesthandleravgidlepercent{` + kafkaSel + `})`, Legend: "{{pod}} request handlers"},
					{Expr: `avg by (pod) (kafka_network_socketserver_networkprocessoravgidlepercent{` + kafkaSel + `})`, Legend: "{{pod}} network"},
				}},
			{Title: "Log size by topic", Unit: "bytes", Description: "Disk used by each topic's partitions, all replicas.",
				Targets: []Target{{Expr: `sum by (topic) (kafka_log_log_size{` + kafkaSel + `})`, Legend: "{{topic}}"}}},
			{Title: "Connections by listener",
				Targets: []Target{{Expr: `sum by (listener) (kafka_server_socketservermetrics_connection_count{` + kafkaSel + `})`, Legend: "{{listener}}"}}},
			{Title: "Failed produce and fetch requests", Unit: "ops",
				Targets: []Target{
					{Expr: `sum(rate(kafka_server_brokertopicmetrics_failedproducerequestspersec_total{` + kafkaSel + `, topic=""}[$__rate_interval]))`, Legend: "produce"},
					{Expr: `sum(rate(kafka_server_brokertopicmetrics_failedfetchrequestspersec_total{` + kafkaSel + `, topic=""}[$__rate_interval]))`, Legend: "fetch"},
				}},
		},
	}
}

// Broker is the broker itself: its operations (gauges read from its
// records at every scrape, the same on every replica) and its HTTP
// requests (per replica).
func Broker() Dashboard {
	return Dashboard{
		File: "broker.json", UID: "strata-broker", Title: "Strata / Broker",
		Description: "The Strata broker: OSB operations in progress, stuck and failed; requests, errors and durations.",
		Namespace: Variable{
			Label: "Namespace", Selector: `strata_operations_in_progress`, LabelName: "namespace",
			Description: "The broker's namespace.",
		},
		Instance: &Variable{
			Label: "Replica", Selector: `strata_http_requests_total{namespace="$namespace"}`, LabelName: "pod", Multi: true,
			Description: "Broker pods (operations are the same on every replica; requests are each replica's).",
		},
		Panels: []Panel{
			{Title: "Replicas up", Type: "stat",
				Targets: []Target{{Expr: `sum(up{` + brokerSel + `})`}}},
			{Title: "Operations in progress", Type: "stat",
				Targets: []Target{{Expr: `sum(max by (service, operation) (strata_operations_in_progress{` + brokerSel + `}))`}}},
			{Title: "Operations past their deadline", Type: "stat", Description: "Still in progress after the plan's maximum polling duration: the platform has given up on them.",
				Targets: []Target{{Expr: `sum(max by (service, operation) (strata_operations_past_deadline{` + brokerSel + `}))`}}},
			{Title: "Failed instances and bindings", Type: "stat", Description: "Instances and bindings whose last operation failed.",
				Targets: []Target{{Expr: `sum(max by (service, operation) (strata_operations_failed{` + brokerSel + `}))`}}},
			{Title: "Operations in progress by service and type",
				Targets: []Target{{Expr: `max by (service, operation) (strata_operations_in_progress{` + brokerSel + `})`, Legend: "{{service}} {{operation}}"}}},
			{Title: "Oldest operation in progress", Unit: "s",
				Targets: []Target{{Expr: `max by (service, operation) (strata_operation_oldest_in_progress_seconds{` + brokerSel + `})`, Legend: "{{service}} {{operation}}"}}},
			{Title: "Failed operations by service and type",
				Targets: []Target{{Expr: `max by (service, operation) (strata_operations_failed{` + brokerSel + `})`, Legend: "{{service}} {{operation}}"}}},
			{Title: "Stuck operations by service and type",
				Targets: []Target{{Expr: `max by (service, operation) (strata_operations_past_deadline{` + brokerSel + `})`, Legend: "{{service}} {{operation}}"}}},
			{Title: "Requests by route and status", Unit: "reqps",
				Targets: []Target{{Expr: `sum by (route, method, code) (rate(strata_http_requests_total{` + brokerSel + `}[$__rate_interval]))`, Legend: "{{method}} {{route}} {{code}}"}}},
			{Title: "Server errors", Unit: "percentunit", Description: "Share of requests answered 5xx (the StrataBrokerAPIErrors alert fires above 5%).",
				Targets: []Target{{Expr: `(sum(rate(strata_http_requests_total{` + brokerSel + `, code=~"5.."}[$__rate_interval])) or vector(0)) / sum(rate(strata_http_requests_total{` + brokerSel + `}[$__rate_interval]))`, Legend: "5xx"}}},
			{Title: "Request duration, 99th percentile", Unit: "s",
				Targets: []Target{{Expr: `histogram_quantile(0.99, sum by (route, le) (rate(strata_http_request_duration_seconds_bucket{` + brokerSel + `}[$__rate_interval])))`, Legend: "{{route}}"}}},
			{Title: "Average request duration", Unit: "s",
				Targets: []Target{{Expr: `sum by (route) (rate(strata_http_request_duration_seconds_sum{` + brokerSel + `}[$__rate_interval])) / sum by (route) (rate(strata_http_request_duration_seconds_count{` + brokerSel + `}[$__rate_interval]))`, Legend: "{{route}}"}}},
		},
	}
}

// usage aggregates one of the broker's strata_tenant_* gauges: every
// replica exports the same values, so max over replicas, then by.
func usage(metric, by string) string {
	return `sum by (` + by + `) (max by (tenant, service, plan) (` + metric + `{` + tenantSel + `}))`
}

// TenantUsage is what each tenant holds and requests (the broker's
// strata_tenant_* gauges, read from its records), an estimate of its cost
// at prices set on the dashboard, and what its instances use (the
// engines' exporters).
func TenantUsage() Dashboard {
	const gib = ` / 2^30`
	return Dashboard{
		File: "tenant-usage.json", UID: "strata-tenant-usage", Title: "Strata / Tenant usage and cost",
		Description: "Per tenant namespace: instances, CPU, memory and storage requested by service and plan (the broker's records), an estimated cost, and what the instances use.",
		Namespace: Variable{
			Label: "Namespace", Selector: `strata_tenant_instances`, LabelName: "tenant", Multi: true,
			Description: "Tenant namespaces.",
		},
		Instance: &Variable{
			Label: "Instance", Selector: `{__name__=~"cnpg_collector_up|redis_up|kafka_server_replicamanager_partitioncount", namespace=~"$namespace"}`,
			LabelName: "job", Regex: instanceOfJob, Multi: true,
			Description: "Monitored instances of the tenants (for the usage panels).",
		},
		Inputs: []Input{
			{Name: "vcpu_hour", Label: "$ per vCPU-hour", Default: "0.04", Description: "Price of a requested vCPU for an hour (e.g. a node's on-demand price over its vCPUs)."},
			{Name: "gib_hour", Label: "$ per GiB-hour", Default: "0.005", Description: "Price of a requested GiB of memory for an hour."},
			{Name: "gib_month", Label: "$ per GiB-month of volume", Default: "0.08", Description: "Price of a GiB of volume for a month (e.g. gp3)."},
		},
		Panels: []Panel{
			{Row: "Requested (the broker's records: what a tenant reserves and pays for)"},
			{Title: "Instances", Type: "stat",
				Targets: []Target{{Expr: `sum(max by (tenant, service, plan) (strata_tenant_instances{` + tenantSel + `}))`}}},
			{Title: "CPU requested (cores)", Type: "stat",
				Targets: []Target{{Expr: `sum(max by (tenant, service, plan) (strata_tenant_cpu_cores{` + tenantSel + `}))`}}},
			{Title: "Memory requested", Type: "stat", Unit: "bytes",
				Targets: []Target{{Expr: `sum(max by (tenant, service, plan) (strata_tenant_memory_bytes{` + tenantSel + `}))`}}},
			{Title: "Storage requested", Type: "stat", Unit: "bytes",
				Targets: []Target{{Expr: `sum(max by (tenant, service, plan) (strata_tenant_storage_bytes{` + tenantSel + `}))`}}},
			{Title: "Instances by namespace, service and plan", Type: "table", Width: 24,
				Targets: []Target{{Expr: usage("strata_tenant_instances", "tenant, service, plan"), Instant: true}}},
			{Title: "CPU requested by plan (cores)",
				Targets: []Target{{Expr: usage("strata_tenant_cpu_cores", "tenant, service, plan"), Legend: "{{tenant}} {{service}} {{plan}}"}}},
			{Title: "Memory requested by plan", Unit: "bytes",
				Targets: []Target{{Expr: usage("strata_tenant_memory_bytes", "tenant, service, plan"), Legend: "{{tenant}} {{service}} {{plan}}"}}},
			{Title: "Storage requested by plan", Unit: "bytes",
				Targets: []Target{{Expr: usage("strata_tenant_storage_bytes", "tenant, service, plan"), Legend: "{{tenant}} {{service}} {{plan}}"}}},
			{Title: "Bindings by service",
				Targets: []Target{{Expr: `max by (tenant, service) (strata_tenant_bindings{` + tenantSel + `})`, Legend: "{{tenant}} {{service}}"}}},
			{Title: "Estimated cost per month, at the prices above", Unit: "currencyUSD", Width: 24,
				Description: "Requested CPU and memory for 730 hours and the requested volumes for a month, at the dashboard's prices (docs/tenancy.md, cost model). Backups and traffic are billed apart.",
				Targets: []Target{{
					Expr: usage("strata_tenant_cpu_cores", "tenant") + ` * $vcpu_hour * 730 + ` +
						usage("strata_tenant_memory_bytes", "tenant") + gib + ` * $gib_hour * 730 + ` +
						usage("strata_tenant_storage_bytes", "tenant") + gib + ` * $gib_month`,
					Legend: "{{tenant}}",
				}}},
			{Row: "Kafka topics (the shared cluster's cost is split by partitions)"},
			{Title: "Kafka topics by plan",
				Targets: []Target{{Expr: `max by (tenant, plan) (strata_tenant_topics{` + tenantSel + `, service="kafka"})`, Legend: "{{tenant}} {{plan}}"}}},
			{Title: "Share of the shared Kafka cluster's partitions", Unit: "percentunit",
				Targets: []Target{{Expr: `sum by (tenant) (max by (tenant, plan) (strata_tenant_partitions{` + tenantSel + `, service="kafka", plan!="ha"})) / scalar(sum(max by (tenant, plan) (strata_tenant_partitions{service="kafka", plan!="ha"})))`, Legend: "{{tenant}}"}}},
			{Row: "Used (the instances' exporters)"},
			{Title: "PostgreSQL: size of the databases", Unit: "bytes",
				Targets: []Target{{Expr: `sum by (namespace, job) (max by (namespace, job, datname) (cnpg_pg_database_size_bytes{namespace=~"$namespace", job=~"$namespace/$instance"}))`, Legend: "{{job}}"}}},
			{Title: "Redis: memory used", Unit: "bytes",
				Targets: []Target{{Expr: `max by (namespace, job) (redis_memory_used_bytes{namespace=~"$namespace", job=~"$namespace/$instance"})`, Legend: "{{job}}"}}},
			{Title: "Kafka (dedicated): log size", Unit: "bytes",
				Targets: []Target{{Expr: `sum by (namespace, job) (kafka_log_log_size{namespace=~"$namespace", job=~"$namespace/$instance"})`, Legend: "{{job}}"}}},
		},
	}
}
