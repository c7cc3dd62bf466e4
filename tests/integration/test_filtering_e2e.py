"""Filtering end to end (issue 3) through the real agent: the shipped sample
category lists (data/categories) compiled with `shoji catdb compile`, a
policy that blocks gambling, makes social_networks and one host view-only,
write-restricts news and enforces safe search; local origins stand in for
every host (--hosts maps them all to 127.0.0.1, the test PKI issues their
certificates). Every case also asks `shoji explain URL --policy P --json`
and checks that its result and rule are what the proxy did (the access
log's `action` and `rule`)."""
import html
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from helpers.agent import REPO, Agent, free_port, run_cli, sanitizer_env, shoji_bin  # noqa: E402
from helpers.agent import write_hosts_file  # noqa: E402
from helpers.client import HTTPReader, ProxyClient, connect_tunnel, https_get  # noqa: E402
from helpers.origin import Origin  # noqa: E402
from helpers.tools import curl  # noqa: E402

SITE_HOSTS = ["casino.example", "www.casino.example", "news.example", "social.example",
              "viewonly.test", "open.test"]
ENGINES = ["www.google.com", "www.bing.com", "duckduckgo.com", "www.youtube.com"]


def policy_doc(db):
    return {
        "name": "filtering e2e",
        "default_action": "allow",
        "category_db": db,
        "categories": {"gambling": "block", "social_networks": "view_only"},
        "view_only": ["viewonly.test"],
        "write_restriction": ["news"],
        "safe_search": True,
        "auto_avoid": {"enabled": False},
    }


def write_policy(path, doc):
    with open(path, "w") as f:
        f.write(json.dumps(doc, indent=2) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def env(tmp_path_factory, pki):
    """Category db, policy, hosts file, origins and one agent for the module."""
    from conftest import require_agent_binary
    require_agent_binary()
    d = tmp_path_factory.mktemp("filtering")
    db = str(d / "categories.db")
    run_cli(["catdb", "compile", os.path.join(REPO, "data", "categories"), "-o", db])
    pol = write_policy(d / "policy.json", policy_doc(db))
    hosts = write_hosts_file(d / "hosts", SITE_HOSTS + ENGINES)
    site_cert = pki.leaf("casino.example", sans=SITE_HOSTS, label="filtering-sites")
    origins = {"tls": Origin("sites-tls", site_cert).start(), "plain": Origin("sites-plain").start()}
    for e in ENGINES:
        origins[e] = Origin(e, pki.leaf(e)).start()
    a = Agent(str(d / "state"), hosts_path=hosts, upstream_ca=pki.ca_cert_path,
              access_log=str(d / "access.log"), policy=pol)
    a.ca_init()
    a.start()
    ns = type("Env", (), {})()
    ns.dir, ns.db, ns.policy, ns.hosts, ns.agent, ns.origins = d, db, pol, hosts, a, origins
    yield ns
    for o in origins.values():
        o.stop()
    a.stop(check=True)


@pytest.fixture
def agent(env):
    yield env.agent
    assert env.agent.running(), "the agent died: %s" % env.agent.stderr()


def explain(url, policy, *args):
    p = run_cli(["explain", url, "--policy", policy, "--json"] + list(args))
    return json.loads(p.stdout)


def log_line(agent, needle, timeout=5.0):
    """The one access-log record whose url contains needle."""
    recs = agent.wait_access_log(lambda r: needle in str(r.get("url", "")), timeout=timeout)
    assert len(recs) == 1, "expected one access-log line for %s, got %r" % (needle, recs)
    return recs[0]


def assert_explain_agrees(rec, url, policy, *args):
    """explain's final result and rule are the proxy's action and rule."""
    ex = explain(url, policy, *args)
    assert ex["result"] == rec["action"], "explain %s says %r, proxy did %r\nexplain: %s\nlog: %s" % (
        url, ex["result"], rec["action"], ex, rec)
    assert ex["rule"] == rec["rule"], "explain %s rule %r != access-log rule %r" % (
        url, ex["rule"], rec["rule"])
    return ex


def assert_block_page(r, url, cat_name, rule, ja=False):
    assert r.status == 403, r
    assert "text/html" in (r.header("content-type") or ""), r.headers
    text = html.unescape(r.text)
    assert url in text, "block page does not name the URL %s:\n%s" % (url, text)
    assert rule in text, "block page does not name the rule %r:\n%s" % (rule, text)
    if cat_name:
        assert cat_name in text, "block page lacks category %r:\n%s" % (cat_name, text)
    if ja:
        assert 'lang="ja"' in text and "ブロック" in text, text
    else:
        assert 'lang="en"' in text and "blocked" in text and "ブロック" not in text, text


# ---- block and allow, plain HTTP and decoded HTTPS -------------------------

def test_blocked_category_over_plain_http_gets_english_block_page(agent, env):
    o = env.origins["plain"]
    url = "http://casino.example:%d/http-blocked/en" % o.port
    with ProxyClient(agent.port) as c:
        r = c.request("GET", url, headers=[("Accept-Language", "en-US,en;q=0.8")])
    rec = log_line(agent, "/http-blocked/en")
    assert rec["action"] == "block" and rec["status"] == 403, rec
    assert rec["rule"] == "categories.gambling = block", rec
    assert "gambling" in json.dumps(rec["categories"]), rec
    assert_block_page(r, url, "Gambling", rec["rule"])
    assert o.marker not in r.text
    assert not o.requests_for("/http-blocked"), "a blocked request reached the origin"
    assert_explain_agrees(rec, url, env.policy)


def test_blocked_category_over_decoded_https_gets_japanese_block_page(agent, env):
    o = env.origins["tls"]
    url = "https://www.casino.example:%d/https-blocked/ja" % o.port
    r, cert = https_get(agent.port, "www.casino.example", o.port, "/https-blocked/ja",
                        cafile=agent.ca_path, headers=[("Accept-Language", "ja,en;q=0.5")])
    # the client verified our CA's certificate: the connection was decoded
    assert cert.issuer != env.origins["tls"].cert.cert.issuer
    rec = log_line(agent, "/https-blocked/ja")
    assert rec["mode"] == "decode" and rec["action"] == "block", rec
    assert_block_page(r, url, "ギャンブル", rec["rule"], ja=True)
    assert "categories.gambling = block" in rec["rule"], rec
    assert not o.requests_for("/https-blocked"), "a blocked request reached the origin"
    assert_explain_agrees(rec, url, env.policy)


def test_blocked_https_without_accept_language_is_english(agent, env):
    o = env.origins["tls"]
    url = "https://casino.example:%d/https-blocked/none" % o.port
    r, _ = https_get(agent.port, "casino.example", o.port, "/https-blocked/none", cafile=agent.ca_path)
    rec = log_line(agent, "/https-blocked/none")
    assert_block_page(r, url, "Gambling", rec["rule"])
    assert_explain_agrees(rec, url, env.policy)


def test_allowed_hosts_get_their_content_over_http_and_https(agent, env):
    tls, plain = env.origins["tls"], env.origins["plain"]
    url = "http://open.test:%d/allowed/http" % plain.port
    with ProxyClient(agent.port) as c:
        r = c.request("GET", url)
    assert r.status == 200 and plain.marker in r.text, r
    rec = log_line(agent, "/allowed/http")
    assert rec["action"] == "allow" and rec["rule"] == "default_action = allow", rec
    assert_explain_agrees(rec, url, env.policy)
    # news.example is in a category (news) with no category rule: allowed
    url = "https://news.example:%d/allowed/https" % tls.port
    r, _ = https_get(agent.port, "news.example", tls.port, "/allowed/https", cafile=agent.ca_path)
    assert r.status == 200 and tls.marker in r.text, r
    rec = log_line(agent, "/allowed/https")
    assert rec["mode"] == "decode" and rec["action"] == "allow", rec
    assert "news" in json.dumps(rec["categories"]), rec
    assert_explain_agrees(rec, url, env.policy)


# ---- uploads: write restriction and view_only -------------------------------

def _upload_case(agent, env, host, path, policy_rule_part):
    o = env.origins["tls"]
    body = b"secret-upload-" + os.urandom(8).hex().encode()
    r, _ = https_get(agent.port, host, o.port, path + "/get", cafile=agent.ca_path)
    assert r.status == 200 and o.marker in r.text, "GET must pass: %r" % r
    get_rec = log_line(agent, path + "/get")
    assert get_rec["action"] == "allow", get_rec
    assert_explain_agrees(get_rec, "https://%s:%d%s/get" % (host, o.port, path), env.policy)

    url = "https://%s:%d%s/post" % (host, o.port, path)
    r, _ = https_get(agent.port, host, o.port, path + "/post", cafile=agent.ca_path,
                     method="POST", body=body, headers=[("Content-Type", "text/plain")])
    rec = log_line(agent, path + "/post")
    assert rec["action"] == "block" and policy_rule_part in rec["rule"], rec
    assert_block_page(r, url, None, rec["rule"])
    assert_explain_agrees(rec, url, env.policy, "--method", "POST")
    time.sleep(0.3)
    got = o.requests_for(path + "/post")
    assert not got, "the origin received the blocked upload (%d body bytes)" % got[0].body_bytes
    return rec


def test_write_restriction_get_passes_post_blocked_origin_never_sees_body(agent, env):
    rec = _upload_case(agent, env, "news.example", "/wr", 'write_restriction[0] "news"')
    assert "upload blocked" in rec["rule"]


def test_view_only_list_get_passes_post_blocked(agent, env):
    _upload_case(agent, env, "viewonly.test", "/vo-list", 'view_only[0] "viewonly.test"')


def test_view_only_category_get_passes_post_blocked(agent, env):
    _upload_case(agent, env, "social.example", "/vo-cat", "categories.social_networks = view_only")


def test_write_restriction_over_plain_http_with_curl(agent, env):
    o = env.origins["plain"]
    url = "http://news.example:%d/wr-curl/post" % o.port
    p = curl(agent.port, url, "--data-binary", "@-", "-H", "Accept-Language: ja",
             "-w", "\n%{http_code}", input=b"form=" + b"x" * 5000)
    body, _, code = p.stdout.rpartition(b"\n")
    assert code == b"403", (p.stdout[-300:], p.stderr)
    assert "ブロック" in body.decode("utf-8", "replace")
    time.sleep(0.3)
    assert not o.requests_for("/wr-curl"), "the origin received the blocked upload"
    rec = log_line(agent, "/wr-curl/post")
    assert rec["app"] == "curl", rec
    assert_explain_agrees(rec, url, env.policy, "--method", "POST")


# ---- safe search ------------------------------------------------------------

@pytest.mark.parametrize("host,path,check", [
    ("www.google.com", "/search?q=cats", lambda q, req: q.get("safe") == "active"),
    ("www.bing.com", "/search?q=cats&adlt=off", lambda q, req: q.get("adlt") == "strict"),
    ("duckduckgo.com", "/?q=cats&kp=-2", lambda q, req: q.get("kp") == "1"),
    ("www.youtube.com", "/results?search_query=cats",
     lambda q, req: (req.header("YouTube-Restrict") or "").lower() == "strict"),
])
def test_safe_search_rewrite_seen_by_the_engine_origin(agent, env, host, path, check):
    o = env.origins[host]
    before = len(o.requests)
    r, _ = https_get(agent.port, host, o.port, path, cafile=agent.ca_path)
    assert r.status == 200 and o.marker in r.text, r
    reqs = o.requests[before:]
    assert len(reqs) == 1, reqs
    req = reqs[0]
    assert check(req.query, req), "%s got %s with headers %r" % (host, req.target, req.headers)
    assert req.query.get("q", req.query.get("search_query")) == "cats", req.target
    rec = log_line(agent, "%s:%d%s" % (host, o.port, path.split("?")[0]))
    ex = assert_explain_agrees(rec, "https://%s:%d%s" % (host, o.port, path), env.policy)
    assert any(ph.get("safe_search") for ph in ex["phases"]), ex


# ---- the access log ---------------------------------------------------------

def test_every_access_log_line_has_categories_action_rule_and_app(agent, env):
    o = env.origins["plain"]
    with ProxyClient(agent.port) as c:
        c.request("GET", "http://social.example:%d/log-keys" % o.port)
    log_line(agent, "/log-keys")
    recs = agent.access_log_records()
    assert len(recs) >= 5
    categorised = ("casino.example", "news.example", "social.example")
    for rec in recs:
        missing = {"action", "rule", "app"} - set(rec)
        assert not missing, "line lacks %s: %r" % (sorted(missing), rec)
        assert rec["action"] and rec["rule"] and rec["app"], rec
        # the key is left out when the host is in no category
        assert isinstance(rec.get("categories", []), list), rec
        if any(h in rec["url"] for h in categorised):
            assert rec.get("categories"), "a categorised host logged without categories: %r" % rec
    me = [r for r in recs if "/log-keys" in r.get("url", "")][0]
    assert me["app"].startswith("python"), me
    assert me["pid"] == os.getpid(), me
    assert me["uid"] == os.getuid(), me


# ---- --log-format squid, reloads, bad policies (agents of their own) --------

def test_squid_log_format(agent_factory, env):
    log = str(env.dir / "squid-access.log")
    a = agent_factory(policy=env.policy, hosts_path=env.hosts, access_log=log,
                      extra_args=["--log-format", "squid"]).start()
    o = env.origins["plain"]
    with ProxyClient(a.port) as c:
        assert c.request("GET", "http://casino.example:%d/squid/deny" % o.port).status == 403
        assert c.request("GET", "http://open.test:%d/squid/ok" % o.port).status == 200
    # a CONNECT carrying non-TLS bytes is tunnelled untouched
    s, r = connect_tunnel(a.port, "open.test", o.port)
    assert r.status == 200
    s.sendall(b"GET /squid/tunnel HTTP/1.1\r\nHost: open.test\r\nConnection: close\r\n\r\n")
    assert HTTPReader(s).response().status == 200
    s.close()
    deadline = time.monotonic() + 5
    lines = []
    tunnel = []
    while time.monotonic() < deadline and (len(lines) < 2 or not tunnel):
        with open(log) if os.path.exists(log) else open(os.devnull) as f:
            text = f.read().splitlines()
        lines = [l for l in text if "/squid/" in l]
        tunnel = [l for l in text if " CONNECT " in l]
        time.sleep(0.05)
    assert len(lines) == 2, lines
    pat = re.compile(r"^\d+\.\d{3}\s+\d+ 127\.0\.0\.1 (\S+)/(\d{3}) (\d+) (\S+) (\S+) (\S+) (\S+)/(\S+) (\S+)$")
    deny = pat.match(lines[0])
    ok = pat.match(lines[1])
    assert deny and ok, lines
    assert deny.group(1) == "TCP_DENIED" and deny.group(2) == "403", lines[0]
    assert deny.group(4) == "GET" and deny.group(5).endswith("/squid/deny"), lines[0]
    assert ok.group(1) != "TCP_DENIED" and ok.group(2) == "200", lines[1]
    assert int(ok.group(3)) > 0, lines[1]
    t = pat.match(tunnel[0]) if tunnel else None
    assert t and t.group(1) == "TCP_TUNNEL" and t.group(5) == "open.test:%d" % o.port, tunnel


def _wait(pred, timeout=10.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


# ---- schedules: the agent's local time ------------------------------------

# A POSIX zone string: UTC+05:30, no tzdata needed. Far enough from UTC that a
# window around the time there cannot hold the time in UTC.
AGENT_TZ, AGENT_OFFSET_S = "SHJ-5:30", 5 * 3600 + 30 * 60


def window_around(t, before_s=120, after_s=180):
    """("HH:MM", "HH:MM") of a window holding the UTC-clock time t."""
    fmt = lambda x: time.strftime("%H:%M", time.gmtime(x))
    return fmt(t - before_s), fmt(t + after_s)


def schedule_policy(d, env, name, window):
    doc = {"name": name, "default_action": "allow", "category_db": env.db,
           "auto_avoid": {"enabled": False},
           "schedules": [{"name": "now", "from": window[0], "to": window[1],
                          "categories": {"news": "block"}}]}
    return write_policy(d / (name + ".json"), doc)


@pytest.mark.parametrize("where", ["agent's local time", "UTC"])
def test_schedule_window_follows_the_agents_local_time(agent_factory, env, tmp_path, where):
    """A schedule around the agent's local time (TZ UTC+05:30) blocks; the
    same window around the UTC time does not: the proxy reads the local
    time, and again on every request (two requests, the second answered
    the same way from the worker's per-minute cache)."""
    now = time.time()
    local = window_around(now + AGENT_OFFSET_S)
    window = local if where == "agent's local time" else window_around(now)
    pol = schedule_policy(tmp_path, env, "sched-" + where.split()[0].strip("'"), window)
    a = agent_factory(policy=pol, hosts_path=env.hosts, env={"TZ": AGENT_TZ})
    a.start()
    o = env.origins["plain"]
    for i in range(2):
        url = "http://news.example:%d/sched/%s/%d" % (o.port, where.replace(" ", "-").replace("'", ""), i)
        with ProxyClient(a.port) as c:
            r = c.request("GET", url)
        rec = log_line(a, url.split(str(o.port))[1])
        if where == "agent's local time":
            assert r.status == 403 and rec["action"] == "block", (window, rec)
            assert rec["rule"].startswith("schedules[0].categories.news = block (%s-%s)" % window), rec
            assert not o.requests_for(url.split(str(o.port))[1]), "a blocked request reached the origin"
        else:
            assert r.status == 200 and rec["action"] == "allow", (window, local, rec)
            assert o.marker in r.text


def test_sighup_with_bad_policy_keeps_the_old_one(agent_factory, env):
    pol = write_policy(env.dir / "reload-policy.json", policy_doc(env.db))
    a = agent_factory(policy=pol, hosts_path=env.hosts).start()
    o = env.origins["plain"]

    def status(path, host="casino.example"):
        with ProxyClient(a.port) as c:
            return c.request("GET", "http://%s:%d%s" % (host, o.port, path)).status

    assert status("/hup/1") == 403
    bad = json.dumps(policy_doc(env.db), indent=2).replace('"gambling": "block"', '"gambling": "blok"')
    with open(pol, "w") as f:
        f.write(bad + "\n")
    a.signal(signal.SIGHUP)
    msg = _wait(lambda: "categories.gambling" in a.stderr() and a.stderr())
    assert msg, "no reload error on stderr:\n%s" % a.stderr()
    line = [l for l in msg.splitlines() if "categories.gambling" in l][0]
    assert "reload-policy.json:" in line and "blok" in line, line
    assert re.search(r"reload-policy\.json:\d+", line), line
    assert a.running()
    assert status("/hup/2") == 403, "the old policy must still block gambling"
    assert status("/hup/3", "open.test") == 200
    rec = a.wait_access_log(lambda r: "/hup/2" in r.get("url", ""))
    assert rec and rec[0]["rule"] == "categories.gambling = block", rec
    # a good file is taken on the next SIGHUP (the reload path works at all)
    doc = policy_doc(env.db)
    doc["categories"]["gambling"] = "allow"
    write_policy(pol, doc)
    a.signal(signal.SIGHUP)
    assert _wait(lambda: status("/hup/4") == 200, timeout=10, step=0.2), a.stderr()


def test_bad_policy_at_start_exits_1_with_file_line_and_key(tmp_path, env, pki):
    bad = tmp_path / "bad-policy.json"
    bad.write_text('{\n  "default_action": "allow",\n  "categories": {\n    "gambling": "blok"\n  }\n}\n')
    state = tmp_path / "state"
    state.mkdir()
    run_cli(["ca", "init", "--state-dir", str(state)])
    cmd = [shoji_bin(), "run", "--listen", "127.0.0.1:%d" % free_port(), "--state-dir", str(state),
           "--policy", str(bad), "--hosts", env.hosts]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=sanitizer_env())
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert re.search(r"bad-policy\.json:4\b", p.stderr), p.stderr
    assert "categories.gambling" in p.stderr and "blok" in p.stderr, p.stderr
    assert "ERROR: AddressSanitizer" not in p.stderr
    # an unknown key, too
    bad.write_text('{\n  "default_action": "allow",\n  "safe_serch": true\n}\n')
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=sanitizer_env())
    assert p.returncode == 1 and re.search(r"bad-policy\.json:3\b", p.stderr), p.stderr
    assert "safe_serch" in p.stderr, p.stderr
