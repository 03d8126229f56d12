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
import os
import threading

from .datamodel import Schema, Timestamp
from .store import Database

FORMAT = "xapi-sim-state"
VERSION = 1
NOT_PERSISTED = {"session", "task"}
COMPACT_BYTES = 64 << 20


# -- value encoding (JSON keeps neither datetimes nor non-string map keys) -----------------

def enc(v):
    t = type(v)
    if t is Timestamp:
        return {"$t": str(v)}
    if t is dict:
        if all(type(k) is str for k in v):
            return {k: enc(x) for k, x in v.items()} if "$t" not in v and "$m" not in v \
                else {"$m": [[k, enc(x)] for k, x in v.items()]}
        return {"$m": [[k, enc(x)] for k, x in v.items()]}
    if t is list or t is tuple:
        return [enc(x) for x in v]
    return v


def dec(v):
    t = type(v)
    if t is dict:
        if "$t" in v and len(v) == 1:
            return Timestamp(v["$t"])
        if "$m" in v and len(v) == 1:
            return {k: dec(x) for k, x in v["$m"]}
        return {k: dec(x) for k, x in v.items()}
    if t is list:
        return [dec(x) for x in v]
    return v


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
    """Records every row change of every pool database of a world and makes it durable."""

    def __init__(self, world, state_dir):
        self.world = world
        self.dir = state_dir
        self.path = os.path.join(state_dir, "journal.jsonl")
        self.snapshot_path = os.path.join(state_dir, "state.json")
        self.lock = threading.Lock()
        self.pending: dict = {}       # (pool ref, cls, ref) -> op
        self.last_layout = None
        self.attached = set()
        self.fh = None
        self.lines = 0

    # -- recording -----------------------------------------------------------------------
    def attach_all(self):
        with self.lock:
            self._attach_new_unlocked(record_rows=False)

    def _attach_new_unlocked(self, record_rows):
        """Listen to every pool database not seen yet; ``record_rows``: a database created
        since the last sync also has all of its rows recorded."""
        for p in self.world.pools:
            if id(p.db) not in self.attached:
                self.attached.add(id(p.db))
                self._attach_unlocked(p)
                if record_rows:
                    self._add_pool_rows_unlocked(p)

    def sync(self):
        """Write and fsync everything changed since the last sync (called before replies)."""
        with self.lock:
            self._attach_new_unlocked(record_rows=True)
            lay = layout(self.world)
            if not self.pending and lay == self.last_layout:
                return
            pending, self.pending = self.pending, {}
            pools = {}
            dbs = {id(p.db): p for p in self.world.pools}
            for (dbid, cls, ref), (db, op) in pending.items():
                p = dbs.get(dbid)
                if p is None:
                    continue   # a database dropped by pool.join: its rows moved or died
                entry = pools.setdefault(p.ref, {"release": p.db.schema.release, "rows": []})
                row = db.tables.get(cls, {}).get(ref)
                if row is None:
                    entry["rows"].append(["del", cls, ref])
                else:
                    entry["rows"].append(["put", cls, ref, enc(row)])
            line = {"layout": lay if lay != self.last_layout else None, "pools": pools}
            self.last_layout = lay
            data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
            self.fh.write(data)
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.lines += 1
            size = self.fh.tell()
        if size > COMPACT_BYTES:
            self.compact()

    def _attach_unlocked(self, pool):
        db = pool.db

        def on_change(cls, ref, op, db=db):
            if cls in NOT_PERSISTED:
                return
            with self.lock:
                self.pending[(id(db), cls, ref)] = (db, op)
        db.listeners.append(on_change)

    def _add_pool_rows_unlocked(self, pool):
        """A database created since the last sync: record all of its rows."""
        db = pool.db
        for cls, table in db.tables.items():
            if cls in NOT_PERSISTED:
                continue
            for ref in table:
                self.pending[(id(db), cls, ref)] = (db, "put")

    # -- snapshot ------------------------------------------------------------------------
    def write_snapshot(self):
        """Atomically write the full world to state.json and empty the journal."""
        world = self.world
        with self.lock:
            pools = {}
            for p in world.pools:
                with p.db.lock:
                    pools[p.ref] = {
                        "release": p.db.schema.release,
                        "tables": {cls: {ref: enc(row) for ref, row in t.items()}
                                   for cls, t in p.db.tables.items()
                                   if cls not in NOT_PERSISTED and t}}
            snap = {"format": FORMAT, "version": VERSION, "layout": layout(world),
                    "pools": pools}
            tmp = self.snapshot_path + ".tmp"
            with open(tmp, "w") as fh:
                json.dump(snap, fh, separators=(",", ":"))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.snapshot_path)
            _fsync_dir(self.dir)
            if self.fh is not None:
                self.fh.close()
            self.fh = open(self.path, "wb")
            os.fsync(self.fh.fileno())
            _fsync_dir(self.dir)
            self.pending.clear()
            self.last_layout = snap["layout"]
            self.lines = 0

    def compact(self):
        self.write_snapshot()

    def close(self):
        with self.lock:
            if self.fh is not None:
                self.fh.close()
                self.fh = None


# -- loading --------------------------------------------------------------------------------

class DurableDispatcher:
    """Wraps a Dispatcher: every call's changes are journaled and fsync'd before its reply."""

    def __init__(self, dispatcher, journal):
        self.inner = dispatcher
        self.journal = journal
        self.world = dispatcher.world

    def dispatch(self, host, method, params):
        try:
            return self.inner.dispatch(host, method, params)
        finally:
            self.journal.sync()

    def __getattr__(self, name):
        return getattr(self.inner, name)


def start_flusher(journal, interval=0.2):
    """Background syncs for changes made after a reply (Async tasks, delayed joins)."""
    stop = threading.Event()

    def run():
        while not stop.wait(interval):
            try:
                journal.sync()
            except (OSError, ValueError):
                pass
    threading.Thread(target=run, name="journal-flusher", daemon=True).start()
    return stop


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
    jpath = os.path.join(state_dir, "journal.jsonl")
    if os.path.exists(jpath):
        with open(jpath, "rb") as fh:
            for raw in fh:
                try:
                    line = json.loads(raw)
                except ValueError:
                    break   # a torn last line: that call was never acknowledged
                if not raw.endswith(b"\n"):
                    break
                if line.get("layout"):
                    lay = line["layout"]
                for pref, entry in line["pools"].items():
                    release, tables = pools.setdefault(pref, (entry["release"], {}))
                    pools[pref] = (entry["release"], tables)
                    for item in entry["rows"]:
                        if item[0] == "del":
                            tables.get(item[1], {}).pop(item[2], None)
                        else:
                            tables.setdefault(item[1], {})[item[2]] = dec(item[3])
                replayed += 1
    kw = dict(world_kw)
    kw.setdefault("user", lay["user"])
    kw.setdefault("password", lay["password"])
    world = World(seed=None, **kw)
    _rebuild(world, lay, pools)
    return world, replayed


def _rebuild(world, lay, pools):
    from . import products
    from .world import HostRuntime, PoolRuntime
    live_pools = {p["ref"]: p for p in lay["pools"]}
    dbs = {}
    for pref, p in live_pools.items():
        release, tables = pools.get(pref, (p["release"], {}))
        db = Database(Schema.for_release(p["release"]))
        # hosts first so relation back-references find their rows
        order = sorted(tables, key=lambda c: (c != "host", c))
        for cls in order:
            if cls not in db.tables:
                continue
            for ref, row in tables[cls].items():
                full = db.schema.classes[cls].defaults()
                full.update({k: v for k, v in row.items() if k in full})
                db.add(cls, ref, full)
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
