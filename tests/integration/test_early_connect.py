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
    is still hanging then (it is closed at once);
  * the same while the early TLS handshake still hangs: another name gets
    its own connection at once, without waiting for the handshake timeout
    (the hanging one is closed); the same name
    gets the 504 page exactly as with `--early-connect none`; a client that
    hangs up, or SIGTERM, closes it;
  * a block or a remembered certificate exclusion: the block page as before;
    a host remembered as tunnelled gets no early connection;
  * bytes after CONNECT that are not a readable ClientHello (plain bytes,
    TLS the agent cannot parse) are tunnelled untouched, the early
    connection closed first (this left a connection behind, and SIGTERM
    waited 10 s, before 7393533);
  * an early connection the origin closed before the ClientHello: the GET is
    served over a new one (it got the 502 page before 42bea35);
  * an origin refusing connections still gives the agent's 502 page;
  * a pooled origin connection for the same host means no early one, and
    so does a host decoded in the last hour (its connection opens at the
    ClientHello, as before);
  * `--early-connect none` opens nothing before the ClientHello;
  * a bad --early-connect value is refused at start (exit status 2).

Origins listen on random ports, so each agent here lists its origin's port
in --early-connect (the default is 443). One worker, so the pool is
deterministic; one agent per test, so neither the pool nor the certificate
memo of one test changes another.
"""
import contextlib
import json
import socket
import ssl
import threading
import time

import pytest

from helpers.agent import agent_metrics, free_port, metrics_delta, run_cli
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


metrics = agent_metrics
delta = metrics_delta


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


def tls_get(s, cafile, sni, port, path):
    """TLS over the CONNECTed socket `s` trusting only `cafile`, one GET:
    (response, leaf certificate)."""
    tls = tls_context(cafile).wrap_socket(s, server_hostname=sni)
    try:
        return get(tls, sni, port, path), peer_cert(tls)
    finally:
        tls.close()


def early_get(agent, origin, host, sni, path, cafile=None, n=1):
    """CONNECT `host` to `origin`'s port, wait until the origin saw `n`
    connections (the early one: no TLS byte has been sent yet), then TLS for
    `sni` and one GET: (response, leaf certificate)."""
    s = connect(agent, host, origin.port)
    try:
        wait_early(origin, n)
        return tls_get(s, cafile or agent.ca_path, sni, origin.port, path)
    finally:
        s.close()


def served_on_a_new_connection(agent, before, origin, r, path):
    """`r` is the origin's answer to `path`, carried by a second origin
    connection: the early one was opened, carried nothing and was dropped."""
    ok(r, origin, path)
    assert origin.connections == 2, origin.connections
    assert conn_ids(origin, path) == [2], (
        "the request went over origin connection(s) %r; the early one (1) must carry none"
        % conn_ids(origin, path))
    after = metrics(agent)
    assert delta(before, after, EARLY) == 1, after
    assert delta(before, after, DROPPED) == 1, after


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
    it hangs. Keeps what each connection received (by accept order). With
    relay_to (a port on 127.0.0.1), only the first connection hangs: the
    later ones are relayed byte for byte to that port (a real origin)."""

    def __init__(self, relay_to=None, first_tls=None):
        self.relay_to = relay_to
        self.first_tls = first_tls   # CertPair: the first connection completes a
                                     # TLS handshake with it, then is closed
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
            if i > 0 and self.relay_to:
                threading.Thread(target=self._relay, args=(c,), daemon=True).start()
            elif i == 0 and self.first_tls:
                threading.Thread(target=self._tls_then_close, args=(c, i), daemon=True).start()
            else:
                threading.Thread(target=self._read, args=(c, i), daemon=True).start()

    def _tls_then_close(self, c, i):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.first_tls.cert_path, self.first_tls.key_path)
        try:
            c.settimeout(5)
            t = ctx.wrap_socket(c, server_side=True)
            t.close()
        except (OSError, ssl.SSLError):
            c.close()
        with self._lock:
            self.closed[i] = True

    def _relay(self, c):
        try:
            o = socket.create_connection(("127.0.0.1", self.relay_to), timeout=5)
        except OSError:
            c.close()
            return
        with self._lock:
            self._socks.append(o)

        def pump(a, b):
            a.settimeout(30)
            try:
                while True:
                    d = a.recv(65536)
                    if not d:
                        break
                    b.sendall(d)
                b.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        threading.Thread(target=pump, args=(o, c), daemon=True).start()
        pump(c, o)

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
                    break
                self.received[i] += d
        c.close()   # the peer closed its side: close ours (a tunnel ends)

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
    # no TLS byte sent yet: the origin connection can only be the early one
    r, leaf = early_get(agent, good, "good.test", "good.test", "/early/1")
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
    r, leaf = early_get(agent, good, "good.test", "www.good.test", "/early/www")
    verify_issued_by(leaf, load_cert(agent.ca_path))
    assert [q.conn_id for q in good.requests] == [2], good.requests
    served_on_a_new_connection(agent, before, good, r, "/early/www")


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
    # good.test is not excluded: decoded at CONNECT; trusting only the test
    # root CA: only the origin's own certificate passes
    r, leaf = early_get(agent, good, "good.test", "www.good.test", "/early/excluded",
                        cafile=pki.ca_cert_path)
    assert der(leaf) == der(good.cert.cert), "decoded although the SNI is excluded"
    served_on_a_new_connection(agent, before, good, r, "/early/excluded")


# --- 3b. a block for the SNI only, and the certificate memo ----------------------------

def write_policy(tmp_path, **rules):
    pol = tmp_path / "policy.json"
    doc = {"name": "early-connect", "default_action": "allow", "auto_avoid": {"enabled": False}}
    doc.update(rules)
    pol.write_text(json.dumps(doc, indent=2) + "\n")
    return str(pol)


@pytest.mark.parametrize("early", [True, False], ids=["early", "none"])
def test_block_matching_the_sni_gives_the_block_page(agent_factory, good, tmp_path, early):
    """CONNECT good.test is allowed (decoded: the early connection opens);
    the ClientHello names www.good.test, which is blocked: the user gets
    the block page exactly as without the feature, the origin no request."""
    agent = start_agent(agent_factory, [good.port] if early else "none",
                        policy=write_policy(tmp_path, block=["www.good.test"]))
    before = metrics(agent)
    s = connect(agent, "good.test", good.port)
    try:
        if early:
            wait_early(good)
        page, _ = tls_get(s, agent.ca_path, "www.good.test", good.port, "/early/blocked")
    finally:
        s.close()
    assert page.status == 403, page
    assert good.marker not in page.text, "the origin's content got through a block"
    assert not good.requests, good.requests
    after = metrics(agent)
    assert delta(before, after, EARLY) == (1 if early else 0), after
    assert delta(before, after, DROPPED) == (1 if early else 0), after


def test_host_remembered_as_tunnelled_gets_no_early_connection(agent_factory, good, pki, tmp_path):
    """An exclusion matching only a name in the origin's certificate
    (www.good.test, a SAN of good.test's certificate): the first visit
    tunnels after seeing the certificate, which the agent remembers; the
    next CONNECT to good.test opens nothing early."""
    agent = start_agent(agent_factory, [good.port],
                        policy=write_policy(tmp_path, decode={"enabled": True,
                                                              "exclude_hosts": ["www.good.test"]}))

    def visit(path):
        s = connect(agent, "good.test", good.port)
        try:
            r, leaf = tls_get(s, pki.ca_cert_path, "good.test", good.port, path)
        finally:
            s.close()
        assert der(leaf) == der(good.cert.cert), "decoded although the certificate is excluded"
        ok(r, good, path)

    m0 = metrics(agent)
    visit("/memo/1")
    m1 = metrics(agent)
    assert delta(m0, m1, EARLY) == 1, m1
    n = good.connections
    s = connect(agent, "good.test", good.port)
    try:
        time.sleep(1)
        assert good.connections == n, "an origin connection opened at CONNECT for a remembered tunnel"
    finally:
        s.close()
    visit("/memo/2")
    assert delta(m1, metrics(agent), EARLY) == 0


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
        r, leaf = tls_get(s, pki.ca_cert_path, "good.test", good.port, "/early/silent")
    finally:
        s.close()
    assert der(leaf) == der(good.cert.cert), "not a raw tunnel: the client got a minted leaf"
    served_on_a_new_connection(agent, before, good, r, "/early/silent")


# --- 4b. bytes that are not a readable ClientHello --------------------------------------

NOT_A_HELLO = {
    "plain": b"PING-EARLY\r\n",
    # a TLS handshake record whose ClientHello cannot be parsed: passed on untouched
    "unreadable-tls": b"\x16\x03\x01\x00\x06\x01\x00\x00\x02\xff\xffPING-EARLY\r\n",
}


@pytest.mark.parametrize("wait", [0, 1], ids=["at-once", "after-1s"])
@pytest.mark.parametrize("kind", sorted(NOT_A_HELLO))
def test_bytes_that_are_not_a_clienthello_are_tunnelled_and_the_early_connection_closed(
        agent_factory, echo_server, kind, wait):
    """A port listed in --early-connect, but the client speaks something
    else after CONNECT (or TLS the agent cannot read): tunnelled untouched,
    as without the feature. The early connection (still in its handshake
    at once; failed after 1 s, as the echo server answers the agent's
    ClientHello with itself) is closed first, and the agent still stops
    cleanly (no connection left behind)."""
    agent = start_agent(agent_factory, [echo_server.port])
    before = metrics(agent)
    s = connect(agent, "echo.test", echo_server.port)
    try:
        wait_for(lambda: echo_server.connections >= 1, 5, "the origin connection opened at CONNECT")
        time.sleep(wait)
        s.sendall(NOT_A_HELLO[kind])
        got = b""
        deadline = time.monotonic() + 10
        s.settimeout(10)
        while b"PING-EARLY" not in got and time.monotonic() < deadline:
            d = s.recv(65536)
            if not d:
                break
            got += d
    finally:
        s.close()
    assert ("SHOJI-ECHO %s" % echo_server.marker).encode() in got, got
    assert NOT_A_HELLO[kind] in got, "the bytes were not tunnelled to the origin: %r" % got
    assert echo_server.connections == 2, echo_server.connections
    after = metrics(agent)
    assert delta(before, after, EARLY) == 1, after
    assert delta(before, after, DROPPED) == 1, after
    t0 = time.monotonic()
    assert agent.stop(timeout=15, check=True) == 0
    assert time.monotonic() - t0 < 5, "SIGTERM took %.1f s: a connection was left behind" % (
        time.monotonic() - t0)


@contextlib.contextmanager
def hanging_early(agent_factory, host="echo.test", handshake_ms=1000, relay_to=None, early=True):
    """An origin that never answers the agent's ClientHello (SilentServer),
    an agent listing its port (or `none`), and a client CONNECTed to `host`
    whose early connection's ClientHello has reached the origin: yields
    (server, agent, /metrics before, client socket)."""
    srv = SilentServer(relay_to=relay_to)
    try:
        agent = start_agent(agent_factory, [srv.port] if early else "none",
                            extra=["--handshake-timeout", str(handshake_ms)])
        before = metrics(agent)
        s = connect(agent, host, srv.port)
        try:
            if early:
                wait_for(lambda: srv.got(0, b"\x16\x03"), 5, "the agent's TLS ClientHello to the origin")
            yield srv, agent, before, s
        finally:
            s.close()
    finally:
        srv.stop()


def test_plain_bytes_while_the_early_handshake_hangs_are_tunnelled_after_it_is_closed(agent_factory):
    """The same with the early handshake still pending when the bytes come
    (an origin that never answers it): it is closed at once, the bytes go
    to the origin over a new connection (not left behind: SIGTERM still
    ends the agent at once)."""
    with hanging_early(agent_factory) as (srv, agent, before, s):
        s.sendall(NOT_A_HELLO["plain"])
        wait_for(lambda: srv.got(1, NOT_A_HELLO["plain"]), 5,
                 "the client's bytes on a new origin connection (server saw %d)" % srv.connections)
        wait_for(lambda: srv.is_closed(0), 5, "the early connection to be closed")
        assert not srv.got(0, NOT_A_HELLO["plain"]), "the bytes went over the early connection"
        s.close()
        after = metrics(agent)
        assert delta(before, after, EARLY) == 1, after
        assert delta(before, after, DROPPED) == 1, after
        t0 = time.monotonic()
        assert agent.stop(timeout=15, check=True) == 0
        assert time.monotonic() - t0 < 5, "SIGTERM took %.1f s: a connection was left behind" % (
            time.monotonic() - t0)


# --- 5. the early handshake still hanging at the peek timeout ------------------------

def test_early_handshake_hanging_at_the_peek_timeout_is_dropped_then_tunnelled(agent_factory):
    with hanging_early(agent_factory) as (srv, agent, before, s):
        # the agent's ClientHello reached the server, which never answers;
        # the peek timeout (3 s) passes, and a margin
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
        s.close()
        after = metrics(agent)
        assert delta(before, after, EARLY) == 1, after
        assert delta(before, after, DROPPED) == 1, after
        assert agent.running(), agent.stderr()


# --- 5b. other endings while the early handshake hangs --------------------------------

def test_clienthello_for_another_host_does_not_wait_for_a_hanging_early_handshake(agent_factory,
                                                                                  good):
    """The verdict differs (another name) while the early handshake still
    hangs: it is closed at once, without waiting for the handshake timeout
    (4 s here), and the ClientHello is served over a new origin connection
    (here relayed to the real origin)."""
    with hanging_early(agent_factory, "good.test", 4000, relay_to=good.port) as (
            srv, agent, before, s):
        t0 = time.monotonic()
        r, _ = tls_get(s, agent.ca_path, "www.good.test", srv.port, "/early/hang-www")
        took = time.monotonic() - t0
        s.close()
        ok(r, good, "/early/hang-www")
        assert took < 3, "took %.1f s: it waited for the hanging handshake (timeout 4 s)" % took
        assert srv.connections == 2 and good.connections == 1, (srv.connections, good.connections)
        wait_for(lambda: srv.is_closed(0), 5, "the hanging early connection to be closed")
        after = metrics(agent)
        assert delta(before, after, EARLY) == 1, after
        assert delta(before, after, DROPPED) == 1, after


@pytest.mark.parametrize("early", [True, False], ids=["early", "none"])
def test_clienthello_for_the_same_host_with_a_hanging_origin_handshake_gets_504(agent_factory, early):
    """Adopted while it hangs: after the handshake timeout the client gets
    the agent's 504 page, exactly as without the feature ("none")."""
    with hanging_early(agent_factory, early=early) as (srv, agent, _, s):
        t0 = time.monotonic()
        page, _ = tls_get(s, agent.ca_path, "echo.test", srv.port, "/")
        took = time.monotonic() - t0
        s.close()
        assert page.status == 504, page
        assert "html" in (page.header("content-type") or "").lower(), page
        assert "echo.test" in page.text, page.text[:500]
        assert took < 4, "took %.1f s (handshake timeout 1 s)" % took
        assert srv.connections == 1, srv.connections
        wait_for(lambda: srv.is_closed(0), 5, "the timed-out origin connection to be closed")
        assert agent.running(), agent.stderr()


def test_client_hanging_up_closes_the_early_connection(agent_factory):
    with hanging_early(agent_factory) as (srv, agent, before, s):
        s.close()
        wait_for(lambda: srv.is_closed(0), 5, "the early connection to be closed after the client left")
        assert agent.running(), agent.stderr()
        # a browser's unused pre-connection shows as waste in /metrics
        wait_for(lambda: delta(before, metrics(agent), DROPPED) == 1, 5, "the dropped counter")


def test_sigterm_with_an_early_connection_in_flight_exits_cleanly(agent_factory):
    with hanging_early(agent_factory, handshake_ms=15000) as (_, agent, _, _s):
        t0 = time.monotonic()
        rc = agent.stop(timeout=15, check=True)   # exit 0, no sanitizer report
        assert rc == 0 and time.monotonic() - t0 < 15


def test_early_connection_the_origin_closed_is_replaced_by_a_new_one(agent_factory, good, certs):
    """The origin completes the early handshake, then closes the connection
    before the ClientHello comes: the client is served over a new origin
    connection, as without the feature (not the 502 page "The origin closed
    the connection without answering")."""
    srv = SilentServer(relay_to=good.port, first_tls=certs["good"])
    try:
        agent = start_agent(agent_factory, [srv.port])
        before = metrics(agent)
        s = connect(agent, "good.test", srv.port)
        try:
            wait_for(lambda: srv.is_closed(0), 5, "the origin to close the early connection")
            time.sleep(0.3)   # its close reaches the agent
            r, _ = tls_get(s, agent.ca_path, "good.test", srv.port, "/early/closed-by-origin")
        finally:
            s.close()
        assert r.status == 200, r.text
        ok(r, good, "/early/closed-by-origin")
        assert srv.connections == 2 and good.connections == 1, (srv.connections, good.connections)
        after = metrics(agent)
        assert delta(before, after, EARLY) == 1, after
        # seen closed before the ClientHello (dropped), or only when the GET
        # went out on it (sent again on a new connection, as on a pooled one)
        assert delta(before, after, DROPPED) + delta(before, after, "shoji_upstream_retried_total") == 1, after
    finally:
        srv.stop()


# --- 6. an origin refusing connections ------------------------------------------------

def test_refused_origin_still_gives_the_502_page(agent_factory):
    port = free_port()   # nothing listens there: connect is refused
    agent = start_agent(agent_factory, [port])
    before = metrics(agent)
    s = connect(agent, "closed.test", port)
    try:
        page, leaf = tls_get(s, agent.ca_path, "closed.test", port, "/")
        verify_issued_by(leaf, load_cert(agent.ca_path))
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


def test_known_host_without_a_pooled_connection_opens_at_the_clienthello(agent_factory, good):
    """Early connections are for the first contact: a host decoded in the
    last hour whose pooled connection is gone (here the origin answered
    `Connection: close`) gets its origin connection at the ClientHello, as
    without the feature, so a burst of connections to a known site does not
    open one origin connection each while pooled ones come back."""
    agent = start_agent(agent_factory, [good.port])
    m0 = metrics(agent)
    r, _ = https_get(agent.port, "good.test", good.port, "/close", cafile=agent.ca_path)
    ok(r, good, "/close")
    m1 = metrics(agent)
    assert delta(m0, m1, EARLY) == 1, m1
    n = good.connections
    s = connect(agent, "good.test", good.port)
    try:
        time.sleep(1)
        assert good.connections == n, "an origin connection opened at CONNECT for a known host"
        r, _ = tls_get(s, agent.ca_path, "good.test", good.port, "/known/2")
    finally:
        s.close()
    ok(r, good, "/known/2")
    assert good.connections == n + 1, good.connections
    assert delta(m1, metrics(agent), EARLY) == 0


# --- 8. turned off ------------------------------------------------------------------------

def test_early_connect_none_opens_nothing_before_the_clienthello(agent_factory, good):
    agent = start_agent(agent_factory, "none")
    before = metrics(agent)
    s = connect(agent, "good.test", good.port)
    try:
        time.sleep(1)
        assert good.connections == 0, "an origin connection opened before the ClientHello"
        r, _ = tls_get(s, agent.ca_path, "good.test", good.port, "/none")
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
