package advisor_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/strata-dev/strata/broker/advisor"
	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/integration/redistest"
	"github.com/strata-dev/strata/provisioners"
	rd "github.com/strata-dev/strata/provisioners/redis"
)

const redisPassword = "Redis-pw-8d2f6b0a4c"

// TestRedisAdvisorOnRealServer runs redis-server with the command the
// dev-lite plan renders, fills it with a big hash, a big string and many
// small keys, and checks what the advisor says through the TLS port with
// the binding's password.
func TestRedisAdvisorOnRealServer(t *testing.T) {
	g := NewWithT(t)
	svc := catalog.RedisService()
	inst := provisioners.Instance{
		ID: "3f1e2d4c-5b6a-4789-8a0b-1c2d3e4f5a6b", Name: "rd-advisor", Namespace: "team-a",
		Service: &svc, Plan: svc.PlanByName("dev-lite"),
	}
	cfg := rd.DefaultConfig()
	cfg.ServerCertificates.IssuerName = "test-ca"
	objs, err := (&rd.Provisioner{Config: cfg}).Build(inst)
	g.Expect(err).NotTo(HaveOccurred())
	var command []string
	for _, o := range objs {
		if o.GetKind() == "RedisFailover" {
			command = redistest.CommandOf(t, o)
		}
	}
	g.Expect(command).NotTo(BeNil(), "no RedisFailover rendered")
	dir := t.TempDir()
	certs := redistest.NewCerts(t, filepath.Join(dir, "tls"))
	srv := redistest.StartServer(t, redistest.ServerOptions{Command: command, Certs: certs, Password: redisPassword, Dir: filepath.Join(dir, "pod-0")})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The operator's side: a small maxmemory, so "near the limit" takes
	// megabytes, not the plan's hundreds.
	op := srv.Plain()
	defer op.Close()
	g.Expect(op.ConfigSet(ctx, "maxmemory", "24mb").Err()).To(Succeed())
	g.Expect(op.ConfigGet(ctx, "maxmemory-policy").Val()).To(HaveKeyWithValue("maxmemory-policy", "allkeys-lru"), "the dev-lite default")

	// The application's side, through TLS with the binding's password.
	app := srv.TLS(certs, redisPassword)
	defer app.Close()
	pipe := app.Pipeline()
	for i := range 20000 {
		pipe.HSet(ctx, "cart:big", fmt.Sprintf("item:%06d", i), strings.Repeat("x", 100))
	}
	_, err = pipe.Exec(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(app.Set(ctx, "blob:report", strings.Repeat("r", 3<<20), 0).Err()).To(Succeed())
	used := func() int64 {
		return infoInt(t, app.Info(ctx, "memory").Val(), "used_memory")
	}
	// Small keys until 85% of maxmemory: near the limit, nothing evicted.
	for n := 0; used() < 24<<20*85/100; n++ {
		pipe := app.Pipeline()
		for i := range 500 {
			pipe.Set(ctx, fmt.Sprintf("session:%d:%d", n, i), strings.Repeat("s", 200), 0)
		}
		_, err := pipe.Exec(ctx)
		g.Expect(err).NotTo(HaveOccurred())
	}

	opts := advisor.RedisOptions{MaxScanKeys: 100000}
	in, err := advisor.CollectRedis(ctx, app, opts)
	g.Expect(err).NotTo(HaveOccurred())
	rep := advisor.AdviseRedis(in, opts, time.Now())
	var text strings.Builder
	g.Expect(rep.WriteText(&text)).To(Succeed())
	t.Logf("%s", text.String())

	g.Expect(rep.Find(advisor.KindRedisMemory, "maxmemory")).To(HaveLen(1), "used memory is near maxmemory")
	g.Expect(rep.Find(advisor.KindRedisMemory, "maxmemory")[0].Metrics["used_ratio"]).To(BeNumerically(">=", 0.8))
	g.Expect(rep.Find(advisor.KindRedisEvictions, "")).To(BeEmpty(), "nothing evicted yet")
	hash := rep.Find(advisor.KindBigKey, "cart:big")
	g.Expect(hash).To(HaveLen(1), "the 20,000-field hash is a big key")
	g.Expect(hash[0].Summary).To(HavePrefix("hash key of"))
	g.Expect(hash[0].Metrics["bytes"]).To(BeNumerically(">=", 2<<20))
	g.Expect(rep.Find(advisor.KindBigKey, "blob:report")).To(HaveLen(1), "the 3 MiB string is a big key")
	g.Expect(rep.Find(advisor.KindBigKey, "")).To(HaveLen(2), "no small key is reported")
	g.Expect(in.Sampled).To(BeNumerically("==", in.Keys), "every key measured within the bound")

	// Past maxmemory: allkeys-lru evicts, and the advisor says so.
	for range 20 {
		pipe := app.Pipeline()
		for i := range 1000 {
			pipe.Set(ctx, fmt.Sprintf("overflow:%d", time.Now().UnixNano()+int64(i)), strings.Repeat("o", 500), 0)
		}
		_, err := pipe.Exec(ctx)
		g.Expect(err).NotTo(HaveOccurred())
	}
	in, err = advisor.CollectRedis(ctx, app, advisor.RedisOptions{MaxScanKeys: 50})
	g.Expect(err).NotTo(HaveOccurred())
	rep = advisor.AdviseRedis(in, advisor.RedisOptions{}, time.Now())
	ev := rep.Find(advisor.KindRedisEvictions, "evicted_keys")
	g.Expect(ev).To(HaveLen(1))
	g.Expect(ev[0].Metrics["evicted_keys"]).To(BeNumerically(">", 0))
	g.Expect(in.Sampled).To(Equal(50), "the key sample stops at MaxScanKeys")
	g.Expect(strings.Join(rep.Notes, "\n")).To(ContainSubstring("50 of"))
}

func infoInt(t *testing.T, info, field string) int64 {
	t.Helper()
	v, ok := advisor.ParseInfo(info)[field]
	if !ok {
		t.Fatalf("INFO has no %s", field)
	}
	var n int64
	if _, err := fmt.Sscan(v, &n); err != nil {
		t.Fatalf("INFO %s = %q: %v", field, v, err)
	}
	return n
}
