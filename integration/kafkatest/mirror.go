//go:build linux

package kafkatest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
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
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Mirror is a KafkaMirrorMaker2 as Strimzi's Cluster Operator runs it: a
// Kafka Connect worker against the target cluster (spec.target) and, per
// mirror, a MirrorSourceConnector and a MirrorCheckpointConnector whose
// configuration is the spec's connector config plus the source and target
// clusters' addresses, TLS and SASL settings. TranslateMirrorMaker2 does
// that translation (as TranslateACLs does a KafkaUser's); the operator
// itself cannot run here, so this stands in for it.
type Mirror struct {
	// Worker is the Connect worker's configuration (key=value).
	Worker []string
	// Connectors maps each connector's name to its configuration.
	Connectors map[string]map[string]string
}

// TranslateMirrorMaker2 turns a KafkaMirrorMaker2 into a Connect worker and
// connectors. Secrets (trusted certificates, passwords) are read from kube
// in the object's namespace; certificates are written as PEM files to dir
// (Strimzi mounts them into the pod).
func TranslateMirrorMaker2(mm *unstructured.Unstructured, kube *Kube, dir string) (*Mirror, error) {
	if mm.GetKind() != "KafkaMirrorMaker2" {
		return nil, fmt.Errorf("%s is not a KafkaMirrorMaker2", mm.GetKind())
	}
	ns := mm.GetNamespace()
	target, _, _ := unstructured.NestedMap(mm.Object, "spec", "target")
	targetClient, err := clusterClientConfig(target, kube, ns, dir)
	if err != nil {
		return nil, fmt.Errorf("spec.target: %w", err)
	}
	m := &Mirror{Connectors: map[string]map[string]string{}}
	w := map[string]string{
		"bootstrap.servers":    str(target["bootstrapServers"], ""),
		"group.id":             str(target["groupId"], ""),
		"config.storage.topic": str(target["configStorageTopic"], ""),
		"offset.storage.topic": str(target["offsetStorageTopic"], ""),
		"status.storage.topic": str(target["statusStorageTopic"], ""),
		// Strimzi's defaults for a MirrorMaker 2 Connect cluster: records
		// pass as bytes.
		"key.converter":   "org.apache.kafka.connect.converters.ByteArrayConverter",
		"value.converter": "org.apache.kafka.connect.converters.ByteArrayConverter",
	}
	cfg, _, _ := unstructured.NestedMap(target, "config")
	for k, v := range cfg {
		w[k] = fmt.Sprint(v)
	}
	// The worker's own clients and the producers and consumers it gives
	// tasks all log in to the target.
	for k, v := range targetClient {
		w[k] = v
		w["producer."+k] = v
		w["consumer."+k] = v
		w["admin."+k] = v
	}
	for k, v := range w {
		m.Worker = append(m.Worker, k+"="+v)
	}
	sort.Strings(m.Worker)

	targetAlias := str(target["alias"], "")
	mirrors, _, _ := unstructured.NestedSlice(mm.Object, "spec", "mirrors")
	for i, raw := range mirrors {
		mir, _ := raw.(map[string]any)
		source, _ := mir["source"].(map[string]any)
		sourceClient, err := clusterClientConfig(source, kube, ns, dir)
		if err != nil {
			return nil, fmt.Errorf("spec.mirrors[%d].source: %w", i, err)
		}
		sourceAlias := str(source["alias"], "")
		base := map[string]string{
			"source.cluster.alias":             sourceAlias,
			"target.cluster.alias":             targetAlias,
			"source.cluster.bootstrap.servers": str(source["bootstrapServers"], ""),
			"target.cluster.bootstrap.servers": str(target["bootstrapServers"], ""),
		}
		for k, v := range sourceClient {
			base["source.cluster."+k] = v
		}
		for k, v := range targetClient {
			base["target.cluster."+k] = v
		}
		for field, key := range map[string]string{"topicsPattern": "topics", "topicsExcludePattern": "topics.exclude", "groupsPattern": "groups", "groupsExcludePattern": "groups.exclude"} {
			if v := str(mir[field], ""); v != "" {
				base[key] = v
			}
		}
		for field, class := range map[string]string{"sourceConnector": "MirrorSourceConnector", "checkpointConnector": "MirrorCheckpointConnector"} {
			spec, ok := mir[field].(map[string]any)
			if !ok {
				continue
			}
			c := map[string]string{"connector.class": "org.apache.kafka.connect.mirror." + class}
			for k, v := range base {
				c[k] = v
			}
			if n, ok := spec["tasksMax"].(int64); ok {
				c["tasks.max"] = fmt.Sprint(n)
			}
			conf, _ := spec["config"].(map[string]any)
			for k, v := range conf {
				c[k] = fmt.Sprint(v)
			}
			// Strimzi's connector names: <source>-><target>.<class>.
			m.Connectors[sourceAlias+"->"+targetAlias+"."+class] = c
		}
	}
	return m, nil
}

// clusterClientConfig is a cluster's client settings from its tls and
// authentication: SASL_SSL with SCRAM-SHA-512 and a PEM trust store.
func clusterClientConfig(c map[string]any, kube *Kube, ns, dir string) (map[string]string, error) {
	out := map[string]string{}
	certs, _, _ := unstructured.NestedSlice(c, "tls", "trustedCertificates")
	var pemData strings.Builder
	for _, raw := range certs {
		tc, _ := raw.(map[string]any)
		secret, key := str(tc["secretName"], ""), str(tc["certificate"], "")
		v := kube.SecretData(ns, secret)[key]
		if v == "" {
			return nil, fmt.Errorf("no certificate %s in Secret %s/%s", key, ns, secret)
		}
		pemData.WriteString(v)
	}
	auth, _, _ := unstructured.NestedMap(c, "authentication")
	typ := str(auth["type"], "")
	switch {
	case len(certs) > 0 && typ == "scram-sha-512":
		out["security.protocol"] = "SASL_SSL"
	case len(certs) > 0 && typ == "":
		out["security.protocol"] = "SSL"
	default:
		return nil, fmt.Errorf("tls with %d trusted certificates and authentication %q: only TLS (with SCRAM-SHA-512) is translated", len(certs), typ)
	}
	if len(certs) > 0 {
		f := filepath.Join(dir, fmt.Sprintf("ca-%s.pem", randomToken(6)))
		if err := os.WriteFile(f, []byte(pemData.String()), 0o600); err != nil {
			return nil, err
		}
		out["ssl.truststore.type"] = "PEM"
		out["ssl.truststore.location"] = f
	}
	if typ == "scram-sha-512" {
		user := str(auth["username"], "")
		ps, _ := auth["passwordSecret"].(map[string]any)
		pw := kube.SecretData(ns, str(ps["secretName"], ""))[str(ps["password"], "")]
		if user == "" || pw == "" {
			return nil, fmt.Errorf("SCRAM user %q: no password in Secret %v", user, ps["secretName"])
		}
		out["sasl.mechanism"] = "SCRAM-SHA-512"
		out["sasl.jaas.config"] = fmt.Sprintf(`org.apache.kafka.common.security.scram.ScramLoginModule required username="%s" password="%s";`, user, pw)
	}
	return out, nil
}

// Connect is a running Kafka Connect worker (distributed mode).
type Connect struct {
	// REST is the worker's REST API (http://127.0.0.1:port).
	REST string

	dir    string
	cmd    *exec.Cmd
	logMu  sync.Mutex
	logBuf []string
	exited chan struct{}
}

// StartConnect runs a Connect worker with the mirror's worker configuration
// and creates its connectors.
func StartConnect(m *Mirror, dir string) (*Connect, error) {
	if _, err := EnsureJars(); err != nil {
		return nil, err
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	c := &Connect{REST: fmt.Sprintf("http://127.0.0.1:%d", ports[0]), dir: dir, exited: make(chan struct{})}
	props := append(append([]string{}, m.Worker...),
		fmt.Sprintf("listeners=http://127.0.0.1:%d", ports[0]),
		"rest.advertised.host.name=127.0.0.1",
		fmt.Sprintf("rest.advertised.port=%d", ports[0]),
		// Source offsets (how far each partition was copied) are flushed
		// every second, so a restarted mirror repeats little.
		"offset.flush.interval.ms=1000",
		"")
	cfg := filepath.Join(dir, fmt.Sprintf("connect-%d.properties", ports[0]))
	if err := os.WriteFile(cfg, []byte(strings.Join(props, "\n")), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "log4j2.properties"), []byte(log4jConfig), 0o600); err != nil {
		return nil, err
	}
	c.cmd = javaCmd(dir, "512m", nil, "org.apache.kafka.connect.cli.ConnectDistributed", cfg)
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c.cmd.Stderr = c.cmd.Stdout
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			c.logMu.Lock()
			c.logBuf = append(c.logBuf, sc.Text())
			if len(c.logBuf) > 400 {
				c.logBuf = c.logBuf[len(c.logBuf)-400:]
			}
			c.logMu.Unlock()
		}
		_ = c.cmd.Wait()
		close(c.exited)
	}()
	for name, conf := range m.Connectors {
		if err := c.put(name, conf); err != nil {
			c.Stop()
			return nil, err
		}
	}
	return c, nil
}

func (c *Connect) put(name string, conf map[string]string) error {
	body, err := json.Marshal(conf)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(startTimeout + time.Minute)
	for {
		req, _ := http.NewRequest(http.MethodPut, c.REST+"/connectors/"+url.PathEscape(name)+"/config", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 300 {
				return nil
			}
			err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, msg)
		}
		select {
		case <-c.exited:
			return fmt.Errorf("the Connect worker exited:\n%s", c.Log())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("creating connector %s: %w\n%s", name, err, c.Log())
		}
		time.Sleep(time.Second)
	}
}

// ConnectorStatus is a connector's state and its tasks' states.
type ConnectorStatus struct {
	Connector struct {
		State string `json:"state"`
	} `json:"connector"`
	Tasks []struct {
		ID    int    `json:"id"`
		State string `json:"state"`
		Trace string `json:"trace"`
	} `json:"tasks"`
}

// Status reads a connector's status.
func (c *Connect) Status(ctx context.Context, name string) (ConnectorStatus, error) {
	var st ConnectorStatus
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.REST+"/connectors/"+url.PathEscape(name)+"/status", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		return st, fmt.Errorf("HTTP %d: %s", resp.StatusCode, msg)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// WaitRunning waits until the connector and all of at least minTasks
// tasks run, and fails on a failed task (with its trace). The checkpoint
// connector has no task until a consumer group matches its pattern.
func (c *Connect) WaitRunning(name string, minTasks int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := c.Status(ctx, name)
		cancel()
		if err == nil {
			running := st.Connector.State == "RUNNING" && len(st.Tasks) >= minTasks
			for _, t := range st.Tasks {
				if t.State == "FAILED" {
					return fmt.Errorf("connector %s task %d failed: %s", name, t.ID, tail(t.Trace, 15))
				}
				running = running && t.State == "RUNNING"
			}
			if running {
				return nil
			}
			last = fmt.Sprintf("%+v", st)
		} else {
			last = err.Error()
		}
		time.Sleep(time.Second)
	}
	return fmt.Errorf("connector %s not running after %s (%s):\n%s", name, timeout, last, c.Log())
}

// Log is the worker's recent output.
func (c *Connect) Log() string {
	c.logMu.Lock()
	defer c.logMu.Unlock()
	return strings.Join(c.logBuf, "\n")
}

// Stop kills the worker (the mirror's pod going away).
func (c *Connect) Stop() {
	if c.cmd != nil && c.cmd.Process != nil {
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
		}
	}
}

// Offsets is a connector's committed source offsets as Connect's REST API
// lists them (GET /connectors/<name>/offsets, KIP-875): for a
// MirrorSourceConnector, per source partition the offset of the last
// record it copied.
func (c *Connect) Offsets(ctx context.Context, name string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.REST+"/connectors/"+url.PathEscape(name)+"/offsets", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
	}
	return string(body), nil
}

// Connectors lists the connectors the worker runs (GET /connectors).
func (c *Connect) Connectors(ctx context.Context) ([]string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.REST+"/connectors", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, msg)
	}
	var names []string
	err = json.NewDecoder(resp.Body).Decode(&names)
	sort.Strings(names)
	return names, err
}

// ReadTopic reads every record of a topic, all partitions, from their log
// start to the end offsets at the time of the call.
func ReadTopic(ctx context.Context, cl *kgo.Client, topic string) ([]*kgo.Record, error) {
	adm := kadm.NewClient(cl)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	want := map[int32]int64{}
	assign := map[int32]kgo.Offset{}
	var ferr error
	starts.Each(func(o kadm.ListedOffset) {
		e, _ := ends.Lookup(topic, o.Partition)
		if o.Err != nil || e.Err != nil {
			ferr = fmt.Errorf("offsets of %s partition %d: %w", topic, o.Partition, errors.Join(o.Err, e.Err))
		}
		if e.Offset > o.Offset {
			want[o.Partition] = e.Offset
			assign[o.Partition] = kgo.NewOffset().At(o.Offset)
		}
	})
	if ferr != nil || len(want) == 0 {
		return nil, ferr
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: assign})
	parts := make([]int32, 0, len(assign))
	for p := range assign {
		parts = append(parts, p)
	}
	defer cl.RemoveConsumePartitions(map[string][]int32{topic: parts})
	var out []*kgo.Record
	for len(want) > 0 {
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		fs := cl.PollFetches(pctx)
		cancel()
		if err := fs.Err0(); err != nil {
			return nil, fmt.Errorf("reading %s: %w (%d partitions left)", topic, err, len(want))
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := want[r.Partition]
			if r.Topic != topic || !ok || r.Offset >= end {
				return
			}
			out = append(out, r)
			if r.Offset+1 >= end {
				delete(want, r.Partition)
			}
		})
	}
	return out, nil
}
