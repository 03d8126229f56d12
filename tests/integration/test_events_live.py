"""Events as live clients live on them (spec §9, §14.5, §15.10-11), beyond the basics of
``test_events_basic.py``: token monotonicity, changes nobody asked for over the API
(background xapi starts, host crashes and boots, pool joins, task progress), ``del`` of
API-destroyed objects, ``valid_ref_counts`` over the database tables only, message events,
``event.inject``/``event.get_current_id``, the legacy ``register``/``next``/``unregister``
API with ``EVENTS_LOST``, and fifty blocked ``event.from`` calls woken together by one
change without the server burning CPU while they wait.
"""

from __future__ import annotations

import re
import threading
import time
import xmlrpc.client

import pytest
import XenAPI

from xapi_sim.classes.event import EventQueues
from xapi_sim.testing import running_world

TOKEN = re.compile(r"^\d{20},\d{20}$")


def event_from(x, classes, token, timeout):
    return getattr(x.event, "from")(classes, token, timeout)


def drain(x, classes, token, until, timeout=10.0):
    """event.from in a loop until ``until(events so far)`` holds; returns (events, token)."""
    seen = []
    deadline = time.monotonic() + timeout
    while not until(seen):
        left = deadline - time.monotonic()
        assert left > 0, f"timed out; saw {[(e['class'], e['operation']) for e in seen]}"
        out = event_from(x, classes, token, min(left, 5.0))
        token = out["token"]
        seen.extend(out["events"])
    return seen, token


@pytest.fixture(scope="module")
def lworld():
    with running_world() as w:
        yield w


@pytest.fixture(scope="module")
def lx(lworld, login):
    s = login(lworld.master_url())
    yield s.xenapi
    s.xenapi.session.logout()


def test_tokens_are_monotonic(lx):
    pool = lx.pool.get_all()[0]
    tokens = [event_from(lx, ["pool"], "", 1.0)["token"]]
    for i in range(5):
        lx.pool.set_name_description(pool, f"step {i}")
        out = event_from(lx, ["pool"], tokens[-1], 5.0)
        assert [e["snapshot"]["name_description"] for e in out["events"]] == [f"step {i}"]
        tokens.append(out["token"])
    assert all(TOKEN.match(t) for t in tokens)
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)
    # no change: the token does not move (nor go back)
    idle = event_from(lx, ["pool"], tokens[-1], 0.2)
    assert idle["events"] == [] and idle["token"] >= tokens[-1]
    # event ids grow with the token too
    ids = [int(e["id"]) for e in event_from(lx, ["pool"], tokens[0], 1.0)["events"]]
    assert ids and all(
        int(tokens[0].split(",")[0]) < i <= int(tokens[-1].split(",")[0]) for i in ids
    )


def test_valid_ref_counts_cover_the_database_tables(lx):
    counts = event_from(lx, ["pool"], "", 1.0)["valid_ref_counts"]
    # tables XAPI keeps outside its database have no entry
    for absent in ("event", "message", "data_source", "auth", "sr_stat", "probe_result"):
        assert absent not in counts
    assert counts["role"] == 0  # static roles are not database rows
    assert len(lx.role.get_all()) == 6
    assert counts["task"] == len(lx.task.get_all())
    assert counts["session"] >= 1 and counts["host"] == 3


def test_a_destroyed_vm_is_a_del_without_snapshot(lx):
    tmpl = lx.VM.get_by_name_label("Debian Jessie 8.0")[0]
    vm = lx.VM.clone(tmpl, "short-lived")
    token = event_from(lx, ["vm"], "", 1.0)["token"]
    lx.VM.destroy(vm)
    evs, _ = drain(lx, ["vm"], token, lambda s: any(e["ref"] == vm for e in s))
    (ev,) = [e for e in evs if e["ref"] == vm]
    assert ev["operation"] == "del" and "snapshot" not in ev
    assert list(ev) == ["id", "timestamp", "class", "operation", "ref"]


def test_inject_and_current_id(lworld, lx, wire):
    pool = lx.pool.get_all()[0]
    before = int(lx.event.get_current_id())
    token = lx.event.inject("pool", pool)
    assert TOKEN.match(token)
    out = event_from(lx, ["pool"], token, 5.0)
    assert [(e["operation"], e["ref"]) for e in out["events"]] == [("mod", pool)]
    assert out["events"][0]["snapshot"] == lx.pool.get_record(pool)
    assert int(lx.event.get_current_id()) > before
    # the class must be the table name exactly
    with pytest.raises(XenAPI.Failure) as e:
        lx.event.inject("POOL", pool)
    assert e.value.details == ["HANDLE_INVALID", "POOL", pool]
    vm = lx.VM.get_all()[0]
    with pytest.raises(XenAPI.Failure) as e:
        lx.event.inject("vm", vm)
    assert e.value.details == ["HANDLE_INVALID", "vm", vm]
    assert TOKEN.match(lx.event.inject("VM", vm))
    # get_current_id is an int on the wire (JSON number)
    sref = wire.login(lworld.master_url())
    assert isinstance(wire.json(lworld.master_url(), "event.get_current_id", [sref])["result"], int)


def test_task_progress_and_end_are_events(lx):
    vm = lx.VM.get_by_name_label("batch1")[0]
    token = event_from(lx, ["task"], "", 0.05)["token"]
    task = lx.Async.VM.start(vm, False, False)
    evs, token = drain(
        lx,
        ["task"],
        token,
        lambda s: any(
            e["ref"] == task and e["snapshot"]["status"] != "pending"
            for e in s
            if e["operation"] != "del"
        ),
    )
    mine = [e for e in evs if e["ref"] == task]
    assert mine[0]["operation"] == "add"
    assert mine[-1]["snapshot"]["status"] == "success"
    assert mine[-1]["snapshot"]["result"] == "<value></value>"
    lx.task.destroy(task)
    evs, _ = drain(lx, ["task"], token, lambda s: any(e["ref"] == task for e in s))
    assert [e["operation"] for e in evs if e["ref"] == task] == ["del"]


# -- changes nobody made over the API --------------------------------------------------------


def test_host_crash_and_boot_are_seen_live(fresh_world, login, wire):
    x = login(fresh_world.master_url()).xenapi
    xs3 = fresh_world.host("xs3").ref
    metrics = x.host.get_metrics(xs3)
    token = event_from(x, ["host", "host_metrics", "host_cpu"], "", 1.0)["token"]
    result = {}

    def watch():
        result["events"], _ = drain(
            x,
            ["host", "host_metrics", "host_cpu"],
            token,
            lambda s: any(e["ref"] == metrics for e in s),
        )

    t = threading.Thread(target=watch)
    t.start()
    time.sleep(0.3)  # the watcher is blocked by now
    sref = wire.login(fresh_world.master_url())
    wire.xml_ok(fresh_world.master_url(), "sim.host_crash", sref, xs3)
    t.join(10)
    evs = result["events"]
    (m,) = [e for e in evs if e["ref"] == metrics]
    assert m["operation"] == "mod" and m["snapshot"]["live"] is False
    token = event_from(x, ["host"], "", 1.0)["token"]
    # power on: a full xapi start rewrites the host and recreates its host_cpu rows
    wire.xml_ok(fresh_world.master_url(), "sim.host_power_on", sref, xs3)
    evs, _ = drain(
        x,
        ["host", "host_cpu"],
        token,
        lambda s: any(
            e["ref"] == xs3 and e["snapshot"]["enabled"] for e in s if e["class"] == "host"
        ),
    )
    ops = {(e["class"], e["operation"]) for e in evs}
    assert {("host", "mod"), ("host_cpu", "add"), ("host_cpu", "del")} <= ops


def test_a_join_and_the_joiners_background_start_are_seen_live(fresh_world, login):
    """pool.join adds the joiner's host to the pool database (add events), and its xapi
    start as a member -- later, in the background -- writes cpu_info (a mod event)."""
    fresh_world.world.join_restart_delay = 0.3
    x = login(fresh_world.master_url()).xenapi
    master_addr = fresh_world.host("xs1").address
    xs4 = fresh_world.host("xs4")
    token = event_from(x, ["host", "vm"], "", 1.0)["token"]
    j = login(xs4.url).xenapi
    j.pool.join(master_addr, "root", "xenroot")
    evs, _ = drain(
        x,
        ["host", "vm"],
        token,
        lambda s: any(
            e["ref"] == xs4.ref and e["operation"] == "mod" and e["snapshot"]["cpu_info"] for e in s
        ),
    )
    mine = [e for e in evs if e["ref"] == xs4.ref]
    assert mine[0]["operation"] == "add" and mine[0]["snapshot"]["cpu_info"] == {}
    assert mine[-1]["snapshot"]["cpu_info"]["vendor"]
    added_vms = [e for e in evs if e["class"] == "vm" and e["operation"] == "add"]
    assert any(e["snapshot"]["name_label"] == "scratch1" for e in added_vms)


# -- message events ---------------------------------------------------------------------------


def test_message_events_carry_id_zero(fresh_world, login):
    x = login(fresh_world.master_url()).xenapi
    token = event_from(x, ["message"], "", 0.05)["token"]
    w = fresh_world.world
    pool = w.pools[0]
    w.add_message(pool.db, "TEST_ALERT", 3, "body", "Pool", pool.db.get("pool", pool.ref)["uuid"])
    out = event_from(x, ["message"], token, 5.0)
    (ev,) = out["events"]
    assert (ev["id"], ev["class"], ev["operation"]) == ("0", "message", "add")
    assert ev["snapshot"]["name"] == "TEST_ALERT"


# -- legacy event.register / event.next ------------------------------------------------------


def test_legacy_next_events_and_events_lost(fresh_world, login):
    x = login(fresh_world.master_url()).xenapi
    with pytest.raises(XenAPI.Failure) as e:
        x.event.next()
    assert e.value.details[0] == "SESSION_NOT_REGISTERED"
    pool = x.pool.get_all()[0]
    x.event.register(["pool"])
    x.pool.set_name_description(pool, "legacy")
    evs = x.event.next()
    assert [(e["class"], e["operation"], e["ref"]) for e in evs] == [("pool", "mod", pool)]
    ev = evs[0]
    assert list(ev) == ["id", "timestamp", "class", "operation", "ref", "snapshot"]
    assert ev["id"].isdigit() and re.match(r"^\d{10}\.$", ev["timestamp"])
    assert ev["snapshot"]["name_description"] == "legacy"
    # a blocked next wakes on a change
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("evs", x.event.next()))
    t.start()
    time.sleep(0.3)
    login(fresh_world.master_url()).xenapi.pool.set_name_description(pool, "woken")
    t.join(10)
    assert [e["snapshot"]["name_description"] for e in result["evs"]] == ["woken"]
    # falling too far behind loses events; the client must register again
    EventQueues.of(fresh_world.world).queue_limit = 5
    vm = x.VM.get_by_name_label("batch1")[0]
    for i in range(8):
        x.VM.set_name_description(vm, f"{i}")
    with pytest.raises(XenAPI.Failure) as e:
        x.event.next()
    assert e.value.details == ["EVENTS_LOST"]
    with pytest.raises(XenAPI.Failure) as e:
        x.event.next()
    assert e.value.details[0] == "SESSION_NOT_REGISTERED"
    x.event.unregister(["pool"])  # what XO does, harmless
    x.event.register(["pool"])
    x.pool.set_name_description(pool, "again")
    assert [e["snapshot"]["name_description"] for e in x.event.next()] == ["again"]


# -- many waiters at once -----------------------------------------------------------------------


def test_fifty_waiters_are_woken_by_one_change_without_busy_waiting(fresh_world, login):
    url = fresh_world.master_url()
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", "xenroot", "2.5", "fifty")
    sref = s._session
    pool = s.xenapi.pool.get_all()[0]
    token = getattr(s.xenapi.event, "from")(["pool"], "", 1.0)["token"]
    n = 50
    started = threading.Barrier(n + 1)
    results = [None] * n
    elapsed = [None] * n

    def waiter(i):
        proxy = xmlrpc.client.ServerProxy(url)  # its own connection
        started.wait()
        t0 = time.monotonic()
        results[i] = getattr(proxy.event, "from")(sref, ["pool"], token, 30.0)
        elapsed[i] = time.monotonic() - t0

    threads = [threading.Thread(target=waiter, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    started.wait()
    time.sleep(0.5)  # every call is blocked by now
    # while they wait, the server does not spin: (almost) no CPU in a second
    cpu0 = time.process_time()
    time.sleep(1.0)
    idle_cpu = time.process_time() - cpu0
    assert all(r is None for r in results)
    t0 = time.monotonic()
    s.xenapi.pool.set_name_description(pool, "wake up, all fifty")
    for t in threads:
        t.join(10)
    woke_in = time.monotonic() - t0
    assert not any(t.is_alive() for t in threads)
    assert woke_in < 5
    assert idle_cpu < 0.3, f"{idle_cpu:.2f}s of CPU while {n} calls waited"
    for r in results:
        assert r["Status"] == "Success"
        (ev,) = r["Value"]["events"]
        assert ev["snapshot"]["name_description"] == "wake up, all fifty"
    assert max(elapsed) < 10


def test_logout_drops_the_legacy_event_registration():
    """``Xapi_event.on_session_deleted``: a logged-out session leaves no registration."""
    import XenAPI as _X

    from xapi_sim.classes.event import EventQueues
    from xapi_sim.testing import running_world

    with running_world(seed=3) as w:
        s = _X.Session(w.master_url())
        s.xenapi.login_with_password("root", "xenroot")
        s.xenapi.event.register(["vm"])
        queues = w.world.service(EventQueues)
        assert s._session in queues.regs
        s.xenapi.session.logout()
        assert s._session not in queues.regs
