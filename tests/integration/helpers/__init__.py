"""Reusable pieces of shoji's integration tests.

pki     -- a throw-away test PKI (root CA, leaves for the named origins)
origin  -- threaded HTTP/HTTPS origin servers that log every request
agent   -- runs `shoji ca init` / `shoji run` and watches for sanitizer reports
client  -- raw-socket proxy clients (absolute-form HTTP, CONNECT + TLS)
"""
