"""SR, PBD, VDI and VBD operations through the real ``XenAPI`` client: xapi's errors with
xapi's parameters, space accounting, relations, and a refused call changing nothing."""

from __future__ import annotations

import pytest
import XenAPI

from xapi_sim import catalogue
from xapi_sim.install_storage import GiB, MiB
from xapi_sim.testing import running_world

NULL = "OpaqueRef:NULL"


@pytest.fixture
def env():
    with running_world() as w:
        s = XenAPI.Session(w.master_url())
        s.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
        yield w, s.xenapi


def fails(fn, *args):
    with pytest.raises(XenAPI.Failure) as e:
        fn(*args)
    return e.value.details


def backend(name):
    code, text = catalogue.sm_error(name)
    return [f"SR_BACKEND_FAILURE_{code}", "", text, ""]


def master(x):
    return x.pool.get_master(x.pool.get_all()[0])


def local_sr(x, host):
    for sr, rec in x.SR.get_all_records().items():
        if rec["name_label"] == "Local storage" and x.PBD.get_host(rec["PBDs"][0]) == host:
            return sr
    raise AssertionError("no local SR")


def vdi_rec(sr, size, name="disk"):
    return {
        "name_label": name,
        "name_description": "",
        "SR": sr,
        "virtual_size": str(size),
        "type": "user",
        "sharable": False,
        "read_only": False,
        "other_config": {},
        "xenstore_data": {},
        "sm_config": {},
        "tags": [],
    }


def vbd_rec(vm, vdi, userdevice="autodetect", type="Disk", mode="RW", empty=False):
    return {
        "VM": vm,
        "VDI": vdi,
        "userdevice": userdevice,
        "bootable": False,
        "mode": mode,
        "type": type,
        "unpluggable": True,
        "empty": empty,
        "other_config": {},
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
    }


def counts(x):
    return (len(x.SR.get_all()), len(x.PBD.get_all()), len(x.VDI.get_all()), len(x.VBD.get_all()))


def relations_ok(w):
    for pool in w.world.pools:
        assert pool.db.check_relations() == []


# -- SR.create: device-config checks as the SM backends make them -------------------------


@pytest.mark.parametrize(
    "sr_type,dc,error",
    [
        ("nfs", {"serverpath": "/export"}, "ConfigServerMissing"),
        ("nfs", {"server": "10.0.0.1"}, "ConfigServerPathMissing"),
        ("nfs", {"server": "10.0.0.1", "serverpath": "export"}, "ConfigServerPathBad"),
        ("ext", {}, "ConfigDeviceMissing"),
        ("lvm", {"device": "sdb"}, "ConfigDeviceInvalid"),
        ("lvm", {"device": "/dev/sdb", "allocation": "fat"}, "InvalidArg"),
        ("iso", {}, "ConfigLocationMissing"),
        ("iso", {"location": "server/share", "type": "cifs"}, "ISOLocationStringError"),
        ("iso", {"location": "nfshost-no-colon"}, "ISOLocationStringError"),
        ("lvmoiscsi", {}, "ConfigTargetMissing"),
        ("lvmoiscsi", {"target": "10.0.0.2", "port": "99999"}, "ISCSIPort"),
        ("lvmoiscsi", {"target": "10.0.0.2"}, "ConfigTargetIQNMissing"),
        ("lvmoiscsi", {"target": "10.0.0.2", "targetIQN": "iqn.x"}, "ConfigSCSIid"),
    ],
)
def test_sr_create_device_config_errors(env, sr_type, dc, error):
    w, x = env
    before = counts(x)
    shared = sr_type in ("nfs", "lvmoiscsi")
    assert fails(x.SR.create, master(x), dc, "0", "n", "", sr_type, "", shared, {}) == backend(
        error
    )
    assert counts(x) == before


def test_sr_create_other_errors(env):
    w, x = env
    m = master(x)
    assert fails(x.SR.create, m, {}, "0", "n", "", "bogus", "", False, {}) == [
        "SR_UNKNOWN_DRIVER",
        "bogus",
    ]
    assert fails(x.SR.create, m, {"SRmaster": "true"}, "0", "n", "", "dummy", "", False, {}) == [
        "VALUE_NOT_SUPPORTED",
        "SRmaster",
        "true",
        "This key is for internal use only",
    ]
    assert fails(x.SR.create, NULL, {}, "0", "n", "", "dummy", "", False, {}) == [
        "HANDLE_INVALID",
        "host",
        NULL,
    ]
    assert fails(x.SR.make, m, {}, "0", "n", "", "dummy", "", {}) == ["MESSAGE_DEPRECATED"]


def test_shared_nfs_sr_lifecycle(env):
    w, x = env
    sr = x.SR.create(
        master(x),
        {"server": "10.0.0.1", "serverpath": "/export"},
        "0",
        "nfs1",
        "",
        "nfs",
        "user",
        True,
        {},
    )
    rec = x.SR.get_record(sr)
    assert rec["shared"] and len(rec["PBDs"]) == len(x.host.get_all())
    assert all(x.PBD.get_currently_attached(p) for p in rec["PBDs"])
    assert x.PBD.get_host(rec["PBDs"][0]) == master(x)
    # thin: over-provisioning is allowed, utilisation stays small
    v = x.VDI.create(vdi_rec(sr, 3 * 1024 * GiB // 2))
    rec = x.SR.get_record(sr)
    assert int(rec["virtual_allocation"]) == int(x.VDI.get_virtual_size(v))
    assert int(rec["physical_utilisation"]) < 16 * MiB
    # probe finds it
    xml = x.SR.probe(master(x), {"server": "10.0.0.1", "serverpath": "/export"}, "nfs", {})
    assert rec["uuid"] in xml and xml.startswith('<?xml version="1.0" ?>\n<SRlist>')
    assert fails(x.SR.forget, sr) == ["SR_HAS_PBD", sr]
    assert fails(x.SR.set_shared, sr, False)[0] == "SR_HAS_MULTIPLE_PBDS"
    assert fails(x.PBD.destroy, rec["PBDs"][0]) == [
        "OPERATION_NOT_ALLOWED",
        "PBD is currently attached",
    ]
    for p in rec["PBDs"]:
        x.PBD.unplug(p)
    assert fails(x.SR.scan, sr) == ["SR_NO_PBDS", sr]
    assert fails(x.SR.set_name_label, sr, "z") == ["SR_NO_PBDS", sr]
    assert fails(x.SR.destroy, sr) == ["SR_NOT_EMPTY"]
    x.SR.forget(sr)
    assert sr not in x.SR.get_all() and v not in x.VDI.get_all()
    assert all(p not in x.PBD.get_all() for p in rec["PBDs"])
    relations_ok(w)


def test_sr_destroy_and_introduce(env):
    w, x = env
    m = master(x)
    sr = x.SR.create(m, {}, "0", "d", "", "dummy", "", False, {})
    [pbd] = x.SR.get_PBDs(sr)
    assert fails(x.SR.destroy, sr) == ["SR_HAS_PBD", sr]
    x.PBD.unplug(pbd)
    uuid = x.SR.get_uuid(sr)
    x.SR.destroy(sr)
    assert pbd not in x.PBD.get_all()
    intro = x.SR.introduce(uuid, "back", "", "DUMMY", "", False, {})
    assert x.SR.get_type(intro) == "dummy"
    assert fails(x.SR.introduce, uuid, "again", "", "dummy", "", False, {}) == [
        "SR_UUID_EXISTS",
        uuid,
    ]
    assert fails(x.SR.destroy, intro) == ["SR_HAS_NO_PBDS", intro]
    pbd = x.PBD.create({"host": m, "SR": intro, "device_config": {}, "other_config": {}})
    assert fails(
        x.PBD.create, {"host": m, "SR": intro, "device_config": {}, "other_config": {}}
    ) == ["PBD_EXISTS", intro, m, pbd]
    x.PBD.plug(pbd)
    assert x.PBD.get_currently_attached(pbd)
    assert int(x.SR.get_physical_size(intro)) > 0
    assert fails(x.SR.set_physical_size, intro, "1") == ["PERMISSION_DENIED", ""]
    other = [h for h in x.host.get_all() if h != m][0]
    pbd2 = x.PBD.create({"host": other, "SR": intro, "device_config": {}, "other_config": {}})
    assert fails(x.PBD.plug, pbd2) == ["SR_NOT_SHARABLE", intro, m]
    relations_ok(w)


def test_probe_without_capability(env):
    w, x = env
    assert fails(x.SR.probe, master(x), {"location": "/x"}, "udev", {}) == [
        "SR_BACKEND_FAILURE",
        "Operation 'sr_probe' not supported by this SR type",
        "",
        "",
    ]


# -- VDIs ---------------------------------------------------------------------------------


def test_vdi_create_refuses_dangling_sr_and_accounts_thick_space(env):
    w, x = env
    before = counts(x)
    assert fails(x.VDI.create, vdi_rec(NULL, GiB)) == ["HANDLE_INVALID", "SR", NULL]
    assert fails(x.VDI.create, vdi_rec("OpaqueRef:nope", GiB)) == [
        "HANDLE_INVALID",
        "SR",
        "OpaqueRef:nope",
    ]
    sr = local_sr(x, master(x))
    size = int(x.SR.get_physical_size(sr))
    assert fails(x.VDI.create, vdi_rec(sr, size)) == backend("SRNoSpace")
    assert fails(x.VDI.create, vdi_rec(sr, 3 * 1024 * GiB))[:2] == ["SR_BACKEND_FAILURE_79", ""]
    assert counts(x) == before
    v = x.VDI.create(vdi_rec(sr, GiB + 1))
    assert int(x.VDI.get_virtual_size(v)) == GiB + 2 * MiB  # rounded to 2 MiB
    util = int(x.VDI.get_physical_utilisation(v))
    assert util > GiB  # thick: fully allocated
    rec = x.SR.get_record(sr)
    assert int(rec["physical_utilisation"]) == util == int(rec["virtual_allocation"])
    assert v in rec["VDIs"]
    relations_ok(w)


def test_vdi_snapshot_clone_copy_resize_destroy(env):
    w, x = env
    sr = local_sr(x, master(x))
    v = x.VDI.create(vdi_rec(sr, 4 * GiB, "root"))
    snap = x.VDI.snapshot(v, {})
    srec = x.VDI.get_record(snap)
    assert srec["is_a_snapshot"] and srec["snapshot_of"] == v
    assert srec["name_label"] == "root" and x.VDI.get_snapshots(v) == [snap]
    clone = x.VDI.clone(v, {})
    assert not x.VDI.get_is_a_snapshot(clone)
    nfs = x.SR.create(
        master(x), {"server": "h", "serverpath": "/e"}, "0", "n", "", "nfs", "", True, {}
    )
    cp = x.VDI.copy(v, nfs, NULL, NULL)
    assert x.VDI.get_SR(cp) == nfs and x.VDI.get_virtual_size(cp) == x.VDI.get_virtual_size(v)
    small = x.VDI.create(vdi_rec(sr, GiB))
    assert fails(x.VDI.copy, v, sr, NULL, small) == [
        "VDI_TOO_SMALL",
        small,
        x.VDI.get_virtual_size(v),
    ]
    assert fails(x.VDI.resize, v, str(GiB)) == backend("VDISize")[:2] + [
        backend("VDISize")[2] + " [opterr=shrinking not allowed]",
        "",
    ]
    x.VDI.resize(v, str(8 * GiB))
    assert int(x.VDI.get_virtual_size(v)) == 8 * GiB
    # LVHD offers no VDI_RESIZE_ONLINE: the VDI's check refuses it
    assert fails(x.VDI.resize_online, v, str(9 * GiB)) == ["SR_OPERATION_NOT_SUPPORTED", sr]
    assert fails(x.VDI.set_read_only, v, True) == ["PERMISSION_DENIED", ""]
    x.VDI.set_name_label(v, "renamed")
    assert x.VDI.get_name_label(v) == "renamed"
    x.VDI.destroy(v)
    assert x.VDI.get_snapshot_of(snap) == v  # a dangling snapshot_of, as in xapi
    used = sum(int(x.VDI.get_physical_utilisation(r)) for r in x.SR.get_VDIs(sr))
    assert int(x.SR.get_physical_utilisation(sr)) == used
    relations_ok(w)


def test_vdi_introduce_and_forget(env):
    w, x = env
    # LVHD has no VDI_INTRODUCE; the dummy SM has
    assert "vdi_introduce" not in x.SR.get_allowed_operations(local_sr(x, master(x)))
    sr = x.SR.create(master(x), {}, "0", "d", "", "dummy", "", False, {})
    v = x.VDI.create(vdi_rec(sr, GiB))
    loc = x.VDI.get_location(v)
    args = [
        "",
        "n",
        "",
        sr,
        "user",
        False,
        False,
        {},
        loc,
        {},
        {},
        True,
        "0",
        "0",
        NULL,
        False,
        "19700101T00:00:00Z",
        NULL,
    ]
    assert fails(x.VDI.introduce, *args) == ["LOCATION_NOT_UNIQUE", sr, loc]
    uuid = x.VDI.get_uuid(v)
    x.VDI.forget(v)
    args[0], args[8] = uuid, loc
    back = x.VDI.introduce(*args)
    assert x.VDI.get_uuid(back) == uuid and x.VDI.get_location(back) == loc
    relations_ok(w)


# -- VBDs ---------------------------------------------------------------------------------


def _vm(x, name):
    return x.VM.get_by_name_label(name)[0]


def test_vbd_create_checks(env):
    w, x = env
    vm = _vm(x, "batch1")
    sr = local_sr(x, master(x))
    v = x.VDI.create(vdi_rec(sr, GiB))
    before = counts(x)
    assert fails(x.VBD.create, vbd_rec(NULL, v)) == ["HANDLE_INVALID", "VM", NULL]
    assert fails(x.VBD.create, vbd_rec(vm, "OpaqueRef:x")) == [
        "HANDLE_INVALID",
        "VDI",
        "OpaqueRef:x",
    ]
    assert fails(x.VBD.create, vbd_rec(vm, v, type="CD")) == ["VBD_CDS_MUST_BE_READONLY"]
    assert fails(x.VBD.create, vbd_rec(vm, NULL, empty=True)) == [
        "VBD_NOT_REMOVABLE_MEDIA",
        "in constructor",
    ]
    assert fails(x.VBD.create, vbd_rec(vm, v, userdevice="floppy")) == ["INVALID_DEVICE", "floppy"]
    assert counts(x) == before
    a = x.VBD.create(vbd_rec(vm, v))
    assert x.VBD.get_userdevice(a) == "0"
    assert fails(x.VBD.create, vbd_rec(vm, v, userdevice="0")) == ["DEVICE_ALREADY_EXISTS", "0"]
    assert fails(x.VBD.create, vbd_rec(vm, v, userdevice="hda")) == ["DEVICE_ALREADY_EXISTS", "hda"]
    cd = x.VBD.create(vbd_rec(vm, NULL, type="CD", mode="RO", empty=True))
    assert x.VBD.get_userdevice(cd) == "1"
    assert sorted(x.VM.get_VBDs(vm)) == sorted([a, cd])
    relations_ok(w)


def test_cd_insert_eject_and_plugging(env):
    w, x = env
    vm = _vm(x, "batch1")
    sr = local_sr(x, x.VM.get_affinity(vm))
    disk = x.VBD.create(vbd_rec(vm, x.VDI.create(vdi_rec(sr, GiB))))
    cd = x.VBD.create(vbd_rec(vm, NULL, type="CD", mode="RO", empty=True))
    tools = [v for v, r in x.VDI.get_all_records().items() if r["name_label"] == "xs-tools.iso"][0]
    assert fails(x.VBD.eject, cd) == ["VBD_IS_EMPTY", cd]
    assert fails(x.VBD.insert, disk, tools) == ["VBD_NOT_REMOVABLE_MEDIA", disk]
    x.VBD.insert(cd, tools)
    assert x.VBD.get_VDI(cd) == tools and not x.VBD.get_empty(cd)
    assert fails(x.VBD.insert, cd, tools) == ["VBD_NOT_EMPTY", cd]
    assert fails(x.VBD.plug, disk) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    assert not x.VBD.get_currently_attached(disk)
    x.VM.start(vm, False, False)
    assert x.VBD.get_currently_attached(disk) and x.VBD.get_currently_attached(cd)
    assert fails(x.VBD.destroy, disk)[0] == "OPERATION_NOT_ALLOWED"
    assert fails(x.VBD.plug, disk) == ["DEVICE_ALREADY_ATTACHED", disk]
    x.VBD.unplug(disk)
    assert not x.VBD.get_currently_attached(disk)
    x.VBD.plug(disk)
    assert x.VBD.get_device(disk) == "xvda"
    x.VBD.eject(cd)
    assert x.VBD.get_empty(cd) and x.VBD.get_VDI(cd) == NULL
    x.VM.hard_shutdown(vm)
    assert not x.VBD.get_currently_attached(disk)
    x.VBD.assert_attachable(disk)
    x.VBD.set_mode(disk, "RO")
    assert x.VBD.get_mode(disk) == "RO"
    relations_ok(w)


def test_vm_destroy_removes_vbds_keeps_vdis(env):
    w, x = env
    vm = _vm(x, "batch1")
    sr = local_sr(x, x.VM.get_affinity(vm))
    v = x.VDI.create(vdi_rec(sr, GiB))
    b = x.VBD.create(vbd_rec(vm, v))
    x.VM.destroy(vm)
    assert b not in x.VBD.get_all() and v in x.VDI.get_all()
    assert x.VDI.get_VBDs(v) == []
    relations_ok(w)
