//go:build linux

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestRunFallsBackWhenNotRoot runs `strata-platform run` as a user other
// than root: it must say why the platform cannot run and start the
// API-only embedded broker instead (`go run ./cmd/strata-broker
// --embedded` in the repository). A `go` on PATH that records its
// arguments stands in for the real one, so the test does not build and
// start the embedded control plane (its own tests do).
func TestRunFallsBackWhenNotRoot(t *testing.T) {
	repo, err := filepath.Abs(filepath.Join("..", "..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// Readable by the unprivileged user the command runs as (t.TempDir
	// makes both levels 0700).
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "strata-platform")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	fakeGo := filepath.Join(dir, "go")
	if err := os.WriteFile(fakeGo, []byte("#!/bin/sh\necho \"go $* (in $PWD)\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "run", "-repo", repo, "-state", filepath.Join(dir, "state"))
	cmd.Env = []string{"PATH=" + dir + ":/usr/bin:/bin", "HOME=" + dir}
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("strata-platform run as a user other than root: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	for _, want := range []string{"the real platform cannot run on this machine", "not running as root", "go run ./cmd/strata-broker --embedded"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr does not say %q:\n%s", want, stderr.String())
		}
	}
	if want := "go run ./cmd/strata-broker --embedded (in " + repo + ")"; !strings.Contains(stdout.String(), want) {
		t.Errorf("the fallback did not run %q; stdout:\n%s", want, stdout.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "state")); err == nil {
		t.Errorf("the fallback created the platform's state directory")
	}
}
