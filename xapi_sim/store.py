"""The database of one pool: rows, indexes, relations, generations, change order, and the
transactions every write goes through.

Mirrors xen-api ``ocaml/database/db_cache_types.ml``: one generation counter bumped by every
write; each row remembers when it was created and last modified; deletions are kept in a
bounded list ("not guaranteed to remember all events"); both ends of every one-to-many
relation of ``all_relations`` (``ocaml/idl/datamodel.ml``; ``data/relations.json``) are kept
in step (``update_one_to_many``), so setting ``VBD.VM`` is also a change of the VM's
``VBDs``.

Every write is part of a transaction (``transactions.py``): a failed call changes nothing,
and events and the journal see committed transactions only.

Rows are copy-on-write: a write replaces the row dict (and never mutates a container held
by a row, except a relation's member list the store owns), so a reader may take a row
reference and encode it afterwards. Only this module mutates rows.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

from .datamodel import NULL_REF, Schema
from .errors import Failure, handle_invalid
from .transactions import (
    ORDER_WAIT,
    Change,
    LockOrderConflict,
    Row,
    Transactions,
    Txn,
    _DbCond,
    _DbLock,
    _DbTxn,
)

# The transaction names are re-exported: callers take them from here with the database.
__all__ = [
    "DELETED_KEEP",
    "RELATIONS",
    "Database",
    "ORDER_WAIT",
    "Change",
    "LockOrderConflict",
    "Row",
    "Transactions",
    "Txn",
]

log = logging.getLogger(__name__)

DELETED_KEEP = 100_000


def _load_relations() -> list[tuple[str, str, str, str]]:
    """(one-side class, set field, many-side class, ref field) from ``data/relations.json``."""
    try:
        text = resources.files("xapi_sim").joinpath("data/relations.json").read_text()
    except FileNotFoundError:
        return []
    data = json.loads(text)
    items = data["relations"] if isinstance(data, dict) else data
    return [(r["one"], r["set_field"], r["many"], r["ref_field"]) for r in items]


# The seven relations every release has, kept whatever relations.json says.
_CORE_RELATIONS = [
    ("host", "resident_VMs", "VM", "resident_on"),
    ("host", "host_CPUs", "host_cpu", "host"),
    ("host", "PIFs", "PIF", "host"),
    ("network", "PIFs", "PIF", "network"),
    ("task", "subtasks", "task", "subtask_of"),
    ("VM", "snapshots", "VM", "snapshot_of"),
    ("VM", "children", "VM", "parent"),
]
RELATIONS = list(dict.fromkeys(_CORE_RELATIONS + _load_relations()))

_db_order = itertools.count(1)


class Database:
    """One pool's database. Thread-safe; every write is part of a transaction."""

    def __init__(self, schema: Schema, txm: Transactions | None = None):
        self.schema = schema
        self.txm = txm if txm is not None else Transactions()
        self.order = next(_db_order)
        self._mutex = threading.Lock()
        self.lock = _DbLock(self)
        self.cond = _DbCond(self)
        self.gen = 0
        self.tables: dict[str, dict[str, Row]] = {c: {} for c in schema.classes}
        self.uuids: dict[str, dict[str, str]] = {c: {} for c in schema.classes}
        self.labels: dict[str, dict[str, set[str]]] = {c: {} for c in schema.classes}
        self.changed: dict[str, dict[str, int]] = {c: {} for c in schema.classes}
        self.created: dict[str, dict[str, int]] = {c: {} for c in schema.classes}
        # (generation, class, ref, generation the row was created at)
        self.deleted: collections.deque[tuple[int, str, str, int]] = collections.deque(
            maxlen=DELETED_KEEP
        )
        self._rel_many: dict[tuple[str, str], tuple[str, str]] = {}
        self._rel_one: dict[tuple[str, str], tuple[str, str]] = {}
        self._set_relations()
        self._owned: dict[tuple[str, str, str], tuple[list[str], set[str]]] = {}
        # long-polls wait on this; a commit sets it and puts a fresh one in place, so waking
        # waiters do not queue on the database lock (event.from)
        self._changed: threading.Event | None = None  # see changed_event
        # called with the database by the thread that committed a change to it, after the
        # commit, locks released: parked long-polls are answered there, with no thread
        # woken for them (classes/event.py ``Pump``)
        self.after_publish: list[Callable[[], None]] = []
        self.parked = 0  # long-polls waiting on this database (classes/event.py Pump)
        # class -> generation of its last published change: a snapshot of a class's rows
        # taken under the lock is the same for as long as this is (shared bulk reads)
        self.class_gen: dict[str, int] = {}
        self.snapshots: dict[str, tuple[int, Any]] = {}  # class -> (class_gen, weakref)

    def __hash__(self) -> int:
        return self.order

    def __eq__(self, other: object) -> bool:
        return self is other

    def _set_relations(self) -> None:
        classes = self.schema.classes
        for one, sfield, many, rfield in RELATIONS:
            if (
                one in classes
                and many in classes
                and sfield in classes[one].fields
                and rfield in classes[many].fields
            ):
                self._rel_many[(many, rfield)] = (one, sfield)
                self._rel_one[(one, sfield)] = (many, rfield)
        self._set_fields: dict[str, list[str]] = {}
        for one, sfield in self._rel_one:
            self._set_fields.setdefault(one, []).append(sfield)

    def relations(self) -> list[tuple[str, str, str, str]]:
        """The relations this database keeps: (one cls, set field, many cls, ref field)."""
        return [(one, sf, many, rf) for (many, rf), (one, sf) in self._rel_many.items()]

    def transaction(self) -> _DbLock:
        """``with db.transaction():`` -- the same as ``with db.lock:``."""
        return self.lock

    @property
    def changed_event(self) -> threading.Event:
        """Set by the next commit that changes this database: a waiter takes it *before*
        looking at the generation, so a change in between is never missed. Made on first
        demand -- most commits have nobody waiting, and a building world commits hundreds
        of thousands of times -- and taken by the commit that sets it (both single dict
        operations: a waiter gets either the event the next commit sets or a fresh one after
        a commit it will see in the generation)."""
        ev: threading.Event | None = self.__dict__.get("_changed")
        if ev is None:
            ev = self.__dict__.setdefault("_changed", threading.Event())
        assert ev is not None
        return ev

    @contextmanager
    def reading(self) -> Iterator[None]:
        """A consistent, committed view for a multi-row read (an event batch): the lock is
        held for the block only, not joined to the thread's transaction. A transaction
        that already holds the lock reads its own writes."""
        txn = self.txm.current()
        local = self.txm._local
        reading = getattr(local, "reading", None)
        if reading is None:
            reading = local.reading = set()
        if (txn is not None and txn.holds(self)) or self in reading:
            yield
            return
        if txn is not None and any(d.order > self.order for d in txn.states):
            if not self._mutex.acquire(timeout=ORDER_WAIT):
                raise LockOrderConflict(self, txn.states)
        else:
            self._mutex.acquire()
        reading.add(self)
        try:
            yield
        finally:
            reading.discard(self)
            self._mutex.release()

    # -- reading -------------------------------------------------------------------------
    def get(self, cls: str, ref: str) -> Row:
        """The row of ``ref`` or HANDLE_INVALID [cls, ref]."""
        row = self.tables[cls].get(ref)
        if row is None:
            raise handle_invalid(cls, ref)
        return row

    def exists(self, cls: str, ref: str) -> bool:
        return ref in self.tables.get(cls, ())

    def field(self, cls: str, ref: str, name: str) -> Any:
        return self.get(cls, ref)[name]

    def by_uuid(self, cls: str, uuid: str) -> str:
        ref = self.uuids[cls].get(uuid)
        if ref is None:
            raise Failure("UUID_INVALID", cls, uuid)
        return ref

    def by_label(self, cls: str, label: str) -> list[str]:
        return list(self.labels[cls].get(label, ()))

    def refs(self, cls: str) -> list[str]:
        return list(self.tables[cls])

    def rows(self, cls: str) -> list[tuple[str, Row]]:
        """[(ref, row)] snapshot, cheap thanks to copy-on-write rows."""
        return list(self.tables[cls].items())

    def count(self, cls: str) -> int:
        return len(self.tables[cls])

    # -- validation ----------------------------------------------------------------------
    def _check_fields(self, cls: str, names: Iterable[str]) -> None:
        fields = self.schema.classes[cls].fields
        unknown = [n for n in names if n not in fields]
        if unknown:
            log.error("refused unknown field(s) %s of %s", unknown, cls, stack_info=True)
            raise Failure(
                "INTERNAL_ERROR",
                f"unknown field(s) {', '.join(sorted(unknown))} of class {cls} "
                f"in release {self.schema.release}",
            )

    # -- writing (inside the thread's transaction) ----------------------------------------
    def _remember(self, st: _DbTxn, cls: str, ref: str) -> None:
        key = (cls, ref)
        if key not in st.before:
            st.before[key] = self.tables[cls].get(ref)

    def _index(self, cls: str, ref: str, row: Row | None, add: bool) -> None:
        if row is None:
            return
        uuid = row.get("uuid")
        if uuid:
            if add:
                self.uuids[cls][uuid] = ref
            elif self.uuids[cls].get(uuid) == ref:
                del self.uuids[cls][uuid]
        if "name_label" in row:
            labels = self.labels[cls]
            if add:
                labels.setdefault(row["name_label"], set()).add(ref)
            else:
                s = labels.get(row["name_label"])
                if s is not None:
                    s.discard(ref)
                    if not s:
                        del labels[row["name_label"]]

    def add(self, cls: str, ref: str, row: Row) -> str:
        """Insert a complete row (``row`` must hold every field of the class, no other)."""
        with self.lock as txn:
            st = txn.acquire(self)
            if ref in self.tables[cls]:
                raise Failure("INTERNAL_ERROR", f"duplicate ref {ref}")
            missing = self.schema.classes[cls].fields.keys() - row.keys()
            if missing:
                raise Failure("INTERNAL_ERROR", f"row of {cls} lacks {sorted(missing)}")
            self._check_fields(cls, row)
            self._remember(st, cls, ref)
            set_fields = self._set_fields.get(cls)
            if set_fields and any(row[f] for f in set_fields):
                # the store keeps these: they fill as rows pointing here are added
                row = {**row, **{f: [] for f in set_fields}}
            self.tables[cls][ref] = row
            self._index(cls, ref, row, True)
            st.touches.append((cls, ref, "add"))
            for (many, rfield), (one, sfield) in self._rel_many.items():
                if many == cls and row.get(rfield, NULL_REF) != NULL_REF:
                    self._link(st, one, row[rfield], sfield, ref, True)
        return ref

    def carry(self, cls: str, ref: str, row: Row, **changes: Any) -> str:
        """Insert a row that comes from another database (pool join, cross-pool landing, VM
        import): the class's defaults in this release, the fields of ``row`` the release has
        (others dropped: the other side may run another release), then ``changes``.
        Relation lists start empty and fill as the rows pointing here arrive; references to
        rows this database lacks are for ``changes`` to clear."""
        new = self.schema.classes[cls].defaults()
        new.update({k: v for k, v in row.items() if k in new})
        new.update(changes)
        return self.add(cls, ref, new)

    def _link(self, st: _DbTxn, cls: str, ref: str, sfield: str, member: str, add: bool) -> None:
        """Keep the one-to-many side (``host.resident_VMs``) in step, in O(1).

        The relation's list is owned by the store and grown in place (with a membership
        set beside it), so a host with thousands of residents costs no list or row copies.
        This is the one exception to copy-on-write: a reader holding an older row may see
        the newer membership, never a broken list. Any other write of the field replaces
        the list, and ownership is taken again on the next link."""
        row = self.tables[cls].get(ref)
        if row is None:
            return
        self._remember(st, cls, ref)
        key = (cls, ref, sfield)
        owned = self._owned.get(key)
        if owned is None or owned[0] is not row[sfield]:
            lst = list(row[sfield])
            owned = self._owned[key] = (lst, set(lst))
            row = dict(row)
            row[sfield] = lst
            self.tables[cls][ref] = row
        lst, members = owned
        if add:
            if member in members:
                return
            lst.append(member)
            members.add(member)
            pos = -1
        else:
            if member not in members:
                return
            pos = lst.index(member)
            del lst[pos]
            members.discard(member)
        st.links.append((cls, ref, sfield, member, pos))
        st.touches.append((cls, ref, "mod"))

    def update(self, cls: str, ref: str, **changes: Any) -> Row:
        """Set several fields of one row in one change; returns the new row."""
        with self.lock as txn:
            st = txn.acquire(self)
            old = self.get(cls, ref)
            self._check_fields(cls, changes)
            for name in self._set_fields.get(cls, ()):
                if name in changes and sorted(changes[name]) != sorted(old[name]):
                    raise Failure(
                        "INTERNAL_ERROR",
                        f"{cls}.{name} is kept by the store "
                        f"(set {self._rel_one[(cls, name)][0]}."
                        f"{self._rel_one[(cls, name)][1]} instead)",
                    )
            self._remember(st, cls, ref)
            row = dict(old)
            row.update(changes)
            self.tables[cls][ref] = row
            if "name_label" in changes and old.get("name_label") != row["name_label"]:
                self._index(cls, ref, {"name_label": old["name_label"]}, False)
                self._index(cls, ref, {"name_label": row["name_label"]}, True)
            if "uuid" in changes and old.get("uuid") != row["uuid"]:  # Db.*.set_uuid
                self._index(cls, ref, {"uuid": old["uuid"]}, False)
                self._index(cls, ref, {"uuid": row["uuid"]}, True)
            st.touches.append((cls, ref, "mod"))
            for name in changes:
                rel = self._rel_many.get((cls, name))
                if rel and old[name] != row[name]:
                    self._link(st, rel[0], old[name], rel[1], ref, False)
                    self._link(st, rel[0], row[name], rel[1], ref, True)
            return row

    def set(self, cls: str, ref: str, name: str, value: Any) -> Row:
        return self.update(cls, ref, **{name: value})

    def remove(self, cls: str, ref: str) -> Row:
        with self.lock as txn:
            st = txn.acquire(self)
            row = self.get(cls, ref)
            self._remember(st, cls, ref)
            del self.tables[cls][ref]
            for one, sfield in self._rel_one:
                if one == cls:
                    owned = self._owned.pop((cls, ref, sfield), None)
                    if owned is not None:
                        st.dropped.append(((cls, ref, sfield), owned))
            self._index(cls, ref, row, False)
            st.touches.append((cls, ref, "del"))
            for (many, rfield), (one, sfield) in self._rel_many.items():
                if many == cls:
                    self._link(st, one, row.get(rfield, NULL_REF), sfield, ref, False)
            return row

    def bump(self, cls: str, ref: str) -> None:
        """Record an artificial modification (event.inject)."""
        with self.lock as txn:
            st = txn.acquire(self)
            self.get(cls, ref)
            st.touches.append((cls, ref, "mod"))

    def upgrade_schema(self, schema: Schema) -> None:
        """Move the database to a newer release's schema (the upgraded master's xapi):
        new tables appear, rows gain the new fields at their defaults."""
        with self.lock as txn:
            st = txn.acquire(self)
            for cname in schema.classes:
                for d in (self.tables, self.uuids, self.labels, self.changed, self.created):
                    d.setdefault(cname, {})
            old_schema = self.schema
            self.schema = schema
            txn.on_rollback.append(lambda: setattr(self, "schema", old_schema))
            for cname, c in schema.classes.items():
                defaults = c.defaults()
                for ref, row in list(self.tables[cname].items()):
                    missing = {k: v for k, v in defaults.items() if k not in row}
                    if missing:
                        self._remember(st, cname, ref)
                        new = dict(row)
                        for k, v in missing.items():
                            new[k] = v.copy() if isinstance(v, (list, dict)) else v
                        self.tables[cname][ref] = new
                        st.touches.append((cname, ref, "mod"))
            self._set_relations()

    # -- commit and rollback (called by Txn with the lock held) --------------------------
    def _publish(self, st: _DbTxn) -> None:
        class_gen = self.class_gen
        for cls, ref, op in st.touches:
            self.gen += 1
            class_gen[cls] = self.gen
            ch = self.changed[cls]
            ch.pop(ref, None)
            if op == "del":
                # remember when the row was born: xapi_event.ml collect_events drops the
                # deletion of an object created after the token (created <= last_generation)
                self.deleted.append((self.gen, cls, ref, self.created[cls].pop(ref, 0)))
            else:
                ch[ref] = self.gen
                if op == "add":
                    self.created[cls][ref] = self.gen
        ev = self.__dict__.pop("_changed", None)
        if ev is not None:
            ev.set()

    def _undo(self, st: _DbTxn) -> None:
        # a row removed in the transaction gave up its set lists: take them back first, so
        # that the links made before its removal are undone in the lists its restored row
        # (remembered before them) shares
        for key, owned in st.dropped:
            self._owned.setdefault(key, owned)
        for cls, ref, sfield, member, pos in reversed(st.links):
            owned = self._owned.get((cls, ref, sfield))
            if owned is None:
                continue
            lst, members = owned
            if pos < 0 and member in members:  # undo an append
                lst.remove(member)
                members.discard(member)
            elif pos >= 0 and member not in members:  # undo a removal, in place
                lst.insert(pos, member)
                members.add(member)
        for (cls, ref), old in st.before.items():
            table = self.tables.setdefault(cls, {})
            self._index(cls, ref, table.get(ref), False)
            if old is None:
                table.pop(ref, None)
            else:
                table[ref] = old
                self._index(cls, ref, old, True)
            for one, sfield in self._rel_one:
                if one == cls:
                    owned = self._owned.get((cls, ref, sfield))
                    if owned is not None and (old is None or owned[0] is not old[sfield]):
                        del self._owned[(cls, ref, sfield)]

    # -- events --------------------------------------------------------------------------
    def changes_since(
        self,
        gen: int,
        classes: Iterable[str] | None = None,
    ) -> list[tuple[int, str, str, str]]:
        """[(gen, cls, ref, op)] of rows changed after ``gen``; one entry per object.

        Mirrors xapi_event.ml ``collect_events``: rows created after the token are ``add``
        (at their creation generation), otherwise ``mod``; deleted rows are ``del`` (unless
        created and deleted since). Cost is proportional to the number of changes, not to
        the table sizes. Only committed changes are seen.
        """
        out = []
        with self.reading():
            for cls in classes if classes is not None else self.tables:
                ch = self.changed.get(cls)
                if not ch:
                    continue
                created = self.created[cls]
                for ref in reversed(ch):
                    g = ch[ref]
                    if g <= gen:
                        break
                    born = created.get(ref, 0)
                    if born > gen:
                        out.append((born, cls, ref, "add"))
                    else:
                        out.append((g, cls, ref, "mod"))
            # every row is born at a generation >= 1: from 0 no deletion can qualify
            for g, cls, ref, born in reversed(self.deleted) if gen > 0 else ():
                if g <= gen:
                    break
                if born <= gen and (classes is None or cls in classes):
                    out.append((g, cls, ref, "del"))
        out.sort()
        return out

    def valid_ref_counts(self) -> dict[str, int]:
        return {c.lower(): len(t) for c, t in self.tables.items()}

    def check_relations(self) -> list[str]:
        """Every broken relation, as text (empty when the database is consistent): each
        set field holds exactly the rows whose ref field points at its owner."""
        problems = []
        for one, sfield, many, rfield in self.relations():
            want: dict[str, list[str]] = {}
            for ref, row in self.tables[many].items():
                target = row[rfield]
                if target != NULL_REF and target in self.tables[one]:
                    want.setdefault(target, []).append(ref)
            for ref, row in self.tables[one].items():
                have = row[sfield]
                if sorted(have) != sorted(want.get(ref, [])):
                    problems.append(
                        f"{one}.{sfield} of {ref}: {sorted(have)} != {sorted(want.get(ref, []))}"
                    )
        return problems

    def rebuild_relations(self) -> None:
        """Recompute every set field of a relation from its ref fields (after a load)."""
        with self.lock as txn:
            st = txn.acquire(self)
            want: dict[tuple[str, str, str], list[str]] = {}
            for one, sfield, many, rfield in self.relations():
                for ref, row in self.tables[many].items():
                    target = row[rfield]
                    if target != NULL_REF and target in self.tables[one]:
                        want.setdefault((one, target, sfield), []).append(ref)
            for one, sfield, _many, _rfield in self.relations():
                for ref, row in list(self.tables[one].items()):
                    members = want.get((one, ref, sfield), [])
                    if sorted(row[sfield]) != sorted(members):
                        self._remember(st, one, ref)
                        self.tables[one][ref] = {**row, sfield: members}
                        st.touches.append((one, ref, "mod"))
