#!/usr/bin/env bash
# Module micro-benchmarks, part of `make bench`: the HTTP parser, leaf
# minting, the category database (compile / load / lookups over the real UT1
# lists), decide() with 10,000 exclusions and 1,000 disabled applications,
# and the socket -> process lookup (cold and cached). Each program prints its
# own figures; they are collected in bench/results/modules.txt.
# Usage: bench/modules.sh BUILD_DIR
set -uo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/bench/results/modules.txt"
mkdir -p "$ROOT/bench/results"
UT1="$ROOT/../shared/data/ut1"
[ -d "$UT1" ] || UT1="$ROOT/data/categories"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
QUICK=${BENCH_QUICK:-0}
N=$([ "$QUICK" = 1 ] && echo 1 || echo 5)

run() {   # run TITLE CMD...
  echo "### $1"
  echo '```'
  echo "\$ ${*:2}"
  timeout 300 "${@:2}" 2>&1 || echo "(failed: exit $?)"
  echo '```'
  echo
}

{
  echo "Module benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  run "HTTP/1.1 parser" "$BUILD/bench_http1" $((N * 200000))
  run "Leaf minting and the certificate cache" "$BUILD/bench_mint" --mints $((N * 40)) --tmp "$TMP"
  run "Category database over $UT1" "$BUILD/bench_catdb" "$UT1" "$TMP/ut1.db" $((N * 1000000))
  run "decide() without a category database" "$BUILD/bench_decide" $((N * 200000))
  run "decide() with the UT1 category database" "$BUILD/bench_decide" $((N * 200000)) "$TMP/ut1.db"
  run "Socket -> process lookup" "$BUILD/bench_proclookup"
} > "$OUT"
cat "$OUT"
