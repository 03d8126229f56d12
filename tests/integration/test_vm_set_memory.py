"""``VM.set_memory`` (7.1 on; ``xapi_vm.ml`` ``set_memory``): ``set_memory_limits`` with
static_min kept and the three others the value -- the operation check first
(``changing_memory_limits``: Halted), then the memory order -- over the XenAPI package.
Before 7.1 the message does not exist."""

from __future__ import annotations

from session_kit import failure, logged_in

WORLD = """
[[host]]
name_label = "h1"
cpu = "Haswell"
version = "{v}"
[[vm]]
name_label = "guest"
[[vm]]
name_label = "up"
power_state = "Running"
host = "h1"
"""

ORDER = (
    "Memory limits must satisfy: static_min \u2264 dynamic_min \u2264 dynamic_max \u2264 static_max"
)
GIB = 1 << 30


def _memory(x, vm):
    r = x.VM.get_record(vm)
    return tuple(
        int(r[f"memory_{k}"])
        for k in ("static_min", "dynamic_min", "dynamic_max", "static_max", "target")
    )


def test_set_memory_sets_three_limits_and_the_target():
    with logged_in(WORLD.format(v="stockholm")) as (w, s):
        x = s.xenapi
        vm = x.VM.get_by_name_label("guest")[0]
        static_min = _memory(x, vm)[0]
        x.VM.set_memory(vm, str(3 * GIB))
        assert _memory(x, vm) == (static_min, 3 * GIB, 3 * GIB, 3 * GIB, 3 * GIB)
        # below static_min: the order, and nothing changed
        assert failure(x.VM.set_memory, vm, str(static_min - 1)) == [
            "MEMORY_CONSTRAINT_VIOLATION",
            ORDER,
        ]
        assert _memory(x, vm)[3] == 3 * GIB
        up = x.VM.get_by_name_label("up")[0]
        assert failure(x.VM.set_memory, up, str(GIB)) == [
            "VM_BAD_POWER_STATE",
            up,
            "halted",
            "running",
        ]


def test_dundee_has_no_set_memory():
    with logged_in(WORLD.format(v="dundee")) as (w, s):
        vm = s.xenapi.VM.get_by_name_label("guest")[0]
        assert failure(s.xenapi.VM.set_memory, vm, str(GIB)) == [
            "MESSAGE_METHOD_UNKNOWN",
            "VM.set_memory",
        ]
