"""``Transactions.on_commit``: outside work runs after the commit, with no lock held, and
never after a rollback (the listener sockets of host power changes use it)."""

from __future__ import annotations

import threading

import pytest

from xapi_sim.datamodel import Schema
from xapi_sim.store import Database


@pytest.fixture
def db():
    return Database(Schema.for_release("dundee"))


def test_runs_after_commit_without_the_lock(db):
    seen = []
    with db.lock:
        db.txm.on_commit(lambda: seen.append(db._mutex.locked()))
        db.add("pool", "OpaqueRef:p", {**db.schema.classes["pool"].defaults(), "uuid": "u"})
        assert seen == []
    assert seen == [False]


def test_never_after_a_rollback(db):
    seen = []
    with pytest.raises(RuntimeError), db.lock:
        db.txm.on_commit(lambda: seen.append(1))
        raise RuntimeError("fail")
    assert seen == []
    with db.lock:
        pass
    assert seen == []  # not carried into the next transaction


def test_outside_a_transaction_it_runs_now(db):
    seen = []
    db.txm.on_commit(lambda: seen.append(1))
    assert seen == [1]


def test_a_failing_action_does_not_undo_the_commit(db, caplog):
    with db.lock:
        db.txm.on_commit(lambda: 1 / 0)
    assert "action after commit failed" in caplog.text


def test_each_thread_runs_its_own(db):
    counts = [0] * 8

    def worker(i):
        for _ in range(200):
            with db.lock:
                db.txm.on_commit(lambda i=i: counts.__setitem__(i, counts[i] + 1))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counts == [200] * 8
