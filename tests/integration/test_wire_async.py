"""``Async.`` calls of implemented VM operations and their tasks (spec §7, §14.4, §15.11-12).

The reply is a task ref at once; the task is named with the full wire name, runs on the
coordinator, and ends ``success`` with ``result`` an XML-RPC fragment (``<value></value>`` for
void) or ``failure`` with ``error_info = [CODE, params...]``; clients can follow it through
``event.from``. Only operations the simulator implements are exercised (VM.start,
VM.clean_shutdown).
"""

from __future__ import annotations

import re
import time

import pytest
import XenAPI

from xapi_sim.testing import running_world

STAMP = re.compile(r"^\d{8}T\d\d:\d\d:\d\dZ$")


@pytest.fixture(scope="module")
def aworld():
    with running_world() as w:
        yield w


@pytest.fixture(scope="module")
def ax(aworld, login):
    s = login(aworld.master_url())
    yield s.xenapi
    s.xenapi.session.logout()


def wait(ax, task, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = ax.task.get_record(task)
        if rec["status"] != "pending":
            return rec
        time.sleep(0.02)
    raise AssertionError("task still pending")


def event_from(x, classes, token, timeout):
    return getattr(x.event, "from")(classes, token, timeout)


def test_async_start_returns_a_task_that_succeeds(ax):
    vm = ax.VM.get_by_name_label("batch1")[0]
    master = ax.pool.get_master(ax.pool.get_all()[0])
    task = ax.Async.VM.start(vm, False, False)
    assert task.startswith("OpaqueRef:") and task in ax.task.get_all()
    rec = wait(ax, task)
    assert rec["name_label"] == "Async.VM.start"
    assert rec["name_description"] == ""
    assert rec["status"] == "success"
    assert rec["progress"] == 1.0
    assert rec["result"] == "<value></value>"
    assert rec["error_info"] == []
    assert rec["resident_on"] == master
    assert rec["type"] == "<none/>"
    assert rec["allowed_operations"] == []
    assert STAMP.match(rec["created"].value) and STAMP.match(rec["finished"].value)
    assert rec["finished"].value != "19700101T00:00:00Z"
    assert ax.VM.get_power_state(vm) == "Running"
    assert ax.task.get_by_uuid(rec["uuid"]) == task
    ax.task.destroy(task)
    with pytest.raises(XenAPI.Failure) as e:
        ax.task.get_record(task)
    assert e.value.details == ["HANDLE_INVALID", "task", task]


def test_async_failure_is_recorded_in_the_task(ax):
    vm = ax.VM.get_by_name_label("web2")[0]  # Running
    task = ax.Async.VM.start(vm, False, False)
    rec = wait(ax, task)
    assert rec["status"] == "failure"
    assert rec["error_info"] == ["VM_BAD_POWER_STATE", vm, "halted", "running"]
    assert rec["result"] == ""
    assert rec["progress"] == 1.0
    assert ax.VM.get_power_state(vm) == "Running"


def test_async_with_a_bad_ref_fails_inside_the_task(ax):
    bad = "OpaqueRef:00000000-0000-4000-8000-000000000000"
    task = ax.Async.VM.clean_shutdown(bad)
    rec = wait(ax, task)
    assert rec["status"] == "failure"
    assert rec["error_info"] == ["HANDLE_INVALID", "VM", bad]


def test_task_result_is_escaped_on_the_xml_wire(aworld, wire, ax):
    vm = ax.VM.get_by_name_label("db1")[0]
    ref = wire.login(aworld.master_url())
    task = wire.xml_ok(aworld.master_url(), "Async.VM.clean_shutdown", ref, vm)
    wait(ax, task)
    r = wire.xml_reply(aworld.master_url(), "task.get_result", ref, task)
    assert (
        b"<member><name>Value</name><value>&lt;value&gt;&lt;/value&gt;</value></member>" in r.body
    )
    wire.xml_ok(aworld.master_url(), "session.logout", ref)


def test_async_over_json(aworld, wire, ax):
    vm = ax.VM.get_by_name_label("legacy1")[0]
    ref = wire.login(aworld.master_url())
    out = wire.json(aworld.master_url(), "Async.VM.start", [ref, vm, False, False])
    task = out["result"]
    assert set(out) == {"jsonrpc", "result", "id"} and task.startswith("OpaqueRef:")
    rec = wait(ax, task)
    assert rec["name_label"] == "Async.VM.start" and rec["status"] in ("success", "failure")
    got = wire.json(aworld.master_url(), "task.get_record", [ref, task])["result"]
    assert got["progress"] == 1.0 and isinstance(got["error_info"], list)
    wire.xml_ok(aworld.master_url(), "session.logout", ref)


def test_a_task_can_be_followed_through_event_from(ax):
    """As Xen Orchestra does: find the task's add, then wait for it to leave pending."""
    vm = ax.VM.get_by_name_label("web1")[0]
    token = event_from(ax, ["task"], "", 0.05)["token"]
    task = ax.Async.VM.clean_shutdown(vm)
    seen, status = [], "pending"
    deadline = time.monotonic() + 10
    while status == "pending" and time.monotonic() < deadline:
        out = event_from(ax, ["task"], token, 5.0)
        token = out["token"]
        for ev in out["events"]:
            if ev["ref"] == task:
                seen.append(ev["operation"])
                status = ev["snapshot"]["status"]
    assert status == "success"
    assert seen[0] == "add"
    assert ax.VM.get_power_state(vm) == "Halted"


def test_sync_calls_leave_no_task_behind(ax):
    vm = ax.VM.get_by_name_label("web1")[0]
    before = set(ax.task.get_all())
    assert ax.VM.start(vm, False, False) == ""
    assert ax.VM.get_power_state(vm) == "Running"
    assert set(ax.task.get_all()) == before
