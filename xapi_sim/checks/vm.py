"""VM operation checks: xen-api Dundee ``ocaml/xapi/xapi_vm_lifecycle.ml`` (pure).

:func:`check_operation_error` is ``Xapi_vm_lifecycle.check_operation_error``: the first
error, in xapi's fixed order, of

1. ``blocked_operations`` -> ``OPERATION_BLOCKED [vm, reason]``
2. the power state (:data:`ALLOWED_POWER_STATES`, ``allowed_power_states``) ->
   ``VM_BAD_POWER_STATE [vm, expected, actual]`` (``expected`` the allowed states joined by
   ", " in the table's order, lower case)
3. operations in progress (:func:`is_allowed_concurrently`) ->
   ``OTHER_OPERATION_IN_PROGRESS ["VM.<op>", vm]`` (``"VM.{a,b}"`` for several)
4. templates (``check_template``) -> ``VM_IS_TEMPLATE [vm, op]``
5. snapshots (``check_snapshot``) -> ``VM_IS_SNAPSHOT [vm, op]``
6. ``provision`` of a non-template -> ``PROVISION_ONLY_ALLOWED_ON_TEMPLATE []``
7. ``revert`` of a non-snapshot -> ``REVERT_ONLY_ALLOWED_ON_SNAPSHOT []``
8. the control domain -> ``OPERATION_NOT_ALLOWED ["Operations on control domain are not
   allowed"]`` (6.5's source: "Operations on domain 0 are not allowed")
9. guest features of a running HVM guest without PV drivers (``check_op_for_feature``) ->
   ``VM_LACKS_FEATURE_SHUTDOWN`` / ``_VCPU_HOTPLUG`` / ``_SUSPEND [vm]``
10. ``snapshot_with_quiesce`` without ``feature-quiesce``/``feature-snapshot`` ->
    ``VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED [vm]``
11. VDIs with ``on_boot=reset`` (and caching) -> ``VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION``
12. passed-through PCI devices -> ``VM_HAS_PCI_ATTACHED [vm]``
13. vGPUs -> ``VM_HAS_VGPU [vm]``
14. appliance membership -> ``VM_IS_PART_OF_AN_APPLIANCE [vm, appliance]``
15. protection policy -> ``VM_ASSIGNED_TO_PROTECTION_POLICY [vm, policy]``
16. ``query_services`` on a non-system domain -> ``NOT_SYSTEM_DOMAIN [vm]``

:func:`allowed_operations` is ``update_allowed_operations``: the same check (``strict``)
for each operation of :data:`UPDATE_ORDER`, kept in xapi's order (it folds the list
prepending, so the result is reversed), then intersected with the "Miami" list
(``Xapi_globs.vm_operations_miami``) while a rolling upgrade is in progress. In Dundee that
intersection is the only rolling-upgrade rule: calls are not refused for being off the list
(enforcement, ``rpu_allowed_vm_operations``, came in 2017).

Not in Dundee (later xen-api): ``VM_HVM_REQUIRED``, ``check_drivers``/
``VM_MISSING_PV_DRIVERS`` in this function, the RPU refusal, the 4-parameter
``OTHER_OPERATION_IN_PROGRESS``.

Later releases: every function takes the release's ``rules`` (:mod:`.vm_releases`, the one
release table; Dundee's by default, which cream and dundee worlds use). Ely's source,
xen-api 1.14-lcm, is this check with three additions its rules switch on:
``VM_IS_IMMOBILE``/``VM_IS_USING_NESTED_VIRT`` after step 7 (``rules.immobility``), the
dom0 / control-domain split of 1.249-lcm in place of step 8, with a control domain's
``changing_VCPUs``/``changing_static_range``/``changing_memory_limits`` allowed Running
(``rules.dom0_split``), and step 9 answering ``VM_LACKS_FEATURE`` (``rules.lacks_feature``).
For xen-api
1.249-lcm (stockholm), v23.30.0 (nile) and v24.19.2 (xcp-ng-8.3) the check is
:func:`later_check_operation_error` (their ``xapi_vm_lifecycle.ml``): the enum, power
states, concurrency, template list, strings, ``update_allowed_operations`` list and RPU list
of that source, and its rules (immobility, nested virt, dom0, ``VM_LACKS_FEATURE``, SR-IOV
and NVIDIA vGPUs, VUSBs, snapshot schedules, the RPU refusal, VTPMs). None of these sources
has ``VM_HVM_REQUIRED``, ``VM_MISSING_PV_DRIVERS`` or ``VM_HAS_SRIOV_VIF`` in this check, and
all keep the 2-parameter ``OTHER_OPERATION_IN_PROGRESS``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..datamodel import NULL_REF
from .operations import (
    OTHER_OPERATION_IN_PROGRESS,
    OpError,
    Row,
    intersect,
    ocaml_int_of_string,
    power_to_string,
)
from .vm_releases import DUNDEE, VmRules
from .vm_releases import rules_for as rules_for  # the release table's lookup

# The vm_operations enum as Dundee's ocaml/idl/datamodel.ml declares it (its order).
OPERATIONS = DUNDEE.operations

POWER_STATES = ("Halted", "Paused", "Suspended", "Running")  # all_power_states, in order

H, P, S, R = "Halted", "Paused", "Suspended", "Running"

# allowed_power_states: the power states each operation may start in (order as in xapi,
# which is the order of VM_BAD_POWER_STATE's "expected"). clone/copy: see _power_states.
ALLOWED_POWER_STATES: dict[str, tuple[str, ...]] = {
    "import": (),
    **{
        op: (H,)
        for op in (
            "changing_memory_limits",
            "changing_shadow_memory",
            "changing_static_range",
            "changing_VCPUs",
            "make_into_template",
            "provision",
            "start",
            "start_on",
        )
    },
    "unpause": (P,),
    **{op: (S,) for op in ("csvm", "resume", "resume_on")},
    **{
        op: (R,)
        for op in (
            "awaiting_memory_live",
            "call_plugin",
            "clean_reboot",
            "clean_shutdown",
            "changing_memory_live",
            "changing_shadow_memory_live",
            "changing_VCPUs_live",
            "data_source_op",
            "pause",
            "pool_migrate",
            "send_sysrq",
            "send_trigger",
            "snapshot_with_quiesce",
            "suspend",
        )
    },
    "changing_dynamic_range": (H, R),
    "clone": (H,),
    "copy": (H,),  # + Suspended, see _power_states
    **{op: (H, S) for op in ("create_template", "destroy", "export")},
    "hard_reboot": (P, R),
    **{op: (P, S, R) for op in ("checkpoint", "get_boot_record", "shutdown", "hard_shutdown")},
    "migrate_send": (H, S, R),
    **{
        op: POWER_STATES
        for op in (
            "assert_operation_valid",
            "metadata_export",
            "power_state_reset",
            "revert",
            "reverting",
            "snapshot",
            "update_allowed_operations",
            "query_services",
        )
    },
}

# Record_util.vm_operation_table (Dundee): operations missing from it print as
# "(unknown operation)"; two have odd spellings.
_OP_STRINGS = {
    "assert_operation_valid": "assertoperationvalid",
    "data_source_op": "data_sources_op",
}
_NOT_IN_TABLE = {
    "create_template",
    "query_services",
    "shutdown",
    "changing_memory_limits",
    "changing_VCPUs",
}


def operation_to_string(op: str, rules: VmRules = DUNDEE) -> str:
    """``Record_util.vm_operation_to_string`` (the source's table)."""
    if op in (_NOT_IN_TABLE if not rules.later else rules.unknown_strings):
        return "(unknown operation)"
    return _OP_STRINGS.get(op, op)


# check_template: what a template allows besides destroy/migrate_send of non-default ones
TEMPLATE_OPERATIONS = (
    "changing_dynamic_range",
    "changing_static_range",
    "changing_memory_limits",
    "changing_shadow_memory",
    "changing_VCPUs",
    "clone",
    "copy",
    "export",
    "metadata_export",
    "provision",
)
# check_snapshot
SNAPSHOT_OPERATIONS = (
    "revert",
    "clone",
    "copy",
    "export",
    "destroy",
    "hard_shutdown",
    "metadata_export",
)
# what the control domain may do
CONTROL_DOMAIN_OPERATIONS = (
    "data_source_op",
    "changing_memory_live",
    "awaiting_memory_live",
    "metadata_export",
    "changing_dynamic_range",
    "start",
)

# update_allowed_operations' list; Xapi_globs.vm_operations_miami
UPDATE_ORDER = DUNDEE.update_ops
MIAMI = DUNDEE.rpu_ops

DEFAULT_TEMPLATE_KEY = "default_template"  # Xapi_globs.default_template_key


def bool_of_assoc(key: str, mapping: Mapping[str, str]) -> bool:
    """``Xapi_vm_lifecycle.bool_of_assoc``: "1" or any case of "true"."""
    v = mapping.get(key)
    return v is not None and (v == "1" or v.lower() == "true")


# 1.249-lcm allowed_power_states (lines 38-46; 1.14-lcm line 42): these three add Running
# for a control domain; changing_NVRAM (and v23.30.0's create_vtpm, line 99) start Halted
_LATER_DOM0_RUNNING = ("changing_VCPUs", "changing_static_range", "changing_memory_limits")
_LATER_HALTED = ("changing_NVRAM", "create_vtpm")


def _power_states(
    row: Row, op: str, clone_suspended_vm_enabled: bool, rules: VmRules = DUNDEE
) -> tuple[str, ...]:
    if op in ("clone", "copy"):
        if row["is_a_snapshot"] or clone_suspended_vm_enabled:
            return (H, S)
        return (H,)
    if rules.dom0_split and op in _LATER_DOM0_RUNNING and row.get("is_control_domain"):
        return (H, R)
    if rules.later and op in _LATER_HALTED:
        return (H,)
    return ALLOWED_POWER_STATES[op]


def _known(op: str, rules: VmRules) -> None:
    if op not in rules.operations:
        raise ValueError(f"not a vm_operations value of xen-api {rules.source}: {op!r}")


def allowed_power_states(
    row: Row,
    op: str,
    clone_suspended_vm_enabled: bool = False,
    rules: VmRules = DUNDEE,
) -> tuple[str, ...]:
    """``allowed_power_states``: the states ``op`` may start in."""
    _known(op, rules)
    return _power_states(row, op, clone_suspended_vm_enabled, rules)


def expected_states(
    row: Row, op: str, clone_suspended_vm_enabled: bool = False, rules: VmRules = DUNDEE
) -> str:
    """VM_BAD_POWER_STATE's ``expected``: the allowed states, lower case, ", "-joined."""
    return ", ".join(
        power_to_string(s) for s in allowed_power_states(row, op, clone_suspended_vm_enabled, rules)
    )


_LONG_COPIES = ("clone", "copy", "export")
_BOOT_RECORD = ("get_boot_record",)
_SNAPSHOT = ("snapshot", "checkpoint")
# (current operations, new operation) pairs that may run together
_STATE_MACHINE = (
    (("snapshot_with_quiesce",), "snapshot"),
    (("migrate_send",), "metadata_export"),
    (("migrate_send",), "clean_shutdown"),
    (("migrate_send",), "clean_reboot"),
    (("migrate_send",), "start"),
    (("migrate_send",), "start_on"),
)


def is_allowed_concurrently(op: str, current: Iterable[str], rules: VmRules = DUNDEE) -> bool:
    """``is_allowed_concurrently``: may ``op`` start while ``current`` (the operations in
    progress, in ``current_operations`` order) run? The power state is not considered.
    From v1.268.0 (CA-322708) ``start``/``start_on`` no longer run during ``migrate_send``."""
    running = list(current)
    machines = _STATE_MACHINE if rules.start_during_migrate_send else _STATE_MACHINE[:4]

    def group(ops: Sequence[str]) -> bool:
        return op in ops and all(o in ops for o in running)

    if op == "hard_shutdown":
        machine = op not in running
    elif op == "hard_reboot":
        machine = not any(o in ("hard_shutdown", "hard_reboot") for o in running)
    else:
        machine = any(
            tuple(running) == state and op == transition for state, transition in machines
        )
    return group(_LONG_COPIES) or group(_SNAPSHOT) or group(_BOOT_RECORD) or machine


def concurrent_operations_error(
    vm_ref: str, current_ops: Iterable[tuple[str, str]], rules: VmRules = DUNDEE
) -> OpError:
    """``report_concurrent_operations_error``: ``["VM." ^ op, vm]``, several as
    ``"VM.{a,b}"`` (two parameters in every source mirrored, v24.19.2 included)."""
    ops = [operation_to_string(op, rules) for _, op in current_ops]
    text = ops[0] if len(ops) == 1 else "{" + ",".join(ops) + "}"
    return (OTHER_OPERATION_IN_PROGRESS, ["VM." + text, vm_ref])


# -- guest features (Xapi_pv_driver_version, check_op_for_feature) --------------------------


def has_pv_drivers(guest_metrics: Row | None) -> bool:
    """``has_pv_drivers (of_guest_metrics gm)``: the guest agent reported a drivers
    version with integer ``major`` and ``minor`` (and integer ``micro``/``build`` if
    present). No guest metrics means no drivers."""
    if guest_metrics is None:
        return False
    dv = guest_metrics.get("PV_drivers_version") or {}
    try:
        for key in ("major", "minor"):
            ocaml_int_of_string(dv[key])
        for key in ("micro", "build"):
            if key in dv:
                ocaml_int_of_string(dv[key])
    except (KeyError, ValueError):
        return False
    return True


def has_feature(guest_metrics: Row | None, feature: str) -> bool:
    """``has_feature``: ``other`` maps ``feature`` to "1"."""
    return guest_metrics is not None and (guest_metrics.get("other") or {}).get(feature) == "1"


def booted_hvm(row: Row) -> bool:
    """``Helpers.has_booted_hvm_of_record`` as far as the row tells: not the control
    domain, and the boot record's ``HVM_boot_policy`` non-empty. xapi falls back to the
    current record when ``last_booted_record`` does not parse (it is empty here)."""
    return not row["is_control_domain"] and row["HVM_boot_policy"] != ""


def check_op_for_feature(
    vm_ref: str,
    row: Row,
    guest_metrics: Row | None,
    op: str,
    strict: bool,
    hvm: bool,
    rules: VmRules = DUNDEE,
) -> OpError | None:
    """``check_op_for_feature``: Dundee's codes name the feature; 1.14-lcm's (lines
    165-178, ``rules.lacks_feature``) are all ``VM_LACKS_FEATURE``."""
    err = _op_for_feature(vm_ref, row, guest_metrics, op, strict, hvm)
    if err and rules.lacks_feature:
        return ("VM_LACKS_FEATURE", err[1])
    return err


def _op_for_feature(
    vm_ref: str, row: Row, guest_metrics: Row | None, op: str, strict: bool, hvm: bool
) -> OpError | None:
    if row["power_state"] != R or not hvm or has_pv_drivers(guest_metrics):
        return None

    def lacks(feature: str) -> bool:
        return not has_feature(guest_metrics, feature)

    if (
        op == "clean_shutdown"
        and strict
        and lacks("feature-shutdown")
        and lacks("feature-poweroff")
    ):
        return ("VM_LACKS_FEATURE_SHUTDOWN", [vm_ref])
    if op == "clean_reboot" and strict and lacks("feature-shutdown") and lacks("feature-reboot"):
        return ("VM_LACKS_FEATURE_SHUTDOWN", [vm_ref])
    if op == "changing_VCPUs_live" and lacks("feature-vcpu-hotplug"):
        return ("VM_LACKS_FEATURE_VCPU_HOTPLUG", [vm_ref])
    if (
        op in ("suspend", "checkpoint", "pool_migrate", "migrate_send")
        and strict
        and lacks("feature-suspend")
    ):
        return ("VM_LACKS_FEATURE_SUSPEND", [vm_ref])
    return None


# -- the check --------------------------------------------------------------------------


def check_operation_error(
    vm_ref: str,
    row: Row,
    op: str,
    *,
    guest_metrics: Row | None = None,
    strict: bool = True,
    clone_suspended_vm_enabled: bool = False,
    vdis_reset_and_caching: Iterable[tuple[bool, bool]] = (),
    hvm: bool | None = None,
    appliance_valid: bool | None = None,
    protection_policy_valid: bool | None = None,
    all_vgpus_nvidia: bool = False,
    allow_nvidia_vgpu_migration: bool = False,
    rules: VmRules = DUNDEE,
    nomigrate: bool | None = None,
    nested_virt: bool | None = None,
    is_domain_zero: bool | None = None,
    **later: Any,
) -> OpError | None:
    """``Xapi_vm_lifecycle.check_operation_error``: None, or the first ``(code, params)``.

    ``row`` is the VM's row. The facts from other objects:

    * ``guest_metrics`` -- the VM_guest_metrics row (None if ``guest_metrics`` is not a
      valid ref);
    * ``clone_suspended_vm_enabled`` -- pool ``other_config:allow_clone_suspended_vm`` is
      "true" (``Helpers.clone_suspended_vm_enabled``);
    * ``vdis_reset_and_caching`` -- for each VBD with a VDI: (``on_boot`` is reset,
      ``sm_config:caching`` true);
    * ``hvm`` -- the VM booted HVM (default :func:`booted_hvm`);
    * ``appliance_valid``/``protection_policy_valid`` -- those refs name live objects
      (default: not NULL);
    * ``all_vgpus_nvidia``/``allow_nvidia_vgpu_migration`` -- for ``check_vgpu``;
    * ``nomigrate``/``nested_virt``/``is_domain_zero`` -- for ``rules.immobility`` and
      ``rules.dom0_split`` (1.14-lcm), as :func:`later_check_operation_error` takes them;
    * ``rules`` -- the release's (:mod:`.vm_releases`); for a later source the check is
      :func:`later_check_operation_error`, which takes the ``later`` facts.
    """
    if rules.later:
        return later_check_operation_error(
            vm_ref,
            row,
            op,
            rules,
            guest_metrics=guest_metrics,
            strict=strict,
            clone_suspended_vm_enabled=clone_suspended_vm_enabled,
            vdis_reset_and_caching=vdis_reset_and_caching,
            appliance_valid=appliance_valid,
            protection_policy_valid=protection_policy_valid,
            nomigrate=nomigrate,
            nested_virt=nested_virt,
            is_domain_zero=is_domain_zero,
            **later,
        )
    if op not in ALLOWED_POWER_STATES:
        raise ValueError(f"not a Dundee vm_operations value: {op!r}")
    power = row["power_state"]
    current = list(row["current_operations"].items())
    is_template = row["is_a_template"]
    is_snapshot = row["is_a_snapshot"]

    blocked = row.get("blocked_operations") or {}
    if op in blocked:
        return ("OPERATION_BLOCKED", [vm_ref, blocked[op]])
    if power not in _power_states(row, op, clone_suspended_vm_enabled, rules):
        return (
            "VM_BAD_POWER_STATE",
            [
                vm_ref,
                expected_states(row, op, clone_suspended_vm_enabled, rules),
                power_to_string(power),
            ],
        )
    if current and not is_allowed_concurrently(op, [o for _, o in current]):
        return concurrent_operations_error(vm_ref, current)
    if is_template and not is_snapshot:
        default = bool_of_assoc(DEFAULT_TEMPLATE_KEY, row.get("other_config") or {})
        if not (op in TEMPLATE_OPERATIONS or (op in ("destroy", "migrate_send") and not default)):
            return ("VM_IS_TEMPLATE", [vm_ref, operation_to_string(op)])
    if is_snapshot and op not in SNAPSHOT_OPERATIONS:
        return ("VM_IS_SNAPSHOT", [vm_ref, operation_to_string(op)])
    if op == "provision" and not is_template:
        return ("PROVISION_ONLY_ALLOWED_ON_TEMPLATE", [])
    if op == "revert" and not is_snapshot:
        return ("REVERT_ONLY_ALLOWED_ON_SNAPSHOT", [])
    if rules.immobility:  # 1.14-lcm lines 360-380
        err = immobility_error(vm_ref, row, op, strict, nomigrate, nested_virt)
        if err:
            return err
    if rules.dom0_split:  # 1.14-lcm lines 386-405
        err = control_domain_error(row, op, is_domain_zero)
        if err:
            return err
    elif row["is_control_domain"] and op not in CONTROL_DOMAIN_OPERATIONS:
        return ("OPERATION_NOT_ALLOWED", [rules.control_domain_message])
    err = check_op_for_feature(
        vm_ref, row, guest_metrics, op, strict, booted_hvm(row) if hvm is None else hvm, rules
    )
    if err:
        return err
    if op == "snapshot_with_quiesce":
        other = (guest_metrics or {}).get("other") or {}
        if guest_metrics is None or not ("feature-quiesce" in other or "feature-snapshot" in other):
            return ("VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED", [vm_ref])
    resets = list(vdis_reset_and_caching)
    if op in ("checkpoint", "snapshot", "suspend", "snapshot_with_quiesce"):
        if any(reset for reset, _ in resets):
            return ("VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION", [])
    elif op == "pool_migrate":
        if any(reset and caching for reset, caching in resets):
            return ("VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION", [])
    if row.get("attached_PCIs") and op in ("suspend", "checkpoint", "pool_migrate", "migrate_send"):
        return ("VM_HAS_PCI_ATTACHED", [vm_ref])
    if row.get("VGPUs"):
        if op in ("suspend", "pool_migrate"):
            if not (all_vgpus_nvidia and allow_nvidia_vgpu_migration):
                return ("VM_HAS_VGPU", [vm_ref])
        elif op in ("checkpoint", "migrate_send"):
            return ("VM_HAS_VGPU", [vm_ref])
    appliance = row.get("appliance", NULL_REF)
    if (
        appliance != NULL_REF if appliance_valid is None else appliance_valid
    ) and op == "make_into_template":
        return ("VM_IS_PART_OF_AN_APPLIANCE", [vm_ref, appliance])
    policy = row.get("protection_policy", NULL_REF)
    if (
        policy != NULL_REF if protection_policy_valid is None else protection_policy_valid
    ) and op == "make_into_template":
        return ("VM_ASSIGNED_TO_PROTECTION_POLICY", [vm_ref, policy])
    if op == "query_services" and not bool_of_assoc(
        "is_system_domain", row.get("other_config") or {}
    ):
        return ("NOT_SYSTEM_DOMAIN", [vm_ref])
    return None


def allowed_operations(
    vm_ref: str, row: Row, *, rpu: bool = False, rules: VmRules = DUNDEE, **facts: Any
) -> list[str]:
    """``update_allowed_operations``: the operations of the release's list
    (:data:`UPDATE_ORDER` in Dundee) whose strict check passes, in xapi's (reversed)
    order; cut to :data:`MIAMI` (later: ``rpu_allowed_vm_operations``) during a rolling
    upgrade. ``facts`` as for :func:`check_operation_error` (``strict`` is forced; a later
    source's check also refuses off-list operations during the upgrade itself)."""
    facts = dict(facts, strict=True, rules=rules)
    if rules.later:
        facts["rpu"] = rpu
    ok = [op for op in rules.update_ops if check_operation_error(vm_ref, row, op, **facts) is None]
    ok.reverse()
    if rpu:
        ok = intersect(ok, rules.rpu_ops)
    return ok


# -- the check of the later sources (1.249-lcm, v23.30.0, v24.19.2) ---------------------------

# 1.249-lcm check_template (lines 220-233): Dundee's list and changing_NVRAM
LATER_TEMPLATE_OPERATIONS = (*TEMPLATE_OPERATIONS[:5], "changing_NVRAM", *TEMPLATE_OPERATIONS[5:])
# what a control domain that is not dom0 may do (lines 556-567)
LATER_CONTROL_DOMAIN_OPERATIONS = (
    "data_source_op",
    "changing_memory_live",
    "awaiting_memory_live",
    "metadata_export",
    "changing_dynamic_range",
    "changing_memory_limits",
    "changing_static_range",
    "start",
    "start_on",
    "changing_VCPUs",
    "destroy",
)
DOM0_ONLY_MESSAGE = "This operation is not allowed on dom0"
CONTROL_DOMAIN_MESSAGE = "This operation is not allowed on a control domain"
_MOVES = ("suspend", "checkpoint", "pool_migrate", "migrate_send")


def platform_is_true(platform: Mapping[str, str], key: str) -> bool:
    """``Vm_platform.is_true ~default:false``: "true"/"1" in any case."""
    return (platform.get(key) or "").lower() in ("true", "1")


def definitely_booted_pv(current_domain_type: str | None, rules: VmRules) -> bool:
    """``has_definitely_booted_pv``: VM_metrics.current_domain_type is pv or pv_in_pvh
    (and pvh from v23.9.0); no metrics, hvm or unspecified is not."""
    pv = ("pv", "pv_in_pvh", "pvh") if rules.pvh_is_pv else ("pv", "pv_in_pvh")
    return current_domain_type in pv


def immobility_error(
    vm_ref: str,
    row: Row,
    op: str,
    strict: bool,
    nomigrate: bool | None,
    nested_virt: bool | None,
) -> OpError | None:
    """``is_mobile`` and ``nested_virt`` (1.14-lcm lines 266-301, 360-380; 1.249-lcm the
    same): ``VM_IS_IMMOBILE`` for the moves, ``VM_IS_USING_NESTED_VIRT`` for
    ``changing_dynamic_range``, strict only. None: the ``platform`` keys (xapi's fallback
    without metrics)."""
    platform = row.get("platform") or {}
    nomigrate = platform_is_true(platform, "nomigrate") if nomigrate is None else nomigrate
    nested = platform_is_true(platform, "nested-virt") if nested_virt is None else nested_virt
    if op in _MOVES and strict and (nomigrate or nested):
        return ("VM_IS_IMMOBILE", [vm_ref])
    if op == "changing_dynamic_range" and nested and strict:
        return ("VM_IS_USING_NESTED_VIRT", [vm_ref])
    return None


def control_domain_error(row: Row, op: str, is_domain_zero: bool | None) -> OpError | None:
    """The dom0 / control-domain split (1.14-lcm lines 386-405; 1.249-lcm the same):
    ``changing_VCPUs``/``destroy`` of dom0 (``Helpers.is_domain_zero``; None:
    ``is_control_domain``), then what a control domain may not do."""
    dom0 = row["is_control_domain"] if is_domain_zero is None else is_domain_zero
    if op in ("changing_VCPUs", "destroy") and dom0:
        return ("OPERATION_NOT_ALLOWED", [DOM0_ONLY_MESSAGE])
    if row["is_control_domain"] and op not in LATER_CONTROL_DOMAIN_OPERATIONS:
        return ("OPERATION_NOT_ALLOWED", [CONTROL_DOMAIN_MESSAGE])
    return None


def later_op_for_feature(
    vm_ref: str,
    row: Row,
    guest_metrics: Row | None,
    op: str,
    strict: bool,
    current_domain_type: str | None,
    rules: VmRules,
) -> OpError | None:
    """1.249-lcm ``check_op_for_feature`` (lines 177-207): a running VM not known to have
    booted PV and without PV drivers lacks a feature -> ``VM_LACKS_FEATURE [vm]``."""
    if (
        row["power_state"] != R
        or definitely_booted_pv(current_domain_type, rules)
        or has_pv_drivers(guest_metrics)
    ):
        return None

    def lacks(feature: str) -> bool:
        return not has_feature(guest_metrics, feature)

    lacking = (
        (
            op == "clean_shutdown"
            and strict
            and lacks("feature-shutdown")
            and lacks("feature-poweroff")
        )
        or (
            op == "clean_reboot"
            and strict
            and lacks("feature-shutdown")
            and lacks("feature-reboot")
        )
        or (op == "changing_VCPUs_live" and lacks("feature-vcpu-hotplug"))
        or (op in _MOVES and strict and lacks("feature-suspend"))
    )
    return ("VM_LACKS_FEATURE", [vm_ref]) if lacking else None


def later_check_vgpu(
    vm_ref: str, op: str, power: str, vgpus_migratable: bool, vgpus_suspendable: bool
) -> OpError | None:
    """1.249-lcm ``check_vgpu`` (lines 286-332): ``vgpus_suspendable`` -- every vGPU is
    NVIDIA (or NVIDIA SR-IOV) on a pGPU whose compatibility metadata has the "nvidia" key;
    ``vgpus_migratable`` -- every vGPU's host is newer than Inverness (best effort true)."""
    if op == "migrate_send" and power == H:
        return None
    if op in ("pool_migrate", "migrate_send") and vgpus_migratable and vgpus_suspendable:
        return None
    if op == "checkpoint" and power == S:
        return None
    if op in ("suspend", "checkpoint") and vgpus_suspendable:
        return None
    if op in _MOVES:
        return ("VM_HAS_VGPU", [vm_ref])
    return None


def later_check_operation_error(
    vm_ref: str,
    row: Row,
    op: str,
    rules: VmRules,
    *,
    guest_metrics: Row | None = None,
    strict: bool = True,
    clone_suspended_vm_enabled: bool = False,
    vdis_reset_and_caching: Iterable[tuple[bool, bool]] = (),
    appliance_valid: bool | None = None,
    protection_policy_valid: bool | None = None,
    snapshot_schedule_valid: bool | None = None,
    nomigrate: bool | None = None,
    nested_virt: bool | None = None,
    current_domain_type: str | None = None,
    is_domain_zero: bool | None = None,
    sriov_pcis: Iterable[str] = (),
    vgpus_migratable: bool = True,
    vgpus_suspendable: bool = False,
    rpu: bool = False,
    **_dundee_only: Any,
) -> OpError | None:
    """``check_operation_error`` of 1.249-lcm (``xapi_vm_lifecycle.ml`` lines 431-721),
    v23.30.0 (the same, then ``VTPM_MAX_AMOUNT_REACHED``, lines 721-731) and v24.19.2
    (as v23.30.0). Facts beyond the row:

    * ``nomigrate``/``nested_virt`` -- ``VM_metrics.nomigrate``/``nested_virt`` (what
      xenopsd saw at start); None: the ``platform`` keys, xapi's fallback without metrics;
    * ``current_domain_type`` -- ``VM_metrics.current_domain_type`` (None: no metrics);
    * ``is_domain_zero`` -- ``Helpers.is_domain_zero`` (a control domain that is its
      resident host's ``control_domain``; None: ``is_control_domain``);
    * ``sriov_pcis`` -- the PCIs of the VM's NVIDIA SR-IOV vGPUs (``nvidia_sriov_pcis``);
    * ``vgpus_migratable``/``vgpus_suspendable`` -- :func:`later_check_vgpu`;
    * ``snapshot_schedule_valid`` -- ``snapshot_schedule`` names a VMSS (None: not NULL);
    * ``rpu`` -- a rolling pool upgrade is in progress.
    """
    _known(op, rules)
    power = row["power_state"]
    current = list(row["current_operations"].items())
    is_template = row["is_a_template"]
    is_snapshot = row["is_a_snapshot"]

    blocked = row.get("blocked_operations") or {}
    if op in blocked:
        return ("OPERATION_BLOCKED", [vm_ref, blocked[op]])
    states = _power_states(row, op, clone_suspended_vm_enabled, rules)
    if power not in states:
        expected = ", ".join(power_to_string(s) for s in states)
        return ("VM_BAD_POWER_STATE", [vm_ref, expected, power_to_string(power)])
    if current and not is_allowed_concurrently(op, [o for _, o in current], rules):
        return concurrent_operations_error(vm_ref, current, rules)
    if is_template and not is_snapshot:
        default = row.get("is_default_template", False) or bool_of_assoc(
            DEFAULT_TEMPLATE_KEY, row.get("other_config") or {}
        )
        if not (
            op in LATER_TEMPLATE_OPERATIONS or (op in ("destroy", "migrate_send") and not default)
        ):
            return ("VM_IS_TEMPLATE", [vm_ref, operation_to_string(op, rules)])
    if is_snapshot and op not in SNAPSHOT_OPERATIONS:
        return ("VM_IS_SNAPSHOT", [vm_ref, operation_to_string(op, rules)])
    if op == "provision" and not is_template:
        return ("PROVISION_ONLY_ALLOWED_ON_TEMPLATE", [])
    if op == "revert" and not is_snapshot:
        return ("REVERT_ONLY_ALLOWED_ON_SNAPSHOT", [])
    err = immobility_error(vm_ref, row, op, strict, nomigrate, nested_virt)
    err = err or control_domain_error(row, op, is_domain_zero)
    if err:
        return err
    err = later_op_for_feature(vm_ref, row, guest_metrics, op, strict, current_domain_type, rules)
    if err:
        return err
    if op == "snapshot_with_quiesce":  # "VSS support has been removed"
        return ("VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED", [vm_ref])
    resets = list(vdis_reset_and_caching)
    if op in ("checkpoint", "snapshot", "suspend"):
        if any(reset for reset, _ in resets):
            return ("VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION", [])
    elif op == "pool_migrate":
        if any(reset and caching for reset, caching in resets):
            return ("VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION", [])
    sriov = set(sriov_pcis)
    if op in _MOVES and any(p not in sriov for p in row.get("attached_PCIs") or ()):
        return ("VM_HAS_PCI_ATTACHED", [vm_ref])
    if row.get("VGPUs"):
        err = later_check_vgpu(vm_ref, op, power, vgpus_migratable, vgpus_suspendable)
        if err:
            return err
    if row.get("VUSBs") and op in ("suspend", "snapshot", "checkpoint", *_MOVES[2:]):
        return ("VM_HAS_VUSBS", [vm_ref])
    if op == "make_into_template":
        for field, valid, code in (
            ("appliance", appliance_valid, "VM_IS_PART_OF_AN_APPLIANCE"),
            ("protection_policy", protection_policy_valid, "VM_ASSIGNED_TO_PROTECTION_POLICY"),
            ("snapshot_schedule", snapshot_schedule_valid, "VM_ASSIGNED_TO_SNAPSHOT_SCHEDULE"),
        ):
            ref = row.get(field, NULL_REF)
            if ref != NULL_REF if valid is None else valid:
                return (code, [vm_ref, ref])
    if op == "query_services" and not bool_of_assoc(
        "is_system_domain", row.get("other_config") or {}
    ):
        return ("NOT_SYSTEM_DOMAIN", [vm_ref])
    if rpu and op not in rules.rpu_ops:
        return ("NOT_SUPPORTED_DURING_UPGRADE", [])
    if rules.vtpm and op == "create_vtpm" and row.get("VTPMs"):
        return ("VTPM_MAX_AMOUNT_REACHED", [str(len(row["VTPMs"]))])
    return None
