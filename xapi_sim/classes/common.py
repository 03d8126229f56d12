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
from collections.abc import Iterable, Iterator

from .. import install_storage
from ..allowed import (  # noqa: F401 -- used by classes
    OperationPolicy,
    allowed_operations,
    drop_stale_operations,
    host_facts,
    operation_error,
    refresh_all_allowed,
    refresh_allowed,
    refresh_host_allowed,
    refresh_pool_allowed,
    refresh_vm_allowed,
    rpu_in_progress,
    vm_facts,
)
from ..checks import host as host_checks
from ..checks.operations import OTHER_OPERATION_IN_PROGRESS, OpError, added, removed
from ..datamodel import NULL_REF
from ..dispatch import Call
from ..errors import Failure, internal
from ..levelling import featureset, policy
from ..levelling import rules as lrules
from ..runtime import MAX_VCPUS_PER_VM, MAX_VM_MEMORY, MAX_VMS_PER_HOST, HostRuntime
from ..store import Row
from ..tasks import Tasks

log = logging.getLogger(__name__)


def is_hvm(vm_row: Row) -> bool:
    """Dundee decides PV or HVM by ``HVM_boot_policy <> ""`` (Helpers.will_boot_hvm)."""
    return vm_row["HVM_boot_policy"] != ""


def power(vm_row: Row) -> str:
    return vm_row["power_state"]


def runtime_host(call: Call, host_ref: str) -> HostRuntime:
    """The HostRuntime of a host of the caller's pool (HANDLE_INVALID otherwise)."""
    call.db.get("host", host_ref)
    return call.world.host(host_ref)


def platform_version(call: Call, host_ref: str) -> str:
    return call.db.get("host", host_ref)["software_version"].get("platform_version", "0.0.0")


def version_cmp(call: Call, a_ref: str, b_ref: str) -> int:
    try:
        return policy.compare_platform_versions(
            platform_version(call, a_ref), platform_version(call, b_ref)
        )
    except ValueError as e:
        raise internal(str(e)) from None


def rpu(call: Call) -> bool:
    return call.world.rolling_upgrade_in_progress(call.pool)


def highest_version_hosts(call: Call) -> list[str]:
    refs = call.db.refs("host")
    best: list[str] = []
    for r in refs:
        if not best or version_cmp(call, r, best[0]) > 0:
            best = [r]
        elif version_cmp(call, r, best[0]) == 0:
            best.append(r)
    return best


def assert_highest_version(call: Call, host_ref: str) -> None:
    """During RPU, start_on/resume_on need a host of the highest version in the pool."""
    if rpu(call) and host_ref not in highest_version_hosts(call):
        raise Failure("NOT_SUPPORTED_DURING_UPGRADE")


def pool_rules(call: Call) -> lrules.Rules:
    """The levelling rules of the pool's master (levelling/rules.py)."""
    return lrules.rules(call.pool.master.product.levelling)


def check_cpu(call: Call, vm_ref: str, vm_row: Row, host_ref: str) -> None:
    """``Cpuid_helpers.assert_vm_is_compatible`` against the destination host (§9)."""
    try:
        reason = policy.check_vm_compatible(
            vm_row["power_state"],
            vm_row["last_boot_CPU_flags"],
            is_hvm(vm_row),
            call.db.get("host", host_ref)["cpu_info"],
            rules=pool_rules(call),
        )
    except featureset.InvalidFeatureString as e:
        raise internal(f'Cpuid_helpers.InvalidFeatureString("{e}")') from None
    if reason:
        raise Failure("VM_INCOMPATIBLE_WITH_THIS_HOST", vm_ref, host_ref, reason)


def update_cpu_flags(call: Call, vm_ref: str, host_ref: str) -> None:
    """``Cpuid_helpers.update_cpu_flags`` after a migrate/resume (§11)."""
    row = call.db.get("VM", vm_ref)
    try:
        new = policy.updated_vm_flags(
            row["last_boot_CPU_flags"],
            is_hvm(row),
            call.db.get("host", host_ref)["cpu_info"],
            rules=pool_rules(call),
        )
    except featureset.InvalidFeatureString as e:
        raise internal(f'Cpuid_helpers.InvalidFeatureString("{e}")') from None
    if new is not None:
        call.db.set("VM", vm_ref, "last_boot_CPU_flags", new)


def assert_vm_limits(vm_ref: str, vm_row: Row) -> None:
    """Dundee's configuration limits: 32 vCPUs and 1.5 TiB per VM."""
    if vm_row["VCPUs_max"] > MAX_VCPUS_PER_VM:
        raise Failure("VM_TOO_MANY_VCPUS", vm_ref)
    if vm_row["VCPUs_max"] < 1:
        raise Failure("VM_NO_VCPUS", vm_ref)
    if vm_row["memory_static_max"] > MAX_VM_MEMORY:
        raise Failure("MEMORY_CONSTRAINT_VIOLATION", f"memory_static_max <= {MAX_VM_MEMORY}")


def assert_can_boot_here(
    call: Call,
    vm_ref: str,
    vm_row: Row,
    host_ref: str,
    cpu_check: bool = False,
    memory: bool = True,
    sr_check: bool = True,
) -> None:
    """``Xapi_vm_helpers.assert_can_boot_here`` (Dundee: no CPU check unless asked;
    ``sr_check`` false is its ``do_sr_check:false``, as storage motion uses it)."""
    h = runtime_host(call, host_ref)
    hrow = call.db.get("host", host_ref)
    if h.state != "up" or not call.world.is_live(h):
        raise Failure("HOST_OFFLINE", host_ref)
    if not hrow["enabled"]:
        raise Failure("HOST_DISABLED", host_ref)
    if sr_check:
        install_storage.assert_can_see_srs(call.db, vm_ref, vm_row, host_ref)
    if cpu_check:
        check_cpu(call, vm_ref, vm_row, host_ref)
    ncpu = int(hrow["cpu_info"].get("cpu_count", "0") or 0)
    if ncpu and vm_row["VCPUs_max"] > ncpu:
        raise Failure("HOST_NOT_ENOUGH_PCPUS", vm_row["VCPUs_max"], ncpu)
    if vm_row["resident_on"] != host_ref:
        if len(call.world.resident_vms(h)) >= MAX_VMS_PER_HOST:
            raise Failure(
                "OPERATION_NOT_ALLOWED", f"host has reached its limit of {MAX_VMS_PER_HOST} VMs"
            )
        if memory:
            need = vm_row["memory_static_max"]
            free = call.world.host_free_memory(h)
            if need > free:
                raise Failure("HOST_NOT_ENOUGH_FREE_MEMORY", need, free)


def choose_host(call: Call, vm_ref: str, vm_row: Row, cpu_check: bool) -> str:
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


def on_host(call: Call, host_ref: str) -> HostRuntime:
    """``do_op_on``'s ``check_live``: the call is forwarded to ``host_ref``; HOST_OFFLINE if
    that host is not live (the local host always is). Returns its HostRuntime."""
    call.db.get("host", host_ref)
    h = call.world.host(host_ref)
    if h is not call.host and (h.state != "up" or not call.world.is_live(h)):
        raise Failure("HOST_OFFLINE", host_ref)
    return h


def assert_resident_host_live(call: Call, vm_row: Row) -> None:
    """Operations on a running VM are forwarded to its host: a dead one gives
    HOST_OFFLINE [host] (message_forwarding.ml ``do_op_on`` / ``check_live``)."""
    host = vm_row["resident_on"]
    if host != NULL_REF and call.db.exists("host", host):
        on_host(call, host)


# -- operations on objects: facts, checks, allowed_operations, current_operations ---------


def assert_operation_valid(call: Call, cls: str, ref: str, op: str, strict: bool = True) -> None:
    """``assert_operation_valid``: raise the class check's error, if any."""
    err = operation_error(call.world, call.db, cls, ref, op, strict)
    if err is not None:
        raise Failure(err[0], *err[1])


def _check_waiting(
    call: Call, cls: str, ref: str, op: str, strict: bool, wait: bool
) -> OpError | None:
    """``Helpers.retry``: while the check says ``OTHER_OPERATION_IN_PROGRESS``, wait for
    the database to change (releasing its lock) and check again, until the policy's
    ``max_wait``; TASK_CANCELLED if the caller's task is cancelled meanwhile."""
    db = call.db
    deadline = None
    while True:
        err = operation_error(call.world, db, cls, ref, op, strict)
        if (
            err is not None
            and err[0] == OTHER_OPERATION_IN_PROGRESS
            and drop_stale_operations(call.world, db, cls, ref)
        ):
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
    "hard_shutdown": (
        "clean_shutdown",
        "clean_reboot",
        "hard_reboot",
        "pool_migrate",
        "call_plugin",
        "suspend",
    ),
    "hard_reboot": ("clean_shutdown", "clean_reboot", "pool_migrate", "call_plugin", "suspend"),
}


def _cancel_and_wait(call: Call, vm_ref: str, key: str, ops: Iterable[str]) -> None:
    db = call.db
    victims = [
        t for t, op in db.get("VM", vm_ref)["current_operations"].items() if op in ops and t != key
    ]
    if not victims:
        return
    tasks = Tasks.of(call.world)
    for t in victims:
        if db.exists("task", t):  # Client.Task.cancel
            db.set("task", t, "current_operations", {call.world.ids.ref(): "cancel"})
        tasks.request_cancel(t)
    wait_for_tasks(call, victims, OperationPolicy.of(call.world).max_wait)


def wait_for_tasks(call: Call, tasks: Iterable[str], timeout: float | None = None) -> list[str]:
    """``Helpers.wait_for_tasks`` / ``Tasks.wait_for_all``: until none of ``tasks`` is
    pending, or ``timeout`` seconds have passed (the database lock released while waiting);
    the tasks still pending."""
    db = call.db
    tasks = list(tasks)
    deadline = None if timeout is None else time.monotonic() + timeout
    with db.lock:
        while True:
            table = db.tables["task"]
            pending = [t for t in tasks if t in table and table[t]["status"] == "pending"]
            left = 1.0 if deadline is None else deadline - time.monotonic()
            if not pending or left <= 0:
                return pending
            db.cond.wait(min(left, 1.0))


class Operation:
    """An operation admitted on an object (what ``begin_operation`` returns).

    :meth:`mark` writes ``current_operations[key] = op`` and refreshes
    ``allowed_operations``; xapi does that as soon as the check passes. A handler whose
    body runs atomically under the database lock calls it once its own checks have passed
    (just before its first write), so that a refused call changes nothing (this
    simulator's rule); a long operation (``task.timed``) is marked at once and shows for
    its whole duration."""

    __slots__ = ("call", "cls", "key", "marked", "op", "recorded", "ref")

    def __init__(self, call: Call, cls: str, ref: str, op: str, key: str):
        self.call, self.cls, self.ref, self.op, self.key = call, cls, ref, op, key
        self.marked = False
        self.recorded = False

    def mark(self) -> None:
        """``add_to_current_operations`` + ``update_allowed_operations`` (a host during a
        rolling upgrade records only Miami operations); for VM hard_shutdown/hard_reboot,
        cancel the operations they override and wait for them."""
        if self.marked:
            return
        call, db = self.call, self.call.db
        with db.lock:
            row = db.get(self.cls, self.ref)
            self.recorded = self.cls != "host" or host_checks.records_operation(
                self.op, rpu_in_progress(db)
            )
            if self.recorded:
                db.set(
                    self.cls,
                    self.ref,
                    "current_operations",
                    added(row["current_operations"], self.key, self.op),
                )
                OperationPolicy.of(call.world).live.add((db, self.cls, self.ref, self.key))
            self.marked = True
            refresh_allowed(call.world, db, self.cls, self.ref)
            if self.cls == "VM" and self.op in CANCEL_ON_ENTRY:
                _cancel_and_wait(call, self.ref, self.key, CANCEL_ON_ENTRY[self.op])


def begin_operation(
    call: Call,
    cls: str,
    ref: str,
    op: str,
    *,
    strict: bool = True,
    wait: bool = True,
    key: str | None = None,
    mark: bool = True,
) -> Operation:
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


def end_operation(call: Call, token: Operation, succeeded: bool = True) -> None:
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
            OperationPolicy.of(call.world).live.discard((db, token.cls, token.ref, token.key))
            if token.key in row["current_operations"]:
                db.set(
                    token.cls,
                    token.ref,
                    "current_operations",
                    removed(row["current_operations"], token.key),
                )
        refresh_allowed(call.world, db, token.cls, token.ref)


@contextlib.contextmanager
def with_operation(
    call: Call, cls: str, ref: str, op: str, *, strict: bool = True, wait: bool = True
) -> Iterator[Operation]:
    """``with_vm_operation`` / ``with_host_operation``: ``assert_operation_valid``
    (retried while other operations exclude this one), then the body, which calls
    ``token.mark()`` once its own checks pass; afterwards the entry is removed and
    ``allowed_operations`` refreshed, whatever happened (``Pervasiveext.finally``)."""
    token = begin_operation(call, cls, ref, op, strict=strict, wait=wait, mark=False)
    try:
        yield token
    except BaseException:
        try:
            end_operation(call, token, False)
        except Exception:
            log.exception("clearing %s %s of %s %s", token.op, token.key, cls, ref)
        raise
    # after a success the clean-up is part of the call: if it fails, the call fails and its
    # transaction rolls back (xapi would leave the entry behind for its start to cancel)
    end_operation(call, token, True)


NULL = NULL_REF
