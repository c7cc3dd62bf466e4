"""The real agent in transparent mode, inside a Topology (see __init__.py).

  lab = Lab(topology, pki, tmpdir, policy={...})   # sites + hosts + policy
  lab.start_agent()          # `shoji run --transparent` in the client ns
  lab.enable()               # `shoji intercept enable --port TPORT`, waits live
  lab.https("good.test")     # Python client (webclient.py) in the client ns
  lab.curl([...])            # curl in the client ns, no proxy variables

Sites (origin namespace; names resolved by the agent through its --hosts
file, by the clients through --resolve / explicit addresses):

  good.test       192.0.2.2    :443 (test-root cert) and :80; [2001:db8:5::2]:443
  blocked.test    198.51.100.2 :443 and :80      (policy: block)
  excluded.test   203.0.113.2  :443 and :80      (policy: decode.exclude_hosts);
  gsa.apple.com   203.0.113.2  same server, its cert names both
  down.test       203.0.113.4  nothing listens (policy: block)
  echo            203.0.113.3  :443 neither TLS nor HTTP (banner, then echo)
  udp             192.0.2.2    UDP :443 and :444 answer every datagram

Every connection a site accepts, and every request it reads, is logged
(site, local, peer[, request, host]) to lab.site_log, so a test can count
what reached the origin and from where.
"""
import json
import os
import shutil
import signal
import subprocess
import time

from helpers.agent import Agent, AgentError
from netns import PYTHON, TOOLS

HERE = os.path.dirname(os.path.abspath(__file__))
SITES = os.path.join(HERE, "sites.py")
WEBCLIENT = os.path.join(HERE, "webclient.py")

LISTEN_PORT = 3128
TPORT = 3129
ECHO_IP = "203.0.113.3"
DOWN_IP = "203.0.113.4"      # an address of the origin ns where nothing listens
GOOD_IP6 = "2001:db8:5::2"   # good.test over IPv6 (the origin veth's address)

ADDR = {"good.test": "192.0.2.2", "blocked.test": "198.51.100.2",
        "excluded.test": "203.0.113.2", "gsa.apple.com": "203.0.113.2", "down.test": DOWN_IP}

DEFAULT_POLICY = {
    "block": ["blocked.test", "down.test"],
    "decode": {"exclude_hosts": ["excluded.test", "gsa.apple.com", "*.unresolved.test"]},
    "disabled_apps": ["disabledcurl"],
    # tests check certificates with clients that reject one side's CA on
    # purpose: that must not teach the agent a conflict exclusion
    "auto_avoid": {"enabled": False},
}


def clean_env():
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    return env


class NsAgent(Agent):
    """Agent run with `ip netns exec` (which execs: proc.pid is the agent)."""

    def __init__(self, topology, state_dir, **kw):
        super().__init__(state_dir, **kw)
        self.t = topology

    def command(self):
        return self.t.cmd("client", super().command())

    def start(self, timeout=20, port=LISTEN_PORT):
        return super().start(timeout=timeout, port=port)

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            r = self.t.run("client", [PYTHON, TOOLS, "probe-tcp", "--host", "127.0.0.1", "--port",
                                      str(self.port), "--timeout", "0.5", "--send", ""], check=False)
            if '"connected": true' in r.stdout:
                return True
            time.sleep(0.05)
        self.proc.kill()
        self.proc.wait()
        return False


_CERTS = {}


def site_certs(pki):
    """The sites' certificates, made once per TestPKI (RSA keys are slow)."""
    if id(pki) not in _CERTS:
        _CERTS[id(pki)] = (pki, {
            "good.test": pki.leaf("good.test"),
            "blocked.test": pki.leaf("blocked.test"),
            "excluded.test": pki.leaf("excluded.test", sans=["excluded.test", "gsa.apple.com"])})
    return _CERTS[id(pki)][1]


class Lab:
    def __init__(self, topology, pki, tmpdir, policy=None, ca_from=None):
        """ca_from: a state dir whose CA (ca.crt, ca.key, leaf.key) the agent
        reuses, instead of `shoji ca init` (seconds under ASan)."""
        self.t = topology
        self.pki = pki
        self.dir = str(tmpdir)
        os.makedirs(self.dir, exist_ok=True)
        self.site_log = os.path.join(self.dir, "sites.log")
        self.markers = {n: "SITE-%s-%s" % (n, os.urandom(4).hex()) for n in
                        ("good.test", "blocked.test", "excluded.test")}
        self.policy_path = os.path.join(self.dir, "policy.json")
        with open(self.policy_path, "w") as f:
            json.dump(DEFAULT_POLICY if policy is None else policy, f)
        self.hosts_path = os.path.join(self.dir, "hosts")
        with open(self.hosts_path, "w") as f:
            for name, ip in ADDR.items():
                f.write("%s %s\n" % (ip, name))
        self.agent = None
        self.state_dir = os.path.join(self.dir, "state")
        if ca_from:
            os.makedirs(self.state_dir, exist_ok=True)
            for f in ("ca.crt", "ca.key", "leaf.key"):
                if os.path.exists(os.path.join(ca_from, f)):
                    shutil.copy2(os.path.join(ca_from, f), self.state_dir)
        self._start_sites()

    # --- origin side -------------------------------------------------------
    def _start_sites(self):
        t = self.t
        for ip in (ECHO_IP, DOWN_IP):
            t._ip("-n", t.ns["origin"], "addr", "add", ip + "/24", "dev", "sho%s" % t.tag)
        certs = site_certs(self.pki)
        argv = [PYTHON, SITES, "--log", self.site_log]
        for name, cp in certs.items():
            ip = ADDR[name]
            argv += ["--tls", name, ip, "443", cp.cert_path, cp.key_path, self.markers[name]]
            argv += ["--http", name, ip, "80", self.markers[name]]
        cp = certs["good.test"]
        argv += ["--tls", "good.test", GOOD_IP6, "443", cp.cert_path, cp.key_path, self.markers["good.test"]]
        argv += ["--echo", ECHO_IP, "443", "--udp", ADDR["good.test"], "443",
                 "--udp", ADDR["good.test"], "444"]
        p = t.popen("origin", argv)
        line = p.stdout.readline()
        assert '"ready": true' in line, "sites did not start: %s %s" % (line, p.stderr.read()
                                                                     if p.poll() is not None else "")

    def site_connections(self, site=None):
        if not os.path.exists(self.site_log):
            return []
        with open(self.site_log) as f:
            recs = [json.loads(x) for x in f if x.strip()]
        return [r for r in recs if site is None or r["site"] == site]

    # --- the agent -----------------------------------------------------------
    def start_agent(self, extra=()):
        """Starts the lab's agent (again, after a stop or kill)."""
        if self.agent is not None and not extra:
            assert not self.agent.running()
            return self.agent.start()
        a = NsAgent(self.t, self.state_dir, hosts_path=self.hosts_path, upstream_ca=self.pki.ca_cert_path,
                    access_log=os.path.join(self.dir, "access.log"), policy=self.policy_path,
                    extra_args=["--transparent", "127.0.0.1:%d" % TPORT, *extra])
        if not os.path.exists(a.ca_path):
            a.ca_init()
        self.agent = a.start()
        return a

    def intercept(self, *args, check=True):
        return self.t.run("client", [self.agent_bin(), "intercept", *args], check=check)

    @staticmethod
    def agent_bin():
        from helpers.agent import shoji_bin
        return shoji_bin()

    def enable(self, *opts, wait_live=True):
        self.intercept("enable", "--port", str(TPORT), *opts)
        if wait_live:
            self.wait_live()

    def wait_live(self, timeout=8.0):
        deadline = time.monotonic() + timeout
        while True:
            out = self.intercept("status").stdout
            if "agent live" in out and "not live" not in out:
                return out
            if time.monotonic() > deadline:
                raise AssertionError("the agent never became live:\n%s\nagent stderr:\n%s" % (
                    out, self.agent.stderr() if self.agent else ""))
            time.sleep(0.1)

    def kill_agent(self):
        self.agent.proc.send_signal(signal.SIGKILL)
        self.agent.proc.wait(timeout=10)
        self.agent._close_files()
        self.agent.proc = None

    def stderr(self):
        return self.agent.stderr() if self.agent else ""

    # --- clients (client namespace, no proxy settings) ---------------------
    def client(self, *args, timeout=20):
        r = self.t.run("client", [PYTHON, WEBCLIENT, *args], check=False, timeout=timeout, env=clean_env())
        assert r.stdout.strip(), "webclient printed nothing: %s" % r.stderr
        return json.loads(r.stdout.strip().splitlines()[-1])

    def https(self, name, ip=None, host=None, path="/", cafile=None, timeout=5):
        args = ["https", "--ip", ip or ADDR[name], "--port", "443", "--sni", name, "--path", path,
                "--timeout", str(timeout)]
        if host:
            args += ["--host", host]
        if cafile:
            args += ["--cafile", cafile]
        return self.client(*args)

    def http(self, host, ip=None, path="/", timeout=5):
        return self.client("http", "--ip", ip or ADDR[host], "--port", "80", "--host", host,
                           "--path", path, "--timeout", str(timeout))

    def curl(self, args, binary="curl", timeout=20):
        """curl in the client namespace; returns CompletedProcess."""
        return self.t.run("client", [binary, "-sS", "--max-time", "8", *args], check=False,
                          timeout=timeout, env=clean_env())

    def renamed_curl(self, name):
        path = os.path.join(self.dir, name)
        if not os.path.exists(path):
            shutil.copy2(shutil.which("curl"), path)
        return path

    def access_log(self, pred=lambda r: True):
        return [r for r in self.agent.access_log_records() if pred(r)] if self.agent else []


def metrics_text(lab):
    """GET /metrics of the agent in the lab, fetched inside the client ns."""
    r = lab.curl(["http://127.0.0.1:%d/metrics" % LISTEN_PORT])
    assert r.returncode == 0, r.stderr
    return r.stdout


def metric(text, name):
    """The value of an unlabelled metric in Prometheus text, or None."""
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


__all__ = ["Lab", "NsAgent", "AgentError", "ADDR", "ECHO_IP", "DOWN_IP", "GOOD_IP6", "TPORT", "LISTEN_PORT",
           "metrics_text", "metric", "subprocess"]
