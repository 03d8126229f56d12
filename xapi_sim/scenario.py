"""Scenario files (TOML, or JSON of the same shape) -> a World.

A scenario declares hosts (CPU model, product version, sockets, memory, hidden features),
pools (master and members; hosts in no pool are standalone) and VMs (domain type, power state,
host, vCPUs, memory). Every key is documented in ``docs/scenarios.md``. A bad scenario fails
at load with one message naming the file, the entry and the field.

Building mirrors what an administrator's history would have produced: pools are assembled,
every host's xapi starts (so ``cpu_info`` and the pool level are computed by the same routine
as at any boot), then VMs are placed; VMs that are Running, Paused or Suspended carry the
``last_boot_CPU_flags`` a start in that pool would have given them.
"""

from __future__ import annotations

import json

from . import products, scenario_objects
from .allowed import refresh_allowed
from .checks.vm_releases import rules_for as vm_rules_for
from .classes import guest_agent
from .datamodel import NULL_REF
from .levelling import cpus
from .runtime import MAX_VMS_PER_HOST
from .scenario_spec import (  # noqa: F401
    HostSpec,
    PoolSpec,
    Scenario,
    ScenarioError,
    VmSpec,
    _err,
    default,
    from_dict,
    load,
    loads,
    parse_size,
)
from .vm_states import allowed_operations
from .world import World
from .xapi_start import boot_flags


def build(scn: Scenario, seed=None, user="root", password="xenroot", **world_kw) -> World:
    """Build a World from a scenario (no listeners; see ``server.Simulator``)."""
    world = World(seed=seed, user=user, password=password, **world_kw)
    world.building = True
    byname = {h.name_label: h for h in scn.hosts}
    runtime = {}
    pooled: set[str] = set()
    for p in scn.pools:
        members = [byname[n] for n in (p.master, *p.members)]
        masks = _pre_dundee_masks(members)
        m = byname[p.master]
        runtime[m.name_label] = world.add_standalone_host(
            m.name_label,
            m.version,
            m.hardware(masks.get(m.name_label)),
            m.uuid,
            p.name_label,
            m.build_number,
        )
        pool = runtime[m.name_label].pool
        for n in p.members:
            s = byname[n]
            runtime[n] = world.add_member(
                pool, n, s.version, s.hardware(masks.get(n)), s.uuid, s.build_number
            )
        pooled.update((p.master, *p.members))
    for s in scn.hosts:
        if s.name_label not in pooled:
            runtime[s.name_label] = world.add_standalone_host(
                s.name_label, s.version, s.hardware(), s.uuid, build_number=s.build_number
            )
    for pool in world.pools:
        for h in [pool.master] + [h for h in pool.hosts() if h is not pool.master]:
            world.xapi_start(h)
    scenario_objects.build_srs(world, scn, runtime)
    scenario_objects.build_networks(world, scn, runtime)
    domids: dict[str, int] = {}
    host_load: dict[str, list[int]] = {}
    for i, v in enumerate(scn.vms):
        _place_vm(world, scn, i, v, runtime, domids, host_load)
    for h in world.hosts.values():
        world.update_host_memory(h)
    world.building = False
    return world


def check_pools(scn: Scenario) -> None:
    """Refuse (ScenarioError) a scenario whose pools cannot exist, before building it: a
    6.5 SP1 pool of CPUs that cannot be masked down to one level."""
    byname = {h.name_label: h for h in scn.hosts}
    for p in scn.pools:
        _pre_dundee_masks([byname[n] for n in (p.master, *p.members)])


def _pre_dundee_masks(members) -> dict:
    """A 6.5 SP1 pool of mixed CPUs was built by masking every host down to the common
    old-style features with ``host.set_cpu_features`` (spec §5.2, §16)."""
    if not all(products.product(s.version).release == "cream" for s in members):
        return {}
    physical = [cpus.physical_features(s.cpu, s.hidden_features) for s in members]
    common = physical[0]
    for f in physical[1:]:
        common = tuple(a & b for a, b in zip(common, f, strict=False))
    masks = {}
    for s, f in zip(members, physical, strict=True):
        if f == common:
            continue
        try:
            cpus.check_mask(s.cpu, common, s.hidden_features)
        except (cpus.CpuMaskingError, ValueError) as e:
            raise ScenarioError(
                f"pool with host {s.name_label!r}: XenServer 6.5 pools need identical CPU "
                f"features and this {s.cpu} cannot be masked down to the common level "
                f"({e})"
            ) from None
        masks[s.name_label] = common
    return masks


def _place_vm(world, scn, i, v: VmSpec, runtime, domids, host_load):
    entry = {"name_label": v.name_label}
    host = runtime[v.host] if v.host else next(iter(runtime.values()))
    pool = host.pool
    db = pool.db
    is_hvm = v.domain_type == "hvm"
    flags = {}
    if v.power_state != "Halted":
        flags = boot_flags(world, host, is_hvm)
    resident = host.ref if v.power_state in ("Running", "Paused") else NULL_REF
    if resident != NULL_REF:
        # running count and free memory tracked here; host_metrics are written once at the end
        if host.ref not in host_load:
            host_load[host.ref] = [len(world.resident_vms(host)), world.host_free_memory(host)]
        used, free = host_load[host.ref]
        if used >= MAX_VMS_PER_HOST:
            raise _err(
                scn.source,
                "vm",
                i,
                entry,
                "host",
                f"host {host.name_label!r} already runs {MAX_VMS_PER_HOST} VMs",
            )
        if free < v.memory:
            raise _err(
                scn.source,
                "vm",
                i,
                entry,
                "memory",
                f"host {host.name_label!r} has not enough free memory",
            )
        if v.vcpus > host.hw.cpu_count:
            raise _err(
                scn.source,
                "vm",
                i,
                entry,
                "vcpus",
                f"host {host.name_label!r} has only {host.hw.cpu_count} pCPUs",
            )
    domid = -1
    if resident != NULL_REF:
        domid = domids.get(host.ref, 0) + 1
        domids[host.ref] = domid
    ts = world.clock.now_ts()
    metrics = world.new_row(
        db,
        "VM_metrics",
        memory_actual=v.memory if domid > 0 else 0,
        VCPUs_number=v.vcpus if domid > 0 else 0,
        VCPUs_utilisation={},
        VCPUs_CPU={},
        VCPUs_params={},
        VCPUs_flags={},
        state=[],
        start_time=ts,
        install_time=ts,
        last_updated=ts,
    )
    gm = guest_agent.scenario_metrics(world, db, v.power_state) if v.pv_drivers else NULL_REF
    ref = world.new_row(
        db,
        "VM",
        uuid=v.uuid,
        name_label=v.name_label,
        power_state=v.power_state,
        resident_on=resident,
        affinity=host.ref,
        domid=domid,
        memory_static_max=v.memory,
        memory_dynamic_max=v.memory,
        memory_dynamic_min=v.memory,
        memory_static_min=min(v.memory, 512 << 20),
        memory_target=v.memory,
        VCPUs_max=v.vcpus,
        VCPUs_at_startup=v.vcpus,
        user_version=1,
        HVM_boot_policy="BIOS order" if is_hvm else "",
        HVM_boot_params={"order": "cd"} if is_hvm else {},
        PV_bootloader="" if is_hvm else "pygrub",
        platform={"nx": "true", "acpi": "1", "apic": "true", "pae": "true", "viridian": "false"},
        actions_after_shutdown="destroy",
        actions_after_reboot="restart",
        actions_after_crash="restart",
        metrics=metrics,
        guest_metrics=gm,
        last_boot_CPU_flags=flags,
        other_config={"mac_seed": world.ids.uuid()},
        domain_type=v.domain_type,
        allowed_operations=allowed_operations(v.power_state),
    )
    if (is_hvm and not v.pv_drivers) or vm_rules_for(db.schema.release).later:
        # Dundee's rules for a guest without drivers; a later release's own rules
        refresh_allowed(world, db, "VM", ref)
    if v.disks or v.vifs:
        scenario_objects.build_vm_devices(world, scn, i, v, host, ref)
    if resident != NULL_REF:
        host_load[host.ref][0] += 1
        host_load[host.ref][1] -= v.memory


# -- export ---------------------------------------------------------------------------------


def _toml_str(v: str) -> str:
    return json.dumps(v, ensure_ascii=False)


def _size(n: int) -> str:
    for unit, f in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n % f == 0:
            return f'"{n // f}{unit}"'
    return str(n)


def export_toml(world: World) -> str:
    """The world as a scenario file that loads back to an equivalent world (hosts with their
    hardware, pools, VMs with their power states, placement and UUIDs)."""
    out = ["# Exported by xapi-sim: loads back with `xapi-sim serve --scenario FILE`.", ""]
    for h in world.hosts.values():
        if h.pool is None:
            continue
        hw = h.next_hw or h.hw
        out += [
            "[[host]]",
            f"name_label = {_toml_str(h.name_label)}",
            f"cpu = {_toml_str(hw.cpu)}",
            f"version = {_toml_str(h.product.version)}",
            f"sockets = {hw.sockets}",
            f"cpus_per_socket = {hw.cpus_per_socket}",
            f"memory = {_size(hw.memory)}",
        ]
        if hw.hidden_features:
            out.append(
                "hidden_features = [" + ", ".join(_toml_str(f) for f in hw.hidden_features) + "]"
            )
        build = h.product.software_version_map(h.name_label)["build_number"]
        if build != products.product(h.product.version).software_version_map("")["build_number"]:
            out.append(f"build_number = {_toml_str(build)}")
        out += [f"uuid = {_toml_str(h.uuid)}", ""]
    for p in world.pools:
        members = [h for h in p.hosts() if h is not p.master]
        name = p.db.get("pool", p.ref)["name_label"]
        if not members and not name:
            continue
        out += ["[[pool]]"] + ([f"name_label = {_toml_str(name)}"] if name else [])
        out += [
            f"master = {_toml_str(p.master.name_label)}",
            "members = [" + ", ".join(_toml_str(h.name_label) for h in members) + "]",
            "",
        ]
    for p in world.pools:
        out += scenario_objects.export_srs(world, p)
        out += scenario_objects.export_networks(p)
    for p in world.pools:
        for _ref, row in p.db.rows("VM"):
            if row["is_a_template"] or row["is_control_domain"] or row["is_a_snapshot"]:
                continue
            host = row["resident_on"] if row["resident_on"] != NULL_REF else row["affinity"]
            out += [
                "[[vm]]",
                f"name_label = {_toml_str(row['name_label'])}",
                f"domain_type = {_toml_str('hvm' if row['HVM_boot_policy'] else 'pv')}",
                f"power_state = {_toml_str(row['power_state'])}",
            ]
            if host in world.hosts and world.hosts[host].pool is p:
                out.append(f"host = {_toml_str(world.hosts[host].name_label)}")
            out += [
                f"vcpus = {row['VCPUs_max']}",
                f"memory = {_size(row['memory_static_max'])}",
                f"uuid = {_toml_str(row['uuid'])}",
            ]
            if not guest_agent.has_drivers(p.db, row):
                out.append("pv_drivers = false")
            out += scenario_objects.export_vm_devices(p.db, row)
            out.append("")
    return "\n".join(out)
