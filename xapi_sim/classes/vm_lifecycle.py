"""VM power operations and migration with Dundee's CPU levelling (spec §6-§13).

Mirrors xen-api Dundee ``ocaml/xapi/xapi_vm.ml``, ``message_forwarding.ml`` (host choice,
RPU rules, the order of checks in ``pool_migrate``) and ``xapi_vm_migrate.ml``:

* ``start``/``start_on`` overwrite ``last_boot_CPU_flags`` with the pool level (pool vendor,
  ``features_hvm`` if ``HVM_boot_policy <> ""`` else ``features_pv``); no CPU check.
* reboots keep the flags (a hard_reboot that finds the VM Halted does a full start).
* ``resume`` places with the CPU filter (``force`` ignored); ``resume_on`` checks the host
  unless forced; both run the post-move update (§11).
* ``pool_migrate``: RPU direction, then CPU check unless ``options:force=true``, then power
  state, then the move, then the post-move update.
* ``migrate_send``/``assert_can_migrate`` intra-pool: version must not decrease (even outside
  an RPU), CPU check unless forced, ``assert_can_boot_here``.
* ``assert_can_boot_here`` and ``get_possible_hosts`` do no CPU check in Dundee.
* ``checkpoint`` records a Suspended snapshot carrying the VM's flags; ``revert`` gives the VM
  the snapshot's power state and flags (§8).
"""
from __future__ import annotations

from ..datamodel import NULL_REF
from ..dispatch import api
from ..errors import Failure
from ..scenario import boot_flags
from ..vm_states import allowed_operations
from . import common as c
from .task import timed

# The "Miami" list that VM allowed_operations are intersected with during an RPU (§13):
# informational only in Dundee.
RPU_ALLOWED = {"assert_operation_valid", "changing_memory_live", "changing_shadow_memory_live",
               "changing_VCPUs_live", "clean_reboot", "clean_shutdown", "clone", "copy", "csvm",
               "destroy", "export", "get_boot_record", "hard_reboot", "hard_shutdown", "import",
               "make_into_template", "pause", "pool_migrate", "power_state_reset", "provision",
               "resume", "resume_on", "send_sysrq", "send_trigger", "start", "start_on",
               "suspend", "unpause", "update_allowed_operations"}


def refresh_allowed(call, vm_ref, world=None, db=None, pool=None):
    """Recompute a VM's ``allowed_operations`` (``update_allowed_operations``)."""
    db = db or call.db
    world = world or call.world
    pool = pool or call.pool
    row = db.get("VM", vm_ref)
    ops = allowed_operations(row["power_state"], row["is_a_template"], row["is_control_domain"],
                             bool(row["current_operations"]))
    if world.rolling_upgrade_in_progress(pool):
        ops = [o for o in ops if o in RPU_ALLOWED]
    if ops != row["allowed_operations"]:
        db.set("VM", vm_ref, "allowed_operations", ops)


def _next_domid(world, host_ref) -> int:
    h = world.host(host_ref)
    n = getattr(h, "domid_seq", None)
    if n is None:
        n = max([r["domid"] for _, r in world.resident_vms(h)] + [0])
    n += 1
    h.domid_seq = n
    return n


def _set_power(call, vm_ref, power_state, host_ref=NULL_REF, **extra):
    db, world = call.db, call.world
    row = db.get("VM", vm_ref)
    old_host = row["resident_on"]
    live = power_state in ("Running", "Paused")
    changes = dict(power_state=power_state, resident_on=host_ref if live else NULL_REF,
                   scheduled_to_be_resident_on=NULL_REF, **extra)
    if not live:
        changes["domid"] = -1
    db.update("VM", vm_ref, **changes)
    m = row["metrics"]
    if db.exists("VM_metrics", m):
        mchanges = {"last_updated": call.world.clock.now_ts()}
        if live:
            mchanges.update(memory_actual=row["memory_target"] or row["memory_static_max"],
                            VCPUs_number=row["VCPUs_at_startup"])
        else:
            mchanges.update(memory_actual=0, VCPUs_number=0)
        if "start_time" in extra.get("_metrics", {}):
            pass
        db.update("VM_metrics", m, **mchanges)
    refresh_allowed(call, vm_ref)
    for h in {old_host, changes["resident_on"]} - {NULL_REF}:
        if db.exists("host", h):
            world.update_host_memory(world.host(h))


def _boot(call, vm_ref, host_ref, paused):
    """What ``Xapi_vm.start`` does on the chosen host: reset flags, build the domain."""
    row = call.db.get("VM", vm_ref)
    flags = boot_flags(call.world, call.world.host(host_ref), c.is_hvm(row))
    _set_power(call, vm_ref, "Paused" if paused else "Running", host_ref,
               domid=_next_domid(call.world, host_ref), last_boot_CPU_flags=flags)
    m = row["metrics"]
    if call.db.exists("VM_metrics", m):
        call.db.set("VM_metrics", m, "start_time", call.world.clock.now_ts())


def _get(call, vm_ref):
    return call.db.get("VM", vm_ref)


@api("VM.start")
@timed("start")
def start(call, vm, start_paused=False, force=False):
    with call.db.lock:
        row = _get(call, vm)
        c.vm_op_allowed(call, vm, row, "start")
        c.assert_vm_limits(vm, row)
        host = c.choose_host(call, vm, row, cpu_check=False)
        c.assert_can_boot_here(call, vm, row, host)   # the host-side memory check
        _boot(call, vm, host, start_paused)


@api("VM.start_on")
def start_on(call, vm, host, start_paused=False, force=False):
    with call.db.lock:
        row = _get(call, vm)
        call.db.get("host", host)
        c.vm_op_allowed(call, vm, row, "start_on")
        c.assert_vm_limits(vm, row)
        c.assert_highest_version(call, host)
        c.assert_can_boot_here(call, vm, row, host)
        _boot(call, vm, host, start_paused)


@api("VM.clean_shutdown")
@timed("clean_shutdown")
def clean_shutdown(call, vm):
    with call.db.lock:
        c.vm_op_allowed(call, vm, _get(call, vm), "clean_shutdown")
        _set_power(call, vm, "Halted")


@api("VM.hard_shutdown", "VM.shutdown")
@timed("hard_shutdown")
def hard_shutdown(call, vm):
    """``VM.shutdown`` (clean, falling back to hard) ends the same way: Halted, any
    suspend image dropped."""
    with call.db.lock:
        c.vm_op_allowed(call, vm, _get(call, vm), "hard_shutdown")
        _set_power(call, vm, "Halted", suspend_VDI=NULL_REF)


def _reboot(call, vm):
    row = _get(call, vm)
    host = row["resident_on"]
    _set_power(call, vm, "Running", host, domid=_next_domid(call.world, host))


@api("VM.clean_reboot")
@timed("clean_reboot")
def clean_reboot(call, vm):
    """Flags untouched: xenopsd reboots from cached metadata (§7)."""
    with call.db.lock:
        c.vm_op_allowed(call, vm, _get(call, vm), "clean_reboot")
        _reboot(call, vm)


@api("VM.hard_reboot")
@timed("hard_reboot")
def hard_reboot(call, vm):
    """Running or Paused only (``allowed_power_states``): Halted is VM_BAD_POWER_STATE;
    Suspended is VM_BAD_POWER_STATE [vm, "running", "suspended"] as in dundee-lcm. (That
    branch's full start applies only to a VM found Halted mid-operation, which cannot
    happen here: operations are atomic.)"""
    with call.db.lock:
        row = _get(call, vm)
        c.assert_not_template(vm, row)
        if row["power_state"] == "Suspended":
            raise Failure("VM_BAD_POWER_STATE", vm, "running", "suspended")
        c.vm_op_allowed(call, vm, row, "hard_reboot")
        _reboot(call, vm)


@api("VM.suspend")
@timed("suspend")
def suspend(call, vm):
    with call.db.lock:
        c.vm_op_allowed(call, vm, _get(call, vm), "suspend")
        _set_power(call, vm, "Suspended")


@api("VM.pause")
def pause(call, vm):
    with call.db.lock:
        row = _get(call, vm)
        c.vm_op_allowed(call, vm, row, "pause")
        _set_power(call, vm, "Paused", row["resident_on"], domid=row["domid"])


@api("VM.unpause")
def unpause(call, vm):
    with call.db.lock:
        row = _get(call, vm)
        c.vm_op_allowed(call, vm, row, "unpause")
        _set_power(call, vm, "Running", row["resident_on"], domid=row["domid"])


def _resume_here(call, vm, host, start_paused, force):
    """``Xapi_vm.resume`` on the chosen host: CPU check unless forced, post-move update."""
    row = _get(call, vm)
    if not force:
        c.check_cpu(call, vm, row, host)
    c.update_cpu_flags(call, vm, host)
    extra = {}
    if "cpu_info" not in call.db.schema.classes["pool"].fields:
        # pre-Dundee message forwarding re-based a resumed VM on its host (§6 contrast)
        extra["last_boot_CPU_flags"] = boot_flags(call.world, call.world.host(host),
                                                  c.is_hvm(row))
    _set_power(call, vm, "Paused" if start_paused else "Running", host,
               domid=_next_domid(call.world, host), **extra)


@api("VM.resume")
def resume(call, vm, start_paused=False, force=False):
    """Placement applies the CPU filter and ignores ``force`` (§8): NO_HOSTS_AVAILABLE."""
    with call.db.lock:
        row = _get(call, vm)
        c.vm_op_allowed(call, vm, row, "resume")
        host = c.choose_host(call, vm, row, cpu_check=True)
        c.assert_can_boot_here(call, vm, row, host)   # the host-side memory check
        _resume_here(call, vm, host, start_paused, force)


@api("VM.resume_on")
def resume_on(call, vm, host, start_paused=False, force=False):
    with call.db.lock:
        row = _get(call, vm)
        call.db.get("host", host)
        c.vm_op_allowed(call, vm, row, "resume_on")
        c.assert_highest_version(call, host)
        if not force:
            c.check_cpu(call, vm, row, host)
        c.assert_can_boot_here(call, vm, row, host)
        _resume_here(call, vm, host, start_paused, True)


def _force(options) -> bool:
    """``bool_of_string``: "true" forces; anything else (even "yes") does not (§10)."""
    return (options or {}).get("force") == "true"


def _move(call, vm, dest):
    row = _get(call, vm)
    _set_power(call, vm, row["power_state"], dest, domid=_next_domid(call.world, dest))
    c.update_cpu_flags(call, vm, dest)


@api("VM.pool_migrate")
def pool_migrate(call, vm, host, options):
    """Dundee order: RPU direction, CPU check (unless force), power/operation checks,
    the move, the post-move flag update."""
    with call.db.lock:
        row = _get(call, vm)
        call.db.get("host", host)
        source = row["resident_on"]
        if c.rpu(call) and source != NULL_REF and c.version_cmp(call, host, source) < 0:
            raise Failure("NOT_SUPPORTED_DURING_UPGRADE")
        if not _force(options):
            c.check_cpu(call, vm, row, host)
        c.vm_op_allowed(call, vm, row, "pool_migrate")
        c.assert_can_boot_here(call, vm, row, host)
        _move(call, vm, host)


def _intra_pool_dest(call, dest):
    host = (dest or {}).get("host", "")
    if call.db.exists("host", host):
        return host
    return None


def _migrate_checks(call, vm, row, host, options):
    source = row["resident_on"] if row["resident_on"] != NULL_REF else call.pool.master.ref
    if c.version_cmp(call, host, source) < 0:
        raise Failure("NOT_SUPPORTED_DURING_UPGRADE")
    if not _force(options):
        c.check_cpu(call, vm, row, host)
    c.assert_can_boot_here(call, vm, row, host)


@api("VM.assert_can_migrate")
def assert_can_migrate(call, vm, dest, live=False, vdi_map=None, vif_map=None, options=None,
                       vgpu_map=None):
    with call.db.lock:
        row = _get(call, vm)
        host = _intra_pool_dest(call, dest)
        if host is None:
            from .cross_pool import assert_can_migrate_cross_pool
            return assert_can_migrate_cross_pool(call, vm, row, dest, options)
        c.assert_not_template(vm, row)
        _migrate_checks(call, vm, row, host, options)


@api("VM.migrate_send")
def migrate_send(call, vm, dest, live=False, vdi_map=None, vif_map=None, options=None,
                 vgpu_map=None):
    with call.db.lock:
        row = _get(call, vm)
        host = _intra_pool_dest(call, dest)
        if host is None:
            from .cross_pool import migrate_send_cross_pool
            return migrate_send_cross_pool(call, vm, row, dest, live, options)
        c.vm_op_allowed(call, vm, row, "migrate_send")
        _migrate_checks(call, vm, row, host, options)
        if row["power_state"] in ("Running", "Paused"):
            _move(call, vm, host)
        else:
            call.db.set("VM", vm, "affinity", host)
            if row["power_state"] == "Suspended":
                c.update_cpu_flags(call, vm, host)
        return vm


@api("VM.assert_can_boot_here")
def assert_can_boot_here(call, self, host):
    """Dundee: no CPU check; during RPU the host must run the master's version (§13)."""
    with call.db.lock:
        row = _get(call, self)
        call.db.get("host", host)
        if c.rpu(call) and c.version_cmp(call, host, call.pool.master.ref) != 0:
            raise Failure("VM_HOST_INCOMPATIBLE_VERSION", host, self)
        c.assert_can_boot_here(call, self, row, host)


@api("VM.get_possible_hosts")
def get_possible_hosts(call, vm):
    with call.db.lock:
        row = _get(call, vm)
        out = []
        for h in call.db.refs("host"):
            try:
                c.assert_can_boot_here(call, vm, row, h)
            except Failure:
                continue
            out.append(h)
        return out


# -- checkpoints and revert (spec §8: snapshots copy last_boot_CPU_flags; a revert to a
# checkpoint makes the VM Suspended with the checkpoint's flags) ----------------------------

_SNAPSHOT_OPS = ["revert", "destroy", "export", "clone", "copy"]


def _copied_fields(call, row):
    """``Xapi_vm_clone.copy_vm_record``: the fields a copy of ``row`` inherits (not the
    uuid, not the ref sets -- devices, snapshots, children), a fresh metrics row, a time."""
    db, world = call.db, call.world
    ts = call.world.clock.now_ts()
    metrics = world.new_row(db, "VM_metrics", memory_actual=0, VCPUs_number=0,
                            start_time=ts, install_time=ts, last_updated=ts)
    vm_class = db.schema.classes["VM"]

    def ref_set(k):
        t = vm_class.fields[k].type
        return t.kind == "set" and t.elem is not None and t.elem.kind == "ref"
    fields = {k: v for k, v in row.items() if k != "uuid" and not ref_set(k)}
    return fields, metrics, ts


def _snapshot_record(call, vm, row, new_name, power_state):
    """``Xapi_vm_snapshot``/``Xapi_vm_clone.copy_vm_record``: a copy of the VM record marked
    as a snapshot of ``vm``. ``last_boot_CPU_flags`` is copied (it is not in ``do_not_copy``,
    §8); device and snapshot-tree sets start empty; snapshots are templates."""
    db, world = call.db, call.world
    fields, metrics, ts = _copied_fields(call, row)
    fields.update(name_label=new_name, is_a_template=True, is_a_snapshot=True,
                  snapshot_of=vm, snapshot_time=ts, power_state=power_state,
                  resident_on=NULL_REF, scheduled_to_be_resident_on=NULL_REF, domid=-1,
                  metrics=metrics, current_operations={}, parent=NULL_REF,
                  guest_metrics=NULL_REF, allowed_operations=list(_SNAPSHOT_OPS),
                  last_boot_CPU_flags=dict(row["last_boot_CPU_flags"]))
    return world.new_row(db, "VM", **fields)


@api("VM.checkpoint")
def checkpoint(call, vm, new_name):
    """A snapshot with the memory image: a Suspended snapshot carrying the VM's flags. The
    VM itself keeps running on its host with its flags unchanged."""
    with call.db.lock:
        row = _get(call, vm)
        c.vm_op_allowed(call, vm, row, "checkpoint")
        return _snapshot_record(call, vm, row, new_name, "Suspended")


@api("VM.snapshot")
def snapshot(call, vm, new_name, ignore_vdis=None):
    """A disk-only snapshot (Halted, a template), copying the VM's flags. In Dundee it is
    allowed during an RPU even though it is off the Miami list (§21 46)."""
    with call.db.lock:
        row = _get(call, vm)
        c.assert_not_template(vm, row)
        if row["current_operations"]:
            cur = next(iter(row["current_operations"].items()))
            raise Failure("OTHER_OPERATION_IN_PROGRESS", "VM", vm, cur[1], cur[0])
        return _snapshot_record(call, vm, row, new_name, "Halted")


def _copy_vm(call, vm, new_name):
    """``Xapi_vm_clone``: a new Halted VM from a Halted or Suspended VM or template; the
    flags are copied (§8)."""
    db, world = call.db, call.world
    row = _get(call, vm)
    if row["power_state"] not in ("Halted", "Suspended"):
        raise Failure("VM_BAD_POWER_STATE", vm, "halted, suspended", row["power_state"].lower())
    fields, metrics, _ = _copied_fields(call, row)
    fields.update(name_label=new_name, is_a_template=row["is_a_template"],
                  is_default_template=False, is_a_snapshot=False, snapshot_of=NULL_REF,
                  power_state="Halted", resident_on=NULL_REF, domid=-1, metrics=metrics,
                  current_operations={}, parent=vm, guest_metrics=NULL_REF,
                  scheduled_to_be_resident_on=NULL_REF,
                  other_config={k: v for k, v in row["other_config"].items()
                                if k != "default_template"},
                  last_boot_CPU_flags=dict(row["last_boot_CPU_flags"]))
    ref = world.new_row(db, "VM", **fields)
    refresh_allowed(call, ref)
    return ref


@api("VM.clone")
def clone(call, vm, new_name):
    with call.db.lock:
        if _get(call, vm)["is_control_domain"]:
            raise Failure("OPERATION_NOT_ALLOWED", "This operation is not allowed on dom0")
        return _copy_vm(call, vm, new_name)


@api("VM.revert")
def revert(call, snapshot):
    """Revert the snapshot's VM to it: a live VM's domain is destroyed, then the VM takes
    the snapshot's power state (Suspended for a checkpoint) and its ``last_boot_CPU_flags``
    (§8), so the next resume is checked against the checkpoint's flags."""
    with call.db.lock:
        srow = _get(call, snapshot)
        vm = srow["snapshot_of"]
        if not srow["is_a_snapshot"] or not call.db.exists("VM", vm):
            raise Failure("OPERATION_NOT_ALLOWED", "revert is only allowed on a snapshot")
        row = _get(call, vm)
        if row["current_operations"]:
            cur = next(iter(row["current_operations"].items()))
            raise Failure("OTHER_OPERATION_IN_PROGRESS", "VM", vm, cur[1], cur[0])
        state = "Suspended" if srow["power_state"] == "Suspended" else "Halted"
        _set_power(call, vm, state, last_boot_CPU_flags=dict(srow["last_boot_CPU_flags"]))


@api("VM.destroy")
def destroy(call, self):
    with call.db.lock:
        row = _get(call, self)
        if row["is_control_domain"]:
            raise Failure("OPERATION_NOT_ALLOWED", "This operation is not allowed on dom0")
        if row["power_state"] not in ("Halted", "Suspended") and not row["is_a_template"]:
            raise Failure("VM_BAD_POWER_STATE", self, "halted", row["power_state"].lower())
        if call.db.exists("VM_metrics", row["metrics"]):
            call.db.remove("VM_metrics", row["metrics"])
        call.db.remove("VM", self)


@api("VM.set_HVM_boot_policy")
def set_hvm_boot_policy(call, self, value):
    call.db.get("VM", self)
    call.db.set("VM", self, "HVM_boot_policy", value)
