"""OCaml's literal syntax: how ``xe`` arguments that XAPI reads as numbers or booleans parse.

The thin CLI carries every value as text; xen-api turns it into a value with the OCaml
standard library's ``bool_of_string``, ``Int64.of_string`` and ``float_of_string``. Both
halves of ``xe`` here need the same rules (the client for ``nossl=``, the server for every
field setter and option), so they live in this one pure module, below both. Each parser
raises the exception the OCaml function raises, as a ``ValueError`` whose text is OCaml's
(``bool_of_string``, ``int_of_string``, ``float_of_string``); callers turn it into the
message the xen-api caller prints.
"""

from __future__ import annotations

import re


class BadLiteral(ValueError):
    """The text is not a literal of the type asked for; ``str()`` is OCaml's message."""


class BadBool(BadLiteral):
    """``bool_of_string`` raising ``Invalid_argument "bool_of_string"``."""

    def __init__(self) -> None:
        super().__init__("bool_of_string")


class BadInt(BadLiteral):
    """``Int64.of_string`` raising ``Failure "int_of_string"``."""

    def __init__(self) -> None:
        super().__init__("int_of_string")


class BadFloat(BadLiteral):
    """``float_of_string`` raising ``Failure "float_of_string"``."""

    def __init__(self) -> None:
        super().__init__("float_of_string")


def bool_of_string(s: str) -> bool:
    """OCaml ``bool_of_string``: exactly ``true`` or ``false``."""
    if s == "true":
        return True
    if s == "false":
        return False
    raise BadBool()


_INT_RE = re.compile(r"^[-+]?(0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|[0-9][0-9_]*)$")
_BASES = {"0x": 16, "0X": 16, "0o": 8, "0O": 8, "0b": 2, "0B": 2}


def int64_of_string(s: str) -> int:
    """``Int64.of_string``: decimal, or 0x/0o/0b prefixed; underscores allowed; the value
    must fit in 64 signed bits."""
    if not _INT_RE.match(s):
        raise BadInt()
    t = s.replace("_", "")
    sign = -1 if t.startswith("-") else 1
    t = t.lstrip("+-")
    base = _BASES.get(t[:2], 10)
    v = sign * int(t[2:] if base != 10 else t, base)
    if not -(1 << 63) <= v < (1 << 63):
        raise BadInt()
    return v


def float_of_string(s: str) -> float:
    """``float_of_string`` (underscores allowed, as in OCaml literals)."""
    try:
        return float(s.replace("_", ""))
    except ValueError:
        raise BadFloat() from None
