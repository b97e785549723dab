//go:build linux

package platform

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/integration/pgtest"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/postgres"
)

// seedBucket is the bucket the seed-from-S3 test uploads its dump to.
const seedBucket = "strata-seeds"

// testSeedFromS3 seeds over OSB from a dump in the platform's S3, through
// versitygw's TLS listener (a certificate of the platform CA, which the
// broker's postgres.seedCABundle makes the fetch trust): a pg_dump -Fc of
// the instance seeded from a Secret (source, its readwrite binding's
// values) is uploaded, a dev-lite provisioned with seed.s3 reports
// "seeding from s3://…" and succeeds with the rows, owned by strata_owner,
// and without the seed's Job or login afterwards; a missing key fails the
// provision naming parameters.seed.s3.key. Both are deprovisioned, leaving
// no Job, login or Secret of theirs.
func testSeedFromS3(ctx context.Context, t *testing.T, p *Platform, osb *osbClient, store *S3, tenant string, source map[string]string, params func() map[string]any, deprovision func(string)) {
	clock := newStepClock(t)
	timing := clock.done

	// As the binding's migrations login (a member of strata_owner, which
	// owns every table), as a developer dumps with an owner binding.
	const key = "orders/orders.pgdump"
	dumpToS3(ctx, t, p, store, source, source["spring.flyway.user"], source["spring.flyway.password"], key)
	timing(fmt.Sprintf("pg_dump -Fc of the seeded instance uploaded to s3://%s/%s", seedBucket, key))

	keys := tenantS3Keys(ctx, t, p, tenant, store)
	seedParams := func(k string) map[string]any {
		ps := params()
		ps["seed"] = s3SeedParam(store, k, keys)
		return ps
	}
	put := func(id string, ps map[string]any) {
		t.Helper()
		code, body, err := provisionDevLite(ctx, osb, id, tenant, ps)
		if err != nil || code != http.StatusAccepted {
			t.Fatalf("provision %s: %d %s %v", id, code, body, err)
		}
	}
	poll := func(id string) (seen []string, state, last string) {
		t.Helper()
		return followProvision(ctx, t, p, osb, tenant, id)
	}
	dyn, err := dynamic.NewForConfig(p.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	roles := dyn.Resource(schema.GroupVersionResource{Group: "postgresql.cnpg.io", Version: "v1", Resource: "databaseroles"}).Namespace(tenant)
	// noLeftovers waits until the instance has no seed Job, DatabaseRole
	// or login Secret (CloudNativePG drops a deleted DatabaseRole's role
	// before the object goes), and returns what is left after a minute.
	var leftovers func(id string) []string
	noLeftovers := func(id string) []string {
		t.Helper()
		var left []string
		begin := time.Now()
		_ = wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, true, func(context.Context) (bool, error) {
			left = leftovers(id)
			return len(left) == 0, nil
		})
		t.Logf("leftovers of %s checked after %s: %v", id, time.Since(begin).Round(time.Second), left)
		return left
	}
	leftovers = func(id string) []string {
		t.Helper()
		inst := provisioners.Instance{ID: id, Name: provisioners.ResourceName("pg-", id), Namespace: tenant}
		sel := metav1.ListOptions{LabelSelector: provisioners.LabelInstanceID + "=" + provisioners.LabelValue(id)}
		var left []string
		if _, err := p.Client.BatchV1().Jobs(tenant).Get(ctx, postgres.S3SeedJobName(inst), metav1.GetOptions{}); err == nil {
			left = append(left, "Job "+postgres.S3SeedJobName(inst))
		}
		if l, err := roles.List(ctx, sel); err == nil {
			for _, r := range l.Items {
				left = append(left, "DatabaseRole "+r.GetName())
			}
		}
		if l, err := p.Client.CoreV1().Secrets(tenant).List(ctx, sel); err == nil {
			for _, s := range l.Items {
				if strings.HasPrefix(s.Name, "binding-") || strings.HasPrefix(s.Name, "strata-b-") {
					left = append(left, "Secret "+s.Name)
				}
			}
		}
		return left
	}

	id := "5eed53f0-1e0f-4a9b-8c7d-" + randomHex(t, 6)
	start := time.Now()
	put(id, seedParams(key))
	seen, state, last := poll(id)
	elapsed := time.Since(start).Round(time.Second)
	if state != "succeeded" {
		t.Fatalf("seed from S3: %s: %s (descriptions: %q); pods: %s", state, last, seen, p.podSummary(ctx, tenant))
	}
	t.Logf("TIMING a dev-lite seeded from S3, provision → succeeded: %s (descriptions: %q)", elapsed, seen)
	want := "seeding from s3://" + seedBucket + "/" + key
	sawSeeding := false
	for _, d := range seen {
		sawSeeding = sawSeeding || d == want
	}
	if !sawSeeding {
		t.Errorf("last_operation never said %q: %q", want, seen)
	}
	if !strings.HasSuffix(last, "; seeded from s3://"+seedBucket+"/"+key) {
		t.Errorf("the final description does not say the instance was seeded: %q", last)
	}
	if left := noLeftovers(id); len(left) > 0 {
		t.Errorf("the seed left its Job or login behind once done: %v", left)
	}
	creds, err := osb.bind(ctx, id, "b5eed53f-0000-4000-8000-"+randomHex(t, 6), catalog.PostgresDevLiteID, "readwrite")
	if err != nil {
		t.Fatal(err)
	}
	conn := bindingConn(ctx, t, p, creds)
	if problems := pgtest.CheckSeeded(ctx, conn); len(problems) > 0 {
		t.Errorf("the instance seeded from S3: %v", problems)
	}
	var owner string
	if err := conn.QueryRow(ctx, "SELECT tableowner FROM pg_tables WHERE tablename = 'customers'").Scan(&owner); err != nil || owner != postgres.OwnerRole {
		t.Errorf("the restored table belongs to %q (%v), want %s", owner, err, postgres.OwnerRole)
	}
	_ = conn.Close(ctx)
	timing("bound (readwrite), the dump's rows are there, owned by " + postgres.OwnerRole)

	// A key that is not there: the fetch's message, naming the parameter.
	missing := "5eed53f1-1e0f-4a9b-8c7d-" + randomHex(t, 6)
	start = time.Now()
	put(missing, seedParams("orders/missing.pgdump"))
	_, state, last = poll(missing)
	t.Logf("TIMING a seed from a missing S3 key, provision → %s: %s (%s)", state, time.Since(start).Round(time.Second), last)
	if state != "failed" || !strings.HasPrefix(last, "parameters.seed.s3.key: there is no object s3://"+seedBucket+"/orders/missing.pgdump") {
		t.Errorf("a missing key: want failed naming parameters.seed.s3.key, got %s: %s", state, last)
	}
	if strings.Contains(last, store.SecretAccessKey) || strings.Contains(last, store.AccessKeyID) {
		t.Errorf("the failure's description shows the S3 keys: %s", last)
	}
	timing("a missing key: provision failed naming parameters.seed.s3.key")

	for _, i := range []string{id, missing} {
		deprovision(i)
		if left := noLeftovers(i); len(left) > 0 {
			t.Errorf("deprovision of %s left %v", i, left)
		}
	}
	_ = p.Client.CoreV1().Secrets(tenant).Delete(ctx, keys, metav1.DeleteOptions{})
	timing("both deprovisioned, no seed Job or login left")
}

// dumpToS3 dumps the database of a binding's values (creds) with the
// host's pg_dump -Fc, connecting as user, and uploads the archive to
// s3://seedBucket/key.
func dumpToS3(ctx context.Context, t *testing.T, p *Platform, store *S3, creds map[string]string, user, password, key string) {
	t.Helper()
	bin := os.Getenv(pgtest.EnvBinDir)
	if bin == "" {
		bin = pgtest.DefaultBinDir
	}
	if _, err := os.Stat(filepath.Join(bin, "pg_dump")); err != nil {
		t.Fatalf("pg_dump is missing (%v): %s", err, pgtest.InstallHint)
	}
	addrs, err := p.ClusterResolver().LookupHost(ctx, creds["host"]+".cluster.local")
	if err != nil || len(addrs) == 0 {
		t.Fatalf("resolving %s: %v", creds["host"], err)
	}
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, []byte(creds["ca.crt"]), 0o600); err != nil {
		t.Fatal(err)
	}
	dump := filepath.Join(dir, "dump.pgdump")
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "pg_dump"), "-Fc", "-f", dump, fmt.Sprintf("host=%s hostaddr=%s port=%s dbname=%s user=%s sslmode=verify-full sslrootcert=%s",
		creds["host"], addrs[0], creds["port"], creds["database"], user, ca))
	cmd.Env = append(os.Environ(), "PGPASSWORD="+password)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_dump of %s: %v: %s", creds["host"], err, out)
	}
	archive, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	s3c := hostS3(store)
	var owned *types.BucketAlreadyOwnedByYou
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(seedBucket)}); err != nil && !errors.As(err, &owned) {
		t.Fatalf("create bucket %s: %v", seedBucket, err)
	}
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(seedBucket), Key: aws.String(key), Body: bytes.NewReader(archive)}); err != nil {
		t.Fatalf("upload the dump: %v", err)
	}
	t.Logf("pg_dump -Fc of %s: %d bytes in s3://%s/%s", creds["host"], len(archive), seedBucket, key)
}

// tenantS3Keys creates the tenant's S3 keys Secret, as a developer does,
// and returns its name.
func tenantS3Keys(ctx context.Context, t *testing.T, p *Platform, tenant string, store *S3) string {
	t.Helper()
	const name = "orders-s3-keys"
	if _, err := p.Client.CoreV1().Secrets(tenant).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		StringData: map[string]string{"AWS_ACCESS_KEY_ID": store.AccessKeyID, "AWS_SECRET_ACCESS_KEY": store.SecretAccessKey},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

// s3SeedParam is the seed parameter for s3://seedBucket/key through the
// store's TLS listener.
func s3SeedParam(store *S3, key, keysSecret string) map[string]any {
	return map[string]any{"s3": map[string]any{"bucket": seedBucket, "key": key, "endpoint": store.TLSEndpointURL, "region": store.Region, "credentials_secret": keysSecret}}
}

// followProvision follows an instance's last_operation to its end, and
// returns the descriptions it saw on the way and the last state.
func followProvision(ctx context.Context, t *testing.T, p *Platform, osb *osbClient, tenant, id string) (seen []string, state, last string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 2*time.Second, 15*time.Minute, true, func(ctx context.Context) (bool, error) {
		code, body, err := osb.do(ctx, http.MethodGet, instancePathOf(id)+"/last_operation", nil)
		if err != nil || code != http.StatusOK {
			return false, nil
		}
		var op struct{ State, Description string }
		if json.Unmarshal(body, &op) != nil {
			return false, nil
		}
		if len(seen) == 0 || seen[len(seen)-1] != op.Description {
			seen = append(seen, op.Description)
		}
		state, last = op.State, op.Description
		return op.State != "in progress", nil
	})
	if err != nil {
		t.Fatalf("provision %s did not end: %v; last %s: %s; pods: %s; events: %s", id, err, state, last, p.podSummary(ctx, tenant), warningEvents(ctx, p, tenant))
	}
	return seen, state, last
}
