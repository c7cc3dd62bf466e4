"""Plain HTTP proxying (absolute-form requests) with curl and raw sockets:
methods, bodies, framing, Expect: 100-continue, keep-alive and upstream
connection reuse, and malformed requests."""
import json
import socket
import time

import pytest

from helpers.client import ProxyClient
from helpers.origin import pattern
from helpers.tools import curl


@pytest.fixture
def agent(shared):
    """One agent for this module (see conftest.shared_agent)."""
    return shared


def test_curl_get_through_agent(agent, origins):
    plain = origins["plain"]
    p = curl(agent.port, plain.url("/get?x=1"), "-i")
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode("latin-1")
    assert out.startswith("HTTP/1.1 200"), out[:300]
    assert plain.marker in out
    reqs = plain.requests_for("/get")
    assert len(reqs) == 1
    # the origin gets origin-form, not the absolute URL
    assert reqs[0].target == "/get?x=1", reqs[0].target


def test_head_has_no_body(agent, origins):
    plain = origins["plain"]
    with ProxyClient(agent.port) as c:
        r = c.request("HEAD", plain.url("/bytes/5000"))
        assert r.status == 200 and r.header("content-length") == "5000"
        # the same connection must be usable right away: no body bytes followed
        r2 = c.request("GET", plain.url("/after-head"))
        assert r2.status == 200 and plain.marker in r2.text


def test_curl_head(agent, origins):
    p = curl(agent.port, origins["plain"].url("/bytes/1234"), "-I")
    assert p.returncode == 0, p.stderr
    assert b"200" in p.stdout.split(b"\r\n")[0] and b"1234" in p.stdout


@pytest.mark.parametrize("code", [204, 304])
def test_bodyless_status_keeps_connection_usable(agent, origins, code):
    plain = origins["plain"]
    with ProxyClient(agent.port) as c:
        r = c.request("GET", plain.url("/status/%d" % code))
        assert r.status == code
        r2 = c.request("GET", plain.url("/next"))
        assert r2.status == 200 and plain.marker in r2.text, r2


def test_post_with_content_length(agent, origins):
    plain = origins["plain"]
    body = pattern(300000)
    with ProxyClient(agent.port) as c:
        r = c.request("POST", plain.url("/echo"), body=body)
    got = json.loads(r.body)
    import hashlib
    assert got == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                   "method": "POST", "chunked": False}


def test_chunked_request_body_reaches_origin_intact(agent, origins):
    plain = origins["plain"]
    pieces = [b"a" * 10, b"b" * 70000, b"c"]
    raw = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    with ProxyClient(agent.port) as c:
        c.send_raw(("POST %s HTTP/1.1\r\nHost: plain.test:%d\r\nTransfer-Encoding: chunked\r\n\r\n"
                    % (plain.url("/echo"), plain.port)).encode() + raw)
        r = c.response()
    got = json.loads(r.body)
    assert got["bytes"] == sum(len(p) for p in pieces)


def test_curl_chunked_upload(agent, origins, tmp_path):
    f = tmp_path / "up"
    f.write_bytes(pattern(123457))
    p = curl(agent.port, origins["plain"].url("/echo"), "-H", "Transfer-Encoding: chunked",
             "--data-binary", "@" + str(f))
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert got["bytes"] == 123457


def test_chunked_response_body(agent, origins):
    plain = origins["plain"]
    with ProxyClient(agent.port) as c:
        r = c.request("GET", plain.url("/bytes/200001?chunked=1"))
        assert r.status == 200 and r.body == pattern(200001)
        r2 = c.request("GET", plain.url("/after-chunked"))
        assert r2.status == 200


def test_curl_chunked_response(agent, origins):
    p = curl(agent.port, origins["plain"].url("/bytes/99999?chunked=1"))
    assert p.returncode == 0, p.stderr
    assert p.stdout == pattern(99999)


def test_expect_100_continue_is_answered_before_the_body_is_sent(agent, origins):
    """A strict client waits for 100 Continue before sending its body."""
    plain = origins["plain"]
    body = pattern(50000)
    with ProxyClient(agent.port) as c:
        c.send_raw(("POST %s HTTP/1.1\r\nHost: plain.test:%d\r\nContent-Length: %d\r\n"
                    "Expect: 100-continue\r\n\r\n" % (plain.url("/echo"), plain.port, len(body))).encode())
        c.sock.settimeout(3)
        try:
            interim = c.reader.head()
        except socket.timeout:
            pytest.fail("no 100 Continue within 3 s of a request with Expect: 100-continue")
        assert interim[1] == 100, interim
        c.sock.settimeout(10)
        c.send_raw(body)
        r = c.response()
    assert r.status == 200 and json.loads(r.body)["bytes"] == len(body)


def test_curl_large_post_with_expect_does_not_stall(agent, origins, tmp_path):
    f = tmp_path / "big"
    f.write_bytes(pattern(2 * 1024 * 1024))
    t0 = time.monotonic()
    p = curl(agent.port, origins["plain"].url("/echo"), "-H", "Expect: 100-continue",
             "--expect100-timeout", "5", "--data-binary", "@" + str(f))
    took = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["bytes"] == 2 * 1024 * 1024
    assert took < 4, "upload took %.1fs: curl waited for a 100 Continue that never came" % took


def test_keepalive_three_requests_reuse_one_upstream_connection(agent, origins):
    plain = origins["plain"]
    with ProxyClient(agent.port) as c:
        for i in range(3):
            r = c.request("GET", plain.url("/ka/%d" % i))
            assert r.status == 200 and ("/ka/%d" % i) in r.text
    reqs = plain.requests_for("/ka/")
    assert [r.path for r in reqs] == ["/ka/0", "/ka/1", "/ka/2"]
    assert len({r.conn_id for r in reqs}) == 1, (
        "upstream connections used: %r" % [r.conn_id for r in reqs])


def test_curl_keepalive_over_three_urls(agent, origins):
    plain = origins["plain"]
    p = subprocess_curl_multi(agent.port, [plain.url("/m/%d" % i) for i in range(3)])
    assert p.returncode == 0, p.stderr
    assert p.stderr.count("Re-using existing connection") >= 2 or \
        p.stderr.count("Reusing existing") >= 2, "curl did not reuse its proxy connection"
    reqs = plain.requests_for("/m/")
    assert len(reqs) == 3 and len({r.conn_id for r in reqs}) == 1


def subprocess_curl_multi(port, urls):
    import subprocess
    from helpers.tools import clean_env
    p = subprocess.run(["curl", "-sS", "-v", "--proxy", "http://127.0.0.1:%d" % port,
                        "--noproxy", "", "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null"]
                       + urls, capture_output=True, text=True, timeout=30, env=clean_env())
    return p


def test_request_headers_reach_origin_and_hop_by_hop_are_removed(agent, origins):
    plain = origins["plain"]
    with ProxyClient(agent.port) as c:
        r = c.request("GET", plain.url("/headers"), headers=[
            ("Host", "plain.test:%d" % plain.port), ("X-Test", "kept"),
            ("Proxy-Connection", "keep-alive"), ("Proxy-Authorization", "Basic Zm9vOmJhcg==")])
    hdrs = {k.lower(): v for k, v in json.loads(r.body)}
    assert hdrs.get("x-test") == "kept"
    assert "proxy-connection" not in hdrs and "proxy-authorization" not in hdrs, hdrs


# -- malformed requests: 400 and the connection closed ----------------------

MALFORMED = {
    "garbage_request_line": b"THIS IS NOT HTTP AT ALL\r\n\r\n",
    "bad_header_line": b"GET http://plain.test:{port}/ HTTP/1.1\r\nHost: plain.test\r\n"
                       b"This line has no colon\r\n\r\n",
    "space_before_colon": b"GET http://plain.test:{port}/ HTTP/1.1\r\nHost : plain.test\r\n\r\n",
    "content_length_and_chunked": b"POST http://plain.test:{port}/echo HTTP/1.1\r\nHost: plain.test\r\n"
                                  b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two_different_content_lengths": b"POST http://plain.test:{port}/echo HTTP/1.1\r\nHost: plain.test\r\n"
                                     b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "bad_chunk_size": b"POST http://plain.test:{port}/echo HTTP/1.1\r\nHost: plain.test\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_request_gets_400_and_connection_closed(agent, origins, case):
    plain = origins["plain"]
    data = MALFORMED[case].replace(b"{port}", str(plain.port).encode())
    with ProxyClient(agent.port) as c:
        c.send_raw(data)
        c.sock.settimeout(5)
        version, status, reason, headers = c.reader.head()
        assert status == 400, (case, status, reason)
        assert c.is_closed(), "connection still open after 400 (%s)" % case
    if case in ("garbage_request_line", "bad_header_line", "space_before_colon",
                "content_length_and_chunked", "two_different_content_lengths"):
        # the bad head was refused before anything was forwarded
        assert plain.requests == [], "forwarded a malformed request: %r" % plain.requests


def test_agent_still_serves_after_malformed_requests(agent, origins):
    for data in MALFORMED.values():
        with ProxyClient(agent.port) as c:
            c.send_raw(data.replace(b"{port}", str(origins["plain"].port).encode()))
            c.is_closed(2)
    with ProxyClient(agent.port) as c:
        assert c.request("GET", origins["plain"].url("/ok")).status == 200


def test_origin_form_request_to_proxy_is_refused(agent):
    """A request that is not absolute-form (no host to forward to) gets an
    error status, not a hang."""
    with ProxyClient(agent.port) as c:
        c.send_raw(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        c.sock.settimeout(5)
        v, status, _, _ = c.reader.head()
        assert 400 <= status < 600


def test_connection_close_request_gets_response_then_close(agent, origins):
    plain = origins["plain"]
    with ProxyClient(agent.port) as c:
        r = c.request("GET", plain.url("/bye"), headers=[("Connection", "close")])
        assert r.status == 200 and plain.marker in r.text
        assert c.is_closed(5), "agent kept the client connection open after Connection: close"


def test_pipelined_requests_are_answered_in_order(agent, origins):
    plain = origins["plain"]
    reqs = b"".join(("GET %s HTTP/1.1\r\nHost: plain.test:%d\r\n\r\n" % (plain.url("/pipe/%d" % i), plain.port))
                    .encode() for i in range(3))
    with ProxyClient(agent.port) as c:
        c.send_raw(reqs)
        for i in range(3):
            r = c.response()
            assert r.status == 200 and ("/pipe/%d" % i) in r.text, (i, r)


def test_http10_client_gets_a_response_and_close(agent, origins):
    plain = origins["plain"]
    with ProxyClient(agent.port) as c:
        c.send_raw(("GET %s HTTP/1.0\r\nHost: plain.test:%d\r\n\r\n" % (plain.url("/old"), plain.port)).encode())
        r = c.response()
        assert r.status == 200 and plain.marker in r.text
        assert c.is_closed(5), "HTTP/1.0 request without keep-alive: connection should close"


def test_oversized_request_head_gets_431_not_a_crash(agent, origins):
    plain = origins["plain"]
    big = "X-Big: " + "a" * 200000
    with ProxyClient(agent.port) as c:
        try:
            c.send_raw(("GET %s HTTP/1.1\r\nHost: plain.test\r\n%s\r\n\r\n" % (plain.url("/big"), big)).encode())
        except (BrokenPipeError, ConnectionResetError):
            pass  # the agent may stop reading once past its limit
        c.sock.settimeout(5)
        v, status, _, _ = c.reader.head()
        assert status in (431, 400), status
    assert plain.requests == []


def test_many_concurrent_clients(agent, origins):
    """20 clients at once, 5 requests each, all answered correctly."""
    import threading
    plain = origins["plain"]
    errors = []

    def client(n):
        try:
            with ProxyClient(agent.port) as c:
                for i in range(5):
                    r = c.request("GET", plain.url("/bytes/%d" % (1000 + n * 10 + i)))
                    assert r.status == 200 and r.body == pattern(1000 + n * 10 + i)
        except Exception as e:  # collected and reported below
            errors.append("client %d: %r" % (n, e))

    ts = [threading.Thread(target=client, args=(n,)) for n in range(20)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert not errors, errors
    assert len(plain.requests_for("/bytes/")) == 100


def test_response_without_length_is_delimited_by_close(agent, make_origin):
    """An origin answering HTTP/1.0-style (no Content-Length, no chunked,
    close) must still reach the client whole."""
    import socket as so
    import threading
    srv = so.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    body = b"close-delimited " * 5000

    def serve():
        c, _ = srv.accept()
        c.recv(65536)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body)
        c.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with ProxyClient(agent.port) as c:
            r = c.request("GET", "http://plain.test:%d/eof" % port)
            assert r.status == 200 and r.body == body, (r.status, len(r.body))
    finally:
        srv.close()


MALFORMED_MORE = {
    "te_not_ending_in_chunked": b"POST http://plain.test:{port}/echo HTTP/1.1\r\nHost: plain.test\r\n"
                                b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    "negative_content_length": b"POST http://plain.test:{port}/echo HTTP/1.1\r\nHost: plain.test\r\n"
                               b"Content-Length: -1\r\n\r\n",
    "plus_content_length": b"POST http://plain.test:{port}/echo HTTP/1.1\r\nHost: plain.test\r\n"
                           b"Content-Length: +5\r\n\r\nhello",
    "huge_chunk_size": b"POST http://plain.test:{port}/echo HTTP/1.1\r\nHost: plain.test\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    "connect_without_port": b"CONNECT plain.test HTTP/1.1\r\nHost: plain.test\r\n\r\n",
    "nul_in_header": b"GET http://plain.test:{port}/ HTTP/1.1\r\nHost: plain.test\r\nX-A: a\x00b\r\n\r\n",
    "http2_preface_to_proxy": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(MALFORMED_MORE))
def test_more_malformed_requests_get_400_and_close(agent, origins, case):
    plain = origins["plain"]
    data = MALFORMED_MORE[case].replace(b"{port}", str(plain.port).encode())
    with ProxyClient(agent.port) as c:
        c.send_raw(data)
        c.sock.settimeout(5)
        version, status, reason, headers = c.reader.head()
        ok = (400, 505) if case == "http2_preface_to_proxy" else (400, 499)
        assert ok[0] <= status <= ok[1], (case, status, reason)
        assert c.is_closed(), "connection still open after %d (%s)" % (status, case)
    assert [r for r in plain.requests if r.body_bytes] == [], "forwarded a body of a malformed request"


def test_too_many_header_fields_gets_431(agent, origins):
    plain = origins["plain"]
    hdrs = "".join("X-H%d: v\r\n" % i for i in range(150))
    with ProxyClient(agent.port) as c:
        c.send_raw(("GET %s HTTP/1.1\r\nHost: plain.test\r\n%s\r\n" % (plain.url("/many"), hdrs)).encode())
        c.sock.settimeout(5)
        assert c.reader.head()[1] in (431, 400)
    assert plain.requests_for("/many") == []


def test_stale_pooled_upstream_connection_is_not_a_502(agent, origins):
    """The origin closes an idle keep-alive connection (its keep-alive
    timeout); the next request must go out on a fresh connection, not fail."""
    plain = origins["plain"]
    for i in range(3):
        with ProxyClient(agent.port) as c:
            r = c.request("GET", plain.url("/stale/%d?close_after_ms=50" % i))
            assert r.status == 200, "request %d: %r" % (i, r)
        time.sleep(0.3)  # the origin closes its side meanwhile
    with ProxyClient(agent.port) as c:
        for i in range(3):
            r = c.request("GET", plain.url("/stale-same/%d?close_after_ms=50" % i))
            assert r.status == 200, "same client connection, request %d: %r" % (i, r)
            time.sleep(0.3)


class RawOrigin:
    """A one-connection origin that answers every request with `raw`."""

    def __init__(self, raw, requests=1):
        import threading
        self.raw = raw
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.port = self.srv.getsockname()[1]
        self.seen = []
        self.t = threading.Thread(target=self._serve, args=(requests,), daemon=True)
        self.t.start()

    def _serve(self, n):
        try:
            c, _ = self.srv.accept()
            c.settimeout(10)
            buf = b""
            for _ in range(n):
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                self.seen.append(head)
                c.sendall(self.raw)
            c.recv(1)
            c.close()
        except OSError:
            pass

    def close(self):
        self.srv.close()


def test_origin_response_with_content_length_and_chunked_is_not_desynced(agent):
    """RFC 9112 6.3: Transfer-Encoding overrides Content-Length. The client
    must get the chunked body, and a second response on the connection must
    line up."""
    raw = (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n0\r\n\r\n")
    o = RawOrigin(raw, requests=2)
    try:
        with ProxyClient(agent.port) as c:
            r = c.request("GET", "http://plain.test:%d/a" % o.port)
            if r.status == 502:
                return  # refusing an ambiguous response is also safe
            assert r.status == 200 and r.body == b"hello", r
            r2 = c.request("GET", "http://plain.test:%d/b" % o.port)
            assert r2.status in (200, 502) and r2.body in (b"hello", r2.body), r2
            if r2.status == 200:
                assert r2.body == b"hello"
    finally:
        o.close()


def test_origin_early_hints_then_final_response(agent):
    raw = (b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
           b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
    o = RawOrigin(raw)
    try:
        with ProxyClient(agent.port) as c:
            r = c.request("GET", "http://plain.test:%d/hints" % o.port)  # skips 1xx
            assert r.status == 200 and r.body == b"final", r
    finally:
        o.close()


def test_origin_garbage_response_gives_502(agent):
    o = RawOrigin(b"THIS IS NOT HTTP\r\n\r\n")
    try:
        with ProxyClient(agent.port) as c:
            r = c.request("GET", "http://plain.test:%d/garbage" % o.port)
            assert r.status == 502, r
    finally:
        o.close()


def test_origin_huge_response_head_gives_502(agent):
    o = RawOrigin(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 300000 + b"\r\nContent-Length: 0\r\n\r\n")
    try:
        with ProxyClient(agent.port) as c:
            r = c.request("GET", "http://plain.test:%d/bighead" % o.port)
            assert r.status == 502, r
    finally:
        o.close()
