"""Spec §21 F (evacuation / placement), Dundee semantics: scenarios 39-40, over the wire."""

from __future__ import annotations

# -- 39 --------------------------------------------------------------------------------------


def test_21_39_dundee_evacuation_fails_mid_way(lab):
    """E runs a VM at the Haswell level; T then restarts with Sandy Bridge hardware. T is the
    only other host with memory for the VM (the master has too little)."""
    L = lab("""
[[host]]
name_label = "m"
cpu = "Haswell"
memory = "4GiB"

[[host]]
name_label = "e"
cpu = "Haswell"

[[host]]
name_label = "t"
cpu = "Haswell"

[[pool]]
name_label = "P"
master = "m"
members = ["e", "t"]

[[vm]]
name_label = "vm"
power_state = "Running"
host = "e"
memory = "8GiB"
""")
    x = L.x
    E, T = L.ref("e"), L.ref("t")
    vm = L.vm("vm")
    L.hw("t", cpu="SandyBridge")
    assert x.host.get_enabled(T) is True
    flags = L.flags(vm)
    assert L.meet(flags["features"], L.cpu_info("t")["features_hvm"]) != flags["features"]
    # Dundee: the plan ignores the CPU
    x.host.assert_can_evacuate(E)
    assert x.host.get_vms_which_prevent_evacuation(E) == {}
    # ... and the execution (pool_migrate without force) fails on it
    x.host.disable(E)
    with L.fails("VM_INCOMPATIBLE_WITH_THIS_HOST", vm, T, L.REASON_FEATURES):
        x.host.evacuate(E)
    assert x.VM.get_resident_on(vm) == E
    assert L.flags(vm) == flags


# -- 40 --------------------------------------------------------------------------------------


def test_21_40_start_placement_ignores_cpu_for_halted_vms(lab):
    L = lab("""
[[host]]
name_label = "xs1"
cpu = "Haswell"

[[host]]
name_label = "weak"
cpu = "SandyBridge"

[[pool]]
name_label = "P"
master = "xs1"
members = ["weak"]

[[vm]]
name_label = "vm"
power_state = "Halted"
host = "xs1"

[[vm]]
name_label = "vm2"
power_state = "Halted"
host = "weak"
""")
    x = L.x
    weak = L.ref("weak")
    vm, vm2 = L.vm("vm"), L.vm("vm2")
    haswell = {"vendor": L.INTEL, "features": L.cpu_info("xs1")["features_hvm"]}
    assert L.meet(haswell["features"], L.cpu_info("weak")["features_hvm"]) != haswell["features"]
    level = {"vendor": L.INTEL, "features": L.pool_info()["features_hvm"]}
    # flags the less capable host cannot satisfy: a Halted VM is not CPU-filtered
    L.set_flags(vm2, haswell)
    x.VM.start(vm2, False, False)  # affinity: the less capable host
    assert x.VM.get_resident_on(vm2) == weak
    assert L.flags(vm2) == level
    L.set_flags(vm, haswell)
    x.host.disable(L.ref("xs1"))  # the less capable host is the only choice
    assert weak in x.VM.get_possible_hosts(vm)
    x.VM.start(vm, False, False)
    assert x.VM.get_resident_on(vm) == weak
    assert L.flags(vm) == level
