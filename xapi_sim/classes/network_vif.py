"""Networks and VIFs: xen-api ``dundee-lcm`` ``xapi_network.ml``, ``xapi_blob.ml``,
``xapi_vif.ml``, ``xapi_vif_helpers.ml``,
``xapi_vm_helpers.ml`` (``allowed_VIF_devices``), ``xapi_xenops.ml`` (``vif_plug``,
``vif_unplug``) and ``message_forwarding.ml`` (``VIF``: plug/unplug marked with
``with_vif_marked``, forwarded to the VM's host); 6.5 SP1 from xen-api ``v1.9.60``.

* ``VIF.create`` in xapi's order: VIF locking licence (``LICENCE_RESTRICTION``), the
  device must parse as an OCaml int (``INVALID_DEVICE``), an empty MAC is generated from
  the VM's ``other_config:mac_seed`` and the device number (``gen_mac``; without a seed
  the empty MAC stays and fails), ``MAC_INVALID``, the HA agility rule, the VM
  (``HANDLE_INVALID``), ``DEVICE_ALREADY_EXISTS`` (devices compare as strings). xapi also
  accepts a dangling network ref (its GC deletes the VIF later): the simulator refuses it
  with ``HANDLE_INVALID ["network", ref]``, after the VM check. A device number whose MAC
  xapi would hash forever (negative) or for minutes (above 65535) is refused with
  ``INVALID_DEVICE``.
* ``plug``/``unplug``/``unplug_force``: the VIF's operation check (``checks/network.py``),
  then the VM's host must be live; ``currently_attached`` follows.
* ``currently_attached`` follows the VM's power state (``network_on_power_change``).
* ``configure_ipv4``/``configure_ipv6`` (7.0 only), locking mode and allowed addresses.
* ``move`` (7.1 on; xen-api ``v24.16.0`` / ``1.249-lcm`` ``Xapi_vif.move``,
  ``Xapi_network_attach_helpers.assert_can_see_named_networks``, ``Xapi_xenops.vif_move``):
  forwarded to the VM's host (``forward_vif_op``, no operation marked); an active VIF
  (attached, VM not suspended) is moved live, its new network attached on the host, and
  stays plugged; otherwise only ``network`` changes.
"""

from __future__ import annotations

from .. import install_network as inet
from .. import netlogic
from ..checks.operations import setify
from ..datamodel import NULL_REF
from ..dispatch import api
from ..errors import Failure, internal
from ..wire.values import convert
from . import common as c
from . import guest_agent
from .common import on_host
from .network_pif import xha_protected

MAX_GENERATED_DEVICE = 65535

# Dundee's VIF constructor arguments (Local.VIF.create); currently_attached is DynamicRO.
_VIF_CTOR = (
    "device",
    "network",
    "VM",
    "MAC",
    "MTU",
    "other_config",
    "qos_algorithm_type",
    "qos_algorithm_params",
    "locking_mode",
    "ipv4_allowed",
    "ipv6_allowed",
)


def ctor_args(call, cls: str, record, names) -> dict:
    """``gen_server.ml`` ``from_ctor_record``: each constructor field converted, a missing
    one without a default -> ``Dispatcher_FieldNotFound``; the fields in ``names`` kept."""
    if not isinstance(record, dict):
        raise internal('Server_helpers.Dispatcher_FieldNotFound("record")')
    c_ = call.db.schema.classes[cls]
    out = {}
    for f in c_.fields.values():
        if f.qualifier not in ("RW", "RO/constructor"):
            continue
        if f.name in record:
            out[f.name] = convert(f.type, record[f.name])
        elif not f.has_default:
            raise internal(f'Server_helpers.Dispatcher_FieldNotFound("{f.name}")')
    return {k: v for k, v in out.items() if k in names}


def assert_feature(db, restriction: str, feature: str) -> None:
    """``Pool_features.assert_enabled``."""
    if not inet.feature_enabled(db, restriction):
        raise Failure("LICENCE_RESTRICTION", feature)


def network_properly_shared(db, network: str) -> bool:
    """``Agility.is_network_properly_shared``: every enabled host has a non-slave PIF on it."""
    net = db.get("network", network)
    hosts = {
        db.tables["PIF"][p]["host"]
        for p in net["PIFs"]
        if not db.exists("Bond", db.tables["PIF"][p]["bond_slave_of"])
    }
    return all(h in hosts for h, row in db.rows("host") if row["enabled"])


@api("VIF.create")
def create(call, args):
    world, db = call.world, call.db
    a = ctor_args(call, "VIF", args, _VIF_CTOR)
    device, network, vm, mac = a["device"], a["network"], a["VM"], a["MAC"]
    locking = a.get("locking_mode", "network_default")
    v4, v6 = a.get("ipv4_allowed", []), a.get("ipv6_allowed", [])
    if locking == "locked" or v4 or v6:
        assert_feature(db, "restrict_vif_locking", "VIF_locking")
    vm_row = db.tables["VM"].get(vm)
    seed = vm_row["other_config"].get("mac_seed") if vm_row is not None else None
    try:
        dev = netlogic.ocaml_int(device)
    except ValueError:
        raise Failure("INVALID_DEVICE", device) from None
    generated = False
    if seed is not None and mac == "":
        if not 0 <= dev <= MAX_GENERATED_DEVICE:
            raise Failure("INVALID_DEVICE", device)
        mac, generated = netlogic.gen_mac(dev, seed), True  # outside the database lock
    if not netlogic.is_valid_mac(mac):
        raise Failure("MAC_INVALID", mac)
    with db.lock:
        pool = inet.pool_row(db)
        if (
            pool.get("ha_enabled")
            and not pool.get("ha_allow_overcommit")
            and xha_protected(db.get("VM", vm))
            and not network_properly_shared(db, network)
        ):
            raise Failure("HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN")
        vm_row = db.get("VM", vm)
        db.get("network", network)
        if any(db.tables["VIF"][v]["device"] == device for v in vm_row["VIFs"]):
            raise Failure("DEVICE_ALREADY_EXISTS", device)
        ref = world.new_row(
            db,
            "VIF",
            device=device,
            network=network,
            VM=vm,
            MAC=mac,
            MTU=a["MTU"],
            other_config=dict(a["other_config"]),
            currently_attached=False,
            qos_algorithm_type=a["qos_algorithm_type"],
            qos_algorithm_params=dict(a["qos_algorithm_params"]),
            qos_supported_algorithms=[],
            MAC_autogenerated=generated,
            locking_mode=locking,
            ipv4_allowed=list(v4),
            ipv6_allowed=list(v6),
            status_code=0,
            status_detail="",
            runtime_properties={},
            current_operations={},
            allowed_operations=[],
        )
        c.refresh_allowed(world, db, "VIF", ref)
        return ref


@api("VIF.destroy")
def destroy(call, self):
    """``Xapi_vif_helpers.destroy``: not while attached to a running domain. (A VIF whose VM
    is gone -- xapi's GC would have removed it -- is destroyed.)"""
    db = call.db
    with db.lock:
        row = db.get("VIF", self)
        vm = db.tables["VM"].get(row["VM"])
        if vm is not None and vm["domid"] != -1 and row["currently_attached"]:
            raise Failure("OPERATION_NOT_ALLOWED", "VIF currently attached to a running VM")
        db.remove("VIF", self)


def _vif_op(call, vif, op, attached):
    """``with_vif_marked`` + ``forward_vif_op`` + ``Xapi_xenops.vif_plug``/``vif_unplug``."""
    db = call.db
    with db.lock:
        db.get("VIF", vif)
        with c.with_operation(call, "VIF", vif, op) as token:
            row = db.get("VIF", vif)
            vm = db.get("VM", row["VM"])
            if vm["resident_on"] != NULL_REF:
                on_host(call, vm["resident_on"])
            token.mark()
            if attached and vm["resident_on"] != NULL_REF:
                for v in vm["VIFs"]:  # with_networks_attached_for_vm
                    inet.attach_network_on_host(
                        call.world, db, db.get("VIF", v)["network"], vm["resident_on"]
                    )
            db.set("VIF", vif, "currently_attached", attached)
            guest_agent.refresh_networks(call, db, row["VM"])


@api("VIF.plug")
def plug(call, self):
    _vif_op(call, self, "plug", True)


@api("VIF.unplug")
def unplug(call, self):
    _vif_op(call, self, "unplug", False)


@api("VIF.unplug_force")
def unplug_force(call, self):
    _vif_op(call, self, "unplug", False)


def _forwarded(call, vif):
    """``forward_vif_op``: the VIF's row; its VM's host must be live if it has one."""
    row = call.db.get("VIF", vif)
    vm = call.db.get("VM", row["VM"])
    if vm["resident_on"] != NULL_REF:
        on_host(call, vm["resident_on"])
    return row, vm


def _effective_locking(db, row, mode):
    if mode == "network_default":
        return db.get("network", row["network"])["default_locking_mode"]
    return mode


def _configure(call, vif, kind, mode, address, gateway):
    """``Xapi_vif.configure_ipv4`` / ``configure_ipv6``."""
    db = call.db
    with db.lock:
        row, vm = _forwarded(call, vif)
        if mode == "Static":
            assert_feature(db, "restrict_guest_ip_setting", "Guest_ip_setting")
            parsed = netlogic.parse_cidr(kind, address)
            if parsed is None:
                raise Failure("INVALID_CIDR_ADDRESS_SPECIFIED", "address")
            if (
                _effective_locking(db, row, row["locking_mode"]) == "locked"
                and parsed[0] not in row[f"{kind}_allowed"]
            ):
                raise Failure("ADDRESS_VIOLATES_LOCKING_CONSTRAINT", address)
            if gateway != "" and not netlogic.is_valid_ip(kind, gateway):
                raise Failure("INVALID_IP_ADDRESS_SPECIFIED", "gateway")
        gm = c.vm_facts(call.world, db, vm)["guest_metrics"] or {}
        if (gm.get("other") or {}).get("feature-static-ip-setting") != "1":
            raise Failure("VM_LACKS_FEATURE_STATIC_IP_SETTING", row["VM"])
        db.update(
            "VIF",
            vif,
            **{
                f"{kind}_configuration_mode": mode,
                f"{kind}_addresses": [address],
                f"{kind}_gateway": gateway,
            },
        )
        guest_agent.refresh_networks(call, db, row["VM"])


def network_seen_by(db, network: str, host: str) -> bool:
    """``assert_can_see_named_networks``' ``is_network_available_on``: a network with PIFs is
    seen by the hosts of those PIFs; one without, if ``other_config:assume_network_is_shared``
    is ``true``, if it is not ``managed`` (later releases), or if no running VM with a VIF on
    it sits on another host."""
    net = db.get("network", network)
    if net["PIFs"]:
        return any(db.tables["PIF"][p]["host"] == host for p in net["PIFs"])
    if net["other_config"].get("assume_network_is_shared") == "true":
        return True
    if "managed" in net and not net["managed"]:
        return True
    hosts = []
    for v in net["VIFs"]:
        vm = db.tables["VM"].get(db.tables["VIF"][v]["VM"])
        if vm is not None and vm["power_state"] == "Running":
            hosts.append(vm["resident_on"])
    return not hosts or host in hosts


@api("VIF.move")
def move(call, self, network):
    """``Xapi_vif.move`` behind ``forward_vif_op``: the VIF, then its VM's host must be live
    (``HOST_OFFLINE``); an active VIF's host must see the network
    (``VM_REQUIRES_NET`` becomes ``HOST_CANNOT_ATTACH_NETWORK [host, network]``); the VIF's
    ``network`` is set, and an active one is re-plugged there by xenopsd (its network
    attached on the host, ``currently_attached`` stays true). xapi would store a dangling
    network ref for an inactive VIF; the simulator answers ``HANDLE_INVALID`` as in
    ``VIF.create``."""
    db = call.db
    with db.lock:
        row, vm = _forwarded(call, self)
        db.get("network", network)
        active = row["currently_attached"] and vm["power_state"] != "Suspended"
        host = vm["resident_on"]
        if active and not network_seen_by(db, network, host):
            raise Failure("HOST_CANNOT_ATTACH_NETWORK", host, network)
        db.set("VIF", self, "network", network)
        if active:
            inet.attach_network_on_host(call.world, db, network, host)
            guest_agent.refresh_networks(call, db, row["VM"])


@api("VIF.configure_ipv4")
def configure_ipv4(call, self, mode, address, gateway):
    _configure(call, self, "ipv4", mode, address, gateway)


@api("VIF.configure_ipv6")
def configure_ipv6(call, self, mode, address, gateway):
    _configure(call, self, "ipv6", mode, address, gateway)


@api("VIF.set_locking_mode")
def set_locking_mode(call, self, value):
    db = call.db
    with db.lock:
        row, _vm = _forwarded(call, self)
        locked = _effective_locking(db, row, value) == "locked"
        if locked and inet.pool_row(db).get("vswitch_controller", ""):
            raise Failure("OPERATION_NOT_ALLOWED", "A vswitch controller is active")
        if locked:
            assert_feature(db, "restrict_vif_locking", "VIF_locking")
        db.set("VIF", self, "locking_mode", value)


def _allowed(call, vif, kind, how, value):
    """``set_/add_/remove_ipv{4,6}_allowed`` (``change_locking_config``: the licence first,
    then the addresses)."""
    db = call.db
    field = f"{kind}_allowed"
    with db.lock:
        row, _vm = _forwarded(call, vif)
        if how == "set":
            values = setify(value)
            if values:
                assert_feature(db, "restrict_vif_locking", "VIF_locking")
            for v in values:
                if not netlogic.is_valid_ip(kind, v):
                    raise Failure("INVALID_IP_ADDRESS_SPECIFIED", field)
            db.set("VIF", vif, field, values)
        elif how == "add":
            assert_feature(db, "restrict_vif_locking", "VIF_locking")
            if not netlogic.is_valid_ip(kind, value):
                raise Failure("INVALID_IP_ADDRESS_SPECIFIED", field)
            if value not in row[field]:
                db.set("VIF", vif, field, row[field] + [value])
        elif value in row[field]:
            db.set("VIF", vif, field, [v for v in row[field] if v != value])


for _kind in ("ipv4", "ipv6"):
    for _how in ("set", "add", "remove"):

        def _handler(call, self, value, _k=_kind, _h=_how):
            _allowed(call, self, _k, _h, value)

        api(f"VIF.{_how}_{_kind}_allowed")(_handler)


# -- networks (xapi_network.ml, xapi_blob.ml) ----------------------------------------------


@api("network.create")
def network_create(call, args):
    """``Xapi_network.create``: the record's name, description, MTU (<= 0 -> 1500), other
    config and tags; the bridge is the next free ``xapi<N>`` (Dundee's ``bridge`` is not a
    constructor field)."""
    world, db = call.world, call.db
    a = ctor_args(
        call, "network", args, ("name_label", "name_description", "MTU", "other_config", "tags")
    )
    mtu = a.get("MTU", 1500)
    with db.lock:
        bridge = inet.BridgeNames.of(world).choose(db, [r["bridge"] for _, r in db.rows("network")])
        return world.new_row(
            db,
            "network",
            name_label=a.get("name_label", ""),
            name_description=a.get("name_description", ""),
            MTU=mtu if mtu > 0 else 1500,
            bridge=bridge,
            other_config=dict(a["other_config"]),
            tags=list(a.get("tags", [])),
            blobs={},
            default_locking_mode="unlocked",
            assigned_ips={},
        )


@api("network.destroy")
def network_destroy(call, self):
    """Attached (or reserved) VIFs -> ``NETWORK_CONTAINS_VIF``; PIFs ->
    ``NETWORK_CONTAINS_PIF``; the host internal management network ->
    ``CANNOT_DESTROY_SYSTEM_NETWORK``; otherwise its VIFs go with it."""
    db = call.db
    with db.lock:
        row = db.get("network", self)
        connected = [v for v in row["VIFs"] if db.get("VIF", v)["currently_attached"]]
        if connected:
            raise Failure("NETWORK_CONTAINS_VIF", *connected)
        if row["PIFs"]:
            raise Failure("NETWORK_CONTAINS_PIF", *row["PIFs"])
        if row["other_config"].get("is_host_internal_management_network") == "true":
            raise Failure("CANNOT_DESTROY_SYSTEM_NETWORK", self)
        for vif in list(row["VIFs"]):
            db.remove("VIF", vif)
        db.remove("network", self)


@api("network.set_default_locking_mode")
def set_default_locking_mode(call, network, value):
    db = call.db
    with db.lock:
        for vif in db.get("network", network)["VIFs"]:
            if db.get("VIF", vif)["currently_attached"]:
                raise Failure("VIF_IN_USE", network, vif)
        db.set("network", network, "default_locking_mode", value)


@api("network.create_new_blob")
def create_new_blob(call, network, name, mime_type, public=False):
    """``Xapi_blob.create`` (empty, ``application/octet-stream`` by default) added to the
    network's ``blobs`` under ``name``."""
    world, db = call.world, call.db
    with db.lock:
        row = db.get("network", network)
        blob = world.new_row(
            db,
            "blob",
            name_label="",
            name_description="",
            size=0,
            public=public,
            mime_type=mime_type or "application/octet-stream",
        )
        if name in row["blobs"]:
            raise Failure("MAP_DUPLICATE_KEY", "network", "blobs", network, name)
        db.set("network", network, "blobs", {**row["blobs"], name: blob})
        return blob


# -- VM side --------------------------------------------------------------------------------


def allowed_vif_devices(db, vm_row, guest_metrics) -> list:
    """``Xapi_vm_helpers.allowed_VIF_devices``: 0..6 in 7.0 whatever the guest; in 6.5 SP1
    an HVM guest without PV drivers (no ``PV_drivers_version``) gets 0..3 only."""
    top = 6
    if (
        db.schema.release == "cream"
        and c.is_hvm(vm_row)
        and not (guest_metrics or {}).get("PV_drivers_version")
    ):
        top = 3
    used = {db.tables["VIF"][v]["device"] for v in vm_row["VIFs"] if v in db.tables["VIF"]}
    return [str(d) for d in range(top + 1) if str(d) not in used]


@api("VM.get_allowed_VIF_devices")
def get_allowed_vif_devices(call, vm):
    row = call.db.get("VM", vm)
    return allowed_vif_devices(call.db, row, c.vm_facts(call.world, call.db, row)["guest_metrics"])


def network_on_power_change(call, vm_ref) -> None:
    """Called by the VM power code after a power-state change: VIFs plugged while the VM
    runs, detached when it halts (``install_network.vifs_follow_power``)."""
    inet.vifs_follow_power(call.world, call.db, vm_ref)


# -- helpers for provisioning (VM.destroy, clone, copy) -------------------------------------


def destroy_vm_vifs(call, vm_ref) -> None:
    """``Xapi_vm.destroy``'s VIF part: every VIF of the VM goes."""
    db = call.db
    with db.lock:
        for vif in list(db.get("VM", vm_ref)["VIFs"]):
            db.remove("VIF", vif)


def copy_vif(call, vif, vm_ref, preserve_mac=False) -> str:
    """``Xapi_vif_helpers.copy``: the same device and network on ``vm_ref``; a new MAC from
    its ``mac_seed`` unless ``preserve_mac``."""
    row = call.db.get("VIF", vif)
    record = {k: row[k] for k in _VIF_CTOR}
    record.update(VM=vm_ref, MAC=row["MAC"] if preserve_mac else "")
    return create(call, record)
