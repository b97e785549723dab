// Command strata-load runs a load test (pgbench-like TPC-B or a custom
// script on PostgreSQL, GET/SET with pipelining on Redis, produce and
// consume with acks=all on Kafka) against the service of a Strata binding,
// connecting only with the binding's values and TLS verified against its
// CA. docs/load-testing.md describes it; the logic is in internal/load.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/strata-dev/strata/internal/load"
)

func main() {
	// Ctrl-C ends the run early; the summary of what ran is still printed.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := load.Main(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "strata-load:", err)
		stop()
		os.Exit(1)
	}
}
