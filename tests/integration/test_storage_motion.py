"""Storage motion within a pool (xen-api dundee-lcm xapi_vm_migrate.ml): VM.migrate_send /
assert_can_migrate with a vdi_map, and VDI.pool_migrate."""

from __future__ import annotations

import threading

import pytest
import XenAPI

from xapi_sim.testing import running_world

WORLD = """
[[host]]
name_label = "h1"
[[host]]
name_label = "h2"
[[pool]]
master = "h1"
members = ["h2"]
[[sr]]
name_label = "nfs1"
hosts = ["h1", "h2"]
[[sr]]
name_label = "nfs2"
hosts = ["h1", "h2"]
[[sr]]
name_label = "onlyh1"
type = "ext"
hosts = ["h1"]
[[vm]]
name_label = "web"
power_state = "Running"
host = "h1"
disks = [{size = "4GiB", sr = "nfs1", name_label = "root"}, {size = "1GiB", sr = "onlyh1"}]
vifs = ["Pool-wide network associated with eth0"]
[[vm]]
name_label = "idle"
host = "h1"
disks = [{size = "2GiB", sr = "nfs1", name_label = "idle-root"}]
[[vm]]
name_label = "other"
power_state = "Running"
host = "h2"
disks = [{size = "1GiB", sr = "nfs1", name_label = "other-root"}]
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

        def names(cls):
            return {r["name_label"]: ref for ref, r in getattr(x, cls).get_all_records().items()}

        yield w, x, names("VM"), names("SR")


def _disks(x, vm):
    out = {}
    for b in x.VM.get_VBDs(vm):
        vdi = x.VBD.get_VDI(b)
        out[x.VBD.get_userdevice(b)] = (vdi, x.VDI.get_SR(vdi))
    return out


def test_migrate_send_moves_the_mapped_disks(lab):
    w, x, vms, srs = lab
    web, h2 = vms["web"], w.host("h2").ref
    before = _disks(x, web)
    root, local = before["0"][0], before["1"][0]
    dest = x.host.migrate_receive(h2, x.network.get_all()[0], {})
    vdi_map = {root: srs["nfs2"], local: srs["nfs1"]}
    x.VM.assert_can_migrate(web, dest, True, vdi_map, {}, {})
    alloc = int(x.SR.get_virtual_allocation(srs["nfs2"]))
    x.VM.migrate_send(web, dest, True, vdi_map, {}, {})
    after = _disks(x, web)
    assert x.VM.get_resident_on(web) == h2
    assert after["0"][1] == srs["nfs2"] and after["1"][1] == srs["nfs1"]
    assert after["0"][0] != root and after["1"][0] != local
    # the source VDIs are gone; the new ones keep name, size, type
    assert _err(x.VDI.get_record, root)[0] == "HANDLE_INVALID"
    new = x.VDI.get_record(after["0"][0])
    assert (new["name_label"], new["virtual_size"], new["type"]) == ("root", str(4 << 30), "system")
    assert int(x.SR.get_virtual_allocation(srs["nfs2"])) == alloc + (4 << 30)
    assert x.VDI.get_VBDs(after["0"][0]) == [
        b for b in x.VM.get_VBDs(web) if x.VBD.get_userdevice(b) == "0"
    ]
    assert all(x.VBD.get_currently_attached(b) for b in x.VM.get_VBDs(web))


def test_migrate_send_refusals_change_nothing(lab):
    w, x, vms, srs = lab
    web, h2 = vms["web"], w.host("h2").ref
    before = _disks(x, web)
    root, local = before["0"][0], before["1"][0]
    dest = x.host.migrate_receive(h2, x.network.get_all()[0], {})
    # every disk must be mapped
    assert _err(x.VM.migrate_send, web, dest, True, {root: srs["nfs2"]}, {}, {}) == [
        "VDI_NOT_IN_MAP",
        local,
    ]
    # a disk left on h1's local SR cannot follow the VM to h2
    full = {root: srs["nfs1"], local: srs["onlyh1"]}
    assert _err(x.VM.migrate_send, web, dest, True, full, {}, {}) == [
        "VM_REQUIRES_SR",
        web,
        srs["onlyh1"],
    ]
    vif = x.VM.get_VIFs(web)[0]
    net = x.VIF.get_network(vif)
    assert _err(x.VM.assert_can_migrate, web, dest, True, full, {vif: net}, {}) == [
        "OPERATION_NOT_ALLOWED",
        "VIF mapping is not allowed for intra-pool migration",
    ]
    ok = {root: srs["nfs1"], local: srs["nfs2"]}
    assert _err(x.VM.migrate_send, web, dest, True, ok, {}, {"copy": "true"})[0] == (
        "OPERATION_NOT_ALLOWED"
    )
    assert _disks(x, web) == before and x.VM.get_resident_on(web) == w.host("h1").ref
    assert x.VM.get_current_operations(web) == {}


def test_on_boot_reset_disks_cannot_move(lab):
    w, x, vms, srs = lab
    idle = vms["idle"]
    ((vdi, _),) = _disks(x, idle).values()
    x.VDI.set_on_boot(vdi, "reset")
    dest = x.host.migrate_receive(w.host("h2").ref, x.network.get_all()[0], {})
    assert _err(x.VM.migrate_send, idle, dest, True, {vdi: srs["nfs2"]}, {}, {}) == [
        "VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION",
        vdi,
    ]


def test_vdi_pool_migrate_moves_one_disk_of_a_running_vm(lab):
    w, x, vms, srs = lab
    web = vms["web"]
    root, local = _disks(x, web)["0"][0], _disks(x, web)["1"][0]
    new = x.VDI.pool_migrate(root, srs["nfs2"], {})
    assert x.VDI.get_SR(new) == srs["nfs2"] and new != root
    assert _disks(x, web)["0"][0] == new and _disks(x, web)["1"][0] == local
    assert x.VM.get_resident_on(web) == w.host("h1").ref  # its host sees every SR
    # a halted VM's disk moves too; an unattached VDI needs a VM
    ((idle_vdi, _),) = _disks(x, vms["idle"]).values()
    moved = x.VDI.pool_migrate(idle_vdi, srs["nfs2"], {})
    assert x.VDI.get_SR(moved) == srs["nfs2"]
    lone = x.VDI.create(
        {"name_label": "lone", "name_description": "", "SR": srs["nfs1"],
         "virtual_size": str(1 << 30), "type": "user", "sharable": False, "read_only": False,
         "other_config": {}, "xenstore_data": {}, "sm_config": {}, "tags": []}
    )  # fmt: skip
    assert _err(x.VDI.pool_migrate, lone, srs["nfs2"], {}) == ["VDI_NEEDS_VM_FOR_MIGRATE", lone]


def test_vdi_pool_migrate_moves_the_vm_when_its_host_cannot_see_the_sr(lab):
    w, x, vms, srs = lab
    other = vms["other"]  # runs on h2, which has no PBD for onlyh1
    ((vdi, _),) = _disks(x, other).values()
    new = x.VDI.pool_migrate(vdi, srs["onlyh1"], {})
    assert x.VDI.get_SR(new) == srs["onlyh1"]
    assert x.VM.get_resident_on(other) == w.host("h1").ref


def test_concurrent_disk_moves_of_two_vms(lab):
    w, x, vms, srs = lab
    url = w.master_url()
    errors = []

    def mover(vm, rounds):
        s = XenAPI.Session(url)
        s.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
        y = s.xenapi
        try:
            for i in range(rounds):
                ((vdi, _),) = [d for k, d in _disks(y, vm).items() if k == "0"]
                y.VDI.pool_migrate(vdi, srs["nfs2" if i % 2 == 0 else "nfs1"], {})
        except XenAPI.Failure as e:
            # two movers of one VM race: the VDI one read may be gone when it asks
            if e.details[0] not in ("OTHER_OPERATION_IN_PROGRESS", "HANDLE_INVALID"):
                errors.append(e.details)

    threads = [threading.Thread(target=mover, args=(vms[n], 6)) for n in ("web", "other", "web")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # every VBD points at a live VDI, every SR's allocation is the sum of its VDIs
    for r in x.VBD.get_all_records().values():
        if not r["empty"]:
            x.VDI.get_record(r["VDI"])
    for sr in (srs["nfs1"], srs["nfs2"]):
        total = sum(int(x.VDI.get_virtual_size(v)) for v in x.SR.get_VDIs(sr))
        assert int(x.SR.get_virtual_allocation(sr)) == total


def test_a_suspended_vms_image_moves_where_the_destination_can_read_it(lab):
    w, x, vms, srs = lab
    vm, pool = vms["other"], x.pool.get_all()[0]
    x.VM.pool_migrate(vm, w.host("h1").ref, {})  # its disk is on nfs1, seen by both hosts
    x.pool.set_suspend_image_SR(pool, srs["onlyh1"])
    x.VM.suspend(vm)
    image = x.VM.get_suspend_VDI(vm)
    assert x.VDI.get_SR(image) == srs["onlyh1"]
    x.pool.set_suspend_image_SR(pool, srs["nfs2"])
    ((disk, _),) = _disks(x, vm).values()
    dest = x.host.migrate_receive(w.host("h2").ref, x.network.get_all()[0], {})
    x.VM.migrate_send(vm, dest, False, {disk: srs["nfs1"]}, {}, {})
    moved = x.VM.get_suspend_VDI(vm)
    assert moved != image and x.VDI.get_SR(moved) == srs["nfs2"]
    assert x.VDI.get_type(moved) == "suspend"
    assert _err(x.VDI.get_record, image)[0] == "HANDLE_INVALID"
    assert _disks(x, vm)["0"] == (disk, srs["nfs1"])  # mapped to its own SR: it stays
    x.VM.resume_on(vm, w.host("h2").ref, False, False)
    assert x.VM.get_resident_on(vm) == w.host("h2").ref
