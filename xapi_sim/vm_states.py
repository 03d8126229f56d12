"""VM power states and the operations each allows (pure; the h11 style of one table).

Mirrors the power-state part of xen-api ``ocaml/xapi/xapi_vm_lifecycle.ml``
(``check_operation_error``): which operations are valid in which power state, and the
lower-case state names used in ``VM_BAD_POWER_STATE [vm, expected, actual]``.
"""
from __future__ import annotations

POWER_STATES = ("Halted", "Paused", "Running", "Suspended")

# operation -> power states it is valid in
VALID_IN = {
    "start": ("Halted",),
    "start_on": ("Halted",),
    "clean_shutdown": ("Running",),
    "hard_shutdown": ("Running", "Paused", "Suspended"),
    "clean_reboot": ("Running",),
    "hard_reboot": ("Running", "Paused"),
    "suspend": ("Running",),
    "resume": ("Suspended",),
    "resume_on": ("Suspended",),
    "pause": ("Running",),
    "unpause": ("Paused",),
    "pool_migrate": ("Running", "Paused"),
    "migrate_send": ("Halted", "Running", "Paused", "Suspended"),
    "clone": ("Halted", "Suspended"),
    "copy": ("Halted", "Suspended"),
    "snapshot": ("Halted", "Running", "Paused", "Suspended"),
    "checkpoint": ("Running", "Paused"),
    "export": ("Halted", "Suspended"),
    "destroy": ("Halted", "Suspended"),
    "make_into_template": ("Halted",),
    "provision": ("Halted",),
    "changing_VCPUs": ("Halted",),
    "changing_VCPUs_live": ("Running", "Paused"),
    "changing_static_range": ("Halted",),
    "changing_dynamic_range": ("Halted", "Running", "Paused"),
    "changing_shadow_memory": ("Halted",),
    "changing_shadow_memory_live": ("Running",),
    "send_sysrq": ("Running",),
    "send_trigger": ("Running",),
}

CONTROL_DOMAIN_OPS = ()


def allowed_operations(power_state: str, is_template=False, is_control_domain=False,
                       busy=False) -> list:
    """The ``allowed_operations`` XAPI shows for a VM in ``power_state``."""
    if is_control_domain or busy:
        return []
    if is_template:
        return ["clone", "copy", "export", "provision", "destroy"]
    return [op for op, states in VALID_IN.items() if power_state in states]


def expected_states(op: str) -> str:
    """The comma-separated lower-case list XAPI puts in VM_BAD_POWER_STATE's ``expected``."""
    return ", ".join(s.lower() for s in VALID_IN.get(op, ()))
