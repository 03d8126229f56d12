"""Thousands of sessions (issue 7 item 3): XAPI's session limits and eviction.

XAPI's DB GC (Dundee ``ocaml/xapi/db_gc.ml`` ``timeout_sessions``, HEAD ``db_gc_util.ml``)
groups sessions -- intra-pool ("internal"), root without originator ("external"), root by
originator, others by user name -- and keeps at most ``max_sessions`` (400) of the first two
and ``max_sessions_per_originator`` / ``max_sessions_per_user_name`` (500) of each of the
others, destroying the least recently active; sessions idle for more than
``inactive_session_timeout`` (24 h) are destroyed whatever their group.
"""

from __future__ import annotations

import threading
import time

import pytest

from xapi_sim import scenario, sessions
from xapi_sim.dispatch import Dispatcher
from xapi_sim.errors import Failure
from xapi_sim.server import Simulator  # noqa: F401  -- registers every handler


@pytest.fixture
def world():
    return scenario.build(scenario.default(), seed=3)


@pytest.fixture
def d(world):
    return Dispatcher(world)


def master(world):
    return world.pools[0].master


def login(d, world, originator):
    return d.dispatch(
        master(world), "session.login_with_password", ["root", "xenroot", "1.0", originator]
    )


def valid(d, world, s):
    try:
        d.dispatch(master(world), "pool.get_all", [s])
        return True
    except Failure as f:
        assert f.description == ["SESSION_INVALID", s]
        return False


def group_count(world, group):
    return sum(
        1 for row in master(world).db.tables["session"].values() if sessions.group_of(row) == group
    )


def test_the_limits_are_xapis():
    assert sessions.MAX_SESSIONS == 400  # max_tasks * 2
    assert sessions.MAX_SESSIONS_PER_ORIGINATOR == 500
    assert sessions.MAX_SESSIONS_PER_USER_NAME == 500
    assert sessions.INACTIVE_SESSION_TIMEOUT == 86400.0


@pytest.mark.parametrize(
    "row, group, limit",
    [
        ({"pool": True, "auth_user_name": "root", "originator": "x"}, ("internal",), 400),
        ({"pool": False, "auth_user_name": "root", "originator": ""}, ("external",), 400),
        ({"pool": False, "auth_user_name": "", "originator": ""}, ("external",), 400),
        (
            {"pool": False, "auth_user_name": "root", "originator": "XenCenter"},
            ("originator", "XenCenter"),
            500,
        ),
        (
            {"pool": False, "auth_user_name": "alice", "originator": "XenCenter"},
            ("username", "alice"),
            500,
        ),
        ({"pool": False, "auth_user_name": "alice", "originator": ""}, ("username", "alice"), 500),
    ],
)
def test_groups(row, group, limit):
    assert sessions.group_of(row) == group
    assert sessions.limit_of(group) == limit


def test_thousands_of_logins_keep_the_newest_500_per_originator(world, d):
    keeper = login(d, world, "keeper")
    flood = [login(d, world, "flood") for _ in range(1500)]
    assert group_count(world, ("originator", "flood")) == 500
    assert not any(valid(d, world, s) for s in flood[:1000])
    assert all(valid(d, world, s) for s in flood[1000:])
    assert valid(d, world, keeper)  # another group: untouched
    assert len(master(world).db.tables["session"]) == 501
    assert len(sessions._state(world)["use"]) == 501  # no bookkeeping left behind


def test_the_least_recently_used_session_goes_first(world, d):
    group = [login(d, world, "lru") for _ in range(500)]
    assert valid(d, world, group[0])  # using it refreshes last_active
    newcomer = login(d, world, "lru")
    assert valid(d, world, group[0])
    assert not valid(d, world, group[1])  # the oldest unused one went
    assert valid(d, world, newcomer)
    assert all(valid(d, world, s) for s in group[2:])


def test_sessions_without_originator_are_limited_to_400(world, d):
    anon = [login(d, world, "") for _ in range(450)]
    assert group_count(world, ("external",)) == 400
    assert not any(valid(d, world, s) for s in anon[:50])
    assert all(valid(d, world, s) for s in anon[50:])


def test_intra_pool_sessions_are_limited_to_400(world, d):
    s = login(d, world, "migrations")
    m = master(world)
    net = d.dispatch(m, "network.get_all", [s])[0]
    xs2 = world.host_by_name("xs2").ref
    for _ in range(410):
        d.dispatch(m, "host.migrate_receive", [s, xs2, net, {}])
    assert group_count(world, ("internal",)) == 400
    assert valid(d, world, s)


def test_inactive_sessions_are_destroyed_by_the_gc_pass(world, d):
    old = login(d, world, "script")
    new = login(d, world, "script")
    other = login(d, world, "other")
    db = master(world).db
    db.set("session", old, "last_active", "20000101T00:00:00Z")
    assert sessions.gc_sessions(world) == [old]
    assert not valid(d, world, old)
    assert valid(d, world, new) and valid(d, world, other)


def test_a_login_runs_the_full_pass_every_30_seconds(world, d):
    a = login(d, world, "a")
    master(world).db.set("session", a, "last_active", "20000101T00:00:00Z")
    login(d, world, "b")  # within 30 s of the first pass: a stays
    assert master(world).db.exists("session", a)
    sessions._state(world)["last_gc"] -= sessions.DB_GC_TIMER + 1
    login(d, world, "b")
    assert not master(world).db.exists("session", a)


def test_an_evicted_session_wakes_its_event_waiters(world, d):
    m = master(world)
    victim = login(d, world, "busy")
    token = d.dispatch(m, "event.from", [victim, ["vm"], "", 0.0])["token"]
    d.dispatch(m, "event.register", [victim, ["vm"]])
    out = {}

    def wait(name, method, params):
        t0 = time.monotonic()
        try:
            d.dispatch(m, method, params)
            out[name] = ("returned", time.monotonic() - t0)
        except Failure as f:
            out[name] = (f.description, time.monotonic() - t0)

    threads = [
        threading.Thread(target=wait, args=("from", "event.from", [victim, ["vm"], token, 30.0])),
        threading.Thread(target=wait, args=("next", "event.next", [victim])),
    ]
    for t in threads:
        t.start()
    time.sleep(0.3)
    for _ in range(500):
        login(d, world, "busy")
    # (bounds well below the 30 s event timeout, loose enough for a loaded 2-core machine)
    for t in threads:
        t.join(25)
        assert not t.is_alive()
    assert out["from"][0] == ["SESSION_INVALID", victim] and out["from"][1] < 25
    assert out["next"][0] == ["SESSION_INVALID", victim] and out["next"][1] < 25


def test_thousands_of_sessions_over_the_wire(fresh_world, wire):
    url = fresh_world.master_url()
    first = [
        wire.xml_ok(url, "session.login_with_password", "root", "xenroot", "2.5", "wire-flood")
        for _ in range(600)
    ]
    assert wire.xml_err(url, "pool.get_all", first[0]) == ["SESSION_INVALID", first[0]]
    assert wire.xml_err(url, "pool.get_all", first[99]) == ["SESSION_INVALID", first[99]]
    assert wire.xml_ok(url, "pool.get_all", first[100])
    assert wire.xml_ok(url, "pool.get_all", first[-1])
    db = fresh_world.world.pools[0].db
    assert sum(1 for r in db.tables["session"].values() if r["originator"] == "wire-flood") == 500
