//go:build linux

package integration_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5/pgconn"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/binding"
	"github.com/strata-dev/strata/broker"
	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/integration/baotest"
	"github.com/strata-dev/strata/integration/pgtest"
	"github.com/strata-dev/strata/integration/springtest"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/postgres"
)

// platformIssuer is the cert-manager ClusterIssuer of the platform CA in
// these tests' broker configuration.
const platformIssuer = "strata-platform-ca"

// openBaoPlatform is what a platform engineer sets up once, as
// docs/openbao.md says: the database secrets engine, the broker's policy
// (binding/openbao-policy.hcl, exactly) and an AppRole with only that
// policy. The broker logs in with the AppRole, so every call it makes is
// checked against the documented policy by the real OpenBao.
type openBaoPlatform struct {
	bao        *baotest.Server
	root       *vault.Client
	roleIDFile string
	secretFile string
}

func setUpOpenBao(t *testing.T) *openBaoPlatform {
	t.Helper()
	bao := baotest.Start(t)
	root := bao.Root(t)
	if err := root.Sys().Mount("database", &vault.MountInput{Type: "database", Config: vault.MountConfigInput{MaxLeaseTTL: "2160h"}}); err != nil {
		t.Fatal(err)
	}
	if err := root.Sys().PutPolicy("strata-broker", binding.OpenBaoPolicy); err != nil {
		t.Fatalf("OpenBao refuses binding/openbao-policy.hcl: %v", err)
	}
	if err := root.Sys().PutPolicy("strata-binding", binding.OpenBaoBindingPolicy); err != nil {
		t.Fatalf("OpenBao refuses binding/openbao-binding-policy.hcl: %v", err)
	}
	if _, err := root.Logical().Write("auth/token/roles/strata-binding", map[string]any{
		"allowed_policies": []string{"strata-binding"}, "orphan": true, "renewable": false,
		"token_explicit_max_ttl": "2160h",
	}); err != nil {
		t.Fatal(err)
	}
	if err := root.Sys().EnableAuthWithOptions("approle", &vault.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().Write("auth/approle/role/strata-broker", map[string]any{
		"token_policies": []string{"strata-broker"}, "token_ttl": "1h", "token_max_ttl": "4h",
	}); err != nil {
		t.Fatal(err)
	}
	rid, err := root.Logical().Read("auth/approle/role/strata-broker/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid, err := root.Logical().Write("auth/approle/role/strata-broker/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := &openBaoPlatform{bao: bao, root: root,
		roleIDFile: filepath.Join(dir, "role-id"), secretFile: filepath.Join(dir, "secret-id")}
	if err := os.WriteFile(p.roleIDFile, []byte(rid.Data["role_id"].(string)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.secretFile, []byte(sid.Data["secret_id"].(string)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// brokerOptions points a broker at OpenBao with the platform's settings.
// PostgreSQL runs on loopback here, not behind the Cluster's Service, so
// OpenBao is given its address (the stand-in for cluster DNS).
func (p *openBaoPlatform) brokerOptions(bao *baotest.Server, caFile string, pgAddress func() string) func(*broker.Options) {
	return func(o *broker.Options) {
		o.Postgres.ServerCertificates.IssuerName = platformIssuer
		o.OpenBao = binding.OpenBaoConfig{
			Address: bao.Addr, CACertFile: bao.CAFile, Namespace: "openbao", PostgresCAFile: caFile,
			CredentialTTL: "720h",
			Auth:          binding.OpenBaoAuth{Method: "approle", RoleIDFile: p.roleIDFile, SecretIDFile: p.secretFile},
		}
		o.PostgresAddress = func(provisioners.Instance) string { return pgAddress() }
	}
}

// TestOpenBaoCredentials drives a PostgreSQL instance through its life
// with OpenBao issuing the credentials: real OpenBao, real PostgreSQL 15
// started from the Cluster and bootstrap Secret the broker wrote to the
// real API server, and a real Spring Boot application using the binding.
// CloudNativePG and cert-manager cannot run here (no kubelet): the test
// writes their status and the certificate Secret.
func TestOpenBaoCredentials(t *testing.T) {
	w := sharedWorld(t)
	platform := setUpOpenBao(t)
	ctx := context.Background()
	const ns = "team-d"
	w.ensureNamespace(t, ns, nil)
	// The platform CA file on the OpenBao servers; PostgreSQL's CA is
	// written to it once the server (and its CA) exists.
	platformCA := filepath.Join(t.TempDir(), "platform-ca.crt")
	var srv *pgtest.Server
	pgAddress := func() string { return "localhost:" + strconv.Itoa(srv.Port) }
	osb := w.startBrokerWith(t, platform.brokerOptions(platform.bao, platformCA, pgAddress))

	const id = "0ba00000-0000-4000-8000-000000000001"
	const path = "/v2/service_instances/" + id
	const cluster = "pg-" + id
	conn := "strata-" + ns + "-" + cluster
	params := map[string]any{"version": "15"}
	var passwords []string // every password issued; none may reach the server log

	t.Run("provision writes the management role's bootstrap and the server certificate", func(t *testing.T) {
		g := NewWithT(t)
		r := osb.do(http.MethodPut, path+"?accepts_incomplete=true", provisionBody(catalog.PostgresStandardID, ns, params))
		g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)

		c := w.get(g, clusterGVR, ns, cluster)
		refs, _, _ := unstructured.NestedSlice(c.Object, "spec", "bootstrap", "initdb", "postInitApplicationSQLRefs", "secretRefs")
		g.Expect(refs).To(ConsistOf(map[string]any{"name": cluster + "-bootstrap", "key": postgres.BootstrapSQLKey}))
		tlsSecret, _, _ := unstructured.NestedString(c.Object, "spec", "certificates", "serverTLSSecret")
		g.Expect(tlsSecret).To(Equal(cluster + "-server-tls"))
		cert := w.get(g, certificateGVR, ns, cluster+"-server-tls")
		issuer, _, _ := unstructured.NestedString(cert.Object, "spec", "issuerRef", "name")
		g.Expect(issuer).To(Equal(platformIssuer))

		boot, err := w.core.CoreV1().Secrets(ns).Get(ctx, cluster+"-bootstrap", metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(boot.Data).To(HaveLen(1), "the tenant's namespace gets the SQL only")
		g.Expect(string(boot.Data[postgres.BootstrapSQLKey])).To(ContainSubstring("SCRAM-SHA-256$"), "the SQL carries a verifier")
		first, err := w.core.CoreV1().Secrets(brokerNS).Get(ctx, firstPasswordSecret(id), metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred(), "the first password is kept in the broker's namespace")
		g.Expect(string(boot.Data[postgres.BootstrapSQLKey])).NotTo(ContainSubstring(string(first.Data["password"])), "never the password")
		passwords = append(passwords, string(first.Data["password"]))

		np := w.get(g, netpolGVR, ns, cluster)
		g.Expect(np.Object["spec"]).To(HaveKeyWithValue("ingress", ContainElement(HaveKeyWithValue("from",
			ContainElement(HaveKeyWithValue("namespaceSelector", HaveKeyWithValue("matchLabels", HaveKeyWithValue("kubernetes.io/metadata.name", "openbao"))))))),
			"OpenBao's namespace may reach PostgreSQL")

		// A repeated PUT does not replace the first password.
		r = osb.do(http.MethodPut, path+"?accepts_incomplete=true", provisionBody(catalog.PostgresStandardID, ns, params))
		g.Expect(r.Code).To(Equal(http.StatusAccepted))
		again, _ := w.core.CoreV1().Secrets(ns).Get(ctx, cluster+"-bootstrap", metav1.GetOptions{})
		g.Expect(again.Data).To(Equal(boot.Data))
	})
	if t.Failed() {
		return
	}

	// PostgreSQL starts as CloudNativePG would start it from what the
	// broker wrote: the Cluster and the bootstrap Secret.
	bootstrap := w.get(NewWithT(t), secretGVR, ns, cluster+"-bootstrap")
	srv = pgtest.Start(t, w.get(NewWithT(t), clusterGVR, ns, cluster), bootstrap)
	if err := os.WriteFile(platformCA, srv.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	// cert-manager's Secret for the server certificate (its ca.crt is what
	// bindings carry): pgtest's CA stands for the platform CA.
	if _, err := w.core.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: cluster + "-server-tls"},
		Data:       map[string][]byte{"ca.crt": srv.CAPEM},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bootPassword := passwords[0]

	t.Run("once ready, OpenBao is configured and the first password rotated", func(t *testing.T) {
		g := NewWithT(t)
		w.operatorReportsReady(t, ns, cluster)
		r := osb.do(http.MethodGet, path+"/last_operation", nil)
		g.Expect(r.Body["state"]).To(Equal("succeeded"), r.Raw)

		cfg, err := platform.root.Logical().Read("database/config/" + conn)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(cfg).NotTo(BeNil(), "OpenBao has the instance's connection")
		g.Expect(cfg.Data["connection_details"]).To(HaveKeyWithValue("connection_url", ContainSubstring("sslmode=verify-full")))
		g.Expect(cfg.Data["connection_details"]).To(HaveKeyWithValue("username", postgres.ManagementRole))
		// The instance's roles (for services that take logins from
		// OpenBao themselves) and, by glob, each binding's own roles
		// (named from the binding id): the connection accepts only those.
		g.Expect(cfg.Data["allowed_roles"]).To(ConsistOf(conn+"-readwrite", conn+"-readwrite-b*",
			conn+"-readonly", conn+"-readonly-b*", conn+"-owner", conn+"-owner-b*"))
		for _, a := range []string{"readwrite", "readonly", "owner"} {
			role, err := platform.root.Logical().Read("database/roles/" + conn + "-" + a)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(role).NotTo(BeNil(), "role %s", a)
		}
		left, err := w.core.CoreV1().Secrets(brokerNS).Get(ctx, firstPasswordSecret(id), metav1.GetOptions{})
		g.Expect(apierrors.IsNotFound(err) || err == nil && left.DeletionTimestamp != nil).To(BeTrue(), "the first password is deleted after rotation")
		_, err = srv.Connect(t, postgres.ManagementRole, bootPassword, srv.Database, "verify-full")
		g.Expect(err).To(HaveOccurred(), "the first password no longer works: OpenBao rotated it")

		var super, createRole bool
		g.Expect(srv.Superuser(t).QueryRow(ctx, "SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = $1", postgres.ManagementRole).Scan(&super, &createRole)).To(Succeed())
		g.Expect(super).To(BeFalse(), "the management role is not a superuser")
		g.Expect(createRole).To(BeTrue())
	})

	bindPath := func(bid string) string { return path + "/service_bindings/" + bid }
	unbind := func(bid string) response {
		return osb.do(http.MethodDelete, bindPath(bid)+"?service_id="+catalog.PostgresServiceID+"&plan_id="+catalog.PostgresStandardID, nil)
	}
	bind := func(g Gomega, bid string, params map[string]any) map[string]any {
		r := osb.do(http.MethodPut, bindPath(bid), map[string]any{
			"service_id": catalog.PostgresServiceID, "plan_id": catalog.PostgresStandardID, "parameters": params})
		g.Expect(r.Code).To(Equal(http.StatusCreated), r.Raw)
		creds := r.Body["credentials"].(map[string]any)
		passwords = append(passwords, creds["password"].(string))
		if pw, ok := creds["spring.flyway.password"].(string); ok {
			passwords = append(passwords, pw)
		}
		return r.Body
	}
	mountDir := t.TempDir()
	const rwBinding = "0ba00000-0000-4000-8000-0000000000b1"
	const roBinding = "0ba00000-0000-4000-8000-0000000000b2"
	var rw, ro map[string]any

	t.Run("bind issues OpenBao credentials with exactly their level's rights", func(t *testing.T) {
		g := NewWithT(t)
		body := bind(g, rwBinding, map[string]any{"mount_path": mountDir})
		rw = body["credentials"].(map[string]any)
		meta := body["metadata"].(map[string]any)
		expires, err := time.Parse("2006-01-02T15:04:05.9Z", meta["expires_at"].(string))
		g.Expect(err).NotTo(HaveOccurred(), "expires_at in the spec's format: %v", meta)
		g.Expect(expires).To(BeTemporally("~", time.Now().Add(720*time.Hour), time.Minute), "the lease is the configured TTL")
		renew, err := time.Parse("2006-01-02T15:04:05.9Z", meta["renew_before"].(string))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(renew).To(BeTemporally("~", time.Now().Add(480*time.Hour), time.Minute))
		g.Expect(rw["username"]).NotTo(Equal(rw["spring.flyway.user"]), "migrations have their own (owner) login")

		owner, err := srv.Connect(t, rw["spring.flyway.user"].(string), rw["spring.flyway.password"].(string), srv.Database, "verify-full")
		g.Expect(err).NotTo(HaveOccurred(), "the owner login connects over TLS")
		// A schema of its own: public is the application's, which Flyway
		// migrates below.
		_, err = owner.Exec(ctx, "CREATE SCHEMA checks; CREATE TABLE checks.orders (id bigserial PRIMARY KEY, item text NOT NULL)")
		g.Expect(err).NotTo(HaveOccurred(), "owner can run DDL")
		var tableOwner string
		g.Expect(owner.QueryRow(ctx, "SELECT tableowner FROM pg_tables WHERE tablename = 'orders'").Scan(&tableOwner)).To(Succeed())
		g.Expect(tableOwner).To(Equal(postgres.OwnerRole), "an owner login acts as the group, so its tables outlive it")

		app, err := srv.Connect(t, rw["username"].(string), rw["password"].(string), srv.Database, "verify-full")
		g.Expect(err).NotTo(HaveOccurred(), "the readwrite login connects over TLS")
		_, err = app.Exec(ctx, "INSERT INTO checks.orders (item) VALUES ('tea')")
		g.Expect(err).NotTo(HaveOccurred(), "readwrite can write")
		_, err = app.Exec(ctx, "CREATE TABLE nope (id int)")
		g.Expect(pgCode(err)).To(Equal("42501"), "readwrite cannot create tables: %v", err)
		_, err = srv.Connect(t, rw["username"].(string), rw["password"].(string), srv.Database, "disable")
		g.Expect(err).To(HaveOccurred(), "plaintext is refused")

		ro = bind(g, roBinding, map[string]any{"access": "readonly"})["credentials"].(map[string]any)
		reader, err := srv.Connect(t, ro["username"].(string), ro["password"].(string), srv.Database, "verify-full")
		g.Expect(err).NotTo(HaveOccurred())
		var n int
		g.Expect(reader.QueryRow(ctx, "SELECT count(*) FROM checks.orders").Scan(&n)).To(Succeed())
		g.Expect(n).To(Equal(1))
		_, err = reader.Exec(ctx, "INSERT INTO checks.orders (item) VALUES ('coffee')")
		g.Expect(pgCode(err)).To(Equal("42501"), "readonly cannot write: %v", err)
	})

	t.Run("logins outlive the broker's own OpenBao token", func(t *testing.T) {
		g := NewWithT(t)
		// Every token the broker got by logging in ends (as when a token
		// expires or OpenBao's operator revokes it); OpenBao then revokes
		// the leases those tokens hold.
		g.Expect(platform.root.Sys().RevokePrefix("auth/approle/login")).To(Succeed())
		for _, c := range []map[string]any{rw, ro} {
			_, err := srv.Connect(t, c["username"].(string), c["password"].(string), srv.Database, "verify-full")
			g.Expect(err).NotTo(HaveOccurred(), "a binding's login lives as long as its own lease")
		}
		// And the broker logs in again by itself.
		r := osb.do(http.MethodPut, bindPath("0ba00000-0000-4000-8000-0000000000d1"), map[string]any{
			"service_id": catalog.PostgresServiceID, "plan_id": catalog.PostgresStandardID, "parameters": map[string]any{"access": "readonly"}})
		g.Expect(r.Code).To(Equal(http.StatusCreated), r.Raw)
		passwords = append(passwords, r.Body["credentials"].(map[string]any)["password"].(string))
	})

	t.Run("a bind cut short after OpenBao issued its logins leaves none alive", func(t *testing.T) {
		g := NewWithT(t)
		const cut = "0ba00000-0000-4000-8000-0000000000d2"
		first := bind(g, cut, map[string]any{"access": "readonly"})["credentials"].(map[string]any)
		role, err := platform.root.Logical().Read("database/roles/" + binding.BindingRoleName(standardInstance(t, id, ns), cut, binding.ReadOnly))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(role).NotTo(BeNil(), "the binding's logins come from a role named from the binding id")
		// The record as a replica that died between OpenBao's answer and
		// its record of the lease leaves it: in progress, nothing
		// recorded, its request's claim run out.
		w.interruptBind(t, cut)
		// The platform repeats the bind (it never got an answer): the
		// repeat takes the bind over, revokes what the first attempt
		// issued, and answers with new credentials.
		r := osb.do(http.MethodPut, bindPath(cut), map[string]any{
			"service_id": catalog.PostgresServiceID, "plan_id": catalog.PostgresStandardID, "parameters": map[string]any{"access": "readonly"}})
		g.Expect(r.Code).To(Equal(http.StatusCreated), r.Raw)
		second := r.Body["credentials"].(map[string]any)
		passwords = append(passwords, second["password"].(string))
		g.Expect(second["username"]).NotTo(Equal(first["username"]))
		_, err = srv.Connect(t, first["username"].(string), first["password"].(string), srv.Database, "verify-full")
		g.Expect(err).To(HaveOccurred(), "the login issued before the cut is revoked")
		_, err = srv.Connect(t, second["username"].(string), second["password"].(string), srv.Database, "verify-full")
		g.Expect(err).NotTo(HaveOccurred(), "the login of the repeat works")

		// Cut short again, and this time the platform unbinds (orphan
		// mitigation): nothing of the binding is left in OpenBao or
		// PostgreSQL.
		w.interruptBind(t, cut)
		g.Expect(unbind(cut).Code).To(Equal(http.StatusOK))
		_, err = srv.Connect(t, second["username"].(string), second["password"].(string), srv.Database, "verify-full")
		g.Expect(err).To(HaveOccurred(), "unbind revokes the logins it has no record of")
		role, err = platform.root.Logical().Read("database/roles/" + binding.BindingRoleName(standardInstance(t, id, ns), cut, binding.ReadOnly))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(role).To(BeNil(), "the binding's role is deleted")
	})

	t.Run("in a cluster the broker logs in with its ServiceAccount (Kubernetes auth)", func(t *testing.T) {
		g := NewWithT(t)
		// OpenBao's kubernetes auth verifies the broker's token with the
		// real API server's TokenReview.
		g.Expect(platform.root.Sys().EnableAuthWithOptions("kubernetes", &vault.EnableAuthOptions{Type: "kubernetes"})).To(Succeed())
		_, err := platform.root.Logical().Write("auth/kubernetes/config", map[string]any{
			"kubernetes_host": w.env.Config.Host, "kubernetes_ca_cert": string(w.env.Config.CAData),
			"token_reviewer_jwt": w.env.Config.BearerToken, "disable_local_ca_jwt": true,
		})
		g.Expect(err).NotTo(HaveOccurred())
		sa := chartServiceAccount(t, w)
		_, err = platform.root.Logical().Write("auth/kubernetes/role/strata-broker", map[string]any{
			"bound_service_account_names": sa, "bound_service_account_namespaces": brokerNS,
			"token_policies": "strata-broker", "token_ttl": "1h",
		})
		g.Expect(err).NotTo(HaveOccurred())
		tok, err := w.core.CoreV1().ServiceAccounts(brokerNS).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))}}, metav1.CreateOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		tokenFile := filepath.Join(t.TempDir(), "token")
		g.Expect(os.WriteFile(tokenFile, []byte(tok.Status.Token), 0o600)).To(Succeed())

		inCluster := w.startBrokerWith(t, func(o *broker.Options) {
			platform.brokerOptions(platform.bao, platformCA, pgAddress)(o)
			o.OpenBao.Auth = binding.OpenBaoAuth{Method: "kubernetes", Role: "strata-broker", ServiceAccountTokenFile: tokenFile}
		})
		const bid = "0ba00000-0000-4000-8000-0000000000c1"
		r := inCluster.do(http.MethodPut, bindPath(bid), map[string]any{
			"service_id": catalog.PostgresServiceID, "plan_id": catalog.PostgresStandardID, "parameters": map[string]any{"access": "readonly"}})
		g.Expect(r.Code).To(Equal(http.StatusCreated), r.Raw)
		creds := r.Body["credentials"].(map[string]any)
		passwords = append(passwords, creds["password"].(string))
		// The application is connected when the platform unbinds: its
		// session ends with the login.
		session, err := srv.Connect(t, creds["username"].(string), creds["password"].(string), srv.Database, "verify-full")
		g.Expect(err).NotTo(HaveOccurred())
		r = inCluster.do(http.MethodDelete, bindPath(bid)+"?service_id="+catalog.PostgresServiceID+"&plan_id="+catalog.PostgresStandardID, nil)
		g.Expect(r.Code).To(Equal(http.StatusOK), r.Raw)
		g.Expect(session.Ping(ctx)).NotTo(Succeed(), "the revoked login's open session was terminated")

		// Another ServiceAccount's token is refused.
		other, err := w.core.CoreV1().ServiceAccounts(brokerNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "intruder"}}, metav1.CreateOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		bad, err := w.core.CoreV1().ServiceAccounts(brokerNS).CreateToken(ctx, other.Name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(os.WriteFile(tokenFile, []byte(bad.Status.Token), 0o600)).To(Succeed())
		intruder := w.startBrokerWith(t, func(o *broker.Options) {
			platform.brokerOptions(platform.bao, platformCA, pgAddress)(o)
			o.OpenBao.Auth = binding.OpenBaoAuth{Method: "kubernetes", Role: "strata-broker", ServiceAccountTokenFile: tokenFile}
		})
		r = intruder.do(http.MethodPut, bindPath("0ba00000-0000-4000-8000-0000000000c2"), map[string]any{
			"service_id": catalog.PostgresServiceID, "plan_id": catalog.PostgresStandardID})
		g.Expect(r.Code).To(Equal(http.StatusInternalServerError), r.Raw)
		g.Expect(r.Body["description"]).To(ContainSubstring("OpenBao login (kubernetes auth)"))
	})

	t.Run("a Spring Boot application starts with nothing but the binding Secret", func(t *testing.T) {
		g := NewWithT(t)
		jar := springtest.Jar(t)
		secret, err := w.core.CoreV1().Secrets(ns).Get(ctx, binding.SecretName(rwBinding), metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		files := map[string]string{}
		for k, v := range secret.Data {
			// The Services' names resolve only in the cluster: here they
			// are PostgreSQL on loopback, which its certificate covers.
			s := strings.ReplaceAll(string(v), cluster+"-pooler."+ns+".svc:5432", pgAddress())
			files[k] = strings.ReplaceAll(s, cluster+"-rw."+ns+".svc:5432", pgAddress())
		}
		springtest.WriteBinding(t, mountDir, files)
		res, out, err := springtest.Run(t, jar, mountDir, 2*time.Minute)
		g.Expect(err).NotTo(HaveOccurred(), "the application failed:\n%s", out)
		g.Expect(res.Postgres.SSL).To(BeTrue(), "pg_stat_ssl: the application's connection is TLS")
		g.Expect(res.Postgres.SessionUser).To(Equal(rw["username"]), "the application runs as the readwrite login")
		g.Expect(res.Postgres.Read).NotTo(BeEmpty())
		g.Expect(res.Postgres.MigratedBy).To(Equal("session_user="+rw["spring.flyway.user"].(string)+" current_user="+postgres.OwnerRole),
			"Flyway migrated as the owner login, acting as the owner group")
		g.Expect(res.Postgres.TableOwner).To(Equal(postgres.OwnerRole))
		g.Expect(out).NotTo(ContainSubstring(rw["password"].(string)))
	})

	const rotated = "0ba00000-0000-4000-8000-0000000000b3"
	var successor map[string]any
	t.Run("rotation issues a successor; both work until the predecessor is unbound", func(t *testing.T) {
		g := NewWithT(t)
		rotate := func(bid, predecessor string) response {
			return osb.do(http.MethodPut, bindPath(bid)+"?accepts_incomplete=true", map[string]any{"predecessor_binding_id": predecessor})
		}
		r := rotate(rotated, rwBinding)
		g.Expect(r.Code).To(Equal(http.StatusCreated), "OpenBao's credentials work at once, so even with accepts_incomplete the answer is 201: %s", r.Raw)
		successor = r.Body["credentials"].(map[string]any)
		passwords = append(passwords, successor["password"].(string), successor["spring.flyway.password"].(string))
		g.Expect(successor["username"]).NotTo(Equal(rw["username"]), "new credentials")
		g.Expect(successor["spring.datasource.url"]).To(Equal(rw["spring.datasource.url"]), "the predecessor's parameters (mount_path) carry over")
		g.Expect(r.Body["metadata"]).To(HaveKey("renew_before"))
		got := osb.do(http.MethodGet, bindPath(rotated), nil)
		g.Expect(got.Body["parameters"]).To(Equal(map[string]any{"mount_path": mountDir}))

		for _, c := range []map[string]any{rw, successor} {
			_, err := srv.Connect(t, c["username"].(string), c["password"].(string), srv.Database, "verify-full")
			g.Expect(err).NotTo(HaveOccurred(), "predecessor and successor are valid in parallel")
		}
		g.Expect(rotate(rotated, rwBinding).Code).To(Equal(http.StatusOK), "a repeated rotation is idempotent")
		g.Expect(rotate(rotated, roBinding).Code).To(Equal(http.StatusConflict), "the same id with another predecessor")
		r = rotate("0ba00000-0000-4000-8000-0000000000b4", "no-such-binding")
		g.Expect(r.Code).To(Equal(http.StatusBadRequest), r.Raw)
		g.Expect(r.Body["description"]).To(ContainSubstring("predecessor_binding_id"))
	})

	t.Run("unbind revokes the lease: the login is gone", func(t *testing.T) {
		g := NewWithT(t)
		r := unbind(rwBinding)
		g.Expect(r.Code).To(Equal(http.StatusOK), r.Raw)
		_, err := srv.Connect(t, rw["username"].(string), rw["password"].(string), srv.Database, "verify-full")
		g.Expect(err).To(HaveOccurred(), "a revoked login cannot connect")
		var roles int
		g.Expect(srv.Superuser(t).QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname IN ($1, $2)", rw["username"], rw["spring.flyway.user"]).Scan(&roles)).To(Succeed())
		g.Expect(roles).To(BeZero(), "both logins of the binding are dropped")
		g.Expect(successor).NotTo(BeNil(), "rotation failed")
		_, err = srv.Connect(t, successor["username"].(string), successor["password"].(string), srv.Database, "verify-full")
		g.Expect(err).NotTo(HaveOccurred(), "the successor outlives its predecessor")
		g.Expect(unbind(rwBinding).Code).To(Equal(http.StatusGone))
		_, err = w.core.CoreV1().Secrets(ns).Get(ctx, binding.SecretName(rwBinding), metav1.GetOptions{})
		g.Expect(apierrors.IsNotFound(err) || err == nil && secret(w, ns, binding.SecretName(rwBinding)).DeletionTimestamp != nil).To(BeTrue(), "the binding Secret is deleted")
	})

	t.Run("unbind succeeds when the lease was already revoked", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(platform.root.Sys().RevokePrefix("database/creds/" + binding.BindingRoleName(standardInstance(t, id, ns), roBinding, binding.ReadOnly))).To(Succeed())
		r := unbind(roBinding)
		g.Expect(r.Code).To(Equal(http.StatusOK), r.Raw)
	})

	t.Run("OpenBao down or sealed: bind fails cleanly", func(t *testing.T) {
		sealed := baotest.Start(t)
		sealed.Seal(t)
		// Nothing listens where a stopped server was; its CA is the
		// platform's (the broker's TLS configuration needs a file).
		stopped := baotest.Start(t)
		stopped.Stop()
		unreachable := &baotest.Server{Addr: stopped.Addr, CAFile: platform.bao.CAFile}
		for name, bao := range map[string]*baotest.Server{"sealed": sealed, "unreachable": unreachable} {
			t.Run(name, func(t *testing.T) {
				g := NewWithT(t)
				broken := w.startBrokerWith(t, platform.brokerOptions(bao, platformCA, pgAddress))
				const bid = "0ba00000-0000-4000-8000-0000000000f0"
				r := broken.do(http.MethodPut, bindPath(bid), map[string]any{
					"service_id": catalog.PostgresServiceID, "plan_id": catalog.PostgresStandardID})
				g.Expect(r.Code).To(Equal(http.StatusInternalServerError), r.Raw)
				g.Expect(r.Body["description"]).To(ContainSubstring("OpenBao"))
				if name == "sealed" {
					g.Expect(r.Body["description"]).To(ContainSubstring("sealed"))
				}
				_, err := w.core.CoreV1().Secrets(ns).Get(ctx, binding.SecretName(bid), metav1.GetOptions{})
				g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "no binding Secret is left behind")
				g.Expect(osb.do(http.MethodGet, bindPath(bid), nil).Code).To(Equal(http.StatusNotFound), "no binding is left behind")
			})
		}
	})

	t.Run("deprovision leaves nothing in OpenBao", func(t *testing.T) {
		g := NewWithT(t)
		r := osb.do(http.MethodDelete, path+"?accepts_incomplete=true&service_id="+catalog.PostgresServiceID+"&plan_id="+catalog.PostgresStandardID, nil)
		g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
		w.collectGarbage(t, ns, append(allInstanceGVRs, certificateGVR)...)
		r = osb.do(http.MethodGet, path+"/last_operation?operation="+r.Body["operation"].(string), nil)
		expectGone(g, r)

		for _, p := range []string{"database/config", "database/roles"} {
			l, err := platform.root.Logical().List(p)
			g.Expect(err).NotTo(HaveOccurred())
			if l != nil {
				g.Expect(l.Data["keys"]).NotTo(ContainElement(HavePrefix(conn)), "%s still lists the instance", p)
			}
		}
		_, err := w.core.CoreV1().Secrets(ns).Get(ctx, cluster+"-bootstrap", metav1.GetOptions{})
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the bootstrap Secret is deleted")
		_, err = w.core.CoreV1().Secrets(ns).Get(ctx, cluster+"-server-tls", metav1.GetOptions{})
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "cert-manager's Secret with the server's private key is deleted")
	})

	t.Run("no password ever reached the PostgreSQL log", func(t *testing.T) {
		g := NewWithT(t)
		log := srv.Log(t)
		g.Expect(log).To(ContainSubstring("AUDIT"), "pgaudit is logging")
		for _, pw := range passwords {
			g.Expect(log).NotTo(ContainSubstring(pw))
		}
	})
}

func secret(w *world, ns, name string) *corev1.Secret {
	s, err := w.core.CoreV1().Secrets(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return &corev1.Secret{}
	}
	return s
}

// chartServiceAccount is the name of the ServiceAccount the chart made.
func chartServiceAccount(t *testing.T, w *world) string {
	t.Helper()
	for _, o := range w.chart {
		if o["kind"] == "ServiceAccount" {
			return o["metadata"].(map[string]any)["name"].(string)
		}
	}
	t.Fatal("the chart rendered no ServiceAccount")
	return ""
}

func ptr[T any](v T) *T { return &v }

// firstPasswordSecret is where the broker keeps an instance's management
// role's first password until OpenBao rotates it.
func firstPasswordSecret(instanceID string) string {
	return provisioners.ResourceName("strata-first-password-", instanceID)
}

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}
