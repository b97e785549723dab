# Strata build and test entry points. `make deps` once per machine (as root)
# installs what the integration tests need; `make test` runs everything.

GO ?= go

.PHONY: build test lint bench kube-apiserver golangci-lint crds deps

build:
	$(GO) build -o bin/strata-broker ./cmd/strata-broker

# The integration tests run a real kube-apiserver; building it is a no-op
# when .cache/bin holds the pinned version.
test: lint
	$(MAKE) kube-apiserver
	$(GO) test -count=1 -timeout 60m ./...

# golangci-lint (errcheck, errorlint, staticcheck, govet, ineffassign,
# unused, gofmt: .golangci.yml), at the version the build script pins.
lint: golangci-lint
	.cache/bin/golangci-lint run ./...

golangci-lint:
	bash integration/scripts/build-golangci-lint.sh

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
