//go:build linux

package platform

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Pinned versions of what is built from Go modules. The Kubernetes and
// CoreDNS versions are those of the nested modules' go.mod files (kept in
// step by TestPinnedVersionsMatchModules).
const (
	KubernetesVersion = "v1.34.4"
	CoreDNSVersion    = "v1.14.7"
	CNPGVersion       = "1.30.0"
	cnpgModule        = "github.com/cloudnative-pg/cloudnative-pg"
)

// binaries are the built executables the platform runs on the host.
type binaries struct {
	// kubeDir holds the multiplexed Kubernetes binary and one symlink per
	// component, so each process is named after what it runs.
	kubeDir string
}

func (b binaries) component(name string) string { return filepath.Join(b.kubeDir, name) }

var kubeComponents = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"}

// lockCache serialises builds into the cache directory: platforms of
// several state directories share it (tests run in parallel, a helper's
// worktree links it), and two builds of one artifact would write the same
// temporary files. Build steps take it at their entry points, which never
// call each other, so it is never taken twice by one caller.
func (p *Platform) lockCache() (func(), error) {
	if err := os.MkdirAll(p.cfg.CacheDir, 0o700); err != nil {
		return nil, err
	}
	return lockFile(filepath.Join(p.cfg.CacheDir, "build.lock"))
}

// buildBinaries builds (or finds in the cache) the Kubernetes binary.
func (p *Platform) buildBinaries(ctx context.Context) (binaries, error) {
	unlock, err := p.lockCache()
	if err != nil {
		return binaries{}, err
	}
	defer unlock()
	minor := strings.Split(strings.TrimPrefix(KubernetesVersion, "v"), ".")[1]
	ldflags := fmt.Sprintf("-X k8s.io/component-base/version.gitVersion=%s -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=%s -X k8s.io/component-base/version.gitTreeState=clean", KubernetesVersion, minor)
	bin, err := p.buildModuleBinary(ctx, goBuild{
		name:      "kube",
		moduleDir: filepath.Join(p.cfg.SourceDir, "internal", "platform", "tools", "kube"),
		pkg:       ".",
		ldflags:   ldflags,
		cgo:       true, // runs on the host, like upstream's kubelet
	})
	if err != nil {
		return binaries{}, err
	}
	dir := filepath.Join(filepath.Dir(bin), strings.TrimSuffix(filepath.Base(bin), ".bin"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return binaries{}, err
	}
	for _, c := range kubeComponents {
		link := filepath.Join(dir, c)
		if target, err := os.Readlink(link); err == nil && target == bin {
			continue
		}
		os.Remove(link)
		if err := os.Symlink(bin, link); err != nil {
			return binaries{}, err
		}
	}
	return binaries{kubeDir: dir}, nil
}

// goBuild is one Go build of a main package.
type goBuild struct {
	name      string // cache file prefix
	moduleDir string // the module the build runs in (its go.mod pins everything)
	pkg       string
	ldflags   string
	cgo       bool
	// extraKey adds to the cache key what the module's top-level files do
	// not cover (nil: nothing).
	extraKey func() (string, error)
}

// buildModuleBinary builds a main package into the cache, keyed by a hash
// of the module's go.mod, go.sum and Go files, the flags and the Go
// version, and returns the cached file when it is already there.
func (p *Platform) buildModuleBinary(ctx context.Context, b goBuild) (string, error) {
	key, err := hashBuild(b)
	if err != nil {
		return "", err
	}
	if b.extraKey != nil {
		extra, err := b.extraKey()
		if err != nil {
			return "", err
		}
		key = hashStrings(key, extra)
	}
	out := filepath.Join(p.cfg.CacheDir, "bin", fmt.Sprintf("%s-%s.bin", b.name, key))
	if fileExists(out) {
		return out, nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	p.cfg.Log("platform: building %s in %s (minutes on a cold machine; log %s)", b.name, b.moduleDir, p.buildLog(b.name))
	start := time.Now()
	tmp := out + ".tmp"
	cmd := exec.CommandContext(ctx, "go", "build", "-ldflags", b.ldflags, "-o", tmp, b.pkg)
	cmd.Dir = b.moduleDir
	cgo := "CGO_ENABLED=0"
	if b.cgo {
		cgo = "CGO_ENABLED=1"
	}
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-buildvcs=false -mod=readonly", cgo)
	if err := runLogged(cmd, p.buildLog(b.name)); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("platform: building %s: %w", b.name, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", err
	}
	p.cfg.Log("platform: built %s in %s", b.name, time.Since(start).Round(time.Second))
	return out, nil
}

func (p *Platform) buildLog(name string) string {
	return filepath.Join(p.cfg.CacheDir, "logs", "build-"+name+".log")
}

// runLogged runs a command with its output in a log file, and returns the
// log's tail in the error.
func runLogged(cmd *exec.Cmd, logPath string) error {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return err
	}
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(logPath)
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		return fmt.Errorf("%s: %w\n--- end of %s ---\n%s", strings.Join(cmd.Args, " "), err, logPath, b)
	}
	return nil
}

// hashBuild is the cache key of a build.
func hashBuild(b goBuild) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n%v\n%s\n", b.pkg, b.ldflags, runtime.Version(), b.cgo, goVersion())
	entries, err := os.ReadDir(b.moduleDir)
	if err != nil {
		return "", fmt.Errorf("platform: %w", err)
	}
	for _, e := range entries {
		source := strings.HasSuffix(e.Name(), ".go") || e.Name() == "go.mod" || e.Name() == "go.sum"
		if e.IsDir() || !source {
			continue
		}
		f, err := os.Open(filepath.Join(b.moduleDir, e.Name()))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\n", e.Name())
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// goVersion is the go command's version (the one building, not the one
// this binary was built with).
func goVersion() string {
	out, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// moduleDir downloads a module at an exact version into the module cache
// and returns its directory. (`go install module@version` is not used: the
// proxy refuses the version-list lookup it makes.)
func moduleDir(ctx context.Context, module, version string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", module+"@"+version)
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	cmd.Dir = os.TempDir()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr == nil && info.Error != "" {
		return "", fmt.Errorf("platform: go mod download %s@%s: %s", module, version, info.Error)
	}
	if err != nil {
		return "", fmt.Errorf("platform: go mod download %s@%s: %w: %s", module, version, err, stderr.String())
	}
	if info.Dir == "" {
		return "", fmt.Errorf("platform: go mod download %s@%s gave no directory", module, version)
	}
	return info.Dir, nil
}

// sourceTreeHash hashes a module's Go sources (not tests, not nested
// modules, not .cache), the cache key of a binary built from it.
func sourceTreeHash(root string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "bin" || name == "testdata" || fileExists(filepath.Join(path, "go.mod"))) {
				return filepath.SkipDir
			}
			return nil
		}
		name := d.Name()
		goSource := strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go")
		if !goSource && name != "go.mod" && name != "go.sum" {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		rel, _ := filepath.Rel(root, path)
		fmt.Fprintf(h, "%s\n", rel)
		_, err = io.Copy(h, f)
		return err
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}
