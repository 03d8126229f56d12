"""Calls about a VM's domain that xapi keeps for old clients or answers without xenopsd:
live memory targets, sysrq and triggers, services, boot records, cooperativeness, and the
power-state reset of a VM left behind on a dead host.

Mirrors xen-api ``ocaml/xapi/xapi_vm.ml`` and ``message_forwarding.ml`` (the same in every
release's source, 6.5's ``79e9af82c7^`` to 8.3's ``v24.19.2``, except ``get_boot_record``):

* ``set_memory_target_live`` -- ``with_vm_operation changing_memory_live`` (Running), then
  ``forward_vm_op`` (HOST_OFFLINE when the VM's host is dead); the call itself does nothing
  ("use set_memory_dynamic_range instead").
* ``wait_memory_target_live`` -- ``awaiting_memory_live``, forwarded; xenopsd's balloon in
  the simulator is always at its target, so the wait ends at once.
* ``send_sysrq`` / ``send_trigger`` -- their operation (Running), forwarded, then
  NOT_IMPLEMENTED [``send_sysrq``] / [``send_trigger``]: xapi has not implemented them since
  xenopsd took over domains; so ``add_to_VCPUs_params_live`` (``changing_VCPUs_live``),
  NOT_IMPLEMENTED [``add_to_VCPUs_params_live``]. ``query_services`` -- its operation
  (system domains only), then NOT_IMPLEMENTED [``query_services``].
* ``get_boot_record`` -- ``with_vm_operation get_boot_record`` (Running, Paused or
  Suspended); the VM's record. Before 1.100 (6.5 to 7.1) it was
  ``Helpers.get_boot_record``: the last booted record -- never written here, so the current
  record -- with ``memory_target`` 0 and the live dynamic range.
* ``restart_device_models`` (XenServer 8 on) -- Running only (VM_BAD_POWER_STATE [vm,
  "Running", state], capitalised), then ``VM.pool_migrate`` to the VM's own host with
  ``live=true``: a localhost migration, with its checks; the new device model ends the
  ``restart_device_model`` guidance (``pool_migrate_complete``).
* ``get_cooperative`` (true) and ``host.get_uncooperative_resident_VMs`` (empty): "dummy
  implementations for a deprecated API method", which read nothing -- not even the ref.
* ``power_state_reset`` -- not forwarded ("the whole point is that this can be performed when
  a host is down"), no operation check: CANNOT_RESET_CONTROL_DOMAIN for a control domain; a
  live VM on the master (whose xenopsd would report the domain running) gives DOMAIN_EXISTS,
  one on a live other host HOST_IS_LIVE [host]; otherwise ``force_state_reset`` to Halted:
  ``current_operations`` emptied, devices detached, ``resident_on`` cleared.
"""

from __future__ import annotations

from ..allowed import since
from ..datamodel import NULL_REF
from ..dispatch import api
from ..errors import Failure
from . import common as c
from .vm_lifecycle import _set_power, pool_migrate


def _live_op(call, vm, op, then=None):
    """``with_vm_operation op`` around ``forward_vm_op``: the check, the mark, the VM's host
    (HOST_OFFLINE if it is dead), then ``then()`` there."""
    with call.db.lock, c.with_operation(call, "VM", vm, op) as token:
        row = call.db.get("VM", vm)
        token.mark()
        if row["power_state"] in ("Running", "Paused"):
            c.assert_resident_host_live(call, row)
        if then is not None:
            then()


@api("VM.set_memory_target_live")
def set_memory_target_live(call, self, target):
    _live_op(call, self, "changing_memory_live")


@api("VM.wait_memory_target_live")
def wait_memory_target_live(call, self):
    _live_op(call, self, "awaiting_memory_live")


def _not_implemented(name):
    def fail():
        raise Failure("NOT_IMPLEMENTED", name)

    return fail


@api("VM.send_sysrq")
def send_sysrq(call, vm, key):
    _live_op(call, vm, "send_sysrq", _not_implemented("send_sysrq"))


@api("VM.send_trigger")
def send_trigger(call, vm, trigger):
    _live_op(call, vm, "send_trigger", _not_implemented("send_trigger"))


@api("VM.add_to_VCPUs_params_live")
def add_to_vcpus_params_live(call, self, key, value):
    _live_op(call, self, "changing_VCPUs_live", _not_implemented("add_to_VCPUs_params_live"))


@api("VM.query_services")
def query_services(call, self):
    with call.db.lock, c.with_operation(call, "VM", self, "query_services") as token:
        token.mark()
        raise Failure("NOT_IMPLEMENTED", "query_services")


@api("VM.get_boot_record")
def get_boot_record(call, self):
    with call.db.lock, c.with_operation(call, "VM", self, "get_boot_record") as token:
        row = call.db.get("VM", self)
        token.mark()
        if not since(call.db, "stockholm"):  # Helpers.get_boot_record (before xen-api 1.100)
            return dict(row, memory_target=0)
        return row


@api("VM.restart_device_models")
def restart_device_models(call, self):
    with call.db.lock:
        row = call.db.get("VM", self)
        if row["power_state"] != "Running":
            # Record_util.power_state_to_string: capitalised, unlike the operation checks'
            raise Failure("VM_BAD_POWER_STATE", self, "Running", row["power_state"])
        pool_migrate(call, self, row["resident_on"], {"live": "true"})


@api("VM.get_cooperative")
def get_cooperative(call, self):
    return True


@api("host.get_uncooperative_resident_VMs")
def get_uncooperative_resident_vms(call, self):
    return []


@api("VM.power_state_reset")
def power_state_reset(call, vm):
    db = call.db
    with db.lock:
        row = db.get("VM", vm)
        if row["is_control_domain"]:
            raise Failure("CANNOT_RESET_CONTROL_DOMAIN", vm)
        if row["power_state"] in ("Running", "Paused"):
            resident = row["resident_on"]
            if resident == call.host.ref:
                raise Failure("DOMAIN_EXISTS", vm)
            if resident != NULL_REF and db.exists("host", resident):
                h = call.world.host(resident)
                if h.state == "up" and call.world.is_live(h):
                    raise Failure("HOST_IS_LIVE", resident)
        if row["current_operations"]:
            db.set("VM", vm, "current_operations", {})
        changes = {"requires_reboot": False} if "requires_reboot" in row else {}
        _set_power(call, vm, "Halted", **changes)
