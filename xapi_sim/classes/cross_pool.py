"""Cross-pool migration (Storage XenMotion between pools), Dundee semantics (spec §10, §12).

``host.migrate_receive`` on the destination pool returns the ``dest`` map; ``VM.migrate_send``
/ ``VM.assert_can_migrate`` on the *source* pool check, in Dundee's order: the version must not
decrease (``NOT_SUPPORTED_DURING_UPGRADE``), a non-halted copy needs force
(``VM_BAD_POWER_STATE``), the remote host must be enabled (``HOST_DISABLED``), then -- unless
forced or Halted -- the VM against the remote destination *host*'s ``cpu_info`` (never the
destination pool level). On arrival the post-move update (§11) runs against the landing host,
so an old-style or missing featureset is upgraded and extended with that host's words.
"""
from __future__ import annotations

from ..datamodel import NULL_REF
from ..errors import Failure, internal
from ..levelling import featureset, policy
from . import common as c


def _dest_host(call, dest):
    ref = (dest or {}).get("host", "")
    h = call.world.hosts.get(ref)
    if h is None or h.pool is None or not h.db.exists("host", ref):
        raise Failure("HANDLE_INVALID", "host", ref)
    sess = (dest or {}).get("session_id", "")
    if sess not in h.db.tables["session"]:
        raise Failure("SESSION_INVALID", sess)
    return h


def _checks(call, vm, row, dest_h, options):
    copy = (options or {}).get("copy") == "true"
    force = (options or {}).get("force") == "true"
    src_v = call.db.get("host", row["resident_on"] if row["resident_on"] != NULL_REF
                        else call.pool.master.ref)["software_version"].get("platform_version")
    dst_row = dest_h.db.get("host", dest_h.ref)
    try:
        cmp = policy.compare_platform_versions(dst_row["software_version"].get(
            "platform_version"), src_v)
    except ValueError as e:
        raise internal(str(e)) from None
    if cmp < 0:
        raise Failure("NOT_SUPPORTED_DURING_UPGRADE")
    if copy and row["power_state"] != "Halted" and not force:
        raise Failure("VM_BAD_POWER_STATE", vm, "halted", row["power_state"].lower())
    if not dst_row["enabled"]:
        raise Failure("HOST_DISABLED", dest_h.ref)
    if not force and "cpu_info" not in call.db.schema.classes["pool"].fields:
        reason = _v1_check(row, dst_row["cpu_info"])
        if reason:
            raise Failure("VM_INCOMPATIBLE_WITH_THIS_HOST", vm, dest_h.ref, reason)
    elif not force:
        try:
            reason = policy.check_vm_compatible(row["power_state"], row["last_boot_CPU_flags"],
                                                c.is_hvm(row), dst_row["cpu_info"])
        except featureset.InvalidFeatureString as e:
            raise internal(f"Cpuid_helpers.InvalidFeatureString(\"{e}\")") from None
        if reason:
            raise Failure("VM_INCOMPATIBLE_WITH_THIS_HOST", vm, dest_h.ref, reason)
    need = row["memory_static_max"]
    free = dest_h.world.host_free_memory(dest_h)
    if row["power_state"] in ("Running", "Paused") and need > free:
        raise Failure("HOST_NOT_ENOUGH_FREE_MEMORY", need, free)


def _v1_check(row, dest_info):
    """A pre-Dundee (6.5 SP1) source runs levelling v1 (§12): the VM's 4-word set must be a
    subset of the destination host's old-style ``features`` (which Dundee hosts publish for
    exactly this), vendors equal; live migrations only."""
    if row["power_state"] not in ("Running", "Paused"):
        return None
    flags = row["last_boot_CPU_flags"]
    if "vendor" in flags and flags["vendor"] != dest_info.get("vendor"):
        return policy.REASON_VENDOR
    try:
        vm_words = featureset.parse_oldstyle(flags.get("features", ""))
        host_words = featureset.parse_oldstyle(dest_info.get("features", ""))
    except featureset.InvalidFeatureString:
        return None
    if any(v & ~h for v, h in zip(vm_words, host_words)):
        return policy.REASON_FEATURES
    return None


def assert_can_migrate_cross_pool(call, vm, row, dest, options):
    c.assert_not_template(vm, row)
    _checks(call, vm, row, _dest_host(call, dest), options)


def migrate_send_cross_pool(call, vm, row, dest, live, options):
    from .vm_lifecycle import refresh_allowed, _next_domid
    c.assert_not_template(vm, row)
    if row["current_operations"]:
        raise Failure("OTHER_OPERATION_IN_PROGRESS", "VM", vm, "", "")
    dest_h = _dest_host(call, dest)
    _checks(call, vm, row, dest_h, options)
    src_db, dst_db, world = call.db, dest_h.db, call.world
    with dst_db.lock:
        metrics = row["metrics"]
        if src_db.exists("VM_metrics", metrics):
            dst_db.add("VM_metrics", metrics, dict(src_db.get("VM_metrics", metrics)))
        new = dict(row)
        running = row["power_state"] in ("Running", "Paused")
        new.update(resident_on=dest_h.ref if running else NULL_REF, affinity=dest_h.ref,
                   scheduled_to_be_resident_on=NULL_REF, current_operations={},
                   domid=_next_domid(world, dest_h.ref) if running else -1)
        dst_db.add("VM", vm, new)
        src_host = row["resident_on"]
        src_db.remove("VM", vm)
        if src_db.exists("VM_metrics", metrics):
            src_db.remove("VM_metrics", metrics)
        if src_host != NULL_REF and src_db.exists("host", src_host):
            world.update_host_memory(world.host(src_host))
        # pool_migrate_complete on the destination: the post-move update against that host
        info = dst_db.get("host", dest_h.ref)["cpu_info"]
        upd = policy.updated_vm_flags(new["last_boot_CPU_flags"], c.is_hvm(new), info)
        if upd is not None and new["power_state"] != "Halted":
            dst_db.set("VM", vm, "last_boot_CPU_flags", upd)
        world.update_host_memory(dest_h)
        refresh_allowed(None, vm, world=world, db=dst_db, pool=dest_h.pool)
    return vm
