# Strata build and test entry points. `make deps` once per machine (as root)
# installs what the integration tests need; `make test` runs everything.

GO ?= go

.PHONY: run stop build test lint bench kube-apiserver golangci-lint crds platform deps

# The README's first command: as root on Linux, installs what is missing,
# builds or reuses the real platform (internal/platform, docs/platform.md),
# brings it up with CloudNativePG and the broker (its Helm chart), then
# provisions, binds and connects to a dev-lite PostgreSQL over OSB and
# prints how to use it. Everything keeps running until `make stop`. Where
# the platform cannot run (not root, not Linux, no cgroups, packages
# missing), it says why and runs the API-only `strata-broker --embedded`.
# Go itself is the one thing it does not install (Debian 12's golang-go,
# 1.19, is older than go.mod's version): without it, it says so.
run:
	@command -v $(GO) >/dev/null || { echo "make run: Go is not installed: install the version go.mod names (the Go project publishes it), then make run again" >&2; exit 1; }
	$(GO) run ./internal/platform/cmd/strata-platform run

# Stops what `make run` started (processes, mounts, network namespace,
# routes, sysctls); the data stays for the next `make run`
# (`strata-platform down -purge` deletes it).
stop:
	$(GO) run ./internal/platform/cmd/strata-platform down

build:
	$(GO) build -o bin/strata-broker ./cmd/strata-broker

# The integration tests run a real kube-apiserver; building it is a no-op
# when .cache/bin holds the pinned version. The platform's binaries and
# images (internal/platform, docs/platform.md) are built before the tests
# too, so a cold machine pays those builds outside the tests' timeout; if
# that fails (not root, a package missing) the other tests still run and
# TestCloudNativePGOnRealPlatform fails saying what to install. The real
# platform's tests each run a platform of their own, three at a time
# (-parallel 3): they mostly wait on pods, and one after another they
# would take over an hour.
test: lint
	$(MAKE) kube-apiserver
	$(MAKE) platform || echo "make platform failed: internal/platform's test will report why"
	$(GO) test -count=1 -timeout 80m -parallel 3 ./...

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

# Builds (or finds in .cache/platform) the real platform's Kubernetes
# binary, CoreDNS, the CloudNativePG operator, the redis-operator and the
# images (PostgreSQL, Redis and its exporter).
platform:
	$(GO) run ./internal/platform/cmd/strata-platform build

deps:
	bash integration/scripts/install-deps.sh
