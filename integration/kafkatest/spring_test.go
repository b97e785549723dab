//go:build linux

package kafkatest

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/strata-dev/strata/integration/springtest"
)

// A stock Spring Boot application with Spring Kafka and Spring Cloud
// Stream's Kafka binder sends and receives through a function binding with
// nothing but the binding Secret's keys (configtree).
func TestSpringCloudStreamWithTheBinding(t *testing.T) {
	g := NewWithT(t)
	e := newEnv(t)
	inst := e.instance(t, "team-a", "events", "orders")
	b := e.bind(t, inst, nil)
	jar := springtest.Jar(t)
	dir := filepath.Join(t.TempDir(), "binding")
	springtest.WriteBinding(t, dir, b)
	r, out, err := springtest.Run(t, jar, dir, 3*time.Minute)
	g.Expect(err).NotTo(HaveOccurred(), "application output:\n%s", tailLines(out, 80))
	g.Expect(r.Kafka).NotTo(BeNil(), out)
	k := r.Kafka
	g.Expect(k.Topic).To(Equal(b["strata.kafka.topics.events"]))
	g.Expect(k.Group).To(Equal(b["spring.kafka.consumer.group-id"]))
	g.Expect(k.TemplateSecurityProtocol).To(Equal("SASL_SSL"))
	// Spring Kafka's clients trust the cluster CA through the binding's SSL
	// bundle (spring.kafka.ssl.bundle).
	g.Expect(k.TemplateSslEngineFactory).To(ContainSubstring("SslBundleSslEngineFactory"))
	g.Expect(k.Received).To(ContainElement(ContainSubstring(k.SentViaKafkaTemplate)))
	g.Expect(k.Received).To(ContainElement(ContainSubstring(k.SentViaStreamBridge)))
	// The binding's SSL bundle (the cluster CA) loaded.
	g.Expect(r.SSLBundles).To(HaveKey(b["spring.kafka.ssl.bundle"]))
	g.Expect(r.SSLBundles[b["spring.kafka.ssl.bundle"]].TrustedSubjects).To(ContainElement(ContainSubstring("strata-test-cluster-ca")))
}

func tailLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
