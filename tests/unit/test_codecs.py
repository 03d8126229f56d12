"""Property tests (hypothesis) for the wire codecs and the where-language.

* XML-RPC: what XAPI's encoder emits is what Python's ``xmlrpc.client`` (XenAPI) decodes,
  value for value (int64 as str, ``%.16g`` doubles, control characters dropped, datetimes
  with their ``Z``); what Python clients send decodes to the same values on our side; our
  decoder reads our encoder's output back.
* JSON-RPC: v1/v2 envelopes round-trip through ``json``; requests decode to what was sent.
* where-language: printed trees parse back to themselves, and flat expressions parse the way
  a shift-reduce parser applying ocamlyacc's precedence rules parses them.
* rpclib renderings and parameter conversion.
"""

from __future__ import annotations

import datetime
import json
import xmlrpc.client

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xapi_sim import where
from xapi_sim.datamodel import Timestamp, parse_type
from xapi_sim.errors import Failure
from xapi_sim.wire import jsonrpc
from xapi_sim.wire import xmlrpc as xr
from xapi_sim.wire.values import I4, convert, ocaml_escaped, rpc_to_string

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- value strategies --------------------------------------------------------------------------

# any text XML can carry once the encoder has dropped control characters (no surrogates).
# U+FFFE and U+FFFF are outside XML's Char production: the encoder passes them on as their
# bytes, as xapi's does, and an XML parser refuses the document -- xapi never holds them,
# since its parameter check refuses them on the way in (dispatch._BAD_CHARS).
xml_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufffe\uffff"),
    max_size=30,
)
# struct member names are not escaped by XAPI's encoder: keep them to safe characters
safe_keys = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="<>&\r"), max_size=12
)
int64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
finite = st.floats(allow_nan=False, allow_infinity=False)
stamps = st.datetimes(
    min_value=datetime.datetime(1970, 1, 1), max_value=datetime.datetime(2100, 1, 1)
).map(lambda d: Timestamp(d.strftime("%Y%m%dT%H:%M:%SZ")))

scalars = st.one_of(xml_text, int64, st.booleans(), finite, stamps)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(safe_keys, inner, max_size=4)
    ),
    max_leaves=12,
)


def xml_chars(s: str) -> str:
    """A string as an XML parser returns it after XAPI's encoder: control characters other
    than tab/LF/CR dropped, CR and CRLF normalised to LF by the parser."""
    s = "".join(c for c in s if c >= " " or c in "\t\n\r")
    return s.replace("\r\n", "\n").replace("\r", "\n")


def client_view(v):
    """What Python's xmlrpc.client makes of a value XAPI's encoder emitted."""
    if isinstance(v, bool):
        return v
    if isinstance(v, Timestamp):
        return xmlrpc.client.DateTime(str(v))
    if isinstance(v, str):
        return xml_chars(v)
    if isinstance(v, int):
        return str(v)  # untyped <value>: a string
    if isinstance(v, float):
        return float(f"{v:.16g}")
    if isinstance(v, list):
        return [client_view(x) for x in v]
    if isinstance(v, dict):
        return {k: client_view(x) for k, x in v.items()}
    raise AssertionError(v)


def server_view(v):
    """What our decoder makes of a value our encoder emitted (no type information)."""
    if isinstance(v, bool):
        return v
    if isinstance(v, Timestamp):
        return v
    if isinstance(v, str):
        return xml_chars(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return float(f"{v:.16g}")
    if isinstance(v, list):
        return [server_view(x) for x in v]
    if isinstance(v, dict):
        return {k: server_view(x) for k, x in v.items()}
    raise AssertionError(v)


def has_lf(v):
    if isinstance(v, str):
        return "\n" in v
    if isinstance(v, list):
        return any(has_lf(x) for x in v)
    if isinstance(v, dict):
        return any(has_lf(x) for x in v.values())
    return False


def call_body(*encoded_values):
    ps = "".join(f"<param>{v}</param>" for v in encoded_values)
    return f"<methodCall><methodName>m</methodName><params>{ps}</params></methodCall>".encode()


# -- XML-RPC ---------------------------------------------------------------------------------


@SETTINGS
@given(values)
def test_xml_success_as_python_clients_see_it(v):
    body = xr.encode_success(v)
    assert (b"\n" in body) == has_lf(v)  # one line, unless the data has a LF
    (out,), method = xmlrpc.client.loads(body)
    assert method is None
    assert out == {"Status": "Success", "Value": client_view(v)}


@SETTINGS
@given(st.lists(xml_text, min_size=1, max_size=5))
def test_xml_failure_as_python_clients_see_it(desc):
    (out,), _ = xmlrpc.client.loads(xr.encode_failure(desc))
    assert list(out) == ["Status", "ErrorDescription"]
    assert out == {"Status": "Failure", "ErrorDescription": [xml_chars(d) for d in desc]}


@SETTINGS
@given(values)
def test_xml_decoder_reads_the_encoder(v):
    name, params = xr.decode_call(call_body(xr.encode_value(v)))
    assert (name, params) == ("m", [server_view(v)])


# what Python clients can send: ints within 32 bits, no control characters, no CR
client_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)
client_scalars = st.one_of(
    client_text,
    st.integers(-(1 << 31), (1 << 31) - 1),
    st.booleans(),
    finite,
    st.none(),
    st.binary(max_size=20),
    stamps,
)
client_values = st.recursive(
    client_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(client_text, inner, max_size=4)
    ),
    max_leaves=12,
)


def sent_view(v):
    if isinstance(v, Timestamp):
        return v
    if isinstance(v, list):
        return [sent_view(x) for x in v]
    if isinstance(v, dict):
        return {k: sent_view(x) for k, x in v.items()}
    return v


def to_client(v):
    if isinstance(v, Timestamp):
        return xmlrpc.client.DateTime(str(v))
    if isinstance(v, bytes):
        return xmlrpc.client.Binary(v)
    if isinstance(v, list):
        return [to_client(x) for x in v]
    if isinstance(v, dict):
        return {k: to_client(x) for k, x in v.items()}
    return v


@SETTINGS
@given(st.lists(client_values, max_size=4), st.sampled_from(["VM.get_record", "Async.x.y"]))
def test_xml_decoder_reads_python_clients(params, method):
    body = xmlrpc.client.dumps(
        tuple(to_client(p) for p in params), method, allow_none=True
    ).encode()
    name, got = xr.decode_call(body)
    assert name == method
    assert got == [sent_view(p) for p in params]


def test_xml_ints_and_strings_on_input():
    body = call_body(
        "<value><int>1</int></value>",
        "<value><i4>-2</i4></value>",
        "<value><i8>8589934592</i8></value>",
        "<value>  spaced  </value>",
        "<value><string></string></value>",
        "<value></value>",
        "<value/>",
        "<value><boolean>0</boolean></value>",
        "<value><double>1e3</double></value>",
        "<value><nil/></value>",
        "<value><array/></value>",
        "<value><struct/></value>",
    )
    assert xr.decode_call(body)[1] == [
        1,
        -2,
        8589934592,
        "  spaced  ",
        "",
        "",
        "",
        False,
        1000.0,
        None,
        [],
        {},
    ]


@pytest.mark.parametrize(
    "v,wire",
    [
        ("", "<value></value>"),
        ("a<b", "<value>a&lt;b</value>"),
        ("\x01x\x1fy\tz", "<value>xy\tz</value>"),
        (0, "<value>0</value>"),
        (-(1 << 63), f"<value>{-(1 << 63)}</value>"),
        (True, "<value><boolean>1</boolean></value>"),
        (0.1, "<value><double>0.1</double></value>"),
        (1.0, "<value><double>1</double></value>"),
        (1.5e-05, "<value><double>1.5e-05</double></value>"),
        (float("nan"), "<value><double>nan</double></value>"),
        (float("-inf"), "<value><double>-inf</double></value>"),
        (I4(3), "<value><i4>3</i4></value>"),
        (
            Timestamp("20240101T12:34:56Z"),
            "<value><dateTime.iso8601>20240101T12:34:56Z</dateTime.iso8601></value>",
        ),
        ([], "<value><array><data></data></array></value>"),
        ({}, "<value><struct></struct></value>"),
        (
            {"0": 1.0},
            "<value><struct><member><name>0</name><value><double>1</double></value>"
            "</member></struct></value>",
        ),
    ],
)
def test_xml_encodings(v, wire):
    assert xr.encode_value(v) == wire


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<x/>",
        b"<methodCall/>",
        b"<methodCall><methodName>m</methodName></methodCall>",
        b"<methodCall><params/></methodCall>",
        b"<methodCall><methodName>m</methodName><params><param/></params></methodCall>",
        b"<methodCall><methodName>m</methodName><params><param><value><int>x</int></value>"
        b"</param></params></methodCall>",
        b"<methodCall><methodName>m</methodName><params><param><value><array><x/></array>"
        b"</value></param></params></methodCall>",
        b'<!DOCTYPE x [<!ENTITY e "y">]><methodCall><methodName>&e;</methodName><params/>'
        b"</methodCall>",
    ],
)
def test_xml_parse_errors(body):
    with pytest.raises(xr.XmlRpcParseError):
        xr.decode_call(body)


# -- JSON-RPC --------------------------------------------------------------------------------

json_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
json_scalars = st.one_of(
    json_text, int64, st.booleans(), finite, stamps, st.integers(0, 1000).map(I4)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(json_text, inner, max_size=4)
    ),
    max_leaves=12,
)
ids = st.one_of(int64, json_text)


def plain(v):
    if isinstance(v, bool):
        return v
    if isinstance(v, (Timestamp, str)):
        return str(v)
    if isinstance(v, int):
        return int(v)
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return v


@SETTINGS
@given(json_values, ids)
def test_json_success_envelopes(v, rid):
    out2 = json.loads(jsonrpc.encode_success(2, rid, v))
    assert out2 == {"jsonrpc": "2.0", "result": plain(v), "id": rid}
    assert list(out2) == ["jsonrpc", "result", "id"]
    out1 = json.loads(jsonrpc.encode_success(1, rid, v))
    assert out1 == {"result": plain(v), "error": None, "id": rid}


@SETTINGS
@given(st.lists(json_text, min_size=1, max_size=5), ids)
def test_json_failure_envelopes(desc, rid):
    out2 = json.loads(jsonrpc.encode_failure(2, rid, desc))
    assert out2 == {
        "jsonrpc": "2.0",
        "error": {"code": 1, "message": desc[0], "data": desc[1:]},
        "id": rid,
    }
    assert "result" not in out2
    out1 = json.loads(jsonrpc.encode_failure(1, rid, desc))
    assert out1 == {"result": None, "error": desc, "id": rid}


@SETTINGS
@given(st.lists(json_values.map(plain), max_size=4), ids, json_text, st.sampled_from([1, 2]))
def test_json_requests_decode_to_what_was_sent(params, rid, method, version):
    req = {"method": method, "params": params, "id": rid}
    if version == 2:
        req["jsonrpc"] = "2.0"
    assert jsonrpc.decode_call(json.dumps(req).encode()) == (version, rid, method, params)


def test_json_v2_params_forms():
    dec = jsonrpc.decode_call
    assert dec(b'{"jsonrpc":"2.0","id":0,"method":"m"}') == (2, 0, "m", [])
    assert dec(b'{"jsonrpc":"2.0","id":0,"method":"m","params":null}') == (2, 0, "m", [])
    assert dec(b'{"jsonrpc":"2.0","id":"a","method":"m","params":{"k":1}}') == (
        2,
        "a",
        "m",
        [{"k": 1}],
    )


def test_json_invalid_utf8_reaches_the_parameter_check():
    _, _, _, params = jsonrpc.decode_call(b'{"id":1,"method":"m","params":["a\xffb"]}')
    assert params == ["a\udcffb"]
    # and encoding it back never fails
    out = json.loads(jsonrpc.encode_failure(2, 1, ["INVALID_VALUE", "S(a\udcffb)"]))
    assert out["error"]["data"] == ["S(a?b)"]


# -- rpclib renderings and parameter conversion ----------------------------------------------


@pytest.mark.parametrize(
    "v,text",
    [
        ("x", "S(x)"),
        (5, "I(5)"),
        (-5, "I(-5)"),
        (True, "B(true)"),
        (False, "B(false)"),
        (1.5, "F(1.5)"),
        (1.0, "F(1)"),
        (1e20, "F(1e+20)"),
        (None, "N"),
        (Timestamp("20240101T00:00:00Z"), "D(20240101T00:00:00Z)"),
        ([], "[]"),
        (["a", 1], "[S(a);I(1)]"),
        ({}, "{}"),
        ({"a": 1, "b": [True]}, "{a:I(1);b:[B(true)]}"),
    ],
)
def test_rpc_to_string(v, text):
    assert rpc_to_string(v) == text


@pytest.mark.parametrize(
    "s,escaped",
    [
        ("plain", "plain"),
        ('a"b', 'a\\"b'),
        ("a\\b", "a\\\\b"),
        ("a\nb\tc", "a\\nb\\tc"),
        ("\u00e9", "\\195\\169"),
        ("\x01", "\\001"),
        ("\x7f", "\\127"),
    ],
)
def test_ocaml_escaped(s, escaped):
    assert ocaml_escaped(s) == escaped


@SETTINGS
@given(int64)
def test_int64_params_accept_ints_and_decimal_strings(n):
    t = parse_type("int")
    assert convert(t, n) == n
    assert convert(t, str(n)) == n


@SETTINGS
@given(finite)
def test_float_params_accept_floats_ints_and_strings(f):
    t = parse_type("float")
    assert convert(t, f) == f
    assert convert(t, repr(f)) == f
    assert convert(t, 3) == 3.0


def internal_error(ty, v):
    with pytest.raises(Failure) as e:
        convert(parse_type(ty), v)
    assert e.value.code == "INTERNAL_ERROR"
    return e.value.params


def test_conversion_errors():
    assert internal_error("bool", "true") == ["Failure(\"Expected bool, got 'S(true)'\")"]
    assert internal_error("bool", 1) == ["Failure(\"Expected bool, got 'I(1)'\")"]
    assert internal_error("int", "1.5") == ['Failure("int_of_string")']
    assert internal_error("int", 1.5) == ["Failure(\"Expected int64, got 'F(1.5)'\")"]
    assert internal_error("float", "x") == ['Failure("float_of_string")']
    assert internal_error("string", 3) == ["Failure(\"Expected string, got 'I(3)'\")"]
    assert internal_error("VM ref", None) == ["Failure(\"Expected string, got 'N'\")"]
    # the text is OCaml-escaped, as Printexc.to_string prints a Failure
    assert internal_error("bool", 'a"b') == ['Failure("Expected bool, got \'S(a\\"b)\'")']


def test_enum_and_collection_conversion():
    assert convert(parse_type("enum vm_power_state"), "running") == "Running"
    assert convert(parse_type("enum vm_power_state"), "HALTED") == "Halted"
    assert internal_error("enum vm_power_state", "exploded")[0].count("exploded")
    assert convert(parse_type("string set"), ["a"]) == ["a"]
    assert convert(parse_type("(string -> string) map"), {"k": "v"}) == {"k": "v"}
    assert convert(parse_type("(enum vm_operations -> string) map"), {"START": "x"}) == {
        "start": "x"
    }


# -- the where-language ----------------------------------------------------------------------

literals = st.text(
    st.characters(blacklist_characters='"', blacklist_categories=("Cs",)), max_size=8
)
columns = st.sampled_from(
    ["name__label", "power_state", "uuid", "memory__static_max", "is_a_template", "_ref"]
)
wvalues = st.one_of(literals.map(lambda s: ("lit", s)), columns.map(lambda c: ("field", c)))
atoms = st.one_of(
    st.just(("true",)), st.just(("false",)), st.tuples(st.just("eq"), wvalues, wvalues)
)
trees = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.tuples(st.just("not"), inner), st.tuples(st.sampled_from(["and", "or"]), inner, inner)
    ),
    max_leaves=10,
)


@SETTINGS
@given(trees)
def test_where_printed_trees_parse_back(tree):
    assert where.parse(where.to_text(tree)) == tree


ROW = {
    "name_label": "web1",
    "power_state": "Running",
    "uuid": "u1",
    "memory_static_max": 4096,
    "is_a_template": False,
}


def reference_eval(tree, row, ref):
    kind = tree[0]
    if kind in ("true", "false"):
        return kind == "true"
    if kind == "not":
        return not reference_eval(tree[1], row, ref)
    if kind == "and":
        return reference_eval(tree[1], row, ref) and reference_eval(tree[2], row, ref)
    if kind == "or":
        return reference_eval(tree[1], row, ref) or reference_eval(tree[2], row, ref)

    def val(v):
        if v[0] == "lit":
            return v[1]
        if v[1] == "_ref":
            return ref
        x = row[v[1].replace("__", "_")]
        return ("true" if x else "false") if isinstance(x, bool) else str(x)

    return val(tree[1]) == val(tree[2])


@SETTINGS
@given(trees, st.sampled_from(["web1", "Running", "u1", "4096", "false", "OpaqueRef:r"]))
def test_where_evaluation_matches_a_reference(tree, lit):
    row = dict(ROW, name_label=lit)
    assert where.evaluate(
        where.parse(where.to_text(tree)), row, "OpaqueRef:r", "VM"
    ) == reference_eval(tree, row, "OpaqueRef:r")


def yacc_parse(tokens):
    """An independent shift-reduce parser applying ocamlyacc's resolution rules to
    ``%right LNOT`` then ``%left LAND LOR`` (later lines bind tighter; a rule's precedence
    is its last terminal's; equal precedence + %left reduces)."""
    prec = {"not": 1, "and": 2, "or": 2}
    stack = []

    def reducible():
        if len(stack) >= 2 and stack[-2] == "not" and isinstance(stack[-1], tuple):
            return "not", 1
        if (
            len(stack) >= 3
            and isinstance(stack[-1], tuple)
            and stack[-2] in ("and", "or")
            and isinstance(stack[-3], tuple)
        ):
            return stack[-2], 2
        return None

    def reduce():
        if stack[-2] == "not":
            e = stack.pop()
            stack.pop()
            stack.append(("not", e))
        else:
            r, op, l_ = stack.pop(), stack.pop(), stack.pop()
            stack.append((op, l_, r))

    for tok in tokens + ["$"]:
        while True:
            red = reducible()
            if red is None:
                break
            if tok == "$":
                reduce()
                continue
            if tok in ("and", "or"):
                rule_prec = red[1]
                if rule_prec >= prec[tok]:  # higher, or equal and %left: reduce
                    reduce()
                    continue
            break
        if tok != "$":
            stack.append(tok)
    assert len(stack) == 1
    return stack[0]


flat = st.lists(
    st.tuples(st.lists(st.just("not"), max_size=2), atoms, st.sampled_from(["and", "or"])),
    min_size=1,
    max_size=6,
)


@SETTINGS
@given(flat)
def test_where_precedence_matches_ocamlyacc(parts):
    tokens, text = [], []
    for i, (nots, atom, op) in enumerate(parts):
        tokens += nots + [atom]
        text += nots + [where.to_text(atom)]
        if i < len(parts) - 1:
            tokens.append(op)
            text.append(op)
    assert where.parse(" ".join(text)) == yacc_parse(tokens)
