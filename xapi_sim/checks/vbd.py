"""VBD operation checks: xen-api Dundee ``xapi_vbd_helpers.ml`` ``valid_operations``
(pure), with the later releases' differences (1.14-lcm, 1.249-lcm) as facts. Re-exported
by :mod:`.storage`, which holds the SR and VDI checks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import vm as vm_checks
from .operations import (
    OTHER_OPERATION_IN_PROGRESS,
    VBD_OPERATION_STRINGS,
    VDI_OPERATION_STRINGS,
    ErrorTable,
    OpError,
    Row,
    Table,
    allowed_in,
    power_to_string,
    set_difference,
    setify,
    table_error,
)

# -- VBD --------------------------------------------------------------------------------------

# vbd_operations in Dundee's datamodel.ml (enum order)
VBD_OPERATIONS = ("attach", "eject", "insert", "plug", "unplug", "unplug_force", "pause", "unpause")
# Xapi_vbd_helpers.all_ops (table order)
VBD_ALL_OPERATIONS = (
    "attach",
    "eject",
    "unplug",
    "unplug_force",
    "insert",
    "plug",
    "pause",
    "unpause",
)
VBD_SAFE_TO_PARALLELISE = ("pause", "unpause")
_VM_OPS_BLOCKING_HOTPLUG = ("clean_shutdown", "hard_shutdown", "suspend", "pause")


def is_system_domain(vm_row: Row) -> bool:
    """``System_domains.is_system_domain``: the control domain, or
    ``other_config:is_system_domain`` is exactly "true" (OCaml ``bool_of_string``)."""
    return (
        vm_row["is_control_domain"]
        or (vm_row.get("other_config") or {}).get("is_system_domain") == "true"
    )


def _hotplug_errors(
    t: ErrorTable,
    vm_ref: str,
    vm_row: Row,
    guest_metrics: Row | None,
    hvm: bool,
    field: str,
    what: str,
    ops: list[str],
    detected_suffices: bool = False,
) -> None:
    """The PV-driver rule shared by VBD and VIF plug/unplug of a running HVM guest;
    ``detected_suffices`` (VBDs from 7.1, xen-api CA-224331): an ``unspecified`` claim
    with ``PV_drivers_detected`` set allows hotplug."""
    if vm_row["power_state"] != "Running" or not hvm:
        return

    def fallback() -> None:
        if not vm_checks.has_pv_drivers(guest_metrics):
            t.set_errors("VM_MISSING_PV_DRIVERS", [vm_ref], ops)

    if guest_metrics is None:
        fallback()
        return
    claim = guest_metrics.get(field, "unspecified")
    if claim == "yes":
        return
    if claim == "no":
        t.set_errors(
            "OPERATION_NOT_ALLOWED", [f"VM states it does not support {what} hotplug."], ops
        )
        return
    if detected_suffices and guest_metrics.get("PV_drivers_detected", False):
        return
    fallback()


def _vm_current_op_errors(t: ErrorTable, vm_ref: str, vm_row: Row, ops: list[str]) -> None:
    for _, op in vm_row["current_operations"].items():
        if op in _VM_OPS_BLOCKING_HOTPLUG:
            t.set_errors(
                "OPERATION_NOT_ALLOWED",
                [f"Current operation on VM:{vm_ref} is {vm_checks.operation_to_string(op)}"],
                ops,
            )


def vbd_valid_operations(
    vbd_ref: str,
    row: Row,
    *,
    vm_row: Row,
    guest_metrics: Row | None = None,
    hvm: bool | None = None,
    vdi_row: Row | None = None,
    other_vbds: Iterable[tuple[Row, Row]] = (),
    expensive_sharing_checks: bool = True,
    detected_suffices: bool = False,
    mirror_ignored: bool = False,
) -> Table:
    """``Xapi_vbd_helpers.valid_operations`` (Dundee), rules in xapi's order:

    1. an operation in progress blocks all but pause/unpause; anything but pause/unpause
       blocks pause; anything but attach/pause/unpause blocks unpause ->
       ``OTHER_OPERATION_IN_PROGRESS ["VBD", vbd, <op>]``;
    2. ``VBD_NOT_UNPLUGGABLE``, ``VBD_NOT_REMOVABLE_MEDIA``, ``VBD_IS_EMPTY`` /
       ``VBD_NOT_EMPTY``;
    3. the VM's power state and the device's: ``DEVICE_ALREADY_ATTACHED`` /
       ``_DETACHED``, else ``VM_BAD_POWER_STATE [vm, "running", actual]`` (pause/unpause
       stay allowed on a Paused VM);
    4. the VM shutting down, suspending or pausing -> ``OPERATION_NOT_ALLOWED``;
    5. a running HVM guest: hotplug needs drivers (``can_use_hotplug_vbd``,
       ``VM_MISSING_PV_DRIVERS``); CD drives cannot be hotplugged;
    6. a CD of a Suspended VM: no insert/eject;
    7. the VDI: ``VDI_NOT_MANAGED``, VDI operations in progress, and (when not attached and
       ``expensive_sharing_checks``) the sharing rules ``VDI_IN_USE``, ``VDI_READONLY``.

    Facts: ``vm_row`` (the VBD's VM), its ``guest_metrics`` row, ``hvm`` (default
    :func:`~.vm.booted_hvm`; later releases test the domain type), ``vdi_row`` (None for an
    empty drive), ``other_vbds`` -- ``(vbd_row, vm_row)`` for the VDI's other VBDs
    (``vbd_row`` may carry ``reserved``).

    Later releases (xen-api 1.14-lcm, 1.249-lcm; v23.30.0 and v24.19.2 as 1.249-lcm):
    ``detected_suffices`` (7.1 on): rule 5 takes ``PV_drivers_detected`` for an
    ``unspecified`` ``can_use_hotplug_vbd``; ``mirror_ignored`` (Inverness on, CA-253933):
    rule 7 ignores a VDI ``mirror`` in progress as it does a ``copy``."""
    vm_ref = row["VM"]
    current = setify(op for _, op in row["current_operations"].items())
    t = ErrorTable(VBD_ALL_OPERATIONS)
    if current:
        t.set_errors(
            OTHER_OPERATION_IN_PROGRESS,
            ["VBD", vbd_ref, VBD_OPERATION_STRINGS[current[0]]],
            set_difference(VBD_ALL_OPERATIONS, VBD_SAFE_TO_PARALLELISE),
        )
    if not all(op in VBD_SAFE_TO_PARALLELISE for op in current):
        t.set_errors(
            OTHER_OPERATION_IN_PROGRESS,
            ["VBD", vbd_ref, VBD_OPERATION_STRINGS[current[0]]],
            ["pause"],
        )
    if set_difference(current, ("attach",) + VBD_SAFE_TO_PARALLELISE):
        t.set_errors(
            OTHER_OPERATION_IN_PROGRESS,
            ["VBD", vbd_ref, VBD_OPERATION_STRINGS[current[0]]],
            ["unpause"],
        )
    if not row["unpluggable"]:
        t.set_errors("VBD_NOT_UNPLUGGABLE", [vbd_ref], ["unplug", "unplug_force"])
    if row["type"] != "CD":
        t.set_errors("VBD_NOT_REMOVABLE_MEDIA", [vbd_ref], ["insert", "eject"])
    empty = row["empty"]
    if empty:
        t.set_errors("VBD_IS_EMPTY", [vbd_ref], ["eject"])
    else:
        t.set_errors("VBD_NOT_EMPTY", [vbd_ref], ["insert"])
    power = vm_row["power_state"]
    plugged = row["currently_attached"] or row.get("reserved", False)
    if power == "Running" and plugged:
        t.set_errors("DEVICE_ALREADY_ATTACHED", [vbd_ref], ["plug"])
    elif power == "Running":
        t.set_errors("DEVICE_ALREADY_DETACHED", [vbd_ref], ["unplug", "unplug_force"])
    else:
        bad = ["plug", "unplug", "unplug_force"]
        if power != "Paused":
            bad = ["pause", "unpause"] + bad
        t.set_errors(
            "VM_BAD_POWER_STATE", [vm_ref, power_to_string("Running"), power_to_string(power)], bad
        )
    _vm_current_op_errors(t, vm_ref, vm_row, ["plug", "unplug"])
    hvm = vm_checks.booted_hvm(vm_row) if hvm is None else hvm
    if power == "Running" and hvm:
        plug_ops = ["plug", "unplug", "unplug_force"]
        _hotplug_errors(
            t,
            vm_ref,
            vm_row,
            guest_metrics,
            hvm,
            "can_use_hotplug_vbd",
            "VBD",
            plug_ops,
            detected_suffices,
        )
        if row["type"] == "CD":
            t.set_errors(
                "OPERATION_NOT_ALLOWED",
                ["HVM CDROMs cannot be hotplugged/unplugged, only inserted or ejected"],
                plug_ops,
            )
    if row["type"] == "CD" and power == "Suspended":
        t.set_errors(
            "VM_BAD_POWER_STATE",
            [vm_ref, "halted, running", power_to_string("Suspended")],
            ["insert", "eject"],
        )
    if not empty and vdi_row is not None:
        vdi_ref = row["VDI"]
        if not vdi_row["managed"]:
            t.set_errors("VDI_NOT_MANAGED", [vbd_ref], VBD_ALL_OPERATIONS)
        vdi_current = list(vdi_row["current_operations"].items())
        harmless = ("copy", "mirror") if mirror_ignored else ("copy",)
        if any(o not in harmless for _, o in vdi_current):
            t.set_errors(
                OTHER_OPERATION_IN_PROGRESS,
                ["VDI", vdi_ref, VDI_OPERATION_STRINGS.get(vdi_current[0][1], vdi_current[0][1])],
                ["attach", "plug", "insert"],
            )
        if not row["currently_attached"] and expensive_sharing_checks:
            to_check = [
                v
                for v, owner in other_vbds
                if owner["power_state"] != "Suspended"
                and not is_system_domain(owner)
                and (v["currently_attached"] or v.get("reserved", False) or v["current_operations"])
            ]
            someone_rw = any(v["mode"] == "RW" for v in to_check)
            need_write = row["mode"] == "RW"
            if (
                not vdi_row["sharable"]
                and not is_system_domain(vm_row)
                and (someone_rw or (need_write and to_check))
            ):
                t.set_errors("VDI_IN_USE", [vdi_ref], ["attach", "insert", "plug"])
            if need_write and vdi_row["read_only"]:
                t.set_errors("VDI_READONLY", [vdi_ref], ["attach", "insert", "plug"])
    return t.table


def vbd_check_operation_error(vbd_ref: str, row: Row, op: str, **facts: Any) -> OpError | None:
    """``assert_operation_valid`` (expensive sharing checks on) as a value."""
    return table_error(
        vbd_valid_operations(vbd_ref, row, **facts), op, "xapi_vbd_helpers", VBD_OPERATION_STRINGS
    )


def vbd_allowed_operations(vbd_ref: str, row: Row, **facts: Any) -> list[str]:
    """``update_allowed_operations``: without the expensive sharing checks (CA-20808)."""
    facts = dict(facts, expensive_sharing_checks=False)
    return allowed_in(vbd_valid_operations(vbd_ref, row, **facts), VBD_ALL_OPERATIONS)
