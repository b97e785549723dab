//go:build linux

package platform

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/integration/pgtest"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/postgres"
)

// testSeedAndMaskedCopy runs over OSB on the broker osb calls (its
// bindings are DatabaseRole logins): a dev-lite instance seeded from a
// Secret of the tenant (seed), then a masked copy of it (copy_of, through
// CloudNativePG's logical import). The seeded instance has the seed's
// rows; the copy has no original value of a masked column, equal
// unmasked columns and matching joins (pgtest.CheckMaskedCopy, the
// checks the harness test makes on a local PostgreSQL); the copy's login
// on the source can read and not write. Both are deprovisioned.
func testSeedAndMaskedCopy(ctx context.Context, t *testing.T, p *Platform, osb *osbClient, tenant string) {
	step := time.Now()
	timing := func(what string) {
		t.Logf("TIMING %s: %s", what, time.Since(step).Round(time.Second))
		step = time.Now()
	}
	const fixtures = "orders-fixtures"
	if _, err := p.Client.CoreV1().Secrets(tenant).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: fixtures},
		StringData: map[string]string{postgres.DefaultSeedKey: pgtest.OrdersSeed},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	seededID := "5eed0000-1e0f-4a9b-8c7d-" + randomHex(t, 6)
	copyID := "c0b70000-1e0f-4a9b-8c7d-" + randomHex(t, 6)
	// The node has 2 CPUs shared with OpenBao, cert-manager and the
	// operators: the instances ask for little.
	small := map[string]any{"cpu": "100m", "memory": "512Mi"}
	provision := func(id string, params map[string]any) {
		t.Helper()
		params["version"], params["resources"] = PostgreSQLMajor, small
		code, body, err := osb.do(ctx, http.MethodPut, instancePathOf(id)+"?accepts_incomplete=true", map[string]any{
			"service_id": catalog.PostgresServiceID, "plan_id": catalog.PostgresDevLiteID,
			"context":    map[string]any{"platform": "kubernetes", "namespace": tenant},
			"parameters": params,
		})
		if err != nil || code != http.StatusAccepted {
			t.Fatalf("provision %s: %d %s %v", id, code, body, err)
		}
		if err := osb.waitSucceeded(ctx, instancePathOf(id)+"/last_operation", 15*time.Minute); err != nil {
			t.Fatalf("provision %s: %v; pods: %s; events: %s", id, err, p.podSummary(ctx, tenant), warningEvents(ctx, p, tenant))
		}
	}

	provision(seededID, map[string]any{"seed": map[string]any{"secret": fixtures}})
	timing("dev-lite seeded from a Secret, provisioned over OSB → succeeded")
	seededCreds, err := osb.bind(ctx, seededID, "b5eed000-0000-4000-8000-"+randomHex(t, 6), catalog.PostgresDevLiteID, "readwrite")
	if err != nil {
		t.Fatal(err)
	}
	seeded := bindingConn(ctx, t, p, seededCreds)
	if problems := pgtest.CheckSeeded(ctx, seeded); len(problems) > 0 {
		t.Fatalf("the seeded instance: %v", problems)
	}
	var owner string
	if err := seeded.QueryRow(ctx, "SELECT tableowner FROM pg_tables WHERE tablename = 'customers'").Scan(&owner); err != nil || owner != postgres.OwnerRole {
		t.Errorf("the seed's table belongs to %q (%v), want %s: the seed runs as the owner group", owner, err, postgres.OwnerRole)
	}
	timing("bound (readwrite), the seed's rows are there")

	mask := map[string]any{}
	for k, v := range pgtest.OrdersMask {
		mask[k] = v
	}
	provision(copyID, map[string]any{"copy_of": map[string]any{"instance": seededID, "mask": mask}})
	timing("masked copy (logical import + masking) provisioned over OSB → succeeded")
	copyCreds, err := osb.bind(ctx, copyID, "bc0b7000-0000-4000-8000-"+randomHex(t, 6), catalog.PostgresDevLiteID, "owner")
	if err != nil {
		t.Fatal(err)
	}
	masked := bindingConn(ctx, t, p, copyCreds)
	if problems := pgtest.CheckMaskedCopy(ctx, seeded, masked); len(problems) > 0 {
		t.Errorf("the masked copy:\n%s", strings.Join(problems, "\n"))
	}
	// The import restored as the copy's owner group: an owner binding
	// (Flyway's) can migrate the copy.
	if _, err := masked.Exec(ctx, "ALTER TABLE public.customers ADD COLUMN strata_probe int; ALTER TABLE public.customers DROP COLUMN strata_probe"); err != nil {
		t.Errorf("an owner binding cannot change the copy's tables: %v", err)
	}
	timing("bound (owner), masked copy compared with the source")

	// The copy's login on the source reads and cannot write.
	copyInst := provisioners.Instance{Name: provisioners.ResourceName("pg-", copyID)}
	login, err := p.Client.CoreV1().Secrets(tenant).Get(ctx, postgres.NamesOf(copyInst).CopyLogin, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	asCopy := map[string]string{}
	for k, v := range seededCreds {
		asCopy[k] = v
	}
	asCopy["username"], asCopy["password"] = string(login.Data["username"]), string(login.Data["password"])
	reader := bindingConn(ctx, t, p, asCopy)
	var n int
	if err := reader.QueryRow(ctx, "SELECT count(*) FROM public.customers").Scan(&n); err != nil || n != pgtest.OrdersCustomers {
		t.Errorf("the copy's login reads %d customers from the source (%v)", n, err)
	}
	if _, err := reader.Exec(ctx, "UPDATE public.customers SET name = 'x' WHERE id = 1"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("the copy's login could write to the source: %v", err)
	}
	for _, c := range []*pgx.Conn{reader, masked, seeded} {
		_ = c.Close(ctx)
	}

	// Deprovision the copy (its login leaves the source), then the source.
	for _, id := range []string{copyID, seededID} {
		ids := "service_id=" + catalog.PostgresServiceID + "&plan_id=" + catalog.PostgresDevLiteID
		if code, body, err := osb.do(ctx, http.MethodDelete, instancePathOf(id)+"?accepts_incomplete=true&"+ids, nil); err != nil || (code != http.StatusAccepted && code != http.StatusOK) {
			t.Fatalf("deprovision %s: %d %s %v", id, code, body, err)
		}
		if err := wait.PollUntilContextTimeout(ctx, 2*time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
			code, _, err := osb.do(ctx, http.MethodGet, instancePathOf(id), nil)
			return err == nil && code == http.StatusNotFound, nil
		}); err != nil {
			t.Fatalf("deprovision %s did not finish: %v", id, err)
		}
	}
	for _, name := range []string{postgres.NamesOf(copyInst).CopyLogin} {
		if _, err := p.Client.CoreV1().Secrets(tenant).Get(ctx, name, metav1.GetOptions{}); err == nil {
			t.Errorf("Secret %s left after the copy's deprovision", name)
		}
	}
	timing("copy and source deprovisioned")
}

// bindingConn connects from the host with a binding's values (TLS
// verify-full against its ca.crt, the host resolved by the cluster DNS),
// retrying while the login reaches the server.
func bindingConn(ctx context.Context, t *testing.T, p *Platform, creds map[string]string) *pgx.Conn {
	t.Helper()
	addrs, err := p.ClusterResolver().LookupHost(ctx, creds["host"]+".cluster.local")
	if err != nil || len(addrs) == 0 {
		t.Fatalf("resolving %s through the cluster DNS: %v", creds["host"], err)
	}
	r := &DemoResult{Binding: creds, HostAddr: addrs[0]}
	cfg, err := r.connConfig()
	if err != nil {
		t.Fatal(err)
	}
	var conn *pgx.Conn
	var lastErr error
	if err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		conn, lastErr = pgx.ConnectConfig(ctx, cfg)
		return lastErr == nil, nil
	}); err != nil {
		t.Fatalf("connecting as %s to %s: %v (last error: %v)", creds["username"], creds["host"], err, lastErr)
	}
	return conn
}
