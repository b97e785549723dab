package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

// TestBinaryLinksNoTestCode: the binary's embedded control plane is
// internal/controlplane, not the test tree, so neither `testing` nor any
// integration package is linked into it.
func TestBinaryLinksNoTestCode(t *testing.T) {
	g := NewWithT(t)
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	g.Expect(err).NotTo(HaveOccurred())
	deps := strings.Fields(string(out))
	g.Expect(deps).To(ContainElement("github.com/strata-dev/strata/internal/controlplane"), "the embedded control plane is linked")
	g.Expect(deps).NotTo(ContainElement("testing"))
	for _, d := range deps {
		g.Expect(d).NotTo(HavePrefix("github.com/strata-dev/strata/integration"))
	}
}

// TestBuildsForMacOS cross-builds the binary for darwin (arm64; amd64
// has the same build constraints), where --embedded answers that it needs
// Linux and everything else is the same broker.
func TestBuildsForMacOS(t *testing.T) {
	cmd := exec.Command("go", "build", "-o", filepath.Join(t.TempDir(), "strata-broker"), ".")
	cmd.Env = append(os.Environ(), "GOOS=darwin", "GOARCH=arm64", "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	NewWithT(t).Expect(err).NotTo(HaveOccurred(), "GOOS=darwin go build: %s", out)
}
