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
* **Values** and attribute protection: :mod:`dbvalues`.
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

from collections.abc import Iterable, Iterator
from typing import BinaryIO
from xml.etree.ElementTree import ParseError

import attrs
from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from .datamodel import RELEASE_INDEX
from .dbvalues import protect, to_db, unprotect
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


def schema_version_of(release: str) -> tuple[int, int]:
    """The schema version a database of ``release`` carries: the newest release of
    :data:`SCHEMA_VERSIONS` not after it."""
    idx = RELEASE_INDEX.get(release, RELEASE_INDEX["dundee"])
    known = [r for r in SCHEMA_VERSIONS if RELEASE_INDEX.get(r, -1) <= idx]
    best = max(known, key=lambda r: RELEASE_INDEX[r], default="dundee")
    return SCHEMA_VERSIONS[best]


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
