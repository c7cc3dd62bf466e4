"""Request smuggling (issue 10 part 3): every known vector sent through the
agent as a proxy request gets 400 (or the documented 4xx/5xx of docs/HTTP.md)
and the connection closed; and, differentially, a raw origin that records
exactly the bytes it receives sees nothing of a refused request and only
well-framed requests for the accepted look-alikes.

The origin is a raw TCP server (RawOrigin below), not helpers.origin: it
keeps every byte per connection, answers each request it can frame with a
small 200, and reports what it could not frame. A refused request must
leave it with no complete request and no trace of the smuggled marker.
The same vectors are also sent inside a decoded HTTPS connection to a raw
TLS origin (TLSRawOrigin)."""
import re
import socket
import threading
import time

import pytest

from helpers.client import ProxyClient

SMUGGLED = b"SMUGGLED-REQUEST-MARKER"
REQ_RE = re.compile(rb"^([A-Z]+) (\S+) HTTP/1\.1$")


class FrameError(Exception):
    pass


def _line(buf, pos):
    """The CRLF-terminated line at pos (bare LF or CR is a framing error)."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None, pos
    line = buf[pos:end]
    if b"\n" in line or b"\r" in line:
        raise FrameError("bare CR/LF in %r" % line)
    return line, end + 2


def frame_one(buf):
    """Strictly frames one HTTP/1.1 request at the start of buf.
    Returns (request dict, bytes used), or (None, 0) when incomplete.
    Raises FrameError on anything a strict server could read two ways."""
    line, pos = _line(buf, 0)
    if line is None:
        return None, 0
    m = REQ_RE.match(line)
    if not m:
        raise FrameError("request line %r" % line)
    headers = []
    while True:
        h, pos2 = _line(buf, pos)
        if h is None:
            return None, 0
        pos = pos2
        if h == b"":
            break
        if h[:1] in (b" ", b"\t"):
            raise FrameError("obs-fold %r" % h)
        name, colon, value = h.partition(b":")
        if not colon or not re.fullmatch(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
            raise FrameError("field line %r" % h)
        if re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", value):
            raise FrameError("control byte in %r" % h)
        headers.append((name.lower(), value.strip(b" \t")))
    cls = [v for k, v in headers if k == b"content-length"]
    tes = [v for k, v in headers if k == b"transfer-encoding"]
    hosts = [v for k, v in headers if k == b"host"]
    if len(hosts) != 1:
        raise FrameError("%d Host fields" % len(hosts))
    if cls and tes:
        raise FrameError("both Content-Length and Transfer-Encoding")
    # strict like nginx: one Content-Length field, digits only
    if len(cls) > 1 or any(not re.fullmatch(rb"[0-9]+", v) for v in cls):
        raise FrameError("Content-Length %r" % cls)
    req = {"method": m.group(1), "target": m.group(2), "headers": headers, "body": b""}
    if tes:
        codings = [c.strip().lower() for c in b",".join(tes).split(b",")]
        if codings[-1] != b"chunked" or codings.count(b"chunked") != 1:
            raise FrameError("Transfer-Encoding %r" % tes)
        body = bytearray()
        while True:
            sl, pos2 = _line(buf, pos)
            if sl is None:
                return None, 0
            size_txt = sl.split(b";", 1)[0]
            if not re.fullmatch(rb"[0-9a-fA-F]{1,15}", size_txt):
                raise FrameError("chunk size %r" % sl[:40])
            size = int(size_txt, 16)
            pos = pos2
            if size == 0:
                while True:  # trailers
                    t, pos2 = _line(buf, pos)
                    if t is None:
                        return None, 0
                    pos = pos2
                    if t == b"":
                        break
                break
            if len(buf) < pos + size + 2:
                return None, 0
            body += buf[pos:pos + size]
            if buf[pos + size:pos + size + 2] != b"\r\n":
                raise FrameError("chunk data not followed by CRLF")
            pos += size + 2
        req["body"] = bytes(body)
        return req, pos
    n = int(cls[0]) if cls else 0
    if len(buf) < pos + n:
        return None, 0
    req["body"] = buf[pos:pos + n]
    return req, pos + n


class RawOrigin:
    """Records every byte of every connection; answers each framed request."""

    def __init__(self):
        self.conns = []          # [bytearray] per connection, in accept order
        self.requests = []       # framed requests (dicts)
        self.errors = []         # FrameError texts
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socks = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            data = bytearray()
            with self._lock:
                self.conns.append(data)
                self._socks.append(c)
            threading.Thread(target=self._serve, args=(c, data), daemon=True).start()

    def _serve(self, c, data):
        used = 0
        c.settimeout(10)
        try:
            while True:
                got = c.recv(65536)
                if not got:
                    return
                with self._lock:
                    data += got
                while True:
                    try:
                        req, n = frame_one(bytes(data[used:]))
                    except FrameError as e:
                        with self._lock:
                            self.errors.append(str(e))
                        return
                    if req is None:
                        break
                    used += n
                    with self._lock:
                        self.requests.append(req)
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except OSError:
            return
        finally:
            c.close()

    def all_bytes(self):
        with self._lock:
            return b"".join(bytes(d) for d in self.conns)

    def stop(self):
        self._stop.set()
        self.sock.close()
        with self._lock:
            for s in self._socks:
                try:
                    s.close()
                except OSError:
                    pass


@pytest.fixture
def agent(shared):
    return shared


@pytest.fixture
def raw_origin():
    o = RawOrigin()
    yield o
    o.stop()


def H(port, extra=b"", method=b"POST", path=b"/x", host=b"plain.test", target=None,
      version=b"HTTP/1.1"):
    """A request head to http://plain.test:PORT/x with `extra` field lines."""
    hostport = host + b":" + str(port).encode()
    t = target if target is not None else b"http://" + hostport + path
    return method + b" " + t + b" " + version + b"\r\nHost: " + hostport + b"\r\n" + extra


# name -> (bytes template (origin port substituted by P), expected status)
# A body error can only be seen after the head: those are marked "body".
VECTORS = {
    # -- Content-Length / Transfer-Encoding ambiguity
    "cl_te": (lambda P: H(P, b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                             b"GET /" + SMUGGLED + b" HTTP/1.1\r\nHost: plain.test\r\n\r\n"), 400),
    "te_cl": (lambda P: H(P, b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\n"
                             b"GET /" + SMUGGLED + b" HTTP/1.1\r\nHost: plain.test\r\n\r\n0\r\n\r\n"), 400),
    "cl_differing_repeat": (lambda P: H(P, b"Content-Length: 5\r\nContent-Length: 40\r\n\r\nhello"
                                           b"GET /" + SMUGGLED + b" HTTP/1.1\r\n\r\n"), 400),
    "cl_differing_list": (lambda P: H(P, b"Content-Length: 5, 40\r\n\r\nhello"), 400),
    "cl_plus_sign": (lambda P: H(P, b"Content-Length: +5\r\n\r\nhello"), 400),
    "cl_hex": (lambda P: H(P, b"Content-Length: 0x5\r\n\r\nhello"), 400),
    "cl_overflow": (lambda P: H(P, b"Content-Length: 18446744073709551621\r\n\r\nhello"), 400),
    "cl_empty": (lambda P: H(P, b"Content-Length: \r\n\r\n"), 400),
    "te_chunked_not_last": (lambda P: H(P, b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"), 400),
    "te_gzip_only": (lambda P: H(P, b"Transfer-Encoding: gzip\r\n\r\n0\r\n\r\n"), 400),
    "te_chunked_twice": (lambda P: H(P, b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"), 400),
    "te_split_fields_chunked_first": (lambda P: H(P, b"Transfer-Encoding: chunked\r\n"
                                                    b"Transfer-Encoding: gzip\r\n\r\n0\r\n\r\n"), 400),
    "te_chunked_param": (lambda P: H(P, b"Transfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n"), 400),
    "te_http10": (lambda P: H(P, b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                              version=b"HTTP/1.0"), 400),
    "te_unknown_coding": (lambda P: H(P, b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"), 501),
    # -- line syntax
    "obs_fold": (lambda P: H(P, b"X-A: a\r\n b\r\nContent-Length: 0\r\n\r\n"), 400),
    "obs_fold_te": (lambda P: H(P, b"Transfer-Encoding: gzip\r\n ,chunked\r\n\r\n0\r\n\r\n"), 400),
    "fold_after_request_line": (lambda P: b"GET http://plain.test:%d/x HTTP/1.1\r\n Host: plain.test\r\n"
                                          b"Host: plain.test:%d\r\n\r\n" % (P, P), 400),
    "bare_lf_line_end": (lambda P: H(P, b"X-A: a\nContent-Length: 0\r\n\r\n"), 400),
    "bare_lf_head_end": (lambda P: H(P, b"Content-Length: 0\n\n"), 400),
    "bare_cr_in_value": (lambda P: H(P, b"X-A: a\rTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 400),
    "space_before_colon": (lambda P: H(P, b"Content-Length : 5\r\n\r\nhello"), 400),
    "tab_before_colon": (lambda P: H(P, b"Transfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n"), 400),
    "te_space_before_colon_with_cl": (lambda P: H(P, b"Transfer-Encoding : chunked\r\n"
                                                    b"Content-Length: 3\r\n\r\n0\r\n\r\n"), 400),
    "no_colon": (lambda P: H(P, b"Transfer-Encoding chunked\r\n\r\n"), 400),
    "nul_in_value": (lambda P: H(P, b"X-A: a\x00b\r\nContent-Length: 0\r\n\r\n"), 400),
    "nul_in_target": (lambda P: H(P, b"\r\n", method=b"GET", path=b"/a\x00b"), 400),
    "ctl_0x01_in_value": (lambda P: H(P, b"X-A: a\x01b\r\n\r\n", method=b"GET"), 400),
    "del_in_value": (lambda P: H(P, b"X-A: a\x7fb\r\n\r\n", method=b"GET"), 400),
    "ctl_in_name": (lambda P: H(P, b"X\x0bA: b\r\n\r\n", method=b"GET"), 400),
    "esc_in_te_value": (lambda P: H(P, b"Transfer-Encoding: \x1bchunked\r\n\r\n0\r\n\r\n"), 400),
    # -- host confusion
    "absolute_host_ne_Host": (lambda P: b"GET http://plain.test:%d/x HTTP/1.1\r\nHost: other.test:%d\r\n\r\n"
                                         % (P, P), 400),
    "absolute_port_ne_Host": (lambda P: b"GET http://plain.test:%d/x HTTP/1.1\r\nHost: plain.test:1\r\n\r\n"
                                         % P, 400),
    "two_hosts": (lambda P: H(P, b"Host: other.test\r\n\r\n", method=b"GET"), 400),
    "no_host_http11": (lambda P: b"GET http://plain.test:%d/x HTTP/1.1\r\n\r\n" % P, 400),
    "userinfo_in_target": (lambda P: b"GET http://evil.test@plain.test:%d/x HTTP/1.1\r\n"
                                      b"Host: plain.test:%d\r\n\r\n" % (P, P), 400),
    "connect_host_ne_Host": (lambda P: b"CONNECT plain.test:%d HTTP/1.1\r\nHost: other.test:%d\r\n\r\n"
                                        % (P, P), 400),
    # -- chunked bodies (refused after the head was read)
    "chunk_size_not_hex": (lambda P: H(P, b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"), "body"),
    "chunk_size_negative": (lambda P: H(P, b"Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"), "body"),
    "chunk_size_0x": (lambda P: H(P, b"Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"), "body"),
    "chunk_size_huge": (lambda P: H(P, b"Transfer-Encoding: chunked\r\n\r\n"
                                       b"10000000000000005\r\nhello\r\n0\r\n\r\n"), "body"),
    "chunk_size_space": (lambda P: H(P, b"Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n"), "body"),
    "chunk_ext_too_long": (lambda P: H(P, b"Transfer-Encoding: chunked\r\n\r\n5;" + b"a" * 6000 +
                                       b"\r\nhello\r\n0\r\n\r\n"), "body"),
    "chunk_ext_ctl": (lambda P: H(P, b"Transfer-Encoding: chunked\r\n\r\n5;a=\x01\r\nhello\r\n0\r\n\r\n"), "body"),
    "chunk_ext_bare_lf": (lambda P: H(P, b"Transfer-Encoding: chunked\r\n\r\n5;a\nhello\r\n0\r\n\r\n"), "body"),
    "chunk_data_overrun": (lambda P: H(P, b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n"
                                       b"GET /" + SMUGGLED + b" HTTP/1.1\r\n\r\n"), "body"),
    "chunk_size_bare_lf": (lambda P: H(P, b"Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"), "body"),
    "chunk_trailer_fold": (lambda P: H(P, b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX: a\r\n b\r\n\r\n"),
                           "body"),
}


def send_vector(agent, data, timeout=5):
    """Sends data, returns (status or None, closed?)."""
    with ProxyClient(agent.port, timeout=timeout) as c:
        try:
            c.send_raw(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        c.sock.settimeout(timeout)
        try:
            _, status, _, _ = c.reader.head()
        except Exception:  # closed without a response
            status = None
        return status, c.is_closed(3)


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_smuggling_vector_refused_and_never_forwarded(agent, raw_origin, name):
    make, expected = VECTORS[name]
    data = make(raw_origin.port)
    status, closed = send_vector(agent, data)
    if expected == "body":
        # the head was valid and may have been forwarded; the body is not:
        # the client gets 400 (or, once the response started, a cut
        # connection) and the connection is closed
        assert status == 400, "%s: expected 400 for a malformed chunked body, got %s" % (name, status)
    else:
        assert status == expected, "%s: expected %s, got %s" % (name, expected, status)
    assert closed, "%s: connection left open after %s" % (name, status)
    time.sleep(0.2)
    seen = raw_origin.all_bytes()
    assert SMUGGLED not in seen, "%s: the smuggled request reached the origin: %r" % (name, seen)
    if expected != "body":
        assert seen == b"", "%s: a refused request reached the origin: %r" % (name, seen)
    else:
        # whatever of it was forwarded never forms a complete request
        assert raw_origin.requests == [], "%s: the origin got a complete request: %r" % (
            name, raw_origin.requests)
    assert raw_origin.errors == [], "%s: the origin got bytes it could not frame: %r" % (
        name, raw_origin.errors)


# Legal look-alikes: accepted, and forwarded as exactly one well-framed request.
# name -> (template, expected body at the origin)
LOOKALIKES = {
    "cl_identical_repeat": (lambda P: H(P, b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"), b"hello"),
    "cl_identical_list": (lambda P: H(P, b"Content-Length: 5, 5\r\n\r\nhello"), b"hello"),
    "te_chunked_with_ext": (lambda P: H(P, b"Transfer-Encoding: chunked\r\n\r\n5;name=val\r\nhello\r\n"
                                           b"0\r\n\r\n"), b"hello"),
    "te_uppercase": (lambda P: H(P, b"Transfer-Encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), b"hello"),
    "te_tab_ows": (lambda P: H(P, b"Transfer-Encoding:\tchunked\t\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), b"hello"),
    "chunked_with_trailer": (lambda P: H(P, b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
                                            b"X-Trailer: t\r\n\r\n"), b"hello"),
    "chunk_size_leading_zeros": (lambda P: H(P, b"Transfer-Encoding: chunked\r\n\r\n0005\r\nhello\r\n"
                                                b"0\r\n\r\n"), b"hello"),
    "value_with_tab": (lambda P: H(P, b"X-A: a\tb\r\nContent-Length: 5\r\n\r\nhello"), b"hello"),
    "cl_zero_get": (lambda P: H(P, b"Content-Length: 0\r\n\r\n", method=b"GET"), b""),
}


@pytest.mark.parametrize("name", sorted(LOOKALIKES))
def test_lookalike_is_forwarded_as_one_well_framed_request(agent, raw_origin, name):
    make, body = LOOKALIKES[name]
    with ProxyClient(agent.port) as c:
        c.send_raw(make(raw_origin.port))
        r = c.response()
        assert r.status == 200 and r.body == b"ok", (name, r)
    deadline = time.monotonic() + 3
    while not raw_origin.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    assert raw_origin.errors == [], "%s: origin could not frame: %r\nbytes: %r" % (
        name, raw_origin.errors, raw_origin.all_bytes())
    assert len(raw_origin.requests) == 1, (name, raw_origin.requests)
    req = raw_origin.requests[0]
    assert req["target"] == b"/x"
    assert req["body"] == body, (name, req)
    names = [k for k, _ in req["headers"]]
    assert not (b"content-length" in names and b"transfer-encoding" in names)
    # the bytes the origin got are exactly this one request (nothing after)
    _, used = frame_one(raw_origin.all_bytes())
    assert used == len(raw_origin.all_bytes()), raw_origin.all_bytes()


def test_pipelined_smuggle_after_valid_request_is_not_forwarded(agent, raw_origin):
    """A valid request followed on the same connection by a CL.TE vector:
    the first is answered, the second refused; the origin sees only the first."""
    P = raw_origin.port
    data = H(P, b"Content-Length: 0\r\n\r\n", method=b"GET") + VECTORS["cl_te"][0](P)
    with ProxyClient(agent.port) as c:
        c.send_raw(data)
        r1 = c.response()
        assert r1.status == 200
        _, status, _, _ = c.reader.head()
        assert status == 400
        assert c.is_closed()
    time.sleep(0.2)
    assert len(raw_origin.requests) == 1
    assert SMUGGLED not in raw_origin.all_bytes()
    assert raw_origin.errors == []


def test_agent_serves_after_every_vector(agent, raw_origin):
    for name in sorted(VECTORS):
        send_vector(agent, VECTORS[name][0](raw_origin.port), timeout=3)
    with ProxyClient(agent.port) as c:
        c.send_raw(H(raw_origin.port, b"\r\n", method=b"GET"))
        assert c.response().status == 200


# -- the same vectors inside a decoded HTTPS connection -----------------------

class TLSRawOrigin(RawOrigin):
    """RawOrigin behind TLS (a certificate for good.test from the test PKI)."""

    def __init__(self, cert):
        import ssl
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert.cert_path, cert.key_path)
        super().__init__()

    def _serve(self, c, data):
        try:
            c.settimeout(10)
            c = self.ctx.wrap_socket(c, server_side=True)
        except OSError:
            c.close()
            return
        super()._serve(c, data)


def _in_tls(data):
    """A vector for plain.test as it reads inside a decoded good.test
    connection (absolute https:// targets, good.test names)."""
    return data.replace(b"http://", b"https://").replace(b"plain.test", b"good.test")


@pytest.fixture
def tls_raw_origin(certs):
    o = TLSRawOrigin(certs["good"])
    yield o
    o.stop()


def _decoded_send(agent, port, data, timeout=5):
    from helpers.client import HTTPReader, connect_tunnel, tls_context
    s, r = connect_tunnel(agent.port, "good.test", port)
    assert r.status == 200
    tls = tls_context(agent.ca_path).wrap_socket(s, server_hostname="good.test")
    tls.settimeout(timeout)
    status, closed = None, False
    try:
        try:
            tls.sendall(data)
        except OSError:
            pass
        try:
            status = HTTPReader(tls).head()[1]
        except Exception:
            status = None
        try:
            closed = tls.recv(65536) == b""
            while not closed:
                closed = tls.recv(65536) == b""
        except OSError:
            closed = True
    finally:
        tls.close()
    return status, closed


@pytest.mark.parametrize("name", sorted(n for n in VECTORS if not n.startswith("connect_")))
def test_smuggling_vector_refused_inside_decoded_https(agent, tls_raw_origin, name):
    make, expected = VECTORS[name]
    status, closed = _decoded_send(agent, tls_raw_origin.port, _in_tls(make(tls_raw_origin.port)))
    want = 400 if expected == "body" else expected
    assert status == want, "%s (decoded): expected %s, got %s" % (name, want, status)
    assert closed, "%s (decoded): connection left open" % name
    time.sleep(0.2)
    assert SMUGGLED not in tls_raw_origin.all_bytes()
    if expected == "body":
        assert tls_raw_origin.requests == [], (name, tls_raw_origin.requests)
    else:
        assert tls_raw_origin.all_bytes() == b"", (name, tls_raw_origin.all_bytes())
    assert tls_raw_origin.errors == [], (name, tls_raw_origin.errors)


@pytest.mark.parametrize("name", ["te_chunked_with_ext", "chunked_with_trailer", "value_with_tab"])
def test_lookalike_inside_decoded_https_reaches_the_origin_well_framed(agent, tls_raw_origin, name):
    """Proves the decoded path to the raw TLS origin works (so the refusals
    above are refusals, not a broken path)."""
    from helpers.client import HTTPReader, connect_tunnel, tls_context
    make, body = LOOKALIKES[name]
    s, _ = connect_tunnel(agent.port, "good.test", tls_raw_origin.port)
    tls = tls_context(agent.ca_path).wrap_socket(s, server_hostname="good.test")
    tls.settimeout(5)
    try:
        tls.sendall(_in_tls(make(tls_raw_origin.port)))
        r = HTTPReader(tls).response()
    finally:
        tls.close()
    assert r.status == 200 and r.body == b"ok", r
    assert tls_raw_origin.errors == []
    assert len(tls_raw_origin.requests) == 1 and tls_raw_origin.requests[0]["body"] == body
