"""Provisioning: VM.create's ``mac_seed``, clone, copy, provision, destroy, allowed VBD
devices.

Mirrors xen-api ``dundee-lcm`` (6.5 SP1 from ``v1.9.60`` where it differs):

* ``xapi_vm.ml`` ``create``: a VM created without ``other_config:mac_seed`` gets a fresh
  random UUID there (prepended); the record then gets its ``allowed_operations``.
* ``xapi_vm_clone.ml`` ``copy_vm_record``/``clone`` (``Disk_op_clone``,
  ``Disk_op_copy``): a new top-level VM (``parent`` NULL, CA-52668), Suspended if the
  source is (else Halted), its ``mac_seed`` replaced in place or prepended,
  ``default_template`` and ``xensource_internal`` dropped from ``other_config``,
  ``base_template_name`` (prepended) when the source is a template, the guest metrics
  copied, VM_metrics copied, per-VM settings (blocked operations, HA, appliance, delays,
  order, suspend SR, protection policy, blobs) reset; the disks go through
  ``storage_vm.copy_disks`` and every VIF is copied with a MAC from the new seed
  (``Xapi_vif_helpers.copy``). ``xapi_vm.ml`` ``clone``/``copy``: a copy of a snapshot
  that is not Halted is hard-shut-down. ``copy`` to an SR that does not exist copies each
  disk to its own SR; an ISO SR is ``OPERATION_NOT_ALLOWED ["Cannot copy a VM's disks to
  an ISO SR"]``.
* ``xapi_vm.ml`` ``provision`` with ``xapi_templates.ml``: ``is_a_template`` cleared (and,
  as ``set_is_a_template false`` does, ``VM_metrics.install_time`` stamped); the
  ``other_config:disks`` spec read (``disks_of_xml``: ``<provision>`` of ``<disk device
  size sr bootable [type]>``, a missing or unknown type is ``system``; anything else is
  ``Xapi_templates.Parse_failure``); each disk's ``sr`` must be an SR *uuid*
  (``SR.get_by_uuid``, else ``UUID_INVALID ["sr", sr]``: clients such as ``xe vm-install``
  and the SDK's ``provision.py`` write the default SR's uuid into the spec first); a VDI
  (``VDI.create``: name "", description "Created by template provisioner", ``sm_config``
  ``vmhint`` = the VM's uuid) and a VBD (``VBD.create``: the spec's device, bootable,
  RW, ``unpluggable`` unless the type is ``system``, ``other_config:owner``) per disk, the
  VDI then named after the VBD's userdevice; a ``postinstall`` script outside
  ``/opt/xensource/packages/post-install-scripts`` is ``PERMISSION_DENIED ["illegal
  provision script <s>"]`` (a whitelisted one is not run: the simulator has no dom0);
  finally ``disks`` and ``postinstall`` leave ``other_config``.
* ``xapi_vm_helpers.ml`` ``destroy`` (after ``with_vm_operation destroy``): children
  re-parented, blobs destroyed, ``VM_CANNOT_DELETE_DEFAULT_TEMPLATE`` for
  ``other_config:default_template=true``, appliance cleared, the VBDs (and their metrics),
  VIFs, VGPUs, VM_metrics and VM_guest_metrics removed, the VM out of its PCIs'
  ``attached_VMs``. VDIs stay; snapshots keep their (now dangling) ``snapshot_of``.
* ``xapi_vm_helpers.ml`` ``allowed_VBD_devices`` (``VM.get_allowed_VBD_devices``): 7.0
  disk numbers 0..254 (HVM and PV alike; 0..255 for a PV control domain); 6.5 SP1 0..15
  for PV and for HVM guests whose guest metrics report ``PV_drivers_version``, 0..3 for
  other HVM guests; minus every reading of every VBD's ``device`` and ``userdevice``.
"""

from __future__ import annotations

import re

from defusedxml import ElementTree

from ..datamodel import NULL_REF
from ..dispatch import _generic_create, api
from ..errors import Failure
from . import common as c
from . import storage_vm
from .network_vif import copy_vif, destroy_vm_vifs
from .storage_vbd import create_vbd, of_disk_number, used_devices
from .storage_vdi import create_vdi
from .vm_lifecycle import _copied_fields, _get, _op, refresh_allowed

POST_INSTALL_SCRIPTS_DIR = "/opt/xensource/packages/post-install-scripts"
VDI_TYPES = ("system", "user", "ephemeral", "suspend", "crashdump")
_vm_create = _generic_create("VM")


def _seeded(other: dict, seed: str) -> dict:
    """``other_config`` with ``mac_seed`` = ``seed``: replaced in place, else prepended."""
    if "mac_seed" in other:
        return {k: (seed if k == "mac_seed" else v) for k, v in other.items()}
    return {"mac_seed": seed, **other}


@api("VM.create")
def vm_create(call, record):
    """``Xapi_vm.create``: the generic constructor plus a ``mac_seed`` if none is given."""
    with call.db.lock:
        ref = _vm_create(call, record)
        other = call.db.get("VM", ref)["other_config"]
        if "mac_seed" not in other:
            call.db.set("VM", ref, "other_config", _seeded(other, call.world.ids.uuid()))
        refresh_allowed(call, ref)
        return ref


# -- clone and copy ---------------------------------------------------------------------------

_RESET = dict(
    blocked_operations={},
    ha_always_run=False,
    protection_policy=NULL_REF,
    is_snapshot_from_vmpp=False,
    appliance=NULL_REF,
    start_delay=0,
    shutdown_delay=0,
    order=0,
    suspend_SR=NULL_REF,
    version=0,
    blobs={},
    transportable_snapshot_id="",
    snapshot_info={},
    snapshot_metadata="",
    domarch="",
    is_default_template=False,
)


def _copy_guest_metrics(call, gm) -> str:
    """``Xapi_vm_helpers.copy_guest_metrics``: a new row with the same values."""
    db = call.db
    row = db.tables["VM_guest_metrics"].get(gm) if gm != NULL_REF else None
    if row is None:
        return NULL_REF
    fields = {k: v for k, v in row.items() if k != "uuid"}
    return call.world.new_row(db, "VM_guest_metrics", **fields)


def copy_vm(call, vm, new_name, disk_op, sr=NULL_REF) -> str:
    """``Xapi_vm_clone.clone`` for ``disk_op`` "clone" or "copy" (module docstring)."""
    db, world = call.db, call.world
    row = _get(call, vm)
    fields, metrics, _ = _copied_fields(call, row)
    if db.exists("VM_metrics", row["metrics"]):
        mrow = db.get("VM_metrics", row["metrics"])
        db.update("VM_metrics", metrics, **{k: v for k, v in mrow.items() if k != "uuid"})
    other = _seeded(dict(row["other_config"]), world.ids.uuid())
    other = {k: v for k, v in other.items() if k not in ("default_template", "xensource_internal")}
    if row["is_a_template"] and "base_template_name" not in other:
        other = {"base_template_name": row["name_label"], **other}
    vm_fields = db.schema.classes["VM"].fields
    fields.update({k: v for k, v in _RESET.items() if k in vm_fields})
    power = "Suspended" if row["power_state"] == "Suspended" else "Halted"
    fields.update(
        name_label=new_name,
        is_a_template=row["is_a_template"],
        is_a_snapshot=False,
        snapshot_of=NULL_REF,
        power_state=power,
        resident_on=NULL_REF,
        domid=-1,
        metrics=metrics,
        current_operations={},
        parent=NULL_REF,
        guest_metrics=_copy_guest_metrics(call, row["guest_metrics"]),
        scheduled_to_be_resident_on=NULL_REF,
        allowed_operations=[],
        other_config=other,
        suspend_VDI=NULL_REF,
        last_boot_CPU_flags=dict(row["last_boot_CPU_flags"]),
    )
    if "snapshot_time" in vm_fields:
        fields["snapshot_time"] = db.schema.classes["VM"].defaults()["snapshot_time"]
    ref = world.new_row(db, "VM", **fields)
    storage_vm.copy_disks(call, vm, ref, disk_op, sr)
    for vif in list(row["VIFs"]):
        if db.exists("VIF", vif):
            copy_vif(call, vif, ref, preserve_mac=False)
    if row["is_a_snapshot"] and power != "Halted":
        # xapi_vm.ml clone/copy: hard_shutdown of the new VM
        storage_vm.drop_suspend_image(call, ref)
        db.set("VM", ref, "power_state", "Halted")
    refresh_allowed(call, ref)
    return ref


@api("VM.clone")
def clone(call, vm, new_name):
    with call.db.lock, _op(call, vm, "clone") as op:
        op.mark()
        return copy_vm(call, vm, new_name, "clone")


@api("VM.copy")
def copy(call, vm, new_name, sr):
    """``Xapi_vm.copy`` inside ``with_vm_operation copy`` (module docstring)."""
    db = call.db
    with db.lock, _op(call, vm, "copy") as op:
        target = sr if db.exists("SR", sr) else NULL_REF
        if target != NULL_REF and db.get("SR", target)["content_type"] == "iso":
            raise Failure("OPERATION_NOT_ALLOWED", "Cannot copy a VM's disks to an ISO SR")
        op.mark()
        return copy_vm(call, vm, new_name, "copy", target)


# -- provision --------------------------------------------------------------------------------

_INT64 = re.compile(r"-?(?:0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|[0-9][0-9_]*)")


def ocaml_int64(s: str) -> int:
    """``Int64.of_string``: decimal, 0x/0o/0b, underscores, a leading minus; ValueError
    otherwise or out of range."""
    if not _INT64.fullmatch(s):
        raise ValueError(s)
    neg = s.startswith("-")
    body = s[1:] if neg else s
    base = {"x": 16, "o": 8, "b": 2}.get(body[1:2].lower(), 10) if body[:1] == "0" else 10
    digits = body[2:] if base != 10 else body
    n = int(digits.replace("_", ""), base)
    n = -n if neg else n
    if base == 10 and not -(1 << 63) <= n < (1 << 63):
        raise ValueError(s)
    if base != 10:  # OCaml wraps non-decimal literals up to 2^64 - 1
        if not -(1 << 64) < n < (1 << 64):
            raise ValueError(s)
        n = (n + (1 << 63)) % (1 << 64) - (1 << 63)
    return n


class ParseFailure(ValueError):
    pass


def provision_disks(spec: str) -> list[dict]:
    """``Xapi_templates.disks_of_xml``: ``<provision>`` (no attributes) holding only
    ``<disk>`` elements with ``device``, ``size``, ``sr``, ``bootable`` and an optional
    ``type`` (unknown or missing: ``system``). ParseFailure otherwise."""
    try:
        root = ElementTree.fromstring(spec)
    except Exception as e:  # noqa: BLE001 -- any XML error is xml-light's parse error
        raise ParseFailure(str(e)) from None
    if root.tag != "provision" or root.attrib or (root.text or "").strip():
        raise ParseFailure("not a provision element")
    disks = []
    for d in root:
        if d.tag != "disk" or len(d) or (d.text or "").strip() or (d.tail or "").strip():
            raise ParseFailure("not a disk element")
        a = d.attrib
        try:
            size = ocaml_int64(a["size"])
            disk = {
                "device": a["device"],
                "size": size,
                "sr": a["sr"],
                "bootable": a["bootable"] == "true",
            }
        except (KeyError, ValueError):
            raise ParseFailure("bad disk element") from None
        t = a.get("type")
        disk["type"] = t if t in VDI_TYPES else "system"
        disks.append(disk)
    return disks


def _sr_by_uuid(db, uuid: str) -> str:
    try:
        return db.by_uuid("SR", uuid)
    except Failure:
        raise Failure("UUID_INVALID", "sr", uuid) from None


@api("VM.provision")
def provision(call, vm):
    """``Xapi_vm.provision`` inside ``with_vm_operation provision`` (module docstring).
    Unlike xapi, a failure leaves ``is_a_template`` as it was (a failed call changes
    nothing)."""
    db = call.db
    with db.lock, _op(call, vm, "provision") as op:
        row = _get(call, vm)
        other = row["other_config"]
        try:
            disks = provision_disks(other["disks"]) if "disks" in other else []
        except ParseFailure:
            raise Failure("INTERNAL_ERROR", "Xapi_templates.Parse_failure") from None
        op.mark()
        db.set("VM", vm, "is_a_template", False)
        if db.exists("VM_metrics", row["metrics"]):  # set_is_a_template false: "install time"
            db.set("VM_metrics", row["metrics"], "install_time", call.world.clock.now_ts())
        script = other.get("postinstall")
        if not disks and script is None:
            refresh_allowed(call, vm)
            return
        for d in disks:
            sr = _sr_by_uuid(db, d["sr"])
            vdi = create_vdi(
                call,
                sr,
                name_label="",
                name_description="Created by template provisioner",
                virtual_size=d["size"],
                type=d["type"],
                sharable=False,
                read_only=False,
                other_config={},
                xenstore_data={},
                sm_config={"vmhint": row["uuid"]},
                tags=[],
            )
            vbd = create_vbd(
                call,
                {
                    "VM": vm,
                    "VDI": vdi,
                    "userdevice": d["device"],
                    "bootable": d["bootable"],
                    "mode": "RW",
                    "type": "Disk",
                    "unpluggable": d["type"] != "system",
                    "empty": False,
                    "qos_algorithm_type": "",
                    "qos_algorithm_params": {},
                    "other_config": {"owner": ""},
                },
            )
            db.set("VDI", vdi, "name_label", db.get("VBD", vbd)["userdevice"])
        if script is not None and not _whitelisted(script):
            raise Failure("PERMISSION_DENIED", f"illegal provision script {script}")
        other = {
            k: v
            for k, v in db.get("VM", vm)["other_config"].items()
            if k not in ("disks", "postinstall")
        }
        db.set("VM", vm, "other_config", other)
        refresh_allowed(call, vm)


def _whitelisted(script: str) -> bool:
    """``Xapi_templates_install.is_whitelisted``."""
    dirname = script.rsplit("/", 1)[0] if "/" in script else "."
    return dirname == POST_INSTALL_SCRIPTS_DIR and re.fullmatch(r"[a-z/-]*", script) is not None


# -- destroy -----------------------------------------------------------------------------------


def destroy_cascade(call, vm) -> None:
    """``Xapi_vm_helpers.destroy`` (module docstring); the caller has run the checks."""
    db = call.db
    row = _get(call, vm)
    for child in list(row["children"]):
        if db.exists("VM", child):
            db.set("VM", child, "parent", row["parent"])
    for blob in (row.get("blobs") or {}).values():
        if db.exists("blob", blob):
            db.remove("blob", blob)
    if vm_default_template(row):
        raise Failure("VM_CANNOT_DELETE_DEFAULT_TEMPLATE")
    if row.get("appliance", NULL_REF) != NULL_REF:
        db.set("VM", vm, "appliance", NULL_REF)
    for vbd in list(row["VBDs"]):
        vrow = db.tables["VBD"].get(vbd)
        if (
            vrow is not None
            and vrow.get("metrics", NULL_REF) != NULL_REF
            and db.exists("VBD_metrics", vrow["metrics"])
        ):
            db.remove("VBD_metrics", vrow["metrics"])
    storage_vm.storage_on_vm_destroy(call, vm)
    destroy_vm_vifs(call, vm)
    for vgpu in list(row.get("VGPUs") or []):
        if db.exists("VGPU", vgpu):
            db.remove("VGPU", vgpu)
    for pci in list(row.get("attached_PCIs") or []):
        if db.exists("PCI", pci):
            att = db.get("PCI", pci)["attached_VMs"]
            db.set("PCI", pci, "attached_VMs", [v for v in att if v != vm])
    for cls, field in (("VM_metrics", "metrics"), ("VM_guest_metrics", "guest_metrics")):
        if db.exists(cls, row[field]):
            db.remove(cls, row[field])
    db.remove("VM", vm)


def vm_default_template(row) -> bool:
    return row["other_config"].get("default_template") == "true"


@api("VM.destroy")
def destroy(call, self):
    """``with_vm_operation destroy`` (Halted or Suspended; not a default template, not
    dom0), then ``Xapi_vm.destroy``."""
    with call.db.lock, _op(call, self, "destroy") as op:
        op.mark()
        destroy_cascade(call, self)


# -- devices -----------------------------------------------------------------------------------


def allowed_vbd_disk_numbers(db, vm, guest_metrics) -> list[str]:
    """``VM.get_allowed_VBD_devices`` (module docstring) as disk numbers."""
    row = db.get("VM", vm)
    hvm = c.is_hvm(row)
    if not hvm and row["is_control_domain"]:
        top = 255
    elif db.schema.release == "cream":
        pv_drivers = bool((guest_metrics or {}).get("PV_drivers_version"))
        top = 3 if hvm and not pv_drivers else 15
    else:
        top = 254
    used = set(used_devices(db, vm))
    return [str(n) for n in range(top + 1) if of_disk_number(hvm, n) not in used]


@api("VM.get_allowed_VBD_devices")
def get_allowed_vbd_devices(call, vm):
    db = call.db
    gm = c.vm_facts(call.world, db, db.get("VM", vm))["guest_metrics"]
    return allowed_vbd_disk_numbers(db, vm, gm)
