"""The admin web console (console/, served by shoji-server --console-dir) in
a real browser: Debian's chromium driven by playwright-core (npm) from the
node scripts in tests/integration/browser/.

  console_flow.mjs      log in; a real enrolled agent is online; a policy typo
                        is shown next to its field; block a category and apply
                        a catalog entry in the editor; the agent then blocks a
                        real request; the block is in the log search, its CSV
                        and the chart; a learned conflict (a real one: a client
                        that trusts only the origin's CA) is made permanent;
                        a catalog workaround is applied from a conflict that
                        matches a catalog entry; the version diff shows them;
                        log out.
  console_refusals.mjs  wrong password, lock-out, missing CSRF token, expired
                        session, shown by the page (in Japanese), language switch.

Screenshots go to tmp_path/shots; SHOJI_UPDATE_SCREENSHOTS=1 also copies them
to docs/screenshots/.
"""
import json
import os
import shutil
import ssl
import subprocess
import time

import pytest

from helpers.wait import wait_for
from helpers.client import tls_via_proxy
from helpers.agent import run_cli as shoji_cli, sanitizer_env, shoji_bin
from server_helpers.server import REPO, Server, gz_lines, run_cli as server_cli

ADMIN_PASSWORD = "correct horse battery staple"
NODE = shutil.which("node")
CHROMIUM = shutil.which("chromium")
SHOTS_DOC = os.path.join(REPO, "docs", "screenshots")

pytestmark = pytest.mark.skipif(not NODE or not CHROMIUM,
                                reason="node or chromium missing (scripts/deps.sh test)")


@pytest.fixture(scope="module")
def playwright():
    """playwright-core from package.json, installed once with npm when missing."""
    if not os.path.isdir(os.path.join(REPO, "node_modules", "playwright-core")):
        npm = shutil.which("npm")
        if not npm:
            pytest.fail("npm is missing (scripts/deps.sh test)", pytrace=False)
        p = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=REPO, capture_output=True,
                           text=True, timeout=300)
        assert p.returncode == 0, "npm ci failed: %s" % p.stderr[-2000:]


@pytest.fixture(scope="module")
def console_dir():
    d = os.path.join(REPO, "console")
    cat = os.path.join(d, "compat.json")
    if not os.path.exists(cat):   # normally made by the CMake configure step
        shutil.copyfile(os.path.join(REPO, "data", "compat.json"), cat)
    return d


def enroll(server, agent, tmp_path):
    """`shoji enroll` with a fresh enrolment token, pinning the server's fingerprint."""
    tok = server.admin.post("/api/v1/enrol-tokens", {"name": "console test"})
    assert tok.status == 201, tok
    machine = tmp_path / "machine-id"
    machine.write_text(os.urandom(16).hex() + "\n")
    p = subprocess.run([shoji_bin(), "enroll", "--server", "https://127.0.0.1:%d" % server.port,
                        "--token", tok.json["token"], "--fingerprint", server.fingerprint,
                        "--state-dir", agent.state_dir, "--machine-id-file", str(machine),
                        "--timeout", "10"], capture_output=True, text=True, env=sanitizer_env(), timeout=60)
    assert p.returncode == 0, p.stderr
    with open(os.path.join(agent.state_dir, "mgmt.json")) as f:
        return json.load(f)


def start_server(tmp_path, console_dir, *extra):
    db = "sqlite:%s" % (tmp_path / "server.db")
    server_cli("admin", "add", "--db", db, "--user", "admin", stdin=ADMIN_PASSWORD + "\n")
    server_cli("admin", "add", "--db", db, "--user", "locked", stdin=ADMIN_PASSWORD + "\n")
    token = server_cli("admin", "token", "--db", db, "--user", "admin").stdout.strip()
    s = Server(db, tmp_path / "srvdata", "--console-dir", console_dir, *extra).start()
    s.admin = s.client(auth=token)
    return s


def run_node(script, tmp_path, **env_vars):
    env = dict(os.environ)
    env.update({"SHOJI_SHOTS": str(tmp_path / "shots"), "SHOJI_USER": "admin",
                "SHOJI_PASSWORD": ADMIN_PASSWORD, "HOME": str(tmp_path)})
    env.update({k: str(v) for k, v in env_vars.items()})
    p = subprocess.run([NODE, os.path.join(REPO, "tests", "integration", "browser", script)],
                       capture_output=True, text=True, env=env, timeout=170, cwd=REPO)
    out = p.stdout + p.stderr
    assert p.returncode == 0 and "\nOK" in "\n" + p.stdout, "%s failed:\n%s" % (script, out[-6000:])
    if os.environ.get("SHOJI_UPDATE_SCREENSHOTS"):
        os.makedirs(SHOTS_DOC, exist_ok=True)
        for f in os.listdir(tmp_path / "shots"):
            if f != "failure.png":
                shutil.copyfile(tmp_path / "shots" / f, os.path.join(SHOTS_DOC, f))
    return p.stdout


@pytest.fixture
def catdb(tmp_path):
    lists = tmp_path / "lists"
    (lists / "games").mkdir(parents=True)
    (lists / "games" / "domains").write_text("games.test\n")
    db = tmp_path / "categories.db"
    shoji_cli(["catdb", "compile", str(lists), "-o", str(db)])
    return str(db)


def learn_a_conflict(agent, origin, cafile):
    """A client that trusts only the origin's CA refuses the agent's
    certificate (alert unknown_ca): the agent learns an exclusion."""
    try:
        s = tls_via_proxy(agent.port, "good.test", origin.port, cafile=cafile)
        s.close()
    except (ssl.SSLError, OSError):
        return
    raise AssertionError("the client accepted the agent's certificate without trusting its CA")


def test_console_flow_with_a_real_agent(playwright, console_dir, tmp_path, agent_factory, origins,
                                        catdb, pki):
    server = start_server(tmp_path, console_dir)
    try:
        a = agent_factory(extra_args=["--sync-interval", "1"])
        mgmt = enroll(server, a, tmp_path)
        # What an admin script does once: the first policy, pointing at the
        # category database path on the agents.
        r = server.admin.post("/api/v1/policies", {"name": "default", "comment": "initial",
                                                    "document": {"default_action": "allow", "category_db": catdb}})
        assert r.status == 201, r
        pid = r.json["id"]
        assert server.admin.put("/api/v1/groups/default", {"policy_id": pid}).status == 200
        a.start()
        aid = mgmt["agent_id"]
        etag = server.admin.get("/api/v1/policies/%s" % pid).json["etag"]
        wait_for(lambda: server.admin.get("/api/v1/agents/%s" % aid).json["policy_etag"] == etag, 15,
                 "the agent to apply the first policy")
        learn_a_conflict(a, origins["good"], pki.ca_cert_path)
        wait_for(lambda: any(c["host"] == "good.test" for c in
                             server.admin.get("/api/v1/conflicts").json["conflicts"]), 15,
                 "the learned conflict on the server")
        # A conflict line as an agent on a Windows PC with Trend Micro would
        # send it (the Linux agent cannot produce NTRTSCAN): matches a catalog entry.
        r = server.client(auth=mgmt["credential"]).put("/api/v1/agent/conflicts/console-1", raw=gz_lines([{
            "time": int(time.time()), "app": "NTRTSCAN", "host": "x.icrc.trendmicro.com",
            "reason": "client alert unknown_ca", "suggestion": ""}]),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/x-ndjson"})
        assert r.status == 201, r
        hostname = server.admin.get("/api/v1/agents/%s" % aid).json["hostname"]
        out = run_node("console_flow.mjs", tmp_path, SHOJI_URL="https://127.0.0.1:%d" % server.port,
                       SHOJI_PROXY_PORT=a.port, SHOJI_AGENT_HOSTNAME=hostname,
                       SHOJI_CONFLICT_HOST="good.test")
        assert "STEP log out" in out
        # What the browser did is what the server now has.
        p = server.admin.get("/api/v1/policies/%s" % pid).json
        v2 = server.admin.get("/api/v1/policies/%s/versions/2" % pid).json
        assert p["version"] == 5 and p["document"] == v2["document"]   # rolled back to v2
        doc = server.admin.get("/api/v1/policies/%s/versions/4" % pid).json["document"]
        assert doc["categories"] == {"games": "block"} and doc["category_db"] == catdb
        assert "*icrc.trendmicro.com" in doc["decode"]["exclude_hosts"]
        assert any(isinstance(x, dict) and x.get("hosts") == ["good.test"] for x in doc["disabled_apps"]), doc
        assert "NTRTSCAN" in doc["disabled_apps"], doc
        assert server.admin.get("/api/v1/agents/%s" % aid).json["state"] != "deleted"   # restored
        versions = server.admin.get("/api/v1/policies/%s/versions" % pid).json["versions"]
        assert [v["created_by"] for v in versions][:2] == ["admin", "admin"]
    finally:
        server.stop()


def test_console_refusals_are_shown_in_the_page(playwright, console_dir, tmp_path):
    server = start_server(tmp_path, console_dir, "--session-secs", "3", "--lockout-failures", "3",
                          "--lockout-secs", "60")
    try:
        run_node("console_refusals.mjs", tmp_path, SHOJI_URL="https://127.0.0.1:%d" % server.port,
                 SHOJI_LOCALE="ja-JP", SHOJI_LOCKED_USER="locked", SHOJI_SESSION_SECS=3)
        # the refused change really did not happen
        assert server.admin.get("/api/v1/policies").json["policies"] == []
    finally:
        server.stop()


def test_console_pure_functions_csv_diff_patterns_rules():
    """CSV quoting and formula neutralising, the version diff, catalog host
    patterns, conflict suggestions, ja/en string tables (no browser)."""
    p = subprocess.run([NODE, os.path.join(REPO, "tests", "integration", "browser", "console_units.mjs")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip().endswith("OK"), p.stdout + p.stderr
