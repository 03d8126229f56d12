"""XenCenter's connect sequence against xapi-sim (spec §10, §15.1-2, §15.6, §15.10, §15.14).

``xencenter_like.py`` re-implements what XenCenter does on the wire (JSON-RPC v2 only, its
strict reply parsing, its dates, its API-version and product-version decisions, its three
connection groups). Today's XenCenter refuses a XenServer 7.0 pool -- API 2.5 is older than
the 2.6 it requires, and ``platform_version`` 2.1.0 is older than the 8.0 it supports -- so the
tests check that the refusal happens at the version check, for the version, after every
earlier call worked; and that with the check bypassed in the test client the rest of the
sequence (cache fill, coordinator, clock skew, long-poll plus heartbeat on separate
connections, Async actions with task polling and destruction) works. xapi-sim never raises
a version to please a client.
"""

from __future__ import annotations

import datetime
import json
import re
import threading
import time

import pytest
import XenAPI
import xencenter_like as xc

from xapi_sim.testing import running_world
from xapi_sim.wire import http


@pytest.fixture(scope="module")
def xworld():
    with running_world() as w:
        yield w


@pytest.fixture
def client(xworld):
    made = []

    def make(url=None, **kw):
        c = xc.XenCenterLike(url or xworld.master_url(), "root", "xenroot", **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.disconnect()


# -- the decision XenCenter reaches ----------------------------------------------------------


def test_a_7_0_pool_is_refused_at_the_version_check_after_every_call_worked(client):
    c = client()
    with pytest.raises(xc.ServerNotSupported):
        c.connect()
    names = [s for s, _ in c.steps]
    assert names == [
        "login",
        "pool.get_all_records",
        "host.get_record",
        "session.get_is_local_superuser",
        "session.get_rbac_permissions",
        "role.get_all_records",
        "version check",
    ]
    assert dict(c.steps)["login"] == 4  # the 4-parameter login was accepted
    assert c.api_version == xc.API_VERSION["2.5"] < xc.API_2_6
    assert c.event_calls == []  # it never got to event.from


def test_with_the_check_bypassed_the_rest_of_the_sequence_works(client, xworld):
    c = client(bypass_version_check=True).connect()
    names = [s for s, _ in c.steps]
    assert names[6:] == [
        "version check",
        "duplicate session",
        "event.from cache fill",
        "pool and coordinator",
        "host.get_servertime",
        "cache populated checks",
    ]
    # the cache holds the pool, its coordinator and every object, as full records
    # (compared with what get_all_records answers on the same JSON-RPC wire)
    for cls, wire_cls in (
        ("pool", "pool"),
        ("vm", "VM"),
        ("host", "host"),
        ("host_metrics", "host_metrics"),
        ("vm_metrics", "VM_metrics"),
    ):
        assert c.cache[cls] == c.main.call(f"{wire_cls}.get_all_records", c.session), cls
    assert len(c.cache["role"]) == 6  # fetched separately: no role events
    assert "session" not in c.cache
    assert c.coordinator_ref == c.cache["pool"][c.pool_ref]["master"]
    assert c.coordinator_address == xworld.host("xs1").address
    # host.get_servertime is UTC with its Z, so the skew is real, not a time zone
    assert c.server_time_is_utc is True
    assert abs(c.server_time_offset) < 5
    # step 10, evaluated on what the server returned: refused for the version of every
    # host (7.0 is older than 8.0), the brand and xencenter_min/max are acceptable
    assert len(c.refusals) == 3
    assert all(re.match(r"host xs\d: platform_version 2\.1\.0 < 2\.9\.50", r) for r in c.refusals)


def test_versions_are_the_releases_own(client):
    """software_version and the API version stay 7.0's (never raised to please a client)."""
    c = client(bypass_version_check=True).connect()
    for h in c.cache["host"].values():
        assert (h["API_version_major"], h["API_version_minor"]) == (2, 5)
        sv = h["software_version"]
        assert sv["product_version"] == "7.0.0" and sv["platform_version"] == "2.1.0"
        assert sv["product_brand"] == "XenServer"
        assert sv["xencenter_min"] == sv["xencenter_max"] == "2.5"
        assert xc.api_version_of_string(sv["xencenter_min"]) == xc.API_VERSION["2.5"]


def test_host_is_slave_on_first_connect_then_the_coordinator(client, xworld):
    with pytest.raises(xc.HostIsSlave) as e:
        client(xworld.url("xs2")).connect()
    assert e.value.address == xworld.host("xs1").address
    # XenCenter offers to connect to that address instead (same port on this simulator,
    # unless it had to give every host its own port: then the address says which)
    addr = e.value.address
    url = (
        f"http://{addr}/"
        if ":" in addr
        else xworld.url("xs2").replace(xworld.host("xs2").address, addr)
    )
    c = client(url, bypass_version_check=True).connect()
    assert c.coordinator_address == e.value.address


def test_clock_calls(xworld, wire):
    """host.get_servertime is UTC with a Z; host.get_server_localtime is local, without."""
    url = xworld.master_url()
    sref = wire.login(url)
    master = xworld.host("xs1").ref
    utc = wire.json(url, "host.get_servertime", [sref, master])["result"]
    local = wire.json(url, "host.get_server_localtime", [sref, master])["result"]
    assert re.fullmatch(r"\d{8}T\d\d:\d\d:\d\dZ", utc)
    assert re.fullmatch(r"\d{8}T\d\d:\d\d:\d\d", local)
    now_local = datetime.datetime.now().replace(microsecond=0)
    assert abs((xc.parse_date(local)[0].replace(tzinfo=None) - now_local).total_seconds()) < 5
    wire.xml_ok(url, "session.logout", sref)


def test_host_is_slave_over_both_json_rpc_versions(xworld, wire):
    member = xworld.url("xs2")
    master_addr = xworld.host("xs1").address
    v2 = wire.json(member, "session.login_with_password", ["root", "xenroot", "2.20", "XC"])
    assert v2 == {
        "jsonrpc": "2.0",
        "error": {"code": 1, "message": "HOST_IS_SLAVE", "data": [master_addr]},
        "id": 1,
    }
    v1 = wire.json(member, "session.login_with_password", ["root", "xenroot"], version=1)
    assert v1 == {"result": None, "error": ["HOST_IS_SLAVE", master_addr], "id": 1}


# -- the steady state ----------------------------------------------------------------------------


def test_long_poll_and_heartbeat_on_separate_connections(client, xworld, monkeypatch):
    seen = []
    original = http.Handler._call

    def _call(self, method, params):
        if method in ("event.from", "host.get_servertime"):
            seen.append((method, self.client_address))
        return original(self, method, params)

    monkeypatch.setattr(http.Handler, "_call", _call)
    c = client(bypass_version_check=True, heartbeat_interval=0.1, event_from_timeout=30.0)
    c.connect()
    c.start_steady_state()
    time.sleep(1.2)  # event.from is blocked meanwhile
    ok_beats = [b for b in c.heartbeats if b[2]]
    assert len(ok_beats) >= 5 and c.dropped is None
    assert len(c.event_calls) == 1  # only the cache fill returned so far
    # a change by someone else ends the long-poll with a mod
    x = XenAPI.Session(xworld.master_url())
    x.xenapi.login_with_password("root", "xenroot", "2.5", "other")
    vm = x.xenapi.VM.get_by_name_label("batch1")[0]
    x.xenapi.VM.set_name_description(vm, "changed while XenCenter watched")
    deadline = time.monotonic() + 5
    while c.cache["vm"][vm]["name_description"] != "changed while XenCenter watched":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    x.xenapi.session.logout()
    # the heartbeats ran while that event.from was open, on other TCP connections
    poll_start = c.event_calls[1][0]
    assert any(start > poll_start for start, _, ok in ok_beats if ok)
    assert c.events_client.sockets.isdisjoint(c.heartbeat_client.sockets)
    assert c.main.sockets.isdisjoint(c.events_client.sockets | c.heartbeat_client.sockets)
    server_side = {
        m: {addr for mm, addr in seen if mm == m} for m in ("event.from", "host.get_servertime")
    }
    # the steady-state event.from calls came over one keep-alive connection, the
    # heartbeats over another
    assert set(c.events_client.sockets) <= server_side["event.from"]
    assert set(c.heartbeat_client.sockets) <= server_side["host.get_servertime"]


def test_actions_poll_their_task_and_destroy_it(client, xworld):
    c = client(bypass_version_check=True, task_poll_interval=0.05).connect()
    tmpl = next(r for r, v in c.cache["vm"].items() if v["name_label"] == "CentOS 7")
    result, record = c.run_async("VM.clone", tmpl, "cloned-by-xencenter")
    assert result.startswith("OpaqueRef:")  # the text of <value>
    assert record["name_label"] == "Async.VM.clone" and record["status"] == "success"
    assert record["result"] == f"<value>{result}</value>"
    # the task is gone: HANDLE_INVALID "task", which XenCenter reads as "finished"
    with pytest.raises(xc.Failure) as e:
        c.main.call("task.get_record", c.session, record["ref"])
    assert e.value.description == ["HANDLE_INVALID", "task", record["ref"]]
    assert c.poll_task(record["ref"]) is None
    # void result, then an XAPI failure carried by the task
    assert c.run_async("VM.destroy", result)[0] == ""
    running = next(r for r, v in c.cache["vm"].items() if v["name_label"] == "web2")
    with pytest.raises(xc.Failure) as e:
        c.run_async("VM.start", running, False, False)
    assert e.value.description == ["VM_BAD_POWER_STATE", running, "halted", "running"]


# -- the strict parser is real -------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply, problem",
    [
        ({"jsonrpc": "2.0", "result": "x", "error": None, "id": 1}, "null"),
        ({"result": "x", "id": 1}, "jsonrpc member missing"),
        ({"jsonrpc": "2.0", "result": "x"}, "id member missing"),
        ({"jsonrpc": "2.0", "error": {"code": 1, "message": "X"}, "id": 1}, "data"),
        ({"jsonrpc": "2.0", "error": ["X"], "id": 1}, "malformed"),
    ],
)
def test_the_parser_refuses_what_xencenter_refuses(reply, problem):
    with pytest.raises(xc.ProtocolError, match=problem):
        xc.parse_response(json.dumps(reply).encode(), 1)


def test_dates_without_z_would_be_local_time():
    utc, is_utc = xc.parse_date("20240101T12:00:00Z")
    assert is_utc and utc.tzinfo == datetime.UTC
    assert xc.parse_date("20240101T12:00:00")[1] is False


def test_every_reply_of_a_connect_passes_the_parser(xworld):
    """A raw look at the replies the sequence got: v2 envelopes, no error member on success."""
    replies = []
    orig = xc.parse_response

    def spy(data, rid):
        replies.append(data)
        return orig(data, rid)

    xc.parse_response = spy
    c = xc.XenCenterLike(xworld.master_url(), "root", "xenroot", bypass_version_check=True)
    try:
        c.connect()
    finally:
        xc.parse_response = orig
        c.disconnect()
    assert len(replies) >= 9
    for raw in replies:
        obj = json.loads(raw)
        assert obj["jsonrpc"] == "2.0" and "result" in obj
        assert "error" not in obj  # not even "error": null


def test_concurrent_connections_do_not_interfere(xworld):
    """Two XenCenters at once (different users' machines): both fill their caches."""
    results = []

    def one():
        c = xc.XenCenterLike(xworld.master_url(), "root", "xenroot", bypass_version_check=True)
        try:
            c.connect()
            results.append(len(c.cache["vm"]))
        finally:
            c.disconnect()

    ts = [threading.Thread(target=one) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert len(results) == 2 and results[0] == results[1] > 0


# -- XCP-ng Center 20.04.01 (xcp-ng/xenadmin ac81e0a4) ------------------------------------------


def test_xcp_ng_center_accepts_the_7_0_pool_over_xml_rpc(client, xworld):
    """The last public XCP-ng Center supports API 2.5 and any brand: the default (Dundee)
    pool connects without bypass, over XML-RPC throughout (SwitchToJsonRpcBackend keeps it
    for API 2.5), and runs an action."""
    c = client(build=xc.XCPNG_CENTER, task_poll_interval=0.05).connect()
    assert isinstance(c.main, xc.XmlRpcClient) and isinstance(c.events_client, xc.XmlRpcClient)
    steps = dict(c.steps)
    assert steps["login"] == 4 and steps["transport"] == "XML-RPC"
    assert steps["version check"] == "ok"
    assert c.refusals == []  # members are Dundee (2.1.0 >= 2.0.0), xencenter_min 2.5 <= 2.16
    assert c.server_time_is_utc is True and abs(c.server_time_offset) < 5
    assert c.coordinator_address == xworld.host("xs1").address
    tmpl = next(
        r for r, v in c.cache["vm"].items() if v["is_a_template"] and not v["is_control_domain"]
    )
    clone, record = c.run_async("VM.clone", tmpl, "cloned-by-xcp-ng-center")
    assert clone.startswith("OpaqueRef:") and record["status"] == "success"
    assert c.run_async("VM.destroy", clone)[0] == ""
    c.start_steady_state()
    time.sleep(0.3)
    assert c.dropped is None
