#!/usr/bin/env python3
"""Soak xapi-sim: mixed load plus injected faults for a given time, then check everything.

    python scripts/soak.py --seconds 60 [--state-dir DIR] [--clients 30] [--pollers 20]

Starts ``xapi-sim serve`` (loopback only, a generated two-pool world) as a child process and
runs against it, for ``--seconds``:

* ``--clients`` XenAPI clients, each owning one VM: reads (records, ``get_all_records``,
  ``get_all_records_where``), writes (``other_config`` map edits, name changes, a shared
  ``pool.other_config``) and VM operations (start, clean_shutdown, suspend, resume,
  pool_migrate, hard_reboot), each client keeping a model of what the server acknowledged;
* ``--pollers`` ``event.from`` long-polls keeping a cache of every VM, as XenCenter does;
* a chaos thread: fault rules (``sim.fault_add``/``fault_clear``: errors, delays,
  probabilities, counts), host crashes and power-ons (``sim.host_crash``/``host_power_on``),
  logouts of sessions in use; with ``--state-dir`` also one ``kill -9`` of the server in the
  middle of the load and a restart from the state directory.

Then it checks: every thread finished (no deadlock); invariants (each VM resident only on a
host of its pool, power state consistent with ``resident_on`` and ``host.resident_VMs``, host
memory accounting, no stray pending tasks); every acknowledged write visible; every poller's
cache equal to the server's records; a failed operation never changed its VM; long-polls
returned within their timeout; the server's thread count and memory bounded; and with
``--state-dir``, after a final ``kill -9`` and restart, the same state and invariants. It prints
what it did (calls per operation and outcome, latencies) and what it checked; the exit
status is 0 only if every check passed.

The classes here are also used by tests/reliability/test_concurrency.py (in-process world).
"""
from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xmlrpc.client

import XenAPI

USER, PASSWORD = "root", "xenroot"
NULL = "OpaqueRef:NULL"
CONN_ERRORS = (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError)
LIVE = ("Running", "Paused")


# -- the world ---------------------------------------------------------------------------------

def scenario_toml(vms: int = 60) -> str:
    """Two homogeneous pools (alpha: 4 Haswell hosts, beta: 3 Broadwell hosts) and ``vms``
    VMs of 1 GiB spread over them, two thirds running."""
    out = []
    hosts = {"alpha": [f"a{i}" for i in range(1, 5)], "beta": [f"b{i}" for i in range(1, 4)]}
    cpu = {"alpha": "Haswell", "beta": "Broadwell"}
    for pool, names in hosts.items():
        for n in names:
            out.append(f'[[host]]\nname_label = "{n}"\ncpu = "{cpu[pool]}"\nsockets = 2\n'
                       f'cpus_per_socket = 8\nmemory = "256GiB"\n')
    for pool, names in hosts.items():
        members = ", ".join(f'"{n}"' for n in names[1:])
        out.append(f'[[pool]]\nname_label = "{pool}"\nmaster = "{names[0]}"\n'
                   f"members = [{members}]\n")
    flat = [(p, n) for p in hosts for n in hosts[p]]
    for v in range(vms):
        pool, host = flat[v % len(flat)]
        state = "Halted" if v % 3 == 0 else "Running"
        out.append(f'[[vm]]\nname_label = "soak-{v:03d}"\n'
                   f'domain_type = "{"hvm" if v % 2 else "pv"}"\npower_state = "{state}"\n'
                   f'host = "{host}"\nvcpus = 1\nmemory = "1GiB"\n')
    return "\n".join(out)


def login(url, originator):
    s = XenAPI.Session(url)
    s.xenapi.login_with_password(USER, PASSWORD, "2.5", originator)
    return s


def close(s):
    try:
        s._ServerProxy__close()
    except Exception:  # noqa: BLE001
        pass


def api(session, method):
    fn = session.xenapi
    for part in method.split("."):
        fn = getattr(fn, part)
    return fn


# -- bookkeeping -------------------------------------------------------------------------------

class Stats:
    """Calls per (operation, outcome) and latency samples per operation (thread-safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = collections.Counter()
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


def call(stats, session, op, *args, fn=None):
    """(True, value) | (False, error description) | (None, None) on a connection error."""
    t0 = time.monotonic()
    try:
        if fn is None:
            fn = api(session, op)
        v = fn(*args)
        stats.record(op, "ok", time.monotonic() - t0)
        return True, v
    except XenAPI.Failure as f:
        stats.record(op, f.details[0], time.monotonic() - t0)
        return False, f.details
    except xmlrpc.client.Fault as f:          # XenAPI gave up re-logging in
        stats.record(op, f"Fault {f.faultCode}", time.monotonic() - t0)
        return False, ["Fault", str(f.faultString)]
    except CONN_ERRORS:
        stats.record(op, "connection error", time.monotonic() - t0)
        time.sleep(0.1)
        return None, None


# -- load --------------------------------------------------------------------------------------

class Client(threading.Thread):
    """One XenAPI client owning one VM; remembers what the server acknowledged."""

    KEYS = 4

    def __init__(self, idx, url, vm, pool, hosts, stats, stop, seed=0, ops_limit=None,
                 gate=None):
        super().__init__(name=f"soak-client-{idx}", daemon=True)
        self.gate = gate                 # an Event all workers wait for before starting
        self.idx, self.url, self.vm, self.pool, self.hosts = idx, url, vm, pool, hosts
        self.stats, self.stop, self.rng = stats, stop, random.Random(seed * 1000 + idx)
        self.ops_limit = ops_limit
        self.n = 0
        self.session = None
        self.power = None                # the VM's power state as acknowledged
        self.power_boots = 0             # stats.host_boots when self.power was learnt
        self.oc = {}                     # VM other_config key -> value or None (absent)
        self.pool_oc = {}                # our pool other_config keys -> value or None
        self.desc = None                 # VM name_description
        self.maybe = {}                  # (what, key) -> set of possible values (in doubt)
        self.finished = False

    def run(self):
        try:
            if self.gate is not None:
                self.gate.wait()
            while self.session is None and not self.stop.is_set():
                try:
                    self.session = login(self.url, f"soak-client-{self.idx}")
                except CONN_ERRORS:
                    time.sleep(0.2)
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
                    self.write_map(self.pool_oc, "pool", self.pool,
                                   f"soak-c{self.idx}-{self.rng.randrange(3)}")
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
                return          # the uuid read itself failed (an injected fault)
            ok, recs = call(self.stats, s, "VM.get_all_records_where",
                            f'field "uuid" = "{uuid}"')
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
            read_boots = self.stats.host_boots     # taken before the read it qualifies
            ok, p = call(self.stats, s, "VM.get_power_state", self.vm)
            if not ok:
                return
            self.power, self.power_boots = p, read_boots
        before, before_boots = self.power, self.power_boots
        if before == "Halted":
            op, args, after = "VM.start", (self.vm, False, False), "Running"
        elif before == "Suspended":
            op, args, after = "VM.resume", (self.vm, False, False), "Running"
        elif before == "Paused":
            op, args, after = "VM.unpause", (self.vm,), "Running"
        else:
            op = self.rng.choice(["VM.clean_shutdown", "VM.suspend", "VM.pool_migrate",
                                  "VM.hard_reboot"])
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
            self.power = None                     # in doubt: read it again next time
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
            self.stats.problem(f"client {self.idx}: {op} failed with {err} but the VM went "
                               f"from {before} to {now}")
        self.power, self.power_boots = now, read_boots

    def _resynced(self, acknowledged, actual, since_boots) -> bool:
        """A running VM found Halted after some host booted again since: the resync."""
        return (acknowledged in ("Running", "Paused") and actual == "Halted"
                and self.stats.host_boots > since_boots)

    # -- checks --
    def check_record(self, rec):
        """Read-your-writes on the client's own VM (nobody else writes it)."""
        for key, v in self.oc.items():
            if ("VM", key) in self.maybe:
                continue
            if rec["other_config"].get(key) != v:
                self.stats.problem(f"client {self.idx}: VM other_config {key} is "
                                   f"{rec['other_config'].get(key)!r}, acknowledged {v!r}")
        if self.desc is not None and ("desc", "") not in self.maybe \
                and rec["name_description"] != self.desc:
            self.stats.problem(f"client {self.idx}: name_description is "
                               f"{rec['name_description']!r}, acknowledged {self.desc!r}")

    def verify(self, vm_rec, pool_rec) -> list:
        """Every acknowledged write visible (a write in doubt may or may not have landed)."""
        bad = []

        def check(what, key, actual, expected):
            allowed = self.maybe.get((what, key), {expected})
            if actual not in allowed:
                bad.append(f"client {self.idx}: {what} {key or 'name_description'} is "
                           f"{actual!r}, acknowledged {sorted(map(repr, allowed))}")
        for key, v in self.oc.items():
            check("VM", key, vm_rec["other_config"].get(key), v)
        for key, v in self.pool_oc.items():
            check("pool", key, pool_rec["other_config"].get(key), v)
        if self.desc is not None or ("desc", "") in self.maybe:
            check("desc", "", vm_rec["name_description"], self.desc)
        if self.power is not None and vm_rec["power_state"] != self.power \
                and not self._resynced(self.power, vm_rec["power_state"], self.power_boots):
            bad.append(f"client {self.idx}: VM is {vm_rec['power_state']}, acknowledged "
                       f"{self.power}")
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
        fn = (lambda *a: self.session.xenapi_request("event.from", a))
        t0 = time.monotonic()
        ok, res = call(self.stats, self.session, "event.from", ["vm"], self.token, timeout,
                       fn=fn)
        dt = time.monotonic() - t0
        if ok:
            self.polls += 1
            if dt > timeout + self.slack:
                self.stats.problem(f"poller {self.idx}: event.from took {dt:.1f}s "
                                   f"(timeout {timeout}s)")
            for ev in res["events"]:
                self.events += 1
                if ev["operation"] == "del":
                    self.cache.pop(ev["ref"], None)
                else:
                    self.cache[ev["ref"]] = ev["snapshot"]
            self.token = res["token"]
            return len(res["events"])
        if ok is None or (res and res[0] == "EVENT_FROM_TOKEN_PARSE_FAILURE"):
            self.token, self.cache = "", {}          # reconnect: reload everything
        return -1

    def run(self):
        try:
            if self.gate is not None:
                self.gate.wait()
            while self.session is None and not self.stop.is_set():
                try:
                    self.session = login(self.url, f"soak-poller-{self.idx}")
                except CONN_ERRORS:
                    time.sleep(0.2)
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
                    bad.append(f"poller {self.idx}: VM {rec['name_label']} {f} is "
                               f"{mine[f]!r} in the event cache, {rec[f]!r} on the server")
        extra = set(self.cache) - set(records)
        if extra:
            bad.append(f"poller {self.idx}: {len(extra)} VMs in the cache the server lacks")
        close(self.session)
        return bad


# -- invariants --------------------------------------------------------------------------------

def check_invariants(session, label="") -> list:
    """Invariants of one pool, read through the API (call it when the load has stopped)."""
    x = session.xenapi
    vms = x.VM.get_all_records()
    hosts = x.host.get_all_records()
    metrics = x.host_metrics.get_all_records()
    bad = []
    where = f"[{label}] " if label else ""
    resident = collections.defaultdict(set)
    for ref, vm in vms.items():
        name, ps, on = vm["name_label"], vm["power_state"], vm["resident_on"]
        if on != NULL:
            if on not in hosts:
                bad.append(f"{where}VM {name} is resident on {on}, not a host of its pool")
                continue
            resident[on].add(ref)
        if ps in LIVE and on == NULL:
            bad.append(f"{where}VM {name} is {ps} but resident nowhere")
        if ps not in LIVE and on != NULL:
            bad.append(f"{where}VM {name} is {ps} but resident on {hosts[on]['name_label']}")
        if ps not in LIVE and not vm["is_a_template"] and str(vm["domid"]) != "-1":
            bad.append(f"{where}VM {name} is {ps} with domid {vm['domid']}")
    for href, h in hosts.items():
        if set(h["resident_VMs"]) != resident[href]:
            bad.append(f"{where}host {h['name_label']}: resident_VMs disagrees with "
                       f"VM.resident_on ({len(h['resident_VMs'])} vs {len(resident[href])})")
        m = metrics.get(h["metrics"])
        if m is None:
            bad.append(f"{where}host {h['name_label']} has no metrics")
            continue
        if not m["live"]:
            continue
        # host_metrics.memory_free left the API in 6.1; compute_free_memory is the figure
        used = sum(int(vms[v]["memory_static_max"]) for v in resident[href])
        expect = max(0, int(m["memory_total"]) - int(h["memory_overhead"]) - used)
        free = int(x.host.compute_free_memory(href))
        if free != expect:
            bad.append(f"{where}host {h['name_label']}: free memory {free}, expected "
                       f"{expect} (total {m['memory_total']} - overhead "
                       f"{h['memory_overhead']} - resident {used})")
    pending = [t["name_label"] for t in x.task.get_all_records().values()
               if t["status"] == "pending" and not t["name_label"].startswith("Async.")]
    if pending:
        bad.append(f"{where}{len(pending)} transient tasks left pending: {pending[:5]}")
    return bad


# -- chaos -------------------------------------------------------------------------------------

FAULT_MENU = [
    {"method": "VM.start", "code": "NO_HOSTS_AVAILABLE", "probability": 0.3, "count": 20},
    {"method": "VM.pool_migrate", "code": "VM_MIGRATE_FAILED",
     "params": ["{self}", "", "{arg1}", "injected by the soak"], "probability": 0.5},
    {"method": "VM.get_record", "delay": 0.05, "probability": 0.2},
    {"method": "*.add_to_other_config", "code": "INTERNAL_ERROR", "params": ["injected"],
     "probability": 0.1, "count": 30},
    {"method": "VM.suspend", "code": "SR_BACKEND_FAILURE_44",
     "params": ["", "There is insufficient space", ""], "count": 5},
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
        self.rules = []          # (pool index, rule id)
        self.crashed = {}        # host ref -> (pool index, power-on time)
        self.actions = collections.Counter()
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
                        c.session.handle)
                    self.actions["session logged out"] += 1
                except CONN_ERRORS:
                    pass
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


# -- the server --------------------------------------------------------------------------------

class Server:
    """``xapi-sim serve`` as a child process on loopback."""

    def __init__(self, workdir, scenario_path, state_dir=None, seed=1):
        self.workdir, self.scenario, self.state_dir, self.seed = workdir, scenario_path, \
            state_dir, seed
        self.proc = None
        self.hosts = {}

    def start(self):
        ready = os.path.join(self.workdir, "ready.json")
        if os.path.exists(ready):
            os.unlink(ready)
        cmd = [sys.executable, "-m", "xapi_sim", "serve", "--bind", "127.0.0.1", "--port", "0",
               "--seed", str(self.seed), "--scenario", self.scenario, "--ready-file", ready]
        if self.state_dir:
            cmd += ["--state-dir", self.state_dir]
        log = open(os.path.join(self.workdir, "server.log"), "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start; see {self.workdir}/server.log")
            time.sleep(0.05)
        with open(ready) as fh:
            self.hosts = {h["name_label"]: h for h in json.load(fh)["hosts"]}
        return self

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def status(self):
        """(threads, resident memory in KiB) of the server process (Linux /proc)."""
        try:
            with open(f"/proc/{self.proc.pid}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
            return int(fields["Threads"]), int(fields["VmRSS"].split()[0])
        except (OSError, KeyError, ValueError):
            return None, None

    def cpu_seconds(self):
        """User + system CPU time of the server process so far (Linux /proc)."""
        try:
            with open(f"/proc/{self.proc.pid}/stat") as fh:
                parts = fh.read().rsplit(")", 1)[1].split()
            return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return None


# -- the run -----------------------------------------------------------------------------------

def layout(urls):
    """Per pool: (url, pool ref, host refs, member refs, {VM name: ref})."""
    out = []
    for url in urls:
        s = login(url, "soak-setup")
        x = s.xenapi
        pool = x.pool.get_all()[0]
        master = x.pool.get_master(pool)
        hosts = x.host.get_all()
        vms = {r["name_label"]: ref for ref, r in x.VM.get_all_records().items()
               if r["name_label"].startswith("soak-")}
        out.append((url, pool, hosts, [h for h in hosts if h != master], vms))
        x.session.logout()
        close(s)
    return out


def snapshot(urls):
    """What must survive a restart: every VM's and pool's persistent fields."""
    out = {}
    for url in urls:
        s = login(url, "soak-snapshot")
        x = s.xenapi
        for ref, r in x.VM.get_all_records().items():
            out[ref] = (r["uuid"], r["power_state"], r["resident_on"], r["other_config"],
                        r["name_description"])
        for ref, r in x.pool.get_all_records().items():
            out[ref] = (r["uuid"], r["other_config"])
        x.session.logout()
        close(s)
    return out


def converge_all(pollers, records) -> list:
    """``Poller.converged`` for every poller at once (each drains its last events)."""
    out = [[] for _ in pollers]

    def one(i, pl):
        try:
            out[i] = pl.converged(records[pl.url])
        except Exception as e:  # noqa: BLE001
            out[i] = [f"poller {pl.idx}: {type(e).__name__}: {e}"]
    threads = [threading.Thread(target=one, args=(i, pl)) for i, pl in enumerate(pollers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return [line for lines in out for line in lines]


def verify_clients(urls, clients) -> list:
    bad = []
    for url in urls:
        s = login(url, "soak-verify")
        x = s.xenapi
        vms = x.VM.get_all_records()
        pools = x.pool.get_all_records()
        for c in clients:
            if c.url == url:
                bad += c.verify(vms[c.vm], pools[c.pool])
        x.session.logout()
        close(s)
    return bad


def report(title, rows):
    print(f"\n{title}")
    for row in rows:
        print("  " + row)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--state-dir", metavar="DIR",
                    help="serve with --state-dir DIR; kill -9 mid-run and at the end")
    ap.add_argument("--clients", type=int, default=30)
    ap.add_argument("--pollers", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-chaos", action="store_true", help="load only, no injected faults")
    ap.add_argument("--keep-logs", action="store_true",
                    help="keep the work directory (server log, scenario) even on success")
    args = ap.parse_args(argv)
    if args.state_dir and os.path.exists(os.path.join(args.state_dir, "state.json")):
        ap.error(f"{args.state_dir} already holds a world: give an empty or new directory")
    workdir = tempfile.mkdtemp(prefix="xapi-sim-soak-")
    scn = os.path.join(workdir, "soak.toml")
    with open(scn, "w") as fh:
        fh.write(scenario_toml(max(60, args.clients)))
    server = Server(workdir, scn, args.state_dir, args.seed).start()
    checks = []      # (name, ok, detail)
    stats = Stats()
    t_start = time.monotonic()
    try:
        urls = [server.hosts["a1"]["url"], server.hosts["b1"]["url"]]
        lay = layout(urls)
        threads0, rss0 = server.status()
        stop = threading.Event()
        clients, pollers = [], []
        names = sorted(set(lay[0][4]) | set(lay[1][4]))
        for i in range(args.clients):
            name = names[i]
            p = 0 if name in lay[0][4] else 1
            url, pool, hosts, _, vms = lay[p]
            clients.append(Client(i, url, vms[name], pool, hosts, stats, stop, args.seed))
        for i in range(args.pollers):
            pollers.append(Poller(i, urls[i % 2], stats, stop))
        chaos = None
        if not args.no_chaos:
            chaos = Chaos(urls, [lay[0][3], lay[1][3]], clients, stats, stop, args.seed)
        workers = clients + pollers + ([chaos] if chaos else [])
        print(f"soak: {args.clients} clients, {args.pollers} pollers, "
              f"{'chaos' if chaos else 'no chaos'}, {args.seconds:g}s against "
              f"{server.hosts['a1']['url']} (2 pools, {sum(len(lay_[2]) for lay_ in lay)} "
              f"hosts, {len(names)} VMs){', state in ' + args.state_dir if args.state_dir else ''}")
        for t in workers:
            t.start()
        killed = False
        deadline = t_start + args.seconds
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if args.state_dir and not killed and time.monotonic() > t_start + args.seconds / 2:
                killed = True
                if chaos:
                    chaos.paused.set()
                t0 = time.monotonic()
                server.kill9()
                time.sleep(0.5)
                before = {h: v["url"] for h, v in server.hosts.items()}
                server.start()
                same = before == {h: v["url"] for h, v in server.hosts.items()}
                checks.append(("kill -9 mid-load, restart from the state dir at the same "
                               "addresses", same,
                               f"back in {time.monotonic() - t0:.1f}s"))
                if chaos:
                    chaos.crashed.clear()         # a crashed host stays down across restarts
                    chaos.rules.clear()           # rules live in memory only
                    chaos.sessions.clear()
                    chaos.paused.clear()
        elapsed = time.monotonic() - t_start
        cpu = server.cpu_seconds()
        stop.set()
        t0 = time.monotonic()
        for t in workers:
            t.join(max(0.1, 30 - (time.monotonic() - t0)))
        hung = [t.name for t in workers if t.is_alive()]
        checks.append(("every client, poller and chaos thread finished (no deadlock)",
                       not hung, f"joined in {time.monotonic() - t0:.1f}s"
                       + (f"; hung: {hung[:5]}" if hung else "")))
        if chaos:
            # hosts still crashed were powered on by settle(); a host crashed before the
            # mid-run restart is still down: power it on now
            chaos.settle()
            for p, (url, _, _, members, _) in enumerate(lay):
                s = login(url, "soak-settle")
                for h in members:
                    m = s.xenapi.host.get_metrics(h)
                    if not s.xenapi.host_metrics.get_live(m):
                        stats.host_boots += 1
                        s.xenapi_request("sim.host_power_on", (h,))
                        stats.host_boots += 1
                        chaos.actions["host power-on"] += 1
                close(s)
        time.sleep(0.3)
        bad = []
        for p, url in enumerate(urls):
            s = login(url, "soak-check")
            bad += check_invariants(s, ["alpha", "beta"][p])
            close(s)
        checks.append(("invariants: VMs resident only on hosts of their pool, power state "
                       "consistent with resident_on and resident_VMs, host memory accounting, "
                       "no stray pending task", not bad, "; ".join(bad[:5])))
        bad = verify_clients(urls, clients)
        checks.append(("every acknowledged write visible (VM and pool other_config, "
                       "name_description, power state)", not bad, "; ".join(bad[:5])))
        bad = []
        records = {}
        for url in urls:
            s = login(url, "soak-records")
            records[url] = s.xenapi.VM.get_all_records()
            close(s)
        bad += converge_all(pollers, records)
        checks.append(("every event.from cache equals the server's records", not bad,
                       "; ".join(bad[:5])))
        with stats.lock:
            problems = list(stats.problems)
        checks.append(("no failed operation changed its VM, reads saw every acknowledged "
                       "write, long-polls returned in time", not problems,
                       "; ".join(problems[:5])))
        time.sleep(0.5)
        threads1, rss1 = server.status()
        if threads0 is not None and not killed:
            checks.append((f"server threads bounded (before {threads0}, after {threads1})",
                           threads1 <= threads0 + 8, ""))
            checks.append((f"server memory bounded (RSS {rss0 // 1024} MiB before, "
                           f"{rss1 // 1024} MiB after)", rss1 - rss0 < 256 * 1024, ""))
        elif threads1 is not None:
            checks.append((f"server threads after the restart and the load: {threads1}; "
                           f"RSS {rss1 // 1024} MiB", threads1 <= (threads0 or threads1) + 8, ""))
        if args.state_dir:
            before = snapshot(urls)
            server.kill9()
            server.start()
            after = snapshot(urls)
            diff = [r for r in before if before[r] != after.get(r)]
            checks.append(("after a final kill -9 and restart: every VM and pool as "
                           "acknowledged (uuids, refs, power state, placement, maps)",
                           not diff and len(before) == len(after), f"{len(diff)} differ"))
            bad = []
            for p, url in enumerate(urls):
                s = login(url, "soak-check")
                bad += check_invariants(s, ["alpha", "beta"][p])
                close(s)
            bad += verify_clients(urls, clients)
            checks.append(("after the restart: invariants and acknowledged writes",
                           not bad, "; ".join(bad[:5])))
    finally:
        server.stop()

    # -- what it did --
    total = stats.total()
    print(f"\n{total} calls in {elapsed:.1f}s ({total / elapsed:.0f}/s)"
          + (f"; server CPU {cpu:.1f}s" + (" since the restart" if args.state_dir else "")
             if cpu is not None else ""))
    ops = sorted({op for op, _ in stats.counts})
    rows = []
    for op in ops:
        outs = {o: n for (o2, o), n in stats.counts.items() if o2 == op}
        lat = sorted(stats.lat.get(op, [0.0]))
        p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        detail = ", ".join(f"{o} {n}" for o, n in sorted(outs.items(), key=lambda kv: -kv[1]))
        rows.append(f"{op:32} {sum(outs.values()):7}  p50 {p50 * 1000:6.1f} ms  "
                    f"p99 {p99 * 1000:7.1f} ms  {detail}")
    report("calls per operation and outcome:", rows)
    if chaos:
        report("chaos:", [f"{a}: {n}" for a, n in sorted(chaos.actions.items())])
    polls = sum(p.polls for p in pollers)
    events = sum(p.events for p in pollers)
    report("event.from:", [f"{polls} polls, {events} events delivered"])
    report("checks:", [("PASS  " if ok else "FAIL  ") + name + (f" -- {detail}" if detail
                                                                else "")
                       for name, ok, detail in checks])
    failed = [c for c in checks if not c[1]]
    keep = failed or args.keep_logs
    print(f"\n{'FAILED' if failed else 'OK'}: {len(checks) - len(failed)}/{len(checks)} "
          f"checks passed" + (f" (server log in {workdir})" if keep else ""))
    if not keep:
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
