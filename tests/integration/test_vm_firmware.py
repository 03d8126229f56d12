"""VM features later templates need (docs/certificates-updates.md): domain_type and
HVM_boot_policy in step, UEFI/Secure Boot/NVRAM at start, the vTPM -- per release, over
the XenAPI package; XenServer 8's "Windows 11" template provisions and boots with UEFI and
a vTPM."""

from __future__ import annotations

import pytest
from session_kit import failure, logged_in


def host_of(version: str) -> str:
    return f'[[host]]\nname_label = "h1"\ncpu = "Haswell"\nversion = "{version}"\n'


@pytest.fixture(scope="module", params=["dundee", "stockholm", "nile", "xcp-ng-8.3"])
def world(request):
    with logged_in(host_of(request.param)) as (w, s):
        yield request.param, w, s


def new_vm(s, template="Windows 11", name="vm"):
    """As clients (xe vm-install, the SDK's provision.py) do: clone, the disks spec's SR
    set to a local SR's uuid, provision."""
    sr = next(v for v in s.xenapi.SR.get_all_records().values() if v["content_type"] == "user")
    t = s.xenapi.VM.get_by_name_label(template)[0]
    vm = s.xenapi.VM.clone(t, name)
    disks = s.xenapi.VM.get_other_config(vm)["disks"].replace('sr=""', f'sr="{sr["uuid"]}"')
    s.xenapi.VM.remove_from_other_config(vm, "disks")
    s.xenapi.VM.add_to_other_config(vm, "disks", disks)
    s.xenapi.VM.provision(vm)
    return vm


def test_domain_type_and_boot_policy_in_step(world):
    rel, w, s = world
    t = s.xenapi.VM.get_all_records()
    vm = s.xenapi.VM.clone(
        next(r for r, v in t.items() if v["is_a_template"] and v["HVM_boot_policy"]), "d"
    )
    s.xenapi.VM.set_HVM_boot_policy(vm, "")
    rec = s.xenapi.VM.get_record(vm)
    assert rec["HVM_boot_policy"] == ""
    if rel == "dundee":  # no domain_type before 7.5
        assert "domain_type" not in rec
        assert failure(s.xenapi.VM.set_domain_type, vm, "hvm")[0] == "MESSAGE_METHOD_UNKNOWN"
        return
    assert rec["domain_type"] == "pv"
    s.xenapi.VM.set_HVM_boot_policy(vm, "BIOS order")
    assert s.xenapi.VM.get_domain_type(vm) == "hvm"
    s.xenapi.VM.set_domain_type(vm, "pvh")
    assert s.xenapi.VM.get_HVM_boot_policy(vm) == ""
    s.xenapi.VM.set_domain_type(vm, "hvm")
    assert s.xenapi.VM.get_HVM_boot_policy(vm) == "BIOS order"
    assert failure(s.xenapi.VM.set_domain_type, vm, "unspecified") == [
        "INVALID_VALUE",
        "domain_type",
        "unspecified",
    ]
    assert s.xenapi.VM.get_domain_type(vm) == "hvm"


def test_uefi_start_and_nvram(world):
    rel, w, s = world
    if rel == "dundee":
        assert failure(s.xenapi.VTPM.get_all)[0] == "MESSAGE_METHOD_UNKNOWN"
        return
    template = "Windows 11" if rel != "stockholm" else "Windows 10 (64-bit)"
    vm = new_vm(s, template, "uefi")
    s.xenapi.VM.set_HVM_boot_params(vm, {"firmware": "uefi", "order": "cd"})
    s.xenapi.VM.add_to_platform(vm, "secureboot", "auto") if "secureboot" not in (
        s.xenapi.VM.get_platform(vm)
    ) else None
    s.xenapi.VM.set_NVRAM(vm, {})
    s.xenapi.VM.start(vm, False, False)
    rec = s.xenapi.VM.get_record(vm)
    assert rec["power_state"] == "Running"
    assert "EFI-variables" in rec["NVRAM"]  # varstored's first write
    assert rec["platform"]["secureboot"] in ("true", "false")
    if "uefi_certificates" in s.xenapi.pool.get_record(s.xenapi.pool.get_all()[0]):
        assert rec["platform"]["secureboot"] == "false"  # no certificates in the pool
    code, ref, expected, actual = failure(s.xenapi.VM.set_NVRAM, vm, {})
    assert (code, ref, expected, actual) == ("VM_BAD_POWER_STATE", vm, "halted", "running")
    s.xenapi.VM.hard_shutdown(vm)
    s.xenapi.VM.set_HVM_boot_params(vm, {"firmware": "coreboot"})
    assert failure(s.xenapi.VM.start, vm, False, False) == [
        "INVALID_VALUE",
        "HVM-boot-params['firmware']",
        "coreboot",
    ]
    assert s.xenapi.VM.get_power_state(vm) == "Halted"


def test_vtpm(world):
    rel, w, s = world
    if rel in ("dundee", "stockholm"):  # the class came with the 22.26.0 redesign
        assert failure(s.xenapi.VTPM.get_all)[0] == "MESSAGE_METHOD_UNKNOWN"
        return
    vm = new_vm(s, "Windows 11", "w11")
    rec = s.xenapi.VM.get_record(vm)
    assert rec["HVM_boot_params"]["firmware"] == "uefi"
    assert rec["platform"]["vtpm"] == "true"
    vtpm = s.xenapi.VTPM.create(vm, False)
    vrec = s.xenapi.VTPM.get_record(vtpm)
    assert vrec["VM"] == vm and vrec["allowed_operations"] == ["destroy"]
    assert vrec["persistence_backend"] == "xapi" and vrec["is_unique"] is False
    assert s.xenapi.VM.get_VTPMs(vm) == [vtpm]
    assert failure(s.xenapi.VTPM.create, vm, True) == ["VTPM_MAX_AMOUNT_REACHED", "1"]
    s.xenapi.VM.start(vm, False, False)
    assert s.xenapi.VTPM.get_allowed_operations(vtpm) == []
    assert "EFI-variables" in s.xenapi.VM.get_NVRAM(vm)
    assert failure(s.xenapi.VTPM.destroy, vtpm) == [
        "VM_BAD_POWER_STATE",
        vm,
        "halted",
        "running",
    ]
    s.xenapi.VM.hard_shutdown(vm)  # a fresh guest has no PV drivers (guest_agent)
    assert s.xenapi.VTPM.get_allowed_operations(vtpm) == ["destroy"]
    s.xenapi.VTPM.destroy(vtpm)
    assert s.xenapi.VM.get_VTPMs(vm) == []
    other = new_vm(s, "Windows 11", "w11b")
    s.xenapi.VM.start(other, False, False)
    assert failure(s.xenapi.VTPM.create, other, False)[0] == "VM_BAD_POWER_STATE"
