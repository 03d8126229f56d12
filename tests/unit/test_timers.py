"""The front's timer heap (xapi_sim/wire/timers.py): whatever the order of deadline moves,
closes and callbacks, and however often the heap is rebuilt, it hands back exactly the
current entries that are due, earliest first, and its timeout is the first current one."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from xapi_sim.wire.connection import CLOSED, HEAD, deadline_current
from xapi_sim.wire.timers import Timers


class FakeConn:
    def __init__(self):
        self.deadline = None
        self.state = HEAD


ops = st.lists(
    st.one_of(
        st.tuples(st.just("move"), st.integers(0, 9), st.integers(0, 1000)),
        st.tuples(st.just("close"), st.integers(0, 9), st.just(0)),
        st.tuples(st.just("call"), st.integers(0, 9), st.integers(0, 1000)),
    ),
    max_size=400,
)


@settings(max_examples=200, deadline=None)
@given(ops, st.integers(0, 1000), st.integers(1, 50))
def test_due_entries_are_exactly_the_current_ones(steps, now, limit):
    timers = Timers(deadline_current)
    timers._limit = limit  # rebuild often
    conns = [FakeConn() for _ in range(10)]
    calls = []  # (when, tag) of every callback pushed
    for kind, i, when in steps:
        c = conns[i]
        if kind == "move" and c.state != CLOSED:
            c.deadline = float(when)
            timers.at(c.deadline, c)
        elif kind == "close":
            c.state, c.deadline = CLOSED, None
        elif kind == "call":
            tag = len(calls)
            calls.append((float(when), tag))
            timers.at(float(when), lambda tag=tag: tag)

    expected_conns = [c for c in conns if c.deadline is not None and c.state != CLOSED]
    firsts = [c.deadline for c in expected_conns] + [w for w, _ in calls]
    timeout = timers.next_timeout()
    if firsts:
        assert timeout is not None
    else:
        assert timeout is None

    got = list(timers.due(float(now)))
    got_conns = [o for o in got if isinstance(o, FakeConn)]
    got_calls = sorted(o() for o in got if not isinstance(o, FakeConn))
    # each current connection at most once (a deadline set twice to one value may repeat)
    assert {id(c) for c in got_conns} == {id(c) for c in expected_conns if c.deadline <= now}
    assert got_calls == sorted(tag for w, tag in calls if w <= now)
    whens = [o.deadline if isinstance(o, FakeConn) else calls[o()][0] for o in got]
    assert whens == sorted(whens)
    # what is left is exactly what is not yet due
    later = list(timers.due(float("inf")))
    assert {id(c) for c in later if isinstance(c, FakeConn)} == {
        id(c) for c in expected_conns if c.deadline > now
    }
    assert sorted(o() for o in later if not isinstance(o, FakeConn)) == sorted(
        tag for w, tag in calls if w > now
    )


def test_a_moved_deadline_leaves_only_its_last_entry():
    timers = Timers(deadline_current)
    c = FakeConn()
    for when in (5.0, 1.0, 3.0):
        c.deadline = when
        timers.at(when, c)
    assert list(timers.due(2.0)) == []  # 1.0 was moved to 3.0
    assert list(timers.due(4.0)) == [c]
    assert timers.next_timeout() is None  # the entry for 5.0 is stale
    assert len(timers) == 0
