"""Values in xapi's XML database, to and from their text (pure).

Facts mirrored here (xen-api Dundee, branch ``dundee-lcm``; :mod:`dbxml` has the file):

* **Values** (``gen_db_actions.ml`` ``DM_to_String``): strings, refs and enum constructors
  as they are; ints ``Int64.to_string``; floats ``%0.18g``; bools ``true``/``false``;
  datetimes ``YYYYMMDDTHH:MM:SSZ``; sets and maps as s-expressions of quoted strings
  (``String_marshall_helper``: ``('a' 'b')``, ``(('k' 'v') ('k2' 'v2'))``), each element
  cut at its first character illegal in XML (``ensure_utf8_xml``), ``\\``, ``'`` and ``"``
  escaped with a backslash (``SExpr.escape`` of xen-api-libs-transitional at Dundee).
* **Attribute protection** (``xml_spaces.ml``): before Xmlm escapes ``< > & "``, two spaces
  become ``%_``, tab/LF/CR ``%t``/``%n``/``%r``, ``%`` ``%%``; later xapis (CA-268761)
  write every space as ``%.``. Reading accepts both. Xmlm replaces other control characters
  by U+FFFD.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from typing import Any

from .datamodel import ENUMS, ENUMS_LOWER, Timestamp, Type


class DbValueError(ValueError):
    """A database string that does not convert to the field's type."""


# -- Xml_spaces ----------------------------------------------------------------------------

_PROTECT = {"\t": "%t", "\n": "%n", "\r": "%r", "%": "%%"}


def protect(s: str) -> str:
    """``Xml_spaces.protect`` as Dundee wrote it: ``"  "`` -> ``%_`` (left to right, pairs
    do not overlap), tab/LF/CR -> ``%t``/``%n``/``%r``, ``%`` -> ``%%``."""
    if not any(c in s for c in " \t\n\r%"):
        return s
    out = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == " " and i + 1 < n and s[i + 1] == " ":
            out.append("%_")
            i += 2
            continue
        out.append(_PROTECT.get(c, c))
        i += 1
    return "".join(out)


_UNPROTECT = {"_": "  ", ".": " ", "t": "\t", "n": "\n", "r": "\r", "%": "%"}


def unprotect(s: str) -> str:
    """``Xml_spaces.unprotect`` (HEAD, which reads every release's files): ``%_`` -> two
    spaces, ``%.`` -> one, ``%t``/``%n``/``%r``, ``%%`` -> ``%``; any other ``%`` stays."""
    if "%" not in s:
        return s
    out = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == "%" and i + 1 < n and s[i + 1] in _UNPROTECT:
            out.append(_UNPROTECT[s[i + 1]])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


# -- s-expressions (SExpr / SExprLexer / SExprParser) ----------------------------------------


class _Sym(str):
    """An unquoted symbol (``SExpr.Symbol``)."""


_SEXPR_ESCAPES = {"\\": "\\\\", '"': '\\"', "'": "\\'"}


def _sexpr_escape(s: str) -> str:
    if not any(c in s for c in "\\'\""):
        return s
    return "".join(_SEXPR_ESCAPES.get(c, c) for c in s)


def sexpr_string(node) -> str:
    """``SExpr.string_of``: a list is a node, a str a quoted string."""
    if isinstance(node, list):
        return "(" + " ".join(sexpr_string(x) for x in node) + ")"
    return "'" + _sexpr_escape(node) + "'"


def _unescape(s: str) -> str:
    """``SExpr.unescape``: a backslash takes the next character as it is; a trailing lone
    backslash stays."""
    if "\\" not in s:
        return s
    out, esc = [], False
    for c in s:
        if c == "\\" and not esc:
            esc = True
            continue
        out.append(c)
        esc = False
    if esc:
        out.append("\\")
    return "".join(out)


_SYMBOL_STOP = frozenset('" \t\n()')
_WEIRD = re.compile(r"<<([^<]+)<([^<]*)<([^<]+)<")


def _quoted_end(text: str, i: int) -> int:
    """End of a quoted string starting at ``i`` (past the closing quote), or -1."""
    q, n = text[i], len(text)
    j = i + 1
    while j < n:
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c == q:
            return j + 1
        j += 1
    return -1


def _tokens(text: str) -> Iterator[tuple[str, Any]]:
    """The lexer's tokens. Like ocamllex, the longest match wins and, on a tie, the rule
    written first (weird string, quoted string, symbol)."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\n":
            i += 1
            continue
        if c == ";":
            j = text.find("\n", i)
            if j < 0:
                raise DbValueError("unterminated comment")
            i = j + 1
            continue
        if c == "(":
            yield ("(", None)
            i += 1
            continue
        if c == ")":
            yield (")", None)
            i += 1
            continue
        sym_end = i
        while sym_end < n and text[sym_end] not in _SYMBOL_STOP:
            sym_end += 1
        best = ("sym", sym_end)
        if c in "\"'":
            end = _quoted_end(text, i)
            if end >= 0 and end >= sym_end:
                best = ("str", end)
        m = _WEIRD.match(text, i) if c == "<" else None
        if m and m.end() >= best[1]:
            if m.group(1) != m.group(3):
                raise DbValueError("weird string with mismatched tags")
            best = ("weird", m.end())
        kind, end = best
        if end == i:
            raise DbValueError(f"unexpected character {c!r}")
        if kind == "str":
            yield ("atom", _unescape(text[i + 1 : end - 1]))
        elif kind == "weird":
            assert m is not None
            yield ("atom", m.group(2))
        else:
            yield ("atom", _Sym(text[i:end]))
        i = end


def sexpr_parse(text: str):
    """``SExpr_TS.of_string``: the first expression of ``text`` (what follows it is
    ignored, as the generated parser stops there)."""
    toks = _tokens(text)
    stack: list[list] = []
    for kind, val in toks:
        if kind == "(":
            stack.append([])
        elif kind == ")":
            if not stack:
                raise DbValueError("unbalanced ')'")
            node = stack.pop()
            if not stack:
                return node
            stack[-1].append(node)
        else:
            if not stack:
                return val
            stack[-1].append(val)
    raise DbValueError("unterminated s-expression" if stack else "empty s-expression")


def _legal_prefix(s: str) -> str:
    """``String_marshall_helper.ensure_utf8_xml``: the longest prefix legal in XML."""
    for i, c in enumerate(s):
        o = ord(c)
        if (o < 0x20 and o not in (9, 10, 13)) or 0xD800 <= o <= 0xDFFF:
            return s[:i]
    return s


def marshal_set(items: Iterable[str]) -> str:
    return sexpr_string([_legal_prefix(x) for x in items])


def marshal_map(pairs: Iterable[tuple[str, str]]) -> str:
    return sexpr_string([[_legal_prefix(k), _legal_prefix(v)] for k, v in pairs])


def unmarshal_set(text: str) -> list[str]:
    node = sexpr_parse(text)
    if not isinstance(node, list) or any(isinstance(x, list) for x in node):
        raise DbValueError(f"not a set: {text[:80]!r}")
    return [str(x) for x in node]


def unmarshal_map(text: str) -> list[tuple[str, str]]:
    node = sexpr_parse(text)
    if not isinstance(node, list):
        raise DbValueError(f"not a map: {text[:80]!r}")
    out = []
    for pair in node:
        if not isinstance(pair, list) or len(pair) != 2 or any(isinstance(x, list) for x in pair):
            raise DbValueError(f"not a map: {text[:80]!r}")
        out.append((str(pair[0]), str(pair[1])))
    return out


# -- typed values (DM_to_String / String_to_DM) ------------------------------------------


def _float_text(x: float) -> str:
    if math.isnan(x):
        return "nan"
    return f"{x:0.18g}"


def to_db(ty: Type, value) -> str:
    """The database string of a value of datamodel type ``ty``."""
    k = ty.kind
    if k == "bool":
        return "true" if value else "false"
    if k == "int":
        return str(int(value))
    if k == "float":
        return _float_text(float(value))
    if k == "set":
        assert ty.elem is not None
        elem = ty.elem
        return marshal_set(to_db(elem, x) for x in value)
    if k == "map":
        assert ty.key is not None and ty.elem is not None
        kt, vt = ty.key, ty.elem
        return marshal_map((to_db(kt, a), to_db(vt, b)) for a, b in value.items())
    return str(value)


_INT_PREFIXES = {"0x": 16, "0o": 8, "0b": 2, "0u": 10}
_DATETIME = re.compile(
    r"\d{8}T\d\d:?\d\d:?\d\d(\.\d+)?(Z|[+-]\d\d(:?\d\d)?)?$|"
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)?$"
)
INT64 = (-(1 << 63), (1 << 63) - 1)


def _int(text: str) -> int:
    t = text.strip()
    sign = -1 if t.startswith("-") else 1
    body = t[1:] if t[:1] in "+-" else t
    base = _INT_PREFIXES.get(body[:2].lower(), 10)
    if base != 10 or body[:2].lower() == "0u":
        body = body[2:]
    try:
        v = sign * int(body.replace("_", ""), base)
    except ValueError:
        raise DbValueError(f"not an int: {text!r}") from None
    if not INT64[0] <= v <= INT64[1]:
        raise DbValueError(f"int out of range: {text!r}")
    return v


def _float(text: str) -> float:
    t = text.strip().replace("_", "")
    try:
        return float(t)
    except ValueError:
        pass  # not a plain float: the OCaml spellings are tried below
    try:
        return float.fromhex(t)
    except ValueError:
        raise DbValueError(f"not a float: {text!r}") from None


def from_db(ty: Type, text: str, dropped: list | None = None):
    """The value of database string ``text`` for type ``ty`` (``String_to_DM``).

    A bad scalar raises :class:`DbValueError`. Inside a set or map, a bad element raises
    too, unless ``dropped`` is a list: then the element is left out and its reason
    appended there."""
    k = ty.kind
    if k in ("string", "ref", "opaque", "record", "void"):
        return text
    if k == "int":
        return _int(text)
    if k == "float":
        return _float(text)
    if k == "bool":
        if text == "true":
            return True
        if text == "false":
            return False
        raise DbValueError(f"not a bool: {text!r}")
    if k == "datetime":
        if not _DATETIME.match(text):
            raise DbValueError(f"not a datetime: {text!r}")
        return Timestamp(text)
    if k == "enum":
        values = ENUMS.get(ty.name, ())
        if text in values:
            return text
        low = ENUMS_LOWER.get(ty.name, {}).get(text.lower())
        if low is not None:
            return low
        raise DbValueError(f"{text!r} is not a value of enum {ty.name}")
    if k == "set":
        assert ty.elem is not None
        items = []
        for item in unmarshal_set(text):
            try:
                v = from_db(ty.elem, item, dropped)
            except DbValueError as e:
                if dropped is None:
                    raise
                dropped.append(str(e))
                continue
            items.append(v)
        return items
    if k == "map":
        assert ty.key is not None and ty.elem is not None
        out: dict = {}
        for a, b in unmarshal_map(text):
            try:
                key, val = from_db(ty.key, a, dropped), from_db(ty.elem, b, dropped)
            except DbValueError as e:
                if dropped is None:
                    raise
                dropped.append(str(e))
                continue
            out[key] = val
        return out
    return text
