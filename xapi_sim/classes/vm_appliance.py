"""vApps: ``VM.set_appliance`` and the VM_appliance power operations.

Mirrors xen-api ``ocaml/xapi/xapi_vm_appliance.ml`` (``perform_operation``),
``message_forwarding.ml`` (``VM_appliance.with_vm_appliance_operation``) and ``xapi_vm.ml``
(``set_appliance``); the same from 7.0 (Dundee) to 8.3 (tags ``v1.249.0``, ``v24.16.0``).
The rules of the operations are ``xapi_sim/checks/vm_appliance.py``.

* ``VM.set_appliance``: ``OPERATION_NOT_ALLOWED ["Control domains, templates and snapshots
  cannot be assigned to appliances."]``; then the field, the old appliance's
  ``allowed_operations`` (if a valid ref) and the VM's, which refreshes the new
  appliance's.
* ``VM_appliance.start|clean_shutdown|hard_shutdown|shutdown``: the appliance check (waiting
  while another appliance operation runs, as ``Helpers.retry_with_global_lock``), the
  operation in ``current_operations`` for the whole run. The VMs not already in the target
  state (Running, or Paused for ``start paused=true``; Halted) are grouped by ``order``:
  ascending for start, descending for the shutdowns. Each group's VMs are started (or shut
  down) in parallel as ``Async.VM.start`` / ``Async.VM.clean_shutdown`` /
  ``Async.VM.hard_shutdown`` / ``Async.VM.shutdown`` calls through the API -- tasks that
  are subtasks of the appliance's, run with every check of a client's call -- and the next
  group begins when all of them have finished. There is no delay of the appliance's own:
  each VM's ``start_delay`` / ``shutdown_delay`` is waited inside its VM.start / shutdown
  (``vm_lifecycle._vm_delay``), so a group ends after its longest delay.
* Afterwards the VMs of the run not in the target state make
  ``OPERATION_PARTIALLY_FAILED [op name, vm refs...]`` (``op name`` is e.g.
  ``"VM_appliance.start"``); the VMs that did change stay changed.
* The VM calls use the caller's session (xapi logs in an internal session for them).
"""

from __future__ import annotations

import logging

from ..datamodel import NULL_REF
from ..dispatch import Dispatcher, api
from ..errors import Failure
from . import common as c

log = logging.getLogger(__name__)

# one appliance operation: (VM message run on each VM, ascending order?)
_VM_MESSAGES = {
    "start": ("VM.start", True),
    "clean_shutdown": ("VM.clean_shutdown", False),
    "hard_shutdown": ("VM.hard_shutdown", False),
    "shutdown": ("VM.shutdown", False),
}


@api("VM.set_appliance")
def set_appliance(call, self, value):
    """``Xapi_vm.set_appliance``."""
    db = call.db
    with db.lock:
        row = db.get("VM", self)
        if row["is_control_domain"] or row["is_a_template"] or row["is_a_snapshot"]:
            raise Failure(
                "OPERATION_NOT_ALLOWED",
                "Control domains, templates and snapshots cannot be assigned to appliances.",
            )
        previous = row.get("appliance", NULL_REF)
        db.set("VM", self, "appliance", value)
        if previous != NULL_REF and db.exists("VM_appliance", previous):
            c.refresh_allowed(call.world, db, "VM_appliance", previous)
        c.refresh_vm_allowed(call.world, db, self)


def action_groups(orders: dict[str, int], ascending: bool) -> list[list[str]]:
    """``create_action_list``: the VMs grouped by ``order``, groups in ascending order for a
    start, descending for a shutdown. Within a group the VMs keep their given order
    reversed, as xapi's fold prepends them (it launches them all at once anyway)."""
    groups: dict[int, list[str]] = {}
    for vm, order in orders.items():
        groups.setdefault(order, []).insert(0, vm)
    return [groups[k] for k in sorted(groups, reverse=not ascending)]


def _launch(call, message: str, vm: str, args: list) -> str | None:
    """``Client.Async.<message>``: a task running the VM call through the dispatcher (every
    check, fault rule and event of a client's call), a subtask of this call's task. None
    if the call could not even be made (xapi forgets such a VM; its state tells)."""
    dispatcher = call.world.service(Dispatcher)
    try:
        task = dispatcher.dispatch(call.pool.master, "Async." + message, [call.session, vm, *args])
    except Failure as f:
        log.info("%s of %s not launched: %s", message, vm, f.description)
        return None
    if call.task and call.db.exists("task", task):
        call.db.set("task", task, "subtask_of", call.task)
    return task


def _perform(call, self, op, extra_args, required_state):
    """``perform_operation`` inside ``with_vm_appliance_operation``."""
    message, ascending = _VM_MESSAGES[op]
    db = call.db
    with db.lock:
        row = db.get("VM_appliance", self)
        token = c.begin_operation(call, "VM_appliance", self, op)
    try:
        with db.lock:
            row = db.get("VM_appliance", self)
            vms = db.tables["VM"]
            targets = [
                v for v in row["VMs"] if v in vms and vms[v]["power_state"] != required_state
            ]
            groups = action_groups({v: vms[v]["order"] for v in targets}, ascending)
        log.debug("Beginning operation VM_appliance.%s on appliance %s", op, row["uuid"])
        for group in groups:
            with db.lock:
                tasks = [t for vm in group if (t := _launch(call, message, vm, extra_args))]
            # the tasks' threads wait for this transaction's lock: publish and release it
            call.world.txm.checkpoint()
            c.wait_for_tasks(call, tasks)
        with db.lock:
            vms = db.tables["VM"]
            failed = [v for v in targets if v not in vms or vms[v]["power_state"] != required_state]
    finally:
        # the clean-up stands whatever happened (Pervasiveext.finally)
        c.end_operation(call, token)
        call.world.txm.checkpoint()
    if failed:
        raise Failure("OPERATION_PARTIALLY_FAILED", f"VM_appliance.{op}", *failed)


@api("VM_appliance.start")
def start(call, self, paused):
    """Halted VMs (and any not in the target state) started, ``order`` ascending."""
    _perform(call, self, "start", [bool(paused), False], "Paused" if paused else "Running")


@api("VM_appliance.clean_shutdown")
def clean_shutdown(call, self):
    _perform(call, self, "clean_shutdown", [], "Halted")


@api("VM_appliance.hard_shutdown")
def hard_shutdown(call, self):
    _perform(call, self, "hard_shutdown", [], "Halted")


@api("VM_appliance.shutdown")
def shutdown(call, self):
    """Each VM's ``VM.shutdown``: clean, falling back to hard."""
    _perform(call, self, "shutdown", [], "Halted")
