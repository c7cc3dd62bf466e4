"""Origin servers for integration tests: HTTP/1.1 (plain or TLS) on
127.0.0.1, one thread per connection, keep-alive, every request logged
with the id of the connection it came on.

Routes (any method; HEAD gets the GET headers and no body):
  /                 an HTML page holding origin.marker (unique per origin)
  /any/other/path   the same page (so "the origin's content" is always
                    recognisable by its marker)
  /bytes/N          N bytes of helpers.origin.pattern(); ?chunked=1 sends
                    them chunked instead of with Content-Length
  /slow/N?ms=T      N bytes (Content-Length) spread evenly over T ms
  /echo             reads the request body (Content-Length or chunked,
                    streamed, never held), answers JSON {"bytes", "sha256",
                    "chunked", "method"}; honours Expect: 100-continue;
                    ?pause_ms=T stops reading for T ms after the first MiB
                    (a slow origin: the proxy must apply back-pressure)
  /headers          answers the request headers as JSON
  /status/CODE      answers CODE; 204 and 304 carry no body
  /close            answers with Connection: close and closes
  /reset/N          announces 2*N bytes, sends N, then resets (RST)
  /hang             reads the request and never answers (until stop)
  ?close_after_ms=T on the default page: answers with keep-alive, then
                    closes the idle connection T ms later (a server-side
                    keep-alive timeout: a pooled connection goes stale)
  ?auth=ntlm        on the default page: answers 401 with
                    `WWW-Authenticate: NTLM` (connection-based auth);
                    ?auth=negotiate likewise; &code=200 answers 200 instead;
                    &pad_header=N adds N bytes of X-Pad-I headers before it
  ?drop_next=1      on the default page: answers (keep-alive), then reads
                    the NEXT request on that connection (head and body; it is
                    logged) and closes the socket without answering (an idle
                    connection the origin drops just as it is reused)
Origins are context managers; stop() closes every connection.
"""
import hashlib
import json
import os
import select
import socket
import ssl
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

BLOCK = bytes(range(256)) * 256  # 64 KiB


def pattern(n, offset=0):
    """The body /bytes/N serves, as bytes (only for small N)."""
    out = bytearray()
    pos = offset
    while len(out) < n:
        i = pos % len(BLOCK)
        take = min(len(BLOCK) - i, n - len(out))
        out += BLOCK[i:i + take]
        pos += take
    return bytes(out)


def pattern_chunks(n, size=len(BLOCK)):
    """Yields the /bytes/N body in pieces (for large N)."""
    sent = 0
    while sent < n:
        take = min(size, n - sent)
        i = sent % len(BLOCK)
        if i + take <= len(BLOCK):
            yield BLOCK[i:i + take]
        else:
            yield pattern(take, sent)
        sent += take


def pattern_sha256(n):
    h = hashlib.sha256()
    for c in pattern_chunks(n):
        h.update(c)
    return h.hexdigest()


@dataclass
class Request:
    conn_id: int
    method: str
    target: str
    version: str
    headers: list            # [(name, value)] as received
    path: str = ""
    query: dict = field(default_factory=dict)
    body_bytes: int = 0
    time: float = 0.0

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default


class _Closed(Exception):
    pass


class _Reader:
    """Buffered reads from a (possibly TLS) socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise _Closed()
        self.buf += data

    def line(self, limit=65536):
        while b"\r\n" not in self.buf:
            if len(self.buf) > limit:
                raise ValueError("line too long")
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exactly_iter(self, n):
        """Yields n bytes in pieces."""
        while n > 0:
            if not self.buf:
                self._fill()
            take = self.buf[:n]
            self.buf = self.buf[len(take):]
            n -= len(take)
            yield take


class Origin:
    def __init__(self, name, cert=None, host="127.0.0.1", tls_max=None):
        self.name = name
        self.cert = cert  # helpers.pki.CertPair or None for plain HTTP
        self.host = host
        self.tls_max = tls_max  # an ssl.TLSVersion: the highest it speaks
        self.marker = "ORIGIN-CONTENT-%s-%s" % (name, os.urandom(6).hex())
        self.requests = []
        self.handshake_errors = []
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socks = set()
        self._threads = []
        self._lsock = None
        self.port = None

    # -- lifecycle -------------------------------------------------------
    def start(self):
        self._ctx = None
        if self.cert is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.cert.cert_path, self.cert.key_path)
            ctx.set_alpn_protocols(["http/1.1"])
            if self.tls_max is not None:
                ctx.maximum_version = self.tls_max
            self._ctx = ctx
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, 0))
        s.listen(128)
        self._lsock = s
        self.port = s.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, name="origin-%s" % self.name, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        try:
            self._lsock.close()
        except OSError:
            pass
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        for t in list(self._threads):
            t.join(timeout=2)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- helpers for tests ------------------------------------------------
    @property
    def scheme(self):
        return "https" if self.cert is not None else "http"

    def url(self, path="/", host=None):
        return "%s://%s:%d%s" % (self.scheme, host or self.name, self.port, path)

    def requests_for(self, path_prefix):
        with self._lock:
            return [r for r in self.requests if r.path.startswith(path_prefix)]

    def wait_requests(self, path_prefix, count, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.requests_for(path_prefix)
            if len(got) >= count:
                return got
            time.sleep(0.01)
        return self.requests_for(path_prefix)

    # -- server ----------------------------------------------------------
    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([self._lsock], [], [], 0.1)
                if not r:
                    continue
                conn, _ = self._lsock.accept()
            except (OSError, ValueError):
                return
            with self._lock:
                self.connections += 1
                cid = self.connections
                self._socks.add(conn)
            t = threading.Thread(target=self._serve, args=(conn, cid), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn, cid):
        sock = conn
        try:
            conn.settimeout(30)
            if self._ctx is not None:
                try:
                    sock = self._ctx.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    with self._lock:
                        self.handshake_errors.append((cid, str(e)))
                    return
                with self._lock:
                    self._socks.add(sock)
            rd = _Reader(sock)
            while not self._stop.is_set():
                if not self._one_request(sock, rd, cid):
                    break
        except (_Closed, OSError, ValueError, ssl.SSLError):
            pass
        finally:
            for s in {conn, sock}:
                try:
                    s.close()
                except OSError:
                    pass
            with self._lock:
                self._socks.discard(conn)
                self._socks.discard(sock)

    def _read_head(self, rd, cid):
        line = rd.line()
        while line == b"":  # tolerate stray CRLF between requests
            line = rd.line()
        parts = line.decode("latin-1").split(" ")
        if len(parts) != 3:
            raise ValueError("bad request line")
        method, target, version = parts
        headers = []
        while True:
            h = rd.line()
            if h == b"":
                break
            k, _, v = h.decode("latin-1").partition(":")
            headers.append((k.strip(), v.strip()))
        u = urllib.parse.urlsplit(target)
        req = Request(cid, method, target, version, headers, path=u.path or "/",
                      query=dict(urllib.parse.parse_qsl(u.query)), time=time.time())
        with self._lock:
            self.requests.append(req)
        return req

    def _body_iter(self, sock, rd, req):
        """Yields the request body, sending 100 Continue first if asked."""
        te = (req.header("transfer-encoding") or "").lower()
        cl = req.header("content-length")
        if not te and cl is None:
            return
        if (req.header("expect") or "").lower() == "100-continue":
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in te:
            while True:
                size = int(rd.line().split(b";")[0].strip(), 16)
                if size == 0:
                    while rd.line() != b"":
                        pass
                    return
                for piece in rd.exactly_iter(size):
                    yield piece
                if rd.line() != b"":
                    raise ValueError("bad chunk end")
        else:
            yield from rd.exactly_iter(int(cl))

    def _one_request(self, sock, rd, cid):
        req = self._read_head(rd, cid)
        keep = self._keep_alive(req)
        path = req.path
        if path == "/echo":
            h = hashlib.sha256()
            n = 0
            pause = int(req.query.get("pause_ms", "0"))
            for piece in self._body_iter(sock, rd, req):
                h.update(piece)
                n += len(piece)
                if pause and n >= 1 << 20:
                    self._stop.wait(pause / 1000.0)
                    pause = 0
            req.body_bytes = n
            te = (req.header("transfer-encoding") or "").lower()
            body = json.dumps({"bytes": n, "sha256": h.hexdigest(), "method": req.method,
                               "chunked": "chunked" in te}).encode()
            return self._send(sock, req, 200, body, "application/json", keep)
        # every other route: drain a body if one was sent
        for piece in self._body_iter(sock, rd, req):
            req.body_bytes += len(piece)
        if path == "/headers":
            body = json.dumps(req.headers).encode()
            return self._send(sock, req, 200, body, "application/json", keep)
        if path.startswith("/bytes/"):
            n = int(path.split("/")[2])
            chunked = req.query.get("chunked") == "1"
            return self._send_stream(sock, req, n, chunked, keep)
        if path.startswith("/slow/"):
            n = int(path.split("/")[2])
            return self._send_slow(sock, req, n, int(req.query.get("ms", "1000")), keep)
        if path.startswith("/status/"):
            code = int(path.split("/")[2])
            return self._send(sock, req, code, b"" if code in (204, 304) else
                              ("status %d %s" % (code, self.marker)).encode(), "text/plain", keep)
        if path == "/close":
            self._send(sock, req, 200, self._page(req), "text/html", False)
            return False
        if path.startswith("/reset/"):
            n = int(path.split("/")[2])
            head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % (2 * n)
            sock.sendall(head.encode())
            for piece in pattern_chunks(n):
                sock.sendall(piece)
            self._rst(sock)
            return False
        if path == "/hang":
            self._stop.wait(60)
            return False
        if "auth" in req.query:
            scheme = {"ntlm": "NTLM", "negotiate": "Negotiate"}.get(req.query["auth"], req.query["auth"])
            code = int(req.query.get("code", "401"))
            body = self._page(req)
            extra = ["WWW-Authenticate: " + scheme]
            if "pad_header" in req.query:   # a big response head (the proxy's buffer grows)
                pad = int(req.query["pad_header"])
                extra[:0] = ["X-Pad-%d: %s" % (i, "p" * min(1000, pad - i * 1000))
                             for i in range((pad + 999) // 1000)]
            head = self._head(code, "text/html", len(body), keep, extra)
            sock.sendall(head if req.method == "HEAD" else head + body)
            return keep
        if req.query.get("drop_next") == "1":
            self._send(sock, req, 200, self._page(req), "text/html", True)
            nxt = self._read_head(rd, cid)
            for piece in self._body_iter(sock, rd, nxt):
                nxt.body_bytes += len(piece)
            return False   # closed without an answer
        if "close_after_ms" in req.query:
            self._send(sock, req, 200, self._page(req), "text/html", True)
            self._stop.wait(int(req.query["close_after_ms"]) / 1000.0)
            return False
        return self._send(sock, req, 200, self._page(req), "text/html", keep)

    @staticmethod
    def _keep_alive(req):
        conn = (req.header("connection") or "").lower()
        if req.version == "HTTP/1.0":
            return "keep-alive" in conn
        return "close" not in conn

    def _page(self, req):
        return ("<!doctype html><html><head><title>%s</title></head><body>"
                "<h1 id=\"marker\">%s</h1><p>path %s</p></body></html>\n"
                % (self.name, self.marker, req.path)).encode()

    def _head(self, code, ctype, length, keep, extra=()):
        reason = {200: "OK", 204: "No Content", 304: "Not Modified", 404: "Not Found"}.get(code, "Status")
        lines = ["HTTP/1.1 %d %s" % (code, reason), "Server: shoji-test-origin",
                 "X-Origin: %s" % self.name]
        if ctype and code not in (204, 304):
            lines.append("Content-Type: " + ctype)
        if length is not None:
            lines.append("Content-Length: %d" % length)
        lines.extend(extra)
        lines.append("Connection: " + ("keep-alive" if keep else "close"))
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def _send(self, sock, req, code, body, ctype, keep):
        if code in (204, 304):
            extra = ['ETag: "v1"'] if code == 304 else []
            sock.sendall(self._head(code, None, None, keep, extra))
            return keep
        head = self._head(code, ctype, len(body), keep)
        sock.sendall(head if req.method == "HEAD" else head + body)
        return keep

    def _send_stream(self, sock, req, n, chunked, keep):
        ctype = "application/octet-stream"
        if chunked:
            sock.sendall(self._head(200, ctype, None, keep, ["Transfer-Encoding: chunked"]))
            if req.method == "HEAD":
                return keep
            for piece in pattern_chunks(n):
                sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
            return keep
        sock.sendall(self._head(200, ctype, n, keep))
        if req.method == "HEAD":
            return keep
        for piece in pattern_chunks(n):
            sock.sendall(piece)
        return keep

    def _send_slow(self, sock, req, n, ms, keep):
        sock.sendall(self._head(200, "application/octet-stream", n, keep))
        if req.method == "HEAD":
            return keep
        steps = 10
        sent = 0
        for i in range(steps):
            take = n // steps if i < steps - 1 else n - sent
            sock.sendall(pattern(take, sent))
            sent += take
            if self._stop.wait(ms / 1000.0 / steps):
                return False
        return keep

    @staticmethod
    def _rst(sock):
        """Abort the TCP connection (RST), no TLS close_notify."""
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            sock.close()
        except OSError:
            pass


class TCPEchoServer:
    """A plain TCP server that is neither TLS nor HTTP: it sends a banner
    ("SHOJI-ECHO <marker>\\r\\n") and then echoes every byte back."""

    def __init__(self, host="127.0.0.1"):
        self.host = host
        self.marker = "ECHO-%s" % os.urandom(6).hex()
        self.port = None
        self.connections = 0
        self._stop = threading.Event()
        self._lsock = None
        self._socks = set()
        self._lock = threading.Lock()

    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, 0))
        s.listen(16)
        self._lsock = s
        self.port = s.getsockname()[1]
        threading.Thread(target=self._loop, daemon=True).start()
        return self

    def _loop(self):
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([self._lsock], [], [], 0.1)
                if not r:
                    continue
                c, _ = self._lsock.accept()
            except (OSError, ValueError):
                return
            with self._lock:
                self.connections += 1
                self._socks.add(c)
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    def _echo(self, c):
        try:
            c.settimeout(30)
            c.sendall(("SHOJI-ECHO %s\r\n" % self.marker).encode())
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
        except OSError:
            pass
        finally:
            c.close()
            with self._lock:
                self._socks.discard(c)

    def stop(self):
        self._stop.set()
        try:
            self._lsock.close()
        except OSError:
            pass
        with self._lock:
            for c in list(self._socks):
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
