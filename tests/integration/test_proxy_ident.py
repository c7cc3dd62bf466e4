"""Who is the client: the socket -> process lookup runs off the worker's
event loop when it needs a /proc walk (the first connection of a program),
and every decision waits for it. SHOJI_TEST_IDENT_DELAY_MS (tests only)
makes each walk that slow, so the client's request head arrives, or the
client hangs up, while its lookup is still pending. The clients are fresh
processes named `identwait` (prctl), a filtering-disabled application."""
import json
import subprocess
import sys
import time
import urllib.request

import pytest

DELAY_MS = 700
POLICY = {
    "name": "ident",
    "default_action": "allow",
    "disabled_apps": ["identwait"],
    "auto_avoid": {"enabled": False},
}

# A client process of its own: names itself, connects, sends at once.
CLIENT = r'''
import ctypes, os, socket, sys, time
ctypes.CDLL(None).prctl(15, b"identwait", 0, 0, 0)
port, mode, target = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.create_connection(("127.0.0.1", port))
t0 = time.monotonic()
if mode.startswith("hangup"):
    if mode == "hangup-half":
        s.sendall(b"GET http://")      # half a head, then gone
    time.sleep(0.2)                    # (the agent has queued the walk by now)
    s.close()
    print(os.getpid())
    sys.exit(0)
if mode == "connect":
    s.sendall(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target.encode(), target.encode()))
else:
    host = target.split("/")[2].encode()
    s.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (target.encode(), host))
data = b""
s.settimeout(10)
while b"\r\n\r\n" not in data:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print(os.getpid(), round(time.monotonic() - t0, 3), data.split(b"\r\n")[0].decode())
s.close()
'''


def client(port, mode, target, wait=True):
    cmd = [sys.executable, "-c", CLIENT, str(port), mode, target]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    pid, elapsed, status = p.stdout.strip().split(" ", 2)
    return int(pid), float(elapsed), status


@pytest.fixture
def slow_agent(agent_factory, tmp_path):
    pol = tmp_path / "policy.json"
    pol.write_text(json.dumps(POLICY) + "\n")
    return agent_factory(policy=str(pol), env={"SHOJI_TEST_IDENT_DELAY_MS": str(DELAY_MS)}).start()


def open_connections(agent):
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % agent.port, timeout=10).read().decode()
    for line in body.splitlines():
        if line.startswith("shoji_connections_open "):
            return int(line.split()[1])
    raise AssertionError("no shoji_connections_open in /metrics")


def test_connect_sent_before_the_lookup_ends_is_decided_with_the_app(slow_agent, origins):
    good = origins["good"]
    pid, elapsed, status = client(slow_agent.port, "connect", "good.test:%d" % good.port)
    assert " 200 " in status, status
    # the answer waited for the walk: the head was there long before
    assert elapsed >= DELAY_MS / 1000 * 0.6, elapsed
    recs = slow_agent.wait_access_log(lambda r: r.get("pid") == pid)
    rec = recs[0]
    assert rec.get("app") == "identwait", rec
    assert rec.get("mode") == "bypass", rec
    assert "disabled_apps" in str(rec.get("rule")), rec


def test_plain_request_sent_before_the_lookup_ends_logs_the_app(slow_agent, origins):
    plain = origins["plain"]
    pid, elapsed, status = client(slow_agent.port, "get", plain.url("/ident/plain"))
    assert " 200 " in status, status
    assert elapsed >= DELAY_MS / 1000 * 0.6, elapsed
    recs = slow_agent.wait_access_log(lambda r: "/ident/plain" in str(r.get("url")))
    assert recs[0].get("app") == "identwait" and recs[0].get("pid") == pid, recs


def test_clients_that_hang_up_during_the_lookup_are_freed(slow_agent, origins):
    # several at once: one walk looks for all of them; each holds its
    # connection until the walk returns, then is freed (ASan checks at stop)
    # (silent ones are seen closing while pending, half-head ones after)
    procs = [client(slow_agent.port, "hangup-half" if i % 2 else "hangup", "-", wait=False)
             for i in range(12)]
    for p in procs:
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
    # a client arriving meanwhile still gets its answer, with its name
    good = origins["good"]
    pid, _, status = client(slow_agent.port, "connect", "good.test:%d" % good.port)
    assert " 200 " in status, status
    rec = slow_agent.wait_access_log(lambda r: r.get("pid") == pid)[0]
    assert rec.get("app") == "identwait", rec
    # every connection is freed (the /metrics request counts itself)
    deadline = time.monotonic() + 10
    while open_connections(slow_agent) > 1:
        assert time.monotonic() < deadline, "connections left open after their clients hung up"
        time.sleep(0.2)
    assert slow_agent.running()
