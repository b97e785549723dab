//go:build linux

package controlplane

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

// TestCRDsComeFromTheModuleCacheOnly: with an empty module cache nothing
// is downloaded; the error names the command that fetches every module.
func TestCRDsComeFromTheModuleCacheOnly(t *testing.T) {
	g := NewWithT(t)
	cache := t.TempDir()
	t.Setenv("GOMODCACHE", cache)

	_, err := UpstreamCRDDirs()
	g.Expect(err).To(MatchError(ContainSubstring("`go mod download " + strings.Join(CRDModules(), " ") + "`")))
	entries, _ := os.ReadDir(cache)
	g.Expect(entries).To(BeEmpty(), "nothing may be downloaded into the cache")

	// One module present: only the others are named.
	first := crdModules[0]
	g.Expect(os.MkdirAll(filepath.Join(cache, first.module, first.path), 0o755)).To(Succeed())
	_, err = UpstreamCRDDirs()
	g.Expect(err).To(MatchError(ContainSubstring("`go mod download " + strings.Join(CRDModules()[1:], " ") + "`")))
}

func TestEscapeModule(t *testing.T) {
	g := NewWithT(t)
	g.Expect(escapeModule("github.com/BurntSushi/toml@v1.5.0")).To(Equal("github.com/!burnt!sushi/toml@v1.5.0"))
	g.Expect(escapeModule("istio.io/api@v1.28.0")).To(Equal("istio.io/api@v1.28.0"))
}
