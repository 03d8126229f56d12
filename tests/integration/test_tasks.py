"""Tasks and ``Async.`` (spec §5, §7, §14.4, §15.11-12), beyond the basics of
``test_wire_async.py``.

* which messages have an async mode (custom messages and create/destroy; never generated
  accessors, records, nor anything of session/event/task), and how the others fail;
* a simulated operation with a duration (``Tasks.operation_seconds``): the VM shows the
  operation in ``current_operations``, the task is cancellable and its progress moves (as
  events), ``task.cancel`` ends it ``cancelled`` with ``TASK_CANCELLED`` and the VM unchanged,
  a synchronous call keeps its meaning (same result, just slower) and can be cancelled
  through its transient task;
* ``task.cancel``/``task.destroy`` as ``xapi_task.ml`` does them;
* the GC pass (``db_gc_util.ml`` timeout_tasks) and its periodic thread.
"""

from __future__ import annotations

import threading
import time

import pytest
import XenAPI

from xapi_sim.datamodel import NO_ASYNC_CLASSES, Schema
from xapi_sim.tasks import Tasks
from xapi_sim.testing import running_world

NULL = "OpaqueRef:NULL"


def event_from(x, classes, token, timeout):
    return getattr(x.event, "from")(classes, token, timeout)


def wait_done(x, task, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = x.task.get_record(task)
        if rec["status"] != "pending":
            return rec
        time.sleep(0.01)
    raise AssertionError("task still pending")


@pytest.fixture(scope="module")
def tworld():
    with running_world() as w:
        yield w


@pytest.fixture(scope="module")
def tx(tworld, login):
    s = login(tworld.master_url())
    yield s.xenapi
    s.xenapi.session.logout()


# -- which calls have an async mode ----------------------------------------------------------


def _dummy(ty):
    """A well-typed placeholder for a parameter (refs are NULL: every call fails fast)."""
    k = ty.kind
    return {
        "string": "",
        "ref": NULL,
        "int": "0",
        "float": 0.0,
        "bool": False,
        "datetime": "19700101T00:00:00Z",
        "enum": None,
        "set": [],
        "map": {},
        "record": {},
    }.get(k, "")


def _expects_async(m) -> bool:
    """§5: custom messages and create/destroy, never for session/event/task/data_source/blob,
    nor for custom messages declared ``~flags:[`Session]`` (data/no_async.json)."""
    from xapi_sim.datamodel import NO_ASYNC

    if m.name in NO_ASYNC.get(m.cls, ()):
        return False
    return m.cls not in NO_ASYNC_CLASSES and (not m.implicit or m.name in ("create", "destroy"))


def test_every_async_capable_message_answers_a_task_and_no_other_does(tworld, wire):
    """Async.<Class>.<msg> for every message the server lists: a task ref at once, or the
    ``Fault`` XAPI gives a message without an async mode (after the session check)."""
    from xapi_sim.datamodel import ENUMS

    url = tworld.master_url()
    sref = wire.login(url)
    schema = Schema.for_release("dundee")
    listed = wire.xml(url, "system.listMethods")
    tasks, faults = [], 0
    for name in listed:
        if name == "system.listMethods":
            continue
        m = schema.message(name)
        assert m is not None, name
        params = []
        for p in m.params:
            v = _dummy(p.type)
            if p.type.kind == "enum":
                v = ENUMS[p.type.name][0]
            params.append(v)
        if m.takes_session:
            params[0] = sref
        out = wire.xml(url, "Async." + name, *params)
        if _expects_async(m) and not m.removed:
            assert out["Status"] == "Success", (name, out)
            assert out["Value"].startswith("OpaqueRef:"), name
            tasks.append(out["Value"])
        elif not m.removed and m.takes_session:
            assert out == {
                "Status": "Failure",
                "ErrorDescription": ["Fault", f"No async mode for this operation (rpc: {name})"],
            }, name
            faults += 1
    assert len(tasks) > 100 and faults > 500
    # every task is named after its call and ends (the NULL refs make them fail)
    x = XenAPI.Session(url)
    x._session = sref
    for t in tasks:
        rec = wait_done(x.xenapi, t)
        assert rec["name_label"].startswith("Async.")
    wire.xml_ok(url, "session.logout", sref)


def test_async_call_errors_before_the_task(tworld, wire):
    url = tworld.master_url()
    sref = wire.login(url)
    # unknown message: the name without the prefix, after the session check
    assert wire.xml_err(url, "Async.VM.frobnicate", sref, NULL) == [
        "MESSAGE_METHOD_UNKNOWN",
        "VM.frobnicate",
    ]
    assert wire.xml_err(url, "Async.VM.frobnicate", "OpaqueRef:bad", NULL) == [
        "SESSION_INVALID",
        "OpaqueRef:bad",
    ]
    # parameter count first, reported without the prefix
    assert wire.xml_err(url, "Async.VM.clone", sref, NULL) == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH",
        "VM.clone",
        "2",
        "1",
    ]
    # session before the async-mode check
    assert wire.xml_err(url, "Async.VM.get_record", "OpaqueRef:bad", NULL) == [
        "SESSION_INVALID",
        "OpaqueRef:bad",
    ]
    for name, args in (
        ("VM.get_record", [NULL]),
        ("pool.add_to_other_config", [NULL, "k", "v"]),
        ("VM.set_name_label", [NULL, "x"]),
        ("VM.get_all_records", []),
        ("session.logout", []),
        ("task.cancel", [NULL]),
        ("event.from", [["*"], "", 0.0]),
        ("task.create", ["a", "b"]),
    ):
        assert wire.xml_err(url, "Async." + name, sref, *args) == [
            "Fault",
            f"No async mode for this operation (rpc: {name})",
        ], name
    # the same over JSON-RPC v2
    out = wire.json(url, "Async.VM.get_record", [sref, NULL])
    assert out["error"] == {
        "code": 1,
        "message": "Fault",
        "data": ["No async mode for this operation (rpc: VM.get_record)"],
    }
    wire.xml_ok(url, "session.logout", sref)


def test_async_clone_and_destroy_results(tx):
    tmpl = tx.VM.get_by_name_label("CentOS 7")[0]
    task = tx.Async.VM.clone(tmpl, "cloned-by-task")
    rec = wait_done(tx, task)
    assert rec["status"] == "success" and rec["name_label"] == "Async.VM.clone"
    new = tx.VM.get_by_name_label("cloned-by-task")[0]
    assert rec["result"] == f"<value>{new}</value>"
    assert rec["type"] == "<none/>" and rec["error_info"] == []
    tx.task.destroy(task)
    # implicit destroy has an async mode too; its result is void
    task = tx.Async.VM.destroy(new)
    rec = wait_done(tx, task)
    assert (rec["status"], rec["name_label"], rec["result"]) == (
        "success",
        "Async.VM.destroy",
        "<value></value>",
    )
    assert tx.VM.get_by_name_label("cloned-by-task") == []
    tx.task.destroy(task)


# -- task.cancel / task.destroy on tasks no operation is bound to ----------------------------


def test_cancel_and_destroy_of_a_client_task(tx):
    task = tx.task.create("client task", "made by a client")
    rec = tx.task.get_record(task)
    assert (rec["status"], rec["allowed_operations"], rec["current_operations"]) == (
        "pending",
        [],
        {},
    )
    assert rec["resident_on"] == tx.pool.get_master(tx.pool.get_all()[0])
    assert rec["subtask_of"] == NULL and rec["finished"].value == "19700101T00:00:00Z"
    # cancel only records the request: nothing runs that could notice it
    tx.task.cancel(task)
    rec = tx.task.get_record(task)
    assert rec["status"] == "pending"
    assert list(rec["current_operations"].values()) == ["cancel"]
    # destroy of a pending task only marks it
    tx.task.destroy(task)
    rec = tx.task.get_record(task)
    assert rec["status"] == "pending"
    assert rec["current_operations"]["task"] == "destroy"
    # a second destroy adds the same map key again (Db.Task.add_to_current_operations)
    with pytest.raises(XenAPI.Failure) as e:
        tx.task.destroy(task)
    assert e.value.details == ["MAP_DUPLICATE_KEY", "task", "current_operations", task, "task"]
    with pytest.raises(XenAPI.Failure) as e:
        tx.task.cancel("OpaqueRef:00000000-0000-4000-8000-000000000000")
    assert e.value.details == [
        "HANDLE_INVALID",
        "task",
        "OpaqueRef:00000000-0000-4000-8000-000000000000",
    ]


def test_cancel_of_a_finished_task_changes_nothing_else(tx):
    vm = tx.VM.get_by_name_label("web2")[0]
    task = tx.Async.VM.start(vm, False, False)  # fails: already running
    rec = wait_done(tx, task)
    tx.task.cancel(task)
    after = tx.task.get_record(task)
    assert after["status"] == rec["status"] == "failure"
    assert after["error_info"] == rec["error_info"]
    assert list(after["current_operations"].values()) == ["cancel"]
    tx.task.destroy(task)


# -- simulated durations, progress and cancellation ------------------------------------------


@pytest.fixture
def slow_world():
    """A world whose VM power operations take 0.6 s in 6 steps."""
    with running_world() as w:
        tasks = Tasks.of(w.world)
        tasks.operation_seconds = 0.6
        tasks.progress_steps = 6
        yield w


def test_a_long_operation_progresses_through_events(slow_world, login):
    x = login(slow_world.master_url()).xenapi
    vm = x.VM.get_by_name_label("batch1")[0]
    token = event_from(x, ["task", "vm"], "", 0.05)["token"]
    t0 = time.monotonic()
    task = x.Async.VM.start(vm, False, False)
    assert time.monotonic() - t0 < 0.4  # the reply does not wait
    progress, vm_ops, allowed, status = [], [], [], "pending"
    deadline = time.monotonic() + 10
    while status == "pending" and time.monotonic() < deadline:
        out = event_from(x, ["task", "vm"], token, 5.0)
        token = out["token"]
        for ev in out["events"]:
            if ev["class"] == "task" and ev["ref"] == task:
                progress.append(ev["snapshot"]["progress"])
                allowed.append(ev["snapshot"]["allowed_operations"])
                status = ev["snapshot"]["status"]
            elif ev["class"] == "vm" and ev["ref"] == vm:
                vm_ops.append(ev["snapshot"]["current_operations"])
    assert status == "success"
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert len(set(progress)) >= 3  # intermediate steps were seen
    assert ["cancel"] in allowed and allowed[-1] == []
    assert {task: "start"} in vm_ops and vm_ops[-1] == {}
    assert x.VM.get_power_state(vm) == "Running"


def _wait_for_current_operations(x, vm):
    deadline = time.monotonic() + 5
    while not x.VM.get_current_operations(vm):
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_other_operations_wait_their_turn(slow_world, login):
    """xen-api Dundee: an operation the running one excludes (``is_allowed_concurrently``)
    is refused with ``OTHER_OPERATION_IN_PROGRESS ["VM.<op>", vm]``, which
    ``Helpers.retry_with_global_lock`` catches and retries: the call waits its turn and
    then meets the new state (here the VM is Halted)."""
    x = login(slow_world.master_url()).xenapi
    vm = x.VM.get_by_name_label("web1")[0]
    task = x.Async.VM.clean_shutdown(vm)
    _wait_for_current_operations(x, vm)
    assert x.VM.get_current_operations(vm) == {task: "clean_shutdown"}
    # only the hard operations may run alongside a clean shutdown
    assert x.VM.get_allowed_operations(vm) == ["hard_reboot", "hard_shutdown"]
    with pytest.raises(XenAPI.Failure) as e:
        x.VM.assert_operation_valid(vm, "clean_reboot")  # the check itself, at once
    assert e.value.details == ["OTHER_OPERATION_IN_PROGRESS", "VM.clean_shutdown", vm]
    with pytest.raises(XenAPI.Failure) as e:
        x.VM.clean_reboot(vm)  # waits, then sees Halted
    assert e.value.details == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    assert wait_done(x, task)["status"] == "success"
    assert x.VM.get_power_state(vm) == "Halted"
    assert x.VM.get_current_operations(vm) == {}


def test_hard_shutdown_cancels_a_clean_shutdown(slow_world, login):
    """message_forwarding.ml ``hard_shutdown``: allowed alongside a clean shutdown
    (``is_allowed_concurrently``), it cancels it (``cancel ~ops:[clean_shutdown; ...]``) and
    then halts the VM."""
    x = login(slow_world.master_url()).xenapi
    vm = x.VM.get_by_name_label("web1")[0]
    task = x.Async.VM.clean_shutdown(vm)
    _wait_for_current_operations(x, vm)
    assert x.VM.hard_shutdown(vm) == ""
    rec = wait_done(x, task)
    assert (rec["status"], rec["error_info"]) == ("cancelled", ["TASK_CANCELLED", task])
    assert x.VM.get_power_state(vm) == "Halted"
    assert x.VM.get_current_operations(vm) == {}
    assert "start" in x.VM.get_allowed_operations(vm)


def test_cancel_stops_the_operation_before_its_effect(slow_world, login):
    x = login(slow_world.master_url()).xenapi
    vm = x.VM.get_by_name_label("batch1")[0]
    task = x.Async.VM.start(vm, False, False)
    deadline = time.monotonic() + 5
    while x.task.get_allowed_operations(task) != ["cancel"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    token = event_from(x, ["task"], "", 0.05)["token"]
    x.task.cancel(task)
    rec = wait_done(x, task)
    assert rec["status"] == "cancelled"
    assert rec["error_info"] == ["TASK_CANCELLED", task]
    assert rec["progress"] == 1.0 and rec["allowed_operations"] == []
    assert rec["finished"].value != "19700101T00:00:00Z"
    # the VM never started and is free again
    assert x.VM.get_power_state(vm) == "Halted"
    assert x.VM.get_current_operations(vm) == {}
    assert "start" in x.VM.get_allowed_operations(vm)
    # the cancellation reached event.from watchers
    seen = [
        e["snapshot"]["status"]
        for e in event_from(x, ["task"], token, 2.0)["events"]
        if e["ref"] == task
    ]
    assert seen and seen[-1] == "cancelled"
    # and a fresh start works
    assert wait_done(x, x.Async.VM.start(vm, False, False))["status"] == "success"


def test_sync_calls_keep_their_meaning_and_can_be_cancelled(slow_world, login):
    x = login(slow_world.master_url()).xenapi
    other = login(slow_world.master_url()).xenapi
    vm = x.VM.get_by_name_label("db1")[0]
    t0 = time.monotonic()
    assert x.VM.clean_shutdown(vm) == ""  # same result, just slower
    assert time.monotonic() - t0 >= 0.55
    assert x.VM.get_power_state(vm) == "Halted"
    assert [
        r for r in x.task.get_all_records().values() if r["name_label"] == "VM.clean_shutdown"
    ] == []  # the transient task is gone
    # the transient task of a sync call is visible, cancellable, and the call fails
    result = {}

    def start():
        try:
            result["value"] = x.VM.start(vm, False, False)
        except XenAPI.Failure as f:
            result["error"] = f.details

    t = threading.Thread(target=start)
    t.start()
    deadline = time.monotonic() + 5
    transient = None
    while transient is None:
        assert time.monotonic() < deadline
        for ref, rec in other.task.get_all_records().items():
            if rec["name_label"] == "VM.start" and rec["allowed_operations"] == ["cancel"]:
                transient = ref
        time.sleep(0.01)
    other.task.cancel(transient)
    t.join(10)
    assert result == {"error": ["TASK_CANCELLED", transient]}
    assert x.VM.get_power_state(vm) == "Halted"
    assert transient not in other.task.get_all()


def test_a_failed_precheck_fails_at_once(slow_world, login):
    x = login(slow_world.master_url()).xenapi
    vm = x.VM.get_by_name_label("web2")[0]  # Running
    t0 = time.monotonic()
    with pytest.raises(XenAPI.Failure) as e:
        x.VM.start(vm, False, False)
    assert time.monotonic() - t0 < 0.4
    assert e.value.details == ["VM_BAD_POWER_STATE", vm, "halted", "running"]


# -- garbage collection ----------------------------------------------------------------------


def test_gc_times_out_finished_and_stale_pending_tasks(fresh_world, login):
    x = login(fresh_world.master_url()).xenapi
    tasks = Tasks.of(fresh_world.world)
    vm = x.VM.get_by_name_label("web2")[0]
    done = x.Async.VM.start(vm, False, False)
    wait_done(x, done)
    pending = x.task.create("pending", "")
    now = time.time()
    tasks.gc(now + 3000)
    assert {done, pending} <= set(x.task.get_all())
    tasks.gc(now + 3905)  # 65 min after it finished
    assert done not in x.task.get_all() and pending in x.task.get_all()
    # a pending task older than a day goes once its progress stood still for a pass
    tasks.gc(now + 86500)
    assert pending in x.task.get_all()  # first pass: probation
    tasks.gc(now + 86530)
    assert pending not in x.task.get_all()


def test_gc_removes_tasks_destroyed_while_pending_once_finished(fresh_world, login):
    x = login(fresh_world.master_url()).xenapi
    tasks = Tasks.of(fresh_world.world)
    tasks.operation_seconds = 0.3
    vm = x.VM.get_by_name_label("web1")[0]
    task = x.Async.VM.clean_shutdown(vm)
    x.task.destroy(task)  # still pending: only marked
    rec = wait_done(x, task)
    assert rec["status"] == "success"  # it still runs to its end
    assert "destroy" in rec["current_operations"].values()
    tasks.gc()
    assert task not in x.task.get_all()


def test_gc_keeps_at_most_max_tasks(fresh_world, login):
    x = login(fresh_world.master_url()).xenapi
    tasks = Tasks.of(fresh_world.world)
    vm = x.VM.get_by_name_label("web2")[0]
    done = [x.Async.VM.start(vm, False, False) for _ in range(4)]
    for t in done:
        wait_done(x, t)
    pending = [x.task.create(f"p{i}", "") for i in range(2)]
    tasks.max_tasks = 3
    tasks.gc()
    left = set(x.task.get_all())
    assert set(pending) <= left  # pending tasks are never chosen
    assert len(left & set(done)) == 1


def test_the_gc_thread_runs_periodically(fresh_world, login):
    """Simulator.start starts the GC pass; with the clock moved 65 minutes on, a finished
    task disappears by itself and event.from watchers see its del."""
    assert any(t.name == "task-gc" and t.is_alive() for t in threading.enumerate())
    x = login(fresh_world.master_url()).xenapi
    vm = x.VM.get_by_name_label("web2")[0]
    task = x.Async.VM.start(vm, False, False)
    wait_done(x, task)
    token = event_from(x, ["task"], "", 0.05)["token"]
    tasks = Tasks.of(fresh_world.world)
    fresh_world.world.clock.advance(3901)  # the world's one clock
    tasks.gc_interval = 0.05
    out = event_from(x, ["task"], token, 5.0)
    assert [(e["operation"], e["ref"]) for e in out["events"]] == [("del", task)]


def test_stop_ends_the_gc_thread():
    with running_world() as w:
        tasks = Tasks.of(w.world)
        assert tasks._gc_stop is not None
    assert tasks._gc_stop is None


def test_a_failing_gc_pass_is_logged_with_its_traceback(caplog):
    """The GC thread never dies, and never swallows an error silently."""
    import logging

    from xapi_sim import scenario

    world = scenario.build(scenario.default(), seed=3)
    tasks = Tasks.of(world)

    def broken(now=None):
        raise RuntimeError("gc exploded")

    tasks.gc = broken
    tasks.gc_interval = 0.02
    with caplog.at_level(logging.ERROR, logger="xapi_sim"):
        tasks.start_gc()
        deadline = time.monotonic() + 5
        while "task GC pass failed" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.02)
        tasks.stop_gc()
    rec = [r for r in caplog.records if r.getMessage() == "task GC pass failed"]
    assert rec and rec[0].exc_info and "gc exploded" in str(rec[0].exc_info[1])
