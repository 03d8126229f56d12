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
    pv_drivers: bool = True
    disks: tuple = ()  # DiskSpec
    vifs: tuple = ()  # VifSpec


@attrs.frozen
class SrSpec:
    name_label: str
    type: str
    hosts: tuple
    shared: bool
    size: int | None = None
    device_config: tuple = ()  # (key, value) pairs
    content_type: str = "user"
    name_description: str = ""
    default: bool = False
    uuid: str | None = None


@attrs.frozen
class NetworkSpec:
    name_label: str
    host: str | None = None
    name_description: str = ""
    MTU: int = 1500
    uuid: str | None = None


@attrs.frozen
class DiskSpec:
    size: int
    sr: str | None = None
    name_label: str = ""
    device: str | None = None
    bootable: bool = False


@attrs.frozen
class VifSpec:
    network: str
    device: str | None = None
    mac: str = ""


@attrs.frozen
class Scenario:
    hosts: tuple
    pools: tuple
    vms: tuple
    source: str = "<scenario>"
    srs: tuple = ()
    networks: tuple = ()


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
_VM_KEYS = {
    "name_label",
    "domain_type",
    "power_state",
    "host",
    "vcpus",
    "memory",
    "uuid",
    "pv_drivers",
    "disks",
    "vifs",
}
_SR_KEYS = {
    "name_label",
    "type",
    "hosts",
    "shared",
    "size",
    "device_config",
    "content_type",
    "name_description",
    "default",
    "uuid",
}
_NETWORK_KEYS = {"name_label", "host", "name_description", "MTU", "uuid"}
_DISK_KEYS = {"size", "sr", "name_label", "device", "bootable"}
_VIF_KEYS = {"network", "device", "mac"}
SR_TYPES = ("ext", "lvm", "nfs", "iso", "lvmoiscsi", "dummy")
SHARED_TYPES = ("nfs", "iso", "lvmoiscsi")
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


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
    unknown = set(data) - {"host", "pool", "vm", "sr", "network"}
    if unknown:
        raise ScenarioError(
            f"{source}: unknown top-level key(s) {sorted(unknown)}; "
            "expected [[host]], [[pool]], [[sr]], [[network]], [[vm]]"
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
    pool_of = _pool_of(hosts, pools)
    srs: list[SrSpec] = []
    for i, e in enumerate(_entries(data, "sr", source)):
        sr = _sr(source, i, e, pool_of)
        if any(o.name_label == sr.name_label for o in srs):
            raise _err(source, "sr", i, e, "name_label", "duplicate SR name")
        if sr.default and any(
            o.default and pool_of[o.hosts[0]] == pool_of[sr.hosts[0]] for o in srs
        ):
            raise _err(source, "sr", i, e, "default", "another SR is already its pool's default")
        srs.append(sr)
    networks: list[NetworkSpec] = []
    first = hosts[0].name_label
    for i, e in enumerate(_entries(data, "network", source)):
        n = _network(source, i, e, byname)
        if any(
            o.name_label == n.name_label and pool_of[o.host or first] == pool_of[n.host or first]
            for o in networks
        ):
            raise _err(source, "network", i, e, "name_label", "duplicate network name in a pool")
        networks.append(n)
    vnames = set()
    for i, e in enumerate(_entries(data, "vm", source)):
        v = _vm(source, i, e, byname)
        if v.name_label in vnames:
            raise _err(source, "vm", i, e, "name_label", "duplicate VM name")
        vnames.add(v.name_label)
        pool = pool_of[v.host or first]
        for d in v.disks:
            dsr = next((s for s in srs if s.name_label == d.sr), None)
            # a name no [[sr]] has may be one of the installer's ("Local storage"): the
            # builder resolves it in the VM's pool
            if dsr is not None and pool_of[dsr.hosts[0]] != pool:
                raise _err(source, "vm", i, e, "disks", f"SR {d.sr!r} is in another pool")
            if dsr is not None and dsr.type == "iso":
                raise _err(source, "vm", i, e, "disks", f"SR {d.sr!r} holds ISOs, not disks")
            if (
                dsr is not None
                and v.power_state in ("Running", "Paused")
                and v.host not in dsr.hosts
            ):
                raise _err(
                    source,
                    "vm",
                    i,
                    e,
                    "disks",
                    f"SR {d.sr!r} is not attached to host {v.host!r} (VM_REQUIRES_SR)",
                )
        vms.append(v)
    return Scenario(tuple(hosts), tuple(pools), tuple(vms), source, tuple(srs), tuple(networks))


def _pool_of(hosts, pools) -> dict:
    """host name -> the name of its pool's master."""
    out = {h.name_label: h.name_label for h in hosts}
    for p in pools:
        for h in (p.master, *p.members):
            out[h] = p.master
    return out


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
    pv = _need_bool(source, "vm", i, e, "pv_drivers", True)
    disks = tuple(_disk(source, i, e, j, d) for j, d in enumerate(_list(source, i, e, "disks")))
    vifs = tuple(_vif(source, i, e, j, d) for j, d in enumerate(_list(source, i, e, "vifs")))
    for field, devs in (("disks", [d.device for d in disks]), ("vifs", [v.device for v in vifs])):
        given = [d for d in devs if d is not None]
        if len(set(given)) != len(given):
            raise _err(source, "vm", i, e, field, "two entries name the same device")
    uuid = _need_str(source, "vm", i, e, "uuid")
    return VmSpec(name, dt, canon, host, vcpus, memory, uuid, pv, disks, vifs)


def _need_bool(source, kind, i, e, field, default):
    v = e.get(field, default)
    if not isinstance(v, bool):
        raise _err(source, kind, i, e, field, f"expected true or false, got {v!r}")
    return v


def _list(source, i, e, field) -> list:
    v = e.get(field, [])
    if not isinstance(v, list):
        raise _err(source, "vm", i, e, field, "expected an array")
    return v


def _device(source, i, e, field, d, hi):
    dev = d.get("device")
    if dev is None:
        return None
    if isinstance(dev, bool) or not isinstance(dev, int | str) or not str(dev).isdigit():
        raise _err(source, "vm", i, e, field, f"device: expected a number, got {dev!r}")
    if int(dev) > hi:
        raise _err(source, "vm", i, e, field, f"device: at most {hi}, got {dev!r}")
    return str(int(dev))


def _disk(source, i, e, j, d) -> DiskSpec:
    field = f"disks[{j}]"
    if not isinstance(d, dict):
        raise _err(source, "vm", i, e, field, 'expected a table such as {size = "8GiB"}')
    unknown = set(d) - _DISK_KEYS
    if unknown:
        raise _err(source, "vm", i, e, field, f"unknown key {sorted(unknown)[0]!r}")
    if "size" not in d:
        raise _err(source, "vm", i, e, field, "size is required")
    try:
        size = parse_size(d["size"])
    except ValueError as ex:
        raise _err(source, "vm", i, e, field, f"size: {ex}") from None
    if not 1 << 20 <= size <= 2 << 40:
        raise _err(source, "vm", i, e, field, "size: must be between 1MiB and 2TiB")
    sr = d.get("sr")
    name = d.get("name_label", "")
    if sr is not None and (not isinstance(sr, str) or not sr):
        raise _err(source, "vm", i, e, field, f"sr: expected an SR name, got {sr!r}")
    if not isinstance(name, str):
        raise _err(source, "vm", i, e, field, f"name_label: expected a string, got {name!r}")
    boot = d.get("bootable", j == 0)
    if not isinstance(boot, bool):
        raise _err(source, "vm", i, e, field, f"bootable: expected true or false, got {boot!r}")
    return DiskSpec(size, sr, name, _device(source, i, e, field, d, 254), boot)


def _vif(source, i, e, j, d) -> VifSpec:
    field = f"vifs[{j}]"
    if isinstance(d, str) and d:
        return VifSpec(d)
    if not isinstance(d, dict):
        raise _err(source, "vm", i, e, field, "expected a network name or a table")
    unknown = set(d) - _VIF_KEYS
    if unknown:
        raise _err(source, "vm", i, e, field, f"unknown key {sorted(unknown)[0]!r}")
    net = d.get("network")
    if not isinstance(net, str) or not net:
        raise _err(source, "vm", i, e, field, "network: a network name is required")
    mac = d.get("mac", "")
    if not isinstance(mac, str) or (mac and not _MAC.match(mac)):
        raise _err(source, "vm", i, e, field, f"mac: expected six hex pairs, got {mac!r}")
    return VifSpec(net, _device(source, i, e, field, d, 6), mac.lower())


def _sr(source, i, e, pool_of) -> SrSpec:
    unknown = set(e) - _SR_KEYS
    if unknown:
        raise _err(source, "sr", i, e, sorted(unknown)[0], "unknown key")
    name = _need_str(source, "sr", i, e, "name_label", required=True)
    sr_type = _need_str(source, "sr", i, e, "type", "nfs")
    if sr_type not in SR_TYPES:
        raise _err(source, "sr", i, e, "type", f"expected one of {', '.join(SR_TYPES)}")
    hosts = e.get("hosts")
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) for h in hosts):
        raise _err(source, "sr", i, e, "hosts", "expected a non-empty list of host names")
    for h in hosts:
        if h not in pool_of:
            raise _err(source, "sr", i, e, "hosts", f"no [[host]] named {h!r}")
    if len(set(hosts)) != len(hosts):
        raise _err(source, "sr", i, e, "hosts", "a host is listed twice")
    if len({pool_of[h] for h in hosts}) > 1:
        raise _err(source, "sr", i, e, "hosts", "the hosts of an SR must be in one pool")
    shared = _need_bool(source, "sr", i, e, "shared", sr_type in SHARED_TYPES)
    if not shared and len(hosts) > 1:
        raise _err(source, "sr", i, e, "hosts", "an SR that is not shared has one host")
    size = None
    if "size" in e:
        try:
            size = parse_size(e["size"])
        except ValueError as ex:
            raise _err(source, "sr", i, e, "size", str(ex)) from None
        if not 1 << 30 <= size <= 1 << 50:
            raise _err(source, "sr", i, e, "size", "must be between 1GiB and 1PiB")
    dc = e.get("device_config", {})
    if not isinstance(dc, dict) or not all(isinstance(v, str) for v in dc.values()):
        raise _err(source, "sr", i, e, "device_config", "expected a table of strings")
    content = e.get("content_type", "iso" if sr_type == "iso" else "user")
    if not isinstance(content, str):
        raise _err(source, "sr", i, e, "content_type", "expected a string")
    desc = e.get("name_description", "")
    if not isinstance(desc, str):
        raise _err(source, "sr", i, e, "name_description", "expected a string")
    default = _need_bool(source, "sr", i, e, "default", False)
    if default and sr_type == "iso":
        raise _err(source, "sr", i, e, "default", "an ISO SR cannot be the default SR")
    uuid = _need_str(source, "sr", i, e, "uuid")
    return SrSpec(
        name, sr_type, tuple(hosts), shared, size, tuple(dc.items()), content, desc, default, uuid
    )


def _network(source, i, e, hosts) -> NetworkSpec:
    unknown = set(e) - _NETWORK_KEYS
    if unknown:
        raise _err(source, "network", i, e, sorted(unknown)[0], "unknown key")
    name = _need_str(source, "network", i, e, "name_label", required=True)
    host = _need_str(source, "network", i, e, "host")
    if host is not None and host not in hosts:
        raise _err(source, "network", i, e, "host", f"no [[host]] named {host!r}")
    desc = e.get("name_description", "")
    if not isinstance(desc, str):
        raise _err(source, "network", i, e, "name_description", "expected a string")
    mtu = _need_int(source, "network", i, e, "MTU", 1500, 68, 9000)
    return NetworkSpec(name, host, desc, mtu, _need_str(source, "network", i, e, "uuid"))


# -- building -------------------------------------------------------------------------------
