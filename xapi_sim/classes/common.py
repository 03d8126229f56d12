"""Checks shared by the VM and host lifecycle: "can this VM run on that host", placement.

Mirrors xen-api Dundee ``ocaml/xapi/xapi_vm_helpers.ml`` (``assert_can_boot_here``,
``vm_can_run_on_host``, ``choose_host_for_vm``), ``cpuid_helpers.ml``
(``assert_vm_is_compatible``, ``update_cpu_flags``) and the RPU version rules of
``helpers.ml`` / ``message_forwarding.ml``.
"""
from __future__ import annotations

from ..datamodel import NULL_REF
from ..errors import Failure, internal
from ..levelling import featureset, policy
from ..vm_states import expected_states
from ..world import MAX_VCPUS_PER_VM, MAX_VM_MEMORY, MAX_VMS_PER_HOST


def is_hvm(vm_row) -> bool:
    """Dundee decides PV or HVM by ``HVM_boot_policy <> ""`` (Helpers.will_boot_hvm)."""
    return vm_row["HVM_boot_policy"] != ""


def power(vm_row) -> str:
    return vm_row["power_state"]


def assert_power(vm_ref, vm_row, op):
    """VM_BAD_POWER_STATE [vm, expected, actual] unless ``op`` is valid in the VM's state."""
    from ..vm_states import VALID_IN
    if vm_row["power_state"] not in VALID_IN[op]:
        raise Failure("VM_BAD_POWER_STATE", vm_ref, expected_states(op),
                      vm_row["power_state"].lower())


def assert_not_template(vm_ref, vm_row):
    if vm_row["is_a_template"]:
        raise Failure("VM_IS_TEMPLATE", vm_ref)
    if vm_row["is_control_domain"]:
        raise Failure("OPERATION_NOT_ALLOWED", "This operation is not allowed on dom0")


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


def vm_op_allowed(call, vm_ref, vm_row, op):
    assert_not_template(vm_ref, vm_row)
    assert_resident_host_live(call, vm_row)
    if vm_row["current_operations"]:
        cur = next(iter(vm_row["current_operations"].items()))
        raise Failure("OTHER_OPERATION_IN_PROGRESS", "VM", vm_ref, cur[1], cur[0])
    assert_power(vm_ref, vm_row, op)


NULL = NULL_REF
