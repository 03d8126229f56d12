"""``host.set_hostname_live`` over the wire with the real ``XenAPI`` client: the hostname
checks (``HOST_NAME_INVALID`` and its reasons), the control domain's default name following,
``AUTH_ALREADY_ENABLED`` for an AD host, ``HOST_OFFLINE`` for a member that is not live,
on 7.0 and 8.2; the pure check as a hypothesis property; ``xe host-set-hostname-live``."""

from __future__ import annotations

import string

import pytest
import XenAPI
from hypothesis import given
from hypothesis import strategies as st
from xe_kit import xe_runner

from xapi_sim.classes.host import hostname_error
from xapi_sim.testing import running_world

WORLD = """
[[host]]
name_label = "h1"
cpu = "Haswell"
version = "{version}"
[[host]]
name_label = "h2"
cpu = "Haswell"
version = "{version}"
[[pool]]
name_label = "P"
master = "h1"
members = ["h2"]
"""


def _session(url):
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
    return s


def _err(fn, *args):
    with pytest.raises(XenAPI.Failure) as e:
        fn(*args)
    return e.value.details


def _dom0(x, host):
    return [v for v in x.host.get_resident_VMs(host) if x.VM.get_is_control_domain(v)][0]


@pytest.fixture(params=["7.0.0", "8.2.1"])
def lab(request):
    with running_world(WORLD.format(version=request.param)) as w:
        yield w, _session(w.master_url()).xenapi


def test_sets_hostname_and_dom0_name(lab):
    w, x = lab
    h2 = w.host("h2").ref
    dom0 = _dom0(x, h2)
    assert x.VM.get_name_label(dom0).startswith("Control domain on host: ")
    token = x.event_from(["host", "VM"], "", 0.0)["token"]
    x.host.set_hostname_live(h2, "node-2.example.com")
    assert x.host.get_hostname(h2) == "node-2.example.com"
    assert x.host.get_name_label(h2) == "h2"  # the name is not the hostname
    assert x.VM.get_name_label(dom0) == "Control domain on host: node-2.example.com"
    evs = x.event_from(["host", "VM"], token, 5.0)["events"]
    assert {(e["class"], e["ref"]) for e in evs} >= {("host", h2), ("vm", dom0)}
    # a renamed control domain keeps its name
    x.VM.set_name_label(dom0, "mine")
    x.host.set_hostname_live(h2, "n2")
    assert x.VM.get_name_label(dom0) == "mine" and x.host.get_hostname(h2) == "n2"


@pytest.mark.parametrize(
    "name, reason",
    [
        ("", "hostname empty"),
        ("a" * 256, "hostname is too long"),
        ("-abc", "hostname contains invalid characters"),
        ("abc-", "hostname contains invalid characters"),
        ("a_b", "hostname contains invalid characters"),
        ("a b", "hostname contains invalid characters"),
        ("h\u00e9", "hostname contains invalid characters"),
    ],
)
def test_invalid_hostnames(lab, name, reason):
    w, x = lab
    h1 = w.host("h1").ref
    before = x.host.get_hostname(h1)
    assert _err(x.host.set_hostname_live, h1, name) == ["HOST_NAME_INVALID", reason]
    assert x.host.get_hostname(h1) == before


def test_longest_and_odd_valid_names(lab):
    w, x = lab
    h1 = w.host("h1").ref
    for name in ("a" * 255, "1", ".", "a..b", "0-9.A-Z"):
        x.host.set_hostname_live(h1, name)
        assert x.host.get_hostname(h1) == name


def test_errors_in_xapi_order(lab):
    w, x = lab
    bogus = "OpaqueRef:00000000-0000-0000-0000-000000000000"
    assert _err(x.host.set_hostname_live, bogus, "x") == ["HANDLE_INVALID", "host", bogus]
    h2 = w.host("h2").ref
    db = w.world.pools[0].db
    with db.lock:
        db.update("host", h2, external_auth_type="AD", external_auth_service_name="corp.example")
    # the AD check comes before the name check
    assert _err(x.host.set_hostname_live, h2, "") == [
        "AUTH_ALREADY_ENABLED",
        "AD",
        "corp.example",
    ]
    metrics = x.host.get_metrics(h2)
    with db.lock:
        db.set("host_metrics", metrics, "live", False)
    # forwarded to the host first: an offline host answers HOST_OFFLINE whatever the name
    assert _err(x.host.set_hostname_live, h2, "") == ["HOST_OFFLINE", h2]


@given(st.text(alphabet=string.ascii_letters + string.digits + "-._ \u00e9", max_size=300))
def test_hostname_rule_property(name):
    reason = hostname_error(name)
    ok = (
        0 < len(name.encode()) <= 255
        and not name.startswith("-")
        and not name.endswith("-")
        and all(ch in string.ascii_letters + string.digits + "-." for ch in name)
    )
    assert (reason is None) == ok
    if name == "":
        assert reason == "hostname empty"
    elif len(name.encode()) > 255:
        assert reason == "hostname is too long"


def test_xe_host_set_hostname_live(lab, tmp_path):
    w, x = lab
    h = w.host("h1")
    h2 = w.host("h2")

    xe = xe_runner(h, tmp_path, w.user, w.password)

    r = xe("host-set-hostname-live", f"host-uuid={h2.uuid}", "host-name=renamed")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert x.host.get_hostname(h2.ref) == "renamed"
    r = xe("host-set-hostname-live", f"host-uuid={h2.uuid}", "host-name=bad_name")
    assert r.returncode == 1 and "hostname contains invalid characters" in r.stderr
    r = xe("host-set-hostname-live", "host-name=x")
    assert r.returncode == 1 and "host-uuid" in r.stderr
