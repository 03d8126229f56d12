"""``VM.set_VCPUs_number_live`` and ``xe vm-vcpu-hotplug`` (docs/operations.md): the operation
check first (Running; an HVM guest without PV drivers needs ``feature-vcpu-hotplug``), then
the VM's host (HOST_OFFLINE), then xenopsd's range check, whose INVALID_VALUE carries
VCPUs_max (``Invalid_vcpus vcpu_max``) -- over the XenAPI package and the xe CLI."""

from __future__ import annotations

from session_kit import failure, logged_in
from xe_kit import xe_runner

WORLD = """
[[host]]
name_label = "h1"
cpu = "Haswell"
version = "dundee"
[[host]]
name_label = "h2"
cpu = "Haswell"
version = "dundee"
[[pool]]
name_label = "p"
master = "h1"
members = ["h2"]
[[vm]]
name_label = "guest"
vcpus = 4
[[vm]]
name_label = "bare"
power_state = "Running"
host = "h1"
pv_drivers = false
[[vm]]
name_label = "away"
vcpus = 2
power_state = "Running"
host = "h2"
"""

ORDER = "VCPU values must satisfy: 0 < VCPUs \u2264 VCPUs_max"


def _vm(x, name):
    return x.VM.get_by_name_label(name)[0]


def _started_with_one_of_four(x, h1):
    vm = _vm(x, "guest")
    x.VM.set_VCPUs_at_startup(vm, "1")
    x.VM.start_on(vm, h1, False, False)
    return vm


def test_hotplug_changes_the_count_and_refuses_what_xapi_refuses():
    with logged_in(WORLD) as (w, s):
        x = s.xenapi
        h1 = x.host.get_by_name_label("h1")[0]
        vm = _vm(x, "guest")
        # halted: the operation check's power state
        assert failure(x.VM.set_VCPUs_number_live, vm, "2") == [
            "VM_BAD_POWER_STATE",
            vm,
            "running",
            "halted",
        ]
        _started_with_one_of_four(x, h1)
        assert "changing_VCPUs_live" in x.VM.get_allowed_operations(vm)
        x.VM.set_VCPUs_number_live(vm, "3")
        assert x.VM.get_VCPUs_at_startup(vm) == "3"
        assert x.VM_metrics.get_VCPUs_number(x.VM.get_metrics(vm)) == "3"
        x.VM.set_VCPUs_number_live(vm, "1")  # unplugging too
        assert x.VM_metrics.get_VCPUs_number(x.VM.get_metrics(vm)) == "1"
        # out of range: the value given back is VCPUs_max, not the count asked
        for n in ("0", "5", "-1"):
            assert failure(x.VM.set_VCPUs_number_live, vm, n) == ["INVALID_VALUE", ORDER, "4"]
        # a refused call changes nothing and leaves no operation behind
        assert x.VM.get_VCPUs_at_startup(vm) == "1"
        assert x.VM.get_current_operations(vm) == {}


def test_feature_check_and_offline_host():
    with logged_in(WORLD) as (w, s):
        x = s.xenapi
        bare = _vm(x, "bare")  # HVM, running, no PV drivers, no feature-vcpu-hotplug
        assert failure(x.VM.set_VCPUs_number_live, bare, "1") == [
            "VM_LACKS_FEATURE_VCPU_HOTPLUG",
            bare,
        ]
        away = _vm(x, "away")
        h2 = x.host.get_by_name_label("h2")[0]
        s.xenapi.sim.host_crash(h2)
        assert failure(x.VM.set_VCPUs_number_live, away, "1") == ["HOST_OFFLINE", h2]
        assert x.VM.get_VCPUs_at_startup(away) == "2"


def test_xe_vm_vcpu_hotplug(tmp_path):
    with logged_in(WORLD) as (w, s):
        x = s.xenapi
        h1 = x.host.get_by_name_label("h1")[0]
        vm = _started_with_one_of_four(x, h1)
        uuid = x.VM.get_uuid(vm)
        xe = xe_runner(w.host("h1"), tmp_path)

        r = xe("vm-vcpu-hotplug", f"uuid={uuid}", "new-vcpus=2")
        assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
        assert x.VM.get_VCPUs_at_startup(vm) == "2"
        r = xe("vm-vcpu-hotplug", f"uuid={uuid}", "new-vcpus=two")
        assert r.returncode == 1
        assert "Failed to parse parameter 'new-vcpus': expecting an integer" in r.stderr
        r = xe("vm-vcpu-hotplug", f"uuid={uuid}", "new-vcpus=9")
        assert (r.returncode, r.stdout) == (1, "")
        assert r.stderr == f"The value given is invalid\nfield: {ORDER}\nvalue: 4\n"
