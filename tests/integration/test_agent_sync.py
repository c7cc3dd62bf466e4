"""The agent and the management server end to end: the real `shoji` agent
(enroll, run --sync-interval 1, unenroll) against the real `shoji-server` on
SQLite, over real TLS with the certificate pinned by fingerprint.

  enrol (TOFU and pinned), wrong/revoked token and wrong fingerprint refused,
  same machine = same agent; a policy change on the server is enforced
  within the poll interval without dropping an open keep-alive connection;
  blocked requests reach the server's log query with agent, application and
  category; 1,000 requests made while the server is down arrive exactly once
  after it comes back; remote tasks; unenroll (retried while the server is
  down) removes the agent; a forged credential gets nothing.
"""
import json
import os
import time

import pytest

from helpers.wait import wait_for
from helpers.agent import run_cli as shoji_cli, sanitizer_env, shoji_bin
from helpers.client import ProxyClient, tls_via_proxy
from server_helpers.server import Server, run_cli as server_cli

import ssl
import subprocess

ADMIN_PASSWORD = "correct horse battery staple"


def shoji(*args, timeout=60):
    return subprocess.run([shoji_bin(), *args], capture_output=True, text=True, env=sanitizer_env(),
                          timeout=timeout)


@pytest.fixture
def server(tmp_path):
    db = "sqlite:%s" % (tmp_path / "server.db")
    server_cli("admin", "add", "--db", db, "--user", "admin", stdin=ADMIN_PASSWORD + "\n")
    token = server_cli("admin", "token", "--db", db, "--user", "admin").stdout.strip()
    s = Server(db, tmp_path / "srvdata").start()
    s.admin = s.client(auth=token)
    s.db = db
    yield s
    s.stop()


def restart(server):
    """Starts a stopped server again on the same port, data dir and database."""
    s = Server(server.db_url, server.data_dir, "--listen", "127.0.0.1:%d" % server.port).start()
    assert s.fingerprint == server.fingerprint
    server.proc, server.errf, server.stderr_path = s.proc, s.errf, s.stderr_path
    return server


def enrol_token(server, **opts):
    r = server.admin.post("/api/v1/enrol-tokens", opts)
    assert r.status == 201, r
    return r.json


def machine_file(tmp_path, name="machine-id"):
    p = tmp_path / name
    if not p.exists():
        p.write_text(os.urandom(16).hex() + "\n")
    return str(p)


def enroll(server, state, tmp_path, token=None, fingerprint=True, machine="machine-id"):
    token = token or enrol_token(server)["token"]
    args = ["enroll", "--server", "https://127.0.0.1:%d" % server.port, "--token", token,
            "--state-dir", str(state), "--machine-id-file", machine_file(tmp_path, machine),
            "--timeout", "10"]
    if fingerprint is True:
        args += ["--fingerprint", server.fingerprint]
    elif fingerprint:
        args += ["--fingerprint", fingerprint]
    return shoji(*args)


def set_policy(server, document, policy_id=None):
    if policy_id is None:
        r = server.admin.post("/api/v1/policies", {"name": "p", "document": document})
        assert r.status == 201, r
        policy_id = r.json["id"]
        r = server.admin.put("/api/v1/groups/default", {"policy_id": policy_id})
        assert r.status == 200, r
    else:
        r = server.admin.post("/api/v1/policies/%s/versions" % policy_id, {"document": document})
        assert r.status == 201, r
    return policy_id


def agent_id(state):
    with open(os.path.join(str(state), "mgmt.json")) as f:
        return json.load(f)["agent_id"]


def all_logs(server, **filters):
    out, cursor = [], None
    for _ in range(50):
        q = "&".join("%s=%s" % kv for kv in dict(filters, limit=1000, **({"cursor": cursor} if cursor else {})).items())
        r = server.admin.get("/api/v1/logs?" + q)
        assert r.status == 200, r
        out += r.json["logs"]
        cursor = r.json["next"]
        if not cursor:
            return out
    raise AssertionError("too many log pages")


@pytest.fixture
def catdb(tmp_path):
    lists = tmp_path / "lists"
    (lists / "games").mkdir(parents=True)
    (lists / "games" / "domains").write_text("games.test\n")
    db = tmp_path / "categories.db"
    shoji_cli(["catdb", "compile", str(lists), "-o", str(db)])
    return str(db)


@pytest.fixture
def synced(server, agent_factory, tmp_path):
    """An enrolled agent polling every second (not started)."""
    a = agent_factory(extra_args=["--sync-interval", "1"])
    r = enroll(server, a.state_dir, tmp_path)
    assert r.returncode == 0, r.stderr
    return a


# ---- enrolment ----------------------------------------------------------------------------

def test_enroll_pins_the_fingerprint_and_stores_the_credential_0600(server, tmp_path):
    state = tmp_path / "st"
    r = enroll(server, state, tmp_path)
    assert r.returncode == 0, r.stderr
    st = os.stat(state / "mgmt.json")
    assert st.st_mode & 0o777 == 0o600
    saved = json.loads((state / "mgmt.json").read_text())
    assert saved["fingerprint"] == server.fingerprint
    assert saved["credential"].startswith("agent." + saved["agent_id"] + ".")
    ids = [a["id"] for a in server.admin.get("/api/v1/agents").json["agents"]]
    assert ids == [saved["agent_id"]]
    # The same machine enrolling again is the same agent, with a new credential.
    r2 = enroll(server, tmp_path / "st2", tmp_path)
    assert r2.returncode == 0 and "same agent" in r2.stdout
    again = json.loads((tmp_path / "st2" / "mgmt.json").read_text())
    assert again["agent_id"] == saved["agent_id"] and again["credential"] != saved["credential"]


def test_enroll_without_fingerprint_trusts_on_first_use_and_says_so(server, tmp_path):
    r = enroll(server, tmp_path / "st", tmp_path, fingerprint=None)
    assert r.returncode == 0, r.stderr
    assert "trust" in r.stdout and server.fingerprint in r.stdout
    assert json.loads((tmp_path / "st" / "mgmt.json").read_text())["fingerprint"] == server.fingerprint


def test_enroll_refuses_a_server_whose_certificate_does_not_match(server, tmp_path):
    wrong = ":".join(["AB"] * 32)
    r = enroll(server, tmp_path / "st", tmp_path, fingerprint=wrong)
    assert r.returncode == 1
    assert "fingerprint" in r.stderr and server.fingerprint in r.stderr and wrong in r.stderr
    assert not (tmp_path / "st" / "mgmt.json").exists()
    assert server.admin.get("/api/v1/agents").json["agents"] == []


def test_wrong_and_revoked_enrolment_tokens_are_refused_with_a_clear_error(server, tmp_path):
    tok = enrol_token(server)
    bogus = "enrol.%s.%s" % (tok["id"], "0" * 64)
    r = enroll(server, tmp_path / "a", tmp_path, token=bogus)
    assert r.returncode == 1 and "401" in r.stderr and "token" in r.stderr, r.stderr
    assert server.admin.delete("/api/v1/enrol-tokens/%s" % tok["id"]).status == 200
    r = enroll(server, tmp_path / "b", tmp_path, token=tok["token"])
    assert r.returncode == 1 and "revoked" in r.stderr, r.stderr
    assert not (tmp_path / "b" / "mgmt.json").exists()


# ---- policy, logs, tasks ---------------------------------------------------------------------

def test_policy_change_blocks_within_the_interval_keeping_open_connections(
        server, synced, make_origin, catdb):
    origin = make_origin("plain.test")
    policy = set_policy(server, {"default_action": "allow", "category_db": catdb})
    synced.start()
    wait_for(lambda: os.path.exists(os.path.join(synced.state_dir, "policy.managed.json")), 10,
             "the first policy")
    keep = ProxyClient(synced.port)
    assert keep.request("GET", origin.url("/before")).status == 200
    with ProxyClient(synced.port) as c:
        assert c.request("GET", "http://games.test/").status != 403
    changed = time.monotonic()
    set_policy(server, {"default_action": "allow", "category_db": catdb,
                        "categories": {"games": "block"}}, policy)

    def blocked():
        with ProxyClient(synced.port) as c:
            return c.request("GET", "http://games.test/x").status == 403
    wait_for(blocked, 5, "the new policy to block games.test")
    assert time.monotonic() - changed < 4.0   # interval 1 s (+-10 %) plus a poll
    # The keep-alive connection opened before the change is still usable.
    assert keep.request("GET", origin.url("/after")).status == 200
    keep.close()
    # The server knows which policy the agent applied.
    etag = server.admin.get("/api/v1/policies/%s" % policy).json["etag"]
    wait_for(lambda: server.admin.get("/api/v1/agents").json["agents"][0]["policy_etag"] == etag, 5,
             "the status heartbeat")
    # The blocked request is in the server's log, with agent, application and category.
    aid = agent_id(synced.state_dir)
    rows = wait_for(lambda: all_logs(server, agent=aid, category="games", action="block"), 10,
                    "the blocked request in the server's log")
    line = rows[0]["line"]
    assert rows[0]["agent_id"] == aid
    assert line["host"] == "games.test" and line["categories"] == ["games"] and line["status"] == 403
    assert line["app"]   # the test process (python3), found by the agent
    assert all_logs(server, agent=aid, app=line["app"], host="games.test", action="block")


def test_thousand_requests_while_the_server_is_down_arrive_exactly_once(server, synced, make_origin):
    origin = make_origin("plain.test")
    synced.start()
    aid = agent_id(synced.state_dir)
    wait_for(lambda: server.admin.get("/api/v1/agents").json["agents"][0]["state"] == "online", 10,
             "the first heartbeat")
    server.stop()
    with ProxyClient(synced.port) as c:
        for i in range(1000):
            assert c.request("GET", origin.url("/burst/%d" % i)).status == 200
    time.sleep(1.5)   # the agent spools them and fails to upload
    spool = os.path.join(synced.state_dir, "spool", "logs")
    assert os.listdir(spool), "nothing was spooled on disk"
    restart(server)

    def arrived():
        rows = [r for r in all_logs(server, agent=aid, host="plain.test") if "/burst/" in r["line"]["url"]]
        return rows if len(rows) >= 1000 else None
    rows = wait_for(arrived, 30, "the 1,000 spooled lines")
    time.sleep(1.5)   # anything sent twice would show up now
    rows = [r for r in all_logs(server, agent=aid, host="plain.test") if "/burst/" in r["line"]["url"]]
    urls = sorted(r["line"]["url"] for r in rows)
    assert len(rows) == 1000
    assert urls == sorted(origin.url("/burst/%d" % i) for i in range(1000))
    wait_for(lambda: not os.listdir(spool), 5, "the spool to empty")


def test_remote_tasks_refresh_policy_and_collect_diagnostics(server, synced):
    synced.start()
    aid = agent_id(synced.state_dir)
    wait_for(lambda: server.admin.get("/api/v1/agents").json["agents"][0]["state"] == "online", 10,
             "the first heartbeat")
    for kind in ("collect_diagnostics", "refresh_policy"):
        assert server.admin.post("/api/v1/agents/%s/tasks" % aid, {"kind": kind}).status == 201

    def done():
        tasks = server.admin.get("/api/v1/agents/%s/tasks" % aid).json["tasks"]
        return tasks if all(t["status"] == "done" for t in tasks) else None
    tasks = {t["kind"]: t for t in wait_for(done, 10, "both tasks done")}
    diag = tasks["collect_diagnostics"]["result"]
    assert diag["version"] and diag["agent_id"] == aid and "dropped_lines" in diag
    assert "shoji_connections_total" in diag["metrics"]
    assert "changed" in tasks["refresh_policy"]["result"]


def test_conflict_events_reach_the_servers_conflict_view(server, synced, make_origin, pki):
    origin = make_origin("good.test", pki.leaf("good.test", sans=["good.test"], label="sync-good"))
    set_policy(server, {"auto_avoid": {"enabled": True, "ttl": 60, "scope": "app+host"}})
    synced.start()
    wait_for(lambda: os.path.exists(os.path.join(synced.state_dir, "policy.managed.json")), 10,
             "the policy with auto_avoid")
    # A client that trusts only the origin's CA rejects the agent's certificate.
    with pytest.raises((ssl.SSLError, OSError)):
        tls_via_proxy(synced.port, "good.test", origin.port, cafile=pki.ca_cert_path).close()

    def seen():
        c = server.admin.get("/api/v1/conflicts").json["conflicts"]
        return c if c else None
    c = wait_for(seen, 10, "the conflict event on the server")
    assert c[0]["host"] == "good.test" and c[0]["agents"] == 1 and c[0]["events"] == 1
    assert c[0]["app"].startswith("python") and "unknown" in c[0]["reason"]
    assert "good.test" in c[0]["suggestion"]


def test_forged_credential_gets_nothing(server, synced, make_origin):
    origin = make_origin("plain.test")
    path = os.path.join(synced.state_dir, "mgmt.json")
    saved = json.load(open(path))
    parts = saved["credential"].split(".")
    saved["credential"] = ".".join(parts[:2] + ["f" * len(parts[2])])
    with open(path, "w") as f:
        json.dump(saved, f)
    synced.start()
    with ProxyClient(synced.port) as c:
        assert c.request("GET", origin.url("/forged")).status == 200
    wait_for(lambda: "401" in synced.stderr() or "credential" in synced.stderr(), 10,
             "the agent to report the refusal")
    spool = os.path.join(synced.state_dir, "spool", "logs")
    wait_for(lambda: os.listdir(spool), 10, "the line to be spooled")
    time.sleep(1.5)   # upload attempts are refused meanwhile
    assert all_logs(server) == []
    # The batch is kept for when the credential is fixed, not dropped.
    assert os.listdir(spool)


# ---- unenrol ------------------------------------------------------------------------------

def test_unenroll_retries_until_the_server_confirms_and_removes_the_agent(server, tmp_path):
    state = tmp_path / "st"
    assert enroll(server, state, tmp_path).returncode == 0
    aid = agent_id(state)
    server.stop()
    r = shoji("unenroll", "--state-dir", str(state), "--timeout", "2")
    assert r.returncode == 1 and "still enrolled" in r.stderr, r.stderr
    assert (state / "mgmt.json").exists()
    restart(server)
    r = shoji("unenroll", "--state-dir", str(state), "--timeout", "20")
    assert r.returncode == 0, r.stderr
    assert not (state / "mgmt.json").exists()
    assert server.admin.get("/api/v1/agents").json["agents"] == []
    gone = server.admin.get("/api/v1/agents?deleted=only").json["agents"]
    assert [(a["id"], a["deleted_reason"]) for a in gone] == [(aid, "unenrolled")]


def test_uninstall_unenrols_and_removes_the_ca_from_the_trust_store(server, tmp_path):
    """`shoji uninstall` deletes the agent's account on the server (the
    vendor note's lesson: an uninstalled agent must not stay listed) and takes
    the CA out of the trust store it was installed into."""
    state = tmp_path / "st"
    assert enroll(server, state, tmp_path).returncode == 0
    trust = tmp_path / "trust"
    env = dict(sanitizer_env(), SHOJI_TRUST_DIR=str(trust), SHOJI_SKIP_UPDATE_CA="1",
               SHOJI_NSSDB_GLOB=str(tmp_path / "no-nss-here"))
    r = subprocess.run([shoji_bin(), "ca", "init", "--state-dir", str(state)], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([shoji_bin(), "ca", "install", "--state-dir", str(state)], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert list(trust.glob("shoji-*.crt")), "ca install put nothing into the trust dir"
    r = subprocess.run([shoji_bin(), "uninstall", "--state-dir", str(state), "--timeout", "20",
                        "--keep-interception"],   # never touch this machine's nftables
                       env=env, capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not list(trust.glob("shoji-*.crt")), "the CA is still in the trust dir"
    assert not (state / "mgmt.json").exists()
    assert server.admin.get("/api/v1/agents").json["agents"] == []
