"""What a CLI record is: its fields, and the shorthands the per-class layouts are written in.

Mirrors xen-api Dundee ``records.ml``: a ``field`` has a getter rendering the value as text,
optional setters, set/map accessors (which make it a set or map field: ``(SRW)``,
``(MRO)``...), and flags (expensive, hidden, deprecated); a ``record`` fetches its object
lazily, once. The layouts themselves are ``vm.py``, ``host.py``, ``pool.py``, ``message.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...datamodel import NULL_REF
from ...errors import Failure
from .. import render as R
from ..errors import MissingParameter
from ..values import safe_bool, safe_i64


@dataclass
class Field:
    """``Records.field``: how one CLI field is read, written and shown."""

    name: str
    get: Callable[[], str]
    set: Callable | None = None
    get_set: Callable | None = None
    add_to_set: Callable | None = None
    remove_from_set: Callable | None = None
    get_map: Callable | None = None
    add_to_map: Callable | None = None
    remove_from_map: Callable | None = None
    set_in_map: Callable | None = None
    expensive: bool = False
    hidden: bool = False
    deprecated: bool = False
    case_insensitive: bool = False

    def key(self) -> str:
        """``Cli_operations.print_field``'s key."""
        if self.get_set is not None:
            return R.field_key(self.name, "set", self.add_to_set is not None, self.deprecated)
        if self.get_map is not None:
            return R.field_key(self.name, "map", self.add_to_map is not None, self.deprecated)
        return R.field_key(self.name, "", self.set is not None, self.deprecated)

    def value(self) -> str:
        """``safe_get_field``: HANDLE_INVALID shows as ``<invalid reference>``."""
        try:
            return self.get()
        except Failure as f:
            if f.code == "HANDLE_INVALID":
                return "<invalid reference>"
            raise

    def printed(self):
        return self.key(), self.value()


class Record:
    """``Records.record``: a lazily fetched object and its CLI fields. ``only`` (a set of
    field names, or None for all) builds just the fields a command prints or filters on --
    the others are never made (``Builder.add``), in the record's own order."""

    def __init__(self, ctx, cls, ref, row=None, only=None):
        self.ctx = ctx
        self.cls = cls
        self.ref = ref
        self._row = row
        self.only = only
        self.fields: list = []

    def row(self):
        if self._row is None:
            self._row = self.ctx.call(f"{self.cls}.get_record", self.ref)
        return self._row

    def field(self, name) -> Field:
        found = [f for f in self.fields if f.name == name]
        if len(found) != 1:
            raise MissingParameter(name)
        return found[0]

    def uuid(self) -> str:
        return self.field("uuid").value()


class Builder:
    """Shorthands for the field definitions of one record: readers rendering a row field,
    writers calling the class's setter, and whole fields of the common shapes."""

    def __init__(self, rec: Record):
        self.rec = rec
        self.ctx = rec.ctx
        self.cls = rec.cls

    def x(self):
        return self.rec.row()

    def wants(self, name) -> bool:
        """Whether the record builds field ``name`` (``Record.only``)."""
        only = self.rec.only
        return only is None or name in only

    def add(self, name, get, **kw):
        if self.wants(name):
            self.rec.fields.append(Field(name, get, **kw))

    # the shapes below check ``wants`` before making their closures
    def str_rw(self, name, f):
        """A string field set by ``set_<f>``."""
        if self.wants(name):
            self.add(name, self.s(f), set=self.setter(f"set_{f}"))

    def int_rw(self, name, f):
        """An integer field set by ``set_<f>`` (``safe_i64``)."""
        if self.wants(name):
            self.add(name, self.i(f), set=self.setter(f"set_{f}", lambda v: safe_i64(name, v)))

    def bool_rw(self, name, f):
        """A boolean field set by ``set_<f>`` (``safe_bool``)."""
        if self.wants(name):
            self.add(name, self.b(f), set=self.setter(f"set_{f}", lambda v: safe_bool(name, v)))

    def ref_rw(self, name, f, target_cls):
        """A reference shown as the target's uuid, set by uuid (empty: NULL) by ``set_<f>``."""
        if self.wants(name):
            self.add(name, self.r(f), set=self.ref_setter(f"set_{f}", target_cls))

    def add_set(self, name, members: Callable[[], list], sep="; ", **kw):
        """A set field shown as its members joined by ``sep``."""
        if self.wants(name):
            self.add(name, lambda: sep.join(members()), get_set=members, **kw)

    def add_map(self, name, f, writable=False, **kw):
        """A map field ``f`` (``k: v; k2: v2``); ``writable``: the class's add_to/remove_from."""
        if self.wants(name):
            ops = self.map_ops(f) if writable else {"get_map": self.mget(f)}
            self.add(name, self.m(f), **{**ops, **kw})

    # value readers
    def s(self, f, default=""):
        return lambda: str(self.x().get(f, default))

    def i(self, f):
        return lambda: R.int_str(self.x().get(f, 0))

    def b(self, f):
        return lambda: R.bool_str(self.x().get(f, False))

    def fl(self, f):
        return lambda: R.float_str(self.x().get(f, 0.0))

    def m(self, f):
        return lambda: R.map_str(self.x().get(f, {}))

    def mget(self, f):
        return lambda: list(self.x().get(f, {}).items())

    def r(self, f):
        return lambda: self.ctx.uuid_of(self.x().get(f, NULL_REF))

    def rs(self, f, sep="; "):
        return lambda: sep.join(self.ctx.uuid_of(r) for r in self.x().get(f, []))

    def blobs(self, f):
        return lambda: R.map_str({k: self.ctx.uuid_of(v) for k, v in self.x().get(f, {}).items()})

    def strs(self, f, sep="; "):
        return lambda: sep.join(str(v) for v in self.x().get(f, []))

    def listed(self, f, conv=str):
        """The members of set field ``f`` -- or the values of map field ``f``, as for
        ``current_operations`` -- each through ``conv``."""

        def get():
            v = self.x().get(f, [])
            return [conv(m) for m in (v.values() if isinstance(v, dict) else v)]

        return get

    def linked(self, cls, ref_field):
        """A lazily fetched, cached record of the object ``ref_field`` points to (``xm ()`` /
        ``xgm ()`` in records.ml), or None if it cannot be read ("with _ -> None")."""
        cache: list[dict[str, Any] | None] = []

        def get():
            if not cache:
                try:
                    cache.append(self.ctx.call(f"{cls}.get_record", self.x()[ref_field]))
                except Exception:  # noqa: BLE001
                    cache.append(None)
            return cache[0]

        return get

    @staticmethod
    def of_linked(linked, f, render, default=R.NID):
        """Field ``f`` of a linked record, rendered; ``default`` if it cannot be read
        (``default nid (may f (xm ()))``)."""

        def get():
            rec = linked()
            return default if rec is None else render(rec.get(f))

        return get

    # writers
    def setter(self, msg, conv=lambda v: v):
        ref = self.rec.ref
        return lambda v: self.ctx.call(f"{self.cls}.{msg}", ref, conv(v))

    def map_ops(self, f):
        ref = self.rec.ref
        return dict(
            add_to_map=lambda k, v: self.ctx.call(f"{self.cls}.add_to_{f}", ref, k, v),
            remove_from_map=lambda k: self.ctx.call(f"{self.cls}.remove_from_{f}", ref, k),
            get_map=self.mget(f),
        )

    def add_tags(self):
        """The ``tags`` set field (shown comma-separated), edited by add_tags/remove_tags."""
        if not self.wants("tags"):
            return
        ref = self.rec.ref
        self.add(
            "tags",
            self.strs("tags", ", "),
            get_set=lambda: list(self.x().get("tags", [])),
            add_to_set=lambda t: self.ctx.call(f"{self.cls}.add_tags", ref, t),
            remove_from_set=lambda t: self.ctx.call(f"{self.cls}.remove_tags", ref, t),
        )

    def ref_setter(self, msg, target_cls):
        ref = self.rec.ref

        def set_(v):
            target = NULL_REF if v == "" else self.ctx.call(f"{target_cls}.get_by_uuid", v)
            self.ctx.call(f"{self.cls}.{msg}", ref, target)

        return set_
