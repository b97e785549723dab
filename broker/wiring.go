package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"reflect"
	"text/template"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/strata-dev/strata/binding"
	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/kafka"
	"github.com/strata-dev/strata/provisioners/postgres"
	"github.com/strata-dev/strata/provisioners/redis"
)

// Options configure New.
type Options struct {
	// Namespace keeps the broker's records.
	Namespace           string
	Postgres            postgres.Config
	Redis               redis.Config
	Kafka               kafka.Config
	OpenBao             binding.OpenBaoConfig
	CFNamespaceTemplate string
	// DeniedNamespaces and AllowedNamespaceSelector restrict which
	// namespaces may be tenants, beyond those the platform reserves
	// (tenancy.deniedNamespaces, tenancy.allowedNamespaceSelector).
	DeniedNamespaces         []string
	AllowedNamespaceSelector string
	Limits                   TenancyLimits
	DashboardURLTemplate     string
	InstancePage             InstancePageConfig
	// Kubernetes sets the client-side rate limits of every client New
	// makes (zero fields: the shipped defaults).
	Kubernetes KubernetesConfig
	// Drills configure the scheduled restore drills; a zero Namespace
	// runs none.
	Drills DrillOptions
	Log    *zap.Logger
	Now    func() time.Time
	// PostgresAddress overrides host:port of an instance's primary as
	// OpenBao reaches it (tests run OpenBao and PostgreSQL on loopback).
	PostgresAddress func(provisioners.Instance) string
}

// New wires a broker to the cluster cfg points at: the one way the binary
// and the integration tests assemble it.
func New(cfg *rest.Config, o Options) (*Broker, error) {
	if o.Namespace == "" {
		return nil, fmt.Errorf("the broker namespace is not set: pass --namespace or set POD_NAMESPACE")
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if err := o.Kubernetes.Validate(); err != nil {
		return nil, err
	}
	// Every client below is built from this copy.
	cfg = ClientConfig(cfg, o.Kubernetes)
	core, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	kube, err := provisioners.NewKube(cfg)
	if err != nil {
		return nil, err
	}
	if err := o.Limits.Validate(); err != nil {
		return nil, err
	}
	if err := o.InstancePage.validate(o.DashboardURLTemplate); err != nil {
		return nil, err
	}
	var dash *template.Template
	if o.DashboardURLTemplate != "" {
		if dash, err = template.New("dashboard").Option("missingkey=error").Parse(o.DashboardURLTemplate); err != nil {
			return nil, fmt.Errorf("dashboardURLTemplate: %w", err)
		}
	}
	pg := &postgres.Provisioner{Config: o.Postgres}
	if o.Drills.Namespace != "" {
		// The broker writes each drill's marker into the instances.
		pg.Config.DrillClientNamespace = o.Namespace
	}
	if reflect.ValueOf(o.Kafka).IsZero() {
		o.Kafka = kafka.DefaultConfig()
	}
	kp := &kafka.Provisioner{Config: o.Kafka}
	if reflect.ValueOf(o.Redis).IsZero() {
		o.Redis = redis.DefaultConfig()
	}
	if o.Redis.ServerCertificates.IssuerName == "" {
		// One platform CA for every engine unless Redis names its own.
		o.Redis.ServerCertificates = o.Postgres.ServerCertificates
	}
	rp := &redis.Provisioner{Config: o.Redis}
	tenancy, err := NewTenancy(core, TenancyOptions{
		CFNamespaceTemplate: o.CFNamespaceTemplate,
		Reserved:            reservedNamespaces(o),
		Denied:              o.DeniedNamespaces,
		AllowedSelector:     o.AllowedNamespaceSelector,
	})
	if err != nil {
		return nil, err
	}
	var logins binding.CredentialSource = &binding.RoleSource{Kube: kube}
	var kv binding.KVStore // OpenBao's KV engine, for Redis passwords
	if o.OpenBao.Enabled() {
		bao, err := binding.NewOpenBaoSource(o.OpenBao, kube)
		if err != nil {
			return nil, err
		}
		if o.PostgresAddress != nil {
			bao.Address = o.PostgresAddress
		}
		bao.BrokerNamespace = o.Namespace
		bao.Shared = o.Postgres.Shared
		logins, kv = bao, bao
		pg.Config.CredentialManager = &postgres.CredentialManager{Namespace: o.OpenBao.Namespace}
		if pg.Config.ServerCertificates.IssuerName == "" {
			return nil, fmt.Errorf("openBao is configured but postgres.serverCertificates.issuerName is not: OpenBao verifies every PostgreSQL instance against the CA of that cert-manager issuer")
		}
	}
	baseline := provisioners.BaselineConfig{PlaintextPorts: postgres.MeshPlaintextPorts()}
	if o.OpenBao.Enabled() && o.OpenBao.Namespace != "" {
		// OpenBao logs in to meshed PostgreSQL instances (it must be in
		// the mesh then; docs/openbao.md).
		baseline.MeshIdentityNamespaces = []string{o.OpenBao.Namespace}
	}
	b := &Broker{
		Replica:   replicaName(),
		Baseline:  baseline,
		Catalog:   catalog.Default(),
		Validator: catalog.NewValidator(),
		Store:     NewStore(core, o.Namespace),
		Tenancy:   tenancy,
		Kube:      kube,
		Engines: map[catalog.Engine]Engine{
			catalog.EngineRedis: {
				Provisioner: rp,
				Binder:      &binding.RedisBinder{Kube: kube, KV: kv},
				Prefix:      "rd-",
			},
			catalog.EngineKafka: {
				Provisioner: kp,
				Binder:      &binding.KafkaBinder{Kube: kube, Engine: kp},
				Prefix:      "kafka-",
			},
			catalog.EnginePostgres: {
				Provisioner: pg,
				Binder:      &binding.PostgresBinder{Kube: kube, Logins: logins, CASecret: pg.ServerCASecret, Shared: o.Postgres.Shared},
				Prefix:      "pg-",
			},
		},
		Log:          o.Log,
		DashboardURL: dash,
		Page:         o.InstancePage.page(),
		Now:          o.Now,
		Limits:       o.Limits,
		Quotas: func(ctx context.Context, ns string) ([]corev1.ResourceQuota, error) {
			l, err := core.CoreV1().ResourceQuotas(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return nil, err
			}
			return l.Items, nil
		},
	}
	if o.Drills.MinInterval > 0 && o.Drills.MaxInterval > 0 {
		// The platform's bounds of an instance's drill interval, which
		// the plans' schemas publish and validate.
		b.Catalog.SetDrillBounds(o.Drills.MinInterval, o.Drills.MaxInterval)
	}
	if o.Drills.Namespace != "" {
		b.Drills = &Drills{B: b, Opts: o.Drills, Core: core, DB: PgxDrillDB{}}
	}
	return b, nil
}

// replicaName is the pod's name (the hostname) and a random suffix, so a
// restarted process is never mistaken for its predecessor.
func replicaName() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return host + "-" + hex.EncodeToString(b)
}

// reservedNamespaces are the namespaces the platform runs in: a tenant's
// instance there would sit beside (and be reachable by the network
// policies of) the broker, the shared clusters or the operators.
func reservedNamespaces(o Options) map[string]string {
	r := map[string]string{}
	add := func(ns, why string) {
		if ns != "" && r[ns] == "" {
			r[ns] = why
		}
	}
	add(o.Namespace, "it is the broker's own namespace")
	add(o.Kafka.Shared.Namespace, "it holds the shared Kafka cluster")
	add(o.Postgres.Shared.Namespace, "it holds the shared PostgreSQL cluster")
	add(o.Postgres.OperatorNamespace, "it runs the CloudNativePG operator")
	add(o.Redis.OperatorNamespace, "it runs the Redis operator")
	add(o.OpenBao.Namespace, "it runs OpenBao")
	add(o.Drills.Namespace, "it holds the restore drills' throwaway clusters")
	add(o.Postgres.MonitoringNamespace, "it runs the platform's monitoring")
	add(o.Redis.MonitoringNamespace, "it runs the platform's monitoring")
	add(o.Kafka.MonitoringNamespace, "it runs the platform's monitoring")
	return r
}
