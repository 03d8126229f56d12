"""The soak's load: XenAPI clients that remember what the server acknowledged, and
``event.from`` pollers that keep a cache of every VM, as XenCenter does."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from .calls import CONN_ERRORS, call, close, login


def _log_in(worker, originator):
    """Wait for the worker's gate (if any), then log in, retrying while the server is away,
    until it succeeds or the run stops."""
    if worker.gate is not None:
        worker.gate.wait()
    while worker.session is None and not worker.stop.is_set():
        try:
            worker.session = login(worker.url, originator)
        except CONN_ERRORS:
            time.sleep(0.2)


class Client(threading.Thread):
    """One XenAPI client owning one VM; remembers what the server acknowledged."""

    KEYS = 4

    def __init__(self, idx, url, vm, pool, hosts, stats, stop, seed=0, ops_limit=None, gate=None):
        super().__init__(name=f"soak-client-{idx}", daemon=True)
        self.gate = gate  # an Event all workers wait for before starting
        self.idx, self.url, self.vm, self.pool, self.hosts = idx, url, vm, pool, hosts
        self.stats, self.stop, self.rng = stats, stop, random.Random(seed * 1000 + idx)
        self.ops_limit = ops_limit
        self.n = 0
        self.session = None
        self.power = None  # the VM's power state as acknowledged
        self.power_boots = 0  # stats.host_boots when self.power was learnt
        self.oc = {}  # VM other_config key -> value or None (absent)
        self.pool_oc = {}  # our pool other_config keys -> value or None
        self.desc = None  # VM name_description
        self.maybe = {}  # (what, key) -> set of possible values (in doubt)
        self.finished = False

    def run(self):
        try:
            _log_in(self, f"soak-client-{self.idx}")
            while not self.stop.is_set():
                if self.ops_limit is not None and self.n >= self.ops_limit:
                    break
                self.n += 1
                r = self.rng.random()
                if r < 0.35:
                    self.read()
                elif r < 0.55:
                    self.write_map(self.oc, "VM", self.vm, f"soak-k{self.rng.randrange(self.KEYS)}")
                elif r < 0.65:
                    self.write_map(
                        self.pool_oc, "pool", self.pool, f"soak-c{self.idx}-{self.rng.randrange(3)}"
                    )
                elif r < 0.75:
                    self.set_desc()
                else:
                    self.vm_op()
        except Exception as e:  # noqa: BLE001 -- a client bug must show, not hang the run
            self.stats.problem(f"client {self.idx} crashed: {type(e).__name__}: {e}")
        finally:
            self.finished = True
            if self.session is not None:
                close(self.session)

    # -- operations --
    def read(self):
        s, r = self.session, self.rng.random()
        if r < 0.5:
            ok, rec = call(self.stats, s, "VM.get_record", self.vm)
            if ok:
                self.check_record(rec)
        elif r < 0.7:
            call(self.stats, s, "pool.get_all_records")
        elif r < 0.85:
            call(self.stats, s, "host.get_all_records")
        else:
            uuid = self.uuid()
            if not uuid:
                return  # the uuid read itself failed (an injected fault)
            ok, recs = call(self.stats, s, "VM.get_all_records_where", f'field "uuid" = "{uuid}"')
            if ok and set(recs) != {self.vm}:
                self.stats.problem(f"client {self.idx}: get_all_records_where found {list(recs)}")

    def uuid(self):
        if not hasattr(self, "_uuid"):
            ok, u = call(self.stats, self.session, "VM.get_uuid", self.vm)
            if not ok:
                return ""
            self._uuid = u
        return self._uuid

    def write_map(self, model, cls, ref, key):
        prev = model.get(key, "?")
        v = f"{self.idx}-{self.n}"
        ok, _ = call(self.stats, self.session, f"{cls}.remove_from_other_config", ref, key)
        if ok is None:
            self.maybe[(cls, key)] = self.maybe.get((cls, key), {prev}) | {None}
            return
        if ok:
            model[key] = None
            self.maybe.pop((cls, key), None)
        ok, _ = call(self.stats, self.session, f"{cls}.add_to_other_config", ref, key, v)
        if ok is None:
            self.maybe[(cls, key)] = self.maybe.get((cls, key), {model.get(key, "?")}) | {v}
        elif ok:
            model[key] = v
            self.maybe.pop((cls, key), None)

    def set_desc(self):
        v = f"client {self.idx} write {self.n}"
        ok, _ = call(self.stats, self.session, "VM.set_name_description", self.vm, v)
        if ok is None:
            # never written yet means the VM still has its initial, empty description
            prev = self.desc if self.desc is not None else ""
            self.maybe[("desc", "")] = self.maybe.get(("desc", ""), {prev}) | {v}
        elif ok:
            self.desc = v
            self.maybe.pop(("desc", ""), None)

    def vm_op(self):
        s = self.session
        if self.power is None:
            read_boots = self.stats.host_boots  # taken before the read it qualifies
            ok, p = call(self.stats, s, "VM.get_power_state", self.vm)
            if not ok:
                return
            self.power, self.power_boots = p, read_boots
        before, before_boots = self.power, self.power_boots
        args: tuple[Any, ...]
        if before == "Halted":
            op, args, after = "VM.start", (self.vm, False, False), "Running"
        elif before == "Suspended":
            op, args, after = "VM.resume", (self.vm, False, False), "Running"
        elif before == "Paused":
            op, args, after = "VM.unpause", (self.vm,), "Running"
        else:
            op = self.rng.choice(
                ["VM.clean_shutdown", "VM.suspend", "VM.pool_migrate", "VM.hard_reboot"]
            )
            after = {"VM.clean_shutdown": "Halted", "VM.suspend": "Suspended"}.get(op, "Running")
            args = (self.vm,)
            if op == "VM.pool_migrate":
                ok, here = call(self.stats, s, "VM.get_resident_on", self.vm)
                if not ok:
                    return
                targets = [h for h in self.hosts if h != here]
                args = (self.vm, self.rng.choice(targets), {})
        boots = self.stats.host_boots
        ok, err = call(self.stats, s, op, *args)
        if ok is None:
            self.power = None  # in doubt: read it again next time
            return
        read_boots = self.stats.host_boots
        ok2, now = call(self.stats, s, "VM.get_power_state", self.vm)
        if ok2 is None:
            self.power = None
            return
        if not ok2:
            return
        if ok and now != after and not self._resynced(after, now, boots):
            self.stats.problem(f"client {self.idx}: {op} acknowledged but the VM is {now}")
        if ok is False and now != before and not self._resynced(before, now, before_boots):
            self.stats.problem(
                f"client {self.idx}: {op} failed with {err} but the VM went from {before} to {now}"
            )
        self.power, self.power_boots = now, read_boots

    def _resynced(self, acknowledged, actual, since_boots) -> bool:
        """A running VM found Halted after some host booted again since: the resync."""
        return (
            acknowledged in ("Running", "Paused")
            and actual == "Halted"
            and self.stats.host_boots > since_boots
        )

    # -- checks --
    def check_record(self, rec):
        """Read-your-writes on the client's own VM (nobody else writes it)."""
        for key, v in self.oc.items():
            if ("VM", key) in self.maybe:
                continue
            if rec["other_config"].get(key) != v:
                self.stats.problem(
                    f"client {self.idx}: VM other_config {key} is "
                    f"{rec['other_config'].get(key)!r}, acknowledged {v!r}"
                )
        if (
            self.desc is not None
            and ("desc", "") not in self.maybe
            and rec["name_description"] != self.desc
        ):
            self.stats.problem(
                f"client {self.idx}: name_description is "
                f"{rec['name_description']!r}, acknowledged {self.desc!r}"
            )

    def verify(self, vm_rec, pool_rec) -> list:
        """Every acknowledged write visible (a write in doubt may or may not have landed)."""
        bad = []

        def check(what, key, actual, expected):
            allowed = self.maybe.get((what, key), {expected})
            if actual not in allowed:
                bad.append(
                    f"client {self.idx}: {what} {key or 'name_description'} is "
                    f"{actual!r}, acknowledged {sorted(map(repr, allowed))}"
                )

        for key, v in self.oc.items():
            check("VM", key, vm_rec["other_config"].get(key), v)
        for key, v in self.pool_oc.items():
            check("pool", key, pool_rec["other_config"].get(key), v)
        if self.desc is not None or ("desc", "") in self.maybe:
            check("desc", "", vm_rec["name_description"], self.desc)
        if (
            self.power is not None
            and vm_rec["power_state"] != self.power
            and not self._resynced(self.power, vm_rec["power_state"], self.power_boots)
        ):
            bad.append(
                f"client {self.idx}: VM is {vm_rec['power_state']}, acknowledged {self.power}"
            )
        return bad


class Poller(threading.Thread):
    """An ``event.from`` long-poll loop keeping a cache of every VM record."""

    FIELDS = ("power_state", "resident_on", "other_config", "name_description")

    def __init__(self, idx, url, stats, stop, timeout=1.0, slack=3.0, gate=None):
        super().__init__(name=f"soak-poller-{idx}", daemon=True)
        self.gate = gate
        self.idx, self.url, self.stats, self.stop = idx, url, stats, stop
        self.timeout, self.slack = timeout, slack
        self.session = None
        self.token = ""
        self.cache = {}
        self.polls = 0
        self.events = 0
        self.finished = False

    def poll(self, timeout):
        def fn(*a):
            assert self.session is not None, "not logged in"
            return self.session.xenapi_request("event.from", a)

        t0 = time.monotonic()
        ok, res = call(self.stats, self.session, "event.from", ["vm"], self.token, timeout, fn=fn)
        dt = time.monotonic() - t0
        if ok:
            self.polls += 1
            if dt > timeout + self.slack:
                self.stats.problem(
                    f"poller {self.idx}: event.from took {dt:.1f}s (timeout {timeout}s)"
                )
            for ev in res["events"]:
                self.events += 1
                if ev["operation"] == "del":
                    self.cache.pop(ev["ref"], None)
                else:
                    self.cache[ev["ref"]] = ev["snapshot"]
            self.token = res["token"]
            return len(res["events"])
        if ok is None or (res and res[0] == "EVENT_FROM_TOKEN_PARSE_FAILURE"):
            self.token, self.cache = "", {}  # reconnect: reload everything
        return -1

    def run(self):
        try:
            _log_in(self, f"soak-poller-{self.idx}")
            while not self.stop.is_set():
                self.poll(self.timeout)
        except Exception as e:  # noqa: BLE001
            self.stats.problem(f"poller {self.idx} crashed: {type(e).__name__}: {e}")
        finally:
            self.finished = True

    def converged(self, records) -> list:
        """Drain the remaining events, then compare the cache with ``records``."""
        for _ in range(50):
            if self.poll(0.2) == 0:
                break
        bad = []
        for ref, rec in records.items():
            mine = self.cache.get(ref)
            if mine is None:
                bad.append(f"poller {self.idx}: no event ever delivered VM {ref}")
                continue
            for f in self.FIELDS:
                if mine[f] != rec[f]:
                    bad.append(
                        f"poller {self.idx}: VM {rec['name_label']} {f} is "
                        f"{mine[f]!r} in the event cache, {rec[f]!r} on the server"
                    )
        extra = set(self.cache) - set(records)
        if extra:
            bad.append(f"poller {self.idx}: {len(extra)} VMs in the cache the server lacks")
        close(self.session)
        return bad
