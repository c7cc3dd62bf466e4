#!/usr/bin/env bash
# Installs the Debian 12 packages shoji needs to build, run and test.
# Idempotent: installs only what is missing; safe to run again.
# Usage: scripts/deps.sh [build|test|bench|all]   (default: test)
set -euo pipefail
what=${1:-test}

build_pkgs=(build-essential cmake pkg-config clang
  libuv1-dev libssl-dev libjansson-dev libpcre2-dev libidn2-dev
  libmicrohttpd-dev libsqlite3-dev libpq-dev libsodium-dev zlib1g-dev libnftables-dev
  openssl ca-certificates libnss3-tools)
test_pkgs=(libcmocka-dev libclang-rt-14-dev python3 python3-pytest
  python3-cryptography python3-jsonschema curl iproute2 nftables procps psmisc
  postgresql sqlite3 nodejs chromium fonts-ipafont-gothic)
bench_pkgs=(nginx squid-openssl mitmproxy privoxy tinyproxy wrk linux-perf)

pkgs=("${build_pkgs[@]}")
case "$what" in
  build) ;;
  test) pkgs+=("${test_pkgs[@]}") ;;
  bench) pkgs+=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  all) pkgs+=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  *) echo "deps.sh: unknown set '$what' (build|test|bench|all)" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm: bundled with some nodejs builds (NodeSource), a separate Debian
# package with Debian's own nodejs. Installing Debian's npm next to a
# NodeSource nodejs conflicts, so ask for it only when it is really missing.
if [ "$what" != build ] && ! command -v npm >/dev/null 2>&1; then
  missing+=(npm)
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#pkgs[@]} packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing packages: ${missing[*]}" >&2
  echo "deps: run as root, or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when they are absent or older than a day.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
  apt-get update -q
fi
apt-get install -y -q --no-install-recommends "${missing[@]}"
