//go:build linux

// Package springtest runs a real Spring Boot application against binding
// Secrets, for integration tests of what the binders render.
//
// The application is the Maven project in integration/springapp (Spring
// Boot 3, HikariCP, Flyway, pgjdbc). It is started with nothing but
//
//	--spring.config.import=optional:configtree:<binding dir>/
//
// where the binding's keys are written one file each, as Kubernetes mounts a
// Secret. It runs every check that applies to the binding (for PostgreSQL:
// Flyway migrates at start-up, then it writes and reads a row and reports
// its session), prints one line "STRATA-CHECK <json>" and exits 0; when it
// cannot start it exits non-zero with Spring Boot's report of why.
//
// Java 17 and Maven come from Debian (openjdk-17-jdk-headless, maven); a
// missing one fails the test, it never skips it. The jar is built once per
// test process, and only when it is missing or older than the project's
// sources.
package springtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// InstallHint says how to get what the harness needs.
	InstallHint = "install Java 17 and Maven: apt-get install openjdk-17-jdk-headless maven"

	// CheckPrefix starts the line the application prints its report on.
	CheckPrefix = "STRATA-CHECK "

	// JarName is what `mvn package` builds in the project's target/.
	JarName = "strata-binding-app.jar"

	// buildTimeout bounds `mvn package`, which downloads the dependencies
	// the first time on a machine.
	buildTimeout = 15 * time.Minute
)

// Result is the application's report: one entry per check that ran.
type Result struct {
	// Postgres is set when the binding has spring.datasource.url.
	Postgres *PostgresResult `json:"postgresql"`
	// Redis is set when the binding has spring.data.redis.host.
	Redis *RedisResult `json:"redis"`
	// Kafka is set when the binding has
	// spring.cloud.stream.kafka.binder.brokers.
	Kafka *KafkaResult `json:"kafka"`
	// SSLBundles are the SSL bundles Spring Boot loaded from
	// spring.ssl.bundle.*, by name.
	SSLBundles map[string]SSLBundle `json:"sslBundles"`
}

// PostgresResult is what the application saw of a PostgreSQL binding.
type PostgresResult struct {
	// Wrote is the body of the row it inserted, Inserted the update count
	// and Read the body it read back.
	Wrote    string `json:"wrote"`
	Inserted int    `json:"inserted"`
	Read     string `json:"read"`
	// SSL and TLSVersion are pg_stat_ssl's ssl and version for the
	// application's session.
	SSL        bool   `json:"ssl"`
	TLSVersion string `json:"tlsVersion"`
	// CurrentUser and SessionUser are the application session's.
	CurrentUser string `json:"currentUser"`
	SessionUser string `json:"sessionUser"`
	// TableOwner owns the table the migration created.
	TableOwner string `json:"tableOwner"`
	// MigratedBy is "session_user=<login> current_user=<role>" as the
	// migration saw them.
	MigratedBy string `json:"migratedBy"`
	// FlywayInstalledBy is flyway_schema_history.installed_by of V1.
	FlywayInstalledBy string `json:"flywayInstalledBy"`
	// Hikari is the pool's configuration as Spring Boot bound it.
	Hikari *HikariConfig `json:"hikari"`
	// Flyway is Flyway's configuration as Spring Boot bound it.
	Flyway *FlywayConfig `json:"flyway"`
}

// HikariConfig is the application pool's configuration (durations in ms).
type HikariConfig struct {
	PoolName          string `json:"poolName"`
	MaximumPoolSize   int    `json:"maximumPoolSize"`
	MinimumIdle       int    `json:"minimumIdle"`
	ConnectionTimeout int64  `json:"connectionTimeout"`
	ValidationTimeout int64  `json:"validationTimeout"`
	IdleTimeout       int64  `json:"idleTimeout"`
	MaxLifetime       int64  `json:"maxLifetime"`
	KeepaliveTime     int64  `json:"keepaliveTime"`
	ConnectionInitSQL string `json:"connectionInitSql"`
	JDBCURL           string `json:"jdbcUrl"`
	Username          string `json:"username"`
}

// FlywayConfig is Flyway's configuration: the spring.flyway.* properties
// as bound, and what Flyway was configured with.
type FlywayConfig struct {
	URL      string   `json:"url"`
	User     string   `json:"user"`
	InitSQLs []string `json:"initSqls"`
	// OwnDataSource says Flyway used a DataSource of its own, not the
	// application's pool; DataSourceURL and DataSourceUser are its.
	OwnDataSource  bool   `json:"ownDataSource"`
	DataSourceURL  string `json:"dataSourceUrl"`
	DataSourceUser string `json:"dataSourceUser"`
	InitSQL        string `json:"initSql"`
}

// RedisResult is what the application saw of a Redis binding: the value
// it wrote and read back through Spring Data Redis, and how Spring Boot
// configured the Lettuce client from the binding.
type RedisResult struct {
	Wrote         string `json:"wrote"`
	Read          string `json:"read"`
	ServerVersion string `json:"serverVersion"`
	Client        string `json:"client"`
	Host          string `json:"host"`
	Port          int    `json:"port"`
	SSL           bool   `json:"ssl"`
	VerifyPeer    bool   `json:"verifyPeer"`
	Sentinel      bool   `json:"sentinel"`
}

// KafkaResult is what the application saw of a Kafka binding: one record
// sent with Spring Kafka's KafkaTemplate and one with Spring Cloud Stream's
// StreamBridge to the instance's events topic, both received by a function
// binding in the binding's consumer group.
type KafkaResult struct {
	Topic                    string   `json:"topic"`
	Group                    string   `json:"group"`
	TemplateSecurityProtocol string   `json:"templateSecurityProtocol"`
	TemplateSslEngineFactory string   `json:"templateSslEngineFactory"`
	SentViaKafkaTemplate     string   `json:"sentViaKafkaTemplate"`
	SentViaStreamBridge      string   `json:"sentViaStreamBridge"`
	Received                 []string `json:"received"`
}

// SSLBundle is one loaded SSL bundle.
type SSLBundle struct {
	// TrustedSubjects are the subjects (RFC 2253) of its trust store's
	// certificates.
	TrustedSubjects []string `json:"trustedSubjects"`
}

// ProjectDir is the Maven project's directory (integration/springapp).
func ProjectDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "springapp")
}

var (
	buildMu sync.Mutex
	built   = map[string]string{}
)

// Jar returns the application's jar, building it with Maven if it is
// missing or older than the project's sources (once per test process).
func Jar(t testing.TB) string {
	t.Helper()
	return BuildJar(t, ProjectDir(), JarName)
}

// BuildJar returns target/<jarName> of the test-only Maven project in dir
// (the Spring Boot application, the Flyway runner of
// integration/migrationapp), building it with `mvn package` if it is
// missing or older than the project's pom.xml and sources (once per test
// process).
func BuildJar(t testing.TB, dir, jarName string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	jar := filepath.Join(dir, "target", jarName)
	if built[jar] != "" {
		return built[jar]
	}
	for _, tool := range []string{"java", "mvn"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not on PATH (%v): %s", tool, err, InstallHint)
		}
	}

	// Another test process (go test runs packages in parallel) may build
	// the same project: one at a time.
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "strata-springapp-build.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("locking the Maven build: %v", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck

	stale, why, err := jarStale(dir, jar)
	if err != nil {
		t.Fatal(err)
	}
	if stale {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "mvn", "-q", "-B", "package", "-DskipTests")
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		cmd.WaitDelay = 10 * time.Second
		out, err := cmd.CombinedOutput()
		if err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("%w (timed out after %s)", err, buildTimeout)
			}
			t.Fatalf("building the test-only Maven project (mvn -q -B package -DskipTests in %s) failed: %v\n%s\n(%s)",
				dir, err, tail(string(out), 60), InstallHint)
		}
		if _, err := os.Stat(jar); err != nil {
			t.Fatalf("mvn package succeeded but %s is missing: %v\n%s", jar, err, tail(string(out), 60))
		}
		t.Logf("built %s (%s) in %s", jar, why, time.Since(start).Round(time.Millisecond))
	}
	built[jar] = jar
	return jar
}

// jarStale says whether jar is missing or older than pom.xml or a file
// under src/.
func jarStale(dir, jar string) (bool, string, error) {
	st, err := os.Stat(jar)
	if err != nil {
		return true, "no jar yet", nil
	}
	newest, newestName := time.Time{}, ""
	consider := func(p string, info fs.FileInfo) {
		if info.ModTime().After(newest) {
			newest, newestName = info.ModTime(), p
		}
	}
	pom, err := os.Stat(filepath.Join(dir, "pom.xml"))
	if err != nil {
		return false, "", fmt.Errorf("%s: %w", filepath.Join(dir, "pom.xml"), err)
	}
	consider("pom.xml", pom)
	err = filepath.WalkDir(filepath.Join(dir, "src"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		consider(p, info)
		return nil
	})
	if err != nil {
		return false, "", err
	}
	if newest.After(st.ModTime()) {
		return true, newestName + " is newer than the jar", nil
	}
	return false, "", nil
}

// WriteBinding writes each key of a binding Secret as a file (mode 0600) in
// dir, as a Secret volume mounts it. The content is written verbatim.
func WriteBinding(t testing.TB, dir string, data map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for k, v := range data {
		if k == "" || strings.ContainsAny(k, "/\x00") || k == "." || k == ".." {
			t.Fatalf("binding key %q cannot be a file name (a Secret refuses it too)", k)
		}
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
			t.Fatalf("writing binding key %s: %v", k, err)
		}
	}
}

// ErrNoReport says the application exited 0 without a STRATA-CHECK line.
var ErrNoReport = errors.New("the application printed no " + strings.TrimSpace(CheckPrefix) + " line")

// Run starts the application with only
// --spring.config.import=optional:configtree:<bindingDir>/, waits for it at
// most timeout, and returns its report and its whole output (stdout and
// stderr). err is non-nil when it did not exit 0 (an *exec.ExitError, or a
// timeout) or exited 0 without a parseable report.
//
// It runs in an empty working directory with a minimal environment and a
// throwaway user.home, so nothing but the binding configures it (no
// ./application.properties, SPRING_* variables or ~/.postgresql client
// certificates of the machine).
func Run(t testing.TB, jar, bindingDir string, timeout time.Duration) (Result, string, error) {
	t.Helper()
	java, err := exec.LookPath("java")
	if err != nil {
		t.Fatalf("java is not on PATH (%v): %s", err, InstallHint)
	}
	abs, err := filepath.Abs(bindingDir)
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, java,
		"-XX:TieredStopAtLevel=1", // start-up time over peak speed
		"-Duser.home="+home,
		"-jar", jar,
		"--spring.config.import=optional:configtree:"+abs+"/")
	cmd.Dir = work
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "LANG=C.UTF-8", "TZ=UTC"}
	if jh := os.Getenv("JAVA_HOME"); jh != "" {
		env = append(env, "JAVA_HOME="+jh)
	}
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err = cmd.Run()
	t.Logf("java -jar %s --spring.config.import=optional:configtree:%s/ exited after %s: %v",
		filepath.Base(jar), abs, time.Since(start).Round(time.Millisecond), errOr(err, "status 0"))
	output := out.String()
	if ctx.Err() == context.DeadlineExceeded {
		return Result{}, output, fmt.Errorf("the application did not exit within %s (killed): %w", timeout, err)
	}
	if err != nil {
		return Result{}, output, err
	}
	r, line, err := parseReport(output)
	if err == nil {
		t.Logf("%s", line)
	}
	return r, output, err
}

// ParseReport finds the STRATA-CHECK line in the application's output and
// decodes it.
func ParseReport(output string) (Result, error) {
	r, _, err := parseReport(output)
	return r, err
}

func parseReport(output string) (Result, string, error) {
	var r Result
	for _, line := range strings.Split(output, "\n") {
		line = strings.TrimRight(line, "\r")
		rest, ok := strings.CutPrefix(line, CheckPrefix)
		if !ok {
			continue
		}
		if err := json.Unmarshal([]byte(rest), &r); err != nil {
			return Result{}, line, fmt.Errorf("decoding the report %q: %w", rest, err)
		}
		return r, line, nil
	}
	return Result{}, "", ErrNoReport
}

func errOr(err error, ok string) any {
	if err != nil {
		return err
	}
	return ok
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
