"""Memory of an idle agent (issue 9): the category database is verified at
start but not made resident. The agent maps the compiled file; until a
lookup touches it, the mapping holds no pages (catdb_open reads the file
with pread to check its CRC and unmaps what its structural checks touched;
category names live in a heap copy). docs/CATDB.md, docs/PERFORMANCE.md."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from helpers.agent import REPO, Agent, run_cli  # noqa: E402
from helpers.wait import wait_for  # noqa: E402


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
