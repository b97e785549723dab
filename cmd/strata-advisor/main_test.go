//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/strata-dev/strata/broker/advisor"
	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/integration/pgtest"
	"github.com/strata-dev/strata/integration/redistest"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/postgres"
	rd "github.com/strata-dev/strata/provisioners/redis"
)

// TestAdvisorCLIOnPostgres runs strata-advisor as a tenant would: with a
// binding directory (the keys of the binding Secret, docs/bindings.md) of
// the application's login, against a real PostgreSQL 15 of the dev-lite
// plan with hypopg, after lookups on a column without an index.
func TestAdvisorCLIOnPostgres(t *testing.T) {
	g := NewWithT(t)
	srv := pgtest.Start(t, pgtest.RenderCluster(t, "dev-lite", nil))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	su := srv.Superuser(t)
	if _, err := os.Stat("/usr/share/postgresql/" + srv.Version + "/extension/hypopg.control"); err != nil {
		t.Fatalf("hypopg is not installed (%v): %s", err, pgtest.InstallHint)
	}
	for _, sql := range []string{
		"CREATE EXTENSION IF NOT EXISTS hypopg",
		"SET ROLE " + postgres.OwnerRole,
		"CREATE TABLE public.events (id bigserial PRIMARY KEY, kind int NOT NULL, payload text)",
		"INSERT INTO public.events (kind, payload) SELECT i % 5000, md5(i::text) FROM generate_series(1, 100000) AS i",
		"ANALYZE public.events",
		"RESET ROLE",
	} {
		_, err := su.Exec(ctx, sql)
		g.Expect(err).NotTo(HaveOccurred(), sql)
	}
	const user, password = "app_cli", "Cli-pw-1a2b3c4d5e"
	srv.CreateLoginRole(t, user, password, postgres.ReadWriteRole)
	app, err := srv.Connect(t, user, password, srv.Database, "verify-full")
	g.Expect(err).NotTo(HaveOccurred())
	for i := range 30 {
		_, err := app.Exec(ctx, "SELECT payload FROM public.events WHERE kind = $1", i)
		g.Expect(err).NotTo(HaveOccurred())
	}
	ca, err := os.ReadFile(srv.CAFile)
	g.Expect(err).NotTo(HaveOccurred())
	dir := writeBinding(t, map[string]string{
		"type": "postgresql", "provider": "strata", "host": pgtest.Host, "port": strconv.Itoa(srv.Port),
		"database": srv.Database, "username": user, "password": password, "sslmode": "verify-full",
		"ca.crt": string(ca), "access": "readwrite",
	})

	var out, errOut bytes.Buffer
	// The server is configured for dev-lite's 512Mi (the broker renders its
	// memory settings from the resources); judged against the standard
	// plan's 2Gi, its effective_cache_size (384MB) is too small.
	g.Expect(run(ctx, []string{"--binding", dir, "--json", "--plan", "standard"}, &out, &errOut)).To(Succeed(), errOut.String())
	var rep advisor.Report
	g.Expect(json.Unmarshal(out.Bytes(), &rep)).To(Succeed(), out.String())
	g.Expect(rep.Service).To(Equal("postgresql"))
	idx := rep.Find(advisor.KindMissingIndex, "public.events (kind)")
	g.Expect(idx).To(HaveLen(1), out.String())
	g.Expect(idx[0].Metrics["cost_after"]).To(BeNumerically("<", idx[0].Metrics["cost_before"]/2))
	ecs := rep.Find(advisor.KindPostgresSetting, "effective_cache_size")
	g.Expect(ecs).To(HaveLen(1), "judged against the standard plan's memory")
	g.Expect(ecs[0].Metrics["memory_limit"]).To(BeNumerically("==", 2<<30))
	g.Expect(out.String()).NotTo(ContainSubstring(password), "no secret in the output")

	out.Reset()
	g.Expect(run(ctx, []string{"--binding", dir}, &out, &errOut)).To(Succeed())
	g.Expect(out.String()).To(HavePrefix("postgresql: "))
	g.Expect(out.String()).To(ContainSubstring("[warning] missing-index: public.events (kind)"))
	g.Expect(out.String()).To(ContainSubstring("memory limit is unknown"), "no --memory, no --plan")
}

func TestAdvisorCLIRefusesBadInput(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	var out, errOut bytes.Buffer
	g.Expect(run(ctx, nil, &out, &errOut)).To(MatchError(ContainSubstring("give the binding")))
	g.Expect(run(ctx, []string{"--binding", "a", "--secret", "n/s"}, &out, &errOut)).To(MatchError(ContainSubstring("not both")))
	g.Expect(run(ctx, []string{"--secret", "nonamespace"}, &out, &errOut)).To(MatchError(ContainSubstring("namespace/name")))
	dir := writeBinding(t, map[string]string{"type": "mongodb"})
	g.Expect(run(ctx, []string{"--binding", dir}, &out, &errOut)).To(MatchError(ContainSubstring(`type is "mongodb"`)))
	pg := writeBinding(t, map[string]string{"type": "postgresql"})
	g.Expect(run(ctx, []string{"--binding", pg, "--plan", "gold"}, &out, &errOut)).To(MatchError(ContainSubstring("not a PostgreSQL plan")))
	g.Expect(run(ctx, []string{"--binding", pg, "--memory", "lots"}, &out, &errOut)).To(MatchError(ContainSubstring("--memory")))
	g.Expect(run(ctx, []string{"--binding", pg}, &out, &errOut)).To(MatchError(ContainSubstring(`"host"`)), "a key missing is named")
	g.Expect(memoryLimit("", "standard")).To(BeNumerically("==", 2<<30))
	g.Expect(memoryLimit("3Gi", "standard")).To(BeNumerically("==", 3<<30), "--memory wins over the plan")
}

func writeBinding(t *testing.T, keys map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for k, v := range keys {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestAdvisorCLIOnRedis runs the command with a Redis binding directory
// against redis-server started with the dev-lite plan's command: TLS
// verified against the binding's CA, AUTH with its password.
func TestAdvisorCLIOnRedis(t *testing.T) {
	g := NewWithT(t)
	svc := catalog.RedisService()
	inst := provisioners.Instance{ID: "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b", Name: "rd-cli", Namespace: "team-a",
		Service: &svc, Plan: svc.PlanByName("dev-lite")}
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
	dir := t.TempDir()
	certs := redistest.NewCerts(t, filepath.Join(dir, "tls"))
	const password = "Redis-cli-pw-3e5a7c9b1d"
	srv := redistest.StartServer(t, redistest.ServerOptions{Command: command, Certs: certs, Password: password, Dir: filepath.Join(dir, "pod-0")})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	app := srv.TLS(certs, password)
	defer app.Close()
	g.Expect(app.Set(ctx, "blob", strings.Repeat("b", 2<<20), 0).Err()).To(Succeed())
	g.Expect(app.Set(ctx, "small", "s", 0).Err()).To(Succeed())

	bdir := writeBinding(t, map[string]string{
		"type": "redis", "provider": "strata", "host": "localhost", "port": strconv.Itoa(srv.TLSPort),
		"password": password, "ssl": "true", "ca.crt": string(certs.CAPEM),
	})
	var out, errOut bytes.Buffer
	g.Expect(run(ctx, []string{"--binding", bdir, "--json", "--big-key-bytes", "1048576"}, &out, &errOut)).To(Succeed(), errOut.String())
	var rep advisor.Report
	g.Expect(json.Unmarshal(out.Bytes(), &rep)).To(Succeed(), out.String())
	g.Expect(rep.Service).To(Equal("redis"))
	g.Expect(rep.Find(advisor.KindBigKey, "blob")).To(HaveLen(1), out.String())
	g.Expect(rep.Find(advisor.KindBigKey, "small")).To(BeEmpty())
	g.Expect(out.String()).NotTo(ContainSubstring(password), "no secret in the output")

	// A binding whose CA is not the server's: the command refuses to talk.
	other := redistest.NewCerts(t, filepath.Join(dir, "other"))
	bad := writeBinding(t, map[string]string{
		"type": "redis", "host": "localhost", "port": strconv.Itoa(srv.TLSPort), "password": password, "ca.crt": string(other.CAPEM),
	})
	err = run(ctx, []string{"--binding", bad}, &out, &errOut)
	g.Expect(err).To(MatchError(ContainSubstring("certificate")))
	g.Expect(err.Error()).NotTo(ContainSubstring(password))
}
