"""The calls about a VM's domain that xapi answers without xenopsd (``classes/vm_domain.py``):
live memory targets, sysrq/triggers/services, boot records, the deprecated cooperativeness
calls, ``VM.power_state_reset`` (and ``xe vm-reset-powerstate``), ``VM.set_bios_strings``,
``message.destroy_many``, ``pool.sync_database`` and the messages xapi itself answers
NOT_IMPLEMENTED -- over the XenAPI package and the xe CLI."""

from __future__ import annotations

from session_kit import failure, logged_in
from xe_kit import xe_runner

WORLD = """
[[host]]
name_label = "h1"
cpu = "Haswell"
version = "{v}"
[[host]]
name_label = "h2"
cpu = "Haswell"
version = "{v}"
[[pool]]
name_label = "p"
master = "h1"
members = ["h2"]
[[vm]]
name_label = "home"
power_state = "Running"
host = "h1"
[[vm]]
name_label = "away"
power_state = "Running"
host = "h2"
[[vm]]
name_label = "off"
"""


def _vm(x, name):
    return x.VM.get_by_name_label(name)[0]


def test_live_memory_calls_check_then_forward():
    with logged_in(WORLD.format(v="dundee")) as (w, s):
        x = s.xenapi
        home, away, off = _vm(x, "home"), _vm(x, "away"), _vm(x, "off")
        ms = x.VM.get_memory_static_max(home)
        assert x.VM.set_memory_target_live(home, ms) == ""
        assert x.VM.wait_memory_target_live(home) == ""
        assert x.VM.get_current_operations(home) == {}
        # the operation check first: Running only
        for fn in (x.VM.wait_memory_target_live,):
            assert failure(fn, off) == ["VM_BAD_POWER_STATE", off, "running", "halted"]
        assert failure(x.VM.set_memory_target_live, off, ms)[0] == "VM_BAD_POWER_STATE"
        # then the VM's host
        h2 = x.host.get_by_name_label("h2")[0]
        x.sim.host_crash(h2)
        assert failure(x.VM.set_memory_target_live, away, ms) == ["HOST_OFFLINE", h2]
        assert x.VM.get_current_operations(away) == {}


def test_sysrq_trigger_and_services_are_not_implemented_after_their_check():
    with logged_in(WORLD.format(v="dundee")) as (w, s):
        x = s.xenapi
        home, off = _vm(x, "home"), _vm(x, "off")
        assert failure(x.VM.send_sysrq, home, "b") == ["NOT_IMPLEMENTED", "send_sysrq"]
        assert failure(x.VM.send_trigger, home, "reset") == ["NOT_IMPLEMENTED", "send_trigger"]
        assert failure(x.VM.send_sysrq, off, "b")[0] == "VM_BAD_POWER_STATE"
        assert failure(x.VM.send_trigger, off, "reset")[0] == "VM_BAD_POWER_STATE"
        assert failure(x.VM.query_services, home) == ["NOT_SYSTEM_DOMAIN", home]
        x.VM.add_to_other_config(home, "is_system_domain", "true")  # a driver domain
        assert failure(x.VM.query_services, home) == ["NOT_IMPLEMENTED", "query_services"]
        for vm in (home, off):
            assert x.VM.get_current_operations(vm) == {}


def test_boot_record_by_release():
    for version, target_zeroed in (("dundee", True), ("stockholm", False)):
        with logged_in(WORLD.format(v=version)) as (w, s):
            x = s.xenapi
            home, off = _vm(x, "home"), _vm(x, "off")
            rec, now = x.VM.get_boot_record(home), x.VM.get_record(home)
            assert rec["uuid"] == now["uuid"]
            assert rec["memory_dynamic_max"] == now["memory_dynamic_max"]
            if target_zeroed:
                assert rec["memory_target"] == "0"
                assert {k: v for k, v in rec.items() if k != "memory_target"} == {
                    k: v for k, v in now.items() if k != "memory_target"
                }
            else:
                assert rec == now
            assert failure(x.VM.get_boot_record, off)[0] == "VM_BAD_POWER_STATE"


def test_deprecated_cooperativeness_reads_nothing():
    with logged_in(WORLD.format(v="dundee")) as (w, s):
        x = s.xenapi
        assert x.VM.get_cooperative(_vm(x, "home")) is True
        assert x.VM.get_cooperative("OpaqueRef:nonsense") is True
        h1 = x.host.get_by_name_label("h1")[0]
        assert x.host.get_uncooperative_resident_VMs(h1) == []
        assert x.host.get_uncooperative_resident_VMs("OpaqueRef:nonsense") == []


def test_power_state_reset():
    with logged_in(WORLD.format(v="dundee")) as (w, s):
        x = s.xenapi
        home, away, off = _vm(x, "home"), _vm(x, "away"), _vm(x, "off")
        h2 = x.host.get_by_name_label("h2")[0]
        dom0 = next(r for r, v in x.VM.get_all_records().items() if v["is_control_domain"])
        assert failure(x.VM.power_state_reset, dom0) == ["CANNOT_RESET_CONTROL_DOMAIN", dom0]
        assert failure(x.VM.power_state_reset, home) == ["DOMAIN_EXISTS", home]
        assert failure(x.VM.power_state_reset, away) == ["HOST_IS_LIVE", h2]
        assert x.VM.get_power_state(away) == "Running"
        x.sim.host_crash(h2)
        # the usual way out is refused while its host is dead
        assert failure(x.VM.hard_shutdown, away) == ["HOST_OFFLINE", h2]
        x.VM.power_state_reset(away)
        rec = x.VM.get_record(away)
        assert (rec["power_state"], rec["resident_on"], rec["domid"]) == (
            "Halted",
            "OpaqueRef:NULL",
            "-1",
        )
        assert rec["current_operations"] == {}
        assert all(not x.VBD.get_currently_attached(b) for b in rec["VBDs"])
        assert all(not x.VIF.get_currently_attached(v) for v in rec["VIFs"])
        assert "start" in rec["allowed_operations"]
        assert x.VM_metrics.get_memory_actual(rec["metrics"]) == "0"
        x.VM.power_state_reset(off)  # a halted VM stays halted
        assert x.VM.get_power_state(off) == "Halted"
        assert failure(x.VM.power_state_reset, "OpaqueRef:nonsense")[0] == "HANDLE_INVALID"


def test_xe_vm_reset_powerstate(tmp_path):
    with logged_in(WORLD.format(v="dundee")) as (w, s):
        x = s.xenapi
        away = _vm(x, "away")
        uuid = x.VM.get_uuid(away)
        x.sim.host_crash(x.host.get_by_name_label("h2")[0])
        xe = xe_runner(w.host("h1"), tmp_path)

        r = xe("vm-reset-powerstate", f"uuid={uuid}")
        assert r.returncode == 1
        assert "must be forced (use --force)" in r.stderr + r.stdout
        assert x.VM.get_power_state(away) == "Running"
        r = xe("vm-reset-powerstate", f"uuid={uuid}", "--force")
        assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
        assert x.VM.get_power_state(away) == "Halted"


def _blank(x, name):
    """A VM without BIOS strings: a clone of a template (a clone of a VM keeps its strings)."""
    tpl = next(r for r, v in x.VM.get_all_records().items() if v["is_a_template"])
    vm = x.VM.clone(tpl, name)
    assert x.VM.get_bios_strings(vm) == {}
    return vm


def test_set_bios_strings():
    with logged_in(WORLD.format(v="stockholm")) as (w, s):
        x = s.xenapi
        vm = _blank(x, "b1")
        x.VM.set_bios_strings(vm, {"system-serial-number": "SN-1", "bios-vendor": "Acme"})
        got = x.VM.get_bios_strings(vm)
        assert got["system-serial-number"] == "SN-1"
        assert got["bios-vendor"] == "Acme"
        assert got["system-product-name"] == "HVM domU"
        assert got["oem-1"] == "Xen" and got["hp-rombios"] == ""
        assert len(got) == 16
        assert failure(x.VM.set_bios_strings, vm, {"bios-vendor": "x"}) == [
            "VM_BIOS_STRINGS_ALREADY_SET"
        ]
        generic = _blank(x, "b2")
        x.VM.set_bios_strings(generic, {})  # the generic strings
        assert x.VM.get_bios_strings(generic) == {
            **got,
            "system-serial-number": "",
            "bios-vendor": "Xen",
        }
        vm = _blank(x, "b3")
        long = "a" * 513
        for value, why in (
            ({"oem-1": "v"}, "Unknown key"),
            ({"bios-version": ""}, "Value provided is empty"),
            ({"bios-version": long}, f"{long} has length more than 512 characters"),
            ({"bios-version": "caf\u00e9"}, "caf\u00e9 has non-printable ASCII characters"),
            ({"bios-version": "tab\there"}, "tab\there has non-printable ASCII characters"),
        ):
            key = next(iter(value))
            assert failure(x.VM.set_bios_strings, vm, value) == ["INVALID_VALUE", key, why]
        # a pair checked bad after good ones changes nothing
        assert failure(x.VM.set_bios_strings, vm, {"bios-vendor": "ok", "nope": "v"})[1] == "nope"
        assert x.VM.get_bios_strings(vm) == {}
        x.VM.set_bios_strings(vm, {"bios-version": long[:512]})


def test_message_destroy_many_is_all_or_nothing():
    with logged_in(WORLD.format(v="xcp-ng-8.3")) as (w, s):
        x = s.xenapi
        pool_uuid = x.pool.get_uuid(x.pool.get_all()[0])
        refs = [x.message.create(f"m{i}", "1", "Pool", pool_uuid, "body") for i in range(3)]
        bad = "OpaqueRef:nonsense"
        assert failure(x.message.destroy_many, [refs[0], bad, refs[1]]) == [
            "HANDLE_INVALID",
            "message",
            bad,
        ]
        assert set(refs) <= set(x.message.get_all())
        x.message.destroy_many(refs[:2])
        left = set(x.message.get_all())
        assert refs[2] in left and not {refs[0], refs[1]} & left
        x.message.destroy_many([])


def test_what_xapi_itself_has_not_implemented_names_itself_so():
    """Not the simulator's generic NOT_IMPLEMENTED [<class.message>]: xapi's own, after its
    forward or operation check (``list_method``, sic)."""
    with logged_in(WORLD.format(v="dundee")) as (w, s):
        x = s.xenapi
        h1, h2 = x.host.get_by_name_label("h1")[0], x.host.get_by_name_label("h2")[0]
        assert failure(x.host.get_log, h2) == ["NOT_IMPLEMENTED", "get_log"]
        assert failure(x.host.dmesg_clear, h1) == ["NOT_IMPLEMENTED", "dmesg_clear"]
        assert failure(x.host.list_methods) == ["NOT_IMPLEMENTED", "list_method"]
        home, off = _vm(x, "home"), _vm(x, "off")
        assert failure(x.VM.add_to_VCPUs_params_live, home, "weight", "512") == [
            "NOT_IMPLEMENTED",
            "add_to_VCPUs_params_live",
        ]
        assert failure(x.VM.add_to_VCPUs_params_live, off, "weight", "512")[0] == (
            "VM_BAD_POWER_STATE"
        )
        x.sim.host_crash(h2)
        assert failure(x.host.get_log, h2) == ["HOST_OFFLINE", h2]


def test_pool_sync_database_reaches_every_host():
    with logged_in(WORLD.format(v="dundee")) as (w, s):
        x = s.xenapi
        assert x.pool.sync_database() == ""
        h2 = x.host.get_by_name_label("h2")[0]
        x.sim.host_crash(h2)
        assert failure(x.pool.sync_database) == ["HOST_OFFLINE", h2]


def _guide(w, vm, *guidances):
    """Pending guidances as host.apply_updates leaves them (its catalogue has none for VMs)."""
    db = w.world.pools[0].db
    with db.lock:
        db.update(
            "VM",
            vm,
            pending_guidances=list(guidances),
            pending_guidances_recommended=list(guidances),
            pending_guidances_full=list(guidances),
        )


def test_restart_device_models_is_a_localhost_migration():
    with logged_in(WORLD.format(v="xcp-ng-8.3")) as (w, s):
        x = s.xenapi
        home, off = _vm(x, "home"), _vm(x, "off")
        h1 = x.host.get_by_name_label("h1")[0]
        assert failure(x.VM.restart_device_models, off) == [
            "VM_BAD_POWER_STATE",
            off,
            "Running",
            "Halted",
        ]
        _guide(w, home, "restart_device_model", "restart_vm")
        domid = x.VM.get_domid(home)
        x.VM.restart_device_models(home)
        rec = x.VM.get_record(home)
        assert (rec["power_state"], rec["resident_on"]) == ("Running", h1)
        assert rec["domid"] != domid and rec["current_operations"] == {}
        for f in ("pending_guidances", "pending_guidances_recommended", "pending_guidances_full"):
            assert rec[f] == ["restart_vm"]
        # a reboot (a new domain) ends both; so does a halt
        x.VM.clean_reboot(home)
        assert x.VM.get_pending_guidances(home) == []
        _guide(w, home, "restart_device_model", "restart_vm")
        x.VM.suspend(home)
        assert x.VM.get_pending_guidances(home) == ["restart_vm"]
        _guide(w, off, "restart_vm")
        x.VM.start(off, False, False)
        assert x.VM.get_pending_guidances_full(off) == []
        # pool_migrate ends the device model's
        _guide(w, off, "restart_device_model", "restart_vm")
        h2 = x.host.get_by_name_label("h2")[0]
        x.VM.pool_migrate(off, h2, {"live": "true"})
        assert x.VM.get_pending_guidances(off) == ["restart_vm"]
        x.VM.hard_shutdown(off)
        assert x.VM.get_pending_guidances(off) == []
