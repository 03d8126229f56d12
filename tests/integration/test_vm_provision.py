"""Provisioning through the real XenAPI client: templates from the release catalogue,
mac_seed, VM.provision (the SDK's "install a VM from a template" flow), VM.copy, the
VM.destroy cascade, VM.get_allowed_VBD_devices."""

from __future__ import annotations

import re

import pytest
import XenAPI
from test_storage_ops import NULL, fails, relations_ok, vbd_rec, vdi_rec

from xapi_sim import catalogue
from xapi_sim.install_storage import GiB
from xapi_sim.testing import running_world

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


@pytest.fixture
def env():
    with running_world() as w:
        s = XenAPI.Session(w.master_url())
        s.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
        yield w, s.xenapi


def _template(x, name="CentOS 7"):
    return x.VM.get_by_name_label(name)[0]


def _default_sr(x):
    return x.pool.get_default_SR(x.pool.get_all()[0])


def _set_spec_sr(x, vm, sr_uuid):
    """What the SDK's provision.py and xe vm-install do: the default SR into the spec."""
    spec = x.VM.get_other_config(vm)["disks"]
    x.VM.remove_from_other_config(vm, "disks")
    x.VM.add_to_other_config(vm, "disks", spec.replace('sr=""', f'sr="{sr_uuid}"'))


def _network(x, bridge="xenbr0"):
    return next(n for n, r in x.network.get_all_records().items() if r["bridge"] == bridge)


# -- templates ---------------------------------------------------------------------------------


def test_templates_are_the_release_catalogue(env):
    w, x = env
    recs = {
        r["name_label"]: r
        for r in x.VM.get_all_records().values()
        if r["is_a_template"] and not r["is_a_snapshot"]
    }
    cat = catalogue.templates("dundee")
    assert set(recs) == {t["name_label"] for t in cat}
    assert "SUSE Linux Enterprise Server 12 SP1 (64-bit)" in recs
    seeds = set()
    for t in cat:
        r = recs[t["name_label"]]
        for k in (
            "platform",
            "recommendations",
            "HVM_boot_policy",
            "HVM_boot_params",
            "PV_bootloader",
            "memory_static_max",
            "VCPUs_max",
        ):
            got, want = r[k], t[k]
            if isinstance(want, int) and not isinstance(want, bool):
                got = int(got)
            assert got == want, (t["name_label"], k)
        oc = dict(r["other_config"])
        seed = oc.pop("mac_seed")
        assert UUID.fullmatch(seed) and seed not in seeds
        seeds.add(seed)
        assert oc == t["other_config"]
        assert "is_default_template" not in r  # Dundee's VM has no such field
        assert fails(x.VM.destroy, x.VM.get_by_uuid(r["uuid"]))[0] == "VM_IS_TEMPLATE"


def test_template_uuids_are_per_pool(env):
    w, x = env
    uuids = []
    for pool in w.world.pools:
        uuids.append(
            {row["uuid"] for _, row in pool.db.rows("VM") if row["name_label"] == "CentOS 7"}
        )
    assert all(len(u) == 1 for u in uuids) and len(set.union(*uuids)) == len(uuids)


# -- mac_seed ------------------------------------------------------------------------------------


def _vm_record(**extra):
    rec = {
        "name_label": "made",
        "name_description": "",
        "user_version": "1",
        "is_a_template": False,
        "affinity": NULL,
        "memory_target": str(GiB),
        "memory_static_max": str(GiB),
        "memory_dynamic_max": str(GiB),
        "memory_dynamic_min": str(GiB),
        "memory_static_min": str(GiB // 2),
        "VCPUs_params": {},
        "VCPUs_max": "1",
        "VCPUs_at_startup": "1",
        "actions_after_shutdown": "destroy",
        "actions_after_reboot": "restart",
        "actions_after_crash": "restart",
        "PV_bootloader": "pygrub",
        "PV_kernel": "",
        "PV_ramdisk": "",
        "PV_args": "",
        "PV_bootloader_args": "",
        "PV_legacy_args": "",
        "HVM_boot_policy": "",
        "HVM_boot_params": {},
        "platform": {},
        "PCI_bus": "",
        "other_config": {},
        "recommendations": "",
    }
    rec.update(extra)
    return rec


def test_vm_create_adds_a_mac_seed_unless_given(env):
    w, x = env
    a = x.VM.create(_vm_record(other_config={"k": "v"}))
    oc = x.VM.get_other_config(a)
    assert list(oc)[0] == "mac_seed" and UUID.fullmatch(oc["mac_seed"]) and oc["k"] == "v"
    b = x.VM.create(_vm_record(other_config={"mac_seed": "mine"}))
    assert x.VM.get_other_config(b) == {"mac_seed": "mine"}
    assert "start" in x.VM.get_allowed_operations(a)
    vif = x.VIF.create(
        {
            "device": "0",
            "network": _network(x),
            "VM": a,
            "MAC": "",
            "MTU": "1500",
            "other_config": {},
            "qos_algorithm_type": "",
            "qos_algorithm_params": {},
        }
    )
    assert MAC.fullmatch(x.VIF.get_MAC(vif))


def test_scenario_vms_have_seeds(env):
    w, x = env
    for r in x.VM.get_all_records().values():
        if not r["is_control_domain"]:
            assert UUID.fullmatch(r["other_config"]["mac_seed"]), r["name_label"]


def test_clone_refreshes_the_seed_snapshot_keeps_it(env):
    w, x = env
    tmpl = _template(x)
    seed = x.VM.get_other_config(tmpl)["mac_seed"]
    vm = x.VM.clone(tmpl, "c1")
    oc = x.VM.get_other_config(vm)
    assert oc["mac_seed"] != seed and UUID.fullmatch(oc["mac_seed"])
    assert "default_template" not in oc and oc["base_template_name"] == "CentOS 7"
    assert list(oc)[0] == "base_template_name"
    assert x.VM.get_is_a_template(vm) and x.VM.get_parent(vm) == NULL
    x.VM.set_is_a_template(vm, False)
    vif = x.VIF.create(
        {
            "device": "0",
            "network": _network(x),
            "VM": vm,
            "MAC": "",
            "MTU": "1500",
            "other_config": {},
            "qos_algorithm_type": "",
            "qos_algorithm_params": {},
        }
    )
    mac = x.VIF.get_MAC(vif)
    snap = x.VM.snapshot(vm, "s1")
    assert x.VM.get_other_config(snap)["mac_seed"] == x.VM.get_other_config(vm)["mac_seed"]
    assert [x.VIF.get_MAC(v) for v in x.VM.get_VIFs(snap)] == [mac]
    c2 = x.VM.clone(vm, "c2")
    assert "base_template_name" in x.VM.get_other_config(c2)
    assert x.VM.get_other_config(c2)["base_template_name"] == "CentOS 7"
    (vif2,) = x.VM.get_VIFs(c2)
    assert x.VIF.get_device(vif2) == "0" and x.VIF.get_network(vif2) == _network(x)
    assert MAC.fullmatch(x.VIF.get_MAC(vif2)) and x.VIF.get_MAC(vif2) != mac
    relations_ok(w)


# -- provision: the SDK's install flow -----------------------------------------------------------


def test_sdk_install_from_template(env):
    w, x = env
    tmpl = _template(x)
    spec = catalogue.parse_disks(x.VM.get_other_config(tmpl)["disks"])
    vm = x.VM.clone(tmpl, "installed")
    sr = _default_sr(x)
    assert sr != NULL
    _set_spec_sr(x, vm, x.SR.get_uuid(sr))
    util = int(x.SR.get_physical_utilisation(sr))
    x.VM.provision(vm)
    assert not x.VM.get_is_a_template(vm)
    oc = x.VM.get_other_config(vm)
    assert "disks" not in oc and "mac_seed" in oc
    vbds = [x.VBD.get_record(v) for v in x.VM.get_VBDs(vm)]
    assert sorted(v["userdevice"] for v in vbds) == sorted(d["device"] for d in spec)
    for v in vbds:
        d = next(d for d in spec if d["device"] == v["userdevice"])
        vdi = x.VDI.get_record(v["VDI"])
        assert vdi["SR"] == sr and int(vdi["virtual_size"]) >= d["size"]
        assert vdi["name_label"] == v["userdevice"]
        assert vdi["name_description"] == "Created by template provisioner"
        assert vdi["sm_config"]["vmhint"] == x.VM.get_uuid(vm)
        assert vdi["type"] == d["type"]
        assert v["bootable"] == d["bootable"] and v["mode"] == "RW" and v["type"] == "Disk"
        assert v["unpluggable"] == (d["type"] != "system")
        assert v["other_config"] == {"owner": ""}
    assert int(x.SR.get_physical_utilisation(sr)) > util
    assert x.VM.get_allowed_VIF_devices(vm)[0] == "0"
    vif = x.VIF.create(
        {
            "device": "0",
            "network": _network(x),
            "VM": vm,
            "MAC": "",
            "MTU": "1500",
            "other_config": {},
            "qos_algorithm_type": "",
            "qos_algorithm_params": {},
        }
    )
    assert MAC.fullmatch(x.VIF.get_MAC(vif))
    x.VM.start(vm, False, False)
    assert x.VM.get_power_state(vm) == "Running"
    assert all(x.VBD.get_currently_attached(v) for v in x.VM.get_VBDs(vm))
    assert x.VIF.get_currently_attached(vif)
    relations_ok(w)


def test_provision_errors_change_nothing(env):
    w, x = env
    tmpl = _template(x)
    vm = x.VM.clone(tmpl, "p")
    before = x.VM.get_record(vm)
    vdis = len(x.VDI.get_all())
    # the spec names no SR: xapi's SR.get_by_uuid "" fails
    assert fails(x.VM.provision, vm) == ["UUID_INVALID", "sr", ""]
    assert x.VM.get_is_a_template(vm) and len(x.VDI.get_all()) == vdis
    x.VM.remove_from_other_config(vm, "disks")
    x.VM.add_to_other_config(vm, "disks", "<provision><disk/></provision>")
    assert fails(x.VM.provision, vm) == ["INTERNAL_ERROR", "Xapi_templates.Parse_failure"]
    x.VM.remove_from_other_config(vm, "disks")
    sr = x.SR.get_uuid(_default_sr(x))
    x.VM.add_to_other_config(
        vm,
        "disks",
        f'<provision><disk device="1" size="{GiB}" sr="{sr}" bootable="false"/></provision>',
    )
    x.VM.add_to_other_config(vm, "postinstall", "/tmp/evil")
    assert fails(x.VM.provision, vm) == ["PERMISSION_DENIED", "illegal provision script /tmp/evil"]
    assert x.VM.get_VBDs(vm) == [] and len(x.VDI.get_all()) == vdis
    assert x.VM.get_is_a_template(vm)
    assert before["uuid"] == x.VM.get_uuid(vm)
    # not a template
    x.VM.remove_from_other_config(vm, "postinstall")
    x.VM.provision(vm)
    (vbd,) = x.VM.get_VBDs(vm)
    vdi = x.VBD.get_VDI(vbd)
    assert x.VDI.get_type(vdi) == "system"  # a missing type is system
    assert fails(x.VM.provision, vm) == ["PROVISION_ONLY_ALLOWED_ON_TEMPLATE"]
    relations_ok(w)


def test_provision_without_disks_only_clears_the_template_flag(env):
    w, x = env
    vm = x.VM.clone(_template(x, "Other install media"), "bare")
    oc = x.VM.get_other_config(vm)
    assert "disks" not in oc or "<disk " not in oc["disks"]
    x.VM.provision(vm)
    assert not x.VM.get_is_a_template(vm) and x.VM.get_VBDs(vm) == []


# -- copy ---------------------------------------------------------------------------------------


def _provisioned(x, name="src"):
    vm = x.VM.clone(_template(x), name)
    _set_spec_sr(x, vm, x.SR.get_uuid(_default_sr(x)))
    x.VM.provision(vm)
    x.VIF.create(
        {
            "device": "0",
            "network": _network(x),
            "VM": vm,
            "MAC": "",
            "MTU": "1500",
            "other_config": {},
            "qos_algorithm_type": "",
            "qos_algorithm_params": {},
        }
    )
    return vm


def test_copy_to_an_sr_and_to_the_original_srs(env):
    w, x = env
    vm = _provisioned(x)
    src_vdis = {x.VBD.get_VDI(v) for v in x.VM.get_VBDs(vm)}
    sr = _default_sr(x)
    for target in (sr, NULL):
        cp = x.VM.copy(vm, "cp", target)
        assert x.VM.get_power_state(cp) == "Halted" and x.VM.get_parent(cp) == NULL
        vdis = {x.VBD.get_VDI(v) for v in x.VM.get_VBDs(cp)}
        assert len(vdis) == len(src_vdis) and not vdis & src_vdis
        assert all(x.VDI.get_SR(v) == sr for v in vdis)
        assert all(x.VDI.get_snapshot_of(v) == NULL for v in vdis)
        (vif,) = x.VM.get_VIFs(cp)
        assert x.VIF.get_MAC(vif) != x.VIF.get_MAC(x.VM.get_VIFs(vm)[0])
        assert x.VM.get_other_config(cp)["mac_seed"] != x.VM.get_other_config(vm)["mac_seed"]
    iso = next(
        s
        for s, r in x.SR.get_all_records().items()
        if r["content_type"] == "iso" and r["type"] == "iso"
    )
    n = len(x.VM.get_all())
    assert fails(x.VM.copy, vm, "cp", iso) == [
        "OPERATION_NOT_ALLOWED",
        "Cannot copy a VM's disks to an ISO SR",
    ]
    assert len(x.VM.get_all()) == n
    relations_ok(w)


# -- destroy cascade ------------------------------------------------------------------------------


def test_destroy_cascade(env):
    w, x = env
    vm = _provisioned(x, "doomed")
    vdis = [x.VBD.get_VDI(v) for v in x.VM.get_VBDs(vm)]
    vbds, vifs = x.VM.get_VBDs(vm), x.VM.get_VIFs(vm)
    metrics = x.VM.get_metrics(vm)
    snap = x.VM.snapshot(vm, "snap")
    x.VM.destroy(vm)
    assert all(v not in x.VBD.get_all() for v in vbds)
    assert all(v not in x.VIF.get_all() for v in vifs)
    assert metrics not in x.VM_metrics.get_all()
    assert all(v in x.VDI.get_all() for v in vdis)
    assert x.VM.get_snapshot_of(snap) == vm  # left dangling, as in xapi
    assert fails(x.VM.get_record, vm)[0] == "HANDLE_INVALID"
    db = w.world.pools[0].db
    assert [p for p in db.check_relations() if "snapshot_of" not in str(p)] == []


def test_destroy_of_a_non_template_marked_default(env):
    w, x = env
    vm = x.VM.create(_vm_record(other_config={"default_template": "true"}))
    assert fails(x.VM.destroy, vm) == ["VM_CANNOT_DELETE_DEFAULT_TEMPLATE"]
    assert x.VM.get_uuid(vm)


# -- allowed VBD devices ---------------------------------------------------------------------------


def test_allowed_vbd_devices(env):
    w, x = env
    vm = x.VM.create(_vm_record())
    assert x.VM.get_allowed_VBD_devices(vm) == [str(n) for n in range(255)]
    sr = _default_sr(x)
    vdi = x.VDI.create(vdi_rec(sr, GiB))
    x.VBD.create(vbd_rec(vm, vdi, userdevice="0"))
    x.VBD.create(vbd_rec(vm, NULL, userdevice="xvdc", type="CD", mode="RO", empty=True))
    assert x.VM.get_allowed_VBD_devices(vm)[:3] == ["1", "3", "4"]
    hvm = x.VM.create(_vm_record(HVM_boot_policy="BIOS order", PV_bootloader=""))
    x.VBD.create(vbd_rec(hvm, NULL, userdevice="hdd", type="CD", mode="RO", empty=True))
    devs = x.VM.get_allowed_VBD_devices(hvm)
    assert devs[:3] == ["0", "1", "2"] and "3" not in devs and devs[-1] == "254"
    dom0 = next(v for v, r in x.VM.get_all_records().items() if r["is_control_domain"])
    assert x.VM.get_allowed_VBD_devices(dom0)[-1] == "255"
