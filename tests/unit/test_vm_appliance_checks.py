"""The VM_appliance check (``checks/vm_appliance.py``, ``xapi_vm_appliance_lifecycle.ml``):
one function for refusals and ``allowed_operations``."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from xapi_sim.checks import vm_appliance as va
from xapi_sim.classes.vm_appliance import action_groups

STATES = st.sampled_from(["Halted", "Running", "Paused", "Suspended"])
OPS = st.dictionaries(st.text(min_size=1, max_size=8), st.sampled_from(va.OPERATIONS), max_size=2)


@given(OPS, st.lists(STATES, max_size=6))
def test_allowed_operations_are_those_the_check_accepts(current, states):
    row = {"current_operations": current}
    allowed = va.allowed_operations("OpaqueRef:a", row, states)
    assert allowed == [
        op
        for op in va.OPERATIONS
        if va.check_operation_error("OpaqueRef:a", row, op, states) is None
    ]
    if current:
        assert allowed == []
    elif not states:
        assert allowed == []
    else:
        assert ("start" in allowed) == ("Halted" in states)
        assert ("clean_shutdown" in allowed) == ("Running" in states)
        assert (
            ("shutdown" in allowed) == ("hard_shutdown" in allowed) == (set(states) != {"Halted"})
        )


def test_errors_in_xapis_order():
    busy = {"current_operations": {"t": "start"}}
    idle = {"current_operations": {}}
    assert va.check_operation_error("r", busy, "start", []) == (
        "OTHER_OPERATION_IN_PROGRESS",
        ["VM_appliance", "r"],
    )
    assert va.check_operation_error("r", idle, "shutdown", []) == (
        "OPERATION_NOT_ALLOWED",
        ["Appliance has no VMs."],
    )
    assert va.check_operation_error("r", idle, "hard_shutdown", ["Halted"]) == (
        "OPERATION_NOT_ALLOWED",
        ["All VMs in this appliance are halted."],
    )


@given(
    st.dictionaries(st.text(min_size=1, max_size=6), st.integers(-3, 3), max_size=8), st.booleans()
)
def test_action_groups_partition_by_order(orders, ascending):
    groups = action_groups(orders, ascending)
    assert sorted(v for g in groups for v in g) == sorted(orders)
    keys = [orders[g[0]] for g in groups]
    assert all(len({orders[v] for v in g}) == 1 for g in groups)
    assert keys == sorted(set(keys), reverse=not ascending)
