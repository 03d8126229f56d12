"""Storage motion within a pool: ``VM.migrate_send`` / ``VM.assert_can_migrate`` with a
``vdi_map`` to a host of the same pool, and ``VDI.pool_migrate``.

Mirrors xen-api ``dundee-lcm`` ``xapi_vm_migrate.ml`` (``assert_can_migrate`` intra-pool
branch, ``migrate_send'``, ``intra_pool_vdi_remap``, ``vdi_pool_migrate``) and
``message_forwarding.ml`` (``VDI.pool_migrate``):

* ``assert_can_migrate`` (intra-pool): a ``vif_map`` is ``OPERATION_NOT_ALLOWED ["VIF
  mapping is not allowed for intra-pool migration"]``; the boot check runs without its SR
  check (``do_sr_check:false``): the disks may move.
* ``migrate_send``: ``copy=true`` is ``OPERATION_NOT_ALLOWED ["Copy mode is disallowed on
  intra pool storage migration, try efficient alternatives e.g. VM.copy/clone."]``; every
  disk of the VM (not CDs, not empty drives) must be in the map (``VDI_NOT_IN_MAP
  [vdi]``); a disk with ``on_boot=reset`` refuses (``VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_
  OPERATION [vdi]``). Each disk mapped to another SR is mirrored: a new VDI on that SR
  (``VDI.create``'s checks and space rules, name, description, size, type, other_config,
  xenstore_data, tags, on_boot, allow_caching kept), the VBD re-pointed to it
  (``intra_pool_vdi_remap``), the source VDI destroyed. A disk mapped to its own SR stays.
  The simulator refuses a destination host without a plugged PBD for an SR the disks end
  on with ``VM_REQUIRES_SR [vm, sr]`` (xapi's storage layer fails the mirror there).
* ``VDI.pool_migrate`` is ``vdi_migrate.py``.

A suspended VM's image stays on its SR if the destination host sees it, else goes to the
pool's ``suspend_image_SR``, the host's ``suspend_image_sr`` or the default SR, as xapi
maps it. Not modelled: snapshots' disks stay where they are (xapi copies them to the
destination SR of the disk they are a snapshot of, or the default SR).
"""

from __future__ import annotations

from .. import install_storage as store
from ..datamodel import NULL_REF
from ..errors import Failure
from . import common as c
from .storage_vdi import create_vdi_like, remove_vdi

COPY_REFUSED = (
    "Copy mode is disallowed on intra pool storage migration, try efficient alternatives "
    "e.g. VM.copy/clone."
)
VIF_MAP_REFUSED = "VIF mapping is not allowed for intra-pool migration"


def assert_intra_pool(vif_map) -> None:
    """The storage-motion part of ``assert_can_migrate`` for an intra-pool destination."""
    if vif_map:
        raise Failure("OPERATION_NOT_ALLOWED", VIF_MAP_REFUSED)


def vm_disks(db, row) -> list:
    """``vdi_filter``: (VBD, VDI) of the VM's disks -- not CDs, not empty drives."""
    out = []
    for vbd in row["VBDs"]:
        b = db.tables["VBD"].get(vbd)
        if b is None or b["empty"] or b["type"] == "CD" or not db.exists("VDI", b["VDI"]):
            continue
        out.append((vbd, b["VDI"]))
    return out


def plan(call, vm, row, host, vdi_map, options) -> list:
    """The checks of ``migrate_send'`` before anything moves; returns the moves
    [(vbd, vdi, sr)] (disks whose SR changes)."""
    db = call.db
    if (options or {}).get("copy") == "true":
        raise Failure("OPERATION_NOT_ALLOWED", COPY_REFUSED)
    vdi_map = dict(vdi_map or {})
    disks = vm_disks(db, row)
    for _, vdi in disks:
        if vdi not in vdi_map:
            raise Failure("VDI_NOT_IN_MAP", vdi)
    for _, vdi in disks:
        if db.get("VDI", vdi)["on_boot"] == "reset":
            raise Failure("VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION", vdi)
    moves, final = [], set()
    for vbd, vdi in disks:
        sr = vdi_map[vdi]
        db.get("SR", sr)  # HANDLE_INVALID for a destination that is no SR
        final.add(sr)
        if db.get("VDI", vdi)["SR"] != sr:
            moves.append((vbd, vdi, sr))
    seen = {
        db.tables["PBD"][p]["SR"]
        for p in db.get("host", host)["PBDs"]
        if p in db.tables["PBD"] and db.tables["PBD"][p]["currently_attached"]
    }
    for sr in sorted(final - seen):
        raise Failure("VM_REQUIRES_SR", vm, sr)
    suspend = row.get("suspend_VDI", NULL_REF)
    if row["power_state"] == "Suspended" and db.exists("VDI", suspend):
        sr = db.get("VDI", suspend)["SR"]
        if sr not in seen:  # the image goes where the destination can read it
            dest = _suspend_destination(db, host)
            if dest == NULL_REF:
                raise Failure("VDI_NOT_IN_MAP", suspend)
            moves.append((None, suspend, dest))
    return moves


def _suspend_destination(db, host) -> str:
    """``migrate_send'``: the pool's ``suspend_image_SR``, else the destination host's
    ``suspend_image_sr``, else the pool's ``default_SR`` (NULL if none)."""
    pool = next(iter(db.tables["pool"].values()))
    for sr in (
        pool["suspend_image_SR"],
        db.get("host", host)["suspend_image_sr"],
        pool["default_SR"],
    ):
        if db.exists("SR", sr):
            return sr
    return NULL_REF


def apply(call, moves) -> dict:
    """Mirror each disk to its new SR and re-point its VBD; the source VDI goes. Returns
    {old VDI: new VDI}."""
    db = call.db
    out = {}
    for vbd, vdi, sr in moves:
        src = db.get("VDI", vdi)
        new = create_vdi_like(call, sr, src)
        db.update("VDI", new, sm_config=dict(src["sm_config"]))
        if vbd is None:  # a suspended VM's image
            for vm, vrow in db.rows("VM"):
                if vrow.get("suspend_VDI") == vdi:
                    db.set("VM", vm, "suspend_VDI", new)
        else:
            db.set("VBD", vbd, "VDI", new)
        remove_vdi(call, vdi)
        store.recompute_sr(db, sr)
        c.refresh_allowed(call.world, db, "VDI", new)
        c.refresh_allowed(call.world, db, "SR", sr)
        out[vdi] = new
    return out
