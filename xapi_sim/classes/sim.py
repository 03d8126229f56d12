"""The simulator's own control API (``sim.*``), documented in docs/control-api.md.

Not part of XAPI: absent from ``system.listMethods``; callable over XML-RPC and JSON-RPC with
any valid session on any endpoint, naming any host of the world. Hardware changes take effect
at the host's next xapi start, as firmware and microcode changes do on real hosts.
"""
from __future__ import annotations

from .. import products
from ..dispatch import control
from ..errors import Failure
from ..levelling import cpus, featureset
from ..scenario import ScenarioError, _host as _parse_host_spec
from ..world import Hardware

_HW_KEYS = {"cpu", "hidden_features", "sockets", "cpus_per_socket", "memory",
            "features_pv", "features_hvm", "vendor"}
_RAW_KEYS = ("vendor", "features_pv", "features_hvm")


def _host(call, ref):
    if not isinstance(ref, str) or ref not in call.world.hosts:
        raise Failure("HANDLE_INVALID", "host", str(ref))
    return call.world.hosts[ref]


def _vm(call, ref):
    for p in call.world.pools:
        if isinstance(ref, str) and p.db.exists("VM", ref):
            return p
    raise Failure("HANDLE_INVALID", "VM", str(ref))


@control("sim.host_set_hardware", 3)
def host_set_hardware(call, host, changes):
    """Stage new hardware for ``host``: ``cpu`` (catalogue model), ``hidden_features`` (list),
    ``sockets``, ``cpus_per_socket``, ``memory`` (bytes or "64GiB"); test hooks ``vendor``,
    ``features_pv``, ``features_hvm`` override the derived cpu_info strings verbatim."""
    h = _host(call, host)
    if not isinstance(changes, dict):
        raise Failure("INVALID_VALUE", "changes", str(changes))
    unknown = set(changes) - _HW_KEYS
    if unknown:
        raise Failure("INVALID_VALUE", "changes", f"unknown key {sorted(unknown)[0]!r}; "
                      f"known: {', '.join(sorted(_HW_KEYS))}")
    base = h.next_hw or h.hw
    cpu = changes.get("cpu", base.cpu)
    try:
        cpus.model(cpu)
    except ValueError as e:
        raise Failure("INVALID_VALUE", "cpu", str(e)) from None
    hidden = changes.get("hidden_features", list(base.hidden_features))
    if not isinstance(hidden, list) or not all(isinstance(x, str) for x in hidden):
        raise Failure("INVALID_VALUE", "hidden_features", str(hidden))
    for f in hidden:
        try:
            cpus.feature(f)
        except ValueError as e:
            raise Failure("INVALID_VALUE", "hidden_features", str(e)) from None
    overrides = dict(getattr(base, "overrides", {}) or {})
    if "cpu" in changes or "hidden_features" in changes:
        overrides = {}
    for k in _RAW_KEYS:
        if k in changes:
            v = changes[k]
            if not isinstance(v, str):
                raise Failure("INVALID_VALUE", k, str(v))
            if k != "vendor":
                try:
                    featureset.parse(v)
                except featureset.InvalidFeatureString as e:
                    raise Failure("INVALID_VALUE", k, str(e)) from None
            overrides[k] = v
    try:
        sockets = int(changes.get("sockets", base.sockets))
        cps = int(changes.get("cpus_per_socket", base.cpus_per_socket))
        from ..scenario import parse_size
        memory = parse_size(changes.get("memory", base.memory))
    except (TypeError, ValueError) as e:
        raise Failure("INVALID_VALUE", "changes", str(e)) from None
    h.next_hw = Hardware(cpu, tuple(hidden), sockets, cps, memory, base.mask, overrides)


@control("sim.add_host", 2)
def add_host(call, spec):
    """A new standalone host (pool of one) on its own endpoint; ``spec`` takes the keys of a
    scenario ``[[host]]``. Returns its ref."""
    if not isinstance(spec, dict):
        raise Failure("INVALID_VALUE", "spec", str(spec))
    try:
        hs = _parse_host_spec("sim.add_host", 0, spec)
    except ScenarioError as e:
        raise Failure("INVALID_VALUE", "spec", str(e)) from None
    world = call.world
    try:
        world.host_by_name(hs.name_label)
        raise Failure("INVALID_VALUE", "name_label", f"a host named {hs.name_label!r} exists")
    except KeyError:
        pass
    h = world.add_standalone_host(hs.name_label, hs.version, hs.hardware(), hs.uuid)
    if world.simulator is not None:
        world.simulator.listen(h)
    world.xapi_start(h)
    return h.ref


@control("sim.host_power_on", 2)
def host_power_on(call, host):
    """Boot a host that was shut down (or crashed): a full xapi start runs."""
    h = _host(call, host)
    if h.state == "up":
        raise Failure("OPERATION_NOT_ALLOWED", "host is already running")
    if h.pool is None:
        raise Failure("HANDLE_INVALID", "host", host)
    call.world.host_boot(h)


@control("sim.host_crash", 2)
def host_crash(call, host):
    """The host dies: it stops answering and the master marks it not live; its VMs stay
    as XAPI shows them after a host failure without HA (still resident, not live)."""
    h = _host(call, host)
    if h.state != "up":
        raise Failure("HOST_OFFLINE", host)
    call.world.host_down(h, state="crashed")


@control("sim.host_install", 3)
def host_install(call, host, version):
    """Install another product release, as the upgrade ISO does: preconditions as
    host.reboot (disabled, no resident VMs), then the host boots the new version."""
    h = _host(call, host)
    try:
        prod = products.product(str(version))
    except ValueError as e:
        raise Failure("INVALID_VALUE", "version", str(e)) from None
    db = h.db
    with db.lock:
        row = db.get("host", h.ref)
        if row["enabled"]:
            raise Failure("HOST_NOT_DISABLED")
        if call.world.resident_vms(h):
            raise Failure("HOST_HAS_RESIDENT_VMS", h.ref)
        call.world.install(h, prod)


@control("sim.vm_set_last_boot_CPU_flags", 3)
def vm_set_flags(call, vm, flags):
    """Test hook: set a VM's ``last_boot_CPU_flags`` as if it booted elsewhere (the field is
    read-only in XAPI). ``flags`` is a string map, e.g. {} or {"vendor": "GenuineIntel"}."""
    pool = _vm(call, vm)
    if not isinstance(flags, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in flags.items()):
        raise Failure("INVALID_VALUE", "flags", str(flags))
    pool.db.set("VM", vm, "last_boot_CPU_flags", dict(flags))
