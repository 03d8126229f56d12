"""Update guidances a host's start settles (XenServer 8 on; docs/certificates-updates.md).

xen-api v23.30.0 ``ocaml/xapi/xapi_host_helpers.ml`` ``consider_enabling_host_nolock``:
when xapi enables the host at its start, ``restart_toolstack`` leaves its
``pending_guidances``; after a system boot ``reboot_host`` and
``reboot_host_on_livepatch_failure`` leave too. Where the release has
``pending_guidances_recommended`` (24.x) the same values leave it.
"""

from __future__ import annotations

from .runtime import HostRuntime

_FIELDS = ("pending_guidances", "pending_guidances_recommended")


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
