"""Upstream failures are never hidden: a certificate that fails
verification gives the client a minted certificate for the requested host
and a 502 HTML page naming the host and the reason, never the origin's
content; an unreachable origin gives a 502 HTML page."""
import re
import socket
import ssl

import pytest

from helpers.client import (HTTPReader, ProxyClient, _request_bytes, connect_tunnel, https_get,
                            peer_cert, tls_context)
from helpers.pki import cert_names, load_cert, verify_issued_by
from helpers.tools import curl_fetch


@pytest.fixture
def agent(shared):
    """One agent for this module (see conftest.shared_agent)."""
    return shared

CASES = {
    # origin key: (host, regex the page must match for the reason)
    "expired": ("expired.test", r"expired"),
    "selfsigned": ("selfsigned.test", r"self[- ]signed"),
    "wrongname": ("wrongname.test", r"name mismatch|does not match|mismatch"),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_bad_upstream_certificate_gives_502_page_naming_host_and_reason(agent, origins, kind):
    host, reason_re = CASES[kind]
    origin = origins[kind]
    status, body, certs, p = curl_fetch(agent.port, origin.url("/secret"), cafile=agent.ca_path)
    # curl trusts only the agent CA and checks the host name: the handshake
    # must succeed with a leaf minted for the *requested* host
    assert p.returncode == 0, "curl failed (%s): %s" % (p.cmd, p.stderr)
    assert certs, "no certificate seen"
    verify_issued_by(certs[0], load_cert(agent.ca_path))
    assert host in cert_names(certs[0])[1] or cert_names(certs[0])[0] == [host]
    assert status == 502, "status %d, body %r" % (status, body[:500])
    text = body.decode("utf-8", "replace")
    assert origin.marker not in text, "origin content leaked through a failed verification"
    assert "<html" in text.lower(), "error page is not HTML: %r" % text[:300]
    assert host in text, "error page does not name the host %s: %r" % (host, text[:1000])
    assert re.search(reason_re, text, re.I), "error page gives no reason matching %r: %r" % (
        reason_re, text[:1000])


def test_wrong_name_page_names_the_names_the_certificate_is_for(agent, origins):
    origin = origins["wrongname"]
    status, body, _, p = curl_fetch(agent.port, origin.url("/"), cafile=agent.ca_path)
    assert status == 502
    assert b"other.test" in body, "the page should say which name the certificate is for"


def test_unknown_issuer_without_upstream_ca_gives_502(agent_factory, origins):
    """Without --upstream-ca the test root is unknown: good.test fails
    verification too (the system store does not know our test CA)."""
    a = agent_factory(upstream_ca=None).start()
    good = origins["good"]
    r, leaf = https_get(a.port, "good.test", good.port, "/unknown", cafile=a.ca_path)
    assert r.status == 502, r
    assert good.marker not in r.text
    assert "good.test" in r.text
    assert re.search(r"issuer|unable to get local|untrusted|unknown", r.text, re.I), r.text[:1000]
    verify_issued_by(leaf, load_cert(a.ca_path))


def test_failed_upstream_request_body_never_reaches_client_on_keepalive(agent, origins):
    """Two requests on one decoded connection to an expired origin: both
    get the error page, neither gets origin content."""
    from helpers.client import HTTPReader, _request_bytes, tls_via_proxy
    o = origins["expired"]
    tls = tls_via_proxy(agent.port, "expired.test", o.port, cafile=agent.ca_path)
    try:
        rd = HTTPReader(tls)
        for i in range(2):
            tls.sendall(_request_bytes("GET", "/k%d" % i, None, None, "expired.test:%d" % o.port))
            try:
                r = rd.response()
            except Exception:
                assert i == 1, "no response to the first request"
                break  # closing after the error page is acceptable
            assert r.status == 502 and o.marker not in r.text
    finally:
        tls.close()


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here now: connect is refused
    return port


def assert_html_502(r, name):
    assert r.status == 502, r
    assert "html" in (r.header("content-type") or "").lower(), r
    assert name in r.text, "page does not name %s: %r" % (name, r.text[:500])


def test_http_to_refused_port_gives_502_page(agent):
    port = closed_port()
    with ProxyClient(agent.port) as c:
        r = c.request("GET", "http://closed.test:%d/" % port)
    assert_html_502(r, "closed.test")


def test_http_to_name_that_does_not_resolve_gives_502_page(agent):
    with ProxyClient(agent.port) as c:
        r = c.request("GET", "http://nxdomain.invalid/")
    assert_html_502(r, "nxdomain.invalid")


def connect_then_expect_502(agent, host, port):
    """CONNECT to an unreachable origin: either the CONNECT itself is
    answered 502, or (the agent answers 200 first and peeks, as browsers
    cannot show a CONNECT error body anyway) a TLS client gets a leaf
    minted for the host and a 502 HTML page naming it, inside TLS."""
    s, r = connect_tunnel(agent.port, host, port)
    if r.status != 200:
        s.close()
        assert r.status == 502, r
        return
    try:
        tls = tls_context(agent.ca_path).wrap_socket(s, server_hostname=host)
    except (ssl.SSLError, OSError) as e:
        s.close()
        pytest.fail("CONNECT %s:%d answered 200, then the TLS handshake failed (%r): the user "
                    "sees a connection error instead of a 502 page" % (host, port, e))
    try:
        verify_issued_by(peer_cert(tls), load_cert(agent.ca_path))
        tls.sendall(_request_bytes("GET", "/", None, None, "%s:%d" % (host, port)))
        page = HTTPReader(tls).response()
    finally:
        tls.close()
    assert_html_502(page, host)


def test_connect_to_refused_port_gives_502(agent):
    connect_then_expect_502(agent, "closed.test", closed_port())


def test_connect_to_name_that_does_not_resolve_gives_502(agent):
    connect_then_expect_502(agent, "nxdomain.invalid", 443)


def test_origin_reset_mid_body_truncates_the_client_response(agent, origins):
    """The origin announces 2N bytes, sends N and resets: the client must
    not see a complete response (the agent closes the client connection)."""
    plain = origins["plain"]
    with ProxyClient(agent.port) as c:
        c.sock.settimeout(10)
        try:
            r = c.request("GET", plain.url("/reset/100000"))
        except Exception:
            return  # connection closed before the whole body: correct
        pytest.fail("client received a complete response from a reset origin: %r" % r)


def test_agent_survives_upstream_failures(agent, origins):
    """After every failure above, a good request still works."""
    for name in ("expired", "selfsigned", "wrongname"):
        https_get(agent.port, origins[name].name, origins[name].port, "/x", cafile=agent.ca_path)
    r, _ = https_get(agent.port, "good.test", origins["good"].port, "/after", cafile=agent.ca_path)
    assert r.status == 200 and origins["good"].marker in r.text

