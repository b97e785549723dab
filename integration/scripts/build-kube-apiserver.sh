#!/usr/bin/env bash
# Builds the real kube-apiserver that integration/kubeenv runs (with etcd)
# into .cache/bin/kube-apiserver, from the nested module
# integration/tools/kube-apiserver that pins its version. A binary already
# there is reused when it is that version, so only a cold machine pays the
# ~5 minute build (and Go's build cache makes a rebuild much cheaper).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
module_dir="$root/integration/tools/kube-apiserver"
bin="$root/.cache/bin/kube-apiserver"
stamp="$bin.version"

# The version is the one the nested module requires.
version="$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" { print $3 } $1 == "k8s.io/kubernetes" { print $2 }' "$module_dir/go.mod" | head -n1)"
if [[ -z "$version" ]]; then
  echo "build-kube-apiserver: no k8s.io/kubernetes requirement in $module_dir/go.mod" >&2
  exit 1
fi

# is_wanted_version tells whether $bin is kube-apiserver $version: by its
# --version, or, for a binary built without version ldflags (it prints
# v0.0.0-master), by the k8s.io/kubernetes module recorded in its build info.
is_wanted_version() {
  "$bin" --version 2>/dev/null | grep -qF "Kubernetes $version" && return 0
  go version -m "$bin" 2>/dev/null | grep -qE "^[[:space:]]+mod[[:space:]]+k8s\.io/kubernetes[[:space:]]+${version//./\\.}[[:space:]]"
}

if [[ -x "$bin" && -f "$stamp" && "$(cat "$stamp")" == "$version" ]]; then
  echo "kube-apiserver $version: up to date at $bin"
  exit 0
fi
if [[ -x "$bin" ]] && is_wanted_version; then
  echo "$version" > "$stamp"
  echo "kube-apiserver $version: reusing the binary at $bin (stamp written)"
  exit 0
fi

echo "kube-apiserver $version: building into $bin (a few minutes on a cold machine)"
mkdir -p "$(dirname "$bin")"
rm -f "$stamp"
tmp="$bin.tmp.$$"
trap 'rm -f "$tmp"' EXIT
# The same version variables Kubernetes' own build sets, so that
# `kube-apiserver --version` and /version report the real version.
minor="${version#v1.}"
minor="${minor%%.*}"
ldflags="-X k8s.io/component-base/version.gitVersion=$version"
ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
(
  cd "$module_dir"
  GOWORK=off GOFLAGS=-buildvcs=false go build -ldflags "$ldflags" -o "$tmp" k8s.io/kubernetes/cmd/kube-apiserver
)
mv "$tmp" "$bin"
echo "$version" > "$stamp"
echo "kube-apiserver $version: built ($("$bin" --version))"
