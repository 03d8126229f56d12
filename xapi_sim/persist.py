"""Durable state: ``xapi-sim serve --state-dir DIR`` (format documented in docs/reliability.md).

Like XAPI's database backend (``ocaml/database/backend_xml.ml`` writes the whole database
atomically, ``redo_log`` streams deltas), the state directory holds

* ``state.json`` -- a full snapshot of the world at journal sequence number ``seq``, written
  atomically (temporary file, fsync, rename, fsync of the directory);
* ``journal.jsonl`` -- one line per committed transaction that changed something kept:
  ``<crc32 as 8 hex digits> <JSON>``, the JSON holding the line's sequence number, the rows
  the transaction changed and the world's layout when that changed. The line is written and
  fsync'd by a commit hook (``store.Transactions.hooks``) while the transaction's databases
  are locked, before anything is published: nothing is ever visible -- to a reply, an event,
  another call -- that is not on disk. A write that fails (a full disk, an I/O error) cuts
  the journal back to its last good line and rolls the whole transaction back; the call
  answers XAPI's error for an unexpected exception (see ``unix_error_text``).
* ``journal.next.jsonl`` -- the journal while a snapshot is being written.

Loading is strict: every complete line must carry a good checksum, the next sequence
number and the right shape. Only bytes after the last newline of the last journal (a write
cut short by a crash: never acknowledged) may be dropped; anything else -- damage in the
middle, a missing ``state.json`` next to a journal, a malformed snapshot -- refuses to load
with one line naming the file and line, and leaves every file as it is. ``repair`` keeps a
backup and cuts a damaged journal at its first bad line. Version 1 directories (lines
without checksums) are read and converted to version 2 at the next start.

Sessions and tasks are not persisted (XAPI's ``PersistNothing``): clients log in again after
a restart, as with a real xapi restart.
"""
from __future__ import annotations

import errno as errno_mod
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
import zlib

from . import products
from .datamodel import Schema
from .errors import Failure
from .install_network import DEFAULT_NICS, MAX_NICS
from .levelling import cpus
from .rowcodec import dec, enc  # noqa: F401 -- also used by importers of persist
from .runtime import Hardware, HostRuntime, PoolRuntime
from .store import Database
from .world import World

log = logging.getLogger(__name__)

FORMAT = "xapi-sim-state"
VERSION = 2
READABLE_VERSIONS = (1, 2)
NOT_PERSISTED = {"session", "task"}
COMPACT_BYTES = 64 << 20
STATE = "state.json"
JOURNAL = "journal.jsonl"
JOURNAL_NEXT = "journal.next.jsonl"
JOURNALS = (JOURNAL, JOURNAL_NEXT)
HOST_STATES = ("up", "down", "crashed")
_APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)


# -- world layout -------------------------------------------------------------------------

def _hw(hw):
    if hw is None:
        return None
    return {"cpu": hw.cpu, "hidden_features": list(hw.hidden_features), "sockets": hw.sockets,
            "cpus_per_socket": hw.cpus_per_socket, "memory": hw.memory,
            "mask": list(hw.mask) if hw.mask is not None else None,
            "overrides": dict(hw.overrides), "nics": hw.nics}


def _unhw(d):
    if d is None:
        return None
    # state written before hosts had a NIC count has none: the installer's default
    return Hardware(d["cpu"], tuple(d["hidden_features"]), d["sockets"], d["cpus_per_socket"],
                    d["memory"], tuple(d["mask"]) if d["mask"] is not None else None,
                    dict(d["overrides"]), d.get("nics", DEFAULT_NICS))


def layout(world) -> dict:
    """Everything about the world that is not a database row."""
    with world.lock:
        pools = list(world.pools)
        hosts = list(world.hosts.values())
    return {
        "user": world.user, "password": world.password, "seed": world.ids.seed,
        "pools": [{"ref": p.ref, "master": p.master.ref, "release": p.db.schema.release,
                   "password": p.password}
                  for p in pools],
        "hosts": [{"ref": h.ref, "uuid": h.uuid, "name_label": h.name_label,
                   "version": h.product.version,
                   "build_number": h.product.software_version_map("")["build_number"],
                   "hw": _hw(h.hw), "next_hw": _hw(h.next_hw),
                   "pool": h.pool.ref if h.pool else None, "state": h.state,
                   "address": h.address, "port": h.port, "started_once": h.started_once,
                   "disabled_until_reboot": h.disabled_until_reboot}
                  for h in hosts],
    }


def _fingerprint(world) -> tuple:
    """What ``layout`` reads, cheaply comparable (no dicts built): a read-only call checks
    it against the journaled layout to spot a change made outside any database lock."""
    with world.lock:
        pools = list(world.pools)
        hosts = list(world.hosts.values())
    return (tuple((p.ref, p.master.ref, p.db.schema.release, p.password) for p in pools),
            tuple((h.ref, h.uuid, h.name_label, h.product, h.hw, h.next_hw,
                   h.pool.ref if h.pool else None, h.state, h.address, h.port,
                   h.started_once, h.disabled_until_reboot) for h in hosts))


def _norm(lay):
    """A layout in a form whose equality ignores list order."""
    if lay is None:
        return None
    return (lay["user"], lay["password"], lay["seed"],
            {p["ref"]: p for p in lay["pools"]}, {h["ref"]: h for h in lay["hosts"]})


# -- errors as XAPI reports them --------------------------------------------------------------

# OCaml's Unix.error constructors in declaration order (otherlibs/unix/unix.ml); an errno is
# reported as the first constructor with its number (so EAGAIN, not EWOULDBLOCK), and one
# that has none as EUNKNOWNERR n.
_OCAML_UNIX_ERRORS = (
    "E2BIG EACCES EAGAIN EBADF EBUSY ECHILD EDEADLK EDOM EEXIST EFAULT EFBIG EINTR EINVAL "
    "EIO EISDIR EMFILE EMLINK ENAMETOOLONG ENFILE ENODEV ENOENT ENOEXEC ENOLCK ENOMEM ENOSPC "
    "ENOSYS ENOTDIR ENOTEMPTY ENOTTY ENXIO EPERM EPIPE ERANGE EROFS ESPIPE ESRCH EXDEV "
    "EWOULDBLOCK EINPROGRESS EALREADY ENOTSOCK EDESTADDRREQ EMSGSIZE EPROTOTYPE ENOPROTOOPT "
    "EPROTONOSUPPORT ESOCKTNOSUPPORT EOPNOTSUPP EPFNOSUPPORT EAFNOSUPPORT EADDRINUSE "
    "EADDRNOTAVAIL ENETDOWN ENETUNREACH ENETRESET ECONNABORTED ECONNRESET ENOBUFS EISCONN "
    "ENOTCONN ESHUTDOWN ETOOMANYREFS ETIMEDOUT ECONNREFUSED EHOSTDOWN EHOSTUNREACH ELOOP "
    "EOVERFLOW").split()
_OCAML_BY_ERRNO: dict = {}
for _name in _OCAML_UNIX_ERRORS:
    _num = getattr(errno_mod, _name, None)
    if _num is not None:
        _OCAML_BY_ERRNO.setdefault(_num, _name)


def unix_error_text(err: int | None, fn: str, arg: str = "") -> str:
    """``Printexc.to_string (Unix.Unix_error (e, fn, arg))`` as OCaml's Unix module prints
    it: ``Unix.Unix_error(Unix.ENOSPC, "write", "")``.

    XAPI answers an exception it has no mapping for with ``INTERNAL_ERROR`` carrying that
    text (xen-api ``ocaml/idl/ocaml_backend/exnHelper.ml``, Dundee; ``ocaml/xapi/exnHelper.ml``
    at HEAD: the catch-all ``e -> internal_error, [Printexc.to_string e]``)."""
    name = _OCAML_BY_ERRNO.get(err) if err is not None else None
    if name is None:
        name = f"EUNKNOWNERR {err if err is not None else 0}"
    return f"Unix.Unix_error(Unix.{name}, {json.dumps(fn)}, {json.dumps(arg)})"


class JournalWriteError(OSError):
    """A journal system call failed; ``fn`` is its name (write, fsync, ftruncate)."""

    def __init__(self, err: OSError, fn: str):
        super().__init__(err.errno, err.strerror)
        self.fn = fn

    def failure(self) -> Failure:
        return Failure("INTERNAL_ERROR", unix_error_text(self.errno, self.fn))


# -- the journal's system calls: a seam for injected faults ------------------------------------

class FileOps:
    """The system calls the journal and the snapshot writer make (``Journal.ops``)."""

    def open(self, path, flags, mode=0o644):
        return os.open(path, flags, mode)

    def write(self, fd, data) -> int:
        return os.write(fd, data)

    def fsync(self, fd):
        os.fsync(fd)

    def ftruncate(self, fd, size):
        os.ftruncate(fd, size)

    def close(self, fd):
        os.close(fd)


class FaultyOps(FileOps):
    """``FileOps`` with faults to inject (tests; no root needed).

    * ``fail_write(nth, err, partial)``: the ``nth`` write from now writes ``partial``
      bytes, then raises ``err`` (a short write cut by the error);
    * ``fail_fsync(nth, err)``, ``fail_truncate(nth, err)``: the ``nth`` fsync / ftruncate
      from now raises;
    * ``space``: bytes left on the simulated disk (None: unlimited). A write larger than
      that writes what fits and returns the short count, as Linux does; a write when
      nothing is left raises ENOSPC. Truncation gives the space back.

    ``injected`` lists every fault raised, as (call, errno name)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {"write": 0, "fsync": 0, "ftruncate": 0}
        self.planned: dict = {}          # (call, count) -> (errno, partial bytes)
        self.space: int | None = None
        self.injected: list = []

    def _plan(self, call, nth, err, partial=0):
        if nth < 1:
            raise ValueError("nth counts from 1")
        with self.lock:
            self.planned[(call, self.counts[call] + nth)] = (err, partial)

    def fail_write(self, nth=1, err=errno_mod.ENOSPC, partial=0):
        self._plan("write", nth, err, partial)

    def fail_fsync(self, nth=1, err=errno_mod.EIO):
        self._plan("fsync", nth, err)

    def fail_truncate(self, nth=1, err=errno_mod.EIO):
        self._plan("ftruncate", nth, err)

    def _next(self, call):
        with self.lock:
            self.counts[call] += 1
            fault = self.planned.pop((call, self.counts[call]), None)
            if fault is not None:
                self.injected.append((call, errno_mod.errorcode.get(fault[0], fault[0])))
            return fault

    def _raise(self, err, call):
        raise OSError(err, f"{os.strerror(err)} (injected into {call})")

    def write(self, fd, data) -> int:
        fault = self._next("write")
        if fault is not None:
            err, partial = fault
            if partial:
                super().write(fd, bytes(data[:partial]))
                with self.lock:
                    if self.space is not None:
                        self.space = max(0, self.space - partial)
            self._raise(err, "write")
        with self.lock:
            room = self.space
        if room is not None:
            if room <= 0:
                with self.lock:
                    self.injected.append(("write", "ENOSPC"))
                self._raise(errno_mod.ENOSPC, "write")
            data = bytes(data[:room])
        n = super().write(fd, data)
        with self.lock:
            if self.space is not None:
                self.space -= n
        return n

    def fsync(self, fd):
        fault = self._next("fsync")
        if fault is not None:
            self._raise(fault[0], "fsync")
        super().fsync(fd)

    def ftruncate(self, fd, size):
        fault = self._next("ftruncate")
        if fault is not None:
            self._raise(fault[0], "ftruncate")
        before = os.fstat(fd).st_size
        super().ftruncate(fd, size)
        with self.lock:
            if self.space is not None and before > size:
                self.space += before - size


def frame(payload: dict) -> bytes:
    """One journal line: ``<crc32 of the JSON, 8 hex digits> <JSON>\\n``."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return b"%08x %s\n" % (zlib.crc32(body), body)


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- the journal ------------------------------------------------------------------------------

class Journal:
    """Makes every committed transaction of a world durable before it becomes visible.

    A commit hook of the world's transaction manager (``store.Transactions.hooks``, run for
    every transaction: ``always_hook``): with the databases of the transaction still
    locked, the rows it changed and the world's layout, when that changed, are written as
    one line and fsync'd. The layout of a pool is taken from the runtime only when the
    transaction holds that pool's lock (another pool's hosts may be half-way through a
    transaction of their own); a transaction holding no lock whose layout differs (a change
    made outside any database lock) takes every pool's lock first. A failed write cuts the
    journal back to its last good offset and raises XAPI's error, so the transaction rolls
    back and the call answers that error. Lock order: database locks, then ``self.lock``.
    It must stay the last commit hook: a hook after it that raised would roll back a
    transaction already journaled.
    """

    default_ops: FileOps | None = None     # tests install a FaultyOps for a whole process

    def __init__(self, world, state_dir, seq=0, ops=None):
        self.world = world
        self.dir = state_dir
        self.path = os.path.join(state_dir, JOURNAL)
        self.next_path = os.path.join(state_dir, JOURNAL_NEXT)
        self.snapshot_path = os.path.join(state_dir, STATE)
        self.ops = ops or Journal.default_ops or FileOps()
        self.lock = threading.Lock()
        self.seq = seq               # sequence number of the last durable line
        self.fd = None
        self.active = None           # the file lines are appended to
        self.good_offset = 0         # end of its last durable line
        self.dirty = False           # bytes of a failed write may lie past good_offset
        self.lines = 0
        self.failures = 0            # writes refused so far (each failed its call)
        self.last_layout = None      # the layout as the journal has it
        self._last_norm = None
        self._pool_dbs: dict = {}    # pool ref -> Database, for pools in last_layout
        self._fp = None              # _fingerprint when last_layout was last confirmed
        self.attached = False
        self._compacting = False
        self._compact_at = None      # None: COMPACT_BYTES; later after a failed compaction
        # one snapshot at a time: two would race on state.json.tmp and journal.next.jsonl,
        # and an older snapshot renamed over a newer one would lose the lines in between
        self.snapshot_lock = threading.Lock()

    # -- recording -----------------------------------------------------------------------
    def attach_all(self):
        """Start journaling every commit of the world (idempotent)."""
        if not self.attached:
            self.attached = True
            self.world.txm.always_hook = True
            self.world.txm.hooks.append(self.on_commit)

    def _all_dbs(self):
        with self.world.lock:
            return [p.db for p in self.world.pools]

    def _lock_all(self, txn):
        """Take every pool's lock, in order, until no pool appeared meanwhile."""
        while True:
            missing = [db for db in self._all_dbs() if not txn.holds(db)]
            if not missing:
                return
            txn.lock(*missing)

    def on_commit(self, txn):
        """The commit hook: one line for the transaction, written before it is published."""
        if self.fd is None:
            return
        held = set(txn.states)
        if not held:
            if self._fp is not None and _fingerprint(self.world) == self._fp:
                return          # a call that changed nothing kept: the common read
            self._lock_all(txn)
            held = set(txn.states)
        pools = self._rows(txn)
        if not pools and self._fp is not None and _fingerprint(self.world) == self._fp:
            return              # only sessions or tasks changed
        with self.lock:
            lay, whole = self._merged_layout(held)
            norm = _norm(lay)
            if pools or norm != self._last_norm:
                self._append({"layout": lay if norm != self._last_norm else None,
                              "pools": pools}, txn)
                self._set_model(lay, norm)
            # the journaled layout is the whole runtime's: later reads may skip the hook
            self._fp = _fingerprint(self.world) if whole else None

    def _rows(self, txn) -> dict:
        with self.world.lock:
            pool_of = {p.db: p for p in self.world.pools}
        out = {}
        for db, touches in txn.changes().items():
            p = pool_of.get(db)
            if p is None:
                continue   # a database dropped by pool.join: its rows moved or died
            keys = dict.fromkeys((cls, ref) for cls, ref, _op in touches
                                 if cls not in NOT_PERSISTED)
            if not keys:
                continue
            rows = []
            for cls, ref in keys:
                row = db.tables.get(cls, {}).get(ref)
                rows.append(["del", cls, ref] if row is None else ["put", cls, ref, enc(row)])
            out[p.ref] = {"release": db.schema.release, "rows": rows}
        return out

    def _merged_layout(self, held) -> tuple[dict, bool]:
        """The layout to journal: fresh for the pools ``held`` (and their hosts), as last
        journaled for the others; and whether that is the whole runtime's layout. Called
        with ``self.lock``."""
        fresh = layout(self.world)
        old = self.last_layout
        with self.world.lock:
            live = {p.ref: p.db for p in self.world.pools}
        held_refs = {ref for ref, db in {**self._pool_dbs, **live}.items() if db in held}
        if old is None or (set(live) | set(self._pool_dbs)) <= held_refs:
            return fresh, True
        old_p = {p["ref"]: p for p in old["pools"]}
        fresh_p = {p["ref"]: p for p in fresh["pools"]}
        pools = [p if ref in held_refs else old_p[ref]
                 for ref, p in fresh_p.items() if ref in held_refs or ref in old_p]
        pools += [p for ref, p in old_p.items() if ref not in fresh_p and ref not in held_refs]
        old_h = {h["ref"]: h for h in old["hosts"]}
        fresh_h = {h["ref"]: h for h in fresh["hosts"]}
        hosts = []
        for ref, h in fresh_h.items():
            before = old_h.get(ref)
            if h["pool"] in held_refs or (before is not None and before["pool"] in held_refs):
                hosts.append(h)
            elif before is not None:
                hosts.append(before)
        hosts += [h for ref, h in old_h.items() if ref not in fresh_h and
                  h["pool"] not in held_refs]
        merged = {**fresh, "pools": pools, "hosts": hosts}
        return merged, _norm(merged) == _norm(fresh)

    def _set_model(self, lay, norm):
        self.last_layout, self._last_norm = lay, norm
        with self.world.lock:
            live = {p.ref: p.db for p in self.world.pools}
        keep = {p["ref"] for p in lay["pools"]}
        self._pool_dbs = {ref: db for ref, db in {**self._pool_dbs, **live}.items()
                          if ref in keep}

    def _append(self, payload, txn=None):
        """Write and fsync one line (``self.lock`` held). On failure: cut back, log, and
        raise XAPI's INTERNAL_ERROR so the transaction rolls back."""
        if self.fd is None:
            return
        try:
            if self.dirty:
                self._cut_back(strict=True)
            seq = self.seq + 1
            data = frame({"seq": seq, **payload})
            fn = "write"
            try:
                view = memoryview(data)
                done = 0
                while done < len(data):
                    n = self.ops.write(self.fd, view[done:])
                    if not n or n < 0:
                        raise OSError(errno_mod.EIO, "write returned 0")
                    done += n
                fn = "fsync"
                self.ops.fsync(self.fd)
            except OSError as e:
                self.dirty = True
                self._cut_back(strict=False)
                raise JournalWriteError(e, fn) from e
        except JournalWriteError as e:
            self.failures += 1
            log.error("state journal %s: %s failed (%s); the transaction is rolled back "
                      "and its call fails", self.active, e.fn, e.strerror, exc_info=True)
            raise e.failure() from e
        self.seq = seq
        self.good_offset += len(data)
        self.lines += 1
        if txn is not None and self.good_offset > self._threshold() and not self._compacting:
            self._compacting = True
            # after the transaction ends and its locks are released
            txn.after.append(self.compact)

    def _cut_back(self, strict):
        """Truncate the journal to the end of its last good line (``self.lock`` held). If
        that fails the journal stays dirty and every later write tries again first."""
        fn = "ftruncate"
        try:
            self.ops.ftruncate(self.fd, self.good_offset)
            fn = "fsync"
            self.ops.fsync(self.fd)
        except OSError as e:
            log.error("state journal %s: could not cut it back to its last good line "
                      "(%d bytes): %s; changes are refused until it can be", self.active,
                      self.good_offset, e, exc_info=True)
            if strict:
                raise JournalWriteError(e, fn) from e
            return False
        self.dirty = False
        return True

    def layout_pending(self) -> bool:
        """Does the runtime differ from the journaled layout? (cheap, no lock)"""
        return self.fd is not None and _fingerprint(self.world) != self._fp

    def sync_layout(self):
        """Journal a layout change made outside any transaction's locks: an empty
        transaction holding every pool's lock, whose commit hook writes it."""
        with self.world.txm.transaction() as txn:
            self._lock_all(txn)

    def sync(self):
        self.sync_layout()

    # -- snapshots -----------------------------------------------------------------------
    def _copy(self, txn) -> dict:
        """The world as a state.json document (every pool locked by ``txn``); the journal's
        layout becomes the copied one."""
        world = self.world
        with world.lock:
            pools_rt = list(world.pools)
        pools = {p.ref: {"release": p.db.schema.release,
                         "tables": {cls: {ref: enc(row) for ref, row in t.items()}
                                    for cls, t in p.db.tables.items()
                                    if cls not in NOT_PERSISTED and t}}
                 for p in pools_rt}
        lay = layout(world)
        with self.lock:
            self._set_model(lay, _norm(lay))
            self._fp = _fingerprint(world)
            seq = self.seq
        return {"format": FORMAT, "version": VERSION, "seq": seq, "layout": lay,
                "pools": pools}

    def _write_state(self, snap):
        tmp = self.snapshot_path + ".tmp"
        data = json.dumps(snap, separators=(",", ":")).encode()
        fd = self.ops.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            try:
                view = memoryview(data)
                done = 0
                while done < len(data):
                    n = self.ops.write(fd, view[done:])
                    if not n or n < 0:
                        raise OSError(errno_mod.EIO, "write returned 0")
                    done += n
                self.ops.fsync(fd)
            finally:
                self.ops.close(fd)
            os.replace(tmp, self.snapshot_path)
            _fsync_dir(self.dir)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def start(self, superseded=None):
        with self.snapshot_lock:
            self._start(superseded)

    def _start(self, superseded=None):
        """The first snapshot of a run (before the listeners start): state.json at the
        current sequence number, naming the journal files it supersedes (by size and
        SHA-256: a version 1 journal has no sequence numbers), then an empty journal.
        A crash at any point leaves a directory that loads the same world."""
        with self.world.txm.transaction() as txn:
            self._lock_all(txn)
            snap = self._copy(txn)
        snap["supersedes"] = dict(superseded or {})
        self._write_state(snap)
        fd = self.ops.open(self.path, _APPEND | os.O_TRUNC, 0o644)
        try:
            self.ops.fsync(fd)
            if os.path.exists(self.next_path):
                os.unlink(self.next_path)
            _fsync_dir(self.dir)
        except BaseException:
            self.ops.close(fd)
            raise
        with self.lock:
            self.fd, self.active, self.good_offset, self.dirty = fd, self.path, 0, False
            self.lines = 0

    def write_snapshot(self):
        """A snapshot now (the first one of a run if the journal has not started: ``start``)."""
        with self.snapshot_lock:
            if self.fd is None:
                self._start()
            else:
                self._write_snapshot()

    def _write_snapshot(self):
        """Compaction: write the world to state.json and start an empty journal.

        The world is copied with every pool locked (memory only) and new lines go to
        ``journal.next.jsonl`` from then on; the snapshot is written after the locks are
        released, then the next journal replaces the old one. Lines at or below the
        snapshot's ``seq`` are skipped at load, so every crash point loads the same world.
        If the snapshot cannot be written the journal goes on in ``journal.next.jsonl`` and
        the next attempt renames it into place once a snapshot is written."""
        old = None
        with self.world.txm.transaction() as txn:
            self._lock_all(txn)
            snap = self._copy(txn)
            with self.lock:
                if self.fd is None:
                    return
                if self.dirty:
                    self._cut_back(strict=True)
                if self.active == self.path:
                    fd = self.ops.open(self.next_path, _APPEND | os.O_TRUNC, 0o644)
                    try:
                        _fsync_dir(self.dir)     # the new file survives a power cut
                    except BaseException:
                        self.ops.close(fd)
                        raise
                    old, self.fd, self.active, self.good_offset = self.fd, fd, \
                        self.next_path, 0
        if old is not None:
            self.ops.close(old)
        self._write_state(snap)
        with self.lock:
            if self.fd is not None and self.active == self.next_path:
                os.replace(self.next_path, self.path)
                self.active = self.path
                _fsync_dir(self.dir)

    def _threshold(self):
        return COMPACT_BYTES if self._compact_at is None else self._compact_at

    def compact(self):
        """Compaction, run after the commit that took the journal past the threshold: a
        snapshot if the journal is still that big and no other snapshot is under way. A
        failure is logged and changes nothing (the journal goes on); it is tried again once
        the journal has grown by another quarter of the threshold."""
        if not self.snapshot_lock.acquire(blocking=False):
            self._compacting = False
            return
        try:
            with self.lock:
                big = self.fd is not None and self.good_offset > self._threshold()
            if big:
                self._write_snapshot()
                self._compact_at = None
        except Exception:  # noqa: BLE001 -- a failed compaction loses nothing: say so, go on
            log.exception("state journal: compaction failed; the journal goes on growing "
                          "and compaction is tried again later")
            self._compact_at = self.good_offset + COMPACT_BYTES // 4
        finally:
            self._compacting = False
            self.snapshot_lock.release()

    def close(self):
        with self.lock:
            if self.fd is not None:
                try:
                    self.ops.close(self.fd)
                except OSError:
                    log.exception("state journal: close failed")
                self.fd = None


class DurableDispatcher:
    """Wraps a Dispatcher: a layout change a call made outside every database lock is
    journaled before its reply (everything else is journaled at commit)."""

    def __init__(self, dispatcher, journal):
        self.inner = dispatcher
        self.journal = journal
        self.world = dispatcher.world

    def dispatch(self, host, method, params):
        try:
            return self.inner.dispatch(host, method, params)
        finally:
            if self.journal.layout_pending():
                self.journal.sync_layout()

    def __getattr__(self, name):
        return getattr(self.inner, name)


# -- checking what is on disk ---------------------------------------------------------------

class StateError(ValueError):
    """The state directory cannot be used; the text is one line for the user."""


class JournalDamage(StateError):
    """A journal line that is not a torn tail: ``repair`` cuts the journal there."""

    def __init__(self, state_dir, name, line, offset, reason, valid_after):
        self.state_dir, self.name, self.line, self.offset = state_dir, name, line, offset
        self.reason, self.valid_after = reason, valid_after
        path = os.path.join(state_dir, name)
        follow = (f"{valid_after} valid line{'s' if valid_after != 1 else ''} follow it"
                  if valid_after else "no valid line follows it")
        super().__init__(
            f"{path} line {line}: {reason} ({follow}); refusing to start, nothing was "
            f"changed. 'xapi-sim repair --state-dir {state_dir}' keeps a backup and cuts the "
            f"journal at line {line}")


class _Bad(Exception):
    """A shape error, with where it is."""


def _want(cond, msg):
    if not cond:
        raise _Bad(msg)


def _short(v, n=60):
    r = repr(v)
    return r if len(r) <= n else r[:n - 3] + "..."


def _is_int(v):
    return type(v) is int


def _served_releases():
    return {p.release for p in products.PRODUCTS.values()}


def _check_hw(d, where):
    _want(isinstance(d, dict), f"{where}: expected an object, got {_short(d)}")
    for k in ("cpu", "hidden_features", "sockets", "cpus_per_socket", "memory", "mask",
              "overrides"):
        _want(k in d, f"{where}: no {k!r}")
    _want(isinstance(d["cpu"], str), f"{where}.cpu: expected a string")
    try:
        cpus.model(d["cpu"])
    except ValueError as e:
        raise _Bad(f"{where}.cpu: {e}") from None
    _want(isinstance(d["hidden_features"], list) and
          all(isinstance(x, str) for x in d["hidden_features"]),
          f"{where}.hidden_features: expected a list of strings")
    for k in ("sockets", "cpus_per_socket", "memory"):
        _want(_is_int(d[k]) and d[k] > 0, f"{where}.{k}: expected a positive integer, "
              f"got {_short(d[k])}")
    _want(d["mask"] is None or isinstance(d["mask"], list), f"{where}.mask: expected a list "
          "or null")
    _want(isinstance(d["overrides"], dict) and
          all(isinstance(v, str) for v in d["overrides"].values()),
          f"{where}.overrides: expected an object of strings")
    nics = d.get("nics", DEFAULT_NICS)
    _want(_is_int(nics) and 1 <= nics <= MAX_NICS, f"{where}.nics: expected an integer from 1 "
          f"to {MAX_NICS}, got {_short(nics)}")


def _check_layout(lay, where="layout"):
    _want(isinstance(lay, dict), f"{where}: expected an object, got {_short(lay)}")
    for k in ("user", "password", "seed", "pools", "hosts"):
        _want(k in lay, f"{where}: no {k!r}")
    _want(isinstance(lay["user"], str), f"{where}.user: expected a string")
    _want(isinstance(lay["password"], str), f"{where}.password: expected a string")
    _want(lay["seed"] is None or _is_int(lay["seed"]), f"{where}.seed: expected an integer "
          "or null")
    _want(isinstance(lay["pools"], list), f"{where}.pools: expected a list")
    _want(isinstance(lay["hosts"], list), f"{where}.hosts: expected a list")
    releases = _served_releases()
    prefs = {}
    for i, p in enumerate(lay["pools"]):
        w = f"{where}.pools[{i}]"
        _want(isinstance(p, dict), f"{w}: expected an object")
        for k in ("ref", "master", "release"):
            _want(isinstance(p.get(k), str), f"{w}.{k}: expected a string, got "
                  f"{_short(p.get(k))}")
        _want(p["release"] in releases, f"{w}.release: {p['release']!r} is not a release "
              f"xapi-sim serves ({', '.join(sorted(releases))})")
        _want(isinstance(p.get("password", ""), str), f"{w}.password: expected a string")
        _want(p["ref"] not in prefs, f"{w}: pool {p['ref']} appears twice")
        prefs[p["ref"]] = p
    hrefs = {}
    for i, h in enumerate(lay["hosts"]):
        w = f"{where}.hosts[{i}]"
        _want(isinstance(h, dict), f"{w}: expected an object")
        for k in ("ref", "uuid", "name_label", "version", "address"):
            _want(isinstance(h.get(k), str), f"{w}.{k}: expected a string, got "
                  f"{_short(h.get(k))}")
        _want(h["version"] in products.PRODUCTS, f"{w}.version: unknown product version "
              f"{h['version']!r}")
        _want(h.get("build_number") is None or isinstance(h["build_number"], str),
              f"{w}.build_number: expected a string")
        for k in ("hw", "next_hw", "pool", "state", "port", "started_once",
                  "disabled_until_reboot"):
            _want(k in h, f"{w}: no {k!r}")
        _check_hw(h["hw"], f"{w}.hw")
        if h["next_hw"] is not None:
            _check_hw(h["next_hw"], f"{w}.next_hw")
        _want(h["pool"] is None or h["pool"] in prefs, f"{w}.pool: {_short(h['pool'])} is "
              "not a pool of the layout")
        _want(h["state"] in HOST_STATES, f"{w}.state: expected one of "
              f"{', '.join(HOST_STATES)}, got {_short(h['state'])}")
        _want(_is_int(h["port"]) and 0 <= h["port"] <= 65535, f"{w}.port: expected a port "
              f"number, got {_short(h['port'])}")
        for k in ("started_once", "disabled_until_reboot"):
            _want(type(h[k]) is bool, f"{w}.{k}: expected true or false")
        _want(h["ref"] not in hrefs, f"{w}: host {h['ref']} appears twice")
        hrefs[h["ref"]] = h
    for ref, p in prefs.items():
        m = hrefs.get(p["master"])
        _want(m is not None and m["pool"] == ref, f"{where}: the master {p['master']} of "
              f"pool {ref} is not a host of that pool")


_TYPE_CHECKS: dict = {}


def _field_types(release, cls):
    key = (release, cls)
    t = _TYPE_CHECKS.get(key)
    if t is None:
        c = Schema.for_release(release).classes.get(cls)
        t = _TYPE_CHECKS[key] = {} if c is None else {n: f.type for n, f in c.fields.items()}
    return t


def _type_text(ty):
    k = ty.kind
    if k in ("ref", "record"):
        return f"{ty.name} {k}"
    if k == "enum":
        return f"enum {ty.name}"
    if k == "set":
        return f"{_type_text(ty.elem)} set"
    if k == "map":
        return f"({_type_text(ty.key)} -> {_type_text(ty.elem)}) map"
    return k


def _value_ok(ty, v) -> bool:
    k = ty.kind
    if k in ("string", "ref", "enum", "datetime"):
        return isinstance(v, str)
    if k == "int":
        return type(v) is int
    if k == "float":
        return type(v) in (int, float)
    if k == "bool":
        return type(v) is bool
    if k == "set":
        return isinstance(v, list) and all(_value_ok(ty.elem, x) for x in v)
    if k == "map":
        return isinstance(v, dict) and all(_value_ok(ty.key, a) and _value_ok(ty.elem, b)
                                           for a, b in v.items())
    return True


def _check_row(release, cls, ref, row, where):
    """Types of the fields a row has (unknown fields are ignored at load, missing ones take
    their defaults)."""
    _want(isinstance(row, dict), f"{where}: row {cls} {ref} is not an object")
    types = _field_types(release, cls)
    for name, v in row.items():
        ty = types.get(name)
        if ty is not None and not _value_ok(ty, v):
            raise _Bad(f"{where}: {cls} {ref} field {name}: expected {_type_text(ty)}, got "
                       f"{_short(v)}")


def _check_snapshot(snap, version):
    _want(isinstance(snap.get("layout"), dict), "no 'layout' object")
    _check_layout(snap["layout"])
    if version >= 2:
        _want(_is_int(snap.get("seq")) and snap["seq"] >= 0, "'seq': expected an integer >= 0")
        sup = snap.get("supersedes", {})
        _want(isinstance(sup, dict) and all(
            isinstance(v, dict) and _is_int(v.get("size")) and isinstance(v.get("sha256"), str)
            for v in sup.values()), "'supersedes': expected {file: {size, sha256}}")
    pools = snap.get("pools")
    _want(isinstance(pools, dict), "no 'pools' object")
    releases = _served_releases()
    out = {}
    for pref, p in pools.items():
        w = f"pools[{pref}]"
        _want(isinstance(p, dict), f"{w}: expected an object")
        _want(p.get("release") in releases, f"{w}.release: expected one of "
              f"{', '.join(sorted(releases))}, got {_short(p.get('release'))}")
        tables = p.get("tables")
        _want(isinstance(tables, dict), f"{w}.tables: expected an object")
        decoded = {}
        for cls, t in tables.items():
            _want(isinstance(t, dict), f"{w}.tables.{cls}: expected an object")
            rows = {}
            for ref, row in t.items():
                row = dec(row)
                _check_row(p["release"], cls, ref, row, w)
                rows[ref] = row
            decoded[cls] = rows
        out[pref] = (p["release"], decoded)
    return out


def _check_entry(payload, version):
    """A journal line's JSON: returns (seq or None, layout or None, pools)."""
    _want(isinstance(payload, dict), f"wrong shape: expected an object, got {_short(payload)}")
    seq = None
    if version >= 2:
        seq = payload.get("seq")
        _want(_is_int(seq) and seq >= 1, f"wrong shape: 'seq' is {_short(seq)}")
    _want("layout" in payload and "pools" in payload, "wrong shape: a journal line has "
          "'layout' and 'pools'")
    lay = payload["layout"]
    if lay is not None:
        try:
            _check_layout(lay)
        except _Bad as e:
            raise _Bad(f"wrong shape: {e}") from None
    pools = payload["pools"]
    _want(isinstance(pools, dict), "wrong shape: 'pools' is not an object")
    releases = _served_releases()
    out = {}
    for pref, entry in pools.items():
        w = f"pools[{pref}]"
        _want(isinstance(entry, dict) and entry.get("release") in releases and
              isinstance(entry.get("rows"), list),
              f"wrong shape: {w}: expected {{release, rows}}, got {_short(entry)}")
        items = []
        for i, item in enumerate(entry["rows"]):
            ok = isinstance(item, list) and len(item) >= 3 and \
                isinstance(item[1], str) and isinstance(item[2], str) and (
                    (item[0] == "put" and len(item) == 4) or (item[0] == "del" and
                                                              len(item) == 3))
            _want(ok, f"wrong shape: {w}.rows[{i}]: expected [\"put\", table, ref, row] or "
                  f"[\"del\", table, ref], got {_short(item)}")
            if item[0] == "put":
                row = dec(item[3])
                try:
                    _check_row(entry["release"], item[1], item[2], row, f"{w}.rows[{i}]")
                except _Bad as e:
                    raise _Bad(f"wrong shape: {e}") from None
                items.append(("put", item[1], item[2], row))
            else:
                items.append(("del", item[1], item[2], None))
        out[pref] = (entry["release"], items)
    return seq, lay, out


_CRC = re.compile(rb"[0-9a-f]{8}")


def _parse_line(raw, version):
    """The JSON of one complete journal line, or _Bad."""
    if version >= 2:
        if raw.startswith(b"{"):
            raise _Bad("a line without checksum (format version 1) in a version 2 journal")
        _want(len(raw) > 9 and _CRC.fullmatch(raw[:8]) is not None and raw[8:9] == b" ",
              "damaged: not a journal line (no checksum)")
        body = raw[9:]
        _want(zlib.crc32(body) == int(raw[:8], 16), "damaged: checksum mismatch")
    else:
        _want(raw.startswith(b"{"), "damaged: not a JSON line of a version 1 journal")
        body = raw
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise _Bad(f"damaged: not JSON ({e})") from None


def _frames_ok(raw, version):
    try:
        _parse_line(raw, version)
        return True
    except _Bad:
        return False


class Scan:
    """What a state directory holds, checked: the rows and layout after replay."""

    def __init__(self):
        self.version = VERSION
        self.seq = 0
        self.layout = None
        self.pools: dict = {}      # pool ref -> (release, {table: {ref: row}})
        self.replayed = 0          # journal lines applied
        self.skipped = 0           # lines already in the snapshot
        self.total_lines = 0
        self.torn: list = []       # (file, offset, bytes) of incomplete last lines
        self.files: dict = {}      # journal file -> {"size", "sha256"}
        self.superseded: list = []


def _read(path):
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as e:
        raise StateError(f"{path}: cannot read it: {e.strerror}") from None


def scan(state_dir) -> Scan:
    """Check and replay a state directory without changing anything. Raises StateError
    (JournalDamage for a journal line ``repair`` can cut at)."""
    s = Scan()
    spath = os.path.join(state_dir, STATE)
    raw = _read(spath)
    try:
        snap = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise StateError(f"{spath}: damaged: not valid JSON ({e})") from None
    if not isinstance(snap, dict) or snap.get("format") != FORMAT:
        raise StateError(f"{spath}: not an xapi-sim state file")
    version = snap.get("version")
    if version not in READABLE_VERSIONS:
        raise StateError(f"{spath}: state format version {_short(version)} is not supported "
                         f"(this xapi-sim reads versions "
                         f"{', '.join(map(str, READABLE_VERSIONS))})")
    s.version = version
    try:
        s.pools = _check_snapshot(snap, version)
    except _Bad as e:
        raise StateError(f"{spath}: malformed: {e}") from None
    s.layout = snap["layout"]
    cur = snap.get("seq", 0)
    supersedes = snap.get("supersedes", {})
    datas = []
    for name in JOURNALS:
        path = os.path.join(state_dir, name)
        if not os.path.exists(path):
            continue
        data = _read(path)
        info = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        s.files[name] = info
        if supersedes.get(name) == info:
            s.superseded.append(name)
            continue
        datas.append((name, data))
    last = max((i for i, (_, d) in enumerate(datas) if d), default=-1)
    for i, (name, data) in enumerate(datas):
        lines = data.split(b"\n")
        tail = lines.pop()
        s.total_lines += len(lines)
        offset = 0
        prev = None

        def damage(n, off, reason, rest=(), i=i, name=name):
            after = sum(1 for r in rest if _frames_ok(r, version))
            for _, d in datas[i + 1:]:
                after += sum(1 for r in d.split(b"\n")[:-1] if _frames_ok(r, version))
            raise JournalDamage(state_dir, name, n, off, reason, after)

        for n, line in enumerate(lines, 1):
            try:
                seq, lay, pools = _check_entry(_parse_line(line, version), version)
            except _Bad as e:
                damage(n, offset, str(e), lines[n:])
            if version >= 2:
                if prev is not None and seq != prev + 1:
                    damage(n, offset, f"sequence number {seq} after {prev}", lines[n:])
                if seq > cur + 1:
                    damage(n, offset, f"sequence number {seq} where {cur + 1} was expected "
                           f"({seq - cur - 1} line(s) missing)", lines[n:])
                prev = seq
                if seq <= cur:
                    s.skipped += 1
                    offset += len(line) + 1
                    continue
                cur = seq
            if lay is not None:
                s.layout = lay
            for pref, (release, items) in pools.items():
                _, tables = s.pools.get(pref, (release, {}))
                s.pools[pref] = (release, tables)
                for op, cls, ref, row in items:
                    if op == "del":
                        tables.get(cls, {}).pop(ref, None)
                    else:
                        tables.setdefault(cls, {})[ref] = row
            s.replayed += 1
            offset += len(line) + 1
        if tail:
            if i != last:
                damage(len(lines) + 1, offset, "an incomplete line with more journal "
                       "after it")
            s.torn.append((name, offset, len(tail)))
    s.seq = cur
    try:
        _check_world(s.layout, s.pools)
    except _Bad as e:
        raise StateError(f"{state_dir}: the kept world (state.json and its journal) is "
                         f"inconsistent: {e}") from None
    return s


def _check_world(lay, pools):
    """What the rebuilt world needs: each pool's database with its pool row and the rows of
    its hosts, at the release the layout names."""
    for p in lay["pools"]:
        entry = pools.get(p["ref"])
        _want(entry is not None, f"pool {p['ref']} has no database")
        release, tables = entry
        _want(release == p["release"], f"pool {p['ref']} is {p['release']} in the layout and "
              f"{release} in its database")
        _want(p["ref"] in tables.get("pool", {}), f"pool {p['ref']} has no pool row")
    for h in lay["hosts"]:
        if h["pool"] is not None:
            _want(h["ref"] in pools[h["pool"]][1].get("host", {}),
                  f"host {h['name_label']} ({h['ref']}) has no host row in its pool")


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
            raise StateError(f"{state_dir}: cannot create the state dir: {e.strerror}") \
                from None
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
            what = "read-only" if e.errno in (errno_mod.EROFS, errno_mod.EACCES,
                                              errno_mod.EPERM) else "not writable"
            raise StateError(f"{state_dir}: the state dir is {what} ({e.strerror}); serve "
                             "writes its journal there") from None


def _orphan_journal(state_dir):
    return [n for n in JOURNALS if os.path.lexists(os.path.join(state_dir, n))]


def _require_state(state_dir):
    if exists(state_dir):
        return
    orphans = _orphan_journal(state_dir)
    if orphans:
        raise StateError(f"{state_dir}: {orphans[0]} is there but {STATE} is missing; "
                         f"refusing to start a new world over a kept journal (restore {STATE}, "
                         "or move the directory away to start afresh)")
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
        raise StateError(f"{state_dir}: the kept world cannot be rebuilt: "
                         f"{type(e).__name__}: {text}") from None
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
        notes = [f"resuming the world kept in {state_dir} ({s.replayed} journal entries "
                 f"replayed)"]
        for name, _off, n in s.torn:
            notes.append(f"dropped an incomplete last line of {name} ({n} bytes, never "
                         "acknowledged)")
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
    for _ in range(2 * len(JOURNALS) + 2):    # each round cuts at least one line
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
                cuts += [(n, 0) for n in JOURNALS[JOURNALS.index(d.name) + 1:]]
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
        return (f"{state_dir}: nothing to repair ({STATE} and {s.replayed + s.skipped} "
                "journal line(s) are sound)")
    _fsync_dir(state_dir)
    what = []
    if first is not None:
        what.append(f"dropped {dropped} of {total} journal line(s), from {first.name} line "
                    f"{first.line} on ({first.reason})")
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
