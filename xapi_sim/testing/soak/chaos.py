"""The soak's chaos thread: fault rules, host crashes and power-ons, logouts of sessions in
use."""

from __future__ import annotations

import collections
import random
import threading
import time
import xmlrpc.client

from .calls import CONN_ERRORS, call, close, login, session

FAULT_MENU = [
    {"method": "VM.start", "code": "NO_HOSTS_AVAILABLE", "probability": 0.3, "count": 20},
    {
        "method": "VM.pool_migrate",
        "code": "VM_MIGRATE_FAILED",
        "params": ["{self}", "", "{arg1}", "injected by the soak"],
        "probability": 0.5,
    },
    {"method": "VM.get_record", "delay": 0.05, "probability": 0.2},
    {
        "method": "*.add_to_other_config",
        "code": "INTERNAL_ERROR",
        "params": ["injected"],
        "probability": 0.1,
        "count": 30,
    },
    {
        "method": "VM.suspend",
        "code": "SR_BACKEND_FAILURE_44",
        "params": ["", "There is insufficient space", ""],
        "count": 5,
    },
    {"class": "host", "delay": 0.02},
    {"method": "event.from", "delay": 0.2, "probability": 0.1},
]


class Chaos(threading.Thread):
    """Fault rules, host crashes and power-ons, logouts of sessions in use."""

    def __init__(self, urls, members, clients, stats, stop, seed=0):
        super().__init__(name="soak-chaos", daemon=True)
        self.urls, self.members, self.clients = urls, members, clients
        self.stats, self.stop, self.rng = stats, stop, random.Random(seed + 7)
        self.sessions = {}
        self.rules = []  # (pool index, rule id)
        self.crashed = {}  # host ref -> (pool index, power-on time)
        self.actions: collections.Counter[str] = collections.Counter()
        self.paused = threading.Event()

    def admin(self, p):
        if p not in self.sessions:
            self.sessions[p] = login(self.urls[p], "soak-chaos")
        return self.sessions[p]

    def do(self, p, action, method, *args):
        try:
            s = self.admin(p)
        except CONN_ERRORS:
            return None, None
        ok, v = call(self.stats, s, method, *args, fn=lambda *a: s.xenapi_request(method, a))
        if ok:
            self.actions[action] += 1
        elif ok is None:
            self.sessions.pop(p, None)
        return ok, v

    def step(self):
        now = time.monotonic()
        for ref, (p, when) in list(self.crashed.items()):
            if now >= when:
                # counted before and after the call: the resync happens inside it, so a
                # state read while it runs is older than the second count
                self.stats.host_boots += 1
                ok, _ = self.do(p, "host power-on", "sim.host_power_on", ref)
                self.stats.host_boots += 1
                if ok or ok is False:
                    del self.crashed[ref]
        r = self.rng.random()
        p = self.rng.randrange(len(self.urls))
        if r < 0.35:
            if len(self.rules) >= 3:
                q, rid = self.rules.pop(self.rng.randrange(len(self.rules)))
                self.do(q, "fault cleared", "sim.fault_clear", rid)
            else:
                rule = dict(self.rng.choice(FAULT_MENU))
                ok, rid = self.do(p, "fault added", "sim.fault_add", rule)
                if ok:
                    self.rules.append((p, rid))
        elif r < 0.55:
            candidates = [h for h in self.members[p] if h not in self.crashed]
            if candidates and not any(q == p for q, _ in self.crashed.values()):
                h = self.rng.choice(candidates)
                ok, _ = self.do(p, "host crash", "sim.host_crash", h)
                if ok:
                    self.crashed[h] = (p, now + self.rng.uniform(0.5, 2.0))
        elif r < 0.85:
            c = self.rng.choice(self.clients)
            if c.session is not None and c.session.handle:
                try:
                    # log the client's own session out from another connection
                    xmlrpc.client.ServerProxy(c.url, allow_none=True).session.logout(
                        c.session.handle
                    )
                    self.actions["session logged out"] += 1
                except CONN_ERRORS:
                    pass  # the server is down (the chaos killed it): nothing to log out
        else:
            self.do(p, "fault list", "sim.fault_list")

    def run(self):
        try:
            while not self.stop.is_set():
                if not self.paused.is_set():
                    self.step()
                self.stop.wait(self.rng.uniform(0.2, 0.8))
        except Exception as e:  # noqa: BLE001
            self.stats.problem(f"chaos crashed: {type(e).__name__}: {e}")

    def settle(self):
        """Clear every fault rule and power every crashed host on."""
        for p in range(len(self.urls)):
            self.do(p, "faults cleared", "sim.fault_clear", "")
        for ref, (p, _) in list(self.crashed.items()):
            self.stats.host_boots += 1
            self.do(p, "host power-on", "sim.host_power_on", ref)
            self.stats.host_boots += 1
        self.crashed.clear()
        self.rules.clear()
        for s in self.sessions.values():
            close(s)
        self.sessions.clear()

    def revive(self, pools):
        """Power on every member host still down -- one crashed before a restart of the
        server stays down; ``pools``: (url, member host refs) per pool."""
        for url, members in pools:
            with session(url, "soak-settle") as s:
                for h in members:
                    m = s.xenapi.host.get_metrics(h)
                    if not s.xenapi.host_metrics.get_live(m):
                        self.stats.host_boots += 1
                        s.xenapi_request("sim.host_power_on", (h,))
                        self.stats.host_boots += 1
                        self.actions["host power-on"] += 1
