"""A throw-away PostgreSQL cluster from Debian's postgresql-15 binaries:
initdb (as the postgres user when running as root: initdb refuses root),
pg_ctl start on a unix socket dir inside it plus a free TCP port on
127.0.0.1, trust authentication, one database per test."""
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid

PG_BIN = "/usr/lib/postgresql/15/bin"


def available():
    return os.access(os.path.join(PG_BIN, "initdb"), os.X_OK)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="shoji-pg-")
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "sock")
        os.makedirs(self.sock)
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            pw = pwd.getpwnam("postgres")
            for d in (self.dir, self.sock):
                os.chown(d, pw.pw_uid, pw.pw_gid)
            self.user = "postgres"
        else:
            self.user = pwd.getpwuid(os.geteuid()).pw_name

    def _run(self, *cmd, check=True):
        full = (["runuser", "-u", "postgres", "--"] if self.as_root else []) + list(cmd)
        return subprocess.run(full, capture_output=True, text=True, timeout=120, check=check,
                              cwd=self.dir)

    def start(self):
        self._run(PG_BIN + "/initdb", "-D", self.data, "-A", "trust", "-U", self.user,
                  "--no-sync", "-E", "UTF8")
        opts = ("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off "
                "-c max_connections=200 -c shared_buffers=32MB" % (self.port, self.sock))
        self._run(PG_BIN + "/pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "log"),
                  "-o", opts, "-w", "-t", "60", "start")
        return self

    def create_db(self):
        name = "t_" + uuid.uuid4().hex[:12]
        self._run("/usr/bin/psql", "-h", self.sock, "-p", str(self.port), "-d", "postgres",
                  "-v", "ON_ERROR_STOP=1", "-c", "CREATE DATABASE %s" % name)
        return "postgresql://%s@127.0.0.1:%d/%s" % (self.user, self.port, name)

    def stop(self):
        self._run(PG_BIN + "/pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def restart(self):
        self._run(PG_BIN + "/pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "log"),
                  "-m", "fast", "-w", "-t", "60", "restart")
