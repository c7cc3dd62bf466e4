"""Polling instead of sleeping: wait_for(pred, timeout, what)."""
import time


def wait_for(pred, timeout, what):
    """Calls pred() every 0.2 s until it returns something true (returned),
    or fails the test after `timeout` seconds naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
