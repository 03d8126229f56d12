"""No deadlock under the lock discipline (issue 11): every pool database lock is taken in
creation order, an out-of-order request rolls the call back and reruns it with its locks
taken in order, nothing slow runs under a lock (store.py, dispatch.py, cross_pool.py).

Each test runs its load in threads under a watchdog: if the threads have not finished in
time, every thread's stack is dumped (faulthandler) and the test fails instead of hanging.
After each, the invariants hold: each VM in exactly one pool, ``check_relations() == []``
for every pool database, every host in exactly one pool, no ``current_operations`` left
behind.

* 100 cross-pool migrations between two pools of one world, in both directions at once
  from 10 threads (XenAPI over the wire);
* 40 migrations in both directions between two worlds served as separate destinations
  (the remote, two-phase path: no lock held over the network);
* ``sim.host_install`` racing ``pool.join`` / ``pool.eject`` of the same host;
* journal compaction at a tiny threshold under 8 writer threads (``--state-dir``); the
  state dir then loads back to the live world.
"""

from __future__ import annotations

import contextlib
import faulthandler
import itertools
import shutil
import sys
import tempfile
import threading
import time

import pytest
import XenAPI

from xapi_sim import dispatch, persist, scenario, store
from xapi_sim.classes import cross_pool
from xapi_sim.datamodel import NULL_REF
from xapi_sim.errors import Failure
from xapi_sim.server import Simulator  # noqa: F401  -- registers every handler
from xapi_sim.testing import running_world

WATCHDOG = 60.0


def watchdog(targets, seconds=WATCHDOG, name="load"):
    """Run ``targets`` (callables) in threads, all released at once; fail with every
    thread's stack if they are not all done within ``seconds``. Re-raises the first
    exception a target raised."""
    gate = threading.Event()
    errors = []

    def run(fn):
        gate.wait()
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 -- reported by the main thread
            errors.append(e)

    threads = [
        threading.Thread(target=run, args=(fn,), name=f"{name}-{i}", daemon=True)
        for i, fn in enumerate(targets)
    ]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    gate.set()
    deadline = t0 + seconds
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    hung = [t.name for t in threads if t.is_alive()]
    if hung:
        sys.stderr.write(f"\n--- watchdog: {hung} still running after {seconds} s ---\n")
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        pytest.fail(
            f"deadlock or hang: {hung} still running after {seconds} s "
            "(stacks of every thread on stderr)"
        )
    if errors:
        raise errors[0]
    return time.monotonic() - t0


def invariants(*worlds, vms=None):
    """The invariants after a load, over one or several worlds (``vms``: uuids that must be
    in exactly one pool of them)."""
    problems = []
    where = {}
    for w in worlds:
        for p in w.pools:
            db = p.db
            problems += [f"pool {p.ref}: {x}" for x in db.check_relations()]
            for ref, row in db.tables["VM"].items():
                where.setdefault(row["uuid"], []).append(p.ref)
                if row["current_operations"]:
                    problems.append(f"VM {ref} left with {row['current_operations']}")
                host = row["resident_on"]
                if host != NULL_REF and host not in db.tables["host"]:
                    problems.append(f"VM {ref} resident on {host}, not of its pool")
            for ref, row in db.tables["host"].items():
                if row["current_operations"]:
                    problems.append(f"host {ref} left with {row['current_operations']}")
        for h in w.hosts.values():
            holders = [p.ref for p in w.pools if h.ref in p.db.tables["host"]]
            if h.pool is None or h.pool not in w.pools or holders != [h.pool.ref]:
                problems.append(
                    f"host {h.name_label} in pools {holders}, "
                    f"runtime pool {h.pool.ref if h.pool else None}"
                )
    for uuid, pools in where.items():
        if len(pools) != 1:
            problems.append(f"VM {uuid} in {len(pools)} pools")
    for uuid in vms or ():
        if len(where.get(uuid, ())) != 1:
            problems.append(f"VM {uuid} in {len(where.get(uuid, ()))} pools")
    assert not problems, "\n".join(problems[:20])


def two_pools(vms_per_pool, prefix=""):
    text = ""
    for p in "ab":
        for i in (1, 2):
            text += f'[[host]]\nname_label = "{prefix}{p}{i}"\ncpu = "Haswell"\nmemory = "256GiB"\n'
        text += (
            f'[[pool]]\nname_label = "{prefix}{p.upper()}"\nmaster = "{prefix}{p}1"\n'
            f'members = ["{prefix}{p}2"]\n'
        )
        for i in range(vms_per_pool):
            state = "Running" if i % 3 else "Halted"
            text += (
                f'[[vm]]\nname_label = "{prefix}{p}-vm{i}"\npower_state = "{state}"\n'
                f'host = "{prefix}{p}{1 + i % 2}"\nmemory = "1GiB"\n'
            )
    return text


def login(url):
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", "xenroot")
    return s


class Migrator:
    """One client thread owning some VMs, moving each back and forth between two pools
    (each VM starts in its own pool, so the threads migrate in both directions at once)."""

    def __init__(self, urls, vms, rounds):
        self.urls, self.vms, self.rounds = urls, vms, rounds  # vms: [(ref, home index)]
        self.done = 0

    def __call__(self):
        sessions = [login(u) for u in self.urls]
        x = [s.xenapi for s in sessions]
        targets = []
        for i in range(2):
            hosts = sorted(x[i].host.get_all())
            targets.append((hosts, x[i].network.get_all()[0]))
        where = {vm: home for vm, home in self.vms}
        n = itertools.count()
        for _ in range(self.rounds):
            for vm, _home in self.vms:
                src = where[vm]
                dst = 1 - src
                hosts, net = targets[dst]
                dest = x[dst].host.migrate_receive(hosts[next(n) % len(hosts)], net, {})
                new = x[src].VM.migrate_send(vm, dest, True, {}, {}, {})
                assert new == vm
                where[vm] = dst
                self.done += 1
        for s in sessions:
            s.xenapi.session.logout()


def _vms(x, prefix):
    return sorted(
        r for r, rec in x.VM.get_all_records().items() if rec["name_label"].startswith(prefix)
    )


@pytest.fixture
def conflicts(monkeypatch):
    """Counts the lock-order conflicts (a call rolled back to rerun with its locks in
    order)."""
    seen = []
    real = store.LockOrderConflict.__init__

    def counting(self, *a, **kw):
        seen.append(1)
        real(self, *a, **kw)

    monkeypatch.setattr(store.LockOrderConflict, "__init__", counting)
    return seen


def test_opposite_direction_migrations_in_one_world(conflicts, monkeypatch):
    """100 cross-pool migrations, A->B and B->A at once, from 10 threads: each takes both
    pool locks in order (the one going against the order is rolled back and rerun). The
    landing is slowed by a few milliseconds (with both locks held) so that migrations in
    opposite directions do overlap."""
    real_land = cross_pool.land

    def slow_land(*args):
        time.sleep(0.003)
        return real_land(*args)

    monkeypatch.setattr(cross_pool, "land", slow_land)
    with running_world(two_pools(10), seed=31) as w:
        urls = [w.url("a1"), w.url("b1")]
        xa, xb = login(urls[0]).xenapi, login(urls[1]).xenapi
        a_vms, b_vms = _vms(xa, "a-vm"), _vms(xb, "b-vm")
        uuids = [xa.VM.get_uuid(v) for v in a_vms] + [xb.VM.get_uuid(v) for v in b_vms]
        # 10 threads, each owning one VM of A and one of B, 5 rounds of 2 moves: 100
        migrators = [Migrator(urls, [(a_vms[i], 0), (b_vms[i], 1)], 5) for i in range(10)]
        took = watchdog(migrators, name="migrate")
        assert sum(m.done for m in migrators) == 100
        invariants(w.world, vms=uuids)
        # five moves each: every VM ended in the other pool
        assert sorted(_vms(xb, "a-vm")) == a_vms and sorted(_vms(xa, "b-vm")) == b_vms
        assert conflicts, "no two migrations overlapped: the test proved nothing"
        sys.stderr.write(
            f"100 opposite-direction migrations in one world: {took:.2f} s, "
            f"{len(conflicts)} lock-order conflicts rerun\n"
        )


def test_opposite_direction_migrations_between_worlds():
    """The remote path under load: 40 migrations between two separately served worlds,
    both directions at once; no lock is held during the wire calls, so none can wait on
    the other world's lock."""
    with contextlib.ExitStack() as stack:
        wa = stack.enter_context(running_world(two_pools(4, "p"), seed=32, bind="127.0.8.1"))
        wb = stack.enter_context(running_world(two_pools(4, "q"), seed=33, bind="127.0.9.1"))
        for w in (wa, wb):
            w.world.migration_timeout = 20.0
        urls = [wa.url("pa1"), wb.url("qa1")]
        xa, xb = login(urls[0]).xenapi, login(urls[1]).xenapi
        a_vms, b_vms = _vms(xa, "pa-vm"), _vms(xb, "qa-vm")
        uuids = [xa.VM.get_uuid(v) for v in a_vms] + [xb.VM.get_uuid(v) for v in b_vms]
        migrators = [Migrator(urls, [(a_vms[i], 0), (b_vms[i], 1)], 5) for i in range(4)]
        took = watchdog(migrators, name="remote-migrate")
        assert sum(m.done for m in migrators) == 40
        for w in (wa, wb):
            assert cross_pool.Reconciler.of(w.world).count() == 0
        invariants(wa.world, wb.world, vms=uuids)
        sys.stderr.write(f"40 migrations between two worlds: {took:.2f} s\n")


RACE = """
[[host]]
name_label = "m1"
cpu = "Haswell"
[[host]]
name_label = "m2"
cpu = "Haswell"
[[pool]]
name_label = "P"
master = "m1"
members = ["m2"]
[[host]]
name_label = "x"
cpu = "Haswell"
[[host]]
name_label = "y"
cpu = "Haswell"
"""

# What the racing calls may answer (XAPI's errors for a host in the wrong state).
RACE_ERRORS = {
    "HOST_NOT_DISABLED",
    "HOST_OFFLINE",
    "HOST_IS_SLAVE",
    "SESSION_INVALID",
    "HANDLE_INVALID",
    "OPERATION_NOT_ALLOWED",
    "JOINING_HOST_CONNECTION_FAILED",
    "HOST_HAS_RESIDENT_VMS",
    "JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS",
}


class Racer:
    """In-process calls (the real dispatcher) with a session per pool, made on demand."""

    def __init__(self, world):
        self.world = world
        self.d = dispatch.Dispatcher(world)
        self.errors = {}
        self.lock = threading.Lock()

    def session(self, master):
        return self.d.dispatch(
            master, "session.login_with_password", ["root", "xenroot", "1.0", "race"]
        )

    def call(self, endpoint, method, *params):
        """Log in at ``endpoint``'s master and call: True if it succeeded, False for an
        expected XAPI error (counted)."""
        pool = endpoint.pool  # runtime state, read without a lock: may be mid-change
        code = "host between pools"
        if pool is not None:
            try:
                s = self.session(pool.master)
                at = endpoint if method.startswith("pool.join") else pool.master
                self.d.dispatch(at, method, [s, *params])
                return True
            except Failure as f:
                if f.code not in RACE_ERRORS:
                    raise
                code = f.code
        with self.lock:
            self.errors[code] = self.errors.get(code, 0) + 1
        return False


def test_host_install_races_join_and_eject():
    """``sim.host_install`` on hosts that are joining and being ejected at the same time:
    join takes both pools' locks in order, install the host's pool lock; nothing hangs and
    every host ends in exactly one pool."""
    world = scenario.build(scenario.loads(RACE, "<race>"), seed=34)
    r = Racer(world)
    m1 = world.host_by_name("m1")
    stop = threading.Event()
    counts = {"joined": 0, "ejected": 0, "installed": 0}

    def cycle(name):
        h = world.host_by_name(name)

        def run():
            try:
                for _ in range(30):
                    if r.call(h, "pool.join", m1.address, "root", "xenroot"):
                        counts["joined"] += 1
                    if h.pool is m1.pool and r.call(m1, "pool.eject", h.ref):
                        counts["ejected"] += 1
            finally:
                stop.set()

        return run

    def installer():
        hosts = [world.host_by_name(n) for n in ("x", "y", "m2")]
        for i in itertools.count():
            if stop.is_set() and i > 20:
                return
            h = hosts[i % len(hosts)]
            r.call(h, "host.disable", h.ref)
            if r.call(h, "sim.host_install", h.ref, "7.0.0"):
                counts["installed"] += 1
            r.call(h, "host.enable", h.ref)

    took = watchdog([cycle("x"), cycle("y"), installer], name="race")
    invariants(world)
    assert counts["joined"] and counts["ejected"] and counts["installed"], (counts, r.errors)
    for h in world.hosts.values():
        assert h.state == "up", h
    sys.stderr.write(
        f"install racing join/eject: {took:.2f} s, {counts}, expected errors {r.errors}\n"
    )


def test_journal_compaction_under_eight_writers(monkeypatch):
    """A journal compacted every few KiB while 8 threads write: compaction (a snapshot
    with every pool locked, run after a commit) never deadlocks with writers, and the
    state dir loads back to exactly the live world."""
    monkeypatch.setattr(persist.journal, "COMPACT_BYTES", 4096)
    state = tempfile.mkdtemp(prefix="xapi-sim-compact-")
    compactions = []
    real = persist.Journal.compact

    def counting(self):
        compactions.append(time.monotonic())
        return real(self)

    monkeypatch.setattr(persist.Journal, "compact", counting)
    try:
        world = scenario.build(scenario.loads(two_pools(8), "<compact>"), seed=35)
        journal = persist.Journal(world, state)
        journal.attach_all()
        journal.write_snapshot()
        d = persist.DurableDispatcher(dispatch.Dispatcher(world), journal)
        masters = [p.master for p in world.pools]
        acked = {}
        ack_lock = threading.Lock()

        def writer(i):
            def run():
                m = masters[i % 2]
                s = d.dispatch(
                    m, "session.login_with_password", ["root", "xenroot", "1.0", f"w{i}"]
                )
                vms = sorted(
                    r
                    for r, row in m.db.tables["VM"].items()
                    if row["name_label"].startswith(("a-vm", "b-vm"))
                )
                vm = vms[i // 2]
                for j in range(40):
                    d.dispatch(m, "VM.add_to_other_config", [s, vm, f"k{i}-{j}", str(j)])
                    d.dispatch(m, "VM.set_name_description", [s, vm, f"w{i} #{j}"])
                    pool = m.pool.ref
                    d.dispatch(m, "pool.add_to_other_config", [s, pool, f"w{i}-{j}", "x"])
                    with ack_lock:
                        acked[(m.pool.ref, vm, f"k{i}-{j}")] = str(j)
                        acked[(m.pool.ref, vm, "description")] = f"w{i} #{j}"
                        acked[(m.pool.ref, pool, f"w{i}-{j}")] = "x"

            return run

        took = watchdog([writer(i) for i in range(8)], name="writer")
        journal.close()
        assert len(compactions) >= 5, len(compactions)
        invariants(world)
        back, _ = persist.load(state)
        live = {p.ref: p.db for p in world.pools}
        loaded = {p.ref: p.db for p in back.pools}
        assert loaded.keys() == live.keys()
        for pref, db in live.items():
            for cls, table in db.tables.items():
                if cls in persist.NOT_PERSISTED:
                    continue
                assert loaded[pref].tables[cls] == table, f"{cls} differs after a reload"
        for (pref, ref, key), value in acked.items():
            db = loaded[pref]
            if key == "description":
                assert db.get("VM", ref)["name_description"] in {
                    v for (p2, r2, k2), v in acked.items() if k2 == "description" and r2 == ref
                }
            elif db.exists("VM", ref):
                assert db.get("VM", ref)["other_config"][key] == value
            else:
                assert db.get("pool", ref)["other_config"][key] == value
        sys.stderr.write(f"8 writers, {len(compactions)} compactions: {took:.2f} s\n")
    finally:
        shutil.rmtree(state, ignore_errors=True)
