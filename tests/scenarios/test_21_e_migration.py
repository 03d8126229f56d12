"""Spec §21 E (migration checks and force), Dundee semantics: scenarios 29-38, over the wire."""

from __future__ import annotations


def pool(cpu1="Haswell", cpu2="Haswell", vms=()):
    """A 2-host pool (xs1 master) with Running VMs on xs1: vms = [(name, domain_type)]."""
    text = f"""
[[host]]
name_label = "xs1"
cpu = "{cpu1}"

[[host]]
name_label = "xs2"
cpu = "{cpu2}"

[[pool]]
name_label = "P"
master = "xs1"
members = ["xs2"]
"""
    for name, dt in vms:
        text += f"""
[[vm]]
name_label = "{name}"
domain_type = "{dt}"
power_state = "Running"
host = "xs1"
"""
    return text


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
power_state = "{state}"
host = "xs1"
"""


def level_drop(lab, state="Running"):
    """Scenario 25: a VM at L1 = Haswell ∩ Broadwell; then a Sandy Bridge host joins."""
    L = lab(LEVEL_DROP.format(state=state))
    vm = L.vm("vm")
    L1 = L.flags(vm)
    assert L1 == {"vendor": L.INTEL, "features": L.pool_info()["features_hvm"]}
    L.join("new", "xs1")
    assert L.meet(L1["features"], L.cpu_info("new")["features_hvm"]) != L1["features"]
    return L, vm, L1


# -- 29 --------------------------------------------------------------------------------------


def test_21_29_vendor_mismatch(lab):
    L = lab(
        pool(vms=[("vm", "hvm"), ("vm2", "hvm")])
        + """
[[host]]
name_label = "amd"
cpu = "EPYC"
"""
    )
    x = L.x
    L.join("amd", "xs1", force=True)
    T = L.ref("amd")
    assert L.cpu_info("amd")["vendor"] == L.AMD
    vm, vm2 = L.vm("vm"), L.vm("vm2")
    assert L.flags(vm)["vendor"] == L.INTEL
    with L.fails("VM_INCOMPATIBLE_WITH_THIS_HOST", vm, T, L.REASON_VENDOR):
        x.VM.pool_migrate(vm, T, {})
    # the vendor test runs first: features that would fail too still give the vendor reason
    L.set_flags(vm2, {"vendor": L.INTEL, "features": "-".join(["ffffffff"] * 9)})
    with L.fails("VM_INCOMPATIBLE_WITH_THIS_HOST", vm2, T, L.REASON_VENDOR):
        x.VM.pool_migrate(vm2, T, {})
    assert x.VM.get_resident_on(vm) == x.VM.get_resident_on(vm2) == L.ref("xs1")


# -- 30 --------------------------------------------------------------------------------------


def test_21_30_vendor_but_no_features(lab):
    L = lab(pool("Haswell", "SandyBridge", vms=[("h", "hvm"), ("p", "pv")]))
    x = L.x
    dest = L.ref("xs2")
    info = L.cpu_info("xs2")
    for name, key in (("h", "features_hvm"), ("p", "features_pv")):
        vm = L.vm(name)
        L.set_flags(vm, {"vendor": L.INTEL})
        x.VM.pool_migrate(vm, dest, {})  # any feature level: the least capable host
        assert x.VM.get_resident_on(vm) == dest
        assert L.flags(vm) == {"vendor": info["vendor"], "features": info[key]}


# -- 31 --------------------------------------------------------------------------------------


def test_21_31_features_but_no_vendor(lab):
    L = lab(pool(vms=[("ok", "hvm"), ("big", "hvm"), ("ctl", "hvm")]))
    x = L.x
    # toy: T reports another vendor but the same features
    L.hw("xs2", vendor=L.AMD)
    T = L.ref("xs2")
    X = L.cpu_info("xs2")["features_hvm"]
    ok, big, ctl = L.vm("ok"), L.vm("big"), L.vm("ctl")
    # no vendor key: the vendor is not checked; the features are
    L.set_flags(ok, {"features": X})
    x.VM.pool_migrate(ok, T, {})
    assert x.VM.get_resident_on(ok) == T
    assert L.flags(ok) == {"features": X}  # same string: not rewritten (§11 step 4)
    L.set_flags(big, {"features": "-".join(["ffffffff"] * 9)})
    with L.fails("VM_INCOMPATIBLE_WITH_THIS_HOST", big, T, L.REASON_FEATURES):
        x.VM.pool_migrate(big, T, {})
    # control: with a vendor key the same VM set fails on the vendor
    L.set_flags(ctl, {"vendor": L.INTEL, "features": X})
    with L.fails("VM_INCOMPATIBLE_WITH_THIS_HOST", ctl, T, L.REASON_VENDOR):
        x.VM.pool_migrate(ctl, T, {})


# -- 32 --------------------------------------------------------------------------------------


def test_21_32_empty_flags(lab):
    L = lab(pool("Haswell", "SandyBridge", vms=[("vm", "hvm")]))
    x = L.x
    vm = L.vm("vm")
    L.set_flags(vm, {})
    for host in ("xs1", "xs2"):
        x.VM.assert_can_migrate(vm, {"host": L.ref(host)}, True, {}, {}, {})
    x.VM.pool_migrate(vm, L.ref("xs2"), {})
    info = L.cpu_info("xs2")
    assert L.flags(vm) == {"vendor": info["vendor"], "features": info["features_hvm"]}


# -- 33 --------------------------------------------------------------------------------------


def test_21_33_force(lab):
    L, vm, L1 = level_drop(lab)
    x = L.x
    new, xs1 = L.ref("new"), L.ref("xs1")
    with L.fails("VM_INCOMPATIBLE_WITH_THIS_HOST", vm, new, L.REASON_FEATURES):
        x.VM.pool_migrate(vm, new, {"force": "yes"})  # not bool_of_string "true"
    with L.fails("VM_INCOMPATIBLE_WITH_THIS_HOST", vm, new, L.REASON_FEATURES):
        x.VM.assert_can_migrate(vm, {"host": new}, True, {}, {}, {"force": "yes"})
    x.VM.assert_can_migrate(vm, {"host": new}, True, {}, {}, {"force": "true"})
    x.VM.pool_migrate(vm, new, {"force": "true"})
    assert x.VM.get_resident_on(vm) == new
    assert L.flags(vm) == L1  # unchanged: same length, not intersected
    # resized, not intersected: a 10-word set forced onto the 9-word host is truncated only
    x.VM.pool_migrate(vm, xs1, {})
    L.set_flags(vm, {"vendor": L.INTEL, "features": L1["features"] + "-ffffffff"})
    x.VM.pool_migrate(vm, new, {"force": "true"})
    assert L.flags(vm) == {"vendor": L.INTEL, "features": L1["features"]}


# -- 34 --------------------------------------------------------------------------------------


def test_21_34_pv_vs_hvm_key_selection(lab):
    L = lab(pool(vms=[("p1", "pv"), ("p2", "pv")]))
    x = L.x
    L.hw("xs2", features_pv=L.w9(0x0F), features_hvm=L.w9(0x01))
    T = L.ref("xs2")
    p1, p2 = L.vm("p1"), L.vm("p2")
    for vm in (p1, p2):
        L.set_flags(vm, {"vendor": L.INTEL, "features": L.w9(0x0F)})
    assert x.VM.get_HVM_boot_policy(p1) == ""
    x.VM.pool_migrate(p1, T, {})
    assert x.VM.get_resident_on(p1) == T
    # HVM_boot_policy changed while it runs: Dundee now compares against features_hvm
    x.VM.set_HVM_boot_policy(p2, "BIOS order")
    with L.fails("VM_INCOMPATIBLE_WITH_THIS_HOST", p2, T, L.REASON_FEATURES):
        x.VM.pool_migrate(p2, T, {})
    x.VM.set_HVM_boot_policy(p2, "")
    x.VM.pool_migrate(p2, T, {})
    assert x.VM.get_resident_on(p2) == T


# -- 35 --------------------------------------------------------------------------------------


def test_21_35_suspend_resume(lab):
    L, vm, L1 = level_drop(lab, state="Suspended")
    x = L.x
    T = L.ref("new")
    assert x.VM.get_power_state(vm) == "Suspended"
    for h in ("xs1", "xs2"):  # only T (lacking L1 bits) stays enabled
        x.host.disable(L.ref(h))
    with L.fails("NO_HOSTS_AVAILABLE"):
        x.VM.resume(vm, False, False)
    with L.fails("NO_HOSTS_AVAILABLE"):  # placement ignores force
        x.VM.resume(vm, False, True)
    with L.fails("VM_INCOMPATIBLE_WITH_THIS_HOST", vm, T, L.REASON_FEATURES):
        x.VM.resume_on(vm, T, False, False)
    assert x.VM.get_power_state(vm) == "Suspended"
    x.VM.resume_on(vm, T, False, True)
    assert x.VM.get_power_state(vm) == "Running"
    assert x.VM.get_resident_on(vm) == T
    assert L.flags(vm) == L1  # fixed across suspend/resume


# -- 36 --------------------------------------------------------------------------------------


def test_21_36_checkpoint_revert(lab):
    L = lab(LEVEL_DROP.format(state="Running"))
    x = L.x
    vm = L.vm("vm")
    L1 = L.flags(vm)
    cp = x.VM.checkpoint(vm, "cp-at-L1")
    rec = x.VM.get_record(cp)
    assert rec["is_a_snapshot"] is True and rec["snapshot_of"] == vm
    assert rec["power_state"] == "Suspended"
    assert rec["last_boot_CPU_flags"] == L1
    assert cp in x.VM.get_snapshots(vm)
    assert x.VM.get_power_state(vm) == "Running"
    # the pool level changes to L2; the VM itself is restarted at L2 and fits the new host
    L.join("new", "xs1")
    L2 = L.pool_info()["features_hvm"]
    assert L2 != L1["features"]
    new = L.ref("new")
    x.VM.clean_shutdown(vm)
    x.VM.start(vm, False, False)
    assert L.flags(vm) == {"vendor": L.INTEL, "features": L2}
    x.VM.pool_migrate(vm, new, {})
    # revert to the checkpoint: Suspended with the checkpoint's flags
    x.VM.revert(cp)
    assert x.VM.get_power_state(vm) == "Suspended"
    assert L.flags(vm) == L1
    # the resume is checked against L1, not L2
    with L.fails("VM_INCOMPATIBLE_WITH_THIS_HOST", vm, new, L.REASON_FEATURES):
        x.VM.resume_on(vm, new, False, False)
    for h in ("xs1", "xs2"):
        x.host.disable(L.ref(h))
    with L.fails("NO_HOSTS_AVAILABLE"):
        x.VM.resume(vm, False, False)
    x.host.enable(L.ref("xs1"))
    x.VM.resume(vm, False, False)
    assert x.VM.get_resident_on(vm) == L.ref("xs1")
    assert L.flags(vm) == L1


# -- 37 --------------------------------------------------------------------------------------

CROSS_POOL = """
[[host]]
name_label = "src"
cpu = "Haswell"

[[host]]
name_label = "d"
cpu = "Haswell"

[[host]]
name_label = "d2"
cpu = "SandyBridge"

[[pool]]
name_label = "P"
master = "src"

[[pool]]
name_label = "Q"
master = "d"
members = ["d2"]

[[vm]]
name_label = "vm"
power_state = "Running"
host = "src"

[[vm]]
name_label = "halted"
power_state = "Halted"
host = "src"
"""


def test_21_37_cross_pool_uses_the_destination_host(lab):
    L = lab(CROSS_POOL)
    x, xq = L.x, L.api("d")
    vm, halted = L.vm("vm"), L.vm("halted")
    flags = L.flags(vm)
    q_level = L.pool_info(xq)["features_hvm"]
    assert L.meet(flags["features"], q_level) != flags["features"]  # Q is below the VM
    assert L.meet(flags["features"], L.cpu_info("d")["features_hvm"]) == flags["features"]
    net = xq.network.get_all()[0]
    dest_d = xq.host.migrate_receive(L.ref("d"), net, {})
    dest_d2 = xq.host.migrate_receive(L.ref("d2"), net, {})
    x.VM.assert_can_migrate(vm, dest_d, True, {}, {}, {})
    with L.fails("VM_INCOMPATIBLE_WITH_THIS_HOST", vm, L.ref("d2"), L.REASON_FEATURES):
        x.VM.assert_can_migrate(vm, dest_d2, True, {}, {}, {})
    with L.fails("VM_INCOMPATIBLE_WITH_THIS_HOST", vm, L.ref("d2"), L.REASON_FEATURES):
        x.VM.migrate_send(vm, dest_d2, True, {}, {}, {})
    x.VM.assert_can_migrate(vm, dest_d2, True, {}, {}, {"force": "true"})
    # a Halted VM is never checked, even with flags no host has
    L.set_flags(halted, {"vendor": L.AMD, "features": "-".join(["ffffffff"] * 9)})
    x.VM.assert_can_migrate(halted, dest_d2, False, {}, {}, {})
    # the real move to D
    x.VM.migrate_send(vm, dest_d, True, {}, {}, {})
    moved = L.vm("vm", xq)
    assert xq.VM.get_resident_on(moved) == L.ref("d")
    assert xq.VM.get_last_boot_CPU_flags(moved) == flags
    assert x.VM.get_by_name_label("vm") == []


# -- 38 --------------------------------------------------------------------------------------


def test_21_38_assert_can_boot_here_has_no_cpu_check(lab):
    L, vm, L1 = level_drop(lab)
    x = L.x
    T = L.ref("new")
    with L.fails("VM_INCOMPATIBLE_WITH_THIS_HOST", vm, T, L.REASON_FEATURES):
        x.VM.pool_migrate(vm, T, {})
    x.VM.assert_can_boot_here(vm, T)  # Dundee: no CPU check
    assert T in x.VM.get_possible_hosts(vm)
