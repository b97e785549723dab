package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/strata-dev/strata/provisioners/postgres"
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
	// PollIntervalSeconds is the Retry-After of in-progress operations.
	PollIntervalSeconds int `json:"pollIntervalSeconds"`
	Tenancy             struct {
		CloudFoundryNamespaceTemplate string `json:"cloudFoundryNamespaceTemplate"`
	} `json:"tenancy"`
	Postgres postgres.Config `json:"postgres"`
}

// loadConfig reads the file (if any) over the defaults.
func loadConfig(path string) (Config, error) {
	c := Config{PollIntervalSeconds: 10, Postgres: postgres.DefaultConfig()}
	if path == "" {
		return c, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("read config: %w", err)
	}
	defaults := c.Postgres
	if err := yaml.UnmarshalStrict(raw, &c); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	// A partial images map adds to (or overrides) the pinned defaults.
	for v, img := range defaults.Images {
		if _, ok := c.Postgres.Images[v]; !ok {
			c.Postgres.Images[v] = img
		}
	}
	if c.Postgres.OperatorNamespace == "" {
		c.Postgres.OperatorNamespace = defaults.OperatorNamespace
	}
	if c.Postgres.MonitoringNamespace == "" {
		c.Postgres.MonitoringNamespace = defaults.MonitoringNamespace
	}
	return c, nil
}

// fileCredentials reads the broker's basic-auth user and password from
// <dir>/username and <dir>/password (a mounted Secret), re-reading at most
// every 10 seconds so a rotated Secret takes effect without a restart.
func fileCredentials(dir string) func() (string, string, error) {
	var (
		mu         sync.Mutex
		user, pass string
		read       time.Time
	)
	return func() (string, string, error) {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(read) < 10*time.Second && user != "" {
			return user, pass, nil
		}
		u, err := os.ReadFile(filepath.Join(dir, "username"))
		if err != nil {
			return "", "", err
		}
		p, err := os.ReadFile(filepath.Join(dir, "password"))
		if err != nil {
			return "", "", err
		}
		user, pass = strings.TrimSpace(string(u)), strings.TrimSpace(string(p))
		if user == "" || pass == "" {
			return "", "", fmt.Errorf("%s/username and %s/password must not be empty", dir, dir)
		}
		read = time.Now()
		return user, pass, nil
	}
}

// envCredentials takes the user and password from the environment.
func envCredentials(user, pass string) func() (string, string, error) {
	return func() (string, string, error) {
		if user == "" || pass == "" {
			return "", "", fmt.Errorf("set STRATA_BROKER_USERNAME and STRATA_BROKER_PASSWORD, or --credentials-dir")
		}
		return user, pass, nil
	}
}
