"""Wire values shared by the codecs, and datamodel-typed parameter conversion.

Decoded parameters arrive as plain Python values (str, int, float, bool, Timestamp, list,
dict, bytes, None) from either codec; ``convert`` checks them against the message's
parameter types with rpclib's leniency (``mirage/ocaml-rpc`` ``rpc.ml``): int64 accepts ints
or decimal strings, float accepts ints and numeric strings, bool accepts only booleans, enums
match case-insensitively. Mismatches give XAPI's ``INTERNAL_ERROR`` with rpclib's text.
"""
from __future__ import annotations

from ..datamodel import ENUMS, ENUMS_LOWER, Timestamp, Type
from ..errors import Failure, ocaml_failure


class I4(int):
    """An int the XML codec must emit as ``<i4>`` (only event.from's valid_ref_counts)."""

    __slots__ = ()


def rpc_to_string(v) -> str:
    """rpclib's ``Rpc.to_string`` rendering, used in its type-error messages."""
    if isinstance(v, bool):
        return f"B({'true' if v else 'false'})"
    if isinstance(v, int):
        return f"I({v})"
    if isinstance(v, float):
        return f"F({v:g})"
    if isinstance(v, Timestamp):
        return f"D({v})"
    if isinstance(v, str):
        return f"S({v})"
    if isinstance(v, (bytes, bytearray)):
        return f"B64({v.decode('latin-1')})"
    if isinstance(v, list):
        return "[" + ", ".join(rpc_to_string(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {rpc_to_string(x)}" for k, x in v.items()) + "}"
    return "N"


def _expected(what: str, v):
    return ocaml_failure(f"Expected {what}, got '{rpc_to_string(v)}'")


def convert(ty: Type, v):
    """Convert one decoded wire value to the Python value of datamodel type ``ty``."""
    k = ty.kind
    if k in ("string", "ref"):
        if isinstance(v, str):
            return v
        raise _expected("string", v)
    if k == "int":
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        if isinstance(v, str):
            try:
                return int(v, 10)
            except ValueError:
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
            raise Failure("INTERNAL_ERROR", f"Rpc.Runtime_error(\"Unhandled pattern when "
                          f"unmarshalling variant type: found '{v}', expected "
                          f"{'|'.join(ENUMS.get(ty.name, []))}\", S({v}))")
        raise _expected("enum", v)
    if k == "set":
        if isinstance(v, list):
            return [convert(ty.elem, x) for x in v]
        raise _expected("array", v)
    if k in ("map", "record"):
        if isinstance(v, dict):
            if k == "record":
                return dict(v)
            return {convert(ty.key, key) if ty.key.kind != "int" else int(key):
                    convert(ty.elem, x) for key, x in v.items()}
        raise _expected("struct", v)
    return v
