#!/usr/bin/python3
"""bench/report.py RESULTS.jsonl: the markdown tables of `make bench`.

Reads the loadgen JSON lines written by bench/run.sh (label CONFIG/TEST/REPEAT),
takes the median over repeats and prints: the main table (with ratios to
direct), shoji against each peer, and the issue-9 targets met or missed."""
import json
import statistics
import sys
from collections import defaultdict

PROXIES = ["shoji-decode", "shoji-tunnel", "shoji-http", "squid", "mitmproxy",
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
            cfg, test, _rep = d["label"].split("/")
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
            if cfg.startswith("direct"):
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
        cells.append(fmt(idle / 1024 if idle and not cfg.startswith("direct") else None,
                         "{:,.1f}"))
        load = f.rss_load(cfg)
        cells.append(fmt(load / 1024 if load and not cfg.startswith("direct") else None,
                         "{:,.1f}"))
        cells.append(held_cell(f, cfg))
        cells.append("%d / %d" % (f.errors(cfg), f.requests(cfg)))
        out.append("| " + " | ".join(cells) + " |")
    return out


def held_cell(f, cfg):
    ds = f.runs.get((cfg, "hold"))
    if not ds:
        return "–"
    d = ds[0]
    return "%.1f (%d/%d held, %.0f s)" % (d["kib_per_conn"], d["still_open"], d["hold"],
                                          d["seconds"])


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


def first_contact(f):
    first = f.med("shoji-first", "first", "lat_us", "p50")
    warm = f.med("shoji-first", "warm", "lat_us", "p50")
    direct = f.med("direct", "first", "lat_us", "p50")
    return first, warm, direct


def check(rows, name, measured, ok, target):
    state = "–" if ok is None else ("met" if ok else "**missed**")
    rows.append("| %s | %s | %s | %s |" % (name, target, measured, state))


def targets(f):
    rows = ["| target (issue 9) | wanted | measured | |", "|---|---|---|---|"]
    d, s = "shoji-decode", "squid"
    r = ratio(f.med(d, "ka", "rps"), f.med(s, "ka", "rps"))
    check(rows, "decode keep-alive req/s vs Squid", fmt(r, "{:.2f}x"),
          None if r is None else r >= 2, ">= 2x")
    c = f.med(d, "ka", "proxy_cpu_us_per_req")
    check(rows, "decode keep-alive CPU/req", fmt(c, "{:.1f} µs"), None if c is None else c <= 40,
          "<= 40 µs")
    r = ratio(f.med(d, "new", "rps"), f.med(s, "new", "rps"))
    check(rows, "new decoded conn/s vs Squid", fmt(r, "{:.2f}x"),
          None if r is None else r >= 1.3, ">= 1.3x")
    c = f.med(d, "new", "proxy_cpu_us_per_req")
    check(rows, "CPU per new decoded conn", fmt(c, "{:.0f} µs"),
          None if c is None else c <= 500, "<= 500 µs")
    first, _warm, direct = first_contact(f)
    add = None if None in (first, direct) else first - direct
    check(rows, "first contact (mint) over direct", fmt(add and add / 1000, "{:.2f} ms"),
          None if add is None else add < 2000, "< 2 ms")
    r = ratio(f.med(d, "bulk", "mb_per_s"), f.med(s, "bulk", "mb_per_s"))
    check(rows, "bulk decoded vs Squid", fmt(r, "{:.2f}x"), None if r is None else r >= 2, ">= 2x")
    r = ratio(f.med("shoji-tunnel", "bulk", "mb_per_s"), f.med("direct", "bulk", "mb_per_s"))
    check(rows, "bulk tunnelled vs direct", fmt(r and r * 100, "{:.0f}%"),
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
              None if k is None else (k < lim and bool(held)), "< %d KiB, all held" % lim)
    a, b = f.med(d, "rate", "lat_us", "p99"), f.med("direct", "rate", "lat_us", "p99")
    add = None if None in (a, b) else a - b
    if b is not None and b > 5000:
        # the direct p99 itself is far above the target: the machine is too
        # busy for a 1 ms verdict either way
        rows.append("| added p99 latency at %s | < 1 ms | %+.0f µs | not measurable: direct p99"
                    " is %.1f ms |" % (rate_text(f), add, b / 1000))
    else:
        check(rows, "added p99 latency at %s" % rate_text(f), fmt(add, "{:+.0f} µs"),
              None if add is None else add < 1000, "< 1 ms")
    return rows


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
    first, warm, direct = first_contact(f)
    lines += ["", "### Targets", ""] + targets(f)
    lines += ["", "First contact: a fresh shoji's first decoded request (mint + both handshakes)"
              " %s µs; the same with the leaf cached %s µs; direct new connection %s µs." %
              (fmt(first), fmt(warm), fmt(direct))]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
