"""The XML-RPC dialect on the wire (spec §1, §2, §4, §14, §15.3-9).

Exact envelopes (single line, Status first, never ``<fault>``), how each type is emitted
(int64 as untyped strings, ``<double>``, datetimes with ``Z``, empty sets and maps), what is
accepted (int tags or decimal strings, case-insensitive enums, bool only as ``<boolean>``),
the check order (count before session, unmarshalling before session, session before
Async/removed/unknown), error shapes, ``system.listMethods`` and the POST paths.
"""

from __future__ import annotations

import re
import xmlrpc.client

import pytest

HEAD = b'<?xml version="1.0"?><methodResponse><params><param>'
TAIL = b"</param></params></methodResponse>"
BAD_REF = "OpaqueRef:b2e3c0de-1111-4222-8333-444455556666"


@pytest.fixture(scope="module")
def url(world):
    return world.master_url()


@pytest.fixture(scope="module")
def sref(session):
    return session.handle


@pytest.fixture(scope="module")
def vm(xapi):
    return xapi.VM.get_by_name_label("web1")[0]


@pytest.fixture(scope="module")
def halted_vm(xapi):
    return xapi.VM.get_by_name_label("batch1")[0]


def raw(wire, url, method, *params):
    r = wire.xml_reply(url, method, *params)
    assert r.status == 200
    assert r.headers["content-type"] == "text/xml"
    return r.body


def value_of(body: bytes) -> bytes:
    """The bytes of the Value member of a Success envelope."""
    pre = (
        HEAD + b"<value><struct><member><name>Status</name><value>Success</value></member>"
        b"<member><name>Value</name>"
    )
    assert body.startswith(pre), body[:200]
    post = b"</member></struct></value>" + TAIL
    assert body.endswith(post), body[-200:]
    return body[len(pre) : -len(post)]


# -- envelopes ----------------------------------------------------------------------------


def test_success_envelope_is_exact(world, wire, url):
    body = raw(wire, url, "session.login_with_password", "root", "xenroot", "2.5", "t")
    assert b"\n" not in body
    ref = value_of(body)
    assert re.fullmatch(rb"<value>OpaqueRef:[0-9a-f-]{36}</value>", ref)


def test_failure_envelope_is_exact(wire, url, sref):
    body = raw(wire, url, "VM.get_record", sref, BAD_REF)
    assert body == (
        HEAD + b"<value><struct>"
        b"<member><name>Status</name><value>Failure</value></member>"
        b"<member><name>ErrorDescription</name><value><array><data>"
        b"<value>HANDLE_INVALID</value><value>VM</value><value>"
        + BAD_REF.encode()
        + b"</value></data></array></value></member>"
        b"</struct></value>" + TAIL
    )


def test_never_a_fault(wire, url, sref, vm):
    bodies = [
        raw(wire, url, m, *p)
        for m, p in [
            ("VM.frobnicate", ()),
            ("VM.frobnicate", (sref,)),
            ("VM.get_record", ()),
            ("VM.get_record", ("nope", vm)),
            ("Async.VM.get_record", (sref, vm)),
            ("VM.set_is_a_template", (sref, vm, "true")),
            ("system.multicall", ([],)),
            ("system.methodSignature", ("VM.get_record",)),
            ("host.set_cpu_features", (sref, vm, "")),
        ]
    ]
    for b in bodies:
        assert b"<fault>" not in b
        assert b"<name>Status</name><value>Failure</value>" in b


def test_void_result_is_empty_string(wire, url, sref, xapi):
    pool = xapi.pool.get_all()[0]
    body = raw(wire, url, "pool.remove_from_other_config", sref, pool, "no-such-key")
    assert value_of(body) == b"<value></value>"
    assert xapi.pool.remove_from_other_config(pool, "no-such-key") == ""


@pytest.mark.parametrize(
    "path", ["/", "/RPC2", "/json", "/xmlrpc", "/anything/else", "/?session_id=x"]
)
def test_xmlrpc_on_every_unclaimed_post_path(world, wire, sref, path):
    out = wire.xml(world.master_url(), "pool.get_all", sref, path=path)
    assert out["Status"] == "Success" and len(out["Value"]) == 1


# -- emitted types -------------------------------------------------------------------------


def test_int64_are_untyped_strings(wire, url, sref, vm, xapi):
    body = raw(wire, url, "VM.get_memory_static_max", sref, vm)
    assert value_of(body) == f"<value>{4 << 30}</value>".encode()
    rec = raw(wire, url, "VM.get_record", sref, vm)
    assert b"<int>" not in rec and b"<i4>" not in rec and b"<i8>" not in rec
    assert b"<member><name>user_version</name><value>1</value></member>" in rec
    assert b"<member><name>domid</name><value>1</value></member>" in rec
    # XenAPI therefore sees str
    r = xapi.VM.get_record(vm)
    assert r["memory_static_max"] == str(4 << 30) and r["VCPUs_max"] == "2"
    assert r["domid"] == "1" and r["user_version"] == "1"


def test_negative_and_large_int64(wire, url, sref, xapi):
    vm = xapi.VM.get_by_name_label("batch1")[0]
    assert value_of(raw(wire, url, "VM.get_domid", sref, vm)) == b"<value>-1</value>"
    host = xapi.host.get_by_name_label("xs1")[0]
    metrics = xapi.host.get_metrics(host)
    total = value_of(raw(wire, url, "host_metrics.get_memory_total", sref, metrics))
    assert total == f"<value>{256 << 30}</value>".encode()


def test_doubles(wire, url, sref, vm, xapi):
    assert (
        value_of(raw(wire, url, "VM.get_HVM_shadow_multiplier", sref, vm))
        == b"<value><double>1</double></value>"
    )
    cpu = xapi.host_cpu.get_all()[0]
    assert (
        value_of(raw(wire, url, "host_cpu.get_utilisation", sref, cpu))
        == b"<value><double>0</double></value>"
    )
    assert xapi.VM.get_HVM_shadow_multiplier(vm) == 1.0


def test_booleans(wire, url, sref, vm):
    assert (
        value_of(raw(wire, url, "VM.get_is_a_template", sref, vm))
        == b"<value><boolean>0</boolean></value>"
    )
    assert (
        value_of(raw(wire, url, "VM.get_is_control_domain", sref, vm))
        == b"<value><boolean>0</boolean></value>"
    )


def test_datetimes_have_a_trailing_z(wire, url, sref, vm, xapi):
    assert (
        value_of(raw(wire, url, "VM.get_snapshot_time", sref, vm))
        == b"<value><dateTime.iso8601>19700101T00:00:00Z</dateTime.iso8601></value>"
    )
    host = xapi.host.get_by_name_label("xs1")[0]
    now = value_of(raw(wire, url, "host.get_servertime", sref, host))
    assert re.fullmatch(
        rb"<value><dateTime.iso8601>\d{8}T\d\d:\d\d:\d\dZ"
        rb"</dateTime.iso8601></value>",
        now,
    )
    # XenAPI sees an xmlrpc DateTime whose text keeps the Z
    t = xapi.host.get_servertime(host)
    assert isinstance(t, xmlrpc.client.DateTime) and t.value.endswith("Z")
    last = xapi.host_metrics.get_last_updated(xapi.host.get_metrics(host))
    assert re.fullmatch(r"\d{8}T\d\d:\d\d:\d\dZ", last.value)
    # the one documented exception: local time has no zone designator
    local = xapi.host.get_server_localtime(host)
    assert re.fullmatch(r"\d{8}T\d\d:\d\d:\d\d", local.value)


def test_empty_sets_and_maps(wire, url, sref, vm):
    assert (
        value_of(raw(wire, url, "VM.get_VBDs", sref, vm))
        == b"<value><array><data></data></array></value>"
    )
    assert (
        value_of(raw(wire, url, "VM.get_blocked_operations", sref, vm))
        == b"<value><struct></struct></value>"
    )


def test_refs_and_null_refs(wire, url, sref, vm):
    assert (
        value_of(raw(wire, url, "VM.get_suspend_VDI", sref, vm)) == b"<value>OpaqueRef:NULL</value>"
    )


def test_strings_are_escaped(wire, url, sref, halted_vm, xapi):
    xapi.VM.set_name_description(halted_vm, "a<b>&\"c' \u00e9")
    body = raw(wire, url, "VM.get_name_description", sref, halted_vm)
    assert value_of(body) == "<value>a&lt;b&gt;&amp;&quot;c' \u00e9</value>".encode()
    assert xapi.VM.get_name_description(halted_vm) == "a<b>&\"c' \u00e9"


def test_records_and_get_all_records(wire, url, sref, xapi):
    body = raw(wire, url, "pool.get_all_records", sref)
    pool = xapi.pool.get_all()[0]
    assert value_of(body).startswith(
        f"<value><struct><member><name>{pool}</name>"
        "<value><struct><member><name>uuid</name>".encode()
    )


# -- accepted parameter types --------------------------------------------------------------


def test_int_params_accept_int_tags_and_decimal_strings(wire, url, sref, halted_vm, xapi):
    for raw_value, want in (
        ("<value><int>5</int></value>", "5"),
        ("<value><i4>6</i4></value>", "6"),
        ("<value><i8>8589934592</i8></value>", "8589934592"),
        ("<value>8589934593</value>", "8589934593"),
        ("<value><string>-7</string></value>", "-7"),
    ):
        out = wire.xml_raw(
            url,
            "VM.set_user_version",
            f"<value>{sref}</value>",
            f"<value>{halted_vm}</value>",
            raw_value,
        )
        assert out == {"Status": "Success", "Value": ""}, raw_value
        assert xapi.VM.get_user_version(halted_vm) == want


@pytest.mark.parametrize(
    "value,text",
    [
        ("true", "Failure(\"Expected bool, got 'S(true)'\")"),
        (1, "Failure(\"Expected bool, got 'I(1)'\")"),
        ([True], "Failure(\"Expected bool, got '[B(true)]'\")"),
        ({"a": True, "b": "x"}, "Failure(\"Expected bool, got '{a:B(true);b:S(x)}'\")"),
    ],
)
def test_bool_params_accept_only_booleans(wire, url, sref, halted_vm, value, text):
    err = wire.xml_err(url, "VM.set_is_a_template", sref, halted_vm, value)
    assert err == ["INTERNAL_ERROR", text]


def test_wrong_types_give_rpclib_texts(wire, url, sref, halted_vm):
    assert wire.xml_err(url, "VM.set_name_description", sref, halted_vm, 5) == [
        "INTERNAL_ERROR",
        "Failure(\"Expected string, got 'I(5)'\")",
    ]
    assert wire.xml_err(url, "VM.set_user_version", sref, halted_vm, "abc") == [
        "INTERNAL_ERROR",
        'Failure("int_of_string")',
    ]
    assert wire.xml_err(url, "VM.set_user_version", sref, halted_vm, 1.5) == [
        "INTERNAL_ERROR",
        "Failure(\"Expected int64, got 'F(1.5)'\")",
    ]
    assert wire.xml_err(url, "VM.set_user_version", sref, halted_vm, True) == [
        "INTERNAL_ERROR",
        "Failure(\"Expected int64, got 'B(true)'\")",
    ]
    assert wire.xml_err(url, "VM.get_record", sref, 42) == [
        "INTERNAL_ERROR",
        "Failure(\"Expected string, got 'I(42)'\")",
    ]
    # quotes and non-ASCII inside the rendering are OCaml-escaped (%S)
    assert wire.xml_err(url, "VM.set_is_a_template", sref, halted_vm, 'say "h\u00e9"') == [
        "INTERNAL_ERROR",
        'Failure("Expected bool, got \'S(say \\"h\\195\\169\\")\'")',
    ]


def test_unmarshalling_comes_before_the_session_check(wire, url, halted_vm):
    err = wire.xml_err(url, "VM.set_is_a_template", "not-a-session", halted_vm, "true")
    assert err == ["INTERNAL_ERROR", "Failure(\"Expected bool, got 'S(true)'\")"]


def test_enums_match_case_insensitively(wire, url, sref, halted_vm, xapi):
    for sent in ("RESTART", "Destroy", "restart"):
        assert wire.xml_ok(url, "VM.set_actions_after_reboot", sref, halted_vm, sent) == ""
        assert xapi.VM.get_actions_after_reboot(halted_vm) == sent.lower()
    err = wire.xml_err(url, "VM.set_actions_after_reboot", sref, halted_vm, "explode")
    assert err[0] == "INTERNAL_ERROR" and "explode" in err[1]
    assert xapi.VM.get_actions_after_reboot(halted_vm) == "restart"


def test_empty_array_forms_are_accepted(wire, url, sref, halted_vm, xapi):
    for raw_value in (
        "<value><array><data></data></array></value>",
        "<value><array><data/></array></value>",
        "<value><array/></value>",
    ):
        xapi.VM.set_tags(halted_vm, ["t"])
        out = wire.xml_raw(
            url, "VM.set_tags", f"<value>{sref}</value>", f"<value>{halted_vm}</value>", raw_value
        )
        assert out == {"Status": "Success", "Value": ""}, raw_value
        assert xapi.VM.get_tags(halted_vm) == []


# -- check order and error shapes ----------------------------------------------------------


def test_parameter_count_mismatch(wire, url, sref, vm):
    assert wire.xml_err(url, "VM.get_record", sref) == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH",
        "VM.get_record",
        "1",
        "0",
    ]
    assert wire.xml_err(url, "VM.get_record") == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH",
        "VM.get_record",
        "1",
        "-1",
    ]
    assert wire.xml_err(url, "VM.get_record", sref, vm, vm) == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH",
        "VM.get_record",
        "1",
        "2",
    ]
    assert wire.xml_err(url, "VM.set_name_label", sref, vm) == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH",
        "VM.set_name_label",
        "2",
        "1",
    ]
    assert wire.xml_err(url, "VM.get_all", sref, "extra") == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH",
        "VM.get_all",
        "0",
        "1",
    ]


def test_count_is_checked_before_the_session(wire, url):
    assert wire.xml_err(url, "VM.get_record", "dead-session") == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH",
        "VM.get_record",
        "1",
        "0",
    ]
    assert wire.xml_err(url, "Async.VM.get_record", "dead-session") == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH",
        "VM.get_record",
        "1",
        "0",
    ]


def test_class_msg_spelling(wire, url, sref, xapi):
    assert sorted(wire.xml_ok(url, "VM_get_all", sref)) == sorted(xapi.VM.get_all())
    assert sorted(wire.xml_ok(url, "host_cpu_get_all", sref)) == sorted(xapi.host_cpu.get_all())
    assert sorted(wire.xml_ok(url, "VM_metrics_get_all", sref)) == sorted(xapi.VM_metrics.get_all())


def test_class_names_are_case_sensitive(wire, url, sref):
    assert wire.xml_err(url, "vm.get_all", sref) == ["MESSAGE_METHOD_UNKNOWN", "vm.get_all"]
    assert wire.xml_err(url, "Host.get_all", sref) == ["MESSAGE_METHOD_UNKNOWN", "Host.get_all"]


def test_unknown_method_without_params(wire, url):
    assert wire.xml_err(url, "VM.frobnicate") == ["MESSAGE_METHOD_UNKNOWN", "VM.frobnicate"]
    assert wire.xml_err(url, "nonsense") == ["MESSAGE_METHOD_UNKNOWN", "nonsense"]


def test_unknown_method_with_params_checks_the_session_first(world, wire, url, sref):
    assert wire.xml_err(url, "VM.frobnicate", "dead") == ["SESSION_INVALID", "dead"]
    assert wire.xml_err(url, "VM.frobnicate", sref, 1, 2) == [
        "MESSAGE_METHOD_UNKNOWN",
        "VM.frobnicate",
    ]
    assert wire.xml_err(url, "Async.VM.frobnicate", sref) == [
        "MESSAGE_METHOD_UNKNOWN",
        "VM.frobnicate",
    ]
    for name in ("system.multicall", "system.methodSignature"):
        assert wire.xml_err(url, name, "dead") == ["SESSION_INVALID", "dead"]
        assert wire.xml_err(url, name, sref) == ["MESSAGE_METHOD_UNKNOWN", name]
    master = next(h["address"] for h in world.describe()["hosts"] if h["master"])
    assert wire.xml_err(world.url("xs2"), "VM.frobnicate", sref) == ["HOST_IS_SLAVE", master]


def test_async_of_a_message_without_async_mode(wire, url, sref, vm, xapi):
    for method, params in (
        ("VM.get_record", (vm,)),
        ("pool.get_all", ()),
        ("VM.set_name_label", (vm, "x")),
        ("task.create", ("a", "b")),
        ("session.get_record", (sref,)),
        ("event.from", (["*"], "", 0.1)),
    ):
        assert wire.xml_err(url, "Async." + method, sref, *params) == [
            "Fault",
            f"No async mode for this operation (rpc: {method})",
        ]
    assert xapi.VM.get_name_label(vm) == "web1"  # nothing ran


def test_async_checks_the_session_first(wire, url, vm):
    assert wire.xml_err(url, "Async.VM.get_record", "dead", vm) == ["SESSION_INVALID", "dead"]


def test_removed_message(wire, url, sref, xapi):
    host = xapi.host.get_all()[0]
    assert wire.xml_err(url, "host.set_cpu_features", sref, host, "ffffffff") == ["MESSAGE_REMOVED"]
    # after the session check, after the count check
    assert wire.xml_err(url, "host.set_cpu_features", "dead", host, "x") == [
        "SESSION_INVALID",
        "dead",
    ]
    assert wire.xml_err(url, "host.set_cpu_features", "dead", host) == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH",
        "host.set_cpu_features",
        "2",
        "1",
    ]


def test_handle_invalid_and_uuid_invalid(wire, url, sref, xapi):
    assert wire.xml_err(url, "VM.get_record", sref, BAD_REF) == ["HANDLE_INVALID", "VM", BAD_REF]
    assert wire.xml_err(url, "host.get_record", sref, "OpaqueRef:NULL") == [
        "HANDLE_INVALID",
        "host",
        "OpaqueRef:NULL",
    ]
    assert wire.xml_err(url, "VM.get_by_uuid", sref, "nonexistent-uuid") == [
        "UUID_INVALID",
        "VM",
        "nonexistent-uuid",
    ]


# -- system.listMethods --------------------------------------------------------------------


def test_list_methods_is_a_bare_array(wire, url):
    body = raw(wire, url, "system.listMethods")
    assert body.startswith(HEAD + b"<value><array><data><value>")
    assert body.endswith(b"</value></data></array></value>" + TAIL)
    assert b"Status" not in body
    names = xmlrpc.client.loads(body)[0][0]
    for m in (
        "session.login_with_password",
        "session.logout",
        "VM.get_all_records",
        "pool.get_all_records",
        "host.get_all_records",
        "host_cpu.get_all_records",
        "event.from",
        "task.get_all_records",
        "VM.get_record",
    ):
        assert m in names
    assert not [n for n in names if n.startswith("sim.") or n.startswith("Async.")]
    # classes outside expose_get_all_messages_for have no get_all* (XO loads what is listed)
    for cls in ("session", "event", "user"):
        for m in ("get_all", "get_all_records", "get_all_records_where", "get_all_where"):
            assert f"{cls}.{m}" not in names
    assert len(names) == len(set(names))
    # no session is needed, and extra parameters change nothing
    assert xmlrpc.client.loads(raw(wire, url, "system.listMethods", "x"))[0][0] == names


def test_list_methods_through_server_proxy(world):
    names = xmlrpc.client.ServerProxy(world.master_url()).system.listMethods()
    assert isinstance(names, list) and "VM.get_all_records" in names


def test_list_methods_on_a_member(world, wire):
    names = wire.xml(world.url("xs3"), "system.listMethods")
    assert "VM.get_all_records" in names
