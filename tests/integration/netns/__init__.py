"""Network-namespace fixture for transparent-interception tests.

A Topology is two fresh namespaces joined by a veth pair:

    client ns (shoji-t-XXXX-c)                origin ns (shoji-t-XXXX-o)
      lo 127.0.0.1, ::1                          lo
      veth 192.0.2.1/24, 2001:db8:5::1/64  <-->  veth 192.0.2.2/24, 2001:db8:5::2/64
      routes to 198.51.100.0/24,                 extra addresses 198.51.100.2/24,
        203.0.113.0/24 via 192.0.2.2             203.0.113.2/24 (so tests have
                                                 three "sites" to tell apart)

The agent, `shoji intercept` and the clients run in the client namespace;
origins run in the origin namespace. Nothing outside the two namespaces is
touched: no host interface, route, sysctl or nftables rule. Addresses are
documentation ranges only (RFC 5737, and RFC 3849 for IPv6).

Use:
    from netns import Topology, topology      # `topology` is a pytest fixture

    with Topology() as t:                     # or the fixture: def test_x(topology)
        t.run("client", ["nft", "list", "ruleset"])
        p = t.popen("origin", [sys.executable, TOOLS, "origin", "--port", "443"])
        t.wait_port("origin", t.origin_ip, 443)

Every namespace is deleted at teardown, also when setup or the test fails;
processes started with popen() are killed first.
"""
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time

import pytest

TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tools.py")
PYTHON = sys.executable


def available():
    """(ok, reason): can this process create namespaces?"""
    if os.geteuid() != 0:
        return False, "needs root (ip netns)"
    for tool in ("ip", "nft"):
        if not shutil.which(tool):
            return False, "needs %s (iproute2 / nftables)" % tool
    return True, ""


class Topology:
    client_ip = "192.0.2.1"
    origin_ip = "192.0.2.2"
    client_ip6 = "2001:db8:5::1"
    origin_ip6 = "2001:db8:5::2"
    site2_ip = "198.51.100.2"     # another address of the origin namespace
    site3_ip = "203.0.113.2"      # and a third

    def __init__(self):
        tag = secrets.token_hex(3)
        self.tag = tag
        self.ns = {"client": "shoji-t-%s-c" % tag, "origin": "shoji-t-%s-o" % tag}
        self._procs = []

    # --- lifecycle ---------------------------------------------------------
    def __enter__(self):
        try:
            self.setup()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc):
        self.teardown()
        return False

    def _ip(self, *args):
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)

    def setup(self):
        c, o = self.ns["client"], self.ns["origin"]
        vc, vo = "shc%s" % self.tag, "sho%s" % self.tag   # <= 15 chars
        for ns in (c, o):
            self._ip("netns", "add", ns)
            self._ip("-n", ns, "link", "set", "lo", "up")
        self._ip("link", "add", vc, "netns", c, "type", "veth", "peer", "name", vo, "netns", o)
        for ns, dev, v4, v6 in ((c, vc, self.client_ip, self.client_ip6),
                                (o, vo, self.origin_ip, self.origin_ip6)):
            self._ip("-n", ns, "addr", "add", v4 + "/24", "dev", dev)
            self._ip("-n", ns, "addr", "add", v6 + "/64", "dev", dev, "nodad")
            self._ip("-n", ns, "link", "set", dev, "up")
        for extra in (self.site2_ip, self.site3_ip):
            self._ip("-n", o, "addr", "add", extra + "/24", "dev", vo)
            self._ip("-n", c, "route", "add", extra.rsplit(".", 1)[0] + ".0/24", "via", self.origin_ip)

    def teardown(self):
        for p in self._procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._procs = []
        for ns in self.ns.values():
            # Deleting a namespace also deletes its veth end (and the peer).
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)

    # --- running things inside ---------------------------------------------
    def cmd(self, where, argv):
        return ["ip", "netns", "exec", self.ns[where], *argv]

    def run(self, where, argv, check=True, timeout=30, **kw):
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        r = subprocess.run(self.cmd(where, argv), timeout=timeout, **kw)
        if check and r.returncode != 0:
            raise AssertionError("%s failed (%d): %s %s" % (" ".join(argv), r.returncode,
                                                          r.stdout, r.stderr))
        return r

    def popen(self, where, argv, **kw):
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        p = subprocess.Popen(self.cmd(where, argv), **kw)
        self._procs.append(p)
        return p

    def wait_port(self, where, host, port, timeout=10.0):
        """Waits until something listens on host:port inside `where`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.run(where, [PYTHON, TOOLS, "probe-tcp", "--host", host, "--port", str(port),
                                 "--timeout", "0.5", "--send", ""], check=False)
            if '"connected": true' in r.stdout:
                return
            time.sleep(0.1)
        raise AssertionError("nothing listens on %s:%d in %s" % (host, port, where))

    def tools(self, where, *args, check=True, timeout=30):
        """Runs tools.py SUBCOMMAND ARGS in `where`; returns its JSON answer."""
        import json
        r = self.run(where, [PYTHON, TOOLS, *args], check=check, timeout=timeout)
        return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture
def topology():
    ok, why = available()
    if not ok:
        pytest.skip(why)
    with Topology() as t:
        yield t


def free_port_hint():
    """A port number unlikely to be in use (namespaces start empty anyway)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
