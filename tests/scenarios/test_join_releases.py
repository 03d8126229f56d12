"""pool.join's pre-join checks in each release's order (xen-api ``Xapi_pool.pre_join_checks``
at each profile's revision; docs/releases.md, classes/pool_join.py), driven through the real
dispatcher."""

from __future__ import annotations

import pytest

from xapi_sim import (
    classes,  # noqa: F401
    scenario,
)
from xapi_sim.dispatch import Dispatcher
from xapi_sim.errors import Failure


def world(version, joiner_version=None, joiner_build=None, joiner_cpu="SandyBridge"):
    jv = joiner_version or version
    build = f'build_number = "{joiner_build}"\n' if joiner_build else ""
    text = (
        f'[[host]]\nname_label = "m"\ncpu = "Haswell"\nversion = "{version}"\n'
        f'[[host]]\nname_label = "j"\ncpu = "{joiner_cpu}"\nversion = "{jv}"\n{build}'
    )
    w = scenario.build(scenario.loads(text), seed=3)
    return w, Dispatcher(w)


def join(w, d, force=False):
    j, m = w.host_by_name("j"), w.host_by_name("m")
    s = d.dispatch(j, "session.login_with_password", ["root", "xenroot"])
    method = "pool.join_force" if force else "pool.join"
    return d.dispatch(j, method, [s, m.address, "root", "xenroot"])


def failure(w, d, force=False):
    with pytest.raises(Failure) as e:
        join(w, d, force)
    return e.value.description


def test_dundee_and_ely_compare_the_build_number_in_their_own_words():
    w, d = world("dundee", joiner_build="999999c")
    assert failure(w, d) == ["HOSTS_NOT_HOMOGENEOUS", "software version differs"]
    w, d = world("ely", joiner_build="999999c")
    assert failure(w, d) == ["HOSTS_NOT_HOMOGENEOUS", "Software version differs"]


@pytest.mark.parametrize("version", ["stockholm", "nile", "xcp-ng-8.3"])
def test_8x_ignores_the_build_number_and_accepts_an_older_cpu(version):
    w, d = world(version, joiner_build="other-build")
    join(w, d)
    m = w.host_by_name("m")
    assert len(m.db.refs("host")) == 2
    # the joiner's first start as a member lowers the pool's default-policy level
    pool = m.db.get("pool", m.pool.ref)["cpu_info"]
    assert set(pool) == {
        "vendor",
        "socket_count",
        "cpu_count",
        "features_pv_host",
        "features_hvm_host",
    }


def test_platform_version_first_then_api_version_then_schema():
    # a 8.2 CU1 host cannot join a XenServer 8 pool (nor the reverse): platform versions differ
    w, d = world("nile", joiner_version="stockholm")
    assert failure(w, d) == ["HOSTS_NOT_COMPATIBLE"]
    assert failure(w, d, force=True) == ["HOSTS_NOT_COMPATIBLE"]
    # same platform, another API version: the API check answers before the schema check
    w, d = world("stockholm")
    j = w.host_by_name("j")
    sv = dict(j.db.get("host", j.ref)["software_version"], db_schema="5.1")
    j.db.update("host", j.ref, API_version_minor=14, software_version=sv)
    assert failure(w, d) == ["POOL_JOINING_HOST_MUST_HAVE_SAME_API_VERSION", "2.14", "2.15"]
    j.db.update("host", j.ref, API_version_minor=15)
    assert failure(w, d) == ["POOL_JOINING_HOST_MUST_HAVE_SAME_DB_SCHEMA", "5.1", "5.603"]


def test_dundee_has_no_api_version_check():
    w, d = world("dundee")
    j = w.host_by_name("j")
    j.db.update("host", j.ref, API_version_minor=4)
    join(w, d)


@pytest.mark.parametrize("version", ["nile", "xcp-ng-8.3"])
def test_tls_verification_then_updates_in_progress(version):
    w, d = world(version)
    j, m = w.host_by_name("j"), w.host_by_name("m")
    j.db.update("pool", j.pool.ref, tls_verification_enabled=False)
    assert failure(w, d) == ["POOL_JOINING_HOST_TLS_VERIFICATION_MISMATCH"]
    j.db.update("pool", j.pool.ref, tls_verification_enabled=True)
    m.db.update("pool", m.pool.ref, current_operations={"OpaqueRef:op": "apply_updates"})
    assert failure(w, d) == ["NOT_SUPPORTED_DURING_UPGRADE"]
    m.db.update("pool", m.pool.ref, current_operations={})
    join(w, d)


def test_stockholm_has_no_tls_verification_check():
    w, d = world("stockholm")
    j = w.host_by_name("j")
    assert "tls_verification_enabled" not in j.db.get("pool", j.pool.ref)
    join(w, d)


@pytest.mark.parametrize("version", ["dundee", "ely", "nile"])
def test_management_address_types_must_match(version):
    w, d = world(version)
    j = w.host_by_name("j")
    pif = next(r for r, row in j.db.rows("PIF") if row["management"] and row["host"] == j.ref)
    j.db.update("PIF", pif, primary_address_type="IPv6")
    assert failure(w, d) == ["OPERATION_NOT_ALLOWED", "Primary address type differs"]
    # ... after the API version check where the release has one
    if version != "dundee":
        j.db.update("host", j.ref, API_version_minor=1)
        assert failure(w, d)[0] == "POOL_JOINING_HOST_MUST_HAVE_SAME_API_VERSION"
