"""The control API (issue 4 item 8): any valid session, any endpoint, any host, both codecs."""

from __future__ import annotations

import json
import urllib.request

import pytest
import XenAPI

from xapi_sim.testing import running_world


@pytest.fixture
def w():
    with running_world(seed=2) as w:
        yield w


def jsonrpc(url, method, params, version=2):
    body = {"method": method, "params": params, "id": 7}
    if version == 2:
        body["jsonrpc"] = "2.0"
    req = urllib.request.Request(
        url + "jsonrpc", json.dumps(body).encode(), {"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_sim_over_jsonrpc_on_a_member_naming_another_pools_host(w):
    s = XenAPI.Session(w.master_url())
    s.xenapi.login_with_password("root", "xenroot")
    xs4 = w.host("xs4").ref  # a standalone host: another pool
    # sent to a pool member's endpoint (xs2), with a session of pool-a
    r = jsonrpc(
        w.url("xs2"), "sim.host_set_hardware", [s._session, xs4, {"hidden_features": ["avx"]}]
    )
    assert r == {"jsonrpc": "2.0", "result": "", "id": 7}
    s4 = XenAPI.Session(w.url("xs4"))
    s4.xenapi.login_with_password("root", "xenroot")
    before = s4.xenapi.host.get_cpu_info(xs4)["features_hvm"]
    s4.xenapi.host.restart_agent(xs4)  # takes effect at the next xapi start
    after = s4.xenapi.host.get_cpu_info(xs4)["features_hvm"]
    assert before != after
    assert "avx" not in s4.xenapi.host.get_cpu_info(xs4)["flags"].split()


def test_sim_errors(w):
    s = XenAPI.Session(w.master_url())
    s.xenapi.login_with_password("root", "xenroot")
    h = w.host("xs1").ref
    r = jsonrpc(w.master_url(), "sim.host_set_hardware", [s._session, h, {"cpu": "Pentium"}], 1)
    assert r["result"] is None and r["error"][:2] == ["INVALID_VALUE", "cpu"]
    assert "Pentium" in r["error"][2]
    r = jsonrpc(
        w.master_url(),
        "sim.host_set_hardware",
        [s._session, h, {"hidden_features": ["warp-drive"]}],
    )
    assert r["error"]["message"] == "INVALID_VALUE"
    assert r["error"]["data"][0] == "hidden_features"
    r = jsonrpc(w.master_url(), "sim.host_set_hardware", ["OpaqueRef:bad", h, {}])
    assert r["error"] == {"code": 1, "message": "SESSION_INVALID", "data": ["OpaqueRef:bad"]}
    r = jsonrpc(w.master_url(), "sim.host_power_on", [s._session, "OpaqueRef:nope"])
    assert r["error"]["data"] == ["host", "OpaqueRef:nope"]


def test_add_host_then_join_then_power_cycle(w):
    s = XenAPI.Session(w.master_url())
    s.xenapi.login_with_password("root", "xenroot")
    ref = s.xenapi_request(
        "sim.add_host",
        ({"name_label": "xs9", "cpu": "Westmere", "sockets": 2, "cpus_per_socket": 6},),
    )
    new = w.world.host(ref)
    s9 = XenAPI.Session(new.url)
    s9.xenapi.login_with_password("root", "xenroot")
    assert s9.xenapi.host.get_cpu_info(ref)["cpu_count"] == "12"
    s9.xenapi.pool.join(w.host("xs1").address, "root", "xenroot")
    assert ref in s.xenapi.host.get_all()
    s.xenapi.host.disable(ref)
    s.xenapi.host.shutdown(ref)
    m = s.xenapi.host.get_metrics(ref)
    assert s.xenapi.host_metrics.get_live(m) is False
    with pytest.raises(OSError):
        XenAPI.Session(new.url).xenapi.login_with_password("root", "xenroot")
    s.xenapi_request("sim.host_power_on", (ref,))
    assert s.xenapi.host_metrics.get_live(m) is True
    assert s.xenapi.host.get_enabled(ref) is True
    with pytest.raises(XenAPI.Failure) as e:
        s.xenapi_request("sim.add_host", ({"name_label": "xs9"},))
    assert e.value.details[0] == "INVALID_VALUE"
