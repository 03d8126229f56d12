"""VM configuration setters with XAPI's checks (``xapi_vm.ml``, ``xapi_vm_helpers.ml``).

Static settings (vCPU count, memory limits, boot policy...) change only while the VM is
Halted (``VM_BAD_POWER_STATE [vm, "halted", actual]``); memory must keep
``static_min <= dynamic_min <= dynamic_max <= static_max``
(``MEMORY_CONSTRAINT_VIOLATION``); ``VCPUs_at_startup <= VCPUs_max``.
"""
from __future__ import annotations

from ..dispatch import api
from ..errors import Failure


def _halted(call, vm):
    row = call.db.get("VM", vm)
    if row["power_state"] != "Halted":
        raise Failure("VM_BAD_POWER_STATE", vm, "halted", row["power_state"].lower())
    return row


def _memory(call, vm, **changes):
    with call.db.lock:
        row = _halted(call, vm)
        new = {k: changes.get(k, row[k]) for k in ("memory_static_min", "memory_dynamic_min",
                                                     "memory_dynamic_max", "memory_static_max")}
        if not (0 <= new["memory_static_min"] <= new["memory_dynamic_min"]
                <= new["memory_dynamic_max"] <= new["memory_static_max"]):
            raise Failure("MEMORY_CONSTRAINT_VIOLATION",
                          "Memory limits must satisfy: static_min <= dynamic_min <= "
                          "dynamic_max <= static_max")
        call.db.update("VM", vm, **changes)


@api("VM.set_memory_limits")
def set_memory_limits(call, self, static_min, static_max, dynamic_min, dynamic_max):
    _memory(call, self, memory_static_min=static_min, memory_static_max=static_max,
            memory_dynamic_min=dynamic_min, memory_dynamic_max=dynamic_max)


@api("VM.set_memory_static_range")
def set_memory_static_range(call, self, min, max):  # noqa: A002 -- XAPI's parameter names
    _memory(call, self, memory_static_min=min, memory_static_max=max)


@api("VM.set_memory_dynamic_range")
def set_memory_dynamic_range(call, self, min, max):  # noqa: A002
    _memory(call, self, memory_dynamic_min=min, memory_dynamic_max=max)


def _mem_setter(field):
    def setter(call, self, value):
        _memory(call, self, **{field: value})
    return setter


for _f in ("static_min", "static_max", "dynamic_min", "dynamic_max"):
    api(f"VM.set_memory_{_f}")(_mem_setter(f"memory_{_f}"))


@api("VM.set_VCPUs_max")
def set_vcpus_max(call, self, value):
    with call.db.lock:
        row = _halted(call, self)
        if value < 1:
            raise Failure("VM_NO_VCPUS", self)
        if value < row["VCPUs_at_startup"]:
            raise Failure("VALUE_NOT_SUPPORTED", "VCPUs_max", str(value),
                          "VCPUs_max must be >= VCPUs_at_startup")
        call.db.set("VM", self, "VCPUs_max", value)


@api("VM.set_VCPUs_at_startup")
def set_vcpus_at_startup(call, self, value):
    with call.db.lock:
        row = _halted(call, self)
        if value < 1:
            raise Failure("VM_NO_VCPUS", self)
        if value > row["VCPUs_max"]:
            raise Failure("VALUE_NOT_SUPPORTED", "VCPUs_at_startup", str(value),
                          "VCPUs_at_startup must be <= VCPUs_max")
        call.db.set("VM", self, "VCPUs_at_startup", value)


def _setter(field, halted_only):
    def setter(call, self, value):
        with call.db.lock:
            if halted_only:
                _halted(call, self)
            else:
                call.db.get("VM", self)
            call.db.set("VM", self, field, value)
    return setter


# HVM_boot_policy (vm_lifecycle.py) may change while running: Dundee then checks the VM
# against the other featureset (§9); these are plain stored settings.
for _f in ("actions_after_crash", "order", "start_delay", "shutdown_delay", "ha_always_run",
           "ha_restart_priority"):
    api(f"VM.set_{_f}")(_setter(_f, halted_only=False))
for _f in ("HVM_shadow_multiplier", "has_vendor_device"):
    api(f"VM.set_{_f}")(_setter(_f, halted_only=True))
