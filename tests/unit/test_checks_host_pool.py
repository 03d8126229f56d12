"""Host and pool operation checks (``xapi_sim/checks/host.py``, ``pool.py``) against
xen-api Dundee ``xapi_host_helpers.ml`` / ``xapi_pool_helpers.ml``, and the shared
helpers of ``checks/operations.py``."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xapi_sim.checks import host, operations, pool
from xapi_sim.datamodel import ENUMS

REF = "OpaqueRef:h"


def hrow(enabled=True, current=None, power_on_mode=""):
    return {"enabled": enabled, "current_operations": current or {}, "power_on_mode": power_on_mode}


def herr(r, op, live=True, **facts):
    return host.check_operation_error(REF, r, op, live=live, **facts)


def test_enums():
    assert set(host.OPERATIONS) == set(host.ALL_OPERATIONS)
    assert set(host.OPERATIONS) <= set(ENUMS["host_allowed_operations"])
    assert set(ENUMS["host_allowed_operations"]) - set(host.OPERATIONS) == {
        "apply_updates",
        "enable",
    }
    assert set(pool.OPERATIONS) <= set(ENUMS["pool_allowed_operations"])


def test_enabled_live_host():
    r = hrow()
    assert herr(r, "reboot") == ("HOST_NOT_DISABLED", [])
    assert herr(r, "shutdown") == ("HOST_NOT_DISABLED", [])
    assert herr(r, "power_on") == ("HOST_IS_LIVE", [REF])
    assert herr(r, "power_on", live=None) == ("HOST_POWER_ON_MODE_DISABLED", [])
    assert herr(r, "power_on", live=False, power_on_plugin=False) == (
        "HOST_POWER_ON_MODE_DISABLED",
        [],
    )
    assert herr(
        hrow(power_on_mode="wake-on-lan"), "power_on", live=False, power_on_plugin=False
    ) == ("XENAPI_MISSING_PLUGIN", ["power-on-host"])
    assert herr(hrow(power_on_mode="wake-on-lan"), "power_on", live=False) is None
    for op in ("provision", "evacuate", "vm_start", "vm_resume", "vm_migrate"):
        assert herr(r, op) is None


@pytest.mark.parametrize(
    "current, op, expected",
    [
        ("evacuate", "provision", "evacuate"),
        ("evacuate", "vm_migrate", "evacuate"),
        ("evacuate", "vm_resume", "evacuate"),
        ("evacuate", "vm_start", None),
        ("evacuate", "reboot", None),
        ("reboot", "shutdown", "reboot"),
        ("shutdown", "reboot", "shutdown"),
        ("reboot", "reboot", None),
        ("vm_migrate", "evacuate", "VM.migrate"),
        ("vm_resume", "shutdown", "VM.resume"),
        ("vm_start", "evacuate", None),
        ("provision", "provision", "provision"),
        ("provision", "vm_start", None),
        ("power_on", "reboot", None),
    ],
)
def test_concurrency_rules(current, op, expected):
    r = hrow(enabled=False, current={"t1": current})
    e = herr(r, op)
    if expected is None:
        assert e is None or e[0] != "OTHER_OPERATION_IN_PROGRESS"
    else:
        assert e == ("OTHER_OPERATION_IN_PROGRESS", ["host", REF, expected])


def test_the_first_error_wins():
    # reboot in progress on an enabled host: the concurrency error is set first
    r = hrow(enabled=True, current={"t1": "reboot"})
    assert herr(r, "shutdown") == ("OTHER_OPERATION_IN_PROGRESS", ["host", REF, "reboot"])
    # the error names the newest operation in progress (xapi's list head)
    r = hrow(enabled=False, current={"t2": "vm_resume", "t1": "vm_migrate"})
    assert herr(r, "evacuate") == ("OTHER_OPERATION_IN_PROGRESS", ["host", REF, "VM.resume"])


def test_clustered_srs():
    r = hrow(enabled=False)
    facts = dict(plugged_clustered_srs=["OpaqueRef:sr"], hosts_down=True)
    assert herr(r, "reboot", **facts) == ("CLUSTERED_SR_DEGRADED", ["OpaqueRef:sr"])
    assert herr(
        r, "reboot", plugged_clustered_srs=["OpaqueRef:sr"], recovering_tasks=["OpaqueRef:sr"]
    ) == ("CLUSTERED_SR_DEGRADED", ["OpaqueRef:sr"])
    assert herr(r, "reboot", hosts_down=True) is None


def test_unknown_operation():
    assert herr(hrow(), "apply_updates") == (
        "INTERNAL_ERROR",
        ["xapi_host_helpers.assert_operation_valid unknown operation: apply_updates"],
    )


def test_allowed_operations_in_xapis_hash_table_order():
    """xe host-param-list on a XenServer 7.0 host prints
    ``VM.migrate; provision; VM.resume; evacuate; VM.start``."""
    assert host.allowed_operations(REF, hrow(), live=True) == [
        "vm_migrate",
        "provision",
        "vm_resume",
        "evacuate",
        "vm_start",
    ]
    assert host.allowed_operations(REF, hrow(enabled=False), live=True) == [
        "vm_migrate",
        "provision",
        "vm_resume",
        "reboot",
        "evacuate",
        "vm_start",
        "shutdown",
    ]
    assert host.allowed_operations(REF, hrow(enabled=False), live=True, rpu=True) == [
        "provision",
        "evacuate",
    ]


def test_rolling_upgrade_records_only_miami_operations():
    assert host.records_operation("reboot", rpu=False)
    assert not host.records_operation("reboot", rpu=True)
    assert host.records_operation("evacuate", rpu=True)


@st.composite
def host_rows(draw):
    current = draw(
        st.dictionaries(
            st.sampled_from(["a", "b", "c"]), st.sampled_from(host.OPERATIONS), max_size=3
        )
    )
    return hrow(
        enabled=draw(st.booleans()),
        current=current,
        power_on_mode=draw(st.sampled_from(["", "wake-on-lan"])),
    )


@settings(max_examples=300, deadline=None)
@given(
    r=host_rows(),
    live=st.sampled_from([True, False, None]),
    rpu=st.booleans(),
    plugin=st.booleans(),
    down=st.booleans(),
)
def test_host_allowed_iff_check_passes(r, live, rpu, plugin, down):
    facts = dict(
        live=live,
        power_on_plugin=plugin,
        hosts_down=down,
        plugged_clustered_srs=["OpaqueRef:sr"] if down else [],
    )
    allowed = host.allowed_operations(REF, r, rpu=rpu, **facts)
    assert sorted(allowed) == sorted(set(allowed))
    for op in host.OPERATIONS:
        ok = host.check_operation_error(REF, r, op, **facts) is None and (
            not rpu or op in host.MIAMI
        )
        assert (op in allowed) is ok


# -- pool -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ha, current, enable, disable",
    [
        (False, [], None, ("HA_NOT_ENABLED", [])),
        (True, [], ("HA_IS_ENABLED", []), None),
        (False, ["ha_enable"], ("HA_ENABLE_IN_PROGRESS", []), ("HA_ENABLE_IN_PROGRESS", [])),
        (True, ["ha_disable"], ("HA_DISABLE_IN_PROGRESS", []), ("HA_DISABLE_IN_PROGRESS", [])),
        (
            True,
            ["ha_disable", "ha_enable"],
            ("HA_ENABLE_IN_PROGRESS", []),
            ("HA_ENABLE_IN_PROGRESS", []),
        ),
    ],
)
def test_pool_rules(ha, current, enable, disable):
    r = {"ha_enabled": ha, "current_operations": {f"t{i}": op for i, op in enumerate(current)}}
    assert pool.check_operation_error("P", r, "ha_enable") == enable
    assert pool.check_operation_error("P", r, "ha_disable") == disable
    assert pool.allowed_operations("P", r) == [
        op for op, e in (("ha_enable", enable), ("ha_disable", disable)) if e is None
    ]


def test_pool_unknown_operation():
    r = {"ha_enabled": False, "current_operations": {}}
    assert pool.check_operation_error("P", r, "cluster_create")[0] == "INTERNAL_ERROR"


# -- shared helpers -------------------------------------------------------------------------


def test_setify_keeps_last_occurrences():
    assert operations.setify(["a", "b", "a", "c", "b"]) == ["a", "c", "b"]


@pytest.mark.parametrize(
    "text, value",
    [("7", 7), ("-3", -3), ("+4", 4), ("0x1f", 31), ("0o17", 15), ("0b101", 5), ("1_000", 1000)],
)
def test_ocaml_int_of_string(text, value):
    assert operations.ocaml_int_of_string(text) == value


@pytest.mark.parametrize("text", ["", "x", "1.5", "_1", "0x", "1 ", "0xg"])
def test_ocaml_int_of_string_refuses(text):
    with pytest.raises(ValueError):
        operations.ocaml_int_of_string(text)


def test_hash_variant_matches_the_compiler():
    # `A is 65; the 223-polynomial wraps to 31 signed bits
    assert operations.hash_variant("A") == 65
    assert operations.hash_variant("ab") == 223 * 97 + 98
    assert -(1 << 30) <= operations.hash_variant("vm_migrate") < (1 << 30)


@given(st.lists(st.text(alphabet="abcdefgh_", min_size=1, max_size=12), unique=True, max_size=20))
def test_hashtbl_order_is_a_permutation(ops):
    assert sorted(operations.hashtbl_fold_order(ops)) == sorted(ops)


def test_added_prepends_like_add_to_map():
    m = operations.added({"t1": "clone"}, "t2", "export")
    assert list(m.items()) == [("t2", "export"), ("t1", "clone")]
    assert operations.removed(m, "t2") == {"t1": "clone"}
