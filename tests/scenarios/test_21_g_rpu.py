"""Spec §21 G (Rolling Pool Upgrade and old-style flags) and issue 5, over the wire with XenAPI.

A XenServer 6.5 SP1 pool of three Intel hosts (masked down to a common level, as 6.5 required)
is upgraded host by host to 7.0 with ``sim.host_install``.
"""

from __future__ import annotations

import pytest
import XenAPI

from xapi_sim.levelling import featureset as fs
from xapi_sim.testing import running_world

POOL65 = """
[[host]]
name_label = "m"
cpu = "Haswell"
version = "6.5.0"
[[host]]
name_label = "o1"
cpu = "IvyBridge"
version = "6.5.0"
[[host]]
name_label = "o2"
cpu = "SandyBridge"
version = "6.5.0"
[[host]]
name_label = "d1"
cpu = "Haswell"
[[host]]
name_label = "d2"
cpu = "SandyBridge"
[[pool]]
name_label = "legacy"
master = "m"
members = ["o1", "o2"]
[[pool]]
name_label = "dest"
master = "d1"
members = ["d2"]
[[vm]]
name_label = "vm1"
power_state = "Running"
host = "o1"
[[vm]]
name_label = "vm2"
power_state = "Halted"
host = "m"
[[vm]]
name_label = "vm3"
power_state = "Suspended"
host = "o1"
[[vm]]
name_label = "dvm"
power_state = "Running"
host = "d1"
[[vm]]
name_label = "pv1"
domain_type = "pv"
power_state = "Running"
host = "o2"
"""


class Pool:
    """A logged-in view of one pool, with name -> ref maps."""

    def __init__(self, w, master):
        self.w = w
        self.s = XenAPI.Session(w.url(master))
        self.s.xenapi.login_with_password("root", "xenroot")
        self.x = self.s.xenapi

    def relogin(self, master):
        self.__init__(self.w, master)
        return self

    @property
    def pool(self):
        return self.x.pool.get_all()[0]

    def host(self, name):
        return self.w.host(name).ref

    def vm(self, name):
        return self.x.VM.get_by_name_label(name)[0]

    def sim(self, method, *args):
        return self.s.xenapi_request(f"sim.{method}", args)

    def install(self, name, version="7.0.0"):
        """The RPU routine for one host: disable, evacuate, install, boot."""
        self.x.host.disable(self.host(name))
        self.x.host.evacuate(self.host(name))
        self.sim("host_install", self.host(name), version)


@pytest.fixture
def w():
    with running_world(POOL65, seed=5) as w:
        yield w


def fail(call, *args):
    with pytest.raises(XenAPI.Failure) as e:
        call(*args)
    return e.value.details


def test_65_hosts_report_pre_dundee_identity(w):
    p = Pool(w, "m")
    m = p.host("m")
    sv = p.x.host.get_software_version(m)
    assert (sv["product_version"], sv["platform_version"], sv["xapi"]) == ("6.5.0", "1.9.0", "1.9")
    assert (p.x.host.get_API_version_major(m), p.x.host.get_API_version_minor(m)) == ("2", "4")
    info = p.x.host.get_cpu_info(p.host("o1"))
    assert list(info) == [
        "cpu_count",
        "socket_count",
        "vendor",
        "speed",
        "modelname",
        "family",
        "model",
        "stepping",
        "flags",
        "features",
        "features_after_reboot",
        "physical_features",
        "maskable",
    ]
    assert len(info["features"].split("-")) == 4
    # the pool is valid for 6.5: every host masked to the same old-style features
    feats = {p.x.host.get_cpu_info(h)["features"] for h in p.x.host.get_all()}
    assert len(feats) == 1
    # a 6.5 pool has no pool.cpu_info, and VMs booted with their host's old-style flags
    assert "cpu_info" not in p.x.pool.get_record(p.pool)
    assert p.x.VM.get_last_boot_CPU_flags(p.vm("vm1")) == {
        "vendor": "GenuineIntel",
        "features": feats.pop(),
    }


def test_65_join_needs_identical_features(w):
    """Pre-Dundee join rule (§5.2): vendor and features equal to the master host's."""
    p = Pool(w, "m")
    x = p.x
    ref = p.sim("add_host", {"name_label": "new65", "cpu": "Haswell", "version": "6.5.0"})
    s = XenAPI.Session(w.world.host(ref).url)
    s.xenapi.login_with_password("root", "xenroot")
    err = fail(s.xenapi.pool.join, w.host("m").address, "root", "xenroot")
    assert err == ["HOSTS_NOT_HOMOGENEOUS", "CPUs differ"]
    assert len(x.host.get_all()) == 3


def test_21_41_rpu_direction(w):
    p = Pool(w, "m")
    p.install("m")
    p.relogin("m")
    x = p.x
    assert x.pool.get_other_config(p.pool)["rolling_upgrade_in_progress"] == "true"
    m, o1 = p.host("m"), p.host("o1")
    x.VM.start_on(p.vm("vm2"), m, False, False)
    # make the running VM CPU-incompatible with o1 too: the version rule must come first
    p.sim("vm_set_last_boot_CPU_flags", p.vm("vm2"), {"vendor": "AuthenticAMD"})
    assert fail(x.VM.pool_migrate, p.vm("vm2"), o1, {}) == ["NOT_SUPPORTED_DURING_UPGRADE"]
    x.VM.hard_shutdown(p.vm("vm2"))
    assert fail(x.VM.start_on, p.vm("vm2"), o1, False, False) == ["NOT_SUPPORTED_DURING_UPGRADE"]
    assert fail(x.VM.resume_on, p.vm("vm3"), o1, False, False) == ["NOT_SUPPORTED_DURING_UPGRADE"]
    assert fail(x.VM.assert_can_boot_here, p.vm("vm2"), o1) == [
        "VM_HOST_INCOMPATIBLE_VERSION",
        o1,
        p.vm("vm2"),
    ]
    for _ in range(3):
        x.VM.start(p.vm("vm2"), False, False)
        assert x.VM.get_resident_on(p.vm("vm2")) == m
        x.VM.hard_shutdown(p.vm("vm2"))


def test_21_42_migrate_send_direction_without_rpu_flag(w):
    p = Pool(w, "m")
    p.install("m")
    p.relogin("m")
    x = p.x
    # before the master's DB GC pass has set the flag (we take it away again)
    x.pool.remove_from_other_config(p.pool, "rolling_upgrade_in_progress")
    vm, m, o1 = p.vm("vm2"), p.host("m"), p.host("o1")
    x.VM.start_on(vm, m, False, False)
    net = x.network.get_all()[0]
    dest = x.host.migrate_receive(o1, net, {})
    assert fail(x.VM.migrate_send, vm, dest, True, {}, {}, {}) == ["NOT_SUPPORTED_DURING_UPGRADE"]
    x.VM.pool_migrate(vm, o1, {})  # pool_migrate checks direction only in RPU mode
    assert x.VM.get_resident_on(vm) == o1


def test_21_43_pool_level_during_rpu(w):
    p = Pool(w, "m")
    p.install("m")
    p.relogin("m")
    x = p.x
    m_info = x.host.get_cpu_info(p.host("m"))
    pool = x.pool.get_cpu_info(p.pool)
    assert pool["features_hvm"] == m_info["features_hvm"]
    assert pool["features_pv"] == m_info["features_pv"]
    assert pool["cpu_count"] == m_info["cpu_count"]
    p.install("o1")
    o1_info = x.host.get_cpu_info(p.host("o1"))
    pool = x.pool.get_cpu_info(p.pool)
    assert pool["features_hvm"] == fs.format(
        fs.intersect(fs.parse(m_info["features_hvm"]), fs.parse(o1_info["features_hvm"]))
    )
    assert int(pool["cpu_count"]) == int(m_info["cpu_count"]) + int(o1_info["cpu_count"])
    assert x.message.get_all() == []  # alerts suppressed during RPU
    p.install("o2")
    assert "rolling_upgrade_in_progress" not in x.pool.get_other_config(p.pool)


def test_21_44_old_vm_comes_to_upgraded_host(w):
    p = Pool(w, "m")
    p.install("m")
    p.relogin("m")
    x = p.x
    vm, m = p.vm("vm1"), p.host("m")
    old = x.VM.get_last_boot_CPU_flags(vm)
    assert len(old["features"].split("-")) == 4
    x.VM.pool_migrate(vm, m, {})
    host_set = fs.parse(x.host.get_cpu_info(m)["features_hvm"])
    expect = fs.upgrade_vm_features(fs.parse_oldstyle(old["features"]), host_set, True)
    new = x.VM.get_last_boot_CPU_flags(vm)
    assert new == {"vendor": "GenuineIntel", "features": fs.format(expect)}
    assert fs.parse(new["features"])[4:] == host_set[4:]  # the landing host's tail
    x.VM.clean_shutdown(vm)
    x.VM.start(vm, False, False)
    assert (
        x.VM.get_last_boot_CPU_flags(vm)["features"] == x.pool.get_cpu_info(p.pool)["features_hvm"]
    )


def test_21_44_suspended_old_vm_resumes_on_upgraded_host(w):
    """Back-filling on resume (§11): a VM suspended by 6.5 resumes on a 7.0 host."""
    p = Pool(w, "m")
    p.install("m")
    p.relogin("m")
    x = p.x
    vm, m = p.vm("vm3"), p.host("m")
    old = x.VM.get_last_boot_CPU_flags(vm)
    x.VM.resume_on(vm, m, False, False)
    host_set = fs.parse(x.host.get_cpu_info(m)["features_hvm"])
    assert x.VM.get_last_boot_CPU_flags(vm)["features"] == fs.format(
        fs.upgrade_vm_features(fs.parse_oldstyle(old["features"]), host_set, True)
    )


def test_21_45_old_host_as_target_is_trusted(w):
    """A destination without the new keys passes the CPU check silently (Dundee)."""
    p = Pool(w, "d1")
    x = p.x
    w.world.join_restart_delay = 30.0  # the joiner's record keeps cpu_info = {} meanwhile
    ref = p.sim("add_host", {"name_label": "late", "cpu": "Haswell"})
    s = XenAPI.Session(w.world.host(ref).url)
    s.xenapi.login_with_password("root", "xenroot")
    s.xenapi.pool.join(w.host("d1").address, "root", "xenroot")
    assert x.host.get_cpu_info(ref) == {}
    vm = p.vm("dvm")
    p.sim("vm_set_last_boot_CPU_flags", vm, {"vendor": "AuthenticAMD"})
    # against a host with the keys the vendor test fails ...
    assert fail(x.VM.pool_migrate, vm, p.host("d2"), {}) == [
        "VM_INCOMPATIBLE_WITH_THIS_HOST",
        vm,
        p.host("d2"),
        "VM last booted on a host which had a CPU from a different vendor.",
    ]
    # ... against the key-less host the CPU check passes and a later check decides
    err = fail(x.VM.pool_migrate, vm, ref, {})
    assert err == ["HOST_DISABLED", ref]


def test_21_47_cross_pool_to_older_version(w):
    dst = Pool(w, "m")  # the 6.5 pool is the older destination
    src = Pool(w, "d1")
    x = src.x
    vm = src.vm("dvm")
    net = dst.x.network.get_all()[0]
    dest = dst.x.host.migrate_receive(dst.host("o1"), net, {})
    assert fail(x.VM.migrate_send, vm, dest, True, {}, {}, {}) == ["NOT_SUPPORTED_DURING_UPGRADE"]
    assert fail(x.VM.assert_can_migrate, vm, dest, True, {}, {}, {}) == [
        "NOT_SUPPORTED_DURING_UPGRADE"
    ]


def test_cross_pool_from_65_then_backfill(w):
    """§12: a VM leaving a 6.5 pool passes the v1 check against the destination host's
    old-style ``features``, then lands with the landing host's feature tail."""
    src = Pool(w, "m")
    dst = Pool(w, "d1")
    vm = src.vm("vm1")
    old = src.x.VM.get_last_boot_CPU_flags(vm)
    net = dst.x.network.get_all()[0]
    d1 = dst.host("d1")
    dest = dst.x.host.migrate_receive(d1, net, {})
    src.x.VM.assert_can_migrate(vm, dest, True, {}, {}, {})
    src.x.VM.migrate_send(vm, dest, True, {}, {}, {})
    assert src.x.VM.get_by_name_label("vm1") == []
    assert dst.x.VM.get_resident_on(vm) == d1
    host_set = fs.parse(dst.x.host.get_cpu_info(d1)["features_hvm"])
    assert dst.x.VM.get_last_boot_CPU_flags(vm)["features"] == fs.format(
        fs.upgrade_vm_features(fs.parse_oldstyle(old["features"]), host_set, True)
    )
    dst.x.VM.clean_shutdown(vm)
    dst.x.VM.start(vm, False, False)
    assert (
        dst.x.VM.get_last_boot_CPU_flags(vm)["features"]
        == dst.x.pool.get_cpu_info(dst.pool)["features_hvm"]
    )


def test_rpu_full_upgrade_then_pool_level(w):
    """Upgrade every host: the flag clears, the pool level is the intersection of all."""
    p = Pool(w, "m")
    for h in ("m", "o1", "o2"):
        p.install(h)
        if h == "m":
            p.relogin("m")
    x = p.x
    assert "rolling_upgrade_in_progress" not in x.pool.get_other_config(p.pool)
    infos = [x.host.get_cpu_info(h) for h in x.host.get_all()]
    level = ()
    for i in infos:
        level = fs.intersect(level, fs.parse(i["features_hvm"]))
    assert x.pool.get_cpu_info(p.pool)["features_hvm"] == fs.format(level)
    assert all("features" in i and len(i["features"].split("-")) == 4 for i in infos)
    sv = x.host.get_software_version(p.host("o2"))
    assert sv["product_version"] == "7.0.0"
    assert x.host.get_API_version_minor(p.host("o2")) == "5"
    # RPU ended: every VM's allowed_operations is back to the full list
    assert "snapshot" in x.VM.get_allowed_operations(p.vm("pv1"))


def test_rpu_allowed_operations_follow_flag(w):
    """§13 / §21 46: during RPU allowed_operations lack snapshot, checkpoint, migrate_send."""
    p = Pool(w, "m")
    p.install("m")
    p.relogin("m")
    ops = p.x.VM.get_allowed_operations(p.vm("vm1"))
    assert "pool_migrate" in ops
    for op in ("snapshot", "checkpoint", "migrate_send"):
        assert op not in ops


def test_install_preconditions(w):
    p = Pool(w, "m")
    x = p.x
    assert fail(p.sim, "host_install", p.host("o1"), "7.0.0") == ["HOST_NOT_DISABLED"]
    x.host.disable(p.host("o1"))
    assert fail(p.sim, "host_install", p.host("o1"), "7.0.0") == [
        "HOST_HAS_RESIDENT_VMS",
        p.host("o1"),
    ]
    assert fail(p.sim, "host_install", p.host("o1"), "9.9.9")[0] == "INVALID_VALUE"


def test_21_46_snapshot_still_works_during_rpu(w):
    """Dundee: the Miami list is informational; VM.snapshot is not refused during RPU."""
    p = Pool(w, "m")
    p.install("m")
    p.relogin("m")
    vm = p.vm("vm1")
    assert "snapshot" not in p.x.VM.get_allowed_operations(vm)
    snap = p.x.VM.snapshot(vm, "during-rpu")
    assert p.x.VM.get_is_a_snapshot(snap) and p.x.VM.get_snapshot_of(snap) == vm
    assert p.x.VM.get_last_boot_CPU_flags(snap) == p.x.VM.get_last_boot_CPU_flags(vm)
