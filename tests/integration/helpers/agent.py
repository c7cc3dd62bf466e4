"""Runs the shoji agent under test.

  a = Agent(state_dir, hosts_path=..., upstream_ca=..., access_log=...)
  a.ca_init(); a.start()      # `shoji ca init`, then `shoji run` on a free port
  ... a.port, a.pid, a.ca_path, a.rss_kb(), a.access_log_records() ...
  a.stop()                    # SIGTERM; asserts exit 0 within the deadline
                              # and no sanitizer report on stderr

The binary is $SHOJI_BIN (default: <repo>/build/shoji). stderr goes to a
file in the state dir (never a pipe that could fill up and stall the agent).
"""
import json
import os
import signal
import socket
import subprocess
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "LeakSanitizer", "runtime error",
                     "UndefinedBehaviorSanitizer", "ERROR: ThreadSanitizer")


def shoji_bin():
    return os.environ.get("SHOJI_BIN") or os.path.join(REPO, "build", "shoji")


def sanitizer_env():
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return env


def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def sanitizer_report(text):
    """The first sanitizer marker found in text, or None."""
    for m in SANITIZER_MARKERS:
        if m in text:
            return m
    return None


def write_hosts_file(path, names, address="127.0.0.1"):
    """A hosts(5) file giving every name in `names` the same address."""
    with open(path, "w") as f:
        f.write("# written by the shoji integration tests\n")
        for n in names:
            f.write("%s %s\n" % (address, n))
    return str(path)


def run_cli(args, timeout=30, check=True):
    """Runs `shoji ARGS...`; returns CompletedProcess (text)."""
    p = subprocess.run([shoji_bin()] + list(args), capture_output=True, text=True,
                       timeout=timeout, env=sanitizer_env())
    if check:
        assert p.returncode == 0, "shoji %s -> %d\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(args), p.returncode, p.stdout, p.stderr)
    rep = sanitizer_report(p.stderr)
    assert rep is None, "sanitizer report (%s) from shoji %s:\n%s" % (rep, " ".join(args), p.stderr)
    return p


class AgentError(AssertionError):
    pass


class Agent:
    def __init__(self, state_dir, hosts_path=None, upstream_ca=None, access_log=None,
                 workers=2, policy=None, extra_args=(), listen_host="127.0.0.1", env=None):
        self.env = dict(env or {})   # extra environment (e.g. ASAN_OPTIONS)
        self.state_dir = str(state_dir)
        self.hosts_path = hosts_path
        self.upstream_ca = upstream_ca
        self.access_log = access_log
        self.workers = workers
        self.policy = policy
        self.extra_args = list(extra_args)
        self.listen_host = listen_host
        self.proc = None
        self.port = None
        self.runs = 0
        self.stderr_path = None
        self.stdout_path = None
        self._stderr_f = None
        self._stdout_f = None

    @property
    def ca_path(self):
        return os.path.join(self.state_dir, "ca.crt")

    @property
    def ca_key_path(self):
        return os.path.join(self.state_dir, "ca.key")

    @property
    def pid(self):
        return self.proc.pid

    @property
    def proxy_url(self):
        return "http://%s:%d" % (self.listen_host, self.port)

    def ca_init(self):
        os.makedirs(self.state_dir, exist_ok=True)
        return run_cli(["ca", "init", "--state-dir", self.state_dir])

    def command(self):
        cmd = [shoji_bin(), "run", "--listen", "%s:%d" % (self.listen_host, self.port),
               "--state-dir", self.state_dir, "--workers", str(self.workers)]
        if self.policy:
            cmd += ["--policy", self.policy]
        if self.hosts_path:
            cmd += ["--hosts", self.hosts_path]
        if self.upstream_ca:
            cmd += ["--upstream-ca", self.upstream_ca]
        if self.access_log:
            cmd += ["--access-log", self.access_log]
        return cmd + self.extra_args

    def start(self, timeout=15, port=None):
        """Starts `shoji run`; returns once the port accepts connections."""
        last = ""
        for _ in range(3):  # a free port can be taken between probe and bind
            self.port = port or free_port(self.listen_host)
            self.runs += 1
            self.stderr_path = os.path.join(self.state_dir, "agent-stderr.%d.log" % self.runs)
            self.stdout_path = os.path.join(self.state_dir, "agent-stdout.%d.log" % self.runs)
            self._stderr_f = open(self.stderr_path, "wb")
            self._stdout_f = open(self.stdout_path, "wb")
            self.proc = subprocess.Popen(self.command(), stdout=self._stdout_f, stderr=self._stderr_f,
                                         stdin=subprocess.DEVNULL, env=dict(sanitizer_env(), **self.env))
            if self._wait_ready(timeout):
                return self
            last = self.stderr()
            self._close_files()
            if port or "in use" not in last.lower():
                break
        raise AgentError("agent did not start (cmd: %s)\nstderr:\n%s" % (" ".join(self.command()), last))

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection((self.listen_host, self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.02)
        self.proc.kill()
        self.proc.wait()
        return False

    def stderr(self):
        if not self.stderr_path or not os.path.exists(self.stderr_path):
            return ""
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def _close_files(self):
        for f in (self._stderr_f, self._stdout_f):
            if f:
                f.close()
        self._stderr_f = self._stdout_f = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=10, check=True, send=True):
        """SIGTERM (unless send=False: a test already sent it; a second
        SIGTERM ends the agent at once, by design); waits; returns the exit
        status. With check: asserts status 0 within timeout and a clean
        stderr (no sanitizer report)."""
        if self.proc is None:
            return None
        if send and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
            late = False
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            late = True
        self._close_files()
        err = self.stderr()
        proc, self.proc = self.proc, None
        if check:
            if late:
                raise AgentError("agent did not exit within %ss of SIGTERM\nstderr:\n%s" % (timeout, err))
            rep = sanitizer_report(err)
            if rep:
                raise AgentError("sanitizer report (%s) in agent stderr:\n%s" % (rep, err))
            if rc != 0:
                raise AgentError("agent exited with status %d after SIGTERM\nstderr:\n%s" % (rc, err))
        del proc
        return rc

    def restart(self, timeout=15):
        self.stop()
        return self.start(timeout=timeout)

    # -- observation -------------------------------------------------------
    def rss_kb(self):
        """VmRSS of the agent in KiB."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AgentError("no VmRSS for pid %d" % self.proc.pid)

    def access_log_records(self):
        """Parsed JSON lines of the access log (raises on a line that is
        not JSON: the log must be one JSON object per line)."""
        if not self.access_log or not os.path.exists(self.access_log):
            return []
        out = []
        with open(self.access_log, "rb") as f:
            data = f.read().decode("utf-8")
        for i, line in enumerate(data.split("\n")):
            if not line.strip():
                continue
            if i == len(data.split("\n")) - 1 and not data.endswith("\n"):
                break  # a line still being written
            try:
                out.append(json.loads(line))
            except ValueError as e:
                raise AgentError("access log line %d is not JSON (%s): %r" % (i + 1, e, line))
        return out

    def wait_access_log(self, pred, count=1, timeout=5.0):
        """Waits until at least `count` records satisfy pred; returns them."""
        deadline = time.monotonic() + timeout
        got = []
        while time.monotonic() < deadline:
            got = [r for r in self.access_log_records() if pred(r)]
            if len(got) >= count:
                return got
            time.sleep(0.02)
        return got


def agent_metrics(agent):
    """{name: value} of the agent's /metrics, asked directly (not proxied).
    A labelled series keeps its labels in the name."""
    from helpers.client import HTTPReader   # client.py does not import this module
    s = socket.create_connection(("127.0.0.1", agent.port), timeout=10)
    try:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n"
                  % agent.port)
        r = HTTPReader(s).response()
    finally:
        s.close()
    assert r.status == 200, r
    out = {}
    for line in r.text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def metrics_delta(before, after, name):
    """How much counter `name` grew between two agent_metrics() readings."""
    assert name in after, "%s missing from /metrics: %s" % (name, sorted(after))
    return after[name] - before.get(name, 0)
