//go:build linux

package platform

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// startDaemon starts a long-running component inside the first node's
// network namespace, its output appended to logs/<name>.log and its pid in
// run/<name>.pid. A component still running from an earlier Start of the
// same state directory is kept (Start is idempotent).
func (p *Platform) startDaemon(name, bin string, args ...string) error {
	return p.startDaemonIn(p.netnsPath(), name, bin, args...)
}

// startDaemonIn is startDaemon in a given node's network namespace.
func (p *Platform) startDaemonIn(netnsPath, name, bin string, args ...string) error {
	if pid, ok := p.runningPid(name); ok {
		p.cfg.Log("platform: %s already running (pid %d)", name, pid)
		return nil
	}
	logFile, err := os.OpenFile(filepath.Join(p.logDir(), name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	// nsenter execs the daemon, so the pid is the daemon's own.
	cmd := exec.Command("nsenter", append([]string{"--net=" + netnsPath, "--", bin}, args...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Dir = p.StateDir()
	// A process group of its own: a Ctrl-C at the terminal does not reach
	// the daemons half-way, Stop ends them in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("platform: starting %s: %w", name, err)
	}
	pid := cmd.Process.Pid
	// Reap the process when it exits so it does not linger as a zombie
	// (and so runningPid sees it gone).
	go cmd.Wait() //nolint:errcheck
	if err := os.WriteFile(p.pidFile(name), []byte(strconv.Itoa(pid)+"\n"+bin+"\n"), 0o600); err != nil {
		return err
	}
	p.cfg.Log("platform: started %s (pid %d, log %s)", name, pid, filepath.Join(p.logDir(), name+".log"))
	return nil
}

func (p *Platform) pidFile(name string) string { return filepath.Join(p.runDir(), name+".pid") }

// runningPid returns the pid of a component started from this state
// directory when it is still that process (its executable is the one
// recorded, so a recycled pid is not mistaken for it).
func (p *Platform) runningPid(name string) (int, bool) {
	b, err := os.ReadFile(p.pidFile(name))
	if err != nil {
		return 0, false
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	pid, err := strconv.Atoi(lines[0])
	if err != nil || len(lines) < 2 {
		return 0, false
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return 0, false
	}
	// Until nsenter has exec'd the daemon, the process is nsenter.
	exe = strings.TrimSuffix(exe, " (deleted)")
	if exe != resolve(lines[1]) && exe != resolve("/usr/bin/nsenter") {
		return 0, false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err == nil && bytes.Contains(stat, []byte(") Z ")) {
		return 0, false
	}
	return pid, true
}

// resolve follows symlinks (the pid file records the path started, /proc
// shows the file it resolves to).
func resolve(path string) string {
	if r, err := filepath.EvalSymlinks(path); err == nil {
		return r
	}
	return path
}

// stopDaemon ends a component: SIGTERM, then SIGKILL after the grace period.
func (p *Platform) stopDaemon(name string, grace time.Duration) {
	pid, ok := p.runningPid(name)
	if ok {
		terminate(pid, grace)
	}
	os.Remove(p.pidFile(name))
}

// terminate sends SIGTERM and waits for the process to go, then SIGKILL.
func terminate(pid int, grace time.Duration) {
	if syscall.Kill(pid, syscall.SIGTERM) != nil {
		return
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL) //nolint:errcheck
	for i := 0; i < 50 && alive(pid); i++ {
		time.Sleep(100 * time.Millisecond)
	}
}

// alive tells whether pid exists and is not a zombie.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// pidsInNetns lists the processes whose network namespace is one of the
// nodes' (the daemons and the containerd shims they started).
func (p *Platform) pidsInNetns() []int {
	want := map[string]bool{}
	for _, n := range p.nodes() {
		var st syscall.Stat_t
		if err := syscall.Stat(n.netnsPath(), &st); err == nil {
			want[fmt.Sprintf("net:[%d]", st.Ino)] = true
		}
	}
	if len(want) == 0 {
		return nil
	}
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil && want[link] {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitReady polls until check succeeds, failing with the component's log
// tail when it does not within the timeout or the component exits.
func (p *Platform) waitReady(ctx context.Context, name string, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = check(ctx); last == nil {
			return nil
		}
		if _, ok := p.runningPid(name); !ok && fileExists(p.pidFile(name)) {
			return fmt.Errorf("platform: %s exited: %w\n%s", name, last, p.logTail(name))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("platform: %s not ready after %s: %w\n%s", name, timeout, last, p.logTail(name))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// logTail is the end of a component's log, for error messages.
func (p *Platform) logTail(name string) string {
	path := filepath.Join(p.logDir(), name+".log")
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return fmt.Sprintf("--- last lines of %s ---\n%s", path, b)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
