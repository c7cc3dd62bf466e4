"""Least privilege (issue 10 part 6): loopback by default, never an open
relay, client allow-list, `--user nobody` (uid, capabilities, no_new_privs,
still decodes and identifies applications), CA key 0600 root.

The listener tests that need a non-loopback address run the agent in a
private network namespace with a veth pair (10.77.0.0/24), so nothing
is exposed on the host's network."""
import os
import shutil
import subprocess
import time
import uuid

import pytest

from helpers.agent import run_cli, sanitizer_env, sanitizer_report, shoji_bin
from helpers.client import ProxyClient, https_get

CAP_DAC_READ_SEARCH = 2
CAP_SYS_PTRACE = 19


def _status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def _need_root():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, --user)")


@pytest.fixture
def netns():
    """A private namespace with lo and a dummy interface holding 10.77.0.1
    (agent), 10.77.0.2 (a client outside the allow-list) and 10.77.0.200
    (a client inside 10.77.0.128/25)."""
    _need_root()
    if not shutil.which("ip"):
        pytest.skip("iproute2 missing")
    name = "shoji-hard-%s" % uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in (["link", "set", "lo", "up"], ["link", "add", "d0", "type", "veth", "peer", "name", "d1"],
                    ["addr", "add", "10.77.0.1/24", "dev", "d0"],
                    ["addr", "add", "10.77.0.2/24", "dev", "d0"],
                    ["addr", "add", "10.77.0.200/24", "dev", "d0"],
                    ["link", "set", "d0", "up"], ["link", "set", "d1", "up"]):
            subprocess.run(["ip", "-n", name] + cmd, check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name])


def ns_run(ns, argv, timeout=20, **kw):
    return subprocess.run(["ip", "netns", "exec", ns] + argv, capture_output=True, text=True,
                          timeout=timeout, env=sanitizer_env(), **kw)


PROBE = r"""
import socket, sys
src, dst, port, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
s = socket.socket(); s.settimeout(5)
s.bind((src, 0)); s.connect((dst, port))
s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: " + dst.encode() + b"\r\n\r\n")
data = b""
try:
    while True:
        d = s.recv(65536)
        if not d: break
        data += d
        if b"\r\n\r\n" in data and len(data) > 200: break
except (socket.timeout, ConnectionResetError): pass
print(data.split(b"\r\n", 1)[0].decode("latin-1") or "CLOSED")
"""


class NsAgent:
    def __init__(self, ns, state, args):
        self.ns, self.state = ns, state
        self.err = open(os.path.join(state, "stderr.log"), "wb")
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, shoji_bin(), "run", "--state-dir", state,
                                      "--workers", "1"] + args, stdout=subprocess.DEVNULL,
                                     stderr=self.err, env=sanitizer_env())

    def wait_listening(self, addr, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            out = ns_run(self.ns, ["ss", "-Hltn"]).stdout
            if addr in out:
                return True
            time.sleep(0.1)
        return False

    def stderr(self):
        with open(os.path.join(self.state, "stderr.log"), "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        rc = self.proc.wait(15)
        self.err.close()
        assert sanitizer_report(self.stderr()) is None, self.stderr()
        return rc


def _state(tmp_path, name="state"):
    d = str(tmp_path / name)
    run_cli(["ca", "init", "--state-dir", d])
    return d


def test_listens_on_loopback_by_default(netns, tmp_path):
    a = NsAgent(netns, _state(tmp_path), [])
    try:
        assert a.wait_listening("127.0.0.1:3128"), a.stderr()
        listeners = ns_run(netns, ["ss", "-Hltn"]).stdout.split("\n")
        mine = [line for line in listeners if ":3128" in line]
        assert mine and all("127.0.0.1:3128" in line for line in mine), listeners
    finally:
        assert a.stop() == 0


@pytest.mark.parametrize("listen", ["0.0.0.0:3128", "10.77.0.1:3128", "[::]:3128"])
def test_non_loopback_listen_without_allow_clients_is_refused(netns, tmp_path, listen):
    p = ns_run(netns, [shoji_bin(), "run", "--state-dir", _state(tmp_path), "--listen", listen])
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "--allow-clients" in p.stderr and "open relay" in p.stderr, p.stderr
    assert sanitizer_report(p.stderr) is None, p.stderr


def test_client_outside_allow_clients_is_refused(netns, tmp_path):
    a = NsAgent(netns, _state(tmp_path), ["--listen", "10.77.0.1:3128",
                                           "--allow-clients", "10.77.0.128/25"])
    try:
        assert a.wait_listening("10.77.0.1:3128"), a.stderr()
        inside = ns_run(netns, ["/usr/bin/python3", "-c", PROBE, "10.77.0.200", "10.77.0.1", "3128",
                                "/proxy.pac"]).stdout.strip()
        outside = ns_run(netns, ["/usr/bin/python3", "-c", PROBE, "10.77.0.2", "10.77.0.1", "3128",
                                 "/proxy.pac"]).stdout.strip()
        assert inside.startswith("HTTP/1.1 200"), inside
        assert not outside.startswith("HTTP/1.1 200"), "a client outside the allow-list was served: %s" % outside
        # /metrics is for loopback clients only, even from an allowed network
        metrics = ns_run(netns, ["/usr/bin/python3", "-c", PROBE, "10.77.0.200", "10.77.0.1", "3128",
                                 "/metrics"]).stdout.strip()
        assert not metrics.startswith("HTTP/1.1 200"), metrics
    finally:
        assert a.stop() == 0
    assert "not in --allow-clients" in a.stderr(), a.stderr()


def test_ca_key_is_0600_root(tmp_path):
    d = _state(tmp_path)
    st = os.stat(os.path.join(d, "ca.key"))
    assert st.st_mode & 0o777 == 0o600 and st.st_uid == 0, oct(st.st_mode)


def _threads(pid):
    for tid in sorted(os.listdir("/proc/%d/task" % pid)):
        with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
            yield tid, f.read()


def _field(text, name):
    for line in text.split("\n"):
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return None




def test_user_nobody_every_thread_has_no_new_privs(agent_factory):
    _need_root()
    a = agent_factory(extra_args=["--user", "nobody"]).start()
    time.sleep(0.5)
    bad = [tid for tid, ts in _threads(a.pid) if _field(ts, "NoNewPrivs") != "1"]
    assert bad == [], "threads without no_new_privs: %s" % bad


def test_user_nobody_drops_to_65534_with_two_capabilities(agent_factory, origins, tmp_path):
    _need_root()
    a = agent_factory(extra_args=["--user", "nobody"]).start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        st = _status(a.pid)
        if st["Uid"].split()[1] == "65534":
            break
        time.sleep(0.1)
    assert st["Uid"].split() == ["65534"] * 4, st["Uid"]
    assert st["Gid"].split() == ["65534"] * 4, st["Gid"]
    assert st.get("Groups", "") in ("", "65534"), st.get("Groups")
    want = (1 << CAP_SYS_PTRACE) | (1 << CAP_DAC_READ_SEARCH)
    assert int(st["CapEff"], 16) == want, "CapEff %s, expected %x" % (st["CapEff"], want)
    assert int(st["CapPrm"], 16) == want, st["CapPrm"]
    assert st["NoNewPrivs"] == "1"
    for tid, ts in _threads(a.pid):
        assert "\nUid:\t65534\t65534\t65534\t65534\n" in ts, "thread %s is not nobody" % tid
        assert int(_field(ts, "CapEff"), 16) & ~want == 0, "thread %s keeps more capabilities" % tid
    # the CA key stays root's 0600 (never handed to the unprivileged user)
    kst = os.stat(a.ca_key_path)
    assert kst.st_uid == 0 and kst.st_mode & 0o777 == 0o600, (kst.st_uid, oct(kst.st_mode))
    # still decodes (a leaf from the local CA) and identifies the application
    r, cert = https_get(a.port, "good.test", origins["good"].port, "/priv", cafile=a.ca_path)
    assert r.status == 200 and origins["good"].marker in r.text
    recs = a.wait_access_log(lambda x: "/priv" in (x.get("url") or ""))
    assert recs and recs[0]["mode"] == "decode", recs
    assert recs[0].get("pid") == os.getpid(), "application not identified as nobody: %r" % recs[0]
    assert recs[0].get("app"), recs[0]
    # plain HTTP too
    with ProxyClient(a.port) as c:
        assert c.request("GET", origins["plain"].url("/priv-plain")).status == 200
