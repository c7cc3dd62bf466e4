"""Policy bypass by timing: a client that sends its ClientHello slowly must
not get an undecoded tunnel to a host the policy blocks (or decodes).

The agent peeks at the first bytes after CONNECT to tell TLS from a
server-speaks-first protocol; when nothing complete arrives within the peek
time (3 s) it tunnels. A ClientHello that has started (a TLS record header
was seen) is TLS: waiting longer for the rest must not turn it into a raw
tunnel that skips the policy, the certificate checks and the access-log URL."""
import json
import socket
import ssl
import time

import pytest

from helpers.client import connect_tunnel



def handshake_through(port, host, origin_port, cafiles, split_pause):
    """CONNECT, then a TLS handshake whose ClientHello is split after 5
    bytes with a pause. Returns (issuer CN of the certificate seen, body)
    or (None, reason) when the agent closed the connection."""
    s, r = connect_tunnel(port, host, origin_port)
    assert r.status == 200, r
    ctx = ssl.create_default_context()
    for f in cafiles:
        ctx.load_verify_locations(f)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=host)
    first = True
    s.settimeout(15)
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                data = out.read()
                if data and first:
                    s.sendall(data[:5])
                    time.sleep(split_pause)
                    s.sendall(data[5:])
                    first = False
                elif data:
                    s.sendall(data)
                got = s.recv(65536)
                if not got:
                    return None, "closed during the handshake"
                inc.write(got)
        issuer = obj.getpeercert()["issuer"]
        cn = [v for rdn in issuer for k, v in rdn if k == "commonName"][0]
        obj.write(b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host.encode())
        s.sendall(out.read())
        body = b""
        while time.monotonic() < deadline:
            got = s.recv(65536)
            if not got:
                break
            inc.write(got)
            try:
                while True:
                    piece = obj.read(65536)
                    if not piece:
                        break
                    body += piece
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                break
        return cn, body
    except (ConnectionResetError, ssl.SSLError, socket.timeout) as e:
        return None, repr(e)
    finally:
        s.close()


@pytest.fixture
def blocking_agent(agent_factory, tmp_path):
    pol = tmp_path / "policy.json"
    pol.write_text(json.dumps({"block": ["good.test"]}))
    return agent_factory(policy=str(pol)).start()


def test_blocked_host_with_whole_clienthello_gets_the_block_page(blocking_agent, origins, pki):
    a, good = blocking_agent, origins["good"]
    cn, body = handshake_through(a.port, "good.test", good.port, [a.ca_path, pki.ca_cert_path], 0)
    assert cn is not None and cn != "shoji test root CA", (cn, body)
    assert body.startswith(b"HTTP/1.1 403"), body[:200]
    assert good.marker.encode() not in body


def test_blocked_host_with_slow_clienthello_is_not_tunnelled(blocking_agent, origins, pki):
    """Same request, the ClientHello split after 5 bytes with a 4 s pause:
    the block page or a closed connection, never the origin's content."""
    a, good = blocking_agent, origins["good"]
    cn, body = handshake_through(a.port, "good.test", good.port, [a.ca_path, pki.ca_cert_path], 4)
    assert good.marker.encode() not in body, (
        "blocked host reached through a raw tunnel (certificate issued by %r)" % cn)
    assert cn != "shoji test root CA", "the origin's own certificate was seen: not decoded"


def test_decoded_host_with_slow_clienthello_is_still_decoded(agent, origins, pki):
    """The allowed case: a slow ClientHello still gets the agent's
    certificate (decoded and logged with its URL), not the origin's."""
    good = origins["good"]
    cn, body = handshake_through(agent.port, "good.test", good.port,
                                 [agent.ca_path, pki.ca_cert_path], 4)
    assert cn is not None and cn != "shoji test root CA", (cn, body[:200])
