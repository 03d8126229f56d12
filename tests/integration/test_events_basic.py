"""``event.from`` basics (spec §9.1, §14.5, §15.10-11).

Token ``""`` returns every object as ``add`` with its full snapshot (including the pool and
its master host); a ``pool.add_to_other_config`` surfaces as a pool ``mod`` whose snapshot
holds the key; a timeout returns no events and a usable token; ``valid_ref_counts`` is
``<i4>`` over XML-RPC and numbers over JSON; ``del`` events carry no snapshot; an object
created and destroyed between two calls is not reported; a logout wakes a blocked call.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
import XenAPI

from xapi_sim.testing import running_world

TOKEN = re.compile(r"^\d{20},\d{20}$")
MEMBERS = ["id", "timestamp", "class", "operation", "ref", "snapshot"]


def event_from(x, classes, token, timeout):
    return getattr(x.event, "from")(classes, token, timeout)


@pytest.fixture(scope="module")
def everything(xapi):
    return event_from(xapi, ["*"], "", 5.0)


def test_empty_token_returns_every_object_as_add(xapi, everything):
    evs = everything["events"]
    assert evs and all(e["operation"] == "add" for e in evs)
    assert TOKEN.match(everything["token"])
    by_class = {}
    for e in evs:
        assert list(e) == MEMBERS  # member order; no obj_uuid
        assert e["id"].isdigit() and e["timestamp"] == "0.0"
        assert e["class"] == e["class"].lower()
        by_class.setdefault(e["class"], {})[e["ref"]] = e["snapshot"]
    for cls, wire_cls in (
        ("VM", "vm"),
        ("host", "host"),
        ("pool", "pool"),
        ("host_cpu", "host_cpu"),
        ("host_metrics", "host_metrics"),
        ("VM_metrics", "vm_metrics"),
    ):
        assert by_class[wire_cls] == getattr(xapi, cls).get_all_records(), cls
    # no events for classes without gen_events
    assert "session" not in by_class and "event" not in by_class
    # XenCenter needs the pool and its master
    ((pool_ref, pool),) = by_class["pool"].items()
    assert pool["master"] in by_class["host"]


def test_valid_ref_counts(xapi, everything):
    counts = everything["valid_ref_counts"]
    assert counts["vm"] == len(xapi.VM.get_all())
    assert counts["host"] == 3 and counts["pool"] == 1
    assert counts["host_cpu"] == len(xapi.host_cpu.get_all())
    assert counts["session"] >= 1  # every table, subscribed or not
    assert counts["sr"] == len(xapi.SR.get_all())
    assert all(k == k.lower() and isinstance(v, int) for k, v in counts.items())


def test_valid_ref_counts_are_i4_in_xml(world, wire, session):
    r = wire.xml_reply(world.master_url(), "event.from", session.handle, ["pool"], "", 1.0)
    body = r.body.decode()
    counts = body[body.index("<name>valid_ref_counts</name>") :]
    assert re.search(r"<member><name>pool</name><value><i4>1</i4></value></member>", counts)
    assert re.search(r"<member><name>host</name><value><i4>3</i4></value></member>", counts)
    # and only there: event ids and the token are strings
    assert body.count("<i4>") == len(
        re.findall(r"<member><name>[a-z_0-9]+</name><value><i4>", counts)
    )
    assert "<member><name>id</name><value>" in body
    assert "<member><name>timestamp</name><value>0.0</value></member>" in body


def test_event_from_over_json(world, wire, session):
    out = wire.json(world.master_url(), "event.from", [session.handle, ["vm"], "", 1.0])
    res = out["result"]
    assert set(res) == {"events", "valid_ref_counts", "token"}
    assert isinstance(res["valid_ref_counts"]["vm"], int)
    snap = next(e["snapshot"] for e in res["events"] if e["snapshot"]["name_label"] == "web1")
    assert snap["memory_static_max"] == 4 << 30 and snap["snapshot_time"].endswith("Z")
    assert all(isinstance(e["id"], str) for e in res["events"])


def test_class_names_are_case_insensitive_and_objects_selectable(xapi):
    a = event_from(xapi, ["VM"], "", 1.0)["events"]
    b = event_from(xapi, ["vm"], "", 1.0)["events"]
    assert sorted(e["ref"] for e in a) == sorted(e["ref"] for e in b) == sorted(xapi.VM.get_all())
    web1 = xapi.VM.get_by_name_label("web1")[0]
    one = event_from(xapi, [f"vm/{web1}"], "", 1.0)["events"]
    assert [(e["class"], e["ref"]) for e in one] == [("vm", web1)]
    # unknown classes and classes without events select nothing
    mixed = event_from(xapi, ["pool", "no_such_class", "session"], "", 1.0)["events"]
    assert {e["class"] for e in mixed} == {"pool"}


def test_bad_token(xapi):
    for bad in ("garbage", "5", "1,2,3", "a,b"):
        with pytest.raises(XenAPI.Failure) as e:
            event_from(xapi, ["*"], bad, 1.0)
        assert e.value.details == ["EVENT_FROM_TOKEN_PARSE_FAILURE", bad]


def test_timeout_returns_no_events_and_a_token(xapi):
    token = event_from(xapi, ["pool"], "", 1.0)["token"]
    t0 = time.monotonic()
    out = event_from(xapi, ["pool"], token, 0.4)
    elapsed = time.monotonic() - t0
    assert out["events"] == []
    assert TOKEN.match(out["token"])
    assert 0.35 <= elapsed < 3
    # the token keeps working
    assert event_from(xapi, ["pool"], out["token"], 0.1)["events"] == []


def test_nothing_matching_blocks_until_the_timeout_even_from_the_start(xapi):
    t0 = time.monotonic()
    out = event_from(xapi, ["vm/OpaqueRef:NULL"], "", 0.4)
    assert out["events"] == [] and TOKEN.match(out["token"])
    assert time.monotonic() - t0 >= 0.35


# -- changes (a world of their own) ---------------------------------------------------------


@pytest.fixture(scope="module")
def cworld():
    """A world for the tests that change things (each works from its own token)."""
    with running_world() as w:
        yield w


@pytest.fixture(scope="module")
def fx(cworld, login):
    s = login(cworld.master_url())
    yield s.xenapi
    s.xenapi.session.logout()


def test_pool_add_to_other_config_is_a_pool_mod_with_the_key(fx):
    pool = fx.pool.get_all()[0]
    token = event_from(fx, ["pool"], "", 1.0)["token"]
    fx.pool.add_to_other_config(pool, "xo:barrier", "42")
    t0 = time.monotonic()
    out = event_from(fx, ["pool"], token, 10.0)
    assert time.monotonic() - t0 < 2
    (ev,) = out["events"]
    assert (ev["class"], ev["operation"], ev["ref"]) == ("pool", "mod", pool)
    assert ev["snapshot"]["other_config"]["xo:barrier"] == "42"
    assert ev["snapshot"] == fx.pool.get_record(pool)
    assert int(ev["id"]) > int(token.split(",")[0])
    assert out["token"] > token  # lexicographic, as designed


def test_several_changes_collapse_into_one_event(fx):
    vm = fx.VM.get_by_name_label("batch1")[0]
    token = event_from(fx, ["vm"], "", 1.0)["token"]
    for i in range(5):
        fx.VM.set_name_description(vm, f"d{i}")
    evs = event_from(fx, ["vm"], token, 5.0)["events"]
    assert [(e["operation"], e["ref"]) for e in evs] == [("mod", vm)]
    assert evs[0]["snapshot"]["name_description"] == "d4"


def test_a_blocked_call_wakes_on_a_change(fx, cworld, login):
    other = login(cworld.master_url()).xenapi
    pool = fx.pool.get_all()[0]
    token = event_from(fx, ["pool"], "", 1.0)["token"]
    result = {}

    def poll():
        t0 = time.monotonic()
        result["out"] = event_from(other, ["pool"], token, 20.0)
        result["elapsed"] = time.monotonic() - t0

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.3)
    fx.pool.set_name_description(pool, "woken")
    t.join(10)
    assert not t.is_alive()
    assert result["elapsed"] < 5
    assert [e["snapshot"]["name_description"] for e in result["out"]["events"]] == ["woken"]


def test_unsubscribed_changes_do_not_wake_or_appear(fx):
    vm = fx.VM.get_by_name_label("batch1")[0]
    token = event_from(fx, ["pool"], "", 1.0)["token"]
    fx.VM.set_name_description(vm, "not a pool change")
    out = event_from(fx, ["pool"], token, 0.3)
    assert out["events"] == []


def _finished_task(fx):
    """An Async task that has finished (it fails at once: the VM does not exist)."""
    task = fx.Async.VM.clean_shutdown("OpaqueRef:00000000-0000-4000-8000-00000000dead")
    deadline = time.monotonic() + 5
    while fx.task.get_status(task) == "pending":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return task


def test_add_and_del_of_a_task(fx):
    # (no task exists: from the start, nothing to report, so it blocks until the timeout)
    token = event_from(fx, ["task"], "", 0.05)["token"]
    task = fx.task.create("label", "desc")
    out = event_from(fx, ["task"], token, 5.0)
    (ev,) = out["events"]
    assert (ev["operation"], ev["ref"], ev["class"]) == ("add", task, "task")
    assert ev["snapshot"]["name_label"] == "label"
    assert ev["snapshot"]["status"] == "pending"
    # destroying a pending task only marks it (xapi_task.ml destroy): a mod, no del
    fx.task.destroy(task)
    out = event_from(fx, ["task"], out["token"], 5.0)
    (ev,) = out["events"]
    assert (ev["operation"], ev["ref"]) == ("mod", task)
    assert list(ev["snapshot"]["current_operations"].values()) == ["destroy"]
    # a finished task is removed at once: a del without snapshot
    done = _finished_task(fx)
    out = event_from(fx, ["task"], out["token"], 5.0)
    assert [e["ref"] for e in out["events"]] == [done]
    fx.task.destroy(done)
    out2 = event_from(fx, ["task"], out["token"], 5.0)
    (ev,) = out2["events"]
    assert (ev["operation"], ev["ref"]) == ("del", done)
    assert list(ev) == ["id", "timestamp", "class", "operation", "ref"]  # no snapshot


def test_created_and_destroyed_between_calls_is_not_reported(fx):
    """xapi_event.ml collect_events drops deletions of objects created after the token."""
    token = event_from(fx, ["task"], "", 0.05)["token"]
    fx.task.destroy(_finished_task(fx))
    out = event_from(fx, ["task"], token, 0.3)
    assert out["events"] == []


def test_object_subscription_sees_only_its_object(fx):
    vms = fx.VM.get_all()
    a, b = vms[0], vms[1]
    token = event_from(fx, ["vm"], "", 1.0)["token"]
    fx.VM.add_to_other_config(b, "x", "1")
    fx.VM.add_to_other_config(a, "x", "1")
    evs = event_from(fx, [f"vm/{a}"], token, 5.0)["events"]
    assert [e["ref"] for e in evs] == [a]


def test_logout_wakes_a_blocked_call_with_session_invalid(cworld, wire):
    url = cworld.master_url()
    ref = wire.login(url)
    token = wire.xml_ok(url, "event.from", ref, ["pool"], "", 1.0)["token"]
    result = {}

    def poll():
        t0 = time.monotonic()
        result["out"] = wire.xml(url, "event.from", ref, ["pool"], token, 20.0)
        result["elapsed"] = time.monotonic() - t0

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.3)
    wire.xml_ok(url, "session.logout", ref)
    t.join(10)
    assert not t.is_alive()
    assert result["elapsed"] < 5
    assert result["out"] == {"Status": "Failure", "ErrorDescription": ["SESSION_INVALID", ref]}
