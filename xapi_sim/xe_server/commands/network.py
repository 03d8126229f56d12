"""The hand-written network commands: ``vif-create``, ``vif-destroy``, ``vif-move``,
``network-create``, ``network-destroy``, ``pif-plug``, ``pif-unplug``.

Mirrors xen-api Dundee ``cli_operations.ml`` (``vif_create``, ``vif_destroy``,
``net_create``, ``net_destroy``) and ``cli_frontend.ml`` (their specs and help texts);
``vif-move`` as xen-api ``v24.16.0`` (7.1 on: a release without ``VIF.move`` has no such
command).
"""

from __future__ import annotations

import random

from ...wire.ocaml import int64_of_string
from .spec import Cmd


def random_mac_local() -> str:
    """``Record_util.random_mac_local``: a random locally administered unicast MAC."""
    b = [random.randrange(256) for _ in range(6)]
    b[0] = (b[0] & 0xFE) | 0x02
    return ":".join(f"{x:02x}" for x in b)


def vif_create(ctx):
    mac = ctx.get("mac", "")
    if mac == "random":
        mac = random_mac_local()
    vm = ctx.call("VM.get_by_uuid", ctx.get("vm-uuid"))
    network = ctx.call("network.get_by_uuid", ctx.get("network-uuid"))
    mtu = ctx.call("network.get_MTU", network)
    record = {
        "device": ctx.get("device"),
        "network": network,
        "VM": vm,
        "MAC": mac,
        "MTU": mtu,
        "other_config": {},
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
        "locking_mode": "network_default",
        "ipv4_allowed": [],
        "ipv6_allowed": [],
    }
    vif = ctx.call("VIF.create", record)
    ctx.printer.lines([ctx.call("VIF.get_uuid", vif)])


def vif_destroy(ctx):
    ctx.call("VIF.destroy", ctx.call("VIF.get_by_uuid", ctx.get("uuid")))


def vif_move(ctx):
    """``Cli_operations.vif_move`` (xen-api ``v24.16.0``)."""
    vif = ctx.call("VIF.get_by_uuid", ctx.get("uuid"))
    network = ctx.call("network.get_by_uuid", ctx.get("network-uuid"))
    ctx.call("VIF.move", vif, network)


def net_create(ctx):
    mtu = int64_of_string(ctx.get("MTU")) if ctx.has("MTU") else 1500  # Int64.of_string
    record = {
        "name_label": ctx.get("name-label"),
        "name_description": ctx.get("name-description", ""),
        "MTU": str(mtu),
        "other_config": {},
        "tags": [],
    }
    net = ctx.call("network.create", record)
    ctx.printer.lines([ctx.call("network.get_uuid", net)])


def net_destroy(ctx):
    ctx.call("network.destroy", ctx.call("network.get_by_uuid", ctx.get("uuid")))


def pif_plug(ctx):
    ctx.call("PIF.plug", ctx.call("PIF.get_by_uuid", ctx.get("uuid")))


def pif_unplug(ctx):
    ctx.call("PIF.unplug", ctx.call("PIF.get_by_uuid", ctx.get("uuid")))


COMMANDS = {
    "pif-plug": Cmd(["uuid"], [], "Attempt to bring up a network interface.", pif_plug),
    "pif-unplug": Cmd(["uuid"], [], "Attempt to bring down a network interface.", pif_unplug),
    "vif-create": Cmd(
        ["device", "network-uuid", "vm-uuid"],
        ["mac"],
        "Create a VIF. Appropriate values for the device are listed in the parameter "
        "'allowed-VIF-devices' on the VM. If specified, the MAC parameter is of the form "
        "aa:bb:cc:dd:ee:ff. If MAC is not specified the server will choose an appropriate "
        "MAC automatically.",
        vif_create,
    ),
    "vif-destroy": Cmd(["uuid"], [], "Destroy a VIF.", vif_destroy),
    "vif-move": Cmd(
        ["uuid", "network-uuid"],
        [],
        "Move the VIF to another network.",
        vif_move,
        needs="VIF.move",
    ),
    "network-create": Cmd(
        ["name-label"], ["name-description", "MTU"], "Create a new network.", net_create
    ),
    "network-destroy": Cmd(["uuid"], [], "Delete an existing network.", net_destroy),
}
