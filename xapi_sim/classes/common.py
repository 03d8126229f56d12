"""Checks shared by the VM and host lifecycle: operations, "can this VM run on that host",
placement.

Mirrors xen-api Dundee ``ocaml/xapi/xapi_vm_helpers.ml`` (``assert_can_boot_here``,
``vm_can_run_on_host``, ``choose_host_for_vm``, ``with_vm_operation``), ``cpuid_helpers.ml``
(``assert_vm_is_compatible``, ``update_cpu_flags``), the RPU version rules of
``helpers.ml`` / ``message_forwarding.ml``, and how xapi runs an operation on an object
(``Helpers.retry_with_global_lock``, ``with_vm_operation``, ``with_host_operation``): the
rules themselves are the pure ``xapi_sim.checks`` modules; this module gathers their facts
from the database, refreshes ``allowed_operations`` and marks ``current_operations``.
"""
from __future__ import annotations

import contextlib
import logging
import time

from ..checks import host as host_checks
from ..checks import pool as pool_checks
from ..checks import vm as vm_checks
from ..checks.operations import OTHER_OPERATION_IN_PROGRESS, added, removed, setify
from ..datamodel import NULL_REF
from ..errors import Failure, internal
from ..levelling import featureset, policy
from ..world import MAX_VCPUS_PER_VM, MAX_VM_MEMORY, MAX_VMS_PER_HOST

log = logging.getLogger(__name__)


def is_hvm(vm_row) -> bool:
    """Dundee decides PV or HVM by ``HVM_boot_policy <> ""`` (Helpers.will_boot_hvm)."""
    return vm_row["HVM_boot_policy"] != ""


def power(vm_row) -> str:
    return vm_row["power_state"]


def runtime_host(call, host_ref):
    """The HostRuntime of a host of the caller's pool (HANDLE_INVALID otherwise)."""
    call.db.get("host", host_ref)
    return call.world.host(host_ref)


def platform_version(call, host_ref) -> str:
    return call.db.get("host", host_ref)["software_version"].get("platform_version", "0.0.0")


def version_cmp(call, a_ref, b_ref) -> int:
    try:
        return policy.compare_platform_versions(platform_version(call, a_ref),
                                                platform_version(call, b_ref))
    except ValueError as e:
        raise internal(str(e)) from None


def rpu(call) -> bool:
    return call.world.rolling_upgrade_in_progress(call.pool)


def highest_version_hosts(call) -> list:
    refs = call.db.refs("host")
    best = []
    for r in refs:
        if not best or version_cmp(call, r, best[0]) > 0:
            best = [r]
        elif version_cmp(call, r, best[0]) == 0:
            best.append(r)
    return best


def assert_highest_version(call, host_ref):
    """During RPU, start_on/resume_on need a host of the highest version in the pool."""
    if rpu(call) and host_ref not in highest_version_hosts(call):
        raise Failure("NOT_SUPPORTED_DURING_UPGRADE")


def check_cpu(call, vm_ref, vm_row, host_ref):
    """``Cpuid_helpers.assert_vm_is_compatible`` against the destination host (§9)."""
    try:
        reason = policy.check_vm_compatible(vm_row["power_state"], vm_row["last_boot_CPU_flags"],
                                            is_hvm(vm_row), call.db.get("host", host_ref)["cpu_info"])
    except featureset.InvalidFeatureString as e:
        raise internal(f"Cpuid_helpers.InvalidFeatureString(\"{e}\")") from None
    if reason:
        raise Failure("VM_INCOMPATIBLE_WITH_THIS_HOST", vm_ref, host_ref, reason)


def update_cpu_flags(call, vm_ref, host_ref):
    """``Cpuid_helpers.update_cpu_flags`` after a migrate/resume (§11)."""
    row = call.db.get("VM", vm_ref)
    try:
        new = policy.updated_vm_flags(row["last_boot_CPU_flags"], is_hvm(row),
                                      call.db.get("host", host_ref)["cpu_info"])
    except featureset.InvalidFeatureString as e:
        raise internal(f"Cpuid_helpers.InvalidFeatureString(\"{e}\")") from None
    if new is not None:
        call.db.set("VM", vm_ref, "last_boot_CPU_flags", new)


def assert_vm_limits(vm_ref, vm_row):
    """Dundee's configuration limits: 32 vCPUs and 1.5 TiB per VM."""
    if vm_row["VCPUs_max"] > MAX_VCPUS_PER_VM:
        raise Failure("VM_TOO_MANY_VCPUS", vm_ref)
    if vm_row["VCPUs_max"] < 1:
        raise Failure("VM_NO_VCPUS", vm_ref)
    if vm_row["memory_static_max"] > MAX_VM_MEMORY:
        raise Failure("MEMORY_CONSTRAINT_VIOLATION",
                      f"memory_static_max <= {MAX_VM_MEMORY}")


def assert_can_boot_here(call, vm_ref, vm_row, host_ref, cpu_check=False, memory=True):
    """``Xapi_vm_helpers.assert_can_boot_here`` (Dundee: no CPU check unless asked)."""
    h = runtime_host(call, host_ref)
    hrow = call.db.get("host", host_ref)
    if h.state != "up" or not call.world.is_live(h):
        raise Failure("HOST_OFFLINE", host_ref)
    if not hrow["enabled"]:
        raise Failure("HOST_DISABLED", host_ref)
    if cpu_check:
        check_cpu(call, vm_ref, vm_row, host_ref)
    ncpu = int(hrow["cpu_info"].get("cpu_count", "0") or 0)
    if ncpu and vm_row["VCPUs_max"] > ncpu:
        raise Failure("HOST_NOT_ENOUGH_PCPUS", vm_row["VCPUs_max"], ncpu)
    if vm_row["resident_on"] != host_ref:
        if len(call.world.resident_vms(h)) >= MAX_VMS_PER_HOST:
            raise Failure("OPERATION_NOT_ALLOWED",
                          f"host has reached its limit of {MAX_VMS_PER_HOST} VMs")
        if memory:
            need = vm_row["memory_static_max"]
            free = call.world.host_free_memory(h)
            if need > free:
                raise Failure("HOST_NOT_ENOUGH_FREE_MEMORY", need, free)


def choose_host(call, vm_ref, vm_row, cpu_check):
    """``choose_host_for_vm``: the affinity host if it qualifies, else the qualifying host
    with most free memory; during RPU only highest-version hosts. NO_HOSTS_AVAILABLE if none.
    Placement retries once without the memory check before giving up (resume, §8)."""
    candidates = call.db.refs("host")
    if rpu(call):
        top = set(highest_version_hosts(call))
        candidates = [r for r in candidates if r in top]
    for memory in (True, False):
        ok = []
        for r in candidates:
            try:
                assert_can_boot_here(call, vm_ref, vm_row, r, cpu_check=cpu_check, memory=memory)
            except Failure:
                continue
            ok.append(r)
        if ok:
            aff = vm_row["affinity"]
            if aff in ok:
                return aff
            return max(ok, key=lambda r: call.world.host_free_memory(call.world.host(r)))
    raise Failure("NO_HOSTS_AVAILABLE")


def assert_resident_host_live(call, vm_row):
    """Operations on a running VM are forwarded to its host: a dead one gives
    HOST_OFFLINE [host] (message_forwarding.ml ``do_op_on`` / ``check_live``)."""
    host = vm_row["resident_on"]
    if host != NULL_REF and call.db.exists("host", host):
        h = call.world.host(host)
        if h.state != "up" or not call.world.is_live(h):
            raise Failure("HOST_OFFLINE", host)



# -- operations on objects: facts, checks, allowed_operations, current_operations ---------

class OperationPolicy:
    """How one world runs operation checks (``World.service``; tests change it live).

    * ``max_wait``: how long an operation refused with ``OTHER_OPERATION_IN_PROGRESS``
      waits for the others to finish before that error is returned. xapi retries under
      ``Helpers.Policy.standard``: up to 2 hours (``max_total_wait = 3600 * 2``), waking
      every 1-20 s; the simulator wakes on every database change instead.
    * ``assume_guest_tools``: the simulator runs no guest OS, so a VM whose
      ``guest_metrics`` names no row is judged as if its guest ran XenServer 7.0 PV tools
      (drivers reported): HVM guests can then be shut down cleanly, suspended and migrated,
      as in a lab where tools are installed. False applies Dundee's rules to a guest
      without drivers (``VM_LACKS_FEATURE_*``, ``VM_MISSING_PV_DRIVERS``).
    """

    def __init__(self, world):
        self.max_wait = 7200.0
        self.assume_guest_tools = True
        # (id(db), class, ref, key) of the operations this process has marked and not yet
        # ended, never taken for stale ones (guarded by that database's lock)
        self.live: set = set()

    @classmethod
    def of(cls, world) -> "OperationPolicy":
        return world.service(cls)


# What a XenServer 7.0 guest agent reports (used only when assume_guest_tools holds).
SIMULATED_GUEST_TOOLS = {
    "PV_drivers_version": {"major": "7", "minor": "0", "micro": "0", "build": "125"},
    "other": {"feature-shutdown": "1", "feature-poweroff": "1", "feature-reboot": "1",
              "feature-suspend": "1", "feature-vcpu-hotplug": "1"},
    "can_use_hotplug_vbd": "unspecified", "can_use_hotplug_vif": "unspecified"}


def _pool_row(db):
    for ref, row in db.tables["pool"].items():
        return ref, row
    return NULL_REF, None


def rpu_in_progress(db) -> bool:
    """``Helpers.rolling_upgrade_in_progress``: the pool's other_config flag."""
    _, row = _pool_row(db)
    return row is not None and "rolling_upgrade_in_progress" in row["other_config"]


def _valid(db, cls, ref) -> bool:
    """``Db.is_valid_ref``."""
    return cls in db.tables and ref in db.tables[cls]


def vm_facts(world, db, row) -> dict:
    """``Xapi_vm_lifecycle.get_info``: what check_operation_error needs beyond the row."""
    gm = db.tables["VM_guest_metrics"].get(row["guest_metrics"]) \
        if "VM_guest_metrics" in db.tables else None
    if gm is None and OperationPolicy.of(world).assume_guest_tools:
        gm = SIMULATED_GUEST_TOOLS
    _, prow = _pool_row(db)
    oc = prow["other_config"] if prow is not None else {}
    resets = []
    for vbd in row.get("VBDs") or ():
        vbd_row = db.tables["VBD"].get(vbd) if "VBD" in db.tables else None
        vdi = db.tables["VDI"].get(vbd_row["VDI"]) if vbd_row is not None else None
        if vdi is not None:
            smc = vdi["sm_config"]
            resets.append((smc.get("on_boot") == "reset", vm_checks.bool_of_assoc("caching", smc)))
    return dict(guest_metrics=gm,
                clone_suspended_vm_enabled=oc.get("allow_clone_suspended_vm") == "true",
                vdis_reset_and_caching=resets,
                appliance_valid=_valid(db, "VM_appliance", row.get("appliance", NULL_REF)),
                protection_policy_valid=_valid(db, "VMPP",
                                               row.get("protection_policy", NULL_REF)))


def host_facts(db, row) -> dict:
    """The facts of ``Xapi_host_helpers.valid_operations`` from the database."""
    metrics = db.tables["host_metrics"].get(row["metrics"])
    plugged = setify(pbd["SR"] for _, pbd in db.tables.get("PBD", {}).items()
                     if pbd["currently_attached"])       # Helpers.get_all_plugged_srs
    clustered = [sr for sr in plugged
                 if db.tables["SR"].get(sr, {}).get("clustered", False)]
    down = any(not m["live"] for _, m in db.tables["host_metrics"].items())
    recovering = [t["name_description"] for _, t in db.tables["task"].items()
                  if t["name_label"] == "SR Recovering" and t["name_description"] in clustered]
    return dict(live=None if metrics is None else metrics["live"], power_on_plugin=True,
                plugged_clustered_srs=clustered, hosts_down=down, recovering_tasks=recovering)


def operation_error(world, db, cls, ref, op, strict=True):
    """The class's ``check_operation_error`` for the row in ``db`` (HANDLE_INVALID if none)."""
    row = db.get(cls, ref)
    if cls == "VM":
        return vm_checks.check_operation_error(ref, row, op, strict=strict,
                                               **vm_facts(world, db, row))
    if cls == "host":
        return host_checks.check_operation_error(ref, row, op, **host_facts(db, row))
    if cls == "pool":
        return pool_checks.check_operation_error(ref, row, op)
    raise ValueError(f"no operation checks wired for {cls}")


def allowed_operations(world, db, cls, ref) -> list:
    """The class's ``update_allowed_operations`` value for the row in ``db``."""
    row = db.get(cls, ref)
    if cls == "VM":
        return vm_checks.allowed_operations(ref, row, rpu=rpu_in_progress(db),
                                            **vm_facts(world, db, row))
    if cls == "host":
        return host_checks.allowed_operations(ref, row, rpu=rpu_in_progress(db),
                                              **host_facts(db, row))
    if cls == "pool":
        return pool_checks.allowed_operations(ref, row)
    raise ValueError(f"no operation checks wired for {cls}")


def refresh_allowed(world, db, cls, ref):
    """``update_allowed_operations``: write the value if it changed (no-op if ``ref`` is
    gone)."""
    with db.lock:
        if ref not in db.tables[cls]:
            return
        ops = allowed_operations(world, db, cls, ref)
        if ops != db.tables[cls][ref]["allowed_operations"]:
            db.set(cls, ref, "allowed_operations", ops)


def refresh_vm_allowed(world, db, vm_ref):
    refresh_allowed(world, db, "VM", vm_ref)


def refresh_host_allowed(world, h):
    """``Xapi_host_helpers.update_allowed_operations`` for a HostRuntime."""
    refresh_allowed(world, h.db, "host", h.ref)


def refresh_pool_allowed(world, db):
    ref, _ = _pool_row(db)
    if ref != NULL_REF:
        refresh_allowed(world, db, "pool", ref)


def refresh_all_allowed(world, db):
    """What xapi's start does (``Cancel_tasks``): drop operations of tasks that no longer
    exist, then ``update_all_allowed_operations`` for VMs, hosts and the pool."""
    with db.lock:
        for cls in ("VM", "host", "pool"):
            for ref in list(db.tables[cls]):
                drop_stale_operations(world, db, cls, ref)
        for cls in ("VM", "host"):
            for ref in list(db.tables[cls]):
                refresh_allowed(world, db, cls, ref)
        refresh_pool_allowed(world, db)


def assert_operation_valid(call, cls, ref, op, strict=True):
    """``assert_operation_valid``: raise the class check's error, if any."""
    err = operation_error(call.world, call.db, cls, ref, op, strict)
    if err is not None:
        raise Failure(err[0], *err[1])


def drop_stale_operations(world, db, cls, ref) -> bool:
    """``Helpers.cancel_tasks`` as xapi's start runs it (``Cancel_tasks``): entries of
    ``current_operations`` whose task does not exist are dropped. Tasks are not persisted,
    so after a restart from ``--state-dir`` every entry a journal caught is stale. Entries
    of operations this process is running are kept. Returns whether anything changed."""
    row = db.tables[cls].get(ref)
    if row is None or not row["current_operations"]:
        return False
    live = OperationPolicy.of(world).live
    keep = {k: v for k, v in row["current_operations"].items()
            if k in db.tables["task"] or (id(db), cls, ref, k) in live}
    if len(keep) == len(row["current_operations"]):
        return False
    db.set(cls, ref, "current_operations", keep)
    return True


def _check_waiting(call, cls, ref, op, strict, wait):
    """``Helpers.retry``: while the check says ``OTHER_OPERATION_IN_PROGRESS``, wait for
    the database to change (releasing its lock) and check again, until the policy's
    ``max_wait``; TASK_CANCELLED if the caller's task is cancelled meanwhile."""
    db = call.db
    deadline = None
    while True:
        err = operation_error(call.world, db, cls, ref, op, strict)
        if err is not None and err[0] == OTHER_OPERATION_IN_PROGRESS and \
                drop_stale_operations(call.world, db, cls, ref):
            refresh_allowed(call.world, db, cls, ref)
            continue
        if err is None or err[0] != OTHER_OPERATION_IN_PROGRESS or not wait:
            return err
        call.check_cancelled()
        now = time.monotonic()
        if deadline is None:
            deadline = now + OperationPolicy.of(call.world).max_wait
        if now >= deadline:
            return err
        db.cond.wait(min(deadline - now, 1.0))


# message_forwarding.ml VM.hard_shutdown / VM.hard_reboot: ``cancel ~ops`` right after
# with_vm_operation's entry, then wait for those tasks.
CANCEL_ON_ENTRY = {
    "hard_shutdown": ("clean_shutdown", "clean_reboot", "hard_reboot", "pool_migrate",
                      "call_plugin", "suspend"),
    "hard_reboot": ("clean_shutdown", "clean_reboot", "pool_migrate", "call_plugin",
                    "suspend"),
}


def _cancel_and_wait(call, vm_ref, key, ops):
    from .task import Tasks
    db = call.db
    victims = [t for t, op in db.get("VM", vm_ref)["current_operations"].items()
               if op in ops and t != key]
    if not victims:
        return
    tasks = Tasks.of(call.world)
    for t in victims:
        if db.exists("task", t):    # Client.Task.cancel
            db.set("task", t, "current_operations", {call.world.ids.ref(): "cancel"})
        tasks.request_cancel(t)
    deadline = time.monotonic() + OperationPolicy.of(call.world).max_wait
    while True:                     # wait_for_tasks: until none is pending
        pending = [t for t in victims
                   if t in db.tables["task"] and db.tables["task"][t]["status"] == "pending"]
        left = deadline - time.monotonic()
        if not pending or left <= 0:
            return
        db.cond.wait(min(left, 1.0))


class Operation:
    """An operation admitted on an object (what ``begin_operation`` returns).

    :meth:`mark` writes ``current_operations[key] = op`` and refreshes
    ``allowed_operations``; xapi does that as soon as the check passes. A handler whose
    body runs atomically under the database lock calls it once its own checks have passed
    (just before its first write), so that a refused call changes nothing (this
    simulator's rule); a long operation (``task.timed``) is marked at once and shows for
    its whole duration."""

    __slots__ = ("call", "cls", "ref", "op", "key", "marked", "recorded")

    def __init__(self, call, cls, ref, op, key):
        self.call, self.cls, self.ref, self.op, self.key = call, cls, ref, op, key
        self.marked = False
        self.recorded = False

    def mark(self):
        """``add_to_current_operations`` + ``update_allowed_operations`` (a host during a
        rolling upgrade records only Miami operations); for VM hard_shutdown/hard_reboot,
        cancel the operations they override and wait for them."""
        if self.marked:
            return
        call, db = self.call, self.call.db
        with db.lock:
            row = db.get(self.cls, self.ref)
            self.recorded = self.cls != "host" or \
                host_checks.records_operation(self.op, rpu_in_progress(db))
            if self.recorded:
                db.set(self.cls, self.ref, "current_operations",
                       added(row["current_operations"], self.key, self.op))
                OperationPolicy.of(call.world).live.add((id(db), self.cls, self.ref, self.key))
            self.marked = True
            refresh_allowed(call.world, db, self.cls, self.ref)
            if self.cls == "VM" and self.op in CANCEL_ON_ENTRY:
                _cancel_and_wait(call, self.ref, self.key, CANCEL_ON_ENTRY[self.op])


def begin_operation(call, cls, ref, op, *, strict=True, wait=True, key=None,
                    mark=True) -> Operation:
    """The entry of ``with_vm_operation`` / ``with_host_operation``: the class's check
    (waiting out operations it may not run with), then -- unless ``mark`` is False --
    :meth:`Operation.mark`."""
    db = call.db
    key = key or call.task or call.world.ids.ref()
    with db.lock:
        err = _check_waiting(call, cls, ref, op, strict, wait)
        if err is not None:
            raise Failure(err[0], *err[1])
        token = Operation(call, cls, ref, op, key)
        if mark:
            try:
                token.mark()
            except BaseException:
                end_operation(call, token, succeeded=False)
                raise
        return token


def end_operation(call, token: Operation, succeeded=True):
    """The exit: remove this call's entry and refresh ``allowed_operations`` (if the object
    still exists). An operation refused before it was marked writes nothing."""
    if not token.marked:
        if succeeded:
            refresh_allowed(call.world, call.db, token.cls, token.ref)
        return
    db = call.db
    with db.lock:
        row = db.tables[token.cls].get(token.ref)
        if row is None:
            return
        if token.recorded:
            OperationPolicy.of(call.world).live.discard((id(db), token.cls, token.ref,
                                                         token.key))
            if token.key in row["current_operations"]:
                db.set(token.cls, token.ref, "current_operations",
                       removed(row["current_operations"], token.key))
        refresh_allowed(call.world, db, token.cls, token.ref)


@contextlib.contextmanager
def with_operation(call, cls, ref, op, *, strict=True, wait=True):
    """``with_vm_operation`` / ``with_host_operation``: ``assert_operation_valid``
    (retried while other operations exclude this one), then the body, which calls
    ``token.mark()`` once its own checks pass; afterwards the entry is removed and
    ``allowed_operations`` refreshed, whatever happened (``Pervasiveext.finally``)."""
    token = begin_operation(call, cls, ref, op, strict=strict, wait=wait, mark=False)
    succeeded = False
    try:
        yield token
        succeeded = True
    finally:
        try:
            end_operation(call, token, succeeded)
        except Exception:  # noqa: BLE001 -- xapi ignores errors of the clean-up (try ... with _)
            log.exception("clearing %s %s of %s %s", token.op, token.key, cls, ref)

NULL = NULL_REF
