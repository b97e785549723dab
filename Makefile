# Strata build and test entry points. `make deps` once per machine (as root)
# installs what the integration tests need; `make test` runs everything.

GO ?= go

.PHONY: build test bench kube-apiserver crds deps

build:
	$(GO) build -o bin/strata-broker ./cmd/strata-broker

# The integration tests run a real kube-apiserver; building it is a no-op
# when .cache/bin holds the pinned version.
test:
	$(MAKE) kube-apiserver
	$(GO) test -count=1 -timeout 60m ./...

# The request benchmarks run against the real kube-apiserver too.
bench:
	$(MAKE) kube-apiserver
	$(GO) test -run '^$$' -bench . -benchmem ./...

kube-apiserver:
	bash integration/scripts/build-kube-apiserver.sh

# The upstream CRDs of the embedded control plane, into the Go module cache
# (strata-broker --embedded downloads nothing at start).
crds:
	$(GO) run ./internal/controlplane/downloadcrds

deps:
	bash integration/scripts/install-deps.sh
