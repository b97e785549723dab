package binding

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/postgres"
)

func TestOpenBaoConfigChecks(t *testing.T) {
	valid := OpenBaoConfig{Address: "https://openbao:8200", Namespace: "openbao", PostgresCAFile: "/ca.crt",
		Auth: OpenBaoAuth{Role: "strata-broker"}}
	tests := []struct {
		name   string
		change func(*OpenBaoConfig)
		err    string
	}{
		{"defaults", func(*OpenBaoConfig) {}, ""},
		{"plain http", func(c *OpenBaoConfig) { c.Address = "http://openbao:8200" }, "openBao.address must be an https:// address"},
		{"no platform CA", func(c *OpenBaoConfig) { c.PostgresCAFile = "" }, "openBao.postgresCAFile"},
		{"no namespace", func(c *OpenBaoConfig) { c.Namespace = "" }, "openBao.namespace"},
		{"kubernetes without role", func(c *OpenBaoConfig) { c.Auth.Role = "" }, "openBao.auth.role"},
		{"approle without files", func(c *OpenBaoConfig) { c.Auth.Method = "approle" }, "openBao.auth.roleIdFile and secretIdFile"},
		{"token without file", func(c *OpenBaoConfig) { c.Auth.Method = "token" }, "openBao.auth.tokenFile"},
		{"unknown method", func(c *OpenBaoConfig) { c.Auth.Method = "ldap" }, `openBao.auth.method "ldap"`},
		{"bad TTL", func(c *OpenBaoConfig) { c.CredentialTTL = "forever" }, "openBao.credentialTTL"},
		{"TTL under an hour", func(c *OpenBaoConfig) { c.CredentialTTL = "10m" }, "openBao.credentialTTL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			c := valid
			tc.change(&c)
			got, ttl, err := c.withDefaults()
			if tc.err == "" {
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(got.DatabaseMount).To(Equal("database"))
				g.Expect(got.Auth.Method).To(Equal("kubernetes"))
				g.Expect(got.Auth.ServiceAccountTokenFile).To(Equal(defaultSATokenFile))
				g.Expect(ttl.Hours()).To(Equal(720.0))
				return
			}
			g.Expect(err).To(MatchError(ContainSubstring(tc.err)))
		})
	}
}

// The creation statements grant exactly one group; owner logins act as
// the owner group so what they create outlives them.
func TestRoleStatements(t *testing.T) {
	g := NewWithT(t)
	g.Expect(roleStatements(ReadWrite)).To(ConsistOf(ContainSubstring("IN ROLE strata_readwrite;")))
	g.Expect(roleStatements(ReadOnly)).To(ConsistOf(ContainSubstring("IN ROLE strata_readonly;")))
	g.Expect(roleStatements(Owner)).To(ConsistOf(ContainSubstring("IN ROLE strata_owner;"), `ALTER ROLE "{{name}}" SET role = 'strata_owner';`))
	for _, a := range accessLevels {
		g.Expect(roleStatements(a)[0]).To(ContainSubstring(`VALID UNTIL '{{expiration}}'`))
	}
}

// The broker's environment cannot weaken or redirect its OpenBao
// connection: vault.DefaultConfig reads VAULT_* variables, and none of
// them may survive into the client.
func TestOpenBaoClientIgnoresTheEnvironment(t *testing.T) {
	g := NewWithT(t)
	t.Setenv("VAULT_SKIP_VERIFY", "true")
	t.Setenv("VAULT_AGENT_ADDR", "http://127.0.0.1:1")
	t.Setenv("VAULT_ADDR", "http://127.0.0.1:2")
	// A CA the environment would have the client trust (an unreadable one
	// makes vault.NewClient fail, which fails closed).
	foreignCA := filepath.Join(t.TempDir(), "ca.pem")
	g.Expect(os.WriteFile(foreignCA, testCA(t), 0o600)).To(Succeed())
	t.Setenv("VAULT_CACERT", foreignCA)
	t.Setenv("VAULT_TOKEN", "from-the-environment")
	t.Setenv("VAULT_NAMESPACE", "elsewhere")
	s := testOpenBaoSource(t, nil)
	g.Expect(s.vc.Address()).To(Equal("https://openbao:8200"))
	g.Expect(s.vc.Token()).To(BeEmpty())
	g.Expect(s.vc.Namespace()).To(BeEmpty())
	tr, ok := s.vc.CloneConfig().HttpClient.Transport.(*http.Transport)
	g.Expect(ok).To(BeTrue())
	g.Expect(tr.TLSClientConfig.InsecureSkipVerify).To(BeFalse())
	g.Expect(tr.TLSClientConfig.RootCAs).To(BeNil(), "no CA file configured: the system roots, not VAULT_CACERT")
}

// testCA is a freshly generated self-signed CA certificate (PEM).
func testCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "foreign"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// Prepare writes the first password (broker namespace) and the bootstrap
// SQL (tenant namespace) once; once the bootstrap exists, a repeated or
// retried provision mints nothing new, even after the first password was
// rotated away.
func TestOpenBaoPrepareIsOnce(t *testing.T) {
	g := NewWithT(t)
	kube := newMemKube()
	s := testOpenBaoSource(t, kube)
	s.BrokerNamespace = "strata-system"
	cat := catalog.Default()
	inst := provisioners.Instance{ID: "i-1", Name: "pg-i-1", Namespace: "team-a", Service: &cat.Services[0], Plan: &cat.Services[0].Plans[0]}
	ctx := context.Background()
	g.Expect(s.Prepare(ctx, inst)).To(Succeed())

	first, _ := kube.Get(ctx, s.firstPasswordRef(inst))
	g.Expect(first).NotTo(BeNil())
	password := secretValue(first, firstPasswordKey)
	g.Expect(password).NotTo(BeEmpty())
	boot, _ := kube.Get(ctx, provisioners.Ref{GVK: secretGVK, Namespace: "team-a", Name: "pg-i-1-bootstrap"})
	g.Expect(boot).NotTo(BeNil())
	sql := secretValue(boot, postgres.BootstrapSQLKey)
	g.Expect(sql).To(ContainSubstring("SCRAM-SHA-256$"))
	g.Expect(sql).NotTo(ContainSubstring(password), "the tenant's namespace never sees the password")
	g.Expect(boot.Object["data"]).To(HaveLen(1))

	g.Expect(s.Prepare(ctx, inst)).To(Succeed())
	again, _ := kube.Get(ctx, s.firstPasswordRef(inst))
	g.Expect(secretValue(again, firstPasswordKey)).To(Equal(password), "a repeat keeps the first password")

	// OpenBao rotated it and the broker deleted it; a retried provision
	// must not make a new one that matches nothing.
	g.Expect(kube.Delete(ctx, s.firstPasswordRef(inst))).To(Succeed())
	g.Expect(s.Prepare(ctx, inst)).To(Succeed())
	gone, _ := kube.Get(ctx, s.firstPasswordRef(inst))
	g.Expect(gone).To(BeNil())
}

// testOpenBaoSource is a source configured as in production, for tests
// that never reach OpenBao itself.
func testOpenBaoSource(t *testing.T, kube Kube) *OpenBaoSource {
	t.Helper()
	s, err := NewOpenBaoSource(OpenBaoConfig{Address: "https://openbao:8200", Namespace: "openbao",
		PostgresCAFile: "/ca.crt", Auth: OpenBaoAuth{Role: "strata-broker"}}, kube)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A restore or copy runs no initdb SQL: Prepare also writes the
// management DatabaseRole and its basic-auth Secret with the verifier
// (never the password); Configure waits for CloudNativePG to apply it and
// hands it over (deletes both) before the rotation.
func TestOpenBaoPrepareHandsOverRestoresAndCopies(t *testing.T) {
	g := NewWithT(t)
	kube := newMemKube()
	s := testOpenBaoSource(t, kube)
	s.BrokerNamespace = "strata-system"
	cat := catalog.Default()
	inst := provisioners.Instance{ID: "i-2", Name: "pg-i-2", Namespace: "team-a", Service: &cat.Services[0], Plan: &cat.Services[0].Plans[0],
		Copy: &provisioners.CopySource{InstanceID: "i-1", Name: "pg-i-1", Database: "app", CASecret: "pg-i-1-server-tls"}}
	ctx := context.Background()
	g.Expect(s.Prepare(ctx, inst)).To(Succeed())

	first, _ := kube.Get(ctx, s.firstPasswordRef(inst))
	password := secretValue(first, firstPasswordKey)
	g.Expect(password).NotTo(BeEmpty())
	roleRef, secretRef := managementLoginRefs(inst)
	login, _ := kube.Get(ctx, secretRef)
	g.Expect(login).NotTo(BeNil())
	g.Expect(login.Object["type"]).To(Equal("kubernetes.io/basic-auth"))
	g.Expect(secretValue(login, "username")).To(Equal(postgres.ManagementRole))
	verifier := secretValue(login, "password")
	g.Expect(verifier).To(HavePrefix("SCRAM-SHA-256$4096:"))
	g.Expect(verifier).NotTo(ContainSubstring(password), "the tenant's namespace never sees the password")
	g.Expect(login.GetAnnotations()).To(HaveKeyWithValue("cnpg.io/passwordPassthrough", "enabled"))

	role, _ := kube.Get(ctx, roleRef)
	g.Expect(role).NotTo(BeNil())
	g.Expect(role.Object["spec"]).To(MatchKeys(IgnoreExtras, Keys{
		"cluster": Equal(map[string]any{"name": "pg-i-2"}), "name": Equal(postgres.ManagementRole),
		"login": Equal(true), "createrole": Equal(true), "inherit": Equal(false), "connectionLimit": BeNumerically("==", 10),
		"inRoles":                   ConsistOf(postgres.OwnerRole, postgres.ReadWriteRole, postgres.ReadOnlyRole, "pg_signal_backend"),
		"passwordSecret":            Equal(map[string]any{"name": secretRef.Name}),
		"databaseRoleReclaimPolicy": Equal("retain"),
	}))

	// A repeat after a crash keeps what was written.
	g.Expect(s.Prepare(ctx, inst)).To(Succeed())
	again, _ := kube.Get(ctx, secretRef)
	g.Expect(secretValue(again, "password")).To(Equal(verifier))

	// Not applied yet: Configure waits, naming the DatabaseRole.
	g.Expect(s.managementRoleApplied(ctx, inst)).To(MatchError(ContainSubstring("waiting for CloudNativePG to apply DatabaseRole team-a/pg-i-2-openbao-login")))
	g.Expect(unstructured.SetNestedField(role.Object, true, "status", "applied")).To(Succeed())
	g.Expect(kube.Apply(ctx, []*unstructured.Unstructured{role})).To(Succeed())
	g.Expect(s.managementRoleApplied(ctx, inst)).To(Succeed())

	g.Expect(s.handOverManagementRole(ctx, inst)).To(Succeed())
	for _, ref := range []provisioners.Ref{roleRef, secretRef} {
		gone, _ := kube.Get(ctx, ref)
		g.Expect(gone).To(BeNil(), ref.Name)
	}
	g.Expect(s.managementRoleApplied(ctx, inst)).To(MatchError(ContainSubstring("is missing")))

	// An instance provisioned from scratch has no DatabaseRole.
	plain := inst
	plain.ID, plain.Name, plain.Copy = "i-3", "pg-i-3", nil
	g.Expect(s.Prepare(ctx, plain)).To(Succeed())
	r, _ := managementLoginRefs(plain)
	none, _ := kube.Get(ctx, r)
	g.Expect(none).To(BeNil())
}
