"""What a fresh host of each release carries: its default VM templates and its SM (storage
plugin) records, plus the SM error table.

Pure loader over the committed data (no world or store imports):

* ``data/templates_<release>.json`` -- ``scripts/derive_templates.py`` (xenserver/
  guest-templates ``create_templates.ml`` up to 7.0, xenserver/guest-templates-json from 7.1)
* ``data/sm.json`` -- ``scripts/derive_sm.py`` (xapi-project/sm drivers' ``DRIVER_INFO`` as
  xen-api ``xapi_sm.ml`` ``create_from_query_result`` registers them)
* ``data/sm_errors.json`` -- sm ``drivers/XE_SR_ERRORCODES.xml`` and the device-config checks
  of the common SR types

A release without its own data uses the nearest *earlier* release that has some, in the
datamodel's release order (``indigo`` -> ``cream``, ``falcon`` .. ``quebec`` -> ``ely``,
``stockholm_psr`` -> ``stockholm``, ``nile-preview`` -> ``stockholm``, ``1.250.0`` and later
-> ``nile``); a release older than all the data uses the oldest data (SM: ``creedence`` ->
``cream``). ``data_release(kind, release)`` says which one answers. Every file is validated
when first loaded: malformed data raises ``CatalogueError`` naming the file and the problem.
Callers get deep copies, so they may change what they receive.

Loading is cached per file (``functools.lru_cache``) without a lock: two threads racing on
the first call may both read and validate the file, which is harmless (the data is
immutable), and no file I/O ever happens under a lock.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from importlib import resources

from xapi_sim.datamodel import RELEASE_INDEX, RELEASES

__all__ = [
    "CatalogueError",
    "templates",
    "sm_types",
    "sm_error",
    "sm_config_checks",
    "data_release",
    "parse_disks",
    "template_releases",
    "sm_releases",
]


class CatalogueError(ValueError):
    """The committed catalogue data is malformed, or a name is unknown."""


_TEMPLATE_FIELDS = {
    "name_label": str,
    "name_description": str,
    "memory_static_min": int,
    "memory_dynamic_min": int,
    "memory_dynamic_max": int,
    "memory_static_max": int,
    "VCPUs_max": int,
    "VCPUs_at_startup": int,
    "platform": dict,
    "other_config": dict,
    "recommendations": str,
    "HVM_boot_policy": str,
    "HVM_boot_params": dict,
    "PV_bootloader": str,
    "PV_args": str,
    "blocked_operations": dict,
}
_SM_FIELDS = {
    "type": str,
    "name_label": str,
    "name_description": str,
    "vendor": str,
    "copyright": str,
    "version": str,
    "required_api_version": str,
    "capabilities": list,
    "features": dict,
    "configuration": dict,
    "driver_filename": str,
    "required_cluster_stack": list,
}
_DISK = re.compile(r'<disk((?: \w+="[^"]*")+)/>')
_PROVISION = re.compile(r'<provision>((?:<disk(?: \w+="[^"]*")+/>)*)</provision>')
_RESTRICTIONS = re.compile(
    r'<restrictions>(?:<restriction(?: [\w-]+="[^"]*")+ ?/>)*'
    r"</restrictions>"
)


def parse_disks(spec: str) -> list[dict]:
    """A template's ``other_config:disks`` provision spec as a list of
    ``{device, size, sr, bootable, type}`` (size int, bootable bool); ValueError when
    malformed. Attribute order does not matter (7.1 on writes them sorted)."""
    m = _PROVISION.fullmatch(spec)
    if not m:
        raise ValueError(f"not a provision spec: {spec!r}")
    disks = []
    for d in _DISK.finditer(m.group(1)):
        attrs = dict(re.findall(r'(\w+)="([^"]*)"', d.group(1)))
        if (
            set(attrs) != {"device", "size", "sr", "bootable", "type"}
            or not attrs["size"].isdigit()
            or not attrs["device"].isdigit()
            or attrs["bootable"] not in ("true", "false")
        ):
            raise ValueError(f"bad disk entry {d.group()!r}")
        disks.append(
            {
                "device": attrs["device"],
                "size": int(attrs["size"]),
                "sr": attrs["sr"],
                "bootable": attrs["bootable"] == "true",
                "type": attrs["type"],
            }
        )
    return disks


def _read(name: str):
    try:
        text = resources.files("xapi_sim").joinpath(f"data/{name}").read_text()
    except FileNotFoundError:
        raise CatalogueError(f"data/{name} is missing") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CatalogueError(f"data/{name}: not JSON ({e})") from None


def _typed(where, rec, fields):
    if not isinstance(rec, dict):
        raise CatalogueError(f"{where}: not an object")
    for f, ty in fields.items():
        if f not in rec:
            raise CatalogueError(f"{where}: no {f}")
        if not isinstance(rec[f], ty) or (ty is int and isinstance(rec[f], bool)):
            raise CatalogueError(f"{where}: {f} is not {ty.__name__}")


def validate_template(where: str, t: dict) -> None:
    """Raise CatalogueError unless ``t`` is a well-formed template record."""
    _typed(where, t, _TEMPLATE_FIELDS)
    if not (
        0
        < t["memory_static_min"]
        <= t["memory_dynamic_min"]
        <= t["memory_dynamic_max"]
        <= t["memory_static_max"]
    ):
        raise CatalogueError(
            f"{where}: memory static_min <= dynamic_min <= dynamic_max <= static_max does not hold"
        )
    if not 1 <= t["VCPUs_at_startup"] <= t["VCPUs_max"]:
        raise CatalogueError(f"{where}: VCPUs_at_startup must be in 1..VCPUs_max")
    for m in ("platform", "other_config", "HVM_boot_params", "blocked_operations"):
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in t[m].items()):
            raise CatalogueError(f"{where}: {m} is not a string map")
    if "disks" in t["other_config"]:
        try:
            parse_disks(t["other_config"]["disks"])
        except ValueError as e:
            raise CatalogueError(f"{where}: {e}") from None
    if not _RESTRICTIONS.fullmatch(t["recommendations"]):
        raise CatalogueError(f"{where}: recommendations is not a <restrictions> list")
    if t["other_config"].get("default_template") != "true":
        raise CatalogueError(f"{where}: other_config:default_template is not true")


def validate_sm(where: str, r: dict) -> None:
    _typed(where, r, _SM_FIELDS)
    if r["capabilities"] != list(r["features"]):
        raise CatalogueError(f"{where}: capabilities differ from the feature names")
    if not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in r["features"].values()
    ):
        raise CatalogueError(f"{where}: feature versions must be ints >= 1")
    if not all(isinstance(v, str) for v in r["configuration"].values()):
        raise CatalogueError(f"{where}: configuration is not a string map")


@functools.cache
def template_releases() -> tuple:
    """Releases with their own template data, oldest first."""
    names = []
    for entry in resources.files("xapi_sim").joinpath("data").iterdir():
        m = re.fullmatch(r"templates_(.+)\.json", entry.name)
        if m:
            if m.group(1) not in RELEASE_INDEX:
                raise CatalogueError(f"data/{entry.name}: unknown release {m.group(1)!r}")
            names.append(m.group(1))
    return tuple(sorted(names, key=RELEASE_INDEX.__getitem__))


@functools.cache
def _templates_of(release: str) -> tuple:
    name = f"templates_{release}.json"
    doc = _read(name)
    if (
        not isinstance(doc, dict)
        or doc.get("release") != release
        or not isinstance(doc.get("templates"), list)
    ):
        raise CatalogueError(f"data/{name}: expected {{release: {release!r}, templates: [...]}}")
    seen = set()
    for i, t in enumerate(doc["templates"]):
        validate_template(f"data/{name} template {i}", t)
        if t["name_label"] in seen:
            raise CatalogueError(f"data/{name}: duplicate name_label {t['name_label']!r}")
        seen.add(t["name_label"])
    return tuple(doc["templates"])


@functools.cache
def _sm_doc() -> dict:
    doc = _read("sm.json")
    rels = doc.get("releases") if isinstance(doc, dict) else None
    if not isinstance(rels, dict) or not rels:
        raise CatalogueError("data/sm.json: expected {releases: {release: {sm: [...]}}}")
    for release, rel in rels.items():
        if release not in RELEASE_INDEX:
            raise CatalogueError(f"data/sm.json: unknown release {release!r}")
        if not isinstance(rel, dict) or not isinstance(rel.get("sm"), list):
            raise CatalogueError(f"data/sm.json: {release} has no sm list")
        types = set()
        for r in rel["sm"]:
            validate_sm(f"data/sm.json {release}/{r.get('type') if isinstance(r, dict) else r}", r)
            if r["type"] in types:
                raise CatalogueError(f"data/sm.json: {release} lists {r['type']} twice")
            types.add(r["type"])
    return rels


@functools.cache
def _errors_doc() -> dict:
    doc = _read("sm_errors.json")
    codes = doc.get("codes") if isinstance(doc, dict) else None
    if not isinstance(codes, dict) or not isinstance(doc.get("types"), dict):
        raise CatalogueError("data/sm_errors.json: expected {codes: {...}, types: {...}}")
    by_name = {}
    for code, entry in codes.items():
        if not code.isdigit() or not (
            isinstance(entry, list)
            and len(entry) == 2
            and all(isinstance(x, str) and x for x in entry)
        ):
            raise CatalogueError(f"data/sm_errors.json: code {code!r} is malformed")
        if entry[0] in by_name:
            raise CatalogueError(f"data/sm_errors.json: {entry[0]} has two codes")
        by_name[entry[0]] = (int(code), entry[1])
    for sr_type, t in doc["types"].items():
        for c in t.get("checks", []):
            if c.get("error") not in by_name:
                raise CatalogueError(
                    f"data/sm_errors.json: {sr_type} check raises unknown {c.get('error')!r}"
                )
    return {"by_name": by_name, "types": doc["types"]}


def sm_releases() -> tuple:
    """Releases with their own SM data, oldest first."""
    rels = _sm_doc()
    return tuple(sorted(rels, key=RELEASE_INDEX.__getitem__))


def _nearest(release: str, have: tuple) -> str:
    if release not in RELEASE_INDEX:
        raise CatalogueError(f"unknown release {release!r} (known: {', '.join(RELEASES)})")
    idx = RELEASE_INDEX[release]
    earlier = [r for r in have if RELEASE_INDEX[r] <= idx]
    return earlier[-1] if earlier else have[0]


def data_release(kind: str, release: str) -> str:
    """The release whose data answers for ``release``: ``kind`` is "templates" or "sm"."""
    if kind == "templates":
        have = template_releases()
    elif kind == "sm":
        have = sm_releases()
    else:
        raise CatalogueError(f"unknown catalogue kind {kind!r}")
    return _nearest(release, have)


def templates(release: str) -> list[dict]:
    """The default templates of a fresh host of ``release`` (fields as in the VM class;
    maps are dicts). ``other_config:mac_seed`` is not included: the caller adds a fresh
    random UUID, as VM.create (up to 7.0) and the JSON loader (7.1 on) do."""
    src = data_release("templates", release)
    data = _templates_of(src)
    return copy.deepcopy(list(data))


def sm_types(release: str) -> list[dict]:
    """The SM records (type, name_label, ..., features, configuration, driver_filename) a
    fresh host of ``release`` registers, ordered by type."""
    src = data_release("sm", release)
    data = _sm_doc()[src]["sm"]
    return copy.deepcopy(data)


def sm_error(name: str) -> tuple[int, str]:
    """(code, text) of an SM error name from XE_SR_ERRORCODES.xml, e.g.
    ``sm_error("ConfigServerMissing") == (102, "The request is missing the server
    parameter")``; on the wire it is ``SR_BACKEND_FAILURE_<code>`` with params
    ``["", text, ""]`` (see data/sm_errors.json ``wire`` for the codes xapi maps to
    other errors)."""
    by_name = _errors_doc()["by_name"]
    try:
        return by_name[name]
    except KeyError:
        raise CatalogueError(f"unknown SM error {name!r}") from None


def sm_config_checks(sr_type: str) -> list[dict]:
    """The device-config checks of ``sr_type`` in load order: ``{key, when, error, code,
    text, source}``; [] for a type without recorded checks."""
    types = _errors_doc()["types"]
    return copy.deepcopy(types.get(sr_type, {}).get("checks", []))
