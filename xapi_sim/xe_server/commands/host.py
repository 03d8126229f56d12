"""The hand-written host commands: enable/disable, shutdown/reboot, evacuation, CPU info.

Mirrors xen-api Dundee ``cli_operations.ml`` (``host_disable``, ``host_evacuate``,
``host_get_vms_which_prevent_evacuation``, ``host_cpu_info``,
``host_get_server_certificate``...) and ``cli_frontend.ml``.
"""

from __future__ import annotations

from ...datamodel import NULL_REF
from ...wire.ocaml import int64_of_string
from ..errors import InternalExn
from ..ops import do_host_op, read_map_params
from ..records import Field, vm_record
from ..selectors import select_fields
from .spec import Cmd


def _host_call(msg):
    """A command calling ``host.<msg>(host)`` on each selected host."""

    def impl(ctx):
        do_host_op(ctx, lambda n, h: ctx.call(f"host.{msg}", h.ref), [])

    return impl


def host_enable(ctx):
    def op(n, h):
        ctx.call("host.remove_from_other_config", h.ref, "MAINTENANCE_MODE")
        ctx.call("host.enable", h.ref)

    do_host_op(ctx, op, [])


def host_set_hostname_live(ctx):
    """``Cli_operations.host_set_hostname_live``: the host by ``host-uuid``."""
    host = ctx.call("host.get_by_uuid", ctx.get("host-uuid"))
    ctx.call("host.set_hostname_live", host, ctx.get("host-name"))


def host_evacuate(ctx):
    network = NULL_REF
    if ctx.has("network-uuid"):
        network = ctx.call("network.get_by_uuid", ctx.get("network-uuid"))
    # an unparsable batch-size is OCaml's uncaught Failure "int_of_string"
    batch = int64_of_string(ctx.get("batch-size")) if ctx.has("batch-size") else 0
    do_host_op(
        ctx,
        lambda n, h: ctx.call("host.evacuate", h.ref, network, batch),
        ["network-uuid", "batch-size"],
        multiple=False,
    )


def host_get_vms_which_prevent_evacuation(ctx):
    host = ctx.call("host.get_by_uuid", ctx.get("uuid"))
    vms = ctx.call("host.get_vms_which_prevent_evacuation", host)
    for vm, error in vms.items():
        reason = ",".join(error)
        rec = vm_record(ctx, vm)

        def show_reason(r: str = reason) -> str:
            return r

        rec.fields.append(Field("reason", show_reason))
        selected = select_fields(ctx, [rec], ["uuid", "name-label", "reason"])[0]
        ctx.printer.table([[f.printed() for f in selected]])


def _cpu_info(ctx):
    """``host.get_cpu_info`` of ``uuid=`` or, without it, of the host the CLI talks to."""
    if ctx.has("uuid"):
        host = ctx.call("host.get_by_uuid", ctx.get("uuid"))
    else:
        host = ctx.call("session.get_this_host", ctx.session)
    return ctx.call("host.get_cpu_info", host)


def host_cpu_info(ctx):
    ctx.printer.table([list(_cpu_info(ctx).items())])


def host_get_cpu_features(ctx):
    info = _cpu_info(ctx)
    if "features" not in info:
        raise InternalExn("Not_found")
    ctx.printer.msg(info["features"])


def host_get_server_certificate(ctx):
    """``host_get_server_certificate``: one host (a selector matching several is an
    error), its certificate printed as one message."""
    do_host_op(
        ctx,
        lambda n, h: ctx.printer.msg(ctx.call("host.get_server_certificate", h.ref)),
        [],
        multiple=False,
    )


def host_set_power_on_mode(ctx):
    """``host_set_power_on_mode``: ``power-on-config:k=v`` as the map, both parameters left
    out of the host selection."""
    mode = ctx.get("power-on-mode")
    config = read_map_params(ctx, "power-on-config")
    do_host_op(
        ctx,
        lambda n, h: ctx.call("host.set_power_on_mode", h.ref, mode, config),
        ["power-on-mode", "power-on-config"],
    )


def host_call_plugin(ctx):
    """``host_call_plugin``: the host by ``host-uuid``, ``args:k=v`` as the map; the result
    printed as a one-line list."""
    host = ctx.call("host.get_by_uuid", ctx.get("host-uuid"))
    args = read_map_params(ctx, "args")
    result = ctx.call("host.call_plugin", host, ctx.get("plugin"), ctx.get("fn"), args)
    ctx.printer.lines([result])


_SEL = ["Host_selectors"]

COMMANDS = {
    "host-disable": Cmd([], [], "Disable the XE host.", _host_call("disable"), _SEL),
    "host-enable": Cmd([], [], "Enable the XE host.", host_enable, _SEL),
    "host-shutdown": Cmd([], [], "Shutdown the XE host.", _host_call("shutdown"), _SEL),
    "host-reboot": Cmd([], [], "Reboot the XE host.", _host_call("reboot"), _SEL),
    "host-cpu-info": Cmd(
        [], ["uuid"], "Lists information about the host's physical CPUs.", host_cpu_info
    ),
    "host-get-cpu-features": Cmd(
        [],
        ["uuid"],
        "Prints a hexadecimal representation of the host's physical-CPU features.",
        host_get_cpu_features,
    ),
    "host-power-on": Cmd([], [], "Power on the XE host.", _host_call("power_on"), _SEL),
    "host-set-power-on-mode": Cmd(
        ["power-on-mode"],
        ["power-on-config"],
        "Sets the power-on mode for the XE host",
        host_set_power_on_mode,
        _SEL,
    ),
    "host-call-plugin": Cmd(
        ["host-uuid", "plugin", "fn"],
        ["args:"],
        "Calls the function within the plugin on the given host with optional arguments.",
        host_call_plugin,
    ),
    "host-get-server-certificate": Cmd(
        [], [], "Get the installed server SSL certificate.", host_get_server_certificate, _SEL
    ),
    "host-evacuate": Cmd(
        [], ["network-uuid", "batch-size"], "Migrate all VMs off a host.", host_evacuate, _SEL
    ),
    "host-set-hostname-live": Cmd(
        ["host-uuid", "host-name"],
        [],
        "Sets the host name to the specified string.  Both the API and lower-level system "
        "hostname are changed.",
        host_set_hostname_live,
        _SEL,
    ),
    "host-get-vms-which-prevent-evacuation": Cmd(
        ["uuid"],
        [],
        "Return a list of VMs which prevent the evacuation of a specific host "
        "and display reasons for each one.",
        host_get_vms_which_prevent_evacuation,
    ),
}
