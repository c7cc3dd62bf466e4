"""Raw-socket clients for talking to the agent as an explicit proxy.

  c = ProxyClient(agent.port)                  # one client connection
  r = c.request("GET", "http://plain.test:8080/x")   # absolute form
  r.status, r.headers, r.body

  s, status = connect_tunnel(agent.port, "good.test", 4443)   # CONNECT
  tls = tls_via_proxy(agent.port, "good.test", 4443, cafile=agent.ca_path)
  peer_cert(tls)  -> cryptography x509.Certificate the client saw
"""
import socket
import ssl
import time

from cryptography import x509


class Response:
    def __init__(self, version, status, reason, headers, body=b"", body_len=0):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers      # [(name, value)]
        self.body = body
        self.body_len = body_len

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        return "<Response %s %s headers=%r body[:200]=%r>" % (
            self.status, self.reason, self.headers, self.body[:200])


class ConnectionClosed(Exception):
    pass


class HTTPReader:
    """Reads HTTP/1.1 responses from a socket (plain or TLS)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionClosed("connection closed by peer")
        self.buf += data

    def line(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise ValueError("line too long")
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def head(self):
        line = self.line()
        parts = line.decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise ValueError("bad status line %r" % line)
        headers = []
        while True:
            h = self.line()
            if not h:
                break
            k, _, v = h.decode("latin-1").partition(":")
            headers.append((k.strip(), v.strip()))
        return parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "", headers

    def read_exact(self, n, sink=None):
        got = 0
        out = [] if sink is None else None
        while got < n:
            if not self.buf:
                self._fill()
            take = self.buf[:n - got]
            self.buf = self.buf[len(take):]
            got += len(take)
            if sink is None:
                out.append(take)
            else:
                sink(take)
        return b"".join(out) if out is not None else b""

    def read_until_close(self, sink=None):
        out = []
        while True:
            if self.buf:
                (out.append if sink is None else sink)(self.buf)
                self.buf = b""
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                break
            if not data:
                break
            self.buf = data
        return b"".join(out)

    def response(self, method="GET", sink=None, skip_1xx=True):
        """One response; sink(bytes) receives the body instead of keeping it."""
        while True:
            version, status, reason, headers = self.head()
            if not (skip_1xx and 100 <= status < 200):
                break
        r = Response(version, status, reason, headers)
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return r
        counted = [0]
        kept = []

        def take(b):
            counted[0] += len(b)
            (kept.append if sink is None else sink)(b)

        te = (r.header("transfer-encoding") or "").lower()
        cl = r.header("content-length")
        if "chunked" in te:
            while True:
                size = int(self.line().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.line():
                        pass
                    break
                self.read_exact(size, take)
                self.line()
        elif cl is not None:
            self.read_exact(int(cl), take)
        else:
            self.read_until_close(take)
        r.body = b"".join(kept)
        r.body_len = counted[0]
        return r


def _request_bytes(method, target, headers, body, host=None):
    hdrs = list(headers or [])
    names = {k.lower() for k, _ in hdrs}
    if "host" not in names and host:
        hdrs.insert(0, ("Host", host))
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        hdrs.append(("Content-Length", str(len(body))))
    head = "%s %s HTTP/1.1\r\n" % (method, target)
    head += "".join("%s: %s\r\n" % kv for kv in hdrs) + "\r\n"
    return head.encode("latin-1") + (body or b"")


def host_of(url):
    from urllib.parse import urlsplit
    return urlsplit(url).netloc


class ProxyClient:
    """One client connection to the agent, speaking absolute-form HTTP."""

    def __init__(self, port, host="127.0.0.1", timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.reader = HTTPReader(self.sock)

    def send_raw(self, data):
        self.sock.sendall(data)

    def request(self, method, url, headers=None, body=None, sink=None):
        self.sock.sendall(_request_bytes(method, url, headers, body, host_of(url)))
        return self.reader.response(method, sink=sink)

    def response(self, method="GET", sink=None):
        return self.reader.response(method, sink=sink)

    def is_closed(self, timeout=3.0):
        """True when the agent closed the connection (EOF or reset) within
        timeout; any unread bytes are discarded."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def connect_tunnel(proxy_port, host, port, proxy_host="127.0.0.1", timeout=10):
    """Opens a CONNECT tunnel; returns (socket, Response of the CONNECT)."""
    s = socket.create_connection((proxy_host, proxy_port), timeout=timeout)
    target = "%s:%d" % (host, port)
    s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
    rd = HTTPReader(s)
    version, status, reason, headers = rd.head()
    if rd.buf and 200 <= status < 300:
        raise AssertionError("agent sent bytes after the CONNECT response head: %r" % rd.buf[:100])
    return s, Response(version, status, reason, headers)


def tls_context(cafile=None, verify=True, alpn=("http/1.1",)):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(cafile=cafile)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def tls_via_proxy(proxy_port, host, port, cafile=None, verify=True, server_hostname=None,
                  timeout=10):
    """CONNECT host:port through the agent, then TLS over the tunnel,
    trusting only `cafile` (the agent's CA). Raises on a failed CONNECT."""
    s, r = connect_tunnel(proxy_port, host, port, timeout=timeout)
    if r.status != 200:
        s.close()
        raise AssertionError("CONNECT %s:%d -> %r" % (host, port, r))
    ctx = tls_context(cafile, verify)
    return ctx.wrap_socket(s, server_hostname=server_hostname or host)


def peer_cert(tls_sock):
    return x509.load_der_x509_certificate(tls_sock.getpeercert(binary_form=True))


def https_get(proxy_port, host, port, path="/", cafile=None, method="GET", headers=None,
              body=None, sink=None):
    """One request over a fresh decoded tunnel: (Response, leaf cert)."""
    tls = tls_via_proxy(proxy_port, host, port, cafile=cafile)
    try:
        tls.sendall(_request_bytes(method, path, headers, body, "%s:%d" % (host, port)))
        r = HTTPReader(tls).response(method, sink=sink)
        return r, peer_cert(tls)
    finally:
        tls.close()
