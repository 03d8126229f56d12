"""The simulator's own control API (``sim.*``), documented in docs/control-api.md.

Not part of XAPI: absent from ``system.listMethods``; callable over XML-RPC and JSON-RPC with
any valid session on any endpoint, naming any host of the world. Hardware changes take effect
at the host's next xapi start, as firmware and microcode changes do on real hosts.
"""

from __future__ import annotations

from .. import products
from ..dispatch import control
from ..errors import Failure
from ..faults import Faults
from ..levelling import cpus, featureset
from ..runtime import MAX_PCPUS_PER_HOST, GiB, Hardware
from ..scenario_spec import ScenarioError, parse_size
from ..scenario_spec import _host as _parse_host_spec
from ..sessions import AuthStats

MAX_HOST_MEMORY = 64 << 40  # a sanity bound (int64-safe), not a product limit

_HW_KEYS = {
    "cpu",
    "hidden_features",
    "sockets",
    "cpus_per_socket",
    "memory",
    "features_pv",
    "features_hvm",
    "vendor",
}
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
        raise Failure(
            "INVALID_VALUE",
            "changes",
            f"unknown key {sorted(unknown)[0]!r}; known: {', '.join(sorted(_HW_KEYS))}",
        )
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
    # the same bounds as a scenario [[host]] (scenario.py): a host the next xapi start
    # cannot build must be refused here, not staged
    sockets = _int_in(changes, "sockets", base.sockets, 1, 16)
    cps = _int_in(changes, "cpus_per_socket", base.cpus_per_socket, 1, MAX_PCPUS_PER_HOST)
    if sockets * cps > MAX_PCPUS_PER_HOST:
        raise Failure(
            "INVALID_VALUE",
            "cpus_per_socket",
            f"{sockets * cps} pCPUs exceed the limit of {MAX_PCPUS_PER_HOST} per host",
        )
    try:
        memory = parse_size(changes.get("memory", base.memory))
    except (TypeError, ValueError, OverflowError) as e:
        raise Failure("INVALID_VALUE", "memory", str(e)) from None
    if not 2 * GiB <= memory <= MAX_HOST_MEMORY:
        raise Failure("INVALID_VALUE", "memory", "a host has between 2GiB and 64TiB")
    h.next_hw = Hardware(cpu, tuple(hidden), sockets, cps, memory, base.mask, overrides)


def _int_in(changes, key, default, lo, hi):
    v = changes.get(key, default)
    if isinstance(v, str):
        try:
            v = int(v, 10)
        except ValueError:
            raise Failure("INVALID_VALUE", key, f"expected an integer, got {v!r}") from None
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise Failure("INVALID_VALUE", key, f"expected an integer from {lo} to {hi}, got {v!r}")
    return v


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
        pass  # no host of that name: the new one may take it
    h = world.add_standalone_host(
        hs.name_label, hs.version, hs.hardware(), hs.uuid, build_number=hs.build_number
    )
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
    if not isinstance(flags, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in flags.items()
    ):
        raise Failure("INVALID_VALUE", "flags", str(flags))
    pool.db.set("VM", vm, "last_boot_CPU_flags", dict(flags))


# -- injected faults (xapi_sim/faults.py) ---------------------------------------------------


@control("sim.fault_add", 2)
def fault_add(call, rule):
    """Add a fault rule (see docs/control-api.md): calls matching its method, class, object
    and host fail with its XAPI error (and/or wait its delay), with its probability, at
    most ``count`` times. Returns the rule id."""
    return Faults.of(call.world).add(rule)


@control("sim.fault_list", 1)
def fault_list(call):
    """Every rule with its hit counts (``hits``: calls failed or delayed; ``seen``: calls
    that matched, before the probability draw)."""
    return Faults.of(call.world).list()


@control("sim.fault_clear", 2)
def fault_clear(call, rule_id):
    """Remove one rule by id, or every rule with ``""``."""
    if not isinstance(rule_id, str):
        raise Failure("INVALID_VALUE", "id", str(rule_id))
    Faults.of(call.world).clear(rule_id)


# -- authentication (xapi_sim/classes/session.py) ------------------------------------------


@control("sim.auth_stats", 1)
def auth_stats(call):
    """Failed logins per pool since the world started: ``{pool ref: {name_label, master,
    failed, last_failure, last_user}}`` (``last_failure``: seconds since the epoch, 0 if
    none). Every pool of the world has an entry."""
    return call.world.service(AuthStats).snapshot(call.world)
