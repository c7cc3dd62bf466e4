"""Coexistence end to end (issue 4) through the real agent: every pattern
form of the vendor note, with local origins standing in for the vendors'
hosts (--hosts), filtering-disabled applications (copies of curl renamed
NTRTSCAN, skypehost, skypeapp) and automatic conflict avoidance with real
clients that refuse the agent's certificate (curl --pinnedpubkey, a Python
client trusting only the origin's CA).

"Tunnelled" is proved by the certificate the client receives: the origin's
own (byte for byte, verified with the test PKI's CA); "decoded" by a
certificate issued by the agent's CA. Every decision is also asked of
`shoji explain --json` and compared with the access log's rule."""
import json
import os
import shutil
import ssl
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from helpers.agent import Agent, run_cli  # noqa: E402
from helpers.client import HTTPReader, _request_bytes, connect_tunnel, peer_cert  # noqa: E402
from helpers.origin import Origin  # noqa: E402
from helpers.pki import load_cert, spki_sha256_b64, verify_issued_by  # noqa: E402
from helpers.tools import curl_fetch  # noqa: E402

VENDOR_NAMES = ["osce.icrc.trendmicro.com", "www.trendmicro.com", "gsa.apple.com",
                "p25-buy.itunes.apple.com", "apple.com", "setup.icloud.com",
                "login.skype.test", "blocked.skype.test", "plain-app.test"]
CERT_NAME = "trustedsourceserver_imqa01"

POLICY = {
    "name": "coexistence e2e",
    "default_action": "allow",
    "block": ["blocked.skype.test"],
    "disabled_apps": ["NTRTSCAN", "skypehost", {"app": "skypeapp", "hosts": ["*.skype.test"]}],
    "decode": {"enabled": True, "exclude_hosts": [
        "*icrc.trendmicro.com", "gsa.apple.com", "*.apple.com", "*.icloud.com",
        "127.0.0.7", "127.0.0.8/29", CERT_NAME]},
    "auto_avoid": {"enabled": False},
}


def write_hosts(path, entries):
    with open(path, "w") as f:
        for name, addr in entries:
            f.write("%s %s\n" % (addr, name))
    return str(path)


@pytest.fixture(scope="module")
def env(tmp_path_factory, pki):
    from conftest import require_agent_binary
    require_agent_binary()
    d = tmp_path_factory.mktemp("coexist")
    pol = d / "policy.json"
    pol.write_text(json.dumps(POLICY, indent=2) + "\n")
    hosts = write_hosts(d / "hosts", [(n, "127.0.0.1") for n in VENDOR_NAMES] + [
        ("mcafee-like.test", "127.0.0.1"), ("mcafee-self.test", "127.0.0.1"),
        ("cidr.test", "127.0.0.10")])
    # one origin per name, each with a certificate naming only that host:
    # host patterns are matched against certificate names too, so a shared
    # certificate would let one name's exclusion tunnel every other name
    o = {n: Origin(n, pki.leaf(n, label="coexist-" + n)) for n in VENDOR_NAMES}
    o.update({
        "ip7": Origin("127.0.0.7", pki.leaf("127.0.0.7"), host="127.0.0.7"),
        "cidr": Origin("cidr.test", pki.leaf("cidr.test"), host="127.0.0.10"),
        "cidr_ip": Origin("127.0.0.9", pki.leaf("127.0.0.9"), host="127.0.0.9"),
        # CN only, no SAN, served under another name (our verification
        # fails on the name; the self-signed one fails on the issuer too)
        "mcafee": Origin("mcafee-like.test", pki.leaf(CERT_NAME, sans=[], label="coexist-cn")),
        "mcafee_self": Origin("mcafee-self.test", pki.self_signed(CERT_NAME, sans=[],
                                                                  label="coexist-cn-self")),
    })
    for x in o.values():
        x.start()
    bindir = d / "bin"
    bindir.mkdir()
    apps = {}
    for name in ("NTRTSCAN", "skypehost", "skypeapp"):
        apps[name] = str(bindir / name)
        shutil.copy(shutil.which("curl"), apps[name])
    a = Agent(str(d / "state"), hosts_path=hosts, upstream_ca=pki.ca_cert_path,
              access_log=str(d / "access.log"), policy=str(pol))
    a.ca_init()
    a.start()
    ns = type("Env", (), {})()
    ns.dir, ns.policy, ns.agent, ns.o, ns.apps, ns.hosts = d, str(pol), a, o, apps, hosts
    yield ns
    for x in o.values():
        x.stop()
    a.stop(check=True)


@pytest.fixture
def agent(env):
    yield env.agent
    assert env.agent.running(), "the agent died: %s" % env.agent.stderr()


def der(cert):
    from cryptography.hazmat.primitives import serialization
    return cert.public_bytes(serialization.Encoding.DER)


def tls_fetch(proxy_port, host, port, path, cafile=None, server_hostname=None):
    """CONNECT + TLS + GET path: (Response, the leaf the client saw).
    cafile None: no verification (the client only looks at the certificate)."""
    s, r = connect_tunnel(proxy_port, host, port)
    assert r.status == 200, "CONNECT %s:%d -> %r" % (host, port, r)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile:
        ctx.load_verify_locations(cafile=cafile)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    tls = ctx.wrap_socket(s, server_hostname=server_hostname or host)
    try:
        tls.sendall(_request_bytes("GET", path, [("Connection", "close")], None, "%s:%d" % (host, port)))
        return HTTPReader(tls).response("GET"), peer_cert(tls)
    finally:
        tls.close()


def wait_line(agent, pred, timeout=6.0):
    recs = agent.wait_access_log(pred, timeout=timeout)
    assert recs, "no access-log line matched; last lines: %r" % agent.access_log_records()[-4:]
    return recs[-1]


def tunnel_line(agent, host, port, **match):
    """The CONNECT line for host:port (and the given key values): tunnel
    lines are written when the tunnel closes, so wait for the right one."""
    target = "%s:%d" % (host, port)
    return wait_line(agent, lambda r: r.get("method") == "CONNECT" and target in str(r.get("url"))
                     and all(r.get(k) == v for k, v in match.items()))


def explain(env, url, *args):
    return json.loads(run_cli(["explain", url, "--policy", env.policy, "--json"] + list(args)).stdout)


def assert_tunnelled(agent, env, origin, host, path, pattern, on, cafile, *explain_args,
                     server_hostname=None):
    """on: the fact the rule must name (host, ip, cert); a tuple allows several."""
    ons = on if isinstance(on, tuple) else (on,)
    r, cert = tls_fetch(agent.port, host, origin.port, path, cafile=cafile,
                        server_hostname=server_hostname)
    assert r.status == 200 and origin.marker in r.text, r
    assert der(cert) == der(origin.cert.cert), "the client did not get the origin's certificate " \
        "(issuer %s)" % cert.issuer.rfc4514_string()
    rec = tunnel_line(agent, host, origin.port)
    assert rec["mode"] == "tunnel", rec
    assert pattern in rec["rule"] and any(("matched %s " % x) in rec["rule"] for x in ons), rec
    ex = explain(env, "https://%s:%d%s" % (host, origin.port, path), *explain_args)
    assert ex["result"] == "tunnel" and ex["rule"] == rec["rule"], (ex, rec)
    last = ex["phases"][-1]
    assert last["on"] in ons and pattern in last["rule"], ex
    return rec


def assert_decoded(agent, env, origin, host, path):
    r, cert = tls_fetch(agent.port, host, origin.port, path, cafile=agent.ca_path)
    assert r.status == 200 and origin.marker in r.text, r
    verify_issued_by(cert, load_cert(agent.ca_path))
    rec = wait_line(agent, lambda x: path in str(x.get("url")))
    assert rec["mode"] == "decode", rec
    ex = explain(env, "https://%s:%d%s" % (host, origin.port, path))
    assert ex["result"] == rec["action"] == "allow" and ex["rule"] == rec["rule"], (ex, rec)
    assert ex["phases"][0]["action"] == "decode", ex
    return rec


# ---- pattern forms of the vendor note ----------------------------------------

def test_glob_icrc_trendmicro_tunnels_osce_and_decodes_www(agent, env, pki):
    assert_tunnelled(agent, env, env.o["osce.icrc.trendmicro.com"], "osce.icrc.trendmicro.com", "/tm",
                     '"*icrc.trendmicro.com"', "host", pki.ca_cert_path)
    assert_decoded(agent, env, env.o["www.trendmicro.com"], "www.trendmicro.com", "/tm-www")


def test_apple_and_icloud_patterns(agent, env, pki):
    o = env.o
    # the exact entry comes first in the list, so it is the one reported
    assert_tunnelled(agent, env, o["gsa.apple.com"], "gsa.apple.com", "/gsa", 'decode.exclude_hosts[1] "gsa.apple.com"',
                     "host", pki.ca_cert_path)
    assert_tunnelled(agent, env, o["p25-buy.itunes.apple.com"], "p25-buy.itunes.apple.com", "/itunes",
                     'decode.exclude_hosts[2] "*.apple.com"', "host", pki.ca_cert_path)
    assert_tunnelled(agent, env, o["setup.icloud.com"], "setup.icloud.com", "/icloud", '"*.icloud.com"', "host",
                     pki.ca_cert_path)
    # "*.apple.com" does not cover apple.com itself
    assert_decoded(agent, env, o["apple.com"], "apple.com", "/apple-bare")


def test_exclusion_matches_the_sni_when_the_connect_host_differs(agent, env):
    """CONNECT names a host that is not excluded; the ClientHello's SNI is."""
    o = env.o["plain-app.test"]
    r, cert = tls_fetch(agent.port, "plain-app.test", o.port, "/sni-match",
                        server_hostname="osce.icrc.trendmicro.com")
    assert r.status == 200 and o.marker in r.text, r
    assert der(cert) == der(o.cert.cert), "decoded although the SNI is excluded"
    rec = tunnel_line(agent, "plain-app.test", o.port, sni="osce.icrc.trendmicro.com")
    assert rec["mode"] == "tunnel" and rec["sni"] == "osce.icrc.trendmicro.com", rec
    assert rec["rule"] == 'decode.exclude_hosts[0] "*icrc.trendmicro.com" matched sni osce.icrc.trendmicro.com', rec
    ex = explain(env, "https://plain-app.test:%d/sni-match" % o.port, "--sni", "osce.icrc.trendmicro.com")
    assert ex["result"] == "tunnel" and ex["rule"] == rec["rule"], (ex, rec)
    assert ex["phases"][0]["on"] == "sni", ex


def test_excluded_loopback_ip_connected_by_ip(agent, env, pki):
    o = env.o["ip7"]
    # connected by IP: the CONNECT host is the address itself
    rec = assert_tunnelled(agent, env, o, "127.0.0.7", "/ip7", '"127.0.0.7"', ("ip", "host"),
                           pki.ca_cert_path)
    assert rec["dst"].startswith("127.0.0.7:"), rec


def test_cidr_matches_an_address_connected_by_ip(agent, env, pki):
    o = env.o["cidr_ip"]
    rec = assert_tunnelled(agent, env, o, "127.0.0.9", "/cidr-ip", 'decode.exclude_hosts[5] "127.0.0.8/29"',
                           ("ip", "host"), pki.ca_cert_path)
    assert rec["dst"].startswith("127.0.0.9:"), rec




def test_cidr_matches_the_destination_ip_of_a_name(agent, env, pki):
    o = env.o["cidr"]
    assert_tunnelled(agent, env, o, "cidr.test", "/cidr", '"127.0.0.8/29"', "ip", pki.ca_cert_path,
                     "--ip", "127.0.0.10")


@pytest.mark.parametrize("which,host", [("mcafee", "mcafee-like.test"),
                                        ("mcafee_self", "mcafee-self.test")])
def test_certificate_name_rule_tunnels_by_the_upstream_cert(agent, env, which, host):
    """CN trustedsourceserver_imqa01 (no SAN) served as another name: our
    verification fails on the name (and, self-signed, on the issuer): the
    rule still applies, and the client gets the origin's certificate."""
    o = env.o[which]
    before = o.connections
    path = "/cn-" + which
    rec = assert_tunnelled(agent, env, o, host, path, '"%s"' % CERT_NAME, "cert", None,
                           "--cert-name", CERT_NAME)
    assert CERT_NAME in rec["rule"]
    assert len(o.requests_for(path)) == 1
    # the probe (a full handshake, dropped) and the replayed ClientHello
    assert o.connections - before == 2, o.connections - before




def test_certificate_names_are_remembered_no_second_probe(agent, env):
    o = env.o["mcafee"]
    tls_fetch(agent.port, "mcafee-like.test", o.port, "/cn-warm")
    before = o.connections
    r, cert = tls_fetch(agent.port, "mcafee-like.test", o.port, "/cn-again")
    assert r.status == 200 and der(cert) == der(o.cert.cert)
    assert o.connections - before == 1, "second connection probed again (%d origin connections)" % (
        o.connections - before)


# ---- filtering-disabled applications -----------------------------------------

def app_fetch(env, app, host, path, cafile):
    port = env.o[host].port
    exe = env.apps.get(app, "curl")
    return curl_fetch(env.agent.port, "https://%s:%d%s" % (host, port, path), cafile=cafile,
                      timeout=20, exe=exe)


@pytest.mark.parametrize("app", ["NTRTSCAN", "skypehost"])
def test_disabled_app_is_tunnelled_plain_curl_decoded(agent, env, pki, app):
    v = env.o["plain-app.test"]
    path = "/app-%s" % app
    status, body, certs, p = app_fetch(env, app, "plain-app.test", path, pki.ca_cert_path)
    assert p.returncode == 0 and status == 200, (p.returncode, p.stderr)
    assert v.marker.encode() in body and der(certs[0]) == der(v.cert.cert)
    rec = tunnel_line(agent, "plain-app.test", v.port, app=app)
    assert rec["app"] == app and rec["mode"] == "bypass", rec
    assert rec["app_path"].endswith("/" + app) and rec["pid"] > 0, rec
    assert ('"%s"' % app) in rec["rule"], rec
    ex = explain(env, "https://plain-app.test:%d%s" % (v.port, path), "--app", app)
    assert ex["result"] == "bypass" and ex["rule"] == rec["rule"], (ex, rec)
    # plain curl, same host: decoded (our CA), and named "curl"
    status, body, certs, p = app_fetch(env, "curl", "plain-app.test", path + "-curl", agent.ca_path)
    assert p.returncode == 0 and status == 200, p.stderr
    verify_issued_by(certs[0], load_cert(agent.ca_path))
    rec = wait_line(agent, lambda r: (path + "-curl") in str(r.get("url")))
    assert rec["mode"] == "decode" and rec["app"] == "curl", rec


def test_disabled_app_is_not_filtered_even_on_a_blocked_host(agent, env, pki):
    v = env.o["blocked.skype.test"]
    status, body, certs, p = app_fetch(env, "NTRTSCAN", "blocked.skype.test", "/nt-blocked",
                                       pki.ca_cert_path)
    assert p.returncode == 0 and status == 200 and v.marker.encode() in body, p.stderr


def test_narrow_app_hosts_form(agent, env, pki):
    v = env.o["login.skype.test"]
    # skypeapp -> *.skype.test: tunnelled (origin's certificate)
    status, body, certs, p = app_fetch(env, "skypeapp", "login.skype.test", "/skype-login",
                                       pki.ca_cert_path)
    assert p.returncode == 0 and status == 200 and der(certs[0]) == der(v.cert.cert), p.stderr
    rec = tunnel_line(agent, "login.skype.test", v.port, app="skypeapp")
    assert rec["app"] == "skypeapp" and rec["mode"] == "tunnel", rec
    assert '"*.skype.test"' in rec["rule"], rec
    ex = explain(env, "https://login.skype.test:%d/skype-login" % v.port, "--app", "skypeapp")
    assert ex["result"] == "tunnel" and ex["rule"] == rec["rule"], (ex, rec)
    # skypeapp elsewhere: decoded as usual
    status, body, certs, p = app_fetch(env, "skypeapp", "www.trendmicro.com", "/skype-other",
                                       agent.ca_path)
    assert p.returncode == 0 and status == 200, p.stderr
    verify_issued_by(certs[0], load_cert(agent.ca_path))
    rec = wait_line(agent, lambda r: "/skype-other" in str(r.get("url")))
    assert rec["app"] == "skypeapp" and rec["mode"] == "decode", rec
    # skypeapp to a blocked host of its own list: still blocked
    v = env.o["blocked.skype.test"]
    before = len(v.requests_for("/skype-blocked"))
    status, body, certs, p = app_fetch(env, "skypeapp", "blocked.skype.test", "/skype-blocked",
                                       pki.ca_cert_path)
    assert v.marker.encode() not in body and status != 200, (status, p.stderr)
    # not decoded for this app, so no page is possible: refused at CONNECT
    assert "CONNECT tunnel failed, response 403" in p.stderr, p.stderr
    assert len(v.requests_for("/skype-blocked")) == before
    rec = wait_line(agent, lambda r: "blocked.skype.test" in str(r.get("url")) and r.get("app") == "skypeapp")
    assert rec["action"] == "block" and 'block[0] "blocked.skype.test"' in rec["rule"], rec
    ex = explain(env, "https://blocked.skype.test:%d/skype-blocked" % v.port, "--app", "skypeapp")
    assert ex["result"] == "block" and ex["rule"] == rec["rule"], (ex, rec)


# ---- automatic conflict avoidance ---------------------------------------------

def conflict_event(agent, app, host, timeout=4):
    return agent.wait_access_log(lambda r: r.get("event") == "conflict" and r.get("app") == app
                                 and host in json.dumps(r), timeout=timeout)


def avoidance_scenario(ns, attempt, app, host, other_app=None):
    """attempt(path) -> (ok, leaf cert or None, detail). First attempt fails,
    a conflict event names app, host and fix, the next one is tunnelled,
    still after a restart, and no longer once the ttl has passed."""
    a, o = ns.agent, ns.origin
    ok, _, detail = attempt("/first")
    assert not ok, "%s accepted the agent's certificate: %s" % (app, detail)
    ev = conflict_event(a, app, host)
    assert ev, "no conflict event for %s -> %s after: %s\naccess log: %r\nagent stderr:\n%s" % (
        app, host, detail, a.access_log_records(), a.stderr()[-2000:])
    ev = ev[0]
    assert ev.get("host") == host, ev
    assert ev.get("fix") == 'disabled_apps += {"app": "%s", "hosts": ["%s"]}' % (app, host), ev
    ok, cert, detail = attempt("/second")
    assert ok, "%s still fails after the conflict was learned: %s" % (app, detail)
    assert der(cert) == der(o.cert.cert), "not the origin's certificate"
    rec = wait_line(a, lambda x: x.get("mode") == "tunnel" and host in str(x.get("url")))
    assert rec["app"] == app and rec["rule"].startswith(
        'learned exclusion "%s" -> "%s"' % (app, host)), rec
    if other_app:   # scope app+host: another application to that host is still decoded
        other_app(host)
    ex = json.loads(run_cli(["explain", "https://%s/" % host, "--policy", ns.policy, "--json",
                             "--app", app, "--learned", rec["rule"]]).stdout)
    assert ex["result"] == "tunnel" and "learned exclusion" in ex["rule"], ex
    # persisted in the state dir: survives a restart
    a.restart()
    ok, cert, detail = attempt("/after-restart")
    assert ok, "the learned exclusion was forgotten by the restart: %s" % detail
    with open(os.path.join(a.state_dir, "learned.json")) as f:
        entries = [e for e in json.load(f)["entries"] if e["host"] == host]
    assert len(entries) == 1 and entries[0]["app"] == app, entries
    e = entries[0]
    assert e["expires"] - e["first_seen"] == TTL, e
    delay = e["expires"] - time.time() + 1.0
    assert delay < TTL + 1, e
    time.sleep(max(0.0, delay))
    ok, _, detail = attempt("/expired")
    assert not ok, "the learned exclusion did not expire after its ttl of %d s" % TTL


TTL = 15


@pytest.fixture
def avoid_env(tmp_path, pki):
    names = ["pinned.test", "pycheck.test"]
    origin = Origin("pinned", pki.leaf("pinned.test", sans=names, label="coexist-pinned")).start()
    hosts = write_hosts(tmp_path / "hosts", [(n, "127.0.0.1") for n in names])
    pol = tmp_path / "policy.json"
    pol.write_text(json.dumps({"auto_avoid": {"enabled": True, "ttl": TTL, "scope": "app+host"}}) + "\n")
    a = Agent(str(tmp_path / "state"), hosts_path=hosts, upstream_ca=pki.ca_cert_path,
              access_log=str(tmp_path / "access.log"), policy=str(pol))
    a.ca_init()
    a.start()
    bundle = tmp_path / "both-cas.pem"
    bundle.write_bytes(open(a.ca_path, "rb").read() + open(pki.ca_cert_path, "rb").read())
    ns = type("AvoidEnv", (), {})()
    ns.agent, ns.origin, ns.bundle, ns.policy = a, origin, str(bundle), str(pol)
    ns.pin = "sha256//" + spki_sha256_b64(origin.cert.cert)
    yield ns
    origin.stop()
    a.stop(check=True)




def test_pinned_curl_conflict_is_learned_persisted_and_expires(avoid_env):
    """curl trusts our CA (as on a managed machine) but pins the origin's key:
    it completes the handshake, finds the wrong key and hangs up."""
    ns = avoid_env

    def attempt(path):
        s, body, certs, p = curl_fetch(ns.agent.port, "https://pinned.test:%d%s" % (ns.origin.port, path),
                                       "--pinnedpubkey", ns.pin, cafile=ns.bundle, timeout=15)
        ok = p.returncode == 0 and s == 200 and ns.origin.marker.encode() in body
        return ok, certs[0] if certs else None, "curl exit %d: %s" % (p.returncode, p.stderr.strip())
    avoidance_scenario(ns, attempt, "curl", "pinned.test")


def test_python_client_trusting_only_the_origin_ca_is_learned_persisted_and_expires(avoid_env, pki):
    ns = avoid_env

    def attempt(path):
        try:
            r, cert = tls_fetch(ns.agent.port, "pycheck.test", ns.origin.port, path, cafile=pki.ca_cert_path)
        except (ssl.SSLError, OSError) as e:
            return False, None, repr(e)
        return r.status == 200 and ns.origin.marker in r.text, cert, repr(r)
    def curl_is_decoded(host):
        s, body, certs, p = curl_fetch(ns.agent.port, "https://%s:%d/other-app" % (host, ns.origin.port),
                                       cafile=ns.agent.ca_path, timeout=15)
        assert p.returncode == 0 and s == 200, p.stderr
        verify_issued_by(certs[0], load_cert(ns.agent.ca_path))
    avoidance_scenario(ns, attempt, "python3", "pycheck.test", other_app=curl_is_decoded)
