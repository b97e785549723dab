package broker

import "go.uber.org/zap"

// Options returns New's options for this configuration file, the broker's
// records being in namespace (the configuration's brokerNamespace wins).
// The binary builds its broker with it, and so do the benchmarks that
// measure the broker as shipped.
func (c Config) Options(namespace string, log *zap.Logger) Options {
	if c.BrokerNamespace != "" {
		namespace = c.BrokerNamespace
	}
	// Valid: ParseConfig checked it.
	drills, _ := c.Drills.Options()
	return Options{
		Namespace:                namespace,
		Postgres:                 c.Postgres,
		Redis:                    c.Redis,
		Kafka:                    c.Kafka,
		OpenBao:                  c.OpenBao,
		CFNamespaceTemplate:      c.Tenancy.CloudFoundryNamespaceTemplate,
		DeniedNamespaces:         c.Tenancy.DeniedNamespaces,
		AllowedNamespaceSelector: c.Tenancy.AllowedNamespaceSelector,
		Limits:                   c.Tenancy.Limits,
		DashboardURLTemplate:     c.DashboardURLTemplate,
		InstancePage:             c.InstancePage,
		Kubernetes:               c.Kubernetes,
		Log:                      log,
		Drills:                   drills,
	}
}
