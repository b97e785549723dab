//go:build linux

package platform

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/postgres"
)

// testBrokerProvisionsDevLite runs RunDemo, the code of `make run`: it
// builds the broker image from cmd/, installs the broker with its Helm
// chart into the platform, provisions a dev-lite PostgreSQL over OSB from
// the host, as a platform would, until last_operation says succeeded
// (CloudNativePG really made it healthy), binds it and connects with the
// binding's values over TLS (verify-full). Then it runs the psql and curl
// commands `make run` prints, exactly as printed, and runs the demo a
// second time to prove that a second `make run` reuses what runs.
func testBrokerProvisionsDevLite(ctx context.Context, t *testing.T, p *Platform) {
	dir := t.TempDir()
	cfg := DemoConfig{
		Dir:        dir,
		Tenant:     "dev",
		InstanceID: "6b4a3c2d-1e0f-4a9b-8c7d-" + randomHex(t, 6),
		BindingID:  "b1b2b3b4-0000-4000-8000-" + randomHex(t, 6),
	}
	step := time.Now()
	res, err := p.RunDemo(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range res.Steps {
		t.Logf("TIMING %s", s)
	}
	t.Logf("TIMING make run's demo (broker image, Helm install, provision, bind, first query): %s (%s as %s)", time.Since(step).Round(time.Second), res.Binding["host"], res.CurrentUser)
	if res.CurrentUser != res.Binding["username"] {
		t.Errorf("connected as %q, want the binding's login %q", res.CurrentUser, res.Binding["username"])
	}
	if want := "PostgreSQL " + PostgreSQLMajor + "."; !strings.HasPrefix(res.Version, want) {
		t.Errorf("server version %q, want %s*", res.Version, want)
	}
	// make run binds as production does: the login is an OpenBao lease
	// (docs/openbao.md's username template), not a Kubernetes object.
	if !strings.HasPrefix(res.Binding["username"], "v-token-st-") {
		t.Errorf("make run's binding login %q is not an OpenBao login (v-token-st-…)", res.Binding["username"])
	}
	if roles, err := dynamic.NewForConfigOrDie(p.AdminConfig).Resource(schema.GroupVersionResource{Group: "postgresql.cnpg.io", Version: "v1", Resource: "databaseroles"}).
		Namespace(cfg.Tenant).List(ctx, metav1.ListOptions{}); err == nil && len(roles.Items) > 0 {
		t.Errorf("make run's binding made %d DatabaseRole(s): OpenBao should issue the login", len(roles.Items))
	}
	for _, name := range []string{"host", "port", "database", "username", "password", "ca.crt"} {
		b, err := os.ReadFile(filepath.Join(res.BindingDir, name))
		if err != nil || string(b) != res.Binding[name] {
			t.Errorf("binding file %s: %q, %v; want the binding's value", name, b, err)
		}
	}

	// cert-manager issued the server certificate, from the platform CA
	// the binding hands out (the connection above verified the server
	// against the binding's ca.crt).
	platformCA, err := p.PlatformCAPEM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Binding["ca.crt"] != string(platformCA) {
		t.Errorf("the binding's ca.crt is not the platform CA of ClusterIssuer %s:\n%s", PlatformIssuer, res.Binding["ca.crt"])
	}
	certs, err := dynamic.NewForConfigOrDie(p.AdminConfig).Resource(schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "certificates"}).
		Namespace(cfg.Tenant).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(certs.Items) == 0 {
		t.Errorf("no cert-manager Certificate in %s", cfg.Tenant)
	}
	for _, c := range certs.Items {
		issuer, _, _ := unstructured.NestedString(c.Object, "spec", "issuerRef", "name")
		ready, msg := readyCondition(&c)
		if !ready || issuer != PlatformIssuer {
			t.Errorf("Certificate %s: issuer %q ready %v (%s); want %s and ready", c.GetName(), issuer, ready, msg, PlatformIssuer)
		}
	}

	t.Run("PodMonitorsSelectRealPods", func(t *testing.T) {
		svc, plan, err := catalog.Default().Find(catalog.PostgresServiceID, catalog.PostgresDevLiteID)
		if err != nil {
			t.Fatal(err)
		}
		clusterList, err := dynamic.NewForConfigOrDie(p.AdminConfig).Resource(schema.GroupVersionResource{Group: "postgresql.cnpg.io", Version: "v1", Resource: "clusters"}).
			Namespace(cfg.Tenant).List(ctx, metav1.ListOptions{})
		if err != nil || len(clusterList.Items) != 1 {
			t.Fatalf("want the demo's one Cluster in %s: %v", cfg.Tenant, err)
		}
		imgs, err := p.BuildImages(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pgConfig := postgres.DefaultConfig()
		pgConfig.Images = map[string]string{PostgreSQLMajor: imgs.PostgreSQL}
		pgConfig.PodMonitor = true
		inst := provisioners.Instance{
			ID: cfg.InstanceID, Name: clusterList.Items[0].GetName(), Namespace: cfg.Tenant, Service: svc, Plan: plan,
			Params: map[string]any{"version": PostgreSQLMajor},
		}
		// Every CloudNativePG series the PostgreSQL alerts use (the
		// pooler's are for standard and ha, which have one).
		checkMonitorsSelectRealPods(ctx, t, p, &postgres.Provisioner{Config: pgConfig}, inst,
			map[string][]string{inst.Name: ruleMetrics(t, "postgresql.rules.yaml", "cnpg_", "cnpg_pgbouncer_")})
	})

	var out bytes.Buffer
	res.PrintInstructions(&out, "make stop")
	printed := out.String()
	for _, want := range []string{res.Broker.URL, res.PSQLCommand(), res.CurlCommand(), "/v2/catalog", "last_operation", "service_bindings", "make stop"} {
		if !strings.Contains(printed, want) {
			t.Errorf("make run's instructions do not mention %q:\n%s", want, printed)
		}
	}
	// The password is in a file, never in the printed text.
	password, err := os.ReadFile(filepath.Join(dir, demoPasswordFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(printed, string(password)) || strings.Contains(printed, res.Binding["password"]) {
		t.Errorf("make run's instructions print a password:\n%s", printed)
	}

	// The printed psql command, run as printed (psql: make deps).
	answer, err := res.RunPSQL(ctx, "select current_user")
	if err != nil {
		t.Fatal(err)
	}
	if answer != res.Binding["username"] {
		t.Errorf("psql answered %q, want the binding's login %q", answer, res.Binding["username"])
	}
	// The printed curl configuration: the catalog, as the user would ask.
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is not installed: apt-get install curl")
	}
	body, err := exec.CommandContext(ctx, "sh", "-c", res.CurlCommand()+" "+res.Broker.URL+"/v2/catalog").CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s/v2/catalog: %v: %s", res.CurlCommand(), res.Broker.URL, err, body)
	}
	var offered struct {
		Services []struct{ Name string } `json:"services"`
	}
	if err := json.Unmarshal(body, &offered); err != nil || len(offered.Services) == 0 {
		t.Errorf("curl's catalog: %v: %s", err, body)
	}

	// A second make run: the broker's release is upgraded in place, the
	// provision and bind are repeats answered 200, the same login connects.
	step = time.Now()
	again, err := p.RunDemo(ctx, cfg)
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	if again.Binding["username"] != res.Binding["username"] || again.Binding["password"] != res.Binding["password"] {
		t.Errorf("second run: the binding changed (%s, was %s)", again.Binding["username"], res.Binding["username"])
	}
	t.Logf("TIMING second (idempotent) run of make run's demo: %s", time.Since(step).Round(time.Second))

	// Unbind, then deprovision as a platform that never polls: only the
	// broker's own reconcile loop (one replica, elected through its Lease
	// with the chart's RBAC) can finish the deprovision while the real
	// CloudNativePG and garbage collector remove the Cluster.
	step = time.Now()
	instancePath := "/v2/service_instances/" + cfg.InstanceID
	ids := "service_id=" + catalog.PostgresServiceID + "&plan_id=" + catalog.PostgresDevLiteID
	if code, body, err := res.osb.do(ctx, http.MethodDelete, instancePath+"/service_bindings/"+cfg.BindingID+"?"+ids, nil); err != nil || code != http.StatusOK {
		t.Fatalf("unbind: %d %s %v", code, body, err)
	}
	// OpenBao revoked the lease: the printed psql command is refused now.
	if answer, err := res.RunPSQL(ctx, "select current_user"); err == nil {
		t.Errorf("after the unbind, psql with the binding's values still connects (as %q)", answer)
	}
	if code, body, err := res.osb.do(ctx, http.MethodDelete, instancePath+"?accepts_incomplete=true&"+ids, nil); err != nil || code != http.StatusAccepted {
		t.Fatalf("deprovision: %d %s %v", code, body, err)
	}
	var getCode int
	var getBody []byte
	if err := wait.PollUntilContextTimeout(ctx, 2*time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		getCode, getBody, err = res.osb.do(ctx, http.MethodGet, instancePath, nil)
		return err == nil && getCode == http.StatusNotFound, nil
	}); err != nil {
		t.Fatalf("the deprovision did not finish without polling: GET instance answers %d %s (%v); pods of the broker: %s", getCode, getBody, err, p.podSummary(ctx, "strata-system"))
	}
	if code, body, err := res.osb.do(ctx, http.MethodGet, instancePath+"/last_operation", nil); err != nil || code != http.StatusGone {
		t.Errorf("last_operation of the deprovisioned instance: %d %s %v; want 410", code, body, err)
	}
	clusters, err := dynamic.NewForConfigOrDie(p.AdminConfig).Resource(schema.GroupVersionResource{Group: "postgresql.cnpg.io", Version: "v1", Resource: "clusters"}).
		Namespace(cfg.Tenant).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(clusters.Items) != 0 {
		t.Errorf("%d CloudNativePG Clusters left in %s after the deprovision", len(clusters.Items), cfg.Tenant)
	}
	t.Logf("TIMING deprovision finished by the reconcile loop, nobody polling: %s", time.Since(step).Round(time.Second))
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
