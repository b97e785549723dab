//go:build linux

package platform

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/strata-dev/strata/catalog"
)

// testBrokerProvisionsDevLite builds the broker image from cmd/, installs
// the broker with its Helm chart into the platform, and provisions a
// dev-lite PostgreSQL over OSB from the host, as a platform would, until
// last_operation says succeeded (CloudNativePG really made it healthy).
func testBrokerProvisionsDevLite(ctx context.Context, t *testing.T, p *Platform) {
	step := time.Now()
	image, err := p.BuildBrokerImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("TIMING broker image built and imported: %s", time.Since(step).Round(time.Second))

	step = time.Now()
	password := randomHex(t, 16)
	b, err := p.InstallBroker(ctx, BrokerInstall{Namespace: "strata-system", Image: image, Password: password})
	if err != nil {
		t.Fatalf("%v\n(component logs in %s)", err, p.LogDir())
	}
	t.Logf("TIMING broker installed with its Helm chart (pods ready): %s", time.Since(step).Round(time.Second))

	const tenant = "dev"
	if _, err := p.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tenant}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	dialer := &net.Dialer{Resolver: b.Resolver, Timeout: 10 * time.Second}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: b.TLS, DialContext: dialer.DialContext}}
	osb := func(method, path string, body any) (int, map[string]any) {
		t.Helper()
		var reader io.Reader
		if body != nil {
			data, err := json.Marshal(body)
			if err != nil {
				t.Fatal(err)
			}
			reader = bytes.NewReader(data)
		}
		req, err := http.NewRequestWithContext(ctx, method, b.URL+path, reader)
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth("strata", password)
		req.Header.Set("X-Broker-API-Version", "2.17")
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		var out map[string]any
		data, _ := io.ReadAll(resp.Body)
		if len(data) > 0 {
			if err := json.Unmarshal(data, &out); err != nil {
				t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, data)
			}
		}
		return resp.StatusCode, out
	}

	// The pod is ready a moment before kube-proxy routes its Service (until
	// then the Service rejects connections): wait for the catalog.
	err = wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.URL+"/v2/catalog", nil)
		if err != nil {
			return false, err
		}
		req.SetBasicAuth("strata", password)
		req.Header.Set("X-Broker-API-Version", "2.17")
		resp, err := client.Do(req)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("the broker's catalog through its Service: %v", err)
	}

	step = time.Now()
	instance := "6b4a3c2d-1e0f-4a9b-8c7d-" + randomHex(t, 6)
	code, resp := osb(http.MethodPut, "/v2/service_instances/"+instance+"?accepts_incomplete=true", map[string]any{
		"service_id": catalog.PostgresServiceID,
		"plan_id":    catalog.PostgresDevLiteID,
		"context":    map[string]any{"platform": "kubernetes", "namespace": tenant},
		// The local operand image is PostgreSQL 15 (docs/platform.md).
		"parameters": map[string]any{"version": PostgreSQLMajor},
	})
	if code != http.StatusAccepted {
		t.Fatalf("provision: %d %v", code, resp)
	}
	var last map[string]any
	err = wait.PollUntilContextTimeout(ctx, 2*time.Second, 10*time.Minute, true, func(context.Context) (bool, error) {
		code, last = osb(http.MethodGet, "/v2/service_instances/"+instance+"/last_operation", nil)
		if code != http.StatusOK {
			return false, fmt.Errorf("last_operation: %d %v", code, last)
		}
		switch last["state"] {
		case "succeeded":
			return true, nil
		case "failed":
			return false, fmt.Errorf("provision failed: %v", last)
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("dev-lite provision: %v (last answer %v); pods in %s: %s\n(component logs in %s)", err, last, tenant, p.podSummary(ctx, tenant), p.LogDir())
	}
	t.Logf("TIMING dev-lite provision over OSB reached succeeded: %s (%v)", time.Since(step).Round(time.Second), last["description"])

	// Bind (a CloudNativePG DatabaseRole login without OpenBao: 202 until
	// the operator has created it), then connect with nothing but the
	// binding's values, over TLS verified against its ca.crt.
	step = time.Now()
	bindingPath := "/v2/service_instances/" + instance + "/service_bindings/b1b2b3b4-0000-4000-8000-" + randomHex(t, 6)
	ids := "?service_id=" + catalog.PostgresServiceID + "&plan_id=" + catalog.PostgresDevLiteID
	code, resp = osb(http.MethodPut, bindingPath+"?accepts_incomplete=true", map[string]any{
		"service_id": catalog.PostgresServiceID,
		"plan_id":    catalog.PostgresDevLiteID,
		"parameters": map[string]any{"access": "readwrite"},
	})
	if code == http.StatusAccepted {
		err = wait.PollUntilContextTimeout(ctx, 2*time.Second, 5*time.Minute, true, func(context.Context) (bool, error) {
			code, last = osb(http.MethodGet, bindingPath+"/last_operation"+ids, nil)
			if code != http.StatusOK {
				return false, fmt.Errorf("binding last_operation: %d %v", code, last)
			}
			switch last["state"] {
			case "succeeded":
				return true, nil
			case "failed":
				return false, fmt.Errorf("bind failed: %v", last)
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("bind: %v (last answer %v)", err, last)
		}
		code, resp = osb(http.MethodGet, bindingPath+ids, nil)
	}
	if code != http.StatusOK && code != http.StatusCreated {
		t.Fatalf("bind: %d %v", code, resp)
	}
	creds, _ := resp["credentials"].(map[string]any)
	str := func(key string) string {
		v, _ := creds[key].(string)
		if v == "" {
			t.Fatalf("binding credentials have no %q: keys %v", key, keysOf(creds))
		}
		return v
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(str("ca.crt"))) {
		t.Fatal("the binding's ca.crt holds no certificate")
	}
	host := str("host")
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%s dbname=%s connect_timeout=10", host, str("port"), str("database")))
	if err != nil {
		t.Fatal(err)
	}
	cfg.User, cfg.Password = str("username"), str("password")
	// sslmode verify-full with the binding's CA.
	cfg.TLSConfig = &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}
	cfg.LookupFunc = func(ctx context.Context, host string) ([]string, error) {
		return b.Resolver.LookupHost(ctx, host+".cluster.local")
	}
	var user string
	var lastErr error
	// The login reaches the server a moment after the binding succeeded.
	err = wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			lastErr = err
			return false, nil
		}
		defer conn.Close(ctx)
		if err := conn.QueryRow(ctx, "select current_user").Scan(&user); err != nil {
			lastErr = err
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("connecting with the binding's values to %s: %v (last error: %v)", host, err, lastErr)
	}
	if user != cfg.User {
		t.Errorf("connected as %q, want the binding's login %q", user, cfg.User)
	}
	t.Logf("TIMING bind and first query with the binding's values over TLS (verify-full): %s (%s as %s)", time.Since(step).Round(time.Second), host, user)
}

func keysOf(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
