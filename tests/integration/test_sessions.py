"""Sessions over real sockets (spec §4.2, §4.5, §8, §14.3, §15.9, §15.18).

Login/logout with the real ``XenAPI`` package, the session record, a wrong password, a
logged-out or unknown session, login arity (2, 3, 4 parameters; the count is checked before
anything else), pool members (``HOST_IS_SLAVE`` for a login and for a master session), and one
session used over XML-RPC and JSON-RPC v1/v2.
"""

from __future__ import annotations

import re
import xmlrpc.client

import pytest
import XenAPI

REF = re.compile(r"^OpaqueRef:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def master_address(world):
    return next(h["address"] for h in world.describe()["hosts"] if h["name_label"] == "xs1")


# -- login / logout ------------------------------------------------------------------------


def test_login_and_logout_with_xenapi(world, wire, login):
    s = login(world.master_url())
    ref = s.handle
    assert REF.match(ref)
    assert len(s.xenapi.pool.get_all()) == 1
    s.xenapi.session.logout()
    assert s.handle is None
    # the ref is dead for everybody now
    assert wire.xml_err(world.master_url(), "pool.get_all", ref) == ["SESSION_INVALID", ref]


def test_session_record(world, session):
    x = session.xenapi
    rec = x.session.get_record(session.handle)
    master = x.pool.get_master(x.pool.get_all()[0])
    assert rec["this_host"] == master
    assert rec["this_user"] == "OpaqueRef:NULL"
    assert rec["subject"] == "OpaqueRef:NULL"
    assert rec["parent"] == "OpaqueRef:NULL"
    assert rec["pool"] is False
    assert rec["is_local_superuser"] is True
    assert rec["auth_user_name"] == "root"
    assert rec["auth_user_sid"] == ""
    assert rec["rbac_permissions"] == []
    assert rec["originator"] == "pytest"
    assert rec["last_active"].value.endswith("Z")
    assert x.session.get_this_host(session.handle) == master
    assert x.session.get_by_uuid(rec["uuid"]) == session.handle


def test_session_class_has_no_get_all(world, session, wire):
    err = wire.xml_err(world.master_url(), "session.get_all", session.handle)
    assert err == ["MESSAGE_METHOD_UNKNOWN", "session.get_all"]


def test_logout_twice_is_session_invalid(world, wire):
    url = world.master_url()
    ref = wire.login(url)
    assert wire.xml_ok(url, "session.logout", ref) == ""
    assert wire.xml_err(url, "session.logout", ref) == ["SESSION_INVALID", ref]


def test_login_accepts_2_3_4_parameters_and_ignores_extras(world, wire):
    url = world.master_url()
    for params in (
        ("root", "xenroot"),
        ("root", "xenroot", "1.1"),
        ("root", "xenroot", "2.5", "my-tool/1.0"),
        ("root", "xenroot", "2.5", "my-tool/1.0", "extra"),
    ):
        ref = wire.xml_ok(url, "session.login_with_password", *params)
        assert REF.match(ref)
        if len(params) >= 4:
            assert wire.xml_ok(url, "session.get_originator", ref, ref) == "my-tool/1.0"
        else:
            assert wire.xml_ok(url, "session.get_originator", ref, ref) == ""
        wire.xml_ok(url, "session.logout", ref)


@pytest.mark.parametrize("params,received", [(("root",), "1"), ((), "0")])
def test_login_with_too_few_parameters(world, wire, params, received):
    err = wire.xml_err(world.master_url(), "session.login_with_password", *params)
    assert err == ["MESSAGE_PARAMETER_COUNT_MISMATCH", "session.login_with_password", "2", received]


def test_login_over_json_with_too_few_parameters(world, wire):
    out = wire.json(world.master_url(), "session.login_with_password", ["root"])
    assert out == {
        "jsonrpc": "2.0",
        "id": 1,
        "error": {
            "code": 1,
            "message": "MESSAGE_PARAMETER_COUNT_MISMATCH",
            "data": ["session.login_with_password", "2", "1"],
        },
    }


# -- authentication failures ---------------------------------------------------------------


def test_wrong_password(world):
    s = XenAPI.Session(world.master_url())
    with pytest.raises(XenAPI.Failure) as e:
        s.xenapi.login_with_password("root", "wrong", "2.5", "pytest")
    assert e.value.details == ["SESSION_AUTHENTICATION_FAILED", "root", "Authentication failure"]


def test_wrong_user(world, wire):
    err = wire.xml_err(world.master_url(), "session.login_with_password", "admin", "xenroot")
    assert err == ["SESSION_AUTHENTICATION_FAILED", "admin", "Authentication failure"]


def test_logged_out_session_is_session_invalid(world, wire):
    url = world.master_url()
    ref = wire.login(url)
    wire.xml_ok(url, "session.logout", ref)
    for method, params in (
        ("VM.get_all", ()),
        ("pool.get_all_records", ()),
        ("session.get_record", (ref,)),
        ("event.from", (["*"], "", 1.0)),
    ):
        assert wire.xml_err(url, method, ref, *params) == ["SESSION_INVALID", ref]
    out = wire.json(url, "VM.get_all", [ref])
    assert out["error"] == {"code": 1, "message": "SESSION_INVALID", "data": [ref]}


@pytest.mark.parametrize(
    "bad", ["OpaqueRef:NULL", "garbage", "", "OpaqueRef:00000000-0000-4000-8000-000000000000"]
)
def test_unknown_session_is_session_invalid(world, wire, bad):
    assert wire.xml_err(world.master_url(), "host.get_all", bad) == ["SESSION_INVALID", bad]


def test_xenapi_logs_in_again_after_session_invalid(world, wire, login):
    """XenAPI.py answers SESSION_INVALID by logging in again and retrying (§12)."""
    url = world.master_url()
    s = login(url)
    old = s.handle
    wire.xml_ok(url, "session.logout", old)  # kill it behind the client's back
    assert len(s.xenapi.host.get_all()) == 3  # transparently re-logged in
    assert s.handle != old
    s.xenapi.session.logout()


# -- pool members ---------------------------------------------------------------------------


@pytest.mark.parametrize("member", ["xs2", "xs3"])
def test_login_on_a_member_is_host_is_slave(world, member):
    s = XenAPI.Session(world.url(member))
    with pytest.raises(XenAPI.Failure) as e:
        s.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
    assert e.value.details == ["HOST_IS_SLAVE", master_address(world)]


def test_member_refuses_before_checking_the_password(world, wire):
    err = wire.xml_err(world.url("xs2"), "session.login_with_password", "root", "wrong")
    assert err == ["HOST_IS_SLAVE", master_address(world)]


def test_master_session_on_a_member_endpoint(world, session, wire):
    for method, params in (
        ("VM.get_all", ()),
        ("pool.get_all", ()),
        ("host.get_record", (session.xenapi.host.get_all()[0],)),
    ):
        err = wire.xml_err(world.url("xs3"), method, session.handle, *params)
        assert err == ["HOST_IS_SLAVE", master_address(world)]
    # over JSON-RPC too
    out = wire.json(world.url("xs2"), "VM.get_all", [session.handle])
    assert out["error"] == {"code": 1, "message": "HOST_IS_SLAVE", "data": [master_address(world)]}


def test_unknown_session_on_a_member_is_session_invalid(world, wire):
    assert wire.xml_err(world.url("xs2"), "VM.get_all", "junk") == ["SESSION_INVALID", "junk"]


def test_host_is_slave_address_is_the_masters_endpoint(world):
    """XO and XenCenter follow HOST_IS_SLAVE: the address must reach the master."""
    s = XenAPI.Session(world.url("xs2"))
    with pytest.raises(XenAPI.Failure) as e:
        s.xenapi.login_with_password("root", "xenroot")
    address = e.value.details[1]
    port = world.host("xs1").port
    s2 = XenAPI.Session(f"http://{address}:{port}/" if ":" not in address else f"http://{address}/")
    s2.xenapi.login_with_password("root", "xenroot")
    assert len(s2.xenapi.host.get_all()) == 3
    s2.xenapi.session.logout()


@pytest.mark.parametrize("standalone", ["xs4", "xs5"])
def test_standalone_hosts_are_masters_of_their_own_pool(world, standalone, login):
    s = login(world.url(standalone))
    x = s.xenapi
    pools = x.pool.get_all()
    assert len(pools) == 1
    hosts = x.host.get_all()
    assert len(hosts) == 1 and x.pool.get_master(pools[0]) == hosts[0]
    assert x.host.get_name_label(hosts[0]) == standalone
    s.xenapi.session.logout()


def test_sessions_belong_to_their_pool(world, session, wire):
    """A session of pool-a means nothing to a standalone host's database."""
    err = wire.xml_err(world.url("xs4"), "host.get_all", session.handle)
    assert err == ["SESSION_INVALID", session.handle]


# -- one session, three protocols -----------------------------------------------------------


def test_same_session_over_xmlrpc_and_jsonrpc_v1_v2(world, wire):
    url = world.master_url()
    # login over JSON-RPC v2
    ref = wire.json(url, "session.login_with_password", ["root", "xenroot", "2.5", "x"])["result"]
    assert REF.match(ref)
    via_xml = wire.xml_ok(url, "host.get_all", ref)
    via_v1 = wire.json(url, "host.get_all", [ref], version=1)
    via_v2 = wire.json(url, "host.get_all", [ref], version=2)
    assert sorted(via_xml) == sorted(via_v1["result"]) == sorted(via_v2["result"])
    assert via_v1["error"] is None
    # login over XML-RPC, use and log out over JSON-RPC v1
    ref2 = wire.login(url)
    assert wire.json(url, "pool.get_all", [ref2], version=1)["result"] == wire.xml_ok(
        url, "pool.get_all", ref2
    )
    assert wire.json(url, "session.logout", [ref2], version=1) == {
        "result": "",
        "error": None,
        "id": 1,
    }
    assert wire.xml_err(url, "pool.get_all", ref2) == ["SESSION_INVALID", ref2]
    # log out the JSON-made session over XML-RPC
    assert wire.xml_ok(url, "session.logout", ref) == ""
    assert wire.json(url, "pool.get_all", [ref])["error"]["data"] == [ref]


def test_xenapi_session_usable_over_plain_xmlrpc_client(world, session):
    proxy = xmlrpc.client.ServerProxy(world.master_url(), allow_none=True)
    out = proxy.VM.get_all(session.handle)
    assert out["Status"] == "Success"
    assert sorted(out["Value"]) == sorted(session.xenapi.VM.get_all())
