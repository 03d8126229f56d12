"""Wire values shared by the codecs, and datamodel-typed parameter conversion.

Decoded parameters arrive as plain Python values (str, int, float, bool, Timestamp, list,
dict, bytes, None) from either codec; ``convert`` checks them against the message's
parameter types with rpclib's leniency (``mirage/ocaml-rpc`` ``rpc.ml``): int64 accepts ints
or decimal strings, float accepts ints and numeric strings, bool accepts only booleans, enums
match case-insensitively. Mismatches give XAPI's ``INTERNAL_ERROR`` with rpclib's text.
Also the answer to ``system.isAlive:`` (``is_alive``), a bounded echo of a decoded value.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ..datamodel import ENUMS, ENUMS_LOWER, Timestamp, Type
from ..errors import Failure, internal, ocaml_failure

_T = TypeVar("_T")

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

# A decoded wire value: str, int, float, bool, Timestamp, list, dict, bytes or None, nested.
# Any rather than a recursive union: callers narrow it by the datamodel type (``convert``),
# not by isinstance, and a union would make every such caller cast.
Value = Any


class I4(int):
    """An int the XML codec must emit as ``<i4>`` (only event.from's valid_ref_counts)."""

    __slots__ = ()


class Shared(dict):  # type: ignore[type-arg]
    """A result many calls return at once (one event batch for every waiter of a
    subscription woken at one generation): a read-only dict that each codec encodes once
    and then serves to every caller as the same bytes (``encoded``). Nothing may mutate it
    once returned."""

    __slots__ = ("_encoded", "_lock", "__weakref__")

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._encoded: dict[str, Any] = {}
        self._lock = threading.Lock()

    def encoded(self, codec: str, encode: Callable[[dict[str, Any]], _T]) -> _T:
        """``encode(plain dict)`` made once per codec; concurrent callers wait for the first
        (pure CPU work under the lock, no I/O)."""
        got = self._encoded.get(codec)
        if got is None:
            with self._lock:
                got = self._encoded.get(codec)
                if got is None:
                    got = self._encoded[codec] = encode(dict(self))
        return got

    def cached(self, codec: str) -> Any:
        """What ``encoded`` made for ``codec``, or None (no lock: a waiter of a batch
        whose reply is made already goes straight to sending it)."""
        return self._encoded.get(codec)

    def encoded_parts(
        self, codec: str, encode: Callable[[dict[str, Any]], list[bytes]]
    ) -> list[bytes]:
        """``encode(plain dict)`` as the pieces it makes, once per codec: a bulk result
        asked by many clients at once is held once, as pieces never joined."""
        return self.encoded(codec + "/parts", encode)


def rpc_to_string(v: Value) -> str:
    """rpclib's ``Rpc.to_string`` rendering, used in its type-error messages and in the
    ``INVALID_VALUE`` of the UTF-8 check (``mirage/ocaml-rpc`` ``src/lib/rpc.ml``: arrays are
    ``[a;b]``, structs ``{k:v;k2:v2}``, floats ``%g``)."""
    if isinstance(v, bool):
        return f"B({'true' if v else 'false'})"
    if isinstance(v, int):
        return f"I({v})"
    if isinstance(v, float):
        return f"F({_g(v)})"
    if isinstance(v, Timestamp):
        return f"D({v})"
    if isinstance(v, str):
        return f"S({v})"
    if isinstance(v, (bytes, bytearray)):
        return f"B64({bytes(v).decode('utf-8', 'surrogateescape')})"
    if isinstance(v, list):
        return "[" + ";".join(rpc_to_string(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ";".join(f"{k}:{rpc_to_string(x)}" for k, x in v.items()) + "}"
    return "N"


def _g(f: float) -> str:
    # OCaml's %g prints nan/inf/-inf like C
    if f != f:
        return "nan"
    if f in (float("inf"), float("-inf")):
        return "inf" if f > 0 else "-inf"
    return f"{f:g}"


# The largest RPC body xapi reads (``Xapi_globs.http_limit_max_rpc_size`` in Dundee,
# ``Constants.http_limit_max_rpc_size`` today; ``ocaml/xapi/api_server.ml`` callback and
# jsoncallback read the body with it as limit): nothing xapi echoes can be larger.
MAX_RPC_SIZE = 300 * 1024


def is_alive(params: list[Value]) -> Value:
    """The answer to ``system.isAlive:<anything>`` (any name with that prefix, colon
    included), XAPI's connection-reuse probe: no session, the first parameter echoed
    (``ocaml/idl/ocaml_backend/gen_server.ml``: ``Scanf.sscanf func "system.isAlive:%s"``
    then ``Rpc.success (List.hd __params)``; the caller, ``ocaml/libs/http-lib/
    xmlrpc_client.ml`` check_reusable, sends one uuid). Without parameters ``List.hd`` fails:
    ``INTERNAL_ERROR [Failure("hd")]``.

    The echo is bounded as xapi's is: xapi never reads a request body over
    ``MAX_RPC_SIZE`` bytes, so it never echoes more. A parameter whose rendering exceeds that
    is refused with ``INTERNAL_ERROR ["Http_svr.Client_requested_size_over_limit"]``, the
    exception with which xapi refuses such a body (there an HTTP 500, here an API error:
    the body itself was within the simulator's HTTP limit)."""
    if not params:
        raise ocaml_failure("hd")
    v = params[0]
    size = (
        len(v.encode("utf-8"))
        if isinstance(v, str)
        else len(rpc_to_string(v).encode("utf-8", "surrogatepass"))
    )
    if size > MAX_RPC_SIZE:
        raise internal("Http_svr.Client_requested_size_over_limit")
    return v


def ocaml_escaped(s: str) -> str:
    """OCaml's ``String.escaped`` (what ``%S`` and ``Printexc.to_string`` use for the text of
    ``Failure``): backslash, double quote, ``\\n \\t \\r \\b`` escaped, every other byte outside
    32..126 as ``\\ddd`` (so non-ASCII UTF-8 text shows as decimal byte escapes)."""
    if all(" " <= c <= "~" and c not in '"\\' for c in s):
        return s
    out = []
    try:
        raw = s.encode("utf-8", "surrogateescape")  # undecodable input bytes, as received
    except UnicodeEncodeError:
        raw = s.encode("utf-8", "surrogatepass")
    for b in raw:
        c = chr(b)
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif c == "\r":
            out.append("\\r")
        elif c == "\b":
            out.append("\\b")
        elif 32 <= b <= 126:
            out.append(c)
        else:
            out.append(f"\\{b:03d}")
    return "".join(out)


def _expected(what: str, v: Value) -> Failure:
    # rpc.ml: failwith (sprintf "Expected %s, got '%s'" ...), printed by Printexc.to_string
    # as Failure("...") with OCaml string escaping (%S)
    return ocaml_failure(ocaml_escaped(f"Expected {what}, got '{rpc_to_string(v)}'"))


def _part(part: Type | None) -> Type:
    """The element or key type of a set/map (always present for those kinds)."""
    assert part is not None, "a set or map type without its element or key type"
    return part


def convert(ty: Type, v: Value) -> Value:
    """Convert one decoded wire value to the Python value of datamodel type ``ty``."""
    k = ty.kind
    if k in ("string", "ref"):
        if isinstance(v, str):
            return v
        raise _expected("string", v)
    if k == "int":
        if isinstance(v, int) and not isinstance(v, bool):
            if not _INT64_MIN <= v <= _INT64_MAX:
                raise ocaml_failure("int_of_string")  # outside OCaml's int64
            return v
        if isinstance(v, str):
            try:
                n = int(v, 10)
                if not _INT64_MIN <= n <= _INT64_MAX:
                    raise ValueError(v)
                return n
            except ValueError:
                # rpc.ml int64_of_rpc: String s -> Int64.of_string s. Before OCaml 4.03
                # (ocaml/ocaml dee24a9, PR#6560) its failure was Failure "int_of_string",
                # and Dundee's xapi was built with 4.02 (today's xapi says
                # "Int64.of_string").
                raise ocaml_failure("int_of_string") from None
        raise _expected("int64", v)
    if k == "float":
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        if isinstance(v, str):
            try:
                return float(v)
            except ValueError:
                raise ocaml_failure("float_of_string") from None
        raise _expected("float", v)
    if k == "bool":
        if isinstance(v, bool):
            return v
        raise _expected("bool", v)
    if k == "datetime":
        if isinstance(v, str):
            return Timestamp(v)
        raise _expected("datetime", v)
    if k == "enum":
        if isinstance(v, str):
            found = ENUMS_LOWER.get(ty.name, {}).get(v.lower())
            if found is not None:
                return found
            raise Failure(
                "INTERNAL_ERROR",
                f'Rpc.Runtime_error("Unhandled pattern when '
                f"unmarshalling variant type: found '{v}', expected "
                f'{"|".join(ENUMS.get(ty.name, []))}", S({v}))',
            )
        raise _expected("enum", v)
    if k == "set":
        if isinstance(v, list):
            return [convert(_part(ty.elem), x) for x in v]
        raise _expected("array", v)
    if k in ("map", "record"):
        if isinstance(v, dict):
            if k == "record":
                return dict(v)
            key_ty, elem_ty = _part(ty.key), _part(ty.elem)
            return {
                convert(key_ty, key) if key_ty.kind != "int" else int(key): convert(elem_ty, x)
                for key, x in v.items()
            }
        raise _expected("struct", v)
    return v
