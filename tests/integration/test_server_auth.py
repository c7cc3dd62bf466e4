"""shoji-server: admin login (argon2id), session cookie flags, CSRF token,
lock-out after repeated failures, API tokens, and several server processes
sharing one database (sessions, lock-outs and writes seen by all)."""
import time

import pytest

from server_helpers.fixtures import *  # noqa: F401,F403
from server_helpers.fixtures import ADMIN_PASSWORD, FAST, enrol
from server_helpers.server import run_cli


def login(client, user="admin", password=ADMIN_PASSWORD):
    return client.post("/api/v1/login", {"username": user, "password": password})


def test_login_sets_a_strict_cookie_and_requires_csrf_on_changes(srv):
    c = srv.client()
    assert c.get("/api/v1/agents").status == 401
    r = login(c)
    assert r.status == 200 and r.json["username"] == "admin"
    cookie = r.header("Set-Cookie")
    for flag in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
        assert flag in cookie
    csrf = r.json["csrf_token"]
    assert c.get("/api/v1/agents").status == 200                # reads need no CSRF token
    r = c.post("/api/v1/enrol-tokens", {"name": "x"})
    assert r.status == 403 and r.json["field"] == "X-CSRF-Token"
    r = c.post("/api/v1/enrol-tokens", {"name": "x"}, headers={"X-CSRF-Token": "0" * 64})
    assert r.status == 403
    r = c.post("/api/v1/enrol-tokens", {"name": "x"}, headers={"X-CSRF-Token": csrf})
    assert r.status == 201
    assert c.get("/api/v1/session").json["cookie"] is True
    r = c.post("/api/v1/logout", {}, headers={"X-CSRF-Token": csrf})
    assert r.status == 200 and "Max-Age=0" in r.header("Set-Cookie")
    c.cookies["shoji_session"] = cookie.split(";")[0].split("=")[1]   # replay the old cookie
    assert c.get("/api/v1/agents").status == 401


def test_wrong_password_is_refused_and_repeated_failures_lock_out(srv):
    c = srv.client()
    r = login(c, password="wrong")
    assert r.status == 401 and r.json["error"] == "wrong user name or password"
    assert login(c, user="nobody").status == 401       # same answer for an unknown user
    login(c, password="wrong2")
    r = login(c, password="wrong3")                      # 3rd failure: locked (FAST: 3)
    assert r.status == 401
    r = login(c)                                         # even the right password now
    assert r.status == 429 and "locked" in r.json["error"] and int(r.header("Retry-After")) > 0
    assert login(srv.client(), user="nobody").status == 401   # the lock is per user name


def test_an_expired_session_is_refused(make_server, admin_token):
    # Long enough that a slow (sanitizer, loaded machine) login is still
    # fresh for the first request; then wait past it.
    s = make_server(*FAST, "--session-secs", "6")
    c = s.client()
    t0 = time.monotonic()
    r = login(c)
    assert "Max-Age=6" in r.header("Set-Cookie")
    assert c.get("/api/v1/agents").status == 200
    time.sleep(max(0.0, 7.5 - (time.monotonic() - t0)))
    r = c.get("/api/v1/agents")
    assert r.status == 401 and "expired" in r.json["error"]


def test_api_tokens_can_be_created_listed_and_revoked(srv, admin):
    r = admin.post("/api/v1/api-tokens", {"name": "ci"})
    assert r.status == 201 and r.json["token"].startswith("admin.")
    ci = srv.client(auth=r.json["token"])
    assert ci.get("/api/v1/agents").status == 200
    assert ci.post("/api/v1/enrol-tokens", {}).status == 201     # bearer tokens need no CSRF
    names = [t["name"] for t in admin.get("/api/v1/api-tokens").json["tokens"]]
    assert "ci" in names
    assert admin.delete("/api/v1/api-tokens/" + r.json["id"]).status == 200
    r2 = ci.get("/api/v1/agents")
    assert r2.status == 401 and "revoked" in r2.json["error"]


def test_admin_add_refuses_weak_passwords_and_bad_names(db_url):
    p = run_cli("admin", "add", "--db", db_url, "--user", "bob", stdin="short\n", check=False)
    assert p.returncode != 0 and "at least 8" in p.stderr
    p = run_cli("admin", "add", "--db", db_url, "--user", "bad name", stdin="longenough\n",
                check=False)
    assert p.returncode != 0 and "user name" in p.stderr


def test_bad_database_urls_are_refused_clearly(tmp_path):
    p = run_cli("migrate", "--db", "mysql://x", check=False)
    assert p.returncode != 0 and "sqlite:PATH or postgresql://" in p.stderr
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    p = run_cli("migrate", "--db", "sqlite:%s" % junk, check=False)
    assert p.returncode != 0 and "SQLite" in p.stderr
    assert junk.read_bytes() == b"this is not a database" * 100


def test_two_servers_on_one_database_share_sessions_and_writes(db_url, make_server, admin_token,
                                                                tmp_path):
    if not db_url.startswith("postgresql"):
        pytest.skip("several instances share one PostgreSQL database")
    a = make_server(*FAST, data_dir=tmp_path / "a")
    b = make_server(*FAST, data_dir=tmp_path / "b")
    ca = a.client()
    r = login(ca)
    csrf = r.json["csrf_token"]
    cb = b.client()
    cb.cookies = dict(ca.cookies)                        # the session made on a, used on b
    assert cb.get("/api/v1/session").json["username"] == "admin"
    r = cb.post("/api/v1/enrol-tokens", {"name": "via-b"}, headers={"X-CSRF-Token": csrf})
    assert r.status == 201
    tok = r.json["token"]
    agent_id, agent_a = enrol(a, a.client(auth=admin_token), token=tok)
    agent_b = b.client(auth=agent_a.auth)                 # the credential works on both
    assert agent_b.get("/api/v1/agent").json["id"] == agent_id
    assert [x["id"] for x in ca.get("/api/v1/agents").json["agents"]] == [agent_id]
    # a lock-out made through b holds on a
    for _ in range(3):
        login(cb, password="wrong")
    assert login(ca).status == 429
    # logout on b ends the session on a
    assert cb.post("/api/v1/logout", {}, headers={"X-CSRF-Token": csrf}).status == 200
    assert ca.get("/api/v1/agents").status == 401


def test_the_server_survives_a_postgresql_restart(db_url, srv, admin, request):
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    agent_id, agent = enrol(srv, admin)
    request.getfixturevalue("pg_cluster").restart()
    # every pooled connection is broken now; each is reset on its next use
    for _ in range(6):
        assert admin.get("/api/v1/agents").status == 200
        assert agent.get("/api/v1/agent").status == 200


def test_console_files_are_served_with_a_strict_policy_and_nothing_else(make_server,
                                                                        admin_token, tmp_path):
    import os
    con = tmp_path / "console"
    (con / "js").mkdir(parents=True)
    (con / "index.html").write_text("<!doctype html><title>shoji</title>")
    (con / "js" / "app.js").write_text("console.log(1)")
    (con / ".secret.txt").write_text("hidden")
    (con / "notes.key").write_text("no type")
    os.symlink("/etc/passwd", con / "passwd.txt")
    s = make_server("--console-dir", str(con))
    c = s.client()
    r = c.get("/")
    assert r.status == 302 and r.header("Location") == "/console/"
    r = c.get("/console/")
    assert r.status == 200 and b"<title>shoji</title>" in r.raw
    assert r.header("Content-Type").startswith("text/html")
    assert "default-src 'self'" in r.header("Content-Security-Policy")
    assert r.header("X-Frame-Options") == "DENY"
    r = c.get("/console/js/app.js")
    assert r.status == 200 and r.header("Content-Type").startswith("text/javascript")
    for bad in ("/console/../server.key", "/console/.secret.txt", "/console/notes.key",
                "/console/passwd.txt", "/console/js/", "/console//index.html",
                "/console/%2e%2e/server.key", "/server.key", "/console/missing.html"):
        r = c.get(bad)
        assert r.status == 404, (bad, r)
        assert b"root:" not in r.raw
