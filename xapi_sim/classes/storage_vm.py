"""The storage side of VM operations, called from ``vm_lifecycle.py``.

Mirrors xen-api ``dundee-lcm``:

* ``xapi_xenops.ml`` ``suspend``: a "Suspend image" VDI (type ``suspend``, virtual size
  ``memory_static_max * 1.2 * 1.05 + 100 MiB``, ``sm_config`` ``vmhint`` and
  ``initial_allocation``) made with ``VDI.create`` on the SR ``Helpers.choose_suspend_sr``
  picks (the VM's ``suspend_SR``, else the pool's ``suspend_image_SR``, else the host's
  ``suspend_image_sr`` -- each only if the host has a PBD for it; ``VM_NO_SUSPEND_SR
  [vm]`` if none); resume and a hard shutdown of a Suspended VM destroy it;
* ``xapi_vm_helpers.ml`` ``assert_can_see_SRs`` (part of ``assert_can_boot_here``): every
  non-empty VBD's VDI, and a Suspended VM's suspend VDI, on an SR the host has a plugged
  PBD for, else ``VM_REQUIRES_SR [vm, sr]``;
* ``xapi_vm_clone.ml`` ``clone``: for snapshot/checkpoint each disk is ``VDI.snapshot``-ed,
  for clone ``VDI.clone``-d, for copy ``VDI.copy``-ed (to the given SR or its own); CDs
  keep their ISO, empty drives stay empty; every VBD is copied onto the new VM, disks
  owned by it (``other_config:owner``); the suspend VDI is copied for clone/copy of a
  Suspended VM and a checkpoint carries its own memory image;
* ``Xapi_vm_lifecycle.force_state_reset``/xenopsd's device states: VBDs are attached while
  the VM runs (Running, Paused) and detached otherwise;
* ``xapi_vm_helpers.ml`` ``destroy``: the VM's VBDs go, its VDIs stay.
"""

from __future__ import annotations

from .. import install_storage as store
from ..datamodel import NULL_REF
from ..errors import Failure
from .storage_vbd import _hvm_booted, new_vbd, of_string, refresh_vbd, to_linux_device
from .storage_vdi import copy_vdi, create_vdi, refresh_vdi, remove_vdi, snapshot_vdi

LIVE = ("Running", "Paused")


def on_power_change(call, vm, power_state) -> None:
    """VBDs follow the VM: attached while it runs, detached otherwise."""
    db = call.db
    attached = power_state in LIVE
    vm_row = db.get("VM", vm)
    for vbd in list(vm_row["VBDs"]):
        row = db.tables["VBD"].get(vbd)
        if row is not None and row["currently_attached"] != attached:
            changes: dict[str, object] = {"currently_attached": attached}
            if attached:  # xenopsd reports the device the domain got (kept after a halt)
                dev = of_string(_hvm_booted(vm_row), row["userdevice"])
                if dev is not None:
                    changes["device"] = to_linux_device(dev)
            db.update("VBD", vbd, **changes)
            refresh_vbd(call, vbd)


def _host_has_pbd(db, host, sr) -> bool:
    return db.exists("SR", sr) and any(
        db.tables["PBD"][p]["host"] == host for p in db.get("SR", sr)["PBDs"]
    )


def choose_suspend_sr(call, vm) -> str:
    """``Helpers.choose_suspend_sr``."""
    db = call.db
    row = db.get("VM", vm)
    host = row["resident_on"]
    pool = db.get("pool", call.pool.ref)
    host_sr = db.get("host", host)["suspend_image_sr"] if db.exists("host", host) else NULL_REF
    for sr in (row["suspend_SR"], pool["suspend_image_SR"], host_sr):
        if _host_has_pbd(db, host, sr):
            return sr
    raise Failure("VM_NO_SUSPEND_SR", vm)


def suspend_image_size(vm_row) -> int:
    return int(vm_row["memory_static_max"] * 1.2 * 1.05) + 100 * store.MiB


def make_suspend_image(call, vm) -> str:
    """A suspend image of the running ``vm`` on its suspend SR (``VDI.create``)."""
    db = call.db
    row = db.get("VM", vm)
    sr = choose_suspend_sr(call, vm)
    size = suspend_image_size(row)
    return create_vdi(
        call,
        sr,
        name_label="Suspend image",
        name_description="Suspend image",
        virtual_size=size,
        type="suspend",
        sm_config={"vmhint": row["uuid"], "initial_allocation": str(size)},
    )


def write_suspend_image(call, vm) -> None:
    """``VM.suspend``: the image is written before the VM leaves its host."""
    call.db.set("VM", vm, "suspend_VDI", make_suspend_image(call, vm))


def drop_suspend_image(call, vm) -> None:
    """``VM.resume`` / hard shutdown of a Suspended VM: the image is destroyed."""
    db = call.db
    vdi = db.get("VM", vm)["suspend_VDI"]
    if vdi != NULL_REF:
        db.set("VM", vm, "suspend_VDI", NULL_REF)
        if db.exists("VDI", vdi):
            remove_vdi(call, vdi)


def copy_disks(call, vm, new_vm, disk_op, sr=NULL_REF) -> None:
    """``Xapi_vm_clone.clone``'s disks for ``disk_op`` in snapshot, checkpoint, clone,
    copy (see the module docstring). Call once the new VM's record exists; its power state
    decides whether the copied VBDs are attached."""
    db = call.db
    src = db.get("VM", vm)
    new_row = db.get("VM", new_vm)
    for vbd in list(src["VBDs"]):
        v = db.tables["VBD"].get(vbd)
        if v is None:
            continue
        if v["empty"]:
            vdi = NULL_REF
        elif v["type"] == "CD":
            vdi = v["VDI"]
        elif disk_op in ("snapshot", "checkpoint"):
            vdi = snapshot_vdi(call, v["VDI"], is_snapshot=True)
        elif disk_op == "clone":
            vdi = snapshot_vdi(call, v["VDI"], is_snapshot=False)
        else:
            target = sr if sr != NULL_REF else db.get("VDI", v["VDI"])["SR"]
            vdi = copy_vdi(call, v["VDI"], target)
        other = dict(v["other_config"])
        if v["type"] == "Disk":
            other.setdefault("owner", "")
        new_vbd(
            call,
            new_vm,
            vdi,
            userdevice=v["userdevice"],
            bootable=v["bootable"],
            mode=v["mode"],
            type=v["type"],
            unpluggable=v["unpluggable"],
            empty=v["empty"] or vdi == NULL_REF,
            other_config=other,
            qos_algorithm_type=v["qos_algorithm_type"],
            qos_algorithm_params=v["qos_algorithm_params"],
            device=v["device"],
            currently_attached=new_row["power_state"] in LIVE,
        )
    suspend = NULL_REF
    if (
        disk_op == "checkpoint"
        and src["power_state"] == "Running"
        and src["resident_on"] != NULL_REF
    ):
        suspend = make_suspend_image(call, vm)
    elif (
        disk_op != "snapshot"
        and src["suspend_VDI"] != NULL_REF
        and db.exists("VDI", src["suspend_VDI"])
    ):
        suspend = snapshot_vdi(
            call, src["suspend_VDI"], is_snapshot=disk_op in ("snapshot", "checkpoint")
        )
    db.set("VM", new_vm, "suspend_VDI", suspend)


def storage_on_vm_destroy(call, vm) -> None:
    """``VM.destroy``: the VBDs go (VDIs stay; their allowed operations are refreshed)."""
    db = call.db
    for vbd in list(db.get("VM", vm)["VBDs"]):
        row = db.tables["VBD"].get(vbd)
        if row is None:
            continue
        db.remove("VBD", vbd)
        if not row["empty"] and db.exists("VDI", row["VDI"]):
            refresh_vdi(call, row["VDI"])
