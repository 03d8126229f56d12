"""The fast call path: the cached call plan, the ASCII path of the UTF-8 check, the session
touch that writes at most once per second, and the expat decoder's refusals."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xapi_sim import dispatch, scenario
from xapi_sim.dispatch import _BAD_CHARS, Dispatcher, _utf8_ok
from xapi_sim.errors import Failure
from xapi_sim.server import Simulator  # noqa: F401  -- registers every handler
from xapi_sim.wire import xmlrpc as xr


@given(st.text(max_size=40))
def test_utf8_fast_path_agrees_with_the_full_check(s):
    assert _utf8_ok(s) == (_BAD_CHARS.search(s) is None)


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=40))
def test_utf8_fast_path_on_ascii(s):
    assert _utf8_ok(s) == (_BAD_CHARS.search(s) is None)


class FakeClock:
    def __init__(self, world):
        self.now = world.clock.time()
        world.clock._source = lambda: self.now


@pytest.fixture
def world():
    return scenario.build(scenario.default(), seed=1)


def _master(world):
    return world.pools[0].master


def test_touch_writes_last_active_once_per_second(world):
    d = Dispatcher(world)
    m = _master(world)
    clock = FakeClock(world)
    s = d.dispatch(m, "session.login_with_password", ["root", "xenroot"])
    db = m.pool.db
    gen = db.gen
    for _ in range(50):
        d.dispatch(m, "pool.get_all", [s])
    assert db.gen == gen  # same second: no store write
    clock.now += 1
    d.dispatch(m, "pool.get_all", [s])
    assert db.gen == gen + 1  # a new second: one write
    assert db.tables["session"][s]["last_active"] == world.clock.ts_of(clock.now)


def test_touch_refreshes_a_last_active_set_behind_its_back(world):
    d = Dispatcher(world)
    m = _master(world)
    FakeClock(world)
    s = d.dispatch(m, "session.login_with_password", ["root", "xenroot"])
    d.dispatch(m, "pool.get_all", [s])
    m.pool.db.set("session", s, "last_active", "20000101T00:00:00Z")
    d.dispatch(m, "pool.get_all", [s])  # same second, but the value is not ours
    assert m.pool.db.tables["session"][s]["last_active"] == world.clock.now_ts()


def test_logout_forgets_the_touch(world):
    from xapi_sim import sessions

    d = Dispatcher(world)
    m = _master(world)
    s = d.dispatch(m, "session.login_with_password", ["root", "xenroot"])
    d.dispatch(m, "pool.get_all", [s])
    d.dispatch(m, "session.logout", [s])
    assert s not in sessions._state(world)["touched"]


def test_plans_are_cached_for_known_names_only(world, monkeypatch):
    d = Dispatcher(world)
    m = _master(world)
    s = d.dispatch(m, "session.login_with_password", ["root", "xenroot"])
    for i in range(20):
        with pytest.raises(Failure):
            d.dispatch(m, f"VM.no_such_{i}", [s])
    assert not any("no_such" in k[1] for k in d._plans)
    pool = d.dispatch(m, "pool.get_all", [s])[0]
    assert d.dispatch(m, "pool.get_name_label", [s, pool]) == "pool-a"
    # a handler registered after the plan was made wins at once
    monkeypatch.setitem(dispatch.REGISTRY, "pool.get_name_label", lambda call, ref: "patched")
    assert d.dispatch(m, "pool.get_name_label", [s, pool]) == "patched"
    # arity and conversion errors are unchanged
    with pytest.raises(Failure) as e:
        d.dispatch(m, "pool.get_name_label", [s])
    assert e.value.description == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH",
        "pool.get_name_label",
        "1",
        "0",
    ]
    with pytest.raises(Failure) as e:
        d.dispatch(m, "pool.get_name_label", [s, 3])
    assert e.value.code == "INTERNAL_ERROR"


def test_many_threads_share_one_plan_table(world):
    d = Dispatcher(world)
    m = _master(world)
    s = d.dispatch(m, "session.login_with_password", ["root", "xenroot"])
    names = ["pool.get_all", "VM.get_all", "host.get_all", "network.get_all", "SR.get_all"]
    errors = []

    def run(i):
        try:
            for _ in range(50):
                for n in names:
                    d.dispatch(m, n, [s])
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ths = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    assert not errors
    assert {k[1] for k in d._plans} >= set(names)


@pytest.mark.parametrize(
    "body",
    [
        b'<!DOCTYPE x [<!ENTITY e "y">]><methodCall><methodName>&e;</methodName><params/>'
        b"</methodCall>",
        b'<!DOCTYPE x SYSTEM "file:///etc/passwd"><methodCall><methodName>m</methodName>'
        b"<params/></methodCall>",
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aa"><!ENTITY b "&a;&a;">]>'
        b"<methodCall><methodName>&b;</methodName><params/></methodCall>",
        b"<methodCall><methodName>&undeclared;</methodName><params/></methodCall>",
        '<?xml version="1.0" encoding="utf-16"?><!DOCTYPE x [<!ENTITY e "y">]>'
        "<methodCall><methodName>&e;</methodName><params/></methodCall>".encode("utf-16"),
    ],
)
def test_decoder_refuses_dtds_and_entities(body):
    with pytest.raises(xr.XmlRpcParseError):
        xr.decode_call(body)


@settings(max_examples=50)
@given(st.text(st.characters(blacklist_categories=("Cs", "Cn"), min_codepoint=32), max_size=20))
def test_decoder_reads_character_references(s):
    esc = "".join(f"&#{ord(c)};" for c in s)
    body = (
        "<methodCall><methodName>m</methodName><params><param>"
        f"<value>{esc}</value></param></params></methodCall>"
    )
    assert xr.decode_call(body.encode()) == ("m", [s])
