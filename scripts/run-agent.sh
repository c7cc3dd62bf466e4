#!/usr/bin/env bash
# `make run`: starts the agent as an explicit proxy for a newcomer — a local
# CA in a git-ignored state dir (created once), the sample policy and the
# small bundled category set — and prints how to point curl or a browser at it.
# Usage: scripts/run-agent.sh SHOJI_BIN STATE_DIR LISTEN
set -euo pipefail
bin=${1:-build/shoji} state=${2:-state} listen=${3:-127.0.0.1:3128}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mkdir -p "$state"
chmod 700 "$state"
state=$(cd "$state" && pwd)

if [ ! -f "$state/ca.crt" ]; then
  "$bin" ca init --state-dir "$state"
fi

policy_args=()
if [ -f data/policy.sample.json ] && [ -d data/categories ]; then
  echo "compiling the bundled sample categories (data/categories) into $state/categories.db"
  "$bin" catdb compile data/categories -o "$state/categories.db"
  # The sample names its category db relative to itself; point it at ours.
  sed -E 's#"category_db"[[:space:]]*:[[:space:]]*"[^"]*"#"category_db": "categories.db"#' \
    data/policy.sample.json > "$state/policy.json"
  policy_args=(--policy "$state/policy.json")
fi

port=${listen##*:}
cat <<MSG

shoji is starting on $listen (Ctrl-C stops it). Try it from another terminal:

  curl --cacert $state/ca.crt -x http://$listen https://deb.debian.org/
  curl -x http://$listen http://deb.debian.org/debian/

  The certificate curl sees is issued by "shoji local CA": the agent decoded the
  connection. The access log is $state/access.log.

  Explain a decision without sending anything:
  $bin explain https://casino.example/ --policy $state/policy.json

  Browsers: set the HTTP proxy to $listen (or the PAC file
  http://$listen/proxy.pac) and trust the CA:  $bin ca install --state-dir $state
  (undo with: $bin ca uninstall --state-dir $state)

MSG
exec "$bin" run --listen "$listen" --state-dir "$state" "${policy_args[@]}" \
  --access-log "$state/access.log"
