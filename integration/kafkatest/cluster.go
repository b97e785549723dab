//go:build linux

package kafkatest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"sigs.k8s.io/yaml"
)

// Cluster is a multi-broker Kafka cluster on loopback: one dedicated KRaft
// controller and several brokers, each its own JVM, so a test can crash a
// broker (SIGKILL) and bring it back on the same log directory and ports.
// It is laid out like the ha plan's cluster (dedicated controllers, separate
// brokers) with one controller instead of three: what it proves is the
// data path (replication factor, min.insync.replicas, acks=all), which
// depends on the brokers, and a single controller that the test never
// stops keeps the quorum out of the way. Each broker has the client
// listener Strata renders (SASL_SSL, SCRAM-SHA-512) and the StandardAuthorizer.
type Cluster struct {
	// Bootstrap is the comma-separated client listener of every broker.
	Bootstrap     string
	CAPEM         string
	AdminPassword string
	// Admin is an admin client logged in as the super user.
	Admin      *kadm.Client
	Controller *Node
	// Brokers are indexed by node id - 1 (ids 1..n).
	Brokers []*Node

	dir   string
	admin *kgo.Client
}

// Node is one Kafka process of a Cluster.
type Node struct {
	ID int
	// Addr is the client listener (brokers only).
	Addr string
	// MetricsAddr is host:port of the JMX exporter agent's /metrics when
	// the cluster was started with a JMX exporter configuration.
	MetricsAddr string

	dir, cfg string
	jvm      []string
	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	logBuf   []string
}

// Timings that make failure detection take seconds instead of the
// defaults' tens of seconds; nothing else differs from a normal broker.
var fastFailover = []string{
	// The controller fences a broker that missed heartbeats for 3 s and
	// drops it from every ISR (KRaft does that on fencing).
	"broker.session.timeout.ms=3000",
	"broker.heartbeat.interval.ms=500",
	// A follower that stops fetching leaves the ISR after 4 s.
	"replica.lag.time.max.ms=4000",
}

// StartCluster starts a controller and n brokers whose configuration adds
// brokerConfig (key=value lines, typically the Kafka resource's
// spec.kafka.config as Strata renders it) to the listener setup.
func StartCluster(n int, brokerConfig []string) (*Cluster, error) {
	return StartClusterWith(n, brokerConfig, ClusterOptions{})
}

// ClusterOptions are a cluster's optional parts.
type ClusterOptions struct {
	// JMXExporterConfig, when not empty, is a Prometheus JMX exporter
	// configuration (YAML, as in the ConfigMap a Kafka resource's
	// metricsConfig names): every node, controller and brokers, then
	// loads the JMX exporter Java agent with it, as Strimzi's Kafka pods
	// do, serving /metrics on its Node.MetricsAddr.
	JMXExporterConfig string
}

// StartClusterWith is StartCluster with options.
func StartClusterWith(n int, brokerConfig []string, opts ClusterOptions) (*Cluster, error) {
	if _, err := EnsureJars(); err != nil {
		return nil, err
	}
	var agent string
	if opts.JMXExporterConfig != "" {
		var err error
		if agent, err = EnsureJMXAgent(); err != nil {
			return nil, err
		}
	}
	// The ports are free when freePorts picks them, but they are in the
	// ephemeral range: under load another process's outgoing connection
	// can take one before the JVM binds it (seen in CI). Such a start is
	// tried again with other ports; any other failure is returned.
	for attempt := 1; ; attempt++ {
		dir, err := os.MkdirTemp("", "strata-kafka-cluster-")
		if err != nil {
			return nil, err
		}
		c := &Cluster{dir: dir, AdminPassword: randomToken(24)}
		err = c.start(n, brokerConfig, agent, opts)
		if err == nil {
			return c, nil
		}
		c.Stop()
		if attempt == 3 || !strings.Contains(err.Error(), "Address already in use") {
			return nil, err
		}
	}
}

func (c *Cluster) start(n int, brokerConfig []string, agent string, opts ClusterOptions) error {
	caPEM, serverPEM, err := makePKI()
	if err != nil {
		return err
	}
	c.CAPEM = caPEM
	pemFile := filepath.Join(c.dir, "server.pem")
	if err := os.WriteFile(pemFile, []byte(serverPEM), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.dir, "log4j2.properties"), []byte(log4jConfig), 0o600); err != nil {
		return err
	}
	ports, err := freePorts(1 + 2*n + n + 1)
	if err != nil {
		return err
	}
	metricsPorts := ports[1+2*n:]
	// metrics makes node i (0 the controller) load the JMX exporter agent.
	metrics := func(node *Node, i int) error {
		if agent == "" {
			return nil
		}
		// Strimzi hands the agent the ConfigMap's rules converted to
		// JSON (metrics-config.json in the pods' shared ConfigMap).
		js, err := yaml.YAMLToJSON([]byte(opts.JMXExporterConfig))
		if err != nil {
			return fmt.Errorf("the JMX exporter configuration is not YAML: %w", err)
		}
		file := filepath.Join(c.dir, "metrics-config.json")
		if err := os.WriteFile(file, js, 0o600); err != nil {
			return err
		}
		node.MetricsAddr = fmt.Sprintf("127.0.0.1:%d", metricsPorts[i])
		node.jvm = []string{"-javaagent:" + agent + "=" + node.MetricsAddr + ":" + file}
		return nil
	}
	voters := fmt.Sprintf("100@127.0.0.1:%d", ports[0])
	common := []string{
		"controller.quorum.voters=" + voters,
		"controller.listener.names=CONTROLLER",
		// The authorizer runs on the controller too: brokers forward ACL
		// changes to it.
		"authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
		"super.users=User:" + AdminUser + ";User:ANONYMOUS",
		"allow.everyone.if.no.acl.found=false",
	}
	id := clusterID()
	c.Controller = &Node{ID: 100, dir: filepath.Join(c.dir, "controller")}
	if err := metrics(c.Controller, 0); err != nil {
		return err
	}
	ctrlProps := append([]string{
		"process.roles=controller", "node.id=100",
		fmt.Sprintf("listeners=CONTROLLER://127.0.0.1:%d", ports[0]),
		"listener.security.protocol.map=CONTROLLER:PLAINTEXT",
	}, common...)
	ctrlProps = append(ctrlProps, fastFailover...)
	// The admin's SCRAM credential goes into the metadata log at format
	// time, on the controller that owns it.
	if err := c.Controller.format(c.dir, ctrlProps, id, "--add-scram",
		fmt.Sprintf("SCRAM-SHA-512=[name=%s,password=%s]", AdminUser, c.AdminPassword)); err != nil {
		return err
	}
	if err := c.Controller.Start(); err != nil {
		return err
	}
	var addrs []string
	for i := 1; i <= n; i++ {
		client, repl := ports[2*i-1], ports[2*i]
		b := &Node{ID: i, Addr: fmt.Sprintf("127.0.0.1:%d", client), dir: filepath.Join(c.dir, fmt.Sprintf("broker-%d", i))}
		if err := metrics(b, i); err != nil {
			return err
		}
		props := append([]string{
			"process.roles=broker", fmt.Sprintf("node.id=%d", i),
			fmt.Sprintf("listeners=CLIENT://127.0.0.1:%d,REPLICATION://127.0.0.1:%d", client, repl),
			fmt.Sprintf("advertised.listeners=CLIENT://127.0.0.1:%d,REPLICATION://127.0.0.1:%d", client, repl),
			"listener.security.protocol.map=CLIENT:SASL_SSL,REPLICATION:PLAINTEXT,CONTROLLER:PLAINTEXT",
			"inter.broker.listener.name=REPLICATION",
			"listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-512",
			"listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;",
			"listener.name.client.ssl.keystore.type=PEM",
			"listener.name.client.ssl.keystore.location=" + pemFile,
			"listener.name.client.ssl.client.auth=none",
			"group.initial.rebalance.delay.ms=0",
		}, common...)
		props = append(props, fastFailover...)
		props = append(props, brokerConfig...)
		if err := b.format(c.dir, props, id); err != nil {
			return err
		}
		if err := b.Start(); err != nil {
			return err
		}
		c.Brokers = append(c.Brokers, b)
		addrs = append(addrs, b.Addr)
	}
	c.Bootstrap = strings.Join(addrs, ",")
	c.admin, err = c.NewClient(AdminUser, c.AdminPassword)
	if err != nil {
		return err
	}
	c.Admin = kadm.NewClient(c.admin)
	return c.WaitBrokers(n, startTimeout)
}

// WaitBrokers waits until n brokers are registered and unfenced.
func (c *Cluster) WaitBrokers(n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		bs, err := c.Admin.ListBrokers(ctx)
		cancel()
		if err == nil && len(bs) >= n {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("brokers not serving after %s: %w\n%s", timeout, err, c.Log())
			}
			return fmt.Errorf("%d of %d brokers serving after %s:\n%s", len(bs), n, timeout, c.Log())
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// NewClient is a client of every broker's SASL_SSL listener.
func (c *Cluster) NewClient(user, password string, opts ...kgo.Opt) (*kgo.Client, error) {
	tc, err := TLSConfig(c.CAPEM)
	if err != nil {
		return nil, err
	}
	base := []kgo.Opt{
		kgo.SeedBrokers(strings.Split(c.Bootstrap, ",")...),
		kgo.DialTLSConfig(tc),
		kgo.SASL(scram.Auth{User: user, Pass: password}.AsSha512Mechanism()),
	}
	return kgo.NewClient(append(base, opts...)...)
}

// Log is every node's recent output.
func (c *Cluster) Log() string {
	var b strings.Builder
	for _, n := range append([]*Node{c.Controller}, c.Brokers...) {
		if n != nil {
			fmt.Fprintf(&b, "--- node %d\n%s\n", n.ID, n.Log())
		}
	}
	return b.String()
}

// Stop kills every node and removes the cluster's files.
func (c *Cluster) Stop() {
	if c.admin != nil {
		c.admin.Close()
	}
	for _, b := range c.Brokers {
		b.Kill()
	}
	if c.Controller != nil {
		c.Controller.Kill()
	}
	_ = os.RemoveAll(c.dir)
}

func (n *Node) format(root string, props []string, clusterID string, extra ...string) error {
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		return err
	}
	props = append(props, "log.dirs="+filepath.Join(n.dir, "data"), "")
	sort.Strings(props[:len(props)-1])
	n.cfg = filepath.Join(n.dir, "server.properties")
	if err := os.WriteFile(n.cfg, []byte(strings.Join(props, "\n")), 0o600); err != nil {
		return err
	}
	args := append([]string{"format", "--config", n.cfg, "--cluster-id", clusterID}, extra...)
	out, err := javaCmd(root, "256m", nil, "kafka.tools.StorageTool", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("formatting node %d: %w\n%s", n.ID, err, tail(string(out), 30))
	}
	return nil
}

// Start runs the node on its (already formatted) log directory: the first
// start, or a restart after Kill.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		select {
		case <-n.exited:
		default:
			return fmt.Errorf("node %d is running", n.ID)
		}
	}
	heap := "384m"
	if n.Addr == "" {
		heap = "192m"
	}
	n.cmd = javaCmd(filepath.Dir(n.dir), heap, n.jvm, "kafka.Kafka", n.cfg)
	stdout, err := n.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	n.cmd.Stderr = n.cmd.Stdout
	if err := n.cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	n.exited = exited
	cmd := n.cmd
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			n.mu.Lock()
			n.logBuf = append(n.logBuf, sc.Text())
			if len(n.logBuf) > 300 {
				n.logBuf = n.logBuf[len(n.logBuf)-300:]
			}
			n.mu.Unlock()
		}
		_ = cmd.Wait()
		close(exited)
	}()
	return nil
}

// Kill crashes the node (SIGKILL to its process group): no controlled
// shutdown, as when a machine or pod dies.
func (n *Node) Kill() {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
	}
}

// Running says whether the node's process is alive.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// Log is the node's recent output.
func (n *Node) Log() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.logBuf, "\n")
}

// javaCmd runs a Kafka main class from the cached jars with the harness's
// log configuration in dir (log4j2.properties), with the extra JVM
// options jvm (a Java agent).
func javaCmd(dir, heap string, jvm []string, main string, args ...string) *exec.Cmd {
	all := append([]string{
		"-Xmx" + heap, "-Xms64m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
		"-Dlog4j2.configurationFile=" + filepath.Join(dir, "log4j2.properties"),
	}, jvm...)
	all = append(all, "-cp", filepath.Join(JarDir(), "*"), main)
	all = append(all, args...)
	cmd := exec.Command("java", all...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	return cmd
}

const log4jConfig = "rootLogger.level = WARN\nrootLogger.appenderRef.stdout.ref = STDOUT\n" +
	"appender.stdout.type = Console\nappender.stdout.name = STDOUT\n" +
	"appender.stdout.layout.type = PatternLayout\nappender.stdout.layout.pattern = [%d] %p %m (%c)%n\n" +
	"logger.server.name = kafka.server.KafkaRaftServer\nlogger.server.level = INFO\n"
