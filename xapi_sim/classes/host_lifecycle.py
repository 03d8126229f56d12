"""Host lifecycle: disable/enable, reboot, shutdown, evacuation, agent restart, destroy.

Mirrors xen-api Dundee ``ocaml/xapi/xapi_host.ml``, ``xapi_host_helpers.ml`` and
``message_forwarding.ml`` as re-checked in the levelling review (§10, §11 there):

* ``reboot``/``shutdown``/``evacuate`` run as host operations (``with_host_operation``):
  the host's ``valid_operations`` (``xapi_sim/checks/host.py``: operations in progress,
  ``HOST_NOT_DISABLED []`` for reboot/shutdown) refuses them or marks them in
  ``current_operations`` (during a rolling upgrade only evacuate is recorded); then the
  host must be live (``HOST_OFFLINE``). ``disable``/``enable`` refresh the host's
  ``allowed_operations``. For reboot/shutdown, VMs still running are handled as the OS
  shutdown hook does (evacuate what can move, shut down the rest). A reboot runs a full
  xapi start.
* ``restart_agent`` runs a xapi start (toolstack restart): ``cpu_info`` and the pool level
  are recomputed; a host disabled by the API comes back enabled.
* ``enable``: ``HOST_STILL_BOOTING`` before the first start, ``HOST_DISABLED_UNTIL_REBOOT``.
* evacuation plans ignore CPU in Dundee; execution uses ``pool_migrate`` without force, so an
  incompatible placement fails mid-evacuation with ``VM_INCOMPATIBLE_WITH_THIS_HOST``.
* ``destroy``: ``HOST_IS_LIVE``, ``HOST_HAS_RESIDENT_VMS``; then the pool level is recomputed.
"""

from __future__ import annotations

import logging
from typing import Any

from ..datamodel import NULL_REF
from ..dispatch import api
from ..errors import Failure
from ..sessions import create_session
from . import common as c
from .vm_lifecycle import _set_power, pool_migrate

log = logging.getLogger(__name__)


def _host(call, ref):
    row = call.db.get("host", ref)
    return call.world.host(ref), row


def _live(call, h):
    return h.state == "up" and call.world.is_live(h)


@api("host.disable")
def disable(call, host):
    with call.db.lock:
        h, row = _host(call, host)
        call.db.set("host", host, "enabled", False)
        h.user_disabled = True
        c.refresh_host_allowed(call.world, h)


@api("host.enable")
def enable(call, host):
    with call.db.lock:
        h, row = _host(call, host)
        if not h.started_once:
            raise Failure("HOST_STILL_BOOTING")
        if h.disabled_until_reboot:
            raise Failure("HOST_DISABLED_UNTIL_REBOOT", host)
        oc = row["other_config"]
        changes: dict[str, Any] = {"enabled": True}
        if "MAINTENANCE_MODE" in oc:
            changes["other_config"] = {k: v for k, v in oc.items() if k != "MAINTENANCE_MODE"}
        call.db.update("host", host, **changes)
        h.user_disabled = False
        c.refresh_host_allowed(call.world, h)


def evacuation_plan(call, host):
    """{vm: target host} or {vm: Failure}: Dundee ``compute_evacuation_plan_no_wlb``.

    Targets are other live, enabled hosts of equal or higher version with memory for the
    VM (memory is accounted as VMs are planned); the CPU is not considered. A VM whose
    ``pool_migrate`` check fails (``get_operation_error ~strict:true``: a Paused VM, an
    operation in progress...) gets that error instead of its placement.
    """
    world = call.world
    h = world.host(host)
    free = {}
    targets = []
    for r in call.db.refs("host"):
        if r == host:
            continue
        other = world.host(r)
        if not _live(call, other) or not call.db.get("host", r)["enabled"]:
            continue
        if c.version_cmp(call, r, host) < 0:
            continue
        targets.append(r)
        free[r] = world.host_free_memory(other)
    plan = {}
    for vm, row in world.resident_vms(h):
        if row["power_state"] not in ("Running", "Paused"):
            continue
        need = row["memory_static_max"]
        ok = [t for t in targets if free[t] >= need]
        if not ok:
            plan[vm] = Failure("NO_HOSTS_AVAILABLE", vm)
            continue
        t = max(ok, key=lambda r: free[r])
        free[t] -= need
        plan[vm] = t
    for vm in plan:
        err = c.operation_error(world, call.db, "VM", vm, "pool_migrate", strict=True)
        if err is not None:
            plan[vm] = Failure(err[0], *err[1])
    return plan


@api("host.assert_can_evacuate")
def assert_can_evacuate(call, host):
    with call.db.lock:
        _host(call, host)
        errors = [f for f in evacuation_plan(call, host).values() if isinstance(f, Failure)]
        if errors:
            raise Failure("CANNOT_EVACUATE_HOST", "|".join(",".join(f.description) for f in errors))


@api("host.get_vms_which_prevent_evacuation")
def get_vms_which_prevent_evacuation(call, self):
    with call.db.lock:
        _host(call, self)
        return {
            vm: f.description
            for vm, f in evacuation_plan(call, self).items()
            if isinstance(f, Failure)
        }


def _execute_plan(call, host, op):
    plan = evacuation_plan(call, host)
    for target in plan.values():
        if isinstance(target, Failure):
            raise target
    op.mark()
    for vm, target in plan.items():
        pool_migrate(call, vm, target, {})


@api("host.evacuate")
def evacuate(call, host, network=NULL_REF, evacuate_batch_size=0):
    with call.db.lock:
        h, row = _host(call, host)
        with c.with_operation(call, "host", host, "evacuate") as op:
            if not _live(call, h):
                raise Failure("HOST_OFFLINE", host)
            _execute_plan(call, host, op)


def _stop_vms(call, h):
    """The shutdown hook: evacuate what can move, clean-shutdown the rest."""
    plan = evacuation_plan(call, h.ref)
    for vm, target in plan.items():
        if isinstance(target, Failure):
            continue
        try:
            pool_migrate(call, vm, target, {})
        except Failure as f:
            # as xapi's shutdown hook: a VM that cannot move is shut down below instead
            log.info("%s stays and is shut down: %s", vm, f.description)
    for vm, _row in call.world.resident_vms(h):
        _set_power(call, vm, "Halted")


@api("host.reboot")
def reboot(call, host):
    with call.db.lock:
        h, row = _host(call, host)
        with c.with_operation(call, "host", host, "reboot") as op:
            if not _live(call, h):  # do_op_on the host
                raise Failure("HOST_OFFLINE", h.ref)
            op.mark()
            _stop_vms(call, h)
            call.world.host_down(h)
            call.world.host_boot(h)


@api("host.shutdown")
def shutdown(call, host):
    with call.db.lock:
        h, row = _host(call, host)
        with c.with_operation(call, "host", host, "shutdown") as op:
            if not _live(call, h):
                raise Failure("HOST_OFFLINE", h.ref)
            op.mark()
            _stop_vms(call, h)
            call.world.host_down(h)


@api("host.restart_agent")
def restart_agent(call, host):
    with call.db.lock:
        h, row = _host(call, host)
        if not _live(call, h):
            raise Failure("HOST_OFFLINE", host)
        call.world.xapi_start(h, system_boot=False)


@api("host.destroy")
def destroy(call, self):
    with call.db.lock:
        h, row = _host(call, self)
        if h.is_master:
            raise Failure("HOST_CANNOT_DESTROY_SELF", self)
        if _live(call, h):
            raise Failure("HOST_IS_LIVE", self)
        if call.world.resident_vms(h):
            raise Failure("HOST_HAS_RESIDENT_VMS", self)
        call.world.forget_host(h)
        call.world.remove_host(h)


@api("host.migrate_receive")
def migrate_receive(call, host, network, options):
    """The ``dest`` map for VM.migrate_send, issued by the destination pool."""
    with call.db.lock:
        h, row = _host(call, host)
        call.db.get("network", network)
        sess = create_session(call, call.world.user, "migrate_receive", pool=True)
        master = call.pool.master
        return {
            "SM": f"{master.url}services/SM?session_id={sess}",
            "host": host,
            "xenops": f"{h.url}services/xenops?session_id={sess}",
            "session_id": sess,
            "master": master.url,
        }
