"""Helpers for the shoji-server integration tests: the server process, an
HTTPS JSON client that pins the server's certificate fingerprint, and a
throw-away PostgreSQL cluster started from Debian's binaries."""
