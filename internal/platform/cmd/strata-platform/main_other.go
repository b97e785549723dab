//go:build !linux

// Command strata-platform needs Linux for the real platform; elsewhere
// `run` (make run) falls back to the API-only embedded broker.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"runtime"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "run" {
		fmt.Fprintf(os.Stderr, "strata-platform: the real platform needs Linux (this is %s); only `run` works here, and falls back to the embedded broker\n", runtime.GOOS)
		os.Exit(2)
	}
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	repo := fs.String("repo", ".", "the Strata repository")
	fs.String("state", "", "unused here")
	fs.Parse(os.Args[2:]) //nolint:errcheck // ExitOnError
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := fallback(ctx, *repo, "not Linux ("+runtime.GOOS+"): the platform runs kubelet, containerd and network namespaces"); err != nil {
		log.Fatal(err)
	}
}
