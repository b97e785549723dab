//go:build linux

package platform

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/postgres"
)

// testOpenBaoSeedFromS3 seeds a dev-lite from a dump in S3 while OpenBao
// issues the credentials: the seed's owner login is an OpenBao login
// (issued through the same path as a binding), it restores the source's
// copy_rows (written by testOpenBaoCopy) as strata_owner, and once the
// provision succeeded its lease is revoked and its role dropped, the Job
// is gone, and a binding reads the rows. The source sourceID is a dev-lite
// instance of ns.
func testOpenBaoSeedFromS3(ctx context.Context, t *testing.T, p *Platform, osb *osbClient, store *S3, ns, sourceID string) {
	clock := newStepClock(t)
	timing := clock.done
	src, err := osb.bind(ctx, sourceID, "b5eedb0b-0000-4000-8000-"+randomHex(t, 6), catalog.PostgresDevLiteID, "owner")
	if err != nil {
		t.Fatalf("owner binding of the source: %v", err)
	}
	const key = "openbao/copy_rows.pgdump"
	dumpToS3(ctx, t, p, store, src, src["username"], src["password"], key)
	timing("pg_dump -Fc of the source as an OpenBao owner login, uploaded")
	keys := tenantS3Keys(ctx, t, p, ns, store)
	defer func() { _ = p.Client.CoreV1().Secrets(ns).Delete(ctx, keys, metav1.DeleteOptions{}) }()

	id := "5eedb0b0-1e0f-4a9b-8c7d-" + randomHex(t, 6)
	code, body, err := provisionDevLite(ctx, osb, id, ns, map[string]any{"version": PostgreSQLMajor, "seed": s3SeedParam(store, key, keys)})
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("provision seeded from S3 under OpenBao: %d %s %v; want 202", code, body, err)
	}
	seen, state, last := followProvision(ctx, t, p, osb, ns, id)
	if state != "succeeded" || !strings.HasSuffix(last, "; seeded from s3://"+seedBucket+"/"+key) {
		t.Fatalf("seed from S3 under OpenBao: %s: %s (descriptions: %q)", state, last, seen)
	}
	timing("dev-lite seeded from S3 under OpenBao → succeeded")
	inst := provisioners.Instance{ID: id, Name: provisioners.ResourceName("pg-", id), Namespace: ns}
	if _, err := p.Client.BatchV1().Jobs(ns).Get(ctx, postgres.S3SeedJobName(inst), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the seed's Job %s is still there after the provision (%v)", postgres.S3SeedJobName(inst), err)
	}

	creds, err := osb.bind(ctx, id, "b5eedb0b-1111-4000-8000-"+randomHex(t, 6), catalog.PostgresDevLiteID, "readwrite")
	if err != nil {
		t.Fatalf("bind the seeded instance: %v", err)
	}
	conn, err := pgConnAs(ctx, p, creds)
	if err != nil {
		t.Fatalf("connect to the seeded instance with its OpenBao login: %v", err)
	}
	defer conn.Close(ctx)
	var rows int
	var owner string
	if err := conn.QueryRow(ctx, "SELECT count(*), (SELECT tableowner FROM pg_tables WHERE tablename = 'copy_rows') FROM copy_rows").Scan(&rows, &owner); err != nil {
		t.Fatalf("read the seeded rows: %v", err)
	}
	if rows != 50 || owner != postgres.OwnerRole {
		t.Errorf("the seeded instance has %d copy_rows owned by %q; want the source's 50, owned by %s", rows, owner, postgres.OwnerRole)
	}
	// The seed's OpenBao login was revoked: OpenBao dropped its role, so
	// the only OpenBao logins left are this binding's.
	r, err := conn.Query(ctx, "SELECT rolname FROM pg_roles WHERE rolname LIKE 'v-%' ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	logins, err := pgx.CollectRows(r, pgx.RowTo[string])
	// The binding's own: its readwrite login and its migrations (owner)
	// login.
	bound := []string{creds["username"], creds["spring.flyway.user"]}
	slices.Sort(bound)
	if err != nil || !slices.Equal(logins, bound) {
		t.Errorf("OpenBao logins on the seeded instance: %v (%v); want only the binding's %v (the seed's revoked)", logins, err, bound)
	}
	t.Logf("seeded %s: %d rows owned by %s, read as OpenBao login %s; seed login revoked", id, rows, owner, creds["username"])
	timing("bound through OpenBao, rows read, the seed's login gone")
	deprovisionIn(ctx, t, osb, id, catalog.PostgresDevLiteID)
	if jobs, err := p.Client.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: provisioners.LabelInstanceID + "=" + provisioners.LabelValue(id)}); err == nil && len(jobs.Items) > 0 {
		t.Errorf("Jobs of %s left after the deprovision: %d", id, len(jobs.Items))
	}
	timing("seeded instance deprovisioned")
}
