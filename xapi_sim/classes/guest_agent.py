"""The guest agent: ``VM_guest_metrics`` as xapi writes them for a guest with PV drivers.

Mirrors xen-api ``dundee-lcm``:

* ``xapi_guest_agent.ml`` ``all``: when the guest agent has written ``data/updated``, the
  VM's guest metrics row is created if the VM has none (``live`` true, ``last_updated`` now,
  ``PV_drivers_up_to_date``/``PV_drivers_detected`` false, ``can_use_hotplug_*``
  unspecified), else updated field by field. ``PV_drivers_version`` comes from
  ``attr/PVAddons/{Major,Minor,Micro,Build}Version`` (``micro`` defaulting to "-1"),
  ``os_version`` from ``data/os_*``, ``networks`` from ``attr/ethN/ip`` as ``"N/ip"`` (the
  ``ethN`` directories folded, so the last listed comes first), ``other`` from the
  ``control/*`` keys. Memory is not written to the row in Dundee (it goes to the RRDs), and
  ``memory``/``disks`` are not fields of the 7.0 API.
* ``xapi_xenops.ml`` ``update_vm``: ``update_pv_drivers_detected`` then sets
  ``PV_drivers_detected`` and ``PV_drivers_up_to_date`` to what xenopsd saw (true with
  drivers); at a new ``last_start_time`` guest metrics older than the start are deleted
  (``Xapi_vm_helpers.delete_guest_metrics``) before the agent's first report of the new
  domain. Nothing removes them when the VM halts or suspends (``live`` stays true): a halted
  VM keeps the metrics of its last run.

The simulator runs no guest: "the guest has PV drivers" *is* the VM having guest metrics
that report a ``PV_drivers_version`` (``checks.vm.has_pv_drivers``). So the state survives
restarts and ``export``, clones inherit it (``copy_guest_metrics``), and a scenario VM's
``pv_drivers`` key or :func:`set_pv_drivers` (``sim.vm_set_pv_drivers``) decide it. The
agent reports at once when the domain boots (a real agent reports a few seconds later).
Addresses: a VIF configured ``Static`` (``VIF.configure_ipv4``) reports its address; any
other attached VIF an address its network's DHCP would plausibly hand out, derived from
the MAC (``10.b3.b4.b5``, the last byte kept in 1..254).
"""

from __future__ import annotations

from ..checks import vm as vm_checks
from ..datamodel import NULL_REF
from ..dispatch import control
from ..errors import Failure
from . import common as c

# What XenServer 7.0's Linux guest tools (xe-guest-utilities 7.0) report for a CentOS 7
# guest, and the control keys the kernel and xenopsd leave in control/.
LINUX_DRIVERS = {"major": "7", "minor": "0", "micro": "0", "build": "125"}
LINUX_OS = {
    "name": "CentOS Linux release 7.2.1511 (Core)",
    "uname": "3.10.0-327.el7.x86_64",
    "distro": "centos",
    "major": "7",
    "minor": "2",
}
CONTROL_KEYS = {
    "feature-balloon": "1",
    "feature-poweroff": "1",
    "feature-reboot": "1",
    "feature-shutdown": "1",
    "feature-suspend": "1",
    "feature-vcpu-hotplug": "1",
    "feature-static-ip-setting": "1",
    "has-vendor-device": "0",
    "platform-feature-multiprocessor-suspend": "1",
    "platform-feature-xs_reset_watches": "1",
}


def _gm(db, vm_row):
    table = db.tables.get("VM_guest_metrics", {})
    ref = vm_row["guest_metrics"]
    return ref, table.get(ref)


def has_drivers(db, vm_row) -> bool:
    """Does the guest run PV drivers (its guest metrics report a drivers version)?"""
    return vm_checks.has_pv_drivers(_gm(db, vm_row)[1])


def _address(db, vif_row) -> str:
    if vif_row.get("ipv4_configuration_mode") == "Static" and vif_row.get("ipv4_addresses"):
        return vif_row["ipv4_addresses"][0].split("/")[0]
    try:
        b = [int(x, 16) for x in vif_row["MAC"].split(":")]
        last = min(max(b[5], 1), 254)
        return f"10.{b[3]}.{b[4]}.{last}"
    except (ValueError, IndexError):
        return ""


def networks(db, vm_row) -> dict:
    """``networks``: ``"N/ip"`` per attached VIF of device N (xapi's fold order)."""
    out = []
    for vif in vm_row["VIFs"]:
        row = db.tables["VIF"].get(vif)
        if row is None or not row["currently_attached"]:
            continue
        ip = _address(db, row)
        if ip:
            out.append((row["device"], ip))
    out.sort(key=lambda d: (len(d[0]), d[0]), reverse=True)
    return {f"{dev}/ip": ip for dev, ip in out}


def _report_fields(world, db, vm_row) -> dict:
    fields = dict(
        os_version=dict(LINUX_OS),
        PV_drivers_version=dict(LINUX_DRIVERS),
        networks=networks(db, vm_row),
        other=dict(CONTROL_KEYS),
        last_updated=world.clock.now_ts(),
    )
    gm_fields = db.schema.classes["VM_guest_metrics"].fields
    if "PV_drivers_detected" in gm_fields:
        fields["PV_drivers_detected"] = True
    fields["PV_drivers_up_to_date"] = True
    return fields


def report(world, db, vm) -> str:
    """The agent's report for a running guest with drivers: create or update the row (a
    VM whose ``guest_metrics`` names no row gets a fresh one)."""
    row = db.get("VM", vm)
    ref, gm = _gm(db, row)
    fields = _report_fields(world, db, row)
    if gm is None:
        gm_fields = db.schema.classes["VM_guest_metrics"].fields
        extra: dict[str, object] = {"live": True}
        for k in ("can_use_hotplug_vbd", "can_use_hotplug_vif"):
            if k in gm_fields:
                extra[k] = "unspecified"
        ref = world.new_row(db, "VM_guest_metrics", other_config={}, **extra, **fields)
        db.set("VM", vm, "guest_metrics", ref)
    else:
        changed = {k: v for k, v in fields.items() if gm.get(k) != v}
        if changed:
            db.update("VM_guest_metrics", ref, **changed)
    return ref


def delete(db, vm) -> None:
    """``Xapi_vm_helpers.delete_guest_metrics``."""
    ref, gm = _gm(db, db.get("VM", vm))
    db.set("VM", vm, "guest_metrics", NULL_REF)
    if gm is not None:
        db.remove("VM_guest_metrics", ref)


def on_power_change(call, vm, new_domain: bool) -> None:
    """After a power change: a new domain (start, reboot) drops the metrics of the last
    run and, if the guest has drivers, its agent reports afresh; a running guest's agent
    re-reports (VIFs plugged, another host); a halted or suspended VM keeps its metrics."""
    db = call.db
    row = db.get("VM", vm)
    had = has_drivers(db, row)
    if new_domain:
        delete(db, vm)
    if had and row["power_state"] == "Running":
        report(call.world, db, vm)


def refresh_networks(call, db, vm) -> None:
    """A VIF of the VM was plugged, unplugged or reconfigured: a running guest's agent
    reports its addresses again."""
    row = db.tables["VM"].get(vm)
    if row is not None and row["power_state"] == "Running" and has_drivers(db, row):
        gm_ref, gm = _gm(db, row)
        nets = networks(db, row)
        if gm is not None and gm["networks"] != nets:
            db.update(
                "VM_guest_metrics", gm_ref, networks=nets, last_updated=call.world.clock.now_ts()
            )


def scenario_metrics(world, db, power_state: str) -> str:
    """The guest metrics a scenario VM with drivers carries (as left by its last run, or
    reported by its running agent; the networks filled when its VIFs are)."""
    gm_fields = db.schema.classes["VM_guest_metrics"].fields
    extra: dict[str, object] = {}
    if "PV_drivers_detected" in gm_fields:
        extra["PV_drivers_detected"] = True
    for k in ("can_use_hotplug_vbd", "can_use_hotplug_vif"):
        if k in gm_fields:
            extra[k] = "unspecified"
    return world.new_row(
        db,
        "VM_guest_metrics",
        os_version=dict(LINUX_OS),
        PV_drivers_version=dict(LINUX_DRIVERS),
        PV_drivers_up_to_date=True,
        networks={},
        other=dict(CONTROL_KEYS),
        last_updated=world.clock.now_ts(),
        other_config={},
        live=True,
        **extra,
    )


@control("sim.vm_set_pv_drivers", 3)
def set_pv_drivers(call, vm, installed):
    """Install (``true``) or remove (``false``) the PV drivers and guest agent in a VM's
    guest. Installing makes the agent report at once (a VM that is not running gets the
    metrics its next boot would report, as left by a last run with drivers); removing
    deletes the guest metrics, as xapi does at the next boot without an agent. Then the
    VM's ``allowed_operations`` are refreshed."""
    if not isinstance(installed, bool):
        raise Failure("INVALID_VALUE", "installed", str(installed))
    for p in call.world.pools:
        db = p.db
        if isinstance(vm, str) and db.exists("VM", vm):
            break
    else:
        raise Failure("HANDLE_INVALID", "VM", str(vm))
    with db.lock:
        row = db.get("VM", vm)
        if row["is_control_domain"]:
            raise Failure("OPERATION_NOT_ALLOWED", "the control domain has no guest agent")
        if installed and not has_drivers(db, row):
            delete(db, vm)
            report(call.world, db, vm)
        elif not installed:
            delete(db, vm)
        c.refresh_vm_allowed(call.world, db, vm)
