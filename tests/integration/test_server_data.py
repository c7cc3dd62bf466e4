"""shoji-server: body limits and validation, policy versions with ETag/304,
idempotent log and conflict batch uploads, the log query, conflicts
aggregated across agents, block statistics. SQLite and PostgreSQL."""
import gzip
import json
import time
import uuid
import zlib

from server_helpers.fixtures import *  # noqa: F401,F403
from server_helpers.fixtures import enrol
from server_helpers.server import curl, gz_lines

POLICY = {"version": 1, "name": "school", "default_action": "allow",
          "categories": {"games": "block"}, "block": ["*.tracker.example"],
          "decode": {"enabled": True, "exclude_hosts": ["*.apple.com"]}}


def put_batch(agent, kind, batch_id, lines, raw=None, encoding="gzip"):
    return agent.request("PUT", "/api/v1/agent/%s/%s" % (kind, batch_id),
                         raw=raw if raw is not None else gz_lines(lines),
                         headers={"Content-Encoding": encoding,
                                  "Content-Type": "application/x-ndjson"})


def log_line(t, host, action="allow", app="firefox", cats=None, url=None):
    l = {"time": t, "method": "GET", "url": url or "https://%s/" % host, "host": host,
         "status": 403 if action == "block" else 200, "app": app, "pid": 42,
         "action": action, "rule": "categories.games" if action == "block" else "default",
         "bytes_out": 10, "duration_ms": 1.5}
    if cats:
        l["categories"] = cats
    return l


def test_oversized_and_malformed_bodies_are_refused_with_clear_errors(srv, admin):
    c = srv.client()
    status, j = curl(srv.port, "POST", "/api/v1/enrol", b"{" + b" " * (1 << 20) + b"}",
                     ["Content-Type: application/json"])
    assert status == 413 and "too large" in j["error"]
    r = c.request("POST", "/api/v1/enrol", raw=b'{"token": "x",',
                  headers={"Content-Type": "application/json"})
    assert r.status == 400 and "malformed JSON" in r.json["error"]
    r = c.request("POST", "/api/v1/enrol", raw=b'[1, 2]')
    assert r.status == 400 and "JSON object" in r.json["error"]
    r = c.post("/api/v1/enrol", {"token": "x"})
    assert r.status == 400 and r.json["field"] == "machine_id"
    r = c.post("/api/v1/enrol", {"token": "x", "machine_id": 12345678})
    assert r.status == 400 and r.json["field"] == "machine_id" and "string" in r.json["error"]
    r = c.post("/api/v1/enrol", {"token": "x", "machine_id": "a" * 129})
    assert r.status == 400 and "too long" in r.json["error"]
    r = admin.post("/api/v1/enrol-tokens", {"max_uses": -1})
    assert r.status == 400 and r.json["field"] == "max_uses"
    r = admin.post("/api/v1/enrol-tokens", {"name": "x", "name2": 1, "group": "bad group!"})
    assert r.status == 400 and r.json["field"] == "group"
    assert c.get("/api/v1/nothing").status == 404
    assert c.request("PATCH", "/api/v1/enrol").status == 405
    assert c.get("/api/v1/nothing").json["error"]
    assert c.get("/api/v1/agents/" + "a" * 2000).status == 414


def test_batch_bodies_are_bounded_compressed_and_decompressed(srv, admin):
    agent_id, agent = enrol(srv, admin)
    # 9 MiB of compressed (random-ish) data: over the 8 MiB batch limit
    big = zlib.compress(uuid.uuid4().bytes * (9 << 16), 0)
    status, j = curl(srv.port, "PUT", "/api/v1/agent/logs/big", big,
                     ["Content-Encoding: gzip"], auth=agent.auth)
    assert status == 413 and "too large" in j["error"]
    # a zip bomb: 100 MiB of newlines compress to ~100 KiB; bounded at 64 MiB decompressed
    bomb = gzip.compress(b"\n" * (100 << 20), 9)
    assert len(bomb) < (1 << 20)
    r = put_batch(agent, "logs", "bomb", None, raw=bomb)
    assert r.status == 413 and "decompressed" in r.json["error"]
    r = put_batch(agent, "logs", "notgzip", None, raw=b"this is not gzip")
    assert r.status == 400 and "gzip" in r.json["error"]
    r = put_batch(agent, "logs", "br", None, raw=b"x", encoding="br")
    assert r.status == 415
    r = put_batch(agent, "logs", "garbage", None, raw=gzip.compress(b"nope\n{]\n"))
    assert r.status == 400 and r.json["error"] == "no valid line in this batch"
    assert r.json["errors"][0]["line"] == 1
    r = put_batch(agent, "logs", "bad%20id!", [log_line(1, "a.test")])
    assert r.status in (400, 404)
    # none of the refused batches was recorded: the same ids can be used again
    r = put_batch(agent, "logs", "garbage", [log_line(1700000000, "a.test")])
    assert r.status == 201 and r.json["stored"] == 1


def test_policy_versions_are_validated_and_fetched_with_etag(srv, admin):
    agent_id, agent = enrol(srv, admin)
    assert agent.get("/api/v1/agent/policy").status == 404          # nothing assigned yet
    r = admin.post("/api/v1/policies", {"name": "school", "document": POLICY})
    assert r.status == 201 and r.json["version"] == 1
    pid = r.json["id"]
    # validated with the agent's own policy loader
    bad = dict(POLICY, default_action="perhaps")
    r = admin.post("/api/v1/policies/%s/versions" % pid, {"document": bad})
    assert r.status == 400 and r.json["field"] == "document" and "default_action" in r.json["error"]
    r = admin.post("/api/v1/policies", {"name": "x", "document": "not an object"})
    assert r.status == 400 and r.json["field"] == "document"
    assert admin.post("/api/v1/policies", {"name": "school", "document": POLICY}).status == 409

    assert admin.put("/api/v1/groups/default", {"policy_id": pid}).status == 200
    r1 = agent.get("/api/v1/agent/policy")
    assert r1.status == 200 and r1.json == POLICY
    etag = r1.header("ETag")
    assert etag.startswith('"') and r1.header("X-Shoji-Policy-Version") == "1"
    r = agent.get("/api/v1/agent/policy", headers={"If-None-Match": etag})
    assert r.status == 304 and r.raw == b""

    v2 = dict(POLICY, block=["*.tracker.example", "blocked.test"])
    r = admin.post("/api/v1/policies/%s/versions" % pid, {"document": v2, "base_version": 1,
                                                          "comment": "block blocked.test"})
    assert r.status == 201 and r.json["version"] == 2
    r = admin.post("/api/v1/policies/%s/versions" % pid, {"document": v2, "base_version": 1})
    assert r.status == 409                                              # stale editor
    r2 = agent.get("/api/v1/agent/policy", headers={"If-None-Match": etag})
    assert r2.status == 200 and r2.json == v2 and r2.header("ETag") != etag
    vers = admin.get("/api/v1/policies/%s/versions" % pid).json["versions"]
    assert [v["version"] for v in vers] == [2, 1] and vers[0]["comment"] == "block blocked.test"
    assert admin.get("/api/v1/policies/%s/versions/1" % pid).json["document"] == POLICY

    r = admin.post("/api/v1/policies/%s/rollback" % pid, {"version": 1})
    assert r.status == 201 and r.json["version"] == 3
    r3 = agent.get("/api/v1/agent/policy", headers={"If-None-Match": r2.header("ETag")})
    assert r3.status == 200 and r3.json == POLICY and r3.header("ETag") == etag

    # a group's own policy wins over the default group's
    lab = admin.post("/api/v1/policies", {"name": "lab", "document": v2}).json["id"]
    admin.put("/api/v1/groups/lab", {"policy_id": lab})
    tok = admin.post("/api/v1/enrol-tokens", {"group": "lab"}).json["token"]
    _, lab_agent = enrol(srv, admin, token=tok)
    assert lab_agent.get("/api/v1/agent/policy").json == v2
    groups = {g["name"]: g for g in admin.get("/api/v1/groups").json["groups"]}
    assert groups["lab"]["policy_name"] == "lab" and groups["lab"]["agents"] == 1


def test_a_retried_batch_is_stored_once(srv, admin):
    agent_id, agent = enrol(srv, admin)
    lines = [log_line(1700000000 + i, "h%d.test" % i) for i in range(50)]
    r = put_batch(agent, "logs", "batch-0001", lines)
    assert r.status == 201 and r.json["stored"] == 50 and r.json["duplicate"] is False
    r = put_batch(agent, "logs", "batch-0001", lines)
    assert r.status == 200 and r.json["duplicate"] is True and r.json["stored"] == 0
    got = admin.get("/api/v1/logs?limit=1000").json["logs"]
    assert len(got) == 50
    # another agent may use the same batch id: ids are per agent
    _, other = enrol(srv, admin)
    assert put_batch(other, "logs", "batch-0001", lines[:3]).status == 201
    assert len(admin.get("/api/v1/logs?limit=1000").json["logs"]) == 53


def test_partly_bad_batches_store_the_good_lines_and_report_the_rest(srv, admin):
    _, agent = enrol(srv, admin)
    raw = gzip.compress(b"\n".join([
        json.dumps(log_line(1700000000, "ok.test")).encode(),
        b'{"time": "yesterday", "host": "x"}',
        b"[1]",
        json.dumps(log_line("2023-11-14T22:13:21.123Z", "ok2.test")).encode()]))
    r = put_batch(agent, "logs", "mixed", None, raw=raw)
    assert r.status == 201 and r.json["stored"] == 2 and r.json["rejected"] == 2
    assert [e["line"] for e in r.json["errors"]] == [2, 3]
    assert r.json["errors"][0]["field"] == "time"


def test_log_query_filters_and_pagination(srv, admin):
    a_id, a = enrol(srv, admin, hostname="pc-a")
    b_id, b = enrol(srv, admin, hostname="pc-b")
    t0 = 1700000000
    put_batch(a, "logs", "1", [
        log_line(t0 + 1, "games.test", "block", "firefox", ["games"]),
        log_line(t0 + 2, "www.news.test", "allow", "firefox", ["news"]),
        log_line(t0 + 3, "casino.test", "block", "chromium", ["gambling", "games"]),
        log_line(t0 + 4, "a.100%_.test", "allow", "curl")])
    put_batch(b, "logs", "1", [log_line(t0 + 5 + i, "b%d.test" % i, "allow", "curl")
                               for i in range(25)])
    q = lambda s: admin.get("/api/v1/logs?" + s)
    assert len(q("agent=" + a_id).json["logs"]) == 4
    hosts = lambda r: [x["line"]["host"] for x in r.json["logs"]]
    assert hosts(q("action=block")) == ["casino.test", "games.test"]
    assert hosts(q("category=games")) == ["casino.test", "games.test"]
    assert hosts(q("category=gambling")) == ["casino.test"]
    assert hosts(q("category=game")) == []          # whole names, not substrings
    assert hosts(q("app=FIREFOX")) == ["www.news.test", "games.test"]
    assert hosts(q("host=casino.test")) == ["casino.test"]
    assert hosts(q("host=*.news.test")) == ["www.news.test"]
    assert hosts(q("host=a.100%25_.test")) == ["a.100%_.test"]
    assert hosts(q("from=%d&to=%d&agent=%s" % (t0 + 2, t0 + 4, a_id))) == ["casino.test", "www.news.test"]
    assert hosts(q("from=2023-11-14T22:13:21Z&to=%d" % (t0 + 3))) == ["www.news.test", "games.test"]
    row = q("action=block&app=chromium").json["logs"][0]
    assert row["agent_id"] == a_id and row["agent_hostname"] == "pc-a"
    assert row["line"]["categories"] == ["gambling", "games"]
    # pagination: 29 rows, pages of 10, newest first, nothing lost or repeated
    seen, cursor, pages = [], None, 0
    while True:
        r = q("limit=10" + ("&cursor=" + cursor if cursor else ""))
        assert r.status == 200
        seen += [x["id"] for x in r.json["logs"]]
        pages += 1
        cursor = r.json["next"]
        if not cursor:
            break
    assert pages == 3 and len(seen) == 29 and len(set(seen)) == 29
    assert q("from=yesterday").status == 400
    assert q("agent=../../etc").status == 400
    assert q("cursor=zzz").status == 400


def test_conflicts_are_aggregated_across_agents_and_stats_count_blocks(srv, admin):
    ids, agents = zip(*[enrol(srv, admin) for _ in range(3)])
    now = int(time.time())
    for i, ag in enumerate(agents):
        r = put_batch(ag, "conflicts", "c1", [
            {"time": now - 10 + i, "app": "NTRTSCAN", "host": "x.icrc.trendmicro.com",
             "reason": "client alert unknown_ca",
             "suggestion": "decode.exclude_hosts: \"*icrc.trendmicro.com\""}])
        assert r.status == 201
    put_batch(agents[0], "conflicts", "c2", [{"time": now, "app": "skypeapp",
                                              "host": "login.skype.com", "reason": "hangup"}])
    assert put_batch(agents[0], "conflicts", "c3", [{"time": now, "app": "x"}]).status == 400
    conf = admin.get("/api/v1/conflicts").json["conflicts"]
    assert conf[0]["host"] == "x.icrc.trendmicro.com" and conf[0]["app"] == "NTRTSCAN"
    assert conf[0]["events"] == 3 and conf[0]["agents"] == 3
    assert "icrc" in conf[0]["suggestion"]
    assert conf[1]["host"] == "login.skype.com" and conf[1]["agents"] == 1
    detail = admin.get("/api/v1/agents/" + ids[0]).json
    assert {c["host"] for c in detail["recent_conflicts"]} == {"x.icrc.trendmicro.com", "login.skype.com"}

    hour = (now - 5) - (now - 5) % 3600
    put_batch(agents[0], "logs", "l1", [
        log_line(now - 5, "g.test", "block", cats=["games"]),
        log_line(now - 4, "g.test", "block", cats=["games"]),
        log_line(now - 3, "c.test", "block", cats=["gambling"]),
        log_line(now - 2, "n.test", "allow", cats=["news"]),
        log_line(now - 7200, "old.test", "block", cats=["games"])])
    st = admin.get("/api/v1/stats/blocked").json
    recent = {}
    for p in st["per_hour"]:
        if p["hour"] >= hour:
            recent[p["category"]] = recent.get(p["category"], 0) + p["blocked"]
    assert recent == {"games": 2, "gambling": 1}
    assert sum(p["blocked"] for p in st["per_hour"]) == 4    # last 24 h by default
    assert st["top_hosts"][0] == {"host": "g.test", "blocked": 2}
    st = admin.get("/api/v1/stats/blocked?from=%d" % (now - 60)).json
    assert sum(p["blocked"] for p in st["per_hour"]) == 3


def test_concurrent_uploads_and_retries_store_every_line_exactly_once(srv, admin):
    import concurrent.futures
    agents = [enrol(srv, admin)[1] for _ in range(4)]
    t0 = 1700000000

    def job(i):
        ag = agents[i % 4]
        lines = [log_line(t0 + i, "h%d-%d.test" % (i, k)) for k in range(20)]
        # every batch is sent twice (a retry after a lost answer)
        return [put_batch(ag, "logs", "b%03d" % i, lines).status for _ in range(2)]

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        results = list(ex.map(job, range(24)))
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        racing = list(ex.map(lambda _: put_batch(agents[0], "logs", "same",
                                                 [log_line(t0, "same.test")]).status, range(8)))
    assert all(sorted(r) == [200, 201] for r in results), results
    assert sorted(racing) == [200] * 7 + [201]
    total, cursor = 0, None
    while True:
        r = admin.get("/api/v1/logs?limit=1000" + ("&cursor=" + cursor if cursor else ""))
        total += len(r.json["logs"])
        cursor = r.json["next"]
        if not cursor:
            break
    assert total == 24 * 20 + 1


def test_retention_deletes_old_lines_and_keeps_recent_ones(make_server, admin_token):
    s = make_server("--retention-days", "1", "--sweep-secs", "1")
    admin = s.client(auth=admin_token)
    _, agent = enrol(s, admin)
    now = int(time.time())
    r = put_batch(agent, "logs", "mixed-age", [log_line(now - 2 * 86400, "old.test"),
                                               log_line(now - 60, "new.test")])
    assert r.status == 201 and r.json["stored"] == 2
    put_batch(agent, "conflicts", "c", [{"time": now - 3 * 86400, "app": "a", "host": "old.test"}])
    deadline = time.time() + 10
    while time.time() < deadline and len(admin.get("/api/v1/logs").json["logs"]) != 1:
        time.sleep(0.5)
    assert [l["line"]["host"] for l in admin.get("/api/v1/logs").json["logs"]] == ["new.test"]
    assert admin.get("/api/v1/conflicts").json["conflicts"] == []
