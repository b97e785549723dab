//go:build linux

package platform

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/strata-dev/strata/binding"
	"github.com/strata-dev/strata/catalog"
)

// TestOpenBaoAndSpringBootOnRealPlatform runs OpenBao on the platform, set
// up as docs/openbao.md says, installs the broker pointed at it, and over
// OSB from the host provisions a dev-lite PostgreSQL whose server
// certificate comes from cert-manager's platform issuer, binds it
// (OpenBao-issued logins), runs the Spring Boot test application as a pod
// with the binding Secret mounted, unbinds (the login is revoked) and
// deprovisions.
func TestOpenBaoAndSpringBootOnRealPlatform(t *testing.T) {
	t.Parallel() // each on a platform of its own (docs/platform.md, Tests)
	begin := time.Now()
	ctx, p, stopped := startTestPlatform(t, "test-bao", 60*time.Minute)

	step := time.Now()
	if err := p.InstallCNPG(ctx); err != nil {
		t.Fatalf("%v\n(component logs in %s)", err, p.LogDir())
	}
	t.Logf("TIMING CloudNativePG operator installed: %s", time.Since(step).Round(time.Second))

	step = time.Now()
	issuer, platformCA := installPlatformIssuer(ctx, t, p)
	t.Logf("TIMING cert-manager and the platform issuer %s: %s", issuer, time.Since(step).Round(time.Second))

	step = time.Now()
	baoInstall := OpenBaoInstall{PostgresCAPEM: platformCA, BrokerNamespace: brokerNamespace, BrokerServiceAccount: BrokerRelease}
	bao, err := p.InstallOpenBao(ctx, baoInstall)
	if err != nil {
		t.Fatalf("%v\n(component logs in %s)", err, p.LogDir())
	}
	t.Logf("TIMING OpenBao image, pod, init, unseal and configuration: %s", time.Since(step).Round(time.Second))
	checkOpenBaoSetUp(ctx, t, bao)
	// A second install finds everything in place (and unsealed).
	step = time.Now()
	if _, err := p.InstallOpenBao(ctx, baoInstall); err != nil {
		t.Fatalf("second InstallOpenBao: %v", err)
	}
	t.Logf("TIMING second (idempotent) InstallOpenBao: %s", time.Since(step).Round(time.Second))

	// The barman-cloud plugin and the S3 store: the restore of an
	// OpenBao-provisioned instance (testOpenBaoRestore) needs backups.
	step = time.Now()
	if err := p.InstallBarmanCloud(ctx); err != nil {
		t.Fatalf("%v\n(component logs in %s)", err, p.LogDir())
	}
	store, err := p.InstallS3(ctx)
	if err != nil {
		t.Fatal(err)
	}
	backupValues, err := p.BrokerBackupValues(ctx, store, brokerNamespace)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("TIMING barman-cloud plugin and S3 store: %s", time.Since(step).Round(time.Second))

	// The Spring Boot image builds while nothing else needs the machine.
	step = time.Now()
	springImage, err := p.BuildSpringAppImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("TIMING Spring Boot image (Maven jar, debootstrap, Java 17; cached by hash) built or found, imported: %s", time.Since(step).Round(time.Second))

	// The broker, pointed at OpenBao (Kubernetes auth) and at the
	// platform issuer for every PostgreSQL server certificate.
	step = time.Now()
	image, err := p.BuildBrokerImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	values, err := bao.BrokerValues(ctx, p, brokerNamespace, issuer)
	if err != nil {
		t.Fatal(err)
	}
	mergeValues(values, backupValues)
	mergeValues(values, drillsValues(false))
	// The seed Job fetches from the store's TLS listener (platform CA).
	mergeValues(values, map[string]any{"config": map[string]any{"postgres": map[string]any{"seedCABundle": string(store.CAPEM)}}})
	password := randomHex(t, 24)
	broker, err := p.InstallBroker(ctx, BrokerInstall{Namespace: brokerNamespace, Image: image, Password: password, Values: values})
	if err != nil {
		t.Fatal(err)
	}
	osb, err := newOSBClient(ctx, broker, password)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("TIMING broker image and Helm install with OpenBao: %s", time.Since(step).Round(time.Second))
	checkBrokerOpenBaoLogin(ctx, t, p, bao)

	const tenant = "apps"
	if err := p.Apply(ctx, []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: "+tenant+"}\n")); err != nil {
		t.Fatal(err)
	}
	instanceID := "0b5a0b5a-1e0f-4a9b-8c7d-" + randomHex(t, 6)
	bindingID := "b0b0b0b0-0000-4000-8000-" + randomHex(t, 6)
	instancePath := "/v2/service_instances/" + instanceID
	bindingPath := instancePath + "/service_bindings/" + bindingID
	ids := "service_id=" + catalog.PostgresServiceID + "&plan_id=" + catalog.PostgresDevLiteID
	cluster := "pg-" + instanceID
	conn := "strata-" + tenant + "-" + cluster

	// Provision: CloudNativePG's Cluster with cert-manager's server
	// certificate; succeeded once OpenBao has the instance's connection
	// and roles.
	step = time.Now()
	code, body, err := osb.do(ctx, http.MethodPut, instancePath+"?accepts_incomplete=true", map[string]any{
		"service_id": catalog.PostgresServiceID,
		"plan_id":    catalog.PostgresDevLiteID,
		"context":    map[string]any{"platform": "kubernetes", "namespace": tenant},
		"parameters": map[string]any{"version": PostgreSQLMajor},
	})
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("provision: %d %s %v", code, body, err)
	}
	if err := osb.waitSucceeded(ctx, instancePath+"/last_operation", 10*time.Minute); err != nil {
		t.Fatalf("provision: %v; pods in %s: %s; OpenBao: %s", err, tenant, p.podSummary(ctx, tenant), p.podLogTail(ctx, OpenBaoNamespace, "app=openbao"))
	}
	t.Logf("TIMING dev-lite provision with a cert-manager certificate and OpenBao set up → succeeded: %s", time.Since(step).Round(time.Second))
	checkServerCertificate(ctx, t, p, tenant, cluster, platformCA)
	if cfg, err := bao.Root.Logical().ReadWithContext(ctx, "database/config/"+conn); err != nil || cfg == nil {
		t.Fatalf("OpenBao has no connection %s after the provision: %v", conn, err)
	}

	// Bind: OpenBao issues the logins (201 with the credentials).
	step = time.Now()
	code, body, err = osb.do(ctx, http.MethodPut, bindingPath+"?accepts_incomplete=true", map[string]any{
		"service_id": catalog.PostgresServiceID,
		"plan_id":    catalog.PostgresDevLiteID,
		"parameters": map[string]any{"access": "readwrite"},
	})
	if err != nil || code != http.StatusCreated {
		t.Fatalf("bind: %d %s %v; want 201 (OpenBao answers at once)", code, body, err)
	}
	var bound struct {
		Credentials map[string]any `json:"credentials"`
	}
	if err := json.Unmarshal(body, &bound); err != nil {
		t.Fatal(err)
	}
	creds := map[string]string{}
	for k, v := range bound.Credentials {
		if s, ok := v.(string); ok {
			creds[k] = s
		}
	}
	t.Logf("TIMING bind (OpenBao-issued logins): %s (login %s)", time.Since(step).Round(time.Second), creds["username"])
	// OpenBao's default username template with the binding token's display
	// name (docs/openbao.md), and a lease under the binding's own role.
	if !strings.HasPrefix(creds["username"], "v-token-st-") {
		t.Errorf("binding username %q, want an OpenBao login (v-token-st-…)", creds["username"])
	}
	roles, err := bao.Root.Logical().ListWithContext(ctx, "sys/leases/lookup/database/creds")
	if err != nil || roles == nil {
		t.Fatalf("OpenBao's leases: %v", err)
	}
	if !strings.Contains(fmt.Sprint(roles.Data["keys"]), conn+"-readwrite-b") {
		t.Errorf("OpenBao has no lease under the binding's role %s-readwrite-b…: %v", conn, roles.Data["keys"])
	}
	checkBindingConnects(ctx, t, p, creds, platformCA)

	// The Spring Boot application as a pod with the binding Secret
	// mounted: Flyway migrates as the owner login, the application reads
	// and writes as the readwrite login over TLS (verify-full).
	step = time.Now()
	secretName := "binding-" + bindingID
	secret, err := p.Client.CoreV1().Secrets(tenant).Get(ctx, secretName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the binding Secret: %v", err)
	}
	app, err := p.DeploySpringApp(ctx, SpringAppInstall{Image: springImage, Namespace: tenant, BindingSecret: secretName})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("TIMING Spring Boot pod ready (Flyway migrated, start-up check passed): %s", time.Since(step).Round(time.Second))
	step = time.Now()
	var check *SpringCheck
	if err := wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
		check, err = app.Check(ctx)
		return err == nil, nil
	}); err != nil {
		t.Fatalf("the application's /check through its Service: %v; its log: %s", err, p.podLogTail(ctx, tenant, "app=springapp"))
	}
	t.Logf("TIMING first /check from the host through the Service: %s", time.Since(step).Round(time.Second))
	pg := check.Postgres
	flywayUser := string(secret.Data["spring.flyway.user"])
	if pg.Inserted != 1 || pg.Read != pg.Wrote || pg.Wrote == "" {
		t.Errorf("the application wrote %q (%d rows) and read %q", pg.Wrote, pg.Inserted, pg.Read)
	}
	if pg.SessionUser != creds["username"] || string(secret.Data["username"]) != creds["username"] {
		t.Errorf("the application is connected as %q, want the binding's OpenBao login %q", pg.SessionUser, creds["username"])
	}
	if !pg.SSL {
		t.Errorf("the application's session is not TLS")
	}
	if !strings.HasPrefix(flywayUser, "v-token-st-") || flywayUser == creds["username"] || !strings.Contains(pg.MigratedBy, "session_user="+flywayUser) || pg.TableOwner != "strata_owner" {
		t.Errorf("migration: ran as %q (table owner %q), want the binding's OpenBao owner login %q acting as strata_owner", pg.MigratedBy, pg.TableOwner, flywayUser)
	}

	// Unbind: OpenBao revokes the leases, ends the logins' sessions and
	// drops the logins, the running application's included.
	step = time.Now()
	if code, body, err := osb.do(ctx, http.MethodDelete, bindingPath+"?"+ids, nil); err != nil || code != http.StatusOK {
		t.Fatalf("unbind: %d %s %v", code, body, err)
	}
	if check, err := app.Check(ctx); err == nil {
		t.Errorf("the application still reads and writes after the unbind, as %s", check.Postgres.SessionUser)
	} else {
		t.Logf("after the unbind, the application's /check fails: %v", err)
	}
	if err := p.Client.AppsV1().Deployments(tenant).Delete(ctx, "springapp", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := connectAs(ctx, p, creds); err == nil {
		t.Errorf("the binding's login %s still connects after the unbind", creds["username"])
	} else {
		t.Logf("after the unbind, the login is refused: %v", err)
	}
	t.Logf("TIMING unbind (leases revoked, logins dropped): %s", time.Since(step).Round(time.Second))
	if leases, err := bao.Root.Logical().ListWithContext(ctx, "sys/leases/lookup/database/creds"); err != nil {
		t.Fatal(err)
	} else if leases != nil && strings.Contains(fmt.Sprint(leases.Data["keys"]), conn+"-readwrite-b") {
		t.Errorf("OpenBao still has leases under the binding's role after the unbind: %v", leases.Data["keys"])
	}
	checkOpenBaoAudit(ctx, t, p, creds, flywayUser)
	checkNoPasswordInPostgresLog(ctx, t, p, tenant, cluster, creds["password"], string(secret.Data["spring.flyway.password"]))

	// A masked copy of this OpenBao-provisioned instance, bound through
	// OpenBao (the copy's management role handed over by a DatabaseRole).
	testOpenBaoCopy(ctx, t, p, osb, bao, tenant, instanceID)
	// A seed from a dump of it in S3, through an OpenBao owner login.
	testOpenBaoSeedFromS3(ctx, t, p, osb, store, tenant, instanceID)

	// Deprovision: OpenBao's connection and roles, the certificate and the
	// Cluster go.
	step = time.Now()
	if code, body, err := osb.do(ctx, http.MethodDelete, instancePath+"?accepts_incomplete=true&"+ids, nil); err != nil || code != http.StatusAccepted {
		t.Fatalf("deprovision: %d %s %v", code, body, err)
	}
	var lastCode int
	if err := wait.PollUntilContextTimeout(ctx, 2*time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		lastCode, body, err = osb.do(ctx, http.MethodGet, instancePath+"/last_operation?operation=deprovision", nil)
		return err == nil && lastCode == http.StatusGone, nil
	}); err != nil {
		t.Fatalf("deprovision: last_operation %d %s", lastCode, body)
	}
	t.Logf("TIMING deprovision → gone: %s", time.Since(step).Round(time.Second))
	checkDeprovisioned(ctx, t, p, bao, tenant, cluster, conn)

	// A restore of an OpenBao-provisioned standard instance (backups),
	// bound through OpenBao; the dev-lite instance is gone, so the node
	// has room.
	testOpenBaoRestore(ctx, t, p, osb, broker)

	step = time.Now()
	*stopped = true
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if left := p.Leftovers(); len(left) > 0 {
		t.Fatalf("left on the host after Stop: %v", left)
	}
	if err := p.Purge(); err != nil {
		t.Fatal(err)
	}
	t.Logf("TIMING stop and purge: %s", time.Since(step).Round(time.Second))
	t.Logf("TIMING the whole test: %s", time.Since(begin).Round(time.Second))
}

// checkNoPasswordInPostgresLog reads the instance's PostgreSQL log
// (pgaudit logs OpenBao's CREATE ROLE statements, which carry SCRAM
// verifiers only): the binding's passwords never appear.
func checkNoPasswordInPostgresLog(ctx context.Context, t *testing.T, p *Platform, ns, cluster string, passwords ...string) {
	t.Helper()
	raw, err := p.Client.CoreV1().Pods(ns).GetLogs(cluster+"-1", &corev1.PodLogOptions{Container: "postgres"}).DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	log := string(raw)
	if !strings.Contains(log, "CREATE ROLE") {
		t.Errorf("the PostgreSQL log of %s has no CREATE ROLE (pgaudit): nothing to check", cluster)
	}
	for i, pw := range passwords {
		if pw == "" || strings.Contains(log, pw) {
			t.Errorf("the PostgreSQL log of %s holds the binding's password #%d (or it is empty)", cluster, i)
		}
	}
}

// checkOpenBaoAudit reads OpenBao's audit device (declared in its server
// configuration, writing to the pod's log): the binding's credential reads
// and revocations are there, the login names in clear
// (audit_non_hmac_response_keys), the passwords never.
func checkOpenBaoAudit(ctx context.Context, t *testing.T, p *Platform, creds map[string]string, flywayUser string) {
	t.Helper()
	pods, err := p.Client.CoreV1().Pods(OpenBaoNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + openBaoName})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("OpenBao's pod: %v (%d pods)", err, len(pods.Items))
	}
	raw, err := p.Client.CoreV1().Pods(OpenBaoNamespace).GetLogs(pods.Items[0].Name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	log := string(raw)
	for _, want := range []string{`"path":"database/creds/`, `"path":"sys/leases/revoke/database/creds/`, creds["username"], flywayUser} {
		if !strings.Contains(log, want) {
			t.Errorf("OpenBao's audit log has no %q", want)
		}
	}
	if strings.Contains(log, creds["password"]) {
		t.Errorf("OpenBao's audit log holds the binding's password in clear")
	}
}

// brokerNamespace is where the test installs the broker.
const brokerNamespace = "strata-system"

// checkBrokerOpenBaoLogin logs in to OpenBao as the broker does (Kubernetes
// auth with a token of the chart's ServiceAccount, which OpenBao reviews
// with the API server) and checks the token carries only the broker's
// policy.
func checkBrokerOpenBaoLogin(ctx context.Context, t *testing.T, p *Platform, bao *OpenBao) {
	t.Helper()
	tr, err := p.Client.CoreV1().ServiceAccounts(brokerNamespace).CreateToken(ctx, BrokerRelease, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := bao.Root.Clone()
	if err != nil {
		t.Fatal(err)
	}
	c.ClearToken()
	login, err := c.Logical().WriteWithContext(ctx, "auth/kubernetes/login", map[string]any{"role": "strata-broker", "jwt": tr.Status.Token})
	if err != nil || login == nil || login.Auth == nil {
		t.Fatalf("Kubernetes auth login as %s/%s: %v", brokerNamespace, BrokerRelease, err)
	}
	if got := strings.Join(login.Auth.TokenPolicies, ","); got != "default,strata-broker" {
		t.Errorf("the broker's OpenBao token has policies %s, want default,strata-broker", got)
	}
	c.SetToken(login.Auth.ClientToken)
	if err := c.Auth().Token().RevokeSelfWithContext(ctx, ""); err != nil {
		t.Errorf("revoking the test's login: %v", err)
	}
}

// checkServerCertificate checks cert-manager issued the instance's server
// certificate (Certificate Ready) and that PostgreSQL presents a
// certificate chained to the platform CA.
func checkServerCertificate(ctx context.Context, t *testing.T, p *Platform, ns, cluster string, platformCA []byte) {
	t.Helper()
	certs := dynamic.NewForConfigOrDie(p.AdminConfig).Resource(schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "certificates"}).Namespace(ns)
	c, err := certs.Get(ctx, cluster+"-server-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the instance's Certificate: %v", err)
	}
	conditions, _, _ := unstructured.NestedSlice(c.Object, "status", "conditions")
	ready := false
	for _, cond := range conditions {
		m, _ := cond.(map[string]any)
		if m["type"] == "Ready" && m["status"] == "True" {
			ready = true
		}
	}
	if !ready {
		t.Errorf("Certificate %s/%s-server-tls not Ready: %v", ns, cluster, conditions)
	}
	// The server's chain, verified against the platform CA only, for the
	// -rw Service's name (pgconn's TLS after PostgreSQL's SSLRequest).
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(platformCA)
	host := cluster + "-rw." + ns + ".svc"
	cfg, err := pgconn.ParseConfig("postgres://strata-tls-probe@" + host + ":5432/app?sslmode=verify-full")
	if err != nil {
		t.Fatal(err)
	}
	var chain []*x509.Certificate
	cfg.TLSConfig = &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error { chain = cs.PeerCertificates; return nil }}
	cfg.Fallbacks = nil
	cfg.LookupFunc = clusterLookup(p)
	_, err = pgconn.ConnectConfig(ctx, cfg)
	// The probe has no login: PostgreSQL refuses it, after the TLS
	// handshake verified the chain.
	if len(chain) == 0 {
		t.Fatalf("no TLS handshake with %s verified against the platform CA: %v", host, err)
	}
	t.Logf("%s presents %q issued by %q (verified against the platform CA)", host, chain[0].Subject.CommonName, chain[0].Issuer.CommonName)
}

// clusterLookup resolves a Service's name as a pod would: the host has no
// cluster search domains, so <svc>.<ns>.svc gets its cluster.local.
func clusterLookup(p *Platform) func(context.Context, string) ([]string, error) {
	resolver := p.ClusterResolver()
	return func(ctx context.Context, host string) ([]string, error) {
		if strings.HasSuffix(host, ".svc") {
			host += ".cluster.local"
		}
		return resolver.LookupHost(ctx, host)
	}
}

// connectAs connects with a binding's values from the host (pgConnAs:
// verify-full against the binding's ca.crt, its host resolved by the
// cluster DNS).
func connectAs(ctx context.Context, p *Platform, creds map[string]string) error {
	_, err := queryAs(ctx, p, creds)
	return err
}

// queryAs connects as connectAs does and returns current_user.
func queryAs(ctx context.Context, p *Platform, creds map[string]string) (string, error) {
	c, err := pgConnAs(ctx, p, creds)
	if err != nil {
		return "", err
	}
	defer c.Close(ctx)
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var user string
	err = c.QueryRow(qctx, "select current_user").Scan(&user)
	return user, err
}

// checkBindingConnects connects with the binding's values and checks its
// CA is the platform CA.
func checkBindingConnects(ctx context.Context, t *testing.T, p *Platform, creds map[string]string, platformCA []byte) {
	t.Helper()
	if strings.TrimSpace(creds["ca.crt"]) != strings.TrimSpace(string(platformCA)) {
		t.Errorf("the binding's ca.crt is not the platform CA")
	}
	user, err := queryAs(ctx, p, creds)
	if err != nil {
		t.Fatalf("connecting with the binding's values: %v", err)
	}
	if user != creds["username"] {
		t.Errorf("connected as %q, want the binding's login %q", user, creds["username"])
	}
}

// checkDeprovisioned checks nothing of the instance is left: no Cluster,
// no Certificate, no OpenBao connection.
func checkDeprovisioned(ctx context.Context, t *testing.T, p *Platform, bao *OpenBao, ns, cluster, conn string) {
	t.Helper()
	dyn := dynamic.NewForConfigOrDie(p.AdminConfig)
	for _, gvr := range []schema.GroupVersionResource{
		{Group: "postgresql.cnpg.io", Version: "v1", Resource: "clusters"},
		{Group: "cert-manager.io", Version: "v1", Resource: "certificates"},
	} {
		list, err := dyn.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range list.Items {
			if strings.HasPrefix(o.GetName(), cluster) && o.GetDeletionTimestamp() == nil {
				t.Errorf("%s %s/%s left after the deprovision", gvr.Resource, ns, o.GetName())
			}
		}
	}
	if cfg, err := bao.Root.Logical().ReadWithContext(ctx, "database/config/"+conn); err != nil || cfg != nil {
		t.Errorf("OpenBao connection %s after the deprovision: %v %v", conn, cfg, err)
	}
	roles, err := bao.Root.Logical().ListWithContext(ctx, "database/roles")
	if err != nil {
		t.Fatal(err)
	}
	if roles != nil && strings.Contains(fmt.Sprint(roles.Data["keys"]), conn) {
		t.Errorf("OpenBao roles of %s left after the deprovision: %v", conn, roles.Data["keys"])
	}
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

// installPlatformIssuer installs cert-manager with the platform's
// ClusterIssuer and returns the issuer's name and its CA.
func installPlatformIssuer(ctx context.Context, t *testing.T, p *Platform) (string, []byte) {
	t.Helper()
	if err := p.InstallCertManager(ctx); err != nil {
		t.Fatalf("%v\n(component logs in %s)", err, p.LogDir())
	}
	ca, err := p.PlatformCAPEM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return PlatformIssuer, ca
}
