"""VM power operations and migration with Dundee's CPU levelling (spec §6-§13).

Mirrors xen-api Dundee ``ocaml/xapi/xapi_vm.ml``, ``message_forwarding.ml`` (host choice,
RPU rules, the order of checks in ``pool_migrate``) and ``xapi_vm_migrate.ml``:

* every operation runs inside :func:`~.common.with_operation` (``with_vm_operation``): the
  VM's ``check_operation_error`` (``xapi_sim/checks/vm.py``) refuses it or marks it in
  ``current_operations`` and refreshes ``allowed_operations`` at entry and exit. The checks
  message forwarding makes *before* that (RPU direction and host version, CPU check of
  ``pool_migrate``) come first, as there.
* ``start``/``start_on`` overwrite ``last_boot_CPU_flags`` with the pool level (pool vendor,
  ``features_hvm`` if ``HVM_boot_policy <> ""`` else ``features_pv``); no CPU check.
* ``start`` waits the VM's ``start_delay``, ``clean_shutdown``/``shutdown`` (and
  ``hard_shutdown`` of a live VM) its ``shutdown_delay``, after the power change and before
  the operation ends (``Xapi_vm_helpers.start_delay``/``shutdown_delay`` in ``xapi_vm.ml``),
  on the world's clock.
* reboots keep the flags (a hard_reboot that finds the VM Halted does a full start).
* ``resume`` places with the CPU filter (``force`` ignored); ``resume_on`` checks the host
  unless forced; both run the post-move update (§11).
* ``pool_migrate``: RPU direction, then CPU check unless ``options:force=true``, then the
  operation check (``strict`` unless forced), then the move, then the post-move update.
* ``migrate_send``/``assert_can_migrate`` intra-pool: version must not decrease (even outside
  an RPU), CPU check unless forced, ``assert_can_boot_here``.
* ``assert_can_boot_here`` and ``get_possible_hosts`` do no CPU check in Dundee.
* ``checkpoint`` records a Suspended snapshot carrying the VM's flags; ``revert`` gives the VM
  the snapshot's power state and flags (§8).
* During a rolling upgrade ``allowed_operations`` are cut to the "Miami" list, but no call
  is refused for being off it (Dundee: informational only, §21 46).
"""

from __future__ import annotations

import time

from ..checks import vm as vm_checks
from ..datamodel import NULL_REF
from ..dispatch import api
from ..errors import Failure
from ..host_guidances import remove_vm_guidance
from ..xapi_start import boot_flags, next_domid
from . import common as c
from . import guest_agent, storage_motion, storage_vm, vm_firmware
from .cross_pool import assert_can_migrate_cross_pool, migrate_send_cross_pool
from .network_vif import copy_vif, network_on_power_change
from .task import timed


def refresh_allowed(call, vm_ref, world=None, db=None, pool=None):
    """Recompute a VM's ``allowed_operations`` (``Xapi_vm_lifecycle.
    update_allowed_operations``; the rules are ``checks/vm.py``). ``pool`` is unused: the
    rolling-upgrade flag is read from the database's pool row."""
    c.refresh_vm_allowed(world or call.world, db or call.db, vm_ref)


def _set_power(call, vm_ref, power_state, host_ref=NULL_REF, new_domain=False, **extra):
    db, world = call.db, call.world
    row = db.get("VM", vm_ref)
    old_host = row["resident_on"]
    live = power_state in ("Running", "Paused")
    changes = dict(
        power_state=power_state,
        resident_on=host_ref if live else NULL_REF,
        scheduled_to_be_resident_on=NULL_REF,
        **extra,
    )
    if not live:
        changes["domid"] = -1
    db.update("VM", vm_ref, **changes)
    storage_vm.on_power_change(call, vm_ref, power_state)
    m = row["metrics"]
    if db.exists("VM_metrics", m):
        mchanges = {"last_updated": call.world.clock.now_ts()}
        if live:
            mchanges.update(
                memory_actual=row["memory_target"] or row["memory_static_max"],
                VCPUs_number=row["VCPUs_at_startup"],
            )
        else:
            mchanges.update(memory_actual=0, VCPUs_number=0)
        if "start_time" in extra.get("_metrics", {}):
            pass
        db.update("VM_metrics", m, **mchanges)
    # guidances the new state settles (XenServer 8 on): a new running domain (xapi_xenops.ml,
    # on its new start time) and a halt (force_state_reset) end both, a suspend the device
    # model's
    if power_state == "Halted" or (new_domain and power_state == "Running"):
        remove_vm_guidance(db, vm_ref, "restart_device_model", "restart_vm")
    elif power_state == "Suspended":
        remove_vm_guidance(db, vm_ref, "restart_device_model")
    network_on_power_change(call, vm_ref)
    guest_agent.on_power_change(call, vm_ref, new_domain)
    refresh_allowed(call, vm_ref)
    vm_firmware.refresh_vtpms(call, vm_ref)
    for h in {old_host, changes["resident_on"]} - {NULL_REF}:
        if db.exists("host", h):
            world.update_host_memory(world.host(h))


def _boot(call, vm_ref, host_ref, paused):
    """What ``Xapi_vm.start`` does on the chosen host: reset flags, build the domain."""
    vm_firmware.at_boot(call, vm_ref)  # firmware, Secure Boot, NVRAM (8.2 on)
    row = call.db.get("VM", vm_ref)
    flags = boot_flags(call.world, call.world.host(host_ref), c.is_hvm(row))
    _set_power(
        call,
        vm_ref,
        "Paused" if paused else "Running",
        host_ref,
        new_domain=True,
        domid=next_domid(call.world, host_ref),
        last_boot_CPU_flags=flags,
    )
    m = row["metrics"]
    if call.db.exists("VM_metrics", m):
        call.db.set("VM_metrics", m, "start_time", call.world.clock.now_ts())


def _vm_delay(call, vm_ref, field):
    """``Xapi_vm_helpers.start_delay`` / ``shutdown_delay``: after the power change, with the
    operation still in ``current_operations``, wait the VM's ``start_delay`` /
    ``shutdown_delay`` seconds. Measured on the world's clock (``clock.advance`` ends it at
    once), after a checkpoint: never under a lock."""
    secs = call.db.get("VM", vm_ref).get(field, 0)
    if secs <= 0:
        return
    clock = call.world.clock
    end = clock.time() + secs
    call.world.txm.checkpoint()
    while (left := end - clock.time()) > 0:
        time.sleep(min(left, 0.05))


def _get(call, vm_ref):
    return call.db.get("VM", vm_ref)


def _op(call, vm, op, strict=True):
    """``with_vm_operation``: the VM's check, then ``current_operations`` for the body."""
    return c.with_operation(call, "VM", vm, op, strict=strict)


@api("VM.start")
@timed("start")
def start(call, vm, start_paused=False, force=False):
    with call.db.lock, _op(call, vm, "start") as op:
        row = _get(call, vm)
        c.assert_vm_limits(vm, row)
        host = c.choose_host(call, vm, row, cpu_check=False)
        c.assert_can_boot_here(call, vm, row, host)  # the host-side memory check
        op.mark()
        _boot(call, vm, host, start_paused)
        _vm_delay(call, vm, "start_delay")


def _assert_not_evacuating(call, host):
    """message_forwarding.ml ``start_on``: no VM start on a host being evacuated."""
    if "evacuate" in call.db.get("host", host)["current_operations"].values():
        raise Failure("HOST_EVACUATE_IN_PROGRESS", host)


@api("VM.start_on")
def start_on(call, vm, host, start_paused=False, force=False):
    """message_forwarding.ml order: RPU host version, host not evacuating, then the VM's
    operation check."""
    with call.db.lock:
        _get(call, vm)
        call.db.get("host", host)
        c.assert_highest_version(call, host)
        _assert_not_evacuating(call, host)
        with _op(call, vm, "start_on") as op:
            row = _get(call, vm)
            c.assert_vm_limits(vm, row)
            c.assert_can_boot_here(call, vm, row, host)
            op.mark()
            _boot(call, vm, host, start_paused)


@api("VM.clean_shutdown")
@timed("clean_shutdown")
def clean_shutdown(call, vm):
    with call.db.lock, _op(call, vm, "clean_shutdown") as op:
        c.assert_resident_host_live(call, _get(call, vm))
        op.mark()
        _set_power(call, vm, "Halted")
        _vm_delay(call, vm, "shutdown_delay")


@api("VM.hard_shutdown")
@timed("hard_shutdown")
def hard_shutdown(call, vm):
    """Cancels the clean operations in progress (message_forwarding.ml ``cancel``), then
    Halted, any suspend image dropped."""
    with call.db.lock, _op(call, vm, "hard_shutdown") as op:
        c.assert_resident_host_live(call, _get(call, vm))
        op.mark()
        was_live = _get(call, vm)["power_state"] in ("Running", "Paused")
        storage_vm.drop_suspend_image(call, vm)
        _set_power(call, vm, "Halted", suspend_VDI=NULL_REF)
        if was_live:  # a Suspended (or Halted) VM has no domain to shut down: no delay
            _vm_delay(call, vm, "shutdown_delay")


@api("VM.shutdown")
@timed("shutdown")
def shutdown(call, vm):
    """``VM.shutdown`` (clean, falling back to hard; a Suspended VM just loses its suspend
    image) ends Halted. Its own operation, ``shutdown``."""
    with call.db.lock, _op(call, vm, "shutdown") as op:
        c.assert_resident_host_live(call, _get(call, vm))
        op.mark()
        was_live = _get(call, vm)["power_state"] in ("Running", "Paused")
        storage_vm.drop_suspend_image(call, vm)
        _set_power(call, vm, "Halted", suspend_VDI=NULL_REF)
        if was_live:  # the clean path (clean_shutdown_with_timeout) ends with the delay
            _vm_delay(call, vm, "shutdown_delay")


def _reboot(call, vm):
    row = _get(call, vm)
    host = row["resident_on"]
    _set_power(call, vm, "Running", host, new_domain=True, domid=next_domid(call.world, host))


@api("VM.clean_reboot")
@timed("clean_reboot")
def clean_reboot(call, vm):
    """Flags untouched: xenopsd reboots from cached metadata (§7)."""
    with call.db.lock, _op(call, vm, "clean_reboot") as op:
        c.assert_resident_host_live(call, _get(call, vm))
        op.mark()
        _reboot(call, vm)


@api("VM.hard_reboot")
@timed("hard_reboot")
def hard_reboot(call, vm):
    """Running or Paused (``allowed_power_states``): otherwise
    ``VM_BAD_POWER_STATE [vm, "paused, running", actual]`` from the operation check. It
    cancels the clean operations in progress; if that left the VM Halted, xapi_vm.ml
    (dundee-lcm 10507df4b3) does a full start, which takes the pool level (§7)."""
    with call.db.lock, _op(call, vm, "hard_reboot") as op:
        c.assert_resident_host_live(call, _get(call, vm))
        op.mark()  # cancels the clean operations in progress
        row = _get(call, vm)
        if row["power_state"] == "Halted":
            c.assert_vm_limits(vm, row)
            host = c.choose_host(call, vm, row, cpu_check=False)
            c.assert_can_boot_here(call, vm, row, host)
            _boot(call, vm, host, False)
        elif row["power_state"] == "Suspended":
            raise Failure("VM_BAD_POWER_STATE", vm, "running", "suspended")
        else:
            _reboot(call, vm)


@api("VM.suspend")
@timed("suspend")
def suspend(call, vm):
    with call.db.lock, _op(call, vm, "suspend") as op:
        c.assert_resident_host_live(call, _get(call, vm))
        op.mark()
        storage_vm.write_suspend_image(call, vm)
        _set_power(call, vm, "Suspended")


@api("VM.pause")
def pause(call, vm):
    with call.db.lock, _op(call, vm, "pause") as op:
        row = _get(call, vm)
        c.assert_resident_host_live(call, row)
        op.mark()
        _set_power(call, vm, "Paused", row["resident_on"], domid=row["domid"])


@api("VM.unpause")
def unpause(call, vm):
    with call.db.lock, _op(call, vm, "unpause") as op:
        row = _get(call, vm)
        c.assert_resident_host_live(call, row)
        op.mark()
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
        extra["last_boot_CPU_flags"] = boot_flags(call.world, call.world.host(host), c.is_hvm(row))
    _set_power(
        call,
        vm,
        "Paused" if start_paused else "Running",
        host,
        domid=next_domid(call.world, host),
        **extra,
    )
    storage_vm.drop_suspend_image(call, vm)


@api("VM.resume")
def resume(call, vm, start_paused=False, force=False):
    """Placement applies the CPU filter and ignores ``force`` (§8): NO_HOSTS_AVAILABLE."""
    with call.db.lock, _op(call, vm, "resume") as op:
        row = _get(call, vm)
        host = c.choose_host(call, vm, row, cpu_check=True)
        c.assert_can_boot_here(call, vm, row, host)  # the host-side memory check
        if not force:
            c.check_cpu(call, vm, row, host)
        op.mark()
        _resume_here(call, vm, host, start_paused, True)


@api("VM.resume_on")
def resume_on(call, vm, host, start_paused=False, force=False):
    """message_forwarding.ml: the RPU host version first, then the operation check."""
    with call.db.lock:
        _get(call, vm)
        call.db.get("host", host)
        c.assert_highest_version(call, host)
        with _op(call, vm, "resume_on") as op:
            row = _get(call, vm)
            if not force:
                c.check_cpu(call, vm, row, host)
            c.assert_can_boot_here(call, vm, row, host)
            op.mark()
            _resume_here(call, vm, host, start_paused, True)


def _force(options) -> bool:
    """``bool_of_string``: "true" forces; anything else (even "yes") does not (§10)."""
    return (options or {}).get("force") == "true"


def _move(call, vm, dest):
    """The move of an intra-pool migration, then ``pool_migrate_complete``: the domain runs
    a new device model there (``restart_device_model`` guidance ends)."""
    row = _get(call, vm)
    _set_power(call, vm, row["power_state"], dest, domid=next_domid(call.world, dest))
    c.update_cpu_flags(call, vm, dest)
    remove_vm_guidance(call.db, vm, "restart_device_model")


@api("VM.pool_migrate")
def pool_migrate(call, vm, host, options):
    """Dundee order: RPU direction, CPU check (unless force), the operation check
    (``strict`` unless forced), the destination's checks, the move, the post-move flag
    update."""
    with call.db.lock:
        row = _get(call, vm)
        call.db.get("host", host)
        source = row["resident_on"]
        if c.rpu(call) and source != NULL_REF and c.version_cmp(call, host, source) < 0:
            raise Failure("NOT_SUPPORTED_DURING_UPGRADE")
        if not _force(options):
            c.check_cpu(call, vm, row, host)
        with _op(call, vm, "pool_migrate", strict=not _force(options)) as op:
            row = _get(call, vm)
            c.assert_can_boot_here(call, vm, row, host)
            c.assert_resident_host_live(call, row)
            op.mark()
            _move(call, vm, host)


def _intra_pool_dest(call, dest):
    host = (dest or {}).get("host", "")
    if call.db.exists("host", host):
        return host
    return None


def _migrate_checks(call, vm, row, host, options, vif_map=None):
    source = row["resident_on"] if row["resident_on"] != NULL_REF else call.pool.master.ref
    if c.version_cmp(call, host, source) < 0:
        raise Failure("NOT_SUPPORTED_DURING_UPGRADE")
    if not _force(options):
        c.check_cpu(call, vm, row, host)
    # do_sr_check:false -- the disks may move (storage_motion.py)
    c.assert_can_boot_here(call, vm, row, host, sr_check=False)
    storage_motion.assert_intra_pool(vif_map)


@api("VM.assert_can_migrate")
def assert_can_migrate(
    call, vm, dest, live=False, vdi_map=None, vif_map=None, options=None, vgpu_map=None
):
    """``Xapi_vm_migrate.assert_can_migrate``: no operation check (message forwarding
    calls it directly)."""
    with call.db.lock:
        row = _get(call, vm)
        host = _intra_pool_dest(call, dest)
        if host is None:
            return assert_can_migrate_cross_pool(call, vm, row, dest, options)
        _migrate_checks(call, vm, row, host, options, vif_map)


@api("VM.migrate_send")
def migrate_send(
    call, vm, dest, live=False, vdi_map=None, vif_map=None, options=None, vgpu_map=None
):
    """``with_vm_operation migrate_send`` around ``assert_can_migrate`` and the move, for
    both destinations (message_forwarding.ml)."""
    with call.db.lock:
        _get(call, vm)
        with _op(call, vm, "migrate_send") as op:
            row = _get(call, vm)
            host = _intra_pool_dest(call, dest)
            if host is None:
                # (checks and the hand-over happen together there: not marked)
                return migrate_send_cross_pool(call, vm, row, dest, live, options)
            _migrate_checks(call, vm, row, host, options, vif_map)
            moves = storage_motion.plan(call, vm, row, host, vdi_map, options)
            if row["power_state"] in ("Running", "Paused"):
                c.assert_resident_host_live(call, row)
            op.mark()
            storage_motion.apply(call, moves)
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


def _copied_fields(call, row):
    """``Xapi_vm_clone.copy_vm_record``: the fields a copy of ``row`` inherits (not the
    uuid, not the ref sets -- devices, snapshots, children), a fresh metrics row, a time."""
    db, world = call.db, call.world
    ts = call.world.clock.now_ts()
    metrics = world.new_row(
        db,
        "VM_metrics",
        memory_actual=0,
        VCPUs_number=0,
        start_time=ts,
        install_time=ts,
        last_updated=ts,
    )
    vm_class = db.schema.classes["VM"]

    def ref_set(k):
        t = vm_class.fields[k].type
        return t.kind == "set" and t.elem is not None and t.elem.kind == "ref"

    fields = {k: v for k, v in row.items() if k != "uuid" and not ref_set(k)}
    return fields, metrics, ts


def _snapshot_record(call, vm, row, new_name, power_state, disk_op="snapshot"):
    """``Xapi_vm_snapshot``/``Xapi_vm_clone.copy_vm_record``: a copy of the VM record marked
    as a snapshot of ``vm``. ``last_boot_CPU_flags`` is copied (it is not in ``do_not_copy``,
    §8); device and snapshot-tree sets start empty; snapshots are templates. Its
    ``allowed_operations`` come from the checks (``force_state_reset``)."""
    db, world = call.db, call.world
    fields, metrics, ts = _copied_fields(call, row)
    fields.update(
        name_label=new_name,
        is_a_template=True,
        is_a_snapshot=True,
        snapshot_of=vm,
        snapshot_time=ts,
        power_state=power_state,
        resident_on=NULL_REF,
        scheduled_to_be_resident_on=NULL_REF,
        domid=-1,
        metrics=metrics,
        current_operations={},
        parent=NULL_REF,
        guest_metrics=NULL_REF,
        allowed_operations=[],
        last_boot_CPU_flags=dict(row["last_boot_CPU_flags"]),
    )
    ref = world.new_row(db, "VM", **fields)
    storage_vm.copy_disks(call, vm, ref, disk_op)
    for vif in list(row["VIFs"]):  # Xapi_vif_helpers.copy ~preserve_mac_address:true
        if db.exists("VIF", vif):
            copy_vif(call, vif, ref, preserve_mac=True)
    refresh_allowed(call, ref)
    return ref


@api("VM.checkpoint")
def checkpoint(call, vm, new_name):
    """A snapshot with the memory image: a Suspended snapshot carrying the VM's flags. The
    VM itself keeps running on its host with its flags unchanged."""
    with call.db.lock, _op(call, vm, "checkpoint") as op:
        row = _get(call, vm)
        if row["power_state"] == "Running":  # forward_vm_op to the VM's host
            c.assert_resident_host_live(call, row)
        op.mark()
        return _snapshot_record(call, vm, row, new_name, "Suspended", "checkpoint")


@api("VM.snapshot")
def snapshot(call, vm, new_name, ignore_vdis=None):
    """A disk-only snapshot (Halted, a template), copying the VM's flags. In Dundee it is
    allowed during an RPU even though it is off the Miami list (§21 46)."""
    with call.db.lock, _op(call, vm, "snapshot") as op:
        op.mark()
        return _snapshot_record(call, vm, _get(call, vm), new_name, "Halted")


@api("VM.revert")
def revert(call, snapshot):
    """Revert the snapshot's VM to it: ``with_vm_operation`` ``revert`` on the snapshot,
    then ``reverting`` on the VM; a live VM's domain is destroyed, then the VM takes the
    snapshot's power state (Suspended for a checkpoint) and its ``last_boot_CPU_flags``
    (§8), so the next resume is checked against the checkpoint's flags. (xapi recreates a
    VM whose snapshot_of is gone; the simulator refuses that case.)"""
    with call.db.lock:
        _get(call, snapshot)
        with _op(call, snapshot, "revert") as op:
            srow = _get(call, snapshot)
            vm = srow["snapshot_of"]
            if not call.db.exists("VM", vm):
                raise Failure(
                    "OPERATION_NOT_ALLOWED",
                    "revert of a snapshot whose VM is gone is not simulated",
                )
            with _op(call, vm, "reverting") as reverting:
                op.mark()
                reverting.mark()
                state = "Suspended" if srow["power_state"] == "Suspended" else "Halted"
                _set_power(call, vm, state, last_boot_CPU_flags=dict(srow["last_boot_CPU_flags"]))


@api("VM.assert_operation_valid")
def assert_operation_valid(call, self, op):
    """``Xapi_vm.assert_operation_valid``: the strict check, at once (no waiting). Values
    of the enum added after Dundee fail to unmarshal there, as xapi's rpc layer says."""
    enum = vm_checks.rules_for(call.db.schema.release).operations  # the release's enum
    if op not in enum:
        raise Failure(
            "INTERNAL_ERROR",
            'Rpc.Runtime_error("Unhandled pattern when '
            f"unmarshalling variant type: found '{op}', expected "
            f'{"|".join(enum)}", S({op}))',
        )
    with call.db.lock:
        c.assert_operation_valid(call, "VM", self, op, strict=True)


@api("VM.update_allowed_operations")
def update_allowed_operations(call, self):
    """``Xapi_vm.update_allowed_operations`` (the VM's; it has no VBDs/VIFs here)."""
    with call.db.lock:
        _get(call, self)
        refresh_allowed(call, self)
