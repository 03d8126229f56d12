"""vApps over the XenAPI package and ``xe``: ``VM.set_appliance`` and the VM_appliance
power operations (``xapi_vm_appliance.ml``, ``xapi_vm_appliance_lifecycle.ml``,
``message_forwarding.ml`` ``with_vm_appliance_operation``). Delays are waited on the
world's clock, which the tests move forward instead of sleeping."""

from __future__ import annotations

import threading
import time

import XenAPI
from session_kit import failure, logged_in
from xe_kit import xe_runner

WORLD = """
[[host]]
name_label = "h1"
cpu = "Haswell"
[[vm]]
name_label = "db"
[[vm]]
name_label = "app"
[[vm]]
name_label = "web"
[[vm]]
name_label = "outside"
[[vm]]
name_label = "sleeper"
power_state = "Suspended"
"""


def _wait(pred, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def _vapp(x, names, orders=None):
    """An appliance holding the named VMs, each with its ``order``."""
    ref = x.VM_appliance.create({"name_label": "vapp", "name_description": ""})
    vms = {}
    for i, n in enumerate(names):
        vm = vms[n] = x.VM.get_by_name_label(n)[0]
        x.VM.set_appliance(vm, ref)
        x.VM.set_order(vm, str((orders or {}).get(n, i)))
    return ref, vms


def _power(x, vms):
    return {n: x.VM.get_power_state(v) for n, v in vms.items()}


def test_set_appliance_refreshes_both_appliances_and_refuses_templates():
    with logged_in(WORLD) as (w, s):
        x = s.xenapi
        a = x.VM_appliance.create({"name_label": "a", "name_description": ""})
        b = x.VM_appliance.create({"name_label": "b", "name_description": ""})
        assert x.VM_appliance.get_allowed_operations(a) == []
        assert failure(x.VM_appliance.start, a, False) == [
            "OPERATION_NOT_ALLOWED",
            "Appliance has no VMs.",
        ]
        vm = x.VM.get_by_name_label("db")[0]
        x.VM.set_appliance(vm, a)
        assert x.VM_appliance.get_VMs(a) == [vm]
        assert x.VM_appliance.get_allowed_operations(a) == ["start"]
        # moved: the old appliance is refreshed too
        x.VM.set_appliance(vm, b)
        assert x.VM_appliance.get_allowed_operations(a) == []
        assert x.VM_appliance.get_allowed_operations(b) == ["start"]
        # a VM in an appliance cannot become a template
        assert failure(x.VM.set_is_a_template, vm, True) == [
            "VM_IS_PART_OF_AN_APPLIANCE",
            vm,
            b,
        ]
        x.VM.set_appliance(vm, "OpaqueRef:NULL")
        assert x.VM_appliance.get_allowed_operations(b) == []
        template = next(
            r
            for r, rec in x.VM.get_all_records().items()
            if rec["is_a_template"] and not rec["is_a_snapshot"]
        )
        dom0 = next(r for r, rec in x.VM.get_all_records().items() if rec["is_control_domain"])
        snap = x.VM.snapshot(vm, "snap")
        for bad in (template, dom0, snap):
            assert failure(x.VM.set_appliance, bad, a) == [
                "OPERATION_NOT_ALLOWED",
                "Control domains, templates and snapshots cannot be assigned to appliances.",
            ]
        assert x.VM_appliance.get_VMs(a) == []


def test_start_goes_by_order_and_waits_each_vms_start_delay():
    with logged_in(WORLD) as (w, s):
        x = s.xenapi
        ref, vms = _vapp(x, ["db", "app", "web"], {"db": 0, "app": 0, "web": 5})
        x.VM.set_start_delay(vms["db"], "30")
        task = x.Async.VM_appliance.start(ref, False)
        # the first group (order 0) starts together; db's VM.start then waits 30 s
        _wait(lambda: _power(x, vms)["db"] == "Running" and _power(x, vms)["app"] == "Running")
        time.sleep(0.2)
        assert _power(x, vms)["web"] == "Halted"
        assert x.task.get_status(task) == "pending"
        assert x.VM_appliance.get_current_operations(ref) == {task: "start"}
        assert x.VM_appliance.get_allowed_operations(ref) == []
        assert list(x.VM.get_current_operations(vms["db"]).values()) == ["start"]
        w.world.clock.advance(30)
        _wait(lambda: x.task.get_status(task) != "pending")
        assert x.task.get_status(task) == "success"
        assert _power(x, vms) == {"db": "Running", "app": "Running", "web": "Running"}
        assert x.VM_appliance.get_current_operations(ref) == {}
        assert x.VM_appliance.get_allowed_operations(ref) == [
            "clean_shutdown",
            "hard_shutdown",
            "shutdown",
        ]
        # one Async.VM.start subtask per VM
        subs = [x.task.get_record(t) for t in x.task.get_subtasks(task)]
        assert sorted(r["name_label"] for r in subs) == ["Async.VM.start"] * 3
        assert all(r["status"] == "success" for r in subs)
        assert failure(x.VM_appliance.start, ref, False) == [
            "OPERATION_NOT_ALLOWED",
            "There are no halted VMs in this appliance.",
        ]


def test_shutdown_goes_by_descending_order_with_shutdown_delay():
    with logged_in(WORLD) as (w, s):
        x = s.xenapi
        ref, vms = _vapp(x, ["db", "app", "web"], {"db": 0, "app": 1, "web": 2})
        x.VM_appliance.start(ref, False)
        x.VM.set_shutdown_delay(vms["web"], "60")
        task = x.Async.VM_appliance.clean_shutdown(ref)
        _wait(lambda: _power(x, vms)["web"] == "Halted")
        time.sleep(0.2)
        assert _power(x, vms) == {"db": "Running", "app": "Running", "web": "Halted"}
        w.world.clock.advance(60)
        _wait(lambda: x.task.get_status(task) != "pending")
        assert x.task.get_status(task) == "success"
        assert set(_power(x, vms).values()) == {"Halted"}
        assert failure(x.VM_appliance.hard_shutdown, ref) == [
            "OPERATION_NOT_ALLOWED",
            "All VMs in this appliance are halted.",
        ]


def test_failures_are_collected_and_the_rest_stays_done():
    with logged_in(WORLD) as (w, s):
        x = s.xenapi
        ref, vms = _vapp(x, ["db", "app", "web"])
        x.VM.start(vms["app"], False, False)
        # paused: the Running VM is not in the target state, and VM.start refuses it
        assert failure(x.VM_appliance.start, ref, True) == [
            "OPERATION_PARTIALLY_FAILED",
            "VM_appliance.start",
            vms["app"],
        ]
        assert _power(x, vms) == {"db": "Paused", "app": "Running", "web": "Paused"}
        assert x.VM_appliance.get_current_operations(ref) == {}
        # clean_shutdown needs a Running VM; a Suspended one makes it fail partially
        sleeper = x.VM.get_by_name_label("sleeper")[0]
        x.VM.set_appliance(sleeper, ref)
        assert failure(x.VM_appliance.clean_shutdown, ref) == [
            "OPERATION_PARTIALLY_FAILED",
            "VM_appliance.clean_shutdown",
            vms["db"],
            vms["web"],
            sleeper,
        ]
        assert x.VM.get_power_state(vms["app"]) == "Halted"
        assert failure(x.VM_appliance.clean_shutdown, ref) == [
            "OPERATION_NOT_ALLOWED",
            "There are no running VMs in this appliance.",
        ]
        # shutdown (clean, else hard) stops Paused VMs and drops a suspend image
        x.VM_appliance.shutdown(ref)
        assert set(_power(x, vms).values()) == {"Halted"}
        assert x.VM.get_power_state(sleeper) == "Halted"
        assert x.VM_appliance.get_allowed_operations(ref) == ["start"]


def test_one_appliance_operation_at_a_time():
    """A second operation waits for the first (``retry_with_global_lock``), then is checked
    against the new states."""
    with logged_in(WORLD) as (w, s):
        x = s.xenapi
        ref, vms = _vapp(x, ["db", "app"])
        x.VM.set_start_delay(vms["app"], "20")
        first = x.Async.VM_appliance.start(ref, False)
        _wait(lambda: x.VM_appliance.get_current_operations(ref) == {first: "start"})
        results: list = []

        def second():
            own = XenAPI.Session(w.master_url())  # a session (connection) per thread
            own.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
            try:
                results.append(own.xenapi.VM_appliance.start(ref, False))
            except XenAPI.Failure as e:
                results.append(e.details)
            finally:
                own.xenapi.session.logout()

        threads = [threading.Thread(target=second) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        assert results == []
        w.world.clock.advance(40)
        for t in threads:
            t.join(20)
        assert x.task.get_status(first) == "success"
        assert (
            results == [["OPERATION_NOT_ALLOWED", "There are no halted VMs in this appliance."]] * 4
        )
        assert x.VM_appliance.get_current_operations(ref) == {}


def test_xe_appliance_commands(tmp_path):
    with logged_in(WORLD) as (w, s):
        x = s.xenapi
        run = xe_runner(w.host("h1"), tmp_path)

        def xe(*args):
            r = run(*args)
            return r.returncode, r.stdout, r.stderr

        rc, out, err = xe("appliance-create", "name-label=shop", "name-description=a vApp")
        assert (rc, err) == (0, "")
        uuid = out.strip()
        ref = x.VM_appliance.get_by_uuid(uuid)
        assert x.VM_appliance.get_name_description(ref) == "a vApp"
        db = x.VM.get_by_name_label("db")[0]
        db_uuid = x.VM.get_uuid(db)
        assert xe("vm-param-set", f"uuid={db_uuid}", f"appliance={uuid}")[0] == 0
        rc, out, _ = xe("appliance-list", f"uuid={uuid}")
        assert rc == 0
        assert f"VMs (SRO): {db_uuid}" in out
        assert "allowed-operations (SRO): start" in out
        assert xe("appliance-start", f"uuid={uuid}", "paused=true")[:2] == (0, "")
        assert x.VM.get_power_state(db) == "Paused"
        rc, out, _ = xe("appliance-param-get", f"uuid={uuid}", "param-name=allowed-operations")
        assert (rc, out.strip()) == (0, "hard_shutdown; shutdown")
        # no running VM: a clean shutdown is refused, force=true is a hard one
        rc, out, err = xe("appliance-shutdown", f"uuid={uuid}")
        assert rc == 1
        assert "There are no running VMs in this appliance." in err
        assert xe("appliance-shutdown", f"uuid={uuid}", "force=true")[:2] == (0, "")
        assert x.VM.get_power_state(db) == "Halted"
        assert xe("appliance-param-set", f"uuid={uuid}", "name-label=shop2")[0] == 0
        assert x.VM_appliance.get_name_label(ref) == "shop2"
        assert xe("appliance-start", f"uuid={uuid}", "paused=maybe")[0] == 1
        assert xe("appliance-destroy", f"uuid={uuid}")[:2] == (0, "")
        assert x.VM_appliance.get_all() == []


def test_a_vms_power_change_refreshes_its_appliance():
    """``Xapi_vm_lifecycle.update_allowed_operations`` refreshes the VM's appliance too; a
    toolstack restart (``Cancel_tasks``, which recomputes it) keeps the same list."""
    with logged_in(WORLD) as (w, s):
        x = s.xenapi
        ref, vms = _vapp(x, ["db"])
        x.VM.start(vms["db"], False, False)
        assert x.VM_appliance.get_allowed_operations(ref) == [
            "clean_shutdown",
            "hard_shutdown",
            "shutdown",
        ]
        x.VM.pause(vms["db"])
        assert x.VM_appliance.get_allowed_operations(ref) == ["hard_shutdown", "shutdown"]
        x.VM_appliance.set_name_label(ref, "renamed")  # a generic write: no refresh
        h1 = x.host.get_by_name_label("h1")[0]
        x.host.restart_agent(h1)
        _wait(lambda: _reconnects(w))
        s2 = XenAPI.Session(w.master_url())
        s2.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
        try:
            assert s2.xenapi.VM_appliance.get_allowed_operations(ref) == [
                "hard_shutdown",
                "shutdown",
            ]
        finally:
            s2.xenapi.session.logout()


def _reconnects(w) -> bool:
    try:
        s = XenAPI.Session(w.master_url())
        s.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
        s.xenapi.session.logout()
        return True
    except Exception:  # noqa: BLE001 -- still restarting
        return False
