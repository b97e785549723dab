//go:build linux

package platform

import (
	"os"
	"path/filepath"
	"testing"
)

// Platforms that run at once share the host's settings: only the last one
// to stop restores them, so a stopping platform never takes /var/log/pods
// from under one that still runs. Not parallel: it points the package's
// host-settings variables at temporary files while no platform runs.
func TestHostSettingsAreRestoredByTheLastPlatformToStop(t *testing.T) {
	tmp := t.TempDir()
	saved := []any{hostSettingsDir, kubeletFixedPaths, globalSysctls}
	t.Cleanup(func() {
		hostSettingsDir = saved[0].(string)
		kubeletFixedPaths = saved[1].([]string)
		globalSysctls = saved[2].([]string)
	})
	hostSettingsDir = filepath.Join(tmp, "run")
	kubeletPath := filepath.Join(tmp, "var-log-pods")
	kubeletFixedPaths = []string{kubeletPath}
	// A sysctl written back with the value it has (the test must not
	// change the machine).
	globalSysctls = []string{"kernel/panic"}

	a := &Platform{id: "aaaa", cfg: Config{StateDir: filepath.Join(tmp, "a")}}
	b := &Platform{id: "bbbb", cfg: Config{StateDir: filepath.Join(tmp, "b")}}
	if err := a.saveHostSettings(); err != nil {
		t.Fatal(err)
	}
	// kubelet creates the path after the first platform recorded it absent.
	if err := os.MkdirAll(kubeletPath, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := b.saveHostSettings(); err != nil {
		t.Fatal(err)
	}
	if err := a.restoreHostSettings(); err != nil {
		t.Fatal(err)
	}
	if !fileExists(kubeletPath) {
		t.Fatal("the first platform to stop removed a path the other running platform uses")
	}
	if !fileExists(hostSettingsFile()) {
		t.Fatal("the record is gone while a platform still runs")
	}
	if fileExists(a.hostSettingsUser()) || !fileExists(b.hostSettingsUser()) {
		t.Errorf("users after the first stop: a %v, b %v; want only b", fileExists(a.hostSettingsUser()), fileExists(b.hostSettingsUser()))
	}
	if err := b.restoreHostSettings(); err != nil {
		t.Fatal(err)
	}
	if fileExists(kubeletPath) {
		t.Error("the last platform to stop left the path kubelet created")
	}
	if fileExists(hostSettingsFile()) {
		t.Error("the record outlived the last platform")
	}
	// Stopping again (another process, a second Stop) is a no-op.
	if err := b.restoreHostSettings(); err != nil {
		t.Fatal(err)
	}
}
