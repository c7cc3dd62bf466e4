# bench/profile.sh — sourced by bench/run.sh when BENCH_PROFILE=1 (inside the
# bench namespace): runs shoji (one worker) under valgrind's callgrind, with
# instrumentation switched on only around a fixed amount of load, and writes
# the annotated profiles to bench/results/profile-CASE.txt. Only the event
# loops are counted (--toggle-collect=uv_run): start-up (policy, category
# database) is left out; the 3-connection warm-up (first mint) is in.
# Cases: ka (decode keep-alive), new (new decoded connections), tunnel (new
# connections to an excluded host), http (plain HTTP keep-alive); perf and
# strace also have tbulk (10 MiB downloads through a tunnel, 2 connections).

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
  if [ "$case" = first ]; then
    first_client profile/first "$pid" 1 "$FIRST_TOTAL" | tee -a "$W/prof/loadgen.jsonl" >&2 || true
  else
    "$BUILD/loadgen" --label "profile/$case/1" --proxy 127.0.0.1:$P_SHOJI \
      --watch "$pid" "$@" | tee -a "$W/prof/loadgen.jsonl" >&2 || true
  fi
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
      first) profile_case first ;;
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
  if [ "$case" = first ]; then
    first_client perf/first "$SHOJI_PID" 1 "$FIRST_TOTAL" | tee -a "$W/prof/loadgen.jsonl" >&2 || true
  else
    "$BUILD/loadgen" --label "perf/$case/1" --proxy 127.0.0.1:$P_SHOJI \
      --watch "$SHOJI_PID" -t "$((secs - 1))" "$@" | tee -a "$W/prof/loadgen.jsonl" >&2 || true
  fi
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

# first-contact client for the profile cases: one firstconn series over the
# never-seen names FROM..TO (new1..newFIRST_TOTAL exist in the namespace).
first_client() { # LABEL PID FROM TO
  local names
  names=$(seq "$3" "$4" | sed 's/.*/new&.bench.test/' | paste -sd,)
  "$BUILD/firstconn" --label "$1" --proxy 127.0.0.1:$P_SHOJI \
    --proxy-ca "$W/shoji/state/ca.crt" --origin-ca "$W/pki/ca.crt" --names "$names" \
    --warm-host "$ORIGIN" --warm 5 --path /1k --expect-len 1024 -t 300 --watch "$2"
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
      tbulk) perf_case tbulk 8 --target "$EXCLUDED:443" --cafile "$W/pki/ca.crt" --mode bulk -c 2 --path /10m --expect-len 10485760 ;;
      http) perf_case http 8 --target "$ORIGIN:80" --cafile "$W/pki/ca.crt" --plain --mode ka -c 16 --expect-len 1024 ;;
      rate) perf_case rate 8 --target "$ORIGIN:443" --cafile "$W/shoji/state/ca.crt" --mode rate -c 8 --rate 200 --path /1k --expect-len 1024 ;;
      first) perf_case first 30 ;;
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
  if [ "$case" = first ]; then
    first_client strace/first "$SHOJI_PID" 1 "$FIRST_TOTAL" | tee -a "$W/prof/loadgen.jsonl" >&2 || true
  else
    "$BUILD/loadgen" --label "strace/$case/1" --proxy 127.0.0.1:$P_SHOJI \
      --watch "$SHOJI_PID" "$@" | tee -a "$W/prof/loadgen.jsonl" >&2 || true
  fi
  kill -INT "$spid"
  wait "$spid" 2>/dev/null || true
  { echo "# strace -c of shoji ($NCPU workers), case $case: loadgen $*"; cat "$out"; } \
    > "$ROOT/bench/results/strace-$case.txt"
  log "strace $case: bench/results/strace-$case.txt"
}

# BENCH_PROFILE_CASES=timeline: one first-contact series of a few names with
# shoji, nginx and the client all under strace -f -ttt -T, merged into one
# time line (bench/results/timeline-first.txt): where the wall time of a
# first contact goes between the three processes.
timeline_first() {
  local out=$W/prof/tl
  mkdir -p "$W/prof"
  strace -f -ttt -T -o "$out.shoji" -p "$SHOJI_PID" >/dev/null 2>&1 &
  local s1=$!
  local np
  np=$(cat "$W/nginx/nginx.pid")
  strace -f -ttt -T -o "$out.nginx" -p "$np" $(pgrep -P "$np" | sed 's/^/-p /') >/dev/null 2>&1 &
  local s2=$!
  sleep 1
  strace -f -ttt -T -o "$out.client" "$BUILD/firstconn" --label tl --proxy 127.0.0.1:$P_SHOJI \
    --proxy-ca "$W/shoji/state/ca.crt" --origin-ca "$W/pki/ca.crt" \
    --names "$(seq 1 "$FIRST_TOTAL" | sed 's/.*/new&.bench.test/' | paste -sd,)" \
    --warm-host "$ORIGIN" --warm 2 --path /1k --expect-len 1024 -t 60 >&2 || true
  kill -INT "$s1" "$s2"; wait "$s1" "$s2" 2>/dev/null || true
  for k in shoji nginx client; do sed "s/^/$k /" "$out.$k"; done |
    sort -k3,3n > "$ROOT/bench/results/timeline-first.txt"
  log "timeline: bench/results/timeline-first.txt"
}

strace_all() {
  profiled_shoji_up
  local cases=${BENCH_PROFILE_CASES:-"ka new tunnel http"}
  for c in $cases; do
    case $c in
      ka) strace_case ka --target "$ORIGIN:443" --cafile "$W/shoji/state/ca.crt" --mode ka -c 4 -n 2000 -t 60 --expect-len 1024 ;;
      new) strace_case new --target "$ORIGIN:443" --cafile "$W/shoji/state/ca.crt" --mode new -c "${BENCH_NEW_CONN:-2}" -n 400 -t 60 --expect-len 1024 ;;
      tunnel) strace_case tunnel --target "$EXCLUDED:443" --cafile "$W/pki/ca.crt" --mode new -c 2 -n 200 -t 60 --expect-len 1024 ;;
      tbulk) strace_case tbulk --target "$EXCLUDED:443" --cafile "$W/pki/ca.crt" --mode bulk -c 2 -n 100 -t 60 --path /10m --expect-len 10485760 ;;
      http) strace_case http --target "$ORIGIN:80" --cafile "$W/pki/ca.crt" --plain --mode ka -c 4 -n 2000 -t 60 --expect-len 1024 ;;
      rate) strace_case rate --target "$ORIGIN:443" --cafile "$W/shoji/state/ca.crt" --mode rate -c 8 --rate 200 -n 1000 -t 10 --path /1k --expect-len 1024 ;;
      first) strace_case first ;;
      timeline) timeline_first ;;
    esac
  done
}

# BENCH_PROFILE=tunnel: the tunnelled bulk case (10 MiB downloads of the
# excluded host, 2 connections, as the bench's bulk figure) probed while it
# runs: system calls by kind (perf stat tracepoints on the agent), splice
# sizes (strace of 0.5 s), socket buffers (ss -tmi), and then a perf
# profile with call graphs, kernel included. bench/results/tunnel-probe.txt.
tunnel_probe() {
  profiled_shoji_up
  local out=$ROOT/bench/results/tunnel-probe.txt secs=${PROBE_SECS:-6}
  mkdir -p "$W/prof"
  local lgargs=(--proxy "127.0.0.1:$P_SHOJI" --target "$EXCLUDED:443" --cafile "$W/pki/ca.crt"
                --mode bulk -c 2 --path /10m --expect-len 10485760 --watch "$SHOJI_PID")
  local n=${PROBE_N:-60}
  export NSTAT_HISTORY=$W/nstat.history
  {
    echo "# tunnel bulk probe: shoji $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null), $NCPU workers"
    echo "## direct: $n x 10 MiB, 2 connections (TCP counters of the namespace after it)"
    nstat -n
    "$BUILD/loadgen" --label probe/direct -n "$n" -t 120 --target "$ORIGIN:443" --cafile "$W/pki/ca.crt" \
      --watch "$(cat "$W/nginx/nginx.pid")" --mode bulk -c 2 --path /10m --expect-len 10485760 2>/dev/null
    nstat | grep -E 'TcpRetransSegs|BacklogDrop|RcvQDrop|OFOQueue|TCPSackRecovery|TCPLossProbes|DSACKRecv|TcpExtTCPRcvCoalesce|PruneCalled|RcvPruned|TCPAutoCorking|ListenDrops' || true
    echo "## tunnel: $n x 10 MiB, 2 connections, perf stat of the agent for the whole run"
    nstat -n
    perf stat -x, -p "$SHOJI_PID" -e raw_syscalls:sys_enter -e syscalls:sys_enter_splice \
      -e syscalls:sys_enter_epoll_wait -e syscalls:sys_enter_epoll_ctl \
      -e syscalls:sys_enter_recvfrom -e syscalls:sys_enter_sendto \
      -e context-switches -e task-clock -- \
      "$BUILD/loadgen" --label probe/stat -n "$n" -t 120 "${lgargs[@]}" 2>&1
    nstat | grep -E 'TcpRetransSegs|BacklogDrop|RcvQDrop|OFOQueue|TCPSackRecovery|TCPLossProbes|DSACKRecv|TcpExtTCPRcvCoalesce|PruneCalled|RcvPruned|TCPAutoCorking|ListenDrops' || true
    "$BUILD/loadgen" --label probe/ss -t "$secs" "${lgargs[@]}" >/dev/null 2>&1 &
    local lpid=$!
    sleep 1
    echo "## ss -tmi (agent sockets, mid-transfer)"
    ss -tmiepn "( sport = :$P_SHOJI or dport = :443 )" 2>&1 | grep -A1 "shoji\|pid=$SHOJI_PID" | head -40
    echo "## strace of 0.5 s: splice results"
    timeout -s INT 0.5 strace -f -e trace=splice,epoll_wait,recvfrom,sendto -p "$SHOJI_PID" \
      -o "$W/prof/probe.strace" 2>/dev/null || true
    wait "$lpid"
    echo
    /usr/bin/python3 - "$W/prof/probe.strace" <<'PY'
import re, sys, collections
sz = collections.Counter(); calls = collections.Counter(); tot = collections.Counter()
for line in open(sys.argv[1]):
    m = re.search(r'(splice|epoll_wait|recvfrom|sendto)\((\d+), [^=]*= (-?\d+)', line)
    if not m:
        continue
    name, fd, r = m.group(1), m.group(2), int(m.group(3))
    calls[name] += 1
    if name == 'splice' and r > 0:
        tot['splice'] += r
        b = 1 << max(0, r.bit_length() - 1)
        sz[b] += 1
    if name == 'splice' and r < 0:
        calls['splice EAGAIN'] += 1
    if name == 'epoll_wait':
        tot['events'] += max(r, 0)
        if r == 0:
            calls['epoll_wait 0'] += 1
print("calls:", dict(calls))
print("bytes spliced: %d (%.1f MiB; in+out, so /2 relayed)" % (tot['splice'], tot['splice'] / 2**20))
if calls['splice']:
    print("bytes per successful splice: %.0f" % (tot['splice'] / max(1, calls['splice'] - calls['splice EAGAIN'])))
print("splice sizes (power of 2 floor: count):", sorted(sz.items()))
PY
  } > "$out" 2>&1
  log "tunnel probe (stat, ss, strace): $out"
  [ "${PROBE_PERF:-1}" = 1 ] || return 0
  perf_case tbulk 8 --target "$EXCLUDED:443" --cafile "$W/pki/ca.crt" --mode bulk -c 2 \
    --path /10m --expect-len 10485760
  perf record -g -e cpu-clock -F 2000 -p "$SHOJI_PID" -o "$W/prof/perf.tbulk-g.data" -- sleep 4 \
    >/dev/null 2>&1 &
  local ppid=$!
  "$BUILD/loadgen" --label perf/tbulk-g -t 3 "${lgargs[@]}" >/dev/null 2>&1 || true
  wait "$ppid" || true
  {
    echo "## inclusive (children) by symbol, kernel included"
    perf report -i "$W/prof/perf.tbulk-g.data" --children --sort sym --stdio -g none 2>/dev/null |
      grep -v '^#' | grep -v '^$' | head -80
    echo "## call graph (caller first)"
    perf report -i "$W/prof/perf.tbulk-g.data" --children --sort sym --stdio -G 2>/dev/null |
      grep -v '^$' | head -300
  } > "$ROOT/bench/results/perf-tbulk-callers.txt" || true
}

# BENCH_PROFILE=tunnel-ab: two shoji builds (or one build with two
# environments) side by side in one namespace, same nginx, the tunnelled bulk
# case alternated A, B, A, B... PROBE_ROUNDS times (default 8), PROBE_N
# downloads of 10 MiB each (default 100), 2 connections; per run the agent's
# task-clock (perf stat) per MiB, system calls per MiB and MB/s; then the
# medians. PROBE_A / PROBE_B: shoji binaries (default: this build's);
# PROBE_A_ENV / PROBE_B_ENV: "VAR=value ..." for each. A direct run is
# interleaved too (MB/s and nginx CPU). bench/results/tunnel-ab.txt.
tunnel_ab() {
  mkdir -p "$ROOT/bench/results" "$W/prof"
  make_certs
  make_files
  make_policy
  start_nginx >/dev/null
  local v bin envs port pids=() out=$ROOT/bench/results/tunnel-ab.txt
  local rounds=${PROBE_ROUNDS:-8} n=${PROBE_N:-100} ngx
  ngx=$(cat "$W/nginx/nginx.pid")
  for v in A B; do
    eval "bin=\${PROBE_$v:-$BUILD/shoji}; envs=\${PROBE_${v}_ENV:-}"
    port=$([ $v = A ] && echo 3141 || echo 3142)
    mkdir -p "$W/ab$v"
    "$bin" ca init --state-dir "$W/ab$v" >/dev/null
    # shellcheck disable=SC2086
    env $envs "$bin" run --listen 127.0.0.1:$port --state-dir "$W/ab$v" --policy "$W/shoji/policy.json" \
      --upstream-ca "$W/pki/ca.crt" --access-log /dev/null --workers "$SHOJI_WORKERS" \
      >"$W/ab$v.log" 2>&1 &
    pids+=($!)
    wait_port $port 120
  done
  {
    echo "# tunnel A/B: A=${PROBE_A:-$BUILD/shoji} ${PROBE_A_ENV:-}; B=${PROBE_B:-$BUILD/shoji} ${PROBE_B_ENV:-}"
    echo "# $rounds rounds x ($n x 10 MiB, 2 connections); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    local r i
    for r in $(seq 1 "$rounds"); do
      "$BUILD/loadgen" --label "ab/direct/$r" -n "$n" -t 120 --target "$ORIGIN:443" --cafile "$W/pki/ca.crt" \
        --watch "$ngx" --mode bulk -c 2 --path /10m --expect-len 10485760 2>/dev/null
      for i in 0 1; do
        v=$([ $i = 0 ] && echo A || echo B); port=$([ $i = 0 ] && echo 3141 || echo 3142)
        perf stat -x, -o "$W/prof/ab.$v.$r" -p "${pids[$i]}" -e raw_syscalls:sys_enter \
          -e syscalls:sys_enter_splice -e syscalls:sys_enter_epoll_wait -e context-switches \
          -e task-clock -- "$BUILD/loadgen" --label "ab/$v/$r" -n "$n" -t 120 --proxy 127.0.0.1:$port \
          --target "$EXCLUDED:443" --cafile "$W/pki/ca.crt" --watch "${pids[$i]}" --mode bulk -c 2 \
          --path /10m --expect-len 10485760 2>/dev/null
        echo "#stat $v $r $(grep -v '^#' "$W/prof/ab.$v.$r" | grep . | cut -d, -f1,3 | paste -sd' ')"
      done
    done
  } > "$W/prof/ab.raw"
  kill "${pids[@]}" 2>/dev/null || true
  /usr/bin/python3 - "$W/prof/ab.raw" > "$out" <<'PY'
import json, sys, statistics as st
rows = {}
head = []
for line in open(sys.argv[1]):
    if line.startswith("# "):
        head.append(line.rstrip()); continue
    if line.startswith("#stat"):
        _, v, r, *kv = line.split()
        d = dict(x.split(",")[::-1] for x in kv)
        rows.setdefault(v, {}).setdefault(int(r), {}).update(
            {k: float(x) for k, x in d.items()})
        continue
    if line.startswith("{"):
        d = json.loads(line)
        _, v, r = d["label"].split("/")
        v = {"direct": "D"}.get(v, v)
        rows.setdefault(v, {}).setdefault(int(r), {}).update(
            mbs=d["mb_per_s"], mib=d["requests"] * 10, cpu=d["proxy_cpu_s"], client=d["client_cpu_s"])
print("\n".join(head))
print("| | runs | MB/s median | % of direct (median of per-round ratios) | agent task-clock us/MiB | agent CPU us/MiB (/proc) | syscalls/MiB | splice/MiB | epoll_wait/MiB | cs/MiB | client CPU us/MiB |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
D = rows.get("D", {})
for v in ("D", "A", "B"):
    rs = rows.get(v, {})
    if not rs:
        continue
    med = lambda f: st.median([f(x) for x in rs.values()])
    ratio = st.median([x["mbs"] / D[r]["mbs"] for r, x in rs.items() if r in D]) if v != "D" else 1
    if v == "D":
        print("| direct (nginx CPU in the CPU column) | %d | %.0f | 100%% | - | %.0f | - | - | - | - | %.0f |" % (
            len(rs), med(lambda x: x["mbs"]), med(lambda x: x["cpu"] * 1e6 / x["mib"]), med(lambda x: x["client"] * 1e6 / x["mib"])))
        continue
    print("| %s | %d | %.0f | %.0f%% | %.0f | %.0f | %.1f | %.1f | %.1f | %.1f | %.0f |" % (
        v, len(rs), med(lambda x: x["mbs"]), 100 * ratio,
        med(lambda x: x["task-clock"] * 1000 / x["mib"]), med(lambda x: x["cpu"] * 1e6 / x["mib"]),
        med(lambda x: x["raw_syscalls:sys_enter"] / x["mib"]), med(lambda x: x["syscalls:sys_enter_splice"] / x["mib"]),
        med(lambda x: x["syscalls:sys_enter_epoll_wait"] / x["mib"]), med(lambda x: x["context-switches"] / x["mib"]),
        med(lambda x: x["client"] * 1e6 / x["mib"])))
print("\nper round, agent task-clock us/MiB A / B: " + ", ".join(
    "%.0f/%.0f" % (rows["A"][r]["task-clock"] * 1000 / rows["A"][r]["mib"], rows["B"][r]["task-clock"] * 1000 / rows["B"][r]["mib"])
    for r in sorted(rows.get("A", {})) if r in rows.get("B", {})))
PY
  cat "$out"
}

# BENCH_PROFILE=sched: where a request's time goes at the fixed rate (the
# figure "added p99 latency"). The rate test of direct, null-relay and
# shoji-decode, interleaved PROBE_ROUNDS times (default 2), each for
# PROBE_SECS (default 8) under a system-wide scheduler trace (perf record -a
# of sched_waking, sched_wakeup and sched_switch, clocked on
# CLOCK_MONOTONIC like the loadgen's --lat-log). bench/schedtrace.py then
# follows every measured request through the wake-ups of the client, the
# hop and nginx: bench/results/sched-rate.txt.
sched_trace() {
  profiled_shoji_up
  local relay rounds=${PROBE_ROUNDS:-2} secs=${PROBE_SECS:-8} r cfg target ca proxy
  relay=$(start_null_relay)
  mkdir -p "$W/prof"
  local runs=()
  for r in $(seq 1 "$rounds"); do
    for cfg in direct null-relay shoji-decode; do
      proxy=() target=$ORIGIN:443 ca=$W/pki/ca.crt
      case $cfg in
        null-relay) target=$ORIGIN:$P_RELAY ;;
        shoji-decode) proxy=(--proxy 127.0.0.1:$P_SHOJI); ca=$W/shoji/state/ca.crt ;;
      esac
      local base=$W/prof/sched.$cfg.$r
      perf record -q -a -k CLOCK_MONOTONIC -m 1024 -o "$base.data" \
        -e sched:sched_waking -e sched:sched_wakeup -e sched:sched_switch -- \
        "$BUILD/loadgen" --label "sched/$cfg/$r" "${proxy[@]}" --target "$target" --cafile "$ca" \
        --mode rate -c 8 --rate 200 -t "$secs" --warmup 0.5 --path /1k --expect-len 1024 \
        --lat-log "$base.lat" > "$base.json" 2>>"$W/prof/sched.err" || true
      perf script -i "$base.data" --ns -F comm,tid,cpu,time,event,trace > "$base.txt" 2>>"$W/prof/sched.err" || true
      runs+=("$cfg:$base")
      log "sched $cfg #$r: $(head -c 300 "$base.json")"
    done
    "$BUILD/vcpustall" --seconds 2 --label "round $r" >> "$W/prof/stall.jsonl" || true
  done
  kill "$relay" 2>/dev/null || true
  # the traces stay (bench/results/sched/, ~0.5 MB per second traced) to be
  # read again: bench/schedtrace.py CONFIG:bench/results/sched/sched.CONFIG.ROUND ...
  rm -rf "$ROOT/bench/results/sched"
  mkdir -p "$ROOT/bench/results/sched"
  cp "$W"/prof/sched.*.txt "$W"/prof/sched.*.lat "$W"/prof/sched.*.json "$ROOT/bench/results/sched/" || true
  {
    /usr/bin/python3 "$ROOT/bench/schedtrace.py" "${runs[@]}"
    echo
    echo "## CPU stalls after each round (bench/vcpustall.c, 2 s, a spinning thread per CPU)"
    echo
    sed 's/^/    /' "$W/prof/stall.jsonl"
  } > "$ROOT/bench/results/sched-rate.txt"
  cat "$ROOT/bench/results/sched-rate.txt"
  log "sched: bench/results/sched-rate.txt"
}
