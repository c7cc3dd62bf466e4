#!/usr/bin/python3
"""The tunnel relay alone: plain TCP through a shoji CONNECT tunnel on
loopback, no TLS, no nginx, so the agent's own cost per byte shows.

  bench/tunnel_relay.py SHOJI_BIN bulk MIB [REPEATS]   # one download of MIB MiB
  bench/tunnel_relay.py SHOJI_BIN ping ROUNDS [CONNS]  # 1 KiB ping-pong
  bench/tunnel_relay.py direct bulk MIB                # the same without shoji

Env: SEND_CHUNK (bytes per send of the origin, default 1 MiB), SEND_SLEEP
(seconds between sends). Prints MB/s (or round trips/s) and the agent's
CPU (utime+stime from /proc) per MiB (or per round trip), 3 repeats each.
One worker, access log /dev/null, the built-in policy. See
docs/PERFORMANCE.md "Tunnels: the splice(2) relay"."""
import os
import shutil
import socket
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from helpers.agent import Agent, write_hosts_file  # noqa: E402
from helpers.client import connect_tunnel  # noqa: E402

SLEEP = float(os.environ.get("SEND_SLEEP", 0))
CHUNK = int(os.environ.get("SEND_CHUNK", 1 << 20))


def origin(mode, mib):
    """A plain TCP origin: bulk sends MIB MiB after the first line; ping echoes."""
    blk = os.urandom(CHUNK)
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(64)

    def run(c):
        try:
            if mode == "bulk":
                c.recv(100)
                for _ in range((mib << 20) // CHUNK):
                    c.sendall(blk)
                    if SLEEP:
                        time.sleep(SLEEP)
            else:
                while True:
                    d = c.recv(65536)
                    if not d:
                        break
                    c.sendall(d)
        except OSError:
            pass
        c.close()

    def loop():
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            threading.Thread(target=run, args=(c,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return ls.getsockname()[1]


def cpu_s(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def main():
    binp, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    extra = int(sys.argv[4]) if len(sys.argv) > 4 else (3 if mode == "bulk" else 4)
    port = origin(mode, n)
    agent = None
    if binp != "direct":
        os.environ["SHOJI_BIN"] = binp
        d = tempfile.mkdtemp(prefix="shoji-relay-")
        hosts = write_hosts_file(os.path.join(d, "hosts"), ["relay.test"])
        agent = Agent(os.path.join(d, "state"), hosts_path=hosts, access_log="/dev/null", workers=1)
        agent.ca_init()
        agent.start()

    def open_conn():
        if agent:
            s, r = connect_tunnel(agent.port, "relay.test", port)
            assert r.status == 200, r
            return s
        return socket.create_connection(("127.0.0.1", port))

    res = []
    if mode == "bulk":
        for _ in range(extra):
            s = open_conn()
            c0 = cpu_s(agent.pid) if agent else 0
            s.sendall(b"go\n")
            buf, got, t0 = bytearray(1 << 20), 0, time.perf_counter()
            while True:
                k = s.recv_into(buf)
                if not k:
                    break
                got += k
            dt = time.perf_counter() - t0
            s.close()
            assert got == n << 20, got
            res.append((got / dt / 1e6, (cpu_s(agent.pid) - c0) * 1e6 / n if agent else 0))
        unit = ("MB/s", "CPU us/MiB")
    else:
        socks = [open_conn() for _ in range(extra)]
        msg = b"q" * 1024

        def client(s):
            for _ in range(n):
                s.sendall(msg)
                k = 0
                while k < len(msg):
                    k += len(s.recv(65536))

        for _ in range(3):
            c0 = cpu_s(agent.pid) if agent else 0
            t0 = time.perf_counter()
            th = [threading.Thread(target=client, args=(s,)) for s in socks]
            for t in th:
                t.start()
            for t in th:
                t.join()
            dt = time.perf_counter() - t0
            res.append((n * extra / dt, (cpu_s(agent.pid) - c0) * 1e6 / (n * extra) if agent else 0))
        for s in socks:
            s.close()
        unit = ("round trips/s", "CPU us/round trip")
    if agent:
        time.sleep(0.3)
        agent.stop()
        shutil.rmtree(os.path.dirname(agent.state_dir), ignore_errors=True)
    res.sort()
    print("%s %s: %s %s (median %.0f) | %s %s" % (
        binp, mode, unit[0], [round(r[0]) for r in res], res[len(res) // 2][0], unit[1],
        sorted(round(r[1], 1) for r in res)))


if __name__ == "__main__":
    main()
