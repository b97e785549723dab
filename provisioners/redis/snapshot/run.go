package snapshot

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// PasswordEnv holds the Redis password (from the instance's auth Secret):
// never a flag, which would show in the pod spec and in ps.
const PasswordEnv = "REDIS_PASSWORD"

// RestoreDir is the staging folder of a restore inside the data volume;
// RestoreFile is the downloaded snapshot in it. The restore init
// containers (provisioners/redis) share these names.
const (
	RestoreDir  = ".strata-restore"
	RestoreFile = "restore.rdb"
)

// Usage is the subcommand's synopsis.
const Usage = `usage: strata-broker redis-snapshot take|restore-fetch [flags]
  take           copy an RDB from a replica to S3 and prune old snapshots
  restore-fetch  download a snapshot into an empty data volume
Run with -h after the command for its flags. The Redis password is read
from $` + PasswordEnv + `; S3 credentials from the AWS SDK's default chain`

// Main runs the redis-snapshot subcommand with args (after its name),
// logging one line per step to log.
func Main(ctx context.Context, args []string, log io.Writer) error {
	if len(args) == 0 {
		return errors.New(Usage)
	}
	logf := func(format string, a ...any) {
		fmt.Fprintf(log, "%s redis-snapshot: %s\n", time.Now().UTC().Format(time.RFC3339), fmt.Sprintf(format, a...))
	}
	switch args[0] {
	case "take":
		return take(ctx, args[1:], logf)
	case "restore-fetch":
		return restoreFetch(ctx, args[1:], logf)
	default:
		return fmt.Errorf("unknown command %q\n%s", args[0], Usage)
	}
}

type logFunc func(format string, a ...any)

func storeFlags(fs *flag.FlagSet, c *StoreConfig) {
	fs.StringVar(&c.Bucket, "bucket", "", "S3 bucket")
	fs.StringVar(&c.Prefix, "prefix", "", "key prefix inside the bucket")
	fs.StringVar(&c.EndpointURL, "endpoint-url", "", "S3 endpoint of an S3-compatible store (empty: AWS)")
	fs.StringVar(&c.Region, "region", "", "S3 region")
	fs.StringVar(&c.KMSKeyID, "kms-key-id", "", "KMS key of SSE-KMS (empty: the bucket's default)")
}

// TakeOptions are the take command's settings.
type TakeOptions struct {
	Namespace, Instance string
	// Sentinel is the Sentinel Service's host:port; Replica, when set,
	// is the replica to copy from without asking Sentinel.
	Sentinel, MasterName, Replica string
	Password                      string
	Retention                     time.Duration
	TmpDir                        string
	Now                           func() time.Time
}

func take(ctx context.Context, args []string, logf logFunc) error {
	fs := flag.NewFlagSet("take", flag.ContinueOnError)
	var o TakeOptions
	var c StoreConfig
	storeFlags(fs, &c)
	fs.StringVar(&o.Namespace, "namespace", "", "the instance's namespace")
	fs.StringVar(&o.Instance, "instance", "", "the instance's name in the bucket")
	fs.StringVar(&o.Sentinel, "sentinel", "", "Sentinel host:port to ask for a healthy replica")
	fs.StringVar(&o.MasterName, "master-name", "mymaster", "the master's name in Sentinel")
	fs.StringVar(&o.Replica, "replica", "", "copy from this replica host:port instead of asking Sentinel")
	days := fs.Int("retention-days", 0, "delete snapshots older than this many days (never the newest)")
	fs.StringVar(&o.TmpDir, "tmp-dir", os.TempDir(), "where the RDB is written before the upload")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.Password = os.Getenv(PasswordEnv)
	o.Retention = time.Duration(*days) * 24 * time.Hour
	if o.Namespace == "" || o.Instance == "" || (o.Sentinel == "" && o.Replica == "") || *days < 1 {
		return errors.New("take needs --namespace, --instance, --sentinel (or --replica) and --retention-days ≥ 1")
	}
	store, err := NewStore(ctx, c, nil)
	if err != nil {
		return err
	}
	_, err = Take(ctx, store, o, logf)
	return err
}

// Take copies one snapshot to the store and prunes the expired ones. It
// returns the new object's key.
func Take(ctx context.Context, store *Store, o TakeOptions, logf logFunc) (string, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	candidates := []string{o.Replica}
	if o.Replica == "" {
		logf("asking Sentinel %s for the replicas of %s", o.Sentinel, o.MasterName)
		replicas, err := HealthyReplicas(ctx, o.Sentinel, o.MasterName)
		if err != nil {
			return "", err
		}
		candidates = candidates[:0]
		for _, r := range replicas {
			candidates = append(candidates, r.Addr)
		}
	}
	tmp, err := os.CreateTemp(o.TmpDir, "snapshot-*.rdb")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	var errs []error
	var from string
	for _, addr := range candidates {
		logf("downloading an RDB from replica %s", addr)
		if err := tmp.Truncate(0); err != nil {
			return "", err
		}
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			return "", err
		}
		n, err := FetchRDB(ctx, addr, o.Password, tmp)
		if err == nil {
			err = tmp.Sync()
		}
		if err == nil {
			var info Info
			if info, err = VerifyFile(tmp.Name()); err == nil {
				logf("received %d bytes from %s: RDB version %d, checksum verified", n, addr, info.Version)
				from = addr
				break
			}
		}
		logf("replica %s failed: %v", addr, err)
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	if from == "" {
		return "", fmt.Errorf("no replica gave a snapshot: %w", errors.Join(errs...))
	}
	key := store.Key(o.Namespace, o.Instance, o.Now())
	logf("uploading to s3://%s/%s", store.Bucket, key)
	if err := store.Upload(ctx, key, tmp.Name()); err != nil {
		return "", fmt.Errorf("upload s3://%s/%s: %w", store.Bucket, key, err)
	}
	logf("uploaded s3://%s/%s", store.Bucket, key)
	objs, err := store.List(ctx, o.Namespace, o.Instance)
	if err != nil {
		return key, err
	}
	expired := Expired(objs, o.Retention, o.Now())
	logf("%d snapshot(s) stored, %d older than %s to delete", len(objs), len(expired), o.Retention)
	for _, e := range expired {
		if err := store.Delete(ctx, e.Key); err != nil {
			return key, fmt.Errorf("delete s3://%s/%s: %w", store.Bucket, e.Key, err)
		}
		logf("deleted s3://%s/%s (taken %s)", store.Bucket, e.Key, e.Time.Format(time.RFC3339))
	}
	logf("done")
	return key, nil
}

// FetchOptions are the restore-fetch command's settings.
type FetchOptions struct {
	Namespace, FromInstance, Snapshot, DataDir string
	// MissingOKUnlessFirst lets every pod but the StatefulSet's first
	// (PodName ending in -0) start empty when the snapshot is gone.
	MissingOKUnlessFirst bool
	PodName              string
}

func firstPod(name string) bool { return strings.HasSuffix(name, "-0") }

func restoreFetch(ctx context.Context, args []string, logf logFunc) error {
	fs := flag.NewFlagSet("restore-fetch", flag.ContinueOnError)
	var o FetchOptions
	var c StoreConfig
	storeFlags(fs, &c)
	fs.StringVar(&o.Namespace, "namespace", "", "the namespace of the source instance (the new instance's own)")
	fs.StringVar(&o.FromInstance, "from-instance", "", "the source instance's name in the bucket")
	fs.StringVar(&o.Snapshot, "snapshot", "latest", `"latest" or an RFC 3339 time`)
	fs.StringVar(&o.DataDir, "data-dir", "/data", "the Redis data volume")
	fs.BoolVar(&o.MissingOKUnlessFirst, "missing-ok-unless-first", false, "when no snapshot matches, start empty unless this is the StatefulSet's pod 0 ($HOSTNAME)")
	o.PodName = os.Getenv("HOSTNAME")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.Namespace == "" || o.FromInstance == "" {
		return errors.New("restore-fetch needs --namespace and --from-instance")
	}
	store, err := NewStore(ctx, c, nil)
	if err != nil {
		return err
	}
	return Fetch(ctx, store, o, logf)
}

// Fetch downloads the chosen snapshot into <data>/RestoreDir/RestoreFile
// when the data volume holds no data yet, and checks it. A volume with
// data is left alone: the restore happens once, on the volume's first
// start, and a restarted pod keeps what it wrote since.
func Fetch(ctx context.Context, store *Store, o FetchOptions, logf logFunc) error {
	empty, err := EmptyDataDir(o.DataDir)
	if err != nil {
		return err
	}
	if !empty {
		logf("%s already holds data: nothing to restore", o.DataDir)
		return nil
	}
	staging := filepath.Join(o.DataDir, RestoreDir)
	// A previous attempt may have died half-way: start over.
	if err := os.RemoveAll(staging); err != nil {
		return err
	}
	if err := os.MkdirAll(staging, 0o700); err != nil {
		return err
	}
	logf("listing the snapshots of %s in namespace %s", o.FromInstance, o.Namespace)
	objs, err := store.List(ctx, o.Namespace, o.FromInstance)
	if err != nil {
		return err
	}
	obj, err := Choose(objs, o.Snapshot)
	if err != nil && o.MissingOKUnlessFirst && !firstPod(o.PodName) {
		// A pod added later (a scale-up after the snapshots expired)
		// starts empty and replicates from the master; the first pod,
		// which every new instance has, still fails loudly.
		logf("no snapshot to restore (%v): pod %s starts empty and replicates from the master", err, o.PodName)
		return os.RemoveAll(staging)
	}
	if err != nil {
		return fmt.Errorf("restore of %s (snapshot %q) from s3://%s/%s: %w", o.FromInstance, o.Snapshot, store.Bucket, store.Dir(o.Namespace, o.FromInstance), err)
	}
	part := filepath.Join(staging, RestoreFile+".part")
	logf("downloading s3://%s/%s (%d bytes, taken %s)", store.Bucket, obj.Key, obj.Size, obj.Time.Format(time.RFC3339))
	if err := store.Download(ctx, obj.Key, part); err != nil {
		return err
	}
	info, err := VerifyFile(part)
	if err != nil {
		return fmt.Errorf("s3://%s/%s is refused: %w", store.Bucket, obj.Key, err)
	}
	logf("RDB version %d, %d bytes, checksum verified", info.Version, info.Size)
	if err := os.Rename(part, filepath.Join(staging, RestoreFile)); err != nil {
		return err
	}
	logf("ready for the load step: %s", filepath.Join(staging, RestoreFile))
	return nil
}

// EmptyDataDir says whether a data volume has no Redis data: nothing but
// lost+found (a fresh ext4 volume) and the restore's staging folder.
func EmptyDataDir(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if e.Name() != "lost+found" && e.Name() != RestoreDir {
			return false, nil
		}
	}
	return true, nil
}
