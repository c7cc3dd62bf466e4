#!/usr/bin/python3
"""Web sites and an echo server for the transparent-mode tests; runs inside
the origin namespace (ip netns exec ... /usr/bin/python3 sites.py ...).

  --tls  NAME IP PORT CERT KEY MARKER   HTTPS site (helpers/origin.py routes;
                                        IP may be IPv6)
  --http NAME IP PORT MARKER            plain HTTP site (same routes)
  --echo IP PORT                        neither TLS nor HTTP: sends the banner
                                        "SHOJI-ECHO peer=IP:PORT\\r\\n", then
                                        echoes every byte back
  --udp IP PORT                         answers each datagram with "UDP-REPLY"
  --log FILE                            one JSON line per accepted connection
                                        {"site", "local", "peer"}, and one per
                                        request {..., "request", "host"}

Every page of a site also says "peer=IP:PORT": the address the origin saw
the connection come from. Prints {"ready": true} once everything listens; runs until killed.
"""
import argparse
import json
import os
import socket
import ssl
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from helpers.origin import Origin  # noqa: E402

_log_lock = threading.Lock()
LOG = None


def log_conn(site, conn, **extra):
    if not LOG:
        return
    try:
        rec = {"site": site, "local": "%s:%d" % conn.getsockname()[:2],
               "peer": "%s:%d" % conn.getpeername()[:2], **extra}
    except OSError:
        return
    with _log_lock, open(LOG, "a") as f:
        f.write(json.dumps(rec) + "\n")


class Site(Origin):
    """An Origin on a fixed address and port whose pages name the peer."""

    def __init__(self, name, cert, host, port, marker):
        super().__init__(name, cert, host)
        self.marker = marker
        self.want_port = port
        self.peers = {}
        self.conns = {}

    def start(self):
        self._ctx = None
        if self.cert is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.cert.cert_path, self.cert.key_path)
            ctx.set_alpn_protocols(["http/1.1"])
            self._ctx = ctx
        s = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.want_port))
        s.listen(128)
        self._lsock = s
        self.port = self.want_port
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def _serve(self, conn, cid):
        try:
            self.peers[cid] = "%s:%d" % tuple(conn.getpeername()[:2])
        except OSError:
            self.peers[cid] = None
        log_conn(self.name, conn)
        self.conns[cid] = conn
        try:
            super()._serve(conn, cid)
        finally:
            self.conns.pop(cid, None)

    def _read_head(self, rd, cid):
        req = super()._read_head(rd, cid)
        conn = self.conns.get(cid)
        if conn is not None:
            log_conn(self.name, conn, request=req.target, host=req.header("host"))
        return req

    def _page(self, req):
        page = super()._page(req)
        return page.replace(b"</body>", ("<p id=\"peer\">peer=%s</p></body>"
                                          % self.peers.get(req.conn_id)).encode())


class _Pair:
    def __init__(self, cert_path, key_path):
        self.cert_path, self.key_path = cert_path, key_path


def echo_server(ip, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    s.listen(16)

    def one(c):
        with c:
            try:
                c.settimeout(30)
                c.sendall(("SHOJI-ECHO peer=%s:%d\r\n" % c.getpeername()[:2]).encode())
                while True:
                    d = c.recv(65536)
                    if not d:
                        return
                    c.sendall(d)
            except OSError:
                return

    def loop():
        while True:
            c, _ = s.accept()
            log_conn("echo", c)
            threading.Thread(target=one, args=(c,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()


def udp_server(ip, port):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((ip, port))

    def loop():
        while True:
            _, peer = u.recvfrom(4096)
            u.sendto(b"{\"server\": \"udp\"}\n", peer)

    threading.Thread(target=loop, daemon=True).start()


def main():
    global LOG
    ap = argparse.ArgumentParser()
    ap.add_argument("--tls", nargs=6, action="append", default=[],
                    metavar=("NAME", "IP", "PORT", "CERT", "KEY", "MARKER"))
    ap.add_argument("--http", nargs=4, action="append", default=[],
                    metavar=("NAME", "IP", "PORT", "MARKER"))
    ap.add_argument("--echo", nargs=2, action="append", default=[], metavar=("IP", "PORT"))
    ap.add_argument("--udp", nargs=2, action="append", default=[], metavar=("IP", "PORT"))
    ap.add_argument("--log")
    a = ap.parse_args()
    LOG = a.log
    for name, ip, port, cert, key, marker in a.tls:
        Site(name, _Pair(cert, key), ip, int(port), marker).start()
    for name, ip, port, marker in a.http:
        Site(name, None, ip, int(port), marker).start()
    for ip, port in a.echo:
        echo_server(ip, int(port))
    for ip, port in a.udp:
        udp_server(ip, int(port))
    print(json.dumps({"ready": True}), flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    sys.exit(main())
