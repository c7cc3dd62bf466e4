#!/usr/bin/env bash
# Runs every libFuzzer target in FUZZ_BUILD for SECONDS each, starting from
# the seed corpus in tests/fuzz/corpus/<target>/ (copied, so the repo's seeds
# stay small). Crashes are saved under tests/fuzz/artifacts/.
# Usage: scripts/fuzz.sh FUZZ_BUILD SECONDS
set -uo pipefail
build=${1:-build-fuzz} secs=${2:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
shopt -s nullglob
targets=("$build"/fuzz_*)
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz: no targets built in $build" >&2
  exit 1
fi
mkdir -p tests/fuzz/artifacts
rc=0
for t in "${targets[@]}"; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  work=$(mktemp -d)
  [ -d "tests/fuzz/corpus/$name" ] && cp -r "tests/fuzz/corpus/$name/." "$work/"
  if "$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
       -artifact_prefix="tests/fuzz/artifacts/$name-" -print_final_stats=1 "$work" \
       >"$work.log" 2>&1; then
    echo "fuzz: $name ok ($(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work.log" | grep -o '[0-9]*$' || echo '?') runs; $(grep -c '' "$work.log") log lines)"
  else
    echo "fuzz: $name FAILED — see tests/fuzz/artifacts/$name-*"; tail -40 "$work.log"; rc=1
  fi
  rm -rf "$work" "$work.log"
done
exit $rc
