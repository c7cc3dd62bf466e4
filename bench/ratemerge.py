#!/usr/bin/python3
"""bench/ratemerge.py LABEL SLICES.jsonl LAT...: one fixed-rate result from
the slices bench/run.sh's rate_slices took of one configuration.

SLICES.jsonl has the loadgen's JSON line of every slice; each LAT file its
--lat-log ("due_us latency_us" per measured request). Prints one JSON line
in the loadgen's own shape, labelled LABEL: requests, errors, seconds, CPU
and client CPU summed over the slices (per-request figures from the sums),
RSS the largest, and lat_us the percentiles of all slices' latencies
pooled, as if one run had measured them all."""
import json
import sys

SUMMED = ("requests", "connections", "errors", "seconds", "proxy_cpu_s", "proxy_sys_s",
          "client_cpu_s")


def pct(xs, q):
    """The loadgen's own percentile: the sample at rank q * (n - 1), rounded."""
    return xs[int(q * (len(xs) - 1) + 0.5)] if xs else 0


def read_lat(path):
    """[(due_us, latency_us)] of one loadgen --lat-log."""
    out = []
    with open(path) as f:
        for line in f:
            a = line.split()
            if len(a) == 2:
                out.append((int(a[0]), int(a[1])))
    return out


def merge(label, slices, lats):
    out = dict(slices[0])
    out["label"] = label
    out["slices"] = len(slices)
    for k in SUMMED:
        out[k] = sum(d.get(k, 0) for d in slices)
    out["errors_by"] = {k: sum(d.get("errors_by", {}).get(k, 0) for d in slices)
                        for k in slices[0].get("errors_by", {})}
    out["proxy_rss_max_kib"] = max(d.get("proxy_rss_max_kib", 0) for d in slices)
    n, secs = out["requests"], out["seconds"]
    out["rps"] = round(n / secs, 1) if secs else 0
    out["mb_per_s"] = round(sum(d.get("mb_per_s", 0) * d.get("seconds", 0) for d in slices) / secs, 2) if secs else 0
    per = lambda s: round(s * 1e6 / n, 1) if n else 0
    out["proxy_cpu_us_per_req"] = per(out["proxy_cpu_s"])
    out["proxy_sys_us_per_req"] = per(out["proxy_sys_s"])
    out["proxy_user_us_per_req"] = per(out["proxy_cpu_s"] - out["proxy_sys_s"])
    out["proxy_sys_share"] = round(out["proxy_sys_s"] / out["proxy_cpu_s"], 2) if out["proxy_cpu_s"] else 0
    out["client_cpu_us_per_req"] = per(out["client_cpu_s"])
    lats.sort()
    out["lat_us"] = {"p50": pct(lats, .5), "p90": pct(lats, .9), "p99": pct(lats, .99),
                     "max": lats[-1] if lats else 0,
                     "mean": round(sum(lats) / len(lats)) if lats else 0}
    out["lat_samples"] = len(lats)
    return out


def main(argv):
    if len(argv) < 3:
        print("usage: ratemerge.py LABEL SLICES.jsonl LAT...", file=sys.stderr)
        return 2
    slices = []
    with open(argv[2]) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                slices.append(json.loads(line))
    if not slices:
        print("ratemerge: %s: no slice has a result" % argv[2], file=sys.stderr)
        return 1
    lats = [lat for path in argv[3:] for _, lat in read_lat(path)]
    print(json.dumps(merge(argv[1], slices, lats), separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
