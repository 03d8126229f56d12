"""The hand-written pool commands: ``pool-join`` and ``pool-eject`` (with its confirmation).

Mirrors xen-api Dundee ``cli_operations.ml`` (``pool_join``, ``pool_eject``) and
``cli_frontend.ml``.
"""

from __future__ import annotations

from ...errors import Failure
from ...wire import cliproto
from .. import render as R
from ..ops import user_says_yes
from .spec import Cmd

FUSE_TIME = 10.0  # Xapi_globs.fuse_time: the delay printed by pool-join / pool-eject


def pool_join(ctx):
    args = (ctx.get("master-address"), ctx.get("master-username"), ctx.get("master-password"))
    try:
        if ctx.bool_param("force"):
            ctx.call("pool.join_force", *args)
        else:
            ctx.call("pool.join", *args)
        ctx.printer.lines(
            [
                "Host agent will restart and attempt to join pool in "
                f"{R.ocaml_float(FUSE_TIME)} seconds..."
            ]
        )
    except Failure as f:
        if f.code != "JOINING_HOST_CONNECTION_FAILED":
            raise
        ctx.printer.lines(
            [
                "Host cannot contact destination host: connection refused.",
                "Check destination host has services running and accessible from this host.",
            ]
        )


def _vdis_lost(ctx, host) -> list:
    """The VDIs of SRs only ``host`` sees (what ejecting it destroys), newest first; every
    lookup that fails is skipped, as XAPI's warning does."""
    warnings: list[str] = []
    try:
        srs = []
        for pbd in ctx.call("host.get_PBDs", host):
            try:
                sr = ctx.call("PBD.get_SR", pbd)
                others = [ctx.call("PBD.get_host", p) for p in ctx.call("SR.get_PBDs", sr)]
                if not [o for o in others if o != host]:
                    srs.append(sr)
            except Exception:  # noqa: BLE001
                pass  # xapi_cli.ml ignores PBDs it cannot read ("with _ -> ()")
        for sr in srs:
            try:
                for vdi in ctx.call("SR.get_VDIs", sr):
                    try:
                        warnings.insert(
                            0,
                            f"VDI: {ctx.call('VDI.get_uuid', vdi)} "
                            f"({ctx.call('VDI.get_name_label', vdi)})",
                        )
                    except Exception:  # noqa: BLE001
                        pass  # xapi_cli.ml ignores VDIs it cannot read ("with _ -> ()")
            except Exception:  # noqa: BLE001
                pass  # xapi_cli.ml ignores SRs it cannot read ("with _ -> ()")
    except Exception:  # noqa: BLE001
        warnings = []
    return warnings


def pool_eject(ctx):
    host = ctx.call("host.get_by_uuid", ctx.get("host-uuid"))
    force = ctx.bool_param("force")

    def go():
        ctx.call("pool.eject", host)
        ctx.printer.lines(
            [
                "Specified host will attempt to restart as a master of a new pool "
                f"in {R.ocaml_float(FUSE_TIME)} seconds..."
            ]
        )

    if force:
        return go()
    warnings = _vdis_lost(ctx, host)
    ctx.send(
        cliproto.Print(
            "WARNING: Ejecting a host from the pool will reinitialise that host's local SRs."
        )
    )
    ctx.send(cliproto.Print("WARNING: Any data contained with the local SRs will be lost."))
    if warnings:
        ctx.send(cliproto.Print("The following VDI objects will be destroyed:"))
        for w in warnings:
            ctx.send(cliproto.Print(w))
    if user_says_yes(ctx):
        go()


COMMANDS = {
    "pool-join": Cmd(
        ["master-address", "master-username", "master-password"],
        ["force"],
        "Instruct host to join an existing pool.",
        pool_join,
    ),
    "pool-eject": Cmd(
        ["host-uuid"], [], "Instruct host to leave an existing pool.", pool_eject, with_fd=True
    ),
}
