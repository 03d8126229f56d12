"""Tasks and ``Async.`` calls. Mirrors xen-api ``ocaml/xapi/taskHelper.ml``, ``xapi_task.ml``,
``server_helpers.ml`` ``do_dispatch`` and ``db_gc_util.ml`` ``timeout_tasks``.

* An ``Async.X.y`` call creates a task named with the full wire name, replies with its ref at
  once and runs the operation on a worker thread; the task's ``result`` is an XML-RPC value
  fragment, ``error_info`` is ``[code, params...]``; ``TASK_CANCELLED`` ends it ``cancelled``.
  Synchronous calls of async-capable messages get a transient task too (add/del events).
* A task is created with ``allowed_operations = []`` (``TaskHelper.make``); while an operation
  runs in xenopsd it is cancellable (``register_task`` sets ``[cancel]``).
* ``task.cancel`` records ``cancel`` in ``current_operations`` (replacing the map) and asks the
  backend to stop; a simulated operation notices it, stops, and raises ``TASK_CANCELLED``.
  Nothing else happens to a task no operation is bound to (XAPI "falls back to polling").
* ``task.destroy`` removes a finished task; a pending one only gets ``destroy`` in its
  ``current_operations`` and the GC removes it once it has finished.
* The GC pass (``timeout_tasks``, every ``gc_interval`` seconds on a thread the simulator
  starts) removes finished tasks marked for destruction, tasks finished more than
  ``completed_timeout`` (3900 s) ago, tasks pending for more than ``pending_timeout``
  (86400 s) whose progress did not move since the previous pass, and the oldest finished
  tasks beyond ``max_tasks`` (200). Ages come from the task's ``created``/``finished``
  fields against the world's clock (``world.clock``), so tests can move it.

Simulated durations: ``Tasks.operation_seconds`` (default 0, i.e. instantaneous) makes the VM
power operations decorated with :func:`timed` take that long, with the VM showing the
operation in ``current_operations``, the task progressing in ``progress_steps`` steps, and
``task.cancel`` stopping it before its effect (the VM stays as it was).

This module is the machinery (below the API; the dispatcher runs calls through it):
``run_transaction``, the task rows' life, async and sync runs, cancellation, the GC. The
``task.*`` handlers and the simulated durations (``timed``) are in ``classes/task.py``.
"""

from __future__ import annotations

import calendar
import logging
import threading
import time

from .datamodel import EPOCH_TS, NULL_REF
from .errors import Failure, internal
from .store import LockOrderConflict
from .wire import xmlrpc

log = logging.getLogger(__name__)
MAX_ORDER_RETRIES = 8

COMPLETED_TASK_TIMEOUT = 3900.0  # xapi_globs completed_task_timeout (65 min)
PENDING_TASK_TIMEOUT = 86400.0  # xapi_globs pending_task_timeout (24 h)
MAX_TASKS = 200  # xapi_globs max_tasks
GC_INTERVAL = 30.0  # xapi_globs db_GC_TIMER: one DB GC pass every 30 s
COMPLETED = ("success", "failure", "cancelled")


def _epoch(ts: str) -> float:
    """Seconds since the epoch of a ``YYYYMMDDTHH:MM:SSZ`` datetime (XAPI's Date.to_float)."""
    try:
        return float(calendar.timegm(time.strptime(str(ts).rstrip("Z"), "%Y%m%dT%H:%M:%S")))
    except ValueError:
        return 0.0


def run_transaction(world, fn, call, args, nowait=False):
    """Run one call's behaviour as one transaction over every pool database it touches:
    its writes are published (journaled, turned into events) when it returns, and rolled
    back entirely if it raises. A lock-order conflict (store.py) rolls back and runs the
    call again with the databases it needed locked in order up front."""
    txm = world.txm
    prelock: set = set()
    for _ in range(MAX_ORDER_RETRIES):
        txn = None
        try:
            with txm.transaction() as txn:
                txn.prelock = prelock
                txn.nowait = nowait
                return fn(call, *args)
        except LockOrderConflict as e:
            if txn is not None and txn.checkpoints:
                # part of the call is committed: running it again would repeat that part
                log.error("lock-order conflict after a checkpoint in %s", call.name)
                raise internal("lock order conflict") from None
            prelock = prelock | e.held | {e.db}
    raise internal("lock order conflict")


class Tasks:
    """The task machinery of one world (created on first use), with its tunables."""

    def __init__(self, world):
        self.world = world
        self.running: dict = {}  # task ref -> worker thread (Async calls)
        self.cancel_events: dict = {}  # task ref -> Event set by task.cancel
        self.lock = threading.Lock()
        # -- tunables (tests change them on a live world) --
        self.completed_timeout = COMPLETED_TASK_TIMEOUT
        self.pending_timeout = PENDING_TASK_TIMEOUT
        self.max_tasks = MAX_TASKS
        self.operation_seconds = 0.0  # simulated duration of @timed operations
        self.progress_steps = 10
        self._gc_interval = GC_INTERVAL
        self._probation: dict = {}  # task uuid -> progress at the previous GC pass
        self._gc_stop = None
        self._gc_wake = threading.Event()

    @classmethod
    def of(cls, world) -> Tasks:
        return world.service(cls)

    # -- lifecycle -----------------------------------------------------------------------
    def create(self, call, label, description="") -> str:
        """``TaskHelper.make``: pending, progress 0, not (yet) cancellable."""
        return call.world.new_row(
            call.db,
            "task",
            name_label=label,
            name_description=description,
            created=self.world.clock.now_ts(),
            finished=EPOCH_TS,
            status="pending",
            progress=0.0,
            type="<none/>",
            result="",
            error_info=[],
            resident_on=call.pool.master.ref,
            allowed_operations=[],
            current_operations={},
            other_config={},
            subtask_of=NULL_REF,
            backtrace="()",
        )

    def complete(self, db, ref, result=None, failure: Failure | None = None):
        """``TaskHelper.complete`` / ``failed``: only a pending task changes."""
        with db.lock:
            row = db.tables["task"].get(ref)
            if row is None or row["status"] != "pending":
                return
            if failure is None:
                db.update(
                    "task",
                    ref,
                    allowed_operations=[],
                    finished=self.world.clock.now_ts(),
                    progress=1.0,
                    result=xmlrpc.encode_value(result),
                    status="success",
                )
            else:
                status = "cancelled" if failure.code == "TASK_CANCELLED" else "failure"
                db.update(
                    "task",
                    ref,
                    progress=1.0,
                    error_info=failure.description,
                    finished=self.world.clock.now_ts(),
                    allowed_operations=[],
                    status=status,
                )

    def _invoke(self, call, handler, args):
        try:
            return run_transaction(call.world, handler, call, args), None
        except Failure as f:
            return None, f
        except Exception as e:  # never let a bug escape as a traceback
            log.exception("internal error in %s", call.name)
            return None, internal(f"{type(e).__name__}: {e}")

    def run_async(self, call, handler, args, label):
        ref = self.create(call, label)
        call.task = ref

        def work():
            try:
                result, failure = self._invoke(call, handler, args)
                self.complete(call.db, ref, result, failure)
            finally:
                with self.lock:
                    self.running.pop(ref, None)
                    self.cancel_events.pop(ref, None)

        t = threading.Thread(target=work, name=label, daemon=True)
        with self.lock:
            self.running[ref] = t
        t.start()
        return ref

    def run_sync(self, call, handler, args, label):
        ref = self.create(call, label)
        call.task = ref
        try:
            result, failure = self._invoke(call, handler, args)
        finally:
            with self.lock:
                self.cancel_events.pop(ref, None)
            with call.db.lock:
                if call.db.exists("task", ref):
                    call.db.remove("task", ref)
        if failure is not None:
            raise failure
        return result

    # -- cancellation --------------------------------------------------------------------
    def cancel_event(self, ref) -> threading.Event:
        with self.lock:
            ev = self.cancel_events.get(ref)
            if ev is None:
                ev = self.cancel_events[ref] = threading.Event()
            return ev

    def request_cancel(self, ref):
        with self.lock:
            ev = self.cancel_events.get(ref)
        if ev is not None:
            ev.set()

    # -- garbage collection --------------------------------------------------------------
    @property
    def gc_interval(self) -> float:
        return self._gc_interval

    @gc_interval.setter
    def gc_interval(self, value: float):
        self._gc_interval = float(value)
        self._gc_wake.set()  # the GC thread re-reads its interval at once

    def gc(self, now: float | None = None):
        """One ``Db_gc_util.timeout_tasks`` pass over every pool of the world."""
        now = self.world.clock.time() if now is None else now
        oldest_completed = now - self.completed_timeout
        oldest_pending = now - self.pending_timeout
        probation = {}
        for p in list(self.world.pools):
            db = p.db
            with db.lock:
                rows = db.rows("task")
                completed = [(r, t) for r, t in rows if t["status"] in COMPLETED]
                pending = [(r, t) for r, t in rows if t["status"] not in COMPLETED]
                # finished tasks someone destroyed while they were pending: kill at once
                destroyable = [
                    (r, t) for r, t in completed if "destroy" in t["current_operations"].values()
                ]
                gcable = [
                    (r, t)
                    for r, t in completed
                    if "destroy" not in t["current_operations"].values()
                ]
                completed_old = [
                    (r, t) for r, t in gcable if _epoch(t["finished"]) < oldest_completed
                ]
                completed_young = [
                    (r, t) for r, t in gcable if _epoch(t["finished"]) >= oldest_completed
                ]
                pending_old = [(r, t) for r, t in pending if _epoch(t["created"]) < oldest_pending]
                pending_young = [
                    (r, t) for r, t in pending if _epoch(t["created"]) >= oldest_pending
                ]
                # an old pending task survives a pass if its progress moved since the last
                pending_old_hung, pending_old_run = [], []
                for r, t in pending_old:
                    before = self._probation.get(t["uuid"])
                    if before is None or t["progress"] - before > 0:
                        pending_old_run.append((r, t))
                    else:
                        pending_old_hung.append((r, t))
                    probation[t["uuid"]] = t["progress"]
                young = pending_old_run + pending_young + completed_young
                unlucky = []
                overflow = len(young) - self.max_tasks
                if overflow > 0:
                    done = sorted(
                        ((r, t) for r, t in young if t["status"] in COMPLETED),
                        key=lambda rt: _epoch(rt[1]["finished"]),
                    )
                    unlucky = done[:overflow]
                for r, _ in destroyable + pending_old_hung + completed_old + unlucky:
                    if db.exists("task", r):
                        db.remove("task", r)
        self._probation = probation

    def start_gc(self):
        """Start the periodic GC thread (``Simulator.start``); idempotent."""
        with self.lock:
            if self._gc_stop is not None:
                return
            stop = self._gc_stop = threading.Event()
        threading.Thread(target=self._gc_loop, args=(stop,), name="task-gc", daemon=True).start()

    def stop_gc(self):
        with self.lock:
            stop, self._gc_stop = self._gc_stop, None
        if stop is not None:
            stop.set()
            self._gc_wake.set()

    def _gc_loop(self, stop):
        while not stop.is_set():
            woken = self._gc_wake.wait(self._gc_interval)
            if stop.is_set():
                return
            if woken:  # interval changed (or stop): wait afresh
                self._gc_wake.clear()
                continue
            try:
                self.gc()
            except Exception:  # noqa: BLE001 -- the GC must never die, but says why
                log.exception("task GC pass failed")
