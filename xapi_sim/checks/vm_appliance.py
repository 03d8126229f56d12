"""VM_appliance operation checks: xen-api ``ocaml/xapi/xapi_vm_appliance_lifecycle.ml``
``check_operation_error`` (pure; unchanged from 7.0 to 8.3: tag ``1.9.0`` .. ``v24.16.0``).

The four operations, ``start``, ``clean_shutdown``, ``hard_shutdown``, ``shutdown``; first
error wins:

1. any operation in ``current_operations``: ``OTHER_OPERATION_IN_PROGRESS ["VM_appliance",
   ref]`` (one appliance operation at a time);
2. no VMs: ``OPERATION_NOT_ALLOWED ["Appliance has no VMs."]``;
3. no VM in a state where the operation makes sense: ``start`` needs a Halted VM ("There are
   no halted VMs in this appliance."), ``clean_shutdown`` a Running one ("There are no
   running VMs in this appliance."), ``hard_shutdown``/``shutdown`` one that is not Halted
   ("All VMs in this appliance are halted.").

``allowed_operations`` is the list of operations without an error, in that order
(``update_allowed_operations``' ``List.filter``).
"""

from __future__ import annotations

from collections.abc import Iterable

from .operations import OTHER_OPERATION_IN_PROGRESS, OpError, Row

OPERATIONS = ("start", "clean_shutdown", "hard_shutdown", "shutdown")

_NEEDS: dict[str, tuple[str, bool, str]] = {
    # op -> (power state, whether a VM must be in it (True) or out of it (False), message)
    "start": ("Halted", True, "There are no halted VMs in this appliance."),
    "clean_shutdown": ("Running", True, "There are no running VMs in this appliance."),
    "hard_shutdown": ("Halted", False, "All VMs in this appliance are halted."),
    "shutdown": ("Halted", False, "All VMs in this appliance are halted."),
}


def check_operation_error(
    ref: str, row: Row, op: str, vm_power_states: Iterable[str]
) -> OpError | None:
    """The error of ``op`` on the appliance ``row`` whose VMs have ``vm_power_states``."""
    if row["current_operations"]:
        return (OTHER_OPERATION_IN_PROGRESS, ["VM_appliance", ref])
    states = list(vm_power_states)
    if not states:
        return ("OPERATION_NOT_ALLOWED", ["Appliance has no VMs."])
    state, inside, message = _NEEDS[op]
    if any((s == state) == inside for s in states):
        return None
    return ("OPERATION_NOT_ALLOWED", [message])


def allowed_operations(ref: str, row: Row, vm_power_states: Iterable[str]) -> list[str]:
    states = list(vm_power_states)
    return [op for op in OPERATIONS if check_operation_error(ref, row, op, states) is None]
