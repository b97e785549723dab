//go:build linux

package platform

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// testOctets are the second octets of the platform tests' address ranges
// (10.N.0.0/30 link, 10.N.1.0/24 pods, 10.N.16.0/20 Services), one per
// state directory, inside the default block (200–249).
var testOctets = map[string]int{
	"test-state": 231, "test-bao": 232, "test-plans": 233, "test-restore-drills": 246, "test-redis": 235,
	"test-obs": 236, "test-dash": 237, "redisfo": 238, "multinode": 239,
}

// startTestPlatform brings a platform up in .cache/platform/<name> (a
// fixed state directory per test: a run killed by -timeout leaves its
// processes behind, and the next run of the same test stops them first),
// with every image built, and registers a Stop that runs unless the test
// stopped the platform itself (stopped). The returned context ends with the
// test's budget.
func startTestPlatform(t *testing.T, name string, budget time.Duration) (context.Context, *Platform, *bool) {
	t.Helper()
	return startTestPlatformNodes(t, name, budget, 1)
}

// startTestPlatformNodes is startTestPlatform with a number of nodes.
func startTestPlatformNodes(t *testing.T, name string, budget time.Duration, nodes int) (context.Context, *Platform, *bool) {
	t.Helper()
	root := repoRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	t.Cleanup(cancel)
	cfg := Config{
		StateDir:  filepath.Join(root, ".cache", "platform", name),
		CacheDir:  filepath.Join(root, ".cache", "platform"),
		SourceDir: root,
		Nodes:     nodes,
		Log:       t.Logf,
	}
	// The tests run at once, so each gets address ranges of its own: the
	// default, a hash of the state directory's path into 50 ranges, made
	// two pairs of nine tests collide in a CI checkout (the second of a
	// pair refused to start on the first's host routes).
	if octet, ok := testOctets[name]; ok {
		cfg.LinkCIDR = fmt.Sprintf("10.%d.0.0/30", octet)
		cfg.PodCIDR = fmt.Sprintf("10.%d.1.0/24", octet)
		cfg.ServiceCIDR = fmt.Sprintf("10.%d.16.0/20", octet)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkRequirements(); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(ctx); err != nil {
		t.Fatalf("stopping what an earlier run left: %v", err)
	}
	if err := p.Purge(); err != nil {
		t.Fatal(err)
	}
	stopped := new(bool)
	t.Cleanup(func() {
		if !*stopped {
			if err := p.Stop(context.Background()); err != nil {
				t.Errorf("stop: %v", err)
			}
		}
	})
	step := time.Now()
	if _, err := p.BuildImages(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("TIMING images built or found in cache: %s", time.Since(step).Round(time.Second))
	step = time.Now()
	if err := p.Start(ctx); err != nil {
		t.Fatalf("%v\n(component logs in %s)", err, p.LogDir())
	}
	t.Logf("TIMING platform start (binaries cached, images imported, node Ready, DNS up): %s", time.Since(step).Round(time.Second))
	return ctx, p, stopped
}

// installBackupStack installs what the PostgreSQL plans with backups need
// (cert-manager and the platform CA, CloudNativePG, the barman-cloud
// plugin, versitygw as S3) and the broker with its chart, backing up to
// that S3; extra is merged over the broker's values. It returns an OSB
// client of the broker.
func installBackupStack(ctx context.Context, t *testing.T, p *Platform, extra map[string]any) (*osbClient, *Broker, *S3) {
	t.Helper()
	// cert-manager first: the plugin's certificates come from it (as
	// upstream's manifest has them), the instances' server certificates
	// from its platform CA.
	if err := p.InstallCertManager(ctx); err != nil {
		t.Fatalf("%v\n(component logs in %s)", err, p.LogDir())
	}
	if err := p.InstallCNPG(ctx); err != nil {
		t.Fatalf("%v\n(component logs in %s)", err, p.LogDir())
	}
	if err := p.InstallBarmanCloud(ctx); err != nil {
		t.Fatalf("%v\n(component logs in %s)", err, p.LogDir())
	}
	store, err := p.InstallS3(ctx)
	if err != nil {
		t.Fatal(err)
	}
	values, err := p.BrokerBackupValues(ctx, store, brokerNamespace)
	if err != nil {
		t.Fatal(err)
	}
	mergeValues(values, extra)
	osb, b := installTestBroker(ctx, t, p, values)
	return osb, b, store
}

// installTestBroker builds the broker's image from cmd/, installs it with
// its chart (values merged over InstallBroker's) and a random password,
// and returns an OSB client of it and the installed broker.
func installTestBroker(ctx context.Context, t *testing.T, p *Platform, values map[string]any) (*osbClient, *Broker) {
	t.Helper()
	image, err := p.BuildBrokerImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	password := randomHex(t, 24)
	b, err := p.InstallBroker(ctx, BrokerInstall{Namespace: brokerNamespace, Image: image, Password: password, Values: values})
	if err != nil {
		t.Fatal(err)
	}
	osb, err := newOSBClient(ctx, b, password)
	if err != nil {
		t.Fatal(err)
	}
	return osb, b
}

// stepClock times a test's steps for its TIMING lines.
type stepClock struct {
	t     testing.TB
	start time.Time
}

func newStepClock(t testing.TB) *stepClock { return &stepClock{t: t, start: time.Now()} }

// done logs "TIMING what: <the step's duration>" and starts the next step.
func (c *stepClock) done(what string) {
	c.t.Logf("TIMING %s: %s", what, c.elapsed().Round(time.Second))
	c.restart()
}

// restart starts the next step now: the time since the last one was no
// step's (a subtest's own setup, say).
func (c *stepClock) restart() { c.start = time.Now() }

// elapsed is the time since the step started.
func (c *stepClock) elapsed() time.Duration { return time.Since(c.start) }
