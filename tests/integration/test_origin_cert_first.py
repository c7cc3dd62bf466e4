"""The client's handshake starts on the origin's certificate, before the
origin's handshake has ended (tls_upstream_pause_at_cert, conn_on_peer_cert).

A TLS 1.3 origin sends its whole flight at once: ServerHello, then
EncryptedExtensions, Certificate, CertificateVerify and Finished. The agent
stops its origin handshake once the Certificate is in and verified, mints
the leaf and answers the client, and checks the origin's CertificateVerify
and Finished while the client works on that answer. What a user or admin
would notice, tested here with a relay that holds the origin's flight after
its Certificate:

  * the client's TLS handshake with the agent completes while the origin's
    CertificateVerify and Finished are still held (it used to wait for the
    origin's whole handshake), and the leaf mirrors the origin's names;
  * the client's request is not sent to the origin before the origin's
    handshake has ended: it waits, and is answered once the rest of the
    flight arrives;
  * the same for an early origin connection (opened at CONNECT) that the
    client's ClientHello adopted before the origin's certificate came;
  * the certificate's chain is verified after the pause: an expired
    certificate for the right name still gets the "certificate has expired"
    page, and the request is never sent to that origin; one for another
    name is caught at the pause (the leaf then names only the host asked
    for, so the client sees the agent's page, not a name mismatch);
  * a TLS 1.2 origin (certificate, key exchange and Finished in two
    flights) goes through the same pause: served, or the certificate page
    for an expired certificate;
  * an origin whose flight turns bad after the certificate (a corrupted
    CertificateVerify), that closes then, or that stalls past
    --handshake-timeout, gets the agent's 502 / 504 page on the client's
    request, and the origin never sees a request.
"""
import contextlib
import select
import socket
import ssl
import threading

import pytest

from helpers.client import (HTTPReader, _request_bytes, connect_tunnel, https_get, peer_cert,
                            tls_context)
from helpers.origin import Origin
from helpers.pki import cert_names
from helpers.wait import wait_for

HOST = "good.test"


class HoldingRelay:
    """A TCP relay between the agent and a TLS origin. The agent's bytes go
    on as they come. The origin's go on record by record up to and including
    the second encrypted record of its flight (TLS 1.3: EncryptedExtensions,
    Certificate); what follows is held until release(), corrupted and sent
    at once (mode "corrupt": one byte of the first held record flipped), or
    dropped with the connection (mode "close", or close()). With
    gate=True nothing of the origin's goes on before open_gate()."""

    def __init__(self, origin_port, mode="hold", gate=False):
        self.origin_port = origin_port
        self.mode = mode
        self.connections = 0
        self.holding = threading.Event()    # the Certificate went on, the rest is held
        self._release = threading.Event()
        self._close = threading.Event()
        self._gate = threading.Event()
        if not gate:
            self._gate.set()
        self._stop = threading.Event()
        self._socks = []
        self._l = socket.socket()
        self._l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._l.bind(("127.0.0.1", 0))
        self._l.listen(4)
        self._l.settimeout(0.1)
        self.port = self._l.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def release(self):
        self._release.set()

    def close(self):
        self._close.set()

    def open_gate(self):
        self._gate.set()

    def _accept(self):
        while not self._stop.is_set():
            try:
                a, _ = self._l.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            o = socket.create_connection(("127.0.0.1", self.origin_port), timeout=5)
            self._socks += [a, o]
            threading.Thread(target=self._to_origin, args=(a, o), daemon=True).start()
            threading.Thread(target=self._from_origin, args=(o, a), daemon=True).start()

    def _to_origin(self, a, o):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                o.sendall(d)
            o.shutdown(socket.SHUT_WR)
        except (OSError, ValueError):   # ValueError: closed by stop()
            pass

    def _from_origin(self, o, a):
        buf = b""
        encrypted = 0
        held = None        # bytearray once holding
        try:
            while not self._stop.is_set():
                if held is not None and self._close.is_set():
                    return self._hang_up(a, o)
                if held is not None and self._release.is_set():
                    a.sendall(bytes(held) + buf)
                    held, buf = None, b""
                    self.mode = "pass"
                r, _, _ = select.select([o], [], [], 0.05)
                if r:
                    d = o.recv(65536)
                    if not d:
                        break
                    buf += d
                if not self._gate.is_set():
                    continue
                if self.mode == "pass" and held is None:
                    if buf:
                        a.sendall(buf)
                        buf = b""
                    continue
                while len(buf) >= 5:
                    n = 5 + int.from_bytes(buf[3:5], "big")
                    if len(buf) < n:
                        break
                    rec, buf = buf[:n], buf[n:]
                    if held is not None:
                        held += rec
                        continue
                    a.sendall(rec)
                    if rec[0] == 23:
                        encrypted += 1
                    if encrypted == 2:
                        held = bytearray()
                        self.holding.set()
                if held is not None and self.mode == "corrupt" and len(held) > 10:
                    held[10] ^= 0x55
                    a.sendall(bytes(held) + buf)
                    held, buf = None, b""
                    self.mode = "pass"
                if held is not None and self.mode == "close":
                    return self._hang_up(a, o)
            a.shutdown(socket.SHUT_WR)
        except (OSError, ValueError):   # ValueError: select() on a socket stop() closed
            pass

    @staticmethod
    def _hang_up(a, o):
        # shutdown first: a plain close() would wait for the other thread's
        # recv() on the same socket before the FIN goes out
        for x in (a, o):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            x.close()

    def stop(self):
        self._stop.set()
        self._l.close()
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass


@pytest.fixture
def good(make_origin, certs):
    return make_origin(HOST, certs["good"])


@pytest.fixture
def relays():
    made = []

    def make(*a, **kw):
        r = HoldingRelay(*a, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


def handshake(agent, sock, timeout=5.0, host=HOST):
    """The client's TLS handshake over the CONNECTed `sock`, in a thread:
    returns the TLS socket, or None if it did not complete within `timeout`
    (the thread is left to finish or fail on its own)."""
    out = {}

    def run():
        try:
            out["tls"] = tls_context(agent.ca_path).wrap_socket(sock, server_hostname=host)
        except Exception as e:   # noqa: BLE001 - reported below
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if "error" in out:
        raise out["error"]
    return out.get("tls")


def send_get(tls, port, path, host=HOST):
    tls.sendall(_request_bytes("GET", path, None, None, "%s:%d" % (host, port)))


def nothing_within(tls, seconds):
    tls.settimeout(seconds)
    try:
        d = tls.recv(1)
    except socket.timeout:
        return True
    finally:
        tls.settimeout(10)
    raise AssertionError("the agent answered before the origin's handshake ended: %r" % d)


def connect(agent, port, host=HOST):
    s, r = connect_tunnel(agent.port, host, port)
    assert r.status == 200, r
    return s


def start(agent_factory, extra=()):
    return agent_factory(workers=1, extra_args=list(extra)).start()


HELD = ("the client's handshake did not complete while the origin's CertificateVerify "
        "and Finished were held: it waited for the origin's whole handshake")


@contextlib.contextmanager
def decoded(agent, relay, host=HOST):
    """CONNECT `host` at the relay's port, then the client's TLS handshake,
    which must complete by itself (within 5 s): yields the TLS socket."""
    s = connect(agent, relay.port, host)
    tls = None
    try:
        tls = handshake(agent, s, host=host)
        assert tls is not None, HELD
        yield tls
    finally:
        if tls:
            tls.close()
        s.close()


def test_client_handshake_completes_while_the_origin_flight_is_held(agent_factory, good, relays):
    agent = start(agent_factory)
    relay = relays(good.port)
    with decoded(agent, relay) as tls:
        assert relay.holding.is_set(), "the relay never got to the origin's certificate"
        _, sans = cert_names(peer_cert(tls))
        assert sorted(sans) == [HOST, "www.good.test"], "the leaf does not mirror the origin: %r" % sans
        send_get(tls, relay.port, "/held")
        nothing_within(tls, 0.5)
        assert good.requests_for("/held") == [], "a request reached an origin not yet verified"
        relay.release()
        r = HTTPReader(tls).response()
        assert r.status == 200, r
        assert good.marker in r.text, r
        assert len(good.requests_for("/held")) == 1


def test_adopted_early_connection_also_answers_the_client_on_the_certificate(
        agent_factory, good, relays):
    relay = relays(good.port, gate=True)
    agent = start(agent_factory, ["--early-connect", str(relay.port)])
    s = connect(agent, relay.port)
    wait_for(lambda: relay.connections == 1, 5, "the early origin connection")
    result = {}
    t = threading.Thread(target=lambda: result.update(tls=handshake(agent, s, timeout=8)),
                         daemon=True)
    t.start()   # the ClientHello adopts the early connection (still in its handshake)
    # The adoption is not observable from here: give the ClientHello time to
    # arrive and be peeked before the origin's flight may go on.
    t.join(0.5)
    relay.open_gate()
    wait_for(lambda: relay.holding.is_set(), 5, "the origin's certificate passed the relay")
    t.join(5)
    tls = result.get("tls")
    try:
        assert tls is not None, HELD
        assert relay.connections == 1, "the early connection was not the one used"
        send_get(tls, relay.port, "/early-held")
        nothing_within(tls, 0.3)
        relay.release()
        r = HTTPReader(tls).response()
        assert r.status == 200 and good.marker in r.text, r
    finally:
        if tls:
            tls.close()
        s.close()


@pytest.mark.parametrize("mode,status,words", [
    ("corrupt", 502, "the TLS handshake with the origin failed"),
    ("close", 502, "the origin closed the connection during the TLS handshake"),
])
def test_origin_failing_after_its_certificate_gets_the_error_page(
        agent_factory, good, relays, mode, status, words):
    agent = start(agent_factory)
    relay = relays(good.port, mode=mode)
    with decoded(agent, relay) as tls:
        send_get(tls, relay.port, "/bad-flight")
        r = HTTPReader(tls).response()
        assert r.status == status, r
        assert words in r.text, r.text[:600]
        assert good.requests_for("/bad-flight") == []


def test_origin_stalling_after_its_certificate_gets_504_at_the_handshake_timeout(
        agent_factory, good, relays):
    agent = start(agent_factory, ["--handshake-timeout", "1500"])
    relay = relays(good.port)
    with decoded(agent, relay) as tls:
        send_get(tls, relay.port, "/stalled")
        r = HTTPReader(tls).response()
        assert r.status == 504, r
        assert "timed out" in r.text, r.text[:600]
        assert good.requests_for("/stalled") == []


def test_expired_certificate_found_after_the_pause_gets_the_certificate_page(
        agent_factory, make_origin, certs, relays):
    expired = make_origin("expired.test", certs["expired"])
    agent = start(agent_factory)
    relay = relays(expired.port)
    with decoded(agent, relay, "expired.test") as tls:
        _, sans = cert_names(peer_cert(tls))
        assert "expired.test" in sans, sans
        send_get(tls, relay.port, "/expired", "expired.test")
        nothing_within(tls, 0.3)
        relay.release()
        r = HTTPReader(tls).response()
        assert r.status == 502, r
        assert "certificate has expired" in r.text, r.text[:600]
        assert expired.requests_for("/expired") == []


def test_certificate_for_another_name_is_caught_at_the_pause(
        agent_factory, make_origin, certs, relays):
    wrong = make_origin("wrongname.test", certs["wrongname"])
    agent = start(agent_factory)
    relay = relays(wrong.port)
    with decoded(agent, relay, "wrongname.test") as tls:
        _, sans = cert_names(peer_cert(tls))
        assert sans == ["wrongname.test"], "the leaf must name only the host asked for: %r" % sans
        relay.release()
        send_get(tls, relay.port, "/wrong", "wrongname.test")
        r = HTTPReader(tls).response()
        assert r.status == 502, r
        assert "name mismatch: the certificate is for other.test" in r.text, r.text[:600]
        assert wrong.requests_for("/wrong") == []


@pytest.mark.parametrize("which,status,words", [
    ("good", 200, None),
    ("expired", 502, "certificate has expired"),
])
def test_tls12_origin_goes_through_the_pause(agent_factory, certs, which, status, words):
    name = HOST if which == "good" else "expired.test"
    origin = Origin(name, certs[which], tls_max=ssl.TLSVersion.TLSv1_2).start()
    try:
        agent = start(agent_factory, ["--verbose"])
        r, leaf = https_get(agent.port, name, origin.port, "/tls12", cafile=agent.ca_path)
        assert "answering the client while the origin's handshake goes on" in agent.stderr(), (
            "the TLS 1.2 origin's handshake did not stop at its certificate")
        assert r.status == status, r
        assert name in cert_names(leaf)[1], cert_names(leaf)
        if words:
            assert words in r.text, r.text[:600]
            assert origin.requests_for("/tls12") == []
        else:
            assert origin.marker in r.text, r
        assert origin.handshake_errors == [], origin.handshake_errors
    finally:
        origin.stop()
