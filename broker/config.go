package broker

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/strata-dev/strata/binding"
	"github.com/strata-dev/strata/provisioners/kafka"
	"github.com/strata-dev/strata/provisioners/postgres"
	"github.com/strata-dev/strata/provisioners/redis"
)

// Config is the broker configuration file (YAML). Every field is optional;
// docs/configuration.md lists them with their defaults.
type Config struct {
	// BrokerNamespace keeps the broker's records; default: the pod's
	// namespace (POD_NAMESPACE).
	BrokerNamespace string `json:"brokerNamespace"`
	// DashboardURLTemplate renders each instance's dashboard_url from
	// {{.Namespace}}, {{.Name}}, {{.InstanceID}}; empty: no dashboard.
	DashboardURLTemplate string `json:"dashboardURLTemplate"`
	// InstancePage serves each instance's page, which its dashboard_url
	// opens (docs/instance-page.md); no externalURL: no page.
	InstancePage InstancePageConfig `json:"instancePage"`
	// PollIntervalSeconds is the Retry-After of in-progress operations.
	PollIntervalSeconds int `json:"pollIntervalSeconds"`
	// ReconcileIntervalSeconds is the pause between two passes of the
	// reconcile loop over the operations in progress.
	ReconcileIntervalSeconds int `json:"reconcileIntervalSeconds"`
	// Kubernetes is the client-side rate limits of the broker's
	// Kubernetes clients.
	Kubernetes KubernetesConfig `json:"kubernetes"`
	Tenancy    struct {
		CloudFoundryNamespaceTemplate string `json:"cloudFoundryNamespaceTemplate"`
		// DeniedNamespaces may never be tenants, beside those the platform
		// reserves (kube-*, default, the broker's, the shared clusters',
		// the operators').
		DeniedNamespaces []string `json:"deniedNamespaces"`
		// AllowedNamespaceSelector, when set, is a label selector every
		// tenant namespace the broker did not create must match.
		AllowedNamespaceSelector string `json:"allowedNamespaceSelector"`
		// Limits are what each tenant may hold (docs/tenancy.md).
		Limits TenancyLimits `json:"limits"`
	} `json:"tenancy"`
	Postgres postgres.Config `json:"postgres"`
	// Redis is the settings of RedisFailover instances.
	Redis redis.Config `json:"redis"`
	// Kafka is the platform's shared Strimzi cluster and the settings of
	// dedicated ones.
	Kafka kafka.Config `json:"kafka"`
	// OpenBao issues the bindings' credentials when its address is set;
	// without it bindings get CloudNativePG-managed logins (development).
	OpenBao binding.OpenBaoConfig `json:"openBao"`
	// Drills are the scheduled restore drills of the PostgreSQL plans
	// with backups (docs/disaster-recovery.md); on by default.
	Drills DrillsConfig `json:"drills"`
}

// LoadConfig reads the file (if any) over the defaults.
func LoadConfig(path string) (Config, error) {
	if path == "" {
		return ParseConfig(nil)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	c, err := ParseConfig(raw)
	if err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	// The static S3 keys of the backups and snapshots, when the file names
	// a directory.
	if err := c.Postgres.Backup.LoadCredentials("postgres.backup"); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	if err := c.Redis.Backup.LoadCredentials("redis.backup"); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// The intervals' defaults, which the HTTP handler and the reconcile loop
// also fall back to when given none.
const (
	DefaultPollIntervalSeconds      = 10
	DefaultReconcileIntervalSeconds = 5
)

// ParseConfig decodes a configuration strictly (an unknown key is an
// error naming it) over the defaults. The defaults are defined here and in
// the engines' DefaultConfig, and nowhere else: the chart leaves every key
// it does not need to set to the broker.
func ParseConfig(raw []byte) (Config, error) {
	c := Config{
		PollIntervalSeconds: DefaultPollIntervalSeconds, ReconcileIntervalSeconds: DefaultReconcileIntervalSeconds,
		Postgres: postgres.DefaultConfig(), Redis: redis.DefaultConfig(), Kafka: kafka.DefaultConfig(),
	}
	defaults := postgres.DefaultConfig()
	if err := yaml.UnmarshalStrict(raw, &c); err != nil {
		return c, err
	}
	if err := c.Kubernetes.Validate(); err != nil {
		return c, err
	}
	if err := c.Kafka.Validate(); err != nil {
		return c, err
	}
	if err := c.InstancePage.validate(c.DashboardURLTemplate); err != nil {
		return c, err
	}
	if _, err := c.Drills.Options(); err != nil {
		return c, err
	}
	// Filled after decoding: a burst left out follows the qps given.
	c.Kubernetes = c.Kubernetes.withDefaults()
	if c.Postgres.Images == nil {
		c.Postgres.Images = map[string]string{}
	}
	// A partial images map adds to (or overrides) the pinned defaults.
	for v, img := range defaults.Images {
		if _, ok := c.Postgres.Images[v]; !ok {
			c.Postgres.Images[v] = img
		}
	}
	// Empty Redis images mean the pinned ones.
	if c.Redis.RedisImage == "" {
		c.Redis.RedisImage = redis.DefaultConfig().RedisImage
	}
	if c.Redis.ExporterImage == "" {
		c.Redis.ExporterImage = redis.DefaultConfig().ExporterImage
	}
	if c.Redis.RoleAgentImage == "" {
		c.Redis.RoleAgentImage = redis.DefaultConfig().RoleAgentImage
	}
	if c.Postgres.OperatorNamespace == "" {
		c.Postgres.OperatorNamespace = defaults.OperatorNamespace
	}
	if c.Postgres.MonitoringNamespace == "" {
		c.Postgres.MonitoringNamespace = defaults.MonitoringNamespace
	}
	return c, nil
}

// InstancePageConfig configures the instance page.
type InstancePageConfig struct {
	// ExternalURL is the broker's HTTPS address as tenants' browsers reach
	// it (an Ingress's, say): dashboard_url is
	// <externalURL>/instances/<id>/page/<token>.
	ExternalURL string `json:"externalURL"`
	// PrometheusURL is the Prometheus whose HTTP API the page reads the
	// instance's metrics and alerts from; empty: the page says none is
	// configured.
	PrometheusURL string `json:"prometheusURL"`
}

func (c InstancePageConfig) validate(dashboardTemplate string) error {
	if c.ExternalURL == "" {
		if c.PrometheusURL != "" {
			return fmt.Errorf("instancePage.prometheusURL is set but instancePage.externalURL is not: without it there is no page")
		}
		return nil
	}
	if dashboardTemplate != "" {
		return fmt.Errorf("instancePage.externalURL and dashboardURLTemplate both set: an instance has one dashboard_url")
	}
	u, err := url.Parse(c.ExternalURL)
	// https only: the URL carries the page's token.
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("instancePage.externalURL %q must be an https URL with a host and no user, query or fragment", c.ExternalURL)
	}
	if c.PrometheusURL != "" {
		p, err := url.Parse(c.PrometheusURL)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("instancePage.prometheusURL %q must be an http or https URL with a host", c.PrometheusURL)
		}
	}
	return nil
}

// page builds the broker's InstancePage (nil without an externalURL); c
// is valid.
func (c InstancePageConfig) page() *InstancePage {
	if c.ExternalURL == "" {
		return nil
	}
	u, _ := url.Parse(strings.TrimSuffix(c.ExternalURL, "/"))
	p := &InstancePage{ExternalURL: u}
	if c.PrometheusURL != "" {
		// The URL was validated with the configuration.
		p.Prometheus, _ = NewPrometheus(c.PrometheusURL, 10*time.Second)
	}
	return p
}
