"""Playback's choices for a recorded host: which modelled release runs it (from its
``software_version`` and the file's schema), and the hardware that makes it report its
recorded ``cpu_info`` (the nearest catalogue CPU, the recorded features as overrides)."""

from __future__ import annotations

import attrs

from . import products
from .datamodel import RELEASE_INDEX
from .levelling import cpus
from .levelling import featureset as fs
from .runtime import MAX_PCPUS_PER_HOST, GiB, Hardware

# The profiles playback can run a recorded host as, oldest first (docs/releases.md).
PROFILES = sorted(products.PROFILES.values(), key=lambda p: RELEASE_INDEX[p.release])
MODELLED = {p.release: p.version for p in PROFILES}  # datamodel release -> product version
# A host's cpu_info keys per datamodel release, as its levelling profile reports them.
CPU_INFO_KEYS = {
    p.release: tuple(cpus.host_cpu_info("Haswell", release=p.levelling)) for p in PROFILES
}
ALL_CPU_INFO_KEYS = tuple(dict.fromkeys(k for keys in CPU_INFO_KEYS.values() for k in keys))
DEFAULT_MEMORY = 64 * GiB

# -- release choice -------------------------------------------------------------------------


def _version_tuple(version: str) -> tuple:
    out = []
    for piece in version.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def profile_for_line(product_version: str, brand: str = "") -> products.Product:
    """The profile a host of ``product_version`` (and ``product_brand``) runs as: the newest
    of its major version not newer than it (XenServer 7.6 -> 7.1), else the oldest of its
    major version (Citrix Hypervisor 8.0 -> 8.2 CU1), else the newest not newer (9.x ->
    XenServer 8), else the oldest (5.x -> 6.5 SP1). XCP-ng builds run as the XCP-ng
    profile of their version when there is one, else as the XenServer line's."""
    line = _version_tuple(product_version) if product_version else (0, 0)
    if brand.lower().startswith("xcp-ng"):
        for p in PROFILES:
            if p.title.startswith("XCP-ng") and _version_tuple(p.version) == line:
                return p
    ordered = sorted(
        (p for p in PROFILES if not p.title.startswith("XCP-ng")),
        key=lambda p: _version_tuple(p.version),
    )
    same = [p for p in ordered if _version_tuple(p.version)[0] == line[0]]
    older = [p for p in (same or ordered) if _version_tuple(p.version) <= line]
    if older:
        return older[-1]
    return (same or ordered)[0]


def emulated_release(file_release: str | None, product_version: str, brand: str = "") -> str:
    """The datamodel release a recorded pool runs as: that of its master's product line
    (:func:`profile_for_line`); without a recorded ``product_version``, the newest profile
    whose release is not after the file's schema (else the oldest)."""
    if product_version:
        return profile_for_line(product_version, brand).release
    if file_release is not None and file_release in RELEASE_INDEX:
        idx = RELEASE_INDEX[file_release]
        older = [p for p in PROFILES if RELEASE_INDEX[p.release] <= idx]
        if older:
            return older[-1].release
    return PROFILES[0].release if file_release is not None else products.DEFAULT_RELEASE


def product_for(sv: dict, cap: str, exact: bool = False) -> tuple:
    """(Product, note or None) a host with recorded ``software_version`` runs: the profile
    of its product line (:func:`profile_for_line`), never newer than ``cap`` (its pool's
    release; ``exact``: the pool's master runs ``cap``). The recorded ``software_version`` is
    kept verbatim when its line (major.minor) is the profile's."""
    pv = sv.get("product_version", "")
    p = profile_for_line(pv, sv.get("product_brand", "")) if pv else None
    if p is None or exact or RELEASE_INDEX[p.release] > RELEASE_INDEX[cap]:
        p = products.PRODUCTS[MODELLED[cap]]
    if pv and _version_tuple(pv) == _version_tuple(p.version):
        return attrs.evolve(
            p,
            software_version=tuple(sv.items()),
            platform_version=sv.get("platform_version", p.platform_version),
        ), None
    return p, (
        f"recorded product_version {pv or '(none)'} runs as {p.version} "
        f"({p.profile}): the nearest release the simulator models"
    )


# -- hardware -----------------------------------------------------------------------------


def _oldstyle(text: str | None):
    try:
        return fs.parse_oldstyle(text) if text else None
    except fs.InvalidFeatureString:
        return None


def _int(text, default=None):
    try:
        v = int(str(text).strip().split(".")[0])
    except (TypeError, ValueError):
        return default
    return v


def _featureset(text: str | None):
    try:
        return fs.parse(text) if text else None
    except fs.InvalidFeatureString:
        return None


def _bits(a, b) -> int:
    n = max(len(a), len(b))
    return sum(
        (x ^ y).bit_count() for x, y in zip(fs.zero_extend(a, n), fs.zero_extend(b, n), strict=True)
    )


def nearest_cpu(info: dict) -> tuple[str, str]:
    """(catalogue model, why) nearest to a recorded cpu_info: the same vendor if the
    catalogue has it; the fewest differing bits of the v1 ``features``
    plus of ``features_hvm`` (against each Xen era the catalogue derives), else the fewest
    differing ``flags``; then the nearest family, model and stepping."""
    vendor = info.get("vendor", "")
    family, model = _int(info.get("family"), -1), _int(info.get("model"), -1)
    stepping = _int(info.get("stepping"), -1)
    models = [m for m in cpus.MODELS.values() if m.vendor == vendor] or list(cpus.MODELS.values())
    feats = _oldstyle(info.get("features"))
    hvm = _featureset(info.get("features_hvm"))
    flags = set((info.get("flags") or "").split())
    signals = [
        name
        for name, present in (("features", feats is not None), ("features_hvm", bool(hvm)))
        if present
    ]
    if not signals and flags:
        signals = ["flags"]
    basis = "+".join(signals) or "family/model"

    def distance(m):
        bits = 0
        if feats is not None:
            bits += _bits(feats, cpus.physical_features(m.name))
        if hvm:
            bits += min(
                _bits(hvm, fs.parse(cpus.host_featuresets(m.name, era=era)["features_hvm"]))
                for era in cpus.ERAS
            )
        if signals == ["flags"]:
            bits = len(set(cpus.cpuinfo_flags(m.name).split()) ^ flags)
        return (
            bits,
            (m.family, m.model) != (family, model),
            abs(m.family - family),
            abs(m.model - model),
            abs(m.stepping - stepping),
        )

    best = min(models, key=distance)
    n = distance(best)[0]
    unit = "flag" if basis == "flags" else "bit"
    why = (
        f"{vendor or 'unknown vendor'} family {family} model {model} -> {best.name} "
        f"(its {basis}: {n} {unit}{'' if n == 1 else 's'} "
        f"{'differs' if n == 1 else 'differ'})"
    )
    return best.name, why


def _valid_override(key: str, value: str) -> bool:
    if key in ("features_pv", "features_hvm", "features_pv_host", "features_hvm_host"):
        try:
            fs.parse(value)
        except fs.InvalidFeatureString:
            return False
    if key in ("features", "features_after_reboot", "physical_features"):
        return _oldstyle(value) is not None or _valid_override("features_pv", value)
    return True


def hardware_for(
    info: dict, cpu_rows: list, memory_total: int | None, release: str, nics: int = 4
) -> tuple[Hardware, list]:
    """The Hardware of a recorded host running ``release`` with ``nics`` NICs, and the
    notes explaining it."""
    notes = []
    if not info and cpu_rows:
        r = cpu_rows[0]
        info = {
            "cpu_count": str(len(cpu_rows)),
            "vendor": r.get("vendor", ""),
            "speed": str(r.get("speed", "")),
            "modelname": r.get("modelname", ""),
            "family": str(r.get("family", "")),
            "model": str(r.get("model", "")),
            "stepping": str(r.get("stepping", "")),
            "flags": r.get("flags", ""),
        }
        if _oldstyle(r.get("features")) is not None:
            info["features"] = r["features"]
        notes.append("no cpu_info recorded: taken from its host_cpu rows")
    cpu, why = nearest_cpu(info)
    notes.append(f"CPU {why}")
    count = _int(info.get("cpu_count")) or len(cpu_rows) or 8
    if not 1 <= count <= MAX_PCPUS_PER_HOST:
        notes.append(
            f"cpu_count {info.get('cpu_count')!r} is not 1 to {MAX_PCPUS_PER_HOST}:"
            f" {min(max(count, 1), MAX_PCPUS_PER_HOST)} pCPUs"
        )
        count = min(max(count, 1), MAX_PCPUS_PER_HOST)
        info = {k: v for k, v in info.items() if k != "cpu_count"}
    sockets = _int(info.get("socket_count")) or 1
    if sockets < 1 or sockets > count:
        sockets = 1
    keys = CPU_INFO_KEYS[release]
    # every recorded key either modelled release reports: a host upgraded later (6.5 SP1
    # -> 7.0) keeps what it recorded of the keys its new release still has
    overrides = {k: info[k] for k in ALL_CPU_INFO_KEYS if k in info and _valid_override(k, info[k])}
    bad = sorted(k for k in ALL_CPU_INFO_KEYS if k in info and k not in overrides)
    if bad:
        notes.append(f"cpu_info {', '.join(bad)}: not a feature string, derived from {cpu} instead")
    extra = sorted(k for k in info if k not in keys)
    if extra:
        notes.append(f"cpu_info {', '.join(extra)}: not reported by {release}, kept aside")
    missing = sorted(k for k in keys if k not in info)
    if missing:
        notes.append(f"cpu_info {', '.join(missing)}: not recorded, derived from {cpu}")
    if memory_total is None or memory_total <= 0:
        memory = DEFAULT_MEMORY
        notes.append(f"no host_metrics.memory_total recorded: {memory // GiB} GiB")
    else:
        memory = memory_total
    return Hardware(
        cpu, (), sockets, max(1, count // sockets), memory, None, overrides, nics
    ), notes
