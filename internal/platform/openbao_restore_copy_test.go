//go:build linux

package platform

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
)

// Restores and masked copies while OpenBao issues the credentials
// (TestOpenBaoAndSpringBootOnRealPlatform): their management role is set
// up by a DatabaseRole the broker hands over to OpenBao before the
// rotation (docs/openbao.md, Restores and copies).

var databaseRolesGVR = schema.GroupVersionResource{Group: "postgresql.cnpg.io", Version: "v1", Resource: "databaseroles"}

// pgConnAs connects with a binding's values (TLS verified against its
// ca.crt, by name).
func pgConnAs(ctx context.Context, p *Platform, creds map[string]string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(fmt.Sprintf("postgres://%s:%s/%s?sslmode=verify-full", creds["host"], creds["port"], creds["database"]))
	if err != nil {
		return nil, err
	}
	cfg.User, cfg.Password = creds["username"], creds["password"]
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(creds["ca.crt"]))
	cfg.TLSConfig = &tls.Config{RootCAs: pool, ServerName: creds["host"], MinVersion: tls.VersionTLS12}
	cfg.Fallbacks = nil
	cfg.LookupFunc = clusterLookup(p)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return pgx.ConnectConfig(cctx, cfg)
}

// checkHandedOver checks that the management role of a restore or copy
// was handed over to OpenBao: the DatabaseRole and its verifier Secret are
// gone from the tenant's namespace, and the first password from the
// broker's (OpenBao rotated it).
func checkHandedOver(ctx context.Context, t *testing.T, p *Platform, ns, instanceID string) {
	t.Helper()
	name := "pg-" + instanceID + "-openbao-login"
	if _, err := dynamic.NewForConfigOrDie(p.AdminConfig).Resource(databaseRolesGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("DatabaseRole %s/%s after the provision: %v; want it handed over (deleted)", ns, name, err)
	}
	if _, err := p.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Secret %s/%s (the verifier) after the provision: %v; want it deleted", ns, name, err)
	}
	first := provisioners.ResourceName("strata-first-password-", instanceID)
	if _, err := p.Client.CoreV1().Secrets(brokerNamespace).Get(ctx, first, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the first password %s/%s after the provision: %v; want it rotated and deleted", brokerNamespace, first, err)
	}
}

// testOpenBaoCopy copies the dev-lite instance sourceID of ns, masking a
// column, binds the copy (an OpenBao login), reads the copied, masked rows
// and writes one, unbinds and deprovisions the copy.
func testOpenBaoCopy(ctx context.Context, t *testing.T, p *Platform, osb *osbClient, bao *OpenBao, ns, sourceID string) {
	step := time.Now()
	timing := func(what string) {
		t.Logf("TIMING %s: %s", what, time.Since(step).Round(time.Second))
		step = time.Now()
	}
	src, err := osb.bind(ctx, sourceID, "b0c0b0c0-0000-4000-8000-"+randomHex(t, 6), catalog.PostgresDevLiteID, "owner")
	if err != nil {
		t.Fatalf("owner binding of the source: %v", err)
	}
	conn, err := pgConnAs(ctx, p, src)
	if err != nil {
		t.Fatalf("connect to the source as its owner login: %v", err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE copy_rows (id int PRIMARY KEY, email text NOT NULL); INSERT INTO copy_rows SELECT g, 'person' || g || '@example.org' FROM generate_series(1, 50) g"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	timing("source rows written through an OpenBao owner login")

	copyID := "c0b70000-0000-4a9b-8c7d-" + randomHex(t, 6)
	code, body, err := osb.do(ctx, http.MethodPut, instancePathOf(copyID)+"?accepts_incomplete=true", map[string]any{
		"service_id": catalog.PostgresServiceID, "plan_id": catalog.PostgresDevLiteID,
		"context": map[string]any{"platform": "kubernetes", "namespace": ns},
		"parameters": map[string]any{"version": PostgreSQLMajor, "copy_of": map[string]any{
			"instance": sourceID, "mask": map[string]any{"public.copy_rows.email": "email"},
		}},
	})
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("masked copy under OpenBao: %d %s %v; want 202", code, body, err)
	}
	if err := osb.waitSucceeded(ctx, instancePathOf(copyID)+"/last_operation", 10*time.Minute); err != nil {
		t.Fatalf("masked copy: %v; pods in %s: %s; events: %s", err, ns, p.podSummary(ctx, ns), warningEvents(ctx, p, ns))
	}
	timing("masked copy_of a dev-lite instance under OpenBao → succeeded (import, mask, management role handed over, rotate-root)")
	checkHandedOver(ctx, t, p, ns, copyID)
	copyConn := "strata-" + ns + "-pg-" + copyID
	if cfg, err := bao.Root.Logical().ReadWithContext(ctx, "database/config/"+copyConn); err != nil || cfg == nil {
		t.Fatalf("OpenBao has no connection %s after the copy: %v", copyConn, err)
	}

	bindingID := "b0c0b0c0-1111-4000-8000-" + randomHex(t, 6)
	creds, err := osb.bind(ctx, copyID, bindingID, catalog.PostgresDevLiteID, "readwrite")
	if err != nil {
		t.Fatalf("bind the copy: %v", err)
	}
	timing("bind the copy (OpenBao login)")
	if !strings.HasPrefix(creds["username"], "v-token-st-") {
		t.Errorf("the copy's binding username %q, want an OpenBao login", creds["username"])
	}
	c, err := pgConnAs(ctx, p, creds)
	if err != nil {
		t.Fatalf("connect to the copy with the OpenBao login: %v", err)
	}
	var rows, unmasked int
	if err := c.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE email LIKE 'person%@example.org') FROM copy_rows").Scan(&rows, &unmasked); err != nil {
		t.Fatal(err)
	}
	if rows != 50 || unmasked != 0 {
		t.Errorf("the copy has %d rows, %d with the source's emails; want 50, all masked", rows, unmasked)
	}
	if _, err := c.Exec(ctx, "INSERT INTO copy_rows VALUES (51, 'new@example.org')"); err != nil {
		t.Errorf("the copy's readwrite login cannot write: %v", err)
	}
	c.Close(ctx)
	t.Logf("copy %s: %d rows, masked, read and written as OpenBao login %s", copyID, rows, creds["username"])

	ids := "service_id=" + catalog.PostgresServiceID + "&plan_id=" + catalog.PostgresDevLiteID
	if code, body, err := osb.do(ctx, http.MethodDelete, instancePathOf(copyID)+"/service_bindings/"+bindingID+"?"+ids, nil); err != nil || code != http.StatusOK {
		t.Fatalf("unbind the copy: %d %s %v", code, body, err)
	}
	if _, err := pgConnAs(ctx, p, creds); err == nil {
		t.Errorf("the copy's login %s still connects after the unbind (OpenBao could not drop it)", creds["username"])
	}
	timing("unbind the copy (lease revoked, login dropped)")
	deprovisionIn(ctx, t, osb, copyID, catalog.PostgresDevLiteID)
	if cfg, err := bao.Root.Logical().ReadWithContext(ctx, "database/config/"+copyConn); err != nil || cfg != nil {
		t.Errorf("OpenBao still has connection %s after the copy's deprovision: %v", copyConn, err)
	}
	timing("copy deprovisioned")
}

// deprovisionIn deprovisions an instance of a plan over OSB and waits for 410.
func deprovisionIn(ctx context.Context, t *testing.T, osb *osbClient, id, planID string) {
	t.Helper()
	ids := "service_id=" + catalog.PostgresServiceID + "&plan_id=" + planID
	if code, body, err := osb.do(ctx, http.MethodDelete, instancePathOf(id)+"?accepts_incomplete=true&"+ids, nil); err != nil || code != http.StatusAccepted {
		t.Fatalf("deprovision %s: %d %s %v", id, code, body, err)
	}
	var last int
	var body []byte
	if err := wait.PollUntilContextTimeout(ctx, 2*time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		var err error
		last, body, err = osb.do(ctx, http.MethodGet, instancePathOf(id)+"/last_operation?operation=deprovision", nil)
		return err == nil && last == http.StatusGone, nil
	}); err != nil {
		t.Fatalf("deprovision %s: last_operation %d %s", id, last, body)
	}
}

// testOpenBaoRestore provisions a standard instance (backups) in
// restoreTenant under OpenBao, writes rows through an OpenBao owner login,
// waits until they are archived and restores the latest point: the
// restored instance's OpenBao login reads the rows and writes.
func testOpenBaoRestore(ctx context.Context, t *testing.T, p *Platform, osb *osbClient, b *Broker) {
	dyn := dynamic.NewForConfigOrDie(p.AdminConfig)
	step := time.Now()
	timing := func(what string) {
		t.Logf("TIMING %s: %s", what, time.Since(step).Round(time.Second))
		step = time.Now()
	}
	if _, err := p.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: restoreTenant}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sourceID := "9c1e7a52-b0b0-4f60-8a71-" + randomHex(t, 6)
	source := "pg-" + sourceID
	if code, body, err := provisionPG(ctx, osb, sourceID, nil); err != nil || code != http.StatusAccepted {
		t.Fatalf("provision the standard source: %d %s %v", code, body, err)
	}
	if _, err := waitLastOperation(ctx, osb, instancePathOf(sourceID)+"/last_operation", 20*time.Minute); err != nil {
		t.Fatalf("source provision: %v; pods: %s; events: %s", err, p.podSummary(ctx, restoreTenant), warningEvents(ctx, p, restoreTenant))
	}
	timing("standard source under OpenBao provisioned → succeeded")
	var window restorableWindow
	if err := wait.PollUntilContextTimeout(ctx, 3*time.Second, 10*time.Minute, true, func(ctx context.Context) (bool, error) {
		w, err := getWindow(ctx, osb, sourceID)
		window = w
		return err == nil && w.First != nil && w.Last != nil, nil
	}); err != nil {
		t.Fatalf("GET instance shows no restorable window: %v (%+v)", err, window)
	}
	timing("first backup completed: restorable window shown")

	// An OpenBao owner login acts as strata_owner (current_user), so it
	// is checked by session_user.
	owner, err := osb.bind(ctx, sourceID, "e1f2b0b0-0000-4000-8000-"+randomHex(t, 6), catalog.PostgresStandardID, "owner")
	if err != nil {
		t.Fatalf("owner binding of the standard source: %v", err)
	}
	if !strings.HasPrefix(owner["username"], "v-token-st-") {
		t.Errorf("the source's owner binding %q is not an OpenBao login", owner["username"])
	}
	conn, err := pgConnAs(ctx, p, owner)
	if err != nil {
		t.Fatalf("connect to the source as its owner login: %v", err)
	}
	var sessionUser string
	if err := conn.QueryRow(ctx, "SELECT session_user").Scan(&sessionUser); err != nil || sessionUser != owner["username"] {
		t.Fatalf("connected as %q (%v), want the binding's login %q", sessionUser, err, owner["username"])
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE pitr_rows (id int PRIMARY KEY, note text NOT NULL); INSERT INTO pitr_rows SELECT g, 'before-' || g FROM generate_series(1, 100) g"); err != nil {
		t.Fatal(err)
	}
	want := readRows(ctx, t, conn)
	conn.Close(ctx)
	switched := switchWALAndWaitArchived(ctx, t, p, dyn, source)
	t.Logf("WAL segment %s archived", switched)
	// "latest" recovers to the end of the archived WAL; the window's end
	// passes the rows' commit once archive_timeout has passed.
	committed := time.Now()
	if err := wait.PollUntilContextTimeout(ctx, 2*time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		w, err := getWindow(ctx, osb, sourceID)
		if err != nil || w.Last == nil {
			return false, nil
		}
		last, err := time.Parse(time.RFC3339, *w.Last)
		return err == nil && last.After(committed), nil
	}); err != nil {
		t.Fatalf("the rows' commit never entered the restorable window")
	}
	timing("rows written through an OpenBao owner login, WAL archived")
	shrinkSource(ctx, t, p, dyn, source)

	restoredID := "9c1e7a52-b1b1-4f60-8a71-" + randomHex(t, 6)
	restoreAndCheck(ctx, t, p, osb, b, dyn, restoredID, sourceID, "latest", want)
	timing("restore (latest) of an OpenBao-provisioned instance → succeeded, rows read and a row written through an OpenBao readwrite login")
	checkHandedOver(ctx, t, p, restoreTenant, restoredID)
	// The source's OpenBao connection still works: the restore took
	// nothing from it.
	if _, err := osb.bind(ctx, sourceID, "e1f2b0b0-2222-4000-8000-"+randomHex(t, 6), catalog.PostgresStandardID, "readonly"); err != nil {
		t.Errorf("binding the source after its restore: %v", err)
	}
	deprovisionPG(ctx, t, osb, restoredID)
	deprovisionPG(ctx, t, osb, sourceID)
	timing("restored instance and source deprovisioned")
}
