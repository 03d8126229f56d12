"""Spec §21 D (VM start / reboot / shutdown), Dundee semantics: scenarios 24-28, over the wire."""

from __future__ import annotations

TOY_POOL = """
[[host]]
name_label = "xs1"
cpu = "Haswell"

[[host]]
name_label = "xs2"
cpu = "Haswell"

[[pool]]
name_label = "P"
master = "xs1"
members = ["xs2"]

[[vm]]
name_label = "pv"
domain_type = "pv"
power_state = "Halted"
host = "xs1"

[[vm]]
name_label = "hvm"
domain_type = "hvm"
power_state = "Halted"
host = "xs2"
"""

# Scenario 25's pool: a VM running at level L1 = Haswell ∩ Broadwell; a less capable
# standalone host (Sandy Bridge) that will join.
LEVEL_DROP = """
[[host]]
name_label = "xs1"
cpu = "Haswell"

[[host]]
name_label = "xs2"
cpu = "Broadwell"

[[host]]
name_label = "new"
cpu = "SandyBridge"

[[pool]]
name_label = "P"
master = "xs1"
members = ["xs2"]

[[vm]]
name_label = "vm"
domain_type = "hvm"
power_state = "Running"
host = "xs1"
"""


def level_drop(lab):
    """Scenario 25's setup: returns (L, vm, L1 flags, L2 pool hvm level)."""
    L = lab(LEVEL_DROP)
    vm = L.vm("vm")
    L1 = L.flags(vm)
    assert L1 == {"vendor": L.INTEL, "features": L.pool_info()["features_hvm"]}
    L.join("new", "xs1")
    L2 = L.pool_info()["features_hvm"]
    assert L2 == L.meet(L1["features"], L.cpu_info("new")["features_hvm"]) != L1["features"]
    return L, vm, L1, L2


# -- 24 --------------------------------------------------------------------------------------


def test_21_24_start_takes_the_pool_level(lab):
    L = lab(TOY_POOL)
    x = L.x
    L.hw("xs1", features_pv=L.w9(0x0F), features_hvm=L.w9(0xFF))
    L.hw("xs2", features_pv=L.w9(0x07), features_hvm=L.w9(0x7F))
    V = L.pool_info()["vendor"]
    assert V == L.INTEL
    pv, hvm = L.vm("pv"), L.vm("hvm")
    assert x.VM.get_HVM_boot_policy(pv) == ""
    assert x.VM.get_HVM_boot_policy(hvm) == "BIOS order"
    for host in ("xs1", "xs2"):  # regardless of the host it lands on
        x.VM.start_on(pv, L.ref(host), False, False)
        x.VM.start_on(hvm, L.ref(host), False, False)
        assert L.flags(pv) == {"vendor": V, "features": L.w9(0x07)}
        assert L.flags(hvm) == {"vendor": V, "features": L.w9(0x7F)}
        x.VM.hard_shutdown(pv)
        x.VM.clean_shutdown(hvm)
    x.VM.start(pv, False, False)
    x.VM.start(hvm, True, False)  # start paused: same rule
    assert L.flags(pv) == {"vendor": V, "features": L.w9(0x07)}
    assert L.flags(hvm) == {"vendor": V, "features": L.w9(0x7F)}


# -- 25 --------------------------------------------------------------------------------------


def test_21_25_fixed_while_running(lab):
    L, vm, L1, L2 = level_drop(lab)
    x = L.x
    assert L.flags(vm) == L1  # still L1 although the pool is now L2
    for host in ("xs2", "xs1"):  # any original host
        x.VM.pool_migrate(vm, L.ref(host), {})
        assert x.VM.get_resident_on(vm) == L.ref(host)
        assert L.flags(vm) == L1
    new = L.ref("new")
    with L.fails("VM_INCOMPATIBLE_WITH_THIS_HOST", vm, new, L.REASON_FEATURES):
        x.VM.pool_migrate(vm, new, {})
    assert x.VM.get_resident_on(vm) == L.ref("xs1")


# -- 26 --------------------------------------------------------------------------------------


def test_21_26_reboot_keeps_the_featureset(lab):
    L, vm, L1, L2 = level_drop(lab)
    x = L.x
    new = L.ref("new")
    x.VM.clean_reboot(vm)
    assert x.VM.get_power_state(vm) == "Running"
    assert L.flags(vm) == L1
    x.VM.hard_reboot(vm)
    assert x.VM.get_power_state(vm) == "Running"
    assert L.flags(vm) == L1
    with L.fails("VM_INCOMPATIBLE_WITH_THIS_HOST", vm, new, L.REASON_FEATURES):
        x.VM.pool_migrate(vm, new, {})
    # only shutdown + start applies the current pool level
    x.VM.clean_shutdown(vm)
    x.VM.start(vm, False, False)
    assert L.flags(vm) == {"vendor": L.INTEL, "features": L2}
    x.VM.pool_migrate(vm, new, {})
    assert x.VM.get_resident_on(vm) == new


# -- 27 --------------------------------------------------------------------------------------


def test_21_27_platform_featureset_override(lab):
    L = lab("""
[[host]]
name_label = "xs1"
cpu = "Haswell"

[[host]]
name_label = "xs2"
cpu = "Haswell"

[[pool]]
name_label = "P"
master = "xs1"
members = ["xs2"]

[[vm]]
name_label = "vm"
domain_type = "hvm"
power_state = "Halted"
host = "xs1"
""")
    x = L.x
    vm = L.vm("vm")
    override = L.w9(0x1)
    x.VM.add_to_platform(vm, "featureset", override)
    x.VM.start_on(vm, L.ref("xs1"), False, False)
    level = L.pool_info()["features_hvm"]
    assert L.flags(vm) == {"vendor": L.INTEL, "features": level}  # not the override
    assert x.VM.get_platform(vm)["featureset"] == override
    # later checks use the pool level: xs2 loses features the level had (but it still has
    # everything of the override) -> the migration is refused
    L.hw("xs2", cpu="SandyBridge")
    xs2_hvm = L.cpu_info("xs2")["features_hvm"]
    assert L.meet(override, xs2_hvm) == override
    assert L.meet(level, xs2_hvm) != level
    with L.fails("VM_INCOMPATIBLE_WITH_THIS_HOST", vm, L.ref("xs2"), L.REASON_FEATURES):
        x.VM.pool_migrate(vm, L.ref("xs2"), {})


# -- 28 --------------------------------------------------------------------------------------


def test_21_28_halted_skips_the_check(lab):
    L = lab("""
[[host]]
name_label = "xs1"
cpu = "Haswell"

[[host]]
name_label = "xs2"
cpu = "IvyBridge"

[[pool]]
name_label = "P"
master = "xs1"
members = ["xs2"]

[[vm]]
name_label = "a"
power_state = "Halted"
host = "xs1"

[[vm]]
name_label = "b"
power_state = "Halted"
host = "xs1"
""")
    x = L.x
    a, b = L.vm("a"), L.vm("b")
    amd = {"vendor": L.AMD, "features": "ffffffff"}
    L.set_flags(a, amd)
    L.set_flags(b, amd)
    level = L.pool_info()
    expected = {"vendor": L.INTEL, "features": level["features_hvm"]}
    x.VM.start(a, False, False)
    assert x.VM.get_power_state(a) == "Running"
    assert L.flags(a) == expected
    for host in ("xs2", "xs1"):
        x.VM.start_on(b, L.ref(host), False, False)
        assert x.VM.get_resident_on(b) == L.ref(host)
        assert L.flags(b) == expected
        x.VM.hard_shutdown(b)
        L.set_flags(b, amd)
