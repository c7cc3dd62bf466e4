"""TLS session resumption between a client and the agent's decoding side:
a second connection offering the session of the first resumes it (no
certificate, no full handshake), with TLS 1.3 tickets and TLS 1.2 session
ids, whether the client's first request comes with its Finished (the
agent then sends its ticket together with the response) or after it."""
import socket
import ssl

import pytest

from helpers.client import HTTPReader, _request_bytes, connect_tunnel, tls_context


@pytest.fixture
def agent(shared):
    """One agent for this module (see conftest.shared_agent)."""
    return shared


def tunnel(agent, origin):
    s, r = connect_tunnel(agent.port, "good.test", origin.port)
    assert r.status == 200, r
    return s


def get_over_tls(agent, origin, ctx, path, session=None):
    """One request on a fresh decoded connection, the ssl module driving
    the socket: (status, body text, session afterwards, session_reused)."""
    tls = ctx.wrap_socket(tunnel(agent, origin), server_hostname="good.test", session=session)
    try:
        tls.sendall(_request_bytes("GET", path, [("Connection", "close")], None,
                                   "good.test:%d" % origin.port))
        r = HTTPReader(tls).response()
        return r.status, r.text, tls.session, tls.session_reused
    finally:
        tls.close()


def get_with_finished(agent, origin, ctx, path, session=None):
    """The same, but the request leaves in the same segment as the client's
    Finished (what browsers and OpenSSL clients usually do): memory BIOs,
    and the socket written only once the request is encrypted too."""
    sock = tunnel(agent, origin)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="good.test", session=session)
    sock.settimeout(10)

    def pull():
        d = sock.recv(65536)
        if d:
            inc.write(d)
        else:
            inc.write_eof()
        return d

    try:
        for _ in range(100):
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                if out.pending:
                    sock.sendall(out.read())
                assert pull(), "the agent closed during the handshake"
        obj.write(_request_bytes("GET", path, [("Connection", "close")], None,
                                 "good.test:%d" % origin.port))
        sock.sendall(out.read())   # Finished (TLS 1.3) + request: one write
        data = b""
        for _ in range(1000):
            try:
                chunk = obj.read(65536)
                if not chunk:
                    break
                data += chunk
            except ssl.SSLWantReadError:
                if not pull():
                    break
            except ssl.SSLZeroReturnError:
                break
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
        return status, body.decode("utf-8", "replace"), obj.session, obj.session_reused
    finally:
        sock.close()


def client_ctx(agent, version=None):
    ctx = tls_context(agent.ca_path)
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


@pytest.mark.parametrize("get", [get_over_tls, get_with_finished],
                         ids=["request-after-handshake", "request-with-finished"])
def test_tls13_second_connection_resumes_with_the_ticket_of_the_first(agent, origins, get):
    good = origins["good"]
    ctx = client_ctx(agent, ssl.TLSVersion.TLSv1_3)
    status, body, sess, reused = get(agent, good, ctx, "/first")
    assert status == 200 and good.marker in body
    assert not reused
    assert sess is not None and sess.has_ticket, "no TLS 1.3 ticket arrived with the response"
    status, body, sess2, reused = get(agent, good, ctx, "/second", session=sess)
    assert status == 200 and good.marker in body
    assert reused, "the second connection did a full handshake instead of resuming"
    # the resumed connection hands out a fresh ticket, which resumes in turn
    assert sess2 is not None and sess2.has_ticket
    status, body, _, reused = get(agent, good, ctx, "/third", session=sess2)
    assert status == 200 and good.marker in body and reused
    assert [r.path for r in good.requests] == ["/first", "/second", "/third"]


def test_tls12_second_connection_resumes_the_session_of_the_first(agent, origins):
    good = origins["good"]
    ctx = client_ctx(agent, ssl.TLSVersion.TLSv1_2)
    status, body, sess, reused = get_over_tls(agent, good, ctx, "/first12")
    assert status == 200 and good.marker in body and not reused
    assert sess is not None
    status, body, _, reused = get_over_tls(agent, good, ctx, "/second12", session=sess)
    assert status == 200 and good.marker in body
    assert reused, "TLS 1.2 session not resumed"



def test_session_survives_a_client_that_resets_the_connection(agent, origins):
    """The client reads its response on a keep-alive connection and then
    resets it (no close_notify from either side): its session still
    resumes on the next connection."""
    import struct
    import time
    good = origins["good"]
    ctx = client_ctx(agent, ssl.TLSVersion.TLSv1_3)
    raw = tunnel(agent, good)
    tls = ctx.wrap_socket(raw, server_hostname="good.test")
    tls.sendall(_request_bytes("GET", "/keep", None, None, "good.test:%d" % good.port))
    r = HTTPReader(tls).response()
    assert r.status == 200 and good.marker in r.text
    sess = tls.session
    assert sess is not None and sess.has_ticket
    tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    tls.close()   # no close_notify, and a RST
    time.sleep(0.3)   # the agent sees the reset and frees the connection
    status, body, _, reused = get_over_tls(agent, good, ctx, "/after-reset", session=sess)
    assert status == 200 and good.marker in body
    assert reused, "the session was dropped when the first connection was reset"
