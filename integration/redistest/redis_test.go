package redistest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	goredis "github.com/redis/go-redis/v9"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
	rd "github.com/strata-dev/strata/provisioners/redis"
)

const testPassword = "s3cret-Strata_pw"

// rendered builds an instance of the plan (after change, if any, on a copy
// of the plan) and returns its RedisFailover.
func rendered(t *testing.T, plan string, params map[string]any, change func(*catalog.RedisPlan)) *unstructured.Unstructured {
	t.Helper()
	svc := catalog.RedisService()
	p := svc.PlanByName(plan)
	if change != nil {
		r := *p.Redis
		change(&r)
		p.Redis = &r
	}
	inst := provisioners.Instance{
		ID: "0b7e3c1a-5d2f-4e6a-8b9c-1d2e3f4a5b6c", Name: "rd-test", Namespace: "team-a",
		Service: &svc, Plan: p, Params: params,
	}
	cfg := rd.DefaultConfig()
	cfg.ServerCertificates.IssuerName = "test-ca"
	objs, err := (&rd.Provisioner{Config: cfg}).Build(inst)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	for _, o := range objs {
		if o.GetKind() == "RedisFailover" {
			return o
		}
	}
	t.Fatal("no RedisFailover rendered")
	return nil
}

func startPlan(t *testing.T, plan string, change func(*catalog.RedisPlan)) (*Server, *Certs) {
	t.Helper()
	dir := t.TempDir()
	certs := NewCerts(t, filepath.Join(dir, "tls"))
	s := StartServer(t, ServerOptions{
		Command: CommandOf(t, rendered(t, plan, nil, change)), Certs: certs,
		Password: testPassword, Dir: filepath.Join(dir, "pod-0"),
	})
	return s, certs
}

func configValue(t *testing.T, c *goredis.Client, key string) string {
	t.Helper()
	m, err := c.ConfigGet(context.Background(), key).Result()
	if err != nil {
		t.Fatalf("CONFIG GET %s: %v", key, err)
	}
	return m[key]
}

func TestTLSPortServesTheIssuedCertificate(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	s, certs := startPlan(t, "standard", nil)

	c := s.TLS(certs, testPassword)
	defer c.Close()
	g.Expect(c.Set(ctx, "k", "v", 0).Err()).To(Succeed())
	g.Expect(c.Get(ctx, "k").Val()).To(Equal("v"))

	// The certificate presented is the one issued for the instance.
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.TLSPort), certs.TLSConfig())
	g.Expect(err).NotTo(HaveOccurred())
	state := conn.ConnectionState()
	_ = conn.Close()
	g.Expect(state.PeerCertificates[0].Equal(certs.Leaf)).To(BeTrue())
	g.Expect(state.Version).To(BeNumerically(">=", tls.VersionTLS12))

	// TLS 1.1 and below are refused.
	old := certs.TLSConfig()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	_, err = tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.TLSPort), old)
	g.Expect(err).To(HaveOccurred())

	// A client that does not trust the CA refuses the server.
	untrusted := goredis.NewClient(&goredis.Options{
		Addr: fmt.Sprintf("127.0.0.1:%d", s.TLSPort), Password: testPassword,
		TLSConfig: &tls.Config{ServerName: "localhost", MinVersion: tls.VersionTLS12}, MaxRetries: -1,
	})
	defer untrusted.Close()
	g.Expect(untrusted.Ping(ctx).Err()).To(MatchError(ContainSubstring("certificate")))

	// Plaintext on the TLS port gets no answer.
	plain := goredis.NewClient(&goredis.Options{
		Addr: fmt.Sprintf("127.0.0.1:%d", s.TLSPort), Password: testPassword,
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, MaxRetries: -1,
	})
	defer plain.Close()
	g.Expect(plain.Ping(ctx).Err()).To(HaveOccurred())
}

func TestPasswordIsRequired(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	s, certs := startPlan(t, "dev-lite", nil)
	for _, c := range []*goredis.Client{s.TLS(certs, ""), goredis.NewClient(&goredis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", s.Port), MaxRetries: -1})} {
		err := c.Get(ctx, "k").Err()
		g.Expect(err).To(MatchError(ContainSubstring("NOAUTH")))
		_ = c.Close()
	}
	wrong := s.TLS(certs, "not-the-password")
	defer wrong.Close()
	g.Expect(wrong.Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")))
}

// The rendered flags reach redis-server at start: the plan's save points
// replace the operator's, maxmemory and the policy are set.
func TestRenderedSettingsAreInEffectAtStart(t *testing.T) {
	for _, plan := range []string{"dev-lite", "standard", "ha"} {
		t.Run(plan, func(t *testing.T) {
			g := NewWithT(t)
			s, _ := startPlan(t, plan, nil)
			c := s.Plain()
			defer c.Close()
			svc := catalog.RedisService()
			p := svc.PlanByName(plan).Redis
			g.Expect(configValue(t, c, "save")).To(Equal(strings.Join(p.Persistence.Snapshots, " ")))
			wantAOF := "no"
			if p.Persistence.AOF != "" {
				wantAOF = "yes"
				g.Expect(configValue(t, c, "appendfsync")).To(Equal(p.Persistence.AOF))
			}
			g.Expect(configValue(t, c, "appendonly")).To(Equal(wantAOF))
			g.Expect(configValue(t, c, "maxmemory-policy")).To(Equal(catalog.DefaultMaxmemoryPolicy))
			g.Expect(configValue(t, c, "maxmemory")).NotTo(Equal("0"))
			g.Expect(configValue(t, c, "tls-auth-clients")).To(Equal("no"))
		})
	}
}

// A write acknowledged under the AOF survives SIGKILL and a restart, for
// both fsync policies as rendered.
func TestAcknowledgedWritesSurviveKill9UnderAOF(t *testing.T) {
	for _, plan := range []string{"standard", "ha"} {
		t.Run(plan, func(t *testing.T) {
			g := NewWithT(t)
			ctx := context.Background()
			s, certs := startPlan(t, plan, nil)
			c := s.TLS(certs, testPassword)
			const n = 500
			for i := range n {
				g.Expect(c.Set(ctx, fmt.Sprintf("key:%d", i), i, 0).Err()).To(Succeed())
			}
			_ = c.Close()
			s.Kill()
			s.Restart()
			c = s.TLS(certs, testPassword)
			defer c.Close()
			g.Expect(c.DBSize(ctx).Val()).To(Equal(int64(n)))
			g.Expect(c.Get(ctx, fmt.Sprintf("key:%d", n-1)).Val()).To(Equal(fmt.Sprint(n - 1)))
			g.Expect(filepath.Join(s.DataDir, "appendonlydir")).To(BeADirectory())
		})
	}
}

// The RDB snapshot is written as configured (a one-second save point on a
// copy of dev-lite, which has no AOF), and it is what a restart loads.
func TestRDBSnapshotIsWrittenAndLoaded(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	s, certs := startPlan(t, "dev-lite", func(r *catalog.RedisPlan) { r.Persistence.Snapshots = []string{"1 1"}; r.Persistence.AOF = "" })
	c := s.TLS(certs, testPassword)
	g.Expect(configValue(t, s.Plain(), "save")).To(Equal("1 1"))
	g.Expect(c.Set(ctx, "snap", "shot", 0).Err()).To(Succeed())
	_ = c.Close()
	rdb := filepath.Join(s.DataDir, "dump.rdb")
	g.Eventually(func() error { _, err := os.Stat(rdb); return err }).WithTimeout(20 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
	// Wait until the snapshot holds the write (no changes pending).
	plain := s.Plain()
	g.Eventually(func() string {
		info := plain.Info(ctx, "persistence").Val()
		for _, line := range strings.Split(info, "\r\n") {
			if strings.HasPrefix(line, "rdb_changes_since_last_save:") {
				return strings.TrimPrefix(line, "rdb_changes_since_last_save:")
			}
		}
		return ""
	}).WithTimeout(20 * time.Second).WithPolling(200 * time.Millisecond).Should(Equal("0"))
	_ = plain.Close()
	s.Kill()
	s.Restart()
	c = s.TLS(certs, testPassword)
	defer c.Close()
	g.Expect(c.Get(ctx, "snap").Val()).To(Equal("shot"))
}

// restartWithPlan stops the pod and starts it again on the same volume and
// ports with another plan's command, as the operator rolls a pod.
func restartWithPlan(t *testing.T, s *Server, certs *Certs, command []string) *Server {
	t.Helper()
	s.Kill()
	return StartServer(t, ServerOptions{Command: command, Certs: certs, Password: testPassword, Dir: s.Dir, Port: s.Port, TLSPort: s.TLSPort})
}

// Moving from dev-lite to standard restarts Redis with the standard
// plan's command on the same volume: the data stays.
func TestPlanChangeKeepsData(t *testing.T) {
	for _, move := range [][2]string{{"dev-lite", "standard"}, {"standard", "ha"}} {
		t.Run(move[0]+"-to-"+move[1], func(t *testing.T) {
			g := NewWithT(t)
			ctx := context.Background()
			s, certs := startPlan(t, move[0], nil)
			c := s.Plain()
			g.Expect(c.Set(ctx, "before", "upgrade", 0).Err()).To(Succeed())
			// The operator's shutdown hook runs SAVE before a pod stops.
			g.Expect(c.Save(ctx).Err()).To(Succeed())
			_ = c.Close()
			s2 := restartWithPlan(t, s, certs, CommandOf(t, rendered(t, move[1], nil, nil)))
			c = s2.Plain()
			defer c.Close()
			svc := catalog.RedisService()
			g.Expect(configValue(t, c, "appendfsync")).To(Equal(svc.PlanByName(move[1]).Redis.Persistence.AOF))
			g.Expect(c.Get(ctx, "before").Val()).To(Equal("upgrade"))
		})
	}
}

// Why every plan has an append-only file: Redis 7 started with
// appendonly yes on a volume with only an RDB snapshot ignores the
// snapshot and starts empty. CheckUpdate refuses such a move.
func TestStartingWithAOFOnSnapshotOnlyDataStartsEmpty(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	noAOF := func(r *catalog.RedisPlan) { r.Persistence.AOF = "" }
	s, certs := startPlan(t, "dev-lite", noAOF)
	c := s.Plain()
	g.Expect(configValue(t, c, "appendonly")).To(Equal("no"))
	g.Expect(c.Set(ctx, "before", "upgrade", 0).Err()).To(Succeed())
	g.Expect(c.Save(ctx).Err()).To(Succeed())
	_ = c.Close()
	s2 := restartWithPlan(t, s, certs, CommandOf(t, rendered(t, "standard", nil, nil)))
	c = s2.Plain()
	defer c.Close()
	g.Expect(c.Exists(ctx, "before").Val()).To(Equal(int64(0)), "if Redis now loads the snapshot, CheckUpdate's refusal can be relaxed")
}

// The standard plan's topology on loopback: a master and a replica as
// rendered, three Sentinels with the operator's quorum. Killing the master
// makes the Sentinels promote the replica, and what was written before is
// read from the new master found through Sentinel, and on its TLS port.
func TestSentinelFailoverKeepsAcknowledgedData(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	rf := rendered(t, "standard", nil, nil)
	replicas, _, _ := unstructured.NestedInt64(rf.Object, "spec", "redis", "replicas")
	sentinels, _, _ := unstructured.NestedInt64(rf.Object, "spec", "sentinel", "replicas")
	g.Expect(replicas).To(Equal(int64(2)))
	g.Expect(sentinels).To(Equal(int64(3)))
	cmd := CommandOf(t, rf)
	dir := t.TempDir()
	certs := NewCerts(t, filepath.Join(dir, "tls"))

	var pods []*Server
	for i := range int(replicas) {
		o := ServerOptions{Command: cmd, Certs: certs, Password: testPassword, Dir: filepath.Join(dir, fmt.Sprintf("pod-%d", i))}
		if i > 0 {
			o.ReplicaOf = pods[0].Port
		}
		pods = append(pods, StartServer(t, o))
	}
	master := pods[0]
	var addrs []string
	for i := range int(sentinels) {
		addrs = append(addrs, StartSentinel(t, filepath.Join(dir, fmt.Sprintf("sentinel-%d", i)), master.Port, testPassword).Addr())
	}

	// Every replica has finished its first sync.
	for _, r := range pods[1:] {
		rc := r.Plain()
		g.Eventually(func() string { return rc.Info(ctx, "replication").Val() }).
			WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(ContainSubstring("master_link_status:up"))
		_ = rc.Close()
	}

	mc := master.TLS(certs, testPassword)
	for i := range 100 {
		g.Expect(mc.Set(ctx, fmt.Sprintf("order:%d", i), i, 0).Err()).To(Succeed())
	}
	// Acknowledged by the replica too.
	g.Expect(mc.Do(ctx, "WAIT", replicas-1, 4000).Val()).To(Equal(int64(replicas - 1)))
	_ = mc.Close()

	// The Sentinels know the replica and each other before the master goes.
	sc := goredis.NewSentinelClient(&goredis.Options{Addr: addrs[0]})
	defer sc.Close()
	g.Eventually(func() int {
		m, err := sc.Master(ctx, rd.MasterName).Result()
		if err != nil {
			return -1
		}
		var n int
		_, _ = fmt.Sscan(m["num-other-sentinels"], &n)
		return n
	}).WithTimeout(20 * time.Second).WithPolling(200 * time.Millisecond).Should(Equal(int(sentinels) - 1))
	g.Eventually(func() int { return len(sc.Replicas(ctx, rd.MasterName).Val()) }).WithTimeout(20 * time.Second).Should(Equal(int(replicas) - 1))

	// Sentinel reports the plaintext port: the one the operator and the
	// Sentinels use. TLS clients therefore cannot follow Sentinel
	// discovery; bindings use the master TLS Service instead.
	addr := sc.GetMasterAddrByName(ctx, rd.MasterName).Val()
	g.Expect(addr).To(Equal([]string{"127.0.0.1", fmt.Sprint(master.Port)}))

	master.Kill()
	newPort := fmt.Sprint(pods[1].Port)
	g.Eventually(func() []string { return sc.GetMasterAddrByName(ctx, rd.MasterName).Val() }).
		WithTimeout(60 * time.Second).WithPolling(250 * time.Millisecond).Should(Equal([]string{"127.0.0.1", newPort}))

	fc := goredis.NewFailoverClient(&goredis.FailoverOptions{MasterName: rd.MasterName, SentinelAddrs: addrs, Password: testPassword})
	defer fc.Close()
	g.Eventually(func() error { return fc.Set(ctx, "after", "failover", 0).Err() }).WithTimeout(30 * time.Second).Should(Succeed())
	g.Expect(fc.Get(ctx, "order:99").Val()).To(Equal("99"))
	g.Expect(fc.DBSize(ctx).Val()).To(Equal(int64(101)))

	tc := pods[1].TLS(certs, testPassword)
	defer tc.Close()
	g.Expect(tc.Get(ctx, "order:0").Val()).To(Equal("0"))
	info := tc.Info(ctx, "replication").Val()
	g.Expect(info).To(ContainSubstring("role:master"))
}

// reloadArgs is the reload sidecar's redis-cli command as rendered, with the
// certificate directory mapped like the server's.
func reloadArgs(t *testing.T, rf *unstructured.Unstructured, certDir string) []any {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(rf.Object, "spec", "redis", "extraContainers")
	var script string
	for _, c := range cs {
		if c := c.(map[string]any); c["name"] == "strata-tls-reload" {
			script = c["command"].([]any)[2].(string)
		}
	}
	if script == "" {
		t.Fatalf("no strata-tls-reload container among the %d extra containers", len(cs))
	}
	want := strings.Join(rd.CertReloadArgs(), " ")
	if !strings.Contains(script, want) {
		t.Fatalf("the sidecar's script %q does not run %q", script, want)
	}
	var out []any
	for _, a := range rd.CertReloadArgs() {
		out = append(out, strings.Replace(a, rd.CertDir, certDir, 1))
	}
	return out
}

// A certificate cert-manager renews is served after the reload sidecar's
// command, without a restart; before it, Redis still serves the old one.
func TestRenewedCertificateIsServedAfterReload(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	rf := rendered(t, "ha", nil, nil)
	dir := t.TempDir()
	certs := NewCerts(t, filepath.Join(dir, "tls"))
	s := StartServer(t, ServerOptions{Command: CommandOf(t, rf), Certs: certs, Password: testPassword, Dir: filepath.Join(dir, "pod-0")})
	served := func() *x509.Certificate {
		conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.TLSPort), certs.TLSConfig())
		g.Expect(err).NotTo(HaveOccurred())
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0]
	}
	first := certs.Leaf
	g.Expect(served().Equal(first)).To(BeTrue())
	certs.Renew(t)
	g.Expect(served().Equal(first)).To(BeTrue(), "Redis does not re-read its certificate on its own")
	c := s.Plain()
	defer c.Close()
	g.Expect(c.Do(ctx, reloadArgs(t, rf, certs.Dir)...).Err()).To(Succeed())
	g.Expect(served().Equal(certs.Leaf)).To(BeTrue())
	tc := s.TLS(certs, testPassword)
	defer tc.Close()
	g.Expect(tc.Ping(ctx).Err()).To(Succeed())
}

// The rendered command alone (no role agent): on standard and ha a master
// without a replica refuses writes (min-replicas-to-write 1), so a master
// whose replica was promoted cannot acknowledge writes the new master never
// sees; with a replica attached it accepts them. dev-lite has no replica
// and no such rule.
func TestLoneMasterRefusesWritesAsRendered(t *testing.T) {
	ctx := context.Background()
	for _, plan := range []string{"dev-lite", "standard", "ha"} {
		t.Run(plan, func(t *testing.T) {
			g := NewWithT(t)
			dir := t.TempDir()
			certs := NewCerts(t, filepath.Join(dir, "tls"))
			cmd := CommandOf(t, rendered(t, plan, nil, nil))
			master := StartServer(t, ServerOptions{Command: cmd, Certs: certs, Password: testPassword, Dir: filepath.Join(dir, "pod-0"), KeepMinReplicasToWrite: true})
			c := master.TLS(certs, testPassword)
			defer c.Close()
			err := c.Set(ctx, "k", "v", 0).Err()
			if plan == "dev-lite" {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(MatchError(ContainSubstring("NOREPLICAS")), "a lone %s master must refuse writes", plan)
			StartServer(t, ServerOptions{Command: cmd, Certs: certs, Password: testPassword, Dir: filepath.Join(dir, "pod-1"), ReplicaOf: master.Port, KeepMinReplicasToWrite: true})
			g.Eventually(func() error { return c.Set(ctx, "k", "v", 0).Err() }, 20*time.Second, 200*time.Millisecond).Should(Succeed(), "with a replica attached")
		})
	}
}
