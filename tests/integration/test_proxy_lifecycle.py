"""Start-up, CA files, tunnels of non-TLS traffic, and graceful shutdown."""
import os
import stat
import threading
import time

import pytest

from helpers.agent import run_cli
from helpers.client import ProxyClient, connect_tunnel
from helpers.origin import pattern_sha256


def test_ca_init_writes_certificate_and_private_key_0600(tmp_path):
    d = tmp_path / "state"
    run_cli(["ca", "init", "--state-dir", str(d)])
    assert (d / "ca.crt").read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    mode = stat.S_IMODE(os.stat(d / "ca.key").st_mode)
    assert mode == 0o600, "ca.key mode %o" % mode


def test_sigterm_lets_an_inflight_slow_download_complete(agent, origins):
    plain = origins["plain"]
    size = 400000
    result = {}
    first_bytes = threading.Event()

    def download():
        import hashlib
        h = hashlib.sha256()

        def sink(b):
            h.update(b)
            first_bytes.set()
        try:
            with ProxyClient(agent.port, timeout=20) as c:
                r = c.request("GET", plain.url("/slow/%d?ms=2000" % size), sink=sink)
                result["status"], result["len"], result["sha"] = r.status, r.body_len, h.hexdigest()
        except Exception as e:  # reported below
            result["error"] = repr(e)
        first_bytes.set()

    t = threading.Thread(target=download)
    t.start()
    assert first_bytes.wait(10), "download never started"
    t0 = time.monotonic()
    rc = agent.stop(timeout=15)  # SIGTERM; asserts exit 0 and no sanitizer report
    took = time.monotonic() - t0
    t.join(20)
    assert "error" not in result, "in-flight download broken by SIGTERM: %s" % result.get("error")
    assert result["status"] == 200 and result["len"] == size and result["sha"] == pattern_sha256(size)
    assert rc == 0
    print("\n[shutdown] agent exited %.2fs after SIGTERM with a 2 s download in flight" % took)


def test_sigterm_idle_agent_exits_promptly(agent):
    with ProxyClient(agent.port) as c:
        c.send_raw(b"")  # an idle keep-alive client must not hold shutdown up
        t0 = time.monotonic()
        agent.stop(timeout=10)
        assert time.monotonic() - t0 < 5


def test_connect_to_non_tls_server_is_tunnelled_untouched(agent, echo_server):
    s, r = connect_tunnel(agent.port, "echo.test", echo_server.port)
    try:
        assert r.status == 200, r
        s.settimeout(10)
        payload = bytes(range(256)) * 64
        s.sendall(b"PING not tls\r\n" + payload)
        want = ("SHOJI-ECHO %s\r\n" % echo_server.marker).encode() + b"PING not tls\r\n" + payload
        got = b""
        while len(got) < len(want):
            d = s.recv(65536)
            if not d:
                break
            got += d
        assert got == want
    finally:
        s.close()


def test_server_speaks_first_protocol_through_connect(agent, echo_server):
    """The client says nothing after CONNECT: after the peek timeout the
    agent tunnels and the server's banner reaches the client."""
    s, r = connect_tunnel(agent.port, "echo.test", echo_server.port)
    try:
        assert r.status == 200
        s.settimeout(15)
        banner = s.recv(100)
        assert banner.startswith(b"SHOJI-ECHO " + echo_server.marker.encode()), banner
    finally:
        s.close()
