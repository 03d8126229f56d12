"""The ``get_all_records_where`` expression language (pure).

Mirrors xen-api ``ocaml/database/db_filter_lex.mll`` / ``db_filter_parse.mly`` /
``db_filter.ml``: values are ``"literal"`` or ``field "dbname"``; expressions are
``v = v``, ``e and e``, ``e or e`` (equal precedence, left-associative), ``not e``, ``true``,
``false`` and parentheses. Comparison is string equality on the database string form;
namespaced field names use a double underscore (``name__label``).
"""
from __future__ import annotations

import re

from .datamodel import Timestamp

_TOKEN = re.compile(r'\s*(?:(?P<lit>"[^"]*")|(?P<word>[A-Za-z_]+)|(?P<sym>[=()]))')


class WhereError(ValueError):
    pass


def _tokens(text):
    pos, out = 0, []
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise WhereError("Parsing.Parse_error")
        pos = m.end()
        if m.group("lit") is not None:
            out.append(("lit", m.group("lit")[1:-1]))
        elif m.group("word") is not None:
            out.append(("kw", m.group("word")))
        else:
            out.append(("sym", m.group("sym")))
    return out


def parse(text: str):
    """Parse an expression into a nested tuple tree; raises WhereError."""
    toks = _tokens(text)
    pos = 0

    def peek():
        return toks[pos] if pos < len(toks) else (None, None)

    def take(kind=None, val=None):
        nonlocal pos
        t = peek()
        if t[0] is None or (kind and t[0] != kind) or (val and t[1] != val):
            raise WhereError("Parsing.Parse_error")
        pos += 1
        return t

    def value():
        t = peek()
        if t[0] == "lit":
            take()
            return ("lit", t[1])
        if t == ("kw", "field"):
            take()
            return ("field", take("lit")[1])
        raise WhereError("Parsing.Parse_error")

    def atom():
        t = peek()
        if t == ("kw", "not"):
            take()
            return ("not", atom())
        if t == ("kw", "true"):
            take()
            return ("true",)
        if t == ("kw", "false"):
            take()
            return ("false",)
        if t == ("sym", "("):
            take()
            e = expr()
            take("sym", ")")
            return e
        left = value()
        take("sym", "=")
        return ("eq", left, value())

    def expr():
        e = atom()
        while peek() in (("kw", "and"), ("kw", "or")):
            op = take()[1]
            e = (op, e, atom())
        return e

    tree = expr()
    if pos != len(toks):
        raise WhereError("Parsing.Parse_error")
    return tree


def db_string(value) -> str:
    """The database string form of a value (bools lower-case, ints decimal, sets/maps s-exprs)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "%.16g" % value
    if isinstance(value, (int, str, Timestamp)):
        return str(value)
    if isinstance(value, list):
        return "(" + " ".join(f"'{db_string(v)}'" for v in value) + ")"
    if isinstance(value, dict):
        return "(" + " ".join(f"('{k}' '{db_string(v)}')" for k, v in value.items()) + ")"
    return str(value)


def evaluate(tree, row: dict) -> bool:
    """Evaluate a parsed tree against a row (wire field names; ``__`` maps to ``_``)."""
    kind = tree[0]
    if kind == "true":
        return True
    if kind == "false":
        return False
    if kind == "not":
        return not evaluate(tree[1], row)
    if kind == "and":
        return evaluate(tree[1], row) and evaluate(tree[2], row)
    if kind == "or":
        return evaluate(tree[1], row) or evaluate(tree[2], row)
    return _value(tree[1], row) == _value(tree[2], row)


def _value(v, row):
    if v[0] == "lit":
        return v[1]
    name = v[1].replace("__", "_")
    if name not in row:
        raise WhereError(f"Db_exn.DBCache_NotFound(\"missing field\", \"{v[1]}\", \"\")")
    return db_string(row[name])
