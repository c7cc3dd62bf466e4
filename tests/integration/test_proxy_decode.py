"""HTTPS decode: CONNECT to a TLS origin is decoded with a leaf minted by
the agent's CA that carries the origin certificate's names; a leaf is
cached on disk and survives a restart."""
import shutil
import ssl
import time

import pytest

from helpers.client import ConnectionClosed, HTTPReader, _request_bytes, peer_cert, tls_via_proxy, https_get
from helpers.pki import cert_names, load_cert, verify_issued_by
from helpers.tools import curl_fetch, pem_certs, s_client, tcp_cc


@pytest.fixture
def agent(shared):
    """One agent for this module (see conftest.shared_agent)."""
    return shared


def issued_by_agent_ca(cert, agent):
    """The leaf names the agent's CA as issuer and is signed by its key."""
    verify_issued_by(cert, load_cert(agent.ca_path))


def test_curl_through_agent_gets_origin_content_with_leaf_from_agent_ca(agent, origins):
    good = origins["good"]
    status, body, certs, p = curl_fetch(agent.port, good.url("/hello"), cafile=agent.ca_path)
    assert p.returncode == 0, "curl failed: %s\n%s" % (p.cmd, p.stderr)
    assert status == 200
    assert good.marker.encode() in body
    assert certs, "curl reported no certificate"
    leaf = certs[0]
    issued_by_agent_ca(leaf, agent)
    cns, sans = cert_names(leaf)
    assert "good.test" in sans and "www.good.test" in sans, "SANs of minted leaf: %r" % sans
    assert cns == ["good.test"], "CN of minted leaf: %r (origin's CN is good.test)" % cns
    # the request really reached the origin, over TLS, with the path intact
    assert [r.path for r in good.requests] == ["/hello"]


def test_curl_second_name_of_origin_certificate_is_accepted(agent, origins):
    """The origin's cert names www.good.test too: curl asking for that name
    verifies against the minted leaf."""
    good = origins["good"]
    status, body, certs, p = curl_fetch(agent.port, good.url("/www", host="www.good.test"),
                                        cafile=agent.ca_path)
    assert p.returncode == 0, p.stderr
    assert status == 200 and good.marker.encode() in body


def test_openssl_s_client_sees_agent_ca_issuer_and_origin_names(agent, origins):
    good = origins["good"]
    req = b"GET /via-s-client HTTP/1.1\r\nHost: good.test:%d\r\nConnection: close\r\n\r\n" % good.port
    p = s_client(agent.port, "good.test", good.port, agent.ca_path, request=req, until=good.marker)
    assert "Verify return code: 0 (ok)" in p.stdout, "%s\nstdout:\n%s\nstderr:\n%s" % (
        p.cmd, p.stdout[-3000:], p.stderr[-2000:])
    chain = pem_certs(p.stdout)
    assert chain, p.stdout
    leaf = chain[0]
    issued_by_agent_ca(leaf, agent)
    assert set(cert_names(leaf)[1]) >= {"good.test", "www.good.test"}
    assert "HTTP/1.1 200" in p.stdout and good.marker in p.stdout
    assert [r.path for r in good.requests] == ["/via-s-client"]



@pytest.mark.parametrize("offered,chosen", [
    ("TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256",
     "TLS_AES_128_GCM_SHA256"),
    ("TLS_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384"),
    ("TLS_CHACHA20_POLY1305_SHA256", "TLS_CHACHA20_POLY1305_SHA256"),
])
def test_tls13_suite_is_aes128_when_offered_and_every_standard_suite_works(agent, origins, offered, chosen):
    """The agent prefers TLS_AES_128_GCM_SHA256 (cheaper handshakes: SHA-256)
    whatever order the client lists, and still serves a client that offers
    only one of the other two."""
    good = origins["good"]
    req = b"GET /suite HTTP/1.1\r\nHost: good.test:%d\r\nConnection: close\r\n\r\n" % good.port
    p = s_client(agent.port, "good.test", good.port, agent.ca_path, request=req, until=good.marker,
                 extra=("-tls1_3", "-ciphersuites", offered))
    assert "Cipher is %s" % chosen in p.stdout, "%s\n%s" % (p.stdout[-2000:], p.stderr[-1000:])
    assert "HTTP/1.1 200" in p.stdout and good.marker in p.stdout

def test_python_ssl_client_trusting_only_agent_ca_sees_names(agent, origins):
    good = origins["good"]
    tls = tls_via_proxy(agent.port, "good.test", good.port, cafile=agent.ca_path)
    try:
        # the ssl module verified chain + host name against the agent CA alone
        leaf = peer_cert(tls)
        issued_by_agent_ca(leaf, agent)
        assert set(cert_names(leaf)[1]) >= {"good.test", "www.good.test"}
        assert tls.selected_alpn_protocol() in (None, "http/1.1")
        tls.sendall(_request_bytes("GET", "/py", None, None, "good.test:%d" % good.port))
        r = HTTPReader(tls).response()
        assert r.status == 200 and good.marker in r.text
    finally:
        tls.close()


def test_python_ssl_client_rejects_leaf_when_not_trusting_agent_ca(agent_factory, origins, pki):
    """Sanity of the check above: trusting only the origin's real CA, the
    minted leaf must NOT verify (we really are talking to the agent).
    Its own agent: the rejection teaches automatic avoidance to tunnel this
    client to this host, which must not leak into the shared agent."""
    good = origins["good"]
    own = agent_factory().start()
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_via_proxy(own.port, "good.test", good.port, cafile=pki.ca_cert_path).close()


def test_decoded_connection_keeps_alive_and_reuses_one_upstream_connection(agent, origins):
    good = origins["good"]
    tls = tls_via_proxy(agent.port, "good.test", good.port, cafile=agent.ca_path)
    rd = HTTPReader(tls)
    try:
        for i in range(3):
            tls.sendall(_request_bytes("GET", "/ka/%d" % i, None, None, "good.test:%d" % good.port))
            r = rd.response()
            assert r.status == 200 and ("/ka/%d" % i) in r.text
    finally:
        tls.close()
    reqs = good.requests_for("/ka/")
    assert [r.path for r in reqs] == ["/ka/0", "/ka/1", "/ka/2"]
    conns = {r.conn_id for r in reqs}
    assert len(conns) == 1, "3 requests on one client connection used %d upstream connections" % len(conns)


def test_leaf_is_cached_on_disk_and_a_restart_reuses_it(agent_factory, origins):
    agent = agent_factory().start()
    good = origins["good"]
    _, leaf1 = https_get(agent.port, "good.test", good.port, "/r1", cafile=agent.ca_path)
    agent.restart()
    r, leaf2 = https_get(agent.port, "good.test", good.port, "/r2", cafile=agent.ca_path)
    assert r.status == 200 and good.marker in r.text
    assert leaf2.serial_number == leaf1.serial_number, (
        "serial before restart %x, after %x: the minted leaf was not reused" %
        (leaf1.serial_number, leaf2.serial_number))
    assert leaf2.fingerprint(leaf2.signature_hash_algorithm) == \
        leaf1.fingerprint(leaf1.signature_hash_algorithm)


def test_same_host_twice_gets_the_same_leaf_without_restart(agent, origins):
    good = origins["good"]
    _, a = https_get(agent.port, "good.test", good.port, "/c1", cafile=agent.ca_path)
    _, b = https_get(agent.port, "good.test", good.port, "/c2", cafile=agent.ca_path)
    assert a.serial_number == b.serial_number


def test_head_and_expect_100_over_decoded_connection(agent, origins):
    good = origins["good"]
    tls = tls_via_proxy(agent.port, "good.test", good.port, cafile=agent.ca_path)
    try:
        rd = HTTPReader(tls)
        host = "good.test:%d" % good.port
        tls.sendall(_request_bytes("HEAD", "/bytes/777", None, None, host))
        r = rd.response("HEAD")
        assert r.status == 200 and r.header("content-length") == "777"
        body = b"z" * 40000
        tls.sendall(("POST /echo HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n"
                     % (host, len(body))).encode())
        tls.settimeout(3)
        interim = rd.head()
        assert interim[1] == 100, interim
        tls.settimeout(10)
        tls.sendall(body)
        r = rd.response()
        assert r.status == 200 and b'"bytes": 40000' in r.body
    finally:
        tls.close()


def burst_of_first_connections(a, origin, n):
    """n tunnels to a host the agent has never seen, opened first; then all
    TLS handshakes released together. Returns the leaf serials seen."""
    import threading
    from helpers.client import connect_tunnel, tls_context
    socks = []
    for _ in range(n):
        s, r = connect_tunnel(a.port, origin.name, origin.port)
        assert r.status == 200
        socks.append(s)
    gate = threading.Barrier(n)
    serials, errors = [], []

    def one(s):
        try:
            gate.wait(10)
            tls = tls_context(a.ca_path).wrap_socket(s, server_hostname=origin.name)
            serials.append(peer_cert(tls).serial_number)
            tls.close()
        except Exception as e:  # reported below
            errors.append(repr(e))
    ts = [threading.Thread(target=one, args=(s,)) for s in socks]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert not errors, errors
    return serials


def test_concurrent_first_connections_to_a_host_get_one_leaf(agent_factory, make_origin, pki):
    """Several rounds, each a burst of 20 first connections to a new host:
    every client of a host sees the same leaf (no mint race)."""
    a = agent_factory().start()
    split = []
    for i in range(6):
        o = make_origin("race%d.test" % i, pki.leaf("race%d.test" % i))
        serials = burst_of_first_connections(a, o, 20)
        if len(set(serials)) > 1:
            split.append((o.name, len(set(serials))))
    assert not split, "hosts whose concurrent first clients saw different leaves: %r" % split


def test_leaf_cache_in_memory_and_on_disk_agree_after_a_burst(agent_factory, make_origin, pki):
    """After a burst of first connections, the leaf served from memory and
    the one a restart serves from disk are the same certificate."""
    a = agent_factory().start()
    o = make_origin("race7.test", pki.leaf("race7.test"))
    burst_of_first_connections(a, o, 20)
    time.sleep(0.5)  # let the disk cache writer finish
    _, mem = https_get(a.port, o.name, o.port, "/mem", cafile=a.ca_path)
    a.restart()
    _, disk = https_get(a.port, o.name, o.port, "/disk", cafile=a.ca_path)
    assert mem.serial_number == disk.serial_number, (
        "served %x before the restart, %x after: memory and disk caches disagree"
        % (mem.serial_number, disk.serial_number))


def test_ip_literal_origin_gets_leaf_with_ip_san(agent, make_origin, pki):
    from cryptography import x509 as _x509
    import ipaddress
    o = make_origin("127.0.0.1", pki.leaf("127.0.0.1", sans=["127.0.0.1"], label="ip-127.0.0.1"))
    status, body, certs, p = curl_fetch(agent.port, "https://127.0.0.1:%d/ip" % o.port, cafile=agent.ca_path)
    assert p.returncode == 0, p.stderr
    assert status == 200 and o.marker.encode() in body
    ips = certs[0].extensions.get_extension_for_class(_x509.SubjectAlternativeName).value \
        .get_values_for_type(_x509.IPAddress)
    assert ipaddress.ip_address("127.0.0.1") in ips


def test_wildcard_origin_certificate_is_mirrored(agent, make_origin, pki):
    o = make_origin("a.wild.test", pki.leaf("*.wild.test", sans=["*.wild.test"], label="wild"))
    status, body, certs, p = curl_fetch(agent.port, o.url("/w"), cafile=agent.ca_path)
    assert p.returncode == 0, p.stderr
    assert status == 200 and o.marker.encode() in body
    assert "*.wild.test" in cert_names(certs[0])[1]


def test_client_abort_mid_download_leaves_agent_healthy(agent, origins):
    good = origins["good"]
    for i in range(3):
        tls = tls_via_proxy(agent.port, "good.test", good.port, cafile=agent.ca_path)
        tls.sendall(_request_bytes("GET", "/bytes/%d" % (50 << 20), None, None, "good.test"))
        tls.recv(65536)
        tls.close()  # abort with ~50 MB unread
    r, _ = https_get(agent.port, "good.test", good.port, "/after-abort", cafile=agent.ca_path)
    assert r.status == 200 and good.marker in r.text


@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_client_tls_version_is_accepted(agent, origins, version):
    from helpers.client import connect_tunnel, tls_context
    good = origins["good"]
    s, r = connect_tunnel(agent.port, "good.test", good.port)
    assert r.status == 200
    ctx = tls_context(agent.ca_path)
    v = getattr(ssl.TLSVersion, version)
    ctx.minimum_version = ctx.maximum_version = v
    tls = ctx.wrap_socket(s, server_hostname="good.test")
    try:
        assert tls.version() == version.replace("_", "."), tls.version()
        tls.sendall(_request_bytes("GET", "/v", None, None, "good.test"))
        assert HTTPReader(tls).response().status == 200
    finally:
        tls.close()


def test_client_without_sni_gets_leaf_for_the_connect_host(agent, origins):
    """No SNI (an old client, or an IP-minded one): the CONNECT target names
    the origin, and the leaf still carries its names."""
    from helpers.client import connect_tunnel, tls_context
    good = origins["good"]
    s, r = connect_tunnel(agent.port, "good.test", good.port)
    ctx = tls_context(agent.ca_path)
    ctx.check_hostname = False  # needed to omit SNI; names checked below
    tls = ctx.wrap_socket(s, server_hostname=None)
    try:
        leaf = peer_cert(tls)
        verify_issued_by(leaf, load_cert(agent.ca_path))
        assert "good.test" in cert_names(leaf)[1]
        tls.sendall(_request_bytes("GET", "/nosni", None, None, "good.test"))
        r = HTTPReader(tls).response()
        assert r.status == 200 and good.marker in r.text
    finally:
        tls.close()


def test_client_offering_only_h2_alpn_is_not_stranded(agent, origins):
    """A client that offers only h2: the agent must not select h2 (it speaks
    HTTP/1.1 to the client); either no ALPN (the client falls back to
    HTTP/1.1) or a clean TLS alert, never a silent hang."""
    from helpers.client import connect_tunnel, tls_context
    good = origins["good"]
    s, r = connect_tunnel(agent.port, "good.test", good.port)
    ctx = tls_context(agent.ca_path, alpn=("h2",))
    try:
        tls = ctx.wrap_socket(s, server_hostname="good.test")
    except ssl.SSLError as e:
        assert "no_application_protocol" in str(e).lower() or "alert" in str(e).lower(), e
        return
    try:
        assert tls.selected_alpn_protocol() in (None, "http/1.1"), tls.selected_alpn_protocol()
    finally:
        tls.close()


def test_origin_reset_mid_body_in_decode_truncates_the_client_response(agent, origins):
    good = origins["good"]
    tls = tls_via_proxy(agent.port, "good.test", good.port, cafile=agent.ca_path)
    try:
        tls.sendall(_request_bytes("GET", "/reset/100000", None, None, "good.test"))
        try:
            r = HTTPReader(tls).response()
        except (ConnectionClosed, ConnectionError, ssl.SSLError, OSError):
            return  # closed before the announced length: correct
        pytest.fail("complete response from an origin that reset mid-body: %r" % r)
    finally:
        tls.close()


@pytest.mark.skipif(not shutil.which("ss"), reason="needs ss (iproute2)")
def test_decoded_client_socket_on_the_loopback_listener_does_not_pace(agent, origins):
    """The agent listens on loopback: its client sockets inherit reno from
    the listener (no per-packet pacing timer on a leg with no bottleneck),
    whatever the system default; the connection works as usual."""
    from helpers.client import connect_tunnel, tls_context
    good = origins["good"]
    s, r = connect_tunnel(agent.port, "good.test", good.port)
    assert r.status == 200
    tls = tls_context(agent.ca_path).wrap_socket(s, server_hostname="good.test")
    try:
        tls.sendall(_request_bytes("GET", "/cc", None, None, "good.test"))
        assert HTTPReader(tls).response().status == 200
        assert tcp_cc(agent.port, tls.getsockname()[1]) == "reno"
    finally:
        tls.close()
