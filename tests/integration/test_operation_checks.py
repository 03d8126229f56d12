"""One check per class, through XenAPI: a refused call's error is the class check's error,
and ``allowed_operations`` is exactly the set of operations that check allows (xen-api
Dundee ``xapi_vm_lifecycle.ml`` / ``xapi_host_helpers.ml`` / ``xapi_pool_helpers.ml``;
``with_vm_operation`` in ``xapi_vm_helpers.ml``, ``Helpers.retry_with_global_lock``)."""

from __future__ import annotations

import random
import threading
import time

import pytest
import XenAPI

from xapi_sim.checks import vm as vm_checks
from xapi_sim.classes.common import OperationPolicy
from xapi_sim.tasks import Tasks


def details(fn, *args):
    try:
        fn(*args)
    except XenAPI.Failure as f:
        return f.details
    return None


def check(x, vm, op):
    """``VM.assert_operation_valid``: the check's error for ``op``, or None."""
    return details(x.VM.assert_operation_valid, vm, op)


@pytest.fixture
def lab(fresh_world, login):
    x = login(fresh_world.master_url()).xenapi
    vms = {r["name_label"]: ref for ref, r in x.VM.get_all_records().items()}
    return fresh_world, x, vms


def refresh_all(x):
    for vm in x.VM.get_all():
        x.VM.update_allowed_operations(vm)


def test_allowed_operations_are_what_the_check_allows(lab):
    w, x, vms = lab
    refresh_all(x)
    seen = set()
    for vm, rec in x.VM.get_all_records().items():
        allowed = rec["allowed_operations"]
        seen.add(tuple(allowed))
        for op in vm_checks.UPDATE_ORDER:
            assert (op in allowed) is (check(x, vm, op) is None), (rec["name_label"], op)
    assert len(seen) >= 5  # running, halted, suspended VMs, templates, dom0 differ


# (label, call, operation) for calls whose first check is the VM's operation check
CALLS = {
    "start": lambda x, vm: x.VM.start(vm, False, False),
    "clean_shutdown": lambda x, vm: x.VM.clean_shutdown(vm),
    "hard_shutdown": lambda x, vm: x.VM.hard_shutdown(vm),
    "clean_reboot": lambda x, vm: x.VM.clean_reboot(vm),
    "hard_reboot": lambda x, vm: x.VM.hard_reboot(vm),
    "suspend": lambda x, vm: x.VM.suspend(vm),
    "resume": lambda x, vm: x.VM.resume(vm, False, False),
    "pause": lambda x, vm: x.VM.pause(vm),
    "unpause": lambda x, vm: x.VM.unpause(vm),
    "clone": lambda x, vm: x.VM.clone(vm, "c"),
    "snapshot": lambda x, vm: x.VM.snapshot(vm, "s"),
    "checkpoint": lambda x, vm: x.VM.checkpoint(vm, "cp"),
    "destroy": lambda x, vm: x.VM.destroy(vm),
    "make_into_template": lambda x, vm: x.VM.set_is_a_template(vm, True),
    "changing_VCPUs": lambda x, vm: x.VM.set_VCPUs_max(vm, "2"),
    "changing_memory_limits": lambda x, vm: x.VM.set_memory_limits(vm, "1", "2", "2", "2"),
}


@pytest.mark.parametrize("name", ["web1", "batch1", "legacy1", "template", "dom0"])
def test_every_refused_call_gives_the_checks_error(lab, name):
    w, x, vms = lab
    if name == "template":
        vm = vms["CentOS 7"]
    elif name == "dom0":
        vm = next(r for r, rec in x.VM.get_all_records().items() if rec["is_control_domain"])
    else:
        vm = vms[name]
    x.VM.update_allowed_operations(vm)
    refused = 0
    for op, call in CALLS.items():
        expected = check(x, vm, op)
        if expected is None:
            continue
        refused += 1
        before = x.VM.get_record(vm)
        assert details(call, x, vm) == expected, op
        assert x.VM.get_record(vm) == before  # a refused call changes nothing
        if op in vm_checks.UPDATE_ORDER:
            assert op not in before["allowed_operations"]
    assert refused >= 5


def test_dundee_specific_answers(lab):
    w, x, vms = lab
    legacy1, web1 = vms["legacy1"], vms["web1"]
    assert details(x.VM.hard_reboot, legacy1) == [
        "VM_BAD_POWER_STATE",
        legacy1,
        "paused, running",
        "suspended",
    ]
    assert details(x.VM.clone, legacy1, "c") == [
        "VM_BAD_POWER_STATE",
        legacy1,
        "halted",
        "suspended",
    ]
    tmpl = vms["CentOS 7"]
    assert details(x.VM.destroy, tmpl) == ["VM_IS_TEMPLATE", tmpl, "destroy"]
    assert details(x.VM.snapshot, tmpl, "s") == ["VM_IS_TEMPLATE", tmpl, "snapshot"]
    x.VM.pause(web1)
    assert details(x.VM.pool_migrate, web1, x.VM.get_resident_on(web1), {}) == [
        "VM_BAD_POWER_STATE",
        web1,
        "running",
        "paused",
    ]
    x.VM.add_to_blocked_operations(web1, "unpause", "maintenance window")
    assert details(x.VM.unpause, web1) == ["OPERATION_BLOCKED", web1, "maintenance window"]
    assert details(x.VM.assert_operation_valid, web1, "changing_NVRAM")[0] == "INTERNAL_ERROR"
    # a clone of a default template is a template that may be destroyed
    mine = x.VM.clone(tmpl, "mine")
    assert "destroy" in x.VM.get_allowed_operations(mine)
    x.VM.destroy(mine)
    # snapshots: revert, clone, copy, export, destroy
    snap = x.VM.snapshot(vms["batch1"], "snap")
    assert set(x.VM.get_allowed_operations(snap)) == {
        "destroy",
        "export",
        "revert",
        "clone",
        "copy",
    }
    assert details(x.VM.start, snap, False, False) == ["VM_IS_SNAPSHOT", snap, "start"]


def test_allowed_operations_follow_each_operation(lab):
    w, x, vms = lab
    vm = vms["batch1"]
    x.VM.start(vm, False, False)
    running = x.VM.get_allowed_operations(vm)
    assert running == [
        "changing_dynamic_range",
        "migrate_send",
        "pool_migrate",
        "changing_VCPUs_live",
        "suspend",
        "hard_reboot",
        "hard_shutdown",
        "clean_reboot",
        "clean_shutdown",
        "pause",
        "checkpoint",
        "snapshot",
    ]
    assert x.VM.get_current_operations(vm) == {}
    x.VM.suspend(vm)
    assert "resume" in x.VM.get_allowed_operations(vm)
    x.VM.hard_shutdown(vm)
    assert "start" in x.VM.get_allowed_operations(vm)


def test_host_allowed_operations_and_refusals(lab):
    w, x, vms = lab
    h = w.host("xs3").ref
    assert details(x.host.reboot, h) == ["HOST_NOT_DISABLED"]
    x.host.disable(h)
    assert x.host.get_allowed_operations(h) == [
        "vm_migrate",
        "provision",
        "vm_resume",
        "reboot",
        "evacuate",
        "vm_start",
        "shutdown",
    ]
    x.host.enable(h)
    assert x.host.get_allowed_operations(h) == [
        "vm_migrate",
        "provision",
        "vm_resume",
        "evacuate",
        "vm_start",
    ]
    assert x.host.get_current_operations(h) == {}


def test_evacuation_plan_carries_the_pool_migrate_check(lab):
    w, x, vms = lab
    web2, xs2 = vms["web2"], w.host("xs2").ref
    x.VM.pause(web2)
    assert x.host.get_vms_which_prevent_evacuation(xs2) == {
        web2: ["VM_BAD_POWER_STATE", web2, "running", "paused"]
    }
    x.host.disable(xs2)
    assert details(x.host.evacuate, xs2) == ["VM_BAD_POWER_STATE", web2, "running", "paused"]
    assert x.host.get_current_operations(xs2) == {}
    x.VM.unpause(web2)
    x.host.evacuate(xs2)
    assert x.VM.get_resident_on(web2) != xs2


def test_an_ejected_host_starts_a_pool_that_allows_ha_enable(lab, login):
    w, x, vms = lab
    xs3 = w.host("xs3")
    x.VM.hard_shutdown(vms["db1"])
    x.pool.eject(xs3.ref)
    deadline = time.monotonic() + 10
    while True:
        try:
            y = login(xs3.url).xenapi
            break
        except Exception:  # noqa: BLE001 -- the ejected host restarts
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert y.pool.get_allowed_operations(y.pool.get_all()[0]) == ["ha_enable"]
    for vm in y.VM.get_all():
        for op in vm_checks.UPDATE_ORDER:
            assert (op in y.VM.get_allowed_operations(vm)) is (check(y, vm, op) is None), op


def test_guests_without_tools_follow_dundees_feature_rules(lab):
    w, x, vms = lab
    web1, db1 = vms["web1"], vms["db1"]  # HVM and PV, both running
    for vm in (web1, db1):
        x.sim.vm_set_pv_drivers(vm, False)
    allowed = x.VM.get_allowed_operations(web1)
    for op in (
        "clean_shutdown",
        "clean_reboot",
        "suspend",
        "checkpoint",
        "pool_migrate",
        "migrate_send",
        "changing_VCPUs_live",
    ):
        assert op not in allowed
    assert "hard_shutdown" in allowed
    assert details(x.VM.clean_shutdown, web1) == ["VM_LACKS_FEATURE_SHUTDOWN", web1]
    dest = w.host("xs2").ref
    assert details(x.VM.pool_migrate, web1, dest, {}) == ["VM_LACKS_FEATURE_SUSPEND", web1]
    x.VM.pool_migrate(web1, dest, {"force": "true"})  # not strict when forced
    assert x.VM.get_resident_on(web1) == dest
    x.VM.clean_shutdown(db1)  # a PV guest needs no drivers


# -- waiting for other operations (retry_with_global_lock) ----------------------------------


@pytest.fixture
def slow_lab(lab):
    w, x, vms = lab
    Tasks.of(w.world).operation_seconds = 0.6
    Tasks.of(w.world).progress_steps = 3
    return lab


def _busy(x, vm):
    deadline = time.monotonic() + 5
    while not x.VM.get_current_operations(vm):
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_waiting_call_gives_up_after_the_policys_max_wait(slow_lab):
    w, x, vms = slow_lab
    OperationPolicy.of(w.world).max_wait = 0.1
    vm = vms["web1"]
    task = x.Async.VM.clean_shutdown(vm)
    _busy(x, vm)
    t0 = time.monotonic()
    assert details(x.VM.suspend, vm) == ["OTHER_OPERATION_IN_PROGRESS", "VM.clean_shutdown", vm]
    assert time.monotonic() - t0 < 0.5
    while x.task.get_status(task) == "pending":
        time.sleep(0.02)


def test_a_waiting_call_can_be_cancelled(slow_lab):
    w, x, vms = slow_lab
    Tasks.of(w.world).operation_seconds = 3.0
    vm = vms["web2"]
    first = x.Async.VM.clean_shutdown(vm)
    _busy(x, vm)
    waiter = x.Async.VM.suspend(vm)
    time.sleep(0.2)
    assert x.task.get_status(waiter) == "pending"
    x.task.cancel(waiter)
    deadline = time.monotonic() + 5
    while x.task.get_status(waiter) == "pending":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert x.task.get_error_info(waiter) == ["TASK_CANCELLED", waiter]
    x.task.cancel(first)


# -- many threads ----------------------------------------------------------------------------

OPS = (
    "start",
    "clean_shutdown",
    "hard_shutdown",
    "clean_reboot",
    "hard_reboot",
    "suspend",
    "resume",
    "pause",
    "unpause",
    "snapshot",
)


def _hammer(w, login, seconds, threads=8):
    names = ["web1", "web2", "batch1", "legacy1"]
    errors, codes = [], set()

    def worker(seed):
        rnd = random.Random(seed)
        x = login(w.master_url()).xenapi
        vms = {r["name_label"]: ref for ref, r in x.VM.get_all_records().items()}
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            vm, op = vms[rnd.choice(names)], rnd.choice(OPS)
            try:
                CALLS[op](x, vm)
            except XenAPI.Failure as f:
                codes.add(f.details[0])
            except Exception as e:  # noqa: BLE001 -- anything else is a bug
                errors.append(repr(e))

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(seconds + 60)
    assert not any(t.is_alive() for t in ts)
    assert errors == []
    return codes


def _consistent(x):
    for vm, rec in x.VM.get_all_records().items():
        if rec["is_a_template"] or rec["is_control_domain"]:
            continue  # never operated on: they keep what the world was built with
        assert rec["current_operations"] == {}, rec["name_label"]
        for op in vm_checks.UPDATE_ORDER:
            assert (op in rec["allowed_operations"]) is (check(x, vm, op) is None), (
                rec["name_label"],
                op,
            )


def test_many_threads_instant_operations(fresh_world, login):
    codes = _hammer(fresh_world, login, seconds=2.0)
    assert codes <= {
        "VM_BAD_POWER_STATE",
        "OTHER_OPERATION_IN_PROGRESS",
        "NO_HOSTS_AVAILABLE",
        "HOST_NOT_ENOUGH_FREE_MEMORY",
        "VM_INCOMPATIBLE_WITH_THIS_HOST",
    }
    _consistent(login(fresh_world.master_url()).xenapi)


def test_many_threads_timed_operations(fresh_world, login):
    Tasks.of(fresh_world.world).operation_seconds = 0.05
    Tasks.of(fresh_world.world).progress_steps = 2
    OperationPolicy.of(fresh_world.world).max_wait = 5.0
    codes = _hammer(fresh_world, login, seconds=2.0)
    assert codes <= {
        "VM_BAD_POWER_STATE",
        "OTHER_OPERATION_IN_PROGRESS",
        "NO_HOSTS_AVAILABLE",
        "HOST_NOT_ENOUGH_FREE_MEMORY",
        "VM_INCOMPATIBLE_WITH_THIS_HOST",
        "TASK_CANCELLED",
    }
    _consistent(login(fresh_world.master_url()).xenapi)


def test_operations_of_tasks_that_no_longer_exist_do_not_block(lab):
    """After a restart from --state-dir a journal may hold an operation's mark, but tasks
    are not persisted: like xapi's start (``Helpers.cancel_tasks``), an entry whose task
    does not exist is dropped instead of being waited for."""
    w, x, vms = lab
    from xapi_sim.classes.common import refresh_all_allowed

    db = w.world.pools[0].db
    web1, web2 = vms["web1"], vms["web2"]
    with db.lock:
        db.set("VM", web1, "current_operations", {"OpaqueRef:gone": "clean_shutdown"})
        db.set("VM", web2, "current_operations", {"OpaqueRef:gone2": "suspend"})
    OperationPolicy.of(w.world).max_wait = 30.0
    t0 = time.monotonic()
    x.VM.clean_reboot(web1)
    assert time.monotonic() - t0 < 5
    assert x.VM.get_current_operations(web1) == {}
    assert check(x, web2, "clean_reboot") == [
        "OTHER_OPERATION_IN_PROGRESS",
        "VM.suspend",
        web2,
    ]  # the check itself reports it
    refresh_all_allowed(w.world, db)
    assert x.VM.get_current_operations(web2) == {}
    assert "clean_reboot" in x.VM.get_allowed_operations(web2)
