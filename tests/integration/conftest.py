"""Fixtures shared by every integration suite.

  pki            (session)  TestPKI: test root CA + leaves (helpers/pki.py)
  certs          (session)  dict of CertPair: good, wrongname, expired, selfsigned
  hosts_file     (session)  hosts(5) file naming the test origins 127.0.0.1
  origins        (function) dict of running Origin: good, www (same server as
                            good), expired, selfsigned, wrongname (TLS), plain (HTTP)
  make_origin    (function) make_origin(name, cert=None) -> started Origin
  echo_server    (function) a plain TCP echo server (neither TLS nor HTTP)
  agent_factory  (function) agent_factory(**overrides) -> Agent, CA made, not
                            started; every agent is stopped at teardown with
                            the exit-status and sanitizer checks
  agent          (function) a started agent with the defaults below
  shared_agent   (module)   one started agent for a whole test module (start-up
                            of an ASan build costs ~1.5 s); a module opts in by
                            defining its `agent` fixture from `shared` (see
                            test_proxy_http.py). After each test
                            it must still be running; at module end it is
                            stopped with the same checks.
Defaults of an agent: a fresh state dir under tmp_path, --hosts hosts_file,
--upstream-ca the test root CA, --access-log tmp_path/access.log, --workers 2.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from helpers.agent import Agent, shoji_bin, write_hosts_file  # noqa: E402
from helpers.origin import Origin, TCPEchoServer  # noqa: E402
from helpers.pki import TestPKI  # noqa: E402

# Names the agent resolves through --hosts; all are 127.0.0.1 (each origin
# has its own port). nxdomain.invalid is deliberately absent.
TEST_HOST_NAMES = [
    "good.test", "www.good.test", "expired.test", "selfsigned.test", "wrongname.test",
    "other.test", "plain.test", "closed.test", "echo.test", "unknownca.test",
    "trustedsourceserver_imqa01.test", "a.wild.test",
] + ["race%d.test" % i for i in range(8)]


def require_agent_binary():
    b = shoji_bin()
    if not os.access(b, os.X_OK):
        pytest.fail("shoji binary not found at %s: build it, or set SHOJI_BIN" % b, pytrace=False)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return TestPKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def certs(pki):
    return {
        "good": pki.leaf("good.test", sans=["good.test", "www.good.test"]),
        "wrongname": pki.leaf("other.test", sans=["other.test"], label="wrongname-other.test"),
        "expired": pki.leaf("expired.test", expired=True),
        "selfsigned": pki.self_signed("selfsigned.test"),
        "plainhost": pki.leaf("plain.test"),
    }


@pytest.fixture(scope="session")
def hosts_file(tmp_path_factory):
    return write_hosts_file(tmp_path_factory.mktemp("hosts") / "hosts", TEST_HOST_NAMES)


@pytest.fixture
def make_origin():
    started = []

    def make(name, cert=None):
        o = Origin(name, cert).start()
        started.append(o)
        return o

    yield make
    for o in started:
        o.stop()


@pytest.fixture
def origins(make_origin, certs):
    good = make_origin("good.test", certs["good"])
    return {
        "good": good,
        "expired": make_origin("expired.test", certs["expired"]),
        "selfsigned": make_origin("selfsigned.test", certs["selfsigned"]),
        "wrongname": make_origin("wrongname.test", certs["wrongname"]),
        "plain": make_origin("plain.test"),
    }


@pytest.fixture
def echo_server():
    s = TCPEchoServer().start()
    yield s
    s.stop()


@pytest.fixture
def agent_factory(tmp_path, hosts_file, pki):
    require_agent_binary()
    made = []

    def make(**kw):
        n = len(made)
        kw.setdefault("hosts_path", hosts_file)
        kw.setdefault("upstream_ca", pki.ca_cert_path)
        kw.setdefault("access_log", str(tmp_path / ("access%s.log" % (n or ""))))
        state = kw.pop("state_dir", None) or str(tmp_path / ("state%s" % (n or "")))
        a = Agent(state, **kw)
        if not os.path.exists(os.path.join(state, "ca.crt")):
            a.ca_init()
        made.append(a)
        return a

    yield make
    errors = []
    for a in made:
        try:
            a.stop(check=True)
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("agent teardown:\n" + "\n\n".join(errors), pytrace=False)


@pytest.fixture
def agent(agent_factory):
    return agent_factory().start()


@pytest.fixture(scope="module")
def shared_agent(tmp_path_factory, hosts_file, pki):
    require_agent_binary()
    d = tmp_path_factory.mktemp("shared-agent")
    a = Agent(str(d / "state"), hosts_path=hosts_file, upstream_ca=pki.ca_cert_path,
              access_log=str(d / "access.log"))
    a.ca_init()
    a.start()
    yield a
    a.stop(check=True)


@pytest.fixture
def shared(shared_agent):
    """Use as `agent` in a module: `@pytest.fixture\ndef agent(shared): return shared`."""
    yield shared_agent
    if not shared_agent.running():
        pytest.fail("the agent died during this test (exit %s)\nstderr:\n%s" % (
            shared_agent.proc.returncode, shared_agent.stderr()), pytrace=False)
