//go:build linux

package platform

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/strata-dev/strata/catalog"
)

// restoreTenant is the namespace of the source and restored instances.
const restoreTenant = "team-pitr"

// restoreArchiveTimeout is the broker's postgres.backup.archiveTimeoutSeconds
// here: the restorable window ends this far behind now, so the test waits
// this long after its target time (CloudNativePG's default is 300 s).
const restoreArchiveTimeout = 20 * time.Second

// TestPostgresRestoreOnRealPlatform proves point-in-time restore as an OSB
// provision on the real platform (CloudNativePG, the barman-cloud plugin,
// versitygw as the S3, the broker installed with its chart). Over OSB: a
// standard instance is provisioned, rows are committed before and after a
// time T and the WAL is switched and archived; GET instance shows the
// restorable window and /metrics its gauges; a restore to T is
// provisioned and has exactly the rows committed before T, and a binding
// to it works; a time outside the window is refused with 422; the source
// is deprovisioned and restored again to T from its kept backups.
//
// It also proves the scheduled restore drills (postgres_drill_test.go) on
// the same platform and backups: turned on through the chart's values at
// a 2-minute interval, the broker drills the live source by itself, first
// its newest point, then a random point of its window (RPO, RTO and
// success on /metrics, the drill namespace empty afterwards, the bucket
// unchanged), and later the restored instance, whose next drill
// fails once its base backups are removed from the bucket: the failure
// is on /metrics and the chart's alert rule fires on it.
func TestPostgresRestoreOnRealPlatform(t *testing.T) {
	t.Parallel() // each on a platform of its own (docs/platform.md, Tests)
	begin := time.Now()
	ctx, p, stopped := startTestPlatform(t, "test-restore-drills", 78*time.Minute)
	clock := newStepClock(t)
	timing := clock.done
	// Drills off until the restore steps are done: the node has room for
	// one instance and a drill's copy at a time.
	osb, b, store := installBackupStack(ctx, t, p, drillsValues(false))
	timing("platform, cert-manager, CloudNativePG, plugin, versitygw and broker ready")

	testRestore(ctx, t, p, osb, b, store)

	clock.restart()
	*stopped = true
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Purge(); err != nil {
		t.Fatal(err)
	}
	timing("stop and purge")
	t.Logf("TIMING the whole test: %s", time.Since(begin).Round(time.Second))
}

func testRestore(ctx context.Context, t *testing.T, p *Platform, osb *osbClient, b *Broker, store *S3) {
	dyn := dynamic.NewForConfigOrDie(p.AdminConfig)
	clock := newStepClock(t)
	timing := clock.done
	if _, err := p.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: restoreTenant}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sourceID := "9c1e7a52-5b3d-4f60-8a71-" + randomHex(t, 6)
	source := "pg-" + sourceID
	if code, body, err := provisionPG(ctx, osb, sourceID, nil); err != nil || code != http.StatusAccepted {
		t.Fatalf("provision the source: %d %s %v", code, body, err)
	}
	if _, err := waitLastOperation(ctx, osb, instancePathOf(sourceID)+"/last_operation", 20*time.Minute); err != nil {
		t.Fatalf("source provision: %v; pods: %s; events: %s", err, p.podSummary(ctx, restoreTenant), warningEvents(ctx, p, restoreTenant))
	}
	timing("standard source provisioned over OSB → succeeded")

	// The window appears once the ScheduledBackup's immediate base
	// backup completed and the plugin recorded it.
	var (
		window restorableWindow
		err    error
	)
	if err := wait.PollUntilContextTimeout(ctx, 3*time.Second, 10*time.Minute, true, func(ctx context.Context) (bool, error) {
		window, err = getWindow(ctx, osb, sourceID)
		return err == nil && window.First != nil && window.Last != nil, nil
	}); err != nil {
		t.Fatalf("GET instance shows no restorable window: %v (%+v)", err, window)
	}
	timing("first backup completed: GET instance shows the restorable window")
	t.Logf("restorable window of the source: %s to %s", *window.First, *window.Last)

	t.Run("OutsideWindowRefused", func(t *testing.T) {
		first, err := time.Parse(time.RFC3339, *window.First)
		if err != nil {
			t.Fatal(err)
		}
		early := first.Add(-time.Hour).Format(time.RFC3339)
		code, body, err := provisionPG(ctx, osb, "9c1e7a52-0000-4f60-8a71-"+randomHex(t, 6), restoreParam(sourceID, early))
		if err != nil || code != http.StatusUnprocessableEntity {
			t.Fatalf("restore to %s (before the window): %d %s %v; want 422", early, code, body, err)
		}
		for _, want := range []string{"RestoreOutsideWindow", "parameters.restore.to_time", "outside the restorable window", *window.First} {
			if !strings.Contains(string(body), want) {
				t.Errorf("the refusal %s does not say %q", body, want)
			}
		}
		t.Logf("refused: %s", body)
	})

	// Rows before T and after T, in several transactions each.
	owner, err := bindAndConnect(ctx, p, osb, b, catalog.PostgresStandardID, sourceID, "e1f2a3b4-0000-4000-8000-"+randomHex(t, 6), "owner")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := owner.connConfig()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE pitr_rows (id int PRIMARY KEY, note text NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	insert := func(from, to int, note string) {
		t.Helper()
		for i := from; i <= to; i += 10 {
			if _, err := conn.Exec(ctx, "INSERT INTO pitr_rows SELECT g, $2 || g FROM generate_series($1::int, $1::int + 9) g", i, note); err != nil {
				t.Fatal(err)
			}
		}
	}
	insert(1, 100, "before-")
	var target time.Time
	if err := conn.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&target); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	insert(101, 150, "after-")
	all := readRows(ctx, t, conn)
	if len(all) != 150 || all[99].id != 100 {
		t.Fatalf("the source has %d rows, want 150", len(all))
	}
	want := all[:100]
	// The WAL with the rows after T must reach the bucket: PostgreSQL
	// stops replaying at the first commit after T, and fails a recovery
	// that ends before reaching one.
	switched := switchWALAndWaitArchived(ctx, t, p, dyn, source)
	timing("rows committed before and after T, WAL switched and archived")
	t.Logf("T = %s; WAL segment %s archived", target.UTC().Format(time.RFC3339Nano), switched)

	// The window ends archive_timeout behind now: T is inside once that
	// has passed.
	toTime := target.UTC().Format(time.RFC3339Nano)
	if err := wait.PollUntilContextTimeout(ctx, 2*time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		window, err = getWindow(ctx, osb, sourceID)
		if err != nil || window.Last == nil {
			return false, nil
		}
		last, err := time.Parse(time.RFC3339, *window.Last)
		return err == nil && !last.Before(target), nil
	}); err != nil {
		t.Fatalf("T %s never entered the restorable window (%+v)", toTime, window)
	}
	checkWindowMetrics(ctx, t, osb, sourceID, window)

	// The node has 2 CPUs: two standard instances (each 2 instances with a
	// 250m sidecar and two 250m PgBouncers) do not fit on it at once. The
	// source, which the broker leaves alone between operations, is shrunk
	// to its primary, which keeps archiving; what is restored is in the
	// bucket already.
	shrinkSource(ctx, t, p, dyn, source)

	restoredID := "9c1e7a52-1111-4f60-8a71-" + randomHex(t, 6)
	restoreAndCheck(ctx, t, p, osb, b, dyn, restoredID, sourceID, toTime, want)
	timing("restore to T from the live source over OSB → succeeded, rows compared, bound")

	// Room for the drills and the second restore.
	deprovisionPG(ctx, t, osb, restoredID)
	timing("restored instance deprovisioned")

	// The source as a broker from before least privilege left it: a drill
	// login in the owner group, which created the marker schema itself.
	seedOldDrillLogin(ctx, t, p, dyn, source)
	timing("the source given a drill login in the owner group, with its schema, as drills used to leave it")

	osb, b = enableDrills(ctx, t, p, store)
	timing("broker upgraded with drills on through the chart's values")
	testDrillSucceeds(ctx, t, p, osb, store, dyn, sourceID)
	checkDrillLeastPrivilege(ctx, t, p, dyn, source)
	timing("a drill of the live source ran on its schedule and succeeded")

	deprovisionPG(ctx, t, osb, sourceID)
	timing("source deprovisioned")

	t.Run("DeprovisionedSourceWindow", func(t *testing.T) {
		// A deprovisioned source's window ends at its deprovision.
		now := time.Now().UTC().Format(time.RFC3339)
		code, body, err := provisionPG(ctx, osb, "9c1e7a52-2222-4f60-8a71-"+randomHex(t, 6), restoreParam(sourceID, now))
		if err != nil || code != http.StatusUnprocessableEntity || !strings.Contains(string(body), "outside the restorable window") {
			t.Fatalf("restore of the deprovisioned source to now (%s): %d %s %v; want 422 outside the window", now, code, body, err)
		}
		t.Logf("refused: %s", body)
	})

	again := "9c1e7a52-3333-4f60-8a71-" + randomHex(t, 6)
	restoreAndCheck(ctx, t, p, osb, b, dyn, again, sourceID, toTime, want)
	timing("restore to T from the deprovisioned source's kept backups → succeeded, rows compared, bound")

	// Room for its drills.
	shrinkSource(ctx, t, p, dyn, "pg-"+again)
	testDrillFails(ctx, t, p, osb, store, dyn, again)
	timing("the restored instance drilled, its base backups removed, its next drill failed and the alert fires")
}

type restorableWindow struct {
	First *string `json:"first_restorable_time"`
	Last  *string `json:"last_restorable_time"`
}

func instancePathOf(id string) string { return "/v2/service_instances/" + id }

// provisionPG provisions a standard instance in restoreTenant, as small as
// the node needs, with extra parameters.
func provisionPG(ctx context.Context, osb *osbClient, id string, extra map[string]any) (int, []byte, error) {
	params := map[string]any{
		"version":    PostgreSQLMajor,
		"storage_gb": 5,
		"replicas":   1,
		"resources":  map[string]any{"cpu": "100m", "memory": "512Mi"},
	}
	for k, v := range extra {
		params[k] = v
	}
	return osb.do(ctx, http.MethodPut, instancePathOf(id)+"?accepts_incomplete=true", map[string]any{
		"service_id": catalog.PostgresServiceID,
		"plan_id":    catalog.PostgresStandardID,
		"context":    map[string]any{"platform": "kubernetes", "namespace": restoreTenant},
		"parameters": params,
	})
}

func restoreParam(from, to string) map[string]any {
	return map[string]any{"restore": map[string]any{"from_instance": from, "to_time": to}}
}

// getWindow reads GET instance's metadata.attributes.restorable_window.
func getWindow(ctx context.Context, osb *osbClient, id string) (restorableWindow, error) {
	code, body, err := osb.do(ctx, http.MethodGet, instancePathOf(id), nil)
	if err != nil {
		return restorableWindow{}, err
	}
	if code != http.StatusOK {
		return restorableWindow{}, fmt.Errorf("GET instance: %d %s", code, body)
	}
	var got struct {
		Metadata struct {
			Attributes struct {
				Window *restorableWindow `json:"restorable_window"`
			} `json:"attributes"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		return restorableWindow{}, err
	}
	if got.Metadata.Attributes.Window == nil {
		return restorableWindow{}, fmt.Errorf("GET instance has no restorable_window: %s", body)
	}
	return *got.Metadata.Attributes.Window, nil
}

// checkWindowMetrics finds the instance's window gauges on /metrics.
func checkWindowMetrics(ctx context.Context, t *testing.T, osb *osbClient, id string, w restorableWindow) {
	t.Helper()
	code, body, err := osb.do(ctx, http.MethodGet, "/metrics", nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", code, err)
	}
	first, _ := time.Parse(time.RFC3339, *w.First)
	for _, name := range []string{"strata_restorable_window_first_timestamp_seconds", "strata_restorable_window_last_timestamp_seconds"} {
		var line string
		for _, l := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(l, name+"{") && strings.Contains(l, `instance_id="`+id+`"`) {
				line = l
			}
		}
		if line == "" {
			t.Errorf("/metrics has no %s for instance %s", name, id)
			continue
		}
		t.Logf("/metrics: %s", line)
		v, err := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
		if err != nil {
			t.Errorf("%s: %v", line, err)
			continue
		}
		if strings.Contains(name, "first") && int64(v) != first.Unix() {
			t.Errorf("%s is not the window's first end %s (%d)", line, *w.First, first.Unix())
		}
		if strings.Contains(name, "last") && int64(v) < first.Unix() {
			t.Errorf("%s ends the window before it begins (%s)", line, *w.First)
		}
	}
}

type pitrRow struct {
	id   int
	note string
}

func readRows(ctx context.Context, t *testing.T, conn *pgx.Conn) []pitrRow {
	t.Helper()
	rows, err := conn.Query(ctx, "SELECT id, note FROM pitr_rows ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	var out []pitrRow
	for rows.Next() {
		var r pitrRow
		if err := rows.Scan(&r.id, &r.note); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// switchWALAndWaitArchived runs pg_switch_wal() on the primary (as
// postgres over the local socket, which only the pod has: the bindings'
// roles may not switch WAL) and waits until pg_stat_archiver reports the
// closed segment archived.
func switchWALAndWaitArchived(ctx context.Context, t *testing.T, p *Platform, dyn dynamic.Interface, cluster string) string {
	t.Helper()
	c, err := dyn.Resource(clustersGVR).Namespace(restoreTenant).Get(ctx, cluster, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	primary, _, _ := unstructured.NestedString(c.Object, "status", "currentPrimary")
	segment, err := psqlInPod(ctx, p, primary, "SELECT pg_walfile_name(pg_switch_wal())")
	if err != nil {
		t.Fatal(err)
	}
	var archived string
	if err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		archived, err = psqlInPod(ctx, p, primary, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
		return err == nil && archived >= segment, nil
	}); err != nil {
		t.Fatalf("WAL segment %s not archived (last archived %q): %v", segment, archived, err)
	}
	return segment
}

// psqlInPod runs one query with psql in the pod's postgres container.
func psqlInPod(ctx context.Context, p *Platform, pod, query string) (string, error) {
	return psqlInPodDB(ctx, p, pod, "postgres", query)
}

// psqlInPodDB is psqlInPod in database db (as postgres, a superuser: a
// query that checks another role's privileges SETs ROLE to it first).
func psqlInPodDB(ctx context.Context, p *Platform, pod, db, query string) (string, error) {
	req := p.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(restoreTenant).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{
			Container: "postgres", Command: []string{"psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", query}, Stdout: true, Stderr: true,
		}, scheme.ParameterCodec)
	exec, err := remotecommand.NewSPDYExecutor(p.AdminConfig, http.MethodPost, req.URL())
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	if err := exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr}); err != nil {
		return "", fmt.Errorf("psql %q in %s: %w: %s", query, pod, err, stderr.String())
	}
	return strings.TrimSpace(stdout.String()), nil
}

// shrinkSource scales the source to its primary and no PgBouncer, and
// waits until the freed pods are gone.
func shrinkSource(ctx context.Context, t *testing.T, p *Platform, dyn dynamic.Interface, source string) {
	t.Helper()
	patch := []byte(`{"spec":{"instances":1}}`)
	if _, err := dyn.Resource(clustersGVR).Namespace(restoreTenant).Patch(ctx, source, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	poolers := clustersGVR.GroupVersion().WithResource("poolers")
	if _, err := dyn.Resource(poolers).Namespace(restoreTenant).Patch(ctx, source+"-pooler", types.MergePatchType, []byte(`{"spec":{"instances":0}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 2*time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := p.Client.CoreV1().Pods(restoreTenant).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		n := 0
		for _, pod := range pods.Items {
			if pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed {
				n++
			}
		}
		return n == 1, nil
	}); err != nil {
		t.Fatalf("the source did not shrink to its primary: %s", p.podSummary(ctx, restoreTenant))
	}
}

// restoreAndCheck provisions a restore of the source to toTime over OSB
// and checks the restored rows against want, through a binding.
func restoreAndCheck(ctx context.Context, t *testing.T, p *Platform, osb *osbClient, b *Broker, dyn dynamic.Interface, id, sourceID, toTime string, want []pitrRow) {
	t.Helper()
	code, body, err := provisionPG(ctx, osb, id, restoreParam(sourceID, toTime))
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("restore provision: %d %s %v", code, body, err)
	}
	if _, err := waitLastOperation(ctx, osb, instancePathOf(id)+"/last_operation", 20*time.Minute); err != nil {
		t.Fatalf("restore provision: %v; pods: %s; events: %s", err, p.podSummary(ctx, restoreTenant), warningEvents(ctx, p, restoreTenant))
	}
	name := "pg-" + id
	c, err := dyn.Resource(clustersGVR).Namespace(restoreTenant).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// It archives under its own serverName, through its own ObjectStore.
	plugins, _, _ := unstructured.NestedSlice(c.Object, "spec", "plugins")
	if len(plugins) != 1 || fmt.Sprint(plugins[0].(map[string]any)["parameters"]) != fmt.Sprint(map[string]any{"barmanObjectName": name + "-backup", "serverName": name}) {
		t.Errorf("the restored Cluster archives with %v, want its own ObjectStore and serverName", plugins)
	}
	// readwrite (pg_read_all_data, pg_write_all_data): the table is owned
	// by the source's owner login, which another owner login cannot read.
	bound, err := bindAndConnect(ctx, p, osb, b, catalog.PostgresStandardID, id, "e1f2a3b4-1111-4000-8000-"+randomHex(t, 6), "readwrite")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := bound.connConfig()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	got := readRows(ctx, t, conn)
	if !slices.Equal(got, want) {
		t.Fatalf("the instance restored to %s has %d rows (first %v, last %v), want exactly the %d committed before T", toTime, len(got), firstRow(got), lastRow(got), len(want))
	}
	t.Logf("restored instance %s: exactly the %d rows committed before T, read through a readwrite binding", id, len(got))
	// Writable: it was promoted at T.
	if _, err := conn.Exec(ctx, "INSERT INTO pitr_rows VALUES (1000, 'restored')"); err != nil {
		t.Errorf("the restored instance is not writable: %v", err)
	}
}

func firstRow(r []pitrRow) any {
	if len(r) == 0 {
		return nil
	}
	return r[0]
}

func lastRow(r []pitrRow) any {
	if len(r) == 0 {
		return nil
	}
	return r[len(r)-1]
}

// deprovisionPG deprovisions an instance over OSB and waits until it is gone.
func deprovisionPG(ctx context.Context, t *testing.T, osb *osbClient, id string) {
	t.Helper()
	ids := "service_id=" + catalog.PostgresServiceID + "&plan_id=" + catalog.PostgresStandardID
	code, body, err := osb.do(ctx, http.MethodDelete, instancePathOf(id)+"?accepts_incomplete=true&"+ids, nil)
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("deprovision %s: %d %s %v", id, code, body, err)
	}
	if _, err := waitLastOperation(ctx, osb, instancePathOf(id)+"/last_operation", 10*time.Minute); err != nil {
		t.Fatalf("deprovision %s: %v", id, err)
	}
}
