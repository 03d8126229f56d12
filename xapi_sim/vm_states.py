"""VM power states, and ``allowed_operations`` of a plain VM in one (pure).

The operation rules live in :mod:`xapi_sim.checks.vm` (xen-api Dundee
``xapi_vm_lifecycle.ml``); this module only answers "what would ``allowed_operations`` be
for an ordinary VM (not a template, snapshot or control domain, nothing in progress, guest
tools reported) in this power state" for code that builds VMs without a full row, such as
the scenario loader.
"""

from __future__ import annotations

import functools

from .checks import vm as vm_checks
from .datamodel import NULL_REF

POWER_STATES = ("Halted", "Paused", "Running", "Suspended")

_TOOLS = {
    "PV_drivers_version": {"major": "7", "minor": "0", "micro": "0", "build": "125"},
    "other": {},
}


def allowed_operations(
    power_state: str, is_template=False, is_control_domain=False, rpu=False
) -> list:
    """The ``allowed_operations`` xapi computes for an ordinary VM in ``power_state``."""
    return list(_allowed(power_state, bool(is_template), bool(is_control_domain), bool(rpu)))


@functools.cache
def _allowed(power_state, is_template, is_control_domain, rpu) -> tuple:
    row = {
        "power_state": power_state,
        "current_operations": {},
        "is_a_template": is_template,
        "is_a_snapshot": False,
        "is_control_domain": is_control_domain,
        "other_config": {},
        "blocked_operations": {},
        "HVM_boot_policy": "",
        "attached_PCIs": [],
        "VGPUs": [],
        "appliance": NULL_REF,
        "protection_policy": NULL_REF,
    }
    return tuple(vm_checks.allowed_operations(NULL_REF, row, rpu=rpu, guest_metrics=_TOOLS))


def expected_states(op: str) -> str:
    """The comma-separated lower-case list XAPI puts in VM_BAD_POWER_STATE's ``expected``
    (for operations whose allowed states do not depend on the VM)."""
    return vm_checks.expected_states({"is_a_snapshot": False}, op)
