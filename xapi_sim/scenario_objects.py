"""A scenario's storage and networking -> objects of the world, and back.

``[[sr]]`` and ``[[network]]`` tables and a ``[[vm]]``'s ``disks`` and ``vifs``
(docs/scenarios.md) are built through the same code as the API calls an administrator would
have made (``SR.introduce`` + ``PBD.create`` + ``PBD.plug`` for an SR on the listed hosts,
``network.create``, ``VDI.create`` + ``VBD.create``, ``VIF.create``), so every check and
relation holds as after those calls; a call's refusal becomes a load error naming the
entry. Export writes back the SRs and networks that the installer did not create and every
VM's disks and VIFs.
"""

from __future__ import annotations

import json

from . import install_storage
from .classes import guest_agent, network_vif, storage_sr, storage_vbd, storage_vdi, storage_vm
from .datamodel import NULL_REF
from .dispatch import Call
from .errors import Failure
from .scenario_spec import ScenarioError, _err

# device_config a scenario SR gets unless it gives its own (each passes its backend's checks)
DEFAULT_DEVICE_CONFIG = {
    "ext": lambda name: {"device": "/dev/sdb"},
    "lvm": lambda name: {"device": "/dev/sdb"},
    "nfs": lambda name: {"server": "192.168.0.10", "serverpath": f"/export/{name}"},
    "iso": lambda name: {"location": "192.168.0.10:/export/iso"},
    "lvmoiscsi": lambda name: {
        "target": "192.168.0.20",
        "targetIQN": "iqn.2016-01.com.example:storage",
        "SCSIid": "36001405e8f7c3a0e4d4e5a1b2c3d4e5f",
    },
    "dummy": lambda name: {},
}
_INSTALLER_SRS = ("local-storage", "local-hotplug-disk", "local-hotplug-cd", "xenserver-tools")


def _call(world, host) -> Call:
    return Call(world, host, "scenario")


def _fail(scn, kind, i, entry, field, f: Failure) -> ScenarioError:
    return _err(scn.source, kind, i, entry, field, "refused: " + " ".join(f.description))


def build_srs(world, scn, runtime) -> None:
    """Every ``[[sr]]``: the record, a PBD per listed host (plugged), its size, and the
    pool's ``default_SR`` (and suspend/crash-dump SRs) if it says ``default``."""
    for i, s in enumerate(scn.srs):
        entry = {"name_label": s.name_label}
        host = runtime[s.hosts[0]]
        call = _call(world, host)
        db = host.pool.db
        dc = dict(s.device_config) or DEFAULT_DEVICE_CONFIG[s.type](s.name_label)
        try:
            with db.lock:
                sr = storage_sr.introduce_sr(
                    call, s.uuid or "", s.name_label, s.name_description, s.type,
                    s.content_type, s.shared, {},
                )  # fmt: skip
                for name in s.hosts:
                    pbd = storage_sr.create_pbd(call, runtime[name].ref, sr, dc)
                    storage_sr.plug_pbd(call, pbd)
                if s.size is not None:
                    db.set("SR", sr, "physical_size", s.size)
                    install_storage.recompute_sr(db, sr)
                if s.default:
                    pool_ref = host.pool.ref
                    db.update(
                        "pool", pool_ref, default_SR=sr, suspend_image_SR=sr, crash_dump_SR=sr
                    )
                storage_sr.refresh_sr(call, sr)
        except Failure as f:
            raise _fail(scn, "sr", i, entry, "device_config", f) from None


def build_networks(world, scn, runtime) -> None:
    first = next(iter(runtime.values()))
    for i, n in enumerate(scn.networks):
        host = runtime[n.host] if n.host else first
        record = {
            "name_label": n.name_label,
            "name_description": n.name_description,
            "MTU": str(n.MTU),
            "other_config": {},
        }
        try:
            with host.pool.db.lock:
                ref = network_vif.network_create(_call(world, host), record)
                if n.uuid:
                    _set_uuid(host.pool.db, "network", ref, n.uuid)
        except Failure as f:
            raise _fail(scn, "network", i, {"name_label": n.name_label}, "", f) from None


def _set_uuid(db, cls, ref, uuid) -> None:
    if uuid in db.uuids[cls]:
        raise Failure("UUID_INVALID", cls, uuid)
    db.set(cls, ref, "uuid", uuid)


def _by_name(db, cls, name):
    for ref, row in db.rows(cls):
        if row["name_label"] == name:
            return ref
    return None


def _sr_named(db, name, v, host):
    """An SR of the pool by name; of several (each host's "Local storage"), the one the
    VM's host has a PBD for."""
    found = [ref for ref, row in db.rows("SR") if row["name_label"] == name]
    want = v.host and host.ref
    for ref in found:
        if any(db.get("PBD", p)["host"] == want for p in db.get("SR", ref)["PBDs"]):
            return ref
    return found[0] if found else None


def build_vm_devices(world, scn, i, v, host, vm) -> None:
    """A VM's ``disks`` (a VDI and a VBD each) and ``vifs``, then their attachment as its
    power state has them; a running guest with drivers reports the VIFs' addresses."""
    entry = {"name_label": v.name_label}
    db = host.pool.db
    call = _call(world, host)
    field = "disks"
    try:
        with db.lock:
            pool_row = db.get("pool", host.pool.ref)
            for j, d in enumerate(v.disks):
                field = f"disks[{j}]"
                sr = _sr_named(db, d.sr, v, host) if d.sr else pool_row["default_SR"]
                if sr is None or sr == NULL_REF:
                    raise Failure("HANDLE_INVALID", "SR", str(d.sr))
                vdi = storage_vdi.create_vdi(
                    call,
                    sr,
                    name_label=d.name_label,
                    name_description="",
                    virtual_size=d.size,
                    type="system" if j == 0 else "user",
                    sharable=False,
                    read_only=False,
                    other_config={},
                    xenstore_data={},
                    sm_config={},
                    tags=[],
                )
                storage_vbd.create_vbd(call, _vbd_record(db, vm, vdi, d))
            for j, n in enumerate(v.vifs):
                field = f"vifs[{j}]"
                net = _by_name(db, "network", n.network)
                if net is None:
                    raise Failure("HANDLE_INVALID", "network", n.network)
                used = {db.get("VIF", x)["device"] for x in db.get("VM", vm)["VIFs"]}
                device = n.device or next(str(k) for k in range(7) if str(k) not in used)
                network_vif.create(
                    call,
                    {
                        "device": device,
                        "network": net,
                        "VM": vm,
                        "MAC": n.mac,
                        "MTU": "1500",
                        "other_config": {},
                        "qos_algorithm_type": "",
                        "qos_algorithm_params": {},
                    },
                )
            field = "power_state"
            row = db.get("VM", vm)
            if row["resident_on"] != NULL_REF:
                install_storage.assert_can_see_srs(db, vm, row, row["resident_on"])
            storage_vm.on_power_change(call, vm, row["power_state"])
            network_vif.network_on_power_change(call, vm)
            guest_agent.refresh_networks(call, db, vm)
    except Failure as f:
        raise _fail(scn, "vm", i, entry, field, f) from None


def _vbd_record(db, vm, vdi, d) -> dict:
    return {
        "VM": vm,
        "VDI": vdi,
        "userdevice": d.device or "autodetect",
        "bootable": d.bootable,
        "mode": "RW",
        "type": "Disk",
        "unpluggable": True,
        "empty": False,
        "other_config": {"owner": "true"},
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
    }


# -- export ---------------------------------------------------------------------------------


def _q(v: str) -> str:
    return json.dumps(v, ensure_ascii=False)


def _size(n: int) -> str:
    for unit, f in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n % f == 0:
            return f'"{n // f}{unit}"'
    return str(n)


def installer_sr(row) -> bool:
    return row["other_config"].get("i18n-key") in _INSTALLER_SRS or bool(row.get("is_tools_sr"))


def installer_network(row) -> bool:
    oc = row["other_config"]
    return oc.get("automatic") == "true" or "is_host_internal_management_network" in oc


def export_srs(world, pool) -> list[str]:
    db, out = pool.db, []
    default = db.get("pool", pool.ref)["default_SR"]
    names: set[str] = set()
    for ref, row in db.rows("SR"):
        if installer_sr(row) or row["type"] not in DEFAULT_DEVICE_CONFIG:
            continue
        if row["name_label"] in names or not row["name_label"]:
            continue  # a scenario names its SRs uniquely: the first of a name stands for all
        names.add(row["name_label"])
        pbds = [db.get("PBD", p) for p in row["PBDs"]]
        hosts = [world.hosts[p["host"]].name_label for p in pbds if p["host"] in world.hosts]
        if not hosts:
            continue
        dc = pbds[0]["device_config"]
        out += [
            "[[sr]]",
            f"name_label = {_q(row['name_label'])}",
            f"type = {_q(row['type'])}",
            "hosts = [" + ", ".join(_q(h) for h in hosts) + "]",
            f"shared = {'true' if row['shared'] else 'false'}",
            "device_config = {" + ", ".join(f"{_q(k)} = {_q(v)}" for k, v in dc.items()) + "}",
            f"content_type = {_q(row['content_type'])}",
        ]
        if 1 << 30 <= row["physical_size"] <= 1 << 50:
            out.append(f"size = {_size(row['physical_size'])}")
        if row["name_description"]:
            out.append(f"name_description = {_q(row['name_description'])}")
        if ref == default:
            out.append("default = true")
        out += [f"uuid = {_q(row['uuid'])}", ""]
    return out


def export_networks(pool) -> list[str]:
    out = []
    for _ref, row in pool.db.rows("network"):
        if installer_network(row) or row["PIFs"]:
            continue
        out += [
            "[[network]]",
            f"name_label = {_q(row['name_label'])}",
            f"host = {_q(pool.master.name_label)}",
        ]
        if row["name_description"]:
            out.append(f"name_description = {_q(row['name_description'])}")
        out += [f"MTU = {row['MTU']}", f"uuid = {_q(row['uuid'])}", ""]
    return out


def export_vm_devices(db, row) -> list[str]:
    """``disks = [...]`` and ``vifs = [...]`` lines for a VM (CD drives are not kept)."""
    disks, vifs = [], []
    for vbd in row["VBDs"]:
        b = db.tables["VBD"].get(vbd)
        if b is None or b["type"] != "Disk" or b["empty"]:
            continue
        vdi = db.tables["VDI"].get(b["VDI"])
        if vdi is None:
            continue
        sr = db.tables["SR"].get(vdi["SR"])
        parts = [f"size = {_size(vdi['virtual_size'])}"]
        if sr is not None:
            parts.append(f"sr = {_q(sr['name_label'])}")
        if vdi["name_label"]:
            parts.append(f"name_label = {_q(vdi['name_label'])}")
        parts += [f"device = {_q(b['userdevice'])}", f"bootable = {str(b['bootable']).lower()}"]
        disks.append((int(b["userdevice"]) if b["userdevice"].isdigit() else 999, parts))
    for vif in row["VIFs"]:
        f = db.tables["VIF"].get(vif)
        if f is None:
            continue
        net = db.tables["network"].get(f["network"])
        if net is None:
            continue
        parts = [
            f"network = {_q(net['name_label'])}",
            f"device = {_q(f['device'])}",
            f"mac = {_q(f['MAC'])}",
        ]
        vifs.append((f["device"], parts))
    out = []
    if disks:
        items = ", ".join("{" + ", ".join(p) + "}" for _, p in sorted(disks))
        out.append(f"disks = [{items}]")
    if vifs:
        items = ", ".join("{" + ", ".join(p) + "}" for _, p in sorted(vifs))
        out.append(f"vifs = [{items}]")
    return out
