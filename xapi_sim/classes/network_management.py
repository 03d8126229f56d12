"""The management interface: xen-api ``xapi_host.ml`` (``management_reconfigure``,
``management_disable``, ``get_management_interface``, ``local_management_reconfigure``),
``xapi_pool.ml`` (``management_reconfigure``) and ``xapi_pif.ml``
(``assert_usable_for_management``), ``dundee-lcm`` to ``v24.19.2``. Moving the interface
itself is ``network_pif.move_management``."""

from __future__ import annotations

from .. import install_network as inet
from ..allowed import since
from ..datamodel import NULL_REF
from ..dispatch import api
from ..errors import Failure
from .common import on_host
from .network_pif import move_management, update_management_flags


def assert_usable_for_management(db, pif, row) -> None:
    """``Xapi_pif.assert_usable_for_management`` (8.2 on): not a bond member, and an IP
    configuration of the PIF's primary address type -- the errors name the PIF."""
    if row["bond_slave_of"] != NULL_REF:
        raise Failure("CANNOT_PLUG_BOND_SLAVE", pif)
    if row["primary_address_type"] == "IPv4" and row["ip_configuration_mode"] == "None":
        raise Failure("PIF_HAS_NO_NETWORK_CONFIGURATION", pif)
    if row["primary_address_type"] == "IPv6" and row["ipv6_configuration_mode"] == "None":
        raise Failure("PIF_HAS_NO_V6_NETWORK_CONFIGURATION", pif)


@api("host.management_reconfigure")
def management_reconfigure(call, pif):
    """Up to 7.1 a bond member is refused whether managed or not, and a managed PIF without
    an IP configuration is PIF_HAS_NO_(V6_)NETWORK_CONFIGURATION with no parameter; from 8.2
    (``assert_usable_for_management``) only a managed PIF is checked and the errors name it.
    The incompatible-address-type check is swallowed by its own ``try ... with _``, so it
    never fires; a PIF that already is the management interface is left alone."""
    db = call.db
    with db.lock:
        row = db.get("PIF", pif)
        on_host(call, row["host"])
        if inet.pool_row(db).get("ha_enabled"):
            raise Failure("HA_IS_ENABLED")
        if since(db, "stockholm"):
            if row["managed"]:
                assert_usable_for_management(db, pif, row)
        else:
            if row["bond_slave_of"] != NULL_REF:
                raise Failure("CANNOT_PLUG_BOND_SLAVE", pif)
            if row["managed"]:
                kind = row["primary_address_type"]
                if kind == "IPv4" and row["ip_configuration_mode"] == "None":
                    raise Failure("PIF_HAS_NO_NETWORK_CONFIGURATION")
                if kind == "IPv6" and row["ipv6_configuration_mode"] == "None":
                    raise Failure("PIF_HAS_NO_V6_NETWORK_CONFIGURATION")
        if row["management"]:
            return
        for local in inet.local_pifs(db, row["network"], row["host"]):
            lrow = db.get("PIF", local)
            if lrow["managed"] and lrow["bond_slave_of"] != NULL_REF:
                raise Failure("CANNOT_PLUG_BOND_SLAVE", local)
        move_management(call, pif)


@api("pool.management_reconfigure")
def pool_management_reconfigure(call, network):
    """``Xapi_pool.management_reconfigure`` (7.2 on): HA_IS_ENABLED; every host needs a PIF
    on the network (PIF_NOT_PRESENT [host, network]); every PIF on it the first one's primary
    address type (PIF_INCOMPATIBLE_PRIMARY_ADDRESS_TYPE [pif]) and usable for management;
    then ``host.management_reconfigure`` of each host's PIF, the members first and the master
    last (``call_fn_on_slaves_then_master``: a dead member stops it with HOST_OFFLINE), then
    ``pool.recover_slaves`` -- no member is in emergency mode here, so it recovers none."""
    db = call.db
    with db.lock:
        if inet.pool_row(db).get("ha_enabled"):
            raise Failure("HA_IS_ENABLED")
        pifs = list(db.get("network", network)["PIFs"])
        on_host_pif = {}
        for pif in pifs:  # Hashtbl.add then find: the last PIF of a host wins
            on_host_pif[db.get("PIF", pif)["host"]] = pif
        hosts = db.refs("host")
        for host in hosts:
            if host not in on_host_pif:
                raise Failure("PIF_NOT_PRESENT", host, network)
        kind = db.get("PIF", pifs[0])["primary_address_type"]
        for pif in pifs:
            row = db.get("PIF", pif)
            if row["primary_address_type"] != kind:
                raise Failure("PIF_INCOMPATIBLE_PRIMARY_ADDRESS_TYPE", pif)
            assert_usable_for_management(db, pif, row)
        master = call.pool.master.ref
        for host in [h for h in hosts if h != master] + [master]:
            management_reconfigure(call, on_host_pif[host])


@api("host.management_disable")
def management_disable(call):
    """On the host the call reaches: no PIF is the management interface any more. The
    simulated endpoint keeps answering (a real host would stop serving its management IP)."""
    db = call.db
    with db.lock:
        if inet.pool_row(db).get("ha_enabled"):
            raise Failure("HA_IS_ENABLED")
        if not call.host.is_master:
            raise Failure("SLAVE_REQUIRES_MANAGEMENT_INTERFACE")
        update_management_flags(db, call.host.ref, "")


@api("host.get_management_interface")
def get_management_interface(call, host):
    pif = inet.management_pif(call.db, host)
    if pif is None:
        raise Failure("INTERNAL_ERROR", "Not_found")
    return pif


@api("host.local_management_reconfigure")
def local_management_reconfigure(call, interface):
    """Emergency mode only (a member whose master is gone). There the member cannot write
    the pool database, so the simulator changes nothing it could show."""
    master = call.host.pool.master
    if call.host.is_master or (master.state == "up" and call.world.is_live(master)):
        raise Failure("NOT_IN_EMERGENCY_MODE")
