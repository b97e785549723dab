//go:build linux

package platform

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// requirement is a program the platform runs and how to get it.
type requirement struct {
	path, install string
}

// requirements are the Debian packages the platform needs
// (integration/scripts/install-deps.sh installs them all).
var requirements = []requirement{
	{"/usr/bin/etcd", "apt-get install etcd-server"},
	{"/usr/bin/containerd", "apt-get install containerd"},
	{"/usr/bin/containerd-shim-runc-v2", "apt-get install containerd"},
	{"/usr/bin/ctr", "apt-get install containerd"},
	{"/usr/sbin/runc", "apt-get install runc"},
	{"/usr/lib/cni/bridge", "apt-get install containernetworking-plugins"},
	{"/usr/lib/cni/host-local", "apt-get install containernetworking-plugins"},
	{"/usr/lib/cni/loopback", "apt-get install containernetworking-plugins"},
	{"/usr/lib/cni/portmap", "apt-get install containernetworking-plugins"},
	{"/usr/sbin/iptables", "apt-get install iptables"},
	{"/usr/sbin/ip", "apt-get install iproute2"},
	{"/usr/bin/nsenter", "apt-get install util-linux"},
	{"/usr/sbin/debootstrap", "apt-get install debootstrap"},
	{"/usr/bin/gcc", "apt-get install gcc libc6-dev"},
}

// InstallHint is the one command that installs every Debian package the
// platform needs.
const InstallHint = "bash integration/scripts/install-deps.sh (as root), or: apt-get install etcd-server containerd runc containernetworking-plugins iptables iproute2 util-linux debootstrap gcc libc6-dev"

// MissingPackages are the Debian packages to install for the programs the
// platform runs that are not on this machine (`make run` installs them).
func MissingPackages() []string {
	var pkgs []string
	seen := map[string]bool{}
	for _, r := range requirements {
		if _, err := os.Stat(r.path); err == nil {
			continue
		}
		for _, pkg := range strings.Fields(strings.TrimPrefix(r.install, "apt-get install ")) {
			if !seen[pkg] {
				seen[pkg] = true
				pkgs = append(pkgs, pkg)
			}
		}
	}
	return pkgs
}

// CheckRequirements fails with what is missing, and how to install it,
// when the machine cannot run the platform.
func CheckRequirements() error { return checkRequirements() }

// checkRequirements fails with what to install when the machine cannot run
// the platform.
func checkRequirements() error {
	if os.Geteuid() != 0 {
		return errors.New("platform: must run as root (it creates a network namespace and runs kubelet and containerd)")
	}
	if _, err := exec.LookPath("go"); err != nil {
		return errors.New("platform: the go command is not on PATH (the Kubernetes binaries, CoreDNS and the CloudNativePG operator are built from their Go modules)")
	}
	var missing []string
	for _, r := range requirements {
		if _, err := os.Stat(r.path); err != nil {
			missing = append(missing, fmt.Sprintf("%s is not installed: %s", r.path, r.install))
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory"); err != nil {
		if _, err2 := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err2 != nil {
			missing = append(missing, "no cgroup hierarchy at /sys/fs/cgroup (kubelet needs cgroups)")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("platform: the machine is missing what the platform needs:\n  %s\ninstall with: %s",
			strings.Join(missing, "\n  "), InstallHint)
	}
	return nil
}
