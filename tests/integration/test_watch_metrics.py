"""`shoji watch` (the live connection view over STATE/admin.sock) and the
agent's GET /metrics (Prometheus text), with the explicit proxy: curl
through the agent, then what an admin sees.

Policy of the module's agent: block other.test; everything else decoded."""
import json
import os
import re
import subprocess
import time

import pytest

from helpers.agent import Agent, sanitizer_env, shoji_bin

POLICY = {"block": ["other.test"], "auto_avoid": {"enabled": False}}


@pytest.fixture(scope="module")
def module_agent(tmp_path_factory, hosts_file, pki):
    """One agent for the module (ASan start-up costs seconds)."""
    d = tmp_path_factory.mktemp("watch-agent")
    (d / "policy.json").write_text(json.dumps(POLICY))
    a = Agent(str(d / "state"), hosts_path=hosts_file, upstream_ca=pki.ca_cert_path,
              access_log=str(d / "access.log"), policy=str(d / "policy.json"))
    a.ca_init()
    a.start()
    yield a
    a.stop(check=True)


@pytest.fixture
def agent(module_agent):
    yield module_agent
    assert module_agent.running(), "the agent died (exit %s)\n%s" % (module_agent.proc.returncode,
                                                                      module_agent.stderr())


def env():
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


def curl(args, timeout=20):
    return subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True, text=True,
                          timeout=timeout, env=env())


def via(agent, url, *args):
    return curl(["-x", agent.proxy_url, "--cacert", agent.ca_path, *args, url])


def watch(agent, *args, timeout=20):
    r = subprocess.run([shoji_bin(), "watch", "--state-dir", agent.state_dir, *args], capture_output=True,
                       text=True, timeout=timeout, env=sanitizer_env())
    assert r.returncode == 0, "shoji watch %s -> %d\n%s" % (" ".join(args), r.returncode, r.stderr)
    return r.stdout


def events(agent):
    return [json.loads(x) for x in watch(agent, "--once", "--json").splitlines() if x.strip()]


# --- shoji watch --------------------------------------------------------------

def test_watch_once_lists_a_decoded_connection_with_everything_an_admin_needs(agent, origins):
    good = origins["good"]
    r = via(agent, good.url("/watch/once?x=1"))
    assert r.returncode == 0 and good.marker in r.stdout, r.stderr
    out = watch(agent, "--once")
    head = out.splitlines()[0]
    for col in ("PROCESS", "PID", "DESTINATION", "SNI", "CERTIFICATE", "VERDICT", "URL", "RULE"):
        assert col in head, head
    rows = [x for x in out.splitlines()[1:] if "/watch/once" in x]
    assert len(rows) == 1, out
    row = rows[0]
    assert "/usr/bin/curl" in row, row
    assert "good.test:%d" % good.port in row or "127.0.0.1:%d" % good.port in row, row
    assert re.search(r"\sgood\.test\s", row), "SNI / certificate name missing: %s" % row
    assert len(re.findall(r"(?<![\w.])good\.test(?![\w.:])", row)) >= 2, "SNI and cert name: %s" % row
    # the row keeps the latest verdict: the request's "allow" once one was made
    assert " decode " in row or " allow " in row, row
    assert "/watch/once" in row
    # the rule column: the reason of the verdict, never empty
    rule = row.split("/watch/once", 1)[1].split(None, 1)
    assert len(rule) == 2 and rule[1].strip() not in ("", "-"), "no rule: %s" % row


def test_watch_once_json_carries_process_destination_sni_cert_url_verdict_rule(agent, origins):
    good = origins["good"]
    r = via(agent, good.url("/watch/json"))
    assert r.returncode == 0, r.stderr
    evs = events(agent)
    mine = [e for e in evs if "/watch/json" in str(e.get("url"))]
    assert mine, evs
    conn = mine[0]["conn"]
    evs = [e for e in evs if e["conn"] == conn]
    kinds = [e["kind"] for e in evs]
    assert kinds[0] == "o" and kinds[-1] == "c" and "v" in kinds and "r" in kinds, kinds
    merged = {}
    for e in evs:
        merged.update({k: v for k, v in e.items() if v not in (None, "")})
    assert merged.get("app_path") == "/usr/bin/curl" and merged.get("pid", 0) > 0, merged
    assert str(good.port) in str(merged.get("dst")), merged
    assert merged.get("sni") == "good.test", merged
    assert merged.get("cert") == "good.test", merged
    assert [e for e in evs if e["kind"] == "v"][0].get("verdict") == "decode", evs
    assert merged.get("rule"), "no rule in any event of the connection: %r" % evs


def test_watch_shows_a_blocked_request_with_its_rule(agent, origins):
    plain = origins["plain"]
    r = curl(["-x", agent.proxy_url, "-w", "\n%{http_code}", "http://other.test:%d/watch/blocked" % plain.port])
    assert r.stdout.rstrip().endswith("403"), r.stdout
    out = watch(agent, "--once")
    rows = [x for x in out.splitlines() if "/watch/blocked" in x]
    assert len(rows) == 1, out
    assert " block " in rows[0] and "block[0]" in rows[0], out


def test_watch_shows_a_blocked_decoded_connect_with_verdict_and_rule(agent, origins):
    """A CONNECT to a blocked host that would be decoded is decoded and its
    request answered with the block page; the view says block, and why."""
    good = origins["good"]
    r = curl(["-x", agent.proxy_url, "--cacert", agent.ca_path, "-w", "\n%{http_code}",
              "https://other.test:%d/watch/blocked-connect" % good.port])
    assert r.stdout.rstrip().endswith("403"), (r.returncode, r.stdout[-300:], r.stderr)
    out = watch(agent, "--once")
    rows = [x for x in out.splitlines() if "other.test:%d" % good.port in x]
    assert rows, out
    assert any(" block " in x and "block[0]" in x for x in rows), out


def test_watch_shows_a_blocked_undecodable_connect_with_verdict_and_rule(agent, echo_server):
    """CONNECT other.test (blocked), then bytes that are not TLS: no page is
    possible, the connection is closed; the view must still say block."""
    with socket_via_connect(agent, "other.test", echo_server.port) as s:
        s.sendall(b"\x00\x01not tls\n")
        s.settimeout(5)
        try:
            got = s.recv(4096)
        except OSError:
            got = b""
        assert echo_server.marker.encode() not in got, "a blocked host was tunnelled: %r" % got
    time.sleep(0.2)
    out = watch(agent, "--once")
    rows = [x for x in out.splitlines() if "other.test:%d" % echo_server.port in x]
    assert rows, out
    assert any(" block " in x and "block[0]" in x for x in rows), \
        "the blocked CONNECT shows no verdict / rule:\n%s" % out


def test_watch_json_count_streams_live_events_and_exits(agent, origins):
    good = origins["good"]
    backlog = len(events(agent))
    p = subprocess.Popen([shoji_bin(), "watch", "--state-dir", agent.state_dir, "--json", "--count",
                          str(backlog + 4)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=sanitizer_env())
    try:
        time.sleep(0.8)   # connected and through the backlog
        assert p.poll() is None, "watch exited before the request: %s" % p.stderr.read()
        r = via(agent, good.url("/watch/stream"))
        assert r.returncode == 0, r.stderr
        out, err = p.communicate(timeout=5)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    lines = [json.loads(x) for x in out.splitlines() if x.strip()]
    assert len(lines) == backlog + 4, lines
    live = lines[backlog:]
    assert [e["kind"] for e in live] == ["o", "v", "r", "c"], live
    assert len({e["conn"] for e in live}) == 1, live
    assert "/watch/stream" in str(live[2].get("url")) and live[2].get("status") == 200, live
    seqs = [e["seq"] for e in lines]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs


def test_watch_without_an_agent_says_so(tmp_path):
    r = subprocess.run([shoji_bin(), "watch", "--state-dir", str(tmp_path), "--once"], capture_output=True,
                       text=True, timeout=10, env=sanitizer_env())
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "admin.sock" in r.stderr or "running" in r.stderr, r.stderr


# --- /metrics -----------------------------------------------------------------

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.eE+]+|NaN|[+-]Inf)$')


def scrape(agent):
    r = curl(["--noproxy", "*", "-D", "-", "http://127.0.0.1:%d/metrics" % agent.port])
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.replace("\r\n", "\n").partition("\n\n")
    assert head.split()[1] == "200", head
    assert re.search(r"(?im)^content-type: text/plain", head), head
    values, typed = {}, set()
    for line in body.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if not line or line.startswith("#"):
            continue
        m = LINE.match(line)
        assert m, "not Prometheus text: %r" % line
        assert m.group(1) in typed, "%s has no # TYPE line" % m.group(1)
        values[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return values


def test_metrics_is_prometheus_text_and_counters_move(agent, origins, echo_server):
    good, plain = origins["good"], origins["plain"]
    before = scrape(agent)
    for name in ("shoji_connections_total", "shoji_requests_total", "shoji_decoded_total",
                 "shoji_tunnels_total", "shoji_blocked_total", "shoji_connections_open"):
        assert name in before, sorted(before)
    assert via(agent, good.url("/m/decoded")).returncode == 0
    assert via(agent, plain.url("/m/plain")).returncode == 0
    r = curl(["-x", agent.proxy_url, "-w", "%{http_code}", "-o", "/dev/null", "http://other.test:%d/m/blocked" % plain.port])
    assert r.stdout == "403", r.stdout
    with socket_via_connect(agent, "echo.test", echo_server.port) as s:
        s.sendall(b"\x00\x01ping\n")
        got = b""
        deadline = time.monotonic() + 5
        while b"ping" not in got and time.monotonic() < deadline:
            got += s.recv(4096)
        assert echo_server.marker.encode() in got and b"ping" in got, got
    time.sleep(0.3)
    after = scrape(agent)
    d = {k: after[k] - before.get(k, 0) for k in after}
    assert d["shoji_connections_total"] >= 4, d
    assert d["shoji_requests_total"] >= 2, d
    assert d["shoji_decoded_total"] == 1, d
    assert d["shoji_blocked_total"] == 1, d
    assert d["shoji_tunnels_total"] == 1, d
    minted = sum(v for k, v in after.items() if k.startswith("shoji_leaf_certificates_total"))
    assert minted >= 1, after
    for k, v in after.items():
        if k.endswith("_total") or "_total{" in k:
            assert v >= before.get(k, 0), "counter %s went down" % k


def socket_via_connect(agent, host, port):
    import socket
    s = socket.create_connection(("127.0.0.1", agent.port), timeout=5)
    s.sendall(("CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (host, port, host, port)).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        d = s.recv(1)
        if not d:
            break
        head += d
    assert head.startswith(b"HTTP/1.1 200"), head
    return s


def test_metrics_is_served_directly_not_proxied(agent):
    # an absolute-form request for /metrics of another host is proxied, not answered locally
    r = curl(["-x", agent.proxy_url, "-w", "\n%{http_code}", "http://closed.test:1/metrics"])
    assert "shoji_connections_total" not in r.stdout, r.stdout
