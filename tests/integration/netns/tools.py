#!/usr/bin/python3
"""Small network tools the netns tests run inside their namespaces.

  origin --port P [--port P]... [--udp-port P]
      TCP servers on [::]:P (dual stack) answering one JSON line
      {"server": "origin", "local": "ip:port", "peer": "ip:port"} per
      connection; an optional UDP server answering the same way.
  listen-odst --port P
      stands in for the agent's transparent listener: TCP on 127.0.0.1:P and
      [::1]:P answering {"server": "redirected", "orig_dst": "ip:port", ...}
      with the original destination from SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST.
  probe-tcp --host H --port P [--timeout S] [--mark M] [--uid U] [--send TEXT]
      connects (optionally with SO_MARK, or after dropping to uid U), reads one
      line, prints {"connected", "error", "elapsed", "reply"}.
  probe-udp --host H --port P [--timeout S]
      sends one datagram on a connected UDP socket, prints
      {"result": "reply"|"rejected"|"timeout", "errno", "elapsed", "reply"}.
Servers run until killed; every probe is bounded by its timeout.
"""
import argparse
import errno
import json
import os
import selectors
import socket
import struct
import sys
import time

SO_ORIGINAL_DST = 80          # linux/netfilter_ipv4.h
IP6T_SO_ORIGINAL_DST = 80     # linux/netfilter_ipv6/ip6_tables.h


def fmt(addr):
    host, port = addr[0], addr[1]
    if host.startswith("::ffff:"):
        host = host[7:]
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


def original_dst(conn):
    if conn.family == socket.AF_INET:
        raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
        port, = struct.unpack_from("!H", raw, 2)
        return fmt((socket.inet_ntop(socket.AF_INET, raw[4:8]), port))
    raw = conn.getsockopt(socket.IPPROTO_IPV6, IP6T_SO_ORIGINAL_DST, 28)
    port, = struct.unpack_from("!H", raw, 2)
    return fmt((socket.inet_ntop(socket.AF_INET6, raw[8:24]), port))


def serve(listeners, udp, kind):
    sel = selectors.DefaultSelector()
    for s in listeners:
        s.listen(64)
        sel.register(s, selectors.EVENT_READ, "tcp")
    for s in udp:
        sel.register(s, selectors.EVENT_READ, "udp")
    print(json.dumps({"ready": True}), flush=True)
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            if key.data == "udp":
                data, peer = s.recvfrom(2048)
                s.sendto((json.dumps({"server": kind, "peer": fmt(peer)}) + "\n").encode(), peer)
                continue
            conn, peer = s.accept()
            with conn:
                reply = {"server": kind, "local": fmt(conn.getsockname()), "peer": fmt(peer)}
                if kind == "redirected":
                    try:
                        reply["orig_dst"] = original_dst(conn)
                    except Exception as e:   # keep serving; the client sees why
                        reply["orig_dst"] = None
                        reply["error"] = repr(e)
                try:
                    conn.sendall((json.dumps(reply) + "\n").encode())
                except OSError:
                    pass


def tcp_listener(family, host, port, v6only=None):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if v6only is not None:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
    s.bind((host, port))
    return s


def cmd_origin(a):
    tcp = [tcp_listener(socket.AF_INET6, "::", p, v6only=0) for p in a.port]
    udp = []
    if a.udp_port:
        u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        u.bind(("::", a.udp_port))
        udp.append(u)
    serve(tcp, udp, "origin")


def cmd_listen_odst(a):
    serve([tcp_listener(socket.AF_INET, "127.0.0.1", a.port),
           tcp_listener(socket.AF_INET6, "::1", a.port, v6only=1)], [], "redirected")


def drop_to(uid):
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


def cmd_probe_tcp(a):
    family = socket.AF_INET6 if ":" in a.host else socket.AF_INET
    out = {"connected": False, "error": None, "reply": None}
    t0 = time.monotonic()
    drop_to(a.uid)   # before socket(): a socket's owner uid is fixed at creation
    s = socket.socket(family, socket.SOCK_STREAM)
    if a.mark is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, a.mark)
    s.settimeout(a.timeout)
    try:
        s.connect((a.host, a.port))
        out["connected"] = True
        if a.send:
            s.sendall(a.send.encode())
        line = s.makefile("rb").readline(4096).decode(errors="replace").strip()
        try:
            out["reply"] = json.loads(line) if line else None
        except ValueError:
            out["reply"] = line
    except socket.timeout:
        out["error"] = "timeout"
    except OSError as e:
        out["error"] = errno.errorcode.get(e.errno, str(e))
    finally:
        s.close()
    out["elapsed"] = round(time.monotonic() - t0, 3)
    print(json.dumps(out))


def cmd_probe_udp(a):
    family = socket.AF_INET6 if ":" in a.host else socket.AF_INET
    out = {"result": None, "reply": None}
    t0 = time.monotonic()
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(a.timeout)
    try:
        s.connect((a.host, a.port))
        s.send(b"\xc0QUIC-ish initial")
        data = s.recv(2048)
        out["result"] = "reply"
        out["reply"] = json.loads(data.decode())
    except socket.timeout:
        out["result"] = "timeout"
    except (ConnectionRefusedError, PermissionError) as e:
        # An nftables reject in the OUTPUT hook fails the send() itself with
        # EPERM (and queues an ICMP error: ECONNREFUSED on the next call);
        # either way the client learns at once.
        out["result"] = "rejected"
        out["errno"] = errno.errorcode.get(e.errno, str(e))
    except OSError as e:
        out["result"] = errno.errorcode.get(e.errno, str(e))
    finally:
        s.close()
    out["elapsed"] = round(time.monotonic() - t0, 3)
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("origin")
    o.add_argument("--port", type=int, action="append", required=True)
    o.add_argument("--udp-port", type=int)
    lo = sub.add_parser("listen-odst")
    lo.add_argument("--port", type=int, required=True)
    for name in ("probe-tcp", "probe-udp"):
        p = sub.add_parser(name)
        p.add_argument("--host", required=True)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--timeout", type=float, default=3.0)
        if name == "probe-tcp":
            p.add_argument("--mark", type=lambda v: int(v, 0))
            p.add_argument("--uid", type=int)
            p.add_argument("--send", default="")
    a = ap.parse_args()
    {"origin": cmd_origin, "listen-odst": cmd_listen_odst,
     "probe-tcp": cmd_probe_tcp, "probe-udp": cmd_probe_udp}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
