package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
)

// fallback says why the real platform cannot run here and runs today's
// API-only embedded control plane instead (etcd and kube-apiserver, no
// operator: instances stay in progress), in the foreground until Ctrl-C.
func fallback(ctx context.Context, repo, why string) error {
	fmt.Fprintf(os.Stderr, `
make run: the real platform cannot run on this machine:
  %s
Falling back to the API-only embedded control plane:
  go run ./cmd/strata-broker --embedded
It serves the OSB API on https://127.0.0.1:8443 (credentials in .cache/strata/), but no
operator runs, so instances stay "in progress" and cannot be bound (README, "Where the platform cannot run").

`, why)
	cmd := exec.CommandContext(ctx, "go", "run", "./cmd/strata-broker", "--embedded")
	cmd.Dir = repo
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("the embedded broker: %w", err)
	}
	return nil
}
