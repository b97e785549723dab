// Package redis turns a Redis plan and its parameters into a RedisFailover
// (databases.spotahome.com/v1, served by the Spotahome redis-operator and
// its maintained fork) and the objects around it, and reads readiness back
// from what the operator creates (a RedisFailover has no status).
package redis

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/provisioners"
)

// Ports. The operator, the Sentinels and replication speak plaintext to
// RedisPort (the operator has no TLS client); applications use TLSPort.
const (
	RedisPort    = 6379
	TLSPort      = 6380
	SentinelPort = 26379
	ExporterPort = 9121
	// MasterName is the name the operator's Sentinels monitor the master
	// under (hard-coded in the operator).
	MasterName = "mymaster"
	// PasswordKey is the key of the password in the auth Secret (the
	// operator reads exactly this key).
	PasswordKey = "password"
)

// Paths inside the Redis container. ConfigFile is the operator's
// redis.conf (port, dir, password, replicaof); CertDir is where the
// instance's cert-manager Secret is mounted.
const (
	ConfigFile = "/redis/redis.conf"
	CertDir    = "/strata/tls"
	certVolume = "strata-tls"
)

// imagePullPolicy is set on every container the operator creates: left
// out, the operator uses Always (not Kubernetes' IfNotPresent for a tagged
// image), so every restart of a Redis or Sentinel pod would depend on the
// registry answering, and a node without one could not run them at all.
// The images are pinned, so IfNotPresent runs exactly the configured ones.
const imagePullPolicy = "IfNotPresent"

// Operator vocabulary: the labels it puts on the pods it creates.
const (
	labelName      = "app.kubernetes.io/name"
	labelComponent = "app.kubernetes.io/component"
	labelPartOf    = "app.kubernetes.io/part-of"
	partOf         = "redis-failover"
	// RoleLabel is the label the role agent (cmd/strata-redis-role) sets
	// on its own pod, master or replica, from Redis's ROLE and the
	// Sentinels' answer; the TLS Service selects master. The operator's
	// own label (redisfailovers-role) moves only on its 30 s resync once
	// a replacement pod is ready, a minute or more after a failover.
	RoleLabel = "strata.dev/redis-role"
	// The exporter container's port name, as the operator (spotahome
	// 1.2.4 and the fork alike) names it. "http-metrics" is the port of the
	// operator's headless exporter Service, which a PodMonitor cannot use:
	// the real platform's test caught a PodMonitor naming it.
	exporterPortName = "metrics"
	rfAPI            = "databases.spotahome.com/v1"
	// MaxNameLength is the operator's limit on a RedisFailover's name.
	MaxNameLength = 48
)

// Config is what the platform team sets for every Redis instance.
type Config struct {
	// RedisImage and ExporterImage are pinned operand images. The Redis
	// image must be built with TLS (the official images are).
	RedisImage    string `json:"redisImage"`
	ExporterImage string `json:"exporterImage"`
	// RoleAgentImage runs cmd/strata-redis-role beside Redis in every
	// Redis pod (it labels the master for the TLS Service).
	RoleAgentImage string `json:"roleAgentImage"`
	// StorageClass of the data volumes; encryption at rest comes from it.
	StorageClass string `json:"storageClass"`
	// OperatorNamespace and MonitoringNamespace are allowed through the
	// instances' NetworkPolicies on the ports they need.
	OperatorNamespace   string `json:"operatorNamespace"`
	MonitoringNamespace string `json:"monitoringNamespace"`
	// ServerCertificates names the cert-manager issuer of the TLS port's
	// certificate. Required: TLS is not optional.
	ServerCertificates provisioners.CertificatesConfig `json:"serverCertificates"`
	// PodMonitor creates a prometheus-operator PodMonitor for the exporter.
	PodMonitor bool `json:"podMonitor"`
	// Backup is where the off-cluster RDB snapshots of the plans with a
	// snapshot schedule (standard, ha) go, and restores read them from;
	// configured like postgres.backup.
	Backup provisioners.BackupConfig `json:"backup"`
	// SnapshotImage runs the snapshot CronJobs and the restore init
	// containers: the broker's own image (its redis-snapshot
	// subcommand); the chart sets it to the image it deploys.
	SnapshotImage string `json:"snapshotImage"`
}

// DefaultConfig is used for every field the broker configuration leaves out.
func DefaultConfig() Config {
	return Config{
		RedisImage:          "redis:7.2.7-alpine",
		ExporterImage:       "oliver006/redis_exporter:v1.67.0",
		RoleAgentImage:      "ghcr.io/strata-dev/strata-redis-role:0.1.0",
		OperatorNamespace:   "redis-operator",
		MonitoringNamespace: "monitoring",
		PodMonitor:          true,
	}
}

// Provisioner is the Redis engine.
type Provisioner struct {
	Config Config
}

var _ provisioners.Provisioner = (*Provisioner)(nil)

// Names of an instance's objects.
type Names struct {
	// Failover is the RedisFailover.
	Failover string
	// AuthSecret holds the password (key PasswordKey). The binder creates
	// it once, before the first apply; it is not part of Build because its
	// content is random.
	AuthSecret string
	// Certificate is the cert-manager Certificate and its Secret.
	Certificate string
	// TLSService is Strata's Service in front of the master's TLS port.
	TLSService string
	// Created by the operator.
	StatefulSet, Deployment, SentinelService string
	// NetworkPolicy names.
	RedisPolicy, SentinelPolicy string
	// RoleAgent names the role agent's ServiceAccount, Role and
	// RoleBinding; Shutdown the ConfigMap of the Redis preStop hook.
	RoleAgent, Shutdown string
	// SnapshotJob is the CronJob copying snapshots off the cluster,
	// SnapshotAccount its (and a restore's) service account,
	// SnapshotCredentials the Secret with the static S3 keys.
	SnapshotJob, SnapshotAccount, SnapshotCredentials string
}

// NamesOf returns the object names of an instance.
func NamesOf(inst provisioners.Instance) Names {
	return Names{
		Failover:        inst.Name,
		AuthSecret:      inst.Name + "-auth",
		Certificate:     inst.Name + "-tls",
		TLSService:      inst.Name + "-tls",
		StatefulSet:     "rfr-" + inst.Name,
		Deployment:      "rfs-" + inst.Name,
		SentinelService: "rfs-" + inst.Name,
		RedisPolicy:     inst.Name + "-redis",
		SentinelPolicy:  inst.Name + "-sentinel",
		RoleAgent:       inst.Name + "-role",
		Shutdown:        inst.Name + "-shutdown",

		SnapshotJob:         inst.Name + "-snapshot",
		SnapshotAccount:     inst.Name + "-snapshot",
		SnapshotCredentials: inst.Name + "-snapshot-s3",
	}
}

// AuthSecret is the Secret with the instance's password, which the
// operator writes into redis.conf (requirepass, masterauth) and the
// Sentinels' auth-pass. The binder creates it once.
func AuthSecret(inst provisioners.Instance, password string) *unstructured.Unstructured {
	o := provisioners.NewObject(inst, "v1", "Secret", NamesOf(inst).AuthSecret, nil)
	o.Object["type"] = "Opaque"
	o.Object["stringData"] = map[string]any{PasswordKey: password}
	return o
}

// Build renders the instance's objects in apply order.
func (p *Provisioner) Build(inst provisioners.Instance) ([]*unstructured.Unstructured, error) {
	s, err := Resolve(inst.Plan, inst.Params)
	if err != nil {
		return nil, err
	}
	if p.Config.ServerCertificates.IssuerName == "" {
		return nil, errors.New("clients connect to Redis with TLS only: set redis.serverCertificates.issuerName (or postgres.serverCertificates.issuerName, which Redis then shares) in the broker configuration to a cert-manager issuer")
	}
	if p.Config.RedisImage == "" || p.Config.ExporterImage == "" || p.Config.RoleAgentImage == "" {
		return nil, fmt.Errorf("set redis.redisImage, redis.exporterImage and redis.roleAgentImage in the broker configuration (pinned tags)")
	}
	if len(inst.Name) > MaxNameLength {
		return nil, fmt.Errorf("instance name %q is longer than the redis-operator's %d characters", inst.Name, MaxNameLength)
	}
	if err := p.checkSnapshots(inst, s); err != nil {
		return nil, err
	}
	n := NamesOf(inst)
	// The snapshot objects first: a restoring pod needs the S3 keys when
	// it starts.
	objs := p.snapshotObjects(inst, s, n)
	objs = append(objs, p.certificate(inst, n))
	// The pods' ServiceAccount, its rights and the preStop hook exist
	// before the operator makes the pods.
	access := roleAgentAccess(inst, s, n)
	if arn := p.Config.Backup.IAMRoleARN; arn != "" && s.Restore != nil {
		// The pods' init container fetches the snapshot with the pods'
		// account (EKS projects the role's web identity token).
		access[0].SetAnnotations(map[string]string{"eks.amazonaws.com/role-arn": arn})
	}
	objs = append(objs, access...)
	objs = append(objs, shutdownConfigMap(inst, n),
		p.failover(inst, s, n),
		tlsService(inst, n),
	)
	objs = append(objs, p.networkPolicies(inst, n)...)
	if p.Config.PodMonitor {
		objs = append(objs, podMonitor(inst, n))
	}
	if inst.Meshed {
		objs = append(objs, destinationRules(inst, n)...)
	}
	return objs, nil
}

// RedisArgs are the redis-server arguments after the operator's config
// file. Command-line arguments are read after the file, so they win over
// its lines; persistence has to be set this way because the operator
// applies customConfig only with CONFIG SET after start, which is lost at
// every restart (Redis would restart without its append-only file).
func RedisArgs(s Settings) []string {
	args := []string{
		// Protected mode refuses connections from other hosts when no
		// password is configured in the server's defaults; Debian's and
		// other distributions' builds keep it on (the official image
		// patches it off), and it then refuses the operator's and the
		// Sentinels' commands ("DENIED Redis is running in protected
		// mode") even though the operator's file sets a password. Every
		// connection needs the password, so turning it off opens nothing.
		// It cannot be set in customConfig: the operator applies that with
		// CONFIG SET over the network, which protected mode refuses too.
		"--protected-mode", "no",
		// TLS for clients on a port of its own; the plaintext port stays
		// for the operator, the Sentinels and replication, and the
		// NetworkPolicy admits only them to it.
		"--tls-port", strconv.Itoa(TLSPort),
		"--tls-cert-file", CertDir + "/tls.crt",
		"--tls-key-file", CertDir + "/tls.key",
		"--tls-ca-cert-file", CertDir + "/ca.crt",
		// Clients authenticate with the password, not certificates.
		"--tls-auth-clients", "no",
		"--tls-protocols", "TLSv1.2 TLSv1.3",
		"--tls-prefer-server-ciphers", "yes",
		"--maxmemory", strconv.FormatInt(s.MaxmemoryBytes, 10),
		"--maxmemory-policy", s.MaxmemoryPolicy,
		// The operator's file has its own save points; an empty save
		// clears them so exactly the plan's apply.
		"--save", "",
	}
	if s.MinReplicasToWrite > 0 {
		// A master acknowledges a write only while a replica has
		// acknowledged the stream within the lag: the replica Sentinel
		// promotes drops its link at once, so the old master refuses
		// writes (NOREPLICAS) instead of acknowledging writes the new
		// master never gets. The role agent adjusts it while running
		// (fence, alone); this is the value at every start.
		args = append(args, "--min-replicas-to-write", strconv.Itoa(s.MinReplicasToWrite),
			"--min-replicas-max-lag", strconv.Itoa(MinReplicasMaxLag),
			// A replica that needs a full resync after a failover starts
			// it at once instead of after Redis's default 5 s wait for
			// more replicas: until it is back, the new master refuses
			// writes on ha.
			"--repl-diskless-sync-delay", "0")
	}
	if len(s.Snapshots) > 0 {
		args = append(args, "--save", strings.Join(s.Snapshots, " "))
	}
	if s.AOF != "" {
		args = append(args, "--appendonly", "yes", "--appendfsync", s.AOF,
			// A snapshot preamble makes the AOF load fast after a restart.
			"--aof-use-rdb-preamble", "yes")
	} else {
		args = append(args, "--appendonly", "no")
	}
	return args
}

// CertReloadArgs is the Redis command that makes a running Redis read its
// TLS files again: Redis 7 re-reads them whenever these settings are set,
// even to the same paths, and never on its own. cert-manager renews the
// certificate 15 days before it expires.
func CertReloadArgs() []string {
	return []string{"CONFIG", "SET",
		"tls-cert-file", CertDir + "/tls.crt",
		"tls-key-file", CertDir + "/tls.key",
		"tls-ca-cert-file", CertDir + "/ca.crt",
	}
}

// MinReplicasMaxLag is min-replicas-max-lag, in seconds: how long a
// master that lost touch with its replicas (a partition) goes on
// acknowledging writes. Replicas acknowledge every second.
const MinReplicasMaxLag = 3

// SentinelDownAfterMillis is how long the Sentinels wait before they call
// an unreachable master down (the operator's default is 5000): with a
// failover after that, a leader election and the role agent's relabel,
// writes come back within 10 s of a crash.
const SentinelDownAfterMillis = 3000

// CertReloadInterval is how often the reload sidecar runs CertReloadArgs.
const CertReloadInterval = "3600"

// RedisCommand is the Redis container's command.
func RedisCommand(s Settings) []string {
	return append([]string{"redis-server", ConfigFile}, RedisArgs(s)...)
}

func (p *Provisioner) failover(inst provisioners.Instance, s Settings, n Names) *unstructured.Unstructured {
	pvcSpec := map[string]any{
		"accessModes": []any{"ReadWriteOnce"},
		"resources":   map[string]any{"requests": map[string]any{"storage": fmt.Sprintf("%dGi", s.StorageGB)}},
	}
	if p.Config.StorageClass != "" {
		pvcSpec["storageClassName"] = p.Config.StorageClass
	}
	command := make([]any, 0, 32)
	for _, a := range RedisCommand(s) {
		command = append(command, a)
	}
	redis := map[string]any{
		"image":           p.Config.RedisImage,
		"imagePullPolicy": imagePullPolicy,
		"replicas":        int64(s.Replicas),
		"command":         command,
		"resources": map[string]any{
			"requests": map[string]any{"cpu": s.CPU, "memory": s.Memory},
			"limits":   map[string]any{"cpu": s.CPU, "memory": s.Memory},
		},
		"storage": map[string]any{
			"keepAfterDeletion": s.KeepVolumes,
			"persistentVolumeClaim": map[string]any{
				// The operator mounts the claim by this name at /data.
				"metadata": map[string]any{"name": "redis-data", "labels": provisioners.StringMap(inst.Labels())},
				"spec":     pvcSpec,
			},
		},
		"exporter": map[string]any{
			"enabled":         true,
			"image":           p.Config.ExporterImage,
			"imagePullPolicy": imagePullPolicy,
			"resources": map[string]any{
				"requests": map[string]any{"cpu": "25m", "memory": "32Mi"},
				"limits":   map[string]any{"cpu": "100m", "memory": "64Mi"},
			},
		},
		"extraVolumes": []any{map[string]any{
			"name":   certVolume,
			"secret": map[string]any{"secretName": n.Certificate},
		}, roleAgentTokenVolume()},
		"extraVolumeMounts": []any{map[string]any{
			"name": certVolume, "mountPath": CertDir, "readOnly": true,
		}},
		"extraContainers":    []any{certReloader(p.Config.RedisImage, n), roleAgent(p.Config.RoleAgentImage, inst, s, n)},
		"serviceAccountName": n.RoleAgent,
		// Strata's preStop hook (shutdownScript) instead of the
		// operator's, which promotes a replica while the old master goes
		// on acknowledging writes.
		"shutdownConfigMap": n.Shutdown,
	}
	if spread := zoneSpread(inst, n, "redis"); spread != nil {
		redis["topologySpreadConstraints"] = spread
	}
	if s.Restore != nil {
		// The Redis pods keep the role agent's account (the agent labels
		// the master with its token); on AWS that account carries the IAM
		// role the restore's fetch step assumes (roleAgentAccess).
		redis["initContainers"] = p.restoreInitContainers(inst, s, n)
	}
	sentinel := map[string]any{
		"image":           p.Config.RedisImage,
		"imagePullPolicy": imagePullPolicy,
		"replicas":        int64(s.Sentinels),
		"resources": map[string]any{
			"requests": map[string]any{"cpu": "50m", "memory": "64Mi"},
			"limits":   map[string]any{"cpu": "100m", "memory": "64Mi"},
		},
	}
	if spread := zoneSpread(inst, n, "sentinel"); spread != nil {
		sentinel["topologySpreadConstraints"] = spread
	}
	if s.Sentinels >= 3 {
		// customConfig replaces the operator's defaults (5000, 10000),
		// so both are given.
		sentinel["customConfig"] = []any{
			"down-after-milliseconds " + strconv.Itoa(SentinelDownAfterMillis),
			"failover-timeout 10000",
		}
	}
	if inst.Meshed {
		// Redis and Sentinel stay out of the mesh: Sentinel and
		// replication address pods by IP, and behind Envoy they see and
		// announce wrong addresses. Clients still get TLS from Redis itself.
		redis["podAnnotations"] = map[string]any{"sidecar.istio.io/inject": "false"}
		sentinel["podAnnotations"] = map[string]any{"sidecar.istio.io/inject": "false"}
	}
	o := provisioners.NewObject(inst, rfAPI, "RedisFailover", n.Failover, map[string]any{
		"auth":     map[string]any{"secretPath": n.AuthSecret},
		"redis":    redis,
		"sentinel": sentinel,
	})
	if inst.Meshed {
		// The operator copies the RedisFailover's labels to its pods:
		// ambient mode leaves pods with this label alone.
		labels := o.GetLabels()
		labels["istio.io/dataplane-mode"] = "none"
		o.SetLabels(labels)
	}
	return o
}

// certReloader is a sidecar of every Redis pod that has Redis re-read the
// mounted certificate every CertReloadInterval seconds, so that a renewed
// certificate is served without a restart. It talks to Redis on localhost
// with the password from the auth Secret (REDISCLI_AUTH keeps it off the
// command line).
func certReloader(image string, n Names) map[string]any {
	script := "while sleep " + CertReloadInterval + "; do redis-cli --no-auth-warning -h 127.0.0.1 -p " +
		strconv.Itoa(RedisPort) + " " + strings.Join(CertReloadArgs(), " ") + " || true; done"
	return map[string]any{
		"name":    "strata-tls-reload",
		"image":   image,
		"command": []any{"sh", "-c", script},
		"env": []any{map[string]any{
			"name":      "REDISCLI_AUTH",
			"valueFrom": map[string]any{"secretKeyRef": map[string]any{"name": n.AuthSecret, "key": PasswordKey}},
		}},
		"volumeMounts": []any{map[string]any{"name": certVolume, "mountPath": CertDir, "readOnly": true}},
		"resources": map[string]any{
			"requests": map[string]any{"cpu": "5m", "memory": "16Mi"},
			"limits":   map[string]any{"cpu": "50m", "memory": "32Mi"},
		},
	}
}

// zoneSpread spreads the pods of a component across availability zones as
// the plan says: softly on "preferred" (a cluster with fewer zones still
// schedules them; the operator already keeps them on different nodes when
// it can), strictly on "required", where losing a zone must leave a
// Sentinel quorum and a Redis to promote.
func zoneSpread(inst provisioners.Instance, n Names, component string) []any {
	when := map[string]string{"preferred": "ScheduleAnyway", "required": "DoNotSchedule"}[inst.Plan.Redis.ZoneSpread]
	if when == "" {
		return nil
	}
	return []any{map[string]any{
		"maxSkew": int64(1), "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": when,
		"labelSelector": map[string]any{"matchLabels": podSelector(n, component)},
	}}
}

// certificate is the TLS port's certificate, valid for every name of the
// TLS Service.
func (p *Provisioner) certificate(inst provisioners.Instance, n Names) *unstructured.Unstructured {
	return provisioners.ServerCertificate(inst, p.Config.ServerCertificates, n.Certificate, n.TLSService,
		provisioners.ServiceNames(n.TLSService, inst.Namespace), nil)
}

// podSelector selects the operator's pods of one component (redis or
// sentinel) of the instance.
func podSelector(n Names, component string) map[string]any {
	return map[string]any{labelName: n.Failover, labelComponent: component, labelPartOf: partOf}
}

// tlsService leads clients to the master's TLS port, on the pod the role
// agent labels master (the pod whose Redis is master and whom the
// Sentinels name). Sentinel cannot be used for discovery with TLS because it
// reports the master's plaintext port (the one the operator uses).
func tlsService(inst provisioners.Instance, n Names) *unstructured.Unstructured {
	sel := podSelector(n, "redis")
	sel[RoleLabel] = "master"
	return provisioners.NewObject(inst, "v1", "Service", n.TLSService, map[string]any{
		"type":     "ClusterIP",
		"selector": sel,
		// The role label is this Service's readiness: the agent sets it
		// only on the Redis whose ROLE is master and that the Sentinels
		// name, and removes it as soon as that Redis stops answering. The
		// operator's readiness probe (30 s initial delay) would otherwise
		// keep clients off a master whose container just restarted and took
		// its role back after a crash (34.6 s without writes, docs/redis.md).
		"publishNotReadyAddresses": true,
		"ports": []any{map[string]any{
			// tcp-: Istio treats the traffic as opaque TCP.
			"name": "tcp-redis-tls", "protocol": "TCP", "port": int64(TLSPort), "targetPort": int64(TLSPort),
		}},
	})
}

func (p *Provisioner) networkPolicies(inst provisioners.Instance, n Names) []*unstructured.Unstructured {
	// The instance's own pods: replicas replicate from the master and the
	// Sentinels watch and reconfigure the Redis pods; the Redis pods'
	// shutdown hook asks the Sentinels for a failover.
	instancePods := map[string]any{"podSelector": map[string]any{"matchLabels": map[string]any{labelName: n.Failover, labelPartOf: partOf}}}
	operator := provisioners.FromNamespace(p.Config.OperatorNamespace)
	redisRules := []any{
		provisioners.AllowFrom(provisioners.SameNamespace(), TLSPort),
		provisioners.AllowFrom(instancePods, RedisPort),
		provisioners.AllowFrom(operator, RedisPort),
		provisioners.AllowFrom(provisioners.FromNamespace(p.Config.MonitoringNamespace), ExporterPort),
	}
	sentinelRules := []any{
		provisioners.AllowFrom(instancePods, SentinelPort),
		provisioners.AllowFrom(operator, SentinelPort),
	}
	if p.takesSnapshots(inst) {
		// The snapshot job asks a Sentinel for a replica and copies
		// from it over replication's plaintext port.
		job := map[string]any{"podSelector": map[string]any{"matchLabels": map[string]any{labelSnapshotOf: n.Failover}}}
		redisRules = append(redisRules, provisioners.AllowFrom(job, RedisPort))
		sentinelRules = append(sentinelRules, provisioners.AllowFrom(job, SentinelPort))
	}
	return []*unstructured.Unstructured{
		provisioners.IngressPolicy(inst, n.RedisPolicy, podSelector(n, "redis"), redisRules...),
		provisioners.IngressPolicy(inst, n.SentinelPolicy, podSelector(n, "sentinel"), sentinelRules...),
	}
}

func podMonitor(inst provisioners.Instance, n Names) *unstructured.Unstructured {
	return provisioners.NewObject(inst, "monitoring.coreos.com/v1", "PodMonitor", n.Failover, map[string]any{
		"selector":            map[string]any{"matchLabels": podSelector(n, "redis")},
		"podMetricsEndpoints": []any{map[string]any{"port": exporterPortName}},
	})
}

// destinationRules tell meshed clients that the (out-of-mesh) Redis and
// Sentinel pods take no Istio mTLS, whatever a mesh-wide rule says: the
// connection carries Redis's own TLS instead.
func destinationRules(inst provisioners.Instance, n Names) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, svc := range []string{n.TLSService, n.SentinelService} {
		out = append(out, provisioners.NewObject(inst, "networking.istio.io/v1", "DestinationRule", svc, map[string]any{
			"host":          svc + "." + inst.Namespace + ".svc.cluster.local",
			"trafficPolicy": map[string]any{"tls": map[string]any{"mode": "DISABLE"}},
		}))
	}
	return out
}
