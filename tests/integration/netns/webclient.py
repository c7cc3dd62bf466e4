#!/usr/bin/python3
"""A client with no proxy settings, for the transparent-mode tests; runs in
the client namespace and connects straight to the address it is given (the
nftables rules, not the client, send it to the agent). Prints one JSON line.

  https --ip IP --port P --sni NAME [--host H] [--path /] [--cafile F]
      TLS with SNI NAME (--sni "": no SNI; verified against F and NAME when
      F is given, otherwise not verified), then GET PATH with Host H
      (default NAME). --split N: the ClientHello goes out in N pieces,
      50 ms apart.
      -> {"ok", "error", "issuer", "subject", "sans", "status", "body"}
  http --ip IP --port P --host H [--path /]
      -> {"ok", "error", "status", "body"}
  raw --ip IP --port P [--send-hex HEX] [--expect N] [--until-hex HEX] [--timeout S]
      sends the bytes (if any), reads until N bytes arrived, what arrived ends
      with the --until bytes, the peer closed, or the timeout (--expect 0:
      just connect) -> {"ok", "error", "received" (latin-1)}
Every answer also carries "elapsed" (seconds).
Every call is bounded by --timeout (default 5 s).
"""
import argparse
import json
import socket
import ssl
import sys
import time

from cryptography import x509
from cryptography.x509.oid import NameOID


def read_response(sock, limit=1 << 20):
    data = b""
    while len(data) < limit:
        try:
            d = sock.recv(65536)
        except (ssl.SSLError, OSError):
            break
        if not d:
            break
        data += d
    head, _, body = data.partition(b"\r\n\r\n")
    status = None
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        pass
    return status, body.decode("utf-8", "replace")[:8192]


def request(host, path):
    return ("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: shoji-test-webclient\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n" % (path, host)).encode()


def names(der):
    c = x509.load_der_x509_certificate(der)
    cn = lambda n: ",".join(a.value for a in n.get_attributes_for_oid(NameOID.COMMON_NAME))
    try:
        sans = c.extensions.get_extension_for_class(x509.SubjectAlternativeName) \
            .value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        sans = []
    return cn(c.issuer), cn(c.subject), sans


class BioTLS:
    """TLS over a socket through memory BIOs, so the ClientHello can be sent
    in pieces (a client whose hello spans several TCP segments)."""

    def __init__(self, ctx, sock, sni, split):
        self.sock, self.inc, self.out = sock, ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=sni or None)
        self.split = split

    def _flush(self, pieces=1):
        data = self.out.read()
        step = max(1, -(-len(data) // pieces))
        for i in range(0, len(data), step):
            self.sock.sendall(data[i:i + step])
            if pieces > 1:
                time.sleep(0.05)

    def _fill(self):
        d = self.sock.recv(65536)
        if not d:
            self.inc.write_eof()
        else:
            self.inc.write(d)
        return bool(d)

    def handshake(self):
        first = True
        while True:
            try:
                self.obj.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush(self.split if first else 1)
                first = False
                if not self._fill():
                    raise ConnectionResetError("closed during the handshake")

    def getpeercert(self, binary_form=True):
        return self.obj.getpeercert(binary_form=binary_form)

    def sendall(self, data):
        self.obj.write(data)
        self._flush()

    def recv(self, n):
        while True:
            try:
                return self.obj.read(n)
            except ssl.SSLWantReadError:
                if not self._fill():
                    return b""
            except ssl.SSLZeroReturnError:
                return b""


def cmd_https(a, out):
    if a.cafile:
        ctx = ssl.create_default_context(cafile=a.cafile)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    with socket.create_connection((a.ip, a.port), timeout=a.timeout) as raw:
        if a.split > 1:
            s = BioTLS(ctx, raw, a.sni, a.split)
            s.handshake()
        else:
            s = ctx.wrap_socket(raw, server_hostname=a.sni or None)
        out["issuer"], out["subject"], out["sans"] = names(s.getpeercert(binary_form=True))
        s.sendall(request(a.host or a.sni, a.path))
        out["status"], out["body"] = read_response(s)
    out["ok"] = True


def cmd_http(a, out):
    with socket.create_connection((a.ip, a.port), timeout=a.timeout) as s:
        s.sendall(request(a.host, a.path))
        out["status"], out["body"] = read_response(s)
    out["ok"] = True


def cmd_raw(a, out):
    got = b""
    suffix = bytes.fromhex(a.until_hex) if a.until_hex else None
    with socket.create_connection((a.ip, a.port), timeout=a.timeout) as s:
        if a.send_hex:
            s.sendall(bytes.fromhex(a.send_hex))
        try:
            while len(got) < a.expect and not (suffix and got.endswith(suffix)):
                d = s.recv(65536)
                if not d:
                    break
                got += d
        except socket.timeout:
            out["error"] = "timeout"
        finally:
            out["received"] = got.decode("latin-1")
    out["ok"] = out["error"] is None


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("https", "http", "raw"):
        p = sub.add_parser(name)
        p.add_argument("--ip", required=True)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--timeout", type=float, default=5.0)
        if name != "raw":
            p.add_argument("--path", default="/")
            p.add_argument("--host", required=(name == "http"))
        if name == "https":
            p.add_argument("--sni", required=True)
            p.add_argument("--cafile")
            p.add_argument("--split", type=int, default=1)
        if name == "raw":
            p.add_argument("--send-hex", default="")
            p.add_argument("--expect", type=int, default=1 << 16)
            p.add_argument("--until-hex", default="")
    a = ap.parse_args()
    out = {"ok": False, "error": None}
    t0 = time.monotonic()
    try:
        {"https": cmd_https, "http": cmd_http, "raw": cmd_raw}[a.cmd](a, out)
    except socket.timeout:
        out["error"] = "timeout"
    except ssl.SSLCertVerificationError as e:
        out["error"] = "verify: %s" % e.verify_message
    except (ssl.SSLError, OSError) as e:
        out["error"] = "%s: %s" % (type(e).__name__, e)
    out["elapsed"] = round(time.monotonic() - t0, 3)
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
