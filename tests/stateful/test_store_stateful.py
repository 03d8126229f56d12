"""The store under random creates, destroys, moves and failed transactions (hypothesis).

Invariants after every step: every relation of xen-api's ``all_relations`` that the release
has holds (each set field lists exactly the live rows whose ref field points at its owner),
and a transaction that raised left the database -- rows, indexes, generation, change order,
deletions -- exactly as before it began.
"""

from __future__ import annotations

import copy

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from xapi_sim.datamodel import NULL_REF, Schema
from xapi_sim.store import Database

SCHEMA = Schema.for_release("dundee")


class Boom(Exception):
    pass


def _relations(db):
    return sorted(db.relations())


class StoreMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.db = Database(SCHEMA)
        self.rels = _relations(self.db)
        self.classes = sorted({c for one, _, many, _ in self.rels for c in (one, many)})
        self.n = 0

    # -- helpers ---------------------------------------------------------------------------
    def _new_ref(self):
        self.n += 1
        return f"OpaqueRef:{self.n:08d}"

    def _targets(self, cls):
        return list(self.db.tables[cls])

    def _create(self, data, cls):
        row = SCHEMA.classes[cls].defaults()
        ref = self._new_ref()
        if "uuid" in row:
            row["uuid"] = ref[10:]
        for one, _sf, many, rf in self.rels:
            if many == cls:
                choices = self._targets(one) + [NULL_REF]
                row[rf] = data.draw(st.sampled_from(choices))
        self.db.add(cls, ref, row)

    def _move(self, data):
        rel = data.draw(st.sampled_from(self.rels))
        one, _sf, many, rf = rel
        rows = self._targets(many)
        if not rows:
            return
        ref = data.draw(st.sampled_from(rows))
        self.db.set(many, ref, rf, data.draw(st.sampled_from(self._targets(one) + [NULL_REF])))

    def _destroy(self, data):
        cls = data.draw(st.sampled_from(self.classes))
        rows = self._targets(cls)
        if rows:
            self.db.remove(cls, data.draw(st.sampled_from(rows)))

    def _state(self):
        db = self.db
        return (
            copy.deepcopy(db.tables),
            copy.deepcopy(db.uuids),
            copy.deepcopy(db.labels),
            {c: list(ch.items()) for c, ch in db.changed.items()},
            copy.deepcopy(db.created),
            list(db.deleted),
            db.gen,
        )

    # -- rules -----------------------------------------------------------------------------
    @rule(data=st.data())
    def create(self, data):
        self._create(data, data.draw(st.sampled_from(self.classes)))

    @rule(data=st.data())
    def move(self, data):
        self._move(data)

    @rule(data=st.data())
    def destroy(self, data):
        self._destroy(data)

    @rule(data=st.data(), n=st.integers(1, 4))
    def several_in_one_transaction(self, data, n):
        with self.db.transaction():
            for _ in range(n):
                data.draw(
                    st.sampled_from(
                        [
                            self._move,
                            self._destroy,
                            lambda d: self._create(d, d.draw(st.sampled_from(self.classes))),
                        ]
                    )
                )(data)

    @precondition(lambda self: self.n > 0)
    @rule(data=st.data(), n=st.integers(1, 4))
    def failed_transaction_changes_nothing(self, data, n):
        before = self._state()
        try:
            with self.db.transaction():
                for _ in range(n):
                    data.draw(
                        st.sampled_from(
                            [
                                self._move,
                                self._destroy,
                                lambda d: self._create(d, d.draw(st.sampled_from(self.classes))),
                            ]
                        )
                    )(data)
                raise Boom()
        except Boom:
            pass
        assert self._state() == before

    # -- invariants ------------------------------------------------------------------------
    @invariant()
    def relations_hold(self):
        assert self.db.check_relations() == []

    @invariant()
    def indexes_match_rows(self):
        for cls, table in self.db.tables.items():
            for ref, row in table.items():
                if "uuid" in row:
                    assert self.db.uuids[cls][row["uuid"]] == ref
            assert sum(len(s) for s in self.db.labels[cls].values()) == sum(
                1 for r in table.values() if "name_label" in r
            )


StoreMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestStore = StoreMachine.TestCase


def test_the_store_keeps_every_relation_of_xen_api_for_dundee():
    """All of data/relations.json that Dundee has on the wire, not only the first seven."""
    db = Database(SCHEMA)
    kept = {(one, sf, many, rf) for one, sf, many, rf in db.relations()}
    for pair in [
        ("VM", "VBDs", "VBD", "VM"),
        ("network", "VIFs", "VIF", "network"),
        ("SR", "VDIs", "VDI", "SR"),
        ("host", "PBDs", "PBD", "host"),
        ("VDI", "VBDs", "VBD", "VDI"),
        ("VM", "VIFs", "VIF", "VM"),
    ]:
        assert pair in kept
    assert len(kept) >= 36
