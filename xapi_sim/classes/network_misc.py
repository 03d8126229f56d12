"""VLANs, bonds and tunnels: xen-api ``dundee-lcm`` ``xapi_vlan.ml``, ``xapi_pool.ml``
(``create_VLAN``, ``create_VLAN_from_PIF``),
``xapi_pif.ml`` (``create_VLAN``, ``destroy``), ``xapi_bond.ml``, ``xapi_tunnel.ml`` and
``message_forwarding.ml`` (VLAN, bond and tunnel calls run on the
PIF's host: ``HOST_OFFLINE`` if it is not live); 6.5 SP1 from xen-api ``v1.9.60``.

A failed call changes nothing: xapi's best-effort clean-up of half-made VLANs
(``safe_destroy_VLANs``) is the transaction's roll-back here. A dangling network ref, which
xapi stores and leaves to its GC, is refused with ``HANDLE_INVALID`` (after xapi's checks).
"""

from __future__ import annotations

from .. import install_network as inet
from .. import netlogic
from ..checks.operations import ocaml_int_of_string, setify
from ..datamodel import NULL_REF
from ..dispatch import api
from ..errors import Failure
from . import common as c
from .common import on_host
from .network_pif import (
    assert_no_protection,
    assert_not_in_bond,
    assert_not_slave_management_pif,
    move_management,
    pif_plug,
    pif_unplug,
)

# -- VLANs ----------------------------------------------------------------------------------


def _assert_no_other_local_pifs(db, host, network):
    """``Xapi_pif.assert_no_other_local_pifs``."""
    pifs = inet.local_pifs(db, network, host)
    if pifs:
        raise Failure("NETWORK_ALREADY_CONNECTED", host, pifs[0])


def _vlan_internal(call, host, tagged, tag, network, device):
    """``Xapi_vlan.create_internal``: the VLAN master PIF (MTU and metrics of the tagged PIF,
    MAC ``fe:ff:ff:ff:ff:ff``) and the VLAN record."""
    world, db = call.world, call.db
    base = db.get("PIF", tagged)
    vlan_ref, untagged = world.ids.ref(), world.ids.ref()
    inet.new_pif(
        world,
        db,
        ref=untagged,
        device=device,
        network=network,
        host=host,
        MAC=inet.VLAN_MAC,
        MTU=base["MTU"],
        VLAN=tag,
        metrics=base["metrics"],
        VLAN_master_of=vlan_ref,
        IPv6=[""],
    )
    world.new_row(
        db, "VLAN", ref=vlan_ref, tagged_PIF=tagged, untagged_PIF=untagged, tag=tag, other_config={}
    )
    return vlan_ref, untagged


def vlan_create(call, tagged_PIF, tag, network):
    db = call.db
    row = db.get("PIF", tagged_PIF)
    host = row["host"]
    on_host(call, host)
    if not row["managed"]:
        raise Failure("PIF_UNMANAGED", tagged_PIF)
    _assert_no_other_local_pifs(db, host, network)
    if row["bond_slave_of"] != NULL_REF:
        raise Failure("CANNOT_ADD_VLAN_TO_BOND_SLAVE", tagged_PIF)
    if row["VLAN"] >= 0:
        raise Failure("PIF_IS_VLAN", tagged_PIF)
    if tag < 0 or tag > 4094:
        raise Failure("VLAN_TAG_INVALID", tag)
    if any(db.get("VLAN", v)["tag"] == tag for v in row["VLAN_slave_of"]):
        raise Failure("PIF_VLAN_EXISTS", row["device"])
    if row["tunnel_access_PIF_of"]:
        raise Failure("IS_TUNNEL_ACCESS_PIF", tagged_PIF)
    db.get("network", network)
    vlan, untagged = _vlan_internal(call, host, tagged_PIF, tag, network, row["device"])
    pif_plug(call, untagged)
    return vlan


@api("VLAN.create")
def vlan_create_api(call, tagged_PIF, tag, network):
    with call.db.lock:
        return vlan_create(call, tagged_PIF, tag, network)


def vlan_destroy(call, self):
    db = call.db
    vlan = db.get("VLAN", self)
    untagged = vlan["untagged_PIF"]
    if not db.exists("PIF", untagged):  # an orphaned record
        db.remove("VLAN", self)
        return
    row = db.get("PIF", untagged)
    assert_not_in_bond(db, untagged, row)
    assert_not_slave_management_pif(call, untagged, row)
    assert_no_protection(db, row)
    if row["VLAN"] < 0:
        raise Failure("PIF_IS_PHYSICAL")
    pif_unplug(call, untagged)
    if db.exists("VLAN", row["VLAN_master_of"]):
        db.remove("VLAN", row["VLAN_master_of"])
    db.remove("PIF", untagged)


@api("VLAN.destroy")
def vlan_destroy_api(call, self):
    db = call.db
    with db.lock:
        vlan = db.get("VLAN", self)
        on_host(call, db.get("PIF", vlan["tagged_PIF"])["host"])
        vlan_destroy(call, self)


@api("PIF.create_VLAN")
def pif_create_vlan(call, device, network, host, VLAN):
    """Deprecated: ``VLAN.create`` on the host's untagged PIF of ``device``
    (``INVALID_VALUE ["device", device]`` if none); returns the VLAN master PIF."""
    db = call.db
    with db.lock:
        on_host(call, host)
        base = [
            p
            for p in db.get("host", host)["PIFs"]
            if db.get("PIF", p)["device"] == device and db.get("PIF", p)["VLAN"] == -1
        ]
        if not base:
            raise Failure("INVALID_VALUE", "device", device)
        return db.get("VLAN", vlan_create(call, base[0], VLAN, network))["untagged_PIF"]


@api("PIF.destroy")
def pif_destroy(call, self):
    """Deprecated: ``VLAN.destroy`` of a VLAN master PIF (``PIF_IS_PHYSICAL`` otherwise)."""
    db = call.db
    with db.lock:
        row = db.get("PIF", self)
        on_host(call, row["host"])
        if row["VLAN"] < 0:
            raise Failure("PIF_IS_PHYSICAL")
        vlan = row["VLAN_master_of"]
        if not db.exists("VLAN", vlan):
            raise Failure("HANDLE_INVALID", "VLAN", vlan)
        vlan_destroy(call, vlan)


@api("pool.create_VLAN")
def pool_create_vlan(call, device, network, VLAN):
    """``PIF.create_VLAN`` on every host (an offline one fails the call), then plugged."""
    with call.db.lock:
        return [pif_create_vlan(call, device, network, h, VLAN) for h in call.db.refs("host")]


@api("pool.create_VLAN_from_PIF")
def pool_create_vlan_from_pif(call, pif, network, VLAN):
    """``VLAN.create`` on each PIF of ``pif``'s network whose host is live; returns the new
    VLAN master PIFs."""
    db = call.db
    with db.lock:
        net = db.get("network", db.get("PIF", pif)["network"])
        live = [
            p
            for p in net["PIFs"]
            if db.get("host_metrics", db.get("host", db.get("PIF", p)["host"])["metrics"])["live"]
        ]
        vlans = [vlan_create(call, p, VLAN, network) for p in live]
        return [db.get("VLAN", v)["untagged_PIF"] for v in vlans]


# -- bonds ----------------------------------------------------------------------------------

_LACP = (
    ("hashing_algorithm", "tcpudp_ports", lambda v: v in ("src_mac", "tcpudp_ports")),
    ("lacp-time", "slow", lambda v: v in ("fast", "slow")),
    ("lacp-aggregation-key", None, lambda v: _is_int(v)),
    ("lacp-fallback-ab", "true", lambda v: v in ("true", "false")),
)


def _is_int(v):
    try:
        ocaml_int_of_string(v)
    except ValueError:
        return False
    return True


def _requirements(mode):
    return _LACP if mode == "lacp" else ()


def _validate_property(mode, key, value):
    """``Map_check.validate_kvpair "properties"``."""
    for k, _default, ok in _requirements(mode):
        if k == key and ok(value):
            return
    raise Failure("INVALID_VALUE", "properties", f"{key} = {value}")


def _add_defaults(mode, props: dict) -> dict:
    """``Map_check.add_defaults``: missing defaults prepended, last requirement first."""
    out = dict(props)
    for k, default, _ok in _requirements(mode):
        if k not in out and default is not None:
            out = {k: default, **out}
    return out


def _local_vifs(call, host, networks):
    """``Xapi_bond.get_local_vifs``: VIFs on ``networks`` of VMs resident on ``host``, or
    that can start only there, or nowhere."""
    db = call.db
    out = []
    for net in networks:
        for vif in db.get("network", net)["VIFs"]:
            vm = db.get("VIF", vif)["VM"]
            row = db.tables["VM"].get(vm)
            if row is None or row["resident_on"] not in (host, NULL_REF):
                continue
            if row["resident_on"] != host:
                hosts = []
                for h in db.refs("host"):
                    try:
                        c.assert_can_boot_here(call, vm, row, h)
                    except Failure:
                        continue
                    hosts.append(h)
                if hosts and hosts != [host]:
                    continue
            out.append(vif)
    return out


def _move_configuration(db, src, dst):
    row = db.get("PIF", src)
    keys = ("ip_configuration_mode", "IP", "netmask", "gateway", "DNS")
    db.update("PIF", dst, **{k: row[k] for k in keys})
    db.update("PIF", src, ip_configuration_mode="None", IP="", netmask="", gateway="", DNS="")


def _move_vlan(call, host, new_slave, old_vlan):
    """``Xapi_bond.move_vlan``: the VLAN re-made on ``new_slave`` (named after its device)."""
    db = call.db
    vlan = db.get("VLAN", old_vlan)
    old_master, tag = vlan["untagged_PIF"], vlan["tag"]
    mrow = db.get("PIF", old_master)
    network, plugged = mrow["network"], mrow["currently_attached"]
    if plugged:
        inet.bring_pif_down(db, old_master)
    same = [v for v in db.get("PIF", new_slave)["VLAN_slave_of"] if db.get("VLAN", v)["tag"] == tag]
    if same:
        new_master = db.get("VLAN", same[0])["untagged_PIF"]
        new_net = db.get("PIF", new_master)["network"]
        for vif in _local_vifs(call, host, [network]):
            db.set("VIF", vif, "network", new_net)
    else:
        _vlan, new_master = _vlan_internal(
            call, host, new_slave, tag, network, db.get("PIF", new_slave)["device"]
        )
    db.remove("VLAN", old_vlan)
    db.remove("PIF", old_master)
    if plugged:
        inet.bring_pif_up(call.world, db, new_master)


def _move_tunnel(call, host, new_transport, old_tunnel):
    db = call.db
    access = db.get("tunnel", old_tunnel)["access_PIF"]
    arow = db.get("PIF", access)
    _t, new_access = _tunnel_internal(call, new_transport, arow["network"], host)
    db.remove("tunnel", old_tunnel)
    db.remove("PIF", access)
    if arow["currently_attached"]:
        inet.bring_pif_up(call.world, db, new_access)


@api("Bond.create")
def bond_create(call, network, members, MAC, mode, properties):
    world, db = call.world, call.db
    with db.lock:
        if not members:
            raise Failure("PIF_BOND_NEEDS_MORE_MEMBERS")
        host = db.get("PIF", members[0])["host"]
        on_host(call, host)
        _assert_no_other_local_pifs(db, host, network)
        if MAC != "" and not netlogic.is_valid_mac(MAC):
            raise Failure("MAC_INVALID", MAC)
        for k, v in properties.items():
            _validate_property(mode, k, v)
        properties = _add_defaults(mode, properties)
        members = setify(members)
        rows = {m: db.get("PIF", m) for m in members}
        local_vifs = _local_vifs(call, host, [r["network"] for r in rows.values()])
        vlans = [v for m in members for v in rows[m]["VLAN_slave_of"]]
        tunnels = [t for m in members for t in rows[m]["tunnel_transport_PIF_of"]]
        mgmt = [m for m in members if rows[m]["management"]]
        with_ip = [m for m in members if rows[m]["ip_configuration_mode"] != "None"]
        primary = (mgmt or with_ip or members)[0]
        mac = MAC or rows[primary]["MAC"]
        disallow = any(r["disallow_unplug"] for r in rows.values())
        ha = inet.pool_row(db).get("ha_enabled")
        for m, r in rows.items():
            if db.exists("Bond", r["bond_slave_of"]):
                raise Failure("PIF_ALREADY_BONDED", m)
            if r["VLAN"] != -1:
                raise Failure("PIF_VLAN_EXISTS", r["device"])
            if r["tunnel_access_PIF_of"]:
                raise Failure("IS_TUNNEL_ACCESS_PIF", m)
            if ha and r["management"]:
                raise Failure("HA_CANNOT_CHANGE_BOND_STATUS_OF_MGMT_IFACE")
            if not r["managed"]:
                raise Failure("PIF_UNMANAGED", m)
        if len({r["host"] for r in rows.values()}) != 1:
            raise Failure("PIF_CANNOT_BOND_CROSS_HOST")
        props = [r["properties"] for r in rows.values()]
        if any(p != props[0] for p in props):
            raise Failure("INCOMPATIBLE_PIF_PROPERTIES")
        if len(with_ip) > 1 and db.schema.release != "cream":
            raise Failure("PIF_BOND_MORE_THAN_ONE_IP")
        db.get("network", network)
        used = {
            db.get("PIF", p)["device"]
            for p in db.get("host", host)["PIFs"]
            if db.get("PIF", p)["bond_master_of"]
        }
        device = next(f"bond{n}" for n in range(len(used) + 1) if f"bond{n}" not in used)
        master, bond = world.ids.ref(), world.ids.ref()
        metrics = world.new_row(db, "PIF_metrics", last_updated=world.clock.now_ts(), carrier=True)
        inet.new_pif(
            world,
            db,
            ref=master,
            device=device,
            network=network,
            host=host,
            MAC=mac,
            MTU=-1,
            metrics=metrics,
            IPv6=[""],
            properties=dict(props[0]),
        )
        world.new_row(
            db,
            "Bond",
            ref=bond,
            master=master,
            other_config={},
            primary_slave=primary,
            mode=mode,
            properties=properties,
            links_up=len(members),
        )
        for m in members:
            db.set("PIF", m, "bond_slave_of", bond)
        _move_configuration(db, primary, master)
        if mgmt:
            move_management(call, master)
        else:
            inet.bring_pif_up(world, db, master)
        for vlan in vlans:
            _move_vlan(call, host, master, vlan)
        for tunnel in tunnels:
            _move_tunnel(call, host, master, tunnel)
        for vif in local_vifs:
            db.set("VIF", vif, "network", network)
        if disallow:
            db.set("PIF", master, "disallow_unplug", True)
            for m in members:
                db.set("PIF", m, "disallow_unplug", False)
        return bond


@api("Bond.destroy")
def bond_destroy(call, self):
    world, db = call.world, call.db
    with db.lock:
        brow = db.get("Bond", self)
        master = brow["master"]
        mrow = db.get("PIF", master)
        host = mrow["host"]
        on_host(call, host)
        members = list(brow["slaves"])
        primary = brow["primary_slave"]
        primary_net = db.get("PIF", primary)["network"]
        local_vifs = _local_vifs(call, host, [mrow["network"]])
        vlans, tunnels = list(mrow["VLAN_slave_of"]), list(mrow["tunnel_transport_PIF_of"])
        if inet.pool_row(db).get("ha_enabled") and mrow["management"]:
            raise Failure("HA_CANNOT_CHANGE_BOND_STATUS_OF_MGMT_IFACE")
        _move_configuration(db, master, primary)
        if mrow["management"]:
            move_management(call, primary)
            for m in members:
                if m != primary:
                    inet.bring_pif_up(world, db, m)
        elif mrow["currently_attached"]:
            for m in members:
                inet.bring_pif_up(world, db, m)
        for vif in local_vifs:
            db.set("VIF", vif, "network", primary_net)
        for vlan in vlans:
            _move_vlan(call, host, primary, vlan)
        for tunnel in tunnels:
            _move_tunnel(call, host, primary, tunnel)
        if mrow["disallow_unplug"]:
            db.set("PIF", primary, "disallow_unplug", True)
        db.remove("Bond", self)
        db.remove("PIF", master)
        if db.exists("PIF_metrics", mrow["metrics"]):
            db.remove("PIF_metrics", mrow["metrics"])  # Db_gc.gc_PIF_metrics
        for m in members:
            if db.exists("PIF", m):
                db.set("PIF", m, "bond_slave_of", NULL_REF)


@api("Bond.set_mode")
def bond_set_mode(call, self, value):
    """The mode, and the properties that still fit it plus its defaults."""
    db = call.db
    with db.lock:
        row = db.get("Bond", self)
        on_host(call, db.get("PIF", row["master"])["host"])
        keep = {}
        for k, v in row["properties"].items():
            try:
                _validate_property(value, k, v)
            except Failure:
                continue
            keep[k] = v
        db.update("Bond", self, mode=value, properties=_add_defaults(value, keep))


@api("Bond.set_property")
def bond_set_property(call, self, name, value):
    db = call.db
    with db.lock:
        row = db.get("Bond", self)
        on_host(call, db.get("PIF", row["master"])["host"])
        _validate_property(row["mode"], name, value)
        props = {name: value, **{k: v for k, v in row["properties"].items() if k != name}}
        db.set("Bond", self, "properties", props)


# -- tunnels --------------------------------------------------------------------------------


def _tunnel_internal(call, transport, network, host):
    """``Xapi_tunnel.create_internal``: the access PIF ``tunnel<N>`` (a MAC from a fresh
    seed, the transport PIF's metrics) and the tunnel record."""
    world, db = call.world, call.db
    used = {
        db.get("PIF", p)["device"]
        for p in db.get("host", host)["PIFs"]
        if db.get("PIF", p)["tunnel_access_PIF_of"]
    }
    device = next(f"tunnel{n}" for n in range(len(used) + 1) if f"tunnel{n}" not in used)
    access, tunnel = world.ids.ref(), world.ids.ref()
    inet.new_pif(
        world,
        db,
        ref=access,
        device=device,
        network=network,
        host=host,
        MAC=netlogic.gen_mac(0, world.ids.uuid()),
        MTU=-1,
        metrics=db.get("PIF", transport)["metrics"],
        IPv6=[""],
    )
    world.new_row(
        db,
        "tunnel",
        ref=tunnel,
        access_PIF=access,
        transport_PIF=transport,
        status={"active": "false"},
        other_config={},
    )
    return tunnel, access


@api("tunnel.create")
def tunnel_create(call, transport_PIF, network, protocol=None):
    """Dundee takes no ``protocol`` (a later parameter); it is ignored."""
    db = call.db
    with db.lock:
        row = db.get("PIF", transport_PIF)
        on_host(call, row["host"])
        if not row["managed"]:
            raise Failure("PIF_UNMANAGED", transport_PIF)
        if row["bond_slave_of"] != NULL_REF:
            raise Failure("CANNOT_ADD_TUNNEL_TO_BOND_SLAVE", transport_PIF)
        _assert_no_other_local_pifs(db, row["host"], network)
        for _h, hrow in db.rows("host"):
            if hrow["software_version"].get("network_backend") != "openvswitch":
                raise Failure("OPENVSWITCH_NOT_ACTIVE")
        if row["tunnel_access_PIF_of"]:
            raise Failure("IS_TUNNEL_ACCESS_PIF", transport_PIF)
        db.get("network", network)
        tunnel, access = _tunnel_internal(call, transport_PIF, network, row["host"])
        pif_plug(call, access)
        return tunnel


@api("tunnel.destroy")
def tunnel_destroy(call, self):
    db = call.db
    with db.lock:
        row = db.get("tunnel", self)
        access = row["access_PIF"]
        on_host(call, db.get("PIF", row["transport_PIF"])["host"])
        pif_unplug(call, access)
        db.remove("PIF", access)
        db.remove("tunnel", self)
