#!/usr/bin/env bash
# bench/fleet.sh BUILD_DIR — the fleet simulation of `make bench` (called by
# bench/run.sh; runs on its own too): 1,000 simulated agents (bench/fleet.c)
# against one release shoji-server, on SQLite and on PostgreSQL side by side,
# each repeat on a fresh database. See docs/PERFORMANCE.md "Fleet".
#   BENCH_QUICK=1      one repeat, 8 s measured (default: 3 repeats, 20 s)
#   FLEET_AGENTS=1000  simulated agents; FLEET_THREADS=16 requests in flight
#   FLEET_DBS="sqlite postgresql"  which backends
#   BENCH_KEEP=1       keep the work directory (server logs, raw JSON)
# Output: bench/results/fleet.md (printed) and bench/results/fleet.jsonl.
# Only loopback is used; every run is bounded (-t seconds, -n requests).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd) || { echo "fleet: no build dir ${1:-}" >&2; exit 2; }
for b in shoji-server fleet; do
  [ -x "$BUILD/$b" ] || { echo "fleet: $BUILD/$b missing (cmake --build $BUILD --target $b)" >&2; exit 2; }
done
PY=/usr/bin/python3
PG_BIN=/usr/lib/postgresql/15/bin
QUICK=${BENCH_QUICK:-0}
AGENTS=${FLEET_AGENTS:-1000}
THREADS=${FLEET_THREADS:-16}
DBS=${FLEET_DBS:-sqlite postgresql}
if [ "$QUICK" = 1 ]; then REPEATS=1 T=8; else REPEATS=3 T=20; fi
W=$(mktemp -d /tmp/shoji-fleet.XXXXXX)
chmod 755 "$W"
SRV_PID="" PG_UP=0
log() { echo "fleet: $*" >&2; }

pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

cleanup() {
  [ -z "$SRV_PID" ] || kill "$SRV_PID" 2>/dev/null || true
  [ "$PG_UP" = 0 ] || pg "$PG_BIN/pg_ctl" -D "$W/pg/data" -m fast -w stop >/dev/null 2>&1 || true
  if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

free_port() { $PY -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# A throw-away cluster like tests/integration/server_helpers/pg.py, but with
# fsync on and synchronous_commit=off: the same durability as SQLite's WAL
# with synchronous=NORMAL (a crash may lose the last commits, never corrupt).
pg_start() {
  PG_PORT=$(free_port)
  mkdir -p "$W/pg/sock"
  [ "$(id -u)" != 0 ] || chown -R postgres:postgres "$W/pg"
  PG_USER=$([ "$(id -u)" = 0 ] && echo postgres || id -un)
  (cd "$W/pg" && pg "$PG_BIN/initdb" -D "$W/pg/data" -A trust -U "$PG_USER" -E UTF8 >/dev/null)
  (cd "$W/pg" && pg "$PG_BIN/pg_ctl" -D "$W/pg/data" -l "$W/pg/log" -w -t 60 -o \
    "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $W/pg/sock -c max_connections=100 -c synchronous_commit=off" \
    start >/dev/null)
  PG_UP=1
  PG_PID=$(head -1 "$W/pg/data/postmaster.pid")
}

# db_url BACKEND REPEAT: a fresh, empty database
db_url() {
  if [ "$1" = sqlite ]; then echo "sqlite:$W/fleet-$2.db"; return; fi
  pg /usr/bin/psql -q -h "$W/pg/sock" -p "$PG_PORT" -d postgres -v ON_ERROR_STOP=1 \
    -c "CREATE DATABASE fleet_$2" >/dev/null
  echo "postgresql://$PG_USER@127.0.0.1:$PG_PORT/fleet_$2"
}

# start_server URL: sets SRV_PID, SRV_PORT, SRV_FP
start_server() {
  local out=$W/server.out i
  : > "$out"
  "$BUILD/shoji-server" --listen 127.0.0.1:0 --db "$1" --data-dir "$W/srv" \
    >"$out" 2>>"$W/server.err" &
  SRV_PID=$!
  for i in $(seq 1 300); do
    grep -q 'fingerprint:' "$out" && break
    kill -0 "$SRV_PID" 2>/dev/null || break
    sleep 0.1
  done
  SRV_PORT=$(sed -n 's/.*(port \([0-9]*\)).*/\1/p' "$out")
  SRV_FP=$(sed -n 's/.*fingerprint: \([0-9A-F:]*\).*/\1/p' "$out")
  [ -n "$SRV_PORT" ] && [ -n "$SRV_FP" ] || { log "shoji-server did not start"; cat "$W/server.err" >&2; return 1; }
}

stop_server() {
  kill "$SRV_PID" 2>/dev/null || true
  wait "$SRV_PID" 2>/dev/null || true
  SRV_PID=""
}

# api METHOD PATH JSON: admin request, prints the answer's FIELD ($4) if given
api() {
  local ans
  ans=$(curl -sS --max-time 30 -k -X "$1" -H "Authorization: Bearer $ADMIN" \
        -H 'Content-Type: application/json' -d "$3" "https://127.0.0.1:$SRV_PORT/api/v1$2")
  if [ -n "${4:-}" ]; then
    echo "$ans" | $PY -c "import json,sys; print(json.load(sys.stdin)['$4'])"
  fi
}

POLICY='{"name":"fleet","document":{"default_action":"allow","categories":{"games":"block","gambling":"block"},"decode":{"exclude_hosts":["*.bank.test"]}}}'

# one_run BACKEND REPEAT: fresh database and server, setup through the API, fleet
one_run() {
  local be=$1 rep=$2 url pol tok watch_db=() out
  url=$(db_url "$be" "$rep")
  echo 'fleet bench password' | "$BUILD/shoji-server" admin add --db "$url" --user admin >/dev/null
  ADMIN=$("$BUILD/shoji-server" admin token --db "$url" --user admin)
  start_server "$url"
  pol=$(api POST /policies "$POLICY" id)
  api PUT /groups/default "{\"policy_id\": \"$pol\"}"
  tok=$(api POST /enrol-tokens "{\"name\": \"fleet\", \"max_uses\": $AGENTS}" token)
  [ "$be" = sqlite ] || watch_db=(--watch-db "$PG_PID")
  out=$("$BUILD/fleet" --port "$SRV_PORT" --fingerprint "$SRV_FP" --token "$tok" \
        --agents "$AGENTS" --threads "$THREADS" -t "$T" -n 2000000 --enrol-timeout 300 \
        --prefix "r$rep" --label "$be/$rep" --watch "$SRV_PID" "${watch_db[@]}" \
        2>>"$W/fleet.err") || log "$be/$rep: not every agent enrolled"
  stop_server
  [ -n "$out" ] || { log "$be/$rep: no result"; return 0; }
  echo "$out" >> "$W/fleet.jsonl"
  echo "$out" | $PY -c 'import json,sys
d=json.load(sys.stdin)
print("fleet: %-12s %7.0f req/s p50 %7.1f ms p99 %7.1f ms errors %d server %6.0f us/req db %6.0f us/req" % (d["label"], d["rps"], d["p50_ms"], d["p99_ms"], d["errors"], d["server_cpu_us_per_req"], d["db_cpu_us_per_req"]))' >&2
}

versions() {
  local pk
  pk=$(dpkg-query -W -f '${Package} ${Version}, ' libsqlite3-0 postgresql-15 libpq5 \
       libmicrohttpd12 libgnutls30 libssl3 2>/dev/null || true)
  echo "Versions: $("$BUILD/shoji-server" --version 2>/dev/null | head -1 || echo 'shoji-server ?')" \
       "($(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt") build, $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))," \
       "${pk}kernel $(uname -r), $(nproc) cores."
}

: > "$W/fleet.jsonl"
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
case " $DBS " in *" postgresql "*)
  if [ -x "$PG_BIN/initdb" ]; then pg_start; else log "no $PG_BIN/initdb: PostgreSQL skipped"; DBS=sqlite; fi ;;
esac
log "$AGENTS agents, $THREADS in flight, ${T}s measured, $REPEATS repeat(s), backends: $DBS, work dir $W"
for rep in $(seq 1 "$REPEATS"); do
  for be in $DBS; do one_run "$be" "$rep"; done
done

mkdir -p "$ROOT/bench/results"
cp "$W/fleet.jsonl" "$ROOT/bench/results/fleet.jsonl"
{
  echo "Fleet run: $(date -u '+%Y-%m-%d %H:%M UTC'), BENCH_QUICK=$QUICK, $REPEATS repeat(s) of" \
       "${T}s measured, $AGENTS agents, $THREADS requests in flight, load average at start: $LOADAVG."
  versions
  echo
  $PY - "$W/fleet.jsonl" <<'EOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in runs:
    by.setdefault(r["label"].split("/")[0], []).append(r)
def med(rs, f):
    return statistics.median(f(r) for r in rs)
rows = [
    ("enrolment: agents enrolled", lambda r: r["enrolled"], "%.0f"),
    ("enrolment: enrolments/s", lambda r: r["enrol_rps"], "%.0f"),
    ("enrolment: p99 ms", lambda r: r["endpoints"]["enrol"]["p99_ms"], "%.1f"),
    ("steady: requests/s (total)", lambda r: r["rps"], "%.0f"),
    ("steady: p50 ms (all)", lambda r: r["p50_ms"], "%.1f"),
    ("steady: p99 ms (all)", lambda r: r["p99_ms"], "%.1f"),
]
for ep in ("poll", "status", "tasks", "logs"):
    rows += [
        ("%s: requests/s" % ep, lambda r, e=ep: r["endpoints"][e]["rps"], "%.0f"),
        ("%s: p50 ms" % ep, lambda r, e=ep: r["endpoints"][e]["p50_ms"], "%.1f"),
        ("%s: p99 ms" % ep, lambda r, e=ep: r["endpoints"][e]["p99_ms"], "%.1f"),
    ]
rows += [
    ("log lines stored/s", lambda r: r["lines_stored"] / r["secs"], "%.0f"),
    ("errors (all phases, sum of runs)", None, "%d"),
    ("shoji-server CPU us/request", lambda r: r["server_cpu_us_per_req"], "%.0f"),
    ("shoji-server CPU % of one core", lambda r: r["server_cpu_pct"], "%.0f"),
    ("PostgreSQL CPU us/request", lambda r: r["db_cpu_us_per_req"], "%.0f"),
    ("server + database CPU us/request", lambda r: r["server_cpu_us_per_req"] + r["db_cpu_us_per_req"], "%.0f"),
    ("load generator CPU % of one core", lambda r: r["client_cpu_pct"], "%.0f"),
]
names = [b for b in ("sqlite", "postgresql") if b in by]
print("| median of %s | %s |" % ("/".join(str(len(by[b])) for b in names), " | ".join(names)))
print("|---|" + "---:|" * len(names))
for label, f, fmt in rows:
    cells = []
    for b in names:
        if f is None:
            cells.append(fmt % sum(r["errors"] + r["enrol_errors"] for r in by[b]))
        elif label.startswith("PostgreSQL") and b == "sqlite":
            cells.append("(in server)")
        else:
            cells.append(fmt % med(by[b], f))
    print("| %s | %s |" % (label, " | ".join(cells)))
errs = [r["last_error"] for r in runs if r.get("last_error")]
if errs:
    print("\nLast error reported: %s" % errs[-1])
EOF
} > "$ROOT/bench/results/fleet.md"
cat "$ROOT/bench/results/fleet.md"
