"""Transparent interception, end to end, with the real agent.

Each module-level lab is a fresh pair of network namespaces (netns/):
origin sites on documentation addresses, and in the client namespace the
agent (`shoji run --transparent`) plus `shoji intercept enable`. Clients
have no proxy settings: they connect to the sites' addresses and nftables
sends them to the agent. See netns/transparent.py for the sites and policy:

  block: [blocked.test]
  decode.exclude_hosts: [excluded.test, gsa.apple.com]
  disabled_apps: [disabledcurl]      (a renamed copy of curl)
"""
import json
import os
import signal
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers.agent import run_cli  # noqa: E402
from netns import Topology, available  # noqa: E402
from netns.transparent import (ADDR, ECHO_IP, GOOD_IP6, TPORT, Lab,  # noqa: E402
                               metric, metrics_text)

AGENT_CA_CN = "shoji local CA"
TEST_ROOT_CN = "shoji test root CA"


def need_netns():
    ok, why = available()
    if not ok:
        pytest.skip(why)


@pytest.fixture(scope="module")
def agent_ca(tmp_path_factory):
    """One agent CA for every lab of the module (`shoji ca init` is slow
    under ASan)."""
    d = str(tmp_path_factory.mktemp("agent-ca"))
    run_cli(["ca", "init", "--state-dir", d])
    return d


@pytest.fixture(scope="module")
def lab(tmp_path_factory, pki, agent_ca):
    """One topology + agent + interception for the module's read-only tests."""
    need_netns()
    with Topology() as t:
        lab = Lab(t, pki, tmp_path_factory.mktemp("transparent"), ca_from=agent_ca)
        lab.enable(wait_live=False)   # first: the agent's first heartbeat makes it live
        lab.start_agent()
        lab.wait_live()
        yield lab
        lab.agent.stop(check=True)


@pytest.fixture
def live(lab):
    """The module lab, checked alive and live before and after each test."""
    assert lab.agent.running(), lab.stderr()
    lab.wait_live()
    yield lab
    assert lab.agent.running(), "the agent died during this test (exit %s)\nstderr:\n%s" % (
        lab.agent.proc.returncode, lab.stderr())


def wait_log(lab, pred, count=1, timeout=5.0):
    return lab.agent.wait_access_log(pred, count=count, timeout=timeout)


def from_client(conns):
    """Site connections that came from the client namespace (the sites'
    start-up probes come from the origin namespace itself)."""
    return [c for c in conns if c["peer"].startswith("192.0.2.1:")]


def curl_resolve(name, port=443):
    return ["--resolve", "%s:%d:%s" % (name, port, ADDR[name])]


# --- HTTPS through the agent: decoded, blocked, excluded, disabled app ------

def test_curl_without_proxy_settings_is_decoded_with_the_agents_certificate(live):
    lab = live
    r = lab.curl(curl_resolve("good.test") + ["--cacert", lab.agent.ca_path,
                 "-w", "\n%{http_code} %{ssl_verify_result}", "https://good.test/t-decode-curl"])
    assert r.returncode == 0, "curl failed (the agent's CA must verify): %s\nagent:\n%s" % (r.stderr, lab.stderr())
    assert lab.markers["good.test"] in r.stdout, r.stdout
    assert r.stdout.rstrip().endswith("200 0"), r.stdout
    # the origin saw the agent's upstream connection, from the client ns address
    assert "peer=192.0.2.1:" in r.stdout, r.stdout
    # the same curl against the test root (the origin's issuer) fails: decoded
    r2 = lab.curl(curl_resolve("good.test") + ["--cacert", lab.pki.ca_cert_path, "https://good.test/t-decode-curl2"])
    assert r2.returncode == 60, "expected curl: (60) certificate problem, got %d %s" % (r2.returncode, r2.stderr)
    recs = wait_log(lab, lambda x: "/t-decode-curl" in str(x.get("url")) and "curl2" not in str(x.get("url")))
    assert len(recs) == 1, recs
    rec = recs[0]
    assert rec["mode"] == "decode" and rec["status"] == 200, rec
    assert rec["url"].startswith("https://good.test"), rec
    assert rec.get("app") == "curl", rec
    assert rec.get("app_path", "").endswith("/curl"), rec
    assert rec.get("sni") == "good.test", rec
    assert str(rec.get("dst", "")).startswith("192.0.2.2"), rec


def test_python_client_without_proxy_settings_is_decoded(live):
    lab = live
    r = lab.https("good.test", path="/t-decode-py", cafile=lab.agent.ca_path)
    assert r["ok"], (r, lab.stderr())
    assert r["issuer"].startswith(AGENT_CA_CN), r
    assert r["status"] == 200 and lab.markers["good.test"] in r["body"], r
    recs = wait_log(lab, lambda x: "/t-decode-py" in str(x.get("url")))
    assert len(recs) == 1, recs
    assert recs[0]["mode"] == "decode" and recs[0].get("app", "").startswith("python3"), recs[0]


def test_client_hello_in_many_segments_is_still_read_and_decoded(live):
    """The agent must wait for the whole ClientHello (here in 8 pieces, 50 ms
    apart) before deciding, not tunnel or drop a partial one."""
    lab = live
    r = lab.client("https", "--ip", ADDR["good.test"], "--port", "443", "--sni", "good.test", "--path",
                   "/t-split", "--cafile", lab.agent.ca_path, "--split", "8")
    assert r["ok"] and r["issuer"].startswith(AGENT_CA_CN), (r, lab.stderr()[-1500:])
    assert r["status"] == 200 and lab.markers["good.test"] in r["body"], r
    ex = lab.client("https", "--ip", ADDR["excluded.test"], "--port", "443", "--sni", "excluded.test",
                    "--path", "/t-split-excl", "--split", "8")
    assert ex["ok"] and ex["issuer"] == TEST_ROOT_CN and lab.markers["excluded.test"] in ex["body"], ex


def test_blocked_https_site_never_reaches_the_origin_and_is_logged(live):
    lab = live
    r = lab.curl(curl_resolve("blocked.test") + ["--cacert", lab.agent.ca_path, "https://blocked.test/t-block-1"])
    assert lab.markers["blocked.test"] not in r.stdout, r.stdout
    p = lab.https("blocked.test", path="/t-block-2", cafile=lab.agent.ca_path)
    assert lab.markers["blocked.test"] not in (p.get("body") or ""), p
    recs = wait_log(lab, lambda x: x.get("action") == "block" and "blocked.test" in str(x.get("url"))
                    and x.get("app") in ("curl", "python3"), count=2)
    assert {x["app"] for x in recs} == {"curl", "python3"}, recs
    for rec in recs:
        assert rec["status"] == 403 and "block" in str(rec.get("rule")), rec
    reqs = [c for c in lab.site_connections("blocked.test") if c.get("request")]
    assert not reqs, "a blocked request reached the origin: %r" % reqs




def test_blocked_https_site_shows_the_block_page_over_decoded_tls(live):
    """Issue 5: "blocked (block page)". A transparent client sent no CONNECT
    that could be answered 403: the only way to show it the block page is to
    decode (our certificate) and answer the request with it."""
    lab = live
    r = lab.curl(curl_resolve("blocked.test") + ["--cacert", lab.agent.ca_path, "-w", "\n%{http_code}",
                                                 "https://blocked.test/t-block-page"])
    assert r.returncode == 0, "curl: %s (exit %d): no block page\nagent:\n%s" % (
        r.stderr.strip(), r.returncode, lab.stderr()[-1500:])
    assert r.stdout.rstrip().endswith("403"), r.stdout
    assert "blocked.test" in r.stdout and lab.markers["blocked.test"] not in r.stdout, r.stdout[:500]


def test_blocked_https_site_whose_origin_is_down_still_gets_the_block_page(live):
    """Nothing listens at down.test's address: a blocked site's page must not
    depend on the origin (no 502 "could not connect" instead of the block)."""
    lab = live
    r = lab.https("down.test", path="/t-block-down", cafile=lab.agent.ca_path)
    assert r["ok"], (r, lab.stderr()[-1500:])
    assert r["issuer"].startswith(AGENT_CA_CN), r
    assert r["status"] == 403 and "down.test" in r["body"], r


def test_excluded_host_is_tunnelled_and_the_client_sees_the_origins_certificate(live):
    lab = live
    r = lab.curl(curl_resolve("excluded.test") + ["--cacert", lab.pki.ca_cert_path,
                 "https://excluded.test/t-excl-curl"])
    assert r.returncode == 0, "the origin's own cert must verify with the test root: %s\nagent:\n%s" % (
        r.stderr, lab.stderr())
    assert lab.markers["excluded.test"] in r.stdout
    p = lab.https("excluded.test", path="/t-excl-py")
    assert p["ok"] and p["issuer"] == TEST_ROOT_CN and p["subject"] == "excluded.test", p
    recs = wait_log(lab, lambda x: x.get("mode") == "tunnel" and "excluded.test" in str(x.get("url"))
                    and x.get("app") in ("curl", "python3"), count=2)
    assert {x["app"] for x in recs} == {"curl", "python3"}, recs
    for rec in recs:
        assert "decode.exclude_hosts" in str(rec.get("rule")), rec


def test_disabled_application_is_tunnelled_and_logged_with_its_name(live):
    lab = live
    exe = lab.renamed_curl("disabledcurl")
    r = lab.curl(curl_resolve("good.test") + ["--cacert", lab.pki.ca_cert_path, "https://good.test/t-disabled"],
                 binary=exe)
    assert r.returncode == 0, "a disabled app must see the origin's cert: %s\nagent:\n%s" % (r.stderr, lab.stderr())
    assert lab.markers["good.test"] in r.stdout
    recs = wait_log(lab, lambda x: x.get("app") == "disabledcurl")
    assert len(recs) == 1, recs
    rec = recs[0]
    assert rec["mode"] in ("bypass", "tunnel"), rec
    assert rec.get("app_path") == exe, rec
    assert "disabled_apps" in str(rec.get("rule")), rec
    # and the same request from plain curl is still decoded
    r2 = lab.curl(curl_resolve("good.test") + ["--cacert", lab.agent.ca_path, "https://good.test/t-not-disabled"])
    assert r2.returncode == 0 and lab.markers["good.test"] in r2.stdout, r2.stderr


def test_ipv6_client_is_intercepted_too(live):
    """`shoji intercept` redirects IPv6 to [::1]:PORT (docs/INTERCEPT.md): an
    IPv6 client must reach its site through the agent, not be refused."""
    lab = live
    r = lab.https("good.test", ip=GOOD_IP6, path="/t-ipv6", cafile=lab.agent.ca_path)
    assert r["ok"], "IPv6 client: %r\nagent:\n%s" % (r, lab.stderr()[-1500:])
    assert r["issuer"].startswith(AGENT_CA_CN) and lab.markers["good.test"] in r["body"], r
    recs = wait_log(lab, lambda x: "/t-ipv6" in str(x.get("url")))
    assert len(recs) == 1 and recs[0]["mode"] == "decode" and recs[0].get("app", "").startswith("python3"), recs


# --- plain HTTP on port 80 -------------------------------------------------

def test_plain_http_is_filtered_by_host(live):
    lab = live
    ok = lab.curl(curl_resolve("good.test", 80) + ["-w", "\n%{http_code}", "http://good.test/t-http-ok"])
    assert ok.returncode == 0 and ok.stdout.rstrip().endswith("200"), (ok.stdout, ok.stderr, lab.stderr())
    assert lab.markers["good.test"] in ok.stdout
    bl = lab.curl(curl_resolve("blocked.test", 80) + ["-w", "\n%{http_code}", "http://blocked.test/t-http-bl"])
    assert bl.returncode == 0 and bl.stdout.rstrip().endswith("403"), (bl.stdout, bl.stderr)
    assert lab.markers["blocked.test"] not in bl.stdout
    # the Host header decides, not the address: blocked.test asked of good.test's address
    p = lab.http("blocked.test", ip=ADDR["good.test"], path="/t-http-host")
    assert p["ok"] and p["status"] == 403, p
    assert lab.markers["good.test"] not in p["body"], p
    recs = wait_log(lab, lambda x: "/t-http-" in str(x.get("url")), count=3)
    by = {x["url"].rsplit("/", 1)[1]: x for x in recs}
    assert by["t-http-ok"]["mode"] == "http" and by["t-http-ok"]["status"] == 200, recs
    assert by["t-http-ok"]["url"].startswith("http://good.test"), recs
    assert by["t-http-bl"]["status"] == 403 and by["t-http-bl"].get("app") == "curl", recs
    assert by["t-http-host"]["status"] == 403 and by["t-http-host"].get("app") == "python3", recs


# --- neither TLS nor HTTP on 443 ------------------------------------------

def test_non_tls_non_http_on_443_reaches_its_server_untouched(live):
    lab = live
    payload = bytes([0, 1, 2, 255, 254]) + b"not tls, not http\r\n" + bytes(range(256))
    banner = b"SHOJI-ECHO peer=192.0.2.1:"
    r = lab.client("raw", "--ip", ECHO_IP, "--port", "443", "--send-hex", payload.hex(),
                   "--until-hex", payload.hex(), "--timeout", "5")
    got = r["received"].encode("latin-1")
    assert got.startswith(banner), (r, lab.stderr())
    assert got.endswith(payload), "bytes changed on the way: %r" % got
    assert r["elapsed"] < 4, r   # no peek timeout: the client spoke first
    recs = wait_log(lab, lambda x: ECHO_IP in str(x.get("url")) or ECHO_IP in str(x.get("dst")))
    assert recs and recs[0]["mode"] == "tunnel" and recs[0].get("app") == "python3", recs


def test_server_speaks_first_protocol_on_443_is_passed_through(live):
    """The client waits for the server's banner: the agent cannot sniff a
    first client byte, and must still connect it (after its peek timeout)."""
    lab = live
    r = lab.client("raw", "--ip", ECHO_IP, "--port", "443", "--until-hex", "0d0a", "--timeout", "8")
    assert r["received"].startswith("SHOJI-ECHO peer=192.0.2.1:"), (r, lab.stderr())
    assert r["elapsed"] < 6, r


# --- QUIC ------------------------------------------------------------------

def test_udp_443_is_rejected_at_once_when_quic_blocking_is_on(live):
    lab = live
    r = lab.t.tools("client", "probe-udp", "--host", ADDR["good.test"], "--port", "443", "--timeout", "2")
    assert r["result"] == "rejected", r
    assert r["elapsed"] < 0.5, r
    # control: the same server answers on another UDP port (only 443 is QUIC)
    r = lab.t.tools("client", "probe-udp", "--host", ADDR["good.test"], "--port", "444", "--timeout", "2")
    assert r["result"] == "reply", r


# --- SNI claims -------------------------------------------------------------

def test_excluded_sni_to_the_address_of_its_own_name_is_tunnelled(live):
    """Control for the next test: gsa.apple.com resolves (agent --hosts) to
    203.0.113.2, so a claim to that address is honoured."""
    lab = live
    r = lab.https("gsa.apple.com", path="/t-sni-true")
    assert r["ok"] and r["issuer"] == TEST_ROOT_CN, (r, lab.stderr())
    assert lab.markers["excluded.test"] in r["body"]


@pytest.mark.parametrize("host", ["gsa.apple.com", "blocked.test"])
def test_excluded_sni_sent_to_a_blocked_sites_address_is_not_let_through(live, host):
    lab = live
    path = "/t-sni-lie-" + host.split(".")[0]
    r = lab.https("gsa.apple.com", ip=ADDR["blocked.test"], host=host, path=path)
    assert r["ok"] or r["error"], r
    if r.get("issuer") is not None:
        assert r["issuer"] != TEST_ROOT_CN, "tunnelled undecoded to blocked.test's address: %r" % r
        assert r["issuer"].startswith(AGENT_CA_CN), r
    assert lab.markers["blocked.test"] not in (r.get("body") or ""), \
        "the blocked site's content came through: %r\nagent:\n%s" % (r, lab.stderr())
    recs = wait_log(lab, lambda x: ADDR["blocked.test"] in str(x.get("dst")) and
                    x.get("sni") == "gsa.apple.com" and x.get("mode") == "tunnel", count=1, timeout=0.5)
    assert not recs, "logged as a tunnel: %r" % recs


def test_excluded_sni_that_resolves_nowhere_is_not_tunnelled_on_the_claim_alone(live):
    """x.unresolved.test matches the exclusion *.unresolved.test, but neither
    the hosts file nor DNS (there is none in the namespace) gives it an
    address: the claim cannot be checked, so it must not be honoured."""
    lab = live
    r = lab.https("x.unresolved.test", ip=ADDR["blocked.test"], host="blocked.test", path="/t-sni-nodns",
                  timeout=8)
    if r.get("issuer") is not None:
        assert r["issuer"] != TEST_ROOT_CN, "tunnelled on an unverifiable claim: %r" % r
    assert lab.markers["blocked.test"] not in (r.get("body") or ""), (r, lab.stderr())


def test_tls_without_sni_to_a_blocked_sites_address_is_decided_on_its_certificate(live):
    """No SNI: the agent decides on the original address and the upstream
    certificate's names (issue 5). blocked.test's certificate names a
    blocked host: the client must not get its content."""
    lab = live
    r = lab.client("https", "--ip", ADDR["blocked.test"], "--port", "443", "--sni", "", "--host",
                   "blocked.test", "--path", "/t-nosni-block")
    assert lab.markers["blocked.test"] not in (r.get("body") or ""), (r, lab.stderr()[-1500:])
    if r.get("issuer") is not None:
        assert r["issuer"].startswith(AGENT_CA_CN), r


def test_tls_without_sni_to_an_excluded_sites_address_is_tunnelled_by_its_certificate(live):
    """No SNI, and the origin's certificate names an excluded host: the
    certificate phase tunnels it (the client sees the origin's certificate)."""
    lab = live
    r = lab.client("https", "--ip", ADDR["excluded.test"], "--port", "443", "--sni", "", "--host",
                   "excluded.test", "--path", "/t-nosni-excl")
    assert r["ok"] and r["issuer"] == TEST_ROOT_CN and r["subject"] == "excluded.test", (r, lab.stderr()[-1500:])
    assert lab.markers["excluded.test"] in r["body"], r


# --- the agent's own upstream connections -----------------------------------

def test_agent_upstream_connections_are_not_looped_back(live):
    lab = live
    before = metrics_text(lab)
    n_before = metric(before, "shoji_connections_total")
    seen_before = len(from_client(lab.site_connections("good.test")))
    r = lab.https("good.test", path="/t-loop", cafile=lab.agent.ca_path)
    assert r["ok"] and r["status"] == 200, (r, lab.stderr())
    # the origin saw the request from the client ns address, on at most one
    # new connection (none when a pooled origin connection of an earlier
    # decoded connection carried it)
    assert "peer=192.0.2.1:" in r["body"], r["body"]
    new = from_client(lab.site_connections("good.test"))[seen_before:]
    assert len(new) <= 1, new
    assert all(x["peer"].startswith("192.0.2.1:") for x in new), new
    recs = wait_log(lab, lambda x: "/t-loop" in str(x.get("url")))
    assert len(recs) == 1, recs
    time.sleep(0.3)
    after = metrics_text(lab)
    n_after = metric(after, "shoji_connections_total")
    assert n_before is not None and n_after is not None, after
    # one connection for the client, one for this metrics fetch itself
    assert n_after - n_before <= 2, (n_before, n_after)
    loops = [x for x in lab.access_log() if str(x.get("dst", "")).startswith("127.0.0.1:%d" % TPORT)]
    assert not loops, loops


def test_the_agent_loads_nftables_library_on_demand_for_its_heartbeat(live):
    """libnftables is not linked: the first heartbeat loads it (dlopen), and
    the live set being fresh (checked around every test) shows it works.
    An explicit proxy never maps it (test_memory_idle.py)."""
    with open("/proc/%d/maps" % live.agent.pid) as f:
        maps = f.read()
    assert "libnftables.so" in maps, "transparent agent does not map libnftables"


def test_direct_connection_to_the_transparent_port_is_closed_not_looped(live):
    """A connection made straight to the transparent port has no original
    destination: the agent must close it, not connect to itself."""
    lab = live
    before = len(lab.access_log())
    req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % TPORT
    r = lab.client("raw", "--ip", "127.0.0.1", "--port", str(TPORT), "--send-hex", req.hex(), "--timeout", "5")
    assert r["received"] == "" and r["error"] is None and r["elapsed"] < 2, r
    time.sleep(0.2)
    assert lab.agent.running(), lab.stderr()
    assert len(lab.access_log()) == before, lab.access_log()[before:]
    assert "no original destination" in lab.stderr(), lab.stderr()[-1000:]


def test_twenty_concurrent_transparent_clients_are_all_decoded(live):
    lab = live
    urls = ["https://good.test/t-par-%d" % i for i in range(20)]
    args = curl_resolve("good.test") + ["--cacert", lab.agent.ca_path, "-Z", "--parallel-max", "20",
                                        "-w", "%{http_code}\n"]
    for u in urls:
        args += ["-o", "/dev/null", u]
    r = lab.curl(args, timeout=40)
    codes = [x for x in r.stdout.split() if x.isdigit()]
    assert r.returncode == 0 and codes.count("200") == 20, (r.returncode, r.stdout, r.stderr, lab.stderr()[-1500:])
    recs = wait_log(lab, lambda x: "/t-par-" in str(x.get("url")), count=20)
    assert len(recs) == 20 and all(x["mode"] == "decode" and x.get("app") == "curl" for x in recs), [
        x for x in recs if not (x["mode"] == "decode" and x.get("app") == "curl")]


def test_sighup_policy_reload_applies_to_new_transparent_connections(live):
    lab = live
    with open(lab.policy_path) as f:
        original = f.read()
    pol = json.loads(original)
    pol["block"] = pol["block"] + ["good.test"]
    try:
        with open(lab.policy_path, "w") as f:
            json.dump(pol, f)
        lab.agent.signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while True:
            r = lab.https("good.test", path="/t-hup", cafile=lab.agent.ca_path)
            if r.get("status") == 403 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert r["ok"] and r["status"] == 403 and lab.markers["good.test"] not in r["body"], (r, lab.stderr()[-1000:])
    finally:
        with open(lab.policy_path, "w") as f:
            f.write(original)
        lab.agent.signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while True:
        r = lab.https("good.test", path="/t-hup-back", cafile=lab.agent.ca_path)
        if r.get("status") == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r["status"] == 200, r
    lab.wait_live()   # the heartbeat goes on across reloads


# --- disable removes everything ----------------------------------------------

def test_disable_restores_the_ruleset_and_traffic_goes_direct(lab):
    need_netns()
    t = lab.t
    lab.intercept("disable")
    before = t.run("client", ["nft", "list", "ruleset"]).stdout
    try:
        lab.enable("--fail-mode", "closed", "--exclude", "198.51.100.99")
        during = t.run("client", ["nft", "list", "ruleset"]).stdout
        assert "table inet shoji" in during
        out = lab.intercept("disable").stdout
        assert "disabled" in out
        assert t.run("client", ["nft", "list", "ruleset"]).stdout == before
        # the running agent's heartbeat must not bring the table back
        time.sleep(1.2)   # the agent heartbeats every second
        assert t.run("client", ["nft", "list", "ruleset"]).stdout == before, lab.stderr()
        # and traffic now goes straight to the origin: its own certificate
        r = lab.https("good.test", path="/t-direct")
        assert r["ok"] and r["issuer"] == TEST_ROOT_CN, r
        assert not wait_log(lab, lambda x: "/t-direct" in str(x.get("url")), timeout=0.5)
    finally:
        lab.enable()


# --- failure behaviour ------------------------------------------------------

@pytest.fixture(scope="module")
def fail_lab(tmp_path_factory, pki, agent_ca):
    """A second topology for the tests that kill the agent (each test
    starts its own agent in it)."""
    need_netns()
    with Topology() as t:
        lab = Lab(t, pki, tmp_path_factory.mktemp("transparent-fail"), ca_from=agent_ca)
        yield lab
        if lab.agent and lab.agent.running():
            lab.agent.stop(check=False)


@pytest.fixture
def fresh_lab(fail_lab):
    """fail_lab with interception off and no agent; the policy and learned
    exclusions are put back afterwards."""
    fail_lab.intercept("disable")
    with open(fail_lab.policy_path) as f:
        policy = f.read()
    yield fail_lab
    if fail_lab.agent and fail_lab.agent.running():
        fail_lab.agent.stop(check=True)
    with open(fail_lab.policy_path, "w") as f:
        f.write(policy)
    learned = os.path.join(fail_lab.state_dir, "learned.json")
    if os.path.exists(learned):
        os.unlink(learned)


def connect_443(lab, ip):
    """A bare TCP connect to ip:443 from the client (bounded: 3 s)."""
    return lab.client("raw", "--ip", ip, "--port", "443", "--expect", "0", "--timeout", "3")


def test_fail_open_after_sigkill_traffic_flows_direct(fresh_lab):
    lab = fresh_lab
    lab.enable("--fail-mode", "open", wait_live=False)
    lab.start_agent()
    lab.wait_live()
    r = lab.https("good.test", path="/t-open-before")
    assert r["ok"] and r["issuer"].startswith(AGENT_CA_CN), r
    lab.kill_agent()
    t0 = time.monotonic()
    outcomes = []   # (started after the kill, connected, error, seconds the connect took)
    while time.monotonic() - t0 < 10:
        started = time.monotonic() - t0
        p = connect_443(lab, ADDR["good.test"])
        outcomes.append((round(started, 2), p["ok"], p["error"], p["elapsed"]))
        assert p["elapsed"] < 1.0, "a connection hung after the agent died: %r" % outcomes
        assert p["ok"] or "ConnectionRefused" in str(p["error"]), outcomes
        # the heartbeat element (ttl 3 s, refreshed every second) has expired
        # for every connection begun 3.3 s after the kill: those go direct
        assert p["ok"] or started < 3.3, "still refused %.1f s after the kill: %r" % (started, outcomes)
        if p["ok"] and started >= 3.3:
            break
        time.sleep(0.2)
    assert outcomes[-1][1], "traffic never flowed direct after the agent was killed: %r" % outcomes
    r = lab.https("good.test", path="/t-open-after")
    assert r["ok"] and r["issuer"] == TEST_ROOT_CN and lab.markers["good.test"] in r["body"], r
    # a restarted agent takes the traffic back ...
    lab.start_agent()
    lab.wait_live()
    r = lab.https("good.test", path="/t-open-again")
    assert r["ok"] and r["issuer"].startswith(AGENT_CA_CN), (r, lab.stderr())
    # ... and a clean stop (SIGTERM) lets it flow direct at once, not after the ttl
    lab.agent.stop(check=True)
    r = lab.https("good.test", path="/t-stopped")   # the very first try, no waiting
    assert r["ok"] and r["issuer"] == TEST_ROOT_CN and r["elapsed"] < 1.0, r


def test_fail_closed_after_sigkill_connections_are_refused_at_once(fresh_lab):
    lab = fresh_lab
    lab.enable("--fail-mode", "closed", wait_live=False)
    lab.start_agent()
    lab.wait_live()
    r = lab.https("good.test", path="/t-closed-before")
    assert r["ok"] and r["issuer"].startswith(AGENT_CA_CN), r
    seen = len(from_client(lab.site_connections()))
    lab.kill_agent()
    t0 = time.monotonic()
    outcomes = []
    while time.monotonic() - t0 < 3.8:   # through the first ttl (3 s) and past it
        for ip in (ADDR["good.test"], ADDR["excluded.test"]):
            p = connect_443(lab, ip)
            outcomes.append((round(time.monotonic() - t0, 2), ip, p["ok"], p["error"], p["elapsed"]))
            assert not p["ok"], "fail-closed let a connection through: %r" % outcomes
            assert "ConnectionRefused" in str(p["error"]) and p["elapsed"] < 1.0, outcomes
        time.sleep(0.3)
    h = lab.http("good.test", path="/t-closed-80")
    assert not h["ok"] and "ConnectionRefused" in str(h["error"]), h
    assert len(from_client(lab.site_connections())) == seen, "an origin was reached while failing closed"


def test_automatic_conflict_avoidance_works_on_transparent_connections(fresh_lab):
    """A program that rejects the shoji CA (here: curl trusting only the
    origin's CA) makes the agent learn {curl, good.test}; its next
    connection is tunnelled and works, other programs are still decoded."""
    lab = fresh_lab
    with open(lab.policy_path) as f:
        pol = json.load(f)
    pol["auto_avoid"] = {"enabled": True}
    with open(lab.policy_path, "w") as f:
        json.dump(pol, f)
    lab.enable(wait_live=False)
    lab.start_agent()
    lab.wait_live()
    args = curl_resolve("good.test") + ["--cacert", lab.pki.ca_cert_path, "https://good.test/t-avoid"]
    first = lab.curl(args)
    assert first.returncode == 60, (first.returncode, first.stderr)
    ev = wait_log(lab, lambda x: x.get("event") == "conflict")
    assert ev and ev[0].get("app") == "curl" and "good.test" in json.dumps(ev[0]), (ev, lab.stderr()[-1500:])
    second = lab.curl(args)
    assert second.returncode == 0 and lab.markers["good.test"] in second.stdout, (second.stderr, lab.stderr()[-1500:])
    p = lab.https("good.test", path="/t-avoid-py", cafile=lab.agent.ca_path)
    assert p["ok"] and p["issuer"].startswith(AGENT_CA_CN), p
    out = lab.t.run("client", [lab.agent_bin(), "conflicts", "list", "--state-dir", lab.state_dir]).stdout
    assert "good.test" in out and "curl" in out, out
