"""The guest agent: VM_guest_metrics created, updated and kept as xapi does (xen-api
dundee-lcm xapi_guest_agent.ml, xapi_xenops.ml), the ``pv_drivers`` scenario key,
``sim.vm_set_pv_drivers``, and Dundee's feature rules for HVM guests without drivers
(xapi_vm_lifecycle.ml ``check_op_for_feature``)."""

from __future__ import annotations

import threading

import pytest
import XenAPI

from xapi_sim import persist
from xapi_sim.classes import guest_agent
from xapi_sim.scenario import ScenarioError, build, export_toml, loads
from xapi_sim.server import Simulator
from xapi_sim.testing import running_world

WORLD = """
[[host]]
name_label = "h1"
[[host]]
name_label = "h2"
[[pool]]
name_label = "p"
master = "h1"
members = ["h2"]
[[vm]]
name_label = "tools"
power_state = "Running"
host = "h1"
[[vm]]
name_label = "bare"
power_state = "Running"
host = "h1"
pv_drivers = false
[[vm]]
name_label = "pvbare"
domain_type = "pv"
power_state = "Running"
host = "h1"
pv_drivers = false
[[vm]]
name_label = "off"
pv_drivers = false
"""


def _err(fn, *args):
    with pytest.raises(XenAPI.Failure) as e:
        fn(*args)
    return e.value.details


@pytest.fixture
def lab():
    with running_world(WORLD) as w:
        s = XenAPI.Session(w.master_url())
        s.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
        x = s.xenapi
        vms = {
            r["name_label"]: ref
            for ref, r in x.VM.get_all_records().items()
            if not r["is_control_domain"] and not r["is_a_template"]
        }
        yield w, x, vms


def _net(x):
    return next(
        n for n, r in x.network.get_all_records().items() if r["bridge"].startswith("xenbr")
    )


def _vif(x, vm, device="0"):
    return x.VIF.create(
        {
            "device": device,
            "network": _net(x),
            "VM": vm,
            "MAC": "",
            "MTU": "1500",
            "other_config": {},
            "qos_algorithm_type": "",
            "qos_algorithm_params": {},
        }
    )


def test_a_guest_with_drivers_reports_its_metrics(lab):
    w, x, vms = lab
    gm = x.VM.get_guest_metrics(vms["tools"])
    rec = x.VM_guest_metrics.get_record(gm)
    assert rec["PV_drivers_version"] == {"major": "7", "minor": "0", "micro": "0", "build": "125"}
    assert rec["os_version"]["distro"] == "centos"
    assert rec["PV_drivers_up_to_date"] is True and rec["PV_drivers_detected"] is True
    assert rec["live"] is True
    assert rec["other"]["feature-shutdown"] == "1"
    assert rec["can_use_hotplug_vbd"] == "unspecified"
    assert "memory" not in rec and "disks" not in rec  # not fields of the 7.0 API
    for vm in ("bare", "pvbare", "off"):
        assert x.VM.get_guest_metrics(vms[vm]) == "OpaqueRef:NULL"


def test_hvm_without_drivers_refuses_what_needs_the_guest(lab):
    w, x, vms = lab
    bare = vms["bare"]
    allowed = x.VM.get_allowed_operations(bare)
    for op in ("clean_shutdown", "clean_reboot", "suspend", "pool_migrate", "checkpoint"):
        assert op not in allowed, op
    assert "hard_shutdown" in allowed
    assert _err(x.VM.clean_shutdown, bare) == ["VM_LACKS_FEATURE_SHUTDOWN", bare]
    assert _err(x.VM.clean_reboot, bare) == ["VM_LACKS_FEATURE_SHUTDOWN", bare]
    assert _err(x.VM.suspend, bare) == ["VM_LACKS_FEATURE_SUSPEND", bare]
    h2 = w.host("h2").ref
    assert _err(x.VM.pool_migrate, bare, h2, {}) == ["VM_LACKS_FEATURE_SUSPEND", bare]
    # forced: not strict (message_forwarding.ml ~strict:(not force))
    x.VM.pool_migrate(bare, h2, {"force": "true"})
    assert x.VM.get_resident_on(bare) == h2
    # a PV guest offers the features implicitly
    x.VM.clean_shutdown(vms["pvbare"])
    # a guest with drivers does everything
    x.VM.clean_reboot(vms["tools"])
    x.VM.clean_shutdown(vms["tools"])


def test_installing_drivers_at_run_time(lab):
    w, x, vms = lab
    bare = vms["bare"]
    vif = _vif(x, bare)
    assert _err(x.VIF.plug, vif) == ["VM_MISSING_PV_DRIVERS", bare]  # no hotplug
    assert _err(x.VM.clean_shutdown, bare)[0] == "VM_LACKS_FEATURE_SHUTDOWN"
    x.sim.vm_set_pv_drivers(bare, True)
    gm = x.VM.get_guest_metrics(bare)
    assert x.VM_guest_metrics.get_networks(gm) == {}
    x.VIF.plug(vif)
    mac = x.VIF.get_MAC(vif).split(":")
    rec = x.VM_guest_metrics.get_record(gm)
    assert rec["networks"] == {
        "0/ip": f"10.{int(mac[3], 16)}.{int(mac[4], 16)}." + str(min(max(int(mac[5], 16), 1), 254))
    }
    assert "clean_shutdown" in x.VM.get_allowed_operations(bare)
    x.VIF.configure_ipv4(vif, "Static", "192.168.7.9/24", "")
    assert x.VM_guest_metrics.get_networks(gm) == {"0/ip": "192.168.7.9"}
    x.VM.clean_shutdown(bare)
    # halted: the metrics of the last run stay, unchanged and live
    assert x.VM.get_guest_metrics(bare) == gm
    assert x.VM_guest_metrics.get_live(gm) is True
    x.VM.start(bare, False, False)
    # a new domain: the stale row went, the agent reported afresh
    new = x.VM.get_guest_metrics(bare)
    assert new != gm and new != "OpaqueRef:NULL"
    assert _err(x.VM_guest_metrics.get_record, gm)[0] == "HANDLE_INVALID"
    assert x.VM_guest_metrics.get_networks(new) == {"0/ip": "192.168.7.9"}
    x.sim.vm_set_pv_drivers(bare, False)
    assert x.VM.get_guest_metrics(bare) == "OpaqueRef:NULL"
    assert _err(x.VM_guest_metrics.get_record, new)[0] == "HANDLE_INVALID"
    assert "clean_shutdown" not in x.VM.get_allowed_operations(bare)


def test_vif_hotplug_updates_the_reported_networks(lab):
    w, x, vms = lab
    vm = vms["tools"]
    vif = _vif(x, vm, "1")
    gm = x.VM.get_guest_metrics(vm)
    x.VIF.plug(vif)
    assert list(x.VM_guest_metrics.get_networks(gm)) == ["1/ip"]
    vif0 = _vif(x, vm, "0")
    x.VIF.plug(vif0)
    assert list(x.VM_guest_metrics.get_networks(gm)) == ["1/ip", "0/ip"]  # xapi's fold order
    x.VIF.unplug(vif)
    assert list(x.VM_guest_metrics.get_networks(gm)) == ["0/ip"]


def test_new_vms_have_no_agent_until_one_is_installed(lab):
    w, x, vms = lab
    tmpl = next(
        ref
        for ref, r in x.VM.get_all_records().items()
        if r["is_a_template"] and r["name_label"] == "CentOS 7"
    )
    vm = x.VM.clone(tmpl, "new")
    x.VM.set_is_a_template(vm, False)
    x.VM.start(vm, False, False)
    assert x.VM.get_guest_metrics(vm) == "OpaqueRef:NULL"
    x.sim.vm_set_pv_drivers(vm, True)
    x.VM.clean_shutdown(vm)
    # a clone of a VM whose guest has drivers has them too (copy_guest_metrics)
    clone = x.VM.clone(vm, "new2")
    gm = x.VM.get_guest_metrics(clone)
    assert gm not in ("OpaqueRef:NULL", x.VM.get_guest_metrics(vm))
    assert x.VM_guest_metrics.get_PV_drivers_version(gm)["major"] == "7"
    # destroy takes its guest metrics with it
    x.VM.destroy(clone)
    assert _err(x.VM_guest_metrics.get_record, gm)[0] == "HANDLE_INVALID"


def test_vm_metrics_follow_the_domain(lab):
    w, x, vms = lab
    tmpl = next(
        ref
        for ref, r in x.VM.get_all_records().items()
        if r["is_a_template"] and r["name_label"] == "Debian Jessie 8.0"
    )
    new = x.VM.clone(tmpl, "installed")
    before = x.VM_metrics.get_install_time(x.VM.get_metrics(new))
    w.world.clock.advance(3600)
    x.VM.remove_from_other_config(new, "disks")  # as Xen Orchestra does
    x.VM.provision(new)  # set_is_a_template false is "install time"
    after = x.VM_metrics.get_install_time(x.VM.get_metrics(new))
    assert after.value > before.value
    vm = vms["off"]
    m = x.VM.get_metrics(vm)
    assert x.VM_metrics.get_memory_actual(m) == "0"
    x.VM.start(vm, False, False)
    assert int(x.VM_metrics.get_memory_actual(m)) == int(x.VM.get_memory_target(vm))
    assert x.VM_metrics.get_VCPUs_number(m) == x.VM.get_VCPUs_at_startup(vm)
    x.VM.hard_shutdown(vm)
    assert x.VM_metrics.get_memory_actual(m) == "0"


def test_sim_call_refusals(lab):
    w, x, vms = lab
    assert _err(x.sim.vm_set_pv_drivers, "OpaqueRef:nope", True) == [
        "HANDLE_INVALID",
        "VM",
        "OpaqueRef:nope",
    ]
    assert _err(x.sim.vm_set_pv_drivers, vms["bare"], "yes")[0] == "INVALID_VALUE"
    dom0 = next(r for r, v in x.VM.get_all_records().items() if v["is_control_domain"])
    assert _err(x.sim.vm_set_pv_drivers, dom0, True)[0] == "OPERATION_NOT_ALLOWED"
    assert x.VM.get_guest_metrics(vms["bare"]) == "OpaqueRef:NULL"  # nothing changed


def test_scenario_key_and_export_round_trip():
    with pytest.raises(ScenarioError, match="pv_drivers"):
        loads('[[host]]\nname_label = "a"\n[[vm]]\nname_label = "v"\npv_drivers = "yes"\n')
    world = build(loads(WORLD), seed=3)
    text = export_toml(world)
    again = loads(text)
    assert {v.name_label: v.pv_drivers for v in again.vms} == {
        "tools": True,
        "bare": False,
        "pvbare": False,
        "off": False,
    }


def test_many_threads_toggle_drivers_while_vms_change_power(lab):
    w, x, vms = lab
    url = w.master_url()
    errors = []

    def toggler(vm):
        s = XenAPI.Session(url)
        s.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
        try:
            for i in range(15):
                s.xenapi.sim.vm_set_pv_drivers(vm, i % 2 == 0)
        except Exception as e:  # noqa: BLE001 -- collected and asserted below
            errors.append(e)

    def cycler(vm):
        s = XenAPI.Session(url)
        s.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
        try:
            for _ in range(5):
                s.xenapi.VM.hard_shutdown(vm)
                s.xenapi.VM.start(vm, False, False)
        except Exception as e:  # noqa: BLE001 -- collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=toggler, args=(vms[n],)) for n in ("tools", "bare")]
    threads += [threading.Thread(target=cycler, args=(vms[n],)) for n in ("tools", "bare")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    refs = set(x.VM_guest_metrics.get_all())
    used = [x.VM.get_guest_metrics(vms[n]) for n in vms]
    assert refs == {g for g in used if g != "OpaqueRef:NULL"}  # no orphan, no dangling ref


def test_drivers_installed_or_removed_survive_a_restart(tmp_path):
    """The fact lives in the guest metrics rows, so the journal keeps it."""
    world, journal, _ = persist.open_state(str(tmp_path), lambda: build(loads(WORLD), seed=1))
    sim = Simulator(world, port=0)
    sim.make_durable(journal)
    sim.start()
    try:
        s = XenAPI.Session(sim.world.pools[0].master.url)
        s.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
        x = s.xenapi
        vms = {r["name_label"]: ref for ref, r in x.VM.get_all_records().items()}
        x.sim.vm_set_pv_drivers(vms["bare"], True)
        x.sim.vm_set_pv_drivers(vms["tools"], False)
    finally:
        sim.stop()
        journal.close()
    again, _ = persist.load(str(tmp_path))
    db = again.pools[0].db
    rows = {r["name_label"]: r for _, r in db.rows("VM")}
    assert guest_agent.has_drivers(db, rows["bare"]) and not guest_agent.has_drivers(
        db, rows["tools"]
    )
    text = export_toml(again)
    assert text.count("pv_drivers = false") == 3  # tools, pvbare, off


TWO_POOLS = """
[[host]]
name_label = "a1"
cpu = "Haswell"
[[host]]
name_label = "b1"
cpu = "Haswell"
[[pool]]
name_label = "A"
master = "a1"
[[pool]]
name_label = "B"
master = "b1"
[[vm]]
name_label = "mover"
power_state = "Running"
host = "a1"
"""


def _migrate_keeps_guest_metrics(src_url, dst_url):
    s, t = XenAPI.Session(src_url), XenAPI.Session(dst_url)
    s.xenapi.login_with_password("root", "xenroot")
    t.xenapi.login_with_password("root", "xenroot")
    vm = s.xenapi.VM.get_by_name_label("mover")[0]
    before = s.xenapi.VM_guest_metrics.get_record(s.xenapi.VM.get_guest_metrics(vm))
    b1 = t.xenapi.host.get_all()[0]
    dest = t.xenapi.host.migrate_receive(b1, t.xenapi.network.get_all()[0], {})
    new = s.xenapi.VM.migrate_send(vm, dest, True, {}, {}, {})
    gm = t.xenapi.VM.get_guest_metrics(new)
    after = t.xenapi.VM_guest_metrics.get_record(gm)
    assert after["uuid"] == before["uuid"]  # the same row travelled (import.ml)
    assert after["os_version"] == before["os_version"]
    assert after["PV_drivers_version"] == before["PV_drivers_version"]
    assert before["uuid"] not in [
        r["uuid"] for r in s.xenapi.VM_guest_metrics.get_all_records().values()
    ]


def test_guest_metrics_travel_with_a_cross_pool_migration_in_one_world():
    with running_world(TWO_POOLS) as w:
        _migrate_keeps_guest_metrics(w.url("a1"), w.url("b1"))


def test_guest_metrics_travel_with_a_cross_pool_migration_to_another_process():
    src = '[[host]]\nname_label = "a1"\ncpu = "Haswell"\n[[vm]]' + TWO_POOLS.split("[[vm]]")[1]
    dst = '[[host]]\nname_label = "b1"\ncpu = "Haswell"\n'
    with (
        running_world(src, seed=1, bind="127.0.8.1") as a,
        running_world(dst, seed=2, bind="127.0.9.1") as b,
    ):
        _migrate_keeps_guest_metrics(a.url("a1"), b.url("b1"))
