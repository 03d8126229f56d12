"""``network.add_purpose`` / ``remove_purpose`` (7.3 on) over the wire with the real
``XenAPI`` client: the ``purpose`` set, NETWORK_INCOMPATIBLE_PURPOSES across the pool's
networks, events, a many-thread race for incompatible purposes, older releases, and
``xe network-param-add/-remove param-name=purpose``."""

from __future__ import annotations

import threading

import pytest
import XenAPI
from hypothesis import given
from hypothesis import strategies as st
from xe_kit import xe_runner

from xapi_sim.classes.network_purpose import INCOMPATIBLE, conflicting_purpose
from xapi_sim.testing import running_world

WORLD = """
[[host]]
name_label = "h1"
cpu = "Haswell"
version = "{version}"
[[network]]
name_label = "a"
[[network]]
name_label = "b"
"""


def _session(url):
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
    return s


def _err(fn, *args):
    with pytest.raises(XenAPI.Failure) as e:
        fn(*args)
    return e.value.details


@pytest.fixture
def lab():
    with running_world(WORLD.format(version="8.2.1")) as w:
        x = _session(w.master_url()).xenapi
        nets = {r["name_label"]: ref for ref, r in x.network.get_all_records().items()}
        yield w, x, nets


def test_add_and_remove(lab):
    w, x, nets = lab
    a, b = nets["a"], nets["b"]
    assert x.network.get_purpose(a) == []
    x.network.add_purpose(a, "nbd")
    x.network.add_purpose(a, "nbd")  # already there: nothing changes
    assert x.network.get_purpose(a) == ["nbd"]
    x.network.add_purpose(b, "nbd")  # the same purpose on another network is fine
    assert x.network.get_record(b)["purpose"] == ["nbd"]
    x.network.remove_purpose(a, "insecure_nbd")  # absent: nothing
    x.network.remove_purpose(a, "nbd")
    assert x.network.get_purpose(a) == []
    x.network.remove_purpose(b, "nbd")
    x.network.add_purpose(a, "insecure_nbd")
    assert x.network.get_purpose(a) == ["insecure_nbd"]


def test_incompatible_purposes_across_the_pool(lab):
    w, x, nets = lab
    a, b = nets["a"], nets["b"]
    x.network.add_purpose(a, "nbd")
    assert _err(x.network.add_purpose, b, "insecure_nbd") == [
        "NETWORK_INCOMPATIBLE_PURPOSES",
        "insecure_nbd",
        "nbd",
    ]
    # on the same network too
    assert _err(x.network.add_purpose, a, "insecure_nbd") == [
        "NETWORK_INCOMPATIBLE_PURPOSES",
        "insecure_nbd",
        "nbd",
    ]
    assert x.network.get_purpose(b) == [] and x.network.get_purpose(a) == ["nbd"]
    x.network.remove_purpose(a, "nbd")
    x.network.add_purpose(b, "insecure_nbd")
    assert _err(x.network.add_purpose, a, "nbd") == [
        "NETWORK_INCOMPATIBLE_PURPOSES",
        "nbd",
        "insecure_nbd",
    ]


def test_bad_arguments(lab):
    w, x, nets = lab
    bogus = "OpaqueRef:00000000-0000-0000-0000-000000000000"
    assert _err(x.network.add_purpose, bogus, "nbd") == ["HANDLE_INVALID", "network", bogus]
    assert _err(x.network.remove_purpose, bogus, "nbd") == ["HANDLE_INVALID", "network", bogus]
    # xapi's unmarshaller refuses a value outside the enum before the call runs
    err = _err(x.network.add_purpose, nets["a"], "fast")
    assert err[0] == "INTERNAL_ERROR" and "expected nbd|insecure_nbd" in err[1]
    assert x.network.get_purpose(nets["a"]) == []


def test_purpose_change_is_an_event(lab):
    w, x, nets = lab
    token = x.event_from(["network"], "", 0.0)["token"]
    x.network.add_purpose(nets["a"], "nbd")
    evs = x.event_from(["network"], token, 5.0)["events"]
    assert [(e["ref"], e["snapshot"]["purpose"]) for e in evs] == [(nets["a"], ["nbd"])]


def test_racing_incompatible_purposes_never_both_win(lab):
    """Many threads add nbd and insecure_nbd to many networks at once: the pool never ends
    up with both, and every refusal names the purpose that won."""
    w, x, nets = lab
    url = w.master_url()
    more = [x.network.create({"name_label": f"n{i}", "other_config": {}}) for i in range(6)] + [
        nets["a"],
        nets["b"],
    ]
    results: list = []
    lock = threading.Lock()

    def worker(i):
        s = _session(url)
        purpose = "nbd" if i % 2 else "insecure_nbd"
        try:
            s.xenapi.network.add_purpose(more[i % len(more)], purpose)
            out = ("ok", purpose)
        except XenAPI.Failure as f:
            out = tuple(f.details)
        with lock:
            results.append(out)
        s.xenapi.session.logout()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = {r[1] for r in results if r[0] == "ok"}
    assert len(winners) == 1
    (won,) = winners
    for r in results:
        if r[0] != "ok":
            assert r == ("NETWORK_INCOMPATIBLE_PURPOSES", INCOMPATIBLE[won][0], won)
    held = {p for r in x.network.get_all_records().values() for p in r["purpose"]}
    assert held == {won}


PURPOSES = st.sampled_from(["nbd", "insecure_nbd"])


@given(st.lists(st.lists(PURPOSES, max_size=2, unique=True), max_size=5), PURPOSES)
def test_conflicting_purpose_property(networks, new):
    bad = conflicting_purpose(networks, new)
    present = {p for ps in networks for p in ps}
    if bad is None:
        assert not present & set(INCOMPATIBLE[new])
    else:
        assert bad in INCOMPATIBLE[new] and bad in present and bad != new


def test_releases_without_purpose():
    for version in ("7.0.0", "7.1.0"):
        with running_world(WORLD.format(version=version)) as w:
            x = _session(w.master_url()).xenapi
            net = x.network.get_all()[0]
            assert _err(x.network.add_purpose, net, "nbd") == [
                "MESSAGE_METHOD_UNKNOWN",
                "network.add_purpose",
            ]
            assert "purpose" not in x.network.get_record(net)
    with running_world(WORLD.format(version="8.4.0")) as w:
        x = _session(w.master_url()).xenapi
        net = x.network.get_all()[0]
        x.network.add_purpose(net, "insecure_nbd")
        assert x.network.get_purpose(net) == ["insecure_nbd"]


def test_xe_purpose(lab, tmp_path):
    w, x, nets = lab
    h = w.host("h1")
    a, b = nets["a"], nets["b"]
    ua, ub = x.network.get_uuid(a), x.network.get_uuid(b)

    xe = xe_runner(h, tmp_path, w.user, w.password)

    r = xe("network-param-add", f"uuid={ua}", "param-name=purpose", "param-key=nbd")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert x.network.get_purpose(a) == ["nbd"]
    r = xe("network-param-get", f"uuid={ua}", "param-name=purpose")
    assert r.stdout == "nbd\n"
    r = xe("network-param-list", f"uuid={ua}")
    assert "purpose (SRW): nbd\n" in r.stdout, r.stdout
    r = xe("network-param-add", f"uuid={ub}", "param-name=purpose", "param-key=insecure_nbd")
    assert r.returncode == 1
    assert r.stderr.endswith("new_purpose: insecure_nbd\nconflicting_purpose: nbd\n"), r.stderr
    r = xe("network-param-add", f"uuid={ub}", "param-name=purpose", "param-key=fast")
    assert r.returncode == 1
    assert "Expected a network purpose string; got fast" in r.stderr + r.stdout
    r = xe("network-param-remove", f"uuid={ua}", "param-name=purpose", "param-key=nbd")
    assert r.returncode == 0 and x.network.get_purpose(a) == []
    r = xe("network-param-remove", f"uuid={ua}", "param-name=purpose", "param-key=nbd")
    assert r.returncode == 1 and "Key is not in the set" in r.stderr + r.stdout
