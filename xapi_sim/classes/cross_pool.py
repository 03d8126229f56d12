"""Cross-pool migration (Storage XenMotion between pools), Dundee semantics (spec §10, §12).

``host.migrate_receive`` on the destination pool returns the ``dest`` map; ``VM.migrate_send``
/ ``VM.assert_can_migrate`` on the *source* pool check, in Dundee's order: the version must not
decrease (``NOT_SUPPORTED_DURING_UPGRADE``), a non-halted copy needs force
(``VM_BAD_POWER_STATE``), the remote host must be enabled (``HOST_DISABLED``), then -- unless
forced or Halted -- the VM against the remote destination *host*'s ``cpu_info`` (never the
destination pool level). On arrival the post-move update (§11) runs against the landing host,
so an old-style or missing featureset is upgraded and extended with that host's words.

The destination may be another pool of the same world or a pool served by another xapi-sim
process.

**Same world.** Nothing in between is slow, so the whole migration -- checks, landing,
release of the source -- is one transaction over both pool databases, locked in the store's
order (``store.py``): a failure anywhere leaves both pools, their events and the journal as
they were, and an opposite-direction migration cannot deadlock with it.

**Another process.** The source talks to the destination over the wire as XAPI pools do:
XML-RPC with the session from the ``dest`` map to read the destination host, then
``PUT /import_metadata`` to hand over the VM (xapi-sim's JSON stand-in for XAPI's XVA
metadata stream). No database lock is held during any network call, and every call has a
bounded client timeout (``world.migration_timeout`` if set, else ``REMOTE_TIMEOUT``). In the
order of xen-api ``ocaml/xapi/xapi_vm_migrate.ml`` ``migrate_send'`` (the destination
imports first, then the source VM is destroyed) and ``message_forwarding.ml``
(``with_vm_operation ~op:`migrate_send`` marks the VM for the whole call):

1. *reserve*: under the source lock the checks run again and the VM gets
   ``current_operations = {task: migrate_send}`` (so no other operation can start on it);
   committed (``checkpoint``), lock released;
2. *land*: ``PUT /import_metadata?...&migration=ID`` -- the destination imports in one
   transaction of its own; the import is idempotent by migration ID (the same request
   again answers the VM it landed) and refuses a VM whose ref or uuid it already has;
3. *release*: the source's VM and its metrics are removed (their own transaction).

Exactly one copy, whatever fails: a refusal from the destination (a definite error: it
imported nothing) undoes the reservation. An unknown outcome -- timeout, reset, garbage --
sends ``PUT /import_metadata?...&migration=ID&abort=true``: the destination marks the ID
aborted (a late import of it is then refused) and destroys what it landed under that ID,
both decided under one lock against the import, so after a confirmed abort the
destination has no copy and never will; only then is the reservation undone. If the
release of the source fails after the landing, the same abort destroys the destination's
copy: ``migrate_send'``'s cleanup since CA-220505 ("Destroy stale VM record on destination
pool on failed SXM", 2016-09; the Dundee branch ``dundee-lcm`` left the stale record) -- the
VM stays on the source. While an abort is unconfirmed (the destination unreachable) the VM
stays reserved on the source, so it is never usable in two pools, and the
:class:`Reconciler` asks again in the background until the destination answers.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

from ..datamodel import NULL_REF
from ..errors import Failure, internal
from ..levelling import featureset, policy
from . import common as c
from .cross_pool_dest import _pool_of, _refresh, _update_memory, land
from .cross_pool_remote import _RemoteDest, _Unknown

log = logging.getLogger(__name__)

RECONCILE_FIRST = 0.5  # seconds before the reconciler asks again, doubling ...
RECONCILE_MAX_INTERVAL = 5.0  # ... up to this
RECONCILE_GIVE_UP = 600.0  # then it logs an error and leaves the VM reserved


class _LocalDest:
    """A destination host in this world, read from its pool's database."""

    def __init__(self, call, dest):
        ref = dest.get("host", "")
        h = call.world.hosts.get(ref)
        if h is None or h.pool is None or not h.db.exists("host", ref):
            raise Failure("HANDLE_INVALID", "host", ref)
        if dest.get("session_id", "") not in h.db.tables["session"]:
            raise Failure("SESSION_INVALID", dest.get("session_id", ""))
        self.h, self.ref = h, ref
        row = h.db.get("host", ref)
        self.software_version, self.enabled = row["software_version"], row["enabled"]
        self.cpu_info = row["cpu_info"]
        self.memory_free = h.world.host_free_memory(h)


def _checks(call, vm, row, d, options):
    copy = (options or {}).get("copy") == "true"
    force = (options or {}).get("force") == "true"
    src_v = call.db.get(
        "host", row["resident_on"] if row["resident_on"] != NULL_REF else call.pool.master.ref
    )["software_version"].get("platform_version")
    try:
        cmp = policy.compare_platform_versions(d.software_version.get("platform_version"), src_v)
    except ValueError as e:
        raise internal(str(e)) from None
    if cmp < 0:
        raise Failure("NOT_SUPPORTED_DURING_UPGRADE")
    if copy and row["power_state"] != "Halted" and not force:
        raise Failure("VM_BAD_POWER_STATE", vm, "halted", row["power_state"].lower())
    if not d.enabled:
        raise Failure("HOST_DISABLED", d.ref)
    if not force and "cpu_info" not in call.db.schema.classes["pool"].fields:
        reason = _v1_check(row, d.cpu_info)
        if reason:
            raise Failure("VM_INCOMPATIBLE_WITH_THIS_HOST", vm, d.ref, reason)
    elif not force:
        try:
            reason = policy.check_vm_compatible(
                row["power_state"], row["last_boot_CPU_flags"], c.is_hvm(row), d.cpu_info
            )
        except featureset.InvalidFeatureString as e:
            raise internal(f'Cpuid_helpers.InvalidFeatureString("{e}")') from None
        if reason:
            raise Failure("VM_INCOMPATIBLE_WITH_THIS_HOST", vm, d.ref, reason)
    need = row["memory_static_max"]
    if row["power_state"] in ("Running", "Paused") and need > d.memory_free:
        raise Failure("HOST_NOT_ENOUGH_FREE_MEMORY", need, d.memory_free)


def _v1_check(row, dest_info):
    """A pre-Dundee (6.5 SP1) source runs levelling v1 (§12): the VM's 4-word set must be a
    subset of the destination host's old-style ``features`` (which Dundee hosts publish for
    exactly this), vendors equal; live migrations only."""
    if row["power_state"] not in ("Running", "Paused"):
        return None
    flags = row["last_boot_CPU_flags"]
    if "vendor" in flags and flags["vendor"] != dest_info.get("vendor"):
        return policy.REASON_VENDOR
    try:
        vm_words = featureset.parse_oldstyle(flags.get("features", ""))
        host_words = featureset.parse_oldstyle(dest_info.get("features", ""))
    except featureset.InvalidFeatureString:
        return None
    if any(v & ~h for v, h in zip(vm_words, host_words, strict=False)):
        return policy.REASON_FEATURES
    return None


def assert_can_migrate_cross_pool(call, vm, row, dest, options):
    dest = dest or {}
    d: _LocalDest | _RemoteDest
    if dest.get("host", "") in call.world.hosts:
        d = _LocalDest(call, dest)
    else:
        remote = d = _RemoteDest(call.world, dest)
        call.world.txm.checkpoint()  # nothing written: no lock held over the network
        remote.connect()
        row = call.db.get("VM", vm)
    _checks(call, vm, row, d, options)


def _assert_can_start(call, vm):
    """``with_vm_operation``'s check before ``migrate_send`` is marked on the VM (checked
    again after any moment without the lock: another operation may have begun)."""
    c.assert_operation_valid(call, "VM", vm, "migrate_send")


def migrate_send_cross_pool(call, vm, row, dest, live, options):
    """``VM.migrate_send`` to another pool: one transaction when the destination is a pool
    of this world, the two-phase protocol when it is another process (module docstring)."""
    _assert_can_start(call, vm)
    dest = dest or {}
    if dest.get("host", "") in call.world.hosts:
        return _migrate_local(call, vm, dest, options)
    return _migrate_remote(call, vm, dest, options)


def _assert_live(world, db, vm):
    """The source database is still a pool's (held locked: a join cannot drop it now)."""
    if _pool_of(world, db) is None:
        raise Failure("HANDLE_INVALID", "VM", vm)


def _metrics(db, row, cls="VM_metrics", field="metrics"):
    m = row[field]
    return db.get(cls, m) if db.exists(cls, m) else None


def _guest_metrics(db, row):
    """The guest metrics travel with the VM (``import.ml``); a halted VM keeps them."""
    return _metrics(db, row, "VM_guest_metrics", "guest_metrics")


def _migrate_local(call, vm, dest, options):
    """Both pools are in this world and nothing in between is slow: the checks, the landing
    and the release of the source are one transaction over both databases, locked in the
    store's order (an opposite-direction migration holding the other pool makes this call
    roll back and run again with both locks taken in order: no deadlock, and a failure
    anywhere leaves both pools, their events and the journal as they were)."""
    world, src_db = call.world, call.db
    h = world.hosts.get(dest["host"])
    txn = world.txm.current()
    if txn is not None and h is not None and h.pool is not None:
        txn.lock(src_db, h.db)
    _assert_live(world, src_db, vm)
    d = _LocalDest(call, dest)
    row = src_db.get("VM", vm)
    _assert_can_start(call, vm)
    _checks(call, vm, row, d, options)
    new_ref = land(d.h, vm, row, _metrics(src_db, row), _guest_metrics(src_db, row))
    _release_source(world, src_db, vm)
    return new_ref


def _migrate_remote(call, vm, dest, options):
    """The two-phase protocol with a destination in another process (module docstring):
    reserve on the source, land on the destination with no lock held, release the source;
    whatever fails or times out, the VM ends in exactly one pool."""
    world, src_db = call.world, call.db
    d = _RemoteDest(world, dest)  # the dest map's form only: no I/O yet
    world.txm.checkpoint()  # nothing written yet: the source lock goes
    d.connect()  # read the destination host, no lock held
    key = call.task or world.ids.ref()
    with src_db.lock:  # phase 1: check again and reserve
        _assert_live(world, src_db, vm)
        row = src_db.get("VM", vm)
        _assert_can_start(call, vm)
        _checks(call, vm, row, d, options)
        mrow, grow = _metrics(src_db, row), _guest_metrics(src_db, row)
        src_db.set("VM", vm, "current_operations", {key: "migrate_send"})
        # a live reservation (its task may be gone while the reconciler works): never
        # taken for a stale entry by the operation checks
        live = c.OperationPolicy.of(world).live
        live.add((src_db, "VM", vm, key))
        world.txm.on_rollback(lambda: live.discard((src_db, "VM", vm, key)))
        _refresh(world, src_db, vm)
    world.txm.checkpoint()  # the reservation is committed
    migration = str(uuid.uuid4())
    src_host = row["resident_on"]
    try:  # phase 2: the destination imports
        new_ref = d.land(vm, row, mrow, migration, grow)
    except Failure:  # a refusal: the destination imported nothing
        _unreserve(world, src_db, vm, key)
        raise
    except BaseException as e:  # no answer: it may have imported
        log.warning(
            "migration %s of %s to %s: %s; aborting it on the destination", migration, vm, d.url, e
        )
        _abort(world, d, src_db, vm, key, migration)
        if isinstance(e, _Unknown):
            raise Failure(
                "VM_MIGRATE_FAILED",
                vm,
                src_host,
                d.ref,
                f"no answer from the destination ({e}); the VM stays here",
            ) from None
        raise
    try:  # phase 3: the VM leaves the source
        _section(world, lambda: _release_source(world, src_db, vm))
    except BaseException:
        # xapi_vm_migrate.ml (CA-220505): a failure after the import destroys the copy
        # the destination imported; the VM stays on the source
        log.exception(
            "migration %s of %s: releasing the source failed after the "
            "import; removing the destination's copy",
            migration,
            vm,
        )
        _abort(world, d, src_db, vm, key, migration)
        raise
    return new_ref


def _section(world, fn):
    """Run ``fn`` as a committed part of the call's transaction of its own: everything
    before it is committed first, and if it raises, its writes (only) are rolled back."""
    txm = world.txm
    txm.checkpoint()
    try:
        fn()
    except BaseException:
        txn = txm.current()
        if txn is not None:
            txn.rollback()
        raise
    txm.checkpoint()


def _release_source(world, db, vm):
    """The source's copy goes (``xapi_vm_migrate.ml`` ``migrate_send``: ``Xapi_vm.destroy``
    of the source VM once the destination has it): the VM, its VBDs, VIFs, metrics and
    guest metrics, its memory on the host it ran on. Its VDIs stay (storage motion of a
    ``vdi_map`` is not modelled)."""
    with db.lock:
        row = db.tables["VM"].get(vm)
        if row is None:
            return  # destroyed meanwhile: nothing left to release
        for vbd in list(row["VBDs"]):
            vrow = db.tables["VBD"].get(vbd)
            if vrow is None:
                continue
            db.remove("VBD", vbd)
            if not vrow["empty"] and db.exists("VDI", vrow["VDI"]):
                c.refresh_allowed(world, db, "VDI", vrow["VDI"])
        for vif in list(row["VIFs"]):
            if db.exists("VIF", vif):
                db.remove("VIF", vif)
        for cls, field in (("VM_metrics", "metrics"), ("VM_guest_metrics", "guest_metrics")):
            if db.exists(cls, row[field]):
                db.remove(cls, row[field])
        db.remove("VM", vm)
        _update_memory(world, db, row["resident_on"])
        live = c.OperationPolicy.of(world).live
        for entry in [e for e in live if e[0] is db and e[2] == vm]:
            live.discard(entry)


def _unreserve(world, db, vm, key):
    """Undo the reservation (``with_vm_operation``'s cleanup). If that cannot be committed
    now, the reconciler tries again."""
    try:
        _section(world, lambda: _unreserve_now(world, db, vm, key))
    except Exception:  # noqa: BLE001 -- logged, and retried in the background
        log.exception("could not undo the migration reservation of %s; retrying", vm)
        Reconciler.of(world).add(None, db, vm, key, None)


def _abort(world, d, db, vm, key, migration):
    """Make sure the destination holds no copy, then undo the reservation. Until the
    destination confirms, the VM stays reserved (so it is never usable in two pools) and
    the reconciler keeps asking."""
    try:
        destroyed = d.abort(migration)
    except _Unknown as e:
        log.warning(
            "migration %s of %s: the destination did not confirm the abort (%s); "
            "the VM stays reserved until it does",
            migration,
            vm,
            e,
        )
        Reconciler.of(world).add(d, db, vm, key, migration)
        return
    if destroyed:
        log.info("migration %s of %s: the destination's copy was destroyed", migration, vm)
    _unreserve(world, db, vm, key)


class _Pending:
    __slots__ = ("dest", "db", "vm", "key", "migration", "deadline", "due", "interval")

    def __init__(self, dest, db, vm, key, migration):
        now = time.monotonic()
        self.dest, self.db, self.vm, self.key, self.migration = dest, db, vm, key, migration
        self.deadline = now + RECONCILE_GIVE_UP
        self.interval = RECONCILE_FIRST
        self.due = now + self.interval


class Reconciler:
    """Source side (a world service): migrations whose abort the destination has not
    confirmed yet, or whose reservation could not be undone. A thread (running only while
    there is work) asks again with a growing interval, no lock held during the calls; once
    the destination confirms, the reservation is undone. After ``RECONCILE_GIVE_UP``
    seconds it gives up, logs an error, and leaves the VM reserved: never usable in two
    pools."""

    def __init__(self, world):
        self.world = world
        self.lock = threading.Lock()
        self.pending: list[_Pending] = []
        self.thread = None
        self.idle = threading.Event()
        self.idle.set()

    @classmethod
    def of(cls, world) -> Reconciler:
        return world.service(cls)

    def add(self, dest, db, vm, key, migration):
        with self.lock:
            self.pending.append(_Pending(dest, db, vm, key, migration))
            self.idle.clear()
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._run, name="migration-reconciler", daemon=True
                )
                self.thread.start()

    def count(self) -> int:
        with self.lock:
            return len(self.pending)

    def wait_idle(self, timeout=None) -> bool:
        """True once nothing is pending (tests)."""
        return self.idle.wait(timeout)

    def _run(self):
        while True:
            with self.lock:
                if not self.pending:
                    self.thread = None
                    self.idle.set()
                    return
                due = min(p.due for p in self.pending)
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(min(delay, RECONCILE_MAX_INTERVAL))
                continue
            now = time.monotonic()
            with self.lock:
                ready = [p for p in self.pending if p.due <= now]
            for p in ready:
                done = self._attempt(p)
                with self.lock:
                    if done:
                        self.pending.remove(p)

    def _attempt(self, p) -> bool:
        world = self.world
        try:
            if p.dest is not None:
                p.dest.abort(p.migration)
                p.dest = None  # confirmed: only the reservation is left
            with world.txm.transaction():
                _unreserve_now(world, p.db, p.vm, p.key)
            log.info("migration %s of %s: reconciled", p.migration, p.vm)
            return True
        except Exception as e:  # noqa: BLE001 -- _Unknown, or the undo failed: retry
            now = time.monotonic()
            if now >= p.deadline:
                log.error(
                    "migration %s of %s: gave up after %g s (%s); the VM stays reserved",
                    p.migration,
                    p.vm,
                    RECONCILE_GIVE_UP,
                    e,
                )
                return True
            p.interval = min(p.interval * 2, RECONCILE_MAX_INTERVAL)
            p.due = now + p.interval
            return False


def _unreserve_now(world, db, vm, key):
    with db.lock:
        row = db.tables["VM"].get(vm)
        c.OperationPolicy.of(world).live.discard((db, "VM", vm, key))
        if row is not None and key in row["current_operations"]:
            ops = {k: v for k, v in row["current_operations"].items() if k != key}
            db.set("VM", vm, "current_operations", ops)
            _refresh(world, db, vm)
