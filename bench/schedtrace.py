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
import bisect
import re
import statistics as st
import sys
from collections import Counter, defaultdict

from ratemerge import read_lat

EVENT = re.compile(r'^\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+(\d+)\.(\d+):\s+sched:(\w+):\s+(.*)$')
FIELD = re.compile(r'(\w+)=(\S+)')
ROLES = {"loadgen": "client", "shoji": "hop", "hopfloor": "hop", "nginx": "origin"}
TRACKED = ("client", "hop", "origin")


def role_of(comm):
    return ROLES.get(comm, "idle" if comm.startswith("swapper") else "other")


def parse(path):
    """Yields (t_us, cpu, tid, comm, event, fields) in file order (perf sorts
    by time); tid and comm are the task the event happened in."""
    with open(path, errors="replace") as f:
        for line in f:
            m = EVENT.match(line)
            if not m:
                continue
            t = int(m.group(4)) * 1e6 + int(m.group(5).ljust(9, "0")[:9]) / 1e3
            fields = dict(FIELD.findall(m.group(7).replace(" ==> ", " ")))
            yield t, int(m.group(3)), m.group(2), m.group(1), m.group(6), fields


class Trace:
    """Runs and wake-ups of one trace.

    Some kernels (this VM's, on its second CPU) emit no event from a CPU's
    idle task: the switch out of idle and the wake-ups its interrupts raise
    are missing. An event on a CPU from a task other than the one last
    switched in there means such a switch was missed; it is put at the
    latest time it can have happened, that event, so a run found that way
    is never longer than it was. A wake-up that ends in such a switch has
    no known wait: it is counted apart ("not seen") and left out of the
    waits."""

    def __init__(self, path):
        self.wakes = []      # (t_waking, t_running, wait_us, role, kind, blocker_role)
        self.runs = defaultdict(list)  # role -> [(start, end)]
        self.missed = 0      # switches inferred, not seen
        self.unseen = 0      # wake-ups that ended in such a switch
        self.sends = []      # times the client woke the hop or nginx
        self.blind = []      # (t_waking, until the task's first event) of those
        self.cur = {}        # cpu -> (pid, role, since)
        self.pending = {}    # pid -> [t_waking, waker_cpu, role, kind, blocker]
        asleep = set()       # pids that left a CPU to sleep (not preempted)
        for t, cpu, tid, comm, ev, f in parse(path):
            on = self.cur.get(cpu)
            if on is not None and tid != on[0] and tid != "0":
                self.missed += 1
                p = self.pending.get(tid)
                if p is not None:
                    p[3] = "not seen"
                self.switch(cpu, t, tid, comm)
                asleep.discard(tid)
            if ev == "sched_waking":
                r = role_of(f.get("comm", ""))
                if r in ("hop", "origin") and role_of(comm) == "client":
                    self.sends.append(t)   # the client's request leaves
                # a task that is running or preempted is not waking up
                if r in TRACKED and f.get("pid") in asleep:
                    self.pending[f["pid"]] = [t, cpu, r, None, None]
            elif ev == "sched_wakeup":
                p = self.pending.get(f.get("pid"))
                if p and p[3] is None:
                    self.place(p, int(f.get("target_cpu", "-1")))
            elif ev == "sched_switch":
                if f.get("prev_state", "R").startswith("R"):
                    asleep.discard(f.get("prev_pid"))
                else:
                    asleep.add(f.get("prev_pid"))
                asleep.discard(f.get("next_pid"))
                self.switch(cpu, t, f.get("next_pid"), f.get("next_comm", ""))
        self.wakes.sort()
        self.blind.sort()
        for r in self.runs:
            self.runs[r].sort()
        self.longest_run = {r: max(b - a for a, b in iv) for r, iv in self.runs.items() if iv}

    def place(self, p, tc):
        """Notes where a waking task was put, and what that CPU was doing."""
        on = self.cur.get(tc)
        if tc == p[1]:
            p[3] = "waker's CPU"
        elif on is None or on[1] == "idle":
            p[3] = "idle other CPU"
        else:
            p[3] = "busy other CPU"
            p[4] = on[1]

    def switch(self, cpu, t, pid, comm):
        prev = self.cur.get(cpu)
        if prev is not None:
            self.runs[prev[1]].append((prev[2], t))
        p = self.pending.pop(pid, None)
        if p is not None:
            if p[3] is None:     # its sched_wakeup was in the blind spot
                self.place(p, cpu)
            if p[3] == "not seen":
                self.unseen += 1
                self.blind.append((p[0], t - p[0]))
            else:
                self.wakes.append((p[0], t, t - p[0], p[2], p[3], p[4]))
        self.cur[cpu] = (pid, role_of(comm), t)

    def first_send(self, s, e):
        """When the client first woke the hop or nginx inside [s, e], or e."""
        i = bisect.bisect_left(self.sends, s)
        return self.sends[i] if i < len(self.sends) and self.sends[i] <= e else e

    def longest_blind(self, s, e):
        """The longest wake-up in [s, e] whose end the trace did not see:
        from sched_waking to the task's first event (its wait and part of
        its run, not told apart)."""
        i, best = bisect.bisect_left(self.blind, (s, -1.0)), 0.0
        while i < len(self.blind) and self.blind[i][0] <= e:
            best = max(best, self.blind[i][1])
            i += 1
        return best

    def wakes_in(self, s, e):
        i = bisect.bisect_left(self.wakes, (s,))
        return self.wakes[i:bisect.bisect_right(self.wakes, (e, float("inf")))]

    def run_in(self, role, s, e):
        """(total, longest single stretch) role ran inside [s, e]."""
        iv, tot, longest = self.runs.get(role, []), 0.0, 0.0
        # any run that overlaps [s, e] started after s minus the longest run
        i = bisect.bisect_left(iv, (s - self.longest_run.get(role, 0.0),))
        for a, b in iv[i:]:
            if a > e:
                break
            d = max(0.0, min(b, e) - max(a, s))
            tot += d
            longest = max(longest, d)
        return tot, longest


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0


def breakdown(tr, reqs):
    rows = []
    for s, lat in reqs:
        e = s + lat
        w = tr.wakes_in(s, e)
        row = {"due": s, "lat": lat, "n": len(w), "send": tr.first_send(s, e) - s,
               "blind": tr.longest_blind(s, e), "wait": sum(x[2] for x in w),
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


COLS = [("lat", "latency"), ("send", "until the client's request left"), ("wait", "waiting to run"), ("idle other CPU", "of it: idle vCPU"),
        ("busy other CPU", "busy CPU"), ("waker's CPU", "waker's CPU"), ("maxwait", "longest wait"),
        ("maxrun", "longest single run"),
        ("client", "client running"), ("hop", "hop running"), ("origin", "nginx running"),
        ("other", "others running")]


CAUSES = ("client late", "stalled run", "long wait", "blind wake", "others ran", "none")


def cause(r):
    """Why a slow request was slow, first match: a step stalled while on a
    CPU, a wake-up that waited, other tasks in the way, or none of these."""
    if r["send"] >= 500:
        return "client late"
    if r["maxrun"] >= 500:
        return "stalled run"
    if r["maxwait"] >= 500:
        return "long wait"
    if r["blind"] >= 500:
        return "blind wake"
    if r["other"] >= 500:
        return "others ran"
    return "none"


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
            rows = breakdown(tr, read_lat(base + ".lat"))
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
    for cfg, runs in per_cfg.items():
        nreq = sum(len(r) for _, r in runs)
        print("%s: %.2f switches per request inferred (not in the trace), %.2f wake-ups per request"
              " ending in one (wait not known, left out)" % (
                  cfg, sum(tr.missed for tr, _ in runs) / max(1, nreq),
                  sum(tr.unseen for tr, _ in runs) / max(1, nreq)))
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
        over = [r for r in rows if r["lat"] >= 1000]
        why = Counter(cause(r) for r in over)
        stretch.append((cfg, pct([r["lat"] for r in rows], .99), len(rows), len(over), why,
                        incidents(runs, k), k))
    print()
    print("(waiting to run: summed over the wake-ups of client, hop and nginx that began in the")
    print("window; running: time each role was on a CPU inside the window, both CPUs counted,")
    print("so work in parallel can make the parts add up to more than the latency.)")
    print()
    print("## Requests over 1 ms: what each one had in its window")
    print()
    print("| run | p99 µs | requests | over 1 ms | of them: the client's request left >= 0.5 ms after"
          " its time | else a single run of client, hop or nginx >= 0.5 ms |"
          " else a wake-up wait >= 0.5 ms | else a wake-up the trace saw only begin, >= 0.5 ms to"
          " the task's first event | else other tasks ran >= 0.5 ms | else none of these |"
          " slowest 1% in separate bursts (> 50 ms apart) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cfg, p99, n, nover, why, inc, k in stretch:
        print("| %s | %.0f | %d | %d (%.1f%%) | %s | %s | %s | %s | %s | %s | %d of %d |" % (
            cfg, p99, n, nover, 100.0 * nover / max(1, n),
            *("%d" % why[c] for c in CAUSES), inc, k))
    print()
    print("(the client's request leaves when it wakes the hop or nginx: late when its timer")
    print("woke it late or its CPU stalled while it encrypted; a client, hop or nginx step takes")
    print("10-100 µs here, one that lasts 0.5 ms or more while the guest shows it running was")
    print("stopped under it: the CPU stalled)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
