//go:build linux

package platform

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// stopOrder ends kubelet first (so it restarts nothing), then the pods,
// containerd, and the control plane from the top down.
var stopOrder = []string{"kubelet", "kube-proxy", "containerd", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"}

// Stop ends everything the platform started from its state directory and
// undoes what it changed on the host: processes (daemons, containerd shims,
// pods), mounts under the state directory, cgroups, the network namespace
// with its veth and routes, the sysctls kubelet rewrote and the host paths
// kubelet created. It works on a state directory left by another process
// (e.g. a test killed by its timeout) and is a no-op on a stopped one. The
// state directory itself (logs, data) stays; Purge removes it.
func (p *Platform) Stop(ctx context.Context) error {
	var errs []error
	p.stopDaemon("kubelet", 10*time.Second)
	// The pods' processes: SIGKILL, they are being thrown away.
	killAll(p.cgroupPids())
	for _, name := range stopOrder[1:] {
		p.stopDaemon(name, 10*time.Second)
	}
	// Whatever still runs in the node's namespace (containerd shims).
	killAll(p.pidsInNetns())
	killAll(p.cgroupPids())
	if err := unmountUnder(p.StateDir()); err != nil {
		errs = append(errs, err)
	}
	if err := p.removeCgroups(); err != nil {
		errs = append(errs, err)
	}
	if err := p.tearDownNetwork(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := p.restoreHostSettings(); err != nil {
		errs = append(errs, err)
	}
	if left := p.Leftovers(); len(left) > 0 {
		errs = append(errs, fmt.Errorf("platform: left after stop: %s", strings.Join(left, "; ")))
	}
	return errors.Join(errs...)
}

// Purge removes the state directory (after Stop).
func (p *Platform) Purge() error {
	if left := p.Leftovers(); len(left) > 0 {
		return fmt.Errorf("platform: not purging a running platform: %s", strings.Join(left, "; "))
	}
	return os.RemoveAll(p.StateDir())
}

// Leftovers lists what of this platform is still on the host: processes,
// mounts, cgroups, the network namespace, host routes, unrestored sysctls.
// Empty after a successful Stop.
func (p *Platform) Leftovers() []string {
	var left []string
	for _, name := range stopOrder {
		if pid, ok := p.runningPid(name); ok {
			left = append(left, fmt.Sprintf("%s running (pid %d)", name, pid))
		}
	}
	if pids := p.pidsInNetns(); len(pids) > 0 {
		left = append(left, fmt.Sprintf("processes in the node namespace: %v", pids))
	}
	if pids := p.cgroupPids(); len(pids) > 0 {
		left = append(left, fmt.Sprintf("processes in the pods' cgroups: %v", pids))
	}
	if fileExists(p.netnsPath()) {
		left = append(left, "network namespace "+p.netnsPath())
	}
	if mounts, _ := mountsUnder(p.StateDir()); len(mounts) > 0 {
		left = append(left, fmt.Sprintf("%d mounts under %s (first %s)", len(mounts), p.StateDir(), mounts[0]))
	}
	for _, dir := range p.cgroupDirs() {
		if fileExists(dir) {
			left = append(left, "cgroup "+dir)
		}
	}
	if routes, err := hostRoutes(); err == nil {
		for _, r := range routes {
			for _, mine := range []string{p.podNet.String(), p.svcNet.String(), p.linkNet.String()} {
				if r.String() == mine {
					left = append(left, "host route "+mine)
				}
			}
		}
	}
	if fileExists(p.hostSettingsUser()) || fileExists(p.legacyHostSettingsFile()) {
		left = append(left, "still registered as a user of the host settings ("+p.hostSettingsUser()+")")
	}
	return left
}

func killAll(pids []int) {
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL) //nolint:errcheck
	}
	for _, pid := range pids {
		for i := 0; i < 50 && alive(pid); i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// mountsUnder lists the mount points under dir, deepest first. The kernel
// lists mounts by their real path, so a state directory reached through a
// symlink (a worktree's .cache linking to the main checkout's) is matched
// by its resolved path too.
func mountsUnder(dir string) ([]string, error) {
	dirs := []string{dir}
	if real, err := filepath.EvalSymlinks(dir); err == nil && real != dir {
		dirs = append(dirs, real)
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		for _, d := range dirs {
			if mp == d || strings.HasPrefix(mp, d+"/") {
				mounts = append(mounts, mp)
				break
			}
		}
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	return mounts, sc.Err()
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &c); err == nil {
				b.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountUnder detaches every mount under dir (pods' volumes, overlay root
// filesystems, pod network namespaces), deepest first, until none is left
// (a mount can be stacked on another).
func unmountUnder(dir string) error {
	for i := 0; i < 5; i++ {
		mounts, err := mountsUnder(dir)
		if err != nil {
			return err
		}
		if len(mounts) == 0 {
			return nil
		}
		for _, m := range mounts {
			unix.Unmount(m, unix.MNT_DETACH) //nolint:errcheck
		}
	}
	mounts, _ := mountsUnder(dir)
	if len(mounts) > 0 {
		return fmt.Errorf("platform: %d mounts left under %s, first %s", len(mounts), dir, mounts[0])
	}
	return nil
}
