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
import pathlib
import re
import tomllib
from importlib import resources

import attrs

from . import products
from .datamodel import NULL_REF
from .levelling import cpus, policy
from .vm_states import POWER_STATES, allowed_operations
from .runtime import (MAX_PCPUS_PER_HOST, MAX_VCPUS_PER_VM, MAX_VM_MEMORY, MAX_VMS_PER_HOST,
                      GiB, Hardware)
from .world import World


class ScenarioError(ValueError):
    """A scenario that cannot be loaded; the message names file, entry and field."""


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB|K|M|G|T)?\s*$", re.I)
_UNITS = {"b": 1, "kib": 1 << 10, "k": 1 << 10, "mib": 1 << 20, "m": 1 << 20,
          "gib": 1 << 30, "g": 1 << 30, "tib": 1 << 40, "t": 1 << 40}


def parse_size(v) -> int:
    if isinstance(v, bool):
        raise ValueError("expected a size such as \"4GiB\"")
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        m = _SIZE.match(v)
        if m:
            return int(float(m.group(1)) * _UNITS[(m.group(2) or "b").lower()])
    raise ValueError(f"expected a size such as \"4GiB\", got {v!r}")


@attrs.frozen
class HostSpec:
    name_label: str
    cpu: str = "Haswell"
    version: str = products.DEFAULT_VERSION
    sockets: int = 1
    cpus_per_socket: int = 8
    memory: int = 64 * GiB
    hidden_features: tuple = ()
    uuid: str | None = None
    build_number: str | None = None

    def hardware(self, mask=None) -> Hardware:
        return Hardware(self.cpu, self.hidden_features, self.sockets, self.cpus_per_socket,
                        self.memory, mask)


@attrs.frozen
class PoolSpec:
    name_label: str
    master: str
    members: tuple = ()


@attrs.frozen
class VmSpec:
    name_label: str
    domain_type: str = "hvm"
    power_state: str = "Halted"
    host: str | None = None
    vcpus: int = 1
    memory: int = 1 * GiB
    uuid: str | None = None


@attrs.frozen
class Scenario:
    hosts: tuple
    pools: tuple
    vms: tuple
    source: str = "<scenario>"


# -- loading --------------------------------------------------------------------------------

_HOST_KEYS = {"name_label", "cpu", "version", "sockets", "cpus_per_socket", "memory",
              "hidden_features", "uuid", "build_number"}
_POOL_KEYS = {"name_label", "master", "members"}
_VM_KEYS = {"name_label", "domain_type", "power_state", "host", "vcpus", "memory", "uuid"}


def load(path) -> Scenario:
    """Load a scenario file (``.toml`` or ``.json``)."""
    p = pathlib.Path(path)
    try:
        text = p.read_bytes()
    except OSError as e:
        raise ScenarioError(f"{p}: cannot read: {e.strerror}") from None
    return loads(text, str(p), json_format=p.suffix.lower() == ".json")


def loads(text, source="<scenario>", json_format=False) -> Scenario:
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        data = json.loads(text) if json_format else tomllib.loads(text)
    except (UnicodeDecodeError, ValueError) as e:
        raise ScenarioError(f"{source}: not valid {'JSON' if json_format else 'TOML'}: {e}") \
            from None
    return from_dict(data, source)


def default() -> Scenario:
    text = resources.files("xapi_sim").joinpath("scenarios/default.toml").read_text()
    return loads(text, "<built-in default scenario>")


def _err(source, kind, i, entry, field, msg):
    name = entry.get("name_label") if isinstance(entry, dict) else None
    label = f"{kind}[{i}]" + (f" ({name!r})" if name else "")
    where = f", field {field!r}" if field else ""
    return ScenarioError(f"{source}: {label}{where}: {msg}")


def from_dict(data: dict, source="<scenario>") -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: top level must be a table/object")
    unknown = set(data) - {"host", "pool", "vm"}
    if unknown:
        raise ScenarioError(f"{source}: unknown top-level key(s) {sorted(unknown)}; "
                            "expected [[host]], [[pool]], [[vm]]")
    hosts, pools, vms = [], [], []
    names = set()
    for i, e in enumerate(_entries(data, "host", source)):
        hosts.append(_host(source, i, e))
        if hosts[-1].name_label in names:
            raise _err(source, "host", i, e, "name_label", "duplicate host name")
        names.add(hosts[-1].name_label)
    if not hosts:
        raise ScenarioError(f"{source}: a scenario needs at least one [[host]]")
    in_pool = {}
    for i, e in enumerate(_entries(data, "pool", source)):
        p = _pool(source, i, e, names)
        for h in (p.master, *p.members):
            if h in in_pool:
                raise _err(source, "pool", i, e, "members",
                           f"host {h!r} is already in pool {in_pool[h]!r}")
            in_pool[h] = p.name_label
        pools.append(p)
    byname = {h.name_label: h for h in hosts}
    for i, p in enumerate(pools):
        vendors = {cpus.model(byname[h].cpu).vendor for h in (p.master, *p.members)}
        if len(vendors) > 1:
            raise _err(source, "pool", i, attrs.asdict(p), "members",
                       "hosts of different CPU vendors cannot form a pool (pool.join refuses "
                       "with HOSTS_NOT_HOMOGENEOUS [\"CPUs differ\"])")
    vnames = set()
    for i, e in enumerate(_entries(data, "vm", source)):
        v = _vm(source, i, e, byname)
        if v.name_label in vnames:
            raise _err(source, "vm", i, e, "name_label", "duplicate VM name")
        vnames.add(v.name_label)
        vms.append(v)
    return Scenario(tuple(hosts), tuple(pools), tuple(vms), source)


def _entries(data, key, source):
    v = data.get(key, [])
    if not isinstance(v, list) or not all(isinstance(e, dict) for e in v):
        raise ScenarioError(f"{source}: {key!r} must be an array of tables ([[{key}]])")
    return v


def _need_str(source, kind, i, e, field, default=None, required=False):
    if field not in e:
        if required:
            raise _err(source, kind, i, e, field, "is required")
        return default
    v = e[field]
    if not isinstance(v, str) or not v:
        raise _err(source, kind, i, e, field, f"expected a non-empty string, got {v!r}")
    return v


def _need_int(source, kind, i, e, field, default, lo=1, hi=None):
    v = e.get(field, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise _err(source, kind, i, e, field, f"expected an integer {rng}, got {v!r}")
    return v


def _host(source, i, e) -> HostSpec:
    unknown = set(e) - _HOST_KEYS
    if unknown:
        raise _err(source, "host", i, e, sorted(unknown)[0], "unknown key")
    name = _need_str(source, "host", i, e, "name_label", required=True)
    cpu = _need_str(source, "host", i, e, "cpu", "Haswell")
    try:
        cpus.model(cpu)
    except ValueError as ex:
        raise _err(source, "host", i, e, "cpu", str(ex)) from None
    version = _need_str(source, "host", i, e, "version", products.DEFAULT_VERSION)
    try:
        products.product(version)
    except ValueError as ex:
        raise _err(source, "host", i, e, "version", str(ex)) from None
    sockets = _need_int(source, "host", i, e, "sockets", 1, 1, 16)
    cps = _need_int(source, "host", i, e, "cpus_per_socket", 8, 1, MAX_PCPUS_PER_HOST)
    if sockets * cps > MAX_PCPUS_PER_HOST:
        raise _err(source, "host", i, e, "cpus_per_socket",
                   f"{sockets * cps} pCPUs exceed the limit of {MAX_PCPUS_PER_HOST} per host")
    try:
        memory = parse_size(e.get("memory", 64 * GiB))
    except ValueError as ex:
        raise _err(source, "host", i, e, "memory", str(ex)) from None
    if memory < 2 * GiB:
        raise _err(source, "host", i, e, "memory", "a host needs at least 2GiB")
    hidden = e.get("hidden_features", [])
    if not isinstance(hidden, list) or not all(isinstance(x, str) for x in hidden):
        raise _err(source, "host", i, e, "hidden_features", "expected a list of feature names")
    for f in hidden:
        try:
            cpus.feature(f)
        except ValueError as ex:
            raise _err(source, "host", i, e, "hidden_features", str(ex)) from None
    uuid = _need_str(source, "host", i, e, "uuid")
    build = _need_str(source, "host", i, e, "build_number")
    return HostSpec(name, cpu, version, sockets, cps, memory, tuple(hidden), uuid, build)


def _pool(source, i, e, names) -> PoolSpec:
    unknown = set(e) - _POOL_KEYS
    if unknown:
        raise _err(source, "pool", i, e, sorted(unknown)[0], "unknown key")
    name = _need_str(source, "pool", i, e, "name_label", "")
    master = _need_str(source, "pool", i, e, "master", required=True)
    if master not in names:
        raise _err(source, "pool", i, e, "master", f"no [[host]] named {master!r}")
    members = e.get("members", [])
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        raise _err(source, "pool", i, e, "members", "expected a list of host names")
    for m in members:
        if m not in names:
            raise _err(source, "pool", i, e, "members", f"no [[host]] named {m!r}")
        if m == master:
            raise _err(source, "pool", i, e, "members", "the master is listed as a member")
    return PoolSpec(name, master, tuple(members))


def _vm(source, i, e, hosts) -> VmSpec:
    unknown = set(e) - _VM_KEYS
    if unknown:
        raise _err(source, "vm", i, e, sorted(unknown)[0], "unknown key")
    name = _need_str(source, "vm", i, e, "name_label", required=True)
    dt = _need_str(source, "vm", i, e, "domain_type", "hvm")
    if dt not in ("hvm", "pv"):
        raise _err(source, "vm", i, e, "domain_type", f"expected \"hvm\" or \"pv\", got {dt!r}")
    ps = _need_str(source, "vm", i, e, "power_state", "Halted")
    canon = {s.lower(): s for s in POWER_STATES}.get(ps.lower())
    if canon is None:
        raise _err(source, "vm", i, e, "power_state",
                   f"expected one of {', '.join(POWER_STATES)}, got {ps!r}")
    host = _need_str(source, "vm", i, e, "host")
    if host is not None and host not in hosts:
        raise _err(source, "vm", i, e, "host", f"no [[host]] named {host!r}")
    if canon in ("Running", "Paused") and host is None:
        raise _err(source, "vm", i, e, "host", f"a {canon} VM needs a host")
    vcpus = _need_int(source, "vm", i, e, "vcpus", 1, 1, MAX_VCPUS_PER_VM)
    try:
        memory = parse_size(e.get("memory", GiB))
    except ValueError as ex:
        raise _err(source, "vm", i, e, "memory", str(ex)) from None
    if memory > MAX_VM_MEMORY or memory < 16 << 20:
        raise _err(source, "vm", i, e, "memory", "must be between 16MiB and 1.5TiB")
    return VmSpec(name, dt, canon, host, vcpus, memory, _need_str(source, "vm", i, e, "uuid"))


# -- building -------------------------------------------------------------------------------

def build(scn: Scenario, seed=None, user="root", password="xenroot", **world_kw) -> World:
    """Build a World from a scenario (no listeners; see ``server.Simulator``)."""
    world = World(seed=seed, user=user, password=password, **world_kw)
    world.building = True
    byname = {h.name_label: h for h in scn.hosts}
    runtime = {}
    pooled = set()
    for p in scn.pools:
        members = [byname[n] for n in (p.master, *p.members)]
        masks = _pre_dundee_masks(members)
        m = byname[p.master]
        runtime[m.name_label] = world.add_standalone_host(
            m.name_label, m.version, m.hardware(masks.get(m.name_label)), m.uuid, p.name_label,
            m.build_number)
        pool = runtime[m.name_label].pool
        for n in p.members:
            s = byname[n]
            runtime[n] = world.add_member(pool, n, s.version, s.hardware(masks.get(n)), s.uuid,
                                          s.build_number)
        pooled.update((p.master, *p.members))
    for s in scn.hosts:
        if s.name_label not in pooled:
            runtime[s.name_label] = world.add_standalone_host(
                s.name_label, s.version, s.hardware(), s.uuid, build_number=s.build_number)
    for pool in world.pools:
        for h in [pool.master] + [h for h in pool.hosts() if h is not pool.master]:
            world.xapi_start(h)
    domids, load = {}, {}
    for i, v in enumerate(scn.vms):
        _place_vm(world, scn, i, v, runtime, domids, load)
    for h in world.hosts.values():
        world.update_host_memory(h)
    world.building = False
    return world


def _pre_dundee_masks(members) -> dict:
    """A 6.5 SP1 pool of mixed CPUs was built by masking every host down to the common
    old-style features with ``host.set_cpu_features`` (spec §5.2, §16)."""
    if not all(products.product(s.version).release == "cream" for s in members):
        return {}
    physical = [cpus.physical_features(s.cpu, s.hidden_features) for s in members]
    common = physical[0]
    for f in physical[1:]:
        common = tuple(a & b for a, b in zip(common, f))
    masks = {}
    for s, f in zip(members, physical):
        if f == common:
            continue
        try:
            cpus.check_mask(s.cpu, common, s.hidden_features)
        except (cpus.CpuMaskingError, ValueError) as e:
            raise ScenarioError(
                f"pool with host {s.name_label!r}: XenServer 6.5 pools need identical CPU "
                f"features and this {s.cpu} cannot be masked down to the common level "
                f"({e})") from None
        masks[s.name_label] = common
    return masks


def _place_vm(world, scn, i, v: VmSpec, runtime, domids, load):
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
        if host.ref not in load:
            load[host.ref] = [len(world.resident_vms(host)), world.host_free_memory(host)]
        used, free = load[host.ref]
        if used >= MAX_VMS_PER_HOST:
            raise _err(scn.source, "vm", i, entry, "host",
                       f"host {host.name_label!r} already runs {MAX_VMS_PER_HOST} VMs")
        if free < v.memory:
            raise _err(scn.source, "vm", i, entry, "memory",
                       f"host {host.name_label!r} has not enough free memory")
        if v.vcpus > host.hw.cpu_count:
            raise _err(scn.source, "vm", i, entry, "vcpus",
                       f"host {host.name_label!r} has only {host.hw.cpu_count} pCPUs")
    domid = -1
    if resident != NULL_REF:
        domid = domids.get(host.ref, 0) + 1
        domids[host.ref] = domid
    ts = world.clock.now_ts()
    metrics = world.new_row(db, "VM_metrics", memory_actual=v.memory if domid > 0 else 0,
                            VCPUs_number=v.vcpus if domid > 0 else 0,
                            VCPUs_utilisation={}, VCPUs_CPU={}, VCPUs_params={},
                            VCPUs_flags={}, state=[], start_time=ts, install_time=ts,
                            last_updated=ts)
    world.new_row(
        db, "VM", uuid=v.uuid, name_label=v.name_label, power_state=v.power_state,
        resident_on=resident, affinity=host.ref, domid=domid,
        memory_static_max=v.memory, memory_dynamic_max=v.memory, memory_dynamic_min=v.memory,
        memory_static_min=min(v.memory, 512 << 20), memory_target=v.memory,
        VCPUs_max=v.vcpus, VCPUs_at_startup=v.vcpus, user_version=1,
        HVM_boot_policy="BIOS order" if is_hvm else "",
        HVM_boot_params={"order": "cd"} if is_hvm else {},
        PV_bootloader="" if is_hvm else "pygrub",
        platform={"nx": "true", "acpi": "1", "apic": "true", "pae": "true",
                  "viridian": "false"},
        actions_after_shutdown="destroy", actions_after_reboot="restart",
        actions_after_crash="restart", metrics=metrics, last_boot_CPU_flags=flags,
        other_config={}, domain_type=v.domain_type,
        allowed_operations=allowed_operations(v.power_state))
    if resident != NULL_REF:
        load[host.ref][0] += 1
        load[host.ref][1] -= v.memory


def boot_flags(world, host, is_hvm) -> dict:
    """The flags VM.start gives in ``host``'s pool: Dundee takes the pool level (§6);
    before Dundee the message forwarder recorded the host's own ``{vendor, features}``."""
    db = host.db
    if "cpu_info" in db.schema.classes["pool"].fields:
        return policy.vm_boot_flags(db.get("pool", host.pool.ref)["cpu_info"], is_hvm)
    info = db.get("host", host.ref)["cpu_info"]
    return {"vendor": info["vendor"], "features": info["features"]}


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
        out += ["[[host]]", f"name_label = {_toml_str(h.name_label)}",
                f"cpu = {_toml_str(hw.cpu)}", f"version = {_toml_str(h.product.version)}",
                f"sockets = {hw.sockets}", f"cpus_per_socket = {hw.cpus_per_socket}",
                f"memory = {_size(hw.memory)}"]
        if hw.hidden_features:
            out.append("hidden_features = [" + ", ".join(_toml_str(f) for f in
                                                       hw.hidden_features) + "]")
        build = h.product.software_version_map(h.name_label)["build_number"]
        if build != products.product(h.product.version).software_version_map("")[
                "build_number"]:
            out.append(f"build_number = {_toml_str(build)}")
        out += [f"uuid = {_toml_str(h.uuid)}", ""]
    for p in world.pools:
        members = [h for h in p.hosts() if h is not p.master]
        name = p.db.get("pool", p.ref)["name_label"]
        if not members and not name:
            continue
        out += ["[[pool]]", f"name_label = {_toml_str(name)}",
                f"master = {_toml_str(p.master.name_label)}",
                "members = [" + ", ".join(_toml_str(h.name_label) for h in members) + "]", ""]
    for p in world.pools:
        for ref, row in p.db.rows("VM"):
            if row["is_a_template"] or row["is_control_domain"] or row["is_a_snapshot"]:
                continue
            host = row["resident_on"] if row["resident_on"] != NULL_REF else row["affinity"]
            out += ["[[vm]]", f"name_label = {_toml_str(row['name_label'])}",
                    f"domain_type = {_toml_str('hvm' if row['HVM_boot_policy'] else 'pv')}",
                    f"power_state = {_toml_str(row['power_state'])}"]
            if host in world.hosts and world.hosts[host].pool is p:
                out.append(f"host = {_toml_str(world.hosts[host].name_label)}")
            out += [f"vcpus = {row['VCPUs_max']}", f"memory = {_size(row['memory_static_max'])}",
                    f"uuid = {_toml_str(row['uuid'])}", ""]
    return "\n".join(out)
