//go:build linux

package redistest

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/strata-dev/strata/binding"
	"github.com/strata-dev/strata/integration/springtest"
)

// A real Spring Boot application started with nothing but a Redis binding
// Secret's keys writes and reads through Lettuce over TLS, verifying the
// server against the binding's CA; with another CA it refuses to connect.
// The server is a real redis-server running the standard plan's rendered
// command; the binding is rendered by binding.RedisSecret with the
// harness's address (localhost, as the test certificate names it) in
// place of the TLS Service's.
func TestSpringBootUsesTheRedisBinding(t *testing.T) {
	g := NewWithT(t)
	jar := springtest.Jar(t)
	s, certs := startPlan(t, "standard", nil)
	data := binding.RedisSecret(binding.RedisConn{
		SecretName: "binding-redis-check", Host: "localhost", Port: s.TLSPort,
		Password: testPassword, CAPEM: string(certs.CAPEM),
	})
	dir := filepath.Join(t.TempDir(), "binding")
	springtest.WriteBinding(t, dir, data)
	r, out, err := springtest.Run(t, jar, dir, 3*time.Minute)
	g.Expect(err).NotTo(HaveOccurred(), out)
	g.Expect(r.Redis).NotTo(BeNil(), out)
	g.Expect(r.Postgres).To(BeNil())
	g.Expect(r.Redis.Read).To(Equal(r.Redis.Wrote))
	g.Expect(r.Redis.SSL).To(BeTrue())
	g.Expect(r.Redis.VerifyPeer).To(BeTrue())
	g.Expect(r.Redis.Sentinel).To(BeFalse())
	g.Expect(r.Redis.Host).To(Equal("localhost"))
	g.Expect(r.Redis.Port).To(Equal(s.TLSPort))
	g.Expect(r.Redis.ServerVersion).To(HavePrefix("7."))
	g.Expect(r.SSLBundles).To(HaveKey("binding-redis-check"))
	g.Expect(r.SSLBundles["binding-redis-check"].TrustedSubjects).To(ContainElement(ContainSubstring("strata test CA")))

	// The same binding with a CA that did not sign the server: no connection.
	other := NewCerts(t, filepath.Join(t.TempDir(), "other"))
	data = binding.RedisSecret(binding.RedisConn{
		SecretName: "binding-redis-check", Host: "localhost", Port: s.TLSPort,
		Password: testPassword, CAPEM: string(other.CAPEM),
	})
	dir = filepath.Join(t.TempDir(), "binding-other-ca")
	springtest.WriteBinding(t, dir, data)
	_, out, err = springtest.Run(t, jar, dir, 3*time.Minute)
	g.Expect(err).To(HaveOccurred(), "an untrusted server must be refused")
	g.Expect(out).To(MatchRegexp(`(?i)(certificate|PKIX|SSL)`), fmt.Sprintf("%.4000s", out))
}

// Why Redis bindings carry no Sentinel keys: with TLS on, Spring Boot's
// Lettuce client uses TLS to the Sentinels and then to the master address
// they report, which is the plaintext port the operator's Sentinels
// monitor. Here the Sentinels even have a TLS port, and the application
// still fails.
func TestSpringBootCannotUseSentinelDiscoveryWithTLS(t *testing.T) {
	g := NewWithT(t)
	jar := springtest.Jar(t)
	s, certs := startPlan(t, "standard", nil)
	var nodes []string
	for i := range 3 {
		sen := StartSentinelTLS(t, filepath.Join(t.TempDir(), fmt.Sprintf("sentinel-%d", i)), s.Port, testPassword, certs)
		nodes = append(nodes, fmt.Sprintf("localhost:%d", sen.TLSPort))
	}
	data := binding.RedisSecret(binding.RedisConn{
		SecretName: "binding-sentinel", Host: "localhost", Port: s.TLSPort, Password: testPassword, CAPEM: string(certs.CAPEM),
	})
	data["spring.data.redis.sentinel.master"] = "mymaster"
	data["spring.data.redis.sentinel.nodes"] = strings.Join(nodes, ",")
	dir := filepath.Join(t.TempDir(), "binding")
	springtest.WriteBinding(t, dir, data)
	_, out, err := springtest.Run(t, jar, dir, 3*time.Minute)
	g.Expect(err).To(HaveOccurred(), "if this starts working, Sentinel keys can go back into the binding")
	var causes []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "Caused by") {
			causes = append(causes, strings.TrimSpace(line))
		}
	}
	t.Logf("why:\n%s", strings.Join(causes, "\n"))
	// Lettuce writes the address as 127.0.0.1/<unresolved>:<port>.
	g.Expect(strings.Join(causes, "\n")).To(MatchRegexp(`Unable to connect to 127\.0\.0\.1[^:\s]*:%d`, s.Port),
		"the failure is at the master's plaintext address that Sentinel reported")
}
