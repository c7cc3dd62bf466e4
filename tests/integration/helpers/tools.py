"""Real clients driven as subprocesses: curl and openssl s_client.

  r = curl(agent.port, "https://good.test:4443/", "--cacert", agent.ca_path)
  r.returncode, r.stdout (bytes), r.stderr (text)
  status, body, certs = curl_fetch(agent.port, url, cafile=agent.ca_path)
"""
import os
import re
import subprocess

from cryptography import x509

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY",
               "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def clean_env():
    return {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}


def curl(proxy_port, url, *args, timeout=60, input=None, exe="curl"):
    """exe: another curl binary (e.g. a copy renamed after some product)."""
    cmd = [exe, "-sS", "--max-time", str(timeout), "--proxy", "http://127.0.0.1:%d" % proxy_port,
           "--noproxy", ""] + list(args) + [url]
    p = subprocess.run(cmd, capture_output=True, timeout=timeout + 10, env=clean_env(), input=input)
    p.stderr = p.stderr.decode("utf-8", "replace")
    p.cmd = " ".join(cmd)
    return p


_MARK = b"\n--shoji-write-out--\n"


def curl_fetch(proxy_port, url, *args, cafile=None, timeout=60, exe="curl"):
    """GET (or whatever args say) through the agent. Returns
    (http status, body bytes, [x509.Certificate...] the server presented, proc)."""
    extra = list(args)
    if cafile:
        extra += ["--cacert", cafile]
    extra += ["-w", _MARK.decode() + "%{http_code}\n%{certs}"]
    p = curl(proxy_port, url, *extra, timeout=timeout, exe=exe)
    body, _, tail = p.stdout.rpartition(_MARK)
    status_line, _, certs_text = tail.partition(b"\n")
    pems = re.findall(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", certs_text, re.S)
    certs = [x509.load_pem_x509_certificate(pem) for pem in pems]
    try:
        status = int(status_line.strip() or b"0")
    except ValueError:
        status = 0
    return status, body, certs, p


def s_client(proxy_port, host, port, cafile, request=None, until=None, timeout=20, extra=()):
    """openssl s_client through the agent (-proxy), -showcerts; `request`
    is written after the handshake; `extra` are more s_client options. Reads stdout until the text `until`
    appears (or s_client exits, or timeout), then ends it. Returns an
    object with .stdout, .stderr (text), .returncode, .cmd, .timed_out."""
    import select
    import time
    import types
    cmd = ["openssl", "s_client", "-proxy", "127.0.0.1:%d" % proxy_port,
           "-connect", "%s:%d" % (host, port), "-servername", host, "-showcerts",
           "-CAfile", cafile, "-verify_return_error", "-ign_eof"] + list(extra)
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=clean_env())
    if request:
        p.stdin.write(request)
        p.stdin.flush()
    out = b""
    deadline = time.monotonic() + timeout
    timed_out = True
    while time.monotonic() < deadline:
        r, _, _ = select.select([p.stdout], [], [], 0.1)
        if r:
            d = os.read(p.stdout.fileno(), 65536)
            if not d:
                timed_out = False
                break
            out += d
            if until and until.encode() in out:
                timed_out = False
                break
        elif p.poll() is not None:
            timed_out = False
            break
    p.kill()
    rest, err = p.communicate()
    res = types.SimpleNamespace(stdout=(out + (rest or b"")).decode("utf-8", "replace"),
                                stderr=err.decode("utf-8", "replace"), returncode=p.returncode,
                                cmd=" ".join(cmd), timed_out=timed_out)
    return res


def pem_certs(text):
    return [x509.load_pem_x509_certificate(m.encode()) for m in
            re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S)]


def tcp_cc(local_port, remote_port):
    """The congestion control `ss` shows for the established TCP socket
    local_port -> remote_port, or None."""
    import re
    out = subprocess.run(["ss", "-tinH", "state", "established",
                          "( sport = :%d and dport = :%d )" % (local_port, remote_port)],
                         capture_output=True, text=True, check=True).stdout
    for name in ("reno", "cubic", "bbr", "dctcp", "vegas", "westwood", "htcp", "bic"):
        if re.search(r"(^|\s)%s(\s|$)" % name, out):
            return name
    return None
