"""Scenario files (TOML, or JSON of the same shape) -> a validated model (``Scenario``).

Every key is documented in ``docs/scenarios.md``. A bad scenario fails at load with one
message naming the file, the entry and the field. Building a world from the model is
``scenario.py``'s.
"""

from __future__ import annotations

import json
import pathlib
import re
import tomllib
from importlib import resources

import attrs

from . import products
from .levelling import cpus
from .runtime import MAX_PCPUS_PER_HOST, MAX_VCPUS_PER_VM, MAX_VM_MEMORY, GiB, Hardware
from .vm_states import POWER_STATES


class ScenarioError(ValueError):
    """A scenario that cannot be loaded; the message names file, entry and field."""


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB|K|M|G|T)?\s*$", re.I)
_UNITS = {
    "b": 1,
    "kib": 1 << 10,
    "k": 1 << 10,
    "mib": 1 << 20,
    "m": 1 << 20,
    "gib": 1 << 30,
    "g": 1 << 30,
    "tib": 1 << 40,
    "t": 1 << 40,
}


def parse_size(v) -> int:
    if isinstance(v, bool):
        raise ValueError('expected a size such as "4GiB"')
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        m = _SIZE.match(v)
        if m:
            return int(float(m.group(1)) * _UNITS[(m.group(2) or "b").lower()])
    raise ValueError(f'expected a size such as "4GiB", got {v!r}')


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
        return Hardware(
            self.cpu, self.hidden_features, self.sockets, self.cpus_per_socket, self.memory, mask
        )


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

_HOST_KEYS = {
    "name_label",
    "cpu",
    "version",
    "sockets",
    "cpus_per_socket",
    "memory",
    "hidden_features",
    "uuid",
    "build_number",
}
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
        raise ScenarioError(
            f"{source}: not valid {'JSON' if json_format else 'TOML'}: {e}"
        ) from None
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
        raise ScenarioError(
            f"{source}: unknown top-level key(s) {sorted(unknown)}; "
            "expected [[host]], [[pool]], [[vm]]"
        )
    hosts, pools, vms = [], [], []
    names = set()
    for i, e in enumerate(_entries(data, "host", source)):
        hosts.append(_host(source, i, e))
        if hosts[-1].name_label in names:
            raise _err(source, "host", i, e, "name_label", "duplicate host name")
        names.add(hosts[-1].name_label)
    if not hosts:
        raise ScenarioError(f"{source}: a scenario needs at least one [[host]]")
    in_pool: dict[str, str] = {}
    for i, e in enumerate(_entries(data, "pool", source)):
        p = _pool(source, i, e, names)
        for h in (p.master, *p.members):
            if h in in_pool:
                raise _err(
                    source, "pool", i, e, "members", f"host {h!r} is already in pool {in_pool[h]!r}"
                )
            in_pool[h] = p.name_label
        pools.append(p)
    byname = {h.name_label: h for h in hosts}
    for i, p in enumerate(pools):
        vendors = {cpus.model(byname[h].cpu).vendor for h in (p.master, *p.members)}
        if len(vendors) > 1:
            raise _err(
                source,
                "pool",
                i,
                attrs.asdict(p),
                "members",
                "hosts of different CPU vendors cannot form a pool (pool.join refuses "
                'with HOSTS_NOT_HOMOGENEOUS ["CPUs differ"])',
            )
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
        raise _err(
            source,
            "host",
            i,
            e,
            "cpus_per_socket",
            f"{sockets * cps} pCPUs exceed the limit of {MAX_PCPUS_PER_HOST} per host",
        )
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
        raise _err(source, "vm", i, e, "domain_type", f'expected "hvm" or "pv", got {dt!r}')
    ps = _need_str(source, "vm", i, e, "power_state", "Halted")
    canon = {s.lower(): s for s in POWER_STATES}.get(ps.lower())
    if canon is None:
        raise _err(
            source,
            "vm",
            i,
            e,
            "power_state",
            f"expected one of {', '.join(POWER_STATES)}, got {ps!r}",
        )
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
