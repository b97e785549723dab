//go:build linux

// Command downloadcrds puts the Go modules whose CRDs the embedded control
// plane installs into the Go module cache (`make crds`, run by `make deps`),
// so that `strata-broker --embedded` finds them without downloading
// anything at start.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/strata-dev/strata/internal/controlplane"
)

func main() {
	if err := controlplane.DownloadCRDModules(); err != nil {
		fmt.Fprintln(os.Stderr, "downloadcrds:", err)
		os.Exit(1)
	}
	fmt.Println("downloadcrds: in the Go module cache:", strings.Join(controlplane.CRDModules(), " "))
}
