"""`shoji intercept`: the nftables rules, proved with real packets inside
network namespaces created for each test (see netns/__init__.py). A small
listener reporting SO_ORIGINAL_DST stands in for the agent's transparent
listener, and `shoji intercept heartbeat` for its liveness, so these tests
prove the rules before and independently of the agent."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers.agent import shoji_bin  # noqa: E402
from netns import PYTHON, TOOLS, topology  # noqa: E402,F401

AGENT_PORT = 3129
UPSTREAM_MARK = "0x53484a49"     # PLATFORM_UPSTREAM_MARK


def shoji(t, *args, check=True):
    return t.run("client", [shoji_bin(), "intercept", *args], check=check)


def start_origin(t):
    t.popen("origin", [PYTHON, TOOLS, "origin", "--port", "443", "--port", "80",
                       "--port", "8443", "--udp-port", "443"])
    t.wait_port("origin", t.origin_ip, 443)
    t.wait_port("origin", t.origin_ip, 80)
    t.wait_port("origin", t.origin_ip, 8443)


def start_agent_standin(t):
    """The agent's transparent listener (reports the original destination)
    and its heartbeat. Returns both processes."""
    listener = t.popen("client", [PYTHON, TOOLS, "listen-odst", "--port", str(AGENT_PORT)])
    t.wait_port("client", "127.0.0.1", AGENT_PORT)
    beat = t.popen("client", [shoji_bin(), "intercept", "heartbeat", "--ttl", "2", "--loop"])
    deadline = time.monotonic() + 10
    while "agent live" not in shoji(t, "status").stdout:
        assert time.monotonic() < deadline, "heartbeat never made the agent live"
        time.sleep(0.1)
    return listener, beat


def probe(t, host, port, **kw):
    args = ["probe-tcp", "--host", host, "--port", str(port), "--timeout", str(kw.pop("timeout", 3))]
    for k, v in kw.items():
        args += ["--" + k, str(v)]
    return t.tools("client", *args)


def served_by(r):
    return (r.get("reply") or {}).get("server") if isinstance(r.get("reply"), dict) else None


def test_enable_installs_only_table_inet_shoji_and_disable_restores_ruleset_exactly(topology):
    t = topology
    t.run("client", ["nft", "add table ip bystander; "
                     "add chain ip bystander out { type filter hook output priority 10; }; "
                     "add rule ip bystander out tcp dport 22 counter"])
    before = t.run("client", ["nft", "list", "ruleset"]).stdout
    shoji(t, "enable", "--port", str(AGENT_PORT), "--fail-mode", "closed",
          "--exclude", "198.51.100.0/24", "--exclude", "2001:db8:99::/48", "--exclude-uid", "65534")
    during = t.run("client", ["nft", "list", "ruleset"]).stdout
    assert "table inet shoji" in during
    assert "table ip bystander" in during and "tcp dport 22 counter" in during
    # enabling again replaces the table atomically, never duplicates it
    shoji(t, "enable", "--port", str(AGENT_PORT))
    assert t.run("client", ["nft", "list", "ruleset"]).stdout.count("table inet shoji") == 1
    out = shoji(t, "disable").stdout
    assert "disabled" in out
    assert t.run("client", ["nft", "list", "ruleset"]).stdout == before
    assert "not enabled" in shoji(t, "disable").stdout
    assert "interception: disabled" in shoji(t, "status").stdout


def test_tcp_443_and_80_are_redirected_to_the_agent_port_with_their_original_destination(topology):
    t = topology
    start_origin(t)
    shoji(t, "enable", "--port", str(AGENT_PORT))
    start_agent_standin(t)
    for host, port, want in ((t.origin_ip, 443, "192.0.2.2:443"),
                             (t.origin_ip, 80, "192.0.2.2:80"),
                             (t.site3_ip, 443, "203.0.113.2:443"),
                             (t.origin_ip6, 443, "[2001:db8:5::2]:443")):
        r = probe(t, host, port)
        assert served_by(r) == "redirected", r
        assert r["reply"]["orig_dst"] == want, r
    r = probe(t, t.origin_ip, 8443)           # not a redirected port
    assert served_by(r) == "origin", r
    status = shoji(t, "status").stdout
    assert "agent live" in status
    redirect_line = [ln for ln in status.splitlines() if "redirect to :%d" % AGENT_PORT in ln][0]
    assert "counter packets 0 " not in redirect_line, redirect_line


def test_only_the_listed_ports_are_redirected(topology):
    t = topology
    start_origin(t)
    shoji(t, "enable", "--port", str(AGENT_PORT), "--ports", "8443")
    start_agent_standin(t)
    assert served_by(probe(t, t.origin_ip, 8443)) == "redirected"
    assert served_by(probe(t, t.origin_ip, 443)) == "origin"


def test_quic_udp_443_is_rejected_at_once_and_allowed_with_block_quic_no(topology):
    t = topology
    start_origin(t)
    shoji(t, "enable", "--port", str(AGENT_PORT))
    r = t.tools("client", "probe-udp", "--host", t.origin_ip, "--port", "443", "--timeout", "3")
    assert r["result"] == "rejected" and r["elapsed"] < 1.0, r
    r = t.tools("client", "probe-udp", "--host", t.origin_ip6, "--port", "443", "--timeout", "3")
    assert r["result"] == "rejected" and r["elapsed"] < 1.0, r
    shoji(t, "enable", "--port", str(AGENT_PORT), "--block-quic", "no")
    r = t.tools("client", "probe-udp", "--host", t.origin_ip, "--port", "443", "--timeout", "3")
    assert r["result"] == "reply" and r["reply"]["server"] == "origin", r


def test_agent_upstream_mark_and_excluded_uid_are_never_redirected(topology):
    t = topology
    start_origin(t)
    shoji(t, "enable", "--port", str(AGENT_PORT), "--exclude-uid", "65534", "--fail-mode", "closed")
    start_agent_standin(t)
    assert served_by(probe(t, t.origin_ip, 443, mark=UPSTREAM_MARK)) == "origin"
    assert served_by(probe(t, t.origin_ip6, 443, mark=UPSTREAM_MARK)) == "origin"
    assert served_by(probe(t, t.origin_ip, 443, uid=65534)) == "origin"
    assert served_by(probe(t, t.origin_ip, 443, uid=65533)) == "redirected"
    assert served_by(probe(t, t.origin_ip, 443, mark="0x1")) == "redirected"


def test_excluded_cidr_and_local_addresses_go_direct(topology):
    t = topology
    start_origin(t)
    t.popen("client", [PYTHON, TOOLS, "origin", "--port", "443"])   # a local service on :443
    t.wait_port("client", "127.0.0.1", 443)
    shoji(t, "enable", "--port", str(AGENT_PORT), "--exclude", "198.51.100.0/24",
          "--exclude", "2001:db8:5::2")
    start_agent_standin(t)
    assert served_by(probe(t, t.site2_ip, 443)) == "origin"
    assert served_by(probe(t, t.origin_ip6, 443)) == "origin"
    assert served_by(probe(t, t.site3_ip, 443)) == "redirected"
    for local in ("127.0.0.1", "::1", t.client_ip):
        r = probe(t, local, 443)
        assert served_by(r) == "origin" and r["reply"]["local"].endswith(":443"), r


def wait_for(fn, timeout):
    deadline = time.monotonic() + timeout
    while True:
        r = fn()
        if r is not None:
            return r
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within %.1fs" % timeout)
        time.sleep(0.2)


def test_fail_open_agent_killed_traffic_flows_direct_within_the_heartbeat_ttl(topology):
    t = topology
    start_origin(t)
    shoji(t, "enable", "--port", str(AGENT_PORT), "--fail-mode", "open")
    # never live yet: traffic flows direct
    assert served_by(probe(t, t.origin_ip, 443)) == "origin"
    listener, beat = start_agent_standin(t)
    assert served_by(probe(t, t.origin_ip, 443)) == "redirected"
    listener.kill()
    beat.kill()                                   # the agent dies: no clean-up
    killed = time.monotonic()

    def direct():
        r = probe(t, t.origin_ip, 443)
        assert r["elapsed"] < 1.0, r              # never a hang, at worst a reset
        return r if served_by(r) == "origin" else None
    wait_for(direct, 5)
    assert time.monotonic() - killed < 4.0        # ttl 2 s
    assert "not live" in shoji(t, "status").stdout


def test_fail_open_clean_agent_stop_goes_direct_at_once(topology):
    t = topology
    start_origin(t)
    shoji(t, "enable", "--port", str(AGENT_PORT), "--fail-mode", "open")
    listener, beat = start_agent_standin(t)
    beat.send_signal(signal.SIGTERM)
    assert beat.wait(timeout=10) == 0
    assert served_by(probe(t, t.origin_ip, 443)) == "origin"


def test_fail_closed_agent_killed_connections_are_reset_at_once(topology):
    t = topology
    start_origin(t)
    shoji(t, "enable", "--port", str(AGENT_PORT), "--fail-mode", "closed")
    r = probe(t, t.origin_ip, 443)                # never live: refused, not hung
    assert r["error"] == "ECONNREFUSED" and r["elapsed"] < 1.0, r
    listener, beat = start_agent_standin(t)
    assert served_by(probe(t, t.origin_ip, 443)) == "redirected"
    listener.kill()
    beat.kill()
    time.sleep(2.5)                               # past the heartbeat ttl
    for host, port in ((t.origin_ip, 443), (t.origin_ip, 80), (t.origin_ip6, 443)):
        r = probe(t, host, port)
        assert r["error"] == "ECONNREFUSED" and r["elapsed"] < 1.0, r
    assert served_by(probe(t, t.origin_ip, 8443)) == "origin"   # other ports untouched
    assert served_by(probe(t, t.origin_ip, 443, mark=UPSTREAM_MARK)) == "origin"


def test_bad_options_are_refused_with_a_message_and_install_nothing(topology):
    t = topology
    before = t.run("client", ["nft", "list", "ruleset"]).stdout
    for args in (["--port", "0"], ["--port", "3129", "--ports", "80,x"],
                 ["--port", "3129", "--exclude", "10.0.0.0/33"],
                 ["--port", "3129", "--exclude", "10.0.0.1; flush ruleset"],
                 ["--port", "443"], ["--port", "3129", "--fail-mode", "maybe"],
                 ["--port", "3129", "--exclude-uid", "-1"], []):
        r = shoji(t, "enable", *args, check=False)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert r.stderr.strip(), args
    assert t.run("client", ["nft", "list", "ruleset"]).stdout == before
