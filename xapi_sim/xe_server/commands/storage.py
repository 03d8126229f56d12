"""The hand-written storage commands: ``sr-create``, ``-introduce``, ``-destroy``,
``-forget``, ``-scan``, ``pbd-create``/``-destroy``/``-plug``/``-unplug``, ``vdi-create``,
``-destroy``, ``-forget``, ``-resize``, ``-clone``, ``-snapshot``, ``-copy``,
``-pool-migrate``, ``vbd-create``, ``-destroy``, ``-insert``, ``-eject``, ``-plug``,
``-unplug``.

Mirrors xen-api Dundee ``cli_operations.ml`` (``sr_create``, ``parse_host_uuid``,
``parse_device_config``, ``vdi_create``, ``vdi_type_of_string``, ``vbd_create``,
``vbd_unplug``...) and ``cli_frontend.ml`` (their specs and help texts). Every command makes
the same XAPI calls as the real one, so refusals are the API's.
"""

from __future__ import annotations

import time

from ...datamodel import NULL_REF
from ...errors import Failure
from ...wire import cliproto
from ..errors import CliFailure
from ..ops import read_map_params
from ..values import bytes_of_string
from .spec import Cmd


def _by_uuid(ctx, cls, key="uuid"):
    return ctx.call(f"{cls}.get_by_uuid", ctx.get(key))


def parse_host_uuid(ctx, default_master=True):
    """``parse_host_uuid``: ``host-uuid=``, else the master when standalone or asked."""
    if ctx.has("host-uuid"):
        return ctx.call("host.get_by_uuid", ctx.get("host-uuid"))
    standalone = len(ctx.call("host.get_all")) == 1
    if standalone or default_master:
        pool = ctx.call("pool.get_all")[0]
        return ctx.call("pool.get_master", pool)
    raise CliFailure("Required parameter not found: host-uuid")


def sr_create(ctx):
    shared = ctx.bool_param("shared")
    host = parse_host_uuid(ctx, default_master=shared)
    try:
        size = bytes_of_string("physical-size", ctx.get("physical-size"))
    except Exception:  # noqa: BLE001 -- "with _ -> 0L"
        size = 0
    device_config = read_map_params(ctx, "device-config")
    sm_config = read_map_params(ctx, "sm-config")
    sr = ctx.call(
        "SR.create",
        host,
        device_config,
        str(size),
        ctx.get("name-label"),
        "",
        ctx.get("type"),
        ctx.get("content-type", ""),
        shared,
        sm_config,
    )
    ctx.send(cliproto.Print(ctx.call("SR.get_uuid", sr)))


def sr_introduce(ctx):
    uuid = ctx.get("uuid")
    ctx.call(
        "SR.introduce",
        uuid,
        ctx.get("name-label"),
        "",
        ctx.get("type"),
        ctx.get("content-type", ""),
        ctx.bool_param("shared"),
        read_map_params(ctx, "sm-config"),
    )
    ctx.printer.lines([uuid])


def sr_destroy(ctx):
    ctx.call("SR.destroy", _by_uuid(ctx, "SR"))


def sr_forget(ctx):
    ctx.call("SR.forget", _by_uuid(ctx, "SR"))


def sr_scan(ctx):
    ctx.call("SR.scan", _by_uuid(ctx, "SR"))


def pbd_create(ctx):
    host = ctx.call("host.get_by_uuid", ctx.get("host-uuid"))
    sr = ctx.call("SR.get_by_uuid", ctx.get("sr-uuid"))
    record = {
        "host": host,
        "SR": sr,
        "device_config": read_map_params(ctx, "device-config"),
        "other_config": {},
    }
    pbd = ctx.call("PBD.create", record)
    ctx.printer.lines([ctx.call("PBD.get_uuid", pbd)])


def pbd_destroy(ctx):
    ctx.call("PBD.destroy", _by_uuid(ctx, "PBD"))


def pbd_plug(ctx):
    ctx.call("PBD.plug", _by_uuid(ctx, "PBD"))


def pbd_unplug(ctx):
    ctx.call("PBD.unplug", _by_uuid(ctx, "PBD"))


_VDI_TYPES = ("system", "user", "suspend", "crashdump")


def vdi_create(ctx):
    sr = _by_uuid(ctx, "SR", "sr-uuid")
    size = bytes_of_string("virtual-size", ctx.get("virtual-size"))
    vtype = ctx.get("type", "user")
    if vtype not in _VDI_TYPES:
        raise CliFailure(f"Unknown vdi type: {vtype}")
    record = {
        "name_label": ctx.get("name-label"),
        "name_description": "",
        "SR": sr,
        "virtual_size": str(size),
        "type": vtype,
        "sharable": ctx.bool_param("sharable"),
        "read_only": False,
        "other_config": {},
        "xenstore_data": {},
        "sm_config": read_map_params(ctx, "sm-config"),
        "tags": list(read_map_params(ctx, "tags")),
    }
    vdi = ctx.call("VDI.create", record)
    ctx.printer.lines([ctx.call("VDI.get_uuid", vdi)])


def vdi_destroy(ctx):
    ctx.call("VDI.destroy", _by_uuid(ctx, "VDI"))


def vdi_resize(ctx):
    vdi = _by_uuid(ctx, "VDI")
    size = bytes_of_string("disk-size", ctx.get("disk-size"))
    online = ctx.get("online") == "true"
    ctx.call("VDI.resize_online" if online else "VDI.resize", vdi, str(size))


def vdi_clone(ctx):
    vdi = _by_uuid(ctx, "VDI")
    new = ctx.call("VDI.clone", vdi, read_map_params(ctx, "driver-params"))
    if ctx.has("new-name-label"):
        ctx.call("VDI.set_name_label", new, ctx.get("new-name-label"))
    if ctx.has("new-name-description"):
        ctx.call("VDI.set_name_description", new, ctx.get("new-name-description"))
    ctx.printer.lines([ctx.call("VDI.get_uuid", new)])


def vdi_copy(ctx):
    vdi = _by_uuid(ctx, "VDI")
    base = _by_uuid(ctx, "VDI", "base-vdi-uuid") if ctx.has("base-vdi-uuid") else NULL_REF
    has_sr, has_into = ctx.has("sr-uuid"), ctx.has("into-vdi-uuid")
    if has_sr == has_into:
        raise CliFailure(
            "Please specify one but not both of: a destination sr-uuid (I will create a fresh "
            "VDI); or a destination into-vdi-uuid (I will copy the blocks into this VDI)"
        )
    sr = _by_uuid(ctx, "SR", "sr-uuid") if has_sr else NULL_REF
    into = _by_uuid(ctx, "VDI", "into-vdi-uuid") if has_into else NULL_REF
    new = ctx.call("VDI.copy", vdi, sr, base, into)
    ctx.printer.lines([ctx.call("VDI.get_uuid", new)])


def vdi_pool_migrate(ctx):
    vdi = _by_uuid(ctx, "VDI")
    sr = _by_uuid(ctx, "SR", "sr-uuid")
    new = ctx.call("VDI.pool_migrate", vdi, sr, {})  # "no options implemented yet"
    ctx.printer.lines([ctx.call("VDI.get_uuid", new)])


def vdi_forget(ctx):
    ctx.call("VDI.forget", _by_uuid(ctx, "VDI"))


def vdi_snapshot(ctx):
    vdi = _by_uuid(ctx, "VDI")
    new = ctx.call("VDI.snapshot", vdi, read_map_params(ctx, "driver-params"))
    ctx.printer.lines([ctx.call("VDI.get_uuid", new)])


def vbd_create(ctx):
    vm = _by_uuid(ctx, "VM", "vm-uuid")
    empty = not ctx.has("vdi-uuid")
    vdi = NULL_REF if empty else _by_uuid(ctx, "VDI", "vdi-uuid")
    bootable = ctx.bool_param("bootable")
    mode = "RW"
    if ctx.has("mode"):
        m = ctx.get("mode").lower()
        if m not in ("ro", "rw"):
            raise CliFailure(f'Unknown mode: {ctx.get("mode")} (should be "ro" or "rw"')
        mode = m.upper()
    vtype = "Disk"
    if ctx.has("type"):
        t = ctx.get("type").lower()
        if t not in ("cd", "disk"):
            raise CliFailure(f'Unknown type: {ctx.get("type")} (should be "cd" or "disk"')
        vtype = "CD" if t == "cd" else "Disk"
    unpluggable = ctx.bool_param("unpluggable", default=True)
    if vtype == "Disk" and empty:
        raise CliFailure("Empty VBDs can only be made for type=CD")
    record = {
        "VM": vm,
        "VDI": vdi,
        "userdevice": ctx.get("device"),
        "bootable": bootable,
        "mode": mode,
        "type": vtype,
        "unpluggable": unpluggable,
        "empty": empty,
        "other_config": {},
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
    }
    vbd = ctx.call("VBD.create", record)
    ctx.printer.lines([ctx.call("VBD.get_uuid", vbd)])


def vbd_destroy(ctx):
    ctx.call("VBD.destroy", _by_uuid(ctx, "VBD"))


def vbd_insert(ctx):
    vbd = _by_uuid(ctx, "VBD")
    ctx.call("VBD.insert", vbd, _by_uuid(ctx, "VDI", "vdi-uuid"))


def vbd_eject(ctx):
    ctx.call("VBD.eject", _by_uuid(ctx, "VBD"))


def vbd_plug(ctx):
    ctx.call("VBD.plug", _by_uuid(ctx, "VBD"))


def vbd_unplug(ctx):
    vbd = _by_uuid(ctx, "VBD")
    timeout = 0.0
    if ctx.has("timeout"):
        try:
            timeout = float(ctx.get("timeout"))
        except ValueError:
            raise CliFailure("Failed to parse parameter 'timeout': expecting a float") from None
    force = ctx.bool_param("force")
    start = time.monotonic()
    try:
        ctx.call("VBD.unplug_force" if force else "VBD.unplug", vbd)
    except Failure as e:
        if e.code != "DEVICE_DETACH_REJECTED":
            raise
        # polling mode: the simulator's guests never reject a detach, so this waits only
        # if some other code path raised it
        while time.monotonic() - start < timeout:
            if not ctx.call("VBD.get_currently_attached", vbd):
                return
            time.sleep(min(1.0, timeout))
        raise


COMMANDS = {
    "sr-create": Cmd(
        ["name-label", "type"],
        ["host-uuid", "device-config:", "shared", "physical-size", "content-type", "sm-config:"],
        "Create an SR, also a PBD. the device-config parameters can be specified by e.g. "
        "device-config:foo=baa.",
        sr_create,
        with_fd=True,
    ),
    "sr-introduce": Cmd(
        ["name-label", "type", "uuid"],
        ["shared", "content-type"],
        "Introduces an SR (but does not create any PBDs).",
        sr_introduce,
    ),
    "sr-destroy": Cmd(["uuid"], [], "Destroy the SR.", sr_destroy),
    "sr-forget": Cmd(["uuid"], [], "Forget about the SR.", sr_forget),
    "sr-scan": Cmd(
        ["uuid"],
        [],
        "Force an SR scan, syncing database with VDIs present in underlying storage substrate.",
        sr_scan,
    ),
    "pbd-create": Cmd(
        ["host-uuid", "sr-uuid"],
        ["device-config:"],
        "Create a PBD. The read-only device-config parameter can only be set on creation in "
        "the following manner. To add a mapping of 'path' -> '/tmp', the command line should "
        "contain the argument device-config:path=/tmp",
        pbd_create,
    ),
    "pbd-destroy": Cmd(["uuid"], [], "Destroy the PBD.", pbd_destroy),
    "pbd-plug": Cmd(
        ["uuid"],
        [],
        "Attempt to plug in the PBD to the host. If this succeeds then the referenced SR "
        "(and the VDIs contained within) should be visible to the host.",
        pbd_plug,
    ),
    "pbd-unplug": Cmd(
        ["uuid"],
        [],
        "Attempt to unplug the PBD from the host. If this succeeds then the referenced SR "
        "(and the VDIs contained within) should not be visible to the host.",
        pbd_unplug,
    ),
    "vdi-create": Cmd(
        ["sr-uuid", "name-label", "virtual-size"],
        ["sm-config:", "sharable", "tags:", "type"],
        "Create a VDI. Type is 'system' 'user' 'suspend' or 'crashdump'.",
        vdi_create,
    ),
    "vdi-destroy": Cmd(["uuid"], [], "Destroy a VDI.", vdi_destroy),
    "vdi-resize": Cmd(["uuid", "disk-size"], ["online"], "Resize a VDI.", vdi_resize),
    "vdi-clone": Cmd(
        ["uuid"],
        ["driver-params-", "new-name-label", "new-name-description"],
        "Clone a specified VDI.",
        vdi_clone,
    ),
    "vdi-snapshot": Cmd(["uuid"], ["driver-params-"], "Snapshot a specified VDI.", vdi_snapshot),
    "vdi-copy": Cmd(
        ["uuid"],
        ["sr-uuid", "base-vdi-uuid", "into-vdi-uuid"],
        "Copy either a full VDI or the block differences between two VDIs either into a "
        "fresh VDI in a specified SR or into an existing VDI.",
        vdi_copy,
    ),
    "vdi-pool-migrate": Cmd(
        ["uuid", "sr-uuid"],
        [],
        "Migrate a VDI to a specified SR, while the VDI is attached to a running guest.",
        vdi_pool_migrate,
    ),
    "vdi-forget": Cmd(["uuid"], [], "Forget about a VDI.", vdi_forget),
    "vbd-create": Cmd(
        ["vm-uuid", "device"],
        ["vdi-uuid", "bootable", "type", "mode", "unpluggable"],
        "Create a VBD. Appropriate values for the device field are listed in the parameter "
        "'allowed-VBD-devices' on the VM. If no VDI is specified, an empty VBD will be "
        "created. The type parameter can be 'Disk' or 'CD', and the mode is 'RO' or 'RW'.",
        vbd_create,
    ),
    "vbd-destroy": Cmd(["uuid"], [], "Destroy a VBD.", vbd_destroy),
    "vbd-insert": Cmd(
        ["uuid", "vdi-uuid"],
        [],
        "Insert new media into the drive represented by a VBD.",
        vbd_insert,
    ),
    "vbd-eject": Cmd(
        ["uuid"], [], "Remove the media from the drive represented by a VBD.", vbd_eject
    ),
    "vbd-plug": Cmd(
        ["uuid"], [], "Attempt to attach the VBD while the VM is in the running state.", vbd_plug
    ),
    "vbd-unplug": Cmd(
        ["uuid"],
        ["timeout", "force"],
        "Attempt to detach the VBD while the VM is in the running state. If the optional "
        "argument 'timeout=N' is given then the command will wait for up to 'N' seconds for "
        "the unplug to complete. If the optional argument 'force' is given then it will be "
        "immediately unplugged.",
        vbd_unplug,
    ),
}

__all__ = ["COMMANDS", "parse_host_uuid", "read_map_params"]
