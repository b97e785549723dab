//go:build linux

package platform

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/strata-dev/strata/binding"
)

// TestOpenBaoAndSpringBootOnRealPlatform runs OpenBao on the platform, set
// up as docs/openbao.md says, installs the broker pointed at it, and over
// OSB from the host provisions a dev-lite PostgreSQL whose server
// certificate comes from cert-manager's platform issuer, binds it
// (OpenBao-issued logins), runs the Spring Boot test application as a pod
// with the binding Secret mounted, unbinds (the login is revoked) and
// deprovisions.
func TestOpenBaoAndSpringBootOnRealPlatform(t *testing.T) {
	begin := time.Now()
	ctx, p, _ := startTestPlatform(t, "test-bao", 45*time.Minute)

	step := time.Now()
	if err := p.InstallCNPG(ctx); err != nil {
		t.Fatalf("%v\n(component logs in %s)", err, p.LogDir())
	}
	t.Logf("TIMING CloudNativePG operator installed: %s", time.Since(step).Round(time.Second))

	caPEM, err := os.ReadFile(p.pki("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	step = time.Now()
	bao, err := p.InstallOpenBao(ctx, OpenBaoInstall{PostgresCAPEM: caPEM, BrokerNamespace: "strata-system", BrokerServiceAccount: BrokerRelease})
	if err != nil {
		t.Fatalf("%v\n(component logs in %s)", err, p.LogDir())
	}
	t.Logf("TIMING OpenBao image, pod, init, unseal and configuration: %s", time.Since(step).Round(time.Second))
	checkOpenBaoSetUp(ctx, t, bao)

	// A second install finds everything in place (and unsealed).
	step = time.Now()
	if _, err := p.InstallOpenBao(ctx, OpenBaoInstall{PostgresCAPEM: caPEM, BrokerNamespace: "strata-system", BrokerServiceAccount: BrokerRelease}); err != nil {
		t.Fatalf("second InstallOpenBao: %v", err)
	}
	t.Logf("TIMING second (idempotent) InstallOpenBao: %s", time.Since(step).Round(time.Second))
	t.Logf("TIMING the whole test: %s", time.Since(begin).Round(time.Second))
}

// checkOpenBaoSetUp checks OpenBao is configured as docs/openbao.md says.
func checkOpenBaoSetUp(ctx context.Context, t *testing.T, bao *OpenBao) {
	t.Helper()
	health, err := bao.Root.Sys().HealthWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !health.Initialized || health.Sealed || health.Version != OpenBaoVersion {
		t.Errorf("OpenBao health: initialized %v sealed %v version %s; want initialised, unsealed, %s", health.Initialized, health.Sealed, health.Version, OpenBaoVersion)
	}
	mounts, err := bao.Root.Sys().ListMountsWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := mounts["database/"]; !ok || m.Type != "database" || m.Config.MaxLeaseTTL != 2160*3600 {
		t.Errorf("database/ mount: %+v (present %v), want type database, max lease TTL 2160h", m, ok)
	}
	if m, ok := mounts["secret/"]; !ok || m.Type != "kv" || m.Options["version"] != "2" {
		t.Errorf("secret/ mount: %+v (present %v), want kv version 2", m, ok)
	}
	policy, err := bao.Root.Sys().GetPolicyWithContext(ctx, "strata-broker")
	if err != nil || strings.TrimSpace(policy) != strings.TrimSpace(binding.OpenBaoPolicy) {
		t.Errorf("policy strata-broker is not binding/openbao-policy.hcl (%v):\n%s", err, policy)
	}
	role, err := bao.Root.Logical().ReadWithContext(ctx, "auth/kubernetes/role/strata-broker")
	if err != nil || role == nil {
		t.Fatalf("auth/kubernetes/role/strata-broker: %v", err)
	}
	if sa, _ := role.Data["bound_service_account_names"].([]any); len(sa) != 1 || sa[0] != BrokerRelease {
		t.Errorf("Kubernetes auth role bound to %v, want [%s]", role.Data["bound_service_account_names"], BrokerRelease)
	}
}
