"""The ``get_all_records_where`` expression language (pure).

Mirrors xen-api ``ocaml/database/db_filter_lex.mll`` / ``db_filter_parse.mly`` /
``db_filter.ml`` / ``db_cache_impl.ml`` (find_refs_with_filter_internal):

* Lexing (ocamllex): blanks are space, tab and newline only; the keywords ``true``, ``false``,
  ``field``, ``and``, ``or``, ``not`` are matched as plain prefixes (there is no identifier
  rule, so ``notfalse`` lexes as ``not false`` and ``andy`` as ``and`` then a bad ``y``);
  literals are ``"..."`` without escapes. Anything else raises
  ``Failure("lexing: empty token")``.
* Parsing (ocamlyacc): ``v = v``, ``e and e``, ``e or e`` (``%left LAND LOR``: equal
  precedence, left-associative), ``not e``, ``true``, ``false``, parentheses. ``%right LNOT``
  is declared *before* ``%left LAND LOR``, so ``not`` has the lower precedence: its operand
  extends over any following ``and``/``or`` (``not a and b`` is ``not (a and b)``). A syntax
  error raises ``Parsing.Parse_error``. Tokens are read lazily, as the generated parser does,
  so whichever of a syntax or a lexing error comes first in the text is the one reported.
* Evaluation: string equality on the database string form of each field; fields are named by
  their DB column name (namespaces joined with ``__``: ``name__label``,
  ``memory__static_max``, ``HVM__boot_params``); ``_ref`` is the row's reference. A column the
  table does not have raises ``Db_exn.DBCache_NotFound ("missing field", name, "")``, which
  XAPI reports as ``INTERNAL_ERROR ["missing field", name, ""]`` (``exnHelper.ml``).
"""

from __future__ import annotations

from typing import Any

from .datamodel import Timestamp

PARSE_ERROR = "Parsing.Parse_error"
LEX_ERROR = 'Failure("lexing: empty token")'

_KEYWORDS = ("true", "false", "field", "and", "or", "not")
_BLANKS = " \t\n"


class WhereError(ValueError):
    """A bad expression: XAPI's ``INVALID_VALUE [expr, str(self)]``."""


class MissingField(LookupError):
    """A field the table does not have: ``INTERNAL_ERROR ["missing field", name, ""]``."""

    def __init__(self, name):
        super().__init__(name)
        self.name = name


# -- DB column names -----------------------------------------------------------------------
# Namespaced fields (``namespace ~name:...`` in ocaml/idl/datamodel*.ml); their DB column is
# the full name joined with "__" (``Escaping.escape_id``). ``name/label`` and
# ``name/description`` are namespaced in every class that has them.
_NAMESPACES: dict[str, dict[str, tuple[str, ...]]] = {
    "host": {
        "memory": ("overhead",),
        "API_version": ("major", "minor", "vendor", "vendor_implementation"),
    },
    "host_metrics": {"memory": ("total", "free")},
    "VM": {
        "memory": ("overhead", "target", "static_max", "dynamic_max", "dynamic_min", "static_min"),
        "VCPUs": ("params", "max", "at_startup"),
        "actions": ("after_softreboot", "after_shutdown", "after_reboot", "after_crash"),
        "PV": ("bootloader", "kernel", "ramdisk", "args", "bootloader_args", "legacy_args"),
        "HVM": ("boot_policy", "boot_params", "shadow_multiplier"),
    },
    "VM_metrics": {
        "memory": ("actual",),
        "VCPUs": ("number", "utilisation", "CPU", "params", "flags"),
    },
    "VIF": {"qos": ("algorithm_type", "algorithm_params", "supported_algorithms")},
    "VBD": {"qos": ("algorithm_type", "algorithm_params", "supported_algorithms")},
    "VIF_metrics": {"io": ("read_kbs", "write_kbs")},
    "VBD_metrics": {"io": ("read_kbs", "write_kbs")},
    "PIF_metrics": {"io": ("read_kbs", "write_kbs")},
}
_COMMON: dict[str, tuple[str, ...]] = {"name": ("label", "description")}
_DB_OF_WIRE: dict = {}  # class -> {wire name: db name} (namespaced fields only)
_WIRE_OF_DB: dict = {}  # class -> {db name: wire name}


def _tables(cls):
    t = _DB_OF_WIRE.get(cls)
    if t is None:
        t = {}
        for ns, members in {**_COMMON, **_NAMESPACES.get(cls, {})}.items():
            for m in members:
                t[f"{ns}_{m}"] = f"{ns}__{m}"
        _DB_OF_WIRE[cls] = t
        _WIRE_OF_DB[cls] = {d: w for w, d in t.items()}
    return t, _WIRE_OF_DB[cls]


def db_name(cls: str, wire: str) -> str:
    """The DB column name of wire field ``wire`` of class ``cls`` (``name_label`` ->
    ``name__label``)."""
    return _tables(cls)[0].get(wire, wire)


def wire_name(cls: str, db: str) -> str | None:
    """The wire field of DB column ``db``, or None for a column name the class lacks."""
    d2w, w2d = _tables(cls)
    if db in w2d:
        return w2d[db]
    if db in d2w:  # a namespaced field spelled with one underscore: not a column
        return None
    return db


# -- lexing and parsing --------------------------------------------------------------------


class _Lexer:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def next(self):
        t, p, n = self.text, self.pos, len(self.text)
        while p < n and t[p] in _BLANKS:
            p += 1
        if p >= n:
            self.pos = p
            return ("eof", None)
        c = t[p]
        if c in "=()":
            self.pos = p + 1
            return ("sym", c)
        if c == '"':
            q = t.find('"', p + 1)
            if q < 0:
                raise WhereError(LEX_ERROR)
            self.pos = q + 1
            return ("lit", t[p + 1 : q])
        for kw in _KEYWORDS:
            if t.startswith(kw, p):
                self.pos = p + len(kw)
                return ("kw", kw)
        raise WhereError(LEX_ERROR)


def parse(text: str):
    """Parse an expression into a nested tuple tree; raises WhereError (text = OCaml exn)."""
    lexer = _Lexer(text)
    look: list[tuple[str, Any]] = []

    def peek():
        if not look:
            look.append(lexer.next())
        return look[0]

    def take(kind=None, val=None):
        t = peek()
        if t[0] == "eof" or (kind and t[0] != kind) or (val and t[1] != val):
            raise WhereError(PARSE_ERROR)
        look.pop()
        return t

    def value():
        t = peek()
        if t[0] == "lit":
            take()
            return ("lit", t[1])
        if t == ("kw", "field"):
            take()
            return ("field", take("lit")[1])
        raise WhereError(PARSE_ERROR)

    def primary():
        t = peek()
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
        if peek() == ("kw", "not"):
            take()
            return ("not", expr())  # LNOT has the lowest precedence: takes the rest
        e = primary()
        while peek() in (("kw", "and"), ("kw", "or")):
            op = take()[1]
            if peek() == ("kw", "not"):
                take()
                return (op, e, ("not", expr()))
            e = (op, e, primary())
        return e

    tree = expr()
    if peek()[0] != "eof":
        raise WhereError(PARSE_ERROR)
    return tree


def to_text(tree) -> str:
    """An expression text that parses back to ``tree`` (fully parenthesised)."""
    kind = tree[0]
    if kind in ("true", "false"):
        return kind
    if kind == "not":
        return f"(not {to_text(tree[1])})"
    if kind in ("and", "or"):
        return f"({to_text(tree[1])} {kind} {to_text(tree[2])})"

    def val(v):
        return f'"{v[1]}"' if v[0] == "lit" else f'field "{v[1]}"'

    return f"({val(tree[1])}={val(tree[2])})"


# -- evaluation ----------------------------------------------------------------------------


def _sexpr_escape(s: str) -> str:
    # ocaml/libs/sexpr/sExpr.ml escape_buf: backslash and single quote are escaped
    if "\\" in s or "'" in s:
        return s.replace("\\", "\\\\").replace("'", "\\'")
    return s


def db_string(value) -> str:
    """The database string form of a value (bools lower-case, ints decimal, sets/maps s-exprs)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.16g}"
    if isinstance(value, (int, str, Timestamp)):
        return str(value)
    if isinstance(value, list):
        return "(" + " ".join(f"'{_sexpr_escape(db_string(v))}'" for v in value) + ")"
    if isinstance(value, dict):
        return (
            "("
            + " ".join(
                f"('{_sexpr_escape(db_string(k))}' '{_sexpr_escape(db_string(v))}')"
                for k, v in value.items()
            )
            + ")"
        )
    return str(value)


def evaluate(tree, row: dict, ref: str = "", cls: str = "") -> bool:
    """Evaluate a parsed tree against a row of class ``cls`` (fields by DB column name)."""
    kind = tree[0]
    if kind == "true":
        return True
    if kind == "false":
        return False
    if kind == "not":
        return not evaluate(tree[1], row, ref, cls)
    if kind == "and":
        return evaluate(tree[1], row, ref, cls) and evaluate(tree[2], row, ref, cls)
    if kind == "or":
        return evaluate(tree[1], row, ref, cls) or evaluate(tree[2], row, ref, cls)
    return _value(tree[1], row, ref, cls) == _value(tree[2], row, ref, cls)


def _value(v, row, ref, cls):
    if v[0] == "lit":
        return v[1]
    if v[1] == "_ref":
        return ref
    name = wire_name(cls, v[1])
    if name is None or name not in row:
        raise MissingField(v[1])
    return db_string(row[name])
