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
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/strata-dev/strata/catalog"
)

// DemoConfig is what RunDemo needs. The ids are fixed per state directory
// so that a second `make run` finds its instance and binding again (the
// broker answers a repeated provision or bind with 200 and what exists).
type DemoConfig struct {
	// Dir receives the files the user reads: the broker's password, CA and
	// curl configuration, and the binding's values (created, mode 0700).
	Dir        string
	Tenant     string // the tenant namespace, "dev"
	InstanceID string
	BindingID  string
}

// DemoResult is what RunDemo did and where it left things.
type DemoResult struct {
	Broker *Broker
	// OpenBao issues the bindings' credentials.
	OpenBao *OpenBao
	Image   string // the broker's image
	Dir     string
	// BindingDir holds one file per credential of the binding (host, port,
	// database, username, password, ca.crt, ...), as a mounted binding
	// Secret would.
	BindingDir string
	// HostAddr is the address the binding's host resolved to through the
	// cluster DNS (the host routes the Service range into the node); psql
	// takes it as hostaddr, since the host's resolver does not know
	// cluster names.
	HostAddr    string
	Binding     map[string]string
	CurrentUser string // what PostgreSQL answered to the binding's login

	// osb calls the broker as the demo did (for the tests' further steps).
	osb      *osbClient
	Version  string
	Instance string
	Steps    []string // what happened, with durations
}

// Demo file names in DemoConfig.Dir.
const (
	demoBrokerNamespace = "strata-system"
	demoPasswordFile    = "broker-password"
	demoCAFile          = "broker-ca.crt"
	demoCurlrc          = "curlrc"
)

// RunDemo is `make run`'s proof that the platform does the main job: it
// installs CloudNativePG and the broker (its Helm chart; an upgrade when
// it runs already), provisions a dev-lite PostgreSQL over OSB and waits
// for succeeded, binds it, writes the binding's values to files and
// connects with nothing but them over TLS (verify-full). Every step is
// idempotent, so a second run reuses what runs.
func (p *Platform) RunDemo(ctx context.Context, cfg DemoConfig) (*DemoResult, error) {
	res := &DemoResult{Dir: cfg.Dir, BindingDir: filepath.Join(cfg.Dir, "binding"), Instance: cfg.InstanceID}
	step := time.Now()
	done := func(what string) {
		res.Steps = append(res.Steps, fmt.Sprintf("%s: %s", what, time.Since(step).Round(time.Second)))
		p.cfg.Log("run: %s (%s)", what, time.Since(step).Round(time.Second))
		step = time.Now()
	}
	if err := os.MkdirAll(res.BindingDir, 0o700); err != nil {
		return nil, err
	}
	if err := p.InstallCertManager(ctx); err != nil {
		return nil, err
	}
	done("cert-manager and the platform CA ready")
	if err := p.InstallCNPG(ctx); err != nil {
		return nil, err
	}
	done("CloudNativePG operator available")

	// OpenBao issues every binding's credentials, as in production
	// (docs/openbao.md): the broker logs in with its ServiceAccount.
	platformCA, err := p.PlatformCAPEM(ctx)
	if err != nil {
		return nil, err
	}
	bao, err := p.InstallOpenBao(ctx, OpenBaoInstall{PostgresCAPEM: platformCA, BrokerNamespace: demoBrokerNamespace, BrokerServiceAccount: BrokerRelease})
	if err != nil {
		return nil, err
	}
	res.OpenBao = bao
	baoValues, err := bao.BrokerValues(ctx, p, demoBrokerNamespace, PlatformIssuer)
	if err != nil {
		return nil, err
	}
	done("OpenBao installed, unsealed and configured")

	password, err := readOrCreateSecret(filepath.Join(cfg.Dir, demoPasswordFile))
	if err != nil {
		return nil, err
	}
	if res.Image, err = p.BuildBrokerImage(ctx); err != nil {
		return nil, err
	}
	b, err := p.InstallBroker(ctx, BrokerInstall{Namespace: demoBrokerNamespace, Image: res.Image, Password: password, Values: baoValues})
	if err != nil {
		return nil, err
	}
	res.Broker = b
	if err := os.WriteFile(filepath.Join(cfg.Dir, demoCAFile), b.CAPEM, 0o600); err != nil {
		return nil, err
	}
	// A curl configuration file keeps the password out of the command
	// line and the terminal; --resolve stands in for the cluster DNS.
	host := strings.TrimPrefix(b.URL, "https://")
	curlrc := fmt.Sprintf("resolve = %q\ncacert = %q\nuser = %q\nheader = \"X-Broker-API-Version: 2.17\"\n",
		host+":443:"+b.ServiceIP, filepath.Join(cfg.Dir, demoCAFile), "strata:"+password)
	if err := os.WriteFile(filepath.Join(cfg.Dir, demoCurlrc), []byte(curlrc), 0o600); err != nil {
		return nil, err
	}
	done("broker installed with its Helm chart")

	if _, err := p.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: cfg.Tenant}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	osb, err := newOSBClient(ctx, b, password)
	if err != nil {
		return nil, err
	}
	res.osb = osb

	instancePath := "/v2/service_instances/" + cfg.InstanceID
	code, body, err := osb.do(ctx, http.MethodPut, instancePath+"?accepts_incomplete=true", map[string]any{
		"service_id": catalog.PostgresServiceID,
		"plan_id":    catalog.PostgresDevLiteID,
		"context":    map[string]any{"platform": "kubernetes", "namespace": cfg.Tenant},
		// The local operand image is PostgreSQL 15 (docs/platform.md).
		"parameters": map[string]any{"version": PostgreSQLMajor},
	})
	if err != nil {
		return nil, err
	}
	// 202: provisioning (again, if an earlier one failed); 200: it exists.
	if code != http.StatusAccepted && code != http.StatusOK {
		return nil, fmt.Errorf("run: provision: %d %s", code, body)
	}
	if code == http.StatusAccepted {
		if err := osb.waitSucceeded(ctx, instancePath+"/last_operation", 10*time.Minute); err != nil {
			return nil, fmt.Errorf("run: dev-lite provision: %w; pods in %s: %s (component logs in %s)", err, cfg.Tenant, p.podSummary(ctx, cfg.Tenant), p.LogDir())
		}
	}
	done("dev-lite PostgreSQL provisioned over OSB (succeeded)")

	// Bind: OpenBao creates the login (a lease of the instance's readwrite
	// role); a repeat answers 200 with the same credentials.
	if res.Binding, err = osb.bind(ctx, cfg.InstanceID, cfg.BindingID, catalog.PostgresDevLiteID, "readwrite"); err != nil {
		return nil, err
	}
	for k, v := range res.Binding {
		if strings.ContainsAny(k, "/\\") || k == "." || k == ".." {
			continue
		}
		if err := os.WriteFile(filepath.Join(res.BindingDir, k), []byte(v), 0o600); err != nil {
			return nil, err
		}
	}
	done("bound (readwrite)")

	addrs, err := b.Resolver.LookupHost(ctx, res.Binding["host"]+".cluster.local")
	if err != nil || len(addrs) == 0 {
		return nil, fmt.Errorf("run: resolving the binding's host %s through the cluster DNS: %w", res.Binding["host"], err)
	}
	res.HostAddr = addrs[0]
	if err := res.connect(ctx); err != nil {
		return nil, err
	}
	done("connected with the binding's values over TLS (verify-full)")
	return res, nil
}

// connect opens a connection with nothing but the binding's values, TLS
// verified against the binding's ca.crt for the binding's host name; the
// login reaches the server (and the pod its readiness, after a restart) a
// moment after the binding succeeded, so it polls.
func (r *DemoResult) connect(ctx context.Context) error {
	cfg, err := r.connConfig()
	if err != nil {
		return err
	}
	host := r.Binding["host"]
	var lastErr error
	err = wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			lastErr = err
			return false, nil
		}
		defer conn.Close(ctx)
		if err := conn.QueryRow(ctx, "select current_user, version()").Scan(&r.CurrentUser, &r.Version); err != nil {
			lastErr = err
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		if lastErr != nil {
			err = fmt.Errorf("%w (last error: %w)", err, lastErr)
		}
		return fmt.Errorf("run: connecting with the binding's values to %s (%s): %w", host, r.HostAddr, err)
	}
	if r.CurrentUser != cfg.User {
		return fmt.Errorf("run: connected as %q, not as the binding's login %q", r.CurrentUser, cfg.User)
	}
	return nil
}

// connConfig is a pgx configuration made of nothing but the binding's
// values: TLS verified against its ca.crt for its host name (verify-full),
// the host dialled at the address the cluster DNS gave for it.
func (r *DemoResult) connConfig() (*pgx.ConnConfig, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(r.Binding["ca.crt"])) {
		return nil, errors.New("run: the binding's ca.crt holds no certificate")
	}
	host := r.Binding["host"]
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%s dbname=%s connect_timeout=10", host, r.Binding["port"], r.Binding["database"]))
	if err != nil {
		return nil, err
	}
	cfg.User, cfg.Password = r.Binding["username"], r.Binding["password"]
	cfg.TLSConfig = &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}
	cfg.LookupFunc = func(context.Context, string) ([]string, error) { return []string{r.HostAddr}, nil }
	return cfg, nil
}

// PSQLCommand is a shell command that connects with psql using only the
// binding's files: verify-full against the binding's CA for the binding's
// host name, at the address the cluster DNS gave for it.
func (r *DemoResult) PSQLCommand() string {
	f := func(name string) string { return filepath.Join(r.BindingDir, name) }
	return fmt.Sprintf(`PGPASSWORD="$(cat %s)" psql "host=$(cat %s) hostaddr=%s port=$(cat %s) dbname=$(cat %s) user=$(cat %s) sslmode=verify-full sslrootcert=%s"`,
		f("password"), f("host"), r.HostAddr, f("port"), f("database"), f("username"), f("ca.crt"))
}

// RunPSQL runs PSQLCommand with a query and returns psql's output: the
// printed command is the tested one.
func (r *DemoResult) RunPSQL(ctx context.Context, query string) (string, error) {
	if _, err := exec.LookPath("psql"); err != nil {
		return "", errors.New("psql is not installed: apt-get install postgresql-client")
	}
	out, err := exec.CommandContext(ctx, "sh", "-c", r.PSQLCommand()+" -XAtc '"+query+"'").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("psql: %w: %s", err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// CurlCommand is curl with the broker's configuration file (address,
// CA, basic auth, API version header).
func (r *DemoResult) CurlCommand() string {
	return "curl -sS -K " + filepath.Join(r.Dir, demoCurlrc)
}

// PrintInstructions writes what the user needs: the endpoint, where the
// credentials are, a curl sequence and the psql command.
func (r *DemoResult) PrintInstructions(w io.Writer, stopCommand string) {
	curl := r.CurlCommand()
	// A second instance for the user to try, so that the demo's stays as
	// it is.
	const tryInstance = "0d7a3b2c-9e8f-4a1b-8c2d-3e4f5a6b7c8d"
	const tryBinding = "7f6e5d4c-3b2a-4190-8f7e-6d5c4b3a2910"
	fmt.Fprintf(w, `
Strata is running on a single-node Kubernetes on this machine, with CloudNativePG, cert-manager
and OpenBao (every binding's login is an OpenBao lease).

Broker        %[1]s  (Service IP %[2]s; the host routes the Service range into the platform)
Image         %[3]s
User          strata, password in %[4]s
Broker CA     %[5]s
curl config   %[6]s  (resolve, cacert, user, API version header)

A dev-lite PostgreSQL 15 (instance %[7]s, tenant namespace dev) is provisioned and bound;
the binding's values are in %[8]s/ (one file each, as a mounted binding Secret).
psql with only the binding's values, TLS verify-full (connected as %[9]s):

  %[10]s

Try the OSB API yourself (a second instance):

  export STRATA=%[1]s
  %[11]s "$STRATA/v2/catalog"
  %[11]s -X PUT -H 'Content-Type: application/json' \
    "$STRATA/v2/service_instances/%[12]s?accepts_incomplete=true" \
    -d '{"service_id": "%[13]s", "plan_id": "%[14]s",
         "context": {"platform": "kubernetes", "namespace": "dev"},
         "parameters": {"version": "%[15]s", "databases": ["app"]}}'
  %[11]s "$STRATA/v2/service_instances/%[12]s/last_operation"      # until "state":"succeeded" (about a minute)
  %[11]s -X PUT -H 'Content-Type: application/json' \
    "$STRATA/v2/service_instances/%[12]s/service_bindings/%[16]s?accepts_incomplete=true" \
    -d '{"service_id": "%[13]s", "plan_id": "%[14]s", "parameters": {"access": "readwrite"}}'
  %[11]s "$STRATA/v2/service_instances/%[12]s/service_bindings/%[16]s?service_id=%[13]s&plan_id=%[14]s"

Everything keeps running; stop it all (processes, mounts, network namespace, routes) with:

  %[17]s
`, r.Broker.URL, r.Broker.ServiceIP, r.Image, filepath.Join(r.Dir, demoPasswordFile), filepath.Join(r.Dir, demoCAFile),
		filepath.Join(r.Dir, demoCurlrc), r.Instance, r.BindingDir, r.CurrentUser, r.PSQLCommand(), curl,
		tryInstance, catalog.PostgresServiceID, catalog.PostgresDevLiteID, PostgreSQLMajor, tryBinding, stopCommand)
}

// osbClient calls the broker as a platform would.
type osbClient struct {
	url, password string
	http          *http.Client
}

// newOSBClient calls an installed broker from the host through its
// Service (the cluster DNS resolves its name; TLS verified against the
// platform CA; basic auth), once its catalog answers: the pod is ready a
// moment before kube-proxy routes its Service.
func newOSBClient(ctx context.Context, b *Broker, password string) (*osbClient, error) {
	osb := &osbClient{url: b.URL, password: password, http: &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: b.TLS, DialContext: (&net.Dialer{
			Resolver: b.Resolver, Timeout: 10 * time.Second,
		}).DialContext},
	}}
	if err := wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		code, _, err := osb.do(ctx, http.MethodGet, "/v2/catalog", nil)
		return err == nil && code == http.StatusOK, nil
	}); err != nil {
		return nil, fmt.Errorf("the broker's catalog through its Service %s: %w", b.URL, err)
	}
	return osb, nil
}

// bindingCredentials reads a binding's credentials from the broker's
// answer, as text (a number, such as a port, as its JSON text).
func bindingCredentials(body []byte) (map[string]string, error) {
	var binding struct {
		Credentials map[string]any `json:"credentials"`
	}
	if err := json.Unmarshal(body, &binding); err != nil {
		return nil, fmt.Errorf("the binding's answer: %w", err)
	}
	out := map[string]string{}
	for k, v := range binding.Credentials {
		switch v := v.(type) {
		case string:
			out[k] = v
		case float64:
			out[k] = fmt.Sprint(v)
		}
	}
	return out, nil
}

func (c *osbClient) do(ctx context.Context, method, path string, body any) (int, []byte, error) {
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url+path, reader)
	if err != nil {
		return 0, nil, err
	}
	req.SetBasicAuth("strata", c.password)
	req.Header.Set("X-Broker-API-Version", "2.17")
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// bind binds a PostgreSQL instance with an access level (owner, readwrite,
// readonly), waits until the binding succeeded (202 until the operator made
// the login; a repeat answers 200) and returns its credentials as strings.
func (c *osbClient) bind(ctx context.Context, instanceID, bindingID, planID, access string) (map[string]string, error) {
	bindingPath := "/v2/service_instances/" + instanceID + "/service_bindings/" + bindingID
	ids := "?service_id=" + catalog.PostgresServiceID + "&plan_id=" + planID
	code, body, err := c.do(ctx, http.MethodPut, bindingPath+"?accepts_incomplete=true", map[string]any{
		"service_id": catalog.PostgresServiceID,
		"plan_id":    planID,
		"parameters": map[string]any{"access": access},
	})
	if err != nil {
		return nil, err
	}
	if code == http.StatusAccepted {
		if err := c.waitSucceeded(ctx, bindingPath+"/last_operation"+ids, 5*time.Minute); err != nil {
			return nil, fmt.Errorf("run: bind: %w", err)
		}
		if code, body, err = c.do(ctx, http.MethodGet, bindingPath+ids, nil); err != nil {
			return nil, err
		}
	}
	if code != http.StatusOK && code != http.StatusCreated {
		return nil, fmt.Errorf("run: bind: %d %s", code, body)
	}
	out, err := bindingCredentials(body)
	if err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	for _, k := range []string{"host", "port", "database", "username", "password", "ca.crt"} {
		if out[k] == "" {
			return nil, fmt.Errorf("run: the binding has no %q", k)
		}
	}
	return out, nil
}

// waitSucceeded polls a last_operation until succeeded (an error on failed).
func (c *osbClient) waitSucceeded(ctx context.Context, path string, timeout time.Duration) error {
	var last struct {
		State       string `json:"state"`
		Description string `json:"description"`
	}
	err := wait.PollUntilContextTimeout(ctx, 2*time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		code, body, err := c.do(ctx, http.MethodGet, path, nil)
		if err != nil {
			return false, err
		}
		if code != http.StatusOK {
			return false, fmt.Errorf("last_operation: %d %s", code, body)
		}
		if err := json.Unmarshal(body, &last); err != nil {
			return false, fmt.Errorf("last_operation: %w: %s", err, body)
		}
		switch last.State {
		case "succeeded":
			return true, nil
		case "failed":
			return false, fmt.Errorf("failed: %s", last.Description)
		}
		return false, nil
	})
	if err != nil && last.State != "" {
		return fmt.Errorf("%w (last state %s: %s)", err, last.State, last.Description)
	}
	return err
}

// readOrCreateSecret reads a generated secret, creating it (random, mode
// 0600) on the first call.
func readOrCreateSecret(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
		return string(b), nil
	}
	secret := make([]byte, 24)
	if _, err := rand.Read(secret); err != nil {
		return "", err
	}
	s := hex.EncodeToString(secret)
	return s, os.WriteFile(path, []byte(s), 0o600)
}
