//go:build linux

package integration_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	vault "github.com/hashicorp/vault/api"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/strata-dev/strata/binding"
	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/postgres"
)

// TestSharedPostgresWithOpenBao binds shared instances end to end: a real
// OpenBao with the broker's documented policy, the shared connection set
// up once as docs/openbao.md tells the platform engineer, a real
// PostgreSQL configured from the platform chart's shared Cluster, and the
// broker driven over OSB on the real API server. Each tenant's binding
// reaches its own database and not the other's; the broker cannot touch
// the platform's connection; unbind and deprovision take the logins and
// the OpenBao roles away.
func TestSharedPostgresWithOpenBao(t *testing.T) {
	g := NewWithT(t)
	w := sharedWorld(t)
	ctx := context.Background()
	platform := setUpOpenBao(t)
	srv := startSharedPostgres(t)
	shared := postgres.DefaultSharedConfig()
	w.ensureNamespace(t, shared.Namespace, nil)
	// cert-manager's Secret of the shared cluster's server certificate:
	// pgtest's CA stands for the platform CA.
	caSecret := shared.ClusterName + "-server-tls"
	_ = w.core.CoreV1().Secrets(shared.Namespace).Delete(ctx, caSecret, metav1.DeleteOptions{})
	_, err := w.core.CoreV1().Secrets(shared.Namespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: caSecret},
		Data:       map[string][]byte{"ca.crt": srv.CAPEM},
	}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())

	// The platform engineer's one-time steps (docs/openbao.md), with
	// loopback standing in for the cluster's DNS name.
	setManagementPassword(t, srv, "First-pw-9d3e1c7b")
	_, err = platform.root.Logical().Write("database/config/"+shared.OpenBaoConnection, map[string]any{
		"plugin_name": "postgresql-database-plugin",
		"connection_url": fmt.Sprintf("postgresql://{{username}}:{{password}}@127.0.0.1:%d/postgres?sslmode=verify-full&sslrootcert=%s",
			srv.Port, srv.CAFile),
		"username": "strata_openbao", "password": "First-pw-9d3e1c7b",
		"allowed_roles": binding.SharedRolePrefix + "*", "verify_connection": true,
	})
	g.Expect(err).NotTo(HaveOccurred(), "the management role connects to the postgres database over verify-full TLS")
	_, err = platform.root.Logical().Write("database/rotate-root/"+shared.OpenBaoConnection, nil)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = srv.Connect(t, "strata_openbao", "First-pw-9d3e1c7b", "postgres", "verify-full")
	g.Expect(err).To(HaveOccurred(), "OpenBao rotated the first password away")

	osb := w.startBrokerWith(t, platform.brokerOptions(platform.bao, srv.CAFile, func() string { return "unused: the shared connection is the platform's" }))
	const (
		idA = "5ba0ba00-0000-4000-8000-0000000000fa"
		idB = "5ba0ba00-0000-4000-8000-0000000000fb"
	)
	path := func(id string) string { return "/v2/service_instances/" + id }
	tenants := map[string]string{idA: "team-a", idB: "team-c"}
	dbName := func(id string) string {
		return postgres.SharedNamesOf(provisioners.Instance{ID: id, Namespace: tenants[id]}).Database
	}
	for _, id := range []string{idA, idB} {
		r := osb.do(http.MethodPut, path(id)+"?accepts_incomplete=true", provisionBody(catalog.PostgresSharedID, tenants[id], nil))
		g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
		// CloudNativePG's part, from the objects exactly as the broker
		// applied them, and its status.
		applied := w.operatorAppliesInstance(t, shared.Namespace, id)
		g.Expect(applied).To(HaveLen(5))
		applySharedAsCloudNativePG(t, srv, applied)
		r = osb.do(http.MethodGet, path(id)+"/last_operation", nil)
		g.Expect(r.Body["state"]).To(Equal("succeeded"), r.Raw)
	}

	bindPath := func(id, bid string) string { return path(id) + "/service_bindings/" + bid }
	bind := func(g Gomega, id, bid string, params map[string]any) map[string]any {
		r := osb.do(http.MethodPut, bindPath(id, bid), map[string]any{
			"service_id": catalog.PostgresServiceID, "plan_id": catalog.PostgresSharedID, "parameters": params})
		g.Expect(r.Code).To(Equal(http.StatusCreated), r.Raw)
		return r.Body["credentials"].(map[string]any)
	}
	const (
		rwA    = "5ba0ba00-0000-4000-8000-0000000000a1"
		ownerA = "5ba0ba00-0000-4000-8000-0000000000a2"
		rwB    = "5ba0ba00-0000-4000-8000-0000000000b1"
	)

	t.Run("each binding reaches its own database only", func(t *testing.T) {
		g := NewWithT(t)
		a := bind(g, idA, rwA, nil)
		g.Expect(a["host"]).To(Equal(shared.ClusterName + "-rw." + shared.Namespace + ".svc"))
		g.Expect(a["database"]).To(Equal(dbName(idA)))
		owner := bind(g, idA, ownerA, map[string]any{"access": "owner"})
		b := bind(g, idB, rwB, nil)

		oc, err := srv.Connect(t, owner["username"].(string), owner["password"].(string), dbName(idA), "verify-full")
		g.Expect(err).NotTo(HaveOccurred())
		_, err = oc.Exec(ctx, "CREATE TABLE orders (id int PRIMARY KEY)")
		g.Expect(err).NotTo(HaveOccurred(), "the owner login runs DDL")
		ac, err := srv.Connect(t, a["username"].(string), a["password"].(string), dbName(idA), "verify-full")
		g.Expect(err).NotTo(HaveOccurred())
		_, err = ac.Exec(ctx, "INSERT INTO orders VALUES (1)")
		g.Expect(err).NotTo(HaveOccurred(), "readwrite writes the owner's tables")

		_, err = srv.Connect(t, a["username"].(string), a["password"].(string), dbName(idB), "verify-full")
		g.Expect(err).To(MatchError(ContainSubstring("pg_hba.conf rejects connection")), "team-a's login in team-c's database")
		_, err = srv.Connect(t, b["username"].(string), b["password"].(string), dbName(idA), "verify-full")
		g.Expect(err).To(MatchError(ContainSubstring("pg_hba.conf rejects connection")), "team-c's login in team-a's database")
		bc, err := srv.Connect(t, b["username"].(string), b["password"].(string), dbName(idB), "verify-full")
		g.Expect(err).NotTo(HaveOccurred())
		_, err = bc.Exec(ctx, "SELECT 1")
		g.Expect(err).NotTo(HaveOccurred())
	})

	t.Run("the broker's policy keeps it off the platform's connection", func(t *testing.T) {
		g := NewWithT(t)
		cfg, err := platform.bao.Config()
		g.Expect(err).NotTo(HaveOccurred())
		c, err := vault.NewClient(cfg)
		g.Expect(err).NotTo(HaveOccurred())
		roleID, _ := os.ReadFile(platform.roleIDFile)
		secretID, _ := os.ReadFile(platform.secretFile)
		login, err := c.Logical().Write("auth/approle/login", map[string]any{"role_id": string(roleID), "secret_id": string(secretID)})
		g.Expect(err).NotTo(HaveOccurred())
		c.SetToken(login.Auth.ClientToken)
		_, err = c.Logical().Read("database/config/" + shared.OpenBaoConnection)
		g.Expect(err).To(MatchError(ContainSubstring("permission denied")), "read the shared connection")
		_, err = c.Logical().Write("database/config/"+shared.OpenBaoConnection, map[string]any{"allowed_roles": "*"})
		g.Expect(err).To(MatchError(ContainSubstring("permission denied")), "rewrite it")
		_, err = c.Logical().Write("database/rotate-root/"+shared.OpenBaoConnection, nil)
		g.Expect(err).To(MatchError(ContainSubstring("permission denied")), "rotate its password")
		_, err = c.Logical().Delete("database/config/" + shared.OpenBaoConnection)
		g.Expect(err).To(MatchError(ContainSubstring("permission denied")), "delete it")
		_, err = c.Logical().Write("database/roles/"+binding.SharedRolePrefix+"team-a.probe", map[string]any{
			"db_name": shared.OpenBaoConnection, "creation_statements": []string{`CREATE ROLE "{{name}}" SUPERUSER LOGIN PASSWORD '{{password}}';`},
		})
		g.Expect(err).NotTo(HaveOccurred(), "it may write roles on the connection (that is how it binds)...")
		_, err = c.Logical().Read("database/creds/" + binding.SharedRolePrefix + "team-a.probe")
		g.Expect(err).To(MatchError(ContainSubstring("permission denied")), "...but its own token cannot issue credentials: bindings are issued under the strata-binding token role")
		_, err = platform.root.Logical().Read("database/creds/" + binding.SharedRolePrefix + "team-a.probe")
		g.Expect(err).To(MatchError(ContainSubstring("superuser")), "and whatever a role says, the management role cannot make a superuser")
		_, err = c.Logical().Delete("database/roles/" + binding.SharedRolePrefix + "team-a.probe")
		g.Expect(err).NotTo(HaveOccurred())
	})

	t.Run("unbind drops the login, deprovision the instance's OpenBao roles", func(t *testing.T) {
		g := NewWithT(t)
		r := osb.do(http.MethodDelete, bindPath(idA, rwA)+"?service_id="+catalog.PostgresServiceID+"&plan_id="+catalog.PostgresSharedID, nil)
		g.Expect(r.Code).To(Equal(http.StatusOK), r.Raw)
		var n int
		g.Expect(srv.SuperuserTo(t, "postgres").QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'v-%' AND pg_has_role(oid, $1, 'MEMBER')", dbName(idA)+postgres.SharedReadWriteSuffix).Scan(&n)).To(Succeed())
		g.Expect(n).To(BeZero(), "the readwrite login is dropped")

		r = osb.do(http.MethodDelete, path(idA)+"?accepts_incomplete=true&service_id="+catalog.PostgresServiceID+"&plan_id="+catalog.PostgresSharedID, nil)
		g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
		w.collectGarbage(t, shared.Namespace, databaseRoleGVR, databaseGVR, netpolGVR)
		r = osb.do(http.MethodGet, path(idA)+"/last_operation?operation="+r.Body["operation"].(string), nil)
		expectGone(g, r)
		list, err := platform.root.Logical().List("database/roles")
		g.Expect(err).NotTo(HaveOccurred())
		var left []string
		for _, k := range list.Data["keys"].([]any) {
			if strings.HasPrefix(k.(string), binding.SharedRolePrefix+"team-a.") {
				left = append(left, k.(string))
			}
		}
		g.Expect(left).To(BeEmpty(), "team-a's OpenBao roles go with the instance")
		g.Expect(srv.SuperuserTo(t, "postgres").QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'v-%' AND pg_has_role(oid, $1, 'MEMBER')", dbName(idA)+postgres.SharedOwnerSuffix).Scan(&n)).To(Succeed())
		g.Expect(n).To(BeZero(), "and so do its remaining logins (the owner binding)")
		// team-c is untouched.
		list, err = platform.root.Logical().List("database/roles")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(fmt.Sprint(list.Data["keys"])).To(ContainSubstring(binding.SharedRolePrefix + "team-c."))
	})
}
