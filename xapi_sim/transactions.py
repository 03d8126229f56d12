"""Transactions over pool databases: one per thread at a time, spanning every database it
touches, with ordered locks.

Transactions (xapi has none; the simulator needs them so a failed call changes nothing):
every write happens inside a :class:`Txn` owned by one thread. A transaction takes the lock
of each database it touches when it first touches it and keeps it until it ends, so its
writes are isolated from other writers. Rows are written in place, remembered for undo;
generations, change order, deletions and wake-ups are applied only at commit, so events and
the journal (a commit hook) see committed transactions only. Any exception rolls every
database of the transaction back, row for row. ``checkpoint()`` commits what a call has done
so far and releases its locks before a slow part (a wait, a simulated duration, network
I/O): nothing slow ever runs under a database lock.

Lock discipline: databases are ordered by creation. A transaction may block on a database
lock only when it holds no later database; otherwise it tries for ``ORDER_WAIT`` seconds and
raises :class:`LockOrderConflict`, which the dispatcher answers by rolling back and running
the call again with every database it needs locked in order up front. Deadlock is therefore
impossible between database locks; ``World.lock`` is a leaf lock (no database lock is ever
taken under it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .errors import NotQuick

if TYPE_CHECKING:  # annotations only: store.py imports this module
    from .store import Database

log = logging.getLogger(__name__)

Row = dict[str, Any]
Change = tuple[str, str, str]  # (class, ref, "add" | "mod" | "del")
ORDER_WAIT = 0.05  # seconds an out-of-order lock request may wait


class LockOrderConflict(Exception):
    """A transaction needed ``db`` while holding a later database and could not get it at
    once: roll back and run again with the locks taken in order (``Txn.prelock``)."""

    def __init__(self, db: Database, held: Iterable[Database] = ()):
        super().__init__(f"lock order conflict on database {db.order}")
        self.db = db
        self.held = set(held)


class _DbTxn:
    """What one transaction did to one database: undo data and the changes to publish."""

    __slots__ = ("before", "links", "touches", "dropped")

    def __init__(self) -> None:
        self.before: dict[tuple[str, str], Row | None] = {}
        # (class, ref, set field, member, position it was removed from, or -1 if appended)
        self.links: list[tuple[str, str, str, str, int]] = []
        self.touches: list[Change] = []
        # the in-place set lists a removed row owned ((class, ref, set field), (list, set)):
        # the remembered row shares them, so a rollback must undo its links through them
        self.dropped: list[tuple[tuple[str, str, str], Any]] = []


class Txn:
    """One thread's transaction over one or more databases."""

    def __init__(self, manager: Transactions):
        self.manager = manager
        self.states: dict[Database, _DbTxn] = {}
        self.depth = 0
        self.checkpoints = 0
        self.prelock: set[Database] = set()
        # on the HTTP front's loop thread: a lock that is taken is not waited for -- the
        # transaction ends with NotQuick (rolled back) and a worker runs the call again
        self.nowait = False
        self.on_rollback: list[Callable[[], None]] = []
        self.on_commit: list[Callable[[], None]] = []
        self.after: list[Callable[[], None]] = []

    # -- locking -------------------------------------------------------------------------
    def acquire(self, db: Database) -> _DbTxn:
        st = self.states.get(db)
        if st is not None:
            return st
        if self.nowait:
            if not db._mutex.acquire(blocking=False):
                raise NotQuick
            st = self.states[db] = _DbTxn()
            return st
        if self.prelock and not self.states:
            for d in sorted(self.prelock | {db}, key=lambda d: d.order):
                d._mutex.acquire()
                self.states[d] = _DbTxn()
            return self.states[db]
        if any(d.order > db.order for d in self.states):
            if not db._mutex.acquire(timeout=ORDER_WAIT):
                raise LockOrderConflict(db, self.states)
        else:
            db._mutex.acquire()
        st = self.states[db] = _DbTxn()
        return st

    def lock(self, *dbs: Database) -> None:
        """Take the locks of ``dbs`` in order now (a section that touches several pools)."""
        for db in sorted(set(dbs), key=lambda d: d.order):
            self.acquire(db)

    def holds(self, db: Database) -> bool:
        return db in self.states

    def changes(self) -> dict[Database, list[Change]]:
        return {db: st.touches for db, st in self.states.items() if st.touches}

    # -- ending --------------------------------------------------------------------------
    def commit(self) -> None:
        """Run the commit hooks (the journal), then publish: generations, change order,
        wake-ups. A hook that raises rolls the whole transaction back."""
        try:
            if any(st.touches for st in self.states.values()) or self.manager.always_hook:
                for hook in list(self.manager.hooks):
                    hook(self)
        except BaseException:
            self.rollback()
            raise
        published = [db for db, st in self.states.items() if st.touches]
        for db in published:
            db._publish(self.states[db])
        self.on_rollback.clear()
        self._release()
        done, self.on_commit = self.on_commit, []
        for db in published:
            done += db.after_publish
        for fn in done:
            try:
                fn()
            except Exception:  # noqa: BLE001 -- the commit stands; say what did not follow
                log.exception("action after commit failed")

    def rollback(self) -> None:
        for db, st in self.states.items():
            try:
                db._undo(st)
            except Exception:  # noqa: BLE001 -- keep undoing the others, and say so
                log.exception("rollback of database %s failed", db.order)
        for fn in reversed(self.on_rollback):
            try:
                fn()
            except Exception:  # noqa: BLE001
                log.exception("rollback action failed")
        self.on_rollback.clear()
        self.on_commit.clear()
        self._release()

    def _release(self) -> None:
        states, self.states = self.states, {}
        for db in states:
            db._mutex.release()


class Transactions:
    """The transaction manager shared by a world's databases: the current transaction of
    each thread and the commit hooks (the durable journal)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self.hooks: list[Callable[[Txn], None]] = []
        self.always_hook = False  # run hooks even for transactions with no row change

    def current(self) -> Txn | None:
        return getattr(self._local, "txn", None)

    @contextmanager
    def transaction(self) -> Iterator[Txn]:
        """Begin a transaction, or join the thread's current one. The outermost exit
        commits, or rolls back if an exception leaves it."""
        txn = self.current()
        if txn is None:
            txn = self._local.txn = Txn(self)
        txn.depth += 1
        try:
            yield txn
        except BaseException:
            txn.depth -= 1
            if txn.depth == 0:
                self._local.txn = None
                txn.rollback()
                self._run_after(txn)
            raise
        txn.depth -= 1
        if txn.depth == 0:
            self._local.txn = None
            try:
                txn.commit()
            finally:
                self._run_after(txn)

    @staticmethod
    def _run_after(txn: Txn) -> None:
        after, txn.after = txn.after, []
        for fn in after:
            fn()

    def checkpoint(self) -> None:
        """Commit what the current transaction has done and release its locks; it goes on
        (later writes take the locks again). Call before anything slow."""
        txn = self.current()
        if txn is not None and txn.states:
            txn.checkpoints += 1
            txn.commit()

    def on_commit(self, fn: Callable[[], None]) -> None:
        """Do something outside the database (sockets, threads) once the current transaction
        has committed and released its locks -- never if it rolls back. Outside a
        transaction, now."""
        txn = self.current()
        if txn is None:
            fn()
        else:
            txn.on_commit.append(fn)

    def on_rollback(self, fn: Callable[[], None]) -> None:
        """Undo a change outside the database (runtime state) if the transaction fails."""
        txn = self.current()
        if txn is not None:
            txn.on_rollback.append(fn)


class _DbLock:
    """``with db.lock:`` joins (or begins) the thread's transaction and takes the database's
    lock for the rest of that transaction."""

    __slots__ = ("db",)

    def __init__(self, db: Database):
        self.db = db

    def __enter__(self) -> Txn:
        txm = self.db.txm
        txn = txm.current()
        if txn is None:
            txn = txm._local.txn = Txn(txm)
        txn.depth += 1
        try:
            txn.acquire(self.db)
        except BaseException:
            self._exit(txn, True)
            raise
        return txn

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        txn = self.db.txm.current()
        assert txn is not None
        self._exit(txn, et is not None)

    def _exit(self, txn: Txn, failed: bool) -> None:
        txn.depth -= 1
        if txn.depth == 0:
            txm = self.db.txm
            txm._local.txn = None
            try:
                if failed:
                    txn.rollback()
                else:
                    txn.commit()
            finally:
                txm._run_after(txn)


class _DbCond(_DbLock):
    """``db.cond``: the lock, plus a wait that never sleeps holding it."""

    __slots__ = ()

    def wait(self, timeout: float | None = None) -> bool:
        """Commit and release (``checkpoint``), then wait for the next committed change."""
        ev = self.db.changed_event
        self.db.txm.checkpoint()
        return ev.wait(timeout)

    def notify_all(self) -> None:
        """Waiters are woken when a transaction commits; nothing to do here."""
