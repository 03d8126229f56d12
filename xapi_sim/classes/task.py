"""Tasks and ``Async.`` calls. Mirrors xen-api ``ocaml/xapi/taskHelper.ml`` and
``server_helpers.ml`` ``do_dispatch``: an ``Async.X.y`` call creates a task named with the full
wire name, replies with its ref at once and runs the operation on a worker thread; the task's
``result`` is an XML-RPC value fragment, ``error_info`` is ``[code, params...]``. Synchronous
calls of async-capable messages get a transient task too (add/del events, as in XAPI).
Finished tasks are garbage-collected after ``completed_task_timeout`` (3900 s), pending ones
after 86400 s.
"""
from __future__ import annotations

import threading
import time

from ..datamodel import EPOCH_TS, NULL_REF
from ..dispatch import api
from ..errors import Failure, internal
from ..wire import xmlrpc

COMPLETED_TASK_TIMEOUT = 3900.0
PENDING_TASK_TIMEOUT = 86400.0


class Tasks:
    """The task machinery of one world (created on first use)."""

    def __init__(self, world):
        self.world = world
        self.running: dict = {}   # task ref -> thread
        self.finished_at: dict = {}
        self.created_at: dict = {}
        self.lock = threading.Lock()

    @classmethod
    def of(cls, world) -> "Tasks":
        t = getattr(world, "_tasks", None)
        if t is None:
            with world.lock:
                t = getattr(world, "_tasks", None)
                if t is None:
                    t = world._tasks = cls(world)
        return t

    def create(self, call, label, description="") -> str:
        from ..world import now_ts
        ref = call.world.new_row(
            call.db, "task", name_label=label, name_description=description, created=now_ts(),
            finished=EPOCH_TS, status="pending", progress=0.0, type="<none/>", result="",
            error_info=[], resident_on=call.pool.master.ref, allowed_operations=["cancel"],
            current_operations={}, other_config={}, subtask_of=NULL_REF, backtrace="()")
        self.created_at[ref] = time.monotonic()
        return ref

    def complete(self, db, ref, result=None, failure: Failure | None = None):
        from ..world import now_ts
        with db.lock:
            row = db.tables["task"].get(ref)
            if row is None:
                return
            if failure is None:
                db.update("task", ref, status="success", progress=1.0, finished=now_ts(),
                          result=xmlrpc.encode_value(result), allowed_operations=[])
            else:
                status = "cancelled" if failure.code == "TASK_CANCELLED" else "failure"
                db.update("task", ref, status=status, progress=1.0, finished=now_ts(),
                          error_info=failure.description, allowed_operations=[])
            self.finished_at[ref] = time.monotonic()
            if "destroy" in row["current_operations"].values():
                db.remove("task", ref)

    def _invoke(self, call, handler, args):
        try:
            return handler(call, *args), None
        except Failure as f:
            return None, f
        except Exception as e:  # never let a bug escape as a traceback
            return None, internal(f"{type(e).__name__}: {e}")

    def run_async(self, call, handler, args, label):
        ref = self.create(call, label)
        call.task = ref

        def work():
            result, failure = self._invoke(call, handler, args)
            self.complete(call.db, ref, result, failure)
            self.running.pop(ref, None)

        t = threading.Thread(target=work, name=label, daemon=True)
        self.running[ref] = t
        t.start()
        return ref

    def run_sync(self, call, handler, args, label):
        ref = self.create(call, label)
        call.task = ref
        try:
            result, failure = self._invoke(call, handler, args)
        finally:
            if call.db.exists("task", ref):
                call.db.remove("task", ref)
            self.created_at.pop(ref, None)
        if failure is not None:
            raise failure
        return result

    def gc(self, now=None):
        """Destroy tasks finished more than 3900 s ago / pending for more than a day."""
        now = time.monotonic() if now is None else now
        for p in list(self.world.pools):
            db = p.db
            with db.lock:
                for ref, row in list(db.tables["task"].items()):
                    if row["status"] != "pending":
                        done = self.finished_at.get(ref)
                        if done is None:
                            self.finished_at[ref] = now
                        elif now - done > COMPLETED_TASK_TIMEOUT:
                            db.remove("task", ref)
                            self.finished_at.pop(ref, None)
                    else:
                        made = self.created_at.setdefault(ref, now)
                        if now - made > PENDING_TASK_TIMEOUT:
                            db.remove("task", ref)


@api("task.create")
def task_create(call, label, description):
    return Tasks.of(call.world).create(call, label, description)


@api("task.destroy")
def task_destroy(call, ref):
    """Destroying a pending task only marks it; it goes when it completes (xapi_task.ml)."""
    with call.db.lock:
        row = call.db.get("task", ref)
        tasks = Tasks.of(call.world)
        if row["status"] == "pending" and ref in tasks.running:
            call.db.set("task", ref, "current_operations",
                        {**row["current_operations"], call.session: "destroy"})
        else:
            call.db.remove("task", ref)


@api("task.cancel")
def task_cancel(call, ref):
    with call.db.lock:
        row = call.db.get("task", ref)
        if row["status"] != "pending":
            raise Failure("OPERATION_NOT_ALLOWED", "task is not pending")
        tasks = Tasks.of(call.world)
        if ref in tasks.running:
            call.db.set("task", ref, "current_operations",
                        {**row["current_operations"], ref: "cancel"})
        else:
            tasks.complete(call.db, ref, failure=Failure("TASK_CANCELLED", ref))


def _set(field):
    def setter(call, ref, value):
        call.db.get("task", ref)
        call.db.set("task", ref, field, value)
    return setter


api("task.set_status")(_set("status"))
api("task.set_progress")(_set("progress"))
api("task.set_result")(_set("result"))
api("task.set_error_info")(_set("error_info"))
api("task.set_resident_on")(_set("resident_on"))
