"""The ``task.*`` messages and simulated operation durations (``timed``). The task machinery
-- async and sync runs, cancellation, the GC, and XAPI's rules for them (``taskHelper.ml``,
``xapi_task.ml``, ``db_gc_util.ml``) -- is ``xapi_sim/tasks.py``, whose docstring says what
the simulator mirrors.

Simulated durations: ``Tasks.operation_seconds`` (default 0, i.e. instantaneous) makes the VM
power operations decorated with :func:`timed` take that long, with the VM showing the
operation in ``current_operations``, the task progressing in ``progress_steps`` steps, and
``task.cancel`` stopping it before its effect (the VM stays as it was).
"""

from __future__ import annotations

import functools
import logging

from ..dispatch import REGISTRY, api
from ..errors import Failure
from ..tasks import COMPLETED, Tasks
from . import common as c

log = logging.getLogger(__name__)


# -- simulated long-running operations -------------------------------------------------------


def timed(op):
    """Give a VM operation XAPI's xenopsd shape when ``Tasks.operation_seconds`` > 0.

    Only when the decorated function is the handler of the call being dispatched (not when
    another operation calls it, e.g. ``host.evacuate`` migrating VMs) and the operation's
    own first checks pass (otherwise the handler runs at once and reports its error exactly
    as without a duration): the VM shows ``{task: op}`` in ``current_operations`` for the
    duration (``common.begin_operation``, which waits while another operation excludes this
    one and cancels what a hard shutdown/reboot overrides), the task becomes cancellable
    and its progress moves in steps; ``task.cancel`` stops it with ``TASK_CANCELLED [task]``
    before any effect. Then the handler runs as usual (all checks, then the effect,
    atomically). With the default of 0 seconds nothing of this happens.
    """

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(call, vm, *args, **kw):
            tasks = Tasks.of(call.world)
            secs = tasks.operation_seconds
            if secs <= 0 or REGISTRY.get(call.name) is not wrapper or not call.task:
                return fn(call, vm, *args, **kw)
            db, task = call.db, call.task
            with db.lock:
                # the handler's first check is this one: its failure is the handler's
                token = c.begin_operation(call, "VM", vm, op, key=task, mark=False)
                try:
                    _prechecks(call, vm, op)
                except Failure:
                    return fn(call, vm, *args, **kw)
                try:
                    token.mark()
                except BaseException:
                    c.end_operation(call, token, succeeded=False)
                    raise
                if db.exists("task", task):  # TaskHelper.register_task: cancellable
                    db.set("task", task, "allowed_operations", ["cancel"])
            cancelled = tasks.cancel_event(task)
            # the simulated duration runs unlocked: publish the marked operation first
            call.world.txm.checkpoint()

            def release():
                c.end_operation(call, token)
                if db.exists("task", task):  # unregister_task: not cancellable any more
                    db.set("task", task, "allowed_operations", [])

            steps = max(1, int(tasks.progress_steps))
            for i in range(1, steps + 1):
                if cancelled.wait(secs / steps) or _cancelling(db, task):
                    with db.lock:
                        release()
                    call.world.txm.checkpoint()  # the release stands: the failure undoes nothing
                    raise Failure("TASK_CANCELLED", task)
                if i < steps and db.exists("task", task):
                    db.set("task", task, "progress", round(i / steps, 4))
                    call.world.txm.checkpoint()
            with db.lock:
                release()
                return fn(call, vm, *args, **kw)

        return wrapper

    return deco


def _prechecks(call, vm, op):
    """What message forwarding checks before handing a start to xenopsd: the placement.
    A failure here lets the handler run at once and report it exactly as it would without
    a duration."""
    if op == "start":
        row = call.db.get("VM", vm)
        c.assert_vm_limits(vm, row)
        host = c.choose_host(call, vm, row, cpu_check=False)
        c.assert_can_boot_here(call, vm, row, host)


def _cancelling(db, task) -> bool:
    """``TaskHelper.is_cancelling``: ``cancel`` in the task's current_operations."""
    row = db.tables["task"].get(task)
    return row is not None and "cancel" in row["current_operations"].values()


# -- the task class --------------------------------------------------------------------------


@api("task.create")
def task_create(call, label, description):
    return Tasks.of(call.world).create(call, label, description)


@api("task.destroy")
def task_destroy(call, ref):
    """``Xapi_task.destroy``: a finished task goes; a pending one is only marked
    (``current_operations["task"] = destroy``) and the GC removes it once finished."""
    with call.db.lock:
        row = call.db.get("task", ref)
        if row["status"] in COMPLETED:
            call.db.remove("task", ref)
        elif "task" in row["current_operations"]:
            # Db.Task.add_to_current_operations on a key already there (a second destroy)
            raise Failure("MAP_DUPLICATE_KEY", "task", "current_operations", ref, "task")
        else:
            call.db.set(
                "task", ref, "current_operations", {**row["current_operations"], "task": "destroy"}
            )


@api("task.cancel")
def task_cancel(call, ref):
    """``Xapi_task.cancel``: record ``cancel`` (keyed by this call's own task id) and ask the
    backend to cancel. No status check: cancelling a finished task changes nothing else."""
    with call.db.lock:
        call.db.get("task", ref)
        call.db.set("task", ref, "current_operations", {call.world.ids.ref(): "cancel"})
    Tasks.of(call.world).request_cancel(ref)


def _set(field):
    def setter(call, ref, value):
        call.db.get("task", ref)
        call.db.set("task", ref, field, value)

    return setter


# Added after Dundee (falcon and later); registered for schemas that have them.
api("task.set_status")(_set("status"))
api("task.set_progress")(_set("progress"))
api("task.set_result")(_set("result"))
api("task.set_error_info")(_set("error_info"))
api("task.set_resident_on")(_set("resident_on"))
