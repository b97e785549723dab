// Package redistest runs real redis-server 7 processes (and Sentinels) on
// loopback with exactly the command line the Redis engine renders: the
// container paths of the RedisFailover's command are mapped to a temporary
// directory, the TLS port to a free port, and a small config file stands
// in for the operator's redis.conf (port, bind, dir, password, replicaof).
// A test CA and server certificate stand in for cert-manager's Secret.
package redistest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	rd "github.com/strata-dev/strata/provisioners/redis"
)

// Quorum is the Sentinel quorum the operator hard-codes
// ("sentinel monitor mymaster <ip> <port> 2").
const Quorum = 2

// RedisServerBinary finds redis-server, failing the test with an install
// hint when it is missing.
func RedisServerBinary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server (Redis 7 built with TLS) is not installed: apt-get install redis-server (%v)", err)
	}
	return p
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Certs is a test CA and a server certificate for 127.0.0.1 and localhost,
// written as cert-manager writes its Secret: tls.crt, tls.key, ca.crt.
type Certs struct {
	Dir    string
	CAPEM  []byte
	Pool   *x509.CertPool
	Leaf   *x509.Certificate
	CACert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	serial int64
}

// NewCerts issues the CA and the server certificate into dir.
func NewCerts(t testing.TB, dir string) *Certs {
	t.Helper()
	must := func(err error) {
		if err != nil {
			t.Fatalf("test certificates: %v", err)
		}
	}
	must(os.MkdirAll(dir, 0o755))
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "strata test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	must(err)
	caCert, err := x509.ParseCertificate(caDER)
	must(err)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	must(os.WriteFile(filepath.Join(dir, "ca.crt"), caPEM, 0o644))
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	c := &Certs{Dir: dir, CAPEM: caPEM, Pool: pool, CACert: caCert, caKey: caKey, serial: 1}
	c.Renew(t)
	return c
}

// Renew issues a new server certificate and key from the same CA into the
// directory, as cert-manager renews a Certificate's Secret.
func (c *Certs) Renew(t testing.TB) {
	t.Helper()
	must := func(err error) {
		if err != nil {
			t.Fatalf("test certificates: %v", err)
		}
	}
	c.serial++
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(c.serial), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, c.CACert, &key.PublicKey, c.caKey)
	must(err)
	leaf, err := x509.ParseCertificate(leafDER)
	must(err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	must(err)
	must(os.WriteFile(filepath.Join(c.Dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}), 0o644))
	must(os.WriteFile(filepath.Join(c.Dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	c.Leaf = leaf
}

// TLSConfig is a client configuration that trusts only the test CA.
func (c *Certs) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: c.Pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
}

// Server is one redis-server process.
type Server struct {
	t        testing.TB
	Dir      string // the stand-in for the pod: conf, data/
	DataDir  string
	Port     int // plaintext (the operator's, the Sentinels', replication)
	TLSPort  int
	Password string
	Args     []string // the command line as run
	cmd      *exec.Cmd
	log      *os.File
	// keepMinReplicas: see ServerOptions.KeepMinReplicasToWrite.
	keepMinReplicas bool
}

// CommandOf returns the Redis container command of a rendered RedisFailover.
func CommandOf(t testing.TB, rf *unstructured.Unstructured) []string {
	t.Helper()
	cmd, found, err := unstructured.NestedStringSlice(rf.Object, "spec", "redis", "command")
	if err != nil || !found || len(cmd) < 2 {
		t.Fatalf("RedisFailover %s has no redis command (found=%v, err=%v)", rf.GetName(), found, err)
	}
	return cmd
}

// ServerOptions say how to start a server.
type ServerOptions struct {
	// Command is the rendered Redis container command.
	Command  []string
	Certs    *Certs
	Password string
	// Dir is the pod's directory; reusing one restarts the same "pod".
	Dir string
	// ReplicaOf is the plaintext port of the master; 0 for a master.
	ReplicaOf int
	// Port and TLSPort are chosen when 0.
	Port, TLSPort int
	// KeepMinReplicasToWrite leaves the rendered min-replicas-to-write in
	// effect. By default StartServer sets it to 0: on standard and ha it
	// makes a master without a replica refuse writes, and in the pods the
	// role agent (cmd/strata-redis-role) decides when to relax or raise it
	// from what the Sentinels say; none runs here, and these tests are
	// about persistence, TLS and authentication of the Redis processes.
	// The rule itself: TestLoneMasterRefusesWritesAsRendered here, and
	// TestRedisFailoverLosesNoAcknowledgedWrite on the real platform.
	KeepMinReplicasToWrite bool
}

// StartServer starts redis-server as the pod would run it and waits until
// it answers.
func StartServer(t testing.TB, o ServerOptions) *Server {
	t.Helper()
	bin := RedisServerBinary(t)
	if o.Port == 0 {
		o.Port = FreePort(t)
	}
	if o.TLSPort == 0 {
		o.TLSPort = FreePort(t)
	}
	s := &Server{t: t, Dir: o.Dir, DataDir: filepath.Join(o.Dir, "data"), Port: o.Port, TLSPort: o.TLSPort, Password: o.Password}
	if err := os.MkdirAll(s.DataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The stand-in for the operator's redis.conf: what it owns (port,
	// bind, dir, password, replication) and its own save points, which
	// the rendered command must override.
	conf := []string{
		"port " + strconv.Itoa(o.Port),
		"bind 127.0.0.1",
		"dir " + s.DataDir,
		"tcp-keepalive 60",
		"save 900 1",
		"save 300 10",
		"requirepass " + o.Password,
		"masterauth " + o.Password,
		"daemonize no",
	}
	if o.ReplicaOf != 0 {
		conf = append(conf, fmt.Sprintf("replicaof 127.0.0.1 %d", o.ReplicaOf))
	}
	confPath := filepath.Join(o.Dir, "redis.conf")
	if err := os.WriteFile(confPath, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Args = MapCommand(t, o.Command, bin, confPath, o.Certs.Dir, o.TLSPort)
	s.keepMinReplicas = o.KeepMinReplicasToWrite
	s.start()
	return s
}

// standIn does what the role agent would for a master the Sentinels name
// (ServerOptions.KeepMinReplicasToWrite).
func (s *Server) standIn() {
	s.t.Helper()
	if s.keepMinReplicas {
		return
	}
	c := s.Plain()
	defer c.Close()
	if err := c.ConfigSet(context.Background(), "min-replicas-to-write", "0").Err(); err != nil {
		s.t.Fatalf("CONFIG SET min-replicas-to-write 0: %v", err)
	}
}

// MapCommand maps a rendered command to this machine: the binary, the
// config file, the certificate directory and the TLS port. Nothing else
// changes.
func MapCommand(t testing.TB, command []string, bin, confPath, certDir string, tlsPort int) []string {
	t.Helper()
	if command[0] != "redis-server" || command[1] != rd.ConfigFile {
		t.Fatalf("the rendered command starts %q %q, not redis-server %s", command[0], command[1], rd.ConfigFile)
	}
	out := []string{bin, confPath}
	rest := command[2:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		switch {
		case a == "--tls-port" && i+1 < len(rest):
			out = append(out, a, strconv.Itoa(tlsPort))
			i++
		case strings.HasPrefix(a, rd.CertDir+"/"):
			out = append(out, filepath.Join(certDir, strings.TrimPrefix(a, rd.CertDir+"/")))
		default:
			out = append(out, a)
		}
	}
	return out
}

func (s *Server) start() {
	s.t.Helper()
	log, err := os.OpenFile(filepath.Join(s.Dir, "redis.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	s.log = log
	s.cmd = exec.Command(s.Args[0], s.Args[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	cmd := s.cmd
	s.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	s.waitReady()
	s.standIn()
}

func (s *Server) waitReady() {
	s.t.Helper()
	c := s.Plain()
	defer c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := c.Ping(context.Background()).Err()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			raw, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
			s.t.Fatalf("redis-server on %d did not answer: %v\nargs: %q\nlog:\n%s", s.Port, err, s.Args, raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill ends the process with SIGKILL: no shutdown, no final save.
func (s *Server) Kill() {
	s.t.Helper()
	if s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	_ = s.log.Close()
}

// Restart starts the same pod again (same directory, ports and command).
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	s.start()
}

// Plain is a client of the plaintext port with the password (what the
// operator and the Sentinels use).
func (s *Server) Plain() *goredis.Client {
	return goredis.NewClient(&goredis.Options{
		Addr: fmt.Sprintf("127.0.0.1:%d", s.Port), Password: s.Password,
		DialTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second, MaxRetries: -1,
	})
}

// TLS is a client of the TLS port (what applications use).
func (s *Server) TLS(c *Certs, password string) *goredis.Client {
	return goredis.NewClient(&goredis.Options{
		Addr: fmt.Sprintf("127.0.0.1:%d", s.TLSPort), Password: password, TLSConfig: c.TLSConfig(),
		DialTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second, MaxRetries: -1,
	})
}

// Sentinel is one redis-server --sentinel process.
type Sentinel struct {
	Port int
	// TLSPort is 0 unless started with StartSentinelTLS.
	TLSPort int
	cmd     *exec.Cmd
}

// StartSentinel starts a Sentinel monitoring the master on masterPort the
// way the operator configures its Sentinels: master name mymaster, quorum
// 2, the password as auth-pass.
func StartSentinel(t testing.TB, dir string, masterPort int, password string) *Sentinel {
	t.Helper()
	return startSentinel(t, dir, masterPort, password, nil)
}

// StartSentinelTLS is StartSentinel with a TLS port for clients as well
// (the Sentinel still reaches Redis in plaintext, as the operator's do).
func StartSentinelTLS(t testing.TB, dir string, masterPort int, password string, certs *Certs) *Sentinel {
	t.Helper()
	return startSentinel(t, dir, masterPort, password, certs)
}

func startSentinel(t testing.TB, dir string, masterPort int, password string, certs *Certs) *Sentinel {
	t.Helper()
	bin := RedisServerBinary(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	port := FreePort(t)
	conf := []string{
		"port " + strconv.Itoa(port),
		"bind 127.0.0.1",
		"dir " + dir,
		fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d %d", rd.MasterName, masterPort, Quorum),
		fmt.Sprintf("sentinel auth-pass %s %s", rd.MasterName, password),
		fmt.Sprintf("sentinel down-after-milliseconds %s 1000", rd.MasterName),
		fmt.Sprintf("sentinel failover-timeout %s 3000", rd.MasterName),
	}
	tlsPort := 0
	if certs != nil {
		tlsPort = FreePort(t)
		conf = append(conf,
			"tls-port "+strconv.Itoa(tlsPort),
			"tls-cert-file "+filepath.Join(certs.Dir, "tls.crt"),
			"tls-key-file "+filepath.Join(certs.Dir, "tls.key"),
			"tls-ca-cert-file "+filepath.Join(certs.Dir, "ca.crt"),
			"tls-auth-clients no")
	}
	path := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(path, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(filepath.Join(dir, "sentinel.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, path, "--sentinel")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sentinel: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); _ = log.Close() })
	s := &Sentinel{Port: port, TLSPort: tlsPort, cmd: cmd}
	c := goredis.NewSentinelClient(&goredis.Options{Addr: s.Addr(), DialTimeout: time.Second})
	defer c.Close()
	deadline := time.Now().Add(15 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("sentinel on %d did not answer", port)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

// Addr is the Sentinel's host:port.
func (s *Sentinel) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.Port) }
