"""Runs the real shoji-server binary and talks to it over real TLS."""
import gzip
import hashlib
import http.client
import json
import os
import re
import ssl
import subprocess
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer")


def server_bin():
    return os.environ.get("SHOJI_SERVER_BIN") or os.path.join(REPO, "build", "shoji-server")


def sanitizer_env():
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return env


def run_cli(*args, stdin=None, check=True):
    p = subprocess.run([server_bin(), *args], input=stdin, capture_output=True, text=True,
                       env=sanitizer_env(), timeout=60)
    if check and p.returncode != 0:
        raise AssertionError("shoji-server %s failed (%d): %s" % (args, p.returncode, p.stderr))
    return p


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.raw = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.raw[:300])


class Client:
    """One HTTPS connection per request; verifies the pinned fingerprint."""

    def __init__(self, port, fingerprint, auth=None):
        self.port = port
        self.fingerprint = fingerprint.replace(":", "").lower()
        self.auth = auth
        self.cookies = {}
        self.csrf = None

    def _conn(self):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE     # pinned by fingerprint below instead
        c = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=30)
        c.connect()
        der = c.sock.getpeercert(binary_form=True)
        got = hashlib.sha256(der).hexdigest()
        assert got == self.fingerprint, "server certificate does not match the printed fingerprint"
        return c

    def request(self, method, path, body=None, headers=None, auth="default", raw=None):
        h = dict(headers or {})
        a = self.auth if auth == "default" else auth
        if a:
            h["Authorization"] = "Bearer " + a
        if self.cookies:
            h["Cookie"] = "; ".join("%s=%s" % kv for kv in self.cookies.items())
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        c = self._conn()
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            resp = Response(r.status, r.getheaders(), r.read())
        finally:
            c.close()
        for k, v in resp.headers:
            if k.lower() == "set-cookie":
                name, _, rest = v.partition("=")
                val = rest.split(";")[0]
                if val:
                    self.cookies[name] = val
                else:
                    self.cookies.pop(name, None)
        return resp

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


def gz_lines(lines):
    return gzip.compress("".join(json.dumps(l) + "\n" for l in lines).encode())


class Server:
    """A shoji-server process. start() waits for its banner (port and
    fingerprint); stop() checks it exits cleanly without sanitizer reports."""

    def __init__(self, db_url, data_dir, *extra):
        self.db_url = db_url
        self.data_dir = str(data_dir)
        self.extra = list(extra)
        self.proc = None
        self.port = None
        self.fingerprint = None
        self.stderr_path = os.path.join(self.data_dir, "server-%d.stderr" % id(self))

    def start(self):
        os.makedirs(self.data_dir, exist_ok=True)
        self.errf = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(
            [server_bin(), "--listen", "127.0.0.1:0", "--db", self.db_url, "--data-dir",
             self.data_dir, "--threads", "2", *self.extra],
            stdout=subprocess.PIPE, stderr=self.errf, text=True, env=sanitizer_env())
        deadline = time.time() + 30
        while time.time() < deadline and (self.port is None or self.fingerprint is None):
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.search(r"\(port (\d+)\)", line)
            if m:
                self.port = int(m.group(1))
            m = re.search(r"fingerprint: ([0-9A-F:]{95})", line)
            if m:
                self.fingerprint = m.group(1)
        if self.port is None or self.fingerprint is None:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("shoji-server did not start: " + self.stderr())
        return self

    def stderr(self):
        with open(self.stderr_path) as f:
            return f.read()

    def client(self, auth=None):
        return Client(self.port, self.fingerprint, auth)

    def stop(self, check=True):
        if not self.proc:
            return
        self.proc.terminate()
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc.stdout.close()
        self.errf.close()
        self.proc = None
        err = self.stderr()
        if check:
            assert not any(m in err for m in SANITIZER_MARKS), err[-4000:]
            assert rc == 0, "shoji-server exited with %d: %s" % (rc, err[-2000:])


def curl(port, method, path, data, headers=(), auth=None):
    """Sends `data` (bytes) with curl, which uses Expect: 100-continue for
    large bodies, so an early refusal is read instead of a broken pipe.
    Returns (status, parsed JSON body or None)."""
    import tempfile
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        cmd = ["curl", "-sk", "-X", method, "--data-binary", "@" + f.name,
               "-w", "\n%{http_code}", "https://127.0.0.1:%d%s" % (port, path)]
        for h in headers:
            cmd += ["-H", h]
        if auth:
            cmd += ["-H", "Authorization: Bearer " + auth]
        p = subprocess.run(cmd, capture_output=True, timeout=60)
    body, _, code = p.stdout.rpartition(b"\n")
    try:
        j = json.loads(body) if body else None
    except ValueError:
        j = None
    return int(code or 0), j
