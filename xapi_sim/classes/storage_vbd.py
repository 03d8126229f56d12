"""VBD behaviour, Dundee semantics, and device numbers.

Mirrors xen-api ``dundee-lcm`` ``ocaml/xapi/xapi_vbd.ml`` (create, insert, eject, plug,
unplug, set_mode), ``xapi_vbd_helpers.ml`` (``valid_device``, ``destroy``,
``assert_attachable``; the operation rules are ``checks/storage.py``),
``message_forwarding.ml`` ``module VBD`` (``with_vbd_marked``; a Halted VM's insert/eject
are database edits), ``xapi_vm_helpers.ml`` (``allowed_VBD_devices``,
``possible_VBD_devices_of_string``, ``all_used_VBD_devices``) and xcp-idl
``device_number.ml`` (device names and disk numbers).
"""

from __future__ import annotations

import re

from ..checks.operations import power_to_string
from ..datamodel import NULL_REF
from ..dispatch import api
from ..errors import Failure
from . import common as c
from .storage_sr import ctor_fields
from .storage_vdi import VDI_TYPES_FOR_VBD, assert_managed, refresh_vdi

# -- device numbers (device_number.ml) -----------------------------------------------------


def _int26(s: str) -> int:
    n = 0
    for ch in s:
        n = n * 26 + (ord(ch) - ord("a") + 1)
    return n - 1


def _str26(n: int) -> str:
    high, low = n // 26 - 1, n % 26 + 1
    return ("" if high == -1 else _str26(high)) + chr(low + ord("a") - 1)


def of_disk_number(hvm: bool, n: int) -> tuple:
    return ("ide", n, 0) if hvm and n < 4 else ("xen", n, 0)


_LINUX = re.compile(r"(xvd|sd|fd|hd)([a-z]+)(\d*)|d(\d+)(?:p(\d+))?")


def of_string(hvm: bool, name: str):
    """``Device_number.of_string``: a disk number, or a Linux device name; None if neither."""
    try:
        return of_disk_number(hvm, int(name))
    except ValueError:
        pass  # not a number: try it as a device name below
    m = _LINUX.fullmatch(name)
    if m is None:
        return None
    if m.group(4) is not None:
        return ("xen", int(m.group(4)), int(m.group(5) or 0))
    bus = {"xvd": "xen", "sd": "scsi", "fd": "floppy", "hd": "ide"}[m.group(1)]
    return (bus, _int26(m.group(2)), int(m.group(3) or 0))


def to_linux_device(dev: tuple) -> str:
    bus, disk, part = dev
    prefix = {"xen": "xvd", "scsi": "sd", "floppy": "fd", "ide": "xvd"}[bus]
    return f"{prefix}{_str26(disk)}{part if part else ''}"


def possible_devices(name: str) -> list:
    """``possible_VBD_devices_of_string``: the HVM and PV readings of ``name``."""
    return [d for d in (of_string(True, name), of_string(False, name)) if d is not None]


def used_devices(db, vm) -> list:
    """``all_used_VBD_devices``: every reading of every VBD's device and userdevice."""
    out = []
    for vbd in db.get("VM", vm)["VBDs"]:
        row = db.tables["VBD"].get(vbd)
        if row is not None:
            out += possible_devices(row["device"]) + possible_devices(row["userdevice"])
    return out


def allowed_vbd_devices(db, vm, vbd_type="Disk") -> list:
    """``Xapi_vm_helpers.allowed_VBD_devices``: disk numbers 0..254 (255 for a control
    domain; floppies 0..1 on HVM, none on PV) not used yet, as device tuples."""
    row = db.get("VM", vm)
    hvm = row["HVM_boot_policy"] != ""
    if vbd_type == "Floppy":
        every = [("floppy", n, 0) for n in range(2)] if hvm else []
    elif not hvm and row["is_control_domain"]:
        every = [of_disk_number(False, n) for n in range(256)]
    else:
        every = [of_disk_number(hvm, n) for n in range(255)]
    used = set(used_devices(db, vm))
    return [d for d in every if d not in used]


def valid_device(dev: str) -> bool:
    """``Xapi_vbd_helpers.valid_device`` (any integer passes: its range test is
    ``n >= 0 || n < 16``)."""
    if dev == "autodetect":
        return True
    m = re.fullmatch(r"(sd|xvd|hd)[a-p](.*)", dev)
    if m:
        rest = m.group(2)
        return rest == "" or re.fullmatch(r"[+-]?\d+", rest) is not None
    return re.fullmatch(r"[+-]?\d+", dev) is not None


# -- helpers -------------------------------------------------------------------------------


def refresh_vbd(call, vbd) -> None:
    """``update_vbd_and_vdi_operations``."""
    db = call.db
    row = db.tables["VBD"].get(vbd)
    if row is None:
        return
    c.refresh_allowed(call.world, db, "VBD", vbd)
    if not row["empty"] and db.exists("VDI", row["VDI"]):
        refresh_vdi(call, row["VDI"])


def _hvm_booted(vm_row) -> bool:
    return vm_row["HVM_boot_policy"] != ""


def new_vbd(
    call,
    vm,
    vdi,
    *,
    userdevice,
    bootable,
    mode,
    type,
    unpluggable,
    empty,
    other_config,
    qos_algorithm_type="",
    qos_algorithm_params=None,
    device="",
    currently_attached=False,
) -> str:
    db = call.db
    ref = call.world.new_row(
        db,
        "VBD",
        VM=vm,
        VDI=vdi,
        userdevice=userdevice,
        device=device,
        bootable=bootable,
        mode=mode,
        type=type,
        unpluggable=unpluggable,
        empty=empty,
        other_config=dict(other_config),
        qos_algorithm_type=qos_algorithm_type,
        qos_algorithm_params=dict(qos_algorithm_params or {}),
        currently_attached=currently_attached,
        storage_lock=False,
        allowed_operations=[],
        current_operations={},
    )
    refresh_vbd(call, ref)
    return ref


def create_vbd(call, f) -> str:
    """``Xapi_vbd.create``, in its order (see the module docstring)."""
    db = call.db
    vm, vdi, empty, mode, vtype = f["VM"], f["VDI"], f["empty"], f["mode"], f["type"]
    if not empty:
        vdi_type = db.get("VDI", vdi)["type"]
        if vdi_type not in VDI_TYPES_FOR_VBD:
            raise Failure("VDI_INCOMPATIBLE_TYPE", vdi, vdi_type)
    if vtype == "CD" and mode != "RO":
        raise Failure("VBD_CDS_MUST_BE_READONLY")
    if vtype != "CD" and empty:
        raise Failure("VBD_NOT_REMOVABLE_MEDIA", "in constructor")
    if mode == "RW" and db.get("VDI", vdi)["read_only"]:
        raise Failure("VDI_READONLY", vdi)
    vm_row = db.get("VM", vm)
    for op in ("migrate_send", "pool_migrate"):
        if op in vm_row["current_operations"].values():
            raise Failure("OTHER_OPERATION_IN_PROGRESS", "VM", vm, op)
    userdevice = f["userdevice"]
    possible = allowed_vbd_devices(db, vm, vtype)
    if not valid_device(userdevice) or (userdevice == "autodetect" and not possible):
        raise Failure("INVALID_DEVICE", userdevice)
    if userdevice == "autodetect":
        userdevice = to_linux_device(possible[0]) if vtype == "Floppy" else str(possible[0][1])
    if set(possible_devices(userdevice)) & set(used_devices(db, vm)):
        raise Failure("DEVICE_ALREADY_EXISTS", userdevice)
    other_config = dict(f["other_config"])
    if not empty and "backend-kind" in db.get("VDI", vdi)["sm_config"]:
        other_config = {
            "backend-kind": db.get("VDI", vdi)["sm_config"]["backend-kind"],
            **other_config,
        }
    vdi = vdi if not empty or db.exists("VDI", vdi) else NULL_REF
    return new_vbd(
        call,
        vm,
        vdi,
        userdevice=userdevice,
        bootable=f["bootable"],
        mode=mode,
        type=vtype,
        unpluggable=f["unpluggable"],
        empty=empty,
        other_config=other_config,
        qos_algorithm_type=f["qos_algorithm_type"],
        qos_algorithm_params=f["qos_algorithm_params"],
    )


@api("VBD.create")
def vbd_create(call, record):
    with call.db.lock:
        return create_vbd(call, ctor_fields(call, "VBD", record))


def destroy_vbd(call, vbd) -> None:
    """``Xapi_vbd_helpers.destroy``: refused while attached or reserved."""
    db = call.db
    row = db.get("VBD", vbd)
    if row["currently_attached"]:
        vm_uuid = db.get("VM", row["VM"])["uuid"] if db.exists("VM", row["VM"]) else ""
        raise Failure("OPERATION_NOT_ALLOWED", f"VBD '{row['uuid']}' still attached to '{vm_uuid}'")
    db.remove("VBD", vbd)
    if not row["empty"] and db.exists("VDI", row["VDI"]):
        refresh_vdi(call, row["VDI"])


@api("VBD.destroy")
def vbd_destroy(call, self):
    with call.db.lock:
        destroy_vbd(call, self)


def _marked(call, vbd, op):
    return c.with_operation(call, "VBD", vbd, op)


@api("VBD.plug")
def vbd_plug(call, self):
    """``with_vbd_marked plug`` (the VM Running, not already attached, hotplug rules...),
    then ``Xapi_vbd.plug``: an HVM guest's disk must be RW
    (``DISK_VBD_MUST_BE_READWRITE_FOR_HVM``); the device appears."""
    db = call.db
    with db.lock, _marked(call, self, "plug") as op:
        row = db.get("VBD", self)
        vm_row = db.get("VM", row["VM"])
        c.assert_resident_host_live(call, vm_row)
        hvm = _hvm_booted(vm_row)
        if hvm and row["type"] != "CD" and row["mode"] == "RO":
            raise Failure("DISK_VBD_MUST_BE_READWRITE_FOR_HVM", self)
        op.mark()
        dev = of_string(hvm, row["userdevice"])
        db.update(
            "VBD",
            self,
            currently_attached=True,
            device=to_linux_device(dev) if dev is not None else row["device"],
        )
    refresh_vbd(call, self)


def _unplug(call, vbd, op):
    db = call.db
    with db.lock, _marked(call, vbd, op) as token:
        c.assert_resident_host_live(call, db.get("VM", db.get("VBD", vbd)["VM"]))
        token.mark()
        db.set("VBD", vbd, "currently_attached", False)
    refresh_vbd(call, vbd)


@api("VBD.unplug")
def vbd_unplug(call, self):
    _unplug(call, self, "unplug")


@api("VBD.unplug_force")
def vbd_unplug_force(call, self):
    _unplug(call, self, "unplug_force")


def _assert_not_suspended(db, vm) -> None:
    state = db.get("VM", vm)["power_state"]
    if state == "Suspended":
        raise Failure("VM_BAD_POWER_STATE", vm, "halted, running", power_to_string(state))


@api("VBD.insert")
def vbd_insert(call, vbd, vdi):
    """``with_vbd_marked insert``, then ``assert_ok_to_insert`` (not Suspended, removable,
    empty, a managed VDI) and the VDI goes in (a database edit for a Halted VM, the
    guest's drive otherwise)."""
    db = call.db
    with db.lock, _marked(call, vbd, "insert") as op:
        row = db.get("VBD", vbd)
        _assert_not_suspended(db, row["VM"])
        if row["type"] != "CD":
            raise Failure("VBD_NOT_REMOVABLE_MEDIA", vbd)
        if not row["empty"]:
            raise Failure("VBD_NOT_EMPTY", vbd)
        assert_managed(db, vdi)
        op.mark()
        db.update("VBD", vbd, VDI=vdi, empty=False)
    refresh_vbd(call, vbd)


@api("VBD.eject")
def vbd_eject(call, vbd):
    """``with_vbd_marked eject``, then ``assert_ok_to_eject`` (removable, not empty, not
    Suspended) and the drive is emptied."""
    db = call.db
    with db.lock, _marked(call, vbd, "eject") as op:
        row = db.get("VBD", vbd)
        if row["type"] != "CD":
            raise Failure("VBD_NOT_REMOVABLE_MEDIA", vbd)
        if row["empty"]:
            raise Failure("VBD_IS_EMPTY", vbd)
        _assert_not_suspended(db, row["VM"])
        op.mark()
        old = row["VDI"]
        db.update("VBD", vbd, VDI=NULL_REF, empty=True)
        if db.exists("VDI", old):
            refresh_vdi(call, old)
    refresh_vbd(call, vbd)


@api("VBD.assert_attachable")
def vbd_assert_attachable(call, self):
    """The ``attach`` check with the expensive sharing checks (``VDI_IN_USE``...)."""
    with call.db.lock:
        c.assert_operation_valid(call, "VBD", self, "attach")


@api("VBD.set_mode")
def vbd_set_mode(call, self, value):
    """The VM must be Halted (``assert_power_state_is``)."""
    db = call.db
    with db.lock:
        vm = db.get("VBD", self)["VM"]
        state = db.get("VM", vm)["power_state"]
        if state != "Halted":
            raise Failure(
                "VM_BAD_POWER_STATE", vm, power_to_string("Halted"), power_to_string(state)
            )
        db.set("VBD", self, "mode", value)
        refresh_vbd(call, self)
