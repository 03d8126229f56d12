"""Spec §21 A (format and arithmetic), Dundee semantics: scenarios 1-6.

The arithmetic is pure (``xapi_sim.levelling.featureset``/``policy``) and is checked at unit
level; every scenario also has a wire-level assertion through XenAPI, where the arithmetic
becomes visible (pool.cpu_info, alerts, INTERNAL_ERROR, VM.pool_migrate).
"""

from __future__ import annotations

import pytest

from xapi_sim.levelling import featureset as fs
from xapi_sim.levelling import policy

ONE_HOST = """
[[host]]
name_label = "xs1"
cpu = "Haswell"

[[vm]]
name_label = "vm"
domain_type = "hvm"
power_state = "Halted"
host = "xs1"
"""

TWO_HOSTS = """
[[host]]
name_label = "xs1"
cpu = "Haswell"

[[host]]
name_label = "xs2"
cpu = "Haswell"

[[pool]]
name_label = "P"
master = "xs1"
members = ["xs2"]

[[vm]]
name_label = "vm"
domain_type = "hvm"
power_state = "Running"
host = "xs1"
"""

BAD_STRINGS = ["foo bar baz", "fgfg-1234", "0123-foo", "foo-0123", "-1234", "1234-"]


# -- 1 ---------------------------------------------------------------------------------------


def test_21_1_round_trip_unit():
    assert fs.format([0, 2, 123]) == "00000000-00000002-0000007b"
    assert fs.parse("00000000-00000002-0000007b") == (0, 2, 123)
    assert fs.format([]) == "" and fs.parse("") == ()
    assert fs.format([0]) == "00000000"
    assert fs.parse("1") == (1,) and fs.format(fs.parse("1")) == "00000001"
    assert fs.format(fs.parse("00000001")) == "00000001"


def test_21_1_round_trip_wire(lab):
    """A host reporting the short word "1" and an empty PV set: the pool level, which xapi
    prints from parsed words, shows "00000001" and "" (single host = its own sets, §4)."""
    L = lab(ONE_HOST)
    L.hw("xs1", features_hvm="1", features_pv="")
    info = L.pool_info()
    assert info["features_hvm"] == "00000001"
    assert info["features_pv"] == ""
    # and a VM start records the printed form
    vm = L.vm("vm")
    L.x.VM.start(vm, False, False)
    assert L.flags(vm) == {"vendor": L.INTEL, "features": "00000001"}


# -- 2 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_STRINGS + ["123456789"])
def test_21_2_parse_failures_unit(bad):
    with pytest.raises(fs.InvalidFeatureString):
        fs.parse(bad)


def test_21_2_parse_failures_wire_internal_error(lab):
    """A malformed VM featureset reaching the check on an API path -> INTERNAL_ERROR [...]."""
    L = lab(TWO_HOSTS)
    x, vm, xs2 = L.x, L.vm("vm"), L.ref("xs2")
    for bad in BAD_STRINGS + ["123456789"]:
        L.set_flags(vm, {"vendor": L.INTEL, "features": bad})
        with L.fails("INTERNAL_ERROR", ...) as ei:
            x.VM.pool_migrate(vm, xs2, {})
        assert len(ei.value.details) == 2, ei.value.details
        with L.fails("INTERNAL_ERROR", ...):
            x.VM.assert_can_migrate(vm, {"host": xs2}, True, {}, {}, {})
        # nothing moved
        assert x.VM.get_resident_on(vm) == L.ref("xs1")


# -- 3 ---------------------------------------------------------------------------------------


def test_21_3_intersect_zero_extension_unit():
    assert fs.intersect([7, 3], [5]) == (5, 0)
    assert fs.intersect([], [1, 2, 3]) == (1, 2, 3)
    assert fs.intersect([1], [1, 0]) == (1, 0)


def test_21_3_intersect_zero_extension_wire(lab):
    """pool level = intersection over hosts: [7,3]∩[5] = [5,0]; []∩[1,2,3] = [1,2,3]."""
    L = lab(TWO_HOSTS)
    L.hw("xs1", features_hvm="00000007-00000003", features_pv="")
    L.hw("xs2", features_hvm="00000005", features_pv="00000001-00000002-00000003")
    info = L.pool_info()
    assert info["features_hvm"] == "00000005-00000000"
    assert info["features_pv"] == "00000001-00000002-00000003"
    L.hw("xs1", features_hvm="00000001")
    L.hw("xs2", features_hvm="00000001-00000000")
    assert L.pool_info()["features_hvm"] == "00000001-00000000"


# -- 4 ---------------------------------------------------------------------------------------


def test_21_4_subset_dundee_vs_head_unit():
    assert fs.is_subset([5], [7, 3], "dundee") is False
    assert fs.is_subset([5], [7, 3], "2018") is True
    assert fs.is_subset([1, 0], [1], "dundee") is True
    assert fs.is_subset([1, 0], [1], "2018") is True
    assert fs.is_strict_subset([1, 0], [1], "dundee") is True
    assert fs.is_strict_subset([1, 0], [1], "2018") is False


def test_21_4_subset_dundee_wire_alert(lab):
    """The Dundee length-sensitive strict subset drives the alerts (§2.3, §3): a host whose
    features_hvm goes from [1] to [1,0] "lost" features: HOST_CPU_FEATURES_DOWN."""
    L = lab(ONE_HOST)
    L.hw("xs1", features_hvm="00000001")
    L.mark()
    L.hw("xs1", features_hvm="00000001-00000000")
    host_uuid = L.x.host.get_uuid(L.ref("xs1"))
    assert L.new_messages() == [
        (
            "HOST_CPU_FEATURES_DOWN",
            3,
            "Host",
            host_uuid,
            "The CPU features of host have changed. Some features have gone away.",
        )
    ]


# -- 5 ---------------------------------------------------------------------------------------


def test_21_5_truncation_in_the_check(lab):
    L = lab(TWO_HOSTS)
    x, vm, h = L.x, L.vm("vm"), L.ref("xs2")
    f9 = L.w9(0xF)
    f10 = L.w9(0xF, 0xFFFFFFFF)
    # unit level
    host_info = {"vendor": L.INTEL, "features_pv": f9, "features_hvm": f9}
    assert (
        policy.check_vm_compatible("Running", {"vendor": L.INTEL, "features": f10}, True, host_info)
        is None
    )
    assert policy.updated_vm_flags({"vendor": L.INTEL, "features": f10}, True, host_info) == {
        "vendor": L.INTEL,
        "features": f9,
    }
    # wire level
    L.hw("xs2", features_hvm=f9)
    L.set_flags(vm, {"vendor": L.INTEL, "features": f10})
    x.VM.pool_migrate(vm, h, {})
    assert x.VM.get_resident_on(vm) == h
    assert L.flags(vm) == {"vendor": L.cpu_info("xs2")["vendor"], "features": f9}


# -- 6 ---------------------------------------------------------------------------------------


def test_21_6_shorter_vm_set_zero_extended(lab):
    L = lab(TWO_HOSTS)
    x, vm, h = L.x, L.vm("vm"), L.ref("xs2")
    f9 = L.w9(0xF)
    host10 = L.w9(0xF, 0x1)
    host_info = {"vendor": L.INTEL, "features_pv": host10, "features_hvm": host10}
    assert (
        policy.check_vm_compatible("Running", {"vendor": L.INTEL, "features": f9}, True, host_info)
        is None
    )
    L.hw("xs2", features_hvm=host10)
    L.set_flags(vm, {"vendor": L.INTEL, "features": f9})
    x.VM.assert_can_migrate(vm, {"host": h}, True, {}, {}, {})
    x.VM.pool_migrate(vm, h, {})
    assert L.flags(vm) == {"vendor": L.INTEL, "features": L.w9(0xF, 0x0)}
