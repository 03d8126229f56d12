"""CPU catalogue and host featuresets (spec §1.1, §1.4, §2.5, §16; cpu-featuresets.md).

The catalogue (21 models, 267 features, dependency table, era rules) is the committed
``xapi_sim/data/cpus.json``, derived by ``scripts/derive_cpus.py``.  ``host_featuresets``
implements the catalogue's rule engine, which models how Xen (``cpufeatureset.h`` attribute
letters, ``gen-cpuid.py`` dependencies, ``cpuid.c``/``cpu-policy.c`` adjustments) and
xenopsd/xenctrl compat code turn a host's CPUID into XAPI's ``features_pv``/``features_hvm``
(and ``*_host``).  ``host_cpu_info`` mirrors xen-api ``Create_misc.create_host_cpu``
(``ocaml/xapi/create_misc.ml``, Dundee) and its pre-Dundee predecessor.

**Dundee default (XenServer 7.0 GA).**  ``era="xen-4.7"`` defaults to what 7.0 shipped in
May 2016: the 9-word Xen 4.7 layout, with the speculation-control bits (IBPB in word 8,
word 9 ``7d0``) *unknown* to Xen and no 2018+ microcode bits on the host.  Those arrived
with the 2018-2019 hotfixes, which backported word 9 and IBPB (10-word strings).  Pass
``word9_backport=True`` (and ``microcode=True``, its default then) for that variant; it is
the one the catalogue's ``derived_featuresets["xen-4.7"]`` records.  Later eras default to
``microcode=True``, as their derived strings do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import attrs

from . import featureset as fs
from . import rules as _rules

_DATA_PATH = Path(__file__).resolve().parent.parent / "data" / "cpus.json"
with open(_DATA_PATH, encoding="utf-8") as _fh:
    DATA: dict[str, Any] = json.load(_fh)

# A host's ``cpu_info``: a XAPI map(string, string) whose keys depend on the release
# (DUNDEE_KEYS, CREAM_KEYS), so a plain map rather than a TypedDict.
CpuInfo = dict[str, str]
# An era of the catalogue's rule engine (``cpus.json`` "eras"), as loaded.
Era = dict[str, Any]

COMMON_1D_MASK: int = DATA["common_1d_mask"]
NUM_WORDS: int = len(DATA["featureset_words"])
DEPENDENCIES: dict[str, list[str]] = DATA["dependencies"]
ERAS: dict[str, Era] = {era["id"]: era for era in DATA["eras"]}
OBSERVED_OUTPUTS: tuple[Any, ...] = tuple(DATA["observed_outputs"])
RELEASES = tuple(_rules.RULES)  # levelling profiles (rules.py)
DUNDEE_KEYS = (
    "cpu_count",
    "socket_count",
    "vendor",
    "speed",
    "modelname",
    "family",
    "model",
    "stepping",
    "flags",
    "features",
    "features_pv",
    "features_hvm",
)
CREAM_KEYS = (
    "cpu_count",
    "socket_count",
    "vendor",
    "speed",
    "modelname",
    "family",
    "model",
    "stepping",
    "flags",
    "features",
    "features_after_reboot",
    "physical_features",
    "maskable",
)
# Linux prints /proc/cpuinfo flags in its own capability-word order:
# 1.edx, e1.edx, e7.edx (constant_tsc), 1.ecx, e1.ecx, 7:0.ebx, D:1.eax, e8.ebx, 7:0.ecx, ...
_LINUX_WORD_ORDER = (0, 2, 7, 1, 3, 5, 4, 8, 6, 9, 10, 11, 16)


class UnknownCpuModel(ValueError):
    """No CPU model of that name in the catalogue."""


class UnknownFeature(ValueError):
    """No CPU feature of that name in the catalogue."""


class CpuMaskingError(ValueError):
    """Pre-Dundee ``Host.set_cpu_features`` refusal: ``code`` and ``detail`` (spec §16)."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@attrs.frozen
class Feature:
    """One Xen featureset bit (``cpufeatureset.h``) with its attribute letters per Xen era."""

    name: str
    word: int
    bit: int
    attrs_by_xen: tuple[tuple[str, str | None], ...]  # None = unknown to that Xen
    linux: str | None  # /proc/cpuinfo spelling; None = Linux hides it

    def attr(self, xen: str) -> str | None:
        """The attribute letters at Xen ``xen`` ("4.7", "4.13", ...); None if unknown."""
        return dict(self.attrs_by_xen).get(xen)


@attrs.frozen
class CpuModel:
    """A catalogue CPU: identity, the old v1 ``maskable`` class and its CPUID features."""

    name: str
    vendor: str
    family: int
    model: int
    stepping: int
    modelname: str
    masking: str  # pre-Dundee cpu_info "maskable": no | base | full
    xen_levelling: str
    flags: tuple[str, ...]  # Xen feature names, facts from QEMU's model table
    host_extra_flags: tuple[str, ...]  # bits real silicon has that the QEMU model leaves out
    microcode_flags: tuple[str, ...]  # speculation-control bits added by 2018-2019+ microcode
    speed: str  # synthetic "cpu MHz" string
    derived_featuresets: Mapping[str, Any] = attrs.field(eq=False, hash=False, repr=False)


class HostFeaturesets(TypedDict):
    """``host_featuresets``: the PV/HVM strings, and the ``*_host`` ones after xen-4.7."""

    features_pv: str
    features_hvm: str
    features_pv_host: NotRequired[str]
    features_hvm_host: NotRequired[str]


FEATURES: dict[str, Feature] = {
    f["name"]: Feature(f["name"], f["word"], f["bit"], tuple(f["attrs"].items()), f["linux"])
    for f in DATA["features"]
}
_BY_POSITION: dict[tuple[int, int], Feature] = {(f.word, f.bit): f for f in FEATURES.values()}

MODELS: dict[str, CpuModel] = {
    m["name"]: CpuModel(
        name=m["name"],
        vendor=m["vendor"],
        family=m["family"],
        model=m["model"],
        stepping=m["stepping"],
        modelname=m["modelname"],
        masking=m["masking"],
        xen_levelling=m["xen_levelling"],
        flags=tuple(m["flags"]),
        host_extra_flags=tuple(m["host_extra_flags"]),
        microcode_flags=tuple(m["microcode_flags"]),
        speed=m["speed"],
        derived_featuresets=m["derived_featuresets"],
    )
    for m in DATA["models"]
}


# --- catalogue lookups (cpu-featuresets.md §3) ------------------------------------------


def model(name: str) -> CpuModel:
    """The catalogue model called ``name`` (case-sensitive), else UnknownCpuModel (§3)."""
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownCpuModel(
            f"unknown CPU model {name!r}; valid models: {', '.join(MODELS)}"
        ) from None


def feature(name: str) -> Feature:
    """The catalogue feature called ``name`` (Xen spelling), else UnknownFeature (§1)."""
    try:
        return FEATURES[name]
    except KeyError:
        raise UnknownFeature(
            f"unknown CPU feature {name!r} (use Xen's names, e.g. 'hle', 'rtm', 'sse4-2')"
        ) from None


def to_featureset(names: Iterable[str], word_count: int = NUM_WORDS) -> fs.Featureset:
    """Render feature names as a featureset of ``word_count`` words (§2.4)."""
    words = [0] * max(word_count, NUM_WORDS)
    for name in names:
        f = feature(name)
        words[f.word] |= 1 << f.bit
    return tuple(words[:word_count])


def feature_names(featureset: Sequence[int]) -> list[str]:
    """Names of the catalogue features set in ``featureset``, in (word, bit) order (§2.4)."""
    return [
        f.name
        for (w, b), f in sorted(_BY_POSITION.items())
        if w < len(featureset) and featureset[w] >> b & 1
    ]


def dependents(names: Iterable[str]) -> frozenset[str]:
    """Features transitively depending on ``names`` (Xen gen-cpuid.py; cpu-featuresets §1.1)."""
    out: set[str] = set()
    todo = list(names)
    while todo:
        for child in DEPENDENCIES.get(todo.pop(), ()):
            if child not in out:
                out.add(child)
                todo.append(child)
    return frozenset(out)


def host_features(
    model_name: str, hidden_features: Iterable[str] = (), microcode: bool = False
) -> frozenset[str]:
    """The host's CPUID feature names: model flags + silicon extras (+ microcode) (§1.1).

    ``hidden_features`` (firmware/microcode/Xen command line, e.g. ``["hle", "rtm"]``) are
    removed together with everything that depends on them.
    """
    m = model(model_name)
    hidden = frozenset(hidden_features)
    for name in hidden:
        feature(name)
    names = set(m.flags) | set(m.host_extra_flags)
    if microcode:
        names |= set(m.microcode_flags)
    return frozenset(names - hidden - dependents(hidden))


# --- the era rule engine (cpu-models.json rule_engine) ----------------------------------


@attrs.frozen
class _Ctx:
    era: Era
    host: frozenset[str]
    vendor: str
    family: int
    model: int
    backport: bool
    hvm_capable: bool


def _attr(ctx: _Ctx, name: str) -> str | None:
    f = feature(name)
    attr = f.attr(ctx.era["xen_attrs"])
    if attr is None and ctx.backport and name in ctx.era.get("extra_known", ()):
        attr = f.attr("4.13")
    return attr


def _masked(ctx: _Ctx, names: Iterable[str], mask: str) -> set[str]:
    out = set()
    for name in names:
        attr = _attr(ctx, name)
        if attr is not None and any(letter in attr for letter in mask):
            out.add(name)
    return out


def _sanitise(names: set[str]) -> set[str]:
    missing = [dep for dep in DEPENDENCIES if dep not in names]
    return names - dependents(missing)


def _xen_adjust(ctx: _Ctx, rule: dict[str, Any], names: set[str]) -> set[str]:
    """Step 3: the Xen-side additions and removals, in the rule engine's order."""
    host, vendor = ctx.host, ctx.vendor
    names |= set(rule.get("add", ()))
    names |= set(rule.get("add_if_host", ())) & host
    for trigger, extra in rule.get("add_if_host_has", {}).items():
        if trigger in host:
            names |= set(extra)
    names |= set(rule.get("vendor_add", {}).get(vendor, ()))
    names |= set(rule.get("vendor_add_if_host", {}).get(vendor, ())) & host
    for trigger, extra in rule.get("add_if_in_set", {}).items():
        if trigger in names:
            names |= set(extra)
    names -= set(rule.get("remove_if_host_lacks", ())) - host
    names -= set(rule.get("remove_for_models", {}).get(f"{vendor}/{ctx.family}/{ctx.model}", ()))
    return {n for n in names if _attr(ctx, n) is not None}


def _compat(ctx: _Ctx, rule: dict[str, Any], base_compat: frozenset[str]) -> set[str]:
    """Step 5: XAPI/xenctrl compatibility bits (not sanitised)."""
    names = set(rule.get("compat_add", ()))
    names |= set(rule.get("compat_add_if_host", ())) & ctx.host
    names |= set(rule.get("compat_vendor_add", {}).get(ctx.vendor, ()))
    if rule.get("inherit_compat"):
        names |= base_compat
    return names


def _policy(
    ctx: _Ctx,
    kind: str,
    guest: str,
) -> tuple[frozenset[str], frozenset[str], bool]:
    """(xen part, compat part, copy-word-2 flag) of the era's ``kind``/``guest`` policy."""
    rule = ctx.era[kind][guest]
    no_hvm = guest == "hvm" and not ctx.hvm_capable  # Xen offers HVM guests nothing
    if "based_on" in rule:
        base_xen, base_compat, base_copy = _policy(ctx, rule["based_on"], guest)
        names = _masked(ctx, base_xen, rule["mask"]) if "mask" in rule else set(base_xen)
    else:
        base_compat, base_copy = frozenset(), False
        names = set() if no_hvm else _masked(ctx, ctx.host, rule["mask"])
    if not no_hvm:
        names = _xen_adjust(ctx, rule, names)
    names = _sanitise(names)
    compat = _compat(ctx, rule, base_compat)
    copy = rule.get("copy_common_1d_to_word2", base_copy)
    return frozenset(names), frozenset(compat), copy


def _render(ctx: _Ctx, kind: str, guest: str, word_count: int) -> str:
    xen, compat, copy = _policy(ctx, kind, guest)
    words = list(to_featureset(xen | compat))
    if copy:
        words[2] |= words[0] & COMMON_1D_MASK
    return fs.format(fs.zero_extend(words, word_count))


def host_featuresets(
    model_name: str,
    hidden_features: Iterable[str] = (),
    era: str = "xen-4.7",
    *,
    microcode: bool | None = None,
    word9_backport: bool | None = None,
    word_count: int | None = None,
    hvm_capable: bool = True,
) -> HostFeaturesets:
    """The host's ``features_pv``/``features_hvm`` (+ ``*_host`` after xen-4.7) strings (§1.1).

    Runs the catalogue rule engine for ``era`` (one of ``ERAS``).  ``xen-4.7`` defaults to
    XenServer 7.0 GA: 9 words, no microcode bits; ``word9_backport=True`` gives the
    2018-hotfix 10-word variant (``microcode`` then defaults to True).  ``word_count``
    overrides the era's length.  ``hvm_capable=False`` models a host without VT-x/AMD-V:
    the HVM sets hold only the compat bits XAPI/xenctrl force (all zeros in Dundee).
    """
    if era not in ERAS:
        raise ValueError(f"unknown era {era!r}; valid eras: {', '.join(ERAS)}")
    rules = ERAS[era]
    if era == "xen-4.7":
        backport = bool(word9_backport)
        default_count = rules["word_count_with_word9_backport"] if backport else rules["word_count"]
    else:
        if word9_backport is False:
            raise ValueError(f"era {era!r} always has word 9")
        backport, default_count = True, rules["word_count"]
    if microcode is None:
        microcode = backport
    m = model(model_name)
    host = host_features(model_name, hidden_features, microcode)
    host |= set(rules.get("host_synthesized", {}).get(m.vendor, ()))
    ctx = _Ctx(rules, frozenset(host), m.vendor, m.family, m.model, backport, hvm_capable)
    n = default_count if word_count is None else word_count
    out: HostFeaturesets = {
        "features_pv": _render(ctx, "max", "pv", n),
        "features_hvm": _render(ctx, "max", "hvm", n),
    }
    if era != "xen-4.7":
        out["features_pv_host"] = _render(ctx, "default", "pv", n)
        out["features_hvm_host"] = _render(ctx, "default", "hvm", n)
    return out


# --- pre-Dundee / compat values (§1.1, §2.5, §16) -----------------------------------------


def physical_features(
    model_name: str, hidden_features: Iterable[str] = (), microcode: bool = False
) -> fs.Featureset:
    """The host's raw CPUID as a v1 4-word value (ecx, edx, ext_ecx, ext_edx) (§2.5).

    This is Dundee's ``cpu_info["features"]`` (xenopsd ``features_oldstyle``) and the
    pre-Dundee ``physical_features``.  AMD parts duplicate the common leaf-1 EDX bits into
    0x80000001 EDX, so for them ext_edx carries those copies; Intel's does not.
    """
    m = model(model_name)
    words = to_featureset(host_features(model_name, hidden_features, microcode), 4)
    ext_edx = words[2]
    if m.vendor == "AuthenticAMD":
        ext_edx |= words[0] & COMMON_1D_MASK
    return (words[1], words[0], words[3], ext_edx)


def check_mask(
    model_name: str, mask: Sequence[int] | str, hidden_features: Iterable[str] = ()
) -> fs.Featureset:
    """Validate a v1 mask as pre-Dundee ``Host.set_cpu_features`` did; return it (§16)."""
    m = model(model_name)
    words = fs.parse_oldstyle(mask) if isinstance(mask, str) else tuple(mask)
    if len(words) != 4 or not all(0 <= w <= fs.WORD_MASK for w in words):
        raise fs.InvalidFeatureString("String is not of the right length")
    if m.masking == "no":
        detail = {
            "GenuineIntel": "CPU does not have FlexMigration",
            "AuthenticAMD": "CPU does not have Extended Migration Technology",
        }
        raise CpuMaskingError(
            "CPU_FEATURE_MASKING_NOT_SUPPORTED", detail.get(m.vendor, "Unknown CPU manufacturer")
        )
    physical = physical_features(model_name, hidden_features)
    if m.masking == "base" and any(physical[i] & words[i] != physical[i] for i in (2, 3)):
        raise CpuMaskingError(
            "INVALID_FEATURE_STRING",
            "CPU features cannot be masked to obtain given features "
            "(only base features can be masked)",
        )
    return words


def cpuinfo_flags(
    model_name: str,
    hidden_features: Iterable[str] = (),
    *,
    microcode: bool | None = None,
    word9_backport: bool = False,
    mask: Sequence[int] | None = None,
) -> str:
    """dom0's /proc/cpuinfo ``flags`` line: Linux names of the PV featureset (§1.1).

    dom0 is a PV guest, so it sees (approximately) Xen 4.7's PV featureset of the host;
    names are Linux's, in Linux's capability-word order; flags Linux hides are left out.
    A v1 ``mask`` (ecx, edx, ext_ecx, ext_edx) also hides the masked bits, as Xen's
    ``cpuid_mask_*`` options did for dom0.
    """
    pv = fs.parse(
        host_featuresets(
            model_name,
            hidden_features,
            "xen-4.7",
            microcode=microcode,
            word9_backport=word9_backport,
        )["features_pv"]
    )
    if mask is not None:
        ecx, edx, ext_ecx, ext_edx = mask
        keep = (edx, ecx, ext_edx, ext_ecx) + (fs.WORD_MASK,) * (len(pv) - 4)
        pv = tuple(w & k for w, k in zip(pv, keep, strict=False))
    order = {w: i for i, w in enumerate(_LINUX_WORD_ORDER)}
    present = [FEATURES[n] for n in feature_names(pv)]
    present.sort(key=lambda f: (order.get(f.word, len(order) + f.word), f.bit))
    return " ".join(f.linux for f in present if f.linux)


# --- host.cpu_info and host_cpu rows (§1.1, §1.4) -----------------------------------------


def host_cpu_info(
    model_name: str,
    hidden_features: Iterable[str] = (),
    sockets: int = 1,
    cpus_per_socket: int = 4,
    threads_per_core: int = 1,
    release: str = "dundee",
    *,
    microcode: bool | None = None,
    word9_backport: bool | None = None,
    mask: Sequence[int] | str | None = None,
    hvm_capable: bool = True,
) -> CpuInfo:
    """A host's ``cpu_info`` map with the release's exact keys, in stored order (§1.1).

    ``cpus_per_socket`` counts cores; ``cpu_count = sockets × cores × threads_per_core``.
    ``release="dundee"`` (XS 7.0): the 12 keys of ``Create_misc.create_host_cpu``.
    ``release="cream"`` (XS 6.5 SP1): the v1 keys; ``mask`` models ``set_cpu_features``
    masking (``features = physical AND mask``), validated by ``check_mask``.
    Any other levelling profile of ``rules.RULES``: its key family and era (``ely``: Dundee's
    keys with the 2018 word 9; ``stockholm``/``nile``/``xcp-ng-8.3``: the max and default
    policies, ``threads_per_core`` on 8.3).
    """
    if release not in RELEASES:
        raise ValueError(f"unknown release {release!r}; use one of {RELEASES}")
    for label, value in (
        ("sockets", sockets),
        ("cpus_per_socket", cpus_per_socket),
        ("threads_per_core", threads_per_core),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} must be a positive integer, not {value!r}")
    hidden = tuple(hidden_features)
    m = model(model_name)
    info: CpuInfo = {
        "cpu_count": str(sockets * cpus_per_socket * threads_per_core),
        "socket_count": str(sockets),
        "vendor": m.vendor,
        "speed": m.speed,
        "modelname": m.modelname,
        "family": str(m.family),
        "model": str(m.model),
        "stepping": str(m.stepping),
    }
    r = _rules.rules(release)
    if word9_backport is None:
        word9_backport = r.word9_backport
    physical = physical_features(model_name, hidden, bool(microcode))
    if r.cpu_keys == "host":
        if mask is not None:
            raise ValueError("CPU masking does not exist after XenServer 6.5")
        sets = host_featuresets(
            model_name, hidden, r.era, microcode=microcode, hvm_capable=hvm_capable
        )
        if r.threads_per_core:
            info = {
                "cpu_count": info["cpu_count"],
                "socket_count": info["socket_count"],
                "threads_per_core": str(threads_per_core),
                **{k: v for k, v in info.items() if k not in ("cpu_count", "socket_count")},
            }
        info["flags"] = cpuinfo_flags(model_name, hidden, microcode=microcode)
        info["features_pv"] = sets["features_pv"]
        info["features_hvm"] = sets["features_hvm"]
        info["features_hvm_host"] = sets["features_hvm_host"]
        info["features_pv_host"] = sets["features_pv_host"]
        return info
    if r.cpu_keys == "dundee":
        if mask is not None:
            raise ValueError("CPU masking does not exist in Dundee (set_cpu_features removed)")
        sets = host_featuresets(
            model_name,
            hidden,
            r.era,
            microcode=microcode,
            word9_backport=word9_backport,
            hvm_capable=hvm_capable,
        )
        info["flags"] = cpuinfo_flags(
            model_name, hidden, microcode=microcode, word9_backport=word9_backport
        )
        info["features"] = fs.format(physical)
        info["features_pv"] = sets["features_pv"]
        info["features_hvm"] = sets["features_hvm"]
        return info
    words = check_mask(model_name, mask, hidden) if mask is not None else None
    current = (
        physical if words is None else tuple(p & w for p, w in zip(physical, words, strict=False))
    )
    info["flags"] = cpuinfo_flags(model_name, hidden, microcode=microcode, mask=words)
    info["features"] = fs.format_oldstyle(current)
    info["features_after_reboot"] = fs.format_oldstyle(current)
    info["physical_features"] = fs.format_oldstyle(physical)
    info["maskable"] = m.masking
    return info


def _leading_int(value: str) -> int:
    found = re.match(r"\s*(-?\d+)", value or "")
    return int(found.group(1)) if found else 0


def host_cpu_rows(cpu_info: Mapping[str, str]) -> list[dict[str, Any]]:
    """Field values of the host's ``host_cpu`` objects, numbered 0..cpu_count-1 (§1.4)."""
    rows = []
    for number in range(_leading_int(cpu_info.get("cpu_count", "0"))):
        rows.append(
            {
                "number": number,
                "vendor": cpu_info.get("vendor", "unknown"),
                "speed": _leading_int(cpu_info.get("speed", "")),
                "modelname": cpu_info.get("modelname", ""),
                "family": _leading_int(cpu_info.get("family", "")),
                "model": _leading_int(cpu_info.get("model", "")),
                "stepping": cpu_info.get("stepping", ""),
                "flags": cpu_info.get("flags", ""),
                "features": "",
                "utilisation": 0.0,
            }
        )
    return rows
