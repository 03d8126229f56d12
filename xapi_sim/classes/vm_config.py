"""VM configuration setters with XAPI's checks (``message_forwarding.ml``, ``xapi_vm.ml``,
``xapi_vm_helpers.ml``, ``xapi_vm_memory_constraints.ml``, Dundee).

The setters message forwarding wraps in ``with_vm_operation`` run the VM's operation check
(``xapi_sim/checks/vm.py``) first, so the power state they need comes from
``allowed_power_states``:

* ``set_memory_limits`` and (7.1 on) ``set_memory`` -- ``changing_memory_limits`` (Halted);
* ``set_memory_static_range`` and ``set_memory_static_min``/``_max`` --
  ``changing_static_range`` (Halted);
* ``set_memory_dynamic_range`` and ``set_memory_dynamic_min``/``_max`` --
  ``changing_dynamic_range`` (Halted or Running);
* ``set_VCPUs_max`` -- ``changing_VCPUs`` (Halted);
* ``set_VCPUs_number_live`` -- ``changing_VCPUs_live`` (Running), then the VM's host;
* ``set_HVM_shadow_multiplier`` -- ``changing_shadow_memory`` (Halted);
* ``set_is_a_template true`` -- ``make_into_template`` (Halted).

Memory must keep ``static_min <= dynamic_min <= dynamic_max <= static_max``
(``MEMORY_CONSTRAINT_VIOLATION``, DMC being licensed); vCPU counts must keep
``0 < VCPUs_at_startup <= VCPUs_max`` (``INVALID_VALUE``). ``set_VCPUs_at_startup`` has no
power-state check in Dundee.
"""

from __future__ import annotations

from ..dispatch import api
from ..errors import Failure
from . import common as c

MEMORY_ORDER = (
    "Memory limits must satisfy: static_min \u2264 dynamic_min \u2264 dynamic_max \u2264 static_max"
)
VCPU_ORDER = "VCPU values must satisfy: 0 < VCPUs_at_startup \u2264 VCPUs_max"
VCPU_LIVE_ORDER = "VCPU values must satisfy: 0 < VCPUs \u2264 VCPUs_max"


def _memory(call, vm, op, **changes):
    with call.db.lock, c.with_operation(call, "VM", vm, op) as token:
        row = call.db.get("VM", vm)
        new = {
            k: changes.get(k, row[k])
            for k in (
                "memory_static_min",
                "memory_dynamic_min",
                "memory_dynamic_max",
                "memory_static_max",
            )
        }
        if not (
            0
            <= new["memory_static_min"]
            <= new["memory_dynamic_min"]
            <= new["memory_dynamic_max"]
            <= new["memory_static_max"]
        ):
            raise Failure("MEMORY_CONSTRAINT_VIOLATION", MEMORY_ORDER)
        if "memory_dynamic_min" in changes and op != "changing_static_range":
            changes["memory_target"] = changes["memory_dynamic_min"]
        token.mark()
        call.db.update("VM", vm, **changes)


@api("VM.set_memory_limits")
def set_memory_limits(call, self, static_min, static_max, dynamic_min, dynamic_max):
    _memory(
        call,
        self,
        "changing_memory_limits",
        memory_static_min=static_min,
        memory_static_max=static_max,
        memory_dynamic_min=dynamic_min,
        memory_dynamic_max=dynamic_max,
    )


@api("VM.set_memory")
def set_memory(call, self, value):
    """7.1 on (``xapi_vm.ml`` ``set_memory``): ``set_memory_limits`` with static_min kept and
    static_max, dynamic_min and dynamic_max all ``value``."""
    _memory(
        call,
        self,
        "changing_memory_limits",
        memory_static_max=value,
        memory_dynamic_min=value,
        memory_dynamic_max=value,
    )


@api("VM.set_memory_static_range")
def set_memory_static_range(call, self, min, max):  # noqa: A002 -- XAPI's parameter names
    _memory(call, self, "changing_static_range", memory_static_min=min, memory_static_max=max)


@api("VM.set_memory_dynamic_range")
def set_memory_dynamic_range(call, self, min, max):  # noqa: A002
    _memory(call, self, "changing_dynamic_range", memory_dynamic_min=min, memory_dynamic_max=max)


def _mem_setter(field, op):
    def setter(call, self, value):
        _memory(call, self, op, **{field: value})

    return setter


for _f, _op in (
    ("static_min", "changing_static_range"),
    ("static_max", "changing_static_range"),
    ("dynamic_min", "changing_dynamic_range"),
    ("dynamic_max", "changing_dynamic_range"),
):
    api(f"VM.set_memory_{_f}")(_mem_setter(f"memory_{_f}", _op))


@api("VM.set_VCPUs_max")
def set_vcpus_max(call, self, value):
    with call.db.lock, c.with_operation(call, "VM", self, "changing_VCPUs") as token:
        row = call.db.get("VM", self)
        if value < 1 or value < row["VCPUs_at_startup"]:
            raise Failure("INVALID_VALUE", VCPU_ORDER, str(value))
        token.mark()
        call.db.set("VM", self, "VCPUs_max", value)


@api("VM.set_VCPUs_number_live")
def set_vcpus_number_live(call, self, nvcpu):
    """vCPU hot-plug of a running VM (``message_forwarding.ml``: ``with_vm_operation
    changing_VCPUs_live`` -- Running; a running HVM guest without PV drivers needs
    ``feature-vcpu-hotplug`` -- then ``forward_vm_op``: HOST_OFFLINE when the VM's host is
    not live). xenopsd's ``VM_set_vcpus`` refuses ``n <= 0 || n > vcpu_max`` with
    ``Invalid_vcpus vcpu_max``, which ``xapi_xenops.ml`` ``set_vcpus`` turns into INVALID_VALUE
    carrying VCPUs_max, not the count asked (xenopsd v0.12.3 ``xenops_server.ml``); HVM
    domains hot-plug since xenopsd 0.10 (CP-9366). Then ``VCPUs_at_startup`` and
    ``VM_metrics.VCPUs_number`` are the new count."""
    with call.db.lock, c.with_operation(call, "VM", self, "changing_VCPUs_live") as token:
        row = call.db.get("VM", self)
        c.assert_resident_host_live(call, row)
        if nvcpu <= 0 or nvcpu > row["VCPUs_max"]:
            raise Failure("INVALID_VALUE", VCPU_LIVE_ORDER, str(row["VCPUs_max"]))
        token.mark()
        call.db.set("VM", self, "VCPUs_at_startup", nvcpu)
        if call.db.exists("VM_metrics", row["metrics"]):
            call.db.set("VM_metrics", row["metrics"], "VCPUs_number", nvcpu)


@api("VM.copy_bios_strings")
def copy_bios_strings(call, vm, host):
    """``Xapi_vm_helpers.copy_bios_strings`` (run by the master, no operation check): a VM
    whose ``bios_strings`` are still empty takes the host's and gets the host as its
    ``affinity``; otherwise VM_BIOS_STRINGS_ALREADY_SET. The VM's strings are read before
    the host is (so a bad VM ref is reported first)."""
    with call.db.lock:
        row = call.db.get("VM", vm)
        if row["bios_strings"]:
            raise Failure("VM_BIOS_STRINGS_ALREADY_SET")
        strings = call.db.get("host", host)["bios_strings"]
        call.db.update("VM", vm, bios_strings=dict(strings), affinity=host)


# Constants.settable_vm_bios_string_keys, bios_string_limit_size and generic_bios_strings
# (standard_type11_strings appended), xen-api v24.16.0 ocaml/xapi-consts/constants.ml
SETTABLE_BIOS_KEYS = (
    "bios-vendor",
    "bios-version",
    "system-manufacturer",
    "system-product-name",
    "system-version",
    "system-serial-number",
    "baseboard-manufacturer",
    "baseboard-product-name",
    "baseboard-version",
    "baseboard-serial-number",
    "baseboard-asset-tag",
    "baseboard-location-in-chassis",
    "enclosure-asset-tag",
)
BIOS_STRING_LIMIT = 512
GENERIC_BIOS_STRINGS = {
    **dict.fromkeys(SETTABLE_BIOS_KEYS, ""),
    "bios-vendor": "Xen",
    "system-manufacturer": "Xen",
    "system-product-name": "HVM domU",
    "hp-rombios": "",
    "oem-1": "Xen",
    "oem-2": "MS_VM_CERT/SHA1/bdbeb6e0a816d43fa6d3fe8aaef04c2bad9d3e3d",
}


def assert_valid_bios_strings(value: dict) -> None:
    """``Xapi_vm_helpers.assert_valid_bios_strings``: each key settable, each value 1 to 512
    printable ASCII characters (INVALID_VALUE [key, why]), checked pair by pair."""
    for k, v in value.items():
        if k not in SETTABLE_BIOS_KEYS:
            raise Failure("INVALID_VALUE", k, "Unknown key")
        if not v:
            raise Failure("INVALID_VALUE", k, "Value provided is empty")
        if len(v.encode()) > BIOS_STRING_LIMIT:
            raise Failure(
                "INVALID_VALUE", k, f"{v} has length more than {BIOS_STRING_LIMIT} characters"
            )
        if any(not 32 <= b < 127 for b in v.encode()):
            raise Failure("INVALID_VALUE", k, f"{v} has non-printable ASCII characters")


@api("VM.set_bios_strings")
def set_bios_strings(call, self, value):
    """``Xapi_vm.set_bios_strings`` (8.0 on; run by the master, no operation check): only a
    VM without BIOS strings (VM_BIOS_STRINGS_ALREADY_SET), the pairs checked, then the
    generic strings with the given values in place of theirs."""
    with call.db.lock:
        if call.db.get("VM", self)["bios_strings"]:
            raise Failure("VM_BIOS_STRINGS_ALREADY_SET")
        assert_valid_bios_strings(value)
        call.db.set("VM", self, "bios_strings", {**GENERIC_BIOS_STRINGS, **value})


@api("VM.set_VCPUs_at_startup")
def set_vcpus_at_startup(call, self, value):
    with call.db.lock:
        row = call.db.get("VM", self)
        if value < 1 or value > row["VCPUs_max"]:
            raise Failure("INVALID_VALUE", VCPU_ORDER, str(value))
        call.db.set("VM", self, "VCPUs_at_startup", value)


def _string_of_float(v) -> str:
    """OCaml ``string_of_float`` (``%.12g``, a trailing "." when integral)."""
    text = f"{float(v):.12g}"
    return text + "." if text.lstrip("-").isdigit() else text


@api("VM.set_HVM_shadow_multiplier")
def set_hvm_shadow_multiplier(call, self, value):
    with call.db.lock, c.with_operation(call, "VM", self, "changing_shadow_memory") as token:
        call.db.get("VM", self)
        if value < 1.0:
            raise Failure("INVALID_VALUE", "multiplier", _string_of_float(value))
        token.mark()
        call.db.set("VM", self, "HVM_shadow_multiplier", value)


@api("VM.set_is_a_template")
def set_is_a_template(call, self, value):
    """``true`` is the ``make_into_template`` operation (ha_always_run cleared);
    ``false`` ("install time") only stamps ``VM_metrics.install_time``. Neither refreshes
    ``allowed_operations`` beyond what the operation does (as xapi)."""
    with call.db.lock:
        row = call.db.get("VM", self)
        if value:
            with c.with_operation(call, "VM", self, "make_into_template") as token:
                token.mark()
                call.db.update("VM", self, ha_always_run=False, is_a_template=True)
            return
        if call.db.exists("VM_metrics", row["metrics"]):
            call.db.set("VM_metrics", row["metrics"], "install_time", call.world.clock.now_ts())
        call.db.set("VM", self, "is_a_template", False)


def _setter(field, halted_only):
    def setter(call, self, value):
        with call.db.lock:
            row = call.db.get("VM", self)
            if halted_only and row["power_state"] != "Halted":
                raise Failure("VM_BAD_POWER_STATE", self, "halted", row["power_state"].lower())
            call.db.set("VM", self, field, value)

    return setter


# HVM_boot_policy (vm_lifecycle.py) may change while running: Dundee then checks the VM
# against the other featureset (§9); these are plain stored settings.
for _f in (
    "actions_after_crash",
    "order",
    "start_delay",
    "shutdown_delay",
    "ha_always_run",
    "ha_restart_priority",
):
    api(f"VM.set_{_f}")(_setter(_f, halted_only=False))
api("VM.set_has_vendor_device")(_setter("has_vendor_device", halted_only=True))
