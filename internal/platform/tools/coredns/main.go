// Command coredns is CoreDNS with only the plugins the platform's cluster DNS
// needs. There is deliberately no forward plugin: the cluster answers its own
// names and nothing else, so no query ever leaves the machine (the project's
// network rule).
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	// The plugins, each registering itself with the server.
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func init() {
	// The order plugins run in, as in CoreDNS's plugin.cfg (a subset of it).
	dnsserver.Directives = []string{
		"reload",
		"health",
		"ready",
		"errors",
		"log",
		"cache",
		"loadbalance",
		"kubernetes",
	}
}

func main() {
	coremain.Run()
}
