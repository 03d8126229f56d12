"""Bulk replies are encoded in chunks (wire/xmlrpc.py ``_enc_chunked``, wire/jsonrpc.py
``_pieces``): the bytes are exactly those of the one-piece encodings."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from test_codecs import SETTINGS, json_values, values

from xapi_sim.wire import jsonrpc
from xapi_sim.wire import xmlrpc as xr

keys = st.text(max_size=6)


def _big(inner):
    """A map of at least 64 members (the chunked path), with nested maps and lists.

    The members' values repeat a handful of drawn ones (their names are all drawn): where
    the encoders cut depends on how many members there are and how they nest, not on what
    each one holds, and drawing 64-90 independent nested values made this the slowest test
    of the suite (the values themselves are test_codecs.py's business)."""
    some = st.lists(inner, min_size=1, max_size=8)
    as_map = st.builds(
        lambda names, pool: {k: pool[i % len(pool)] for i, k in enumerate(names)},
        st.lists(keys, min_size=64, max_size=90, unique=True),
        some,
    )
    as_events = st.builds(
        lambda n, pool, token: {"events": [pool[i % len(pool)] for i in range(n)], "token": token},
        st.integers(64, 80),
        some,
        st.text(max_size=5),
    )
    return as_map | as_events


@SETTINGS
@given(_big(values))
def test_xml_chunked_equals_one_piece(v):
    one_piece = (
        xr._HEAD + "<value><struct><member><name>Status</name><value>Success</value></member>"
        "<member><name>Value</name>" + xr.encode_value(v) + "</member></struct></value>" + xr._TAIL
    ).encode("utf-8", "replace")
    old = xr.CHUNK_PARTS, xr._BIG
    try:
        xr.CHUNK_PARTS, xr._BIG = 7, 3  # many flushes, in the nested levels too
        assert xr.encode_success(v) == one_piece
        assert b"".join(xr.encode_success_parts(v)) == one_piece
    finally:
        xr.CHUNK_PARTS, xr._BIG = old
    assert xr.encode_success(v) == one_piece
    assert b"".join(xr.encode_success_parts(v)) == one_piece


@SETTINGS
@given(_big(json_values), st.sampled_from([1, 2]), st.one_of(st.integers(), st.text(max_size=4)))
def test_json_chunked_equals_one_piece(v, version, rid):
    env = (
        {"jsonrpc": "2.0", "result": v, "id": rid}
        if version == 2
        else {"result": v, "error": None, "id": rid}
    )
    want = jsonrpc._dumps(env)
    old, old_piece = jsonrpc._BIG, jsonrpc.PIECE
    try:
        jsonrpc._BIG = 3  # split the nested levels too
        for piece in (old_piece, 7):  # (and join the pieces in small groups)
            jsonrpc.PIECE = piece
            assert jsonrpc.encode_success(version, rid, v) == want
            assert b"".join(jsonrpc.encode_success_parts(version, rid, v)) == want
    finally:
        jsonrpc._BIG, jsonrpc.PIECE = old, old_piece
    assert jsonrpc.encode_success(version, rid, v) == want


def test_json_non_string_keys_and_non_finite_floats():
    v = {i: float("nan") for i in range(100)}
    assert jsonrpc.encode_success(2, 1, v) == jsonrpc._dumps(
        {"jsonrpc": "2.0", "result": v, "id": 1}
    )
    w = {str(i): [float("inf")] * 70 for i in range(70)}
    got = json.loads(jsonrpc.encode_success(1, "x", w))
    assert got["result"]["3"][0] == "Infinity"


def test_shared_parts_are_the_cached_bytes():
    from xapi_sim.wire.values import Shared

    v = Shared(events=[{"id": str(i)} for i in range(100)], token="t")
    [body] = xr.encode_success_parts(v)
    assert xr.encode_success_parts(v)[0] is body
    a = jsonrpc.encode_success_parts(2, 1, v)
    b = jsonrpc.encode_success_parts(2, "other", v)
    assert a[1] is b[1]  # the result's bytes, shared; only the envelope differs


def test_a_bulk_json_result_goes_in_few_pieces():
    """A record per piece cost each connection sending a shared result a reference and a
    memoryview per record: the pieces are joined up to ``PIECE`` bytes."""
    records = {f"OpaqueRef:{i}": {"uuid": str(i), "name_label": "x" * 200} for i in range(10_000)}
    parts = jsonrpc.encode_success_parts(2, 1, records)
    size = sum(len(p) for p in parts)
    assert len(parts) <= size // jsonrpc.PIECE + 4
    assert max(len(p) for p in parts) < jsonrpc.PIECE + 1000
    assert json.loads(b"".join(parts))["result"] == records
