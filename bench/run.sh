#!/usr/bin/env bash
# bench/run.sh BUILD_DIR — `make bench`: shoji against a direct connection and
# its peers (Squid ssl-bump, mitmproxy, privoxy, tinyproxy), all inside a
# private network namespace with only loopback. See docs/PERFORMANCE.md.
#   BENCH_QUICK=1   one repeat, short runs, 2,000 held (~4 minutes)
#   BENCH_REPEATS=N repeats of every figure, medians reported (default 3; 1 quick)
#   BENCH_HOLD=N    idle connections held per proxy (default 10000; 2000 quick;
#                   0 skips the hold tests)
#   BENCH_FIGURES="ka new bulk rate"   run only these of the four main figures
#   BENCH_FIRST_N=N never-seen names per first-contact series (default 20)
#   BENCH_KA_CONN=N keep-alive connections of the keep-alive figure (default 16)
#   BENCH_RATE_SLICES=N / BENCH_RATE_SLICE_T=S  the fixed-rate figure in N
#                   slices of S seconds per configuration, taken in turns
#                   (default 5 x 2 s; 2 x 2 s quick)
#   BENCH_KEEP=1    keep the work directory (configs, logs, raw JSON)
#   BENCH_ONLY="direct shoji-decode ..."   run only these configurations
#   BENCH_MODULES=0 / BENCH_FLEET=0   skip bench/modules.sh / bench/fleet.sh
#   BENCH_SHOJI_WORKERS=N  shoji's --workers (default: half the cores, at least 1)
#   BENCH_SQUID_WORKERS=N  Squid's workers (default: the number of cores)
#   BENCH_PROFILE=1 instead: shoji under callgrind (decode keep-alive, new
#                   decoded connections, new tunnels): bench/results/profile-*.txt
#   BENCH_PROFILE=tunnel  the tunnelled bulk case probed: syscalls, splice sizes,
#                   ss -tmi, perf (bench/results/tunnel-probe.txt)
#   BENCH_PROFILE=tunnel-ab  two builds (PROBE_A, PROBE_B) alternated on the same
#                   case: CPU and syscalls per MiB (bench/results/tunnel-ab.txt)
#   BENCH_PROFILE=perf  the same cases sampled with perf (kernel included):
#                   bench/results/perf-*.txt
#   BENCH_PROFILE=sched  the rate test of direct, null-relay and shoji-decode
#                   under a system-wide scheduler trace, PROBE_ROUNDS (2) x
#                   PROBE_SECS (8): where a slow request's time goes
#                   (bench/results/sched-rate.txt; traces in bench/results/sched/)
# Output: bench/results/latest.md (printed) and bench/results/latest.jsonl.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# Every proxy runs with the environment a system service has: some shells
# export SSL_CERT_FILE/SSL_CERT_DIR, which make OpenSSL parse the whole CA
# bundle at start (about 0.8 MiB of shoji's idle RSS; docs/CA.md).
unset SSL_CERT_FILE SSL_CERT_DIR

# The knobs, read the same way outside and inside the namespace.
QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
  REPEATS=${BENCH_REPEATS:-1} HOLD=${BENCH_HOLD:-2000} T=2 WARM=0.5 SLICES=${BENCH_RATE_SLICES:-2}
else
  REPEATS=${BENCH_REPEATS:-3} HOLD=${BENCH_HOLD:-10000} T=4 WARM=0.5 SLICES=${BENCH_RATE_SLICES:-5}
fi
# the fixed-rate figure: SLICES slices of SLICE_T seconds per configuration
# and repeat, the configurations taking turns slice by slice (see rate_slices)
SLICE_T=${BENCH_RATE_SLICE_T:-2}
FIRST_N=${BENCH_FIRST_N:-20}
# never-seen names: a fresh block of FIRST_N for every repeat
export FIRST_TOTAL=$((FIRST_N * REPEATS))

outer() {
  local build=${1:-$ROOT/build}
  BUILD=$(cd "$build" && pwd) || { echo "bench: no build dir $build" >&2; exit 2; }
  for b in shoji loadgen firstconn hopfloor vcpustall; do
    [ -x "$BUILD/$b" ] || { echo "bench: $BUILD/$b missing (cmake --build $BUILD)" >&2; exit 2; }
  done
  [ "$(id -u)" -eq 0 ] || { echo "bench: needs root (network namespace)" >&2; exit 2; }
  NS=shoji-bench-$$
  W=$(mktemp -d /tmp/shoji-bench.XXXXXX)
  chmod 755 "$W"
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  ip netns add "$NS"
  mkdir -p "/etc/netns/$NS"
  {
    printf '127.0.0.1 localhost origin.bench.test excluded.bench.test\n::1 localhost\n'
    for i in $(seq 1 "$FIRST_TOTAL"); do printf '127.0.0.1 new%d.bench.test\n' "$i"; done
  } > "/etc/netns/$NS/hosts"
  ip netns exec "$NS" ip link set lo up
  ip netns exec "$NS" "$0" --inner "$BUILD" "$W"
}

# Stops every process left in the namespace (all started by this script),
# removes the namespace, its hosts file and (unless BENCH_KEEP) the work dir.
cleanup() {
  local pids p
  pids=$(ip netns pids "$NS" 2>/dev/null || true)
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  [ -z "$pids" ] || sleep 1
  for p in $(ip netns pids "$NS" 2>/dev/null || true); do kill -9 "$p" 2>/dev/null || true; done
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "/etc/netns/$NS"
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench: kept $W" >&2; else rm -rf "$W"; fi
}

if [ "${1:-}" != "--inner" ]; then
  outer "$@"
  exit $?
fi

# ---- inside the namespace ----
BUILD=$2 W=$3
NCPU=$(nproc)
# shoji's event-loop workers: half the cores (at least one). The load
# generator and nginx run on the same cores; measured side by side on 2
# cores, one worker gave ~25% more new decoded connections per second at
# ~25% less CPU each than two, and keep-alive, bulk and the fixed-rate
# latency no worse (docs/PERFORMANCE.md "Workers"). Squid was measured the
# same way and keeps one worker per core, its best here.
SHOJI_WORKERS=${BENCH_SHOJI_WORKERS:-$(( NCPU / 2 > 0 ? NCPU / 2 : 1 ))}
# Squid's `workers` (default: the number of cores, as the issue sets it)
SQUID_WORKERS=${BENCH_SQUID_WORKERS:-$NCPU}
# Every process started from here (loadgen, shoji, nginx, the peers) inherits
# this: 10,000 decoded connections are 20,000 sockets in the proxy.
ulimit -Hn 200000 2>/dev/null || true
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
if [ -d "$ROOT/../shared/data/ut1" ]; then
  SHOJI_DB_SRC=$(cd "$ROOT/../shared/data/ut1" && pwd) DB_NOTE="UT1 (../shared/data/ut1)"
else
  SHOJI_DB_SRC=$ROOT/data/categories DB_NOTE="data/categories (../shared/data/ut1 absent)"
fi
# shellcheck source=bench/peers.sh
. "$ROOT/bench/peers.sh"

if [ "${BENCH_PROFILE:-0}" != 0 ]; then
  # shellcheck source=bench/profile.sh
  . "$ROOT/bench/profile.sh"
  case $BENCH_PROFILE in
    perf) perf_all ;;
    strace) strace_all ;;
    tunnel) tunnel_probe ;;
    tunnel-ab) tunnel_ab ;;
    sched) sched_trace ;;
    *) profile_all ;;
  esac
  exit 0
fi

# estimate: prints what the run will take (seconds per part measured on the
# 2-core machine, quiet; a busy machine stretches the hold tests up to their
# time bounds, which the upper figure assumes).
estimate() {
  local n=0 nshoji=0 npeer=0 cfg per main hold_lo hold_hi extra
  for cfg in $ORDER; do
    n=$((n + 1))
    case $cfg in direct*|shoji-http|null-relay) ;; shoji*) nshoji=$((nshoji + 1)) ;; *) npeer=$((npeer + 1)) ;; esac
  done
  per=$(( $(echo "$FIGURES" | sed 's/rate//' | wc -w) * (T + 3) ))   # per test: T + warm-up + start/drain
  ! want_fig rate || per=$(( per + SLICES * (SLICE_T + 1) ))
  main=$(( 10 + FIRST_TOTAL / 10 + REPEATS * (n * per + 3) + REPEATS * 2 ))
  hold_lo=$(( nshoji * (HOLD / 300 + 8) + npeer * (PEER_HOLD_T + 6) ))
  hold_hi=$(( nshoji * (HOLD_T + 10) + npeer * (PEER_HOLD_T + 6) ))
  [ "$HOLD" -gt 0 ] || hold_lo=0 hold_hi=0
  extra=0
  [ "${BENCH_MODULES:-1}" = 0 ] || extra=$((extra + (QUICK == 1 ? 10 : 20)))
  [ "${BENCH_FLEET:-1}" = 0 ] || extra=$((extra + (QUICK == 1 ? 60 : 240)))
  EST_MAIN=$((main + hold_lo))
  log "estimated time: ~$(( (main + hold_lo + extra + 30) / 60 )) min" \
      "(at most ~$(( (main + hold_hi + extra + 30) / 60 )) min if every hold test runs to its" \
      "time bound): $n configurations x $REPEATS repeats x 4 tests ~$((REPEATS * n * per)) s," \
      "hold tests $hold_lo-$hold_hi s, modules + fleet ~$extra s"
}

# Time bounds of the hold tests (handshakes; what is not open by then is
# reported, not waited for): 120 s for shoji's 10,000, 30 s for each peer.
HOLD_T=$(( HOLD * 12 / 1000 )); [ "$HOLD_T" -ge 20 ] || HOLD_T=20
PEER_HOLD_T=$(( HOLD * 3 / 1000 )); [ "$PEER_HOLD_T" -ge 10 ] || PEER_HOLD_T=10
RATE=200
LOADAVG=$(cut -d" " -f1-3 /proc/loadavg)
RES=$W/results.jsonl
: > "$RES"
ORDER=${BENCH_ONLY:-"direct direct-http null-relay shoji-decode shoji-tunnel shoji-http squid mitmproxy privoxy tinyproxy"}
in_order() { case " $ORDER " in *" $1 "*) return 0 ;; esac; return 1; }
FIGURES=${BENCH_FIGURES:-"ka new bulk rate"}
want_fig() { case " $FIGURES " in *" $1 "*) return 0 ;; esac; return 1; }

log "work dir $W, $NCPU cores, quick=$QUICK, repeats $REPEATS, hold $HOLD, category db from $DB_NOTE"
estimate
if [ "$NOFILE" != unlimited ] && [ $((2 * HOLD + 200)) -gt "$NOFILE" ]; then
  # without CAP_SYS_RESOURCE the hard limit cannot be raised, and a proxy
  # needs two sockets (client + upstream) per held connection
  log "WARNING: open-file limit $NOFILE (hard $(ulimit -Hn), not raisable here) is below" \
      "2 x $HOLD held connections + spare: the proxies cannot hold them all (room for ~$(( (NOFILE - 50) / 2 )))"
fi
RUN_START=$SECONDS
make_certs
make_files
make_policy
declare -A PID
PID[nginx]=$(start_nginx)
PID[shoji]=$(start_shoji)
# A peer starts only if it is measured; one that does not start is left out
# of this run (logged; the report has no row for it) instead of ending it.
for p in null-relay squid mitmproxy privoxy tinyproxy; do
  in_order "$p" || continue
  if pid=$("start_${p//-/_}"); then
    PID[$p]=$pid
  else
    log "$p did not start: left out of this run (its logs are under $W)"
    ORDER=$(echo " $ORDER " | sed "s/ $p / /; s/^ *//; s/ *$//")
  fi
done
sleep 1
# The client trusts exactly the CA that must sign what it sees: the proxy's
# for decoded configurations, the origin's for direct and tunnels. A proxy
# that tunnels when it should decode (or the reverse) fails every request.
declare -A CA=([origin]=$W/pki/ca.crt [shoji]=$W/shoji/state/ca.crt [squid]=$W/squid/ca.crt
  [mitmproxy]=$W/mitm/mitmproxy-ca-cert.pem [privoxy]=$W/privoxy/ca/cacert.crt)
for p in "${!PID[@]}"; do
  printf '{"label":"%s/idle/1","rss_idle_kib":%s,"pid":%s}\n' \
    "$p" "$(rss_tree "${PID[$p]}")" "${PID[$p]}" >> "$RES"
done

# config -> "proxy target plain watched-server expected-CA"
declare -A CFG=(
  [direct]="- $ORIGIN:443 0 - origin"
  [direct-http]="- $ORIGIN:80 1 - origin"
  [null-relay]="- $ORIGIN:$P_RELAY 0 - origin"
  [shoji-decode]="127.0.0.1:$P_SHOJI $ORIGIN:443 0 shoji shoji"
  [shoji-tunnel]="127.0.0.1:$P_SHOJI $EXCLUDED:443 0 shoji origin"
  [shoji-http]="127.0.0.1:$P_SHOJI $ORIGIN:80 1 shoji origin"
  [squid]="127.0.0.1:$P_SQUID $ORIGIN:443 0 squid squid"
  [mitmproxy]="127.0.0.1:$P_MITM $ORIGIN:443 0 mitmproxy mitmproxy"
  [privoxy]="127.0.0.1:$P_PRIVOXY $ORIGIN:443 0 privoxy privoxy"
  [tinyproxy]="127.0.0.1:$P_TINY $ORIGIN:443 0 tinyproxy origin"
)
# lg_run CONFIG LABEL loadgen-args...: one loadgen run against CONFIG, its
# JSON on stdout
lg_run() {
  local cfg=$1 label=$2; shift 2
  local proxy target plain srv ca args=()
  read -r proxy target plain srv ca <<< "${CFG[$cfg]}"
  [ "$proxy" = - ] || args+=(--proxy "$proxy")
  [ "$plain" = 0 ] || args+=(--plain)
  [ "$srv" = - ] || args+=(--watch "${PID[$srv]}")
  "$BUILD/loadgen" --label "$label" --target "$target" --cafile "${CA[$ca]}" \
    "${args[@]}" "$@" 2>>"$W/loadgen.err" || true
}

# lg CONFIG TEST REPEAT loadgen-args...: one loadgen run, its JSON into $RES
lg() {
  local cfg=$1 test=$2 rep=$3; shift 3
  local out
  out=$(lg_run "$cfg" "$cfg/$test/$rep" "$@")
  lg_record "$cfg" "$test" "$rep" "$out"
}

# lg_record CONFIG TEST REPEAT JSON: into $RES, and a line on the terminal
lg_record() {
  local cfg=$1 test=$2 rep=$3 out=$4
  if [ -n "$out" ]; then echo "$out" >> "$RES"; else log "$cfg/$test/$rep: no result"; fi
  printf '  %-14s %-5s #%s %s\n' "$cfg" "$test" "$rep" \
    "$(echo "$out" | /usr/bin/python3 -c 'import json,sys
try:
  d=json.load(sys.stdin)
  print("%8.0f req/s %7.1f MB/s p50 %6.0f us p99 %6.0f us cpu %7.1f us/req errors %d" % (d["rps"], d["mb_per_s"], d["lat_us"]["p50"], d["lat_us"]["p99"], d["proxy_cpu_us_per_req"], d["errors"]))
except Exception as e: print("?", e)')" >&2
}

run_tests() { # CONFIG REPEAT
  ! want_fig ka || lg "$1" ka "$2" --mode ka -c "${BENCH_KA_CONN:-16}" -t "$T" --warmup "$WARM" --path /1k --expect-len 1024
  ! want_fig new || lg "$1" new "$2" --mode new -c 8 -t "$T" --warmup "$WARM" --path /1k --expect-len 1024
  ! want_fig bulk || lg "$1" bulk "$2" --mode bulk -c 2 -t "$T" --warmup "$WARM" --path /10m --expect-len 10485760
}

# The fixed-rate figure of one repeat. This machine's speed changes from
# second to second (other tenants), and a p99 taken over one 4 s stretch per
# configuration compared configurations measured in different weather. So
# each configuration runs SLICES slices of SLICE_T seconds, the
# configurations taking turns slice by slice, and its figure is taken over
# all its slices' requests together (bench/ratemerge.py: percentiles of the
# pooled latencies, CPU and requests summed).
rate_slices() { # REPEAT
  local rep=$1 s cfg out
  mkdir -p "$W/rate"
  for s in $(seq 1 "$SLICES"); do
    for cfg in $ORDER; do
      lg_run "$cfg" "$cfg/rate/$rep" --mode rate -c 8 --rate "$RATE" -t "$SLICE_T" --warmup 0.3 \
        --path /1k --expect-len 1024 --lat-log "$W/rate/$cfg.$rep.$s.lat" >> "$W/rate/$cfg.$rep.jsonl"
    done
  done
  for cfg in $ORDER; do
    out=$(/usr/bin/python3 "$ROOT/bench/ratemerge.py" "$cfg/rate/$rep" "$W/rate/$cfg.$rep.jsonl" \
          "$W/rate/$cfg.$rep".*.lat 2>>"$W/loadgen.err") || out=
    lg_record "$cfg" rate "$rep" "$out"
  done
}

# First contact on the running, warm shoji: one firstconn process per repeat
# takes FIRST_N names nobody has asked for yet (block REPEAT of new1..newN)
# and times, per name, a direct new connection, a decoded one (the mint) and
# a second decoded one (leaf cached). See bench/firstconn.c.
first_series() { # REPEAT
  local rep=$1 names out
  names=$(seq $(( (rep - 1) * FIRST_N + 1 )) $(( rep * FIRST_N )) | sed 's/.*/new&.bench.test/' |
          paste -sd,)
  out=$("$BUILD/firstconn" --label "shoji-mint/series/$rep" --proxy 127.0.0.1:$P_SHOJI \
        --proxy-ca "${CA[shoji]}" --origin-ca "${CA[origin]}" --names "$names" \
        --warm-host "$ORIGIN" --warm 5 --path /1k --expect-len 1024 -t 120 \
        --watch "${PID[shoji]}" 2>>"$W/loadgen.err") || true
  if [ -n "$out" ]; then echo "$out" >> "$RES"; else log "shoji-mint/series/$rep: no result"; fi
  printf '  %-14s %-5s #%s %s\n' shoji-mint series "$rep" "$(echo "$out" | /usr/bin/python3 -c '
import json,sys
try:
  d=json.load(sys.stdin)
  print("%d names: direct %d us, first %d us (%+d), cached %d us (%+d), errors %d" % (d["names"],
    d["direct"]["p50"], d["first"]["p50"], d["added_first"]["p50"], d["cached"]["p50"],
    d["added_cached"]["p50"], d["errors"]))
except Exception as e: print("?", e)')" >&2
}

# The floor under every proxy's added latency on this machine: the same
# fixed-rate exchange of 1 KiB each way, straight to an echo process and
# through one relay process that only forwards (bench/hopfloor.c). What a
# hop costs here in process wake-ups, whatever the proxy does.
# The same exchange through the CONNECT tunnel of shoji (the excluded host)
# and of tinyproxy sets their hop beside the do-nothing one, client and echo
# unchanged.
floor_pair() { # REPEAT
  local n k out
  n=$(awk -v r="$RATE" -v t="$T" 'BEGIN { print int(r * t) }')
  local -a kinds=("0:--hops 0" "1:--hops 1")
  ! in_order shoji-tunnel || kinds+=("shoji:--proxy 127.0.0.1:$P_SHOJI --connect-name $EXCLUDED")
  ! in_order tinyproxy || kinds+=("tinyproxy:--proxy 127.0.0.1:$P_TINY --echo-port $P_ECHO")
  for k in "${kinds[@]}"; do
    # shellcheck disable=SC2086
    out=$("$BUILD/hopfloor" --label "floor-${k%%:*}/rate/$1" ${k#*:} --rate "$RATE" -n "$n" \
          2>>"$W/loadgen.err") || true
    if [ -n "$out" ]; then echo "$out" >> "$RES"; else log "floor-${k%%:*}/rate/$1: no result"; fi
  done
  # and how often this machine's CPUs stop under a running thread (in a VM:
  # the hypervisor's other work, often not shown as steal time): a request
  # whose path sits on a stalled CPU is late by the stall, whatever the hop
  out=$("$BUILD/vcpustall" --seconds 2 --label "stall/cpu/$1" 2>>"$W/loadgen.err") || true
  if [ -n "$out" ]; then echo "$out" >> "$RES"; else log "stall/cpu/$1: no result"; fi
}

for rep in $(seq 1 "$REPEATS"); do
  log "repeat $rep/$REPEATS ($((SECONDS - RUN_START)) s so far)"
  for cfg in $ORDER; do run_tests "$cfg" "$rep"; done
  if want_fig rate; then rate_slices "$rep"; floor_pair "$rep"; fi
  if in_order shoji-decode && want_fig new && [ "$FIRST_N" -gt 0 ]; then first_series "$rep"; fi
done

# A fresh shoji for each of its hold tests: glibc keeps what a burst of
# connections allocated, so a second hold on the same process would reuse it.
restart_shoji() {
  local old=${PID[shoji]} i
  kill "$old" 2>/dev/null || true
  for i in $(seq 1 100); do [ -d "/proc/$old" ] || break; sleep 0.1; done
  PID[shoji]=$(start_shoji)
  sleep 1
  printf '{"label":"shoji/idle/%s","rss_idle_kib":%s,"pid":%s}\n' \
    "$1" "$(rss_tree "${PID[shoji]}")" "${PID[shoji]}" >> "$RES"
}

[ "$HOLD" -eq 0 ] || log "held idle connections: $HOLD each ($((SECONDS - RUN_START)) s so far)"
for cfg in $ORDER; do
  [ "$HOLD" -gt 0 ] || break
  case $cfg in direct*|shoji-http|null-relay) continue ;; esac
  t=$PEER_HOLD_T
  case $cfg in shoji*) t=$HOLD_T; restart_shoji "$cfg" ;; esac
  lg "$cfg" hold 1 --mode hold --hold "$HOLD" -c 64 -t "$t" --hold-time 3 --path /1k \
    --expect-len 1024 --io-timeout 20
  read -r _ _ _ srv _ <<< "${CFG[$cfg]}"
  printf '{"label":"%s/holdfds/1","fds_limit":"%s"}\n' "$cfg" "$(fd_limit "${PID[$srv]}")" >> "$RES"
  sleep 2
done

# First contact on a fresh process (kept as its own line: it adds process
# start-up, a cold /proc walk and a cold OpenSSL to the mint): a new shoji
# (same CA, empty certificate cache) and a new loadgen for its first request.
in_order shoji-decode && want_fig new && log "first contact on a fresh shoji ($((SECONDS - RUN_START)) s so far)"
for rep in $(seq 1 "$REPEATS"); do
  in_order shoji-decode && want_fig new || break
  st=$W/shoji-first-$rep
  mkdir -p "$st"
  cp "$W/shoji/state/ca.crt" "$W/shoji/state/ca.key" "$st/"
  "$BUILD/shoji" run --listen 127.0.0.1:3140 --state-dir "$st" --policy "$W/shoji/policy.json" \
    --upstream-ca "$W/pki/ca.crt" --access-log /dev/null --workers "$SHOJI_WORKERS" \
    >"$st/stdout.log" 2>&1 &
  fpid=$!
  wait_port 3140
  CFG[shoji-first]="127.0.0.1:3140 $ORIGIN:443 0 - shoji"
  lg shoji-first first "$rep" --mode new -c 1 -n 1 -t 10
  lg shoji-first warm "$rep" --mode new -c 1 -n 50 -t 10
  lg direct first "$rep" --mode new -c 1 -n 50 -t 10
  kill "$fpid"; wait "$fpid" 2>/dev/null || true
done

log "measurements done in $((SECONDS - RUN_START)) s (estimated $EST_MAIN s)"
mkdir -p "$ROOT/bench/results"
cp "$RES" "$ROOT/bench/results/latest.jsonl"
{
  echo "Run: $(date -u '+%Y-%m-%d %H:%M UTC'), BENCH_QUICK=$QUICK, repeats $REPEATS, ${T}s per run" \
       "(+${WARM}s warm-up; the fixed rate in $SLICES slices of ${SLICE_T}s per configuration," \
       "taken in turns), $HOLD held per proxy, $FIRST_N never-seen names per first-contact" \
       "series, load average at start: $LOADAVG; measurements took $((SECONDS - RUN_START)) s;" \
       "shoji --workers $SHOJI_WORKERS, Squid workers $SQUID_WORKERS."
  echo "Category database: $DB_NOTE."
  echo
  versions
  echo
  /usr/bin/python3 "$ROOT/bench/report.py" "$RES"
} > "$ROOT/bench/results/latest.md"
cat "$ROOT/bench/results/latest.md"
[ "${BENCH_MODULES:-1}" = 0 ] || "$ROOT/bench/modules.sh" "$BUILD" || log "module benchmarks (bench/modules.sh) failed"
[ "${BENCH_FLEET:-1}" = 0 ] || "$ROOT/bench/fleet.sh" "$BUILD" || log "fleet simulation (bench/fleet.sh) failed"
