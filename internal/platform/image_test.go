//go:build linux

package platform

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestDockerArchive checks the archive layout `ctr images import` reads:
// manifest.json naming the config and the layer with the reference as
// RepoTags, and a config whose diff_id is the layer's sha256.
func TestDockerArchive(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "bin")
	if err := os.WriteFile(src, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "image.tar")
	ref := imageRef("example", "1.0")
	entries := append(baseEntries(65532, "nonroot"),
		layerEntry{path: "operator", mode: 0o755, dir: true},
		layerEntry{path: "operator/manager_amd64", mode: 0o755, source: src},
		layerEntry{path: "manager", mode: 0o777, link: "operator/manager_amd64"},
	)
	if err := writeDockerArchive(out, ref, imageConfig{Entrypoint: []string{"/manager"}, User: "65532:65532"}, writeEntries(entries)); err != nil {
		t.Fatal(err)
	}
	files := readTar(t, out)
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil {
		t.Fatal(err)
	}
	if len(manifest) != 1 || len(manifest[0].RepoTags) != 1 || manifest[0].RepoTags[0] != ref || len(manifest[0].Layers) != 1 {
		t.Fatalf("manifest.json: %s", files["manifest.json"])
	}
	var config struct {
		Architecture, OS string
		Config           imageConfig
		RootFS           struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(files[manifest[0].Config], &config); err != nil {
		t.Fatal(err)
	}
	layer := files[manifest[0].Layers[0]]
	sum := sha256.Sum256(layer)
	if want := "sha256:" + hex.EncodeToString(sum[:]); len(config.RootFS.DiffIDs) != 1 || config.RootFS.DiffIDs[0] != want {
		t.Errorf("diff_ids %v, want [%s]", config.RootFS.DiffIDs, want)
	}
	if config.Architecture != "amd64" || config.OS != "linux" || config.Config.Entrypoint[0] != "/manager" {
		t.Errorf("config: %s", files[manifest[0].Config])
	}
	// The layer holds the files with their owners and the symlink.
	tr := tar.NewReader(bytes.NewReader(layer))
	seen := map[string]*tar.Header{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen[hdr.Name] = hdr
	}
	if h := seen["manager"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "operator/manager_amd64" {
		t.Errorf("manager: %+v", h)
	}
	if h := seen["home/nonroot/"]; h == nil || h.Uid != 65532 {
		t.Errorf("home/nonroot/: %+v", h)
	}
	if h := seen["operator/manager_amd64"]; h == nil || h.Size != 12 || h.Mode != 0o755 {
		t.Errorf("operator/manager_amd64: %+v", h)
	}
}

func readTar(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[hdr.Name] = b
	}
}
