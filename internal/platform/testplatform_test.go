//go:build linux

package platform

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

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
	p, err := New(Config{
		StateDir:  filepath.Join(root, ".cache", "platform", name),
		CacheDir:  filepath.Join(root, ".cache", "platform"),
		SourceDir: root,
		Nodes:     nodes,
		Log:       t.Logf,
	})
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
