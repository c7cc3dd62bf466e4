"""pytest fixtures for the shoji-server suites (import * from a test module).

  pg_cluster   (session)  a running throw-away PostgreSQL cluster
  db_url       (function) parametrized: a fresh SQLite file / PostgreSQL db
  make_server  (function) make_server(*extra_args) -> started Server on db_url
  admin_token  (function) an admin 'admin' (password ADMIN_PASSWORD) and its API token
  srv          (function) a started server with short online/stale thresholds
  admin        (function) a Client for srv authenticated with admin_token
"""
import uuid

import pytest

from . import pg
from .server import Server, run_cli

ADMIN_PASSWORD = "correct horse battery staple"
FAST = ["--online-secs", "2", "--stale-secs", "4", "--lockout-failures", "3",
        "--lockout-secs", "60"]


@pytest.fixture(scope="session")
def pg_cluster():
    if not pg.available():
        pytest.skip("Debian's postgresql-15 is not installed (scripts/deps.sh test)")
    c = pg.PgCluster().start()
    yield c
    c.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return "sqlite:%s" % (tmp_path / "server.db")
    return request.getfixturevalue("pg_cluster").create_db()


@pytest.fixture
def make_server(db_url, tmp_path):
    servers = []

    def make(*extra, data_dir=None):
        s = Server(db_url, data_dir or (tmp_path / "data"), *extra).start()
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def admin_token(db_url):
    run_cli("admin", "add", "--db", db_url, "--user", "admin", stdin=ADMIN_PASSWORD + "\n")
    return run_cli("admin", "token", "--db", db_url, "--user", "admin").stdout.strip()


@pytest.fixture
def srv(make_server, admin_token):
    return make_server(*FAST)


@pytest.fixture
def admin(srv, admin_token):
    return srv.client(auth=admin_token)


def new_token(admin, **opts):
    r = admin.post("/api/v1/enrol-tokens", opts)
    assert r.status == 201, r
    return r.json


def enrol(srv, admin, machine_id=None, token=None, hostname="pc"):
    if token is None:
        token = new_token(admin)["token"]
    r = srv.client().post("/api/v1/enrol", {
        "token": token, "machine_id": machine_id or uuid.uuid4().hex, "hostname": hostname,
        "version": "0.1.0", "os": "Debian 12"})
    assert r.status in (200, 201), r
    return r.json["agent_id"], srv.client(auth=r.json["credential"])
