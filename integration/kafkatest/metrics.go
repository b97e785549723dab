//go:build linux

package kafkatest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// JMXExporterVersion is the Prometheus JMX exporter Java agent the harness
// loads into Kafka nodes when a test asks for metrics
// (jmx-exporter/pom.xml says the same). Strimzi ships the same agent in
// its Kafka image and loads it when the Kafka resource's metricsConfig is
// jmxPrometheusExporter.
const JMXExporterVersion = "1.0.1"

// JMXAgentJar is where the agent is cached.
func JMXAgentJar() string {
	return filepath.Join(RepoRoot(), ".cache", "jmx-exporter", JMXExporterVersion, "jmx_prometheus_javaagent-"+JMXExporterVersion+".jar")
}

// EnsureJMXAgent fetches the JMX exporter agent with Maven unless it is
// cached, and returns its path.
func EnsureJMXAgent() (string, error) {
	jarMu.Lock()
	defer jarMu.Unlock()
	jar := JMXAgentJar()
	if _, err := os.Stat(jar); err == nil {
		return jar, nil
	}
	if _, err := exec.LookPath("mvn"); err != nil {
		return "", fmt.Errorf("mvn is not on PATH (%w): %s", err, InstallHint)
	}
	dir := filepath.Dir(jar)
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	tmp := fmt.Sprintf("%s.partial-%d", dir, os.Getpid())
	_ = os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "mvn", "-q", "-B", "-f", filepath.Join(RepoRoot(), "integration", "kafkatest", "jmx-exporter", "pom.xml"),
		"dependency:copy-dependencies", "-DexcludeTransitive=true", "-DoutputDirectory="+tmp)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("fetching the JMX exporter agent %s with Maven failed: %w\n%s\n(%s)", JMXExporterVersion, err, tail(string(out), 40), InstallHint)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	if err := addJars(tmp, dir); err != nil {
		return "", err
	}
	if _, err := os.Stat(jar); err != nil {
		return "", fmt.Errorf("maven fetched no %s: %w", filepath.Base(jar), err)
	}
	return jar, nil
}
