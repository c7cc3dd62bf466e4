"""Start-up, CA files, signals (SIGHUP reload, graceful SIGTERM)."""
import os
import stat
import threading
import time

from helpers.agent import run_cli
from helpers.client import ProxyClient
from helpers.origin import pattern_sha256


def test_ca_init_writes_certificate_and_private_key_0600(tmp_path):
    d = tmp_path / "state"
    run_cli(["ca", "init", "--state-dir", str(d)])
    assert (d / "ca.crt").read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    mode = stat.S_IMODE(os.stat(d / "ca.key").st_mode)
    assert mode == 0o600, "ca.key mode %o" % mode


def test_sigterm_lets_an_inflight_slow_download_complete(agent, origins):
    plain = origins["plain"]
    size = 400000
    result = {}
    first_bytes = threading.Event()

    def download():
        import hashlib
        h = hashlib.sha256()

        def sink(b):
            h.update(b)
            first_bytes.set()
        try:
            with ProxyClient(agent.port, timeout=20) as c:
                r = c.request("GET", plain.url("/slow/%d?ms=2000" % size), sink=sink)
                result["status"], result["len"], result["sha"] = r.status, r.body_len, h.hexdigest()
        except Exception as e:  # reported below
            result["error"] = repr(e)
        first_bytes.set()

    t = threading.Thread(target=download)
    t.start()
    assert first_bytes.wait(10), "download never started"
    t0 = time.monotonic()
    rc = agent.stop(timeout=15)  # SIGTERM; asserts exit 0 and no sanitizer report
    took = time.monotonic() - t0
    t.join(20)
    assert "error" not in result, "in-flight download broken by SIGTERM: %s" % result.get("error")
    assert result["status"] == 200 and result["len"] == size and result["sha"] == pattern_sha256(size)
    assert rc == 0
    print("\n[shutdown] agent exited %.2fs after SIGTERM with a 2 s download in flight" % took)


def test_sigterm_idle_agent_exits_promptly(agent):
    with ProxyClient(agent.port) as c:
        c.send_raw(b"")  # an idle keep-alive client must not hold shutdown up
        t0 = time.monotonic()
        agent.stop(timeout=10)
        assert time.monotonic() - t0 < 5


def test_sighup_reloads_the_hosts_file(agent_factory, tmp_path, make_origin):
    import signal
    from helpers.agent import write_hosts_file
    hosts = str(tmp_path / "hosts-reload")
    write_hosts_file(hosts, ["early.test"])
    a = agent_factory(hosts_path=hosts).start()
    late = make_origin("late.test")
    with ProxyClient(a.port) as c:
        assert c.request("GET", late.url("/before")).status == 502
    write_hosts_file(hosts, ["early.test", "late.test"])
    a.signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    status = None
    while time.monotonic() < deadline:
        with ProxyClient(a.port) as c:
            status = c.request("GET", late.url("/after")).status
        if status == 200:
            break
        time.sleep(0.1)
    assert status == 200, "late.test still not resolved 5 s after SIGHUP"


def test_sigterm_lets_an_inflight_decoded_download_complete(agent, origins):
    import hashlib
    from helpers.client import HTTPReader, _request_bytes, tls_via_proxy
    good = origins["good"]
    size = 300000
    tls = tls_via_proxy(agent.port, "good.test", good.port, cafile=agent.ca_path, timeout=20)
    tls.sendall(_request_bytes("GET", "/slow/%d?ms=1500" % size, None, None, "good.test:%d" % good.port))
    rd = HTTPReader(tls)
    head = rd.head()
    assert head[1] == 200
    agent.signal(__import__("signal").SIGTERM)
    h = hashlib.sha256()
    rd.read_exact(size, h.update)
    tls.close()
    assert h.hexdigest() == pattern_sha256(size)
    agent.stop(timeout=15, send=False)


def test_bad_listen_address_fails_with_a_message(tmp_path):
    import subprocess
    from helpers.agent import sanitizer_env, shoji_bin
    d = tmp_path / "st"
    run_cli(["ca", "init", "--state-dir", str(d)])
    p = subprocess.run([shoji_bin(), "run", "--listen", "999.1.1.1:99999", "--state-dir", str(d)],
                       capture_output=True, text=True, timeout=20, env=sanitizer_env())
    assert p.returncode != 0 and p.stderr.strip(), (p.returncode, p.stderr)


def test_run_without_ca_says_what_to_do(tmp_path):
    import subprocess
    from helpers.agent import free_port, sanitizer_env, shoji_bin
    p = subprocess.run([shoji_bin(), "run", "--listen", "127.0.0.1:%d" % free_port(),
                        "--state-dir", str(tmp_path / "empty")],
                       capture_output=True, text=True, timeout=20, env=sanitizer_env())
    assert p.returncode != 0
    assert "ca init" in p.stderr, p.stderr
