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

MODELLED = {"cream": "6.5.0", "dundee": "7.0.0"}  # release -> products.PRODUCTS key
CPU_INFO_KEYS = {"cream": cpus.CREAM_KEYS, "dundee": cpus.DUNDEE_KEYS}
ALL_CPU_INFO_KEYS = tuple(dict.fromkeys(cpus.DUNDEE_KEYS + cpus.CREAM_KEYS))
DEFAULT_MEMORY = 64 * GiB

# -- release choice -------------------------------------------------------------------------


def emulated_release(file_release: str | None, product_version: str) -> str:
    """The modelled release a file runs as: up to cream, cream; from dundee on, dundee; in
    between (indigo), the one of the hosts' product line."""
    if file_release is not None:
        idx = RELEASE_INDEX.get(file_release)
        if idx is not None:
            if idx <= RELEASE_INDEX["cream"]:
                return "cream"
            if idx >= RELEASE_INDEX["dundee"]:
                return "dundee"
    major = product_version.split(".")[0]
    if major.isdigit():
        return "cream" if int(major) < 7 else "dundee"
    return "dundee"


def _version_tuple(version: str) -> tuple:
    out = []
    for piece in version.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def product_for(sv: dict, cap: str, exact: bool = False) -> tuple:
    """(Product, note or None) a host with recorded ``software_version`` runs: the modelled
    product of its product line (up to 6.5: 6.5 SP1; from 7.0: 7.0), never newer than
    ``cap`` (its pool's release; ``exact``: the pool's master runs ``cap``). The recorded
    ``software_version`` is kept verbatim when
    the line is the modelled one (any 7.0 or 6.5 build)."""
    pv = sv.get("product_version", "")
    line = _version_tuple(pv) if pv else None
    release = "cream" if line is not None and line < (7, 0) else "dundee"
    if exact or RELEASE_INDEX[release] > RELEASE_INDEX[cap]:
        release = cap
    p = products.PRODUCTS[MODELLED[release]]
    if line is not None and line == _version_tuple(p.version):
        return attrs.evolve(
            p,
            software_version=tuple(sv.items()),
            platform_version=sv.get("platform_version", p.platform_version),
        ), None
    return p, (
        f"recorded product_version {pv or '(none)'} runs as {p.version} "
        f"({release}): the nearest release the simulator models"
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
