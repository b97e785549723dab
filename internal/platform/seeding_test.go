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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
// on the source can read and not write. A dump of the seeded instance
// seeds a third instance from the platform's S3 (testSeedFromS3). All
// are deprovisioned. The migration rehearsal runs on the copy
// (testMigrationRehearsalOnCopy).
func testSeedAndMaskedCopy(ctx context.Context, t *testing.T, p *Platform, osb *osbClient, tenant string, store *S3) {
	clock := newStepClock(t)
	timing := clock.done
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
		if code, body, err := provisionDevLite(ctx, osb, id, tenant, params); err != nil || code != http.StatusAccepted {
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

	// The service's migrations rehearsed on the copy (the copy is the
	// rollback).
	testMigrationRehearsalOnCopy(ctx, t, p, copyCreds, masked, seeded)
	timing("migration rehearsal on the copy")

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
	deprovision := func(id string) {
		t.Helper()
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
	// A seed from a dump of the seeded instance in S3, while its binding
	// still works.
	testSeedFromS3(ctx, t, p, osb, store, tenant, seededCreds, func() map[string]any { return provisionParams(small) }, deprovision)
	timing("seeded from S3 (and a missing key refused), deprovisioned")

	for _, id := range []string{copyID, seededID} {
		deprovision(id)
	}
	for _, name := range []string{postgres.NamesOf(copyInst).CopyLogin} {
		if _, err := p.Client.CoreV1().Secrets(tenant).Get(ctx, name, metav1.GetOptions{}); err == nil {
			t.Errorf("Secret %s left after the copy's deprovision", name)
		}
	}
	timing("copy and source deprovisioned")

	testFailingSeed(ctx, t, p, osb, tenant, provisionParams(small), deprovision)
	timing("a seed whose SQL fails: provision failed, deprovisioned")
}

// provisionParams are the parameters every instance of this test starts
// from.
func provisionParams(resources map[string]any) map[string]any {
	return map[string]any{"version": PostgreSQLMajor, "resources": resources}
}

// testFailingSeed provisions an instance whose seed SQL fails (a primary
// key violation, at the second row): the provision fails as soon as
// CloudNativePG's initdb Job has failed twice, long before the Job's
// back-off limit (6) would make CloudNativePG give up, with a description
// naming parameters.seed and the Secret, and never the seed's SQL or
// rows; deprovisioning removes the Cluster, its Job and the seed Secret.
func testFailingSeed(ctx context.Context, t *testing.T, p *Platform, osb *osbClient, tenant string, params map[string]any, deprovision func(string)) {
	const broken, rowValue = "broken-fixtures", "strata-row-value-7f3a"
	if _, err := p.Client.CoreV1().Secrets(tenant).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: broken},
		StringData: map[string]string{postgres.DefaultSeedKey: "CREATE TABLE public.t (id int PRIMARY KEY, note text);\n" +
			"INSERT INTO public.t VALUES (1, '" + rowValue + "'), (1, '" + rowValue + "');\n"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	id := "bad5eed0-1e0f-4a9b-8c7d-" + randomHex(t, 6)
	inst := provisioners.Instance{Name: provisioners.ResourceName("pg-", id), Namespace: tenant}
	params["seed"] = map[string]any{"secret": broken}
	start := time.Now()
	code, body, err := provisionDevLite(ctx, osb, id, tenant, params)
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("provision %s: %d %s %v", id, code, body, err)
	}
	// The bound is the test's patience, not a speed assertion: without the
	// Job's status the provision stayed in progress ("Setting up primary")
	// until CloudNativePG gave up after the back-off limit (about 10 min).
	err = osb.waitSucceeded(ctx, instancePathOf(id)+"/last_operation", 15*time.Minute)
	elapsed := time.Since(start).Round(time.Second)
	if err == nil || !strings.Contains(err.Error(), "failed: ") {
		t.Fatalf("a seed whose SQL fails: want last_operation failed, got %v; pods: %s", err, p.podSummary(ctx, tenant))
	}
	t.Logf("TIMING a seed whose SQL fails, provision → last_operation failed: %s (%v)", elapsed, err)
	for _, want := range []string{"parameters.seed: the seed SQL (Secret " + broken + ", key seed.sql) failed", "kubectl -n " + tenant + " logs job/" + inst.Name + "-1-initdb"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the failure's description does not say %q: %v", want, err)
		}
	}
	for _, leak := range []string{"INSERT", rowValue, "duplicate key"} {
		if strings.Contains(err.Error(), leak) {
			t.Errorf("the failure's description shows the seed's SQL or rows (%q): %v", leak, err)
		}
	}
	job, err := p.Client.BatchV1().Jobs(tenant).Get(ctx, inst.Name+"-1-initdb", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the initdb Job: %v", err)
	}
	limit := int32(6)
	if job.Spec.BackoffLimit != nil {
		limit = *job.Spec.BackoffLimit
	}
	t.Logf("the initdb Job had %d failed pods (back-off limit %d) when the provision failed", job.Status.Failed, limit)
	if job.Status.Failed > limit {
		t.Errorf("the provision failed only after the Job's back-off limit (%d failed pods, limit %d): the broker waited for CloudNativePG to give up", job.Status.Failed, limit)
	}

	deprovision(id)
	if err := wait.PollUntilContextTimeout(ctx, 2*time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, errJob := p.Client.BatchV1().Jobs(tenant).Get(ctx, inst.Name+"-1-initdb", metav1.GetOptions{})
		_, errSeed := p.Client.CoreV1().Secrets(tenant).Get(ctx, postgres.NamesOf(inst).Seed, metav1.GetOptions{})
		return apierrors.IsNotFound(errJob) && apierrors.IsNotFound(errSeed), nil
	}); err != nil {
		t.Errorf("the failed instance's initdb Job or seed Secret is left after its deprovision: %v", err)
	}
	_ = p.Client.CoreV1().Secrets(tenant).Delete(ctx, broken, metav1.DeleteOptions{})
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

// provisionDevLite asks the broker over OSB for a dev-lite PostgreSQL
// in tenant with params (asynchronously).
func provisionDevLite(ctx context.Context, osb *osbClient, id, tenant string, params map[string]any) (int, []byte, error) {
	return osb.do(ctx, http.MethodPut, instancePathOf(id)+"?accepts_incomplete=true", map[string]any{
		"service_id": catalog.PostgresServiceID, "plan_id": catalog.PostgresDevLiteID,
		"context":    map[string]any{"platform": "kubernetes", "namespace": tenant},
		"parameters": params,
	})
}
