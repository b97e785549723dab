//go:build linux

// Command strata-platform drives internal/platform from the shell:
//
//	strata-platform build           build (or find cached) the binaries and images
//	strata-platform up [-cnpg]      start the platform (and CloudNativePG), print the kubeconfig
//	strata-platform down [-purge]   stop it and undo every host change
//
// `make test` runs `build` first so that a cold machine pays the builds
// outside the tests' timeout.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/strata-dev/strata/internal/platform"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: strata-platform build|up|down [flags]")
		os.Exit(2)
	}
	cmd := os.Args[1]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	repo := fs.String("repo", ".", "the Strata repository")
	state := fs.String("state", "", "state directory (default <repo>/.cache/platform/dev)")
	cnpg := fs.Bool("cnpg", false, "up: also install the CloudNativePG operator")
	purge := fs.Bool("purge", false, "down: also remove the state directory")
	fs.Parse(os.Args[2:]) //nolint:errcheck // ExitOnError
	if *state == "" {
		*state = filepath.Join(*repo, ".cache", "platform", "dev")
	}
	p, err := platform.New(platform.Config{
		StateDir:  *state,
		CacheDir:  filepath.Join(*repo, ".cache", "platform"),
		SourceDir: *repo,
		Log:       log.Printf,
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	switch cmd {
	case "build":
		err = p.Build(ctx)
	case "up":
		if err = p.Start(ctx); err == nil && *cnpg {
			err = p.InstallCNPG(ctx)
		}
		if err == nil {
			fmt.Printf("platform up; logs in %s\nexport KUBECONFIG=%s\n", p.LogDir(), p.Kubeconfig())
		}
	case "down":
		if err = p.Stop(ctx); err == nil && *purge {
			err = p.Purge()
		}
	default:
		err = fmt.Errorf("unknown command %q (build, up or down)", cmd)
	}
	if err != nil {
		log.Fatal(err)
	}
}
