"""`shoji compat` and `shoji conflicts` driven as an admin would: the real
binary, real files, real processes (copies of /bin/sleep under the names of
the products in the vendor note) and a stand-in agent process named shoji that
must receive SIGHUP when the policy changes."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from helpers.agent import REPO, sanitizer_env, shoji_bin  # noqa: E402

CATALOG = os.path.join(REPO, "data", "compat.json")
SCHEMA = os.path.join(REPO, "data", "compat.schema.json")


def shoji(*args, env=None, check=True):
    e = sanitizer_env()
    e.pop("SHOJI_COMPAT_CATALOG", None)
    if env:
        e.update(env)
    p = subprocess.run([shoji_bin(), *args], capture_output=True, text=True, timeout=60, env=e)
    if check and p.returncode != 0:
        raise AssertionError("shoji %s exited %d\nstdout:\n%s\nstderr:\n%s"
                             % (" ".join(args), p.returncode, p.stdout, p.stderr))
    assert "ERROR: AddressSanitizer" not in p.stderr and "runtime error" not in p.stderr, p.stderr
    return p


class FakeProcesses:
    """Runs copies of /bin/sleep named after products; kills them at the end."""

    def __init__(self, directory):
        self.dir = directory
        self.procs = {}

    def start(self, name):
        exe = os.path.join(self.dir, name)
        shutil.copy("/bin/sleep", exe)
        p = subprocess.Popen([exe, "60"])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # until the exec shows in /proc
            try:
                with open("/proc/%d/comm" % p.pid) as f:
                    if f.read().strip() == name[:15]:
                        break
            except OSError:
                pass
            time.sleep(0.01)
        self.procs[name] = p
        return p

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
            p.wait(timeout=5)


@pytest.fixture
def fakes(tmp_path):
    d = tmp_path / "bin"
    d.mkdir()
    f = FakeProcesses(str(d))
    yield f
    f.stop()


ADMIN_POLICY = """{
  "template": "junior_high",
  "categories": {"adult": "block", "games": "allow"},
  "decode": {"enabled": true, "exclude_hosts": ["gsa.apple.com"]},
  "disabled_apps": ["skypeapp"],
  "allow": ["good.example"]
}
"""


def test_shipped_catalog_satisfies_its_json_schema():
    jsonschema = pytest.importorskip("jsonschema")
    with open(SCHEMA) as f:
        schema = json.load(f)
    with open(CATALOG) as f:
        catalog = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(catalog)
    ids = [e["id"] for e in catalog["entries"]]
    assert len(ids) == len(set(ids)) == 17
    # the schema refuses what the C loader refuses
    bad = json.loads(json.dumps(catalog))
    bad["entries"][0]["workarounds"][0]["exclude_host"] = ["x.example"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(bad)
    bad = json.loads(json.dumps(catalog))
    bad["entries"][3]["condition"] = {"kind": "install_order", "ja": "x", "en": "x"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(bad)


def test_list_shows_every_entry_with_its_workaround():
    out = shoji("compat", "list").stdout
    with open(CATALOG) as f:
        for e in json.load(f)["entries"]:
            assert e["id"] in out
    line = next(l for l in out.splitlines() if l.startswith("trendmicro-bs9-smartscan"))
    assert "*icrc.trendmicro.com" in line and "NTRTSCAN" in line
    assert "17 entries" in out


def test_show_in_japanese_and_english():
    ja = shoji("compat", "show", "trendmicro-bs9-smartscan", "--lang", "ja").stdout
    assert "ビジネスセキュリティクライアントのスマートスキャン使用不可となる" in ja
    assert "CATSクライアントとビジネスセキュリティ同居時" in ja
    en = shoji("compat", "show", "mcafee-tp2017-invalid-certificate").stdout
    assert "trustedserverserver_imqa01" in en and "trustedsourceserver_imqa01" in en
    assert "probably a typo" in en
    assert "2017-11-06" in en
    steps = shoji("compat", "show", "eset-eps10-block-page", "--lang", "ja").stdout
    assert "[shoji]" in steps and "nsffprx" not in steps.split("uncertain:")[0]
    p = shoji("compat", "show", "no-such-entry", check=False)
    assert p.returncode == 1 and "no entry" in p.stderr


def test_detect_finds_running_products_and_ignores_others(fakes, tmp_path):
    trend = fakes.start("NTRTSCAN")
    skype = fakes.start("skypehost")
    fakes.start("notepad")
    pol = tmp_path / "policy.json"
    pol.write_text(ADMIN_POLICY)
    out = shoji("compat", "detect", "--policy", str(pol)).stdout
    assert "trendmicro-bs9-smartscan" in out and "pid %d" % trend.pid in out
    assert "skype-store-signin" in out and "pid %d" % skype.pid in out
    assert "notepad" not in out
    assert 'policy lacks: decode.exclude_hosts "*icrc.trendmicro.com"' in out
    assert 'policy lacks: disabled_apps "skypehost"' in out
    assert 'disabled_apps "skypeapp"' not in out      # the policy has it
    assert "apple" not in out                          # not running here
    fakes.stop()
    out = shoji("compat", "detect").stdout
    assert "NTRTSCAN" not in out and "skypehost" not in out


def test_apply_twice_changes_nothing_the_second_time(tmp_path):
    pol = tmp_path / "policy.json"
    pol.write_text(ADMIN_POLICY)
    state = tmp_path / "state"
    state.mkdir()
    first = shoji("compat", "apply", "microsoft-intune-install", "skype-store-signin",
                  "--policy", str(pol), "--state-dir", str(state)).stdout
    assert 'added disabled_apps "omsvchost2"' in first
    assert 'added decode.exclude_hosts "*manage.microsoft.com"' in first
    assert 'added disabled_apps "skypehost"' in first
    assert 'added disabled_apps "skypeapp"' not in first    # the policy had it
    assert "no agent running" in first
    text1 = pol.read_bytes()
    doc = json.loads(text1)
    assert list(doc) == ["template", "categories", "decode", "disabled_apps", "allow"]
    assert doc["categories"] == {"adult": "block", "games": "allow"}
    assert doc["decode"]["exclude_hosts"] == ["gsa.apple.com", "*manage.microsoft.com"]
    assert doc["disabled_apps"] == ["skypeapp", "omsvchost2", "skypehost"]
    assert doc["allow"] == ["good.example"]
    second = shoji("compat", "apply", "microsoft-intune-install", "skype-store-signin",
                   "--policy", str(pol), "--state-dir", str(state)).stdout
    assert "nothing to change" in second
    assert pol.read_bytes() == text1


def test_apply_detected_reloads_the_running_agent(fakes, tmp_path):
    fakes.start("NTRTSCAN")
    agent = fakes.start("shoji")          # stands in for `shoji run`
    state = tmp_path / "state"
    state.mkdir()
    (state / "shoji.pid").write_text("%d\n" % agent.pid)
    pol = tmp_path / "policy.json"
    out = shoji("compat", "apply", "--detected", "--policy", str(pol),
                "--state-dir", str(state)).stdout
    assert "created" in out
    assert "reloaded the running agent (pid %d)" % agent.pid in out
    assert agent.wait(timeout=5) == -signal.SIGHUP
    doc = json.loads(pol.read_text())
    assert "*icrc.trendmicro.com" in doc["decode"]["exclude_hosts"]
    assert "wfbs-svc-nabu.trendmicro.com" in doc["decode"]["exclude_hosts"]


def test_apply_names_what_it_cannot_do_for_you(tmp_path):
    pol = tmp_path / "policy.json"
    out = shoji("compat", "apply", "symantec-sep14-offline", "kaspersky-kes10-filtering-disabled",
                "--policy", str(pol), "--state-dir", str(tmp_path)).stdout
    assert "left for you" in out and "SEPM" in out
    assert "steps in Kaspersky" in out
    assert not pol.exists()            # nothing to write
    p = shoji("compat", "apply", "no-such-id", "--policy", str(pol), check=False)
    assert p.returncode == 1 and "nothing changed" in p.stderr


def site_entry(**over):
    e = {
        "id": "site-mgmt", "vendor": "Example", "product": "Example Agent", "versions": "1",
        "symptom": {"ja": "管理サーバに接続できない", "en": "cannot reach its server"},
        "condition": {"kind": "coexistence", "ja": "同居時", "en": "together"},
        "workarounds": [{"exclude_hosts": ["mgmt.example.internal"]}],
        "detect": {"windows_processes": [], "linux_processes": [], "debian_packages": []},
        "source": {"title": "site notes", "date": "2024-05-01", "section": "1"},
        "uncertain": [],
    }
    e.update(over)
    return e


def test_site_catalog_extends_replaces_and_bad_one_is_refused(tmp_path):
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"version": 1, "entries": [
        site_entry(), site_entry(id="symantec-sep14-offline",
                                 workarounds=[{"exclude_hosts": ["sepm.example.internal"]}])]}))
    p = shoji("compat", "list", "--catalog", str(site))
    assert "site-mgmt" in p.stdout and "18 entries" in p.stdout
    assert "symantec-sep14-offline replaces the shipped one" in p.stderr
    pol = tmp_path / "policy.json"
    out = shoji("compat", "apply", "symantec-sep14-offline", "--catalog", str(site),
                "--policy", str(pol), "--state-dir", str(tmp_path)).stdout
    assert 'added decode.exclude_hosts "sepm.example.internal"' in out
    before = pol.read_bytes()

    bad = site_entry(id="bad-one")
    bad["workarounds"][0]["exclude_hosts"] = ["ok.example", "not a host"]
    site.write_text(json.dumps({"version": 1, "entries": [site_entry(), bad]}))
    p = shoji("compat", "apply", "site-mgmt", "--catalog", str(site), "--policy", str(pol),
              "--state-dir", str(tmp_path), check=False)
    assert p.returncode == 1
    assert 'entries[1] (id "bad-one")' in p.stderr
    assert "workarounds[0].exclude_hosts[1]" in p.stderr
    assert pol.read_bytes() == before


def test_env_catalog_replaces_the_shipped_one(tmp_path):
    cat = tmp_path / "dev.json"
    cat.write_text(json.dumps({"version": 1, "entries": [site_entry()]}))
    out = shoji("compat", "list", env={"SHOJI_COMPAT_CATALOG": str(cat)}).stdout
    assert "site-mgmt" in out and "trendmicro" not in out and "1 entries" in out


def learned_file(state, entries):
    (state / "learned.json").write_text(json.dumps({"version": 1, "entries": entries}))


def learned(app, host, reason="tls alert unknown_ca", age=60, ttl=3600, count=2):
    now = int(time.time())
    return {"app": app, "host": host, "reason": reason, "first_seen": now - age,
            "last_seen": now - 10, "expires": now + ttl, "count": count}


def test_conflicts_list_names_catalog_entries_and_hides_expired(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    learned_file(state, [learned("skypehost", "login.live.com"),
                         learned("itunes", "p25-buy.itunes.apple.com", count=5),
                         learned("curl", "gone.example", ttl=-5)])
    out = shoji("conflicts", "list", "--state-dir", str(state)).stdout
    rows = {l.split()[1]: l for l in out.splitlines()[1:] if len(l.split()) > 7}
    assert rows["login.live.com"].split()[0] == "skypehost"
    assert rows["login.live.com"].rstrip().endswith("skype-store-signin")
    assert rows["p25-buy.itunes.apple.com"].rstrip().endswith("apple-itunes-icloud-signin")
    assert " 5 " in rows["p25-buy.itunes.apple.com"]
    assert "gone.example" not in out
    assert "2 learned exclusions" in out


def test_conflicts_promote_writes_permanent_rules_and_reloads(fakes, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    learned_file(state, [learned("skypeapp", "login.skype.com"), learned("skypehost", "login.skype.com"),
                         learned("", "gsa.apple.com"), learned("ntrtscan", "x.icrc.trendmicro.com")])
    pol = tmp_path / "policy.json"
    pol.write_text(ADMIN_POLICY)
    agent = fakes.start("shoji")
    (state / "shoji.pid").write_text("%d\n" % agent.pid)
    out = shoji("conflicts", "promote", "login.skype.com", "--policy", str(pol),
                "--state-dir", str(state)).stdout
    assert 'added disabled_apps += {"app": "skypehost", "hosts": ["login.skype.com"]}' in out
    # the policy's plain "skypeapp" already covers that pair
    assert 'already in the policy: disabled_apps += {"app": "skypeapp"' in out
    assert "reloaded the running agent" in out
    assert agent.wait(timeout=5) == -signal.SIGHUP
    out = shoji("conflicts", "promote", "x.icrc.trendmicro.com", "--scope", "host",
                "--policy", str(pol), "--state-dir", str(state)).stdout
    assert 'decode.exclude_hosts += "x.icrc.trendmicro.com"' in out
    doc = json.loads(pol.read_text())
    assert list(doc) == ["template", "categories", "decode", "disabled_apps", "allow"]
    assert doc["disabled_apps"] == ["skypeapp", {"app": "skypehost", "hosts": ["login.skype.com"]}]
    assert "x.icrc.trendmicro.com" in doc["decode"]["exclude_hosts"]
    listing = shoji("conflicts", "list", "--state-dir", str(state)).stdout
    assert "login.skype.com" not in listing and "x.icrc.trendmicro.com" not in listing
    assert "gsa.apple.com" in listing
    p = shoji("conflicts", "promote", "never.example", "--policy", str(pol),
              "--state-dir", str(state), check=False)
    assert p.returncode == 1 and "no learned exclusion for never.example" in p.stderr


def test_conflicts_promote_adds_app_host_object(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    learned_file(state, [learned("teams", "login.microsoftonline.com")])
    pol = tmp_path / "policy.json"
    pol.write_text(ADMIN_POLICY)
    shoji("conflicts", "promote", "login.microsoftonline.com", "--policy", str(pol),
          "--state-dir", str(state))
    doc = json.loads(pol.read_text())
    assert doc["disabled_apps"] == ["skypeapp", {"app": "teams", "hosts": ["login.microsoftonline.com"]}]


def test_conflicts_clear_and_corrupt_store(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    learned_file(state, [learned("a", "one.example"), learned("b", "two.example")])
    out = shoji("conflicts", "clear", "one.example", "--state-dir", str(state)).stdout
    assert "cleared 1 learned exclusion for one.example" in out
    listing = shoji("conflicts", "list", "--state-dir", str(state)).stdout
    assert "one.example" not in listing and "two.example" in listing
    assert "cleared 1" in shoji("conflicts", "clear", "--state-dir", str(state)).stdout
    assert "no learned exclusions" in shoji("conflicts", "list", "--state-dir", str(state)).stdout
    (state / "learned.json").write_text('{"version": 1, "entries": [{"host": ')
    p = shoji("conflicts", "list", "--state-dir", str(state))
    assert "no learned exclusions" in p.stdout
    assert "corrupt" in p.stderr
    assert (state / "learned.json.corrupt").read_text().startswith('{"version": 1')


# ---- with a real agent: the written rules take effect after the reload ----

def wait_for(pred, timeout=10.0, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def access_lines(path):
    try:
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip()]
    except FileNotFoundError:
        return []


def fetch_trusting_origin_ca(agent, origin, pki):
    """curl through the agent, trusting only the test root CA (the origin's
    issuer), not the agent's CA: works only if the agent does not decode."""
    from helpers.tools import curl_fetch
    return curl_fetch(agent.port, origin.url("/compat"), cafile=pki.ca_cert_path, timeout=20)


def test_apply_reloads_a_real_agent_and_the_exclusion_tunnels(agent_factory, origins, pki, tmp_path):
    pol = tmp_path / "policy.json"
    pol.write_text('{\n  "name": "compat e2e",\n  "auto_avoid": {"enabled": false}\n}\n')
    agent = agent_factory(policy=str(pol)).start()
    good = origins["good"]
    status, _, _, p = fetch_trusting_origin_ca(agent, good, pki)
    assert p.returncode != 0, "decoded with the agent's CA: curl must refuse it"
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"version": 1, "entries": [
        site_entry(id="site-good", workarounds=[{"exclude_hosts": ["good.test"]}])]}))
    out = shoji("compat", "apply", "site-good", "--catalog", str(site), "--policy", str(pol),
                "--state-dir", agent.state_dir).stdout
    assert 'added decode.exclude_hosts "good.test"' in out
    assert "reloaded the running agent (pid %d)" % agent.pid in out
    assert wait_for(lambda: "reload" in agent.stderr().lower()), agent.stderr()

    def tunnelled():
        s, body, certs, pr = fetch_trusting_origin_ca(agent, good, pki)
        return pr.returncode == 0 and s == 200 and (s, certs)
    got = wait_for(tunnelled, timeout=10, step=0.3)
    assert got, "the excluded host is still decoded after the reload"
    # a tunnel's line is written when it closes, a moment after curl exits
    lines = wait_for(lambda: [l for l in access_lines(agent.access_log) if l.get("mode") == "tunnel"])
    assert lines and "good.test" in lines[-1].get("rule", ""), lines[-1:]
    assert all("learned" not in l.get("rule", "") for l in lines)
    assert agent.running()


def test_learned_conflict_is_listed_promoted_and_keeps_working(agent_factory, origins, pki, tmp_path):
    pol = tmp_path / "policy.json"
    pol.write_text('{\n  "name": "auto avoid e2e"\n}\n')
    agent = agent_factory(policy=str(pol)).start()
    good = origins["good"]
    # curl rejects the agent's certificate: the agent learns {curl, good.test}
    _, _, _, p = fetch_trusting_origin_ca(agent, good, pki)
    assert p.returncode != 0
    listing = wait_for(lambda: "good.test" in shoji("conflicts", "list", "--state-dir",
                                                     agent.state_dir).stdout and
                       shoji("conflicts", "list", "--state-dir", agent.state_dir).stdout)
    assert listing, agent.stderr()
    row = next(l for l in listing.splitlines() if " good.test " in l)
    assert row.split()[0] == "curl"
    # from now on curl's connections to good.test are tunnelled
    got = wait_for(lambda: fetch_trusting_origin_ca(agent, good, pki)[3].returncode == 0,
                   timeout=10, step=0.3)
    assert got, "learned exclusion not applied"
    tunnels = wait_for(lambda: [l for l in access_lines(agent.access_log) if l.get("mode") == "tunnel"])
    assert tunnels, access_lines(agent.access_log)[-3:]
    assert tunnels[-1]["rule"].startswith('learned exclusion "curl" -> "good.test" (tls alert'), tunnels[-1]
    out = shoji("conflicts", "promote", "good.test", "--policy", str(pol),
                "--state-dir", agent.state_dir).stdout
    assert 'added disabled_apps += {"app": "curl", "hosts": ["good.test"]}' in out
    assert "reloaded the running agent (pid %d)" % agent.pid in out
    doc = json.loads(pol.read_text())
    assert doc == {"name": "auto avoid e2e",
                   "disabled_apps": [{"app": "curl", "hosts": ["good.test"]}]}
    assert "good.test" not in shoji("conflicts", "list", "--state-dir", agent.state_dir).stdout
    # the permanent rule now does what the learned entry did

    before = len(access_lines(agent.access_log))
    s, _, _, pr = fetch_trusting_origin_ca(agent, good, pki)
    assert pr.returncode == 0 and s == 200

    def by_rule():
        new = access_lines(agent.access_log)[before:]
        return any(l.get("mode") in ("tunnel", "bypass") and "disabled_apps" in l.get("rule", "")
                   for l in new)
    assert wait_for(by_rule), access_lines(agent.access_log)[before:]
