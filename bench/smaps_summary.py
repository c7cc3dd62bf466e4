#!/usr/bin/env python3
"""bench/smaps_summary.py PID: where a process's resident memory is, from
/proc/PID/smaps: Rss and Anonymous summed per mapped file (anonymous
mappings as [heap], [stack], [anon]), then VmRSS, RssAnon, Pss totals.
Used for the idle breakdown in docs/PERFORMANCE.md ("Memory")."""
import collections
import re
import sys


def main():
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.exit("usage: smaps_summary.py PID")
    pid = sys.argv[1]
    agg = collections.defaultdict(lambda: [0, 0])
    tot = collections.Counter()
    name = None
    with open("/proc/%s/smaps" % pid) as f:
        for line in f:
            m = re.match(r"^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$", line)
            if m:
                name = (m.group(1) or "[anon]").split("/")[-1]
                continue
            key, _, rest = line.partition(":")
            if key in ("Rss", "Anonymous", "Pss", "Private_Dirty", "Private_Clean"):
                kib = int(rest.split()[0])
                tot[key] += kib
                if key == "Rss":
                    agg[name][0] += kib
                elif key == "Anonymous":
                    agg[name][1] += kib
    print("%9s %9s  %s" % ("Rss KiB", "anon KiB", "mapping"))
    for k, v in sorted(agg.items(), key=lambda kv: -kv[1][0]):
        if v[0]:
            print("%9d %9d  %s" % (v[0], v[1], k))
    print("total: Rss %d KiB, Anonymous %d KiB, Pss %d KiB, private dirty %d KiB, private clean %d KiB"
          % (tot["Rss"], tot["Anonymous"], tot["Pss"], tot["Private_Dirty"], tot["Private_Clean"]))


if __name__ == "__main__":
    main()
