"""SR, VDI, VBD, VIF operation checks and PIF preconditions (``xapi_sim/checks/storage.py``,
``network.py``) against xen-api Dundee ``xapi_sr_operations.ml``, ``xapi_vdi.ml``,
``xapi_vbd_helpers.ml``, ``xapi_vif_helpers.ml`` and ``xapi_pif.ml``."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xapi_sim.checks import network, storage
from xapi_sim.checks.operations import hashtbl_fold_order
from xapi_sim.datamodel import ENUMS, NULL_REF

SR, VDI, VBD, VIF, VMREF, PIF = (
    "OpaqueRef:sr",
    "OpaqueRef:vdi",
    "OpaqueRef:vbd",
    "OpaqueRef:vif",
    "OpaqueRef:vm",
    "OpaqueRef:pif",
)
ALL_FEATURES = list(storage.CAPABILITIES)
TOOLS = {"PV_drivers_version": {"major": "7", "minor": "0"}, "other": {}}


def test_enums_are_dundees_and_within_heads():
    assert set(storage.SR_OPERATIONS) == set(storage.sr_all_operations(mirror_op=True))
    assert set(storage.SR_OPERATIONS) - set(storage.SR_ALL_OPERATIONS) == {"vdi_mirror"}
    assert set(storage.SR_OPERATIONS) <= set(ENUMS["storage_operations"])
    assert set(storage.VBD_OPERATIONS) == set(ENUMS["vbd_operations"])
    assert set(network.VIF_OPERATIONS) == set(ENUMS["vif_operations"])
    # Dundee's vdi_operations had "scan"; HEAD dropped it and added mirror, cbt...
    assert set(storage.VDI_OPERATIONS) - set(ENUMS["vdi_operations"]) == {"scan"}


# -- SR ---------------------------------------------------------------------------------------


def sr(current=None, pbds=("OpaqueRef:pbd",), tools=False):
    return {"current_operations": current or {}, "PBDs": list(pbds), "is_tools_sr": tools}


def test_sr_backend_capabilities():
    t = storage.sr_valid_operations(SR, sr(), features=["VDI_CREATE", "VDI_DELETE"])
    assert t["vdi_resize"] == ("SR_OPERATION_NOT_SUPPORTED", [SR])
    assert t["vdi_snapshot"] == ("SR_OPERATION_NOT_SUPPORTED", [SR])
    assert t["vdi_clone"] is None  # xapi fakes clone
    assert t["vdi_create"] is None and t["vdi_destroy"] is None
    tools = storage.sr_valid_operations(SR, sr(tools=True), features=ALL_FEATURES)
    assert tools["vdi_create"] == ("SR_OPERATION_NOT_SUPPORTED", [SR])
    assert tools["vdi_destroy"] == ("SR_OPERATION_NOT_SUPPORTED", [SR])
    # names unknown to Smint are ignored
    assert storage.sm_features({"VDI_CREATE": 1, "THIN_PROVISIONING": 1}) == {"VDI_CREATE"}


def test_sr_destroy_and_forget_rules_in_order():
    facts = dict(features=ALL_FEATURES)
    assert storage.sr_check_operation_error(SR, sr(), "destroy", attached_pbds=True, **facts) == (
        "SR_HAS_PBD",
        [SR],
    )
    assert storage.sr_check_operation_error(SR, sr(), "forget", attached_pbds=True, **facts) == (
        "SR_HAS_PBD",
        [SR],
    )
    assert storage.sr_check_operation_error(SR, sr(pbds=()), "destroy", **facts) == (
        "SR_HAS_NO_PBDS",
        [SR],
    )
    assert storage.sr_check_operation_error(SR, sr(), "destroy", managed_vdis=True, **facts) == (
        "SR_NOT_EMPTY",
        [],
    )
    assert storage.sr_check_operation_error(SR, sr(), "destroy", **facts) is None


def test_sr_serialises_everything():
    r = sr(current={"t1": "vdi_create", "t2": "scan", "t3": "vdi_create"})
    t = storage.sr_valid_operations(SR, r, features=ALL_FEATURES)
    # setify keeps the last vdi_create: the list is [scan; vdi_create]
    assert all(e == ("OTHER_OPERATION_IN_PROGRESS", ["SR", SR, "scan"]) for e in t.values())
    assert storage.sr_allowed_operations(SR, r, features=ALL_FEATURES) == []


def test_sr_cluster_stack_error_is_for_plug_only():
    e = ("INCOMPATIBLE_CLUSTER_STACK_ACTIVE", ["corosync"])
    t = storage.sr_valid_operations(SR, sr(), features=ALL_FEATURES, cluster_stack_error=e)
    assert t["plug"] == e and t["unplug"] is None


def test_sr_unknown_operation():
    # 6.5 SP1's table has no vdi_mirror (Dundee's has)
    assert storage.sr_check_operation_error(SR, sr(), "vdi_mirror") == (
        "INTERNAL_ERROR",
        ["xapi_sr.assert_operation_valid unknown operation: VDI.mirror"],
    )
    assert storage.sr_check_operation_error(SR, sr(), "vdi_mirror", mirror_op=True) == (
        "SR_OPERATION_NOT_SUPPORTED",
        [SR],
    )


# -- VDI --------------------------------------------------------------------------------------


def vdi(**kw):
    r = {
        "SR": SR,
        "current_operations": {},
        "type": "user",
        "sharable": False,
        "read_only": False,
        "on_boot": "persist",
    }
    r.update(kw)
    return r


def vbd_of(**kw):
    r = {"VDI": VDI, "currently_attached": False, "mode": "RW", "current_operations": {}}
    r.update(kw)
    return r


def verr(r, op, **facts):
    facts.setdefault("features", ALL_FEATURES)
    return storage.vdi_check_operation_error(VDI, r, op, **facts)


def test_vdi_other_operations_but_copy_block_everything():
    assert verr(vdi(current_operations={"t": "snapshot"}), "copy") == (
        "OTHER_OPERATION_IN_PROGRESS",
        ["VDI", VDI],
    )
    during_copy = vdi(current_operations={"t": "copy"})
    assert verr(during_copy, "clone") is None
    assert verr(during_copy, "snapshot") == (
        "OPERATION_NOT_ALLOWED",
        ["Snapshot operation not allowed during copy."],
    )


@pytest.mark.parametrize(
    "mode, op, blocked",
    [
        ("RO", "destroy", True),
        ("RO", "copy", False),
        ("RW", "copy", True),
        ("RW", "snapshot", False),
        ("RW", "clone", False),
        ("RW", "resize_online", False),
        ("RW", "resize", True),
        ("RO", "forget", True),
    ],
)
def test_vdi_in_use(mode, op, blocked):
    e = verr(vdi(), op, vbds=[vbd_of(currently_attached=True, mode=mode)])
    assert (e == ("VDI_IN_USE", [VDI, op])) is blocked
    assert verr(vdi(), op, vbds=[vbd_of(reserved=True, mode=mode)]) == e


def test_vdi_rules_per_operation():
    assert verr(vdi(), "resize", sr_attached_pbds=False) == ("SR_HAS_NO_PBDS", [SR])
    assert verr(vdi(), "clone", vbds=[vbd_of(current_operations={"t": "plug"})]) == (
        "OTHER_OPERATION_IN_PROGRESS",
        ["VDI", VDI],
    )
    assert verr(vdi(type="redo_log"), "forget", ha_enabled=True) == ("HA_IS_ENABLED", [])
    assert verr(vdi(type="rrd"), "forget") == ("VDI_HAS_RRDS", [VDI])
    assert verr(vdi(), "destroy", sr_type="udev") == ("VDI_IS_A_PHYSICAL_DEVICE", [VDI])
    assert verr(vdi(), "destroy", sr_is_tools_sr=True) == ("SR_OPERATION_NOT_SUPPORTED", [SR])
    assert verr(vdi(type="metadata"), "destroy", ha_enable_in_progress=True) == (
        "HA_ENABLE_IN_PROGRESS",
        [],
    )
    assert verr(vdi(type="ha_statefile"), "destroy", ha_disable_in_progress=True) == (
        "HA_DISABLE_IN_PROGRESS",
        [],
    )
    assert verr(vdi(), "destroy", features=[]) == ("SR_OPERATION_NOT_SUPPORTED", [SR])
    assert (
        verr(vdi(), "generate_config", features=["VDI_CREATE"])[0] == "SR_OPERATION_NOT_SUPPORTED"
    )
    assert verr(vdi(sharable=True), "snapshot") == ("VDI_IS_SHARABLE", [VDI])
    assert verr(vdi(on_boot="reset"), "snapshot") == (
        "VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION",
        [],
    )
    assert verr(vdi(type="ha_statefile"), "copy")[0] == "OPERATION_NOT_ALLOWED"
    assert verr(vdi(), "force_unlock") is None


def test_vdi_allowed_operations_order():
    assert storage.vdi_allowed_operations(VDI, vdi(), features=ALL_FEATURES) == list(
        reversed(storage.VDI_UPDATE_ORDER)
    )


# -- later releases: SR and VDI ---------------------------------------------------------------
# The facts allowed.py gives each profile (sr_facts / vdi_facts / vbd_facts)
DUNDEE_SR = dict(mirror_op=True)
ELY_SR = dict(mirror_op=True, rpu_check=True)
STOCKHOLM_SR = dict(mirror_op=True, rpu_check=True, cbt_ops=True, plug_parallel=True)
XCP83_SR = dict(STOCKHOLM_SR, enum_order=True)
LATER_VDI = dict(copy_reset_refused=True, hide_force_unlock=True)


def test_sr_tables_per_release():
    # 1.249-lcm (and v23.30.0) xapi_sr_operations.ml all_ops, lines 38-59
    assert storage.sr_all_operations(**{k: STOCKHOLM_SR[k] for k in ("cbt_ops", "mirror_op")}) == (
        "scan",
        "destroy",
        "forget",
        "plug",
        "unplug",
        "vdi_create",
        "vdi_destroy",
        "vdi_resize",
        "vdi_clone",
        "vdi_snapshot",
        "vdi_mirror",
        "vdi_enable_cbt",
        "vdi_disable_cbt",
        "vdi_data_destroy",
        "vdi_list_changed_blocks",
        "vdi_set_on_boot",
        "vdi_introduce",
        "update",
        "pbd_create",
        "pbd_destroy",
    )
    # Dundee/1.14-lcm line 39: vdi_mirror after vdi_snapshot; 6.5 SP1 without it
    dundee = storage.sr_all_operations(mirror_op=True)
    assert dundee[9:12] == ("vdi_snapshot", "vdi_mirror", "vdi_introduce")
    assert storage.sr_all_operations() == storage.SR_ALL_OPERATIONS
    # v24.19.2 line 29: all_ops = API.storage_operations__all (the enum, HEAD's here)
    assert storage.sr_all_operations(enum_order=True) == tuple(ENUMS["storage_operations"])


def test_sr_later_capabilities():
    facts = dict(STOCKHOLM_SR, features=["VDI_CREATE", "VDI_CONFIG_CBT"])
    t = storage.sr_valid_operations(SR, sr(), **facts)
    assert t["vdi_mirror"] == ("SR_OPERATION_NOT_SUPPORTED", [SR])  # VDI_MIRROR
    assert t["vdi_set_on_boot"] == ("SR_OPERATION_NOT_SUPPORTED", [SR])  # VDI_RESET_ON_BOOT
    assert t["vdi_enable_cbt"] is None and t["vdi_create"] is None
    both = ["VDI_MIRROR", "VDI_RESET_ON_BOOT"]
    t = storage.sr_valid_operations(SR, sr(), **dict(STOCKHOLM_SR, features=both))
    assert t["vdi_mirror"] is None and t["vdi_set_on_boot"] is None
    # Dundee knew VDI_MIRROR (smint.ml line 70) but had no vdi_set_on_boot
    t = storage.sr_valid_operations(SR, sr(), features=both, **DUNDEE_SR)
    assert t["vdi_mirror"] is None and "vdi_set_on_boot" not in t


def test_sr_plug_beside_plugs_from_kolkata():
    plugging = sr(current={"t": "plug"})
    busy = ("OTHER_OPERATION_IN_PROGRESS", ["SR", SR, "plug"])
    t = storage.sr_valid_operations(SR, plugging, features=ALL_FEATURES, **ELY_SR)
    assert all(e == busy for e in t.values())
    for facts in (STOCKHOLM_SR, XCP83_SR):
        t = storage.sr_valid_operations(SR, plugging, features=ALL_FEATURES, **facts)
        assert t["plug"] is None
        assert {op for op, e in t.items() if e != busy} == {"plug"}
        assert storage.sr_allowed_operations(SR, plugging, features=ALL_FEATURES, **facts) == [
            "plug"
        ]
    # anything else in progress stops plug too (the first of the setified list is named)
    mixed = sr(current={"t": "plug", "u": "scan"})
    t = storage.sr_valid_operations(SR, mixed, features=ALL_FEATURES, **STOCKHOLM_SR)
    assert t["plug"] == ("OTHER_OPERATION_IN_PROGRESS", ["SR", SR, "plug"])


def test_sr_rolling_upgrade_per_release():
    up = "NOT_SUPPORTED_DURING_UPGRADE"
    t = storage.sr_valid_operations(SR, sr(), features=ALL_FEATURES, rpu=True, **DUNDEE_SR)
    assert all(e is None for op, e in t.items() if op not in ("destroy",))
    t = storage.sr_valid_operations(SR, sr(), features=ALL_FEATURES, rpu=True, **ELY_SR)
    assert {op for op, e in t.items() if e and e[0] == up} == {"vdi_mirror"}
    for facts in (STOCKHOLM_SR, XCP83_SR):
        t = storage.sr_valid_operations(SR, sr(), features=ALL_FEATURES, rpu=True, **facts)
        assert {op for op, e in t.items() if e and e[0] == up} == {
            "vdi_mirror",
            "vdi_set_on_boot",
            *storage.SR_CBT_OPERATIONS,
        }


@settings(max_examples=100, deadline=None)
@given(
    current=st.dictionaries(
        st.sampled_from("abc"), st.sampled_from(storage.SR_ENUM_OPERATIONS), max_size=2
    ),
    features=st.lists(st.sampled_from(storage.CAPABILITIES), max_size=10),
    attached=st.booleans(),
    rpu=st.booleans(),
)
def test_sr_enum_order_changes_the_order_only(current, features, attached, rpu):
    r = sr(current=current)
    facts = dict(features=features, attached_pbds=attached, rpu=rpu)
    old = storage.sr_allowed_operations(SR, r, **facts, **STOCKHOLM_SR)
    new = storage.sr_allowed_operations(SR, r, **facts, **XCP83_SR)
    assert sorted(old) == sorted(new)
    assert new == [op for op in hashtbl_fold_order(storage.SR_ENUM_OPERATIONS) if op in new]
    for op in storage.SR_ENUM_OPERATIONS:
        err = storage.sr_check_operation_error(SR, r, op, **facts, **XCP83_SR)
        assert (op in new) is (err is None)


def later_vdi(**kw):
    """A VDI row of a release with changed block tracking (it has ``cbt_enabled``)."""
    r = vdi(cbt_enabled=False, is_a_snapshot=False)
    r.update(kw)
    return r


def test_vdi_copy_with_on_boot_reset():
    reset = "VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION"
    assert verr(vdi(on_boot="reset"), "copy") is None  # Dundee
    assert verr(vdi(on_boot="reset"), "copy", copy_reset_refused=True) == (reset, [])  # 1.14-lcm
    assert verr(later_vdi(on_boot="reset"), "copy", **LATER_VDI) == (reset, [])
    # HA statefiles: the on_boot rule comes first
    ha = later_vdi(on_boot="reset", type="ha_statefile")
    assert verr(ha, "copy", **LATER_VDI) == (reset, [])
    # sharable before on_boot for snapshot, as before
    shared = later_vdi(on_boot="reset", sharable=True)
    assert verr(shared, "snapshot", **LATER_VDI) == ("VDI_IS_SHARABLE", [VDI])
    ops = storage.vdi_allowed_operations(VDI, later_vdi(on_boot="reset"), features=ALL_FEATURES)
    assert "copy" not in ops and "snapshot" not in ops and "clone" in ops


def test_vdi_later_capabilities_come_first():
    no_snap = [f for f in ALL_FEATURES if f != "VDI_SNAPSHOT"]
    assert verr(vdi(), "snapshot", features=no_snap) is None  # Dundee: no capability rule
    assert verr(later_vdi(), "snapshot", features=no_snap, **LATER_VDI) == (
        "SR_OPERATION_NOT_SUPPORTED",
        [SR],
    )
    # a physical device without VDI_DELETE: Dundee names the device, later the SM
    no_delete = [f for f in ALL_FEATURES if f != "VDI_DELETE"]
    assert verr(vdi(), "destroy", features=no_delete, sr_type="udev") == (
        "VDI_IS_A_PHYSICAL_DEVICE",
        [VDI],
    )
    assert verr(later_vdi(), "destroy", features=no_delete, sr_type="udev") == (
        "SR_OPERATION_NOT_SUPPORTED",
        [SR],
    )
    assert verr(later_vdi(), "destroy", sr_type="udev") == ("VDI_IS_A_PHYSICAL_DEVICE", [VDI])
    # the capability before the CBT type rules
    meta = later_vdi(type="cbt_metadata")
    assert verr(meta, "clone", features=["VDI_SNAPSHOT"]) == ("SR_OPERATION_NOT_SUPPORTED", [SR])
    assert verr(meta, "clone") == ("VDI_INCOMPATIBLE_TYPE", [VDI, "CBT metadata"])
    # set_on_boot and mirror: VDI_RESET_ON_BOOT, VDI_MIRROR, not with CBT on
    assert verr(later_vdi(), "set_on_boot", features=["VDI_MIRROR"]) == (
        "SR_OPERATION_NOT_SUPPORTED",
        [SR],
    )
    assert verr(later_vdi(), "set_on_boot") is None
    assert verr(later_vdi(cbt_enabled=True), "mirror") == ("VDI_CBT_ENABLED", [VDI])
    # Dundee's mirror: live, VDI_MIRROR
    assert verr(vdi(), "mirror", features=["VDI_CLONE"]) == ("SR_OPERATION_NOT_SUPPORTED", [SR])
    attached = [vbd_of(currently_attached=True)]
    assert verr(vdi(), "mirror", vbds=attached) is None


def test_vdi_destroy_during_a_mirror():
    mirroring = vdi(current_operations={"t": "mirror"})
    assert verr(mirroring, "destroy") is None
    assert verr(mirroring, "clone") == ("OTHER_OPERATION_IN_PROGRESS", ["VDI", VDI])


def test_vdi_later_rolling_upgrade():
    up = ("NOT_SUPPORTED_DURING_UPGRADE", [])
    for op in ("mirror", "set_on_boot", *storage.CBT_VDI_OPERATIONS):
        assert verr(later_vdi(), op, rpu=True) == up
    busy = later_vdi(current_operations={"t": "snapshot"})
    assert verr(busy, "set_on_boot", rpu=True) == up  # before anything else
    for op in storage.PRE_ELY_VDI_OPERATIONS:
        assert verr(later_vdi(), op, rpu=True) != up
    assert verr(vdi(), "mirror", rpu=True) is None  # no such rule in Dundee


def test_vdi_later_allowed_operations_order():
    # 1.249-lcm update_allowed_operations_internal: pre_ely_vdi_operations without blocked
    # and force_unlock, each passing op prepended
    assert storage.vdi_allowed_operations(VDI, later_vdi(), features=ALL_FEATURES, **LATER_VDI) == [
        "generate_config",
        "update",
        "forget",
        "destroy",
        "snapshot",
        "resize_online",
        "resize",
        "copy",
        "clone",
    ]
    # Inverness to Kolkata: force_unlock still listed (CA-281176 came in Lima)
    ops = storage.vdi_allowed_operations(VDI, later_vdi(), features=ALL_FEATURES)
    assert ops[:3] == ["generate_config", "force_unlock", "update"]


@settings(max_examples=200, deadline=None)
@given(
    current=st.dictionaries(
        st.sampled_from("ab"), st.sampled_from(ENUMS["vdi_operations"]), max_size=2
    ),
    vtype=st.sampled_from(["user", "rrd", "ha_statefile", "redo_log", "cbt_metadata"]),
    on_boot=st.sampled_from(["persist", "reset"]),
    cbt=st.booleans(),
    snapshot=st.booleans(),
    features=st.lists(st.sampled_from(storage.CAPABILITIES), max_size=10),
    attached=st.booleans(),
    rpu=st.booleans(),
)
def test_later_vdi_allowed_iff_check_passes(
    current, vtype, on_boot, cbt, snapshot, features, attached, rpu
):
    r = later_vdi(
        current_operations=current,
        type=vtype,
        on_boot=on_boot,
        cbt_enabled=cbt,
        is_a_snapshot=snapshot,
    )
    facts = dict(
        features=features,
        vbds=[vbd_of(currently_attached=attached, VM=VMREF)],
        rpu=rpu,
        **LATER_VDI,
    )
    allowed = storage.vdi_allowed_operations(VDI, r, **facts)
    listed = storage.vdi_update_order(True, True)
    assert allowed == [op for op in reversed(listed) if op in allowed]
    for op in ENUMS["vdi_operations"]:
        ok = storage.vdi_check_operation_error(VDI, r, op, **facts) is None
        assert (op in allowed) is (ok and op in listed)


# -- VBD --------------------------------------------------------------------------------------


def vm_row(power="Running", hvm=False, **kw):
    r = {
        "power_state": power,
        "current_operations": {},
        "is_control_domain": False,
        "other_config": {},
        "HVM_boot_policy": "BIOS order" if hvm else "",
    }
    r.update(kw)
    return r


def vbd(**kw):
    r = {
        "VM": VMREF,
        "VDI": VDI,
        "current_operations": {},
        "unpluggable": True,
        "type": "Disk",
        "empty": False,
        "currently_attached": False,
        "mode": "RW",
    }
    r.update(kw)
    return r


def vdi_row(**kw):
    r = {"managed": True, "current_operations": {}, "sharable": False, "read_only": False}
    r.update(kw)
    return r


def bt(r, vm=None, **facts):
    facts.setdefault("vdi_row", vdi_row())
    return storage.vbd_valid_operations(VBD, r, vm_row=vm or vm_row(), **facts)


def test_vbd_on_running_and_halted_vms():
    t = bt(vbd())
    assert t["unplug"] == ("DEVICE_ALREADY_DETACHED", [VBD])
    assert t["plug"] is None and t["attach"] is None
    assert t["insert"] == ("VBD_NOT_REMOVABLE_MEDIA", [VBD])
    t = bt(vbd(currently_attached=True))
    assert t["plug"] == ("DEVICE_ALREADY_ATTACHED", [VBD])
    t = bt(vbd(), vm_row("Halted"))
    assert t["plug"] == ("VM_BAD_POWER_STATE", [VMREF, "running", "halted"])
    assert t["pause"] == ("VM_BAD_POWER_STATE", [VMREF, "running", "halted"])
    assert bt(vbd(), vm_row("Paused"))["pause"] is None


def test_vbd_concurrency():
    t = bt(vbd(current_operations={"t": "plug"}))
    assert t["attach"] == ("OTHER_OPERATION_IN_PROGRESS", ["VBD", VBD, "plug"])
    assert t["pause"] == ("OTHER_OPERATION_IN_PROGRESS", ["VBD", VBD, "plug"])
    t = bt(vbd(current_operations={"t": "attach"}), vm_row("Paused"))
    assert t["unpause"] is None  # CA-24282: unpause during an attach
    t = bt(vbd(current_operations={"t": "pause"}), vm_row("Paused"))
    assert t["unpause"] is None and t["pause"] is None


def test_vbd_cd_and_hvm_rules():
    cd = vbd(type="CD", empty=True)
    t = bt(cd, vm_row("Running", hvm=True), guest_metrics=TOOLS)
    assert t["eject"] == ("VBD_IS_EMPTY", [VBD])
    assert t["plug"] == (
        "OPERATION_NOT_ALLOWED",
        ["HVM CDROMs cannot be hotplugged/unplugged, only inserted or ejected"],
    )
    assert bt(vbd(type="CD"), vm_row("Suspended"))["insert"] == ("VBD_NOT_EMPTY", [VBD])
    assert bt(cd, vm_row("Suspended"))["insert"] == (
        "VM_BAD_POWER_STATE",
        [VMREF, "halted, running", "suspended"],
    )
    hvm = vm_row("Running", hvm=True)
    assert bt(vbd(), hvm)["plug"] == ("VM_MISSING_PV_DRIVERS", [VMREF])
    assert bt(vbd(), hvm, guest_metrics=TOOLS)["plug"] is None
    assert bt(vbd(), hvm, guest_metrics={"can_use_hotplug_vbd": "no"})["plug"] == (
        "OPERATION_NOT_ALLOWED",
        ["VM states it does not support VBD hotplug."],
    )
    assert bt(vbd(), hvm, guest_metrics={"can_use_hotplug_vbd": "yes"})["plug"] is None


def test_vbd_vm_operations_block_hotplug():
    vm = vm_row(current_operations={"t": "clean_shutdown"})
    assert bt(vbd())["plug"] is None
    assert bt(vbd(), vm)["plug"] == (
        "OPERATION_NOT_ALLOWED",
        [f"Current operation on VM:{VMREF} is clean_shutdown"],
    )


def test_vbd_vdi_rules():
    assert bt(vbd(), vdi_row=vdi_row(managed=False))["attach"] == ("VDI_NOT_MANAGED", [VBD])
    t = bt(vbd(), vdi_row=vdi_row(current_operations={"t": "copy", "u": "snapshot"}))
    assert t["attach"] == ("OTHER_OPERATION_IN_PROGRESS", ["VDI", VDI, "copy"])
    other = (vbd_of(currently_attached=True, mode="RO"), vm_row("Running"))
    t = bt(vbd(mode="RW"), other_vbds=[other])
    assert t["attach"] == ("VDI_IN_USE", [VDI])
    assert bt(vbd(mode="RO"), other_vbds=[other])["attach"] is None
    suspended_owner = (vbd_of(currently_attached=True), vm_row("Suspended"))
    assert bt(vbd(), other_vbds=[suspended_owner])["attach"] is None
    assert bt(vbd(), vdi_row=vdi_row(sharable=True), other_vbds=[other])["attach"] is None
    assert bt(vbd(), vdi_row=vdi_row(read_only=True))["attach"] == ("VDI_READONLY", [VDI])
    # update_allowed_operations skips the expensive sharing checks (CA-20808)
    assert "attach" in storage.vbd_allowed_operations(
        VBD, vbd(), vm_row=vm_row(), vdi_row=vdi_row(), other_vbds=[other]
    )


# -- VIF --------------------------------------------------------------------------------------


def test_vbd_later_rules():
    hvm = vm_row("Running", hvm=True)
    detected = {"can_use_hotplug_vbd": "unspecified", "PV_drivers_detected": True}
    assert bt(vbd(), hvm, guest_metrics=detected)["plug"] == ("VM_MISSING_PV_DRIVERS", [VMREF])
    # 1.14-lcm on (CA-224331): drivers detected are enough
    assert bt(vbd(), hvm, guest_metrics=detected, detected_suffices=True)["plug"] is None
    undetected = dict(detected, PV_drivers_detected=False)
    assert bt(vbd(), hvm, guest_metrics=undetected, detected_suffices=True)["plug"] == (
        "VM_MISSING_PV_DRIVERS",
        [VMREF],
    )
    # Inverness on (CA-253933): a VDI mirror in progress is no reason to refuse
    mirroring = vdi_row(current_operations={"t": "mirror"})
    assert bt(vbd(), vdi_row=mirroring)["attach"] == (
        "OTHER_OPERATION_IN_PROGRESS",
        ["VDI", VDI, "mirror"],
    )
    assert bt(vbd(), vdi_row=mirroring, mirror_ignored=True)["attach"] is None
    # the domain type (Jura on) is the caller's hvm fact
    assert bt(vbd(), hvm, hvm=False)["plug"] is None


def vif(**kw):
    r = {"VM": VMREF, "current_operations": {}, "currently_attached": False}
    r.update(kw)
    return r


def test_vif_rules():
    t = network.vif_valid_operations(VIF, vif(), vm_row=vm_row())
    assert t == {"attach": None, "plug": None, "unplug": ("DEVICE_ALREADY_DETACHED", [VIF])}
    t = network.vif_valid_operations(VIF, vif(current_operations={"t": "plug"}), vm_row=vm_row())
    assert all(e == ("OTHER_OPERATION_IN_PROGRESS", ["VIF", VIF, "plug"]) for e in t.values())
    t = network.vif_valid_operations(VIF, vif(), vm_row=vm_row("Halted"))
    assert t["plug"] == ("VM_BAD_POWER_STATE", [VMREF, "running", "halted"])
    assert t["attach"] is None
    t = network.vif_valid_operations(VIF, vif(), vm_row=vm_row(hvm=True))
    assert t["plug"] == ("VM_MISSING_PV_DRIVERS", [VMREF])
    t = network.vif_valid_operations(
        VIF, vif(), vm_row=vm_row(hvm=True), guest_metrics={"can_use_hotplug_vif": "no"}
    )
    assert t["plug"] == ("OPERATION_NOT_ALLOWED", ["VM states it does not support VIF hotplug."])
    # 1.14-lcm on: an unspecified claim with drivers detected is enough, as for VBDs
    detected = {"can_use_hotplug_vif": "unspecified", "PV_drivers_detected": True}
    t = network.vif_valid_operations(VIF, vif(), vm_row=vm_row(hvm=True), guest_metrics=detected)
    assert t["plug"] == ("VM_MISSING_PV_DRIVERS", [VMREF])
    t = network.vif_valid_operations(
        VIF, vif(), vm_row=vm_row(hvm=True), guest_metrics=detected, detected_suffices=True
    )
    assert t["plug"] is None


# -- PIF --------------------------------------------------------------------------------------


def pif(**kw):
    r = {
        "management": False,
        "managed": True,
        "currently_attached": True,
        "bond_slave_of": NULL_REF,
        "bond_master_of": [],
        "VLAN_slave_of": [],
        "VLAN": -1,
        "tunnel_transport_PIF_of": [],
        "tunnel_access_PIF_of": [],
        "physical": True,
        "disallow_unplug": False,
        "primary_address_type": "IPv4",
        "ip_configuration_mode": "DHCP",
    }
    r.update(kw)
    return r


def perr(r, op, **facts):
    return network.pif_check_operation_error(PIF, r, op, **facts)


def test_pif_forget_order():
    assert perr(pif(management=True, bond_master_of=["b"]), "forget") == (
        "PIF_IS_MANAGEMENT_INTERFACE",
        [PIF],
    )
    assert perr(pif(bond_master_of=["b"], VLAN=5), "forget") == ("PIF_ALREADY_BONDED", [PIF])
    assert perr(pif(VLAN=5), "forget") == ("PIF_VLAN_STILL_EXISTS", [PIF])
    assert perr(pif(VLAN=5), "forget", allow_forget_of_vlan_pif=True) is None
    assert perr(pif(tunnel_access_PIF_of=["t"]), "forget") == ("PIF_TUNNEL_STILL_EXISTS", [PIF])
    assert perr(pif(), "forget", ha_enabled=True) == ("HA_IS_ENABLED", [])
    assert perr(pif(), "forget", redo_log_enabled=True) == ("REDO_LOG_IS_ENABLED", [])
    assert perr(pif(currently_attached=False), "forget", ha_enabled=True) is None


def test_pif_other_messages():
    assert perr(pif(), "destroy") == ("PIF_IS_PHYSICAL", [])
    assert perr(pif(VLAN=10), "destroy") is None
    assert perr(pif(managed=False), "reconfigure_ip") == ("PIF_UNMANAGED", [PIF])
    assert perr(
        pif(), "reconfigure_ip", args={"mode": "Static", "IP": "10.0.0.1", "netmask": "bad"}
    ) == ("INVALID_IP_ADDRESS_SPECIFIED", ["netmask"])
    assert perr(pif(), "reconfigure_ip", args={"mode": "DHCP", "gateway": "::1"}) == (
        "INVALID_IP_ADDRESS_SPECIFIED",
        ["gateway"],
    )
    assert perr(pif(management=True), "reconfigure_ip", args={"mode": "None"}) == (
        "PIF_IS_MANAGEMENT_INTERFACE",
        [PIF],
    )
    assert perr(pif(), "reconfigure_ipv6", args={"mode": "Static", "IPv6": "fe80::1"}) == (
        "INVALID_CIDR_ADDRESS_SPECIFIED",
        ["IPv6"],
    )
    assert perr(pif(), "reconfigure_ipv6", args={"mode": "Static", "IPv6": "fe80::1/64"}) is None
    assert perr(pif(management=True), "set_primary_address_type") == (
        "PIF_IS_MANAGEMENT_INTERFACE",
        [PIF],
    )
    assert perr(pif(), "set_property", args={"name": "gro", "value": "maybe"}) == (
        "INVALID_VALUE",
        ["properties", "gro = maybe"],
    )
    assert perr(pif(physical=False), "set_property", args={"name": "gro", "value": "on"}) == (
        "CANNOT_CHANGE_PIF_PROPERTIES",
        [PIF],
    )


def test_pif_plug_and_unplug():
    assert perr(pif(management=True), "unplug") == ("PIF_IS_MANAGEMENT_INTERFACE", [PIF])
    assert perr(pif(), "unplug", ha_enabled=True, protected_vm_on_network=True) == (
        "HA_IS_ENABLED",
        [],
    )
    assert perr(
        pif(currently_attached=False), "unplug", ha_enabled=True, protected_vm_on_network=True
    ) == ("HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN", [])
    assert perr(pif(), "unplug", vif_in_use=("OpaqueRef:net", VIF)) == (
        "VIF_IN_USE",
        ["OpaqueRef:net", VIF],
    )
    assert perr(pif(disallow_unplug=True), "unplug") == ("PIF_DOES_NOT_ALLOW_UNPLUG", [PIF])
    transport = ("OpaqueRef:t", pif(ip_configuration_mode="None"))
    assert perr(pif(tunnel_access_PIF_of=["tun"]), "plug", transport_pif=transport) == (
        "TRANSPORT_PIF_NOT_CONFIGURED",
        ["OpaqueRef:t"],
    )
    assert perr(pif(bond_slave_of="OpaqueRef:bond"), "plug") == ("CANNOT_PLUG_BOND_SLAVE", [PIF])


# -- properties: allowed_operations is what the check allows --------------------------------


@settings(max_examples=200, deadline=None)
@given(
    current=st.dictionaries(
        st.sampled_from("abc"), st.sampled_from(storage.VBD_OPERATIONS), max_size=2
    ),
    power=st.sampled_from(["Halted", "Paused", "Running", "Suspended"]),
    attached=st.booleans(),
    cd=st.booleans(),
    empty=st.booleans(),
    hvm=st.booleans(),
    gm=st.sampled_from([None, TOOLS]),
    vm_ops=st.sampled_from([{}, {"t": "suspend"}]),
)
def test_vbd_allowed_iff_check_passes(current, power, attached, cd, empty, hvm, gm, vm_ops):
    r = vbd(
        current_operations=current,
        currently_attached=attached,
        type="CD" if cd else "Disk",
        empty=empty,
    )
    facts = dict(
        vm_row=vm_row(power, hvm=hvm, current_operations=vm_ops),
        guest_metrics=gm,
        vdi_row=None if empty else vdi_row(),
        expensive_sharing_checks=False,
    )
    allowed = storage.vbd_allowed_operations(VBD, r, **facts)
    for op in storage.VBD_OPERATIONS:
        assert (op in allowed) is (storage.vbd_check_operation_error(VBD, r, op, **facts) is None)


@settings(max_examples=200, deadline=None)
@given(
    current=st.dictionaries(
        st.sampled_from("abc"), st.sampled_from(storage.SR_OPERATIONS), max_size=2
    ),
    features=st.lists(st.sampled_from(storage.CAPABILITIES), max_size=8),
    attached=st.booleans(),
    pbds=st.booleans(),
    tools=st.booleans(),
    vdis=st.booleans(),
)
def test_sr_allowed_iff_check_passes(current, features, attached, pbds, tools, vdis):
    r = sr(current=current, pbds=("p",) if pbds else (), tools=tools)
    facts = dict(features=features, attached_pbds=attached, managed_vdis=vdis)
    allowed = storage.sr_allowed_operations(SR, r, **facts)
    for op in storage.SR_OPERATIONS:
        assert (op in allowed) is (storage.sr_check_operation_error(SR, r, op, **facts) is None)


@settings(max_examples=200, deadline=None)
@given(
    current=st.dictionaries(
        st.sampled_from("ab"), st.sampled_from(storage.VDI_OPERATIONS), max_size=2
    ),
    vtype=st.sampled_from(["user", "rrd", "ha_statefile", "metadata", "redo_log"]),
    ha=st.booleans(),
    features=st.lists(st.sampled_from(storage.CAPABILITIES), max_size=8),
    attached=st.booleans(),
    mode=st.sampled_from(["RO", "RW"]),
)
def test_vdi_allowed_iff_check_passes(current, vtype, ha, features, attached, mode):
    r = vdi(current_operations=current, type=vtype)
    facts = dict(
        ha_enabled=ha, features=features, vbds=[vbd_of(currently_attached=attached, mode=mode)]
    )
    allowed = storage.vdi_allowed_operations(VDI, r, **facts)
    for op in storage.VDI_UPDATE_ORDER:
        assert (op in allowed) is (storage.vdi_check_operation_error(VDI, r, op, **facts) is None)


@settings(max_examples=100, deadline=None)
@given(
    current=st.dictionaries(
        st.sampled_from("ab"), st.sampled_from(network.VIF_OPERATIONS), max_size=2
    ),
    power=st.sampled_from(["Halted", "Paused", "Running", "Suspended"]),
    attached=st.booleans(),
    hvm=st.booleans(),
    gm=st.sampled_from([None, TOOLS]),
)
def test_vif_allowed_iff_check_passes(current, power, attached, hvm, gm):
    r = vif(current_operations=current, currently_attached=attached)
    facts = dict(vm_row=vm_row(power, hvm=hvm), guest_metrics=gm)
    allowed = network.vif_allowed_operations(VIF, r, **facts)
    for op in network.VIF_OPERATIONS:
        assert (op in allowed) is (network.vif_check_operation_error(VIF, r, op, **facts) is None)
