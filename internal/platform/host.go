//go:build linux

package platform

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// globalSysctls are the machine-wide settings kubelet rewrites at start
// (and refuses to start over with protectKernelDefaults): Stop puts the
// values back.
var globalSysctls = []string{"vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops"}

// kubeletFixedPaths are host paths kubelet creates whatever its
// configuration says; Stop removes the ones that did not exist before.
var kubeletFixedPaths = []string{"/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/var/lib/cni"}

// hostSettings is what the host had before the first of the running
// platforms started. Several platforms (state directories) can run at
// once, and they share these settings, so the record is machine-wide
// (hostSettingsDir, on tmpfs: a reboot resets the sysctls and ends every
// platform) and reference-counted: each running platform holds a user
// file there, and the last one to stop restores the record. Restoring
// per platform would take /var/log/pods from under a platform that still
// runs.
type hostSettings struct {
	Sysctls     map[string]string `json:"sysctls"`
	AbsentPaths []string          `json:"absentPaths"`
}

// hostSettingsDir holds the record and one user file per running platform.
// A variable so that tests can point it elsewhere.
var hostSettingsDir = "/run/strata-platform"

func hostSettingsFile() string { return filepath.Join(hostSettingsDir, "host-settings.json") }

func (p *Platform) hostSettingsUser() string {
	return filepath.Join(hostSettingsDir, "users", p.id)
}

// legacyHostSettingsFile is where earlier versions kept a per-platform
// record; Stop still honours one.
func (p *Platform) legacyHostSettingsFile() string { return p.path("host-settings.json") }

// saveHostSettings registers the platform as a user of the host settings
// and records the host's values if no platform runs (a second Start keeps
// the first record, which holds the values from before kubelet ran). Each
// step is one file operation that survives the process, so Stop works
// from another process.
func (p *Platform) saveHostSettings() error {
	if err := os.MkdirAll(filepath.Join(hostSettingsDir, "users"), 0o700); err != nil {
		return err
	}
	unlock, err := lockFile(filepath.Join(hostSettingsDir, "lock"))
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.WriteFile(p.hostSettingsUser(), []byte(p.StateDir()+"\n"), 0o600); err != nil {
		return err
	}
	if fileExists(hostSettingsFile()) {
		return nil
	}
	s := hostSettings{Sysctls: map[string]string{}}
	for _, name := range globalSysctls {
		b, err := os.ReadFile("/proc/sys/" + name)
		if err != nil {
			return err
		}
		s.Sysctls[name] = strings.TrimSpace(string(b))
	}
	for _, path := range kubeletFixedPaths {
		if !fileExists(path) {
			s.AbsentPaths = append(s.AbsentPaths, path)
		}
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return os.WriteFile(hostSettingsFile(), b, 0o600)
}

// restoreHostSettings unregisters the platform and, if it was the last one
// running, puts the sysctls back and removes the paths kubelet created.
func (p *Platform) restoreHostSettings() error {
	if !fileExists(hostSettingsDir) && !fileExists(p.legacyHostSettingsFile()) {
		return nil
	}
	if err := os.MkdirAll(filepath.Join(hostSettingsDir, "users"), 0o700); err != nil {
		return err
	}
	unlock, err := lockFile(filepath.Join(hostSettingsDir, "lock"))
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.Remove(p.hostSettingsUser()); err != nil && !os.IsNotExist(err) {
		return err
	}
	record := hostSettingsFile()
	if fileExists(p.legacyHostSettingsFile()) {
		// Started by an earlier version: its own record, adopted as the
		// machine's unless another platform's is there already.
		if fileExists(record) {
			if err := os.Remove(p.legacyHostSettingsFile()); err != nil {
				return err
			}
		} else if err := os.Rename(p.legacyHostSettingsFile(), record); err != nil {
			return err
		}
	}
	users, err := os.ReadDir(filepath.Join(hostSettingsDir, "users"))
	if err != nil {
		return err
	}
	if len(users) > 0 || !fileExists(record) {
		return nil // another platform still runs: it restores them when it stops
	}
	b, err := os.ReadFile(record)
	if err != nil {
		return err
	}
	var s hostSettings
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	var errs []string
	for name, value := range s.Sysctls {
		if err := os.WriteFile("/proc/sys/"+name, []byte(value), 0o644); err != nil {
			errs = append(errs, err.Error())
		}
	}
	for _, path := range s.AbsentPaths {
		if err := os.RemoveAll(path); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("platform: restoring host settings: %s", strings.Join(errs, "; "))
	}
	return os.Remove(record)
}

// lockFile takes an exclusive flock on path (created if needed) until the
// returned function runs. flock, not a mutex: other processes (a second
// `go test`, `make run`) take it too, and goroutines of one process block
// each other as well because each call opens the file anew.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("platform: locking %s: %w", path, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing releases it too
		f.Close()
	}, nil
}

// cgroupRoot is the cgroup under which kubelet puts every pod.
func (p *Platform) cgroupRoot() string { return "/strata-" + p.id }

// cgroupDirs lists the platform's cgroup directory in every mounted
// hierarchy (cgroup v1 controllers, the named systemd one, and cgroup2).
func (p *Platform) cgroupDirs() []string {
	entries, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return nil
	}
	if fileExists("/sys/fs/cgroup/cgroup.controllers") { // pure cgroup v2
		return []string{filepath.Join("/sys/fs/cgroup", p.cgroupRoot())}
	}
	var dirs []string
	for _, e := range entries {
		info, err := os.Lstat(filepath.Join("/sys/fs/cgroup", e.Name()))
		if err != nil || !info.IsDir() { // cpu,cpuacct style links are covered by their target
			continue
		}
		dirs = append(dirs, filepath.Join("/sys/fs/cgroup", e.Name(), p.cgroupRoot()))
	}
	return dirs
}

// setUpCgroups creates kubelet's cgroupRoot beforehand in every hierarchy
// (on cgroup v1 kubelet expects it to exist), with the cpuset copied from
// the parent (an empty cpuset admits no process).
func (p *Platform) setUpCgroups() error {
	for _, dir := range p.cgroupDirs() {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("platform: creating cgroup %s: %w", dir, err)
		}
		if strings.Contains(dir, "/cpuset/") {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				b, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f))
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
					return fmt.Errorf("platform: %s: %w", filepath.Join(dir, f), err)
				}
			}
		}
	}
	return nil
}

// cgroupPids lists every process in the platform's cgroups (the pods').
func (p *Platform) cgroupPids() []int {
	seen := map[int]bool{}
	for _, dir := range p.cgroupDirs() {
		filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error { //nolint:errcheck
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(path)
			for _, f := range strings.Fields(string(b)) {
				var pid int
				if _, err := fmt.Sscan(f, &pid); err == nil {
					seen[pid] = true
				}
			}
			return nil
		})
	}
	pids := make([]int, 0, len(seen))
	for pid := range seen {
		pids = append(pids, pid)
	}
	sort.Ints(pids)
	return pids
}

// removeCgroups removes the platform's cgroups, deepest first (a cgroup
// directory is removed with rmdir once it holds no process).
func (p *Platform) removeCgroups() error {
	var errs []string
	for _, dir := range p.cgroupDirs() {
		var dirs []string
		filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error { //nolint:errcheck
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil && !os.IsNotExist(err) {
				errs = append(errs, err.Error())
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("platform: removing cgroups: %s", strings.Join(errs, "; "))
	}
	return nil
}
