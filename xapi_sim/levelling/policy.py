"""Pure CPU-levelling decisions over plain ``cpu_info`` / ``last_boot_CPU_flags`` dicts.

Mirrors xen-api Dundee (27c06009b1): ``Create_misc.create_pool_cpuinfo`` and
``create_host_cpu`` alerts (``ocaml/xapi/create_misc.ml``), ``Cpuid_helpers``
``reset_cpu_flags`` / ``assert_vm_is_compatible`` / ``update_cpu_flags``
(``ocaml/xapi/cpuid_helpers.ml``) and the RPU version helpers of ``ocaml/xapi/helpers.ml``
(spec §3, §4, §6, §9, §11, §13, §18).  Callers own the database, the messages and the
``VM_INCOMPATIBLE_WITH_THIS_HOST [vm; host; reason]`` error: these functions only decide.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from . import featureset as fs
from .rules import DUNDEE, Rules

# ``(lost, gained)`` of a featureset change; an alert ``(message name, priority, body)``;
# a message kind ``(name, priority)``.
Change = tuple[bool, bool]
Alert = tuple[str, int, str]
_Kind = tuple[str, int]

VENDOR_KEY = "vendor"
FEATURES_KEY = "features"
POOL_REQUIRED_KEYS = ("vendor", "cpu_count", "socket_count", "features_pv", "features_hvm")

REASON_VENDOR = "VM last booted on a host which had a CPU from a different vendor."
REASON_FEATURES = "VM last booted on a CPU with features this host's CPU does not have."

HOST_CPU_FEATURES_DOWN = ("HOST_CPU_FEATURES_DOWN", 3)
HOST_CPU_FEATURES_UP = ("HOST_CPU_FEATURES_UP", 5)
POOL_CPU_FEATURES_DOWN = ("POOL_CPU_FEATURES_DOWN", 5)
POOL_CPU_FEATURES_UP = ("POOL_CPU_FEATURES_UP", 5)
HOST_BODY = "The CPU features of host have changed."
POOL_BODY = "The pool-level CPU features have changed."
LOST_SUFFIX = " Some features have gone away."
GAINED_SUFFIX = " Some features were added."


def features_key(is_hvm: bool, keys: tuple[str, str] = DUNDEE.check_keys) -> str:
    """``features_hvm`` for a VM that will boot HVM (HVM_boot_policy ≠ ""), else PV (§6, §9);
    ``keys`` is a rules pair (``features_*_host`` from 8.x for boot and pool)."""
    return keys[1] if is_hvm else keys[0]


# --- pool level (§4) ----------------------------------------------------------------------


def pool_cpu_info(
    host_cpu_infos: Iterable[Mapping[str, str]],
    rules: Rules = DUNDEE,
    hvm_capable: Iterable[bool] | None = None,
) -> dict[str, str]:
    """``pool.cpu_info`` from every host record in DB order, as Dundee computes it (§4).

    Hosts lacking any of vendor/cpu_count/socket_count/features_pv/features_hvm are skipped
    (counts included); the last valid host's vendor wins; counts are summed; feature sets
    are intersected (the empty set is an identity).  The dict is in Dundee's stored order
    ``features_hvm, features_pv, socket_count, cpu_count, vendor`` (§17); with no valid host
    it is the initial map ``vendor="", socket_count="0", cpu_count="0", features_pv="",
    features_hvm=""``.  Malformed values raise (ValueError / InvalidFeatureString).

    With 8.x ``rules`` (``cpu_keys == "host"``) only the ``features_*_host`` keys are
    combined, the HVM one over the hosts ``hvm_capable`` marks (``Helpers.host_supports_hvm``;
    all when None), and the map is ``vendor, socket_count, cpu_count, features_pv_host,
    features_hvm_host`` (1.249-lcm ``create_pool_cpuinfo``).
    """
    if rules.cpu_keys == "host":
        return _pool_cpu_info_host(list(host_cpu_infos), rules, hvm_capable)
    vendor, sockets, cpus = "", 0, 0
    pv: fs.Featureset = ()
    hvm: fs.Featureset = ()
    valid = False
    for info in host_cpu_infos:
        if any(key not in info for key in POOL_REQUIRED_KEYS):
            continue
        valid = True
        vendor = info["vendor"]
        cpus += int(info["cpu_count"])
        sockets += int(info["socket_count"])
        pv = fs.intersect(fs.parse(info["features_pv"]), pv)
        hvm = fs.intersect(fs.parse(info["features_hvm"]), hvm)
    if not valid:
        return {
            "vendor": "",
            "socket_count": "0",
            "cpu_count": "0",
            "features_pv": "",
            "features_hvm": "",
        }
    return {
        "features_hvm": fs.format(hvm),
        "features_pv": fs.format(pv),
        "socket_count": str(sockets),
        "cpu_count": str(cpus),
        "vendor": vendor,
    }


def _pool_cpu_info_host(
    infos: list[Mapping[str, str]], rules: Rules, hvm_capable: Iterable[bool] | None
) -> dict[str, str]:
    pv_key, hvm_key = rules.pool_keys
    capable = [True] * len(infos) if hvm_capable is None else list(hvm_capable)
    out = {"vendor": "", "socket_count": "0", "cpu_count": "0", pv_key: "", hvm_key: ""}
    pv: fs.Featureset = ()
    hvm: fs.Featureset = ()
    for info, hvm_ok in zip(infos, capable, strict=True):
        if any(k not in info for k in ("vendor", "cpu_count", "socket_count", pv_key, hvm_key)):
            continue  # "Host %s is missing required `features_*_host` keys"
        out["vendor"] = info["vendor"]
        out["cpu_count"] = str(int(out["cpu_count"]) + int(info["cpu_count"]))
        out["socket_count"] = str(int(out["socket_count"]) + int(info["socket_count"]))
        pv = fs.intersect(fs.parse(info[pv_key]), pv)
        out[pv_key] = fs.format(pv)
        if hvm_ok:
            hvm = fs.intersect(fs.parse(info[hvm_key]), hvm)
            out[hvm_key] = fs.format(hvm)
    return out


# --- alerts (§3, §4, §18) -----------------------------------------------------------------


def features_change(
    old_str: str | None, new_str: str | None, semantics: str = "dundee"
) -> Change | None:
    """``(lost, gained)`` between two featureset strings, or None if old is unset or equal (§3).

    Both are judged on the intersection: lost = it is a strict subset of old, gained = of
    new.  Dundee's comparisons are length-sensitive (a trailing zero word counts as a
    change); ``semantics="2018"`` is the CA-279498 zero-extended fix.
    """
    if semantics not in fs.SEMANTICS:
        raise ValueError(f"unknown featureset semantics {semantics!r}")
    if not old_str:
        return None
    old, new = fs.parse(old_str), fs.parse(new_str or "")
    if (old == new) if semantics == "dundee" else fs.is_equal(old, new):
        return None
    meet = fs.intersect(old, new)
    return (fs.is_strict_subset(meet, old, semantics), fs.is_strict_subset(meet, new, semantics))


def _alert(change: Change | None, down: _Kind, up: _Kind, body: str) -> Alert | None:
    if change is None:
        return None
    lost, gained = change
    name, priority = down if lost else up
    return (
        name,
        priority,
        body + (LOST_SUFFIX if lost else "") + (GAINED_SUFFIX if gained else ""),
    )


def host_alert(
    old_cpu_info: Mapping[str, str] | None,
    new_cpu_info: Mapping[str, str],
    rpu_in_progress: bool = False,
    semantics: str | None = None,
    rules: Rules = DUNDEE,
) -> Alert | None:
    """``(name, priority, body)`` of the Host message for a ``features_hvm`` change (§3, §18);
    never under rules without host alerts (8.x: logged only)."""
    if rpu_in_progress or not rules.host_alerts:
        return None
    semantics = semantics or rules.semantics
    change = features_change(
        (old_cpu_info or {}).get("features_hvm"), new_cpu_info.get("features_hvm"), semantics
    )
    return _alert(change, HOST_CPU_FEATURES_DOWN, HOST_CPU_FEATURES_UP, HOST_BODY)


def pool_alert(
    old_pool_cpu_info: Mapping[str, str] | None,
    new: Mapping[str, str],
    n_hosts: int,
    rpu_in_progress: bool,
    semantics: str | None = None,
    rules: Rules = DUNDEE,
) -> Alert | None:
    """``(name, priority, body)`` of the Pool message, only with >1 host records, no RPU (§4),
    and never under rules without pool alerts (8.x)."""
    if rpu_in_progress or n_hosts <= 1 or not rules.pool_alerts:
        return None
    semantics = semantics or rules.semantics
    change = features_change(
        (old_pool_cpu_info or {}).get("features_hvm"), new.get("features_hvm"), semantics
    )
    return _alert(change, POOL_CPU_FEATURES_DOWN, POOL_CPU_FEATURES_UP, POOL_BODY)


# --- VM flags (§6, §9, §11) ---------------------------------------------------------------


def vm_boot_flags(
    pool_cpu_info: Mapping[str, str], is_hvm: bool, rules: Rules = DUNDEE
) -> dict[str, str]:
    """``last_boot_CPU_flags`` set by VM.start: pool vendor + pool PV/HVM level (§6).

    A pool map lacking a key raises KeyError (xapi's Not_found → INTERNAL_ERROR).
    """
    return {
        VENDOR_KEY: pool_cpu_info[VENDOR_KEY],
        FEATURES_KEY: pool_cpu_info[features_key(is_hvm, rules.boot_keys)],
    }


def _host_view(
    host_cpu_info: Mapping[str, str],
    is_hvm: bool,
    rules: Rules = DUNDEE,
) -> tuple[str, fs.Featureset] | None:
    key = features_key(is_hvm, rules.check_keys)
    if VENDOR_KEY not in host_cpu_info or key not in host_cpu_info:
        return None
    return host_cpu_info[VENDOR_KEY], fs.parse(host_cpu_info[key])


def check_vm_compatible(
    vm_power_state: str,
    vm_flags: Mapping[str, str],
    is_hvm: bool,
    host_cpu_info: Mapping[str, str],
    mode: str = "reorder",
    rules: Rules = DUNDEE,
) -> str | None:
    """None if the VM may run on the host, else the VM_INCOMPATIBLE_WITH_THIS_HOST reason (§9).

    Halted VMs and hosts without the new keys pass; the vendor test (if the VM has a
    vendor) runs first; the VM's features (if any) are upgraded/resized to the host's
    length (§11, old-style translation ``mode``) and must be a subset of the host set.
    Malformed strings raise InvalidFeatureString (INTERNAL_ERROR on the wire).
    """
    if vm_power_state == "Halted":
        return None
    view = _host_view(host_cpu_info, is_hvm, rules)
    if view is None:
        return None
    host_vendor, host_set = view
    if VENDOR_KEY in vm_flags and vm_flags[VENDOR_KEY] != host_vendor:
        return REASON_VENDOR
    if FEATURES_KEY in vm_flags:
        vm_set = fs.upgrade_vm_features(fs.parse(vm_flags[FEATURES_KEY]), host_set, is_hvm, mode)
        if not fs.is_subset(vm_set, host_set, rules.semantics):
            return REASON_FEATURES
    return None


def updated_vm_flags(
    vm_flags: Mapping[str, str],
    is_hvm: bool,
    host_cpu_info: Mapping[str, str],
    mode: str = "reorder",
    rules: Rules = DUNDEE,
) -> dict[str, str] | None:
    """The VM's new ``last_boot_CPU_flags`` after a migrate/resume, None if unchanged (§11).

    The features are upgraded/resized to the host; only when their string changes is the
    map replaced by ``{vendor: host vendor, features: new}``.  A host without the new keys
    changes nothing.
    """
    view = _host_view(host_cpu_info, is_hvm, rules)
    if view is None:
        return None
    host_vendor, host_set = view
    cur = vm_flags.get(FEATURES_KEY, "")
    new = fs.format(fs.upgrade_vm_features(fs.parse(cur), host_set, is_hvm, mode))
    if new == cur:
        return None
    return {VENDOR_KEY: host_vendor, FEATURES_KEY: new}


# --- platform versions for RPU (§13) -----------------------------------------------------


def parse_platform_version(version: str | None) -> tuple[int, ...]:
    """``"2.0.0"`` → ``(2, 0, 0)``; a missing version counts as ``"0.0.0"`` (§13)."""
    text = "0.0.0" if version is None else version
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        raise ValueError(f"invalid platform version {version!r}") from None


def compare_platform_versions(a: str | None, b: str | None) -> int:
    """-1/0/1 comparing element-wise; unequal lengths raise ValueError like List.map2 (§13)."""
    va, vb = parse_platform_version(a), parse_platform_version(b)
    if len(va) != len(vb):
        raise ValueError("Invalid argument: List.map2")
    for x, y in zip(va, vb, strict=True):
        if x != y:
            return -1 if x < y else 1
    return 0


def host_platform_version(software_version: Mapping[str, str]) -> tuple[int, ...]:
    """A host's ``software_version["platform_version"]`` parsed, default ``0.0.0`` (§13)."""
    return parse_platform_version(software_version.get("platform_version"))
