"""CONNECT to something that is neither TLS nor HTTP is tunnelled byte for
byte, also when the server speaks first."""
import pytest

from helpers.client import connect_tunnel


@pytest.fixture
def agent(shared):
    """One agent for this module (see conftest.shared_agent)."""
    return shared


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
