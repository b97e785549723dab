//go:build linux

// Package kafkatest runs a real Apache Kafka broker (KRaft, one combined
// broker + controller node) from the Apache Kafka jars, configured with the
// client listener, authentication and authorization Strata renders for
// dedicated clusters: SASL_SSL with SCRAM-SHA-512 on a TLS listener whose
// certificate a test CA signs, and the StandardAuthorizer with no access
// unless an ACL grants it. It then plays Strimzi's part: KafkaTopics become
// topics and KafkaUsers become SCRAM credentials, ACLs and client quotas,
// translated one to one through the Admin API.
//
// The jars (the broker's, and the Kafka tools for kafka-producer-perf-test)
// are fetched once by Maven (pom.xml beside this file) into
// <repo>/.cache/kafka-jars/<version>; Java 17 and Maven come from Debian. A
// missing one fails the test; it never skips.
package kafkatest

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

const (
	// KafkaVersion is the broker the tests run: the Kafka line Strimzi 1.2
	// runs (kafka.version in pom.xml says the same).
	KafkaVersion = "4.3.1"
	// InstallHint says how to get what the harness needs.
	InstallHint = "install Java 17 and Maven: apt-get install openjdk-17-jdk-headless maven"
	// AdminUser is the broker's super user (the Entity Operator's role).
	AdminUser = "admin"

	fetchTimeout = 10 * time.Minute
	// Generous: on a 2-core machine running other JVMs a broker has
	// taken over two minutes to serve.
	startTimeout = 4 * time.Minute
)

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// JarDir is where the broker's jars are cached.
func JarDir() string { return filepath.Join(RepoRoot(), ".cache", "kafka-jars", KafkaVersion) }

var jarMu sync.Mutex

// EnsureJars fetches the broker's jars with Maven unless they are cached,
// and says how long the fetch took (zero when cached).
func EnsureJars() (time.Duration, error) {
	jarMu.Lock()
	defer jarMu.Unlock()
	for _, tool := range []string{"java", "mvn"} {
		if _, err := exec.LookPath(tool); err != nil {
			return 0, fmt.Errorf("%s is not on PATH (%w): %s", tool, err, InstallHint)
		}
	}
	dir := JarDir()
	// The broker's jar, the tools' jar (kafka-producer-perf-test) and
	// MirrorMaker 2's: a cache made before pom.xml listed the last two
	// lacks them, and the fetch below adds what is missing.
	complete := true
	for _, jar := range []string{"kafka_2.13-" + KafkaVersion + ".jar", "kafka-tools-" + KafkaVersion + ".jar", "connect-mirror-" + KafkaVersion + ".jar"} {
		if _, err := os.Stat(filepath.Join(dir, jar)); err != nil {
			complete = false
		}
	}
	if complete {
		return 0, nil
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	// A directory of this process's own: test binaries of several
	// packages may fetch at once on a cold machine.
	tmp := fmt.Sprintf("%s.partial-%d", dir, os.Getpid())
	_ = os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "mvn", "-q", "-B", "-f", filepath.Join(RepoRoot(), "integration", "kafkatest", "pom.xml"),
		"dependency:copy-dependencies", "-DincludeScope=runtime", "-DoutputDirectory="+tmp)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("fetching the Kafka %s jars with Maven failed: %w\n%s\n(%s)", KafkaVersion, err, tail(string(out), 40), InstallHint)
	}
	if err := addJars(tmp, dir); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// addJars moves the fetched jars into dir: all of them when dir is new,
// else those it lacks (a running broker may be using the others).
func addJars(tmp, dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.Rename(tmp, dir); err == nil {
			return nil
		}
		// Another process's fetch got there first: add what it lacks.
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	for _, e := range entries {
		target := filepath.Join(dir, e.Name())
		if _, err := os.Stat(target); err == nil {
			continue
		}
		if err := os.Rename(filepath.Join(tmp, e.Name()), target); err != nil {
			return err
		}
	}
	return os.RemoveAll(tmp)
}

// Broker is a running Kafka broker.
type Broker struct {
	// Addr is host:port of the SASL_SSL (SCRAM-SHA-512) client listener.
	Addr string
	// CAPEM is the test CA that signs the listener's certificate.
	CAPEM string
	// AdminPassword is the super user's SCRAM password.
	AdminPassword string
	// Admin is an admin client logged in as the super user.
	Admin *kadm.Client
	// JarFetch is how long fetching the jars took (zero when cached);
	// Started how long the broker took to serve.
	JarFetch, Started time.Duration

	dir    string
	cmd    *exec.Cmd
	admin  *kgo.Client
	logMu  sync.Mutex
	logBuf []string
	exited chan struct{}
}

// Start formats a fresh KRaft log directory and starts the broker.
func Start() (*Broker, error) {
	fetch, err := EnsureJars()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "strata-kafka-")
	if err != nil {
		return nil, err
	}
	b := &Broker{dir: dir, JarFetch: fetch, AdminPassword: randomToken(24), exited: make(chan struct{})}
	if err := b.start(); err != nil {
		b.Stop()
		return nil, err
	}
	return b, nil
}

func (b *Broker) start() error {
	caPEM, serverPEM, err := makePKI()
	if err != nil {
		return err
	}
	b.CAPEM = caPEM
	if err := os.WriteFile(filepath.Join(b.dir, "server.pem"), []byte(serverPEM), 0o600); err != nil {
		return err
	}
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	client, replication, controller := ports[0], ports[1], ports[2]
	b.Addr = fmt.Sprintf("127.0.0.1:%d", client)
	props := strings.Join([]string{
		"process.roles=broker,controller",
		"node.id=1",
		fmt.Sprintf("controller.quorum.voters=1@127.0.0.1:%d", controller),
		fmt.Sprintf("listeners=CLIENT://127.0.0.1:%d,REPLICATION://127.0.0.1:%d,CONTROLLER://127.0.0.1:%d", client, replication, controller),
		fmt.Sprintf("advertised.listeners=CLIENT://127.0.0.1:%d,REPLICATION://127.0.0.1:%d", client, replication),
		// CLIENT is the listener Strata renders (tls: true, scram-sha-512);
		// REPLICATION and CONTROLLER stand for Strimzi's internal 9091 and
		// 9090 listeners (mTLS there), bound to loopback only.
		"listener.security.protocol.map=CLIENT:SASL_SSL,REPLICATION:PLAINTEXT,CONTROLLER:PLAINTEXT",
		"inter.broker.listener.name=REPLICATION",
		"controller.listener.names=CONTROLLER",
		"listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-512",
		"listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;",
		"listener.name.client.ssl.keystore.type=PEM",
		"listener.name.client.ssl.keystore.location=" + filepath.Join(b.dir, "server.pem"),
		"listener.name.client.ssl.client.auth=none",
		// authorization: {type: simple}: KRaft's StandardAuthorizer, deny
		// unless allowed; the internal listeners' principal and the admin
		// are super users, as Strimzi's own users are.
		"authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
		"super.users=User:" + AdminUser + ";User:ANONYMOUS",
		"allow.everyone.if.no.acl.found=false",
		"log.dirs=" + filepath.Join(b.dir, "data"),
		// One node: internal topics cannot have three replicas here.
		"offsets.topic.replication.factor=1",
		"transaction.state.log.replication.factor=1",
		"transaction.state.log.min.isr=1",
		"auto.create.topics.enable=false",
		"group.initial.rebalance.delay.ms=0",
		"",
	}, "\n")
	cfg := filepath.Join(b.dir, "server.properties")
	if err := os.WriteFile(cfg, []byte(props), 0o600); err != nil {
		return err
	}
	log4j := "rootLogger.level = WARN\nrootLogger.appenderRef.stdout.ref = STDOUT\n" +
		"appender.stdout.type = Console\nappender.stdout.name = STDOUT\n" +
		"appender.stdout.layout.type = PatternLayout\nappender.stdout.layout.pattern = [%d] %p %m (%c)%n\n" +
		"logger.server.name = kafka.server.KafkaRaftServer\nlogger.server.level = INFO\n"
	if err := os.WriteFile(filepath.Join(b.dir, "log4j2.properties"), []byte(log4j), 0o600); err != nil {
		return err
	}
	java := func(main string, args ...string) *exec.Cmd {
		all := append([]string{
			"-Xmx512m", "-Xms128m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
			"-Dlog4j2.configurationFile=" + filepath.Join(b.dir, "log4j2.properties"),
			"-cp", filepath.Join(JarDir(), "*"), main,
		}, args...)
		cmd := exec.Command("java", all...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
		return cmd
	}
	start := time.Now()
	// The admin's SCRAM credential goes into the metadata log at format
	// time, so the broker can be administered before any user exists.
	format := java("kafka.tools.StorageTool", "format", "--config", cfg, "--cluster-id", clusterID(),
		"--add-scram", fmt.Sprintf("SCRAM-SHA-512=[name=%s,password=%s]", AdminUser, b.AdminPassword))
	if out, err := format.CombinedOutput(); err != nil {
		return fmt.Errorf("formatting the KRaft log directory: %w\n%s", err, tail(string(out), 30))
	}
	b.cmd = java("kafka.Kafka", cfg)
	stdout, err := b.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	b.cmd.Stderr = b.cmd.Stdout
	if err := b.cmd.Start(); err != nil {
		return err
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			b.logMu.Lock()
			b.logBuf = append(b.logBuf, sc.Text())
			if len(b.logBuf) > 400 {
				b.logBuf = b.logBuf[len(b.logBuf)-400:]
			}
			b.logMu.Unlock()
		}
		_ = b.cmd.Wait()
		close(b.exited)
	}()

	b.admin, err = b.NewClient(AdminUser, b.AdminPassword)
	if err != nil {
		return err
	}
	b.Admin = kadm.NewClient(b.admin)
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := b.Admin.ListBrokers(ctx)
		cancel()
		if err == nil {
			b.Started = time.Since(start)
			return nil
		}
		select {
		case <-b.exited:
			return fmt.Errorf("the Kafka broker exited while starting:\n%s", b.Log())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the Kafka broker did not serve the admin within %s (last error %w):\n%s", startTimeout, err, b.Log())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// Log is the broker's recent output.
func (b *Broker) Log() string {
	b.logMu.Lock()
	defer b.logMu.Unlock()
	return strings.Join(b.logBuf, "\n")
}

// Stop kills the broker and removes its files.
func (b *Broker) Stop() {
	if b.admin != nil {
		b.admin.Close()
	}
	if b.cmd != nil && b.cmd.Process != nil {
		_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-b.exited:
		case <-time.After(10 * time.Second):
		}
	}
	_ = os.RemoveAll(b.dir)
}

// TLSConfig trusts the PEM certificates in caPEM and verifies the broker's
// name, as a Java client with a PEM truststore does.
func TLSConfig(caPEM string) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(caPEM)) {
		return nil, errors.New("no certificate in the CA PEM")
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// NewClient is a client of the SASL_SSL listener logged in as user.
func (b *Broker) NewClient(user, password string, opts ...kgo.Opt) (*kgo.Client, error) {
	tc, err := TLSConfig(b.CAPEM)
	if err != nil {
		return nil, err
	}
	base := []kgo.Opt{
		kgo.SeedBrokers(b.Addr),
		kgo.DialTLSConfig(tc),
		kgo.SASL(scram.Auth{User: user, Pass: password}.AsSha512Mechanism()),
		kgo.RequestRetries(2),
	}
	return kgo.NewClient(append(base, opts...)...)
}

// makePKI returns a CA certificate and a PEM file with the server's private
// key (PKCS #8) and certificate chain for 127.0.0.1 and localhost, as
// Kafka's PEM key store reads it.
func makePKI() (caPEM, serverPEM string, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "strata-test-cluster-ca", Organization: []string{"io.strimzi"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return "", "", err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "strata-test-kafka"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return "", "", err
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	caPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	serverPEM = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk})) +
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})) + caPEM
	return caPEM, serverPEM, nil
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// clusterID is a random Kafka cluster id (16 bytes, URL-safe base64) that
// does not start with '-' (the command line would take it for an option).
func clusterID() string {
	for {
		id := randomToken(16)
		if id[0] != '-' {
			return id
		}
	}
}

func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
