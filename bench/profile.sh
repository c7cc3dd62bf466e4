# bench/profile.sh — sourced by bench/run.sh when BENCH_PROFILE=1 (inside the
# bench namespace): runs shoji (one worker) under valgrind's callgrind, with
# instrumentation switched on only around a fixed amount of load, and writes
# the annotated profiles to bench/results/profile-CASE.txt. Only the event
# loops are counted (--toggle-collect=uv_run): start-up (policy, category
# database) is left out; the 3-connection warm-up (first mint) is in.
# Cases: ka (decode keep-alive), new (new decoded connections), tunnel (new
# connections to an excluded host), http (plain HTTP keep-alive).

profile_case() { # CASE loadgen-args...
  local case=$1; shift
  local out=$W/prof/callgrind.$case.out
  mkdir -p "$W/prof"
  valgrind --tool=callgrind --collect-atstart=no --toggle-collect=uv_run \
    --callgrind-out-file="$out" \
    "$BUILD/shoji" run --listen 127.0.0.1:$P_SHOJI --state-dir "$W/shoji/state" \
    --policy "$W/shoji/policy.json" --upstream-ca "$W/pki/ca.crt" \
    --access-log /dev/null --workers 1 >"$W/prof/$case.log" 2>&1 &
  local pid=$!
  wait_port $P_SHOJI 120 || return 1
  # warm: leaf minted and cached, process lookup cache filled
  "$BUILD/loadgen" --label warm --proxy 127.0.0.1:$P_SHOJI --target "$ORIGIN:443" \
    --cafile "$CAS" --mode new -c 1 -n 3 -t 60 >/dev/null 2>&1 || true
  "$BUILD/loadgen" --label "profile/$case/1" --proxy 127.0.0.1:$P_SHOJI \
    --watch "$pid" "$@" | tee -a "$W/prof/loadgen.jsonl" >&2 || true
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  {
    echo "# callgrind profile of shoji, case $case: loadgen $*"
    echo "## inclusive"
    callgrind_annotate --inclusive=yes "$out" 2>/dev/null | head -70 || true
    echo "## exclusive (self)"
    callgrind_annotate "$out" 2>/dev/null | head -60 || true
  } > "$ROOT/bench/results/profile-$case.txt"
  cp "$out" "$ROOT/bench/results/callgrind.$case.out"
  log "profile $case: bench/results/profile-$case.txt"
}

profile_all() {
  mkdir -p "$ROOT/bench/results"
  make_certs
  make_files
  make_policy
  start_nginx >/dev/null
  "$BUILD/shoji" ca init --state-dir "$W/shoji/state" >/dev/null
  CAS=$W/clients-ca.pem
  cat "$W/pki/ca.crt" "$W/shoji/state/ca.crt" > "$CAS"
  local cases=${BENCH_PROFILE_CASES:-"ka new tunnel http"}
  for c in $cases; do
    case $c in
      ka) profile_case ka --target "$ORIGIN:443" --cafile "$W/shoji/state/ca.crt" --mode ka -c 4 -n 4000 -t 120 --expect-len 1024 ;;
      new) profile_case new --target "$ORIGIN:443" --cafile "$W/shoji/state/ca.crt" --mode new -c 2 -n 200 -t 120 --expect-len 1024 ;;
      tunnel) profile_case tunnel --target "$EXCLUDED:443" --cafile "$W/pki/ca.crt" --mode new -c 2 -n 200 -t 120 --expect-len 1024 ;;
      http) profile_case http --target "$ORIGIN:80" --cafile "$W/pki/ca.crt" --plain --mode ka -c 4 -n 4000 -t 120 --expect-len 1024 ;;
    esac
  done
}

# perf (software cpu-clock sampling: this VM has no hardware counters) of the
# release shoji as benchmarked, kernel included: callgrind sees user space
# only, and for keep-alive most of the proxy's time is in the kernel.
perf_case() { # CASE SECONDS loadgen-args...
  local case=$1 secs=$2; shift 2
  local data=$W/prof/perf.$case.data
  mkdir -p "$W/prof"
  perf record -e cpu-clock -F 4000 -p "$SHOJI_PID" -o "$data" -- sleep "$secs" \
    >/dev/null 2>&1 &
  local ppid=$!
  "$BUILD/loadgen" --label "perf/$case/1" --proxy 127.0.0.1:$P_SHOJI \
    --watch "$SHOJI_PID" -t "$((secs - 1))" "$@" | tee -a "$W/prof/loadgen.jsonl" >&2 || true
  wait "$ppid" || true
  {
    echo "# perf cpu-clock profile of shoji ($NCPU workers), case $case: loadgen $*"
    echo "## by object"
    perf report -i "$data" --no-children --sort dso --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -15 || true
    echo "## by symbol"
    perf report -i "$data" --no-children --sort dso,sym --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -70 || true
  } > "$ROOT/bench/results/perf-$case.txt"
  log "perf $case: bench/results/perf-$case.txt"
}

# origin, release shoji (all workers) and a warm leaf, for perf and strace
profiled_shoji_up() {
  mkdir -p "$ROOT/bench/results"
  make_certs
  make_files
  make_policy
  start_nginx >/dev/null
  SHOJI_PID=$(start_shoji)
  CAS=$W/clients-ca.pem
  cat "$W/pki/ca.crt" "$W/shoji/state/ca.crt" > "$CAS"
  "$BUILD/loadgen" --label warm --proxy 127.0.0.1:$P_SHOJI --target "$ORIGIN:443" \
    --cafile "$CAS" --mode new -c 1 -n 3 -t 20 >/dev/null 2>&1 || true
}

perf_all() {
  profiled_shoji_up
  local cases=${BENCH_PROFILE_CASES:-"ka new tunnel http"}
  for c in $cases; do
    case $c in
      ka) perf_case ka 8 --target "$ORIGIN:443" --cafile "$W/shoji/state/ca.crt" --mode ka -c 16 --expect-len 1024 ;;
      new) perf_case new 8 --target "$ORIGIN:443" --cafile "$W/shoji/state/ca.crt" --mode new -c 8 --expect-len 1024 ;;
      tunnel) perf_case tunnel 8 --target "$EXCLUDED:443" --cafile "$W/pki/ca.crt" --mode new -c 8 --expect-len 1024 ;;
      http) perf_case http 8 --target "$ORIGIN:80" --cafile "$W/pki/ca.crt" --plain --mode ka -c 16 --expect-len 1024 ;;
    esac
  done
}

# strace -c of the release shoji (all threads) around a fixed number of
# requests: system calls per request, the other half of the proxy's CPU.
strace_case() { # CASE loadgen-args...
  local case=$1; shift
  local out=$W/prof/strace.$case.txt
  mkdir -p "$W/prof"
  strace -c -f -o "$out" -p "$SHOJI_PID" >/dev/null 2>&1 &
  local spid=$!
  sleep 1
  "$BUILD/loadgen" --label "strace/$case/1" --proxy 127.0.0.1:$P_SHOJI \
    --watch "$SHOJI_PID" "$@" | tee -a "$W/prof/loadgen.jsonl" >&2 || true
  kill -INT "$spid"
  wait "$spid" 2>/dev/null || true
  { echo "# strace -c of shoji ($NCPU workers), case $case: loadgen $*"; cat "$out"; } \
    > "$ROOT/bench/results/strace-$case.txt"
  log "strace $case: bench/results/strace-$case.txt"
}

strace_all() {
  profiled_shoji_up
  local cases=${BENCH_PROFILE_CASES:-"ka new tunnel http"}
  for c in $cases; do
    case $c in
      ka) strace_case ka --target "$ORIGIN:443" --cafile "$W/shoji/state/ca.crt" --mode ka -c 4 -n 2000 -t 60 --expect-len 1024 ;;
      new) strace_case new --target "$ORIGIN:443" --cafile "$W/shoji/state/ca.crt" --mode new -c 2 -n 200 -t 60 --expect-len 1024 ;;
      tunnel) strace_case tunnel --target "$EXCLUDED:443" --cafile "$W/pki/ca.crt" --mode new -c 2 -n 200 -t 60 --expect-len 1024 ;;
      http) strace_case http --target "$ORIGIN:80" --cafile "$W/pki/ca.crt" --plain --mode ka -c 4 -n 2000 -t 60 --expect-len 1024 ;;
    esac
  done
}
