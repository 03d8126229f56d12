"""``VDI.pool_migrate``: live storage migration of one disk within the pool.

Mirrors xen-api ``dundee-lcm`` ``message_forwarding.ml`` (``VDI.pool_migrate``: the VM of
the VDI's first VBD, ``VDI_NEEDS_VM_FOR_MIGRATE [vdi]`` if none, the VM's ``migrate_send``
operation around it) and ``xapi_vm_migrate.ml`` ``vdi_pool_migrate``: a ``migrate_send`` of
that VM with the VDI mapped to ``sr`` and its other disks to their own SRs, to the VM's
host if it sees every SR, else to the first host that can boot the VM and sees them
(``choose_host``); returns the VDI the VBD now uses. The disk moves as
``storage_motion.py`` moves disks.
"""

from __future__ import annotations

from ..datamodel import NULL_REF
from ..dispatch import api
from ..errors import Failure
from . import common as c
from . import storage_motion
from .vm_lifecycle import _move


def _sees(db, host, srs) -> bool:
    seen = {
        db.tables["PBD"][p]["SR"]
        for p in db.get("host", host)["PBDs"]
        if p in db.tables["PBD"] and db.tables["PBD"][p]["currently_attached"]
    }
    return set(srs) <= seen


def _dest_host(call, vm, row, srs) -> str:
    """``vdi_pool_migrate``: the VM's host if it sees every SR, else a host that can boot
    the VM and sees them (``choose_host``)."""
    db = call.db
    here = row["resident_on"]
    if here != NULL_REF and _sees(db, here, srs):
        return here
    for h in db.refs("host"):
        if not _sees(db, h, srs):
            continue
        try:
            c.assert_can_boot_here(call, vm, row, h, sr_check=False)
        except Failure:
            continue
        return h
    raise Failure("NO_HOSTS_AVAILABLE")


@api("VDI.pool_migrate")
def vdi_pool_migrate(call, vdi, sr, options):
    """Message forwarding's ``VDI.pool_migrate`` and ``Xapi_vm_migrate.vdi_pool_migrate``
    (module docstring)."""
    db = call.db
    with db.lock:
        row = db.get("VDI", vdi)
        db.get("SR", sr)
        vbds = [b for b in row["VBDs"] if db.exists("VBD", b)]
        if not vbds:
            raise Failure("VDI_NEEDS_VM_FOR_MIGRATE", vdi)
        vbd = vbds[0]
        vm = db.get("VBD", vbd)["VM"]
        with c.with_operation(call, "VM", vm, "migrate_send") as op:
            vm_row = db.get("VM", vm)
            disks = storage_motion.vm_disks(db, vm_row)
            vdi_map = {v: db.get("VDI", v)["SR"] for _, v in disks}
            vdi_map[vdi] = sr
            host = _dest_host(call, vm, vm_row, set(vdi_map.values()))
            moves = storage_motion.plan(call, vm, vm_row, host, vdi_map, {})
            if vm_row["power_state"] in ("Running", "Paused"):
                c.assert_resident_host_live(call, vm_row)
            op.mark()
            storage_motion.apply(call, moves)
            if vm_row["power_state"] in ("Running", "Paused") and host != vm_row["resident_on"]:
                _move(call, vm, host)
            c.refresh_vm_allowed(call.world, db, vm)
            return db.get("VBD", vbd)["VDI"]
