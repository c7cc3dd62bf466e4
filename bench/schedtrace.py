#!/usr/bin/python3
"""bench/schedtrace.py: where a request's time goes at the fixed rate.

Reads what bench/profile.sh's sched_trace (BENCH_PROFILE=sched) leaves for
each run CONFIG:BASE:
  BASE.txt  `perf script --ns -F comm,tid,cpu,time,event,trace` of a
            system-wide trace of sched_waking, sched_wakeup and sched_switch,
            clocked on CLOCK_MONOTONIC;
  BASE.lat  loadgen --lat-log: "due_us latency_us" per measured request.

Every task is given a role by its name: the client (loadgen), the hop
(shoji, or hopfloor as the null-relay), the origin (nginx); the rest is
"other" (kernel threads, perf, other tenants' work on this VM) and idle.
For each wake-up of a client, hop or origin task it measures the wait from
sched_waking to the task running, and sorts it by where the task was put:
on an idle CPU other than the waker's (the hypervisor must wake that vCPU),
on a CPU busy with another task (it waits to preempt or be scheduled), or
on the waker's own CPU.

For each request it adds up, inside its window (due time to done), the
waits of those wake-ups and the running time of each role, and prints the
median request beside the slowest 1%: how much of a slow request is
waiting to be woken, how much is work, and whose.
"""
import re
import statistics as st
import sys
from collections import Counter, defaultdict

EVENT = re.compile(r'^\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+(\d+)\.(\d+):\s+sched:(\w+):\s+(.*)$')
FIELD = re.compile(r'(\w+)=(\S+)')
ROLES = {"loadgen": "client", "shoji": "hop", "hopfloor": "hop", "nginx": "origin"}
TRACKED = ("client", "hop", "origin")


def role_of(comm):
    return ROLES.get(comm, "idle" if comm.startswith("swapper") else "other")


def parse(path):
    """Yields (t_us, cpu, event, fields) in file order (perf sorts by time)."""
    with open(path, errors="replace") as f:
        for line in f:
            m = EVENT.match(line)
            if not m:
                continue
            t = int(m.group(4)) * 1e6 + int(m.group(5).ljust(9, "0")[:9]) / 1e3
            fields = dict(FIELD.findall(m.group(7).replace(" ==> ", " ")))
            yield t, int(m.group(3)), m.group(6), fields


class Trace:
    def __init__(self, path):
        self.wakes = []      # (t_waking, t_running, wait_us, role, kind, blocker_role)
        self.runs = defaultdict(list)  # role -> [(start, end)]
        cur = {}             # cpu -> (pid, role, since)
        pending = {}         # pid -> [t_waking, waker_cpu, role, kind, blocker]
        for t, cpu, ev, f in parse(path):
            if ev == "sched_waking":
                r = role_of(f.get("comm", ""))
                if r in TRACKED:
                    pending[f["pid"]] = [t, cpu, r, None, None]
            elif ev == "sched_wakeup":
                p = pending.get(f.get("pid"))
                if p and p[3] is None:
                    tc = int(f.get("target_cpu", "-1"))
                    on = cur.get(tc)
                    if tc == p[1]:
                        p[3] = "waker's CPU"
                    elif on is None or on[1] == "idle":
                        p[3] = "idle other CPU"
                    else:
                        p[3] = "busy other CPU"
                        p[4] = on[1]
            elif ev == "sched_switch":
                prev = cur.get(cpu)
                if prev is not None:
                    self.runs[prev[1]].append((prev[2], t))
                nxt = f.get("next_pid")
                comm = f.get("next_comm", "")
                cur[cpu] = (nxt, role_of(comm), t)
                p = pending.pop(nxt, None)
                if p and p[3] is not None:
                    self.wakes.append((p[0], t, t - p[0], p[2], p[3], p[4]))
        self.wakes.sort()
        for r in self.runs:
            self.runs[r].sort()

    def wakes_in(self, s, e):
        lo, hi = 0, len(self.wakes)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.wakes[mid][0] < s:
                lo = mid + 1
            else:
                hi = mid
        out = []
        while lo < len(self.wakes) and self.wakes[lo][0] <= e:
            out.append(self.wakes[lo])
            lo += 1
        return out

    def run_in(self, role, s, e):
        """(total, longest single stretch) role ran inside [s, e]."""
        iv, tot, longest = self.runs.get(role, []), 0.0, 0.0
        lo, hi = 0, len(iv)
        while lo < hi:    # first interval that may end after s
            mid = (lo + hi) // 2
            if iv[mid][0] < s - 20000:
                lo = mid + 1
            else:
                hi = mid
        for a, b in iv[lo:]:
            if a > e:
                break
            d = max(0.0, min(b, e) - max(a, s))
            tot += d
            longest = max(longest, d)
        return tot, longest


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0


def requests(lat_path):
    out = []
    with open(lat_path) as f:
        for line in f:
            a = line.split()
            if len(a) == 2:
                out.append((float(a[0]), float(a[1])))
    return out


def breakdown(tr, reqs):
    rows = []
    for s, lat in reqs:
        e = s + lat
        w = tr.wakes_in(s, e)
        row = {"due": s, "lat": lat, "n": len(w), "wait": sum(x[2] for x in w),
               "maxwait": max((x[2] for x in w), default=0)}
        for kind in ("idle other CPU", "busy other CPU", "waker's CPU"):
            row[kind] = sum(x[2] for x in w if x[4] == kind)
        row["maxrun"] = 0.0
        for r in TRACKED + ("other",):
            row[r], longest = tr.run_in(r, s, e)
            if r in TRACKED:
                row["maxrun"] = max(row["maxrun"], longest)
        rows.append(row)
    return rows


COLS = [("lat", "latency"), ("wait", "waiting to run"), ("idle other CPU", "of it: idle vCPU"),
        ("busy other CPU", "busy CPU"), ("waker's CPU", "waker's CPU"), ("maxwait", "longest wait"),
        ("maxrun", "longest single run"),
        ("client", "client running"), ("hop", "hop running"), ("origin", "nginx running"),
        ("other", "others running")]


def incidents(runs, k):
    """How many separate bursts the slowest k requests of all runs fall in."""
    rows = sorted(((i, r) for i, (_, rs) in enumerate(runs) for r in rs), key=lambda x: x[1]["lat"])[-k:]
    rows.sort(key=lambda x: (x[0], x[1]["due"]))
    n, last = 0, None
    for i, r in rows:
        if last is None or last[0] != i or r["due"] - last[1] > 50000:
            n += 1
        last = (i, r["due"])
    return n


def main(argv):
    if len(argv) < 2:
        print("usage: schedtrace.py CONFIG:BASE...", file=sys.stderr)
        return 2
    per_cfg = defaultdict(list)   # cfg -> [(trace, rows)]
    for arg in argv[1:]:
        cfg, base = arg.split(":", 1)
        try:
            tr = Trace(base + ".txt")
            rows = breakdown(tr, requests(base + ".lat"))
        except OSError as e:
            print("# %s: %s" % (cfg, e))
            continue
        per_cfg[cfg].append((tr, rows))
    print("# Scheduler trace of the fixed-rate test (200 req/s, 8 connections, 1 KiB over HTTPS)")
    print("# perf record -a -e sched:sched_waking,sched_wakeup,sched_switch; bench/schedtrace.py")
    print()
    print("## Wake-ups of the client, hop and nginx: wait from sched_waking to running, µs")
    print()
    print("| run | put on | wake-ups per request | p50 | p90 | p99 | max | busy CPU was running |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for cfg, runs in per_cfg.items():
        nreq = sum(len(r) for _, r in runs)
        for kind in ("idle other CPU", "busy other CPU", "waker's CPU"):
            ws = [w for tr, _ in runs for w in tr.wakes if w[4] == kind]
            waits = [w[2] for w in ws]
            if not waits:
                continue
            blockers = Counter(w[5] for w in ws if w[5])
            print("| %s | %s | %.2f | %.0f | %.0f | %.0f | %.0f | %s |" % (
                cfg, kind, len(waits) / max(1, nreq), pct(waits, .5), pct(waits, .9),
                pct(waits, .99), max(waits),
                ", ".join("%s %d" % kv for kv in blockers.most_common(3)) or "-"))
    print()
    print("## Where a request's time goes (inside its window: due time to done), µs")
    print()
    print("| run | requests | which | " + " | ".join(h for _, h in COLS) + " |")
    print("|---|---:|---|" + "---:|" * len(COLS))
    stretch = []
    for cfg, runs in per_cfg.items():
        rows = [r for _, rs in runs for r in rs]
        if not rows:
            continue
        rows.sort(key=lambda r: r["lat"])
        k = max(1, len(rows) // 100)
        for label, sel, f in (("median request", rows, st.median),
                              ("slowest 1%% (%d), mean" % k, rows[-k:], st.mean)):
            print("| %s | %d | %s | " % (cfg, len(rows), label) +
                  " | ".join("%.0f" % f([r[c] for r in sel]) for c, _ in COLS) + " |")
        slow = rows[-k:]
        stretch.append((cfg, pct([r["lat"] for r in rows], .99), k, incidents(runs, k),
                        st.mean(r["maxrun"] for r in slow) / max(1.0, st.median(r["maxrun"] for r in rows)),
                        st.mean(r["wait"] for r in slow) / max(1.0, st.mean(r["lat"] for r in slow))))
    print()
    print("(waiting to run: summed over the wake-ups of client, hop and nginx that began in the")
    print("window; running: time each role was on a CPU inside the window, both CPUs counted,")
    print("so work in parallel can make the parts add up to more than the latency.)")
    print()
    print("## The slowest 1%: stalls or queues?")
    print()
    print("| run | p99 µs | slowest 1% | separate incidents (apart by > 50 ms) | their longest single run of client, hop or nginx / the median request's | share of their latency spent waiting to be woken |")
    print("|---|---:|---:|---:|---:|---:|")
    for cfg, p99, k, inc, x, w in stretch:
        print("| %s | %.0f | %d | %d | %.1fx | %.0f%% |" % (cfg, p99, k, inc, x, 100 * w))
    print()
    print("(the same work takes many times longer in a slow request when the CPU it runs on")
    print("stops under it; a request that waits for a busy CPU or a slow wake-up shows as waiting)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
