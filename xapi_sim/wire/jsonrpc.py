"""JSON-RPC 1.0 / 2.0 envelopes as XAPI serves them on ``/jsonrpc`` (pure).

Mirrors ``mirage/ocaml-rpc`` ``jsonrpc.ml`` and ``ocaml/xapi/api_server.ml`` jsoncallback:
``"jsonrpc": "2.0"`` selects v2, no member selects v1, anything else is malformed; ``id``
must be an integer or a string; v2 success has no ``error`` member; v2 errors are
``{"code": 1, "message": CODE, "data": [params]}``; v1 errors are arrays.

Every reply is valid JSON (RFC 8259), which XAPI's is not for non-finite floats: rpclib
writes ``Float`` with ``Printf "%f"`` in Dundee (``nan``, ``inf``, ``-inf``; ``lib/jsonrpc.ml``
before ocaml-rpc c15dcf4) and through Yojson's non-standard mode since 2017 (bare ``NaN``,
``Infinity``, ``-Infinity``; ``src/lib/jsonrpc.ml`` ``rpc_to_json``). Neither is JSON, and a
strict parser (``JSON.parse`` in Xen Orchestra's client, Python's with ``parse_constant``)
rejects the whole reply. xapi-sim sends them as the JSON *strings* ``"NaN"``, ``"Infinity"``
and ``"-Infinity"``: today's XAPI spelling, quoted -- what xen-api's Go SDK rewrites them to
before decoding (``ocaml/sdk-gen/go/autogen/src/jsonrpc_client.go``
``convertUnhandledJSONData``), and what JavaScript's ``Number()``, .NET's and Java's double
parsers, Go's ``strconv.ParseFloat`` and Python's ``float()`` all read back. Requests may
still carry the bare tokens (Yojson's reader accepts them, and so does ours) or these strings
(float parameters accept numeric strings, ``values.convert``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from .values import Shared, Value

MAX_DEPTH = 64


class JsonRpcParseError(ValueError):
    """Malformed request: answered with HTTP 500 (``Jsonrpc.Malformed_method_request``)."""


def _depth_ok(v: Value, depth: int = 0) -> bool:
    stack = [(v, 0)]
    while stack:
        x, d = stack.pop()
        if d > MAX_DEPTH:
            return False
        if isinstance(x, dict):
            stack.extend((y, d + 1) for y in x.values())
        elif isinstance(x, list):
            stack.extend((y, d + 1) for y in x)
    return True


def decode_call(body: bytes) -> tuple[int, int | str, str, list[Value]]:
    """Bytes -> (version, id, method, params); raises JsonRpcParseError."""
    # Yojson copies string bytes without validating UTF-8, so XAPI answers invalid UTF-8 in
    # a parameter with INVALID_VALUE (dispatch's parameter check), not with a parse error:
    # undecodable bytes are carried as lone surrogates until that check.
    try:
        req = json.loads(body.decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError) as e:
        raise JsonRpcParseError(f"{type(e).__name__}: {e}") from None
    if not isinstance(req, dict):
        raise JsonRpcParseError("request is not an object")
    if "jsonrpc" in req:
        if req["jsonrpc"] != "2.0":
            raise JsonRpcParseError("unknown jsonrpc version")
        version = 2
    else:
        version = 1
    method = req.get("method")
    if not isinstance(method, str):
        raise JsonRpcParseError("method must be a string")
    rid = req.get("id")
    if rid is None or isinstance(rid, bool) or not isinstance(rid, (int, str)):
        raise JsonRpcParseError("id must be an integer or a string")
    params = req.get("params")
    if version == 1:
        if not isinstance(params, list):
            raise JsonRpcParseError("params must be an array")
    elif params is None:
        params = []
    elif isinstance(params, dict):
        params = [params]
    elif not isinstance(params, list):
        raise JsonRpcParseError("params must be an array or an object")
    nested = False
    for p in params:
        if type(p) is dict or type(p) is list:
            nested = True
            break
    if nested and not _depth_ok(params):
        raise JsonRpcParseError("params nested too deeply")
    return version, rid, method, params


def float_text(f: float) -> str:
    """The JSON string standing for a non-finite float (see the module docstring)."""
    if f != f:
        return "NaN"
    return "Infinity" if f > 0 else "-Infinity"


def _finite(v: Value) -> Value:
    """``v`` with every non-finite float (values, and keys should one be a float) replaced by
    its string; other values are shared, not copied."""
    if isinstance(v, float):
        return v if math.isfinite(v) else float_text(v)
    if isinstance(v, dict):
        return {_finite(k): _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def _dumps(obj: Value) -> bytes:
    # ASCII output (non-ASCII as \u escapes): valid JSON for every client, a plain copy to
    # bytes, and a string carrying undecodable input (echoed in an error) cannot break it.
    # allow_nan=False makes the C encoder refuse NaN/Infinity instead of writing them bare;
    # only then is the value walked to replace them (non-finite floats are rare).
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("ascii")
    except ValueError:
        return json.dumps(_finite(obj), separators=(",", ":"), allow_nan=False).encode("ascii")


# A bulk result is encoded member by member of its outer levels (a get_all_records map of
# 10,000 records: one json.dumps per record), the pieces joined once into the reply: the
# encoder never holds the whole reply as one str beside its bytes. The bytes are those of
# one json.dumps of the whole (separators, key order and escapes are the same).
_CHUNK_DEPTH = 2
_BIG = 512  # below the top level, containers this large are split (a record is not)


def _pieces(v: Value, out: _Pieces, depth: int) -> None:
    t = type(v)
    if (
        depth >= _CHUNK_DEPTH
        or (t is not dict and t is not list)
        or (depth > 0 and len(v) < _BIG)
        or not v
    ):
        out.append(_dumps(v))
    elif t is dict:
        if not all(type(k) is str for k in v):
            out.append(_dumps(v))  # json's own key conversions: leave them to it
            return
        sep = b"{"
        for k, x in v.items():
            out.append(sep + _dumps(k) + b":")
            _pieces(x, out, depth + 1)
            sep = b","
        out.append(b"}")
    else:
        sep = b"["
        for x in v:
            out.append(sep)
            _pieces(x, out, depth + 1)
            sep = b","
        out.append(b"]")


PIECE = 256 * 1024  # a bulk result's pieces: records joined up to this size


class _Pieces:
    """The pieces of a bulk result as ``_pieces`` makes them, joined as it goes into
    pieces of about ``PIECE`` bytes: a connection sending a shared result keeps a
    reference (and a memoryview) per piece, which for a record per piece -- 10,000 of them,
    50 connections -- cost more than the result itself."""

    __slots__ = ("done", "group", "size")

    def __init__(self) -> None:
        self.done: list[bytes] = []
        self.group: list[bytes] = []
        self.size = 0

    def append(self, piece: bytes) -> None:
        self.group.append(piece)
        self.size += len(piece)
        if self.size >= PIECE:
            self.done.append(b"".join(self.group))
            self.group, self.size = [], 0

    def result(self) -> list[bytes]:
        if self.group:
            self.done.append(b"".join(self.group))
            self.group, self.size = [], 0
        return self.done


def _result_bytes(value: Value) -> list[bytes]:
    out = _Pieces()
    _pieces(value, out, 0)
    return out.result()


def encode_success(version: int, rid: int | str, value: Value) -> bytes:
    return b"".join(encode_success_parts(version, rid, value))


def encode_success_parts(version: int, rid: int | str, value: Value) -> list[bytes]:
    """``encode_success`` as pieces (sent in turn, never joined): a shared result's bytes
    are one piece between this request's own envelope pieces."""
    value = "" if value is None else value
    if type(value) is Shared:
        # one event batch for many waiters: the result encoded once, the envelope (whose id
        # is each request's own) around it
        result = value.encoded_parts("json", _result_bytes)
    else:
        result = _result_bytes(value)
    tail = b',"id":' + (str(rid).encode() if type(rid) is int else _dumps(rid)) + b"}"
    if version == 2:
        return [b'{"jsonrpc":"2.0","result":', *result, tail]
    return [b'{"result":', *result, b',"error":null', tail]


def encode_failure(version: int, rid: int | str, description: Sequence[object]) -> bytes:
    # an echoed undecodable input (a lone surrogate) goes out as "?", never as a bare
    # surrogate escape that strict clients reject
    code, *params = [str(p).encode("utf-8", "replace").decode("utf-8") for p in description]
    if version == 2:
        return _dumps(
            {"jsonrpc": "2.0", "error": {"code": 1, "message": code, "data": params}, "id": rid}
        )
    return _dumps({"result": None, "error": [code, *params], "id": rid})
