//go:build linux

package kafkatest

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// A jar cache made before pom.xml listed kafka-tools gets the jars it
// lacks, and keeps those it has (a broker may be running from them).
func TestAddJarsCompletesAnOlderCache(t *testing.T) {
	root := t.TempDir()
	dir, tmp := filepath.Join(root, "4.3.1"), filepath.Join(root, "4.3.1.partial")
	for _, d := range []string{dir, tmp} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "kafka_2.13-4.3.1.jar"), "in use")
	write(filepath.Join(tmp, "kafka_2.13-4.3.1.jar"), "fetched again")
	write(filepath.Join(tmp, "kafka-tools-4.3.1.jar"), "tools")
	if err := addJars(tmp, dir); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"kafka_2.13-4.3.1.jar": "in use", "kafka-tools-4.3.1.jar": "tools"} {
		if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(got) != want {
			t.Fatalf("%s: %q, %v; want %q", name, got, err, want)
		}
	}
	if _, err := os.Stat(tmp); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the partial fetch is left behind: %v", err)
	}
	// A new cache is the fetch, renamed.
	fresh := filepath.Join(root, "fresh")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(tmp, "x.jar"), "x")
	if err := addJars(tmp, fresh); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(fresh, "x.jar")); err != nil || string(got) != "x" {
		t.Fatalf("x.jar: %q, %v", got, err)
	}
}
