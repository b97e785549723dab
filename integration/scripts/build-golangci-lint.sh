#!/usr/bin/env bash
# Builds golangci-lint, pinned below, into .cache/bin/golangci-lint from its
# Go module (`go mod download` of that exact version, then `go build` inside
# the module with its own go.mod and go.sum, so the linters are the ones that
# release was tested with). A binary already there is reused when it is that
# version; `make lint` runs it.
set -euo pipefail

version=v2.6.2
module=github.com/golangci/golangci-lint/v2

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="$root/.cache/bin/golangci-lint"
stamp="$bin.version"

if [[ -x "$bin" && -f "$stamp" && "$(cat "$stamp")" == "$version" ]]; then
  echo "golangci-lint $version: up to date at $bin"
  exit 0
fi

echo "golangci-lint $version: building into $bin (several minutes on a cold machine)"
# `go install $module@$version` needs the module's version list, which some
# proxies refuse; an exact version always resolves with `go mod download`,
# run outside any module so no go.mod is touched.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
dir="$(cd "$scratch" && GOWORK=off GOFLAGS= go mod download -json "$module@$version" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
if [[ -z "$dir" || ! -d "$dir" ]]; then
  echo "build-golangci-lint: go mod download $module@$version reported no directory" >&2
  exit 1
fi
mkdir -p "$(dirname "$bin")"
rm -f "$stamp"
tmp="$bin.tmp.$$"
trap 'rm -rf "$scratch" "$tmp"' EXIT
(
  cd "$dir"
  GOWORK=off GOFLAGS=-buildvcs=false go build -trimpath \
    -ldflags "-X main.version=${version#v} -X main.commit=module -X main.date=unknown" \
    -o "$tmp" ./cmd/golangci-lint
)
mv "$tmp" "$bin"
echo "$version" > "$stamp"
echo "golangci-lint $version: built ($("$bin" version))"
