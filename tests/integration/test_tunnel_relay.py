"""Pure tunnels (CONNECT to something shoji does not decode) carry bulk data
intact both ways, pass half-closes on, hold back a fast sender for a slow
reader without buffering the difference, scale to many tunnels at once,
and end after the tunnel idle timeout. (The relay is splice(2) since issue
9; see docs/ARCHITECTURE.md "Tunnels".)

The origin here is BulkServer: plain TCP, neither TLS nor HTTP, so the
agent tunnels it untouched. Its first line is a command:
  sink             read to EOF, answer "<bytes> <sha256>\\n", close
  source N         send N pattern bytes, close
  echo             echo to EOF, then close
  source-sink N    send N bytes, SHUT_WR, read to EOF (result kept), close
  hold             say nothing, close at EOF
"""
import hashlib
import os
import shutil
import subprocess
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers.agent import agent_metrics  # noqa: E402
from helpers.client import connect_tunnel  # noqa: E402
from helpers.origin import pattern_chunks, pattern_sha256  # noqa: E402
from helpers.tools import tcp_cc  # noqa: E402
from helpers.wait import wait_for  # noqa: E402

MIB = 1 << 20


class BulkServer:
    def __init__(self):
        self.results = {}          # source-sink: peer port -> (bytes, sha256)
        self.sent = {}             # peer port -> bytes sent so far
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._lsock = None
        self.port = None

    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(256)
        s.settimeout(0.2)
        self._lsock = s
        self.port = s.getsockname()[1]
        threading.Thread(target=self._loop, daemon=True).start()
        return self

    def stop(self):
        self._stop.set()
        self._lsock.close()

    def _loop(self):
        while not self._stop.is_set():
            try:
                c, peer = self._lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c, peer[1]), daemon=True).start()

    @staticmethod
    def _line(c):
        b = b""
        while not b.endswith(b"\n") and len(b) < 100:
            d = c.recv(1)
            if not d:
                break
            b += d
        return b.decode().split()

    def _send(self, c, peer, n):
        for chunk in pattern_chunks(n, 256 * 1024):
            c.sendall(chunk)
            with self._lock:
                self.sent[peer] = self.sent.get(peer, 0) + len(chunk)

    def _serve(self, c, peer):
        try:
            c.settimeout(60)
            cmd = self._line(c)
            if cmd[:1] == ["sink"]:
                n, digest = recv_all(c)
                c.sendall(b"%d %s\n" % (n, digest.encode()))
            elif cmd[:1] == ["source"]:
                self._send(c, peer, int(cmd[1]))
            elif cmd[:1] == ["echo"]:
                while True:
                    d = c.recv(256 * 1024)
                    if not d:
                        break
                    c.sendall(d)
            elif cmd[:1] == ["source-sink"]:
                self._send(c, peer, int(cmd[1]))
                c.shutdown(socket.SHUT_WR)
                with self._lock:
                    self.results[peer] = recv_all(c)
            elif cmd[:1] == ["hold"]:
                while c.recv(4096):
                    pass
        except OSError:
            pass
        finally:
            c.close()


@pytest.fixture
def agent(shared):
    return shared


@pytest.fixture(scope="module")
def bulk():
    s = BulkServer().start()
    yield s
    s.stop()


def tunnel(agent, bulk, cmd, timeout=60):
    s, r = connect_tunnel(agent.port, "echo.test", bulk.port, timeout=timeout)
    assert r.status == 200, r
    s.sendall(cmd)
    return s


def recv_all(s):
    h, n = hashlib.sha256(), 0
    while True:
        d = s.recv(256 * 1024)
        if not d:
            return n, h.hexdigest()
        h.update(d)
        n += len(d)


def send_pattern(s, n):
    for chunk in pattern_chunks(n, 256 * 1024):
        s.sendall(chunk)


def tunnel_records(agent, port):
    url = "echo.test:%d" % port
    return [r for r in agent.access_log_records() if r.get("method") == "CONNECT" and r.get("url") == url]


metrics = agent_metrics


def test_a_20_mib_upload_arrives_intact_and_the_client_half_close_passes_on(agent, bulk):
    """The client sends 21 MiB then shuts its write side; the origin sees
    EOF (the FIN was passed on) and its answer still reaches the client."""
    n = 21 * MIB
    s = tunnel(agent, bulk, b"sink\n")
    try:
        send_pattern(s, n)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(60)
        got = b""
        while not got.endswith(b"\n"):
            d = s.recv(200)
            assert d, "the origin's answer did not come back after the half-close (got %r)" % got
            got += d
        assert got.decode().split() == [str(n), pattern_sha256(n)]
        assert s.recv(10) == b""   # and then the origin's close
    finally:
        s.close()


def test_a_20_mib_download_arrives_intact_and_is_logged_with_its_bytes(agent, bulk):
    n = 21 * MIB + 12345
    cmd = b"source %d\n" % n
    s = tunnel(agent, bulk, cmd)
    try:
        s.settimeout(60)
        assert recv_all(s) == (n, pattern_sha256(n))
    finally:
        s.close()
    recs = wait_for(lambda: [r for r in tunnel_records(agent, bulk.port) if r["bytes_out"] == n],
                    10, "the tunnel's access-log line")
    assert recs[0]["bytes_in"] == len(cmd), recs[0]
    assert recs[0]["status"] == 200 and recs[0]["mode"] == "tunnel", recs[0]


@pytest.mark.skipif(not shutil.which("ss"), reason="needs ss (iproute2)")
def test_a_local_client_leg_does_not_pace_and_the_upstream_leg_keeps_the_default(agent, bulk):
    """A spliced tunnel's client socket (the client is on this host) uses
    reno, which does not pace: a pacing default such as BBR arms a timer per
    packet on a leg that has no bottleneck. The upstream leg is left to the
    system's choice. Bytes still flow both ways afterwards."""
    default = open("/proc/sys/net/ipv4/tcp_congestion_control").read().strip()
    s = tunnel(agent, bulk, b"echo\n")
    try:
        s.settimeout(30)
        me = s.getsockname()[1]
        blob = os.urandom(256 * 1024)   # bulk: the relay splices
        s.sendall(blob)
        got = b""
        while len(got) < len(blob):
            d = s.recv(256 * 1024)
            assert d
            got += d
        assert got == blob
        assert wait_for(lambda: tcp_cc(agent.port, me) == "reno", 10,
                        "reno on the agent's client socket") is True
        # the agent's upstream socket: its peer is the origin's port
        ups = subprocess.run(["ss", "-tinH", "state", "established", "( dport = :%d )" % bulk.port],
                             capture_output=True, text=True, check=True).stdout
        assert default in ups.split(), ups
        s.sendall(b"still open")
        assert s.recv(100) == b"still open"
    finally:
        s.close()


def test_20_mib_both_ways_at_once_through_an_echo(agent, bulk):
    n = 20 * MIB
    s = tunnel(agent, bulk, b"echo\n")
    errors = []

    def sender():
        try:
            send_pattern(s, n)
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            errors.append(e)

    t = threading.Thread(target=sender)
    t.start()
    try:
        s.settimeout(60)
        assert recv_all(s) == (n, pattern_sha256(n))
    finally:
        t.join(60)
        s.close()
    assert not errors, errors


def test_origin_half_close_the_client_gets_everything_then_still_sends(agent, bulk):
    """The origin sends 3 MiB and shuts its write side; the client reads to
    EOF, then sends 5 MiB more, which the origin receives whole."""
    s = tunnel(agent, bulk, b"source-sink %d\n" % (3 * MIB))
    port = s.getsockname()[1]
    try:
        s.settimeout(60)
        assert recv_all(s) == (3 * MIB, pattern_sha256(3 * MIB))
        send_pattern(s, 5 * MIB)
        s.shutdown(socket.SHUT_WR)
        assert s.recv(10) == b""   # the origin closed once it had it all
    finally:
        s.close()
    # the origin saw a connection from the agent, not from our port: find it
    wait_for(lambda: any(v == (5 * MIB, pattern_sha256(5 * MIB)) for v in bulk.results.values()),
             20, "the origin to receive the 5 MiB sent after its half-close (port %d)" % port)


def test_a_slow_reader_holds_back_the_origin_without_the_agent_buffering_it(agent, bulk):
    n = 96 * MIB
    rss0 = agent.rss_kb()
    s = tunnel(agent, bulk, b"source %d\n" % n)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        s.settimeout(60)
        first = s.recv(1024)
        assert first
        time.sleep(2.5)   # the client reads nothing: the origin must stall
        sent = max(bulk.sent.values()) if bulk.sent else 0
        grew = agent.rss_kb() - rss0
        assert sent < 48 * MIB, "the origin sent %d MiB to a client that read 1 KiB" % (sent >> 20)
        assert grew < 24 * 1024, "the agent's RSS grew by %d KiB while the client stalled" % grew
        # then read slowly, in small steps, and everything arrives intact
        h = hashlib.sha256(first)
        got = len(first)
        for _ in range(20):
            d = s.recv(64 * 1024)
            h.update(d)
            got += len(d)
            time.sleep(0.01)
        while True:
            d = s.recv(1024 * 1024)
            if not d:
                break
            h.update(d)
            got += len(d)
        assert (got, h.hexdigest()) == (n, pattern_sha256(n))
        assert agent.rss_kb() - rss0 < 24 * 1024
    finally:
        s.close()


def test_many_concurrent_tunnels_each_carry_their_own_bytes(agent, bulk):
    n_tunnels, size = 64, 512 * 1024
    # Earlier tests' tunnels closed and their lines written (the agent writes
    # access-log lines in batches, within 50 ms) before counting.
    before = wait_for(lambda: (lambda m: m if m["shoji_connections_open"] <= 1 else None)(metrics(agent)),
                      15, "earlier tunnels to be closed")
    time.sleep(0.2)
    logged0 = len(tunnel_records(agent, bulk.port))

    def one(i):
        if i % 2:
            s = tunnel(agent, bulk, b"source %d\n" % (size + i))
            try:
                s.settimeout(60)
                return recv_all(s) == (size + i, pattern_sha256(size + i))
            finally:
                s.close()
        s = tunnel(agent, bulk, b"sink\n")
        try:
            send_pattern(s, size + i)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(60)
            answer = b""
            while True:
                d = s.recv(200)
                if not d:
                    break
                answer += d
            return answer.split() == [b"%d" % (size + i), pattern_sha256(size + i).encode()]
        finally:
            s.close()

    with ThreadPoolExecutor(max_workers=n_tunnels) as ex:
        results = list(ex.map(one, range(n_tunnels)))
    assert all(results), results
    after = wait_for(lambda: (lambda m: m if m["shoji_connections_open"] <= 1 else None)(metrics(agent)),
                     15, "every tunnel to be closed")   # 1: the /metrics request itself
    assert after["shoji_tunnels_total"] - before["shoji_tunnels_total"] == n_tunnels
    wait_for(lambda: len(tunnel_records(agent, bulk.port)) - logged0 == n_tunnels, 10,
             "an access-log line per tunnel")


def test_an_idle_tunnel_is_closed_after_the_idle_timeout_and_a_busy_one_is_not(agent_factory, bulk):
    a = agent_factory(extra_args=["--tunnel-idle-timeout", "1500"]).start()
    idle = tunnel(a, bulk, b"hold\n")
    busy = tunnel(a, bulk, b"echo\n")
    try:
        idle.settimeout(15)
        busy.settimeout(5)
        t0 = time.monotonic()
        for _ in range(8):   # 4 s of a byte every 0.5 s: never idle 1.5 s
            busy.sendall(b"x")
            assert busy.recv(10) == b"x"
            time.sleep(0.5)
        assert idle.recv(10) == b"", "the idle tunnel was not closed"
        assert time.monotonic() - t0 < 10
        busy.sendall(b"y")
        assert busy.recv(10) == b"y", "the busy tunnel was closed although it was in use"
    finally:
        idle.close()
        busy.close()
    recs = wait_for(lambda: tunnel_records(a, bulk.port) if len(tunnel_records(a, bulk.port)) >= 2
                    else None, 10, "both tunnels' access-log lines")
    by_in = sorted(r["bytes_in"] for r in recs)
    assert by_in == [len(b"hold\n"), len(b"echo\n") + 9], recs


def test_stopping_the_agent_with_busy_and_stalled_tunnels_open_is_clean(agent_factory, bulk):
    """SIGTERM with one tunnel in use and one whose client stopped reading
    (bytes held inside the agent): the agent ends within its grace time,
    exit status 0, and (ASan builds) nothing leaks."""
    a = agent_factory(extra_args=["--shutdown-grace", "1000"]).start()
    busy = tunnel(a, bulk, b"echo\n")
    stalled = tunnel(a, bulk, b"source %d\n" % (64 * MIB))
    try:
        busy.settimeout(10)
        busy.sendall(b"ping")
        assert busy.recv(10) == b"ping"
        stalled.settimeout(10)
        assert stalled.recv(1024)
        time.sleep(1)   # the origin fills everything up to the agent
        t0 = time.monotonic()
        a.stop(check=True, timeout=10)
        assert time.monotonic() - t0 < 6
        busy.settimeout(5)
        try:
            assert busy.recv(10) == b""
        except ConnectionResetError:
            pass
    finally:
        busy.close()
        stalled.close()
