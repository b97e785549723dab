package s3test

import (
	"testing"

	"github.com/strata-dev/strata/internal/platform"
)

// The tests' S3 is the platform's.
func TestVersionIsThePlatforms(t *testing.T) {
	if Version != platform.VersityGWVersion {
		t.Fatalf("s3test.Version %s differs from the platform's versitygw %s: keep them equal", Version, platform.VersityGWVersion)
	}
}
