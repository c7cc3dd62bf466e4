"""A real browser through the agent: headless Chromium (Debian `chromium`)
with --proxy-server pointing at the agent and the agent's CA trusted the
way `shoji ca install` makes a user's Chromium trust it: added with
certutil to the NSS database in its $HOME (.pki/nssdb). The agent sends the
leaf alone, so Chromium must find the CA there. Through an HTTP proxy
Chromium lets the proxy resolve names, so the agent's --hosts file names
the origins.
"""
import os
import shutil
import subprocess

import pytest

from helpers.tools import clean_env

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/deps.sh test)")


def trust_ca_in_nssdb(home, ca_path):
    """$HOME/.pki/nssdb with the agent's CA as a trusted issuer of server
    certificates (trust "C,,", what `shoji ca install` sets)."""
    db = home / ".pki" / "nssdb"
    if not db.exists():
        db.mkdir(parents=True)
        subprocess.run(["certutil", "-d", "sql:%s" % db, "-N", "--empty-password"],
                       check=True, capture_output=True, timeout=30)
        subprocess.run(["certutil", "-d", "sql:%s" % db, "-A", "-t", "C,,", "-n", "shoji test CA",
                        "-i", ca_path], check=True, capture_output=True, timeout=30)


def dump_dom(agent, url, tmp_path, timeout=60):
    profile = tmp_path / ("chromium-profile-%d" % len(os.listdir(tmp_path)))
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-dev-shm-usage", "--user-data-dir=%s" % profile,
           "--proxy-server=http://127.0.0.1:%d" % agent.port,
           "--virtual-time-budget=5000", "--dump-dom", url]
    trust_ca_in_nssdb(tmp_path, agent.ca_path)
    env = clean_env()
    env["HOME"] = str(tmp_path)
    p = subprocess.run(cmd, capture_output=True, timeout=timeout, env=env)
    return p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def test_chromium_loads_page_through_agent_with_decoding(agent, origins, tmp_path):
    good = origins["good"]
    dom, err = dump_dom(agent, good.url("/browser"), tmp_path)
    assert good.marker in dom, "Chromium did not get the origin page.\nDOM:\n%s\nstderr:\n%s" % (
        dom[:2000], err[-3000:])
    reqs = good.requests_for("/browser")
    assert reqs, "origin saw no request"
    # it was decoded: the agent, not Chromium, spoke TLS to the origin, and
    # the request went through the access log as a decoded request
    recs = agent.wait_access_log(lambda r: "/browser" in str(r.get("url")))
    assert recs and recs[0].get("mode") == "decode", recs


def test_chromium_gets_agent_error_page_for_expired_origin(agent, origins, tmp_path):
    o = origins["expired"]
    dom, err = dump_dom(agent, o.url("/browser-expired"), tmp_path)
    assert o.marker not in dom, "origin content shown despite an expired certificate"
    assert "expired.test" in dom and "expired" in dom.lower().replace("expired.test", ""), (
        "Chromium did not show the agent's error page.\nDOM:\n%s\nstderr:\n%s" % (dom[:2000], err[-3000:]))
