"""shoji-server: enrolment tokens, enrolment, agent credentials and
isolation, online/offline/stale states, delete/restore/expiry, remote tasks.
Every test runs against SQLite and against PostgreSQL."""
import hashlib
import os
import ssl
import time
import uuid

from server_helpers.fixtures import *  # noqa: F401,F403
from server_helpers.fixtures import enrol, new_token
from server_helpers.server import Server


def test_server_prints_the_fingerprint_of_the_certificate_it_serves(srv):
    # Client() asserts the SHA-256 of the served certificate equals the banner's.
    r = srv.client().get("/api/v1/health")
    assert r.status == 200 and r.json["status"] == "ok"
    key = os.path.join(srv.data_dir, "server.key")
    assert os.stat(key).st_mode & 0o777 == 0o600
    if srv.db_url.startswith("sqlite:"):
        assert os.stat(srv.db_url[7:]).st_mode & 0o077 == 0     # hashes and logs: owner only
    pem = open(os.path.join(srv.data_dir, "server.crt")).read()
    der = ssl.PEM_cert_to_DER_cert(pem)
    assert hashlib.sha256(der).hexdigest() == srv.fingerprint.replace(":", "").lower()


def test_restart_keeps_the_same_certificate(make_server, admin_token):
    a = make_server()
    fp = a.fingerprint
    a.stop()
    b = make_server()
    assert b.fingerprint == fp


def test_enrol_with_a_good_token_gives_a_working_credential(srv, admin):
    tok = new_token(admin, name="lab", group="lab", max_uses=5)
    agent_id, agent = enrol(srv, admin, token=tok["token"], hostname="pc-01")
    me = agent.get("/api/v1/agent")
    assert me.status == 200
    assert me.json["id"] == agent_id and me.json["group"] == "lab" and me.json["hostname"] == "pc-01"
    listed = admin.get("/api/v1/agents").json["agents"]
    assert [a["id"] for a in listed] == [agent_id]
    assert listed[0]["state"] == "online"
    toks = admin.get("/api/v1/enrol-tokens").json["tokens"]
    assert toks[0]["uses"] == 1 and toks[0]["state"] == "active"


def test_reinstall_on_the_same_machine_is_the_same_agent_not_a_duplicate(srv, admin):
    mid = hashlib.sha256(b"machine-id-1").hexdigest()
    first, old = enrol(srv, admin, machine_id=mid)
    second, new = enrol(srv, admin, machine_id=mid)
    assert first == second
    assert len(admin.get("/api/v1/agents").json["agents"]) == 1
    # the old credential was replaced by the new one
    assert old.get("/api/v1/agent").status == 401
    assert new.get("/api/v1/agent").status == 200


def test_wrong_revoked_expired_and_used_up_tokens_are_refused(srv, admin):
    c = srv.client()

    def try_enrol(token):
        return c.post("/api/v1/enrol", {"token": token, "machine_id": uuid.uuid4().hex})

    good = new_token(admin)["token"]
    wrong = good[:-4] + ("0000" if not good.endswith("0000") else "1111")
    r = try_enrol(wrong)
    assert r.status == 401 and r.json["error"] == "unknown enrolment token" and r.json["field"] == "token"
    assert try_enrol("not-a-token").status == 401

    revoked = new_token(admin)
    assert admin.delete("/api/v1/enrol-tokens/" + revoked["id"]).status == 200
    r = try_enrol(revoked["token"])
    assert r.status == 401 and "revoked" in r.json["error"]

    expiring = new_token(admin, expires_in=1)
    time.sleep(2.1)
    r = try_enrol(expiring["token"])
    assert r.status == 401 and "expired" in r.json["error"]

    once = new_token(admin, max_uses=1)
    assert try_enrol(once["token"]).status == 201
    r = try_enrol(once["token"])
    assert r.status == 401 and "used up" in r.json["error"]
    states = {t["id"]: t["state"] for t in admin.get("/api/v1/enrol-tokens").json["tokens"]}
    assert states[revoked["id"]] == "revoked" and states[expiring["id"]] == "expired"
    assert states[once["id"]] == "used_up"
    assert len(admin.get("/api/v1/agents").json["agents"]) == 1


def test_forged_agent_credentials_are_refused(srv, admin, admin_token):
    agent_id, agent = enrol(srv, admin)
    secret = agent.auth.split(".")[2]
    forged = [
        "agent.%s.%s" % (agent_id, "0" * 64),                 # right id, wrong secret
        "agent.%s.%s" % (uuid.uuid4().hex, secret),           # wrong id, right secret
        "agent.%s" % agent_id,                                # malformed
        admin_token,                                          # an admin token is not an agent
    ]
    for cred in forged:
        r = srv.client(auth=cred).get("/api/v1/agent/policy")
        assert r.status == 401, (cred, r)
        assert "credential" in r.json["error"]
    assert srv.client().get("/api/v1/agent").status == 401


def test_an_agent_cannot_reach_admin_endpoints_or_another_agents_data(srv, admin):
    a_id, a = enrol(srv, admin, hostname="a")
    b_id, b = enrol(srv, admin, hostname="b")
    for path in ("/api/v1/agents", "/api/v1/agents/" + b_id, "/api/v1/logs",
                 "/api/v1/agents/%s/tasks" % b_id):
        r = a.get(path)
        assert r.status == 401, (path, r)
    # b's task cannot be fetched nor answered by a
    t = admin.post("/api/v1/agents/%s/tasks" % b_id, {"kind": "collect_diagnostics"}).json
    assert a.get("/api/v1/agent/tasks").json["tasks"] == []
    r = a.post("/api/v1/agent/tasks/%s/result" % t["id"], {"status": "done", "result": "forged"})
    assert r.status == 404
    got = b.get("/api/v1/agent/tasks").json["tasks"]
    assert [x["id"] for x in got] == [t["id"]]
    assert a.get("/api/v1/agent").json["id"] == a_id


def test_remote_task_round_trip(srv, admin):
    agent_id, agent = enrol(srv, admin)
    r = admin.post("/api/v1/agents/%s/tasks" % agent_id, {"kind": "refresh_policy"})
    assert r.status == 201 and r.json["status"] == "queued"
    assert admin.post("/api/v1/agents/%s/tasks" % agent_id, {"kind": "format_disk"}).status == 400
    tasks = agent.get("/api/v1/agent/tasks").json["tasks"]
    assert [t["kind"] for t in tasks] == ["refresh_policy"]
    # not answered yet: delivered again (the agent dedupes by id)
    assert [t["id"] for t in agent.get("/api/v1/agent/tasks").json["tasks"]] == [tasks[0]["id"]]
    r = agent.post("/api/v1/agent/tasks/%s/result" % tasks[0]["id"],
                   {"status": "done", "result": {"policy_etag": "\"x\""}})
    assert r.status == 200
    assert agent.get("/api/v1/agent/tasks").json["tasks"] == []
    listed = admin.get("/api/v1/agents/%s/tasks" % agent_id).json["tasks"]
    assert listed[0]["status"] == "done" and listed[0]["result"] == {"policy_etag": "\"x\""}


def test_agents_turn_offline_then_stale_after_silence(srv, admin):
    agent_id, agent = enrol(srv, admin)

    def state():
        return admin.get("/api/v1/agents/" + agent_id).json["state"]

    assert state() == "online"
    time.sleep(3.2)
    assert state() == "offline"
    assert [a["id"] for a in admin.get("/api/v1/agents?state=offline").json["agents"]] == [agent_id]
    time.sleep(2)
    assert state() == "stale"
    assert [a["id"] for a in admin.get("/api/v1/agents?state=stale").json["agents"]] == [agent_id]
    assert admin.get("/api/v1/agents?state=online").json["agents"] == []
    agent.post("/api/v1/agent/status", {"version": "0.2.0", "policy_etag": "\"e\""})
    a = admin.get("/api/v1/agents/" + agent_id).json
    assert a["state"] == "online" and a["version"] == "0.2.0" and a["policy_etag"] == "\"e\""


def test_delete_then_restore_an_agent(srv, admin):
    agent_id, agent = enrol(srv, admin)
    assert admin.delete("/api/v1/agents/" + agent_id).status == 200
    assert agent.get("/api/v1/agent").status == 401
    assert admin.get("/api/v1/agents").json["agents"] == []
    deleted = admin.get("/api/v1/agents?deleted=only").json["agents"]
    assert deleted[0]["id"] == agent_id and deleted[0]["state"] == "deleted"
    assert admin.delete("/api/v1/agents/" + agent_id).status == 404
    r = admin.post("/api/v1/agents/%s/restore" % agent_id, {})
    assert r.status == 200 and r.json["state"] == "online"
    assert agent.get("/api/v1/agent").status == 200


def test_unenrol_removes_the_agent_and_retrying_is_harmless(srv, admin):
    agent_id, agent = enrol(srv, admin)
    r = agent.delete("/api/v1/agent")
    assert r.status == 200 and r.json["deleted"] is True
    assert admin.get("/api/v1/agents").json["agents"] == []
    assert agent.delete("/api/v1/agent").status == 401   # documented: 401 after unenrol = done
    a = admin.get("/api/v1/agents/" + agent_id).json
    assert a["deleted_reason"] == "unenrolled"


def test_silent_agents_expire(make_server, admin_token, db_url):
    s = make_server("--online-secs", "1", "--stale-secs", "1", "--expire-secs", "2",
                    "--sweep-secs", "1")
    admin = s.client(auth=admin_token)
    agent_id, agent = enrol(s, admin)
    time.sleep(4)
    assert admin.get("/api/v1/agents").json["agents"] == []
    a = admin.get("/api/v1/agents/" + agent_id).json
    assert a["state"] == "deleted" and a["deleted_reason"] == "expired"
    assert agent.get("/api/v1/agent").status == 401
    assert admin.post("/api/v1/agents/%s/restore" % agent_id, {}).status == 200
    assert agent.get("/api/v1/agent").status == 200
