"""SR, VDI and VBD operation checks: xen-api Dundee ``xapi_sr_operations.ml``,
``xapi_vdi.ml``, ``xapi_vbd_helpers.ml`` (pure).

The rows are the store's; ``reserved`` (a VBD field internal to xapi, not in the API) may be
given as an extra key of a VBD dict. SM capabilities are the names of ``SM.features`` keys
(``"VDI_CREATE"``, ``"VDI_DELETE"``...) of the SR type's SM record; names unknown to
Dundee's ``Smint.string_to_capability_table`` are ignored as xapi ignores them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import vm as vm_checks
from .operations import (
    OTHER_OPERATION_IN_PROGRESS,
    SR_OPERATION_STRINGS,
    VBD_OPERATION_STRINGS,
    VDI_OPERATION_STRINGS,
    ErrorTable,
    OpError,
    Row,
    Table,
    allowed_in,
    power_to_string,
    set_difference,
    setify,
    table_error,
)

# Smint.string_to_capability_table (Dundee)
CAPABILITIES = (
    "SR_PROBE",
    "SR_UPDATE",
    "SR_SUPPORTS_LOCAL_CACHING",
    "SR_METADATA",
    "SR_TRIM",
    "VDI_CREATE",
    "VDI_DELETE",
    "VDI_ATTACH",
    "VDI_DETACH",
    "VDI_RESIZE",
    "VDI_RESIZE_ONLINE",
    "VDI_CLONE",
    "VDI_SNAPSHOT",
    "VDI_ACTIVATE",
    "VDI_DEACTIVATE",
    "VDI_UPDATE",
    "VDI_INTRODUCE",
    "VDI_GENERATE_CONFIG",
    "VDI_ATTACH_OFFLINE",
    "VDI_RESET_ON_BOOT",
    "SR_STATS",
    # Smint (Ely on): Vdi_configure_cbt
    "VDI_CONFIG_CBT",
)


def sm_features(features: Iterable[str]) -> set[str]:
    """``features_of_sr_internal``: the known capability names among ``features`` (an
    ``SM.features`` map or any iterable of names)."""
    return {f for f in features if f in CAPABILITIES}


# -- SR ---------------------------------------------------------------------------------------

# storage_operations in Dundee's datamodel.ml (enum order)
SR_OPERATIONS = (
    "scan",
    "destroy",
    "forget",
    "plug",
    "unplug",
    "update",
    "vdi_create",
    "vdi_introduce",
    "vdi_destroy",
    "vdi_resize",
    "vdi_clone",
    "vdi_snapshot",
    "pbd_create",
    "pbd_destroy",
)
# Xapi_sr_operations.all_ops (table order)
SR_ALL_OPERATIONS = (
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
    "vdi_introduce",
    "update",
    "pbd_create",
    "pbd_destroy",
)
# sm_cap_table: operations the backend must support (vdi_clone is faked by xapi)
SR_CAPABILITY = {
    "vdi_create": "VDI_CREATE",
    "vdi_destroy": "VDI_DELETE",
    "vdi_resize": "VDI_RESIZE",
    "vdi_introduce": "VDI_INTRODUCE",
    "update": "SR_UPDATE",
    "vdi_snapshot": "VDI_SNAPSHOT",
}
SR_SAFE_TO_PARALLELISE: tuple[str, ...] = ()
# the CBT operations of later releases' storage_operations (xen-api 1.249-lcm
# xapi_sr_operations.ml all_ops, after vdi_snapshot/vdi_mirror): SM capability
# VDI_CONFIG_CBT (sm_cap_table), refused during a rolling upgrade (disallowed_during_rpu)
SR_CBT_OPERATIONS = (
    "vdi_enable_cbt",
    "vdi_disable_cbt",
    "vdi_data_destroy",
    "vdi_list_changed_blocks",
)
_SR_STRINGS = {
    **SR_OPERATION_STRINGS,
    "vdi_enable_cbt": "VDI.enable_cbt",
    "vdi_disable_cbt": "VDI.disable_cbt",
    "vdi_data_destroy": "VDI.data_destroy",
    "vdi_list_changed_blocks": "VDI.list_changed_blocks",
}


def sr_all_operations(cbt_ops: bool = False) -> tuple[str, ...]:
    """The table's operations: Dundee's, with the CBT ones after ``vdi_snapshot`` when the
    release has them."""
    if not cbt_ops:
        return SR_ALL_OPERATIONS
    i = SR_ALL_OPERATIONS.index("vdi_snapshot") + 1
    return SR_ALL_OPERATIONS[:i] + SR_CBT_OPERATIONS + SR_ALL_OPERATIONS[i:]


def sr_valid_operations(
    sr_ref: str,
    row: Row,
    *,
    features: Iterable[str] = (),
    attached_pbds: bool = False,
    managed_vdis: bool = False,
    cluster_stack_error: OpError | None = None,
    cbt_ops: bool = False,
    rpu: bool = False,
) -> Table:
    """``Xapi_sr_operations.valid_operations``, rules in xapi's order:

    1. ``check_sm_features``: operations whose capability the SM lacks (the tools SR
       also loses VDI_CREATE/VDI_DELETE) -> ``SR_OPERATION_NOT_SUPPORTED [sr]``;
    2. ``check_any_attached_pbds``: a plugged PBD -> ``SR_HAS_PBD [sr]`` for destroy, forget;
    3. ``check_no_pbds``: no PBD at all -> ``SR_HAS_NO_PBDS [sr]`` for destroy;
    4. ``check_any_managed_vdis``: a managed non-rrd VDI -> ``SR_NOT_EMPTY []`` for destroy;
    5. ``check_parallel_ops``: anything in progress ->
       ``OTHER_OPERATION_IN_PROGRESS ["SR", sr, <op>]`` for every operation;
    6. ``check_cluster_stack_compatible``: its error for plug.

    Facts: ``features`` (SM capability names), ``attached_pbds`` (a PBD of the SR is
    currently attached), ``managed_vdis`` (a VDI with ``managed`` and type not ``rrd``),
    ``cluster_stack_error`` (``Cluster_stack_constraints``' error or None).

    ``cbt_ops``: the release has the CBT operations (:data:`SR_CBT_OPERATIONS`); they need
    the SM's ``VDI_CONFIG_CBT`` and, first of all, are ``NOT_SUPPORTED_DURING_UPGRADE []``
    while ``rpu`` (a rolling upgrade) is on (xen-api 1.249-lcm ``valid_operations``)."""
    all_ops = sr_all_operations(cbt_ops)
    t = ErrorTable(all_ops)
    if cbt_ops and rpu:
        t.set_errors("NOT_SUPPORTED_DURING_UPGRADE", [], SR_CBT_OPERATIONS)
    caps = sm_features(features)
    if row.get("is_tools_sr"):
        caps -= {"VDI_CREATE", "VDI_DELETE"}
    cap_table = {**SR_CAPABILITY, **{op: "VDI_CONFIG_CBT" for op in SR_CBT_OPERATIONS}}
    t.set_errors(
        "SR_OPERATION_NOT_SUPPORTED",
        [sr_ref],
        [op for op in all_ops if op in cap_table and cap_table[op] not in caps],
    )
    if attached_pbds:
        t.set_errors("SR_HAS_PBD", [sr_ref], ["destroy", "forget"])
    if not row["PBDs"]:
        t.set_errors("SR_HAS_NO_PBDS", [sr_ref], ["destroy"])
    if managed_vdis:
        t.set_errors("SR_NOT_EMPTY", [], ["destroy"])
    current = setify(op for _, op in row["current_operations"].items())
    if current:
        t.set_errors(
            OTHER_OPERATION_IN_PROGRESS,
            ["SR", sr_ref, _SR_STRINGS[current[0]]],
            set_difference(all_ops, SR_SAFE_TO_PARALLELISE),
        )
        if not all(op in SR_SAFE_TO_PARALLELISE for op in current):
            t.set_errors(
                OTHER_OPERATION_IN_PROGRESS,
                ["SR", sr_ref, _SR_STRINGS[current[0]]],
                SR_SAFE_TO_PARALLELISE,
            )
    if cluster_stack_error is not None:
        code, params = cluster_stack_error
        t.set_errors(code, params, ["plug"])
    return t.table


def sr_check_operation_error(sr_ref: str, row: Row, op: str, **facts: Any) -> OpError | None:
    return table_error(sr_valid_operations(sr_ref, row, **facts), op, "xapi_sr", _SR_STRINGS)


def sr_allowed_operations(sr_ref: str, row: Row, **facts: Any) -> list[str]:
    return allowed_in(
        sr_valid_operations(sr_ref, row, **facts), sr_all_operations(facts.get("cbt_ops", False))
    )


# -- VDI --------------------------------------------------------------------------------------

# vdi_operations in Dundee's datamodel.ml (enum order)
VDI_OPERATIONS = (
    "scan",
    "clone",
    "copy",
    "resize",
    "resize_online",
    "snapshot",
    "destroy",
    "forget",
    "update",
    "force_unlock",
    "generate_config",
    "blocked",
)
# Xapi_vdi.update_allowed_operations' list
VDI_UPDATE_ORDER = (
    "snapshot",
    "copy",
    "clone",
    "destroy",
    "resize",
    "update",
    "generate_config",
    "resize_online",
    "forget",
)
_HA_TYPES = ("ha_statefile", "redo_log")


def vdi_check_operation_error(
    vdi_ref: str,
    row: Row,
    op: str,
    *,
    ha_enabled: bool = False,
    sr_type: str = "",
    sr_is_tools_sr: bool = False,
    sr_attached_pbds: bool = True,
    vbds: Iterable[Row] = (),
    features: Iterable[str] = (),
    ha_enable_in_progress: bool = False,
    ha_disable_in_progress: bool = False,
    rpu: bool = False,
    snapshot_vms: Iterable[str] = (),
) -> OpError | None:
    """``Xapi_vdi.check_operation_error`` (Dundee), in its order:

    1. any current operation but ``copy`` -> ``OTHER_OPERATION_IN_PROGRESS ["VDI", vdi]``;
    2. ``resize`` with no plugged PBD on the SR -> ``SR_HAS_NO_PBDS [sr]``;
    3. an active (attached or reserved) VBD blocks everything but the "live" operations
       (snapshot, resize_online, blocked, clone); ``copy`` is blocked by an active RW VBD
       only -> ``VDI_IN_USE [vdi, op]``;
    4. a VBD with an operation in progress -> ``OTHER_OPERATION_IN_PROGRESS ["VDI", vdi]``;
    5. per operation: HA statefile/redo-log and rrd VDIs, physical devices (``udev`` SRs),
       the tools SR, SM capabilities, sharable and ``on_boot=reset`` snapshots.

    Facts: ``ha_enabled`` (pool), the SR's ``type``/``is_tools_sr``/whether a PBD of it
    is plugged, ``vbds`` (the VBD rows whose ``VDI`` is this one, with ``reserved`` if
    known), ``features`` (the SM's capability names), the pool's HA operations in progress.

    A release with changed block tracking (the row has ``cbt_enabled``) adds xen-api
    1.249-lcm's rules (:func:`_cbt_error`): the CBT operations are refused during a rolling
    upgrade; ``enable_cbt``/``disable_cbt``/``data_destroy`` run "live" (an attached VBD
    does not block them) and ``data_destroy`` ignores VBD operations; ``list_changed_blocks``
    is blocked by an active VBD unless every active VBD is a snapshot VM's
    (``snapshot_vms``); then the SM's ``VDI_CONFIG_CBT``, the ``cbt_metadata`` type, the
    ``cbt_enabled`` flag and the per-operation rules.
    """
    sr = row["SR"]
    cbt = "cbt_enabled" in row
    if cbt and rpu and op in CBT_VDI_OPERATIONS:
        return ("NOT_SUPPORTED_DURING_UPGRADE", [])
    current = list(row["current_operations"].items())
    if any(o != "copy" for _, o in current):
        return (OTHER_OPERATION_IN_PROGRESS, ["VDI", vdi_ref])
    if not sr_attached_pbds and op == "resize":
        return ("SR_HAS_NO_PBDS", [sr])
    vbds = [v for v in vbds if v.get("VDI", vdi_ref) == vdi_ref]
    active = [v for v in vbds if v["currently_attached"] or v.get("reserved", False)]
    active_rw = [v for v in active if v["mode"] == "RW"]
    busy_vbds = [v for v in vbds if v["current_operations"]]
    live_op = op in ("snapshot", "resize_online", "blocked", "clone") or (
        cbt and op in ("enable_cbt", "disable_cbt", "data_destroy")
    )
    ro_op = live_op or op == "copy"
    blocked = not live_op and bool(active_rw if ro_op else active)
    if blocked and cbt and op == "list_changed_blocks":
        snaps = set(snapshot_vms)
        blocked = not all(v["VM"] in snaps for v in active)
    if blocked:
        return ("VDI_IN_USE", [vdi_ref, VDI_OPERATION_STRINGS.get(op, op)])
    if busy_vbds and not (cbt and op == "data_destroy"):
        return (OTHER_OPERATION_IN_PROGRESS, ["VDI", vdi_ref])
    caps = sm_features(features)
    vtype = row["type"]
    ha_protected = ha_enabled and vtype in _HA_TYPES
    if cbt:
        err = _cbt_error(vdi_ref, row, op, caps)
        if err is not None or op in CBT_VDI_OPERATIONS and op != "data_destroy":
            return err

    def needs(cap: str) -> OpError | None:
        return None if cap in caps else ("SR_OPERATION_NOT_SUPPORTED", [sr])

    if op == "forget":
        if ha_protected:
            return ("HA_IS_ENABLED", [])
        if vtype == "rrd":
            return ("VDI_HAS_RRDS", [vdi_ref])
        return None

    def check_destroy() -> OpError | None:
        if sr_type == "udev":
            return ("VDI_IS_A_PHYSICAL_DEVICE", [vdi_ref])
        if sr_is_tools_sr:
            return ("SR_OPERATION_NOT_SUPPORTED", [sr])
        if vtype == "rrd":
            return ("VDI_HAS_RRDS", [vdi_ref])
        if ha_protected:
            return ("HA_IS_ENABLED", [])
        if vtype in ("ha_statefile", "metadata") and ha_enable_in_progress:
            return ("HA_ENABLE_IN_PROGRESS", [])
        if vtype in ("ha_statefile", "metadata") and ha_disable_in_progress:
            return ("HA_DISABLE_IN_PROGRESS", [])
        return None

    if op == "data_destroy":
        if not row["is_a_snapshot"]:
            return ("OPERATION_NOT_ALLOWED", ["VDI is not a snapshot: " + vdi_ref])
        if not row["cbt_enabled"]:
            return ("VDI_NO_CBT_METADATA", [vdi_ref])
        return check_destroy()
    if op == "destroy":
        return check_destroy() or needs("VDI_DELETE")
    if op == "resize":
        return ("HA_IS_ENABLED", []) if ha_protected else needs("VDI_RESIZE")
    if op == "update":
        return needs("VDI_UPDATE")
    if op == "resize_online":
        return ("HA_IS_ENABLED", []) if ha_protected else needs("VDI_RESIZE_ONLINE")
    if op == "generate_config":
        return needs("VDI_GENERATE_CONFIG")
    if op == "snapshot":
        if row["sharable"]:
            return ("VDI_IS_SHARABLE", [vdi_ref])
        if row["on_boot"] == "reset":
            return ("VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION", [])
        if any(o == "copy" for _, o in current):
            return ("OPERATION_NOT_ALLOWED", ["Snapshot operation not allowed during copy."])
        return None
    if op == "copy":
        if vtype in _HA_TYPES:
            return (
                "OPERATION_NOT_ALLOWED",
                [
                    "VDI containing HA statefile or redo log cannot be copied (check the "
                    "VDI's allowed operations)."
                ],
            )
        return None
    if op == "clone":
        return needs("VDI_CLONE")
    return None


# the VDI operations of changed block tracking (vdi_operations, Ely on)
CBT_VDI_OPERATIONS = ("enable_cbt", "disable_cbt", "data_destroy", "list_changed_blocks")
# 1.249-lcm check_operation_error: allowed_for_cbt_metadata_vdi is false for these (of the
# operations this simulator knows), allowed_when_cbt_enabled false for none of them
_NOT_FOR_CBT_METADATA = (
    "clone",
    "copy",
    "disable_cbt",
    "enable_cbt",
    "mirror",
    "resize",
    "resize_online",
    "snapshot",
    "set_on_boot",
)
_NOT_WHEN_CBT_ENABLED = ("mirror", "set_on_boot")
# Record_util.vdi_type_to_string
VDI_TYPE_STRINGS = {
    "system": "System",
    "user": "User",
    "ephemeral": "Ephemeral",
    "suspend": "Suspend",
    "crashdump": "Crashdump",
    "ha_statefile": "HA statefile",
    "metadata": "Metadata",
    "redo_log": "Redo log",
    "rrd": "rrd",
    "pvs_cache": "PVS cache",
    "cbt_metadata": "CBT metadata",
}


def _cbt_error(vdi_ref: str, row: Row, op: str, caps: set[str]) -> OpError | None:
    """The CBT part of xen-api 1.249-lcm ``check_operation_error``, after the VBD rules:
    ``check_sm_feature_error`` for the CBT operations (``VDI_CONFIG_CBT`` ->
    ``SR_OPERATION_NOT_SUPPORTED [sr]``), a ``cbt_metadata`` VDI ->
    ``VDI_INCOMPATIBLE_TYPE [vdi, "CBT metadata"]``, a CBT-enabled one ->
    ``VDI_CBT_ENABLED [vdi]``; then ``enable_cbt``/``disable_cbt``: not on a snapshot
    (``OPERATION_NOT_ALLOWED ["VDI is a snapshot: <vdi>"]``), only ``user``/``system``
    VDIs (``VDI_INCOMPATIBLE_TYPE [vdi, <type>]``), not ``on_boot=reset``
    (``VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION``). ``list_changed_blocks`` has no
    rule of its own; ``data_destroy``'s are the caller's (they end in ``check_destroy``)."""
    if op in CBT_VDI_OPERATIONS and "VDI_CONFIG_CBT" not in caps:
        return ("SR_OPERATION_NOT_SUPPORTED", [row["SR"]])
    if op in _NOT_FOR_CBT_METADATA and row["type"] == "cbt_metadata":
        return ("VDI_INCOMPATIBLE_TYPE", [vdi_ref, VDI_TYPE_STRINGS["cbt_metadata"]])
    if op in _NOT_WHEN_CBT_ENABLED and row["cbt_enabled"]:
        return ("VDI_CBT_ENABLED", [vdi_ref])
    if op in ("enable_cbt", "disable_cbt"):
        if row["is_a_snapshot"]:
            return ("OPERATION_NOT_ALLOWED", ["VDI is a snapshot: " + vdi_ref])
        if row["type"] not in ("user", "system"):
            return (
                "VDI_INCOMPATIBLE_TYPE",
                [vdi_ref, VDI_TYPE_STRINGS.get(str(row["type"]), str(row["type"]))],
            )
        if row["on_boot"] == "reset":
            return ("VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION", [])
    return None


def vdi_allowed_operations(vdi_ref: str, row: Row, **facts: Any) -> list[str]:
    """``update_allowed_operations_internal``: xapi prepends each passing operation, so
    the result is :data:`VDI_UPDATE_ORDER` reversed."""
    ok = [
        op
        for op in VDI_UPDATE_ORDER
        if vdi_check_operation_error(vdi_ref, row, op, **facts) is None
    ]
    ok.reverse()
    return ok


# -- VBD --------------------------------------------------------------------------------------

# vbd_operations in Dundee's datamodel.ml (enum order)
VBD_OPERATIONS = ("attach", "eject", "insert", "plug", "unplug", "unplug_force", "pause", "unpause")
# Xapi_vbd_helpers.all_ops (table order)
VBD_ALL_OPERATIONS = (
    "attach",
    "eject",
    "unplug",
    "unplug_force",
    "insert",
    "plug",
    "pause",
    "unpause",
)
VBD_SAFE_TO_PARALLELISE = ("pause", "unpause")
_VM_OPS_BLOCKING_HOTPLUG = ("clean_shutdown", "hard_shutdown", "suspend", "pause")


def is_system_domain(vm_row: Row) -> bool:
    """``System_domains.is_system_domain``: the control domain, or
    ``other_config:is_system_domain`` is exactly "true" (OCaml ``bool_of_string``)."""
    return (
        vm_row["is_control_domain"]
        or (vm_row.get("other_config") or {}).get("is_system_domain") == "true"
    )


def _hotplug_errors(
    t: ErrorTable,
    vm_ref: str,
    vm_row: Row,
    guest_metrics: Row | None,
    hvm: bool,
    field: str,
    what: str,
    ops: list[str],
) -> None:
    """The PV-driver rule shared by VBD and VIF plug/unplug of a running HVM guest."""
    if vm_row["power_state"] != "Running" or not hvm:
        return

    def fallback() -> None:
        if not vm_checks.has_pv_drivers(guest_metrics):
            t.set_errors("VM_MISSING_PV_DRIVERS", [vm_ref], ops)

    if guest_metrics is None:
        fallback()
        return
    claim = guest_metrics.get(field, "unspecified")
    if claim == "yes":
        return
    if claim == "no":
        t.set_errors(
            "OPERATION_NOT_ALLOWED", [f"VM states it does not support {what} hotplug."], ops
        )
        return
    fallback()


def _vm_current_op_errors(t: ErrorTable, vm_ref: str, vm_row: Row, ops: list[str]) -> None:
    for _, op in vm_row["current_operations"].items():
        if op in _VM_OPS_BLOCKING_HOTPLUG:
            t.set_errors(
                "OPERATION_NOT_ALLOWED",
                [f"Current operation on VM:{vm_ref} is {vm_checks.operation_to_string(op)}"],
                ops,
            )


def vbd_valid_operations(
    vbd_ref: str,
    row: Row,
    *,
    vm_row: Row,
    guest_metrics: Row | None = None,
    hvm: bool | None = None,
    vdi_row: Row | None = None,
    other_vbds: Iterable[tuple[Row, Row]] = (),
    expensive_sharing_checks: bool = True,
) -> Table:
    """``Xapi_vbd_helpers.valid_operations`` (Dundee), rules in xapi's order:

    1. an operation in progress blocks all but pause/unpause; anything but pause/unpause
       blocks pause; anything but attach/pause/unpause blocks unpause ->
       ``OTHER_OPERATION_IN_PROGRESS ["VBD", vbd, <op>]``;
    2. ``VBD_NOT_UNPLUGGABLE``, ``VBD_NOT_REMOVABLE_MEDIA``, ``VBD_IS_EMPTY`` /
       ``VBD_NOT_EMPTY``;
    3. the VM's power state and the device's: ``DEVICE_ALREADY_ATTACHED`` /
       ``_DETACHED``, else ``VM_BAD_POWER_STATE [vm, "running", actual]`` (pause/unpause
       stay allowed on a Paused VM);
    4. the VM shutting down, suspending or pausing -> ``OPERATION_NOT_ALLOWED``;
    5. a running HVM guest: hotplug needs drivers (``can_use_hotplug_vbd``,
       ``VM_MISSING_PV_DRIVERS``); CD drives cannot be hotplugged;
    6. a CD of a Suspended VM: no insert/eject;
    7. the VDI: ``VDI_NOT_MANAGED``, VDI operations in progress, and (when not attached and
       ``expensive_sharing_checks``) the sharing rules ``VDI_IN_USE``, ``VDI_READONLY``.

    Facts: ``vm_row`` (the VBD's VM), its ``guest_metrics`` row, ``hvm`` (default
    :func:`~.vm.booted_hvm`), ``vdi_row`` (None for an empty drive), ``other_vbds`` --
    ``(vbd_row, vm_row)`` for the VDI's other VBDs (``vbd_row`` may carry ``reserved``)."""
    vm_ref = row["VM"]
    current = setify(op for _, op in row["current_operations"].items())
    t = ErrorTable(VBD_ALL_OPERATIONS)
    if current:
        t.set_errors(
            OTHER_OPERATION_IN_PROGRESS,
            ["VBD", vbd_ref, VBD_OPERATION_STRINGS[current[0]]],
            set_difference(VBD_ALL_OPERATIONS, VBD_SAFE_TO_PARALLELISE),
        )
    if not all(op in VBD_SAFE_TO_PARALLELISE for op in current):
        t.set_errors(
            OTHER_OPERATION_IN_PROGRESS,
            ["VBD", vbd_ref, VBD_OPERATION_STRINGS[current[0]]],
            ["pause"],
        )
    if set_difference(current, ("attach",) + VBD_SAFE_TO_PARALLELISE):
        t.set_errors(
            OTHER_OPERATION_IN_PROGRESS,
            ["VBD", vbd_ref, VBD_OPERATION_STRINGS[current[0]]],
            ["unpause"],
        )
    if not row["unpluggable"]:
        t.set_errors("VBD_NOT_UNPLUGGABLE", [vbd_ref], ["unplug", "unplug_force"])
    if row["type"] != "CD":
        t.set_errors("VBD_NOT_REMOVABLE_MEDIA", [vbd_ref], ["insert", "eject"])
    empty = row["empty"]
    if empty:
        t.set_errors("VBD_IS_EMPTY", [vbd_ref], ["eject"])
    else:
        t.set_errors("VBD_NOT_EMPTY", [vbd_ref], ["insert"])
    power = vm_row["power_state"]
    plugged = row["currently_attached"] or row.get("reserved", False)
    if power == "Running" and plugged:
        t.set_errors("DEVICE_ALREADY_ATTACHED", [vbd_ref], ["plug"])
    elif power == "Running":
        t.set_errors("DEVICE_ALREADY_DETACHED", [vbd_ref], ["unplug", "unplug_force"])
    else:
        bad = ["plug", "unplug", "unplug_force"]
        if power != "Paused":
            bad = ["pause", "unpause"] + bad
        t.set_errors(
            "VM_BAD_POWER_STATE", [vm_ref, power_to_string("Running"), power_to_string(power)], bad
        )
    _vm_current_op_errors(t, vm_ref, vm_row, ["plug", "unplug"])
    hvm = vm_checks.booted_hvm(vm_row) if hvm is None else hvm
    if power == "Running" and hvm:
        plug_ops = ["plug", "unplug", "unplug_force"]
        _hotplug_errors(
            t, vm_ref, vm_row, guest_metrics, hvm, "can_use_hotplug_vbd", "VBD", plug_ops
        )
        if row["type"] == "CD":
            t.set_errors(
                "OPERATION_NOT_ALLOWED",
                ["HVM CDROMs cannot be hotplugged/unplugged, only inserted or ejected"],
                plug_ops,
            )
    if row["type"] == "CD" and power == "Suspended":
        t.set_errors(
            "VM_BAD_POWER_STATE",
            [vm_ref, "halted, running", power_to_string("Suspended")],
            ["insert", "eject"],
        )
    if not empty and vdi_row is not None:
        vdi_ref = row["VDI"]
        if not vdi_row["managed"]:
            t.set_errors("VDI_NOT_MANAGED", [vbd_ref], VBD_ALL_OPERATIONS)
        vdi_current = list(vdi_row["current_operations"].items())
        if any(o != "copy" for _, o in vdi_current):
            t.set_errors(
                OTHER_OPERATION_IN_PROGRESS,
                ["VDI", vdi_ref, VDI_OPERATION_STRINGS.get(vdi_current[0][1], vdi_current[0][1])],
                ["attach", "plug", "insert"],
            )
        if not row["currently_attached"] and expensive_sharing_checks:
            to_check = [
                v
                for v, owner in other_vbds
                if owner["power_state"] != "Suspended"
                and not is_system_domain(owner)
                and (v["currently_attached"] or v.get("reserved", False) or v["current_operations"])
            ]
            someone_rw = any(v["mode"] == "RW" for v in to_check)
            need_write = row["mode"] == "RW"
            if (
                not vdi_row["sharable"]
                and not is_system_domain(vm_row)
                and (someone_rw or (need_write and to_check))
            ):
                t.set_errors("VDI_IN_USE", [vdi_ref], ["attach", "insert", "plug"])
            if need_write and vdi_row["read_only"]:
                t.set_errors("VDI_READONLY", [vdi_ref], ["attach", "insert", "plug"])
    return t.table


def vbd_check_operation_error(vbd_ref: str, row: Row, op: str, **facts: Any) -> OpError | None:
    """``assert_operation_valid`` (expensive sharing checks on) as a value."""
    return table_error(
        vbd_valid_operations(vbd_ref, row, **facts), op, "xapi_vbd_helpers", VBD_OPERATION_STRINGS
    )


def vbd_allowed_operations(vbd_ref: str, row: Row, **facts: Any) -> list[str]:
    """``update_allowed_operations``: without the expensive sharing checks (CA-20808)."""
    facts = dict(facts, expensive_sharing_checks=False)
    return allowed_in(vbd_valid_operations(vbd_ref, row, **facts), VBD_ALL_OPERATIONS)
