"""xapi's XML database format, read and written (pure).

The format is what xen-api's ``ocaml/database/db_xml.ml`` (Dundee: branch ``dundee-lcm``)
writes for ``/pool/xmldbdump``, ``state.db`` and a status report's ``xapi-db.xml``::

    <?xml version="1.0" encoding="UTF-8"?>
    <database><manifest><pair key="schema_major_vsn" value="5"/><pair
    key="schema_minor_vsn" value="93"/><pair key="generation_count" value="1404"/></manifest>
    <table name="Bond"/>...<table name="VM"><row ref="OpaqueRef:..." __ctime="12"
    __mtime="40" HVM__boot_params="(('order' 'dc'))" ... _ref="OpaqueRef:..." .../></table>
    ...</database>

(one line: Xmlm writes no indentation and no final newline). Facts mirrored here:

* **Order** (``Db_cache_types``: every level is an OCaml ``Map`` over strings): tables sorted
  by name, rows by reference, columns by name, byte-wise; each row starts with ``ref``,
  ``__ctime``, ``__mtime`` (``db_xml.ml`` ``To.table``: the preamble, then ``Row.fold``).
* **Columns** (``ocaml/idl/datamodel_schema.ml``): every field of the class, namespaced names
  joined with ``__`` (``Escaping.escape_id``: ``name__label``, ``memory__static_max``,
  ``HVM__boot_params``; the pool's ``name_label``/``name_description`` are plain fields in
  ``datamodel.ml``), plus ``_ref`` (the reference again). One-to-many ``Set(Ref _)`` columns
  and non-persistent columns are written with their current values.
* **Tables**: one element per class of the API, including those xapi keeps no rows of;
  ``PersistNothing`` classes (session, task, event, message, data_source, auth, VIF_metrics,
  VBD_metrics at Dundee) are written without rows (``Schema.is_table_persistent``). Roles
  are static in xapi (``rbac_static.ml``, ``Xapi_role.get_all``), so their table is empty.
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
* **Generations**: the manifest's ``generation_count``; per row the generation it was
  created (``__ctime``) and last modified (``__mtime``). Files from before generation
  counts (George, Boston) have neither: 0.

Reading is liberal (the files real hosts wrote over ten years differ): unknown elements are
skipped and reported, ``ref`` may be anywhere among the attributes (or only ``_ref``),
s-expressions may use double quotes (Orlando's ``state.db``), symbols or Xmlm-era "weird"
strings, whitespace between elements is ignored. A file whose root is not ``<database>`` is
refused with :class:`NotADatabase`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO
from xml.etree.ElementTree import ParseError

import attrs
from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from .datamodel import ENUMS, ENUMS_LOWER, RELEASE_INDEX, Timestamp, Type
from .where import db_name

# -- schema versions per release (ocaml/idl/datamodel.ml at Dundee; datamodel_common.ml at
#    HEAD): the manifest's schema_major_vsn/schema_minor_vsn say which release wrote a file
SCHEMA_VERSIONS: dict[str, tuple[int, int]] = {
    "rio": (5, 19),
    "miami": (5, 35),
    "orlando": (5, 55),
    "george": (5, 57),
    "midnight-ride": (5, 60),
    "cowley": (5, 61),
    "boston": (5, 63),
    "tampa": (5, 66),
    "clearwater": (5, 67),
    "vgpu-tech-preview": (5, 68),
    "vgpu-productisation": (5, 69),
    "clearwater-felton": (5, 70),
    "clearwater-whetstone": (5, 71),
    "creedence": (5, 72),
    "cream": (5, 73),
    "indigo": (5, 74),
    "dundee": (5, 93),
    "ely": (5, 108),
    "falcon": (5, 120),
    "inverness": (5, 133),
    "jura": (5, 134),
    "kolkata": (5, 142),
    "lima": (5, 203),
    "naples": (5, 400),
    "quebec": (5, 504),
    "stockholm": (5, 601),
    "nile": (5, 775),
}

# Classes xapi declares ``~persist:PersistNothing`` (Dundee datamodel.ml): their table is
# written without rows.
NOT_PERSISTED = frozenset(
    {"session", "task", "event", "message", "data_source", "auth", "VIF_metrics", "VBD_metrics"}
)
# Rows xapi never holds in its database: roles are static (rbac_static.ml).
STATIC_TABLES = frozenset({"role"})
# Fields declared outside a ``namespace ~name:"name"`` (datamodel.ml: pool's fields), so
# their column keeps the wire name.
PLAIN_COLUMNS = frozenset({("pool", "name_label"), ("pool", "name_description")})
# The old VTPM class was in every release's database up to its redesign (22.26.0) but is
# absent from the API datamodel of those releases: xapi still wrote its (empty) table.
_VTPM_REDESIGN = "22.26.0"


class NotADatabase(ValueError):
    """The input is not an xapi XML database (one line, naming the file)."""


class DbValueError(ValueError):
    """A database string that does not convert to the field's type."""


def release_for_schema(major: int, minor: int) -> str | None:
    """The latest release whose schema version is at most ``(major, minor)``."""
    best = None
    for release, vsn in SCHEMA_VERSIONS.items():
        if vsn <= (major, minor) and (best is None or vsn > SCHEMA_VERSIONS[best]):
            best = release
    return best


def column_name(cls: str, field: str) -> str:
    """The database column of wire field ``field`` of class ``cls``."""
    if (cls, field) in PLAIN_COLUMNS:
        return field
    return db_name(cls, field)


def field_of_column(column: str, fields) -> str | None:
    """The wire field of ``column`` among ``fields`` (``name__label`` -> ``name_label``;
    either spelling is accepted), or None."""
    if column in fields:
        return column
    if "__" in column:
        wire = column.replace("__", "_", 1)
        if wire in fields:
            return wire
    return None


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


# -- reading ------------------------------------------------------------------------------


@attrs.define
class RawRow:
    """One ``<row>``: its reference, generations and columns (values unprotected)."""

    ref: str
    ctime: int
    mtime: int
    columns: dict


@attrs.define
class DbFile:
    """What a database file holds, uninterpreted."""

    manifest: list  # [(key, value)] in file order
    tables: dict  # table name -> [RawRow] in file order
    notes: list  # what the reader skipped, one line each

    def manifest_value(self, key: str) -> str | None:
        for k, v in self.manifest:
            if k == key:
                return v
        return None

    def schema_version(self) -> tuple[int, int] | None:
        try:
            return (
                int(self.manifest_value("schema_major_vsn") or ""),
                int(self.manifest_value("schema_minor_vsn") or ""),
            )
        except ValueError:
            return None

    def generation(self) -> int:
        try:
            return int(self.manifest_value("generation_count") or "0")
        except ValueError:
            return 0


def _gen(text: str | None) -> int:
    try:
        return max(0, int(text)) if text is not None else 0
    except ValueError:
        return 0


def read(source: str | BinaryIO, name: str | None = None) -> DbFile:
    """Parse a database file (a path or a binary file object) without holding its whole
    tree in memory. Raises :class:`NotADatabase` with one line for anything that is not
    one."""
    label = name or (source if isinstance(source, str) else getattr(source, "name", "input"))
    manifest: list = []
    tables: dict = {}
    skipped: dict = {}
    path: list = []  # tags of the open elements
    table = table_elem = None
    try:
        for event, elem in SafeET.iterparse(source, events=("start", "end")):
            tag = elem.tag
            if event == "start":
                path.append(tag)
                if len(path) == 1 and tag != "database":
                    raise NotADatabase(
                        f"{label}: not an xapi database (its root element "
                        f"is <{tag}>, not <database>)"
                    )
                if path == ["database", "table"]:
                    tname = elem.get("name")
                    table_elem = elem
                    table = tables.setdefault(tname, []) if tname is not None else None
                    if tname is None:
                        _count(skipped, "<table> without a name")
                continue
            where = tuple(path)
            path.pop()
            if where == ("database", "manifest", "pair"):
                k, v = elem.get("key"), elem.get("value")
                if k is None or v is None:
                    _count(skipped, "<pair> without a key or value")
                else:
                    manifest.append((k, v))
            elif where == ("database", "table", "row"):
                if table is not None:
                    a = elem.attrib
                    ref = a.get("ref") or a.get("_ref")
                    if not ref:
                        _count(skipped, "<row> without a ref")
                    else:
                        cols = {
                            k: unprotect(v)
                            for k, v in a.items()
                            if k not in ("ref", "__ctime", "__mtime")
                        }
                        table.append(
                            RawRow(ref, _gen(a.get("__ctime")), _gen(a.get("__mtime")), cols)
                        )
                if table_elem is not None:
                    table_elem.clear()  # rows are read one by one, never kept as a tree
            elif where == ("database", "table"):
                table = table_elem = None
                elem.clear()
            elif where not in (("database",), ("database", "manifest")):
                _count(skipped, f"<{tag}> element at /{'/'.join(where)}")
    except NotADatabase:
        raise
    except (ParseError, DefusedXmlException) as e:
        raise NotADatabase(f"{label}: not an xapi database ({_xml_error(e)})") from None
    except OSError as e:
        raise NotADatabase(f"{label}: cannot read it ({e.strerror or e})") from None
    except (UnicodeError, ValueError) as e:
        raise NotADatabase(f"{label}: not an xapi database ({e})") from None
    return DbFile(manifest, tables, [f"{what} skipped ({n})" for what, n in skipped.items()])


def _count(d: dict, key: str) -> None:
    d[key] = d.get(key, 0) + 1


def _xml_error(e: Exception) -> str:
    if isinstance(e, DefusedXmlException):
        return f"forbidden XML construct: {type(e).__name__}"
    text = str(e)
    return f"XML error: {text}" if text else "XML error"


# -- writing ------------------------------------------------------------------------------


def _escape_attr(s: str) -> str:
    """Xmlm's ``out_data`` for an attribute: ``< > & "`` escaped; other control characters
    (tab/LF/CR are already protected) and text no XML parser accepts become U+FFFD."""
    if any(c in s for c in '<>&"') or not s.isprintable():
        out = []
        for c in s:
            o = ord(c)
            if c == "<":
                out.append("&lt;")
            elif c == ">":
                out.append("&gt;")
            elif c == "&":
                out.append("&amp;")
            elif c == '"':
                out.append("&quot;")
            elif (
                (o < 0x20 and o not in (9, 10, 13))
                or 0xD800 <= o <= 0xDFFF
                or o in (0xFFFE, 0xFFFF)
            ):
                out.append("\ufffd")
            else:
                out.append(c)
        return "".join(out)
    return s


def _attr(name: str, value: str) -> str:
    return f' {name}="{_escape_attr(protect(value))}"'


@attrs.define
class TableOut:
    """A table to write: ``rows`` is None for a table written without rows; otherwise
    ``(ref, ctime, mtime, {column: database string})`` in any order."""

    name: str
    rows: Iterable | None = None


def write(
    schema_version: tuple[int, int], generation: int, tables: Iterable[TableOut]
) -> Iterator[str]:
    """The database as ``Db_xml.To.database`` writes it, in chunks of text."""
    yield '<?xml version="1.0" encoding="UTF-8"?>\n<database><manifest>'
    yield (
        f'<pair key="schema_major_vsn" value="{schema_version[0]}"/>'
        f'<pair key="schema_minor_vsn" value="{schema_version[1]}"/>'
        f'<pair key="generation_count" value="{int(generation)}"/></manifest>'
    )
    for t in sorted(tables, key=lambda t: t.name.encode()):
        rows = sorted(t.rows, key=lambda r: r[0].encode()) if t.rows is not None else []
        if not rows:
            yield f'<table name="{_escape_attr(t.name)}"/>'
            continue
        parts = [f'<table name="{_escape_attr(t.name)}">']
        for ref, ctime, mtime, cols in rows:
            parts.append(
                "<row"
                + _attr("ref", ref)
                + _attr("__ctime", str(ctime))
                + _attr("__mtime", str(mtime))
            )
            for col in sorted(cols, key=str.encode):
                parts.append(_attr(col, cols[col]))
            parts.append("/>")
            if len(parts) > 512:
                yield "".join(parts)
                parts = []
        parts.append("</table>")
        yield "".join(parts)
    yield "</database>"


def encode_row(cls: str, fields: dict, ref: str, row: dict) -> dict:
    """The columns of one row: every field of ``fields`` (name -> datamodel Field) in
    its database form, plus ``_ref``."""
    cols = {"_ref": ref}
    for name, f in fields.items():
        cols[column_name(cls, name)] = to_db(f.type, row[name])
    return cols


def table_names(schema) -> list[str]:
    """The tables xapi writes for a release: every class of its datamodel (and VTPM, which
    the API datamodel dates from its redesign but older databases always had)."""
    names = list(schema.classes)
    if "VTPM" not in names and RELEASE_INDEX[schema.release] < RELEASE_INDEX[_VTPM_REDESIGN]:
        names.append("VTPM")
    return names


def persistent(table: str) -> bool:
    return table not in NOT_PERSISTED and table not in STATIC_TABLES
