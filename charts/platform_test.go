package charts_test

import (
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/strata-dev/strata/charts"
	"github.com/strata-dev/strata/provisioners/kafka"
)

// The platform chart's shared Kafka cluster is the one the broker's
// default configuration names, with the listener, authentication and
// authorization its bindings rely on, and the same metrics rules as the
// dedicated clusters.
func TestPlatformSharedKafka(t *testing.T) {
	g := NewWithT(t)
	objs, err := charts.RenderPlatform(nil, "strata-system")
	g.Expect(err).NotTo(HaveOccurred())
	shared := kafka.DefaultConfig().Shared
	k := one(t, objs, "Kafka")
	g.Expect(get(t, k, "metadata", "name")).To(Equal(shared.Name))
	g.Expect(get(t, k, "metadata", "namespace")).To(Equal(shared.Namespace))
	g.Expect(shared.BootstrapServers).To(Equal(shared.Name + "-kafka-bootstrap." + shared.Namespace + ".svc:9093"))
	l := get(t, k, "spec", "kafka", "listeners", 0)
	g.Expect(get(t, l, "name")).To(Equal(shared.Listener))
	g.Expect(get(t, l, "port")).To(Equal(int64(kafka.ListenerPort)))
	g.Expect(get(t, l, "tls")).To(BeTrue())
	g.Expect(get(t, l, "authentication", "type")).To(Equal("scram-sha-512"))
	g.Expect(get(t, k, "spec", "kafka", "authorization", "type")).To(Equal("simple"))
	g.Expect(get(t, k, "spec", "kafka", "config", "min.insync.replicas")).To(Equal(int64(2)))

	pools := find(objs, "KafkaNodePool")
	g.Expect(pools).To(HaveLen(2))
	roles := []string{}
	for _, p := range pools {
		g.Expect(get(t, p, "metadata", "labels", "strimzi.io/cluster")).To(Equal(shared.Name))
		roles = append(roles, strs(get(t, p, "spec", "roles"))...)
	}
	g.Expect(roles).To(ConsistOf("controller", "broker"), "dedicated KRaft controllers")

	file, err := os.ReadFile(filepath.Join(charts.PlatformChartDir(), "files", "kafka-metrics-config.yml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(file)).To(Equal(kafka.JMXExporterConfig), "the chart's metrics rules are the engine's")
	g.Expect(get(t, one(t, objs, "ConfigMap"), "data", "kafka-metrics-config.yml")).To(Equal(kafka.JMXExporterConfig))
}

func TestPlatformLint(t *testing.T) {
	lintChart(t, charts.PlatformChartDir(), nil)
}
