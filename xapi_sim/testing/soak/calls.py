"""The soak's world and its XenAPI calls: the scenario, sessions, and every call counted.

``call`` is how the load, the pollers and the chaos thread talk to the server: it never
raises for an API failure or a lost connection, it records the outcome and latency in
``Stats``.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import threading
import time
import xmlrpc.client

import XenAPI

from ..world import PASSWORD, USER

CONN_ERRORS = (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError)
LIVE = ("Running", "Paused")


def scenario_toml(vms: int = 60) -> str:
    """Two homogeneous pools (alpha: 4 Haswell hosts, beta: 3 Broadwell hosts) and ``vms``
    VMs of 1 GiB spread over them, two thirds running."""
    out = []
    hosts = {"alpha": [f"a{i}" for i in range(1, 5)], "beta": [f"b{i}" for i in range(1, 4)]}
    cpu = {"alpha": "Haswell", "beta": "Broadwell"}
    for pool, names in hosts.items():
        for n in names:
            out.append(
                f'[[host]]\nname_label = "{n}"\ncpu = "{cpu[pool]}"\nsockets = 2\n'
                f'cpus_per_socket = 8\nmemory = "256GiB"\n'
            )
    for pool, names in hosts.items():
        members = ", ".join(f'"{n}"' for n in names[1:])
        out.append(
            f'[[pool]]\nname_label = "{pool}"\nmaster = "{names[0]}"\nmembers = [{members}]\n'
        )
    flat = [(p, n) for p in hosts for n in hosts[p]]
    for v in range(vms):
        pool, host = flat[v % len(flat)]
        state = "Halted" if v % 3 == 0 else "Running"
        out.append(
            f'[[vm]]\nname_label = "soak-{v:03d}"\n'
            f'domain_type = "{"hvm" if v % 2 else "pv"}"\npower_state = "{state}"\n'
            f'host = "{host}"\nvcpus = 1\nmemory = "1GiB"\n'
        )
    return "\n".join(out)


def login(url, originator):
    s = XenAPI.Session(url)
    s.xenapi.login_with_password(USER, PASSWORD, "2.5", originator)
    return s


def close(s):
    try:
        s._ServerProxy__close()
    except Exception:  # noqa: BLE001
        pass  # closing a connection that is already broken


@contextlib.contextmanager
def session(url, originator):
    """A logged-in session for a few reads; logged out (best effort) and closed after."""
    s = login(url, originator)
    try:
        yield s
    finally:
        try:
            s.xenapi.session.logout()
        except (XenAPI.Failure, xmlrpc.client.Fault, *CONN_ERRORS):
            pass  # best-effort logout: the soak may have killed the server meanwhile
        close(s)


def api(s, method):
    """The XenAPI proxy function of ``method`` ("VM.get_record") on session ``s``."""
    fn = s.xenapi
    for part in method.split("."):
        fn = getattr(fn, part)
    return fn


class Stats:
    """Calls per (operation, outcome) and latency samples per operation (thread-safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()  # (op, outcome)
        self.lat = collections.defaultdict(list)
        self.problems = []
        # host power-ons so far: a host that died and boots again resyncs its VMs to Halted
        # (xapi_xenops.ml), a legitimate change nobody acknowledged
        self.host_boots = 0

    def record(self, op, outcome, seconds):
        with self.lock:
            self.counts[(op, outcome)] += 1
            lat = self.lat[op]
            if len(lat) < 20000:
                lat.append(seconds)

    def problem(self, text):
        with self.lock:
            if len(self.problems) < 200:
                self.problems.append(text)

    def total(self):
        return sum(self.counts.values())


def call(stats, s, op, *args, fn=None):
    """(True, value) | (False, error description) | (None, None) on a connection error."""
    t0 = time.monotonic()
    try:
        if fn is None:
            fn = api(s, op)
        v = fn(*args)
        stats.record(op, "ok", time.monotonic() - t0)
        return True, v
    except XenAPI.Failure as f:
        stats.record(op, f.details[0], time.monotonic() - t0)
        return False, f.details
    except xmlrpc.client.Fault as f:  # XenAPI gave up re-logging in
        stats.record(op, f"Fault {f.faultCode}", time.monotonic() - t0)
        return False, ["Fault", str(f.faultString)]
    except CONN_ERRORS:
        stats.record(op, "connection error", time.monotonic() - t0)
        time.sleep(0.1)
        return None, None
