#!/usr/bin/env bash
# Runs every test: unit tests (release and ASan/UBSan builds), integration
# tests against the ASan/UBSan binaries, and a short fuzz smoke of every
# parser. Ends with one summary line: "N passed, N failed".
# Usage: scripts/test.sh BUILD ASAN_BUILD FUZZ_BUILD FUZZ_SECONDS
set -uo pipefail
build=${1:-build} asan=${2:-build-asan} fuzz=${3:-build-fuzz} fuzz_secs=${4:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export SHOJI_SOURCE_DIR=$root
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
passed=0 failed=0 failures=()
start=$(date +%s)

step() {  # step NAME COMMAND... : runs one suite, counts it
  local name=$1; shift
  echo "==> $name"
  local t0=$(date +%s)
  if "$@"; then
    passed=$((passed + 1)); echo "==> $name: ok ($(( $(date +%s) - t0 ))s)"
  else
    failed=$((failed + 1)); failures+=("$name"); echo "==> $name: FAILED ($(( $(date +%s) - t0 ))s)"
  fi
}

step "unit (release)" ctest --test-dir "$build" --output-on-failure -j 2
step "unit (asan+ubsan)" ctest --test-dir "$asan" --output-on-failure -j 2
if [ -d tests/integration ] && ls tests/integration/test_*.py >/dev/null 2>&1; then
  step "integration (asan+ubsan binaries)" env SHOJI_BIN="$root/$asan/shoji" \
    SHOJI_SERVER_BIN="$root/$asan/shoji-server" /usr/bin/python3 -m pytest -q -rs --durations=15 \
    -p no:cacheprovider tests/integration
fi
step "fuzz smoke (${fuzz_secs}s per target)" scripts/fuzz.sh "$fuzz" "$fuzz_secs"

echo
echo "suites: ${passed} passed, ${failed} failed in $(( $(date +%s) - start ))s"
for f in "${failures[@]}"; do echo "  failed: $f"; done
[ "$failed" -eq 0 ]
