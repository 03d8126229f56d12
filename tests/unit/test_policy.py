"""Levelling decisions: pool level, alerts, VM flags and checks (spec §3-§11, §13, §18, §21)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xapi_sim.levelling import cpus, policy
from xapi_sim.levelling import featureset as fs
from xapi_sim.levelling.policy import REASON_FEATURES, REASON_VENDOR

INTEL, AMD = "GenuineIntel", "AuthenticAMD"
ZERO8 = "-00000000" * 8


def nine(first: str, extra: str | None = None) -> str:
    """⟨x⟩ (9 words, first = x) or ⟨x⟩+y (a 10th word) as in spec §21."""
    return f"{int(first, 16):08x}{ZERO8}" + (f"-{int(extra, 16):08x}" if extra else "")


def host(pv: str, hvm: str, vendor: str = INTEL, cpu_count: int = 1, sockets: int = 1) -> dict:
    return {
        "cpu_count": str(cpu_count),
        "socket_count": str(sockets),
        "vendor": vendor,
        "features": "ffffffff-ffffffff-ffffffff-ffffffff",
        "features_pv": pv,
        "features_hvm": hvm,
    }


# --- §4 pool level -------------------------------------------------------------------------


def test_one_host_gives_its_own_values():
    h = host("0000000f", "000000ff", cpu_count=8, sockets=2)
    assert policy.pool_cpu_info([h]) == {
        "features_hvm": "000000ff",
        "features_pv": "0000000f",
        "socket_count": "2",
        "cpu_count": "8",
        "vendor": INTEL,
    }


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ("0000000a", "0000000f", "0000000a"),
        ("00000002", "00000001", "00000000"),
        ("ffffffff", "ffffffff-ffffffff", "ffffffff-00000000"),
        ("01230123-5a5a5a5a", "ffff1111-a5a56666", "01230101-00004242"),
    ],
)
def test_pool_vectors(a, b, expected):
    pool = policy.pool_cpu_info([host(a, a), host(b, b)])
    assert pool["features_pv"] == pool["features_hvm"] == expected


def test_two_pool_featuresets_scenario_7():
    pool = policy.pool_cpu_info(
        [
            host(nine("f"), nine("ff"), cpu_count=4, sockets=1),
            host(nine("7"), nine("7f"), vendor=INTEL, cpu_count=8, sockets=2),
        ]
    )
    assert pool == {
        "features_hvm": nine("7f"),
        "features_pv": nine("7"),
        "socket_count": "3",
        "cpu_count": "12",
        "vendor": INTEL,
    }
    assert list(pool) == ["features_hvm", "features_pv", "socket_count", "cpu_count", "vendor"]
    assert "features" not in pool


def test_pre_dundee_or_fresh_hosts_are_ignored_scenario_9():
    a = host("0000000f", "000000ff", cpu_count=1)
    old = {
        "vendor": AMD,
        "cpu_count": "64",
        "socket_count": "4",
        "features": "ffffffff-ffffffff-ffffffff-ffffffff",
    }
    for b in (old, {}):
        assert policy.pool_cpu_info([a, b]) == policy.pool_cpu_info([a])
        assert policy.pool_cpu_info([b, a]) == policy.pool_cpu_info([a])


@pytest.mark.parametrize("missing", policy.POOL_REQUIRED_KEYS)
def test_any_missing_key_skips_the_host(missing):
    b = host("0", "0", vendor=AMD, cpu_count=5)
    del b[missing]
    assert policy.pool_cpu_info([host("f", "ff"), b]) == policy.pool_cpu_info([host("f", "ff")])


def test_pv_only_host_zeroes_the_hvm_level_in_dundee_scenario_10():
    pool = policy.pool_cpu_info([host("0000000f", "000000ff"), host("0000000f", "00000000")])
    assert pool["features_hvm"] == "00000000"


def test_empty_strings_are_identity_not_zero():
    pool = policy.pool_cpu_info([host("0000000f", ""), host("00000003", "000000ff")])
    assert pool["features_hvm"] == "000000ff" and pool["features_pv"] == "00000003"


def test_no_valid_host_gives_the_initial_map():
    assert policy.pool_cpu_info([]) == {
        "vendor": "",
        "socket_count": "0",
        "cpu_count": "0",
        "features_pv": "",
        "features_hvm": "",
    }
    assert policy.pool_cpu_info([{}, {"vendor": INTEL}])["cpu_count"] == "0"


def test_last_valid_host_vendor_wins():
    assert policy.pool_cpu_info([host("1", "1", INTEL), host("1", "1", AMD)])["vendor"] == AMD
    assert (
        policy.pool_cpu_info([host("1", "1", AMD), host("1", "1", INTEL), {"vendor": "Other"}])[
            "vendor"
        ]
        == INTEL
    )


def test_malformed_values_raise():
    with pytest.raises(fs.InvalidFeatureString):
        policy.pool_cpu_info([host("zz", "1")])
    bad = host("1", "1")
    bad["cpu_count"] = "many"
    with pytest.raises(ValueError):
        policy.pool_cpu_info([bad])


def test_real_nehalem_pool_matches_the_observed_xcpng_pool():
    obs = {o["id"]: o for o in cpus.OBSERVED_OUTPUTS}["xcpng-pool-2socket-nehalem-class"]
    sets = cpus.host_featuresets("Nehalem", era="xs-xen4.13-2019", word_count=15)
    member = {
        "vendor": INTEL,
        "cpu_count": "8",
        "socket_count": "1",
        "features_pv": sets["features_pv"],
        "features_hvm": sets["features_hvm"],
    }
    pool = policy.pool_cpu_info([member, dict(member)])
    assert pool["features_pv"] == obs["strings"]["features_pv"]
    assert pool["features_hvm"] == obs["strings"]["features_hvm"]
    assert (pool["cpu_count"], pool["socket_count"]) == ("16", "2")


# --- §3 / §18 alerts -----------------------------------------------------------------------


def test_features_change_vectors():
    x = nine("f")
    assert policy.features_change(None, x) is None
    assert policy.features_change("", x) is None
    assert policy.features_change(x, x) is None
    assert policy.features_change(nine("f"), nine("7")) == (True, False)
    assert policy.features_change(nine("7"), nine("f")) == (False, True)
    assert policy.features_change(nine("3"), nine("6")) == (True, True)


def test_spurious_down_in_dundee_scenario_15():
    x = nine("f")
    assert policy.features_change(x, x + "-00000000") == (True, False)
    assert policy.features_change(x, x + "-00000000", "2018") is None
    old, new = {"features_hvm": x}, {"features_hvm": x + "-00000000"}
    assert policy.host_alert(old, new) == (
        "HOST_CPU_FEATURES_DOWN",
        3,
        "The CPU features of host have changed. Some features have gone away.",
    )
    assert policy.host_alert(old, new, semantics="2018") is None


def test_shrinking_by_a_zero_word_is_up_in_dundee():
    x = nine("f")
    assert policy.features_change(x + "-00000000", x) == (False, True)
    assert policy.host_alert({"features_hvm": x + "-00000000"}, {"features_hvm": x}) == (
        "HOST_CPU_FEATURES_UP",
        5,
        "The CPU features of host have changed. Some features were added.",
    )


def test_host_alerts_scenarios_11_to_14():
    old = {"features_hvm": nine("ff"), "features_pv": nine("f")}
    assert policy.host_alert(old, {"features_hvm": nine("7f")}) == (
        "HOST_CPU_FEATURES_DOWN",
        3,
        "The CPU features of host have changed. Some features have gone away.",
    )
    assert policy.host_alert(old, {"features_hvm": nine("1ff")})[:2] == ("HOST_CPU_FEATURES_UP", 5)
    assert policy.host_alert(old, {"features_hvm": nine("1fe")}) == (
        "HOST_CPU_FEATURES_DOWN",
        3,
        "The CPU features of host have changed. Some features have gone away. "
        "Some features were added.",
    )
    # PV-only change, first boot, RPU
    assert policy.host_alert(old, {"features_hvm": nine("ff"), "features_pv": nine("1")}) is None
    assert policy.host_alert({}, {"features_hvm": nine("1")}) is None
    assert policy.host_alert(None, {"features_hvm": nine("1")}) is None
    assert policy.host_alert(old, {"features_hvm": nine("7f")}, rpu_in_progress=True) is None


def test_pool_alerts():
    old, lower, higher = ({"features_hvm": nine(x)} for x in ("7f", "3f", "ff"))
    assert policy.pool_alert(old, lower, 2, False) == (
        "POOL_CPU_FEATURES_DOWN",
        5,
        "The pool-level CPU features have changed. Some features have gone away.",
    )
    assert policy.pool_alert(old, higher, 3, False) == (
        "POOL_CPU_FEATURES_UP",
        5,
        "The pool-level CPU features have changed. Some features were added.",
    )
    assert policy.pool_alert(old, lower, 1, False) is None
    assert policy.pool_alert(old, lower, 2, True) is None
    assert policy.pool_alert({"features_hvm": ""}, lower, 2, False) is None
    assert policy.pool_alert(old, dict(old), 2, False) is None


def test_unknown_semantics_rejected():
    with pytest.raises(ValueError):
        policy.features_change("1", "1", "head")


# --- §6 VM start ---------------------------------------------------------------------------


def test_vm_boot_flags_scenario_24():
    pool = {
        "features_hvm": nine("7f"),
        "features_pv": nine("7"),
        "socket_count": "2",
        "cpu_count": "2",
        "vendor": "V",
    }
    assert policy.vm_boot_flags(pool, is_hvm=False) == {"vendor": "V", "features": nine("7")}
    assert policy.vm_boot_flags(pool, is_hvm=True) == {"vendor": "V", "features": nine("7f")}
    with pytest.raises(KeyError):
        policy.vm_boot_flags({"vendor": "V"}, True)


# --- §9 compatibility check ---------------------------------------------------------------

H = host(nine("f"), nine("f"))


def check(flags, target=H, hvm=True, state="Running"):
    return policy.check_vm_compatible(state, flags, hvm, target)


def test_halted_always_passes_scenario_28():
    assert check({"vendor": AMD, "features": "ffffffff"}, state="Halted") is None
    assert check({"vendor": AMD, "features": "not hex"}, state="Halted") is None


@pytest.mark.parametrize("state", ["Running", "Paused", "Suspended"])
def test_non_halted_states_are_checked(state):
    assert check({"vendor": AMD}, state=state) == REASON_VENDOR


def test_vendor_mismatch_first_scenario_29():
    assert check({"vendor": AMD, "features": nine("ff")}) == REASON_VENDOR
    assert REASON_VENDOR == "VM last booted on a host which had a CPU from a different vendor."


def test_features_missing_on_host():
    assert check({"vendor": INTEL, "features": nine("1f")}) == REASON_FEATURES
    assert REASON_FEATURES == (
        "VM last booted on a CPU with features this host's CPU does not have."
    )


def test_truncation_scenario_5():
    assert check({"vendor": INTEL, "features": nine("f", "ffffffff")}) is None


def test_shorter_vm_set_is_zero_extended_scenario_6():
    target = host(nine("f", "1"), nine("f", "1"))
    assert check({"vendor": INTEL, "features": nine("f")}, target) is None


def test_missing_vm_keys_skip_their_test_scenarios_30_to_32():
    weak = host(nine("1"), nine("1"))
    assert check({"vendor": INTEL}, weak) is None
    assert check({"features": nine("f")}) is None
    assert check({"features": nine("1f")}) == REASON_FEATURES
    assert check({}, weak) is None


def test_host_without_new_keys_passes_scenario_45():
    old_host = {"vendor": AMD, "cpu_count": "4", "features": "ffffffff-ffffffff-ffffffff-ffffffff"}
    assert check({"vendor": INTEL, "features": nine("ff")}, old_host) is None
    assert check({"vendor": INTEL}, {"features_hvm": nine("f")}) is None
    assert check({"vendor": INTEL}, {"vendor": INTEL, "features_pv": nine("f")}) is None


def test_pv_hvm_key_selection_scenario_34():
    target = host(nine("f"), nine("1"))
    flags = {"vendor": INTEL, "features": nine("f")}
    assert check(flags, target, hvm=False) is None
    assert check(flags, target, hvm=True) == REASON_FEATURES


def test_malformed_features_raise():
    with pytest.raises(fs.InvalidFeatureString):
        check({"vendor": INTEL, "features": "0123-foo"})
    with pytest.raises(fs.InvalidFeatureString):
        check({"vendor": INTEL}, host("zz", "zz"))


def test_old_style_vm_is_upgraded_before_the_check_scenario_44():
    u = cpus.host_cpu_info("Haswell")
    flags = {"vendor": INTEL, "features": "7fbee3ff-bfebfbff-00000001-2c100800"}
    assert check(flags, u) is None
    assert check({"vendor": INTEL, "features": ""}, u) is None
    # identity mode (cba67d5457): untranslated v1 words can fail
    assert (
        policy.check_vm_compatible(
            "Running", {"features": "ffffffff-ffffffff-0-0"}, True, u, mode="identity"
        )
        == REASON_FEATURES
    )


# --- §11 post-move update ------------------------------------------------------------------


def test_truncated_flags_are_restored_with_the_host_vendor_scenario_5():
    target = host(nine("f"), nine("f"), vendor="NewVendor")
    assert policy.updated_vm_flags(
        {"vendor": INTEL, "features": nine("f", "ffffffff")}, True, target
    ) == {"vendor": "NewVendor", "features": nine("f")}


def test_extended_flags_do_not_gain_host_bits_scenario_6():
    target = host(nine("f", "1"), nine("f", "1"))
    assert policy.updated_vm_flags({"vendor": INTEL, "features": nine("f")}, True, target) == {
        "vendor": INTEL,
        "features": nine("f", "0"),
    }


def test_vendor_only_rewritten_when_features_change():
    target = host(nine("1"), nine("1"), vendor=AMD)
    assert policy.updated_vm_flags({"vendor": INTEL, "features": nine("f")}, True, target) is None
    assert policy.updated_vm_flags({"features": nine("f")}, True, target) is None


def test_empty_or_vendor_only_flags_take_the_host_set_scenarios_30_32():
    target = host(nine("7"), nine("7f"), vendor=AMD)
    assert policy.updated_vm_flags({}, True, target) == {"vendor": AMD, "features": nine("7f")}
    assert policy.updated_vm_flags({"vendor": INTEL}, False, target) == {
        "vendor": AMD,
        "features": nine("7"),
    }


def test_force_moves_only_resize_scenario_33():
    target = host(nine("1", "1"), nine("1", "1"))
    assert policy.updated_vm_flags({"vendor": INTEL, "features": nine("ff")}, True, target) == {
        "vendor": INTEL,
        "features": nine("ff", "0"),
    }


def test_old_vm_gets_the_landing_hosts_tail_scenario_44():
    u = cpus.host_cpu_info("Haswell")
    v1 = "7fbee3ff-bfebfbff-00000001-2c100800"
    new = policy.updated_vm_flags({"vendor": INTEL, "features": v1}, True, u)
    host_set = fs.parse(u["features_hvm"])
    words = fs.parse(new["features"])
    assert new["vendor"] == INTEL
    assert words[4:] == host_set[4:]
    assert words[:4] == fs.upgrade_oldstyle(fs.parse_oldstyle(v1), host_set, True)
    assert policy.updated_vm_flags(new, True, u) is None  # idempotent


def test_host_without_new_keys_changes_nothing():
    assert (
        policy.updated_vm_flags(
            {"features": "1-2-3-4"}, True, {"vendor": INTEL, "features": "1-2-3-4"}
        )
        is None
    )


# --- §13 platform versions -----------------------------------------------------------------


def test_platform_versions():
    assert policy.parse_platform_version("2.0.0") == (2, 0, 0)
    assert policy.parse_platform_version(None) == (0, 0, 0)
    assert policy.host_platform_version({}) == (0, 0, 0)
    assert policy.host_platform_version({"platform_version": "2.1.0"}) == (2, 1, 0)
    assert policy.compare_platform_versions("2.1.0", "1.9.0") == 1
    assert policy.compare_platform_versions("1.9.0", "2.1.0") == -1
    assert policy.compare_platform_versions("2.1.0", "2.1.0") == 0
    assert policy.compare_platform_versions("1.10.0", "1.9.0") == 1
    with pytest.raises(ValueError):
        policy.compare_platform_versions("2.1", "2.1.0")
    with pytest.raises(ValueError):
        policy.parse_platform_version("2.x.0")


# --- a realistic Dundee pool (cpus + policy) ----------------------------------------------


def test_haswell_vm_cannot_move_to_a_tsx_less_host_scenario_25():
    haswell = cpus.host_cpu_info("Haswell")
    no_tsx = cpus.host_cpu_info("Haswell-noTSX")
    flags = policy.vm_boot_flags(policy.pool_cpu_info([haswell]), is_hvm=True)
    assert check(flags, no_tsx) == REASON_FEATURES
    pool = policy.pool_cpu_info([haswell, no_tsx])
    assert pool["features_hvm"] == no_tsx["features_hvm"]
    assert policy.pool_alert({"features_hvm": haswell["features_hvm"]}, pool, 2, False)[0] == (
        "POOL_CPU_FEATURES_DOWN"
    )
    relevelled = policy.vm_boot_flags(pool, is_hvm=True)
    assert check(relevelled, no_tsx) is None and check(relevelled, haswell) is None


def test_cross_vendor_pool_keeps_last_vendor():
    pool = policy.pool_cpu_info([cpus.host_cpu_info("EPYC"), cpus.host_cpu_info("Haswell")])
    assert pool["vendor"] == INTEL
    flags = policy.vm_boot_flags(pool, is_hvm=False)
    assert check(flags, cpus.host_cpu_info("EPYC"), hvm=False) == REASON_VENDOR


# --- properties ----------------------------------------------------------------------------

words = st.integers(min_value=0, max_value=0xFFFFFFFF)
new_style = st.lists(words, min_size=5, max_size=11).map(tuple)
vendors = st.sampled_from([INTEL, AMD])


@st.composite
def host_infos(draw, vendor=None):
    return {
        "vendor": vendor or draw(vendors),
        "cpu_count": str(draw(st.integers(1, 64))),
        "socket_count": str(draw(st.integers(1, 4))),
        "features_pv": fs.format(draw(new_style)),
        "features_hvm": fs.format(draw(new_style)),
    }


@st.composite
def db_rows(draw):
    rows = draw(
        st.lists(
            st.one_of(host_infos(), st.just({}), st.just({"vendor": AMD, "cpu_count": "2"})),
            max_size=6,
        )
    )
    return rows


def _fold(rows, key):
    out = ()
    for r in rows:
        out = fs.intersect(out, fs.parse(r[key]))
    return fs.format(out)


@given(db_rows(), st.randoms(use_true_random=False))
def test_pool_level_is_the_intersection_over_valid_hosts_in_any_order(rows, rnd):
    valid = [r for r in rows if all(k in r for k in policy.POOL_REQUIRED_KEYS)]
    pool = policy.pool_cpu_info(rows)
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    other = policy.pool_cpu_info(shuffled)
    for key in ("features_pv", "features_hvm", "cpu_count", "socket_count"):
        assert pool[key] == other[key]
    if valid:
        assert pool["features_pv"] == _fold(valid, "features_pv")
        assert pool["features_hvm"] == _fold(valid, "features_hvm")
        assert int(pool["cpu_count"]) == sum(int(r["cpu_count"]) for r in valid)
        assert pool["vendor"] == valid[-1]["vendor"]
    else:
        assert pool["cpu_count"] == "0" and pool["features_hvm"] == ""


@given(vendors.flatmap(lambda v: st.lists(host_infos(v), min_size=1, max_size=5)), st.booleans())
def test_a_vm_booted_on_the_pool_level_fits_every_host(members, is_hvm):
    flags = policy.vm_boot_flags(policy.pool_cpu_info(members), is_hvm)
    for member in members:
        assert policy.check_vm_compatible("Running", flags, is_hvm, member) is None


@given(new_style, host_infos(INTEL), st.booleans())
def test_check_passes_iff_subset_after_resize(vm, target, is_hvm):
    flags = {"vendor": INTEL, "features": fs.format(vm)}
    host_set = fs.parse(target[policy.features_key(is_hvm)])
    fits = fs.is_subset(fs.zero_extend(vm, len(host_set)), host_set)
    result = policy.check_vm_compatible("Running", flags, is_hvm, target)
    assert (result is None) == fits
    assert result in (None, REASON_FEATURES)


@given(st.one_of(new_style, st.lists(words, max_size=4).map(tuple)), host_infos(), st.booleans())
def test_updated_flags_fit_the_host_and_are_stable(vm, target, is_hvm):
    flags = {"vendor": INTEL, "features": fs.format(vm)}
    new = policy.updated_vm_flags(flags, is_hvm, target) or flags
    key = policy.features_key(is_hvm)
    assert len(fs.parse(new["features"])) == len(fs.parse(target[key]))
    assert policy.updated_vm_flags(new, is_hvm, target) is None
    if new is not flags:
        assert new["vendor"] == target["vendor"]
