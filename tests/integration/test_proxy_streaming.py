"""Bodies stream: a 50 MB upload (chunked) and a 50 MB download pass
through plain HTTP and HTTPS decode while the agent's resident memory
grows by less than 32 MB.

The agent here runs with ASAN_OPTIONS quarantine_size_mb=16: ASan's
default 256 MB quarantine keeps every freed buffer resident for a while,
which would measure ASan, not the agent (a non-ASan build needs nothing)."""
import hashlib
import json
import threading
import time

import pytest

from helpers.agent import Agent, sanitizer_env
from helpers.client import HTTPReader, ProxyClient, _request_bytes, tls_via_proxy
from helpers.origin import pattern_chunks, pattern_sha256

SIZE = 50 * 1024 * 1024
LIMIT_KB = 32 * 1024
RESULTS = {}


class RssSampler:
    def __init__(self, agent, every=0.02):
        self.agent = agent
        self.every = every
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.agent.rss_kb())
                self.samples += 1
            except (OSError, ValueError):
                pass
            self._stop.wait(self.every)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


@pytest.fixture(scope="module")
def lean_agent_module(tmp_path_factory, hosts_file, pki):
    asan = sanitizer_env().get("ASAN_OPTIONS", "")
    asan = (asan + ":" if asan else "") + "quarantine_size_mb=16"
    d = tmp_path_factory.mktemp("lean-agent")
    a = Agent(str(d / "state"), hosts_path=hosts_file, upstream_ca=pki.ca_cert_path,
              access_log=str(d / "access.log"), env={"ASAN_OPTIONS": asan})
    a.ca_init()
    a.start()
    yield a
    a.stop(check=True)


@pytest.fixture
def lean_agent(lean_agent_module):
    yield lean_agent_module
    assert lean_agent_module.running(), "agent died:\n" + lean_agent_module.stderr()


def chunked_upload(sock, host, n):
    sock.sendall(("POST /echo HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n" % host)
                 .encode())
    for piece in pattern_chunks(n):
        sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
    sock.sendall(b"0\r\n\r\n")


def warm_up(agent, origin, decode):
    """One small exchange first so start-up allocations (TLS contexts, leaf
    minting, buffers) are in the baseline."""
    if decode:
        s = tls_via_proxy(agent.port, origin.name, origin.port, cafile=agent.ca_path)
        s.sendall(_request_bytes("GET", "/bytes/100000", None, None, "%s:%d" % (origin.name, origin.port)))
        HTTPReader(s).response()
        s.close()
    else:
        with ProxyClient(agent.port) as c:
            c.request("GET", origin.url("/bytes/100000"))


def open_conn(agent, origin, decode):
    if decode:
        s = tls_via_proxy(agent.port, origin.name, origin.port, cafile=agent.ca_path, timeout=60)
        return s, "/", "%s:%d" % (origin.name, origin.port)
    c = ProxyClient(agent.port, timeout=60)
    return c.sock, origin.url("/"), "%s:%d" % (origin.name, origin.port)


def record(name, growth_kb, secs):
    RESULTS[name] = (growth_kb, secs)
    print("\n[memory] %s: RSS growth %.1f MB over a 50 MB transfer (%.1fs)" % (
        name, growth_kb / 1024.0, secs))


@pytest.mark.parametrize("mode", ["plain", "decode"])
def test_50mb_download_streams_with_bounded_memory(lean_agent, origins, mode):
    decode = mode == "decode"
    origin = origins["good"] if decode else origins["plain"]
    warm_up(lean_agent, origin, decode)
    base = lean_agent.rss_kb()
    sock, prefix, host = open_conn(lean_agent, origin, decode)
    h = hashlib.sha256()
    t0 = time.monotonic()
    with RssSampler(lean_agent) as rss:
        sock.sendall(_request_bytes("GET", prefix + "bytes/%d" % SIZE, None, None, host))
        r = HTTPReader(sock).response(sink=h.update)
    secs = time.monotonic() - t0
    sock.close()
    assert r.status == 200 and r.body_len == SIZE
    assert h.hexdigest() == pattern_sha256(SIZE), "download corrupted"
    growth = rss.peak - base
    record("download/" + mode, growth, secs)
    assert growth < LIMIT_KB, "RSS grew %d KB (base %d KB, peak %d KB)" % (growth, base, rss.peak)


@pytest.mark.parametrize("mode", ["plain", "decode"])
def test_50mb_chunked_upload_streams_with_bounded_memory(lean_agent, origins, mode):
    decode = mode == "decode"
    origin = origins["good"] if decode else origins["plain"]
    warm_up(lean_agent, origin, decode)
    base = lean_agent.rss_kb()
    sock, prefix, host = open_conn(lean_agent, origin, decode)
    t0 = time.monotonic()
    with RssSampler(lean_agent) as rss:
        if decode:
            chunked_upload(sock, host, SIZE)
        else:
            sock.sendall(("POST %secho HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
                          % (prefix, host)).encode())
            for piece in pattern_chunks(SIZE):
                sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        r = HTTPReader(sock).response()
    secs = time.monotonic() - t0
    sock.close()
    assert r.status == 200, r
    got = json.loads(r.body)
    assert got["bytes"] == SIZE and got["sha256"] == pattern_sha256(SIZE), got
    growth = rss.peak - base
    record("upload/" + mode, growth, secs)
    assert growth < LIMIT_KB, "RSS grew %d KB (base %d KB, peak %d KB)" % (growth, base, rss.peak)
    # the body was really streamed upstream, not buffered whole first:
    # checked by memory above; the origin saw the full count
    assert origin.requests_for("/echo")[-1].body_bytes == SIZE


class SlowSink:
    """Hashes a body; stops reading for `pause` seconds after the first MiB
    (a slow client: the proxy must not buffer what the origin sends)."""

    def __init__(self, pause):
        self.h = hashlib.sha256()
        self.n = 0
        self.pause = pause

    def __call__(self, b):
        self.h.update(b)
        self.n += len(b)
        if self.pause and self.n >= 1 << 20:
            time.sleep(self.pause)
            self.pause = 0


@pytest.mark.parametrize("mode", ["plain", "decode"])
def test_slow_client_download_applies_backpressure(lean_agent, origins, mode):
    """The client stops reading for 1.5 s mid-download of 50 MB: the agent
    must stop reading from the origin, not buffer the rest in memory."""
    decode = mode == "decode"
    origin = origins["good"] if decode else origins["plain"]
    warm_up(lean_agent, origin, decode)
    base = lean_agent.rss_kb()
    sock, prefix, host = open_conn(lean_agent, origin, decode)
    sink = SlowSink(1.5)
    t0 = time.monotonic()
    with RssSampler(lean_agent) as rss:
        sock.sendall(_request_bytes("GET", prefix + "bytes/%d" % SIZE, None, None, host))
        r = HTTPReader(sock).response(sink=sink)
    secs = time.monotonic() - t0
    sock.close()
    assert r.status == 200 and sink.n == SIZE and sink.h.hexdigest() == pattern_sha256(SIZE)
    growth = rss.peak - base
    record("slow-client download/" + mode, growth, secs)
    assert growth < LIMIT_KB, "RSS grew %d KB with a slow client (base %d KB, peak %d KB)" % (
        growth, base, rss.peak)


@pytest.mark.parametrize("mode", ["plain", "decode"])
def test_slow_origin_upload_applies_backpressure(lean_agent, origins, mode):
    """The origin stops reading for 1.5 s mid-upload of 50 MB: the agent
    must stop reading from the client, not buffer the rest in memory."""
    decode = mode == "decode"
    origin = origins["good"] if decode else origins["plain"]
    warm_up(lean_agent, origin, decode)
    base = lean_agent.rss_kb()
    sock, prefix, host = open_conn(lean_agent, origin, decode)
    t0 = time.monotonic()
    with RssSampler(lean_agent) as rss:
        sock.sendall(("POST %secho?pause_ms=1500 HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n"
                      % (prefix, host, SIZE)).encode())
        for piece in pattern_chunks(SIZE):
            sock.sendall(piece)
        r = HTTPReader(sock).response()
    secs = time.monotonic() - t0
    sock.close()
    assert r.status == 200, r
    got = json.loads(r.body)
    assert got["bytes"] == SIZE and got["sha256"] == pattern_sha256(SIZE), got
    growth = rss.peak - base
    record("slow-origin upload/" + mode, growth, secs)
    assert growth < LIMIT_KB, "RSS grew %d KB with a slow origin (base %d KB, peak %d KB)" % (
        growth, base, rss.peak)
