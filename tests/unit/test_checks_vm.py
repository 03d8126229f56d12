"""VM operation checks (``xapi_sim/checks/vm.py``) against xen-api Dundee
``ocaml/xapi/xapi_vm_lifecycle.ml`` (branch dundee-lcm): the power-state table, the order
of the rules, concurrency, templates/snapshots/dom0, guest features, allowed_operations."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xapi_sim.checks import vm
from xapi_sim.checks import vm_releases as vr
from xapi_sim.datamodel import ENUMS, NULL_REF

REF = "OpaqueRef:vm"
TOOLS = {
    "PV_drivers_version": {"major": "7", "minor": "0", "micro": "0", "build": "1"},
    "other": {},
}


def row(power="Halted", **kw):
    r = {
        "power_state": power,
        "current_operations": {},
        "is_a_template": False,
        "is_a_snapshot": False,
        "is_control_domain": False,
        "other_config": {},
        "blocked_operations": {},
        "HVM_boot_policy": "",
        "attached_PCIs": [],
        "VGPUs": [],
        "appliance": NULL_REF,
        "protection_policy": NULL_REF,
    }
    r.update(kw)
    return r


def err(r, op, **facts):
    return vm.check_operation_error(REF, r, op, **facts)


# -- the enum and the power-state table -----------------------------------------------------


def test_operations_are_dundees_enum_and_all_have_power_states():
    assert len(vm.OPERATIONS) == 47
    assert set(vm.OPERATIONS) == set(vm.ALLOWED_POWER_STATES)
    # HEAD's enum (data/datamodel.json) only added two values since Dundee
    assert set(ENUMS["vm_operations"]) - set(vm.OPERATIONS) == {"changing_NVRAM", "create_vtpm"}
    assert set(vm.OPERATIONS) <= set(ENUMS["vm_operations"])
    assert set(vm.UPDATE_ORDER) <= set(vm.OPERATIONS) and set(vm.MIAMI) <= set(vm.OPERATIONS)


# (op, power states in allowed_power_states order) straight from the source's match
POWER_TABLE = [
    ("import", ""),
    ("start", "halted"),
    ("start_on", "halted"),
    ("provision", "halted"),
    ("make_into_template", "halted"),
    ("changing_VCPUs", "halted"),
    ("changing_static_range", "halted"),
    ("changing_shadow_memory", "halted"),
    ("changing_memory_limits", "halted"),
    ("unpause", "paused"),
    ("resume", "suspended"),
    ("resume_on", "suspended"),
    ("csvm", "suspended"),
    ("clean_shutdown", "running"),
    ("clean_reboot", "running"),
    ("pause", "running"),
    ("suspend", "running"),
    ("pool_migrate", "running"),
    ("send_sysrq", "running"),
    ("call_plugin", "running"),
    ("changing_VCPUs_live", "running"),
    ("snapshot_with_quiesce", "running"),
    ("changing_dynamic_range", "halted, running"),
    ("clone", "halted"),
    ("copy", "halted"),
    ("destroy", "halted, suspended"),
    ("export", "halted, suspended"),
    ("create_template", "halted, suspended"),
    ("hard_reboot", "paused, running"),
    ("hard_shutdown", "paused, suspended, running"),
    ("shutdown", "paused, suspended, running"),
    ("checkpoint", "paused, suspended, running"),
    ("get_boot_record", "paused, suspended, running"),
    ("migrate_send", "halted, suspended, running"),
    ("snapshot", "halted, paused, suspended, running"),
    ("revert", "halted, paused, suspended, running"),
]


@pytest.mark.parametrize("op, expected", POWER_TABLE)
@pytest.mark.parametrize("power", vm.POWER_STATES)
def test_power_state_rule(op, expected, power):
    states = [s for s in expected.split(", ") if s]
    e = err(row(power, is_a_template=op == "provision", is_a_snapshot=op == "revert"), op)
    if power.lower() in states:
        assert e is None or e[0] != "VM_BAD_POWER_STATE"
    else:
        assert e == ("VM_BAD_POWER_STATE", [REF, expected, power.lower()])


def test_hard_reboot_of_a_suspended_vm_names_paused_and_running():
    assert err(row("Suspended"), "hard_reboot") == (
        "VM_BAD_POWER_STATE",
        [REF, "paused, running", "suspended"],
    )


@pytest.mark.parametrize(
    "snapshot, pool_flag, ok", [(False, False, False), (True, False, True), (False, True, True)]
)
def test_clone_of_suspended_needs_a_snapshot_or_the_pool_flag(snapshot, pool_flag, ok):
    r = row("Suspended", is_a_snapshot=snapshot, is_a_template=snapshot)
    e = err(r, "clone", clone_suspended_vm_enabled=pool_flag)
    assert (e is None) == ok
    if not ok:
        assert e == ("VM_BAD_POWER_STATE", [REF, "halted", "suspended"])


# -- the order of the rules -----------------------------------------------------------------


def test_blocked_comes_before_the_power_state():
    r = row("Running", blocked_operations={"start": "locked by admin"})
    assert err(r, "start") == ("OPERATION_BLOCKED", [REF, "locked by admin"])


def test_power_state_comes_before_concurrency():
    r = row("Running", current_operations={"t1": "clean_shutdown"})
    assert err(r, "start")[0] == "VM_BAD_POWER_STATE"


def test_concurrency_comes_before_templates_and_dom0():
    r = row("Running", current_operations={"t1": "clean_shutdown"}, is_control_domain=True)
    assert err(r, "suspend") == ("OTHER_OPERATION_IN_PROGRESS", ["VM.clean_shutdown", REF])


def test_template_rule_comes_before_provision_and_dom0():
    r = row("Halted", is_a_template=True, other_config={"default_template": "true"})
    assert err(r, "start") == ("VM_IS_TEMPLATE", [REF, "start"])
    assert err(r, "provision") is None


def test_dom0_after_the_power_state():
    dom0 = row("Running", is_control_domain=True)
    assert err(dom0, "destroy") == ("VM_BAD_POWER_STATE", [REF, "halted, suspended", "running"])
    assert err(dom0, "clean_shutdown") == (
        "OPERATION_NOT_ALLOWED",
        ["Operations on control domain are not allowed"],
    )
    # 6.5's source had its own words for it
    assert err(dom0, "clean_shutdown", rules=vr.rules_for("cream")) == (
        "OPERATION_NOT_ALLOWED",
        ["Operations on domain 0 are not allowed"],
    )
    for op in (
        "changing_dynamic_range",
        "data_source_op",
        "changing_memory_live",
        "awaiting_memory_live",
        "metadata_export",
    ):
        assert err(dom0, op) is None, op


# -- concurrency ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "op, current, ok",
    [
        ("hard_shutdown", ["clean_shutdown"], True),
        ("hard_shutdown", ["hard_shutdown"], False),
        ("hard_reboot", ["clean_reboot", "suspend"], True),
        ("hard_reboot", ["hard_shutdown"], False),
        ("hard_reboot", ["hard_reboot"], False),
        ("clean_reboot", ["clean_shutdown"], False),
        ("clone", ["export"], True),
        ("export", ["clone", "copy"], True),
        ("copy", ["snapshot"], False),
        ("checkpoint", ["snapshot"], True),
        ("snapshot", ["snapshot_with_quiesce"], True),
        ("snapshot", ["snapshot_with_quiesce", "clone"], False),
        ("get_boot_record", ["get_boot_record"], True),
        ("start", ["migrate_send"], True),
        ("clean_shutdown", ["migrate_send"], True),
        ("metadata_export", ["migrate_send"], True),
        ("start", ["clone"], False),
        ("pool_migrate", ["migrate_send"], False),
    ],
)
def test_is_allowed_concurrently(op, current, ok):
    assert vm.is_allowed_concurrently(op, current) is ok


def test_several_operations_in_progress_are_braced():
    r = row("Halted", current_operations={"t2": "clone", "t1": "export"})
    assert err(r, "start") == ("OTHER_OPERATION_IN_PROGRESS", ["VM.{clone,export}", REF])
    assert err(r, "copy") is None


def test_operation_strings_as_record_util_prints_them():
    assert vm.operation_to_string("data_source_op") == "data_sources_op"
    assert vm.operation_to_string("assert_operation_valid") == "assertoperationvalid"
    for op in (
        "shutdown",
        "changing_VCPUs",
        "query_services",
        "create_template",
        "changing_memory_limits",
    ):
        assert vm.operation_to_string(op) == "(unknown operation)"
    r = row("Halted", is_a_template=True, other_config={"default_template": "true"})
    assert err(r, "changing_VCPUs") is None
    assert err(row("Running", is_a_template=True), "shutdown") == (
        "VM_IS_TEMPLATE",
        [REF, "(unknown operation)"],
    )


# -- templates and snapshots ----------------------------------------------------------------


@pytest.mark.parametrize(
    "default, op, ok",
    [
        (True, "destroy", False),
        (False, "destroy", True),
        (True, "migrate_send", False),
        (False, "migrate_send", True),
        (True, "clone", True),
        (True, "copy", True),
        (True, "export", True),
        (True, "provision", True),
        (True, "changing_static_range", True),
        (True, "snapshot", False),
        (True, "make_into_template", False),
        (True, "start", False),
    ],
)
def test_template_rules(default, op, ok):
    oc = {"default_template": "TRUE"} if default else {"default_template": "no"}
    e = err(row("Halted", is_a_template=True, other_config=oc), op)
    assert (e is None) == ok
    if not ok:
        assert e == ("VM_IS_TEMPLATE", [REF, op])


@pytest.mark.parametrize(
    "op, ok",
    [
        ("revert", True),
        ("clone", True),
        ("copy", True),
        ("export", True),
        ("destroy", True),
        ("snapshot", False),
        ("start", False),
        ("provision", False),
        ("migrate_send", False),
    ],
)
def test_snapshot_rules(op, ok):
    e = err(row("Halted", is_a_template=True, is_a_snapshot=True), op)
    assert (e is None) == ok
    if not ok:
        assert e == ("VM_IS_SNAPSHOT", [REF, op])


def test_provision_and_revert_need_a_template_and_a_snapshot():
    assert err(row("Halted"), "provision") == ("PROVISION_ONLY_ALLOWED_ON_TEMPLATE", [])
    assert err(row("Halted"), "revert") == ("REVERT_ONLY_ALLOWED_ON_SNAPSHOT", [])


# -- guest features (check_op_for_feature) --------------------------------------------------

HVM = {"HVM_boot_policy": "BIOS order"}


@pytest.mark.parametrize(
    "op, strict, code",
    [
        ("clean_shutdown", True, "VM_LACKS_FEATURE_SHUTDOWN"),
        ("clean_shutdown", False, None),
        ("clean_reboot", True, "VM_LACKS_FEATURE_SHUTDOWN"),
        ("changing_VCPUs_live", False, "VM_LACKS_FEATURE_VCPU_HOTPLUG"),
        ("suspend", True, "VM_LACKS_FEATURE_SUSPEND"),
        ("checkpoint", True, "VM_LACKS_FEATURE_SUSPEND"),
        ("pool_migrate", True, "VM_LACKS_FEATURE_SUSPEND"),
        ("pool_migrate", False, None),
        ("migrate_send", True, "VM_LACKS_FEATURE_SUSPEND"),
        ("hard_shutdown", True, None),
    ],
)
def test_hvm_guest_without_drivers(op, strict, code):
    e = err(row("Running", **HVM), op, strict=strict)
    assert e == ((code, [REF]) if code else None)
    assert err(row("Running", **HVM), op, strict=strict, guest_metrics=TOOLS) is None
    assert err(row("Running"), op, strict=strict) is None  # PV guests


def test_feature_flags_of_a_guest_without_drivers():
    gm = {"PV_drivers_version": {}, "other": {"feature-poweroff": "1", "feature-suspend": "1"}}
    assert err(row("Running", **HVM), "clean_shutdown", guest_metrics=gm) is None
    assert (
        err(row("Running", **HVM), "clean_reboot", guest_metrics=gm)[0]
        == "VM_LACKS_FEATURE_SHUTDOWN"
    )
    assert err(row("Running", **HVM), "suspend", guest_metrics=gm) is None


@pytest.mark.parametrize(
    "version, drivers",
    [
        ({"major": "7", "minor": "0"}, True),
        ({"major": "0x7", "minor": "1_0", "micro": "-1"}, True),
        ({"major": "7"}, False),
        ({"major": "7", "minor": "x"}, False),
        ({"major": "7", "minor": "0", "build": "12a"}, False),
        ({}, False),
    ],
)
def test_pv_drivers_detection(version, drivers):
    assert vm.has_pv_drivers({"PV_drivers_version": version}) is drivers


def test_quiesce_vdis_pci_vgpu_appliance_policy_system_domain():
    running = row("Running")
    assert err(running, "snapshot_with_quiesce") == (
        "VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED",
        [REF],
    )
    assert (
        err(running, "snapshot_with_quiesce", guest_metrics={"other": {"feature-snapshot": "0"}})
        is None
    )
    assert err(running, "suspend", vdis_reset_and_caching=[(True, False)]) == (
        "VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION",
        [],
    )
    assert err(running, "pool_migrate", vdis_reset_and_caching=[(True, False)]) is None
    assert (
        err(running, "pool_migrate", vdis_reset_and_caching=[(True, True)])[0]
        == "VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION"
    )
    pci = row("Running", attached_PCIs=["OpaqueRef:pci"])
    assert err(pci, "suspend") == ("VM_HAS_PCI_ATTACHED", [REF])
    assert err(pci, "clean_shutdown") is None
    gpu = row("Running", VGPUs=["OpaqueRef:g"])
    assert err(gpu, "pool_migrate") == ("VM_HAS_VGPU", [REF])
    assert err(gpu, "pool_migrate", all_vgpus_nvidia=True, allow_nvidia_vgpu_migration=True) is None
    assert err(gpu, "checkpoint", all_vgpus_nvidia=True, allow_nvidia_vgpu_migration=True) == (
        "VM_HAS_VGPU",
        [REF],
    )
    app = row("Halted", appliance="OpaqueRef:app")
    assert err(app, "make_into_template") == ("VM_IS_PART_OF_AN_APPLIANCE", [REF, "OpaqueRef:app"])
    assert err(app, "make_into_template", appliance_valid=False) is None
    vmpp = row("Halted", protection_policy="OpaqueRef:pp")
    assert err(vmpp, "make_into_template") == (
        "VM_ASSIGNED_TO_PROTECTION_POLICY",
        [REF, "OpaqueRef:pp"],
    )
    assert err(row("Running"), "query_services") == ("NOT_SYSTEM_DOMAIN", [REF])
    assert err(row("Running", other_config={"is_system_domain": "1"}), "query_services") is None


def test_unknown_operation_is_a_programming_error():
    with pytest.raises(ValueError):
        err(row(), "changing_NVRAM")


# -- allowed_operations ---------------------------------------------------------------------


def test_allowed_operations_of_a_running_vm_in_xapis_order():
    """The list a real XenServer 7.0 prints for a running VM with tools."""
    assert vm.allowed_operations(REF, row("Running", **HVM), guest_metrics=TOOLS) == [
        "changing_dynamic_range",
        "migrate_send",
        "pool_migrate",
        "changing_VCPUs_live",
        "suspend",
        "hard_reboot",
        "hard_shutdown",
        "clean_reboot",
        "clean_shutdown",
        "pause",
        "checkpoint",
        "snapshot",
    ]


def test_allowed_operations_of_other_kinds_of_vm():
    assert vm.allowed_operations(REF, row("Halted")) == [
        "changing_dynamic_range",
        "changing_shadow_memory",
        "changing_static_range",
        "make_into_template",
        "migrate_send",
        "destroy",
        "export",
        "start_on",
        "start",
        "clone",
        "copy",
        "snapshot",
    ]
    default = row("Halted", is_a_template=True, other_config={"default_template": "true"})
    assert vm.allowed_operations(REF, default) == [
        "changing_dynamic_range",
        "changing_shadow_memory",
        "changing_static_range",
        "provision",
        "export",
        "clone",
        "copy",
    ]
    custom = row("Halted", is_a_template=True)
    assert "destroy" in vm.allowed_operations(REF, custom)
    assert vm.allowed_operations(REF, row("Running", is_control_domain=True)) == [
        "changing_dynamic_range"
    ]
    checkpoint = row("Suspended", is_a_template=True, is_a_snapshot=True)
    assert vm.allowed_operations(REF, checkpoint) == [
        "destroy",
        "export",
        "hard_shutdown",
        "revert",
        "clone",
        "copy",
    ]
    assert vm.allowed_operations(REF, row("Suspended")) == [
        "migrate_send",
        "destroy",
        "export",
        "resume_on",
        "resume",
        "hard_shutdown",
        "checkpoint",
        "snapshot",
    ]
    assert vm.allowed_operations(REF, row("Paused")) == [
        "hard_reboot",
        "hard_shutdown",
        "unpause",
        "checkpoint",
        "snapshot",
    ]


def test_a_rolling_upgrade_cuts_to_the_miami_list():
    r = row("Running", **HVM)
    full = vm.allowed_operations(REF, r, guest_metrics=TOOLS)
    cut = vm.allowed_operations(REF, r, guest_metrics=TOOLS, rpu=True)
    assert cut == [op for op in full if op in vm.MIAMI]
    assert {"snapshot", "checkpoint", "migrate_send", "changing_dynamic_range"} & set(cut) == set()
    # informational only in Dundee: the check itself does not refuse them
    assert err(r, "snapshot", guest_metrics=TOOLS) is None


# -- the property: allowed_operations is exactly the ops whose strict check passes ---------


@st.composite
def vm_rows(draw):
    template = draw(st.booleans())
    snapshot = template and draw(st.booleans())
    ops = st.sampled_from(vm.OPERATIONS)
    current = draw(st.dictionaries(st.sampled_from(["t1", "t2", "t3"]), ops, max_size=2))
    blocked = draw(st.dictionaries(ops, st.sampled_from(["", "why"]), max_size=2))
    other = draw(
        st.dictionaries(
            st.sampled_from(["default_template", "is_system_domain"]),
            st.sampled_from(["true", "1", "0", "TRUE"]),
            max_size=2,
        )
    )
    return row(
        draw(st.sampled_from(vm.POWER_STATES)),
        current_operations=current,
        is_a_template=template,
        is_a_snapshot=snapshot,
        other_config=other,
        is_control_domain=draw(st.booleans()),
        blocked_operations=blocked,
        HVM_boot_policy=draw(st.sampled_from(["", "BIOS order"])),
        attached_PCIs=draw(st.sampled_from([[], ["OpaqueRef:p"]])),
        VGPUs=draw(st.sampled_from([[], ["OpaqueRef:g"]])),
        appliance=draw(st.sampled_from([NULL_REF, "OpaqueRef:a"])),
    )


FACTS = st.fixed_dictionaries(
    {
        "guest_metrics": st.sampled_from([None, TOOLS, {"other": {"feature-suspend": "1"}}]),
        "clone_suspended_vm_enabled": st.booleans(),
        "vdis_reset_and_caching": st.lists(st.tuples(st.booleans(), st.booleans()), max_size=2),
    }
)


@settings(max_examples=300, deadline=None)
@given(r=vm_rows(), facts=FACTS, rpu=st.booleans())
def test_allowed_iff_the_strict_check_passes(r, facts, rpu):
    allowed = vm.allowed_operations(REF, r, rpu=rpu, **facts)
    assert len(allowed) == len(set(allowed))
    for op in vm.UPDATE_ORDER:
        ok = err(r, op, strict=True, **facts) is None and (not rpu or op in vm.MIAMI)
        assert (op in allowed) is ok, op
    assert set(allowed) <= set(vm.UPDATE_ORDER)


@settings(max_examples=200, deadline=None)
@given(r=vm_rows(), facts=FACTS, op=st.sampled_from(vm.OPERATIONS))
def test_the_check_is_total_and_well_formed(r, facts, op):
    e = err(r, op, **facts)
    assert e is None or (isinstance(e[0], str) and all(isinstance(p, str) for p in e[1]))
    # a non-strict check never refuses what the strict one allows
    if err(r, op, strict=True, **facts) is None:
        assert err(r, op, strict=False, **facts) is None


# == the later sources: 1.249-lcm (stockholm), v23.30.0 (nile), v24.19.2 (xcp-ng-8.3) ======


LATER = [vr.STOCKHOLM, vr.NILE, vr.XCP_NG_83]
LATER_IDS = ["1.249-lcm", "v23.30.0", "v24.19.2"]


def lerr(rules, r, op, **facts):
    return vm.check_operation_error(REF, r, op, rules=rules, **facts)


def test_each_release_profile_gets_its_sources_rules():
    # data/releases.json datamodel_release of each profile -> the source it names
    assert vm.rules_for("cream") is vr.CREAM  # Dundee's, with 6.5's control-domain words
    assert vm.rules_for("dundee") is vr.DUNDEE
    assert vm.rules_for("ely") is vr.ELY  # 1.14-lcm: Dundee's and three rules
    assert vm.rules_for("quebec") is vr.ELY  # between two sources: the earlier one
    assert vm.rules_for("stockholm_psr").source == "1.249-lcm"
    assert vm.rules_for("23.30.0").source == "v23.30.0"
    assert vm.rules_for("24.16.0").source == "v24.19.2"


def test_the_enum_of_each_source():
    # 1.249-lcm datamodel_vm.ml: Dundee's 47, changing_NVRAM after changing_VCPUs_live
    i = vm.OPERATIONS.index("changing_VCPUs_live") + 1
    assert vr.STOCKHOLM.operations == (*vm.OPERATIONS[:i], "changing_NVRAM", *vm.OPERATIONS[i:])
    # v23.30.0 / v24.19.2 datamodel_vm.ml lines 1558-1619: and create_vtpm at the end
    assert vr.NILE.operations == (*vr.STOCKHOLM.operations, "create_vtpm")
    assert vr.XCP_NG_83.operations == tuple(ENUMS["vm_operations"])
    for rules in LATER:
        assert set(rules.update_ops) <= set(rules.operations)
        assert set(rules.rpu_ops) <= set(rules.operations)
        for op in rules.operations:  # every value has power states
            vm.allowed_power_states(row(), op, rules=rules)
    assert "create_vtpm" not in vr.STOCKHOLM.operations and not vr.STOCKHOLM.vtpm
    with pytest.raises(ValueError):
        lerr(vr.STOCKHOLM, row(), "create_vtpm")


def test_v24_update_list_is_the_enum_without_the_ignored_ops():
    # v24.19.2 xapi_vm_lifecycle.ml lines 752-776 (allowable_ops), in the enum's order
    assert vr.XCP_NG_83.update_ops == (
        "snapshot",
        "clone",
        "copy",
        "revert",
        "checkpoint",
        "snapshot_with_quiesce",
        "provision",
        "start",
        "start_on",
        "pause",
        "unpause",
        "clean_shutdown",
        "clean_reboot",
        "hard_shutdown",
        "hard_reboot",
        "suspend",
        "resume",
        "resume_on",
        "pool_migrate",
        "migrate_send",
        "changing_dynamic_range",
        "changing_static_range",
        "changing_shadow_memory",
        "changing_VCPUs_live",
        "changing_NVRAM",
        "make_into_template",
        "export",
        "metadata_export",
        "destroy",
        "create_vtpm",
    )
    assert vr.NILE.update_ops[-2:] == ("changing_NVRAM", "create_vtpm")
    assert vr.STOCKHOLM.update_ops == (*vm.UPDATE_ORDER, "changing_NVRAM")


@pytest.mark.parametrize("rules", LATER, ids=LATER_IDS)
def test_later_power_states(rules):
    assert vm.expected_states(row(), "changing_NVRAM", rules=rules) == "halted"
    dom0 = row("Running", is_control_domain=True)
    for op in ("changing_VCPUs", "changing_static_range", "changing_memory_limits"):
        assert vm.allowed_power_states(dom0, op, rules=rules) == ("Halted", "Running")
        assert vm.allowed_power_states(row(), op, rules=rules) == ("Halted",)
    e = lerr(rules, row("Running"), "changing_NVRAM", guest_metrics=TOOLS)
    assert e == ("VM_BAD_POWER_STATE", [REF, "halted", "running"])


def test_start_during_migrate_send_until_ca_322708():
    cur = ["migrate_send"]
    assert vm.is_allowed_concurrently("start", cur, vr.STOCKHOLM)
    assert not vm.is_allowed_concurrently("start_on", cur, vr.NILE)
    assert vm.is_allowed_concurrently("clean_shutdown", cur, vr.XCP_NG_83)
    busy = row("Halted", current_operations={"t": "migrate_send"})
    assert lerr(vr.NILE, busy, "start") == (
        "OTHER_OPERATION_IN_PROGRESS",
        ["VM.migrate_send", REF],
    )


def test_operation_strings_of_each_source():
    # Record_util.vm_operation_table: shutdown is in 1.249-lcm's and v24.19.2's, not v23.30.0's
    assert vm.operation_to_string("shutdown") == "(unknown operation)"
    assert vm.operation_to_string("shutdown", vr.STOCKHOLM) == "shutdown"
    assert vm.operation_to_string("shutdown", vr.NILE) == "(unknown operation)"
    assert vm.operation_to_string("shutdown", vr.XCP_NG_83) == "shutdown"
    assert vm.operation_to_string("changing_VCPUs", vr.XCP_NG_83) == "(unknown operation)"
    assert vm.operation_to_string("create_vtpm", vr.NILE) == "create_vtpm"
    snap = row("Halted", is_a_template=True, is_a_snapshot=True)
    assert lerr(vr.STOCKHOLM, snap, "shutdown") == (
        "VM_BAD_POWER_STATE",
        [REF, "paused, suspended, running", "halted"],
    )
    running_snap = row("Running", is_a_template=True, is_a_snapshot=True)
    assert lerr(vr.NILE, running_snap, "shutdown") == (
        "VM_IS_SNAPSHOT",
        [REF, "(unknown operation)"],
    )


@pytest.mark.parametrize("rules", LATER, ids=LATER_IDS)
def test_later_rules_in_order(rules):
    running = row("Running", HVM_boot_policy="BIOS order")
    # immobile (nomigrate / nested-virt: metrics, or the platform without metrics)
    for op in ("suspend", "checkpoint", "pool_migrate", "migrate_send"):
        assert lerr(rules, running, op, guest_metrics=TOOLS, nomigrate=True) == (
            "VM_IS_IMMOBILE",
            [REF],
        )
        assert lerr(rules, running, op, guest_metrics=TOOLS, nomigrate=True, strict=False) is None
    nested = row("Running", platform={"nested-virt": "TRUE"})
    assert lerr(rules, nested, "pool_migrate", guest_metrics=TOOLS) == ("VM_IS_IMMOBILE", [REF])
    assert lerr(rules, nested, "changing_dynamic_range", guest_metrics=TOOLS) == (
        "VM_IS_USING_NESTED_VIRT",
        [REF],
    )
    assert lerr(rules, nested, "changing_dynamic_range", nested_virt=False) is None
    # dom0 and other control domains
    dom0 = row("Halted", is_control_domain=True)
    assert lerr(rules, dom0, "destroy", is_domain_zero=True) == (
        "OPERATION_NOT_ALLOWED",
        ["This operation is not allowed on dom0"],
    )
    assert lerr(rules, dom0, "destroy", is_domain_zero=False) is None  # a driver domain
    assert lerr(rules, dom0, "export", is_domain_zero=False) == (
        "OPERATION_NOT_ALLOWED",
        ["This operation is not allowed on a control domain"],
    )
    # guest features: one code; a VM that booted PV is exempt, without metrics it is not
    assert lerr(rules, running, "clean_shutdown") == ("VM_LACKS_FEATURE", [REF])
    assert lerr(rules, running, "changing_VCPUs_live", strict=False) == (
        "VM_LACKS_FEATURE",
        [REF],
    )
    assert lerr(rules, running, "clean_shutdown", current_domain_type="pv") is None
    pvh = lerr(rules, running, "suspend", current_domain_type="pvh")
    assert pvh == (None if rules.pvh_is_pv else ("VM_LACKS_FEATURE", [REF]))
    assert lerr(rules, row("Running"), "clean_shutdown", current_domain_type="hvm") == (
        "VM_LACKS_FEATURE",
        [REF],
    )
    # VSS removed: quiesced snapshots are always refused
    quiesce = {"other": {"feature-quiesce": "1"}, **TOOLS}
    assert lerr(rules, running, "snapshot_with_quiesce", guest_metrics=quiesce) == (
        "VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED",
        [REF],
    )
    # PCI passthrough, except the PCIs of NVIDIA SR-IOV vGPUs
    pci = row("Running", attached_PCIs=["OpaqueRef:p"])
    assert lerr(rules, pci, "suspend", guest_metrics=TOOLS) == ("VM_HAS_PCI_ATTACHED", [REF])
    assert lerr(rules, pci, "suspend", guest_metrics=TOOLS, sriov_pcis=["OpaqueRef:p"]) is None
    # vGPUs
    gpu = row("Running", VGPUs=["OpaqueRef:g"])
    assert lerr(rules, gpu, "suspend", guest_metrics=TOOLS) == ("VM_HAS_VGPU", [REF])
    assert lerr(rules, gpu, "suspend", guest_metrics=TOOLS, vgpus_suspendable=True) is None
    assert lerr(rules, gpu, "pool_migrate", guest_metrics=TOOLS, vgpus_suspendable=True) is None
    assert lerr(
        rules,
        gpu,
        "pool_migrate",
        guest_metrics=TOOLS,
        vgpus_suspendable=True,
        vgpus_migratable=False,
    ) == ("VM_HAS_VGPU", [REF])
    assert lerr(rules, row("Halted", VGPUs=["OpaqueRef:g"]), "migrate_send") is None
    assert lerr(rules, row("Suspended", VGPUs=["OpaqueRef:g"]), "checkpoint") is None
    # VUSBs
    usb = row("Running", VUSBs=["OpaqueRef:u"])
    assert lerr(rules, usb, "snapshot", guest_metrics=TOOLS) == ("VM_HAS_VUSBS", [REF])
    # make_into_template: appliance, protection policy, snapshot schedule
    vmss = row("Halted", snapshot_schedule="OpaqueRef:s")
    assert lerr(rules, vmss, "make_into_template") == (
        "VM_ASSIGNED_TO_SNAPSHOT_SCHEDULE",
        [REF, "OpaqueRef:s"],
    )
    assert lerr(rules, vmss, "make_into_template", snapshot_schedule_valid=False) is None
    both = row("Halted", snapshot_schedule="OpaqueRef:s", appliance="OpaqueRef:a")
    assert lerr(rules, both, "make_into_template")[0] == "VM_IS_PART_OF_AN_APPLIANCE"
    # the RPU refusal, after everything else
    assert lerr(rules, row("Halted"), "snapshot", rpu=True) == ("NOT_SUPPORTED_DURING_UPGRADE", [])
    assert lerr(rules, row("Halted"), "start", rpu=True) is None
    ms = lerr(rules, row("Halted"), "migrate_send", rpu=True)
    assert ms == (None if "migrate_send" in rules.rpu_ops else ("NOT_SUPPORTED_DURING_UPGRADE", []))
    assert lerr(rules, row("Running"), "snapshot", rpu=True, nomigrate=True) == (
        "NOT_SUPPORTED_DURING_UPGRADE",
        [],
    )


@pytest.mark.parametrize("rules", [vr.NILE, vr.XCP_NG_83], ids=LATER_IDS[1:])
def test_a_second_vtpm_is_refused(rules):
    assert lerr(rules, row("Halted"), "create_vtpm") is None
    assert lerr(rules, row("Halted", VTPMs=["OpaqueRef:t"]), "create_vtpm") == (
        "VTPM_MAX_AMOUNT_REACHED",
        ["1"],
    )
    assert lerr(rules, row("Running"), "create_vtpm")[0] == "VM_BAD_POWER_STATE"
    assert lerr(rules, row("Halted", is_a_template=True), "create_vtpm")[0] == "VM_IS_TEMPLATE"


def test_later_templates_allow_nvram_and_know_is_default_template():
    t = row("Halted", is_a_template=True, is_default_template=True)
    for rules in LATER:
        assert lerr(rules, t, "changing_NVRAM") is None
        assert lerr(rules, t, "destroy") == ("VM_IS_TEMPLATE", [REF, "destroy"])
        assert lerr(rules, row("Halted", is_a_template=True), "destroy") is None
    assert err(t, "destroy") is None  # Dundee reads other_config only


RUNNING_DUNDEE_ORDER = [
    "changing_dynamic_range",
    "migrate_send",
    "pool_migrate",
    "changing_VCPUs_live",
    "suspend",
    "hard_reboot",
    "hard_shutdown",
    "clean_reboot",
    "clean_shutdown",
    "pause",
    "checkpoint",
    "snapshot",
]


def test_later_allowed_operations_of_each_kind_of_vm():
    up = row("Running")
    for rules in (vr.STOCKHOLM, vr.NILE):
        assert vm.allowed_operations(REF, up, rules=rules, guest_metrics=TOOLS) == (
            RUNNING_DUNDEE_ORDER
        )
    # v24.19.2: the enum's order reversed, metadata_export included
    assert vm.allowed_operations(REF, up, rules=vr.XCP_NG_83, guest_metrics=TOOLS) == [
        "metadata_export",
        "changing_VCPUs_live",
        "changing_dynamic_range",
        "migrate_send",
        "pool_migrate",
        "suspend",
        "hard_reboot",
        "hard_shutdown",
        "clean_reboot",
        "clean_shutdown",
        "pause",
        "checkpoint",
        "snapshot",
    ]
    halted = vm.allowed_operations(REF, row("Halted"), rules=vr.NILE)
    assert halted[:2] == ["create_vtpm", "changing_NVRAM"]
    assert vm.allowed_operations(REF, row("Halted"), rules=vr.STOCKHOLM)[0] == "changing_NVRAM"
    dom0 = row("Running", is_control_domain=True)
    assert vm.allowed_operations(REF, dom0, rules=vr.STOCKHOLM, is_domain_zero=True) == [
        "changing_dynamic_range",
        "changing_static_range",
    ]
    # during an RPU: the check refuses off-list operations, and the list is cut
    cut = vm.allowed_operations(REF, up, rules=vr.XCP_NG_83, guest_metrics=TOOLS, rpu=True)
    assert cut == [
        "changing_VCPUs_live",
        "migrate_send",
        "pool_migrate",
        "suspend",
        "hard_reboot",
        "hard_shutdown",
        "clean_reboot",
        "clean_shutdown",
        "pause",
    ]


LATER_FACTS = st.fixed_dictionaries(
    {
        "guest_metrics": st.sampled_from([None, TOOLS, {"other": {"feature-suspend": "1"}}]),
        "clone_suspended_vm_enabled": st.booleans(),
        "vdis_reset_and_caching": st.lists(st.tuples(st.booleans(), st.booleans()), max_size=2),
        "nomigrate": st.sampled_from([None, False, True]),
        "nested_virt": st.sampled_from([None, False, True]),
        "current_domain_type": st.sampled_from([None, "hvm", "pv", "pvh", "unspecified"]),
        "is_domain_zero": st.sampled_from([None, False, True]),
        "sriov_pcis": st.sampled_from([[], ["OpaqueRef:p"]]),
        "vgpus_suspendable": st.booleans(),
        "vgpus_migratable": st.booleans(),
        "snapshot_schedule_valid": st.sampled_from([None, False, True]),
    }
)


@st.composite
def later_rows(draw, rules):
    r = draw(vm_rows())
    ops = st.sampled_from(rules.operations)
    r["current_operations"] = draw(st.dictionaries(st.sampled_from(["t1", "t2"]), ops, max_size=2))
    r["blocked_operations"] = draw(st.dictionaries(ops, st.just("why"), max_size=1))
    r["platform"] = draw(st.sampled_from([{}, {"nomigrate": "1"}, {"nested-virt": "true"}]))
    r["VUSBs"] = draw(st.sampled_from([[], ["OpaqueRef:u"]]))
    r["VTPMs"] = draw(st.sampled_from([[], ["OpaqueRef:t"]]))
    r["is_default_template"] = draw(st.booleans())
    return r


@settings(max_examples=150, deadline=None)
@given(data=st.data(), facts=LATER_FACTS, rpu=st.booleans())
@pytest.mark.parametrize("rules", LATER, ids=LATER_IDS)
def test_later_allowed_iff_the_strict_check_passes(rules, data, facts, rpu):
    r = data.draw(later_rows(rules))
    allowed = vm.allowed_operations(REF, r, rules=rules, rpu=rpu, **facts)
    assert len(allowed) == len(set(allowed))
    for op in rules.update_ops:
        ok = lerr(rules, r, op, strict=True, rpu=rpu, **facts) is None
        assert (op in allowed) is ok, op
    assert allowed == [op for op in reversed(rules.update_ops) if op in allowed]
    if rpu:
        assert set(allowed) <= set(rules.rpu_ops)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), facts=LATER_FACTS, rpu=st.booleans())
@pytest.mark.parametrize("rules", LATER, ids=LATER_IDS)
def test_later_check_is_total_and_strictness_only_relaxes(rules, data, facts, rpu):
    r = data.draw(later_rows(rules))
    op = data.draw(st.sampled_from(rules.operations))
    e = lerr(rules, r, op, rpu=rpu, **facts)
    assert e is None or (isinstance(e[0], str) and all(isinstance(p, str) for p in e[1]))
    if lerr(rules, r, op, strict=True, rpu=rpu, **facts) is None:
        assert lerr(rules, r, op, strict=False, rpu=rpu, **facts) is None
    # nothing of Dundee's per-feature codes or domain-0 message survives
    assert e is None or e[0] not in ("VM_LACKS_FEATURE_SHUTDOWN", "VM_LACKS_FEATURE_SUSPEND")


@settings(max_examples=200, deadline=None)
@given(
    nomigrate=st.sampled_from([None, False, True]),
    nested=st.sampled_from([None, False, True]),
    platform=st.dictionaries(
        st.sampled_from(["nomigrate", "nested-virt"]),
        st.sampled_from(["1", "true", "TRUE", "0", "false", "yes", ""]),
    ),
    strict=st.booleans(),
)
def test_immobility_is_the_metrics_or_the_platform(nomigrate, nested, platform, strict):
    """``is_mobile``: refused iff strict and (nomigrate or nested_virt), each the metrics
    value or, without one, ``Vm_platform.is_true`` of the platform key."""
    r = row("Running", platform=platform)
    e = lerr(
        vr.STOCKHOLM,
        r,
        "pool_migrate",
        guest_metrics=TOOLS,
        strict=strict,
        nomigrate=nomigrate,
        nested_virt=nested,
    )

    def flag(v, key):
        return platform.get(key, "").lower() in ("1", "true") if v is None else v

    immobile = strict and (flag(nomigrate, "nomigrate") or flag(nested, "nested-virt"))
    assert (e == ("VM_IS_IMMOBILE", [REF])) is immobile
    assert e is None or immobile


# == ely: xen-api 1.14-lcm (XenServer 7.1) =====================================================
# 1.14-lcm ocaml/xapi/xapi_vm_lifecycle.ml is Dundee's check with VM_IS_IMMOBILE /
# VM_IS_USING_NESTED_VIRT (lines 360-380), the dom0 / control-domain split (lines 386-405,
# with a control domain's memory-limit / static-range / vCPU changes allowed Running, line
# 42) and VM_LACKS_FEATURE (lines 165-178). Line numbers below are 1.14-lcm's.

ELY = vr.ELY
HVM_UP = row("Running", **HVM)


def test_ely_keeps_dundees_tables():
    # datamodel.ml vm_operations, update_allowed_operations' list (lines 503-507),
    # Xapi_globs.vm_operations_miami, Record_util.vm_operation_table: Dundee's
    assert ELY.operations == vr.DUNDEE.operations
    assert ELY.update_ops == vr.DUNDEE.update_ops
    assert ELY.rpu_ops == vr.DUNDEE.rpu_ops
    assert not ELY.later and not ELY.vtpm and ELY.start_during_migrate_send
    assert ELY.immobility and ELY.dom0_split and ELY.lacks_feature
    assert not (vr.DUNDEE.immobility or vr.DUNDEE.dom0_split or vr.DUNDEE.lacks_feature)
    assert all(r.immobility and r.dom0_split and r.lacks_feature for r in LATER)
    assert vm.operation_to_string("shutdown", ELY) == "(unknown operation)"
    with pytest.raises(ValueError):
        lerr(ELY, row(), "changing_NVRAM")


def test_ely_control_domain_power_states():
    # line 42: Halted, and Running for a control domain
    dom0 = row("Paused", is_control_domain=True)
    for op in ("changing_VCPUs", "changing_static_range", "changing_memory_limits"):
        assert vm.allowed_power_states(dom0, op, rules=ELY) == ("Halted", "Running")
        assert vm.allowed_power_states(row(), op, rules=ELY) == ("Halted",)
        assert lerr(ELY, dom0, op) == ("VM_BAD_POWER_STATE", [REF, "halted, running", "paused"])
    assert err(dom0, "changing_static_range")[1][1] == "halted"  # Dundee unchanged


def test_ely_immobility_and_nested_virt():
    # lines 360-370: the moves of an immobile VM, strict only
    for op in ("suspend", "checkpoint", "pool_migrate", "migrate_send"):
        assert lerr(ELY, HVM_UP, op, guest_metrics=TOOLS, nomigrate=True) == (
            "VM_IS_IMMOBILE",
            [REF],
        )
        assert lerr(ELY, HVM_UP, op, guest_metrics=TOOLS, nomigrate=True, strict=False) is None
        assert err(HVM_UP, op, guest_metrics=TOOLS, nomigrate=True) is None  # not in Dundee
    # no metrics: the platform keys (lines 281-295)
    nested = row("Running", platform={"nested-virt": "TRUE"})
    assert lerr(ELY, nested, "pool_migrate", guest_metrics=TOOLS) == ("VM_IS_IMMOBILE", [REF])
    assert lerr(ELY, nested, "pool_migrate", guest_metrics=TOOLS, nested_virt=False) is None
    # lines 372-380
    assert lerr(ELY, nested, "changing_dynamic_range") == ("VM_IS_USING_NESTED_VIRT", [REF])
    assert lerr(ELY, nested, "changing_dynamic_range", strict=False) is None
    # after the template rule, before the control domain and the guest features
    tmpl = row("Halted", is_a_template=True, other_config={"default_template": "true"})
    assert lerr(ELY, tmpl, "migrate_send", nomigrate=True)[0] == "VM_IS_TEMPLATE"
    dom0 = row("Running", is_control_domain=True)
    assert lerr(ELY, dom0, "pool_migrate", nomigrate=True) == ("VM_IS_IMMOBILE", [REF])
    assert lerr(ELY, HVM_UP, "suspend", nomigrate=True) == ("VM_IS_IMMOBILE", [REF])


def test_ely_dom0_and_control_domains():
    dom0 = row("Running", is_control_domain=True)
    # lines 388-391: changing_VCPUs / destroy of dom0
    assert lerr(ELY, dom0, "changing_VCPUs", is_domain_zero=True) == (
        "OPERATION_NOT_ALLOWED",
        ["This operation is not allowed on dom0"],
    )
    assert lerr(ELY, dom0, "changing_VCPUs", is_domain_zero=False) is None  # a driver domain
    assert lerr(ELY, row("Halted", is_control_domain=True), "destroy", is_domain_zero=False) is None
    # lines 392-404: what any control domain may not do
    assert lerr(ELY, dom0, "pause") == (
        "OPERATION_NOT_ALLOWED",
        ["This operation is not allowed on a control domain"],
    )
    for op in ("changing_static_range", "changing_memory_limits", "changing_dynamic_range"):
        assert lerr(ELY, dom0, op, is_domain_zero=True) is None
    halted = row("Halted", is_control_domain=True)
    assert lerr(ELY, halted, "start_on", is_domain_zero=False) is None
    assert err(halted, "start_on")[1] == ["Operations on control domain are not allowed"]


def test_ely_guest_features_have_one_code():
    # lines 152-178: Dundee's condition (booted HVM, no drivers), the code VM_LACKS_FEATURE
    for op in ("clean_shutdown", "clean_reboot", "changing_VCPUs_live", "suspend", "migrate_send"):
        assert lerr(ELY, HVM_UP, op) == ("VM_LACKS_FEATURE", [REF])
        assert lerr(ELY, HVM_UP, op, guest_metrics=TOOLS) is None
        assert lerr(ELY, row("Running"), op) is None  # booted PV: HVM_boot_policy empty
    gm = {"PV_drivers_version": {}, "other": {"feature-poweroff": "1"}}
    assert lerr(ELY, HVM_UP, "clean_shutdown", guest_metrics=gm) is None
    assert lerr(ELY, HVM_UP, "clean_reboot", guest_metrics=gm) == ("VM_LACKS_FEATURE", [REF])
    # no has_definitely_booted_pv yet: VM_metrics.current_domain_type is not read
    assert lerr(ELY, HVM_UP, "suspend", current_domain_type="pv") == ("VM_LACKS_FEATURE", [REF])
    assert lerr(vr.STOCKHOLM, HVM_UP, "suspend", current_domain_type="pv") is None


def test_ely_keeps_dundees_later_rules():
    up = row("Running")
    # lines 413-420: quiesce needs feature-quiesce/-snapshot (1.249-lcm refuses it outright)
    quiesce = {"PV_drivers_version": {}, "other": {"feature-quiesce": "1"}}
    assert lerr(ELY, up, "snapshot_with_quiesce", guest_metrics=quiesce) is None
    assert lerr(ELY, up, "snapshot_with_quiesce", guest_metrics=TOOLS) == (
        "VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED",
        [REF],
    )
    # lines 423-428: quiesce counts among the on_boot=reset refusals
    assert lerr(
        ELY, up, "snapshot_with_quiesce", guest_metrics=quiesce, vdis_reset_and_caching=[(True, 0)]
    ) == ("VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION", [])
    # lines 227-250: any PCI, Dundee's vGPU rule (no SR-IOV, suspendable or halted exceptions)
    pci = row("Running", attached_PCIs=["OpaqueRef:p"])
    assert lerr(ELY, pci, "suspend", guest_metrics=TOOLS, sriov_pcis=["OpaqueRef:p"]) == (
        "VM_HAS_PCI_ATTACHED",
        [REF],
    )
    vgpu = row("Running", VGPUs=["OpaqueRef:g"])
    assert lerr(ELY, vgpu, "suspend", guest_metrics=TOOLS, vgpus_suspendable=True) == (
        "VM_HAS_VGPU",
        [REF],
    )
    assert lerr(ELY, row("Halted", VGPUs=["OpaqueRef:g"]), "migrate_send") == (
        "VM_HAS_VGPU",
        [REF],
    )
    # no VUSB, snapshot-schedule or RPU rules; templates read other_config only (184-203)
    assert lerr(ELY, row("Running", VUSBs=["OpaqueRef:u"]), "snapshot") is None
    vmss = row(snapshot_schedule="OpaqueRef:s")
    assert lerr(ELY, vmss, "make_into_template", snapshot_schedule_valid=True) is None
    assert lerr(ELY, up, "snapshot", rpu=True) is None
    tmpl = row("Halted", is_a_template=True, is_default_template=True)
    assert lerr(ELY, tmpl, "destroy") is None


def test_ely_allowed_operations():
    # lines 494-513: Dundee's list folded; the same lists as Dundee but for control domains
    up = row("Running", **HVM)
    assert vm.allowed_operations(REF, up, rules=ELY, guest_metrics=TOOLS) == RUNNING_DUNDEE_ORDER
    for r in (row("Halted"), row("Suspended"), row("Paused"), row("Halted", is_a_template=True)):
        assert vm.allowed_operations(REF, r, rules=ELY) == vm.allowed_operations(REF, r)
    dom0 = row("Running", is_control_domain=True)
    assert vm.allowed_operations(REF, dom0, rules=ELY, is_domain_zero=True) == [
        "changing_dynamic_range",
        "changing_static_range",
    ]
    cut = vm.allowed_operations(REF, up, rules=ELY, guest_metrics=TOOLS, rpu=True)
    assert cut == vm.allowed_operations(REF, up, guest_metrics=TOOLS, rpu=True)
    assert vm.allowed_operations(REF, up, rules=ELY, guest_metrics=TOOLS, nested_virt=True) == [
        "changing_VCPUs_live",
        "hard_reboot",
        "hard_shutdown",
        "clean_reboot",
        "clean_shutdown",
        "pause",
        "snapshot",
    ]


ELY_FACTS = st.fixed_dictionaries(
    {
        "guest_metrics": st.sampled_from([None, TOOLS, {"other": {"feature-suspend": "1"}}]),
        "clone_suspended_vm_enabled": st.booleans(),
        "vdis_reset_and_caching": st.lists(st.tuples(st.booleans(), st.booleans()), max_size=2),
        "nomigrate": st.sampled_from([None, False, True]),
        "nested_virt": st.sampled_from([None, False, True]),
        "is_domain_zero": st.sampled_from([None, False, True]),
    }
)
_NAMED = ("VM_LACKS_FEATURE_SHUTDOWN", "VM_LACKS_FEATURE_SUSPEND", "VM_LACKS_FEATURE_VCPU_HOTPLUG")


@settings(max_examples=300, deadline=None)
@given(r=vm_rows(), facts=ELY_FACTS, rpu=st.booleans(), op=st.sampled_from(vm.OPERATIONS))
def test_ely_is_dundee_but_for_its_three_rules(r, facts, rpu, op):
    """The check and the list are total and consistent, and on a mobile guest that is no
    control domain ely answers as Dundee, but for the one feature code."""
    allowed = vm.allowed_operations(REF, r, rules=ELY, rpu=rpu, **facts)
    for o in ELY.update_ops:
        ok = lerr(ELY, r, o, strict=True, **facts) is None and (not rpu or o in ELY.rpu_ops)
        assert (o in allowed) is ok, o
    e = lerr(ELY, r, op, **facts)
    assert e is None or (isinstance(e[0], str) and all(isinstance(p, str) for p in e[1]))
    assert e is None or e[0] not in _NAMED
    if lerr(ELY, r, op, strict=True, **facts) is None:
        assert lerr(ELY, r, op, strict=False, **facts) is None
    if not r["is_control_domain"]:
        facts.update(nomigrate=False, nested_virt=False)
        d = err(r, op, **facts)
        if d is not None and d[0] in _NAMED:
            d = ("VM_LACKS_FEATURE", d[1])
        assert lerr(ELY, r, op, **facts) == d
