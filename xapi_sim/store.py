"""The database of one pool: rows, indexes, relations, generations and change order.

Mirrors xen-api ``ocaml/database/db_cache_types.ml``: one generation counter bumped by every
write; each row remembers when it was created and last modified; deletions are kept in a
bounded list ("not guaranteed to remember all events"); both ends of a one-to-many relation
are kept in step (``update_one_to_many``), so setting ``VM.resident_on`` is also a change of
the two hosts' ``resident_VMs``.

Rows are copy-on-write: a write replaces the row dict (and never mutates a container held
by a row), so a reader may take a row reference under the lock and encode it afterwards.
Only this module mutates rows.
"""
from __future__ import annotations

import collections
import threading

from .datamodel import NULL_REF, Schema
from .errors import Failure, handle_invalid

# (one-side class, set field) <-> (many-side class, ref field): ocaml/idl/datamodel.ml all_relations
RELATIONS = [
    ("host", "resident_VMs", "VM", "resident_on"),
    ("host", "host_CPUs", "host_cpu", "host"),
    ("host", "PIFs", "PIF", "host"),
    ("network", "PIFs", "PIF", "network"),
    ("task", "subtasks", "task", "subtask_of"),
    ("VM", "snapshots", "VM", "snapshot_of"),
    ("VM", "children", "VM", "parent"),
]

DELETED_KEEP = 100_000


class Database:
    """One pool's database. All methods are thread-safe; ``cond`` wakes event waiters."""

    def __init__(self, schema: Schema):
        self.schema = schema
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.gen = 0
        self.tables: dict[str, dict] = {c: {} for c in schema.classes}
        self.uuids: dict[str, dict] = {c: {} for c in schema.classes}
        self.labels: dict[str, dict] = {c: {} for c in schema.classes}
        self.changed: dict[str, dict] = {c: {} for c in schema.classes}  # ref -> gen, oldest first
        self.created: dict[str, dict] = {c: {} for c in schema.classes}
        self.deleted: collections.deque = collections.deque(maxlen=DELETED_KEEP)
        self._rel_many = {}   # (many cls, ref field) -> (one cls, set field)
        self._rel_one = {}    # (one cls, set field) -> (many cls, ref field)
        for one, sfield, many, rfield in RELATIONS:
            if one in schema.classes and many in schema.classes:
                self._rel_many[(many, rfield)] = (one, sfield)
                self._rel_one[(one, sfield)] = (many, rfield)
        self.listeners = []   # callables(cls, ref, op) run under the lock after each change
        self._owned = {}      # (cls, ref, set field) -> (list in the row, its members)
        # long-polls wait on this; a write sets it and puts a fresh one in place, so waking
        # waiters do not queue on the database lock (event.from)
        self.changed_event = threading.Event()

    def _wake(self):
        """Wake everything waiting for a change (called with the lock held)."""
        ev, self.changed_event = self.changed_event, threading.Event()
        ev.set()
        self.cond.notify_all()

    # -- reading -------------------------------------------------------------------------
    def get(self, cls: str, ref: str) -> dict:
        """The row of ``ref`` or HANDLE_INVALID [cls, ref]."""
        row = self.tables[cls].get(ref)
        if row is None:
            raise handle_invalid(cls, ref)
        return row

    def exists(self, cls: str, ref: str) -> bool:
        return ref in self.tables.get(cls, ())

    def field(self, cls: str, ref: str, name: str):
        return self.get(cls, ref)[name]

    def by_uuid(self, cls: str, uuid: str) -> str:
        ref = self.uuids[cls].get(uuid)
        if ref is None:
            raise Failure("UUID_INVALID", cls, uuid)
        return ref

    def by_label(self, cls: str, label: str) -> list:
        return list(self.labels[cls].get(label, ()))

    def refs(self, cls: str) -> list:
        with self.lock:
            return list(self.tables[cls])

    def rows(self, cls: str) -> list:
        """[(ref, row)] snapshot, cheap thanks to copy-on-write rows."""
        with self.lock:
            return list(self.tables[cls].items())

    def count(self, cls: str) -> int:
        return len(self.tables[cls])

    # -- writing -------------------------------------------------------------------------
    def _touch(self, cls, ref, op):
        self.gen += 1
        ch = self.changed[cls]
        ch.pop(ref, None)
        if op == "del":
            # remember when the row was born: xapi_event.ml collect_events drops the
            # deletion of an object created after the token (created <= last_generation)
            self.deleted.append((self.gen, cls, ref, self.created[cls].pop(ref, 0)))
        else:
            ch[ref] = self.gen
        for fn in self.listeners:
            fn(cls, ref, op)

    def add(self, cls: str, ref: str, row: dict) -> str:
        """Insert a complete row (``row`` must hold every field of the class)."""
        with self.cond:
            if ref in self.tables[cls]:
                raise Failure("INTERNAL_ERROR", f"duplicate ref {ref}")
            self.tables[cls][ref] = row
            uuid = row.get("uuid")
            if uuid:
                self.uuids[cls][uuid] = ref
            if "name_label" in row:
                self.labels[cls].setdefault(row["name_label"], set()).add(ref)
            self._touch(cls, ref, "add")
            self.created[cls][ref] = self.gen
            for (many, rfield), (one, sfield) in self._rel_many.items():
                if many == cls and row.get(rfield, NULL_REF) != NULL_REF:
                    self._link(one, row[rfield], sfield, ref, True)
            self._wake()
        return ref

    def _link(self, cls, ref, sfield, member, add):
        """Keep the one-to-many side (``host.resident_VMs``) in step, in O(1).

        The relation's list is owned by the store and grown in place (with a membership
        set beside it), so a host with thousands of residents costs no list or row copies.
        This is the one exception to copy-on-write: a reader holding an older row may see
        the newer membership, never a broken list. Any other write of the field replaces
        the list, and ownership is taken again on the next link."""
        row = self.tables[cls].get(ref)
        if row is None:
            return
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
        else:
            if member not in members:
                return
            lst.remove(member)
            members.discard(member)
        self._touch(cls, ref, "mod")

    def update(self, cls: str, ref: str, **changes) -> dict:
        """Set several fields of one row in one change; returns the new row."""
        with self.cond:
            old = self.get(cls, ref)
            row = dict(old)
            row.update(changes)
            self.tables[cls][ref] = row
            if "name_label" in changes and old.get("name_label") != row["name_label"]:
                labels = self.labels[cls]
                s = labels.get(old["name_label"])
                if s:
                    s.discard(ref)
                    if not s:
                        del labels[old["name_label"]]
                labels.setdefault(row["name_label"], set()).add(ref)
            self._touch(cls, ref, "mod")
            for name in changes:
                rel = self._rel_many.get((cls, name))
                if rel and old[name] != row[name]:
                    self._link(rel[0], old[name], rel[1], ref, False)
                    self._link(rel[0], row[name], rel[1], ref, True)
            self._wake()
            return row

    def set(self, cls: str, ref: str, name: str, value):
        return self.update(cls, ref, **{name: value})

    def remove(self, cls: str, ref: str):
        with self.cond:
            row = self.get(cls, ref)
            del self.tables[cls][ref]
            for (one, sfield) in self._rel_one:
                if one == cls:
                    self._owned.pop((cls, ref, sfield), None)
            uuid = row.get("uuid")
            if uuid:
                self.uuids[cls].pop(uuid, None)
            if "name_label" in row:
                s = self.labels[cls].get(row["name_label"])
                if s:
                    s.discard(ref)
                    if not s:
                        del self.labels[cls][row["name_label"]]
            self._touch(cls, ref, "del")
            for (many, rfield), (one, sfield) in self._rel_many.items():
                if many == cls:
                    self._link(one, row.get(rfield, NULL_REF), sfield, ref, False)
            self._wake()
            return row

    def bump(self, cls: str, ref: str):
        """Record an artificial modification (event.inject)."""
        with self.cond:
            self.get(cls, ref)
            self._touch(cls, ref, "mod")
            self._wake()

    def upgrade_schema(self, schema: Schema):
        """Move the database to a newer release's schema (the upgraded master's xapi):
        new tables appear, rows gain the new fields at their defaults."""
        with self.cond:
            for cname, c in schema.classes.items():
                for d in (self.tables, self.uuids, self.labels, self.changed, self.created):
                    d.setdefault(cname, {})
                defaults = c.defaults()
                for ref, row in list(self.tables[cname].items()):
                    missing = {k: v for k, v in defaults.items() if k not in row}
                    if missing:
                        new = dict(row)
                        for k, v in missing.items():
                            new[k] = v.copy() if isinstance(v, (list, dict)) else v
                        self.tables[cname][ref] = new
                        self._touch(cname, ref, "mod")
            self.schema = schema
            for one, sfield, many, rfield in RELATIONS:
                if one in schema.classes and many in schema.classes:
                    self._rel_many[(many, rfield)] = (one, sfield)
                    self._rel_one[(one, sfield)] = (many, rfield)
            self._wake()

    # -- events --------------------------------------------------------------------------
    def changes_since(self, gen: int, classes=None):
        """[(gen, cls, ref, op)] of rows changed after ``gen``; one entry per object.

        Mirrors xapi_event.ml ``collect_events``: rows created after the token are ``add``
        (at their creation generation), otherwise ``mod``; deleted rows are ``del`` (unless
        created and deleted since). Cost is proportional to the number of changes, not to
        the table sizes.
        """
        out = []
        with self.lock:
            for cls in (classes if classes is not None else self.tables):
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
            for g, cls, ref, born in (reversed(self.deleted) if gen > 0 else ()):
                if g <= gen:
                    break
                if born <= gen and (classes is None or cls in classes):
                    out.append((g, cls, ref, "del"))
        out.sort()
        return out

    def valid_ref_counts(self) -> dict:
        return {c.lower(): len(t) for c, t in self.tables.items()}
