"""``xe vdi-enable-cbt``, ``vdi-disable-cbt``, ``vdi-data-destroy``,
``vdi-list-changed-blocks``: xen-api 1.249-lcm ``cli_frontend.ml`` (specs and help texts)
and ``cli_operations.ml`` (``vdi_enable_cbt``...: the VDI by uuid, then the API call; the
bitmap printed back to the client)."""

from __future__ import annotations

from ...wire import cliproto
from .spec import Cmd


def _vdi(ctx, key="uuid"):
    return ctx.call("VDI.get_by_uuid", ctx.get(key))


def vdi_enable_cbt(ctx):
    ctx.call("VDI.enable_cbt", _vdi(ctx))


def vdi_disable_cbt(ctx):
    ctx.call("VDI.disable_cbt", _vdi(ctx))


def vdi_data_destroy(ctx):
    ctx.call("VDI.data_destroy", _vdi(ctx))


def vdi_list_changed_blocks(ctx):
    vdi_from = _vdi(ctx, "vdi-from-uuid")
    vdi_to = _vdi(ctx, "vdi-to-uuid")
    ctx.send(cliproto.Print(ctx.call("VDI.list_changed_blocks", vdi_from, vdi_to)))


COMMANDS = {
    "vdi-enable-cbt": Cmd(["uuid"], [], "Enable changed block tracking on a VDI.", vdi_enable_cbt),
    "vdi-disable-cbt": Cmd(
        ["uuid"], [], "Disable changed block tracking on a VDI.", vdi_disable_cbt
    ),
    "vdi-data-destroy": Cmd(
        ["uuid"],
        [],
        "Delete the data of the VDI, but keep its changed block tracking metadata.",
        vdi_data_destroy,
    ),
    "vdi-list-changed-blocks": Cmd(
        ["vdi-from-uuid", "vdi-to-uuid"],
        [],
        "Write the changed blocks between the two given VDIs to the standard output as a "
        "base64-encoded bitmap string.",
        vdi_list_changed_blocks,
        with_fd=True,
    ),
}
