"""One event batch for many waiters: ``Shared`` results encode to the same bytes as plain
dicts, once per codec, however many threads ask; initial ``event.from`` calls made together
share one batch and one reply."""

from __future__ import annotations

import threading

from hypothesis import given
from hypothesis import strategies as st
from test_codecs import SETTINGS, json_values, values

from xapi_sim import scenario
from xapi_sim.dispatch import Dispatcher
from xapi_sim.server import Simulator  # noqa: F401  -- registers every handler
from xapi_sim.wire import jsonrpc, xmlrpc
from xapi_sim.wire.values import Shared


@SETTINGS
@given(st.dictionaries(st.text(max_size=8), values, max_size=4))
def test_shared_xml_bytes_equal_plain(v):
    assert xmlrpc.encode_success(Shared(v)) == xmlrpc.encode_success(v)


@SETTINGS
@given(
    st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    st.sampled_from([1, 2]),
    st.one_of(st.integers(), st.text(max_size=5)),
)
def test_shared_json_bytes_equal_plain(v, version, rid):
    assert jsonrpc.encode_success(version, rid, Shared(v)) == jsonrpc.encode_success(
        version, rid, v
    )


def test_many_threads_encode_once():
    calls = []
    shared = Shared(a=1)

    def enc(d):
        calls.append(1)
        return xmlrpc.encode_success(d)

    out = []
    ths = [
        threading.Thread(target=lambda: out.append(shared.encoded("xml", enc))) for _ in range(32)
    ]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    assert len(calls) == 1
    assert len({id(b) for b in out}) == 1  # the very same bytes object for every caller


def test_simultaneous_initial_event_from_share_one_reply():
    world = scenario.build(scenario.default(), seed=1)
    d = Dispatcher(world)
    m = world.pools[0].master
    s = d.dispatch(m, "session.login_with_password", ["root", "xenroot"])
    replies = []
    barrier = threading.Barrier(12)

    def first():
        barrier.wait()
        replies.append(d.dispatch(m, "event.from", [s, ["VM"], "", 0.0]))

    ths = [threading.Thread(target=first) for _ in range(12)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    assert len({id(r) for r in replies}) == 1
    r = replies[0]
    assert isinstance(r, dict) and r["events"] and all(e["operation"] == "add" for e in r["events"])
    assert len({id(xmlrpc.encode_success(x)) for x in replies}) == 1
    # a change makes a new batch
    d.dispatch(m, "VM.set_name_description", [s, r["events"][0]["ref"], "x"])
    again = d.dispatch(m, "event.from", [s, ["VM"], "", 0.0])
    assert again is not r and again["token"] != r["token"]


def test_a_change_nobody_subscribed_to_keeps_the_batch():
    world = scenario.build(scenario.default(), seed=1)
    d = Dispatcher(world)
    m = world.pools[0].master
    s = d.dispatch(m, "session.login_with_password", ["root", "xenroot"])
    first = d.dispatch(m, "event.from", [s, ["VM"], "", 0.0])
    pool = d.dispatch(m, "pool.get_all", [s])[0]
    d.dispatch(m, "pool.add_to_other_config", [s, pool, "k", "v"])  # not a VM change
    again = d.dispatch(m, "event.from", [s, ["VM"], "", 0.0])
    assert again is first  # same batch, same token (a point before the pool change)
    later = d.dispatch(m, "event.from", [s, ["VM", "pool"], again["token"], 0.0])
    assert [e["class"] for e in later["events"]] == ["pool"]  # the pool change still comes
    vm = first["events"][0]["ref"]
    d.dispatch(m, "VM.set_name_description", [s, vm, "changed"])
    fresh = d.dispatch(m, "event.from", [s, ["VM"], "", 0.0])
    assert fresh is not first


@SETTINGS
@given(st.dictionaries(st.text(max_size=8), values, max_size=4), st.text(max_size=6))
def test_a_shared_part_inside_a_reply_encodes_as_plain(inner, key):
    """A ``Shared`` nested in a result (an event batch's valid_ref_counts) is encoded once
    and spliced in: the same bytes as the plain dict in its place."""
    part = Shared(inner)
    outer = {"events": [], key: part, "token": "1,0"}
    plain = {"events": [], key: dict(inner), "token": "1,0"}
    assert xmlrpc.encode_success(outer) == xmlrpc.encode_success(plain)
    assert xmlrpc.encode_success(Shared(outer)) == xmlrpc.encode_success(plain)
    assert jsonrpc.encode_success(2, 1, Shared(outer)) == jsonrpc.encode_success(2, 1, plain)


def test_valid_ref_counts_are_one_object_until_a_table_grows_or_shrinks():
    world = scenario.build(scenario.default(), seed=1)
    d = Dispatcher(world)
    m = world.pools[0].master
    s = d.dispatch(m, "session.login_with_password", ["root", "xenroot"])
    counts = d.dispatch(m, "event.from", [s, ["pool"], "", 0.0])["valid_ref_counts"]
    pool = d.dispatch(m, "pool.get_all", [s])[0]
    d.dispatch(m, "pool.add_to_other_config", [s, pool, "k", "v"])  # a modification
    again = d.dispatch(m, "event.from", [s, ["pool"], "", 0.0])["valid_ref_counts"]
    assert again is counts
    sessions = counts["session"]
    d.dispatch(m, "session.login_with_password", ["root", "xenroot"])  # a row more
    d.dispatch(m, "pool.add_to_other_config", [s, pool, "k2", "v"])  # (a new pool batch)
    grown = d.dispatch(m, "event.from", [s, ["pool"], "", 0.0])["valid_ref_counts"]
    assert grown is not counts and grown["session"] == sessions + 1
    assert {k: v for k, v in grown.items() if k != "session"} == {
        k: v for k, v in counts.items() if k != "session"
    }
    assert xmlrpc.encode_success(grown) == xmlrpc.encode_success(dict(grown))
