"""Durable state: ``xapi-sim serve --state-dir DIR`` (format documented in docs/reliability.md).

Like XAPI's database backend (``ocaml/database/backend_xml.ml`` writes the whole database
atomically, ``redo_log`` streams deltas), the state directory holds

* ``state.json`` -- a full snapshot of the world, written atomically (temporary file, fsync,
  rename, fsync of the directory);
* ``journal.jsonl`` -- one JSON line per acknowledged change batch: the rows changed since
  the previous line (last value wins) and the world's host/pool layout when it changed.
  Each line is written and fsync'd *before* the reply that acknowledges the change leaves
  the server (group commit per call).

At start the snapshot is loaded and the journal replayed (a torn last line, from a kill in
the middle of a write, is ignored: its call was never acknowledged), then a fresh snapshot
is written and the journal emptied. Sessions and tasks are not persisted (XAPI's
``PersistNothing``): clients log in again after a restart, as with a real xapi restart.
"""
from __future__ import annotations

import json
import logging
import os
import threading

from .datamodel import Schema
from .errors import Failure
from .rowcodec import dec, enc  # noqa: F401 -- also used by importers of persist
from .store import Database

log = logging.getLogger(__name__)

FORMAT = "xapi-sim-state"
VERSION = 1
NOT_PERSISTED = {"session", "task"}
COMPACT_BYTES = 64 << 20


# -- world layout -------------------------------------------------------------------------

def _hw(hw):
    if hw is None:
        return None
    return {"cpu": hw.cpu, "hidden_features": list(hw.hidden_features), "sockets": hw.sockets,
            "cpus_per_socket": hw.cpus_per_socket, "memory": hw.memory,
            "mask": list(hw.mask) if hw.mask is not None else None,
            "overrides": dict(hw.overrides)}


def _unhw(d):
    from .world import Hardware
    if d is None:
        return None
    return Hardware(d["cpu"], tuple(d["hidden_features"]), d["sockets"], d["cpus_per_socket"],
                    d["memory"], tuple(d["mask"]) if d["mask"] is not None else None,
                    dict(d["overrides"]))


def layout(world) -> dict:
    """Everything about the world that is not a database row."""
    return {
        "user": world.user, "password": world.password, "seed": world.ids.seed,
        "pools": [{"ref": p.ref, "master": p.master.ref, "release": p.db.schema.release,
                   "password": p.password}
                  for p in world.pools],
        "hosts": [{"ref": h.ref, "uuid": h.uuid, "name_label": h.name_label,
                   "version": h.product.version,
                   "build_number": h.product.software_version_map("")["build_number"],
                   "hw": _hw(h.hw), "next_hw": _hw(h.next_hw),
                   "pool": h.pool.ref if h.pool else None, "state": h.state,
                   "address": h.address, "port": h.port, "started_once": h.started_once,
                   "disabled_until_reboot": h.disabled_until_reboot}
                  for h in world.hosts.values()],
    }


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """Makes every committed transaction of a world durable before it becomes visible.

    A commit hook of the world's transaction manager (``store.Transactions.hooks``): with
    the databases of the transaction still locked, the rows it changed (and the world's
    layout when that changed) are written as one line and fsync'd. A failed write cuts the
    journal back to its last good offset and raises, so the transaction rolls back and the
    call answers an error: nothing is ever visible that is not on disk. Databases are
    tracked by object (``Database`` hashes by its creation order), never by ``id()``.
    Lock order: database locks, then ``self.lock``; the journal never takes a database
    lock while holding its own.
    """

    def __init__(self, world, state_dir):
        self.world = world
        self.dir = state_dir
        self.path = os.path.join(state_dir, "journal.jsonl")
        self.next_path = os.path.join(state_dir, "journal.next.jsonl")
        self.snapshot_path = os.path.join(state_dir, "state.json")
        self.lock = threading.Lock()
        self.last_layout = None
        self.fh = None
        self.lines = 0
        self.good_offset = 0
        self.attached = False
        # one snapshot at a time: two would race on state.json.tmp and journal.next.jsonl,
        # and an older snapshot renamed over a newer one loses the lines in between
        self.snapshot_lock = threading.Lock()

    # -- recording -----------------------------------------------------------------------
    def attach_all(self):
        """Start journaling every commit of the world (idempotent)."""
        if not self.attached:
            self.attached = True
            self.world.txm.hooks.append(self.on_commit)

    def _pool_of(self, db):
        for p in self.world.pools:
            if p.db is db:
                return p
        return None

    def on_commit(self, txn):
        """The commit hook: one line for the transaction, written before it is published."""
        pools = {}
        for db, touches in txn.changes().items():
            p = self._pool_of(db)
            if p is None:
                continue   # a database dropped by pool.join: its rows moved or died
            rows = {}
            for cls, ref, _op in touches:
                if cls not in NOT_PERSISTED:
                    rows[(cls, ref)] = None
            if not rows:
                continue
            entry = pools.setdefault(p.ref, {"release": db.schema.release, "rows": []})
            for cls, ref in rows:
                row = db.tables.get(cls, {}).get(ref)
                if row is None:
                    entry["rows"].append(["del", cls, ref])
                else:
                    entry["rows"].append(["put", cls, ref, enc(row)])
        self._write(pools, txn)

    def sync_layout(self):
        """Journal a change of the world's layout that came with no row change (new
        hardware for the next boot). The layout is read with every pool locked, so no
        call is half-way through changing it."""
        with self.world.txm.transaction() as txn:
            txn.lock(*[p.db for p in self.world.pools])
            self._write({}, txn)

    def _write(self, pools, txn):
        lay = layout(self.world)
        with self.lock:
            if self.fh is None:
                return
            if not pools and lay == self.last_layout:
                return
            line = {"layout": lay if lay != self.last_layout else None, "pools": pools}
            data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
            try:
                self.fh.write(data)
                self.fh.flush()
                os.fsync(self.fh.fileno())
            except OSError as e:
                self._cut_back()
                log.error("journal write failed: %s", e)
                raise Failure("INTERNAL_ERROR", f"state journal write failed: {e}") from None
            self.good_offset = self.fh.tell()
            self.last_layout = lay
            self.lines += 1
            size = self.good_offset
        if size > COMPACT_BYTES:
            # after the transaction ends (the hook runs with its locks held); the thread's
            # current transaction is already unset when the outermost commit runs its hooks
            txn.after.append(self.compact)

    def _cut_back(self):
        """Truncate the journal to the end of its last good line."""
        try:
            self.fh.seek(self.good_offset)
            self.fh.truncate(self.good_offset)
            self.fh.flush()
            os.fsync(self.fh.fileno())
        except (OSError, ValueError):
            log.exception("could not cut the journal back to %d", self.good_offset)

    def sync(self):
        """Kept for callers from before the commit hook: journals a pending layout."""
        self.sync_layout()

    # -- snapshot ------------------------------------------------------------------------
    def write_snapshot(self):
        """Atomically write the full world to state.json and start an empty journal.

        The world is copied with every pool locked (memory only); the files are written
        after the locks are released. Commits made meanwhile go to ``journal.next.jsonl``,
        which replaces the journal once the snapshot is in place. Replaying the old journal
        on the new snapshot is harmless (its last values are the snapshot's), so every
        crash point loads correctly."""
        with self.snapshot_lock:
            self._write_snapshot()

    def _write_snapshot(self):
        world = self.world
        with world.txm.transaction() as txn:
            txn.lock(*[p.db for p in world.pools])
            pools = {p.ref: {"release": p.db.schema.release,
                             "tables": {cls: {ref: enc(row) for ref, row in t.items()}
                                        for cls, t in p.db.tables.items()
                                        if cls not in NOT_PERSISTED and t}}
                     for p in world.pools}
            snap = {"format": FORMAT, "version": VERSION, "layout": layout(world),
                    "pools": pools}
            with self.lock:
                old = self.fh
                self.fh = open(self.next_path, "wb")
                self.good_offset = 0
                self.last_layout = snap["layout"]
                self.lines = 0
        if old is not None:
            old.close()
        tmp = self.snapshot_path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(snap, fh, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.snapshot_path)
        _fsync_dir(self.dir)
        with self.lock:
            os.replace(self.next_path, self.path)
            _fsync_dir(self.dir)

    def compact(self):
        """Snapshot if the journal is still over ``COMPACT_BYTES``; a commit that crossed
        the threshold while another compaction was under way has nothing left to do."""
        if not self.snapshot_lock.acquire(blocking=False):
            return
        try:
            with self.lock:
                big = self.fh is not None and self.good_offset > COMPACT_BYTES
            if big:
                self._write_snapshot()
        finally:
            self.snapshot_lock.release()

    def close(self):
        with self.lock:
            if self.fh is not None:
                self.fh.close()
                self.fh = None


# -- loading --------------------------------------------------------------------------------

class DurableDispatcher:
    """Wraps a Dispatcher: a layout change a call made without a row change is journaled
    before its reply (row changes are journaled at commit)."""

    def __init__(self, dispatcher, journal):
        self.inner = dispatcher
        self.journal = journal
        self.world = dispatcher.world

    def dispatch(self, host, method, params):
        try:
            return self.inner.dispatch(host, method, params)
        finally:
            self.journal.sync_layout()

    def __getattr__(self, name):
        return getattr(self.inner, name)


class StateError(ValueError):
    pass


def exists(state_dir) -> bool:
    return os.path.exists(os.path.join(state_dir, "state.json"))


def load(state_dir, **world_kw):
    """Rebuild a World from state.json + journal.jsonl. Returns (world, replayed lines)."""
    from .world import World
    path = os.path.join(state_dir, "state.json")
    try:
        with open(path) as fh:
            snap = json.load(fh)
    except (OSError, ValueError) as e:
        raise StateError(f"{path}: unreadable state: {e}") from None
    if snap.get("format") != FORMAT:
        raise StateError(f"{path}: not an xapi-sim state file")
    if snap.get("version") != VERSION:
        raise StateError(f"{path}: state format version {snap.get('version')} is not "
                         f"supported (this xapi-sim reads version {VERSION})")
    lay = snap["layout"]
    pools = {pref: (p["release"], {cls: {ref: dec(row) for ref, row in t.items()}
                                   for cls, t in p["tables"].items()})
             for pref, p in snap["pools"].items()}
    replayed = 0
    for jname in ("journal.jsonl", "journal.next.jsonl"):
        replayed += _replay(os.path.join(state_dir, jname), pools, lay_box := [lay])
        lay = lay_box[0]
    kw = dict(world_kw)
    kw.setdefault("user", lay["user"])
    kw.setdefault("password", lay["password"])
    world = World(seed=None, **kw)
    _rebuild(world, lay, pools)
    return world, replayed


def _replay(jpath, pools, lay_box):
    """Apply one journal file to ``pools``; ``lay_box[0]`` is the layout, updated."""
    replayed = 0
    if not os.path.exists(jpath):
        return 0
    with open(jpath, "rb") as fh:
        for raw in fh:
            try:
                line = json.loads(raw)
            except ValueError:
                break   # a torn last line: that call was never acknowledged
            if not raw.endswith(b"\n"):
                break
            if line.get("layout"):
                lay_box[0] = line["layout"]
            for pref, entry in line["pools"].items():
                release, tables = pools.setdefault(pref, (entry["release"], {}))
                pools[pref] = (entry["release"], tables)
                for item in entry["rows"]:
                    if item[0] == "del":
                        tables.get(item[1], {}).pop(item[2], None)
                    else:
                        tables.setdefault(item[1], {})[item[2]] = dec(item[3])
            replayed += 1
    return replayed


def _rebuild(world, lay, pools):
    from . import products
    from .world import HostRuntime, PoolRuntime
    live_pools = {p["ref"]: p for p in lay["pools"]}
    dbs = {}
    for pref, p in live_pools.items():
        release, tables = pools.get(pref, (p["release"], {}))
        db = Database(Schema.for_release(p["release"]), world.txm)
        # hosts first so relation back-references find their rows
        order = sorted(tables, key=lambda c: (c != "host", c))
        for cls in order:
            if cls not in db.tables:
                continue
            for ref, row in tables[cls].items():
                full = db.schema.classes[cls].defaults()
                full.update({k: v for k, v in row.items() if k in full})
                db.add(cls, ref, full)
        # set fields of relations follow their ref fields, whatever the journal held
        db.rebuild_relations()
        dbs[pref] = db
    for hd in lay["hosts"]:
        h = HostRuntime(world, hd["ref"], hd["uuid"], hd["name_label"],
                        products.product(hd["version"], hd.get("build_number")),
                        _unhw(hd["hw"]))
        h.next_hw = _unhw(hd["next_hw"])
        h.state = hd["state"]
        h.address = hd["address"]
        h.port = hd["port"]
        h.started_once = hd["started_once"]
        h.disabled_until_reboot = hd["disabled_until_reboot"]
        world.hosts[h.ref] = h
    for pref, p in live_pools.items():
        # state written before passwords belonged to pools: the world's password
        pool = PoolRuntime(dbs[pref], pref, world.hosts[p["master"]],
                           p.get("password", lay["password"]))
        world.pools.append(pool)
    byref = {p.ref: p for p in world.pools}
    for hd in lay["hosts"]:
        world.hosts[hd["ref"]].pool = byref.get(hd["pool"])
    for h in world.hosts.values():
        if h.pool is not None and h.db.exists("host", h.ref):
            world.update_host_memory(h)
