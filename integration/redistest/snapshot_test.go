package redistest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/integration/s3test"
	"github.com/strata-dev/strata/provisioners"
	rd "github.com/strata-dev/strata/provisioners/redis"
	"github.com/strata-dev/strata/provisioners/redis/snapshot"
)

const (
	snapBucket   = "strata-redis-snapshots"
	snapPrefix   = "snaps"
	snapNS       = "team-a"
	sourceID     = "0b7e3c1a-5d2f-4e6a-8b9c-1d2e3f4a5b6c"
	restoredID   = "9f1d2c3b-4a5e-4f60-8192-a3b4c5d6e7f8"
	snapKeyCount = 500
)

// snapshotConfig points the Redis engine at the test's versitygw with
// static keys, as the broker's redis.backup does.
func snapshotConfig(s3srv *s3test.Server) rd.Config {
	cfg := rd.DefaultConfig()
	cfg.ServerCertificates.IssuerName = "test-ca"
	cfg.SnapshotImage = "strata-broker:test"
	cfg.Backup = provisioners.BackupConfig{
		Bucket: snapBucket, PathPrefix: snapPrefix, EndpointURL: s3srv.Endpoint, Region: s3test.Region,
		Credentials: &provisioners.S3Keys{AccessKeyID: s3srv.AccessKeyID, SecretAccessKey: s3srv.SecretAccessKey},
	}
	return cfg
}

func buildWith(t *testing.T, cfg rd.Config, id, plan string, params map[string]any) []*unstructured.Unstructured {
	t.Helper()
	svc := catalog.RedisService()
	inst := provisioners.Instance{
		ID: id, Name: provisioners.ResourceName("rd-", id), Namespace: snapNS,
		Service: &svc, Plan: svc.PlanByName(plan), Params: params,
	}
	objs, err := (&rd.Provisioner{Config: cfg}).Build(inst)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return objs
}

func kindOf(t *testing.T, objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind {
			return o
		}
	}
	t.Fatalf("no %s rendered", kind)
	return nil
}

// remap replaces the value of each flag named in values.
func remap(t *testing.T, args []string, values map[string]string) []string {
	t.Helper()
	out := append([]string(nil), args...)
	for flag, v := range values {
		found := false
		for i := 0; i+1 < len(out); i++ {
			if out[i] == flag {
				out[i+1], found = v, true
			}
		}
		if !found {
			t.Fatalf("the rendered arguments have no %s: %q", flag, args)
		}
	}
	return out
}

func stringsOf(t *testing.T, v []any) []string {
	t.Helper()
	out := make([]string, len(v))
	for i, a := range v {
		out[i] = a.(string)
	}
	return out
}

func listKeys(t *testing.T, c *s3.Client, prefix string) []string {
	t.Helper()
	out, err := c.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(snapBucket), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}

func putObject(t *testing.T, c *s3.Client, key string, body []byte) {
	t.Helper()
	if _, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(snapBucket), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func getObject(t *testing.T, c *s3.Client, key string) []byte {
	t.Helper()
	out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(snapBucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer out.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(out.Body); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestSnapshotToS3AndRestore takes a snapshot of a real master/replica
// pair through a real Sentinel with the CronJob's rendered arguments,
// into a real S3 (versitygw), prunes by retention, and restores it into a
// fresh data volume with the rendered init containers' steps; a corrupted
// snapshot is refused.
func TestSnapshotToS3AndRestore(t *testing.T) {
	g := NewWithT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s3srv := s3test.Start(t)
	s3srv.CreateBucket(t, snapBucket)
	s3srv.Env(t)
	client := s3srv.Client()
	cfg := snapshotConfig(s3srv)
	objs := buildWith(t, cfg, sourceID, "standard", nil)

	// The source instance: master and replica with the plan's command
	// and AUTH, and a Sentinel as the operator configures them.
	dir := t.TempDir()
	certs := NewCerts(t, filepath.Join(dir, "tls"))
	cmd := CommandOf(t, kindOf(t, objs, "RedisFailover"))
	master := StartServer(t, ServerOptions{Command: cmd, Certs: certs, Password: testPassword, Dir: filepath.Join(dir, "pod-0")})
	replica := StartServer(t, ServerOptions{Command: cmd, Certs: certs, Password: testPassword, Dir: filepath.Join(dir, "pod-1"), ReplicaOf: master.Port})
	sentinel := StartSentinel(t, filepath.Join(dir, "sentinel-0"), master.Port, testPassword)

	mc := master.Plain()
	defer mc.Close()
	want := map[string]string{}
	for i := range snapKeyCount {
		k, v := fmt.Sprintf("key:%04d", i), fmt.Sprintf("value-%d", i*i)
		want[k] = v
		g.Expect(mc.Set(ctx, k, v, 0).Err()).To(Succeed())
	}
	// Large incompressible values: the RDB outgrows the multipart part
	// size set below.
	for i := range 12 {
		v := make([]byte, 1<<20)
		_, _ = rand.Read(v)
		k := fmt.Sprintf("blob:%02d", i)
		want[k] = string(v)
		g.Expect(mc.Set(ctx, k, v, 0).Err()).To(Succeed())
	}
	rc := replica.Plain()
	defer rc.Close()
	g.Eventually(func() int64 { return rc.DBSize(ctx).Val() }).WithTimeout(60*time.Second).WithPolling(200*time.Millisecond).
		Should(Equal(int64(len(want))), "the replica has every key")
	g.Eventually(func() error {
		_, err := snapshot.HealthyReplicas(ctx, sentinel.Addr(), rd.MasterName)
		return err
	}).WithTimeout(60*time.Second).WithPolling(500*time.Millisecond).Should(Succeed(), "Sentinel reports the replica")

	// An old snapshot beyond the retention (7 days on standard) and the
	// instance's folder as the CronJob names it.
	store := &snapshot.Store{Client: client, StoreConfig: snapshot.StoreConfig{Bucket: snapBucket, Prefix: snapPrefix}}
	srcDir := store.Dir(snapNS, rd.SnapshotName(sourceID))
	g.Expect(srcDir).To(Equal(snapPrefix + "/" + snapNS + "/redis/" + sourceID + "/"))
	oldKey := store.Key(snapNS, rd.SnapshotName(sourceID), time.Now().Add(-30*24*time.Hour))
	putObject(t, client, oldKey, []byte("an old snapshot"))

	// The CronJob's container, run as the job runs it: its arguments with
	// the Sentinel's and the scratch directory's addresses mapped here.
	job := kindOf(t, objs, "CronJob")
	containers, _, _ := unstructured.NestedSlice(job.Object, "spec", "jobTemplate", "spec", "template", "spec", "containers")
	args := stringsOf(t, containers[0].(map[string]any)["args"].([]any))
	g.Expect(args[:2]).To(Equal([]string{"redis-snapshot", "take"}))
	args = remap(t, args, map[string]string{"--sentinel": sentinel.Addr(), "--tmp-dir": t.TempDir()})
	t.Setenv(snapshot.PasswordEnv, testPassword)
	var log bytes.Buffer
	start := time.Now()
	g.Expect(snapshot.Main(ctx, args[1:], &log)).To(Succeed(), log.String())
	t.Logf("snapshot taken in %s:\n%s", time.Since(start).Round(time.Millisecond), log.String())
	out := log.String()
	g.Expect(out).To(ContainSubstring("asking Sentinel"))
	g.Expect(out).To(ContainSubstring(fmt.Sprintf("downloading an RDB from replica 127.0.0.1:%d", replica.Port)), "a replica, never the master")
	g.Expect(out).To(ContainSubstring("checksum verified"))
	g.Expect(out).To(ContainSubstring("deleted s3://" + snapBucket + "/" + oldKey))
	g.Expect(out).NotTo(ContainSubstring(testPassword), "no secret in the log")
	g.Expect(out).NotTo(ContainSubstring(s3srv.SecretAccessKey), "no secret in the log")

	keys := listKeys(t, client, srcDir)
	g.Expect(keys).To(HaveLen(1), "the old snapshot is deleted, the new one kept")
	newest := keys[0]
	g.Expect(newest).To(MatchRegexp(`^` + srcDir + `\d{8}T\d{6}Z\.rdb$`))

	// A second copy, uploaded in 5 MiB parts; with every snapshot now
	// beyond a retention of 0 the newest still stays.
	time.Sleep(1100 * time.Millisecond) // a new second, a new name
	store.PartSize = 5 << 20
	key2, err := snapshot.Take(ctx, store, snapshot.TakeOptions{
		Namespace: snapNS, Instance: rd.SnapshotName(sourceID), Replica: fmt.Sprintf("127.0.0.1:%d", replica.Port),
		Password: testPassword, Retention: time.Nanosecond, TmpDir: t.TempDir(),
		Now: func() time.Time { return time.Now().Add(time.Second) },
	}, func(f string, a ...any) { t.Logf(f, a...) })
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(listKeys(t, client, srcDir)).To(Equal([]string{key2}), "retention deletes every older snapshot, never the newest")
	rdb := getObject(t, client, key2)
	g.Expect(len(rdb)).To(BeNumerically(">", 10<<20), "a multipart upload of the whole RDB")
	g.Expect(string(rdb[:5])).To(Equal("REDIS"))

	// The broker's check at provision: the source's snapshots exist in
	// the new instance's namespace.
	check := func(cfg rd.Config, ns string, restore map[string]any) error {
		svc := catalog.RedisService()
		return (&rd.Provisioner{Config: cfg}).CheckProvision(ctx, provisioners.Instance{
			ID: restoredID, Name: "rd-new", Namespace: ns, Service: &svc, Plan: svc.PlanByName("standard"),
			Params: map[string]any{"restore": restore},
		})
	}
	g.Expect(check(cfg, snapNS, map[string]any{"from_instance": sourceID})).To(Succeed())
	g.Expect(check(cfg, snapNS, map[string]any{"from_instance": "no-such-instance"})).
		To(MatchError(And(ContainSubstring("parameters.restore.from_instance"), ContainSubstring("has no snapshots in namespace "+snapNS))))
	g.Expect(check(cfg, "team-b", map[string]any{"from_instance": sourceID})).
		To(MatchError(ContainSubstring("has no snapshots in namespace team-b")), "another namespace's snapshots are not found")
	g.Expect(check(cfg, snapNS, map[string]any{"from_instance": sourceID, "snapshot": "2020-01-01T00:00:00Z"})).
		To(MatchError(And(ContainSubstring("parameters.restore.snapshot"), ContainSubstring("the oldest snapshot is from"))))
	unreachable := cfg
	unreachable.Backup.EndpointURL = fmt.Sprintf("http://127.0.0.1:%d", FreePort(t))
	g.Expect(check(unreachable, snapNS, map[string]any{"from_instance": "no-such-instance"})).To(Succeed(),
		"a bucket the broker cannot read is left to the init container")

	// Restore: a new instance of this namespace from the latest snapshot,
	// with the init containers' steps on a fresh, empty data volume.
	restoredObjs := buildWith(t, cfg, restoredID, "standard", map[string]any{"restore": map[string]any{"from_instance": sourceID}})
	rf := kindOf(t, restoredObjs, "RedisFailover")
	inits, _, _ := unstructured.NestedSlice(rf.Object, "spec", "redis", "initContainers")
	g.Expect(inits).To(HaveLen(2))
	fetch, load := inits[0].(map[string]any), inits[1].(map[string]any)
	podDir := filepath.Join(t.TempDir(), "pod-0")
	data := filepath.Join(podDir, "data")
	g.Expect(os.MkdirAll(filepath.Join(data, "lost+found"), 0o755)).To(Succeed(), "a fresh ext4 volume")
	runRestore(t, fetch, load, data, "rfr-restored-0")
	g.Expect(filepath.Join(data, "appendonlydir")).To(BeADirectory())
	g.Expect(filepath.Join(data, snapshot.RestoreDir)).NotTo(BeAnExistingFile(), "the staging folder is gone")

	restored := StartServer(t, ServerOptions{Command: CommandOf(t, rf), Certs: certs, Password: testPassword, Dir: podDir})
	c := restored.Plain()
	defer c.Close()
	g.Expect(configValue(t, c, "appendonly")).To(Equal("yes"))
	g.Expect(c.DBSize(ctx).Val()).To(Equal(int64(len(want))), "exactly the source's keys")
	for k, v := range want {
		got, err := c.Get(ctx, k).Result()
		g.Expect(err).NotTo(HaveOccurred(), k)
		if got != v {
			t.Fatalf("restored %s differs from the source", k)
		}
	}
	// The AOF is the data now: a restart without the RDB keeps every key.
	g.Expect(c.Set(ctx, "after-restore", "1", 0).Err()).To(Succeed())
	restored.Restart()
	c2 := restored.Plain()
	defer c2.Close()
	g.Expect(c2.DBSize(ctx).Val()).To(Equal(int64(len(want) + 1)))

	// A second run on the volume, which now has data, changes nothing.
	runRestore(t, fetch, load, data, "rfr-restored-0")

	// A corrupted snapshot (one flipped byte) as the newest: refused with
	// the reason, and the volume stays empty.
	bad := append([]byte(nil), rdb...)
	bad[len(bad)/2] ^= 0xff
	badKey := store.Key(snapNS, rd.SnapshotName(sourceID), time.Now().Add(time.Hour))
	putObject(t, client, badKey, bad)
	empty := filepath.Join(t.TempDir(), "data")
	g.Expect(os.MkdirAll(empty, 0o755)).To(Succeed())
	fetchArgs := remap(t, stringsOf(t, fetch["args"].([]any)), map[string]string{"--data-dir": empty})
	var flog bytes.Buffer
	err = snapshot.Main(ctx, fetchArgs[1:], &flog)
	g.Expect(err).To(MatchError(And(ContainSubstring(badKey), ContainSubstring("is refused"), ContainSubstring("CRC-64"))))
	g.Expect(filepath.Join(empty, "appendonlydir")).NotTo(BeAnExistingFile())
	g.Expect(filepath.Join(empty, snapshot.RestoreDir, snapshot.RestoreFile)).NotTo(BeAnExistingFile(), "nothing for the load step")

	// A truncated one too.
	putObject(t, client, badKey, rdb[:len(rdb)-100])
	err = snapshot.Main(ctx, fetchArgs[1:], &flog)
	g.Expect(err).To(MatchError(ContainSubstring("is refused")))

	// An instance of another namespace finds none of this one's snapshots.
	other := remap(t, fetchArgs, map[string]string{"--namespace": "team-b"})
	err = snapshot.Main(ctx, other[1:], &flog)
	g.Expect(err).To(MatchError(ContainSubstring("there is no snapshot")))
}

// runRestore runs the two init containers on the data directory: the
// fetch step's rendered arguments in-process (the broker binary's
// subcommand), the load step's rendered script with sh, its data folder
// mapped here.
func runRestore(t *testing.T, fetch, load map[string]any, data, pod string) {
	t.Helper()
	g := NewWithT(t)
	t.Setenv("HOSTNAME", pod)
	args := remap(t, stringsOf(t, fetch["args"].([]any)), map[string]string{"--data-dir": data})
	var log bytes.Buffer
	g.Expect(snapshot.Main(context.Background(), args[1:], &log)).To(Succeed(), log.String())
	t.Logf("fetch:\n%s", log.String())
	command := stringsOf(t, load["command"].([]any))
	g.Expect(command[:2]).To(Equal([]string{"sh", "-c"}))
	script := command[2]
	line := "data=" + rd.DataDir + "\n"
	g.Expect(script).To(ContainSubstring(line))
	script = strings.Replace(script, line, "data="+data+"\n", 1)
	RedisServerBinary(t)
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatalf("redis-cli is not installed: apt-get install redis-tools (%v)", err)
	}
	cmd := exec.Command("sh", "-c", script)
	outb, err := cmd.CombinedOutput()
	t.Logf("load:\n%s", outb)
	g.Expect(err).NotTo(HaveOccurred(), string(outb))
}
