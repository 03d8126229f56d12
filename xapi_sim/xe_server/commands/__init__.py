"""The ``xe`` command table: every command's spec and implementation.

The hand-written commands live with their class (``vm.py``, ``vm_devices.py``,
``lifecycle.py`` -- clones, snapshots, uninstall --, ``host.py``, ``pool.py``,
``storage.py``, ``network.py``, ``event.py``, ``appliance.py``, ``simple.py`` -- one call on
one object --), each module listing its specs in ``COMMANDS``; ``generic.py`` generates the
``<class>-list`` / ``-param-*`` commands of every class that has a CLI record. Mirrors
xen-api Dundee ``cli_frontend.ml`` (``cmdtable_data``) and ``cli_operations.ml``.
"""

from __future__ import annotations

from . import (
    appliance,
    event,
    host,
    lifecycle,
    network,
    pool,
    simple,
    storage,
    storage_cbt,
    system_status,
    transfer,
    vm,
    vm_devices,
)
from .generic import ClassCommands
from .spec import Cmd

GENERATED = [
    ClassCommands(
        "pool", "pool", [], ["uuid", "name-label", "name-description", "master", "default-SR"]
    ),
    ClassCommands("vm", "VM", [("is-a-template", "false")], ["name-label", "uuid", "power-state"]),
    ClassCommands(
        "template",
        "VM",
        [("is-a-template", "true"), ("is-a-snapshot", "false")],
        ["name-label", "name-description", "uuid"],
    ),
    ClassCommands(
        "snapshot",
        "VM",
        [("is-a-snapshot", "true")],
        ["name-label", "name-description", "uuid", "snapshot_of", "snapshot_time"],
    ),
    ClassCommands("host", "host", [], ["uuid", "name-label", "name-description"]),
    ClassCommands("host-cpu", "host_cpu", [], ["uuid", "number", "vendor", "speed", "utilisation"]),
    ClassCommands("message", "message", [], []),
    ClassCommands(
        "pif", "PIF", [], ["uuid", "device", "VLAN", "mac", "network-uuid", "currently-attached"]
    ),
    ClassCommands("vif", "VIF", [], ["uuid", "device", "vm-uuid", "network-uuid"]),
    ClassCommands("network", "network", [], ["uuid", "name-label", "name-description", "bridge"]),
    ClassCommands(
        "vdi",
        "VDI",
        [],
        [
            "uuid",
            "name-label",
            "name-description",
            "virtual-size",
            "read-only",
            "sharable",
            "sr-uuid",
        ],
    ),
    ClassCommands(
        "vbd", "VBD", [], ["uuid", "vm-uuid", "vm-name-label", "vdi-uuid", "device", "empty"]
    ),
    ClassCommands(
        "sr", "SR", [], ["uuid", "name-label", "name-description", "host", "type", "content-type"]
    ),
    ClassCommands(
        "pbd", "PBD", [], ["uuid", "host-uuid", "sr-uuid", "device-config", "currently-attached"]
    ),
    ClassCommands("appliance", "VM_appliance", [], []),
]


def _build_table() -> dict:
    t = {
        **pool.COMMANDS,
        **host.COMMANDS,
        **vm.COMMANDS,
        **vm_devices.COMMANDS,
        **lifecycle.COMMANDS,
        **storage.COMMANDS,
        **storage_cbt.COMMANDS,
        **network.COMMANDS,
        **event.COMMANDS,
        **transfer.COMMANDS,
        **system_status.COMMANDS,
        **appliance.COMMANDS,
        **simple.COMMANDS,
    }
    for g in GENERATED:
        t.update(g.commands())
    return t


# built at import (a few template records): no lazy global for threads to race on
TABLE = _build_table()


def table() -> dict:
    """Command name -> ``Cmd``."""
    return TABLE


__all__ = ["Cmd", "GENERATED", "TABLE", "table"]
