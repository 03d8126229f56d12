"""PIFs: xen-api ``dundee-lcm`` ``xapi_pif.ml``, ``xapi_host.ml``, ``nm.ml``,
``xapi_network_attach_helpers.ml`` and ``message_forwarding.ml`` (``PIF``: every call runs
on the PIF's host, ``HOST_OFFLINE`` if it is not live); 6.5 SP1 from xen-api ``v1.9.60``.

The preconditions are ``checks/network.py`` ``pif_check_operation_error`` (Dundee's body
order), fed with facts from the database; 6.5 SP1's ``reconfigure_ip``/``reconfigure_ipv6``
checks differ (any address family accepted; other IPv6 errors) and are here, as is the
IPv6 CIDR parse of both (``Helpers.parse_cidr``'s ``Scanf`` format). The effects are those
``Nm.bring_pif_up``/``bring_pif_down`` leave in the database (``install_network.py``).
"""

from __future__ import annotations

from .. import install_network as inet
from .. import netlogic
from ..checks import network as network_checks
from ..datamodel import NULL_REF
from ..dispatch import api
from ..errors import Failure
from .common import on_host

# -- shared with VLAN, Bond and tunnel (network_misc.py) -------------------------------------


def raise_err(err):
    if err is not None:
        raise Failure(err[0], *err[1])


def _vm_live(row) -> bool:
    """``Xapi_vm_lifecycle.is_live``."""
    return row["power_state"] not in ("Halted", "Suspended")


def vif_in_use(db, network: str, host_ref: str):
    """``assert_network_has_no_vifs_in_use_on_me``: (network, vif) of the first VIF with an
    attach in progress for a VM (going to be) resident here, or attached to a live VM
    resident here; None if there is none."""
    net = db.tables["network"].get(network)
    for vif in net["VIFs"] if net is not None else ():
        row = db.tables["VIF"][vif]
        vm = db.tables["VM"].get(row["VM"])
        if vm is None:
            continue
        if "attach" in row["current_operations"].values() and host_ref in (
            vm["resident_on"],
            vm["scheduled_to_be_resident_on"],
        ):
            return (network, vif)
        if row["currently_attached"] and vm["resident_on"] == host_ref and _vm_live(vm):
            return (network, vif)
    return None


def xha_protected(vm_row) -> bool:
    """``Helpers.is_xha_protected``: ``ha_always_run`` and restart priority ``restart``."""
    return bool(vm_row.get("ha_always_run")) and vm_row.get("ha_restart_priority") == "restart"


def pif_facts(call, pif: str, row: dict, op: str, args=None) -> dict:
    """The facts ``pif_check_operation_error`` needs, from the database."""
    db, world = call.db, call.world
    pool = inet.pool_row(db)
    host = row["host"]
    h = world.hosts.get(host)
    facts = dict(
        ha_enabled=pool.get("ha_enabled", False),
        redo_log_enabled=pool.get("redo_log_enabled", False),
        ha_allow_overcommit=pool.get("ha_allow_overcommit", False),
        on_slave=h is not None and not h.is_master,
        bond_valid=db.exists("Bond", row["bond_slave_of"]),
        args=args or {},
    )
    if op == "unplug":
        hrow = db.tables["host"].get(host)
        facts["host_enabled"] = bool(hrow and hrow["enabled"])
        net = db.tables["network"].get(row["network"])
        facts["protected_vm_on_network"] = any(
            xha_protected(db.tables["VM"].get(db.tables["VIF"][v]["VM"]) or {})
            for v in (net["VIFs"] if net is not None else ())
        )
        facts["vif_in_use"] = vif_in_use(db, row["network"], host)
        tunnels = row["tunnel_transport_PIF_of"]
        if tunnels and db.exists("tunnel", tunnels[0]):
            access = db.get("tunnel", tunnels[0])["access_PIF"]
            if db.exists("PIF", access):
                arow = db.get("PIF", access)
                facts["tunnel_access_error"] = network_checks.pif_check_operation_error(
                    access, arow, "unplug", **pif_facts(call, access, arow, "unplug")
                )
    if op == "plug" and row["tunnel_access_PIF_of"]:
        tunnel = row["tunnel_access_PIF_of"][0]
        if db.exists("tunnel", tunnel):
            t = db.get("tunnel", tunnel)["transport_PIF"]
            facts["transport_pif"] = (t, db.get("PIF", t))
    return facts


def pif_check(call, pif: str, op: str, args=None) -> dict:
    """Run ``PIF.<op>``'s preconditions; returns the PIF's row."""
    row = call.db.get("PIF", pif)
    raise_err(
        network_checks.pif_check_operation_error(
            pif, row, op, **pif_facts(call, pif, row, op, args)
        )
    )
    return row


def pif_plug(call, pif: str) -> None:
    """``Xapi_pif.plug``: checks, the tunnel's transport PIF first, then this one."""
    row = pif_check(call, pif, "plug")
    for tunnel in row["tunnel_access_PIF_of"][:1]:
        if call.db.exists("tunnel", tunnel):
            inet.bring_pif_up(call.world, call.db, call.db.get("tunnel", tunnel)["transport_PIF"])
    inet.bring_pif_up(call.world, call.db, pif)


def pif_unplug(call, pif: str) -> None:
    """``Xapi_pif.unplug``: checks, the tunnel's access PIF first, then this one."""
    row = pif_check(call, pif, "unplug")
    for tunnel in row["tunnel_transport_PIF_of"][:1]:
        if call.db.exists("tunnel", tunnel):
            inet.bring_pif_down(call.db, call.db.get("tunnel", tunnel)["access_PIF"])
    inet.bring_pif_down(call.db, pif)


def assert_not_in_bond(db, pif: str, row: dict) -> None:
    """``Xapi_pif.assert_not_in_bond``."""
    if db.exists("Bond", row["bond_slave_of"]) or row["bond_master_of"]:
        raise Failure("PIF_ALREADY_BONDED", pif)


def assert_not_slave_management_pif(call, pif: str, row: dict) -> None:
    h = call.world.hosts.get(row["host"])
    if h is not None and not h.is_master and row["currently_attached"] and row["management"]:
        raise Failure("PIF_IS_MANAGEMENT_INTERFACE", pif)


def assert_no_protection(db, row: dict) -> None:
    """``Xapi_pif.assert_no_protection_enabled``."""
    if row["currently_attached"]:
        pool = inet.pool_row(db)
        if pool.get("ha_enabled"):
            raise Failure("HA_IS_ENABLED")
        if pool.get("redo_log_enabled"):
            raise Failure("REDO_LOG_IS_ENABLED")


def update_management_flags(db, host_ref: str, bridge: str) -> None:
    """``Xapi_pif.update_management_flags``: the host's PIFs on the management bridge's
    network are management interfaces, the others are not."""
    net = inet.network_by_bridge(db, bridge) if bridge else None
    current = inet.local_pifs(db, net, host_ref) if net is not None else []
    for pif in inet.host_pifs(db, host_ref):
        flag = pif in current
        if db.get("PIF", pif)["management"] != flag:
            db.set("PIF", pif, "management", flag)


def management_bridge(db, host_ref: str) -> str:
    """The inventory's ``MANAGEMENT_INTERFACE``: the bridge of the current management PIF's
    network ("" when management is disabled)."""
    pif = inet.management_pif(db, host_ref)
    if pif is None:
        return ""
    net = db.tables["network"].get(db.get("PIF", pif)["network"])
    return net["bridge"] if net is not None else ""


def move_management(call, to_pif: str) -> None:
    """``Xapi_bond.move_management`` / the end of ``management_reconfigure``: bring the PIF
    up as the management interface, point the inventory at its bridge, re-derive the
    management flags and the host's address."""
    db = call.db
    row = db.get("PIF", to_pif)
    inet.bring_pif_up(call.world, db, to_pif, management=True)
    bridge = db.get("network", row["network"])["bridge"]
    update_management_flags(db, row["host"], bridge)
    inet.sync_host_address(call.world, db, row["host"])


# -- PIF messages ---------------------------------------------------------------------------


@api("PIF.plug")
def plug(call, self):
    with call.db.lock:
        on_host(call, call.db.get("PIF", self)["host"])
        pif_plug(call, self)


@api("PIF.unplug")
def unplug(call, self):
    with call.db.lock:
        on_host(call, call.db.get("PIF", self)["host"])
        pif_unplug(call, self)


def _reconfigure_ip_cream(call, self, row, mode, IP, netmask, gateway):
    """6.5 SP1: the same order, but ``is_valid_ip`` accepts either address family."""
    if not row["managed"]:
        raise Failure("PIF_UNMANAGED", self)
    assert_no_protection(call.db, row)
    if mode == "Static":
        for name, value in (("IP", IP), ("netmask", netmask)):
            if not netlogic.is_ip_any(value):
                raise Failure("INVALID_IP_ADDRESS_SPECIFIED", name)
    for name, value in (("IP", IP), ("netmask", netmask), ("gateway", gateway)):
        if value != "" and not netlogic.is_ip_any(value):
            raise Failure("INVALID_IP_ADDRESS_SPECIFIED", name)
    if row["management"] and mode == "None" and row["primary_address_type"] == "IPv4":
        raise Failure("PIF_IS_MANAGEMENT_INTERFACE", self)


@api("PIF.reconfigure_ip")
def reconfigure_ip(call, self, mode, IP, netmask, gateway, DNS):
    db = call.db
    with db.lock:
        row = db.get("PIF", self)
        on_host(call, row["host"])
        if db.schema.release == "cream":
            _reconfigure_ip_cream(call, self, row, mode, IP, netmask, gateway)
        else:
            pif_check(
                call,
                self,
                "reconfigure_ip",
                dict(mode=mode, IP=IP, netmask=netmask, gateway=gateway),
            )
        db.update(
            "PIF",
            self,
            ip_configuration_mode=mode,
            IP=IP,
            netmask=netmask,
            gateway=gateway,
            DNS=DNS,
        )
        _reattach(call, self, row)


def _reattach(call, pif, row):
    """A plugged PIF whose configuration changed is taken down and brought up again."""
    if row["currently_attached"]:
        call.db.set("PIF", pif, "currently_attached", False)
        inet.bring_pif_up(call.world, call.db, pif, management=row["management"])
    if row["management"]:
        inet.sync_host_address(call.world, call.db, row["host"])


@api("PIF.reconfigure_ipv6")
def reconfigure_ipv6(call, self, mode, IPv6, gateway, DNS):
    db = call.db
    with db.lock:
        row = db.get("PIF", self)
        on_host(call, row["host"])
        if not row["managed"]:
            raise Failure("PIF_UNMANAGED", self)
        assert_no_protection(db, row)
        if db.schema.release == "cream":
            _ipv6_checks_cream(IPv6, gateway)
        else:
            if gateway != "" and not netlogic.is_valid_ip("ipv6", gateway):
                raise Failure("INVALID_IP_ADDRESS_SPECIFIED", "gateway")
            if IPv6 != "" and netlogic.parse_cidr("ipv6", IPv6) is None:
                raise Failure("INVALID_CIDR_ADDRESS_SPECIFIED", "IPv6")
        if row["management"] and mode == "None" and row["primary_address_type"] == "IPv6":
            raise Failure("PIF_IS_MANAGEMENT_INTERFACE", self)
        changes = dict(ipv6_configuration_mode=mode, ipv6_gateway=gateway, IPv6=[IPv6])
        if DNS != "":
            changes["DNS"] = DNS
        db.update("PIF", self, **changes)
        _reattach(call, self, row)


def _ipv6_checks_cream(IPv6, gateway):
    """xen-api v1.9.60 ``reconfigure_ipv6``: any-family address checks, its own texts."""
    if gateway != "" and not netlogic.is_ip_any(gateway):
        raise Failure("INVALID_IP_ADDRESS_SPECIFIED", "gateway")
    if IPv6 == "":
        return
    address, slash, prefix = IPv6.partition("/")
    if not slash:
        raise Failure(
            "INVALID_IP_ADDRESS_SPECIFIED",
            "Prefix length must be specified (format: <ipv6>/<prefix>",
        )
    if not netlogic.is_ip_any(address):
        raise Failure("INVALID_IP_ADDRESS_SPECIFIED", "IPv6")
    try:
        length = netlogic.ocaml_int(prefix)
    except ValueError:
        raise Failure(
            "INVALID_IP_ADDRESS_SPECIFIED", f"Cannot parse prefix length '{prefix}'"
        ) from None
    if not 0 <= length <= 128:
        raise Failure("INVALID_IP_ADDRESS_SPECIFIED", "Prefix length must be between 0 and 128")


@api("PIF.set_primary_address_type")
def set_primary_address_type(call, self, primary_address_type):
    with call.db.lock:
        on_host(call, call.db.get("PIF", self)["host"])
        pif_check(call, self, "set_primary_address_type")
        call.db.set("PIF", self, "primary_address_type", primary_address_type)


@api("PIF.set_property")
def set_property(call, self, name, value):
    """The property on the PIF (and a bond's slaves), then brought up again."""
    db = call.db
    with db.lock:
        row = db.get("PIF", self)
        on_host(call, row["host"])
        pif_check(call, self, "set_property", dict(name=name, value=value))
        props = {name: value, **{k: v for k, v in row["properties"].items() if k != name}}
        db.set("PIF", self, "properties", props)
        for bond in row["bond_master_of"]:
            for slave in db.get("Bond", bond)["slaves"]:
                db.set("PIF", slave, "properties", dict(props))


@api("PIF.set_disallow_unplug")
def set_disallow_unplug(call, self, value):
    """A plain field setter in Dundee (generated)."""
    call.db.get("PIF", self)
    call.db.set("PIF", self, "disallow_unplug", value)


@api("PIF.forget")
def forget(call, self):
    db = call.db
    with db.lock:
        row = db.get("PIF", self)
        on_host(call, row["host"])
        pif_check(call, self, "forget")
        _forget_internal(db, self, row)


def _forget_internal(db, pif, row):
    if row["managed"]:
        inet.bring_pif_down(db, pif)
    if db.exists("PIF_metrics", row["metrics"]):
        db.remove("PIF_metrics", row["metrics"])
    db.remove("PIF", pif)


def _nic_table(call, host_ref):
    """``make_tables``' device -> MAC table: the host's NICs (``Hardware.nics``)."""
    h = call.world.host(host_ref)
    return {f"eth{i}": inet.nic_mac(h.uuid, i) for i in range(inet.nic_count(h))}


def _introduce_internal(call, host_ref, mac, device, managed, disallow_unplug=False):
    """``Xapi_pif.introduce_internal`` for a NIC: on its device's pool-wide network, with
    metrics; the management interface if its network is the inventory's bridge."""
    world, db = call.world, call.db
    bridge = management_bridge(db, host_ref)
    net = inet.physical_network(world, db, device)
    index = int(device[3:]) if device[3:].isdigit() else 0
    metrics = world.new_row(
        db, "PIF_metrics", last_updated=world.clock.now_ts(), **inet.nic_metrics(index)
    )
    pif = inet.new_pif(
        world,
        db,
        device=device,
        network=net,
        host=host_ref,
        MAC=mac,
        MTU=1500,
        metrics=metrics,
        physical=True,
        disallow_unplug=disallow_unplug,
        IPv6=[],
        managed=managed,
        properties=dict(inet.DEFAULT_PROPERTIES),
    )
    if bridge and db.get("network", net)["bridge"] == bridge:
        db.update("PIF", pif, management=True, currently_attached=True)
    return pif


@api("PIF.introduce")
def introduce(call, host, MAC, device, managed=True):
    db = call.db
    with db.lock:
        on_host(call, host)
        mac = MAC.lower()
        table = _nic_table(call, host)
        if mac == "":
            mac = table.get(device, "")
        if not netlogic.is_valid_mac(mac):
            raise Failure("MAC_INVALID", mac)
        known = [
            db.get("PIF", p)["device"]
            for p in inet.host_pifs(db, host)
            if db.get("PIF", p)["physical"]
        ]
        if device in known:
            raise Failure("DUPLICATE_PIF_DEVICE_NAME", device)
        if table.get(device) != mac:
            raise Failure(
                "COULD_NOT_FIND_NETWORK_INTERFACE_WITH_SPECIFIED_DEVICE_NAME_AND_MAC_ADDRESS",
                device,
                mac,
            )
        return _introduce_internal(call, host, mac, device, managed)


@api("PIF.scan")
def scan(call, host):
    """A PIF for every NIC of the host that has none (a forgotten one comes back), then the
    management flags from the inventory's bridge."""
    db = call.db
    with db.lock:
        on_host(call, host)
        bridge = management_bridge(db, host)
        known = {
            db.get("PIF", p)["device"]
            for p in inet.host_pifs(db, host)
            if db.get("PIF", p)["physical"]
        }
        for device, mac in _nic_table(call, host).items():
            if device not in known:
                _introduce_internal(call, host, mac, device, True)
        update_management_flags(db, host, bridge)


@api("PIF.db_introduce")
def db_introduce(
    call,
    device,
    network,
    host,
    MAC,
    MTU,
    VLAN,
    physical,
    ip_configuration_mode,
    IP,
    netmask,
    gateway,
    DNS,
    bond_slave_of,
    VLAN_master_of,
    management,
    other_config,
    disallow_unplug=False,
    ipv6_configuration_mode="None",
    IPv6=(),
    ipv6_gateway="",
    primary_address_type="IPv4",
    managed=True,
    properties=None,
):
    """``Xapi_pif.pool_introduce``: a record only (not plugged, ``bond_slave_of`` NULL, fresh
    empty metrics). xapi stores dangling host/network/VLAN refs and lets its GC remove the
    record; the simulator refuses them with HANDLE_INVALID."""
    world, db = call.world, call.db
    with db.lock:
        db.get("host", host)
        db.get("network", network)
        if VLAN_master_of != NULL_REF:
            db.get("VLAN", VLAN_master_of)
        metrics = world.new_row(db, "PIF_metrics", last_updated=world.clock.now_ts())
        return world.new_row(
            db,
            "PIF",
            device=device,
            network=network,
            host=host,
            MAC=MAC,
            MTU=MTU,
            VLAN=VLAN,
            metrics=metrics,
            physical=physical,
            currently_attached=False,
            ip_configuration_mode=ip_configuration_mode,
            IP=IP,
            netmask=netmask,
            gateway=gateway,
            DNS=DNS,
            bond_slave_of=NULL_REF,
            VLAN_master_of=VLAN_master_of,
            management=management,
            other_config=dict(other_config),
            disallow_unplug=disallow_unplug,
            ipv6_configuration_mode=ipv6_configuration_mode,
            IPv6=list(IPv6),
            ipv6_gateway=ipv6_gateway,
            primary_address_type=primary_address_type,
            managed=managed,
            properties=dict(properties or {}),
            capabilities=[],
        )


@api("PIF.db_forget")
def db_forget(call, self):
    """``Db.PIF.destroy``; its metrics row goes too when no other PIF shares it (xapi leaves
    that to its GC)."""
    db = call.db
    with db.lock:
        row = db.get("PIF", self)
        db.remove("PIF", self)
        m = row["metrics"]
        if db.exists("PIF_metrics", m) and not any(r["metrics"] == m for _, r in db.rows("PIF")):
            db.remove("PIF_metrics", m)
