"""VM operation checks (``xapi_sim/checks/vm.py``) against xen-api Dundee
``ocaml/xapi/xapi_vm_lifecycle.ml`` (branch dundee-lcm): the power-state table, the order
of the rules, concurrency, templates/snapshots/dom0, guest features, allowed_operations."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xapi_sim.checks import vm
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
