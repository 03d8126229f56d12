"""The per-release levelling rules (levelling/rules.py) as the pure policy applies them:
pool level, boot flags, the migration check and alerts of each release."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xapi_sim import products
from xapi_sim.levelling import cpus, policy, rules
from xapi_sim.levelling import featureset as fs

word = st.integers(min_value=0, max_value=0xFFFFFFFF)
fset = st.lists(word, min_size=0, max_size=6).map(tuple)
HOST_RULES = [rules.STOCKHOLM, rules.NILE, rules.XCP_NG_83]


def host_info(pv, hvm, pv_host, hvm_host, vendor="GenuineIntel", cpus_="4"):
    return {
        "cpu_count": cpus_,
        "socket_count": "1",
        "vendor": vendor,
        "features_pv": fs.format(pv),
        "features_hvm": fs.format(hvm),
        "features_hvm_host": fs.format(hvm_host),
        "features_pv_host": fs.format(pv_host),
    }


def test_every_profile_has_rules_and_every_rule_a_catalogue_era():
    for p in products.PROFILES.values():
        r = rules.rules(p.levelling)
        assert r.cpu_keys == "v1" or r.era in cpus.ERAS
    with pytest.raises(ValueError):
        rules.rules("quebec")


@given(st.lists(st.tuples(fset, fset, fset, fset, st.booleans()), min_size=1, max_size=5))
def test_host_family_pool_level_combines_only_the_host_keys(hosts):
    for r in HOST_RULES:
        infos = [host_info(*h[:4]) for h in hosts]
        capable = [h[4] for h in hosts]
        got = policy.pool_cpu_info(infos, r, capable)
        assert list(got) == ["vendor", "socket_count", "cpu_count", *r.pool_keys]
        pv: fs.Featureset = ()
        hvm: fs.Featureset = ()
        for (_, _, pv_host, hvm_host, ok), _info in zip(hosts, infos, strict=True):
            pv = fs.intersect(fs.parse(fs.format(pv_host)), pv)
            if ok:
                hvm = fs.intersect(fs.parse(fs.format(hvm_host)), hvm)
        assert got["features_pv_host"] == (fs.format(pv) if hosts else "")
        assert got["features_hvm_host"] == (fs.format(hvm) if any(capable) else "")
        assert got["cpu_count"] == str(4 * len(hosts))


@given(fset, fset)
def test_boot_flags_use_the_releases_keys(pv_host, hvm_host):
    pool = {
        "vendor": "AuthenticAMD",
        "socket_count": "1",
        "cpu_count": "4",
        "features_pv_host": fs.format(pv_host),
        "features_hvm_host": fs.format(hvm_host),
    }
    for r in HOST_RULES:
        assert policy.vm_boot_flags(pool, True, r) == {
            "vendor": "AuthenticAMD",
            "features": fs.format(hvm_host),
        }
        assert policy.vm_boot_flags(pool, False, r)["features"] == fs.format(pv_host)
    with pytest.raises(KeyError):
        policy.vm_boot_flags(pool, True)  # a Dundee pool map has features_hvm


def test_migration_checks_compare_against_the_max_policy():
    # default (host) policy lacks a bit the max policy has (e.g. TSX disabled at boot)
    # (sets of more than 4 words: shorter ones are old-style and translated, §11)
    z = (0, 0, 0, 0)
    info = host_info((0xFF, *z), (0xFF, *z, 1), (0xFF, *z), (0xFF, *z))
    vm = {"vendor": "GenuineIntel", "features": fs.format((0xFF, *z, 1))}
    for r in HOST_RULES:
        assert policy.check_vm_compatible("Running", vm, True, info, rules=r) is None
        # and not more than the max policy
        too_much = {"vendor": "GenuineIntel", "features": fs.format((0x1FF, *z))}
        assert policy.check_vm_compatible("Running", too_much, True, info, rules=r) == (
            policy.REASON_FEATURES
        )


@given(fset)
def test_2018_semantics_ignore_trailing_zero_words(base):
    """Ely on: a VM set longer than the host's by zero words fits (CA-279498)."""
    longer = (*base, 0)
    assert fs.is_subset(longer, base, rules.ELY.semantics)
    if base and base[-1]:
        # Dundee compares lists: the intersection is cut to the shorter length
        assert fs.is_subset(longer, base, rules.DUNDEE.semantics) is (
            fs.intersect(longer, base) == longer
        )


def test_alerts_per_release():
    old = {"features_hvm": "000000ff"}
    new = {"features_hvm": "0000000f"}
    assert policy.host_alert(old, new)[0] == "HOST_CPU_FEATURES_DOWN"
    assert policy.host_alert(old, new, rules=rules.ELY)[0] == "HOST_CPU_FEATURES_DOWN"
    for r in HOST_RULES:
        assert policy.host_alert(old, new, rules=r) is None
        assert policy.pool_alert(old, new, 3, False, rules=r) is None
    assert policy.pool_alert(old, new, 3, False)[0] == "POOL_CPU_FEATURES_DOWN"


@pytest.mark.parametrize("name", ["stockholm", "nile", "xcp-ng-8.3"])
def test_host_cpu_info_keys_of_8x(name):
    info = cpus.host_cpu_info("Haswell", release=name)
    expected = [
        "cpu_count",
        "socket_count",
        "vendor",
        "speed",
        "modelname",
        "family",
        "model",
        "stepping",
        "flags",
        "features_pv",
        "features_hvm",
        "features_hvm_host",
        "features_pv_host",
    ]
    if name == "xcp-ng-8.3":
        expected.insert(2, "threads_per_core")
    assert list(info) == expected
    # the default policy is within the max policy
    for g in ("pv", "hvm"):
        assert fs.is_subset(
            fs.parse(info[f"features_{g}_host"]), fs.parse(info[f"features_{g}"]), "2018"
        )
    with pytest.raises(ValueError):
        cpus.host_cpu_info("Haswell", release=name, mask="ffffffff-ffffffff-ffffffff-ffffffff")
