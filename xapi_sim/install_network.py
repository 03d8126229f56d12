"""A host's networking as the XenServer installer and xapi's first start leave it, and the
network bookkeeping the world layer shares with the API handlers.

World layer (no ``classes`` import). Mirrors xen-api Dundee (``dundee-lcm``):

* ``xapi_pif.ml`` ``introduce_internal`` / ``find_or_create_network`` /
  ``bridge_naming_convention``: one PIF per NIC (``eth0``..), each on the pool-wide network
  of its device (``Pool-wide network associated with ethN``, bridge ``xenbrN``);
  ``make_pif_metrics`` (the monitor thread then fills vendor, device, carrier, speed, duplex);
  ``default_properties`` (``gro = on``). Every managed physical PIF is plugged at start of
  day (``start_of_day_best_effort_bring_up``); the management interface is the installer's
  choice, ``eth0`` here, with the host's address.
* ``create_networks.ml``: the pool's "Host internal management network" (bridge ``xenapi``).
* ``xapi_network.ml`` ``create``: new internal networks get bridge ``xapi<N>`` from a
  counter kept by the master's xapi process (:class:`BridgeNames`).
* ``nm.ml`` ``bring_pif_up`` / ``bring_pif_down`` and ``xapi_mgmt_iface.ml``
  ``on_dom0_networking_change`` (:func:`bring_pif_up`, :func:`sync_host_address`).
* ``xapi_vm_lifecycle.ml`` ``force_state_reset``: a Halted VM's VIFs are detached; xenopsd
  plugs every VIF at start (:func:`vifs_follow_power`).
* ``xapi_pool.ml`` ``create_or_get_network_on_master`` / ``create_or_get_pif_on_master``
  (:func:`merge_networks`), ``db_gc.ml`` ``gc_PIFs`` (:func:`forget_host_network`).
* The pure checks and derivations (MACs, IPs, CIDRs, bridge names) are in :mod:`netlogic`.

The simulator cannot bind a host's endpoint to an address a client gives it. The endpoint
(``HostRuntime.address``) is where the host answers; ``host.address`` and the management
PIF's IP follow it unless the management interface was moved to, or reconfigured with,
another address: then ``host.address`` shows that address (as xapi's
``on_dom0_networking_change`` would) and the endpoint stays (docs/networking.md).
"""

from __future__ import annotations

import hashlib
import logging
import threading

from . import allowed
from .datamodel import NULL_REF
from .errors import Failure
from .netlogic import bridge_naming_convention, pool_network_name

log = logging.getLogger(__name__)

DEFAULT_NICS = 4
MAX_NICS = 64

# What the monitor thread reports for the simulated NICs: a quad-port Intel I350 per four
# ports (vendor/device ids as lspci gives them), gigabit full duplex, link up.
NIC_VENDOR = ("8086", "Intel Corporation")
NIC_DEVICE = ("1521", "I350 Gigabit Network Connection")
NIC_SPEED = 1000
NIC_OUI = (0xA0, 0x36, 0x9F)  # an Intel OUI, as I350 ports ship with

HIMN_NAME = "Host internal management network"
HIMN_DESCRIPTION = (
    "Network on which guests will be assigned a private link-local IP "
    "address which can be used to talk XenAPI"
)
HIMN_BRIDGE = "xenapi"
HIMN_OTHER_CONFIG = {
    "is_guest_installer_network": "true",
    "is_host_internal_management_network": "true",
    "ip_begin": "169.254.0.1",
    "ip_end": "169.254.255.254",
    "netmask": "255.255.0.0",
}
DEFAULT_PROPERTIES = {"gro": "on"}  # Xapi_pif.default_properties
VLAN_MAC = "fe:ff:ff:ff:ff:ff"  # Xapi_vlan.vlan_mac


# -- pure helpers ---------------------------------------------------------------------------


def nic_mac(host_uuid: str, index: int) -> str:
    """A physical NIC's burnt-in MAC: an Intel OUI, then a per-host base (from the host's
    uuid) plus the port index, so the ports of one host are consecutive as on a multi-port
    card. Always six two-digit lower-case hex groups."""
    base = int.from_bytes(hashlib.sha256(host_uuid.encode()).digest()[:3], "big") & ~0x3F
    low = (base + index) & 0xFFFFFF
    octets = (*NIC_OUI, low >> 16, (low >> 8) & 0xFF, low & 0xFF)
    return ":".join(f"{o:02x}" for o in octets)


def nic_metrics(index: int) -> dict:
    """The PIF_metrics fields the monitor fills for NIC ``index``."""
    card, port = divmod(index, 4)
    return dict(
        carrier=True,
        vendor_id=NIC_VENDOR[0],
        vendor_name=NIC_VENDOR[1],
        device_id=NIC_DEVICE[0],
        device_name=NIC_DEVICE[1],
        speed=NIC_SPEED,
        duplex=True,
        pci_bus_path=f"0000:{card + 1:02x}:00.{port}",
    )


# -- the bridge counter of Xapi_network.create ---------------------------------------------


class BridgeNames:
    """``Xapi_network.create``'s ``counter``: a new internal network's bridge is
    ``xapi<counter>``, the counter incremented on every try and never reset while the
    master's xapi runs (a restart of xapi is not modelled: one counter per pool database).
    Guarded by its own leaf lock; a world service (``World.service``)."""

    def __init__(self, world):
        self._lock = threading.Lock()
        self._next: dict[int, int] = {}

    @classmethod
    def of(cls, world) -> BridgeNames:
        return world.service(cls)

    def choose(self, db, in_use) -> str:
        in_use = set(in_use)
        with self._lock:
            n = self._next.get(db.order, 0)
            while True:
                name = f"xapi{n}"
                n += 1
                if name not in in_use:
                    break
            self._next[db.order] = n
        return name


# -- reading --------------------------------------------------------------------------------


def network_by_bridge(db, bridge: str):
    for ref, row in db.tables["network"].items():
        if row["bridge"] == bridge:
            return ref
    return None


def host_pifs(db, host_ref: str) -> list:
    row = db.tables["host"].get(host_ref)
    return list(row["PIFs"]) if row is not None else []


def management_pif(db, host_ref: str):
    """``Xapi_host.get_management_interface``: the host's first PIF marked management."""
    for pif in host_pifs(db, host_ref):
        if db.tables["PIF"][pif]["management"]:
            return pif
    return None


def local_pifs(db, network: str, host_ref: str) -> list:
    """``Xapi_network_attach_helpers.get_local_pifs``."""
    net = db.tables["network"].get(network)
    if net is None:
        return []
    return [p for p in net["PIFs"] if db.tables["PIF"][p]["host"] == host_ref]


def pool_row(db) -> dict:
    for row in db.tables["pool"].values():
        return row
    return {}


def feature_enabled(db, restriction: str) -> bool:
    """``Pool_features.is_enabled`` for a Negative feature: the pool's ``restrictions``
    hold ``restriction = false`` (a missing key means the feature is off)."""
    return pool_row(db).get("restrictions", {}).get(restriction) == "false"


# -- installing -----------------------------------------------------------------------------


def physical_network(world, db, device: str) -> str:
    """``find_or_create_network``: the pool-wide network of ``device`` (by bridge)."""
    bridge = bridge_naming_convention(device)
    ref = network_by_bridge(db, bridge)
    if ref is None:
        ref = world.new_row(
            db,
            "network",
            name_label=pool_network_name(device),
            name_description="",
            MTU=1500,
            bridge=bridge,
            other_config={"automatic": "true"},
            tags=[],
            blobs={},
            default_locking_mode="unlocked",
        )
    return ref


def ensure_himn(world, db) -> str:
    """``Create_networks.create_guest_installer_network``: one per pool."""
    for ref, row in db.tables["network"].items():
        if row["other_config"].get("is_host_internal_management_network") == "true":
            return ref
    return world.new_row(
        db,
        "network",
        name_label=HIMN_NAME,
        name_description=HIMN_DESCRIPTION,
        MTU=1500,
        bridge=HIMN_BRIDGE,
        other_config=dict(HIMN_OTHER_CONFIG),
        tags=[],
        blobs={},
        default_locking_mode="unlocked",
    )


def nic_count(h) -> int:
    n = getattr(h.hw, "nics", DEFAULT_NICS)
    if not isinstance(n, int) or not 1 <= n <= MAX_NICS:
        raise ValueError(f"host {h.name_label}: nics must be 1..{MAX_NICS}, not {n!r}")
    return n


def install_host_network(world, db, h) -> None:
    """What a fresh install leaves for host ``h``: ``eth0``.. with their metrics, each on
    its pool-wide network, all plugged; ``eth0`` the management interface with the host's
    address (static); the pool's host internal management network."""
    ts = world.clock.now_ts()
    _set_detached(world, h, False)
    for i in range(nic_count(h)):
        device = f"eth{i}"
        net = physical_network(world, db, device)
        metrics = world.new_row(
            db, "PIF_metrics", last_updated=ts, other_config={}, **nic_metrics(i)
        )
        mgmt = i == 0
        new_pif(
            world,
            db,
            device=device,
            network=net,
            host=h.ref,
            MAC=nic_mac(h.uuid, i),
            MTU=1500,
            metrics=metrics,
            physical=True,
            currently_attached=True,
            ip_configuration_mode="Static" if mgmt else "None",
            IP=h.address_for_url if mgmt else "",
            netmask="255.0.0.0" if mgmt else "",
            management=mgmt,
            IPv6=[],
            properties=dict(DEFAULT_PROPERTIES),
        )
    ensure_himn(world, db)


def new_pif(world, db, **fields) -> str:
    """A PIF row with what ``Db.PIF.create`` gets for a PIF nobody has configured yet (no
    address, not management, not bonded or a VLAN master, managed, no VLAN tag, not
    physical, not attached), then ``fields``: the one place the installer, ``PIF.introduce``,
    ``VLAN.create``, ``Bond.create`` and ``tunnel.create`` build PIFs from."""
    row = dict(
        VLAN=-1,
        physical=False,
        currently_attached=False,
        ip_configuration_mode="None",
        IP="",
        netmask="",
        gateway="",
        DNS="",
        bond_slave_of=NULL_REF,
        VLAN_master_of=NULL_REF,
        management=False,
        other_config={},
        disallow_unplug=False,
        ipv6_configuration_mode="None",
        ipv6_gateway="",
        primary_address_type="IPv4",
        managed=True,
        properties={},
        capabilities=[],
    )
    row.update(fields)
    return world.new_row(db, "PIF", **row)


# -- the management address -----------------------------------------------------------------


def _set_detached(world, h, value: bool) -> None:
    old = getattr(h, "mgmt_detached", False)
    if old == value:
        return
    h.mgmt_detached = value
    world.txm.on_rollback(lambda: setattr(h, "mgmt_detached", old))


def bind_endpoint(world, db, h) -> None:
    """The host now answers at ``h.address`` (the server bound it): ``host.address`` and the
    management PIF's IP show it, unless the API moved the management interface to another
    address (then they keep that one)."""
    if getattr(h, "mgmt_detached", False) or not db.exists("host", h.ref):
        return
    if db.get("host", h.ref)["address"] != h.address:
        db.set("host", h.ref, "address", h.address)
    pif = management_pif(db, h.ref)
    if pif is not None and db.get("PIF", pif)["IP"] != h.address_for_url:
        db.set("PIF", pif, "IP", h.address_for_url)


def current_address(db, h) -> str:
    """What ``host.address`` should show at a xapi start: the endpoint, unless the API moved
    the management interface to another address."""
    if getattr(h, "mgmt_detached", False) and db.exists("host", h.ref):
        return db.get("host", h.ref)["address"]
    return h.address


def start_of_day(world, db, h, system_boot: bool) -> None:
    """``Xapi_pif.start_of_day_best_effort_bring_up`` at every xapi start: the host's managed
    PIFs that are not bond slaves and are physical, bond masters or have an IP
    configuration come up. After a system boot the other PIFs are down until a VM needs
    their network (``dbsync_slave`` ``sync_pif_currently_attached``)."""
    for pif in host_pifs(db, h.ref):
        row = db.get("PIF", pif)
        wanted = (
            row["managed"]
            and row["bond_slave_of"] == NULL_REF
            and (row["physical"] or row["bond_master_of"] or row["ip_configuration_mode"] != "None")
        )
        if wanted:
            bring_pif_up(world, db, pif)
        elif (
            system_boot
            and row["currently_attached"]
            and not row["management"]
            and row["bond_slave_of"] == NULL_REF
        ):
            bring_pif_down(db, pif)


def management_ip(row: dict) -> str:
    if row["primary_address_type"] == "IPv6":
        for a in row["IPv6"]:
            if a:
                return a.split("/", 1)[0]
        return ""
    return row["IP"]


def sync_host_address(world, db, host_ref: str) -> None:
    """``Xapi_mgmt_iface.on_dom0_networking_change``: ``host.address`` is the management
    interface's address. An address-less (DHCP / autoconf) management interface gets the
    endpoint's address from the simulated DHCP server; an interface with another address
    detaches ``host.address`` from the endpoint, which does not move."""
    h = world.hosts.get(host_ref)
    pif = management_pif(db, host_ref)
    if h is None or pif is None or not h.port:
        return  # not listening yet: bind_endpoint will set the address
    row = db.get("PIF", pif)
    dynamic = (
        row["ip_configuration_mode"] == "DHCP"
        if row["primary_address_type"] == "IPv4"
        else row["ipv6_configuration_mode"] in ("DHCP", "Autoconf")
    )
    ip = management_ip(row)
    if dynamic and ip != h.address_for_url and row["primary_address_type"] == "IPv4":
        db.set("PIF", pif, "IP", h.address_for_url)  # Helpers.update_pif_address
        ip = h.address_for_url
    if (dynamic and row["primary_address_type"] == "IPv6") or ip == "":
        ip = h.address_for_url
    address = h.address if ip == h.address_for_url else ip
    _set_detached(world, h, ip != h.address_for_url)
    if db.get("host", host_ref)["address"] != address:
        db.set("host", host_ref, "address", address)


# -- plugging -------------------------------------------------------------------------------


def bring_pif_up(world, db, pif: str, management: bool = False) -> None:
    """``Nm.bring_pif_up`` as the database sees it: a bond master's slaves go down; an
    unplugged PIF (or the new management interface) comes up with its network's MTU, a bond
    slave's master goes down, and the host's address is re-read."""
    row = db.get("PIF", pif)
    for bond in row["bond_master_of"]:
        for slave in db.get("Bond", bond)["slaves"]:
            if db.get("PIF", slave)["currently_attached"]:
                db.set("PIF", slave, "currently_attached", False)
    if not row["currently_attached"] or management:
        net = db.tables["network"].get(row["network"])
        changes = {"currently_attached": True}
        if net is not None and net["MTU"] != row["MTU"]:
            changes["MTU"] = net["MTU"]
        db.update("PIF", pif, **changes)
        bond = row["bond_slave_of"]
        if bond != NULL_REF and db.exists("Bond", bond):
            master = db.get("Bond", bond)["master"]
            if db.exists("PIF", master) and db.get("PIF", master)["currently_attached"]:
                db.set("PIF", master, "currently_attached", False)
        sync_host_address(world, db, row["host"])


def bring_pif_down(db, pif: str) -> None:
    """``Nm.bring_pif_down``."""
    if db.get("PIF", pif)["currently_attached"]:
        db.set("PIF", pif, "currently_attached", False)


def attach_network_on_host(world, db, network: str, host_ref: str) -> None:
    """``Xapi_network.attach_internal`` for a VM's VIF: the host's managed, unplugged PIFs
    on the network come up (bond slaves stay down; the placement checks refuse those)."""
    for pif in local_pifs(db, network, host_ref):
        row = db.get("PIF", pif)
        if row["managed"] and not row["currently_attached"] and row["bond_slave_of"] == NULL_REF:
            bring_pif_up(world, db, pif)


# -- VIFs and the VM's power state ----------------------------------------------------------


def vifs_follow_power(world, db, vm_ref: str) -> None:
    """After a VM's power state changed: a Running or Paused VM has every VIF plugged and
    its networks attached on its host; a Halted VM's VIFs are detached, unreserved and
    their operations cleared (``force_state_reset``); a Suspended VM's stay as they are.
    Then every VIF's ``allowed_operations`` is refreshed."""
    vm = db.tables["VM"].get(vm_ref)
    if vm is None:
        return
    power = vm["power_state"]
    for vif in list(vm["VIFs"]):
        row = db.tables["VIF"].get(vif)
        if row is None:
            continue
        if power in ("Running", "Paused"):
            if not row["currently_attached"]:
                db.set("VIF", vif, "currently_attached", True)
            if vm["resident_on"] != NULL_REF:
                attach_network_on_host(world, db, row["network"], vm["resident_on"])
        elif power == "Halted":
            changes: dict[str, object] = {}
            if row["currently_attached"]:
                changes["currently_attached"] = False
            if row["current_operations"]:
                changes["current_operations"] = {}
            if changes:
                db.update("VIF", vif, **changes)
        allowed.refresh_allowed(world, db, "VIF", vif)


# -- pool join and host removal -------------------------------------------------------------


def merge_networks(world, jdb, mdb) -> dict:
    """``Xapi_pool.update_non_vm_metadata`` for networks and PIFs, on the joiner's database
    ``jdb`` into the master's ``mdb``: a physical network or the host internal management
    network joins the master's network of the same bridge (else is introduced with it);
    any other network is created anew on the master (a new ``xapi<N>`` bridge); each
    physical PIF is introduced on its network with a new ref, uuid and metrics row. Returns
    {joiner network ref: master network ref}."""
    netmap = {}
    for ref, net in jdb.rows("network"):
        pifs = net["PIFs"]
        physical = bool(pifs) and jdb.get("PIF", pifs[0])["physical"]
        himn = net["other_config"].get("is_host_internal_management_network") == "true"
        if physical or himn:
            found = network_by_bridge(mdb, net["bridge"])
            netmap[ref] = (
                found
                if found is not None
                else world.new_row(
                    mdb,
                    "network",
                    name_label=net["name_label"],
                    name_description=net["name_description"],
                    MTU=net["MTU"],
                    other_config=dict(net["other_config"]),
                    bridge=net["bridge"],
                )
            )
        else:
            bridges = [r["bridge"] for _, r in mdb.rows("network")]
            netmap[ref] = world.new_row(
                mdb,
                "network",
                name_label=net["name_label"],
                name_description=net["name_description"],
                MTU=net["MTU"],
                other_config=dict(net["other_config"]),
                tags=list(net["tags"]),
                bridge=BridgeNames.of(world).choose(mdb, bridges),
            )
    for _pif, row in jdb.rows("PIF"):
        if not row["physical"]:
            continue
        metrics = NULL_REF
        if jdb.exists("PIF_metrics", row["metrics"]):
            m = dict(jdb.get("PIF_metrics", row["metrics"]))
            m.pop("uuid", None)
            metrics = world.new_row(mdb, "PIF_metrics", **m)
        fields = {
            k: v
            for k, v in row.items()
            if k
            not in (
                "uuid",
                "bond_master_of",
                "VLAN_slave_of",
                "tunnel_access_PIF_of",
                "tunnel_transport_PIF_of",
            )
        }
        fields.update(
            network=netmap.get(row["network"], NULL_REF), metrics=metrics, bond_slave_of=NULL_REF
        )
        world.new_row(mdb, "PIF", **fields)
    return netmap


def merge_vifs(jdb, mdb, netmap: dict, vms) -> None:
    """The joiner's VMs come over by metadata import: their VIFs, on the mapped networks
    (call once the VM rows are in ``mdb``)."""
    for vm in vms:
        for vif in jdb.get("VM", vm)["VIFs"]:
            row = jdb.get("VIF", vif)
            mdb.carry("VIF", vif, row, network=netmap.get(row["network"], row["network"]))


def forget_host_network(db, host_ref: str) -> None:
    """``Db_gc.gc_PIFs`` for a host that is gone: each of its PIFs, the metrics of its
    physical and bond PIFs, and the VLAN, tunnel and Bond records it was master of."""
    for pif in host_pifs(db, host_ref):
        row = db.tables["PIF"].get(pif)
        if row is None:
            continue
        if (row["physical"] or row["bond_master_of"]) and db.exists("PIF_metrics", row["metrics"]):
            db.remove("PIF_metrics", row["metrics"])
        if db.exists("VLAN", row["VLAN_master_of"]):
            db.remove("VLAN", row["VLAN_master_of"])
        for tunnel in list(row["tunnel_access_PIF_of"]):
            if db.exists("tunnel", tunnel):
                db.remove("tunnel", tunnel)
        for bond in list(row["bond_master_of"]):
            if db.exists("Bond", bond):
                db.remove("Bond", bond)
        db.remove("PIF", pif)


def assert_only_physical_pifs(db) -> None:
    """``pre_join_checks`` ``assert_only_physical_pifs``."""
    if any(not row["physical"] for _, row in db.rows("PIF")):
        raise Failure("POOL_JOINING_HOST_MUST_ONLY_HAVE_PHYSICAL_PIFS")
