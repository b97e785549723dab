//go:build linux

package platform

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
)

// The restore drills' part of TestPostgresRestoreOnRealPlatform: on the
// same platform, source and backups (no platform of their own).

// drillNamespace is the chart's default drill namespace.
const drillNamespace = "strata-drills"

// drillInterval is the chart value that replaces the plans' daily
// interval here, and drillTimeout a drill's bound.
const (
	drillInterval = 2 * time.Minute
	drillTimeout  = 15 * time.Minute
)

// drillsValues are the chart values of the broker: drills off (the
// restore steps run first, alone on the node), or on at drillInterval.
func drillsValues(on bool) map[string]any {
	d := map[string]any{"enabled": on}
	if on {
		d["intervalSeconds"] = int(drillInterval.Seconds())
		d["timeoutSeconds"] = int(drillTimeout.Seconds())
	}
	return map[string]any{"config": map[string]any{
		"postgres": map[string]any{"backup": map[string]any{"archiveTimeoutSeconds": int(restoreArchiveTimeout.Seconds())}},
		"drills":   d,
	}}
}

// enableDrills upgrades the broker's release with drills on, through the
// chart's values, and returns an OSB client of the upgraded broker.
func enableDrills(ctx context.Context, t *testing.T, p *Platform, store *S3) (*osbClient, *Broker) {
	t.Helper()
	values, err := p.BrokerBackupValues(ctx, store, brokerNamespace)
	if err != nil {
		t.Fatal(err)
	}
	mergeValues(values, drillsValues(true))
	return installTestBroker(ctx, t, p, values)
}

// drillSeries is one instance's strata_drill_* samples on /metrics, by name.
type drillSeries map[string]float64

func scrapeDrill(ctx context.Context, osb *osbClient, id string) (drillSeries, []string, error) {
	code, body, err := osb.do(ctx, http.MethodGet, "/metrics", nil)
	if err != nil {
		return nil, nil, fmt.Errorf("GET /metrics: %w", err)
	}
	if code != http.StatusOK {
		return nil, nil, fmt.Errorf("GET /metrics: %d", code)
	}
	out := drillSeries{}
	var lines []string
	for _, l := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(l, "strata_drill") || !strings.Contains(l, `instance_id="`+id+`"`) {
			continue
		}
		v, err := strconv.ParseFloat(l[strings.LastIndex(l, " ")+1:], 64)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", l, err)
		}
		out[l[:strings.Index(l, "{")]] = v
		lines = append(lines, l)
	}
	return out, lines, nil
}

// waitDrill waits until /metrics shows a finished drill of the instance
// with the wanted result after the given number of drills.
func waitDrill(ctx context.Context, t *testing.T, p *Platform, osb *osbClient, id string, after float64, succeeded bool, timeout time.Duration) (drillSeries, []string) {
	t.Helper()
	var (
		s     drillSeries
		lines []string
		err   error
	)
	want := 0.0
	if succeeded {
		want = 1
	}
	if werr := wait.PollUntilContextTimeout(ctx, 5*time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		s, lines, err = scrapeDrill(ctx, osb, id)
		if err != nil {
			return false, nil
		}
		r, ok := s["strata_drill_last_result"]
		return ok && s["strata_drills_total"] > after && r == want, nil
	}); werr != nil {
		t.Fatalf("no drill of %s ended with result %v within %s (last error %v; series %v); drill namespace: %s; events: %s",
			id, want, timeout, err, lines, p.podSummary(ctx, drillNamespace), warningEvents(ctx, p, drillNamespace))
	}
	for _, l := range lines {
		t.Logf("/metrics: %s", l)
	}
	return s, lines
}

// checkDrillNamespaceEmpty: nothing of any drill is left.
func checkDrillNamespaceEmpty(ctx context.Context, t *testing.T, p *Platform, dyn dynamic.Interface) {
	t.Helper()
	for _, gvr := range []schema.GroupVersionResource{
		clustersGVR,
		{Group: "barmancloud.cnpg.io", Version: "v1", Resource: "objectstores"},
		{Version: "v1", Resource: "pods"},
		{Version: "v1", Resource: "persistentvolumeclaims"},
		{Version: "v1", Resource: "secrets"},
		{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"},
		{Group: "batch", Version: "v1", Resource: "jobs"},
	} {
		var left []string
		// Deletion is asynchronous; the broker waits for pods and claims,
		// the rest goes with them.
		_ = wait.PollUntilContextTimeout(ctx, 2*time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
			l, err := dyn.Resource(gvr).Namespace(drillNamespace).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, nil
			}
			left = nil
			for _, o := range l.Items {
				if o.GetDeletionTimestamp() == nil {
					left = append(left, o.GetName())
				}
			}
			return len(left) == 0, nil
		})
		if len(left) > 0 {
			t.Errorf("the drill namespace still has %s %v", gvr.Resource, left)
		}
	}
}

// drillResult is the part of an instance's entry in the drills' results
// ConfigMap the test reads.
type drillResult struct {
	Started     time.Time `json:"started"`
	Target      time.Time `json:"target"`
	PointInTime bool      `json:"pointInTime"`
	FailedStep  string    `json:"failedStep"`
	Error       string    `json:"error"`
}

func drillResultOf(ctx context.Context, t *testing.T, p *Platform, id string) drillResult {
	t.Helper()
	cm, err := p.Client.CoreV1().ConfigMaps(brokerNamespace).Get(ctx, "strata-drill-results", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var r drillResult
	if err := json.Unmarshal([]byte(cm.Data[id]), &r); err != nil {
		t.Fatalf("the drill result of %s: %v (%q)", id, err, cm.Data[id])
	}
	return r
}

func s3Client(store *S3) *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint: aws.String(fmt.Sprintf("http://%s:%d", store.ServiceIP, S3Port)),
		Region:       store.Region,
		Credentials:  credentials.NewStaticCredentialsProvider(store.AccessKeyID, store.SecretAccessKey, ""),
		UsePathStyle: true,
	})
}

// testDrillSucceeds: with drills turned on through the chart's values, the
// broker drills the live source on its own; the drill's RPO and RTO are on
// /metrics, the drill namespace is empty afterwards, and the bucket lost
// nothing and gained nothing of the drill.
func testDrillSucceeds(ctx context.Context, t *testing.T, p *Platform, osb *osbClient, store *S3, dyn dynamic.Interface, sourceID string) {
	t.Helper()
	begin := time.Now()
	prefix := restoreTenant + "/pg-" + sourceID + "/"
	before := listBucket(ctx, t, store, prefix)
	s, _ := waitDrill(ctx, t, p, osb, sourceID, 0, true, drillTimeout+drillInterval)
	t.Logf("TIMING drills on → first drill of the source succeeded: %s (RPO %.0f s, RTO %.0f s as measured by the drill)",
		time.Since(begin).Round(time.Second), s["strata_drill_last_rpo_seconds"], s["strata_drill_last_rto_seconds"])
	for _, name := range []string{"strata_drill_last_rpo_seconds", "strata_drill_last_rto_seconds", "strata_drill_last_success_timestamp_seconds",
		"strata_drill_rpo_objective_seconds", "strata_drill_rto_objective_seconds", "strata_drill_interval_seconds"} {
		if s[name] <= 0 {
			t.Errorf("/metrics has no positive %s for the drilled source: %v", name, s)
		}
	}
	if s["strata_drill_interval_seconds"] != drillInterval.Seconds() {
		t.Errorf("strata_drill_interval_seconds is %v, want the chart value %v", s["strata_drill_interval_seconds"], drillInterval.Seconds())
	}
	if s["strata_drill_failures_total"] != 0 {
		t.Errorf("the first drill of the source succeeded, yet strata_drill_failures_total is %v", s["strata_drill_failures_total"])
	}
	checkDrillNamespaceEmpty(ctx, t, p, dyn)
	first := drillResultOf(ctx, t, p, sourceID)
	if first.PointInTime {
		t.Errorf("the first drill restored a point in time (%s), want the newest point", first.Target)
	}

	// The second drill, an interval after the first began, restores a
	// random point of the window, with exactly the markers written before.
	step := time.Now()
	s2, _ := waitDrill(ctx, t, p, osb, sourceID, s["strata_drills_total"], true, drillTimeout+drillInterval)
	second := drillResultOf(ctx, t, p, sourceID)
	if !second.PointInTime || second.Target.IsZero() || !second.Target.Before(second.Started) {
		t.Errorf("the second drill did not restore a point of the window: %+v", second)
	}
	t.Logf("TIMING second drill (a random point, %s) succeeded: %s (RPO %.0f s, RTO %.0f s as measured by the drill)",
		second.Target.UTC().Format(time.RFC3339), time.Since(step).Round(time.Second), s2["strata_drill_last_rpo_seconds"], s2["strata_drill_last_rto_seconds"])
	checkDrillNamespaceEmpty(ctx, t, p, dyn)
	// Nothing of the source's backups went, and the drills wrote nothing
	// anywhere in the bucket (no archiving, no backup of the copy).
	after := listBucket(ctx, t, store, prefix)
	for _, k := range before {
		if !slices.Contains(after, k) {
			t.Errorf("the drill lost s3://%s/%s", BackupBucket, k)
		}
	}
	for _, k := range listBucket(ctx, t, store, "") {
		if strings.Contains(k, "drill-") || strings.HasPrefix(k, drillNamespace+"/") {
			t.Errorf("the drill wrote s3://%s/%s", BackupBucket, k)
		}
	}
}

// testDrillFails: once an instance has been drilled, its base backups are
// removed from the bucket (nothing else of the test needs them); its next
// drill fails, /metrics says so, and the chart's own
// StrataPostgreSQLDrillFailed rule fires on the scraped series (promtool
// evaluates the rule file as shipped: this platform test runs no
// Prometheus of its own).
func testDrillFails(ctx context.Context, t *testing.T, p *Platform, osb *osbClient, store *S3, dyn dynamic.Interface, id string) {
	t.Helper()
	begin := time.Now()
	ok, _ := waitDrill(ctx, t, p, osb, id, 0, true, drillTimeout+2*drillInterval)
	t.Logf("TIMING first drill of the restored instance succeeded: %s", time.Since(begin).Round(time.Second))
	checkDrillNamespaceEmpty(ctx, t, p, dyn)

	step := time.Now()
	prefix := restoreTenant + "/pg-" + id + "/base/"
	keys := listBucket(ctx, t, store, prefix)
	if len(keys) == 0 {
		t.Fatalf("no base backup objects under s3://%s/%s", BackupBucket, prefix)
	}
	client := s3Client(store)
	for _, k := range keys {
		if _, err := client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(BackupBucket), Key: aws.String(k)}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("removed the %d base backup objects of %s", len(keys), id)

	s, lines := waitDrill(ctx, t, p, osb, id, ok["strata_drills_total"], false, drillTimeout+2*drillInterval)
	t.Logf("TIMING base backups removed → a drill failed: %s", time.Since(step).Round(time.Second))
	if s["strata_drill_failures_total"] < 1 {
		t.Errorf("the drill failed but strata_drill_failures_total is %v", s["strata_drill_failures_total"])
	}
	checkDrillNamespaceEmpty(ctx, t, p, dyn)
	failed := drillResultOf(ctx, t, p, id)
	t.Logf("the failed drill: step %s: %s", failed.FailedStep, failed.Error)
	evalDrillFailedAlert(t, id, lines)
}

// evalDrillFailedAlert runs `promtool test rules` with the chart's
// postgresql.rules.yaml over the scraped samples, expecting
// StrataPostgreSQLDrillFailed to fire for the instance.
func evalDrillFailedAlert(t *testing.T, id string, lines []string) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed (Debian's prometheus package ships it)")
	}
	var series strings.Builder
	for _, l := range lines {
		sp := strings.LastIndex(l, " ")
		fmt.Fprintf(&series, "  - series: '%s'\n    values: '%sx5'\n", l[:sp], l[sp+1:])
	}
	var plan string
	for _, l := range lines {
		if i := strings.Index(l, `plan="`); i >= 0 {
			plan = l[i+6 : i+6+strings.Index(l[i+6:], `"`)]
		}
	}
	rules, err := filepath.Abs(filepath.Join(repoRoot(t), "charts", "strata-broker", "rules", "postgresql.rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	test := fmt.Sprintf(`rule_files: [%q]
evaluation_interval: 1m
tests:
- interval: 1m
  input_series:
%s  alert_rule_test:
  - eval_time: 2m
    alertname: StrataPostgreSQLDrillFailed
    exp_alerts:
    - exp_labels: {severity: critical, instance_id: %q, service: postgresql, plan: %q}
      exp_annotations:
        summary: Restore drill of %s instance %s failed
        description: 'The broker could not restore instance %s from its backups into a throwaway cluster and find the marker it wrote: its backups may not restore.'
        runbook_url: https://github.com/strata-dev/strata/blob/main/docs/alerts.md#stratapostgresqldrillfailed
`, rules, series.String(), id, plan, plan, id, id)
	file := filepath.Join(t.TempDir(), "drill_failed_test.yaml")
	if err := os.WriteFile(file, []byte(test), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "test", "rules", file).CombinedOutput()
	if err != nil {
		t.Fatalf("StrataPostgreSQLDrillFailed does not fire on the scraped series: %v\n%s\n%s", err, out, test)
	}
	t.Logf("StrataPostgreSQLDrillFailed fires on the scraped series (promtool test rules with the chart's rule file): %s", strings.TrimSpace(string(out)))
}

// primaryOf is the pod name of the Cluster's primary.
func primaryOf(ctx context.Context, t *testing.T, dyn dynamic.Interface, cluster string) string {
	t.Helper()
	c, err := dyn.Resource(clustersGVR).Namespace(restoreTenant).Get(ctx, cluster, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	primary, _, _ := unstructured.NestedString(c.Object, "status", "currentPrimary")
	if primary == "" {
		t.Fatalf("the Cluster %s names no primary", cluster)
	}
	return primary
}

// seedOldDrillLogin leaves the source as drills before least privilege
// did: the drill login's Secret and DatabaseRole, the role a member of
// strata_owner (the broker's field manager, as the old broker applied
// it), and the marker schema and table created by the login itself
// through that membership. The next drill must converge it.
func seedOldDrillLogin(ctx context.Context, t *testing.T, p *Platform, dyn dynamic.Interface, cluster string) {
	t.Helper()
	name := cluster + "-drill"
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: restoreTenant},
		Type:       corev1.SecretTypeBasicAuth,
		StringData: map[string]string{"username": "strata_drill", "password": randomHex(t, 24)},
	}
	if _, err := p.Client.CoreV1().Secrets(restoreTenant).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	roles := clustersGVR.GroupVersion().WithResource("databaseroles")
	role := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "postgresql.cnpg.io/v1", "kind": "DatabaseRole",
		"metadata": map[string]any{"name": name, "namespace": restoreTenant},
		"spec": map[string]any{
			"cluster": map[string]any{"name": cluster}, "name": "strata_drill", "login": true, "inherit": true,
			"connectionLimit": int64(2), "inRoles": []any{"strata_owner"}, "passwordSecret": map[string]any{"name": name},
			"databaseRoleReclaimPolicy": "delete",
		},
	}}
	if _, err := dyn.Resource(roles).Namespace(restoreTenant).Apply(ctx, name, role, metav1.ApplyOptions{FieldManager: "strata-broker", Force: true}); err != nil {
		t.Fatal(err)
	}
	primary := primaryOf(ctx, t, dyn, cluster)
	var out string
	var err error
	if werr := wait.PollUntilContextTimeout(ctx, 2*time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		out, err = psqlInPodDB(ctx, p, primary, "app", "SELECT pg_has_role('strata_drill', 'strata_owner', 'MEMBER')")
		return err == nil && out == "t", nil
	}); werr != nil {
		t.Fatalf("CloudNativePG did not make strata_drill a member of strata_owner: %q %v", out, err)
	}
	if out, err := psqlInPodDB(ctx, p, primary, "app", "SET ROLE strata_drill; CREATE SCHEMA strata_drill; "+
		"CREATE TABLE strata_drill.markers (token text PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT clock_timestamp())"); err != nil {
		t.Fatalf("the old drill login could not create its schema: %v %s", err, out)
	}
}

// checkDrillLeastPrivilege: after a drill, the drill login is a member of
// no role (the owner group revoked from the old login), owns its schema,
// may create a table there and none in public, and cannot read the
// tenant's table.
func checkDrillLeastPrivilege(ctx context.Context, t *testing.T, p *Platform, dyn dynamic.Interface, cluster string) {
	t.Helper()
	primary := primaryOf(ctx, t, dyn, cluster)
	q := func(query string) (string, error) { return psqlInPodDB(ctx, p, primary, "app", query) }
	if out, err := q("SELECT pg_has_role('strata_drill', 'strata_owner', 'MEMBER')"); err != nil || out != "f" {
		t.Errorf("strata_drill is a member of strata_owner after a drill (pg_has_role %q, %v)", out, err)
	}
	if out, err := q("SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = 'strata_drill'"); err != nil || out != "0" {
		t.Errorf("strata_drill is a member of %s roles after a drill (%v), want none", out, err)
	}
	if out, err := q("SELECT nspowner::regrole FROM pg_namespace WHERE nspname = 'strata_drill'"); err != nil || out != "strata_drill" {
		t.Errorf("the schema strata_drill is owned by %q (%v), want strata_drill", out, err)
	}
	if out, err := q("SET ROLE strata_drill; CREATE TABLE strata_drill.privilege_probe (x int); DROP TABLE strata_drill.privilege_probe; SELECT count(*) > 0 FROM strata_drill.markers"); err != nil || out != "t" {
		t.Errorf("strata_drill cannot use its own schema: %q %v", out, err)
	}
	out, err := q("SET ROLE strata_drill; CREATE TABLE public.privilege_probe (x int)")
	if err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("strata_drill could create a table in public, or failed otherwise: %q %v", out, err)
	} else {
		t.Logf("strata_drill refused in public: %v", err)
	}
	out, err = q("SET ROLE strata_drill; SELECT count(*) FROM public.pitr_rows")
	if err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("strata_drill could read the tenant's table, or failed otherwise: %q %v", out, err)
	}
	out, err = q("SET ROLE strata_drill; CREATE SCHEMA other_probe")
	if err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("strata_drill could create a schema, or failed otherwise: %q %v", out, err)
	}
}
