"""Issue 4 item 6: placement honours memory and vCPUs, and Dundee's configuration limits
(32 vCPUs and 1.5 TiB per VM, 512 pCPUs and 1,000 VMs per host) with XAPI's errors."""

from __future__ import annotations

import pytest
import XenAPI

from xapi_sim.testing import running_world

GiB = 1 << 30
SMALL = """
[[host]]
name_label = "a"
cpu = "Haswell"
memory = "8GiB"
sockets = 1
cpus_per_socket = 4
[[host]]
name_label = "b"
cpu = "Haswell"
memory = "8GiB"
sockets = 1
cpus_per_socket = 4
[[pool]]
name_label = "p"
master = "a"
members = ["b"]
"""


@pytest.fixture
def x():
    with running_world(SMALL, seed=4) as w:
        s = XenAPI.Session(w.master_url())
        s.xenapi.login_with_password("root", "xenroot")
        s.w = w
        yield s.xenapi


def new_vm(x, name, vcpus=1, memory=GiB):
    tmpl = x.VM.get_by_name_label("Other install media")[0]
    vm = x.VM.clone(tmpl, name)
    x.VM.set_is_a_template(vm, False)
    x.VM.set_memory_limits(vm, str(min(memory, 512 << 20)), str(memory), str(memory), str(memory))
    x.VM.set_VCPUs_max(vm, str(vcpus))
    x.VM.set_VCPUs_at_startup(vm, str(vcpus))
    return vm


def fail(fn, *args):
    with pytest.raises(XenAPI.Failure) as e:
        fn(*args)
    return e.value.details


def test_vcpu_limit_32(x):
    vm = new_vm(x, "big-cpu", vcpus=33)
    assert fail(x.VM.start, vm, False, False) == ["VM_TOO_MANY_VCPUS", vm]


def test_memory_limit_1_5_tib(x):
    vm = new_vm(x, "big-mem", memory=2048 * GiB)
    assert fail(x.VM.start, vm, False, False)[0] == "MEMORY_CONSTRAINT_VIOLATION"


def test_vcpus_above_host_pcpus(x):
    vm = new_vm(x, "wide", vcpus=8)
    a = x.host.get_by_name_label("a")[0]
    assert fail(x.VM.start_on, vm, a, False, False) == ["HOST_NOT_ENOUGH_PCPUS", "8", "4"]
    assert fail(x.VM.start, vm, False, False) == ["NO_HOSTS_AVAILABLE"]


def test_memory_placement(x):
    a = x.host.get_by_name_label("a")[0]
    b = x.host.get_by_name_label("b")[0]
    v1 = new_vm(x, "v1", memory=6 * GiB)
    x.VM.start_on(v1, a, False, False)
    v2 = new_vm(x, "v2", memory=6 * GiB)
    err = fail(x.VM.start_on, v2, a, False, False)
    assert err[0] == "HOST_NOT_ENOUGH_FREE_MEMORY" and err[1] == str(6 * GiB)
    x.VM.start(v2, False, False)  # placement picks the host with room
    assert x.VM.get_resident_on(v2) == b
    v3 = new_vm(x, "v3", memory=6 * GiB)
    # no host has room: placement retries without the memory filter, then the chosen
    # host refuses (spec §14)
    assert fail(x.VM.start, v3, False, False)[0] == "HOST_NOT_ENOUGH_FREE_MEMORY"
    assert int(x.host.compute_free_memory(a)) < 6 * GiB


def test_static_settings_need_a_halted_vm(x):
    vm = new_vm(x, "v")
    x.VM.start(vm, False, False)
    assert fail(x.VM.set_VCPUs_max, vm, "2") == ["VM_BAD_POWER_STATE", vm, "halted", "running"]
    x.VM.hard_shutdown(vm)
    assert fail(x.VM.set_memory_limits, vm, "4", "3", "2", "1")[0] == "MEMORY_CONSTRAINT_VIOLATION"


def test_host_pcpu_limit_512():
    with running_world(SMALL) as w:
        s = XenAPI.Session(w.master_url())
        s.xenapi.login_with_password("root", "xenroot")
        with pytest.raises(XenAPI.Failure) as e:
            s.xenapi_request(
                "sim.add_host", ({"name_label": "huge", "sockets": 2, "cpus_per_socket": 257},)
            )
        assert e.value.details[0] == "INVALID_VALUE" and "512" in e.value.details[2]


def test_1000_vms_per_host():
    vms = "\n".join(
        f'[[vm]]\nname_label = "v{i}"\npower_state = "Running"\nhost = "a"\nmemory = "16MiB"'
        for i in range(1000)
    )
    scn = (
        SMALL.replace('memory = "8GiB"', 'memory = "64GiB"')
        + vms
        + """
[[vm]]
name_label = "one-more"
host = "a"
memory = "16MiB"
"""
    )
    with running_world(scn) as w:
        s = XenAPI.Session(w.master_url())
        s.xenapi.login_with_password("root", "xenroot")
        x = s.xenapi
        a = x.host.get_by_name_label("a")[0]
        vm = x.VM.get_by_name_label("one-more")[0]
        assert fail(x.VM.start_on, vm, a, False, False) == [
            "OPERATION_NOT_ALLOWED",
            "host has reached its limit of 1000 VMs",
        ]
        x.VM.start(vm, False, False)
        assert x.VM.get_resident_on(vm) != a
