"""Today's clients against the later release profiles (docs/releases.md, docs/clients.md).

* The XenCenter-like connect sequence (``xencenter_like.py``, gates from xenserver/xenadmin
  b210cd2c) completes against 8.2 CU1 and XenServer 8 worlds with no refusal (7.1: refused
  for its platform version once the cache is populated), and runs
  actions as Async calls; against XCP-ng 8.3 it completes too, and its cache-populated checks
  refuse exactly as that XenCenter would: the product brand, and ``xencenter_min`` 2.21 newer
  than the 2.20 it knows. XCP-ng Center 20.04.01 (xcp-ng/xenadmin ac81e0a4), the last public
  XCP-ng Center, accepts 7.1 and 8.2 CU1 and refuses XenServer 8 and XCP-ng 8.3 as out of date
  (``xencenter_min`` newer than the API 2.16 it knows) -- no public XenCenter build accepts
  XCP-ng 8.3, and xapi-sim reports what a real 8.3 host reports.
* Xen Orchestra's ``xen-api`` npm client runs all its phases against every release.
* The ``XenAPI`` package over JSON-RPC only (what current SDKs speak) works on every release.
"""

from __future__ import annotations

import json
import urllib.request

import pytest
import test_xo_client as xo
import XenAPI
import xencenter_like as xc

from xapi_sim import products
from xapi_sim import scenario as scn_mod
from xapi_sim.cli import with_release
from xapi_sim.tasks import Tasks
from xapi_sim.testing import running_world

LATER = ["ely", "stockholm", "nile", "xcp-ng-8.3"]


def release_world(name):
    return running_world(with_release(scn_mod.default(), name))


@pytest.fixture(scope="module", params=["ely", "stockholm", "nile", "xcp-ng-8.3"])
def xc_world(request):
    with release_world(request.param) as w:
        yield request.param, w


def test_xencenter_connects_and_acts(xc_world):
    name, w = xc_world
    p = products.PROFILES[name]
    c = xc.XenCenterLike(w.master_url(), "root", "xenroot", task_poll_interval=0.05)
    try:
        c.connect()  # no bypass: the API version check passes (>= 2.6)
        assert ("version check", "ok") in c.steps
        assert c.api_version == xc.API_VERSION.get(f"{p.api_major}.{p.api_minor}", xc.API_UNKNOWN)
        assert c.coordinator_address == w.host("xs1").address
        if name == "ely":
            # 7.1 passes the API check (2.6) but is older than Citrix Hypervisor 8.0
            assert c.refusals and all(
                r.endswith("platform_version 2.1.1 < 2.9.50 (older than Citrix Hypervisor 8.0)")
                for r in c.refusals
            )
        elif name == "xcp-ng-8.3":
            # what the public XenCenter decides for XCP-ng 8.3 (xapi 24.19, API 2.21)
            assert c.refusals == [
                "product brand 'XCP-ng' is not 'XenServer'",
                "XenCenter out of date for this server",
            ]
        else:
            assert c.refusals == []
        _clone_a_template_and_destroy_it(c, f"cloned-on-{name}")
    finally:
        c.disconnect()


def _clone_a_template_and_destroy_it(c, label):
    """Async actions with task polling, as the XenCenter builds run them: clone a template
    from the connection's cache, then destroy the clone."""
    tmpl = next(
        r for r, v in c.cache["vm"].items() if v["is_a_template"] and not v["is_control_domain"]
    )
    clone, record = c.run_async("VM.clone", tmpl, label)
    assert clone.startswith("OpaqueRef:") and record["status"] == "success"
    assert c.run_async("VM.destroy", clone)[0] == ""


# What XCP-ng Center 20.04.01 (xcp-ng/xenadmin ac81e0a4, SDK up to API 2.16) decides: any brand,
# pool members Dundee or later, xencenter_min not newer than the 2.16 it knows.
XCPNG_CENTER_DECISION = {
    "ely": ("JSON-RPC v1", []),
    "stockholm": ("JSON-RPC v2", []),
    "nile": ("JSON-RPC v2", ["XenCenter out of date for this server"]),
    "xcp-ng-8.3": ("JSON-RPC v2", ["XenCenter out of date for this server"]),
}


def test_xcp_ng_center_connects_and_acts(xc_world):
    name, w = xc_world
    c = xc.XenCenterLike(
        w.master_url(), "root", "xenroot", task_poll_interval=0.05, build=xc.XCPNG_CENTER
    )
    try:
        c.connect()
        transport, refusals = XCPNG_CENTER_DECISION[name]
        assert dict(c.steps)["transport"] == transport
        assert ("version check", "ok") in c.steps
        assert c.refusals == refusals
        _clone_a_template_and_destroy_it(c, f"xcp-ng-center-on-{name}")
    finally:
        c.disconnect()


@pytest.mark.parametrize("name", LATER)
def test_xen_orchestra_client_runs_every_phase(name, monkeypatch):
    # the clone phase clones a template of the release's own catalogue
    monkeypatch.setenv(
        "XO_TEMPLATE", "Debian Bullseye 11" if name in ("nile", "xcp-ng-8.3") else "CentOS 7"
    )
    with release_world(name) as w:
        Tasks.of(w.world).operation_seconds = 0.3  # so that a start can be cancelled
        x = XenAPI.Session(w.master_url())
        x.xenapi.login_with_password("root", "xenroot", "2.0", "xo-test")

        def on_phase(msg):
            if msg["phase"] == "cached":
                vm = x.xenapi.VM.get_by_name_label("db1")[0]
                x.xenapi.VM.set_name_label(vm, "renamed-by-python")
                return {"ref": vm, "name_label": "renamed-by-python"}
            return None

        phases, stderr = xo.run_xo(w, on_phase)
        x.xenapi.session.logout()
    p = products.PROFILES[name]
    assert phases["cached"]["master_api"] == [p.api_major, p.api_minor]
    assert phases["cached"]["product_version"] == p.version
    assert "done" in phases
    assert "_watchEvents" not in stderr and "_refreshCachedRecords" not in stderr


def _jsonrpc(url, method, params):
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).encode()
    req = urllib.request.Request(
        url + "jsonrpc", body, {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


@pytest.mark.parametrize("name", LATER)
def test_json_rpc_only_usage(name):
    """Current SDKs: JSON-RPC v2 on /jsonrpc, login, records, an async call and its task."""
    with release_world(name) as w:
        url = w.master_url()
        s = _jsonrpc(url, "session.login_with_password", ["root", "xenroot", "2.21", "sdk"])
        session = s["result"]
        hosts = _jsonrpc(url, "host.get_all_records", [session])["result"]
        assert {h["software_version"]["product_version"] for h in hosts.values()} == {
            products.PROFILES[name].version
        }
        vms = _jsonrpc(url, "VM.get_all_records_where", [session, 'field "is_a_template"="true"'])
        tmpl = next(iter(vms["result"]))
        task = _jsonrpc(url, "Async.VM.clone", [session, tmpl, "sdk-clone"])["result"]
        assert task.startswith("OpaqueRef:")
        unknown = _jsonrpc(url, "VM.no_such_message", [session])
        assert unknown["error"]["message"] == "MESSAGE_METHOD_UNKNOWN"
        assert unknown["error"]["data"] == ["VM.no_such_message"]
        _jsonrpc(url, "session.logout", [session])
