"""The state directory: checks of the directory itself, loading, opening a world on it,
repair, and rebuilding a world from saved rows."""

from __future__ import annotations

import errno as errno_mod
import json
import logging
import os
import shutil
import time

from .. import products
from ..datamodel import Schema
from ..errors import Failure
from ..rowcodec import dec, enc  # noqa: F401 -- also used by importers of persist
from ..runtime import HostRuntime, PoolRuntime
from ..store import Database
from ..world import World

log = logging.getLogger(__name__)

from .fileops import _fsync_dir  # noqa: E402
from .journal import Journal  # noqa: E402
from .layout import _unhw  # noqa: E402
from .statefile import (  # noqa: E402
    JOURNALS,
    READABLE_VERSIONS,
    STATE,
    VERSION,
    JournalDamage,
    Scan,
    StateError,
    _read,
    scan,
)

# -- the directory ---------------------------------------------------------------------------


def exists(state_dir) -> bool:
    return os.path.exists(os.path.join(state_dir, STATE))


def check_dir(state_dir, create=False, write=False):
    """The directory itself: there (or created), a directory, readable, and -- for serve and
    repair -- writable (a probe file is written, fsync'd and removed). Raises StateError."""
    if not os.path.lexists(state_dir):
        if not create:
            raise StateError(f"{state_dir}: no such directory")
        try:
            os.makedirs(state_dir)
        except OSError as e:
            raise StateError(f"{state_dir}: cannot create the state dir: {e.strerror}") from None
    if not os.path.isdir(state_dir):
        raise StateError(f"{state_dir}: not a directory (--state-dir needs a directory)")
    try:
        os.listdir(state_dir)
    except OSError as e:
        raise StateError(f"{state_dir}: cannot read the state dir: {e.strerror}") from None
    if write:
        probe = os.path.join(state_dir, f".xapi-sim-probe-{os.getpid()}")
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, b"probe")
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(probe)
        except OSError as e:
            what = (
                "read-only"
                if e.errno in (errno_mod.EROFS, errno_mod.EACCES, errno_mod.EPERM)
                else "not writable"
            )
            raise StateError(
                f"{state_dir}: the state dir is {what} ({e.strerror}); serve "
                "writes its journal there"
            ) from None


def _orphan_journal(state_dir):
    return [n for n in JOURNALS if os.path.lexists(os.path.join(state_dir, n))]


def _require_state(state_dir):
    if exists(state_dir):
        return
    orphans = _orphan_journal(state_dir)
    if orphans:
        raise StateError(
            f"{state_dir}: {orphans[0]} is there but {STATE} is missing; "
            f"refusing to start a new world over a kept journal (restore {STATE}, "
            "or move the directory away to start afresh)"
        )
    raise StateError(f"{state_dir}: no world kept here (no {STATE})")


def load(state_dir, **world_kw):
    """Rebuild a World from state.json + the journal. Returns (world, Scan)."""
    check_dir(state_dir)
    _require_state(state_dir)
    s = scan(state_dir)
    return build_world(s, state_dir, **world_kw), s


def build_world(s: Scan, state_dir, **world_kw):
    lay = s.layout
    assert lay is not None
    kw = dict(world_kw)
    kw.setdefault("user", lay["user"])
    kw.setdefault("password", lay["password"])
    world = World(seed=None, **kw)
    try:
        _rebuild(world, lay, s.pools)
    except (Failure, KeyError, TypeError, ValueError, AttributeError) as e:
        text = " ".join(getattr(e, "description", None) or [str(e)])
        raise StateError(
            f"{state_dir}: the kept world cannot be rebuilt: {type(e).__name__}: {text}"
        ) from None
    return world


def open_state(state_dir, new_world, ops=None, **world_kw):
    """Everything ``serve --state-dir`` does before listening: check the directory, resume
    the world kept there (or build one with ``new_world()`` when there is none), write the
    run's first snapshot and attach the journal. Returns (world, journal, what happened as
    one line). Raises StateError, having changed nothing, when the directory is unusable."""
    check_dir(state_dir, create=True)
    if exists(state_dir):
        s = scan(state_dir)
        check_dir(state_dir, write=True)
        world = build_world(s, state_dir, **world_kw)
        notes = [f"resuming the world kept in {state_dir} ({s.replayed} journal entries replayed)"]
        for name, _off, n in s.torn:
            notes.append(
                f"dropped an incomplete last line of {name} ({n} bytes, never acknowledged)"
            )
        if s.version != VERSION:
            notes.append(f"converted from state format version {s.version} to {VERSION}")
        seq, superseded = s.seq, s.files
    else:
        orphans = _orphan_journal(state_dir)
        if orphans:
            _require_state(state_dir)
        check_dir(state_dir, write=True)
        world = new_world()
        notes = [f"new state dir {state_dir}"]
        seq, superseded = 0, {}
    journal = Journal(world, state_dir, seq=seq, ops=ops)
    try:
        journal.start(superseded)
    except OSError as e:
        journal.close()
        raise StateError(f"{state_dir}: cannot write the state: {e.strerror or e}") from None
    journal.attach_all()
    return world, journal, "; ".join(notes)


def _backup(state_dir) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = os.path.join(state_dir, f"backup-{stamp}")
    n = 1
    while os.path.exists(path):
        n += 1
        path = os.path.join(state_dir, f"backup-{stamp}-{n}")
    os.mkdir(path)
    for name in (STATE, *JOURNALS):
        src = os.path.join(state_dir, name)
        if os.path.exists(src):
            dst = os.path.join(path, name)
            shutil.copy2(src, dst)
            with open(dst, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(path)
    _fsync_dir(state_dir)
    return path


def _cut(path, offset) -> tuple[int, int]:
    """Truncate a file at ``offset``; returns (complete lines dropped, torn bytes dropped)."""
    with open(path, "r+b") as fh:
        fh.seek(offset)
        rest = fh.read()
        fh.truncate(offset)
        fh.flush()
        os.fsync(fh.fileno())
    lines = rest.count(b"\n")
    tail = len(rest) - (rest.rfind(b"\n") + 1)
    return lines, tail


def _version_of(state_dir) -> int:
    try:
        with open(os.path.join(state_dir, STATE), "rb") as fh:
            v = json.load(fh).get("version")
    except (OSError, ValueError, AttributeError):
        return VERSION
    return v if v in READABLE_VERSIONS else VERSION


def repair(state_dir) -> str:
    """``xapi-sim repair``: keep a backup, then cut a damaged journal at its first bad line
    (and drop what no longer follows on from it) and any torn last line. Returns what was
    done, as one line; raises StateError when there is nothing it can repair (a damaged
    ``state.json`` is not repairable: nothing else holds the world)."""
    check_dir(state_dir)
    _require_state(state_dir)
    check_dir(state_dir, write=True)
    total = 0
    for name in JOURNALS:
        path = os.path.join(state_dir, name)
        if os.path.exists(path):
            total += _read(path).count(b"\n")
    backup = first = None
    dropped = torn_bytes = 0
    for _ in range(2 * len(JOURNALS) + 2):  # each round cuts at least one line
        try:
            s = scan(state_dir)
            break
        except JournalDamage as d:
            if backup is None:
                backup = _backup(state_dir)
            first = first or d
            cuts = [(d.name, d.offset)]
            if _version_of(state_dir) < 2:
                # no sequence numbers: a later file cannot be told to follow on from the cut
                cuts += [(n, 0) for n in JOURNALS[JOURNALS.index(d.name) + 1 :]]
            for name, offset in cuts:
                path = os.path.join(state_dir, name)
                if os.path.exists(path):
                    lines, tail = _cut(path, offset)
                    dropped += lines
                    torn_bytes += tail
    else:
        raise StateError(f"{state_dir}: the journal could not be repaired")
    for name, offset, n in s.torn:
        if backup is None:
            backup = _backup(state_dir)
        _cut(os.path.join(state_dir, name), offset)
        torn_bytes += n
    if backup is None:
        return (
            f"{state_dir}: nothing to repair ({STATE} and {s.replayed + s.skipped} "
            "journal line(s) are sound)"
        )
    _fsync_dir(state_dir)
    what = []
    if first is not None:
        what.append(
            f"dropped {dropped} of {total} journal line(s), from {first.name} line "
            f"{first.line} on ({first.reason})"
        )
    if torn_bytes:
        what.append(f"removed {torn_bytes} byte(s) of an incomplete last line")
    return f"repaired {state_dir}: {'; '.join(what)}; the files as they were are in {backup}"


def _rebuild(world, lay, pools):
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
        h = HostRuntime(
            world,
            hd["ref"],
            hd["uuid"],
            hd["name_label"],
            products.product(hd["version"], hd.get("build_number")),
            _unhw(hd["hw"]),
        )
        h.next_hw = _unhw(hd["next_hw"])
        h.state = hd["state"]
        h.address = hd["address"]
        h.port = hd["port"]
        h.started_once = hd["started_once"]
        h.disabled_until_reboot = hd["disabled_until_reboot"]
        world.hosts[h.ref] = h
    for pref, p in live_pools.items():
        # state written before passwords belonged to pools: the world's password
        pool = PoolRuntime(
            dbs[pref], pref, world.hosts[p["master"]], p.get("password", lay["password"])
        )
        world.pools.append(pool)
    byref = {p.ref: p for p in world.pools}
    for hd in lay["hosts"]:
        world.hosts[hd["ref"]].pool = byref.get(hd["pool"])
    for h in world.hosts.values():
        if h.pool is not None and h.db.exists("host", h.ref):
            world.update_host_memory(h)
