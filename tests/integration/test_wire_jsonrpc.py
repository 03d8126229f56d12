"""JSON-RPC v1 and v2 on ``/jsonrpc`` (spec §3, §14.3, §15.1-2).

Exact reply shapes (a v2 success has no ``error`` member; a v2 error is
``{"code": 1, "message": CODE, "data": [...]}`` with ``data`` always present; v1 errors are
arrays), the id echoed (including 0 and strings), ``content-type: application/json`` exactly,
malformed requests (HTTP 500 + close), value types (ints are numbers), rpclib's type errors
and the UTF-8 parameter check.
"""

from __future__ import annotations

import json

import pytest

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


def post_json(wire, url, obj, raw=None):
    body = raw if raw is not None else json.dumps(obj).encode()
    return wire.post(url, body, path="/jsonrpc", headers={"Content-Type": "application/json"})


# -- reply shapes --------------------------------------------------------------------------


def test_v2_success_has_no_error_member(wire, url, sref, xapi):
    r = wire.json_reply(url, "pool.get_all", [sref], version=2, rid=7)
    assert r.status == 200
    assert r.headers["content-type"] == "application/json"
    out = r.json()
    assert out == {"jsonrpc": "2.0", "result": xapi.pool.get_all(), "id": 7}
    assert "error" not in out
    assert b"\n" not in r.body


def test_v2_error_object(wire, url, sref):
    out = wire.json(url, "VM.get_record", [sref, BAD_REF], version=2, rid=7)
    assert out == {
        "jsonrpc": "2.0",
        "id": 7,
        "error": {"code": 1, "message": "HANDLE_INVALID", "data": ["VM", BAD_REF]},
    }
    assert "result" not in out


def test_v2_error_data_is_always_an_array(wire, url, sref, xapi):
    host = xapi.host.get_all()[0]
    out = wire.json(url, "host.set_cpu_features", [sref, host, "x"])
    assert out["error"] == {"code": 1, "message": "MESSAGE_REMOVED", "data": []}


def test_v1_success_and_error(wire, url, sref, xapi):
    out = wire.json(url, "pool.get_all", [sref], version=1, rid=3)
    assert out == {"result": xapi.pool.get_all(), "error": None, "id": 3}
    out = wire.json(url, "VM.get_record", [sref, BAD_REF], version=1, rid=4)
    assert out == {"result": None, "error": ["HANDLE_INVALID", "VM", BAD_REF], "id": 4}


@pytest.mark.parametrize("rid", [0, 1, 2**40, -5, "abc", "", "0"])
@pytest.mark.parametrize("version", [1, 2])
def test_id_is_echoed(wire, url, sref, rid, version):
    assert wire.json(url, "pool.get_all", [sref], version=version, rid=rid)["id"] == rid
    assert wire.json(url, "VM.frobnicate", [], version=version, rid=rid)["id"] == rid


def test_content_type_is_exactly_application_json(wire, url, sref):
    for method, params in (
        ("pool.get_all", [sref]),
        ("VM.get_record", [sref, BAD_REF]),
        ("system.listMethods", []),
    ):
        r = wire.json_reply(url, method, params)
        assert r.headers["content-type"] == "application/json"


def test_void_result_is_empty_string(wire, url, sref, xapi):
    pool = xapi.pool.get_all()[0]
    out = wire.json(url, "pool.remove_from_other_config", [sref, pool, "nope"])
    assert out == {"jsonrpc": "2.0", "result": "", "id": 1}


def test_list_methods_is_an_ordinary_result(wire, url):
    out = wire.json(url, "system.listMethods", [])
    assert set(out) == {"jsonrpc", "result", "id"}
    assert "VM.get_all_records" in out["result"]
    assert not [m for m in out["result"] if m.startswith("sim.")]


# -- params forms --------------------------------------------------------------------------


def test_v2_params_absent_or_null_means_no_params(wire, url):
    for req in (
        {"jsonrpc": "2.0", "id": 1, "method": "system.listMethods"},
        {"jsonrpc": "2.0", "id": 1, "method": "system.listMethods", "params": None},
    ):
        out = post_json(wire, url, req).json()
        assert "VM.get_all" in out["result"]
    out = post_json(
        wire, url, {"jsonrpc": "2.0", "id": 1, "method": "session.login_with_password"}
    ).json()
    assert out["error"]["data"] == ["session.login_with_password", "2", "0"]


def test_v2_params_object_is_one_struct_param(wire, url):
    out = post_json(
        wire,
        url,
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "session.login_with_password",
            "params": {"uname": "root", "pwd": "xenroot"},
        },
    ).json()
    assert out["error"] == {
        "code": 1,
        "message": "MESSAGE_PARAMETER_COUNT_MISMATCH",
        "data": ["session.login_with_password", "2", "1"],
    }


@pytest.mark.parametrize(
    "req",
    [
        {"jsonrpc": "2.0", "method": "system.listMethods", "params": []},  # no id
        {"jsonrpc": "2.0", "method": "system.listMethods", "params": [], "id": None},  # null id
        {"jsonrpc": "2.0", "method": "system.listMethods", "params": [], "id": True},
        {"jsonrpc": "2.0", "method": "system.listMethods", "params": [], "id": 1.5},
        {"jsonrpc": "2.0", "method": "system.listMethods", "params": [], "id": [1]},
        {"jsonrpc": "1.0", "method": "system.listMethods", "params": [], "id": 1},
        {"jsonrpc": 2, "method": "system.listMethods", "params": [], "id": 1},
        {"method": "system.listMethods", "id": 1},  # v1 needs params
        {"method": "system.listMethods", "params": {}, "id": 1},
        {"jsonrpc": "2.0", "method": "system.listMethods", "params": "x", "id": 1},
        {"jsonrpc": "2.0", "params": [], "id": 1},  # no method
        {"jsonrpc": "2.0", "method": 5, "params": [], "id": 1},
        [{"jsonrpc": "2.0", "method": "system.listMethods", "params": [], "id": 1}],  # batch
        "just a string",
    ],
)
def test_malformed_requests_are_http_500(world, wire, url, sref, req):
    r = post_json(wire, url, req)
    assert r.status == 500
    assert r.headers["connection"] == "close"
    assert wire.json(url, "pool.get_all", [sref])["result"]


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b'{"id":1,}', b"\xff\xfe"])
def test_unparseable_json_is_http_500(world, wire, url, raw):
    r = post_json(wire, url, None, raw=raw)
    assert r.status == 500
    assert r.headers["connection"] == "close"


# -- value types ---------------------------------------------------------------------------


def test_ints_are_numbers_floats_bools_dates(wire, url, sref, vm):
    rec = wire.json(url, "VM.get_record", [sref, vm])["result"]
    assert rec["memory_static_max"] == 4 << 30 and isinstance(rec["memory_static_max"], int)
    assert rec["VCPUs_max"] == 2 and rec["domid"] == 1 and rec["user_version"] == 1
    assert rec["HVM_shadow_multiplier"] == 1.0
    assert rec["is_a_template"] is False and rec["power_state"] == "Running"
    assert rec["snapshot_time"] == "19700101T00:00:00Z"
    assert rec["VBDs"] == [] and rec["blocked_operations"] == {}
    assert wire.json(url, "VM.get_VCPUs_max", [sref, vm])["result"] == 2
    # the raw text carries number literals
    r = wire.json_reply(url, "VM.get_memory_static_max", [sref, vm])
    assert b'"result":4294967296' in r.body.replace(b" ", b"")


def test_int_params_accept_numbers_and_strings(wire, url, sref, halted_vm, xapi):
    for sent, want in ((1 << 40, str(1 << 40)), ("12", "12"), (-3, "-3")):
        assert wire.json(url, "VM.set_user_version", [sref, halted_vm, sent])["result"] == ""
        assert xapi.VM.get_user_version(halted_vm) == want


@pytest.mark.parametrize(
    "method,value,text",
    [
        ("VM.set_is_a_template", "true", "Failure(\"Expected bool, got 'S(true)'\")"),
        ("VM.set_is_a_template", 0, "Failure(\"Expected bool, got 'I(0)'\")"),
        ("VM.set_is_a_template", None, "Failure(\"Expected bool, got 'N'\")"),
        ("VM.set_user_version", 1.5, "Failure(\"Expected int64, got 'F(1.5)'\")"),
        ("VM.set_user_version", "x", 'Failure("int_of_string")'),
        ("VM.set_name_label", None, "Failure(\"Expected string, got 'N'\")"),
        ("VM.set_name_label", ["a", 1], "Failure(\"Expected string, got '[S(a);I(1)]'\")"),
    ],
)
def test_wrong_types_are_internal_error(wire, url, sref, halted_vm, method, value, text):
    out = wire.json(url, method, [sref, halted_vm, value])
    assert out["error"] == {"code": 1, "message": "INTERNAL_ERROR", "data": [text]}


def test_invalid_utf8_in_a_parameter_is_invalid_value(world, wire, url, sref, halted_vm, xapi):
    before = xapi.VM.get_name_description(halted_vm)
    body = wire.json_body("VM.set_name_description", [sref, halted_vm, "XX"]).replace(
        b"XX", b"a\xffb"
    )
    r = post_json(wire, url, None, raw=body)
    assert r.status == 200
    out = r.json()
    assert out["error"]["message"] == "INVALID_VALUE"
    assert out["error"]["data"][0] == "Invalid UTF-8 string in parameter"
    assert out["error"]["data"][1].startswith("S(a") and out["error"]["data"][1].endswith("b)")
    assert xapi.VM.get_name_description(halted_vm) == before


@pytest.mark.parametrize("bad", ["\ud800", "x\x01y", "\ufffe"])
def test_strings_xml_cannot_carry_are_invalid_value(wire, url, sref, halted_vm, xapi, bad):
    """Lone surrogates, control characters and non-characters fail the UTF8_XML check."""
    before = xapi.VM.get_name_description(halted_vm)
    out = wire.json(url, "VM.set_name_description", [sref, halted_vm, bad])
    assert out["error"]["message"] == "INVALID_VALUE"
    assert out["error"]["data"][0] == "Invalid UTF-8 string in parameter"
    assert xapi.VM.get_name_description(halted_vm) == before


def test_utf8_check_covers_nested_values_and_unknown_methods(wire, url, sref):
    out = wire.json(url, "VM.frobnicate", [sref, {"k\x02": "v"}])
    assert out["error"] == {
        "code": 1,
        "message": "INVALID_VALUE",
        "data": ["Invalid UTF-8 string in parameter", "{k\x02:S(v)}"],
    }
    # the check comes before the count check
    out = wire.json(url, "VM.get_record", [["\x03"]])
    assert out["error"]["message"] == "INVALID_VALUE"


def test_non_ascii_round_trips(wire, url, sref, halted_vm, xapi):
    text = "caf\u00e9 \u4e2d\u6587 \U0001f600 tab\there"
    assert wire.json(url, "VM.set_name_description", [sref, halted_vm, text])["result"] == ""
    assert wire.json(url, "VM.get_name_description", [sref, halted_vm])["result"] == text
    assert xapi.VM.get_name_description(halted_vm) == text


def test_errors_match_xmlrpc(wire, url, sref, vm):
    for method, params in (
        ("VM.get_record", [sref]),
        ("VM.frobnicate", []),
        ("VM.frobnicate", ["dead"]),
        ("Async.VM.get_record", [sref, vm]),
        ("VM.get_by_uuid", [sref, "nope"]),
    ):
        x = wire.xml_err(url, method, *params)
        j = wire.json(url, method, params)["error"]
        assert [j["message"], *j["data"]] == x
        assert wire.json(url, method, params, version=1)["error"] == x
