"""The XAPI datamodel as the server sees it: classes, fields, messages, per release.

Loaded once from the committed ``data/datamodel.json`` (derived from xen-api's
``doc/data/xenapi.json`` by ``scripts/derive_datamodel.py``). Like XAPI, which generates its
server from the IDL (``ocaml/idl/datamodel*.ml``), everything generic -- getters, setters,
records, defaults, parameter checking -- is driven from here; only behaviour is hand-written.

``Schema(release)`` is the API as one release served it: fields, messages and classes whose
lifecycle had not started by that release are absent, and messages removed by then answer
``MESSAGE_REMOVED``.
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources

import attrs

NULL_REF = "OpaqueRef:NULL"
EPOCH = "19700101T00:00:00Z"


class Timestamp(str):
    """A datetime value in XAPI's wire form ``YYYYMMDDTHH:MM:SSZ`` (a str, typed for codecs)."""

    __slots__ = ()


EPOCH_TS = Timestamp(EPOCH)


# --- type expressions ------------------------------------------------------------------


@attrs.frozen
class Type:
    """A parsed datamodel type: kind is one of string/int/float/bool/datetime/ref/enum/set/map/
    record/void."""

    kind: str
    name: str = ""  # class of a ref/record, name of an enum
    elem: Type | None = None  # set element, map value
    key: Type | None = None  # map key


_SIMPLE = {"string", "int", "float", "bool", "datetime", "void"}


@functools.cache
def parse_type(text: str) -> Type:
    """Parse a datamodel type expression such as ``(string -> VM ref set) map``."""
    t = text.strip()
    if t in _SIMPLE:
        return Type(t)
    if t.endswith(" map") and t.startswith("("):
        inner = t[1 : -len(" map")].strip()
        assert inner.endswith(")"), text
        inner = inner[:-1]
        depth = 0
        for i, ch in enumerate(inner):
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            elif inner.startswith(" -> ", i) and depth == 0:
                return Type("map", key=parse_type(inner[:i]), elem=parse_type(inner[i + 4 :]))
        raise ValueError(f"bad map type {text!r}")
    if t.endswith(" set"):
        return Type("set", elem=parse_type(t[:-4]))
    if t.endswith(" ref"):
        return Type("ref", name=t[:-4])
    if t.endswith(" record"):
        return Type("record", name=t[:-7])
    if t.startswith("enum "):
        return Type("enum", name=t[5:])
    return Type("opaque", name=t)  # e.g. "an event batch": hand-written messages only


def empty_value(ty: Type):
    """The typed empty value XAPI gives a field without a datamodel default."""
    k = ty.kind
    if k == "string":
        return ""
    if k == "int":
        return 0
    if k == "float":
        return 0.0
    if k == "bool":
        return False
    if k == "datetime":
        return EPOCH_TS
    if k == "ref":
        return NULL_REF
    if k == "set":
        return []
    if k == "map":
        return {}
    if k == "enum":
        return ENUMS[ty.name][0]
    return ""


_MAP_DEFAULT = re.compile(r'"([^"]*)"\s*->\s*"([^"]*)"')


def default_value(ty: Type, text: str | None):
    """Convert a datamodel default (OCaml-ish literal) into a Python value."""
    if text is None:
        return empty_value(ty)
    k = ty.kind
    if k == "string":
        return text[1:-1] if text.startswith('"') else text
    if k == "int":
        return int(text)
    if k == "float":
        return float(text.rstrip(".") or 0) if text.endswith(".") else float(text)
    if k == "bool":
        return text == "true"
    if k == "datetime":
        return Timestamp(text)
    if k == "ref":
        return NULL_REF if text in ("Null", "None") else text
    if k == "set":
        return []
    if k == "map":
        return dict(_MAP_DEFAULT.findall(text))
    if k == "enum":
        return text
    return text


# --- schema ----------------------------------------------------------------------------


@attrs.frozen
class Field:
    """One datamodel field: wire name, type, qualifier (RW, RO/constructor, RO/runtime)."""

    name: str
    type: Type
    qualifier: str
    default: object
    has_default: bool = False

    @property
    def rw(self) -> bool:
        return self.qualifier == "RW"


@attrs.frozen
class Param:
    name: str
    type: Type


@attrs.frozen
class Message:
    """One wire message ``Class.name``; params exclude nothing (the session is params[0])."""

    cls: str
    name: str
    params: tuple
    result: Type
    implicit: bool
    removed: bool
    deprecated: bool
    errors: tuple

    @property
    def wire_name(self) -> str:
        return f"{self.cls}.{self.name}"

    @property
    def takes_session(self) -> bool:
        return bool(self.params) and self.params[0].type == Type("ref", "session")


@attrs.frozen
class ClassSchema:
    name: str
    fields: dict  # wire name -> Field, in datamodel order
    messages: dict  # name -> Message

    def defaults(self) -> dict:
        """A fresh record of every field at its default.

        Default containers are shared between rows: rows are copy-on-write and no code
        mutates a container held by a row (store.py), so sharing is safe and makes bulk
        creation cheap."""
        t = _TEMPLATES.get(id(self))
        if t is None:
            t = _TEMPLATES[id(self)] = {f.name: f.default for f in self.fields.values()}
        return dict(t)


_TEMPLATES: dict = {}


def _load():
    with resources.files("xapi_sim").joinpath("data/datamodel.json").open("rb") as fh:
        return json.load(fh)


_RAW = _load()
RELEASES: list = _RAW["releases"]
RELEASE_INDEX = {r: i for i, r in enumerate(RELEASES)}
ENUMS: dict = _RAW["enums"]
ENUMS_LOWER = {name: {v.lower(): v for v in vals} for name, vals in ENUMS.items()}
ALL_CLASSES = list(_RAW["classes"])

# Classes whose get_all / get_all_records are exposed (ocaml/idl/datamodel.ml
# expose_get_all_messages_for); others have no get_all* on the wire.
NO_GET_ALL = {
    "session",
    "event",
    "user",
    "data_source",
    "vdi_nbd_server_info",
    "auth",
    "sr_stat",
    "probe_result",
    "LVHD",
}
# Classes without events (gen_events=false) -- xapi_event.ml never reports them.
NO_EVENTS = {
    "session",
    "user",
    "event",
    "data_source",
    "sr_stat",
    "probe_result",
    "vdi_nbd_server_info",
    "auth",
    "secret",
    "role",
}
# Messages of these classes never get an Async. form (no_async_messages_for).
NO_ASYNC_CLASSES = {"session", "event", "task", "data_source", "blob"}
# Custom messages declared ``~flags:[`Session]`` (no async mode); xenapi.json lacks the flag,
# so scripts/derive_no_async.py reads it from xen-api's ocaml/idl/datamodel*.ml.
with resources.files("xapi_sim").joinpath("data/no_async.json").open("rb") as _fh:
    NO_ASYNC: dict = {cls: frozenset(names) for cls, names in json.load(_fh).items()}


# Qualifiers that changed after the releases we emulate: xenapi.json has HEAD's.
# VM.last_boot_CPU_flags was DynamicRO until 2019 (07b0fd4d50, quebec); levelling spec §1.3.
_QUALIFIER_BEFORE = {
    ("VM", "last_boot_CPU_flags"): {r: "RO/runtime" for r in RELEASES[: RELEASES.index("quebec")]},
}


def _available(since, removed, release_idx):
    if since is None or RELEASE_INDEX.get(since, 10**6) > release_idx:
        return False
    return True


class Schema:
    """The API of one release: ``Schema.for_release('dundee')``."""

    def __init__(self, release: str):
        self.release = release
        idx = RELEASE_INDEX[release]
        self.classes: dict[str, ClassSchema] = {}
        for cname, c in _RAW["classes"].items():
            if not _available(c["since"], c["removed"], idx):
                continue
            fields = {}
            for name, ty, qual, default, since, removed in c["fields"]:
                if not _available(since, removed, idx) or (
                    removed and RELEASE_INDEX[removed] <= idx
                ):
                    continue
                t = parse_type(ty)
                qual = _QUALIFIER_BEFORE.get((cname, name), {}).get(release, qual)
                fields[name] = Field(name, t, qual, default_value(t, default), default is not None)
            messages = {}
            for name, params, result, implicit, since, dep, removed, errors in c["messages"]:
                if not _available(since, removed, idx):
                    continue
                gone = bool(removed and RELEASE_INDEX[removed] <= idx)
                if implicit and gone:
                    continue
                messages[name] = Message(
                    cname,
                    name,
                    tuple(Param(p, parse_type(t)) for p, t in params),
                    parse_type(result),
                    implicit,
                    gone,
                    bool(dep and RELEASE_INDEX[dep] <= idx),
                    tuple(errors),
                )
            # get_all_records_where / get_all_where are generated but absent from xenapi.json.
            if "get_all_records" in messages:
                s = Param("session_id", Type("ref", "session"))
                e = Param("expr", Type("string"))
                messages["get_all_records_where"] = Message(
                    cname,
                    "get_all_records_where",
                    (s, e),
                    messages["get_all_records"].result,
                    True,
                    False,
                    False,
                    (),
                )
                messages["get_all_where"] = Message(
                    cname,
                    "get_all_where",
                    (s, e),
                    Type("set", elem=Type("ref", cname)),
                    True,
                    False,
                    False,
                    (),
                )
            self.classes[cname] = ClassSchema(cname, fields, messages)
        self.lower_names = {c.lower(): c for c in self.classes}

    @classmethod
    @functools.cache
    def for_release(cls, release: str) -> Schema:
        return cls(release)

    def message(self, wire_name: str) -> Message | None:
        """Find ``Class.msg`` (or the alternative spelling ``Class_msg``)."""
        cname, dot, mname = wire_name.partition(".")
        if dot:
            c = self.classes.get(cname)
            return c.messages.get(mname) if c else None
        # Class_msg: class names may themselves contain underscores (VM_metrics).
        parts = wire_name.split("_")
        for i in range(len(parts) - 1, 0, -1):
            c = self.classes.get("_".join(parts[:i]))
            if c:
                m = c.messages.get("_".join(parts[i:]))
                if m:
                    return m
        return None


# -- fields the row builders set that some releases lack (data/release_fields.json) ----------

with resources.files("xapi_sim").joinpath("data/release_fields.json").open("rb") as _fh:
    RELEASE_FIELDS: frozenset = frozenset(json.load(_fh)["fields"])


def field_lifecycle(cls: str, name: str) -> tuple | None:
    """(since, removed) of a field in any release, or None if the datamodel never had it."""
    c = _RAW["classes"].get(cls)
    if c is None:
        return None
    for fname, _ty, _qual, _default, since, removed in c["fields"]:
        if fname == name:
            return since, removed
    return None


def absent_in_release(cls: str, name: str, release: str) -> bool:
    """True when ``cls.name`` is listed in ``data/release_fields.json`` (a field the row
    builders set where it exists) and ``release`` does not have it; any other unknown
    field is a bug the caller refuses."""
    if f"{cls}.{name}" not in RELEASE_FIELDS:
        return False
    life = field_lifecycle(cls, name)
    if life is None:
        return False
    since, removed = life
    idx = RELEASE_INDEX[release]
    return not _available(since, removed, idx) or bool(removed and RELEASE_INDEX[removed] <= idx)
