"""Update guidances a host's start settles, and a VM's that leave it (XenServer 8 on;
docs/certificates-updates.md).

xen-api v23.30.0 ``ocaml/xapi/xapi_host_helpers.ml`` ``consider_enabling_host_nolock``:
when xapi enables the host at its start, ``restart_toolstack`` leaves its
``pending_guidances``; after a system boot ``reboot_host`` and
``reboot_host_on_livepatch_failure`` leave too. Where the release has
``pending_guidances_recommended`` (24.x) the same values leave it.
"""

from __future__ import annotations

from .runtime import HostRuntime

_FIELDS = ("pending_guidances", "pending_guidances_recommended")
_VM_FIELDS = ("pending_guidances", "pending_guidances_recommended", "pending_guidances_full")


def at_start(db, h: HostRuntime, enabled: bool, system_boot: bool) -> None:
    if not enabled or "pending_guidances" not in db.schema.classes["host"].fields:
        return
    gone = {"restart_toolstack"}
    if system_boot:
        gone |= {"reboot_host", "reboot_host_on_livepatch_failure"}
    row = db.get("host", h.ref)
    changes = {
        f: [g for g in row[f] if g not in gone]
        for f in _FIELDS
        if f in row and any(g in gone for g in row[f])
    }
    if changes:
        db.update("host", h.ref, **changes)


def remove_vm_guidance(db, vm: str, *values: str) -> None:
    """``Xapi_vm_lifecycle.remove_pending_guidance`` (v24.19.2): ``values`` leave each of the
    VM's guidance sets the release has (``restart_device_model`` when a new domain or device
    model runs -- a boot, a reboot, a migration --, ``restart_vm`` when it halts)."""
    row = db.get("VM", vm)
    changes = {
        f: [g for g in row[f] if g not in values]
        for f in _VM_FIELDS
        if f in row and any(g in values for g in row[f])
    }
    if changes:
        db.update("VM", vm, **changes)
