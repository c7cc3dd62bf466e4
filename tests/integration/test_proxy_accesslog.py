"""The access log: one JSON line per request and per tunnel, with the keys
time, client, method, url (host:port for tunnels), status, bytes_in,
bytes_out, duration_ms, mode ("http" | "decode" | "tunnel") and
upstream_verify ("ok" or the reason)."""
import pytest

from helpers.client import ProxyClient, connect_tunnel, https_get


@pytest.fixture
def agent(shared):
    """One agent for this module (see conftest.shared_agent)."""
    return shared

KEYS = {"time", "client", "method", "url", "status", "bytes_in", "bytes_out",
        "duration_ms", "mode"}
# the contract lists upstream_verify for every line; checked separately below
# so a missing key on lines without an upstream TLS check is reported apart
VERIFY_KEY = "upstream_verify"


def check_keys(rec):
    missing = KEYS - set(rec)
    assert not missing, "access log record lacks %s: %r" % (sorted(missing), rec)
    assert isinstance(rec["status"], int)
    for k in ("bytes_in", "bytes_out"):
        assert isinstance(rec[k], int) and rec[k] >= 0, rec
    assert isinstance(rec["duration_ms"], (int, float)) and rec["duration_ms"] >= 0, rec
    assert "127.0.0.1" in str(rec["client"]), rec
    assert rec["time"], rec


def test_plain_http_request_logs_one_http_line(agent, origins):
    plain = origins["plain"]
    url = plain.url("/logged/plain")
    with ProxyClient(agent.port) as c:
        r = c.request("GET", url + "?q=1")
        assert r.status == 200
        r = c.request("GET", plain.url("/bytes/100000"))
        assert r.status == 200
    recs = agent.wait_access_log(lambda r: "/logged/plain" in str(r.get("url")))
    assert len(recs) == 1, recs
    rec = recs[0]
    check_keys(rec)
    assert rec["mode"] == "http" and rec["method"] == "GET" and rec["status"] == 200
    assert rec["url"].startswith("http://plain.test:%d/logged/plain" % plain.port), rec
    big = agent.wait_access_log(lambda r: r.get("url") == plain.url("/bytes/100000"))
    assert len(big) == 1
    assert max(big[0]["bytes_in"], big[0]["bytes_out"]) >= 100000, big[0]


def test_decoded_request_logs_decode_line_with_https_url(agent, origins):
    good = origins["good"]
    r, _ = https_get(agent.port, "good.test", good.port, "/logged/decode", cafile=agent.ca_path)
    assert r.status == 200
    recs = agent.wait_access_log(lambda r: "/logged/decode" in str(r.get("url")))
    assert len(recs) == 1, recs
    rec = recs[0]
    check_keys(rec)
    assert rec["mode"] == "decode" and rec["status"] == 200 and rec["method"] == "GET"
    assert rec["url"] == "https://good.test:%d/logged/decode" % good.port, rec
    assert rec.get("upstream_verify") == "ok", rec


def test_failed_verification_is_logged_with_the_reason(agent, origins):
    o = origins["expired"]
    r, _ = https_get(agent.port, "expired.test", o.port, "/logged/expired", cafile=agent.ca_path)
    assert r.status == 502
    recs = agent.wait_access_log(lambda r: "expired.test" in str(r.get("url")) and r.get("status") == 502)
    assert recs, agent.access_log_records()
    for rec in recs:
        check_keys(rec)
    assert any("expired" in str(rec.get("upstream_verify")).lower() for rec in recs), recs


def test_tunnel_of_non_tls_traffic_logs_one_tunnel_line(agent, echo_server):
    s, r = connect_tunnel(agent.port, "echo.test", echo_server.port)
    try:
        assert r.status == 200, r
        s.sendall(b"SSH-2.0-not-tls-or-http\r\n")
        got = b""
        want = ("SHOJI-ECHO %s\r\n" % echo_server.marker).encode() + b"SSH-2.0-not-tls-or-http\r\n"
        s.settimeout(10)
        while len(got) < len(want):
            d = s.recv(65536)
            if not d:
                break
            got += d
        assert got == want, "tunnel did not carry bytes untouched: %r" % got
    finally:
        s.close()
    target = "echo.test:%d" % echo_server.port
    recs = agent.wait_access_log(lambda r: r.get("url") == target)
    assert len(recs) == 1, agent.access_log_records()
    rec = recs[0]
    check_keys(rec)
    assert rec["mode"] == "tunnel" and rec["method"] == "CONNECT", rec
    assert rec["bytes_in"] > 0 and rec["bytes_out"] > 0, rec


def test_every_line_is_json_and_every_request_is_logged(agent, origins):
    plain = origins["plain"]
    with ProxyClient(agent.port) as c:
        for i in range(5):
            assert c.request("GET", plain.url("/count/%d" % i)).status == 200
    recs = agent.wait_access_log(lambda r: "/count/" in str(r.get("url")), count=5)
    assert sorted(r["url"].rsplit("/", 1)[1] for r in recs) == ["0", "1", "2", "3", "4"]


def test_every_line_carries_the_upstream_verify_key(agent, origins, echo_server):
    """The contract's key list holds for every mode, so log consumers can
    rely on one schema (lines without an upstream TLS check may say so)."""
    plain, good = origins["plain"], origins["good"]
    with ProxyClient(agent.port) as c:
        assert c.request("GET", plain.url("/schema")).status == 200
    https_get(agent.port, "good.test", good.port, "/schema", cafile=agent.ca_path)
    s, r = connect_tunnel(agent.port, "echo.test", echo_server.port)
    s.sendall(b"not tls\r\n")
    s.recv(100)
    s.close()
    recs = agent.wait_access_log(lambda r: "/schema" in str(r.get("url")) or
                                 r.get("url") == "echo.test:%d" % echo_server.port, count=3)
    assert len(recs) >= 3, recs
    missing = [(r.get("mode"), r.get("url")) for r in recs if VERIFY_KEY not in r]
    assert not missing, "lines without %s: %r" % (VERIFY_KEY, missing)
