//go:build linux

// Package testcontainers_test runs the Testcontainers module
// (strata-testcontainers, this directory's Maven project) for real: the
// example service's JUnit 5 test starts PostgreSQL, Redis and Kafka
// configured like the dev-lite plans on a real dockerd with Strata's
// locally built images, and the service uses them with no configuration
// but the binding directories the module writes. This test then checks
// those directories key for key against the broker's own binders, and the
// settings the service saw against the dev-lite plans.
package testcontainers_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-dev/strata/binding"
	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/integration/kafkatest"
	"github.com/strata-dev/strata/integration/springtest"
	"github.com/strata-dev/strata/internal/platform"
	pgprov "github.com/strata-dev/strata/provisioners/postgres"
	redisprov "github.com/strata-dev/strata/provisioners/redis"
)

// exampleTests is how many tests the example service has: fewer in the
// reports means some did not run.
const exampleTests = 8

// report is what the example service's test writes (STRATA_TC_REPORT).
type report struct {
	StartMillis int64             `json:"startMillis"`
	Bindings    map[string]string `json:"bindings"`
	Observed    map[string]string `json:"observed"`
}

func TestSpringBootServiceWithTheDevLiteModule(t *testing.T) {
	total := time.Now()
	repo := kafkatest.RepoRoot()
	for _, tool := range []string{"java", "mvn"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not on PATH (%v): %s", tool, err, springtest.InstallHint)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	// The images: the platform's PostgreSQL and Redis images and the Kafka
	// image, from the cache (built once, as `strata-platform dev-images`
	// builds them).
	step := time.Now()
	if _, err := kafkatest.EnsureJars(); err != nil {
		t.Fatal(err)
	}
	p, err := platform.New(platform.Config{
		StateDir:  t.TempDir(),
		CacheDir:  filepath.Join(repo, ".cache", "platform"),
		SourceDir: repo,
		Log:       t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := p.BuildDevImages(ctx, kafkatest.JarDir(), kafkatest.KafkaVersion)
	if err != nil {
		t.Fatalf("building the module's images (what `go run ./internal/platform/cmd/strata-platform dev-images` does; as root, with debootstrap: make deps): %v", err)
	}
	t.Logf("images ready in %s", time.Since(step).Round(time.Millisecond))

	d := startDockerd(t, repo)
	step = time.Now()
	if err := platform.LoadDevImages(ctx, d.Docker, d.Env, imgs); err != nil {
		t.Fatal(err)
	}
	for _, img := range imgs {
		out, err := d.run("image", "inspect", "--format", "{{.Id}}", img.Name)
		if err != nil {
			t.Fatalf("%s is not in the daemon after loading: %v\n%s", img.Name, err, out)
		}
	}
	t.Logf("images in dockerd in %s", time.Since(step).Round(time.Millisecond))

	// The example service's tests, configured only by the module.
	dir := filepath.Join(repo, "integration", "testcontainers")
	work := t.TempDir()
	reportFile := filepath.Join(work, "report.json")
	bindingRoot := filepath.Join(work, "bindings")
	reports := filepath.Join(dir, "example-service", "target", "surefire-reports")
	if err := os.RemoveAll(reports); err != nil {
		t.Fatal(err)
	}
	mvn := func(extraEnv ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, "mvn", "-B", "--no-transfer-progress", "verify")
		cmd.Dir = dir
		cmd.Env = append(append(mavenEnv(),
			"DOCKER_HOST="+d.Host,
			// Ryuk cannot be pulled: the module removes its containers
			// itself (checked below).
			"TESTCONTAINERS_RYUK_DISABLED=true",
			// The start-up checks run an image that cannot be pulled either.
			"TESTCONTAINERS_CHECKS_DISABLE=true",
			// The ports are published on 127.0.0.1 only; inside a container
			// Testcontainers would otherwise use the bridge's gateway.
			"TESTCONTAINERS_HOST_OVERRIDE=localhost",
			"STRATA_TC_BINDING_ROOT="+bindingRoot,
			"STRATA_TC_REPORT="+reportFile,
		), extraEnv...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		cmd.WaitDelay = 10 * time.Second
		return cmd
	}

	// An image the daemon lacks fails the service's tests, saying how to
	// build it (the module never pulls).
	step = time.Now()
	out, err := mvn("STRATA_TC_KAFKA_IMAGE=strata/kafka:absent").CombinedOutput()
	if err == nil {
		t.Fatalf("mvn verify passed with an image the daemon does not have")
	}
	if want := "strata/kafka:absent is not in the Docker daemon"; !strings.Contains(string(out), want) ||
		!strings.Contains(string(out), "strata-platform dev-images") {
		t.Fatalf("mvn verify with a missing image: the output does not say %q and how to build it:\n%s", want, tail(string(out), 60))
	}
	if left, err := d.Containers(); err != nil || len(left) != 0 {
		t.Fatalf("containers left after the failed start: %v %v", left, err)
	}
	t.Logf("a missing image fails with how to build it (%s)", time.Since(step).Round(time.Second))
	for _, p := range []string{reports, reportFile, bindingRoot} {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}

	step = time.Now()
	cmd := mvn()
	out, err = cmd.CombinedOutput()
	mvnTook := time.Since(step)
	if err != nil {
		t.Fatalf("mvn verify in %s failed after %s: %v\n%s", dir, mvnTook.Round(time.Second), err, tail(string(out), 120))
	}

	// Every test ran and passed (none skipped).
	runs := surefire(t, reports)
	if runs.Tests != exampleTests || runs.Failures != 0 || runs.Errors != 0 || runs.Skipped != 0 {
		t.Fatalf("example service tests: %+v, want %d run, none failed, errored or skipped\n%s", runs, exampleTests, tail(string(out), 80))
	}

	// The module removed its containers (Ryuk is off).
	if left, err := d.Containers(); err != nil || len(left) != 0 {
		t.Errorf("containers left after the tests: %v %v", left, err)
	}

	var r report
	b, err := os.ReadFile(reportFile)
	if err != nil {
		t.Fatalf("the example service wrote no report: %v", err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("report %s: %v", b, err)
	}
	checkBindings(t, r.Bindings)
	checkPlans(t, r.Observed)
	for _, secret := range secretValues(t, r.Bindings) {
		if strings.Contains(string(out), secret) {
			t.Errorf("a password of the bindings is in Maven's output")
		}
	}
	t.Logf("dev-lite services started in %s; mvn verify %s; whole test %s",
		time.Duration(r.StartMillis)*time.Millisecond, mvnTook.Round(time.Second), time.Since(total).Round(time.Second))
}

// checkBindings compares each binding directory with what the broker's
// binder renders for the same connection: the same keys, the same values.
func checkBindings(t *testing.T, dirs map[string]string) {
	t.Helper()
	devLite := devLitePlans(t)
	for _, svc := range []string{"postgresql", "redis", "kafka"} {
		dir := dirs[svc]
		if dir == "" {
			t.Errorf("no %s binding directory in the report", svc)
			continue
		}
		got := readBinding(t, dir)
		secret := filepath.Base(dir)
		id, ok := strings.CutPrefix(secret, "binding-")
		if !ok || binding.SecretName(id) != secret {
			t.Errorf("%s: directory %s is not named like a binding Secret (binding-<id>)", svc, secret)
		}
		port, _ := strconv.Atoi(got["port"])
		var want map[string]string
		switch svc {
		case "postgresql":
			sum := sha256.Sum256([]byte(id))
			h := hex.EncodeToString(sum[:])[:16]
			want = binding.PostgresSecret(binding.PostgresConn{
				SecretName: secret, MountPath: dir,
				Host: got["host"], Port: port, DirectHost: got["host"],
				Database: "app", Access: binding.ReadWrite,
				App:       binding.Login{Username: "b_" + h + "_rw", Password: got["password"]},
				Migrator:  &binding.Login{Username: "b_" + h + "_ow", Password: got["spring.flyway.password"]},
				OwnerRole: pgprov.OwnerRole,
				PoolSize:  binding.PoolSize(devLite["postgresql"].Postgres.MaxConnections, 0),
				CAPEM:     got["ca.crt"],
			})
		case "redis":
			want = binding.RedisSecret(binding.RedisConn{
				SecretName: secret, Host: got["host"], Port: port, Password: got["password"], CAPEM: got["ca.crt"],
			})
			if port == redisprov.TLSPort {
				t.Errorf("redis: the binding's port is the container's %d, not the published one", port)
			}
		case "kafka":
			prefix := got["topic-prefix"]
			want = binding.KafkaSecret(binding.KafkaConn{
				SecretName: secret, BootstrapServers: got["bootstrap-servers"],
				Username: binding.KafkaUserName(id), Password: got["password"],
				TopicPrefix: prefix, ConsumerGroup: prefix + "app",
				Topics: map[string]string{catalog.DefaultKafkaTopic: prefix + catalog.DefaultKafkaTopic},
				Access: binding.KafkaReadWrite, CAPEM: got["ca.crt"],
			})
			if !strings.HasPrefix(prefix, "dev.kafka-") || !strings.HasSuffix(prefix, ".") {
				t.Errorf("kafka: topic prefix %q is not <namespace>.kafka-<instance id>.", prefix)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s binding %s differs from the broker's binder:\n%s", svc, dir, diffKeys(got, want))
		}
		if len(got["password"]) != 43 {
			t.Errorf("%s: password of %d characters, want 43 (32 random bytes, URL-safe base64)", svc, len(got["password"]))
		}
		if !strings.HasPrefix(got["ca.crt"], "-----BEGIN CERTIFICATE-----") {
			t.Errorf("%s: ca.crt is not a PEM certificate", svc)
		}
	}
}

// checkPlans compares what the service saw of the instances with the
// dev-lite plans of the catalog and the provisioners' settings.
func checkPlans(t *testing.T, seen map[string]string) {
	t.Helper()
	devLite := devLitePlans(t)
	rs, err := redisprov.Resolve(devLite["redis"], nil)
	if err != nil {
		t.Fatal(err)
	}
	k := devLite["kafka"].Kafka
	want := map[string]string{
		"postgresql.max_connections": strconv.Itoa(devLite["postgresql"].Postgres.MaxConnections),
		"postgresql.pgaudit.log":     strings.Join(catalog.DefaultAuditClasses, ","),
		"redis.maxmemory":            strconv.FormatInt(rs.MaxmemoryBytes, 10),
		"redis.maxmemory-policy":     rs.MaxmemoryPolicy,
		"redis.save":                 strings.Join(rs.Snapshots, " "),
		"redis.appendonly":           map[bool]string{true: "yes", false: "no"}[rs.AOF != ""],
		"kafka.partitions":           strconv.Itoa(k.DefaultPartitions),
		"kafka.replicas":             strconv.Itoa(k.ReplicationFactor),
		"kafka.min.insync.replicas":  strconv.Itoa(k.MinInSyncReplicas),
		"kafka.retention.ms":         strconv.FormatInt(k.DefaultRetentionMs, 10),
		"kafka.max.message.bytes":    strconv.Itoa(k.MaxMessageBytes),
		"kafka.cleanup.policy":       "delete",
	}
	if rs.AOF != "" {
		want["redis.appendfsync"] = rs.AOF
	}
	for key, v := range want {
		if seen[key] != v {
			t.Errorf("%s: the service saw %q, the dev-lite plan says %q", key, seen[key], v)
		}
	}
	if !strings.HasPrefix(seen["postgresql.server_version"], platform.PostgreSQLMajor+".") {
		t.Errorf("PostgreSQL %q, want major %s", seen["postgresql.server_version"], platform.PostgreSQLMajor)
	}
	if !strings.HasPrefix(seen["redis.redis_version"], "7.0.") {
		t.Errorf("Redis %q, want 7.0", seen["redis.redis_version"])
	}
}

func devLitePlans(t *testing.T) map[string]*catalog.Plan {
	t.Helper()
	plans := map[string]*catalog.Plan{}
	for _, s := range catalog.Default().Services {
		for i := range s.Plans {
			if s.Plans[i].Name == "dev-lite" {
				plans[s.Name] = &s.Plans[i]
			}
		}
	}
	for _, svc := range []string{"postgresql", "redis", "kafka"} {
		if plans[svc] == nil {
			t.Fatalf("the catalog has no %s dev-lite plan", svc)
		}
	}
	return plans
}

func readBinding(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = string(b)
	}
	return m
}

func secretValues(t *testing.T, dirs map[string]string) []string {
	t.Helper()
	var s []string
	for _, dir := range dirs {
		got := readBinding(t, dir)
		for _, k := range []string{"password", "spring.flyway.password"} {
			if v := got[k]; v != "" {
				s = append(s, v)
			}
		}
	}
	return s
}

// diffKeys lists the keys whose values differ (values of secrets elided).
func diffKeys(got, want map[string]string) string {
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	var lines []string
	for k := range keys {
		g, gok := got[k]
		w, wok := want[k]
		switch {
		case !gok:
			lines = append(lines, "  missing "+k)
		case !wok:
			lines = append(lines, "  extra "+k)
		case g != w:
			if strings.Contains(k, "password") || strings.Contains(k, "jaas") || k == "uri" {
				lines = append(lines, "  differs "+k)
			} else {
				lines = append(lines, fmt.Sprintf("  %s: got %q, want %q", k, g, w))
			}
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

type surefireCounts struct {
	Tests, Failures, Errors, Skipped int
}

// surefire sums the counts of the JUnit XML reports.
func surefire(t *testing.T, dir string) surefireCounts {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "TEST-*.xml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no surefire reports in %s (%v)", dir, err)
	}
	var c surefireCounts
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var s struct {
			Tests    int `xml:"tests,attr"`
			Failures int `xml:"failures,attr"`
			Errors   int `xml:"errors,attr"`
			Skipped  int `xml:"skipped,attr"`
		}
		if err := xml.Unmarshal(b, &s); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		c.Tests += s.Tests
		c.Failures += s.Failures
		c.Errors += s.Errors
		c.Skipped += s.Skipped
	}
	return c
}

// mavenEnv is a minimal environment for Maven: nothing of the machine's
// SPRING_* or TESTCONTAINERS_* settings reaches the service's tests.
func mavenEnv() []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "LANG=C.UTF-8", "TZ=UTC"}
	for _, k := range []string{"JAVA_HOME", "MAVEN_OPTS", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
