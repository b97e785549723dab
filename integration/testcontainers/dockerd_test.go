//go:build linux

package testcontainers_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test's own Docker daemon: Debian's dockerd with a private data root
// (kept under .cache, so loaded images survive between runs), a private
// exec root and socket, and a bridge of its own with no way out: no
// iptables rules (so no masquerading), IP forwarding left off, and
// published ports bound to 127.0.0.1 only (docker-proxy). Upstream DNS and
// registry mirrors are not configured; no image is ever pulled.
const (
	// DockerHint says how to get Docker.
	DockerHint = "install Docker: apt-get install docker.io (make deps installs it on Debian)"

	bridgeName = "strata-tc0"
	bridgeAddr = "172.29.250.1/24"
)

type dockerd struct {
	// Docker is the CLI, Env the environment that reaches the daemon.
	Docker string
	Env    []string
	// Host is the daemon's DOCKER_HOST.
	Host string

	cmd      *exec.Cmd
	dataRoot string
	execDir  string
	logFile  string
	lock     *os.File
}

// startDockerd starts the test's dockerd (one at a time per machine: the
// cache directory and the bridge are shared by every checkout that links
// the same .cache) and removes whatever containers a killed run left.
func startDockerd(t *testing.T, repo string) *dockerd {
	t.Helper()
	bin, docker := dockerBinaries(t)
	if os.Geteuid() != 0 {
		t.Fatalf("the test runs its own dockerd, which needs root (run go test as root, as make test does in CI)")
	}
	// runc refuses a root filesystem whose path has a symbolic link in
	// it (a worktree's .cache may be one).
	cache, err := filepath.EvalSymlinks(filepath.Join(repo, ".cache"))
	if err != nil {
		t.Fatalf("the cache directory: %v", err)
	}
	state := filepath.Join(cache, "testcontainers")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(state, "dockerd.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("locking %s: %v", lock.Name(), err)
	}
	d := &dockerd{Docker: docker, lock: lock}
	t.Cleanup(d.stop)

	// A run that was killed may have left its daemon (its pid file) and
	// its bridge.
	pidFile := filepath.Join(state, "dockerd.pid")
	if b, err := os.ReadFile(pidFile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && isDockerd(pid) {
			t.Logf("stopping dockerd %d left by an earlier run", pid)
			_ = syscall.Kill(pid, syscall.SIGTERM)
			waitGone(pid, 20*time.Second)
		}
	}
	_ = exec.Command("ip", "link", "del", bridgeName).Run()
	if err := checkBridgeRange(); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"link", "add", bridgeName, "type", "bridge"},
		{"addr", "add", bridgeAddr, "dev", bridgeName},
		{"link", "set", bridgeName, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	d.dataRoot = filepath.Join(state, "docker")
	// The exec root holds containerd's sockets: a short path.
	d.execDir, err = os.MkdirTemp("", "stc-")
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(d.execDir, "daemon.json")
	if err := os.WriteFile(config, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(d.execDir, "docker.sock")
	d.Host = "unix://" + sock
	d.logFile = filepath.Join(state, "dockerd.log")
	logf, err := os.Create(d.logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d.cmd = exec.Command(bin,
		"--config-file", config, // not the machine's /etc/docker/daemon.json
		"--data-root", d.dataRoot,
		"--exec-root", filepath.Join(d.execDir, "exec"),
		"--pidfile", pidFile,
		"--host", d.Host,
		"--bridge", bridgeName,
		"--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
		"--ip", "127.0.0.1",
		"--userland-proxy=true",
		"--log-level", "warn",
	)
	d.cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	start := time.Now()
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v (%s)", bin, err, DockerHint)
	}
	d.Env = []string{"DOCKER_HOST=" + d.Host, "PATH=" + os.Getenv("PATH"), "HOME=" + d.execDir}
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := d.run("version", "--format", "{{.Server.Version}}")
		if err == nil {
			t.Logf("dockerd %s up in %s (socket %s, log %s)", strings.TrimSpace(out), time.Since(start).Round(time.Millisecond), sock, d.logFile)
			break
		}
		if d.cmd.ProcessState != nil || time.Now().After(deadline) {
			t.Fatalf("dockerd did not answer within 60s: %v\n%s\n%s", err, out, tailFile(d.logFile, 30))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := d.removeContainers(); err != nil {
		t.Fatal(err)
	}
	return d
}

// dockerBinaries finds Debian's dockerd and the Docker CLI next to it.
func dockerBinaries(t *testing.T) (dockerdPath, docker string) {
	t.Helper()
	dockerdPath, err := exec.LookPath("dockerd")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/dockerd"); serr != nil {
			t.Fatalf("dockerd is not installed (%v): %s", err, DockerHint)
		}
		dockerdPath = "/usr/sbin/dockerd"
	}
	// Debian's CLI (/usr/bin/docker) is the daemon's version; another
	// docker earlier on PATH may be of another.
	for _, c := range []string{"/usr/bin/docker", filepath.Join(filepath.Dir(dockerdPath), "docker")} {
		if _, err := os.Stat(c); err == nil {
			return dockerdPath, c
		}
	}
	docker, err = exec.LookPath("docker")
	if err != nil {
		t.Fatalf("the docker CLI is not installed (%v): %s", err, DockerHint)
	}
	return dockerdPath, docker
}

// checkBridgeRange refuses a bridge range that a route of the machine
// already covers (it would shadow it).
func checkBridgeRange() error {
	_, mine, err := net.ParseCIDR(bridgeAddr)
	if err != nil {
		return err
	}
	out, err := exec.Command("ip", "-4", "route", "show").Output()
	if err != nil {
		return fmt.Errorf("ip route: %w", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] == "default" {
			continue
		}
		_, n, err := net.ParseCIDR(f[0])
		if err != nil {
			continue
		}
		if n.Contains(mine.IP) || mine.Contains(n.IP) {
			return fmt.Errorf("the test dockerd's bridge %s overlaps the route %q of this machine", bridgeAddr, line)
		}
	}
	return nil
}

func (d *dockerd) run(args ...string) (string, error) {
	cmd := exec.Command(d.Docker, args...)
	cmd.Env = d.Env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Containers lists every container of the daemon (running or not).
func (d *dockerd) Containers() ([]string, error) {
	out, err := d.run("ps", "-aq")
	if err != nil {
		return nil, fmt.Errorf("docker ps -aq: %w\n%s", err, out)
	}
	return strings.Fields(out), nil
}

func (d *dockerd) removeContainers() error {
	ids, err := d.Containers()
	if err != nil || len(ids) == 0 {
		return err
	}
	if out, err := d.run(append([]string{"rm", "-f", "-v"}, ids...)...); err != nil {
		return fmt.Errorf("docker rm -f: %w\n%s", err, out)
	}
	return nil
}

// stop removes the containers, stops the daemon and removes the bridge.
func (d *dockerd) stop() {
	if d.cmd != nil && d.cmd.Process != nil {
		_ = d.removeContainers()
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- d.cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = d.cmd.Process.Kill()
			<-done
		}
	}
	// dockerd bind-mounts its data root onto itself (private mount
	// propagation) and does not always undo it when it stops.
	if d.dataRoot != "" && isMountPoint(d.dataRoot) {
		_ = syscall.Unmount(d.dataRoot, 0)
	}
	_ = exec.Command("ip", "link", "del", bridgeName).Run()
	if d.execDir != "" {
		_ = os.RemoveAll(d.execDir)
	}
	if d.lock != nil {
		_ = syscall.Flock(int(d.lock.Fd()), syscall.LOCK_UN)
		d.lock.Close()
	}
}

// isMountPoint says whether path is a mount point (/proc/self/mountinfo).
func isMountPoint(path string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}

func isDockerd(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.TrimSpace(string(b)) == "dockerd"
}

func waitGone(pid int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
