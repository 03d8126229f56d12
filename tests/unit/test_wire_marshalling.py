"""Marshalling defects of issue 12 (items 5, 6, 10), at the codec level.

* XML-RPC: every text position is escaped -- string values, struct member names (map keys,
  at any depth), datetimes -- so any text XAPI accepts comes back through Python's
  ``xmlrpc.client`` (what ``XenAPI`` uses) and through our own decoder unchanged, apart from
  what XML itself does to CR. Non-finite doubles are written as C's printf writes them.
* JSON-RPC: every reply is RFC 8259 JSON, non-finite floats included (as the strings
  ``"NaN"``, ``"Infinity"``, ``"-Infinity"``).
* ``system.isAlive:``: what xapi answers, with the echo bounded by xapi's body limit.
"""

from __future__ import annotations

import json
import math
import xmlrpc.client

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xapi_sim.datamodel import Timestamp
from xapi_sim.dispatch import _BAD_CHARS
from xapi_sim.errors import Failure
from xapi_sim.wire import jsonrpc
from xapi_sim.wire import xmlrpc as xr
from xapi_sim.wire.values import MAX_RPC_SIZE, is_alive

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text XAPI accepts in a parameter (dispatch._BAD_CHARS refuses the rest), with markup and
# whitespace drawn often.
REFUSED = "".join(
    chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and _BAD_CHARS.match(chr(c))
)
legal = st.characters(exclude_categories=("Cs",), exclude_characters=REFUSED)
markup = st.sampled_from(list("<>&\"'\t\n\r ]"))
text = st.text(st.one_of(legal, markup), max_size=16)
scalars = st.one_of(
    text,
    st.integers(-(1 << 63), (1 << 63) - 1),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)),
    max_leaves=12,
)


def strict_json(body: bytes):
    """RFC 8259 only: Python's json module otherwise accepts NaN, Infinity, -Infinity."""

    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    return json.loads(body, parse_constant=refuse)


def after_xml(v):
    """What an XML parser reads back: XML end-of-line normalisation turns CR into LF (XAPI
    writes CR raw, as rpclib does); ints are untyped strings; doubles ``%.16g``."""
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        return v.replace("\r\n", "\n").replace("\r", "\n")
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return float(f"{v:.16g}")
    if isinstance(v, list):
        return [after_xml(x) for x in v]
    return {after_xml(k): after_xml(x) for k, x in v.items()}


def call_body(encoded_value: str) -> bytes:
    return (
        f"<methodCall><methodName>m</methodName><params><param>{encoded_value}</param>"
        f"</params></methodCall>"
    ).encode()


# -- XML-RPC: escaping --------------------------------------------------------------------------


@SETTINGS
@given(values)
def test_any_accepted_text_in_any_position_reaches_python_clients(v):
    (out,), _ = xmlrpc.client.loads(xr.encode_success(v))
    assert out == {"Status": "Success", "Value": after_xml(v)}


@SETTINGS
@given(values)
def test_any_accepted_text_in_any_position_reaches_our_decoder(v):
    assert xr.decode_call(call_body(xr.encode_value(v))) == ("m", [after_xml(v)])


@SETTINGS
@given(st.dictionaries(text, text, max_size=6))
def test_python_clients_maps_decode_exactly(m):
    """What ``XenAPI`` sends (keys and values escaped by ``xmlrpc.client``) decodes exactly;
    a CR in a request reaches any XML server as LF."""
    body = xmlrpc.client.dumps(({k: v for k, v in m.items()},), "VM.set_other_config").encode()
    assert xr.decode_call(body) == ("VM.set_other_config", [after_xml(m)])


@pytest.mark.parametrize(
    "key",
    ["a<b", "a>b", "a&b", "&amp;", "]]>", '"', "<value>x</value>", "</name></member>", "&#0;"],
)
def test_markup_in_map_keys(key):
    v = {"outer": {key: {key: key}}, key: [key]}
    body = xr.encode_success(v)
    (out,), _ = xmlrpc.client.loads(body)
    assert out["Value"] == v
    assert xr.decode_call(call_body(xr.encode_value(v)))[1] == [v]


def test_key_escaping_is_rpclibs_text_escaping():
    assert xr.encode_value({'a<b>&"c': "v"}) == (
        "<value><struct><member><name>a&lt;b&gt;&amp;&quot;c</name><value>v</value>"
        "</member></struct></value>"
    )
    # control characters XML cannot carry are dropped, in keys as in values
    assert xr.encode_value({"a\x01b": "c\x02d"}) == (
        "<value><struct><member><name>ab</name><value>cd</value></member></struct></value>"
    )
    # non-string keys (int-keyed maps) are written in decimal
    assert xr.encode_value({0: 1.0}) == (
        "<value><struct><member><name>0</name><value><double>1</double></value></member>"
        "</struct></value>"
    )


def test_datetimes_are_escaped_too():
    wire = xr.encode_value(Timestamp("2024<&>"))
    assert wire == "<value><dateTime.iso8601>2024&lt;&amp;&gt;</dateTime.iso8601></value>"
    assert xr.decode_call(call_body(wire))[1] == [Timestamp("2024<&>")]


def test_decoder_reads_every_xml_spelling_of_text():
    """Character references, CDATA and entity escapes decode in names and values alike."""
    body = call_body(
        "<value><struct><member><name>a&#13;b&#x3c;<![CDATA[<&>]]></name>"
        "<value><string>c&#13;<![CDATA[]]]]><![CDATA[>]]>&gt;</string></value>"
        "</member></struct></value>"
    )
    assert xr.decode_call(body)[1] == [{"a\rb<<&>": "c\r]]>>"}]


# -- XML-RPC: non-finite doubles ------------------------------------------------------------


@pytest.mark.parametrize(
    "f,wire",
    [
        (float("nan"), "nan"),
        (-float("nan"), "-nan"),
        (float("inf"), "inf"),
        (float("-inf"), "-inf"),
        (0.1, "0.1"),
        (-0.0, "-0"),
        (1e300, "1e+300"),
    ],
)
def test_doubles_as_ocaml_printf_writes_them(f, wire):
    assert xr.encode_value(f) == f"<value><double>{wire}</double></value>"
    (out,), _ = xmlrpc.client.loads(xr.encode_success(f))
    back = out["Value"]
    assert (math.isnan(back) and math.isnan(f)) or back == f


# -- JSON-RPC: always RFC 8259 ----------------------------------------------------------------

NON_FINITE = [
    (float("nan"), "NaN"),
    (-float("nan"), "NaN"),
    (float("inf"), "Infinity"),
    (float("-inf"), "-Infinity"),
]


@pytest.mark.parametrize("f,text", NON_FINITE)
@pytest.mark.parametrize("version", [1, 2])
def test_non_finite_floats_are_json_strings(f, text, version):
    for v, expected in [
        (f, text),
        ([1.5, f], [1.5, text]),
        ({"0": f, "a": {"b": [f]}}, {"0": text, "a": {"b": [text]}}),
    ]:
        out = strict_json(jsonrpc.encode_success(version, 7, v))
        assert out["result"] == expected
    assert jsonrpc.float_text(f) == text


def floats_anywhere():
    fl = st.floats()  # NaN and infinities included
    return st.recursive(
        st.one_of(fl, text, st.integers(), st.booleans(), st.none()),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)
        ),
        max_leaves=16,
    )


def expected_json(v):
    if isinstance(v, float):
        return v if math.isfinite(v) else jsonrpc.float_text(v)
    if isinstance(v, list):
        return [expected_json(x) for x in v]
    if isinstance(v, dict):
        return {k: expected_json(x) for k, x in v.items()}
    return v


@SETTINGS
@given(floats_anywhere(), st.sampled_from([f for f, _ in NON_FINITE]), st.sampled_from([1, 2]))
def test_every_reply_is_strict_json(v, f, version):
    v = {"any": v, "non-finite": [f, {"k": f}]}  # always at least one non-finite
    out = strict_json(jsonrpc.encode_success(version, 1, v))
    assert out["result"] == expected_json(v)
    # the rendering reads back as the same float wherever a client parses it as a number
    for f in (float("nan"), float("inf"), float("-inf")):
        back = float(jsonrpc.float_text(f))
        assert (math.isnan(back) and math.isnan(f)) or back == f


def test_finite_floats_keep_the_fast_path_unchanged():
    assert (
        jsonrpc.encode_success(2, 1, [0.1, -0.0, 1e300])
        == b'{"jsonrpc":"2.0","result":[0.1,-0.0,1e+300],"id":1}'
    )


# -- system.isAlive: ------------------------------------------------------------------------


def test_is_alive_echoes_the_first_parameter():
    assert (
        is_alive(["5b1a1e5c-0000-4000-8000-000000000000"]) == "5b1a1e5c-0000-4000-8000-000000000000"
    )
    assert is_alive([{"a": ["b"]}, "ignored"]) == {"a": ["b"]}
    assert is_alive(["a" * MAX_RPC_SIZE]) == "a" * MAX_RPC_SIZE


def test_is_alive_without_parameters_is_list_hd_failing():
    with pytest.raises(Failure) as e:
        is_alive([])
    assert e.value.description == ["INTERNAL_ERROR", 'Failure("hd")']


@pytest.mark.parametrize(
    "param",
    [
        "a" * (MAX_RPC_SIZE + 1),
        "\u00e9" * (MAX_RPC_SIZE // 2 + 1),
        ["a" * 1024] * 400,
        {"k": "v" * MAX_RPC_SIZE},
    ],
)
def test_is_alive_never_echoes_more_than_xapi_reads(param):
    with pytest.raises(Failure) as e:
        is_alive([param])
    assert e.value.description == ["INTERNAL_ERROR", "Http_svr.Client_requested_size_over_limit"]
