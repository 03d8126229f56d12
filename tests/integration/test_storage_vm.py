"""The storage rules of VM operations and of pool membership, through the real client."""

from __future__ import annotations

import pytest
import XenAPI
from test_storage_ops import NULL, fails, local_sr, relations_ok, vbd_rec, vdi_rec

from xapi_sim.install_storage import GiB
from xapi_sim.testing import running_world


@pytest.fixture
def env():
    with running_world() as w:
        s = XenAPI.Session(w.master_url())
        s.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
        yield w, s.xenapi


def _vm_with_disk(x, name="batch1"):
    vm = x.VM.get_by_name_label(name)[0]
    host = x.VM.get_affinity(vm)
    sr = local_sr(x, host)
    vdi = x.VDI.create(vdi_rec(sr, 2 * GiB, "root"))
    x.VBD.create(vbd_rec(vm, vdi))
    cd = x.VBD.create(vbd_rec(vm, NULL, type="CD", mode="RO", empty=True))
    tools = [v for v, r in x.VDI.get_all_records().items() if r["name_label"] == "xs-tools.iso"][0]
    x.VBD.insert(cd, tools)
    return vm, host, sr, vdi, tools


def test_local_disk_pins_the_vm_to_its_host(env):
    w, x = env
    vm, host, sr, vdi, _ = _vm_with_disk(x)
    x.VM.start_on(vm, host, False, False)
    other = [h for h in x.host.get_all() if h != host][0]
    assert fails(x.VM.pool_migrate, vm, other, {}) == ["VM_REQUIRES_SR", vm, sr]
    assert fails(x.VM.assert_can_boot_here, vm, other) == ["VM_REQUIRES_SR", vm, sr]
    assert x.VM.get_possible_hosts(vm) == [host]
    assert x.VM.get_resident_on(vm) == host


def test_suspend_writes_an_image_and_resume_removes_it(env):
    w, x = env
    vm, host, sr, vdi, _ = _vm_with_disk(x)
    x.VM.start_on(vm, host, False, False)
    before = int(x.SR.get_physical_utilisation(sr))
    x.VM.suspend(vm)
    img = x.VM.get_suspend_VDI(vm)
    rec = x.VDI.get_record(img)
    mem = int(x.VM.get_memory_static_max(vm))
    assert rec["type"] == "suspend" and rec["name_label"] == "Suspend image"
    assert rec["SR"] == sr  # the pool's suspend_image_SR is the master's
    assert int(rec["virtual_size"]) >= int(mem * 1.2 * 1.05)
    assert rec["sm_config"]["vmhint"] == x.VM.get_uuid(vm)
    assert int(x.SR.get_physical_utilisation(sr)) > before
    assert not any(x.VBD.get_currently_attached(b) for b in x.VM.get_VBDs(vm))
    x.VM.resume(vm, False, False)
    assert x.VM.get_suspend_VDI(vm) == NULL and img not in x.VDI.get_all()
    assert int(x.SR.get_physical_utilisation(sr)) == before
    assert all(x.VBD.get_currently_attached(b) for b in x.VM.get_VBDs(vm))
    x.VM.suspend(vm)
    img = x.VM.get_suspend_VDI(vm)
    x.VM.hard_shutdown(vm)
    assert img not in x.VDI.get_all()
    relations_ok(w)


def test_snapshot_clone_checkpoint_act_on_the_disks(env):
    w, x = env
    vm, host, sr, vdi, tools = _vm_with_disk(x)
    snap = x.VM.snapshot(vm, "s1")
    disks = [x.VBD.get_record(b) for b in x.VM.get_VBDs(snap)]
    [d] = [b for b in disks if b["type"] == "Disk"]
    [c] = [b for b in disks if b["type"] == "CD"]
    assert x.VDI.get_snapshot_of(d["VDI"]) == vdi and x.VDI.get_is_a_snapshot(d["VDI"])
    assert c["VDI"] == tools  # CDs keep their ISO
    assert d["other_config"].get("owner") == ""
    assert x.VM.get_suspend_VDI(snap) == NULL
    clone = x.VM.clone(vm, "c1")
    [cd] = [x.VBD.get_VDI(b) for b in x.VM.get_VBDs(clone) if x.VBD.get_type(b) == "Disk"]
    assert cd != vdi and not x.VDI.get_is_a_snapshot(cd)
    x.VM.start_on(vm, host, False, False)
    cp = x.VM.checkpoint(vm, "cp")
    assert x.VM.get_power_state(cp) == "Suspended"
    img = x.VM.get_suspend_VDI(cp)
    assert x.VDI.get_type(img) == "suspend"
    assert not any(x.VBD.get_currently_attached(b) for b in x.VM.get_VBDs(cp))
    assert x.VM.get_power_state(vm) == "Running"
    relations_ok(w)


def test_snapshot_refused_for_a_sharable_disk_changes_nothing(env):
    w, x = env
    vm, host, sr, vdi, _ = _vm_with_disk(x)
    w.world.pools[0].db.set("VDI", vdi, "sharable", True)
    n = len(x.VM.get_all())
    assert fails(x.VM.snapshot, vm, "s") == ["VDI_IS_SHARABLE", vdi]
    assert len(x.VM.get_all()) == n


def test_join_moves_local_storage_and_eject_leaves_it_detached(env):
    w, x = env
    xs4 = w.host("xs4")
    s4 = XenAPI.Session(xs4.url)
    s4.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
    y = s4.xenapi
    local4 = local_sr(y, xs4.ref)
    v4 = y.VDI.create(vdi_rec(local4, GiB, "kept"))
    uuid4 = y.VDI.get_uuid(v4)
    n_tools = len(
        [r for r in x.SR.get_all_records().values() if r["name_label"] == "XenServer Tools"]
    )
    y.pool.join(w.world.pools[0].master.address_for_url, "root", "xenroot")
    recs = x.SR.get_all_records()
    assert local4 in recs and not recs[local4]["shared"]
    assert x.VDI.get_by_uuid(uuid4) == v4
    tools = [r for r, rec in recs.items() if rec["name_label"] == "XenServer Tools"]
    assert len(tools) == n_tools == 1
    assert xs4.ref in [x.PBD.get_host(p) for p in x.SR.get_PBDs(tools[0])]
    assert len([v for v in x.SR.get_VDIs(tools[0])]) == 1
    assert x.host.get_suspend_image_sr(xs4.ref) == local4
    relations_ok(w)
    x.pool.eject(xs4.ref)
    assert local4 in x.SR.get_all() and x.SR.get_PBDs(local4) == []
    assert all(x.PBD.get_host(p) != xs4.ref for p in x.PBD.get_all())
    relations_ok(w)
