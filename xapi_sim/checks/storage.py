"""SR, VDI and VBD operation checks: xen-api Dundee ``xapi_sr_operations.ml``,
``xapi_vdi.ml``, ``xapi_vbd_helpers.ml`` (pure; the VBD's are in :mod:`.vbd`, re-exported
here), with the differences of the later releases' sources (6.5 SP1 ``79e9af82c7^``, 7.1
``1.14-lcm``, 8.2 ``1.249-lcm``, XenServer 8 ``v23.30.0``, XCP-ng 8.3 ``v24.19.2``) as
facts the caller derives from the release (``allowed.py``).

The rows are the store's; ``reserved`` (a VBD field internal to xapi, not in the API) may be
given as an extra key of a VBD dict. SM capabilities are the names of ``SM.features`` keys
(``"VDI_CREATE"``, ``"VDI_DELETE"``...) of the SR type's SM record; names unknown to
Dundee's ``Smint.string_to_capability_table`` are ignored as xapi ignores them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..datamodel import ENUMS
from .operations import (
    OTHER_OPERATION_IN_PROGRESS,
    SR_OPERATION_STRINGS,
    VDI_OPERATION_STRINGS,
    ErrorTable,
    OpError,
    Row,
    Table,
    allowed_in,
    set_difference,
    setify,
    table_error,
)
from .vbd import VBD_ALL_OPERATIONS as VBD_ALL_OPERATIONS
from .vbd import VBD_OPERATIONS as VBD_OPERATIONS
from .vbd import VBD_SAFE_TO_PARALLELISE as VBD_SAFE_TO_PARALLELISE
from .vbd import _hotplug_errors as _hotplug_errors
from .vbd import _vm_current_op_errors as _vm_current_op_errors
from .vbd import is_system_domain as is_system_domain
from .vbd import vbd_allowed_operations as vbd_allowed_operations
from .vbd import vbd_check_operation_error as vbd_check_operation_error
from .vbd import vbd_valid_operations as vbd_valid_operations

# Smint.string_to_capability_table: Dundee's (VDI_MIRROR from Dundee on, absent from 6.5
# SP1's) and VDI_CONFIG_CBT (Inverness on, 1.249-lcm ``Vdi_configure_cbt``); later releases
# add names that no operation rule reads (SR_CREATE, LARGE_VDI, THIN_PROVISIONING...)
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
    "VDI_MIRROR",
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
    "VDI_CONFIG_CBT",
)


def sm_features(features: Iterable[str]) -> set[str]:
    """``features_of_sr_internal``: the known capability names among ``features`` (an
    ``SM.features`` map or any iterable of names)."""
    return {f for f in features if f in CAPABILITIES}


# -- SR ---------------------------------------------------------------------------------------

# storage_operations in Dundee's datamodel.ml (enum order): the later enum without what
# came after (CBT, 1.249's set_on_boot)
SR_OPERATIONS = tuple(
    op
    for op in ENUMS["storage_operations"]
    if op
    not in (
        "vdi_enable_cbt",
        "vdi_disable_cbt",
        "vdi_data_destroy",
        "vdi_list_changed_blocks",
        "vdi_set_on_boot",
    )
)
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
    "vdi_mirror",
    "pbd_create",
    "pbd_destroy",
)
# Xapi_sr_operations.all_ops of 6.5 SP1 (xen-api 79e9af82c7^, table order): no vdi_mirror
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
# sm_cap_table: operations the backend must support (vdi_clone is faked by xapi); Dundee on
# adds vdi_mirror -> VDI_MIRROR, 1.249-lcm the CBT operations -> VDI_CONFIG_CBT and
# vdi_set_on_boot -> VDI_RESET_ON_BOOT
SR_CAPABILITY = {
    "vdi_create": "VDI_CREATE",
    "vdi_destroy": "VDI_DELETE",
    "vdi_resize": "VDI_RESIZE",
    "vdi_introduce": "VDI_INTRODUCE",
    "vdi_mirror": "VDI_MIRROR",
    "vdi_enable_cbt": "VDI_CONFIG_CBT",
    "vdi_disable_cbt": "VDI_CONFIG_CBT",
    "vdi_data_destroy": "VDI_CONFIG_CBT",
    "vdi_list_changed_blocks": "VDI_CONFIG_CBT",
    "vdi_set_on_boot": "VDI_RESET_ON_BOOT",
    "update": "SR_UPDATE",
    "vdi_snapshot": "VDI_SNAPSHOT",
}
# check_parallel_ops' safe_to_parallelise: none up to 7.1 (1.14-lcm); from xen-api 09f949ba8d
# (CA-271491, Kolkata) a PBD plug may run beside other plugs (1.249-lcm, v23.30.0, v24.19.2)
SR_SAFE_TO_PARALLELISE: tuple[str, ...] = ()
SR_SAFE_TO_PARALLELISE_KOLKATA = ("plug",)
# the CBT operations of later releases' storage_operations (xen-api 1.249-lcm
# xapi_sr_operations.ml all_ops, after vdi_snapshot/vdi_mirror): SM capability
# VDI_CONFIG_CBT (sm_cap_table), refused during a rolling upgrade (disallowed_during_rpu)
SR_CBT_OPERATIONS = (
    "vdi_enable_cbt",
    "vdi_disable_cbt",
    "vdi_data_destroy",
    "vdi_list_changed_blocks",
)
# all_rpu_ops (1.14-lcm on, "from tampa-bugfix"): what a rolling upgrade leaves allowed;
# disallowed_during_rpu is the rest of all_ops
SR_RPU_OPERATIONS = SR_ALL_OPERATIONS
# storage_operations in v24.19.2's datamodel.ml: from xen-api 723a4983ab (v24.14.0)
# all_ops is the generated API.storage_operations__all, in this order: the datamodel's enum
SR_ENUM_OPERATIONS = tuple(ENUMS["storage_operations"])
_SR_STRINGS = {
    **SR_OPERATION_STRINGS,
    "vdi_mirror": "VDI.mirror",
    "vdi_enable_cbt": "VDI.enable_cbt",
    "vdi_disable_cbt": "VDI.disable_cbt",
    "vdi_data_destroy": "VDI.data_destroy",
    "vdi_list_changed_blocks": "VDI.list_changed_blocks",
    "vdi_set_on_boot": "VDI.set_on_boot",
}


def sr_all_operations(
    cbt_ops: bool = False, mirror_op: bool = False, enum_order: bool = False
) -> tuple[str, ...]:
    """``all_ops``, the table's operations in xapi's order: 6.5 SP1's
    (:data:`SR_ALL_OPERATIONS`); ``mirror_op`` (Dundee, 7.1): ``vdi_mirror`` after
    ``vdi_snapshot``; ``cbt_ops`` (1.249-lcm, v23.30.0): ``vdi_mirror``, the CBT operations
    and ``vdi_set_on_boot`` there; ``enum_order`` (v24.14.0 on): the enum's order
    (:data:`SR_ENUM_OPERATIONS`)."""
    if enum_order:
        return SR_ENUM_OPERATIONS
    if not (cbt_ops or mirror_op):
        return SR_ALL_OPERATIONS
    i = SR_ALL_OPERATIONS.index("vdi_snapshot") + 1
    extra = ("vdi_mirror",) + (SR_CBT_OPERATIONS + ("vdi_set_on_boot",) if cbt_ops else ())
    return SR_ALL_OPERATIONS[:i] + extra + SR_ALL_OPERATIONS[i:]


def _sr_all_ops_of(facts: dict[str, Any]) -> tuple[str, ...]:
    return sr_all_operations(
        facts.get("cbt_ops", False), facts.get("mirror_op", False), facts.get("enum_order", False)
    )


def sr_valid_operations(
    sr_ref: str,
    row: Row,
    *,
    features: Iterable[str] = (),
    attached_pbds: bool = False,
    managed_vdis: bool = False,
    cluster_stack_error: OpError | None = None,
    cbt_ops: bool = False,
    mirror_op: bool = False,
    enum_order: bool = False,
    rpu_check: bool = False,
    plug_parallel: bool = False,
    rpu: bool = False,
) -> Table:
    """``Xapi_sr_operations.valid_operations``, rules in xapi's order:

    0. (7.1 on, ``rpu_check``) during a rolling upgrade (``rpu``), the operations outside
       ``all_rpu_ops`` (:data:`SR_RPU_OPERATIONS`) -> ``NOT_SUPPORTED_DURING_UPGRADE []``;
    1. ``check_sm_features``: operations whose capability (:data:`SR_CAPABILITY`) the SM
       lacks (the tools SR also loses VDI_CREATE/VDI_DELETE) ->
       ``SR_OPERATION_NOT_SUPPORTED [sr]``;
    2. ``check_any_attached_pbds``: a plugged PBD -> ``SR_HAS_PBD [sr]`` for destroy, forget;
    3. ``check_no_pbds``: no PBD at all -> ``SR_HAS_NO_PBDS [sr]`` for destroy;
    4. ``check_any_managed_vdis``: a managed non-rrd VDI -> ``SR_NOT_EMPTY []`` for destroy;
    5. ``check_parallel_ops``: anything in progress ->
       ``OTHER_OPERATION_IN_PROGRESS ["SR", sr, <op>]`` for every operation but the safe
       ones (from Kolkata, ``plug_parallel``: ``plug``), which are refused too unless all
       the operations in progress are safe ones;
    6. ``check_cluster_stack_compatible``: its error for plug.

    Facts: ``features`` (SM capability names), ``attached_pbds`` (a PBD of the SR is
    currently attached), ``managed_vdis`` (a VDI with ``managed`` and type not ``rrd``),
    ``cluster_stack_error`` (``Cluster_stack_constraints``' error or None); the release's
    table (:func:`sr_all_operations`: ``cbt_ops``, ``mirror_op``, ``enum_order``),
    ``rpu_check``, ``plug_parallel``; ``rpu`` (a rolling upgrade is on)."""
    all_ops = sr_all_operations(cbt_ops, mirror_op, enum_order)
    t = ErrorTable(all_ops)
    if rpu_check and rpu:
        t.set_errors("NOT_SUPPORTED_DURING_UPGRADE", [], set_difference(all_ops, SR_RPU_OPERATIONS))
    caps = sm_features(features)
    if row.get("is_tools_sr"):
        caps -= {"VDI_CREATE", "VDI_DELETE"}
    t.set_errors(
        "SR_OPERATION_NOT_SUPPORTED",
        [sr_ref],
        [op for op in all_ops if op in SR_CAPABILITY and SR_CAPABILITY[op] not in caps],
    )
    if attached_pbds:
        t.set_errors("SR_HAS_PBD", [sr_ref], ["destroy", "forget"])
    if not row["PBDs"]:
        t.set_errors("SR_HAS_NO_PBDS", [sr_ref], ["destroy"])
    if managed_vdis:
        t.set_errors("SR_NOT_EMPTY", [], ["destroy"])
    safe = SR_SAFE_TO_PARALLELISE_KOLKATA if plug_parallel else SR_SAFE_TO_PARALLELISE
    current = setify(op for _, op in row["current_operations"].items())
    if current:
        t.set_errors(
            OTHER_OPERATION_IN_PROGRESS,
            ["SR", sr_ref, _SR_STRINGS[current[0]]],
            set_difference(all_ops, safe),
        )
        if not all(op in safe for op in current):
            t.set_errors(OTHER_OPERATION_IN_PROGRESS, ["SR", sr_ref, _SR_STRINGS[current[0]]], safe)
    if cluster_stack_error is not None:
        code, params = cluster_stack_error
        t.set_errors(code, params, ["plug"])
    return t.table


def sr_check_operation_error(sr_ref: str, row: Row, op: str, **facts: Any) -> OpError | None:
    return table_error(sr_valid_operations(sr_ref, row, **facts), op, "xapi_sr", _SR_STRINGS)


def sr_allowed_operations(sr_ref: str, row: Row, **facts: Any) -> list[str]:
    return allowed_in(sr_valid_operations(sr_ref, row, **facts), _sr_all_ops_of(facts))


# -- VDI --------------------------------------------------------------------------------------

# vdi_operations in Dundee's datamodel.ml (enum order)
VDI_OPERATIONS = (
    "scan",
    "clone",
    "copy",
    "resize",
    "resize_online",
    "snapshot",
    "mirror",
    "destroy",
    "forget",
    "update",
    "force_unlock",
    "generate_config",
    "blocked",
)
# Xapi_vdi.update_allowed_operations' list (Dundee, 7.1)
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
# Xapi_globs.pre_ely_vdi_operations (1.249-lcm, v23.30.0, v24.19.2), which is also
# rpu_allowed_vdi_operations: from xen-api 3a45bf49c3 (CA-260245, Inverness)
# update_allowed_operations_internal checks these but blocked, and from 81ebe328a0
# (CA-281176, Lima) not force_unlock either
PRE_ELY_VDI_OPERATIONS = (
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
_HA_TYPES = ("ha_statefile", "redo_log")
# check_sm_feature_error (1.249-lcm): the SM capability each operation needs
_VDI_CAPABILITY = {
    "snapshot": "VDI_SNAPSHOT",
    "destroy": "VDI_DELETE",
    "resize": "VDI_RESIZE",
    "update": "VDI_UPDATE",
    "resize_online": "VDI_RESIZE_ONLINE",
    "generate_config": "VDI_GENERATE_CONFIG",
    "clone": "VDI_CLONE",
    "mirror": "VDI_MIRROR",
    "enable_cbt": "VDI_CONFIG_CBT",
    "disable_cbt": "VDI_CONFIG_CBT",
    "data_destroy": "VDI_CONFIG_CBT",
    "list_changed_blocks": "VDI_CONFIG_CBT",
    "set_on_boot": "VDI_RESET_ON_BOOT",
}


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
    copy_reset_refused: bool = False,
    hide_force_unlock: bool = False,
) -> OpError | None:
    """``Xapi_vdi.check_operation_error`` (Dundee), in its order:

    1. any current operation but ``copy`` -> ``OTHER_OPERATION_IN_PROGRESS ["VDI", vdi]``
       (not for ``destroy`` while a ``mirror`` is in progress: VDI.pool_migrate's);
    2. ``resize`` with no plugged PBD on the SR -> ``SR_HAS_NO_PBDS [sr]``;
    3. an active (attached or reserved) VBD blocks everything but the "live" operations
       (snapshot, resize_online, blocked, clone, mirror); ``copy`` is blocked by an active
       RW VBD only -> ``VDI_IN_USE [vdi, op]``;
    4. a VBD with an operation in progress -> ``OTHER_OPERATION_IN_PROGRESS ["VDI", vdi]``;
    5. per operation: HA statefile/redo-log and rrd VDIs, physical devices (``udev`` SRs),
       the tools SR, SM capabilities, sharable and ``on_boot=reset`` snapshots (and, from
       7.1's 1.14-lcm -- CA-348700, ``copy_reset_refused`` -- copies).

    Facts: ``ha_enabled`` (pool), the SR's ``type``/``is_tools_sr``/whether a PBD of it
    is plugged, ``vbds`` (the VBD rows whose ``VDI`` is this one, with ``reserved`` if
    known), ``features`` (the SM's capability names), the pool's HA operations in progress.

    A release with changed block tracking (the row has ``cbt_enabled``) has xen-api
    1.249-lcm's function (the same in v23.30.0 and v24.19.2): first, during a rolling
    upgrade (``rpu``) the operations outside :data:`PRE_ELY_VDI_OPERATIONS` ->
    ``NOT_SUPPORTED_DURING_UPGRADE []``; ``enable_cbt``/``disable_cbt``/``data_destroy``
    run "live" and ``data_destroy`` ignores VBD operations; ``list_changed_blocks`` is
    blocked by an active VBD unless every active VBD is a snapshot VM's
    (``snapshot_vms``); then (:func:`_later_error`) ``check_sm_feature_error`` for every
    operation, the ``cbt_metadata`` type, the ``cbt_enabled`` flag and the per-operation
    rules, which no longer test capabilities.
    """
    sr = row["SR"]
    cbt = "cbt_enabled" in row
    if cbt and rpu and op not in PRE_ELY_VDI_OPERATIONS:
        return ("NOT_SUPPORTED_DURING_UPGRADE", [])
    current = list(row["current_operations"].items())
    mirroring = op == "destroy" and any(o == "mirror" for _, o in current)
    if any(o != "copy" for _, o in current) and not mirroring:
        return (OTHER_OPERATION_IN_PROGRESS, ["VDI", vdi_ref])
    if not sr_attached_pbds and op == "resize":
        return ("SR_HAS_NO_PBDS", [sr])
    vbds = [v for v in vbds if v.get("VDI", vdi_ref) == vdi_ref]
    active = [v for v in vbds if v["currently_attached"] or v.get("reserved", False)]
    active_rw = [v for v in active if v["mode"] == "RW"]
    busy_vbds = [v for v in vbds if v["current_operations"]]
    live_op = op in ("snapshot", "resize_online", "blocked", "clone", "mirror") or (
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

    if cbt:
        return _later_error(vdi_ref, row, op, caps, current, ha_protected, check_destroy)

    def needs(cap: str) -> OpError | None:
        return None if cap in caps else ("SR_OPERATION_NOT_SUPPORTED", [sr])

    if op == "forget":
        if ha_protected:
            return ("HA_IS_ENABLED", [])
        if vtype == "rrd":
            return ("VDI_HAS_RRDS", [vdi_ref])
        return None
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
    if op == "snapshot" and row["sharable"]:
        return ("VDI_IS_SHARABLE", [vdi_ref])
    if (op == "snapshot" or op == "copy" and copy_reset_refused) and row["on_boot"] == "reset":
        return ("VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION", [])
    if op in ("snapshot", "copy"):
        return _snapshot_copy_error(op, vtype, current)
    if op == "clone":
        return needs("VDI_CLONE")
    if op == "mirror":
        return needs("VDI_MIRROR")
    return None


def _snapshot_copy_error(op: str, vtype: str, current: list[tuple[str, str]]) -> OpError | None:
    """The last rules of ``snapshot`` (not during a copy) and ``copy`` (not the HA
    statefile or redo log)."""
    if op == "snapshot":
        if any(o == "copy" for _, o in current):
            return ("OPERATION_NOT_ALLOWED", ["Snapshot operation not allowed during copy."])
        return None
    if vtype in _HA_TYPES:
        return (
            "OPERATION_NOT_ALLOWED",
            [
                "VDI containing HA statefile or redo log cannot be copied (check the "
                "VDI's allowed operations)."
            ],
        )
    return None


# the VDI operations of changed block tracking (vdi_operations, Inverness on)
CBT_VDI_OPERATIONS = ("enable_cbt", "disable_cbt", "data_destroy", "list_changed_blocks")
# 1.249-lcm check_operation_error: allowed_for_cbt_metadata_vdi is false for these,
# allowed_when_cbt_enabled for the second list
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


def _later_error(
    vdi_ref: str,
    row: Row,
    op: str,
    caps: set[str],
    current: list[tuple[str, str]],
    ha_protected: bool,
    check_destroy: Callable[[], OpError | None],
) -> OpError | None:
    """xen-api 1.249-lcm ``check_operation_error`` after the VBD rules:

    1. ``check_sm_feature_error``: the operation's capability (:data:`_VDI_CAPABILITY`;
       ``forget``, ``copy``, ``force_unlock``, ``blocked`` need none) ->
       ``SR_OPERATION_NOT_SUPPORTED [sr]``;
    2. a ``cbt_metadata`` VDI -> ``VDI_INCOMPATIBLE_TYPE [vdi, "CBT metadata"]``, a
       CBT-enabled one -> ``VDI_CBT_ENABLED [vdi]``;
    3. ``forget``: HA statefile/redo log with HA on, rrd; ``destroy``: ``check_destroy``;
       ``data_destroy``: not a snapshot (``OPERATION_NOT_ALLOWED ["VDI is not a snapshot:
       <vdi>"]``), no CBT (``VDI_NO_CBT_METADATA``), then ``check_destroy``;
       ``resize``/``resize_online``: HA; ``snapshot``: sharable; ``snapshot``/``copy``
       with ``on_boot=reset`` -> ``VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION``; the
       snapshot/copy rules of Dundee; ``enable_cbt``/``disable_cbt``: not on a snapshot
       (``OPERATION_NOT_ALLOWED ["VDI is a snapshot: <vdi>"]``), only ``user``/``system``
       (``VDI_INCOMPATIBLE_TYPE [vdi, <type>]``), not ``on_boot=reset``."""
    cap = _VDI_CAPABILITY.get(op)
    if cap is not None and cap not in caps:
        return ("SR_OPERATION_NOT_SUPPORTED", [row["SR"]])
    vtype = row["type"]
    if op in _NOT_FOR_CBT_METADATA and vtype == "cbt_metadata":
        return ("VDI_INCOMPATIBLE_TYPE", [vdi_ref, VDI_TYPE_STRINGS["cbt_metadata"]])
    if op in _NOT_WHEN_CBT_ENABLED and row["cbt_enabled"]:
        return ("VDI_CBT_ENABLED", [vdi_ref])
    reset = row["on_boot"] == "reset"
    if op == "forget":
        if ha_protected:
            return ("HA_IS_ENABLED", [])
        return ("VDI_HAS_RRDS", [vdi_ref]) if vtype == "rrd" else None
    if op == "destroy":
        return check_destroy()
    if op == "data_destroy":
        if not row["is_a_snapshot"]:
            return ("OPERATION_NOT_ALLOWED", ["VDI is not a snapshot: " + vdi_ref])
        if not row["cbt_enabled"]:
            return ("VDI_NO_CBT_METADATA", [vdi_ref])
        return check_destroy()
    if op in ("resize", "resize_online"):
        return ("HA_IS_ENABLED", []) if ha_protected else None
    if op == "snapshot" and row["sharable"]:
        return ("VDI_IS_SHARABLE", [vdi_ref])
    if op in ("snapshot", "copy"):
        if reset:
            return ("VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION", [])
        return _snapshot_copy_error(op, vtype, current)
    if op in ("enable_cbt", "disable_cbt"):
        if row["is_a_snapshot"]:
            return ("OPERATION_NOT_ALLOWED", ["VDI is a snapshot: " + vdi_ref])
        if vtype not in ("user", "system"):
            return (
                "VDI_INCOMPATIBLE_TYPE",
                [vdi_ref, VDI_TYPE_STRINGS.get(str(vtype), str(vtype))],
            )
        if reset:
            return ("VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION", [])
    return None


def vdi_update_order(cbt: bool, hide_force_unlock: bool = False) -> tuple[str, ...]:
    """The operations ``update_allowed_operations_internal`` checks, in its order: Dundee's
    list, or (Inverness on, ``cbt``) :data:`PRE_ELY_VDI_OPERATIONS` but ``blocked``
    (CA-260245) and, from Lima (``hide_force_unlock``), ``force_unlock`` (CA-281176)."""
    if not cbt:
        return VDI_UPDATE_ORDER
    hidden = ("blocked", "force_unlock") if hide_force_unlock else ("blocked",)
    return tuple(op for op in PRE_ELY_VDI_OPERATIONS if op not in hidden)


def vdi_allowed_operations(vdi_ref: str, row: Row, **facts: Any) -> list[str]:
    """``update_allowed_operations_internal``: xapi prepends each passing operation, so
    the result is :func:`vdi_update_order` reversed (during a rolling upgrade later
    releases keep those in ``rpu_allowed_vdi_operations``: all of them)."""
    order = vdi_update_order("cbt_enabled" in row, facts.get("hide_force_unlock", False))
    ok = [op for op in order if vdi_check_operation_error(vdi_ref, row, op, **facts) is None]
    ok.reverse()
    return ok
