"""Memory of an idle agent (issue 9): the category database is verified at
start but not made resident. The agent maps the compiled file; until a
lookup touches it, the mapping holds no pages (catdb_open reads the file
with pread to check its CRC and unmaps what its structural checks touched;
category names live in a heap copy). Libraries only some modes need
(libnftables for transparent interception, libidn2 for non-ASCII names) are
loaded on first use, and the library code start-up ran is unmapped once the
agent listens. docs/CATDB.md, docs/PERFORMANCE.md, docs/ARCHITECTURE.md."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from helpers.agent import REPO, Agent, run_cli  # noqa: E402
from helpers.client import https_get  # noqa: E402
from helpers.wait import wait_for  # noqa: E402

# Loaded with dlopen on first use only (util_dl_load): never in an idle
# explicit proxy whose policy and lists are ASCII.
ON_DEMAND_LIBS = ("libnftables.so", "libnftnl.so", "libmnl.so", "libgmp.so", "libxtables.so",
                  "libidn2.so", "libunistring.so")


def mapped_files(pid):
    """Basenames of the files mapped by process `pid`."""
    names = set()
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].startswith("/"):
                names.add(os.path.basename(parts[5].strip()))
    return names


def file_rss_kib(pid, name_part):
    """Rss minus Anonymous (KiB): the file pages mapped from files whose name
    contains `name_part`."""
    total, inside = 0, False
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and ":" not in head[0]:
                inside = name_part in line
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
            elif inside and line.startswith("Anonymous:"):
                total -= int(line.split()[1])
    return total


def mapping_rss_kib(pid, path):
    """Rss (KiB) summed over the mappings of `path` in process `pid`; None if not mapped."""
    total, found, inside = 0, False, False
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and not line.startswith(" ") and ":" not in head[0]:
                inside = line.rstrip("\n").endswith(path)
                found = found or inside
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total if found else None


def test_idle_agent_holds_no_page_of_the_category_database(tmp_path, pki):
    from conftest import require_agent_binary
    require_agent_binary()
    db = str(tmp_path / "categories.db")
    run_cli(["catdb", "compile", os.path.join(REPO, "data", "categories"), "-o", db])
    pol = tmp_path / "policy.json"
    pol.write_text(json.dumps({"name": "idle memory", "default_action": "allow", "category_db": db,
                               "categories": {"gambling": "block", "social_networks": "view_only"},
                               "auto_avoid": {"enabled": False}}))
    a = Agent(str(tmp_path / "state"), upstream_ca=pki.ca_cert_path,
              access_log=str(tmp_path / "access.log"), policy=str(pol))
    a.ca_init()
    a.start()
    try:
        path = os.path.realpath(db)
        # the policy (and its database) is loaded once the agent listens
        wait_for(lambda: mapping_rss_kib(a.pid, path) is not None, 15, "the category database mapped")
        time.sleep(0.5)
        rss = mapping_rss_kib(a.pid, path)
        assert rss == 0, "idle agent holds %d KiB of the category database" % rss
    finally:
        a.stop(check=True)


def test_idle_explicit_proxy_maps_no_on_demand_library_and_releases_startup_code(agent_factory, origins):
    """An explicit proxy never maps nftables' libraries nor libidn2; once it
    listens, the library code start-up faulted in is unmapped (it stays in
    the page cache), and a decoded request afterwards works and maps back
    what it needs."""
    a = agent_factory().start()
    # the port accepts (kernel backlog) from the bind on; start-up is over
    # once the agent logs that it listens, and the release follows it
    wait_for(lambda: "listening on" in a.stderr(), 20, "the agent's start-up")
    wait_for(lambda: file_rss_kib(a.pid, "libcrypto.so") < 1024, 10,
             "the start-up code released (libcrypto's file pages < 1 MiB)")
    maps = mapped_files(a.pid)
    loaded = [m for m in maps if m.startswith(ON_DEMAND_LIBS)]
    assert not loaded, "idle explicit proxy maps %s" % loaded
    assert any(m.startswith("libcrypto.so") for m in maps)
    # Start-up runs code all over libcrypto (~3.9 MiB of it was mapped
    # before the release); an idle agent runs none of it.
    time.sleep(0.5)
    crypto = file_rss_kib(a.pid, "libcrypto.so")
    assert crypto < 1024, "idle agent maps %d KiB of libcrypto's file pages" % crypto
    good = origins["good"]
    r, _ = https_get(a.port, "good.test", good.port, "/after-release", cafile=a.ca_path)
    assert r.status == 200 and good.marker.encode() in r.body
    assert file_rss_kib(a.pid, "libcrypto.so") > crypto


def test_after_a_quiet_spell_the_code_traffic_mapped_is_released_again(agent_factory, origins):
    """Traffic maps library code back in; after QUIET_TICKS ticks without a
    new connection or request (60 s; shortened here through
    SHOJI_TEST_QUIET_TICK_MS) the agent unmaps it again, once, and the next
    request still works."""
    a = agent_factory(env={"SHOJI_TEST_QUIET_TICK_MS": "300"}).start()
    wait_for(lambda: "listening on" in a.stderr(), 20, "the agent's start-up")
    good = origins["good"]
    for i in range(3):
        r, _ = https_get(a.port, "good.test", good.port, "/busy-%d" % i, cafile=a.ca_path)
        assert r.status == 200
    busy = file_rss_kib(a.pid, "libcrypto.so")
    assert busy >= 1024, "traffic should have mapped libcrypto's code back (%d KiB)" % busy
    wait_for(lambda: file_rss_kib(a.pid, "libcrypto.so") < 1024, 15,
             "libcrypto's code released after the quiet spell")
    r, _ = https_get(a.port, "good.test", good.port, "/after-quiet", cafile=a.ca_path)
    assert r.status == 200 and good.marker.encode() in r.body
