//go:build linux

package kafkatest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/provisioners/kafka"
)

// partitionValues is a topic's record values per partition, log start to
// end.
func partitionValues(ctx context.Context, cl *kgo.Client, topic string) (map[int32][]string, error) {
	recs, err := ReadTopic(ctx, cl, topic)
	out := map[int32][]string{}
	for _, r := range recs {
		out[r.Partition] = append(out[r.Partition], string(r.Value))
	}
	return out, err
}

// groupOffsets is a group's committed offset per partition of topic.
func groupOffsets(ctx context.Context, adm *kadm.Client, group, topic string) map[int32]int64 {
	out := map[int32]int64{}
	o, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return out
	}
	o.Each(func(r kadm.OffsetResponse) {
		if r.Topic == topic && r.Err == nil {
			out[r.Partition] = r.At
		}
	})
	return out
}

// stable asserts that both clusters' end offsets of topic stay as they are
// for the window (no mirror copying anything again).
func stable(t *testing.T, ctx context.Context, g Gomega, window time.Duration, topic string, clusters map[string]*kadm.Client) {
	t.Helper()
	want := map[string]map[int32]int64{}
	for name, adm := range clusters {
		e, err := endOffsets(ctx, adm, topic)
		g.Expect(err).NotTo(HaveOccurred())
		want[name] = e
	}
	g.Consistently(func() map[string]map[int32]int64 {
		got := map[string]map[int32]int64{}
		for name, adm := range clusters {
			got[name], _ = endOffsets(ctx, adm, topic)
		}
		return got
	}).WithTimeout(window).WithPolling(2*time.Second).Should(Equal(want), "end offsets of %s must not move", topic)
	t.Logf("end offsets stable for %s: %v", window, want)
}

// failback runs the documented failback (docs/kafka.md, Failback) after
// TestDisasterRecoveryMirrorAndFailover's failover: the application has
// run on the DR cluster (produced there, consumed part of it); the old
// cluster is back with records the DR cluster never got. Its topic is
// emptied, a reverse mirror (the rendered one, clusters swapped, its own
// Connect group and topics, each cluster's admin) copies the DR
// cluster's records and the group's offsets back and then copies nothing
// more; the application, with its original binding, resumes on the old
// cluster without losing a record; and the forward mirror, its source
// offsets set to where the old cluster's topic ended at the switch, copies
// only what is written after it.
func failback(t *testing.T, ctx context.Context, src *Cluster, dst *Broker, kube *Kube, forward *unstructured.Unstructured,
	b, drBinding map[string]string, topic, group string) {
	g := NewWithT(t)
	start := time.Now()
	ns := forward.GetNamespace()
	srcCl, err := src.NewClient(AdminUser, src.AdminPassword)
	g.Expect(err).NotTo(HaveOccurred())
	defer srcCl.Close()
	dstCl, err := dst.NewClient(AdminUser, dst.AdminPassword)
	g.Expect(err).NotTo(HaveOccurred())
	defer dstCl.Close()
	both := map[string]*kadm.Client{"old": src.Admin, "DR": dst.Admin}

	// The application goes on on the DR cluster: 300 more records, of
	// which its group consumes and commits the first ~100.
	const more = 300
	dprod := clientFrom(t, drBinding, kgo.RetryTimeout(time.Minute))
	g.Expect(produceKeyed(ctx, t, dprod, topic, "fb-", more)).To(Succeed())
	dprod.Close()
	cons := clientFrom(t, drBinding, kgo.ConsumeTopics(topic), kgo.ConsumerGroup(group), kgo.RetryTimeout(time.Minute),
		kgo.DisableAutoCommit(), kgo.FetchMaxPartitionBytes(500))
	consumedOnDR := map[string]bool{}
	for len(consumedOnDR) < 100 {
		fs := cons.PollRecords(ctx, 100-len(consumedOnDR))
		g.Expect(ctx.Err()).NotTo(HaveOccurred())
		fs.EachRecord(func(r *kgo.Record) {
			g.Expect(string(r.Value)).To(HavePrefix("fb-"), "the group was at the end before these")
			consumedOnDR[string(r.Value)] = true
		})
		g.Expect(cons.CommitUncommittedOffsets(ctx)).To(Succeed())
	}
	cons.Close()
	drPos := groupOffsets(ctx, dst.Admin, group, topic)
	drEnds, err := endOffsets(ctx, dst.Admin, topic)
	g.Expect(err).NotTo(HaveOccurred())
	t.Logf("on the DR cluster: %d records %v, the group at %v (%d consumed of the %d new)", sum(drEnds), drEnds, drPos, len(consumedOnDR), more)

	// The old cluster is back with records written after the mirror
	// stopped: never on the DR cluster (the failover's RPO), so they must
	// not come back.
	for i := range 5 {
		g.Expect(srcCl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(fmt.Sprintf("unmirrored-%d", i))}).FirstErr()).To(Succeed())
	}

	// 1. Empty the instance's topics on the old cluster (delete records up
	// to the end offsets).
	ends, err := src.Admin.ListEndOffsets(ctx, topic)
	g.Expect(err).NotTo(HaveOccurred())
	del, err := src.Admin.DeleteRecords(ctx, ends.Offsets())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(del.Error()).NotTo(HaveOccurred())
	truncatedAt, err := endOffsets(ctx, src.Admin, topic)
	g.Expect(err).NotTo(HaveOccurred())

	// 2. The reverse mirror: the rendered KafkaMirrorMaker2 with source
	// and target swapped (aliases too), as each cluster's admin, and its
	// own Connect group and topics (<prefix>failback.*) on the old
	// cluster. Its topicsExcludePattern, rendered, keeps both workers'
	// Connect topics out.
	kube.Secret(ns, "failback-old", map[string]string{"ca.crt": src.CAPEM, "password": src.AdminPassword})
	kube.Secret(ns, "failback-dr", map[string]string{"ca.crt": dst.CAPEM, "password": dst.AdminPassword})
	side := func(alias, bootstrap, secret string) map[string]any {
		return map[string]any{
			"alias": alias, "bootstrapServers": bootstrap,
			"tls":            map[string]any{"trustedCertificates": []any{map[string]any{"secretName": secret, "certificate": "ca.crt"}}},
			"authentication": map[string]any{"type": "scram-sha-512", "username": AdminUser, "passwordSecret": map[string]any{"secretName": secret, "password": "password"}},
		}
	}
	reverse := forward.DeepCopy()
	reverse.SetName(forward.GetName() + "-failback")
	fwdTarget, _, _ := unstructured.NestedMap(reverse.Object, "spec", "target")
	mirrors, _, _ := unstructured.NestedSlice(reverse.Object, "spec", "mirrors")
	mir := mirrors[0].(map[string]any)
	oldAlias := mir["source"].(map[string]any)["alias"].(string)
	prefix := oldAlias + "."
	rt := side(oldAlias, src.Bootstrap, "failback-old")
	rt["groupId"] = prefix + "failback.connect"
	rt["configStorageTopic"] = prefix + "failback.configs.internal"
	rt["offsetStorageTopic"] = prefix + "failback.offsets.internal"
	rt["statusStorageTopic"] = prefix + "failback.status.internal"
	rt["config"] = fwdTarget["config"]
	g.Expect(unstructured.SetNestedMap(reverse.Object, rt, "spec", "target")).To(Succeed())
	mir["source"] = side(fwdTarget["alias"].(string), dst.Addr, "failback-dr")
	g.Expect(unstructured.SetNestedSlice(reverse.Object, mirrors, "spec", "mirrors")).To(Succeed())
	dir := t.TempDir()
	rm, err := TranslateMirrorMaker2(reverse, kube, dir)
	g.Expect(err).NotTo(HaveOccurred())
	started := time.Now()
	rconnect, err := StartConnect(rm, dir)
	g.Expect(err).NotTo(HaveOccurred())
	defer rconnect.Stop()
	var reverseSource string
	for name, c := range rm.Connectors {
		if strings.HasSuffix(name, ".MirrorSourceConnector") {
			reverseSource = name
		}
		g.Expect(c["topics.exclude"]).To(Equal(mir["topicsExcludePattern"]), "the rendered exclusion")
	}

	// Lag 0 backwards: after its truncation point, each partition of the
	// old cluster holds exactly the DR cluster's records, in order.
	g.Eventually(func() map[int32]int64 {
		e, _ := endOffsets(ctx, src.Admin, topic)
		copied := map[int32]int64{}
		for p, o := range e {
			copied[p] = o - truncatedAt[p]
		}
		return copied
	}).WithTimeout(10*time.Minute).WithPolling(500*time.Millisecond).Should(Equal(drEnds), "records mirrored back per partition")
	t.Logf("failback: the DR cluster's %d records back on the old cluster %s after the reverse mirror started", sum(drEnds), time.Since(started).Round(time.Millisecond))

	// The group's offsets follow (a new group is found within
	// refresh.groups.interval.seconds, then every 10 s): on the old
	// cluster, truncation point + the DR offset, rounded down to an offset
	// sync (at most offset.lag.max behind per partition), never past it.
	var oldPos map[int32]int64
	g.Eventually(func() int64 {
		oldPos = groupOffsets(ctx, src.Admin, group, topic)
		var behind int64
		for p, d := range drPos {
			o, ok := oldPos[p]
			if !ok || o < truncatedAt[p] {
				// Not translated yet: the group's offsets on the old
				// cluster are from before the failover, before its
				// truncation point.
				return math.MaxInt64
			}
			behind += truncatedAt[p] + d - o
		}
		return behind
	}).WithTimeout(10*time.Minute).WithPolling(time.Second).Should(BeNumerically("<=", kafka.OffsetLagMax*len(drPos)), "the group's translated offsets on the old cluster")
	for p, d := range drPos {
		g.Expect(oldPos[p]).To(BeNumerically("<=", truncatedAt[p]+d), "partition %d: a translated offset past the committed one would skip records", p)
	}
	t.Logf("failback: the group at %v on the DR cluster, %v on the old cluster (truncated at %v) %s after the reverse mirror started",
		drPos, oldPos, truncatedAt, time.Since(started).Round(time.Millisecond))

	// The reverse mirror copies nothing more while it runs: no loop, no
	// re-reading. It runs only its own two connectors, and its committed
	// source offsets are the instance's topic only (before the exclusion,
	// the forward worker's Connect topics were there too).
	stable(t, ctx, g, 30*time.Second, topic, both)
	names, err := rconnect.Connectors(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(names).To(ConsistOf(slices.Collect(maps.Keys(rm.Connectors))))
	raw, err := rconnect.Offsets(ctx, reverseSource)
	g.Expect(err).NotTo(HaveOccurred())
	var offs struct {
		Offsets []struct {
			Partition map[string]any `json:"partition"`
			Offset    map[string]any `json:"offset"`
		} `json:"offsets"`
	}
	g.Expect(json.Unmarshal([]byte(raw), &offs)).To(Succeed())
	g.Expect(offs.Offsets).To(HaveLen(len(drEnds)))
	for _, o := range offs.Offsets {
		g.Expect(o.Partition["topic"]).To(Equal(topic), "the reverse mirror copied %v", o.Partition)
		p := int32(o.Partition["partition"].(float64))
		g.Expect(o.Offset["offset"]).To(BeEquivalentTo(drEnds[p]-1), "last record copied of partition %d", p)
	}

	// 3. Producers are stopped (they are), lag 0 and the checkpoints are
	// in (above): the reverse mirror goes. Nothing moves after it.
	rconnect.Stop()
	switchEnds, err := endOffsets(ctx, src.Admin, topic)
	g.Expect(err).NotTo(HaveOccurred())
	// The reverse worker's Connect topics go with it, so a later failback
	// starts clean (documented step 3).
	dt, err := src.Admin.DeleteTopics(ctx, prefix+"failback.configs.internal", prefix+"failback.offsets.internal", prefix+"failback.status.internal")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(dt.Error()).NotTo(HaveOccurred())
	// What the application resumes from: the group's offsets as the last
	// checkpoint left them (a later one may have rounded less).
	oldPos = groupOffsets(ctx, src.Admin, group, topic)
	for p, d := range drPos {
		g.Expect(oldPos[p]).To(BeNumerically(">=", truncatedAt[p]), "partition %d translated", p)
		g.Expect(oldPos[p]).To(BeNumerically("<=", truncatedAt[p]+d), "partition %d: a translated offset past the committed one would skip records", p)
	}
	stable(t, ctx, g, 20*time.Second, topic, both)
	// Content: per partition the old cluster has exactly the DR
	// cluster's records, in the same order, none twice, none of the
	// discarded ones.
	oldVals, err := partitionValues(ctx, srcCl, topic)
	g.Expect(err).NotTo(HaveOccurred())
	drVals, err := partitionValues(ctx, dstCl, topic)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(oldVals).To(Equal(drVals))
	all := map[string]bool{}
	for _, vs := range oldVals {
		for _, v := range vs {
			g.Expect(all).NotTo(HaveKey(v), "record %s twice", v)
			g.Expect(v).NotTo(HavePrefix("unmirrored-"))
			all[v] = true
		}
	}
	g.Expect(all).To(HaveLen(int(sum(drEnds))))

	// 4. The application, with its original binding, resumes on the old
	// cluster: it reads every record it had not consumed on the DR
	// cluster, re-reading exactly the rounding of the translated offsets
	// (at most offset.lag.max per partition).
	resumed := time.Now()
	rc := clientFrom(t, b, kgo.ConsumeTopics(topic), kgo.ConsumerGroup(group), kgo.RetryTimeout(time.Minute),
		kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer rc.Close()
	remaining := map[string]bool{}
	reread := 0
	for len(remaining) < more-len(consumedOnDR) {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Minute)
		fs := rc.PollFetches(pctx)
		pcancel()
		g.Expect(fs.Err0()).NotTo(HaveOccurred(), "consuming on the old cluster: %d of %d", len(remaining), more-len(consumedOnDR))
		fs.EachRecord(func(r *kgo.Record) {
			v := string(r.Value)
			if !strings.HasPrefix(v, "fb-") || consumedOnDR[v] {
				reread++
				return
			}
			g.Expect(remaining).NotTo(HaveKey(v))
			remaining[v] = true
		})
	}
	g.Expect(rc.CommitUncommittedOffsets(ctx)).To(Succeed())
	var want int64
	for p, d := range drPos {
		want += truncatedAt[p] + d - oldPos[p]
	}
	g.Expect(int64(reread)).To(Equal(want))
	g.Expect(reread).To(BeNumerically("<=", kafka.OffsetLagMax*len(drPos)))
	t.Logf("failback: the group resumed on the old cluster and read the %d records it had not consumed in %s, re-reading %d (%d partitions, offset.lag.max %d)",
		len(remaining), time.Since(resumed).Round(time.Millisecond), reread, len(drPos), kafka.OffsetLagMax)

	// The application produces on the old cluster again.
	const after = 50
	prod := clientFrom(t, b, kgo.RetryTimeout(time.Minute))
	defer prod.Close()
	for i := range after {
		v := fmt.Sprintf("back-%04d", i)
		g.Expect(prod.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(v), Value: []byte(v)}).FirstErr()).To(Succeed())
	}

	// 5. The forward mirror on again. Its worker's offsets on the DR
	// cluster are from before the failover: left as they are, the
	// truncated topic would be copied again from its new start, the whole
	// history appended a second time. They are set to where the old
	// cluster's topic ended at the switch (with the tenant's DR user,
	// whose prefix ACLs cover the mirror's topics), so it copies only
	// what was written since.
	fm, err := TranslateMirrorMaker2(forward, kube, t.TempDir())
	g.Expect(err).NotTo(HaveOccurred())
	var forwardSource string
	for name := range fm.Connectors {
		if strings.HasSuffix(name, ".MirrorSourceConnector") {
			forwardSource = name
		}
	}
	offsetsTopic, _, _ := unstructured.NestedString(forward.Object, "spec", "target", "offsetStorageTopic")
	drUserName, _, _ := unstructured.NestedString(forward.Object, "spec", "target", "authentication", "username")
	drSecret, _, _ := unstructured.NestedString(forward.Object, "spec", "target", "authentication", "passwordSecret", "secretName")
	out, err := runMirrorResume(t, dst.Addr, dst.CAPEM, drUserName, kube.SecretData(ns, drSecret)["password"], offsetsTopic, forwardSource, topic, switchEnds)
	g.Expect(err).NotTo(HaveOccurred(), "scripts/strata-kafka-mirror-resume.sh:\n%s", out)
	t.Logf("scripts/strata-kafka-mirror-resume.sh:\n%s", out)
	fstarted := time.Now()
	fconnect, err := StartConnect(fm, t.TempDir())
	g.Expect(err).NotTo(HaveOccurred())
	defer fconnect.Stop()
	g.Expect(fconnect.WaitRunning(forwardSource, 1, 10*time.Minute)).To(Succeed())
	g.Eventually(func() int64 {
		e, _ := endOffsets(ctx, dst.Admin, topic)
		return sum(e)
	}).WithTimeout(10*time.Minute).WithPolling(500*time.Millisecond).Should(BeEquivalentTo(sum(drEnds)+after), "records on the DR cluster")
	t.Logf("forward mirror on again: the %d records written on the old cluster since the switch on the DR cluster %s after it started, nothing else",
		after, time.Since(fstarted).Round(time.Millisecond))
	stable(t, ctx, g, 30*time.Second, topic, both)
	oldVals, err = partitionValues(ctx, srcCl, topic)
	g.Expect(err).NotTo(HaveOccurred())
	drVals, err = partitionValues(ctx, dstCl, topic)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(drVals).To(Equal(oldVals), "both clusters hold the same records per partition")
	fconnect.Stop()
	t.Logf("failback total %s", time.Since(start).Round(time.Millisecond))
}

// runMirrorResume runs scripts/strata-kafka-mirror-resume.sh (failback
// step 6) against the DR cluster as the tenant's DR user, with Kafka's
// console consumer and producer from the test's jars standing in for the
// distribution's bin/ scripts, and ends as kafka-get-offsets.sh prints them.
func runMirrorResume(t *testing.T, addr, caPEM, user, password, offsetsTopic, connector, topic string, ends map[int32]int64) (string, error) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "log4j2.properties"), []byte(log4jConfig), 0o600); err != nil {
		return "", err
	}
	for name, class := range map[string]string{
		"kafka-console-consumer.sh": "org.apache.kafka.tools.consumer.ConsoleConsumer",
		"kafka-console-producer.sh": "org.apache.kafka.tools.ConsoleProducer",
	} {
		shim := fmt.Sprintf("#!/bin/sh\nexec java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile=%s -cp '%s' %s \"$@\"\n",
			filepath.Join(dir, "log4j2.properties"), filepath.Join(JarDir(), "*"), class)
		if err := os.WriteFile(filepath.Join(bin, name), []byte(shim), 0o755); err != nil {
			return "", err
		}
	}
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, []byte(caPEM), 0o600); err != nil {
		return "", err
	}
	cfg := filepath.Join(dir, "dr.properties")
	props := strings.Join([]string{
		"security.protocol=SASL_SSL", "sasl.mechanism=SCRAM-SHA-512",
		fmt.Sprintf(`sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="%s" password="%s";`, user, password),
		"ssl.truststore.type=PEM", "ssl.truststore.location=" + ca, "",
	}, "\n")
	if err := os.WriteFile(cfg, []byte(props), 0o600); err != nil {
		return "", err
	}
	var lines []string
	for p, o := range ends {
		lines = append(lines, fmt.Sprintf("%s:%d:%d", topic, p, o))
	}
	sort.Strings(lines)
	endsFile := filepath.Join(dir, "switch-ends.txt")
	if err := os.WriteFile(endsFile, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return "", err
	}
	cmd := exec.Command("bash", filepath.Join(RepoRoot(), "scripts", "strata-kafka-mirror-resume.sh"),
		"--bootstrap-server", addr, "--command-config", cfg, "--offsets-topic", offsetsTopic,
		"--connector", connector, "--ends", endsFile)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}
