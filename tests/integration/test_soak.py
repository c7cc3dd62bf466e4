"""Soak (issue 10 part 2): 10,000 requests through the ASan/LSan agent,
mixed plain HTTP (keep-alive and new connections), decoded HTTPS (keep-alive
and fresh handshakes) and tunnels (non-TLS, relayed untouched), from 4
client threads, bounded at 100 s. Afterwards: every response was right, the
agent's sockets and files are back to their start (once the origins are
gone, so no pooled upstream connection is left; its pipe and /proc caches
within their bounds), RSS is printed, and SIGTERM gives exit
0 with no LeakSanitizer report (Agent.stop(check=True)). RSS growth is
checked with a 4 MiB ASan quarantine (the default 256 MiB hides real growth)."""
import os
import threading
import time

from helpers.client import HTTPReader, ProxyClient, connect_tunnel, tls_context
from helpers.origin import TCPEchoServer

TOTAL = 10000
DEADLINE_S = 100
THREADS = 4


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


# Bounded fd caches of a worker (2 in these tests), not leaks: empty pipes
# kept for spliced tunnels (SPLICE_POOL_MAX, 2 fds each) and recent client
# processes kept open by the socket -> process lookup (OWNERS, 3 fds each).
WORKERS = 2
CACHED_PIPE_FDS = WORKERS * 8 * 2
CACHED_PROC_FDS = WORKERS * 16 * 3


def fd_kinds(pid):
    """Open fds by kind: socket, pipe, proc (a /proc directory or file), other."""
    kinds = {"socket": 0, "pipe": 0, "proc": 0, "other": 0}
    d = "/proc/%d/fd" % pid
    for fd in os.listdir(d):
        try:
            t = os.readlink(os.path.join(d, fd))
        except OSError:
            continue   # closed while we looked
        kind = ("socket" if t.startswith("socket:") else "pipe" if t.startswith("pipe:")
                else "proc" if t.startswith("/proc/") else "other")
        kinds[kind] += 1
    return kinds


def fds_back(k0, k1):
    """Sockets and files back to where they were (+2 for a connection still
    closing); the caches within their bounds."""
    return (k1["socket"] <= k0["socket"] + 2 and k1["other"] <= k0["other"] + 2 and
            k1["pipe"] <= k0["pipe"] + CACHED_PIPE_FDS and k1["proc"] <= k0["proc"] + CACHED_PROC_FDS)


class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.done = 0
        self.kinds = {}
        self.errors = []

    def take(self, n=1):
        with self.lock:
            if self.done >= TOTAL:
                return False
            self.done += n
            return True

    def ok(self, kind, n=1):
        with self.lock:
            self.kinds[kind] = self.kinds.get(kind, 0) + n

    def fail(self, kind, e):
        with self.lock:
            if len(self.errors) < 20:
                self.errors.append("%s: %r" % (kind, e))


def plain_keepalive(agent, plain, ctr, n):
    with ProxyClient(agent.port) as c:
        for i in range(n):
            if not ctr.take():
                return
            r = c.request("GET", plain.url("/soak/p%d" % i))
            assert r.status == 200 and plain.marker in r.text, r
            ctr.ok("plain-keepalive")


def plain_new(agent, plain, ctr):
    if not ctr.take():
        return
    with ProxyClient(agent.port) as c:
        r = c.request("POST", plain.url("/echo"), body=b"x" * 3000, headers=[("Connection", "close")])
        assert r.status == 200 and b'"bytes": 3000' in r.body.replace(b'"bytes":3000', b'"bytes": 3000'), r
    ctr.ok("plain-new")


def decoded(agent, good, ctx, ctr, n):
    s, r = connect_tunnel(agent.port, "good.test", good.port)
    assert r.status == 200
    tls = ctx.wrap_socket(s, server_hostname="good.test")
    try:
        rd = HTTPReader(tls)
        for i in range(n):
            if not ctr.take():
                return
            tls.sendall(b"GET /soak/d%d HTTP/1.1\r\nHost: good.test:%d\r\n\r\n" % (i, good.port))
            r = rd.response()
            assert r.status == 200 and good.marker in r.text, r
            ctr.ok("decoded-keepalive" if n > 1 else "decoded-new")
    finally:
        tls.close()


def tunnel(agent, echo, ctr):
    if not ctr.take():
        return
    s, r = connect_tunnel(agent.port, "echo.test", echo.port)
    try:
        assert r.status == 200
        s.sendall(b"not tls, not http\n")
        want = ("SHOJI-ECHO %s\r\n" % echo.marker).encode() + b"not tls, not http\n"
        got = b""
        while len(got) < len(want):
            d = s.recv(4096)
            if not d:
                break
            got += d
        assert got == want, got
    finally:
        s.close()
    ctr.ok("tunnel")


def worker(agent, origins, echo, ctx, ctr, t_end, seed):
    i = seed
    while ctr.done < TOTAL and time.monotonic() < t_end:
        i += 1
        kind = i % 10
        try:
            if kind < 2:
                plain_keepalive(agent, origins["plain"], ctr, 20)
            elif kind < 4:
                for _ in range(10):
                    plain_new(agent, origins["plain"], ctr)
            elif kind < 6:
                decoded(agent, origins["good"], ctx, ctr, 20)
            elif kind < 8:
                for _ in range(5):
                    decoded(agent, origins["good"], ctx, ctr, 1)
            else:
                for _ in range(10):
                    tunnel(agent, echo, ctr)
        except Exception as e:  # recorded, the test fails on any
            ctr.fail(kind, e)


def test_soak_10000_requests_no_leak_no_fd_growth(agent_factory, origins):
    # a small ASan quarantine, so that RSS shows real growth, not freed
    # memory ASan holds back (256 MiB by default)
    a = agent_factory(env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1:"
                                          "quarantine_size_mb=4"}).start()
    echo = TCPEchoServer().start()
    ctx = tls_context(a.ca_path)
    # warm-up: the first decode mints and caches a leaf, opens the log, etc.
    ctr0 = Counter()
    ctr0.done = TOTAL - 3
    decoded(a, origins["good"], ctx, ctr0, 1)
    plain_new(a, origins["plain"], ctr0)
    tunnel(a, echo, ctr0)
    time.sleep(0.5)
    fds0, kinds0, rss0 = fd_count(a.pid), fd_kinds(a.pid), a.rss_kb()
    ctr = Counter()
    t0 = time.monotonic()
    t_end = t0 + DEADLINE_S
    ths = [threading.Thread(target=worker, args=(a, origins, echo, ctx, ctr, t_end, k * 3))
           for k in range(THREADS)]
    for t in ths:
        t.start()
    peak_fds = fds0
    while any(t.is_alive() for t in ths):
        peak_fds = max(peak_fds, fd_count(a.pid))
        time.sleep(0.5)
    took = time.monotonic() - t0
    rss1 = a.rss_kb()
    assert ctr.errors == [], "failed requests: %s" % ctr.errors
    completed = sum(ctr.kinds.values())
    assert completed >= TOTAL, "only %d of %d requests in %d s: %s" % (completed, TOTAL, DEADLINE_S, ctr.kinds)
    # the origins go away: the agent must drop its pooled upstream connections
    for o in origins.values():
        o.stop()
    echo.stop()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        fds1, kinds1 = fd_count(a.pid), fd_kinds(a.pid)
        if fds_back(kinds0, kinds1):
            break
        time.sleep(0.2)
    print("\nsoak: %d requests in %.1f s (%s); fds %d -> peak %d -> %d (%r -> %r); RSS %d -> %d KiB" % (
        completed, took, ", ".join("%s %d" % kv for kv in sorted(ctr.kinds.items())),
        fds0, peak_fds, fds1, kinds0, kinds1, rss0, rss1))
    assert fds_back(kinds0, kinds1), "fds grew over the soak: %r -> %r" % (kinds0, kinds1)
    assert rss1 - rss0 < 64 * 1024, "RSS grew by %d KiB over the soak" % (rss1 - rss0)
    a.stop(check=True)   # SIGTERM: exit 0 and no LeakSanitizer report
