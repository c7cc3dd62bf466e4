#!/usr/bin/python3
"""bench/report.py RESULTS.jsonl: the markdown tables of `make bench`.

Reads the loadgen JSON lines written by bench/run.sh (label CONFIG/TEST/REPEAT),
takes the median over repeats and prints: the main table (with ratios to
direct), shoji against each peer, and the issue-9 targets met or missed.
A target's verdict is on the medians; beside it, the same ratio or
difference per repeat (the configurations of a repeat run interleaved, so
a pair shares the machine's state), to show how robust the verdict is."""
import json
import statistics
import sys
from collections import defaultdict

PROXIES = ["null-relay", "shoji-decode", "shoji-tunnel", "shoji-http", "squid", "mitmproxy",
           "privoxy", "tinyproxy"]
PEERS = ["squid", "mitmproxy", "privoxy", "tinyproxy"]


def load(path):
    runs = defaultdict(list)
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                d = json.loads(line)
            except ValueError:
                continue
            cfg, test, rep = d["label"].split("/")
            d["_rep"] = rep
            runs[(cfg, test)].append(d)
    return runs


class Fig:
    def __init__(self, runs):
        self.runs = runs

    def med(self, cfg, test, key, sub=None):
        vals = []
        for d in self.runs.get((cfg, test), []):
            v = d.get(key)
            if sub is not None and isinstance(v, dict):
                v = v.get(sub)
            if isinstance(v, (int, float)):
                vals.append(v)
        return statistics.median(vals) if vals else None

    def by_repeat(self, cfg, test, key, sub=None):
        """{repeat: value} of one figure."""
        out = {}
        for d in self.runs.get((cfg, test), []):
            v = d.get(key)
            if sub is not None and isinstance(v, dict):
                v = v.get(sub)
            if isinstance(v, (int, float)):
                out[d["_rep"]] = v
        return out

    def paired(self, a, b, test, key, sub=None, op=None, spec="{:.2f}"):
        """' (per repeat x, y, z)': `op`(a, b) of the same repeat, a beside
        the target's median verdict (a repeat's configurations run
        interleaved, so a pair shares the machine's state)."""
        va, vb = self.by_repeat(a, test, key, sub), self.by_repeat(b, test, key, sub)
        op = op or (lambda x, y: x / y if y else None)
        vals = [op(va[r], vb[r]) for r in sorted(va, key=lambda r: int(r) if r.isdigit() else 0)
                if r in vb]
        vals = [v for v in vals if v is not None]
        if len(vals) < 2:
            return ""
        return " (per repeat %s)" % ", ".join(spec.format(v) for v in vals)

    def added(self, cfg, base, q):
        """Median latency quantile `q` of the rate test, cfg minus base, or None."""
        a, b = self.med(cfg, "rate", "lat_us", q), self.med(base, "rate", "lat_us", q)
        return None if None in (a, b) else a - b

    def errors(self, cfg):
        return sum(d.get("errors", 0) for (c, t), ds in self.runs.items() if c == cfg
                   and t in ("ka", "new", "bulk", "rate") for d in ds)

    def requests(self, cfg):
        return sum(d.get("requests", 0) for (c, t), ds in self.runs.items() if c == cfg
                   and t in ("ka", "new", "bulk", "rate") for d in ds)

    def rss_load(self, cfg):
        vals = [d.get("proxy_rss_max_kib", 0) for t in ("ka", "new", "bulk")
                for d in self.runs.get((cfg, t), [])]
        return max(vals) if vals else None


def proxy_measured(cfg):
    """Whether the proxy's CPU and RSS were sampled: not for direct runs, nor
    for null-relay (a process per connection, not watched)."""
    return not cfg.startswith("direct") and cfg != "null-relay"


def server_of(cfg):
    return "shoji" if cfg.startswith("shoji") else cfg


def fmt(v, spec="{:,.0f}"):
    return "–" if v is None else spec.format(v)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def main_table(f):
    out = ["| | keep-alive 1 KiB req/s | CPU µs/req | new conn/s | CPU µs/conn |"
           " bulk 10 MiB MB/s | CPU µs/MiB | added latency p50 / p99 µs |"
           " RSS idle MiB | RSS load MiB | held conns: KiB each | errors / requests |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for cfg in ["direct", "direct-http"] + PROXIES:
        if not any(c == cfg for (c, _t) in f.runs):
            continue
        base = "direct-http" if cfg.endswith("http") else "direct"
        cells = [cfg]
        for test, key in (("ka", "rps"), ("new", "rps"), ("bulk", "mb_per_s")):
            v = f.med(cfg, test, key)
            r = ratio(v, f.med(base, test, key)) if cfg != base else None
            spec = "{:,.1f}" if key == "mb_per_s" else "{:,.0f}"
            cells.append(fmt(v, spec) + (" (%.2fx)" % r if r is not None else ""))
            if not proxy_measured(cfg):
                cells.append("–")
            else:
                cpu = f.med(cfg, test, "proxy_cpu_us_per_req")
                if test == "bulk" and cpu is not None:
                    cpu /= 10.0
                cells.append(fmt(cpu, "{:,.1f}"))
        p50, p99 = f.med(cfg, "rate", "lat_us", "p50"), f.med(cfg, "rate", "lat_us", "p99")
        b50, b99 = f.med(base, "rate", "lat_us", "p50"), f.med(base, "rate", "lat_us", "p99")
        if cfg.startswith("direct"):
            cells.append("(%s / %s)" % (fmt(p50), fmt(p99)))
        elif None not in (p50, p99, b50, b99):
            cells.append("%+.0f / %+.0f" % (p50 - b50, p99 - b99))
        else:
            cells.append("–")
        srv = server_of(cfg)
        idle = f.med(srv, "idle", "rss_idle_kib")
        cells.append(fmt(idle / 1024 if idle and proxy_measured(cfg) else None, "{:,.1f}"))
        load = f.rss_load(cfg)
        cells.append(fmt(load / 1024 if load and proxy_measured(cfg) else None, "{:,.1f}"))
        cells.append(held_cell(f, cfg))
        cells.append("%d / %d" % (f.errors(cfg), f.requests(cfg)))
        out.append("| " + " | ".join(cells) + " |")
    if any(c == "null-relay" for (c, _t) in f.runs):
        out += ["", "(null-relay: the client connects to a port where bench/hopfloor.c forwards"
                " the bytes to the origin and back, one process per connection, nothing else; the"
                " figures of a hop that costs nothing but being a hop. Its CPU and RSS are not"
                " measured.)"]
    return out


def held_cell(f, cfg):
    ds = f.runs.get((cfg, "hold"))
    if not ds:
        return "–"
    d = ds[0]
    return "%.1f (%d/%d held, %.0f s)" % (d["kib_per_conn"], d["still_open"], d["hold"],
                                          d["seconds"])


def cpu_split(f):
    """Proxy CPU per request split into user and kernel time (medians)."""
    tests = (("ka", "keep-alive req", 1.0), ("new", "new conn", 1.0),
             ("bulk", "MiB of bulk", 10.0), ("rate", "req at the fixed rate", 1.0))
    out = ["| proxy CPU µs: user + kernel | " + " | ".join(t[1] for t in tests) +
           " | held conn (opening) |",
           "|---|" + "---:|" * (len(tests) + 1)]
    for cfg in PROXIES:
        if not proxy_measured(cfg) or not any(c == cfg and t in ("ka", "new", "bulk", "rate", "hold")
                                              for (c, t) in f.runs):
            continue
        cells = [cfg]
        for test, _name, div in tests:
            u = f.med(cfg, test, "proxy_user_us_per_req")
            k = f.med(cfg, test, "proxy_sys_us_per_req")
            cells.append("–" if None in (u, k) else "%.1f + %.1f" % (u / div, k / div))
        ds = f.runs.get((cfg, "hold"))
        if ds and ds[0].get("established"):
            d = ds[0]
            n = d["established"]
            cells.append("%.0f + %.0f" % ((d["proxy_cpu_s"] - d["proxy_sys_s"]) * 1e6 / n,
                                          d["proxy_sys_s"] * 1e6 / n))
        else:
            cells.append("–")
        out.append("| " + " | ".join(cells) + " |")
    out += ["", "(utime and stime from /proc/PID/stat of the proxy's process tree, all threads,"
            " over the measured interval only, after the warm-up; divided by requests, by MiB"
            " for bulk, by held connections opened for the hold test. Kernel time spent in"
            " softirq for loopback packets is charged to whichever process was running.)"]
    return out


def held_detail(f):
    out = ["| held idle connections | answered (one request each) | still open after 3 s | errors |"
           " handshakes cut off by the time bound | time to open | KiB each | fd limit |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    short = []
    for cfg in PROXIES:
        ds = f.runs.get((cfg, "hold"))
        if not ds:
            continue
        d = ds[0]
        fds = (f.runs.get((cfg, "holdfds")) or [{}])[0].get("fds_limit", "?")
        out.append("| %s | %d / %d | %d | %d %s | %d | %.1f s | %.1f | %s |" % (
            cfg, d["established"], d["hold"], d["still_open"], d["errors"],
            errors_by(d), d.get("unfinished", 0), d["seconds"], d["kib_per_conn"], fds))
        try:
            room = (int(fds) - 50) // 2
        except ValueError:
            continue
        # the limit mattered where the proxy got near it (not where the time bound ran out)
        if room < d["hold"] and (d["errors"] or d["established"] >= room - 100):
            short.append("%s (fd limit %s: room for ~%d)" % (cfg, fds, room))
    if short:
        out += ["", "Not all can be held here: a proxy needs two sockets (client and upstream)"
                " per held connection, and its open-file limit (inherited from bench/run.sh,"
                " which cannot raise the hard limit without CAP_SYS_RESOURCE) is too low: " +
                "; ".join(short) + "."]
    return out


def errors_by(d):
    by = d.get("errors_by") or {}
    parts = ["%s %d" % (k, v) for k, v in by.items() if v]
    return "(%s)" % ", ".join(parts) if parts else ""


def vs_peers(f):
    out = ["| shoji-decode vs | keep-alive req/s | CPU per keep-alive req | new conn/s |"
           " CPU per new conn | bulk MB/s | p99 added latency |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    me = "shoji-decode"
    for peer in PEERS:
        if not any(c == peer for (c, _t) in f.runs):
            continue
        row = [peer]
        for test, key in (("ka", "rps"), ("ka", "proxy_cpu_us_per_req"), ("new", "rps"),
                          ("new", "proxy_cpu_us_per_req"), ("bulk", "mb_per_s")):
            r = ratio(f.med(me, test, key), f.med(peer, test, key))
            row.append(fmt(r, "{:.2f}x"))
        a, b = f.med(me, "rate", "lat_us", "p99"), f.med(peer, "rate", "lat_us", "p99")
        row.append(fmt(ratio(a, b), "{:.2f}x"))
        out.append("| " + " | ".join(row) + " |")
    out.append("")
    out.append("(ratios are shoji / peer: above 1 is better for rates, below 1 is better"
               " for CPU and latency)")
    return out


def first_fresh(f):
    """A fresh shoji process and a fresh client: first request, then cached."""
    first = f.med("shoji-first", "first", "lat_us", "p50")
    warm = f.med("shoji-first", "warm", "lat_us", "p50")
    direct = f.med("direct", "first", "lat_us", "p50")
    return first, warm, direct


def first_warm(f):
    """Medians over repeats of the per-series medians (bench/firstconn.c)."""
    def m(key, sub="p50"):
        return f.med("shoji-mint", "series", key, sub)
    return {k: m(k) for k in ("direct", "first", "cached", "added_first", "added_cached",
                              "first_minus_cached", "direct_tls", "first_tls", "cached_tls")}


def first_section(f):
    w = first_warm(f)
    ds = f.runs.get(("shoji-mint", "series"), [])
    out = []
    if ds:
        names = sum(d.get("names", 0) for d in ds)
        errs = sum(d.get("errors", 0) for d in ds)
        cpu = [(d["proxy_user_s"], d["proxy_sys_s"], d["names"]) for d in ds if d.get("names")]
        out += ["| first contact, warm shoji and client (median of %d series, %d names in all,"
                " %d errors) | whole request µs | until TLS done µs | over direct µs"
                " (paired per name) |" % (len(ds), names, errs),
                "|---|---:|---:|---:|",
                "| direct new connection to a never-seen name | %s | %s | – |" % (
                    fmt(w["direct"]), fmt(w["direct_tls"])),
                "| decoded, never-seen name (mint + upstream handshake) | %s | %s | %s |" % (
                    fmt(w["first"]), fmt(w["first_tls"]), fmt(w["added_first"], "{:+,.0f}")),
                "| decoded, same name again (leaf cached) | %s | %s | %s |" % (
                    fmt(w["cached"]), fmt(w["cached_tls"]), fmt(w["added_cached"], "{:+,.0f}")),
                "", "First minus cached, per name: %s µs (what a never-seen name costs over a"
                " known one)." % fmt(w["first_minus_cached"], "{:+,.0f}")]
        if cpu:
            u = statistics.median(c[0] * 1e6 / c[2] for c in cpu)
            k = statistics.median(c[1] * 1e6 / c[2] for c in cpu)
            out.append("shoji CPU over a series, per name (one first + one cached decoded"
                       " connection): %.0f µs user + %.0f µs kernel (clock ticks: ±10 ms per"
                       " series)." % (u, k))
        out.append("")
    first, warm, direct = first_fresh(f)
    if first is not None:
        out.append("Fresh process (separate figure: adds process start-up, a cold OpenSSL and a"
                   " cold /proc walk for a client never seen): a new shoji's first decoded"
                   " request %s µs; then with the leaf cached %s µs; direct new connection"
                   " %s µs." % (fmt(first), fmt(warm), fmt(direct)))
    return out


def check(rows, name, measured, ok, target):
    state = "–" if ok is None else ("met" if ok else "**missed**")
    rows.append("| %s | %s | %s | %s |" % (name, target, measured, state))


def targets(f):
    rows = ["| target (issue 9) | wanted | measured | |", "|---|---|---|---|"]
    d, s = "shoji-decode", "squid"
    r = ratio(f.med(d, "ka", "rps"), f.med(s, "ka", "rps"))
    check(rows, "decode keep-alive req/s vs Squid",
          fmt(r, "{:.2f}x") + f.paired(d, s, "ka", "rps", spec="{:.2f}x"),
          None if r is None else r >= 2, ">= 2x")
    c = f.med(d, "ka", "proxy_cpu_us_per_req")
    check(rows, "decode keep-alive CPU/req", fmt(c, "{:.1f} µs"), None if c is None else c <= 40,
          "<= 40 µs")
    r = ratio(f.med(d, "new", "rps"), f.med(s, "new", "rps"))
    check(rows, "new decoded conn/s vs Squid",
          fmt(r, "{:.2f}x") + f.paired(d, s, "new", "rps", spec="{:.2f}x"),
          None if r is None else r >= 1.3, ">= 1.3x")
    c = f.med(d, "new", "proxy_cpu_us_per_req")
    check(rows, "CPU per new decoded conn", fmt(c, "{:.0f} µs"),
          None if c is None else c <= 500, "<= 500 µs")
    add = first_warm(f)["added_first"]
    series = f.by_repeat("shoji-mint", "series", "added_first", "p50")
    per = "" if len(series) < 2 else " (series %s)" % ", ".join(
        "{:+.2f}".format(series[r] / 1000) for r in sorted(series, key=lambda r: int(r) if r.isdigit() else 0))
    check(rows, "first contact (mint) over direct, warm shoji",
          fmt(None if add is None else add / 1000, "{:.2f} ms") + per,
          None if add is None else add < 2000, "< 2 ms")
    r = ratio(f.med(d, "bulk", "mb_per_s"), f.med(s, "bulk", "mb_per_s"))
    check(rows, "bulk decoded vs Squid",
          fmt(r, "{:.2f}x") + f.paired(d, s, "bulk", "mb_per_s", spec="{:.2f}x"),
          None if r is None else r >= 2, ">= 2x")
    r = ratio(f.med("shoji-tunnel", "bulk", "mb_per_s"), f.med("direct", "bulk", "mb_per_s"))
    check(rows, "bulk tunnelled vs direct",
          fmt(r and r * 100, "{:.0f}%") + f.paired("shoji-tunnel", "direct", "bulk", "mb_per_s",
                                                   op=lambda x, y: 100 * x / y if y else None,
                                                   spec="{:.0f}%"),
          None if r is None else r >= 0.9, ">= 90%")
    idle = f.med("shoji", "idle", "rss_idle_kib")
    check(rows, "RSS idle", fmt(idle and idle / 1024, "{:.1f} MiB"),
          None if idle is None else idle < 8192, "< 8 MiB")
    for cfg, lim in (("shoji-decode", 64), ("shoji-tunnel", 16)):
        ds = f.runs.get((cfg, "hold"))
        k = ds[0]["kib_per_conn"] if ds else None
        held = ds and ds[0]["still_open"] == ds[0]["hold"] and ds[0]["errors"] == 0
        check(rows, "per idle %s connection" % cfg.split("-")[1],
              fmt(k, "{:.1f} KiB") + ("" if not ds else " (%d/%d held, %d errors)" % (
                  ds[0]["still_open"], ds[0]["hold"], ds[0]["errors"])),
              None if k is None else k < lim, "< %d KiB" % lim)
        if ds:
            h = ds[0]
            ok = None if held and h["hold"] < 10000 else bool(held)  # fewer asked: no verdict
            check(rows, "idle %s connections held" % cfg.split("-")[1],
                  "%d/%d, %d errors" % (h["still_open"], h["hold"], h["errors"]), ok,
                  "10,000, no errors")
    a, b = f.med(d, "rate", "lat_us", "p99"), f.med("direct", "rate", "lat_us", "p99")
    add = None if None in (a, b) else a - b
    if b is not None and b > 5000:
        # the direct p99 itself is far above the target: the machine is too
        # busy for a 1 ms verdict either way
        rows.append("| added p99 latency at %s | < 1 ms | %+.0f µs | not measurable: direct p99"
                    " is %.1f ms |" % (rate_text(f), add, b / 1000))
    else:
        check(rows, "added p99 latency at %s" % rate_text(f),
              fmt(add, "{:+.0f} µs") + f.paired(d, "direct", "rate", "lat_us", "p99",
                                                op=lambda x, y: x - y, spec="{:+.0f} µs"),
              None if add is None else add < 1000, "< 1 ms")
    nr = f.added("null-relay", "direct", "p99")
    if nr is not None:
        rows.append("| (for reading it: a hop that does nothing, null-relay, p99 added) | – | %+.0f µs%s | – |"
                    % (nr, f.paired("null-relay", "direct", "rate", "lat_us", "p99",
                                       op=lambda x, y: x - y, spec="{:+.0f} µs")))
    fl = f.added("floor-1", "floor-0", "p99")
    if fl is not None:
        rows.append("| (for reading it: one relay hop in the bare echo exchange, p99 added) | – | %+.0f µs%s | – |"
                    % (fl, f.paired("floor-1", "floor-0", "rate", "lat_us", "p99",
                                    op=lambda x, y: x - y, spec="{:+.0f} µs")))
    return rows


def floor_section(f):
    """The latency floor of one hop, beside every proxy's added latency."""
    quantiles = ("p50", "p90", "p99")
    if f.added("floor-1", "floor-0", "p50") is None:
        return ["(not measured in this run)"]
    out = ["| at %s, 1 KiB | p50 µs | p90 µs | p99 µs |" % rate_text(f), "|---|---:|---:|---:|"]
    for cfg, name in (("floor-0", "echo process, direct (TCP loopback)"),
                      ("floor-1", "through one relay process that only forwards")):
        out.append("| %s | %s |" % (name, " | ".join(
            fmt(f.med(cfg, "rate", "lat_us", q)) for q in quantiles)))

    def added_row(name, cfg, base):
        vals = [f.added(cfg, base, q) for q in quantiles]
        if any(v is not None for v in vals):
            out.append("| added by %s | %s |" % (name, " | ".join(fmt(v, "{:+.0f}") for v in vals)))

    added_row("the relay hop", "floor-1", "floor-0")
    added_row("shoji's tunnel (excluded host), same client and echo", "floor-shoji", "floor-0")
    added_row("tinyproxy's tunnel, same client and echo", "floor-tinyproxy", "floor-0")
    for cfg in PROXIES:
        added_row("%s (loadgen, HTTPS)" % cfg, cfg, "direct")
    out += ["", "(bench/hopfloor.c: a fixed-rate exchange to an echo process, straight and"
            " through a relay that reads and writes and nothing else; the difference is what a"
            " hop costs on this machine in wake-ups and loopback transfers, the floor under any"
            " proxy's added latency)"]
    return out + stall_rows(f)


def stall_figures(d):
    """(stalls of 0.5 ms or more per second per CPU, ms lost per second per
    CPU, longest stall µs) of one bench/vcpustall.c result."""
    cpus, secs = d.get("cpus") or [], d.get("seconds") or 0
    if not cpus or not secs:
        return None
    big = sum(c["gaps"].get(k, 0) for c in cpus for k in ("0.5-1ms", "1-2ms", "2ms+"))
    return (big / secs / len(cpus), sum(c["lost_ms_per_s"] for c in cpus) / len(cpus),
            max(c["max_gap_us"] for c in cpus))


def stall_rows(f):
    """How often a CPU stopped under a spinning thread, per repeat."""
    figs = [stall_figures(d) for d in f.runs.get(("stall", "cpu"), [])]
    figs = [x for x in figs if x]
    if not figs:
        return []
    return ["", "CPU stalls (bench/vcpustall.c: a thread per CPU, pinned, reading the clock in a"
            " loop for 2 s after each repeat's floor; a gap is time the thread did not run though"
            " it never blocked): per repeat, stalls of 0.5 ms or more per CPU per second %s;"
            " time lost in gaps of 10 µs or more %s ms/s; longest %s µs. A request whose path is"
            " on a CPU while it stalls is late by the stall, with or without a proxy." % (
                ", ".join("%.1f" % x[0] for x in figs), ", ".join("%.0f" % x[1] for x in figs),
                ", ".join("%.0f" % x[2] for x in figs))]


def rate_text(f):
    ds = f.runs.get(("direct", "rate"))
    if not ds:
        return "a fixed rate"
    d = ds[0]
    return "~%.0f req/s" % d["rps"]


def main():
    f = Fig(load(sys.argv[1]))
    lines = ["### Figures (medians)", ""] + main_table(f) + ["", "### shoji (decode) against each peer", ""]
    lines += vs_peers(f)
    lines += ["", "### Proxy CPU: user and kernel", ""] + cpu_split(f)
    lines += ["", "### Held idle connections", ""] + held_detail(f)
    lines += ["", "### Latency floor of one hop", ""] + floor_section(f)
    lines += ["", "### First contact with a never-seen host", ""] + first_section(f)
    lines += ["", "### Targets", ""] + targets(f)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
