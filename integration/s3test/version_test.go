package s3test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/strata-dev/strata/internal/platform"
)

// The tests' S3 is the platform's.
func TestVersionIsThePlatforms(t *testing.T) {
	if Version != platform.VersityGWVersion {
		t.Fatalf("s3test.Version %s differs from the platform's versitygw %s: keep them equal", Version, platform.VersityGWVersion)
	}
}

// The binary the tests run is the pinned version (a stale cached build
// of another version would fail here).
func TestBinaryIsThePinnedVersion(t *testing.T) {
	out, err := exec.Command(Binary(t), "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("versitygw --version: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	if !strings.Contains(string(out), Version) {
		t.Fatalf("versitygw --version says %q, want %s", out, Version)
	}
}
