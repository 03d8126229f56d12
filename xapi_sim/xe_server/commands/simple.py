"""Commands that are one API call on one object named by uuid: ``vif-plug``, ``vif-unplug``,
``task-cancel``, ``pool-sync-database``.

Mirrors xen-api Dundee ``cli_operations.ml`` (``vif_plug``, ``vif_unplug``, ``task_cancel``,
``pool_sync_database``) and ``cli_frontend.ml`` (their specs and help texts).
"""

from __future__ import annotations

from .spec import Cmd


def _by_uuid(ctx, cls):
    return ctx.call(f"{cls}.get_by_uuid", ctx.get("uuid"))


def vif_plug(ctx):
    ctx.call("VIF.plug", _by_uuid(ctx, "VIF"))


def vif_unplug(ctx):
    vif = _by_uuid(ctx, "VIF")
    ctx.call("VIF.unplug_force" if ctx.bool_param("force") else "VIF.unplug", vif)


def task_cancel(ctx):
    ctx.call("task.cancel", _by_uuid(ctx, "task"))


def pool_sync_database(ctx):
    ctx.call("pool.sync_database")


COMMANDS = {
    "vif-plug": Cmd(
        ["uuid"], [], "Attempt to attach the VIF while the VM is in the running state.", vif_plug
    ),
    "vif-unplug": Cmd(
        ["uuid"],
        ["force"],
        "Attempt to detach the VIF while the VM is in the running state.",
        vif_unplug,
    ),
    "task-cancel": Cmd(["uuid"], [], "Set a task to cancelling and return.", task_cancel),
    "pool-sync-database": Cmd(
        [],
        [],
        "Synchronise the current database across all hosts in the pool.",
        pool_sync_database,
    ),
}
