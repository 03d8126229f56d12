"""The vApp commands: ``appliance-create``, ``appliance-destroy``, ``appliance-start``,
``appliance-shutdown`` (``appliance-list`` / ``-param-*`` are generated from the record).

Mirrors xen-api Dundee ``cli_operations.ml`` (``vm_appliance_create``,
``vm_appliance_destroy``, ``vm_appliance_start``, ``vm_appliance_shutdown``) and
``cli_frontend.ml`` (their specs and help texts). ``appliance-recover`` and
``appliance-assert-can-be-recovered`` need disaster recovery, which is not simulated.
"""

from __future__ import annotations

from .spec import Cmd


def _appliance(ctx):
    return ctx.call("VM_appliance.get_by_uuid", ctx.get("uuid"))


def appliance_create(ctx):
    record = {
        "name_label": ctx.get("name-label"),
        "name_description": ctx.get("name-description", ""),
    }
    ref = ctx.call("VM_appliance.create", record)
    ctx.printer.lines([ctx.call("VM_appliance.get_uuid", ref)])


def appliance_destroy(ctx):
    ctx.call("VM_appliance.destroy", _appliance(ctx))


def appliance_start(ctx):
    paused = ctx.bool_param("paused")
    ctx.call("VM_appliance.start", _appliance(ctx), paused)


def appliance_shutdown(ctx):
    """``force=true``: hard_shutdown, else clean_shutdown (never ``VM_appliance.shutdown``)."""
    force = ctx.bool_param("force")
    ref = _appliance(ctx)
    ctx.call("VM_appliance.hard_shutdown" if force else "VM_appliance.clean_shutdown", ref)


COMMANDS = {
    "appliance-create": Cmd(
        ["name-label"], ["name-description"], "Create a VM appliance.", appliance_create
    ),
    "appliance-destroy": Cmd(["uuid"], [], "Destroy a VM appliance.", appliance_destroy),
    "appliance-start": Cmd(["uuid"], ["paused"], "Start a VM appliance.", appliance_start),
    "appliance-shutdown": Cmd(
        ["uuid"], ["force"], "Shut down all VMs in a VM appliance.", appliance_shutdown
    ),
}
