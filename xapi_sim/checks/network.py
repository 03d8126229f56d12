"""VIF operation checks and PIF preconditions: xen-api Dundee ``xapi_vif_helpers.ml`` and
``xapi_pif.ml`` / ``xapi_network_attach_helpers.ml`` (pure).

A VIF has ``allowed_operations`` (attach, plug, unplug) filled from
:func:`vif_valid_operations`. A PIF has none in Dundee: its messages check preconditions
in their bodies, which :func:`pif_check_operation_error` transcribes per message.
"""

from __future__ import annotations

import socket
from typing import Any

from ..datamodel import NULL_REF
from . import vm as vm_checks
from .operations import (
    OTHER_OPERATION_IN_PROGRESS,
    VIF_OPERATION_STRINGS,
    ErrorTable,
    OpError,
    Row,
    Table,
    allowed_in,
    power_to_string,
    table_error,
)
from .storage import _hotplug_errors, _vm_current_op_errors

# -- VIF --------------------------------------------------------------------------------------

VIF_OPERATIONS = ("attach", "plug", "unplug")  # vif_operations in Dundee's datamodel.ml
VIF_ALL_OPERATIONS = VIF_OPERATIONS  # Xapi_vif_helpers.all_ops


def vif_valid_operations(
    vif_ref: str,
    row: Row,
    *,
    vm_row: Row,
    guest_metrics: Row | None = None,
    hvm: bool | None = None,
    detected_suffices: bool = False,
) -> Table:
    """``Xapi_vif_helpers.valid_operations`` (Dundee), in order:

    1. any operation in progress -> ``OTHER_OPERATION_IN_PROGRESS ["VIF", vif, <op>]`` for
       all (the first pair of ``current_operations``);
    2. ``DEVICE_ALREADY_ATTACHED`` (plug) / ``DEVICE_ALREADY_DETACHED`` (unplug) on a
       running VM, else ``VM_BAD_POWER_STATE [vm, "running", actual]`` for plug, unplug;
    3. the VM shutting down, suspending or pausing -> ``OPERATION_NOT_ALLOWED``;
    4. a running HVM guest needs drivers for hotplug (``can_use_hotplug_vif``,
       ``VM_MISSING_PV_DRIVERS``); from 7.1 (``detected_suffices``, 1.14-lcm
       ``xapi_vif_helpers.ml``) an ``unspecified`` claim with ``PV_drivers_detected`` is
       enough, as for VBDs.

    ``row`` may carry ``reserved`` (internal to xapi)."""
    vm_ref = row["VM"]
    current = list(row["current_operations"].items())
    t = ErrorTable(VIF_ALL_OPERATIONS)
    if current:
        op = current[0][1]
        t.set_errors(
            OTHER_OPERATION_IN_PROGRESS,
            ["VIF", vif_ref, VIF_OPERATION_STRINGS.get(op, op)],
            VIF_ALL_OPERATIONS,
        )
    power = vm_row["power_state"]
    plugged = row["currently_attached"] or row.get("reserved", False)
    if power == "Running" and plugged:
        t.set_errors("DEVICE_ALREADY_ATTACHED", [vif_ref], ["plug"])
    elif power == "Running":
        t.set_errors("DEVICE_ALREADY_DETACHED", [vif_ref], ["unplug"])
    else:
        t.set_errors(
            "VM_BAD_POWER_STATE",
            [vm_ref, power_to_string("Running"), power_to_string(power)],
            ["plug", "unplug"],
        )
    _vm_current_op_errors(t, vm_ref, vm_row, ["plug", "unplug"])
    hvm = vm_checks.booted_hvm(vm_row) if hvm is None else hvm
    _hotplug_errors(
        t,
        vm_ref,
        vm_row,
        guest_metrics,
        hvm,
        "can_use_hotplug_vif",
        "VIF",
        ["plug", "unplug"],
        detected_suffices,
    )
    return t.table


def vif_check_operation_error(vif_ref: str, row: Row, op: str, **facts: Any) -> OpError | None:
    return table_error(
        vif_valid_operations(vif_ref, row, **facts), op, "xapi_vif_helpers", VIF_OPERATION_STRINGS
    )


def vif_allowed_operations(vif_ref: str, row: Row, **facts: Any) -> list[str]:
    return allowed_in(vif_valid_operations(vif_ref, row, **facts), VIF_ALL_OPERATIONS)


# -- PIF --------------------------------------------------------------------------------------

# The PIF messages with state preconditions in Dundee's xapi_pif.ml.
PIF_OPERATIONS = (
    "forget",
    "destroy",
    "plug",
    "unplug",
    "reconfigure_ip",
    "reconfigure_ipv6",
    "set_primary_address_type",
    "set_property",
)
PROPERTY_NAMES_AND_VALUES = {"gro": ("on", "off")}  # Xapi_pif.property_names_and_values


def is_valid_ip(kind: str, address: str) -> bool:
    """``Helpers.is_valid_ip``: the address parses (``inet_pton``) as IPv4 or IPv6."""
    family = socket.AF_INET if kind == "ipv4" else socket.AF_INET6
    try:
        socket.inet_pton(family, address)
    except (OSError, ValueError, TypeError):
        return False
    return True


def is_valid_cidr(kind: str, cidr: str) -> bool:
    """``Helpers.parse_cidr``: ``address/prefix`` with a valid address and prefix."""
    address, slash, prefix = cidr.partition("/")
    if not slash:
        return False
    try:
        length = int(prefix)
    except ValueError:
        return False
    if not is_valid_ip(kind, address):
        return False
    return 0 <= length <= (32 if kind == "ipv4" else 128)


def _not_management(ref: str, row: Row) -> OpError | None:
    if row["management"]:
        return ("PIF_IS_MANAGEMENT_INTERFACE", [ref])
    return None


def _managed(ref: str, row: Row) -> OpError | None:
    if row.get("managed", True) is not True:
        return ("PIF_UNMANAGED", [ref])
    return None


def _no_protection(row: Row, ha_enabled: bool, redo_log_enabled: bool) -> OpError | None:
    if row["currently_attached"]:
        if ha_enabled:
            return ("HA_IS_ENABLED", [])
        if redo_log_enabled:
            return ("REDO_LOG_IS_ENABLED", [])
    return None


def _not_in_bond(ref: str, row: Row, bond_valid: bool | None) -> OpError | None:
    if bond_valid if bond_valid is not None else row["bond_slave_of"] != NULL_REF:
        return ("PIF_ALREADY_BONDED", [ref])
    if row["bond_master_of"]:
        return ("PIF_ALREADY_BONDED", [ref])
    return None


def _no_vlans(ref: str, row: Row, allow_forget_of_vlan_pif: bool) -> OpError | None:
    if row["VLAN_slave_of"]:
        return ("PIF_VLAN_STILL_EXISTS", [ref])
    if row["VLAN"] != -1 and not allow_forget_of_vlan_pif:
        return ("PIF_VLAN_STILL_EXISTS", [ref])
    return None


def _no_tunnels(ref: str, row: Row) -> OpError | None:
    if row.get("tunnel_transport_PIF_of"):
        return ("PIF_TUNNEL_STILL_EXISTS", [ref])
    if row.get("tunnel_access_PIF_of"):
        return ("PIF_TUNNEL_STILL_EXISTS", [ref])
    return None


def pif_check_operation_error(
    pif_ref: str,
    row: Row,
    op: str,
    *,
    ha_enabled: bool = False,
    redo_log_enabled: bool = False,
    on_slave: bool = False,
    bond_valid: bool | None = None,
    allow_forget_of_vlan_pif: bool = False,
    host_enabled: bool = True,
    ha_allow_overcommit: bool = False,
    protected_vm_on_network: bool = False,
    vif_in_use: tuple[str, str] | None = None,
    transport_pif: tuple[str, Row] | None = None,
    tunnel_access_error: OpError | None = None,
    args: dict[str, str] | None = None,
) -> OpError | None:
    """The preconditions of ``PIF.<op>`` in Dundee's ``xapi_pif.ml``, in body order:

    * ``forget``: not the management interface, not bonded, no VLANs (nor a VLAN PIF),
      no tunnels, not a member's attached management PIF, no HA/redo-log while attached;
    * ``destroy``: a VLAN PIF only (``PIF_IS_PHYSICAL []``);
    * ``reconfigure_ip``/``reconfigure_ipv6``: managed, no protection, valid addresses
      (``INVALID_IP_ADDRESS_SPECIFIED [field]``, ``INVALID_CIDR_ADDRESS_SPECIFIED``), the
      management interface keeps an address of its primary type;
    * ``set_primary_address_type``: no protection, not the management interface;
    * ``set_property``: a known name and value (``INVALID_VALUE``), a bond master or an
      unbonded physical PIF (``CANNOT_CHANGE_PIF_PROPERTIES``);
    * ``unplug``: managed, no protection, not the management interface, (host enabled)
      no protected VM on the network, no VIF in use on the host (``VIF_IN_USE [network,
      vif]``), ``disallow_unplug`` unset, then the tunnel's access PIF;
    * ``plug``: managed, a tunnel access PIF's transport configured and pluggable, not a
      bond slave.

    Facts: the pool's ``ha_enabled``/``redo_log_enabled``/``ha_allow_overcommit``;
    ``on_slave`` (the call runs on a pool member); ``bond_valid`` (``bond_slave_of``
    names a live Bond; default not NULL); ``host_enabled``; ``protected_vm_on_network``;
    ``vif_in_use`` = (network, vif) of a VIF in use on this host; ``transport_pif`` =
    (ref, row) of the tunnel transport PIF for ``plug``; ``tunnel_access_error`` -- the
    error unplugging the tunnel's access PIF would give; ``args`` -- the call's
    parameters (``mode``, ``IP``, ``netmask``, ``gateway``, ``IPv6``, ``name``, ``value``).
    """
    args = args or {}
    protect = _no_protection(row, ha_enabled, redo_log_enabled)
    if op == "forget":
        return (
            _not_management(pif_ref, row)
            or _not_in_bond(pif_ref, row, bond_valid)
            or _no_vlans(pif_ref, row, allow_forget_of_vlan_pif)
            or _no_tunnels(pif_ref, row)
            or (
                ("PIF_IS_MANAGEMENT_INTERFACE", [pif_ref])
                if on_slave and row["currently_attached"] and row["management"]
                else None
            )
            or protect
        )
    if op == "destroy":
        return ("PIF_IS_PHYSICAL", []) if row["VLAN"] < 0 else None
    if op == "reconfigure_ip":
        err = _managed(pif_ref, row) or protect
        if err:
            return err
        mode = args.get("mode", "None")
        fields = [
            ("IP", args.get("IP", "")),
            ("netmask", args.get("netmask", "")),
            ("gateway", args.get("gateway", "")),
        ]
        if mode == "Static":
            for name, value in fields[:2]:
                if not is_valid_ip("ipv4", value):
                    return ("INVALID_IP_ADDRESS_SPECIFIED", [name])
        for name, value in fields:
            if value != "" and not is_valid_ip("ipv4", value):
                return ("INVALID_IP_ADDRESS_SPECIFIED", [name])
        if (
            row["management"]
            and mode == "None"
            and row.get("primary_address_type", "IPv4") == "IPv4"
        ):
            return ("PIF_IS_MANAGEMENT_INTERFACE", [pif_ref])
        return None
    if op == "reconfigure_ipv6":
        err = _managed(pif_ref, row) or protect
        if err:
            return err
        gateway, ipv6 = args.get("gateway", ""), args.get("IPv6", "")
        if gateway != "" and not is_valid_ip("ipv6", gateway):
            return ("INVALID_IP_ADDRESS_SPECIFIED", ["gateway"])
        if ipv6 != "" and not is_valid_cidr("ipv6", ipv6):
            return ("INVALID_CIDR_ADDRESS_SPECIFIED", ["IPv6"])
        if (
            row["management"]
            and args.get("mode", "None") == "None"
            and row.get("primary_address_type", "IPv4") == "IPv6"
        ):
            return ("PIF_IS_MANAGEMENT_INTERFACE", [pif_ref])
        return None
    if op == "set_primary_address_type":
        return protect or _not_management(pif_ref, row)
    if op == "set_property":
        name, value = args.get("name", ""), args.get("value", "")
        if value not in PROPERTY_NAMES_AND_VALUES.get(name, ()):
            return ("INVALID_VALUE", ["properties", f"{name} = {value}"])
        has_properties = bool(row["bond_master_of"]) or row["physical"]
        if not has_properties or row["bond_slave_of"] != NULL_REF:
            return ("CANNOT_CHANGE_PIF_PROPERTIES", [pif_ref])
        return None
    if op == "unplug":
        err = _managed(pif_ref, row) or protect or _not_management(pif_ref, row)
        if err:
            return err
        if host_enabled and ha_enabled and not ha_allow_overcommit and protected_vm_on_network:
            return ("HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN", [])
        if vif_in_use is not None:
            return ("VIF_IN_USE", list(vif_in_use))
        if row.get("disallow_unplug"):
            return ("PIF_DOES_NOT_ALLOW_UNPLUG", [pif_ref])
        return tunnel_access_error
    if op == "plug":
        err = _managed(pif_ref, row)
        if err:
            return err
        if row.get("tunnel_access_PIF_of") and transport_pif is not None:
            tref, trow = transport_pif
            if trow["ip_configuration_mode"] == "None":
                return ("TRANSPORT_PIF_NOT_CONFIGURED", [tref])
            err = pif_check_operation_error(tref, trow, "plug")
            if err:
                return err
        if row["bond_slave_of"] != NULL_REF:
            return ("CANNOT_PLUG_BOND_SLAVE", [pif_ref])
        return None
    raise ValueError(f"no Dundee PIF precondition for {op!r}")
