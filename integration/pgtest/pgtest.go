//go:build linux

// Package pgtest runs a real PostgreSQL configured the way CloudNativePG
// would configure it from a rendered Cluster, for integration tests of what
// the builders in provisioners/postgres render.
//
// Start takes the Cluster object as the builders render it and:
//
//   - writes postgresql.conf as CloudNativePG composes it: a few of the
//     operator's global defaults, then every spec.postgresql.parameters entry
//     verbatim, then the settings the operator always forces (TLS files,
//     socket directory, logging, …), with shared_preload_libraries derived
//     from the parameters exactly like the operator's managed extensions
//     (pgaudit.* preloads pgaudit, pg_stat_statements.* preloads
//     pg_stat_statements, …) followed by spec.postgresql.shared_preload_libraries;
//   - writes pg_hba.conf in the operator's order: its fixed rules, then
//     spec.postgresql.pg_hba verbatim, then its default
//     "host all all all scram-sha-256";
//   - does what the operator does once the instance is up: bootstraps
//     spec.bootstrap.initdb's database and owner, reconciles
//     spec.managed.roles and creates the managed extensions (pgaudit,
//     pg_stat_statements) in every database that accepts connections.
//
// What the harness cannot emulate it leaves out rather than fakes: there is
// one instance (no replication, no pooler), no Secrets (managed roles get no
// password; use CreateLoginRole for login roles) and no WAL archiving.
//
// PostgreSQL itself comes from Debian (postgresql-15, postgresql-15-pgaudit,
// postgresql-15-hypopg); a missing binary fails the test, it never skips it.
// The package is Linux-only: the server is tied to the test binary with
// Pdeathsig, so a test killed by -timeout leaves no postmaster behind, and
// under root it runs as the OS user postgres (initdb and postgres refuse
// to run as root).
package pgtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io/fs"
	"maps"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/postgres"
)

const (
	// EnvBinDir overrides the directory of initdb, postgres and pg_ctl.
	EnvBinDir = "STRATA_PG_BINDIR"
	// DefaultBinDir is where Debian's postgresql-15 package puts them.
	DefaultBinDir = "/usr/lib/postgresql/15/bin"
	// InstallHint says how to get what the harness needs.
	InstallHint = "apt-get install postgresql-15 postgresql-15-pgaudit postgresql-15-hypopg (or make deps)"

	// SuperuserName is the bootstrap superuser, as in CloudNativePG.
	SuperuserName = "postgres"
	// Host is where the server listens for TCP connections.
	Host = "127.0.0.1"

	startTimeout = 30 * time.Second
	stopTimeout  = 30 * time.Second
	sqlTimeout   = 30 * time.Second
)

// Server is a running PostgreSQL configured from a Cluster.
type Server struct {
	// Cluster is the rendered Cluster the server was configured from.
	Cluster *unstructured.Unstructured
	// Version is the PostgreSQL major version that runs (e.g. "15").
	Version string
	// Port is the TCP port on Host; the unix socket in SocketDir has the
	// same number.
	Port int
	// Dir holds everything: DataDir, SocketDir, the keys and LogFile.
	Dir       string
	DataDir   string
	SocketDir string
	// CAPEM is the CA that signed the server certificate (for localhost
	// and 127.0.0.1), also written to CAFile.
	CAPEM  []byte
	CAFile string
	// LogFile receives the server's stderr: its whole log, pgaudit included.
	LogFile string
	// Database and Owner are spec.bootstrap.initdb's database and owner.
	Database string
	Owner    string
	// Parameters are the postgresql.conf settings the harness wrote.
	Parameters map[string]string
	// HBA is the pg_hba.conf the harness wrote.
	HBA string

	bin     string
	secrets []*unstructured.Unstructured
	cred    *syscall.Credential // nil unless the test runs as root
	cmd     *exec.Cmd
	done    chan struct{} // closed when the postmaster has exited
	werr    error         // the postmaster's exit status, once done is closed
}

// cnpgDefaults are CloudNativePG's global default settings that matter for a
// single instance; the Cluster's parameters override them.
var cnpgDefaults = map[string]string{
	"dynamic_shared_memory_type": "posix",
	"shared_memory_type":         "mmap",
	"max_parallel_workers":       "32",
	"max_worker_processes":       "32",
	"max_replication_slots":      "32",
	"wal_keep_size":              "512MB",
	"wal_level":                  "logical",
	"wal_log_hints":              "on",
	"hot_standby":                "true",
	// CloudNativePG's TLS floor and ceiling: a Cluster that does not lower
	// them accepts TLS 1.3 only.
	"ssl_min_protocol_version": "TLSv1.3",
	"ssl_max_protocol_version": "TLSv1.3",
	// CloudNativePG logs csvlog, which carries user and database; stderr
	// needs them in the prefix to say as much.
	"log_line_prefix": "%m [%p] %q%u@%d ",
}

// managedExtensions is CloudNativePG's ManagedExtensions: a parameter under
// one of an extension's namespaces preloads its libraries, and (unless it is
// library-only) the operator creates the extension in every database.
var managedExtensions = []struct {
	name, namespace string
	libraryOnly     bool
}{
	{"pgaudit", "pgaudit", false},
	{"pg_stat_statements", "pg_stat_statements", false},
	{"auto_explain", "auto_explain", true},
	{"pg_failover_slots", "pg_failover_slots", true},
}

// operatorOwned are the parameters CloudNativePG 1.30 fixes or blocks: its
// webhook rejects a Cluster setting them, or the operator overrides them.
// A builder that sets one has a bug, so Start reports it.
var operatorOwned = regexp.MustCompile(`^(archive_mode|archive_command|archive_cleanup_command|cluster_name|port|listen_addresses|hot_standby|primary_conninfo|primary_slot_name|restore_command|recovery_target.*|recovery_end_command|recovery_min_apply_delay|shared_preload_libraries|synchronous_standby_names|synchronized_standby_slots|temp_tablespaces|ssl|ssl_.*_file|ssl_passphrase.*|ssl_prefer_server_ciphers|ssl_ecdh_curve|log_destination|log_directory|log_filename|log_file_mode|log_truncate_on_rotation|log_rotation_.*|logging_collector|unix_socket_.*|restart_after_crash|allow_system_table_mods|data_directory|hba_file|ident_file|config_file|jit_provider|syslog_.*|promote_trigger_file|stats_temp_directory|wal_level|wal_log_hints|full_page_writes|pg_failover_slots\.(primary_dsn|standby_slot_names))$`)

// Start runs PostgreSQL as CloudNativePG would configure it from cluster (a
// postgresql.cnpg.io/v1 Cluster) and stops it when the test ends. secrets
// are the Secrets the Cluster refers to (postInitApplicationSQLRefs).
func Start(t testing.TB, cluster *unstructured.Unstructured, secrets ...*unstructured.Unstructured) *Server {
	t.Helper()
	if cluster == nil || cluster.GetKind() != "Cluster" {
		t.Fatalf("pgtest.Start needs a rendered CloudNativePG Cluster, got %v", cluster)
	}
	bin := os.Getenv(EnvBinDir)
	if bin == "" {
		bin = DefaultBinDir
	}
	for _, b := range []string{"initdb", "postgres", "pg_ctl"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			t.Fatalf("PostgreSQL binary %s is missing (%v): %s", filepath.Join(bin, b), err, InstallHint)
		}
	}
	s := &Server{Cluster: cluster, bin: bin, secrets: secrets}
	s.Version = installedVersion(t, bin)
	if want := imageMajor(cluster); want != "" && want != s.Version {
		t.Fatalf("the Cluster runs PostgreSQL %s (image %q) but this harness runs PostgreSQL %s from %s: render the Cluster with parameters.version %q",
			want, str(cluster, "spec", "imageName"), s.Version, bin, s.Version)
	}
	s.Database = str(cluster, "spec", "bootstrap", "initdb", "database")
	s.Owner = str(cluster, "spec", "bootstrap", "initdb", "owner")
	if s.Database == "" {
		s.Database = "app" // CloudNativePG's defaults
	}
	if s.Owner == "" {
		s.Owner = s.Database
	}

	osUser := currentOSUser(t)
	if os.Geteuid() == 0 {
		// initdb and postgres refuse to run as root.
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, PostgreSQL must run as the OS user postgres, which is missing (%v): %s", err, InstallHint)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}

	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	s.Dir = dir
	s.DataDir = filepath.Join(dir, "data")
	s.SocketDir = filepath.Join(dir, "run")
	s.CAFile = filepath.Join(dir, "ca.crt")
	s.LogFile = filepath.Join(dir, "postgres.log")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("PostgreSQL log (%s), last lines:\n%s", s.LogFile, s.logTail(80))
		}
		_ = os.RemoveAll(dir)
	})
	for _, d := range []string{s.DataDir, s.SocketDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.writeCertificates(); err != nil {
		t.Fatalf("generating the TLS certificates: %v", err)
	}
	if err := s.chown(); err != nil {
		t.Fatal(err)
	}

	// initdb. --auth-host=reject: the generated pg_hba.conf is replaced
	// below anyway, but nothing is ever open by accident.
	if out, err := s.run(filepath.Join(bin, "initdb"), "-D", s.DataDir, "-U", SuperuserName,
		"--auth-local=peer", "--auth-host=reject", "--data-checksums",
		"--encoding=UTF8", "--locale=C", "--no-sync"); err != nil {
		t.Fatalf("initdb failed: %v\n%s", err, out)
	}

	if s.Port, err = freePort(); err != nil {
		t.Fatal(err)
	}
	params, err := s.parameters(t)
	if err != nil {
		t.Fatal(err)
	}
	s.Parameters = params
	var conf strings.Builder
	conf.WriteString("# Written by pgtest from the Cluster, as CloudNativePG composes it.\n")
	for _, k := range slices.Sorted(maps.Keys(params)) {
		fmt.Fprintf(&conf, "%s = %s\n", k, confValue(params[k]))
	}
	if err := s.appendFile(filepath.Join(s.DataDir, "postgresql.conf"), conf.String()); err != nil {
		t.Fatal(err)
	}
	s.HBA, err = hbaConf(cluster)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.writeFile(filepath.Join(s.DataDir, "pg_hba.conf"), s.HBA); err != nil {
		t.Fatal(err)
	}
	// CloudNativePG's "local" map lets the instance manager (OS user
	// postgres) in as the superuser over the socket; the test process is the
	// instance manager here, so its OS user is mapped too. Peer
	// authentication therefore works for root and for any other user, and
	// no "trust" rule is needed.
	identMap := "local postgres postgres\n"
	if osUser != "postgres" {
		identMap += fmt.Sprintf("local %s postgres\n", osUser)
	}
	if err := s.writeFile(filepath.Join(s.DataDir, "pg_ident.conf"), identMap); err != nil {
		t.Fatal(err)
	}

	s.start(t)
	s.bootstrap(t)
	return s
}

// Superuser connects as the superuser over the unix socket to the
// Cluster's application database; the connection is closed when the test
// ends.
func (s *Server) Superuser(t testing.TB) *pgx.Conn {
	t.Helper()
	return s.SuperuserTo(t, s.Database)
}

// SuperuserTo connects as the superuser over the unix socket to database db.
func (s *Server) SuperuserTo(t testing.TB, db string) *pgx.Conn {
	t.Helper()
	conn, err := s.superuser(db)
	if err != nil {
		t.Fatalf("connecting as %s to %s over the unix socket: %v", SuperuserName, db, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func (s *Server) superuser(db string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d sslmode=disable connect_timeout=10", s.SocketDir, s.Port))
	if err != nil {
		return nil, err
	}
	cfg.User, cfg.Database = SuperuserName, db
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	return pgx.ConnectConfig(ctx, cfg)
}

// ConnConfig is the configuration of a TCP connection to Host as user, with
// sslmode disable, require (TLS without verification), verify-ca or
// verify-full (both against CAFile). Tests may tweak it (its TLSConfig, say)
// before pgx.ConnectConfig.
func (s *Server) ConnConfig(t testing.TB, user, password, db, sslmode string) *pgx.ConnConfig {
	t.Helper()
	cs := fmt.Sprintf("host=%s port=%d sslmode=%s connect_timeout=10", Host, s.Port, sslmode)
	if strings.HasPrefix(sslmode, "verify-") {
		cs += " sslrootcert=" + s.CAFile
	}
	cfg, err := pgx.ParseConfig(cs)
	if err != nil {
		t.Fatalf("connection string %q: %v", cs, err)
	}
	cfg.User, cfg.Password, cfg.Database = user, password, db
	return cfg
}

// Connect connects over TCP (see ConnConfig); a connection that succeeds is
// closed when the test ends.
func (s *Server) Connect(t testing.TB, user, password, db, sslmode string) (*pgx.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, s.ConnConfig(t, user, password, db, sslmode))
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn, nil
}

// CreateLoginRole creates a login role with a password, sent as a
// SCRAM-SHA-256 verifier as CloudNativePG 1.30 and OpenBao send them, so the
// cleartext never reaches the server or its log, and grants it membership
// in inRole (none when inRole is empty), as a binding's role is made.
func (s *Server) CreateLoginRole(t testing.TB, name, password, inRole string) {
	t.Helper()
	verifier, err := postgres.SCRAMVerifier(password)
	if err != nil {
		t.Fatalf("role %s: %v", name, err)
	}
	stmts := []string{fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD %s", ident(name), literal(verifier))}
	if inRole != "" {
		stmts = append(stmts, fmt.Sprintf("GRANT %s TO %s", ident(inRole), ident(name)))
	}
	if err := s.execAll(s.Database, stmts...); err != nil {
		t.Fatalf("creating login role %s: %v", name, err)
	}
}

// ApplyDatabase does what CloudNativePG's Database controller does for a
// rendered postgresql.cnpg.io/v1 Database: the database with its owner, and
// its extensions (ensure present or absent).
func (s *Server) ApplyDatabase(t testing.TB, db *unstructured.Unstructured) {
	t.Helper()
	var spec struct {
		Name       string `json:"name"`
		Owner      string `json:"owner"`
		Ensure     string `json:"ensure"`
		Extensions []struct {
			Name    string `json:"name"`
			Ensure  string `json:"ensure"`
			Version string `json:"version"`
			Schema  string `json:"schema"`
		} `json:"extensions"`
	}
	if err := fromObject(db.Object["spec"], &spec); err != nil {
		t.Fatalf("Database %s: %v", db.GetName(), err)
	}
	if spec.Ensure == "absent" {
		if err := s.execAll("postgres", "DROP DATABASE IF EXISTS "+ident(spec.Name)); err != nil {
			t.Fatalf("Database %s: %v", db.GetName(), err)
		}
		return
	}
	if err := s.ensureDatabase(spec.Name, spec.Owner); err != nil {
		t.Fatalf("Database %s: %v", db.GetName(), err)
	}
	var stmts []string
	for _, e := range spec.Extensions {
		if e.Ensure == "absent" {
			stmts = append(stmts, "DROP EXTENSION IF EXISTS "+ident(e.Name))
			continue
		}
		stmt := "CREATE EXTENSION IF NOT EXISTS " + ident(e.Name)
		if e.Schema != "" {
			stmt += " SCHEMA " + ident(e.Schema)
		}
		if e.Version != "" {
			stmt += " VERSION " + literal(e.Version)
		}
		stmts = append(stmts, stmt)
	}
	if err := s.execAll(spec.Name, stmts...); err != nil {
		t.Fatalf("Database %s: %v", db.GetName(), err)
	}
}

// Log returns the server's log so far.
func (s *Server) Log(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(s.LogFile)
	if err != nil {
		t.Fatalf("reading the PostgreSQL log: %v", err)
	}
	return string(b)
}

// parameters composes postgresql.conf as CloudNativePG does: defaults, then
// the Cluster's parameters, then what the operator (here: the harness)
// forces, and the managed shared_preload_libraries.
func (s *Server) parameters(t testing.TB) (map[string]string, error) {
	clusterParams, _, err := unstructured.NestedMap(s.Cluster.Object, "spec", "postgresql", "parameters")
	if err != nil {
		return nil, fmt.Errorf("spec.postgresql.parameters: %w", err)
	}
	params := maps.Clone(cnpgDefaults)
	for k, v := range clusterParams {
		sv, ok := v.(string)
		if !ok {
			// The CRD types parameters as map[string]string: the API server
			// would refuse anything else.
			t.Errorf("spec.postgresql.parameters.%s is %T %v, not a string: the API server refuses the Cluster", k, v, v)
			sv = fmt.Sprint(v)
		}
		if operatorOwned.MatchString(k) {
			t.Errorf("spec.postgresql.parameters sets %s, which CloudNativePG 1.30 fixes or blocks (the Cluster is refused or the value ignored)", k)
			continue
		}
		params[k] = sv
	}
	var libs []string
	extra, _, _ := unstructured.NestedStringSlice(s.Cluster.Object, "spec", "postgresql", "shared_preload_libraries")
	libs = append(libs, extra...)
	for _, e := range managedExtensions {
		for k := range clusterParams {
			if strings.HasPrefix(k, e.namespace+".") {
				libs = append(libs, e.name)
				break
			}
		}
	}
	libs = dedupe(libs)
	for _, lib := range libs {
		so := filepath.Join(filepath.Dir(s.bin), "lib", lib+".so")
		if _, err := os.Stat(so); err != nil {
			t.Fatalf("shared_preload_libraries needs %s, which is not installed (%v): %s", so, err, InstallHint)
		}
	}
	params["shared_preload_libraries"] = strings.Join(libs, ",")
	mandatory := map[string]string{
		"listen_addresses":        Host,
		"port":                    strconv.Itoa(s.Port),
		"unix_socket_directories": s.SocketDir,
		"ssl":                     "on",
		"ssl_cert_file":           filepath.Join(s.Dir, "server.crt"),
		"ssl_key_file":            filepath.Join(s.Dir, "server.key"),
		"ssl_ca_file":             s.CAFile,
		"logging_collector":       "off",
		"log_destination":         "stderr",
		"restart_after_crash":     "false",
		"full_page_writes":        "on",
		"fsync":                   "off", // a throwaway instance: speed over durability
	}
	for k, v := range mandatory {
		params[k] = v
	}
	return params, nil
}

// hbaConf is CloudNativePG's pg_hba.conf template filled with the Cluster's
// rules.
func hbaConf(cluster *unstructured.Unstructured) (string, error) {
	rules, _, err := unstructured.NestedStringSlice(cluster.Object, "spec", "postgresql", "pg_hba")
	if err != nil {
		return "", fmt.Errorf("spec.postgresql.pg_hba: %w", err)
	}
	var b strings.Builder
	b.WriteString(`#
# FIXED RULES (CloudNativePG)
#

# Grant local access ('local' user map)
local all all peer map=local

# Require client certificate authentication for the streaming_replica user
hostssl postgres streaming_replica all cert
hostssl replication streaming_replica all cert
hostssl all cnpg_pooler_pgbouncer all cert

#
# USER-DEFINED RULES (spec.postgresql.pg_hba)
#
`)
	for _, r := range rules {
		b.WriteString(r + "\n")
	}
	b.WriteString(`
#
# DEFAULT RULES (CloudNativePG)
#
host all all all scram-sha-256
`)
	return b.String(), nil
}

func (s *Server) start(t testing.TB) {
	t.Helper()
	logFile, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close() // the postmaster holds its own descriptor
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", s.DataDir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = s.env()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGQUIT}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting postgres: %v", err)
	}
	s.cmd = cmd
	s.done = make(chan struct{})
	go func() { s.werr = cmd.Wait(); close(s.done) }()
	t.Cleanup(s.stop)

	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-s.done:
			t.Fatalf("postgres exited during start-up (%v); the configuration rendered from the Cluster may be what PostgreSQL refuses. Log:\n%s", s.werr, s.logTail(40))
		default:
		}
		conn, err := s.superuser("postgres")
		if err == nil {
			_ = conn.Close(context.Background())
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("postgres was not ready within %s: %v. Log:\n%s", startTimeout, err, s.logTail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *Server) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	// pg_ctl refuses root too.
	_, _ = s.run(filepath.Join(s.bin, "pg_ctl"), "stop", "-D", s.DataDir, "-m", "fast", "-w", "-t", strconv.Itoa(int(stopTimeout/time.Second)))
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// bootstrap does what CloudNativePG does after the first start: the initdb
// bootstrap's owner and database, the managed roles, the managed extensions.
func (s *Server) bootstrap(t testing.TB) {
	t.Helper()
	var roles []struct {
		Name            string   `json:"name"`
		Ensure          string   `json:"ensure"`
		Login           bool     `json:"login"`
		Superuser       bool     `json:"superuser"`
		CreateDB        bool     `json:"createdb"`
		CreateRole      bool     `json:"createrole"`
		Replication     bool     `json:"replication"`
		BypassRLS       bool     `json:"bypassrls"`
		Inherit         *bool    `json:"inherit"`
		ConnectionLimit *int64   `json:"connectionLimit"`
		ValidUntil      string   `json:"validUntil"`
		InRoles         []string `json:"inRoles"`
		Comment         string   `json:"comment"`
	}
	if raw, ok, _ := unstructured.NestedFieldNoCopy(s.Cluster.Object, "spec", "managed", "roles"); ok {
		if err := fromObject(raw, &roles); err != nil {
			t.Fatalf("spec.managed.roles: %v", err)
		}
	}

	// The initdb bootstrap creates the owner as a login role (it gets the
	// <cluster>-app Secret's password, which the harness has not) and the
	// database; the managed roles are reconciled afterwards and win.
	if err := s.execAll("postgres",
		fmt.Sprintf("CREATE ROLE %s LOGIN", ident(s.Owner)),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", ident(s.Database), ident(s.Owner))); err != nil {
		t.Fatalf("bootstrap (spec.bootstrap.initdb): %v", err)
	}
	// Then the initdb bootstrap's SQL: postInitSQL in the postgres
	// database, as CloudNativePG runs it first.
	if post, _, _ := unstructured.NestedStringSlice(s.Cluster.Object, "spec", "bootstrap", "initdb", "postInitSQL"); len(post) > 0 {
		if err := s.execAll("postgres", post...); err != nil {
			t.Fatalf("running spec.bootstrap.initdb.postInitSQL: %v", err)
		}
	}
	// Then in the application database: the
	// inline statements, then those of the referenced Secrets.
	sql, err := s.postInitApplicationSQL()
	if err != nil {
		t.Fatalf("spec.bootstrap.initdb.postInitApplicationSQLRefs: %v", err)
	}
	if err := s.execAll(s.Database, sql...); err != nil {
		t.Fatalf("running spec.bootstrap.initdb.postInitApplicationSQL: %v", err)
	}

	var stmts []string
	for _, r := range roles {
		if r.Ensure == "absent" {
			stmts = append(stmts, "DROP ROLE IF EXISTS "+ident(r.Name))
			continue
		}
		opts := []string{
			flag(r.BypassRLS, "BYPASSRLS"), flag(r.CreateDB, "CREATEDB"), flag(r.CreateRole, "CREATEROLE"),
			flag(r.Inherit == nil || *r.Inherit, "INHERIT"), flag(r.Login, "LOGIN"),
			flag(r.Replication, "REPLICATION"), flag(r.Superuser, "SUPERUSER"),
		}
		limit := int64(-1)
		if r.ConnectionLimit != nil {
			limit = *r.ConnectionLimit
		}
		opts = append(opts, fmt.Sprintf("CONNECTION LIMIT %d", limit))
		if r.ValidUntil != "" {
			opts = append(opts, "VALID UNTIL "+literal(r.ValidUntil))
		}
		// The operator adopts a role that exists (made by the bootstrap or
		// its SQL) and creates the others.
		verb := "CREATE"
		if exists, err := s.roleExists(r.Name); err != nil {
			t.Fatal(err)
		} else if exists {
			verb = "ALTER"
		}
		stmts = append(stmts, fmt.Sprintf("%s ROLE %s %s", verb, ident(r.Name), strings.Join(opts, " ")))
		if r.Comment != "" {
			stmts = append(stmts, fmt.Sprintf("COMMENT ON ROLE %s IS %s", ident(r.Name), literal(r.Comment)))
		}
		for _, in := range r.InRoles {
			stmts = append(stmts, fmt.Sprintf("GRANT %s TO %s", ident(in), ident(r.Name)))
		}
	}
	if err := s.execAll("postgres", stmts...); err != nil {
		t.Fatalf("reconciling spec.managed.roles: %v", err)
	}

	// Managed extensions, in every database that accepts connections.
	var exts []string
	for _, e := range managedExtensions {
		if !e.libraryOnly && slices.Contains(strings.Split(s.Parameters["shared_preload_libraries"], ","), e.name) {
			exts = append(exts, "CREATE EXTENSION IF NOT EXISTS "+ident(e.name))
		}
	}
	if len(exts) == 0 {
		return
	}
	conn, err := s.superuser("postgres")
	if err != nil {
		t.Fatal(err)
	}
	rows, _ := conn.Query(context.Background(), "SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname")
	dbs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	_ = conn.Close(context.Background())
	if err != nil {
		t.Fatalf("listing databases: %v", err)
	}
	for _, db := range dbs {
		if err := s.execAll(db, exts...); err != nil {
			t.Fatalf("creating the managed extensions in %s: %v", db, err)
		}
	}
}

// postInitApplicationSQL lists the bootstrap's application SQL: the
// inline statements, then each secretRefs entry's content.
func (s *Server) postInitApplicationSQL() ([]string, error) {
	initdb, _, _ := unstructured.NestedMap(s.Cluster.Object, "spec", "bootstrap", "initdb")
	var out []string
	if inline, ok := initdb["postInitApplicationSQL"].([]any); ok {
		for _, stmt := range inline {
			out = append(out, fmt.Sprint(stmt))
		}
	}
	refs, _, _ := unstructured.NestedSlice(initdb, "postInitApplicationSQLRefs", "secretRefs")
	for _, r := range refs {
		ref, _ := r.(map[string]any)
		name, key := fmt.Sprint(ref["name"]), fmt.Sprint(ref["key"])
		content, err := s.secretValue(name, key)
		if err != nil {
			return nil, err
		}
		out = append(out, content)
	}
	return out, nil
}

// secretValue reads key of one of the Secrets given to Start.
func (s *Server) secretValue(name, key string) (string, error) {
	for _, sec := range s.secrets {
		if sec.GetKind() != "Secret" || sec.GetName() != name {
			continue
		}
		if v, ok, _ := unstructured.NestedString(sec.Object, "stringData", key); ok {
			return v, nil
		}
		if v, ok, _ := unstructured.NestedString(sec.Object, "data", key); ok {
			raw, err := base64.StdEncoding.DecodeString(v)
			return string(raw), err
		}
		return "", fmt.Errorf("the Secret %s has no key %s", name, key)
	}
	return "", fmt.Errorf("the Cluster refers to Secret %s, which was not given to pgtest.Start", name)
}

func (s *Server) roleExists(name string) (bool, error) {
	conn, err := s.superuser("postgres")
	if err != nil {
		return false, err
	}
	defer conn.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	var exists bool
	err = conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", name).Scan(&exists)
	return exists, err
}

func (s *Server) ensureDatabase(name, owner string) error {
	conn, err := s.superuser("postgres")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return err
	}
	stmt := fmt.Sprintf("CREATE DATABASE %s OWNER %s", ident(name), ident(owner))
	if exists {
		stmt = fmt.Sprintf("ALTER DATABASE %s OWNER TO %s", ident(name), ident(owner))
	}
	_, err = conn.Exec(ctx, stmt)
	return err
}

// execAll runs statements one by one as the superuser in db.
func (s *Server) execAll(db string, stmts ...string) error {
	if len(stmts) == 0 {
		return nil
	}
	conn, err := s.superuser(db)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	for _, stmt := range stmts {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", redact(stmt), err)
		}
	}
	return nil
}

// redact keeps passwords (even verifiers) out of failure messages.
func redact(stmt string) string {
	return regexp.MustCompile(`(?i)(PASSWORD\s+)'[^']*'`).ReplaceAllString(stmt, "${1}'…'")
}

func (s *Server) writeCertificates() error {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pgtest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP(Host)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	s.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	files := []struct {
		name string
		data []byte
	}{
		{s.CAFile, s.CAPEM},
		{filepath.Join(s.Dir, "server.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})},
		// PostgreSQL refuses a key readable by others.
		{filepath.Join(s.Dir, "server.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})},
	}
	for _, f := range files {
		if err := os.WriteFile(f.name, f.data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// run runs a PostgreSQL tool as the server's OS user.
func (s *Server) run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = s.env()
	cmd.Dir = s.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (s *Server) env() []string {
	return []string{"PATH=" + s.bin + ":/usr/bin:/bin", "LC_ALL=C", "HOME=" + s.Dir, "TZ=UTC"}
}

// chown hands Dir to the server's OS user when the test runs as root.
func (s *Server) chown() error {
	if s.cred == nil {
		return nil
	}
	return filepath.WalkDir(s.Dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(s.cred.Uid), int(s.cred.Gid))
	})
}

func (s *Server) writeFile(name, content string) error {
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		return err
	}
	if s.cred != nil {
		return os.Chown(name, int(s.cred.Uid), int(s.cred.Gid))
	}
	return nil
}

func (s *Server) appendFile(name, content string) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (s *Server) logTail(n int) string {
	b, err := os.ReadFile(s.LogFile)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func installedVersion(t testing.TB, bin string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(bin, "postgres"), "--version").Output()
	if err != nil {
		t.Fatalf("%s --version: %v: %s", filepath.Join(bin, "postgres"), err, InstallHint)
	}
	m := regexp.MustCompile(`\) (\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("cannot read the major version from %q", out)
	}
	return string(m[1])
}

// imageMajor is the major version in the Cluster's image tag
// (ghcr.io/cloudnative-pg/postgresql:15.17-standard-trixie → 15).
func imageMajor(cluster *unstructured.Unstructured) string {
	image := str(cluster, "spec", "imageName")
	if i := strings.LastIndex(image, ":"); i >= 0 {
		tag := image[i+1:]
		if j := strings.IndexAny(tag, ".-"); j > 0 {
			return tag[:j]
		}
		return tag
	}
	return ""
}

func currentOSUser(t testing.TB) string {
	u, err := user.Current()
	if err != nil {
		t.Fatalf("who runs the test: %v", err)
	}
	return u.Username
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", Host+":0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func str(u *unstructured.Unstructured, fields ...string) string {
	v, _, _ := unstructured.NestedString(u.Object, fields...)
	return v
}

func fromObject(in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	d := json.NewDecoder(bytes.NewReader(b))
	return d.Decode(out)
}

func flag(on bool, name string) string {
	if on {
		return name
	}
	return "NO" + name
}

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }

// literal quotes a string literal (standard_conforming_strings is on).
func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// confValue quotes a postgresql.conf value as CloudNativePG does.
func confValue(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// dedupe keeps the first occurrence of each library, as CloudNativePG does.
func dedupe(in []string) []string {
	var out []string
	for _, v := range in {
		if v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// RenderCluster renders the Cluster of a PostgreSQL plan of the catalog
// as the provisioner does, with params over PostgreSQL 15 (what the
// harness runs), for Start.
func RenderCluster(t testing.TB, planName string, params map[string]any) *unstructured.Unstructured {
	t.Helper()
	cat := catalog.Default()
	svc := &cat.Services[0]
	plan := svc.PlanByName(planName)
	if plan == nil {
		t.Fatalf("the catalog has no %q PostgreSQL plan", planName)
	}
	p := &postgres.Provisioner{Config: postgres.DefaultConfig()}
	p.Config.Backup.Bucket = "b"
	all := map[string]any{"version": "15"}
	maps.Copy(all, params)
	objs, err := p.Build(provisioners.Instance{
		ID: "5c4d1e2f-0000-4000-8000-00000000a11d", Name: "pg-x", Namespace: "t1",
		Service: svc, Plan: plan, Params: all,
	})
	if err != nil {
		t.Fatalf("rendering the %s plan: %v", planName, err)
	}
	for _, o := range objs {
		if o.GetKind() == "Cluster" {
			return o
		}
	}
	t.Fatalf("the %s plan renders no Cluster", planName)
	return nil
}
