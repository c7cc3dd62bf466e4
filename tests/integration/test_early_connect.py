"""The origin connection of a decoded CONNECT opened at CONNECT time
(`shoji run --early-connect PORTS`, commit 6f49e91, src/proxy/early.c).

What a user or admin would notice:
  * a first visit to an https site is served over the origin connection the
    agent opened when it answered "200 Connection established", before the
    browser's ClientHello: the origin sees that connection before the client
    has sent a TLS byte, and no second one; the leaf the client gets mirrors
    the origin certificate's names (shoji_upstream_early_total counts it);
  * a ClientHello naming another host than the CONNECT, or one the policy
    tunnels (a decode exclusion matching the SNI only), gets what it got
    before: a fresh origin connection for that name, or the origin's own
    certificate through a tunnel; the early connection is closed unused
    (shoji_upstream_early_dropped_total) and never carries a request;
  * a client that says nothing after CONNECT still gets a raw tunnel after
    the peek timeout (3 s), also when the early TLS handshake with the origin
    is still hanging then (it is given the handshake timeout, then closed);
  * an origin refusing connections still gives the agent's 502 page;
  * a pooled origin connection for the same host means no early one;
  * `--early-connect none` opens nothing before the ClientHello;
  * a bad --early-connect value is refused at start (exit status 2).

Origins listen on random ports, so each agent here lists its origin's port
in --early-connect (the default is 443). One worker, so the pool is
deterministic; one agent per test, so neither the pool nor the certificate
memo of one test changes another.
"""
import json
import socket
import ssl
import threading
import time

import pytest

from helpers.agent import free_port, run_cli
from helpers.client import (HTTPReader, _request_bytes, connect_tunnel, https_get, peer_cert,
                            tls_context)
from helpers.pki import cert_names, load_cert, verify_issued_by
from helpers.wait import wait_for

EARLY = "shoji_upstream_early_total"
DROPPED = "shoji_upstream_early_dropped_total"
PEEK_TIMEOUT_S = 3.0


# --- helpers ------------------------------------------------------------------

def start_agent(agent_factory, ports, extra=(), **kw):
    ports = ports if isinstance(ports, str) else ",".join(str(p) for p in ports)
    return agent_factory(workers=1, extra_args=["--early-connect", ports] + list(extra), **kw).start()


def metrics(agent):
    """{name: value} of the agent's /metrics (asked directly, not proxied)."""
    s = socket.create_connection(("127.0.0.1", agent.port), timeout=10)
    try:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % agent.port)
        r = HTTPReader(s).response()
    finally:
        s.close()
    assert r.status == 200, r
    out = {}
    for line in r.text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def delta(before, after, name):
    assert name in after, "%s missing from /metrics: %s" % (name, sorted(after))
    return after[name] - before.get(name, 0)


def connect(agent, host, port):
    s, r = connect_tunnel(agent.port, host, port)
    if r.status != 200:
        s.close()
        raise AssertionError("CONNECT %s:%d -> %r" % (host, port, r))
    return s


def wait_early(origin, n=1, timeout=5):
    wait_for(lambda: origin.connections >= n, timeout,
             "the origin connection opened at CONNECT (origin saw %d)" % origin.connections)


def get(tls, host, port, path):
    tls.sendall(_request_bytes("GET", path, None, None, "%s:%d" % (host, port)))
    return HTTPReader(tls).response()


def ok(r, origin, path):
    assert r.status == 200, r
    assert origin.marker in r.text, "not the origin's content: %r" % r
    assert ("path %s<" % path) in r.text, r


def der(cert):
    from cryptography.hazmat.primitives import serialization
    return cert.public_bytes(serialization.Encoding.DER)


def conn_ids(origin, path):
    return [r.conn_id for r in origin.requests if r.path == path]


@pytest.fixture
def good(make_origin, certs):
    return make_origin("good.test", certs["good"])


class SilentServer:
    """Accepts TCP connections and never sends a byte: a TLS handshake with
    it hangs. Keeps what each connection received (by accept order)."""

    def __init__(self):
        self.received = []   # one bytearray per accepted connection
        self.closed = []     # per connection: the peer closed it
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socks = []
        self._l = socket.socket()
        self._l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._l.bind(("127.0.0.1", 0))
        self._l.listen(16)
        self._l.settimeout(0.1)
        self.port = self._l.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def connections(self):
        with self._lock:
            return len(self.received)

    def _accept(self):
        while not self._stop.is_set():
            try:
                c, _ = self._l.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                i = len(self.received)
                self.received.append(bytearray())
                self.closed.append(False)
                self._socks.append(c)
            threading.Thread(target=self._read, args=(c, i), daemon=True).start()

    def _read(self, c, i):
        c.settimeout(0.2)
        while not self._stop.is_set():
            try:
                d = c.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                d = b""
            with self._lock:
                if not d:
                    self.closed[i] = True
                    return
                self.received[i] += d

    def got(self, i, needle):
        with self._lock:
            return i < len(self.received) and needle in self.received[i]

    def is_closed(self, i):
        with self._lock:
            return i < len(self.closed) and self.closed[i]

    def stop(self):
        self._stop.set()
        self._l.close()
        with self._lock:
            for c in self._socks:
                try:
                    c.close()
                except OSError:
                    pass


# --- 1. adopted ------------------------------------------------------------------

def test_first_contact_is_served_over_the_connection_opened_at_connect(agent_factory, good):
    agent = start_agent(agent_factory, [good.port])
    before = metrics(agent)
    s = connect(agent, "good.test", good.port)
    try:
        # no TLS byte sent yet: the origin connection can only be the early one
        wait_early(good)
        tls = tls_context(agent.ca_path).wrap_socket(s, server_hostname="good.test")
        r = get(tls, "good.test", good.port, "/early/1")
        leaf = peer_cert(tls)
        tls.close()
    finally:
        s.close()
    ok(r, good, "/early/1")
    assert good.connections == 1, (
        "%d origin connections: the one opened at CONNECT was not used" % good.connections)
    after = metrics(agent)
    assert delta(before, after, EARLY) == 1, after
    assert delta(before, after, DROPPED) == 0, after
    verify_issued_by(leaf, load_cert(agent.ca_path))
    _, sans = cert_names(leaf)
    assert {"good.test", "www.good.test"} <= set(sans), (
        "the leaf does not mirror the origin certificate's names: %r" % (cert_names(leaf),))


# --- 2. another name in the ClientHello ---------------------------------------------

def test_clienthello_naming_another_host_gets_its_own_origin_connection(agent_factory, good):
    agent = start_agent(agent_factory, [good.port])
    before = metrics(agent)
    s = connect(agent, "good.test", good.port)
    try:
        wait_early(good)
        tls = tls_context(agent.ca_path).wrap_socket(s, server_hostname="www.good.test")
        r = get(tls, "www.good.test", good.port, "/early/www")
        leaf = peer_cert(tls)
        tls.close()
    finally:
        s.close()
    ok(r, good, "/early/www")
    verify_issued_by(leaf, load_cert(agent.ca_path))
    assert good.connections == 2, good.connections
    assert conn_ids(good, "/early/www") == [2], (
        "the request went over origin connection(s) %r; the early one (1) must carry none"
        % conn_ids(good, "/early/www"))
    assert [r.conn_id for r in good.requests] == [2], good.requests
    after = metrics(agent)
    assert delta(before, after, EARLY) == 1, after
    assert delta(before, after, DROPPED) == 1, after


# --- 3. an exclusion matching the SNI only ----------------------------------------

def test_exclusion_matching_the_sni_tunnels_and_drops_the_early_connection(agent_factory, good,
                                                                          pki, tmp_path):
    pol = tmp_path / "policy.json"
    pol.write_text(json.dumps({
        "name": "early-connect exclusion", "default_action": "allow",
        "decode": {"enabled": True, "exclude_hosts": ["www.good.test"]},
        "auto_avoid": {"enabled": False}}, indent=2) + "\n")
    agent = start_agent(agent_factory, [good.port], policy=str(pol))
    before = metrics(agent)
    s = connect(agent, "good.test", good.port)   # not excluded: decoded at CONNECT
    try:
        wait_early(good)
        # trusting only the test root CA: only the origin's own certificate passes
        tls = tls_context(pki.ca_cert_path).wrap_socket(s, server_hostname="www.good.test")
        leaf = peer_cert(tls)
        r = get(tls, "www.good.test", good.port, "/early/excluded")
        tls.close()
    finally:
        s.close()
    assert der(leaf) == der(good.cert.cert), "decoded although the SNI is excluded"
    ok(r, good, "/early/excluded")
    assert good.connections == 2, good.connections
    assert conn_ids(good, "/early/excluded") == [2], good.requests
    after = metrics(agent)
    assert delta(before, after, EARLY) == 1, after
    assert delta(before, after, DROPPED) == 1, after


# --- 4. a silent client ----------------------------------------------------------------

def test_silent_client_gets_a_raw_tunnel_after_the_peek_timeout(agent_factory, good, pki):
    agent = start_agent(agent_factory, [good.port])
    before = metrics(agent)
    s = connect(agent, "good.test", good.port)
    try:
        wait_early(good)
        time.sleep(PEEK_TIMEOUT_S + 1)   # the client waits for the server to speak
        wait_for(lambda: delta(before, metrics(agent), DROPPED) == 1, 5,
                 "the early connection to be dropped at the peek timeout")
        tls = tls_context(pki.ca_cert_path).wrap_socket(s, server_hostname="good.test")
        leaf = peer_cert(tls)
        r = get(tls, "good.test", good.port, "/early/silent")
        tls.close()
    finally:
        s.close()
    assert der(leaf) == der(good.cert.cert), "not a raw tunnel: the client got a minted leaf"
    ok(r, good, "/early/silent")
    assert good.connections == 2, good.connections
    assert conn_ids(good, "/early/silent") == [2], good.requests
    after = metrics(agent)
    assert delta(before, after, EARLY) == 1, after
    assert delta(before, after, DROPPED) == 1, after


# --- 5. the early handshake still hanging at the peek timeout ------------------------

def test_early_handshake_hanging_at_the_peek_timeout_is_dropped_then_tunnelled(agent_factory):
    srv = SilentServer()
    try:
        agent = start_agent(agent_factory, [srv.port], extra=["--handshake-timeout", "1000"])
        before = metrics(agent)
        s = connect(agent, "echo.test", srv.port)
        try:
            wait_for(lambda: srv.connections >= 1, 5, "the origin connection opened at CONNECT")
            # the agent's ClientHello reached the server, which never answers
            wait_for(lambda: srv.got(0, b"\x16\x03"), 5, "the agent's TLS ClientHello to the origin")
            # peek timeout (3 s) + the handshake timeout (1 s), and a margin
            time.sleep(PEEK_TIMEOUT_S + 1 + 1)
            assert agent.running(), agent.stderr()
            wait_for(lambda: srv.is_closed(0), 5, "the hanging early connection to be closed")
            marker = b"RAW-BYTES-AFTER-SILENCE-%d" % srv.port
            s.sendall(marker)
            wait_for(lambda: srv.got(1, marker), 5,
                     "the client's bytes on a new (raw tunnel) origin connection; server saw %d "
                     "connection(s)" % srv.connections)
            assert not srv.got(0, marker), "the client's bytes went over the early connection"
            assert srv.connections == 2, srv.connections
        finally:
            s.close()
        after = metrics(agent)
        assert delta(before, after, EARLY) == 1, after
        assert delta(before, after, DROPPED) == 1, after
        assert agent.running(), agent.stderr()
    finally:
        srv.stop()


# --- 6. an origin refusing connections ------------------------------------------------

def test_refused_origin_still_gives_the_502_page(agent_factory):
    port = free_port()   # nothing listens there: connect is refused
    agent = start_agent(agent_factory, [port])
    before = metrics(agent)
    s = connect(agent, "closed.test", port)
    try:
        tls = tls_context(agent.ca_path).wrap_socket(s, server_hostname="closed.test")
        verify_issued_by(peer_cert(tls), load_cert(agent.ca_path))
        page = get(tls, "closed.test", port, "/")
        tls.close()
    finally:
        s.close()
    assert page.status == 502, page
    assert "html" in (page.header("content-type") or "").lower(), page
    assert "closed.test" in page.text, "page does not name closed.test: %r" % page.text[:500]
    assert delta(before, metrics(agent), EARLY) == 1
    assert agent.running(), agent.stderr()


# --- 7. a pooled connection: no early one ---------------------------------------------

def test_pooled_origin_connection_means_no_early_connection(agent_factory, good):
    agent = start_agent(agent_factory, [good.port])
    m0 = metrics(agent)
    r, _ = https_get(agent.port, "good.test", good.port, "/pool/1", cafile=agent.ca_path)
    ok(r, good, "/pool/1")
    m1 = metrics(agent)
    assert delta(m0, m1, EARLY) == 1, m1
    r, _ = https_get(agent.port, "good.test", good.port, "/pool/2", cafile=agent.ca_path)
    ok(r, good, "/pool/2")
    m2 = metrics(agent)
    assert delta(m1, m2, EARLY) == 0, "an early connection opened although a pooled one existed"
    assert delta(m1, m2, "shoji_upstream_reused_total") == 1, m2
    assert good.connections == 1, good.connections


# --- 8. turned off ------------------------------------------------------------------------

def test_early_connect_none_opens_nothing_before_the_clienthello(agent_factory, good):
    agent = start_agent(agent_factory, "none")
    before = metrics(agent)
    s = connect(agent, "good.test", good.port)
    try:
        time.sleep(1)
        assert good.connections == 0, "an origin connection opened before the ClientHello"
        tls = tls_context(agent.ca_path).wrap_socket(s, server_hostname="good.test")
        r = get(tls, "good.test", good.port, "/none")
        tls.close()
    finally:
        s.close()
    ok(r, good, "/none")
    assert good.connections == 1, good.connections
    assert delta(before, metrics(agent), EARLY) == 0


# --- 9. bad values refused ----------------------------------------------------------------

@pytest.mark.parametrize("value", ["0", "abc", "443,", "65536",
                                   ",".join(str(p) for p in range(8001, 8010))])
def test_bad_early_connect_value_is_refused(value, tmp_path):
    port = free_port()
    p = run_cli(["run", "--listen", "127.0.0.1:%d" % port, "--state-dir", str(tmp_path / "state"),
                 "--early-connect", value], check=False, timeout=20)
    assert p.returncode == 2, "--early-connect %r -> exit %d\nstderr:\n%s" % (value, p.returncode, p.stderr)
    assert "--early-connect" in p.stderr, p.stderr
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
