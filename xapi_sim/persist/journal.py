"""The journal: a commit hook that makes every committed transaction durable before it is
published, snapshots and compaction, and the dispatcher wrapper for layout changes."""

from __future__ import annotations

import errno as errno_mod
import json
import logging
import os
import threading

from ..rowcodec import dec, enc  # noqa: F401 -- also used by importers of persist

log = logging.getLogger(__name__)

COMPACT_BYTES = 64 << 20
_APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)

from .fileops import FileOps, JournalWriteError, _fsync_dir, frame  # noqa: E402
from .layout import _fingerprint, _norm, layout  # noqa: E402
from .statefile import FORMAT, JOURNAL, JOURNAL_NEXT, NOT_PERSISTED, STATE, VERSION  # noqa: E402

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

    default_ops: FileOps | None = None  # tests install a FaultyOps for a whole process

    def __init__(self, world, state_dir, seq=0, ops=None):
        self.world = world
        self.dir = state_dir
        self.path = os.path.join(state_dir, JOURNAL)
        self.next_path = os.path.join(state_dir, JOURNAL_NEXT)
        self.snapshot_path = os.path.join(state_dir, STATE)
        self.ops = ops or Journal.default_ops or FileOps()
        self.lock = threading.Lock()
        self.seq = seq  # sequence number of the last durable line
        self.fd = None
        self.active = None  # the file lines are appended to
        self.good_offset = 0  # end of its last durable line
        self.dirty = False  # bytes of a failed write may lie past good_offset
        self.lines = 0
        self.failures = 0  # writes refused so far (each failed its call)
        self.last_layout = None  # the layout as the journal has it
        self._last_norm = None
        self._pool_dbs: dict = {}  # pool ref -> Database, for pools in last_layout
        self._fp = None  # _fingerprint when last_layout was last confirmed
        self.attached = False
        self._compacting = False
        self._compact_at = None  # None: COMPACT_BYTES; later after a failed compaction
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
                return  # a call that changed nothing kept: the common read
            self._lock_all(txn)
            held = set(txn.states)
        pools = self._rows(txn)
        if not pools and self._fp is not None and _fingerprint(self.world) == self._fp:
            return  # only sessions or tasks changed
        with self.lock:
            lay, whole = self._merged_layout(held)
            norm = _norm(lay)
            if pools or norm != self._last_norm:
                self._append(
                    {"layout": lay if norm != self._last_norm else None, "pools": pools}, txn
                )
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
                continue  # a database dropped by pool.join: its rows moved or died
            keys = dict.fromkeys(
                (cls, ref) for cls, ref, _op in touches if cls not in NOT_PERSISTED
            )
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
        pools = [
            p if ref in held_refs else old_p[ref]
            for ref, p in fresh_p.items()
            if ref in held_refs or ref in old_p
        ]
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
        hosts += [
            h for ref, h in old_h.items() if ref not in fresh_h and h["pool"] not in held_refs
        ]
        merged = {**fresh, "pools": pools, "hosts": hosts}
        return merged, _norm(merged) == _norm(fresh)

    def _set_model(self, lay, norm):
        self.last_layout, self._last_norm = lay, norm
        with self.world.lock:
            live = {p.ref: p.db for p in self.world.pools}
        keep = {p["ref"] for p in lay["pools"]}
        self._pool_dbs = {ref: db for ref, db in {**self._pool_dbs, **live}.items() if ref in keep}

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
            log.error(
                "state journal %s: %s failed (%s); the transaction is rolled back "
                "and its call fails",
                self.active,
                e.fn,
                e.strerror,
                exc_info=True,
            )
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
            log.error(
                "state journal %s: could not cut it back to its last good line "
                "(%d bytes): %s; changes are refused until it can be",
                self.active,
                self.good_offset,
                e,
                exc_info=True,
            )
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
        pools = {
            p.ref: {
                "release": p.db.schema.release,
                "tables": {
                    cls: {ref: enc(row) for ref, row in t.items()}
                    for cls, t in p.db.tables.items()
                    if cls not in NOT_PERSISTED and t
                },
            }
            for p in pools_rt
        }
        lay = layout(world)
        with self.lock:
            self._set_model(lay, _norm(lay))
            self._fp = _fingerprint(world)
            seq = self.seq
        return {"format": FORMAT, "version": VERSION, "seq": seq, "layout": lay, "pools": pools}

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
                pass  # the temporary file never existed; the original error is re-raised
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
                        _fsync_dir(self.dir)  # the new file survives a power cut
                    except BaseException:
                        self.ops.close(fd)
                        raise
                    old, self.fd, self.active, self.good_offset = self.fd, fd, self.next_path, 0
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
            log.exception(
                "state journal: compaction failed; the journal goes on growing "
                "and compaction is tried again later"
            )
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

    def dispatch(self, host, method, params, **kw):
        try:
            return self.inner.dispatch(host, method, params, **kw)
        finally:
            if self.journal.layout_pending():
                self.journal.sync_layout()

    def __getattr__(self, name):
        return getattr(self.inner, name)
