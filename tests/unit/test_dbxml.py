"""xapi's XML database format (xapi_sim/dbxml.py): properties and the format's facts.

* Values: every datamodel type round-trips through its database string (``to_db`` /
  ``from_db``), including sets and maps nested in maps; floats print ``%0.18g``.
* Xml_spaces: Dundee's ``protect`` is undone by ``unprotect``, and so is HEAD's (every space
  written ``%.``, CA-268761), for any text.
* S-expressions: ``sexpr_string`` parses back to the same tree whatever the strings hold;
  the lexer's other spellings (double quotes, symbols, weird strings, comments) read.
* Files: a database written by ``write`` reads back column for column through expat, with
  xapi's order (tables, rows, columns sorted; ``ref``, ``__ctime``, ``__mtime`` first).
* Anything that is not a database is refused with one line.
"""

from __future__ import annotations

import datetime
import io
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xapi_sim import dbvalues, dbxml
from xapi_sim.datamodel import ENUMS, Schema, Timestamp, parse_type

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# text an XML attribute can carry once protected (no surrogates, no other control chars)
legal_text = st.text(
    st.characters(
        blacklist_categories=("Cs",),
        blacklist_characters="".join(chr(c) for c in range(32) if c not in (9, 10, 13))
        + "\ufffe\uffff",
    ),
    max_size=40,
)
any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
int64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
finite = st.floats(allow_nan=False)
stamps = st.datetimes(
    min_value=datetime.datetime(1970, 1, 1), max_value=datetime.datetime(2100, 1, 1)
).map(lambda d: Timestamp(d.strftime("%Y%m%dT%H:%M:%SZ")))
refs = st.uuids().map(lambda u: f"OpaqueRef:{u}") | st.just("OpaqueRef:NULL")


def values_of(ty):
    """A strategy of Python values of datamodel type ``ty``."""
    k = ty.kind
    if k in ("string",):
        return legal_text
    if k == "int":
        return int64
    if k == "float":
        return finite
    if k == "bool":
        return st.booleans()
    if k == "datetime":
        return stamps
    if k == "ref":
        return refs
    if k == "enum":
        return st.sampled_from(ENUMS[ty.name])
    if k == "set":
        return st.lists(values_of(ty.elem), max_size=5)
    if k == "map":
        return st.dictionaries(values_of(ty.key), values_of(ty.elem), max_size=5)
    raise AssertionError(k)


TYPES = [
    "string",
    "int",
    "float",
    "bool",
    "datetime",
    "VM ref",
    "enum vm_power_state",
    "string set",
    "enum vm_operations set",
    "VBD ref set",
    "(string -> string) map",
    "(int -> float) map",
    "(int -> int) map",
    "(int -> string set) map",
    "(string -> enum vm_operations) map",
    "(string -> (string -> string) map) map",
]


# -- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", TYPES)
@SETTINGS
@given(data=st.data())
def test_values_round_trip(text, data):
    ty = parse_type(text)
    v = data.draw(values_of(ty))
    s = dbvalues.to_db(ty, v)
    assert isinstance(s, str)
    assert dbvalues.from_db(ty, s) == v


@SETTINGS
@given(x=st.floats())
def test_float_text(x):
    """``Printf.sprintf "%0.18g"`` (DM_to_String) and ``float_of_string`` back."""
    s = dbvalues.to_db(parse_type("float"), x)
    if math.isnan(x):
        assert s == "nan" and math.isnan(dbvalues.from_db(parse_type("float"), s))
    else:
        assert s == f"{x:0.18g}"
        assert dbvalues.from_db(parse_type("float"), s) == x


def test_scalar_forms():
    t = parse_type
    assert dbvalues.to_db(t("float"), 0.1) == "0.100000000000000006"
    assert dbvalues.to_db(t("float"), 1.0) == "1"
    assert dbvalues.to_db(t("bool"), True) == "true"
    assert dbvalues.to_db(t("int"), -1) == "-1"
    assert dbvalues.from_db(t("int"), "0x10") == 16  # Int64.of_string
    assert dbvalues.from_db(t("int"), "1_000") == 1000
    assert dbvalues.from_db(t("float"), "1.") == 1.0  # OCaml's "1." as xapi writes it
    assert dbvalues.from_db(t("enum vm_power_state"), "running") == "Running"
    for ty, bad in (
        ("int", "x"),
        ("int", str(1 << 63)),
        ("bool", "True"),
        ("datetime", "yesterday"),
        ("enum vm_power_state", "Flying"),
        ("string set", "('a'"),
        ("(string -> string) map", "('a' 'b')"),
    ):
        with pytest.raises(dbvalues.DbValueError):
            dbvalues.from_db(t(ty), bad)


def test_bad_elements_dropped_when_asked():
    ty = parse_type("enum vm_operations set")
    dropped = []
    assert dbvalues.from_db(ty, "('start' 'teleport' 'clone')", dropped) == ["start", "clone"]
    assert len(dropped) == 1 and "teleport" in dropped[0]
    with pytest.raises(dbvalues.DbValueError):
        dbvalues.from_db(ty, "('start' 'teleport')")


@SETTINGS
@given(items=st.lists(any_text, max_size=4))
def test_set_elements_cut_at_illegal_characters(items):
    """``String_marshall_helper.ensure_utf8_xml``: each element keeps its longest prefix
    legal in XML."""

    def legal(s):
        for i, c in enumerate(s):
            if ord(c) < 32 and c not in "\t\n\r":
                return s[:i]
        return s

    assert dbvalues.unmarshal_set(dbvalues.marshal_set(items)) == [legal(x) for x in items]


# -- Xml_spaces -----------------------------------------------------------------------------


def head_protect(s: str) -> str:
    """xen-api HEAD's protect (CA-268761): every space ``%.``."""
    return "".join({" ": "%.", "\t": "%t", "\n": "%n", "\r": "%r", "%": "%%"}.get(c, c) for c in s)


@SETTINGS
@given(s=st.text(st.sampled_from(" \t\n\r%_.tnra"), max_size=30) | any_text)
def test_protection_round_trips(s):
    assert dbvalues.unprotect(dbvalues.protect(s)) == s
    assert dbvalues.unprotect(head_protect(s)) == s


def test_protection_as_dundee_wrote_it():
    assert dbvalues.protect("a  b") == "a%_b"
    assert dbvalues.protect("a   b") == "a%_ b"
    assert dbvalues.protect("x\ty\n%") == "x%ty%n%%"
    assert dbvalues.protect("one space") == "one space"
    assert dbvalues.unprotect("CPU%_%_%_%_%_ X3450%_@") == "CPU           X3450  @"
    assert dbvalues.unprotect("a%.b%z") == "a b%z"


# -- s-expressions -------------------------------------------------------------------------

trees = st.recursive(any_text, lambda inner: st.lists(inner, max_size=4), max_leaves=10)


@SETTINGS
@given(tree=st.lists(trees, max_size=4))
def test_sexpr_round_trips(tree):
    assert dbvalues.sexpr_parse(dbvalues.sexpr_string(tree)) == tree


def test_sexpr_escapes_as_dundee():
    """xen-api-libs-transitional SExpr.escape (Dundee): backslash, double and single quote."""
    assert dbvalues.sexpr_string(["a'b", 'c"d', "e\\f"]) == "('a\\'b' 'c\\\"d' 'e\\\\f')"


def test_sexpr_other_spellings():
    assert dbvalues.sexpr_parse('(("k" "v") (\'a\' "b"))') == [["k", "v"], ["a", "b"]]
    assert dbvalues.sexpr_parse("(sym 'quoted')") == ["sym", "quoted"]
    assert dbvalues.sexpr_parse("(<<xx<a (b) c<xx< 'd')") == ["a (b) c", "d"]
    assert dbvalues.sexpr_parse("; comment\n('a') trailing") == ["a"]
    for bad in ("", "(", ")", "('a'", "(<<x<a<y<)"):
        with pytest.raises(dbvalues.DbValueError):
            dbvalues.sexpr_parse(bad)


# -- files ----------------------------------------------------------------------------------

table_names = st.sampled_from(["VM", "host", "SR", "Bond", "VM_metrics", "pool", "x_y"])
columns = st.dictionaries(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True).filter(
        lambda c: c not in ("ref", "__ctime", "__mtime")
    ),
    legal_text,
    max_size=5,
)


@SETTINGS
@given(
    tables=st.dictionaries(
        table_names,
        st.dictionaries(
            refs, st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), columns), max_size=4
        ),
        max_size=4,
    ),
    gen=st.integers(0, 10**9),
)
def test_files_round_trip(tables, gen):
    out = [
        dbxml.TableOut(name, [(ref, c, m, cols) for ref, (c, m, cols) in rows.items()])
        for name, rows in tables.items()
    ]
    text = "".join(dbxml.write((5, 93), gen, out))
    back = dbxml.read(io.BytesIO(text.encode()))
    assert back.schema_version() == (5, 93) and back.generation() == gen
    assert back.notes == []
    for name, rows in tables.items():
        got = {r.ref: (r.ctime, r.mtime, r.columns) for r in back.tables[name]}
        assert got == rows
        assert [r.ref for r in back.tables[name]] == sorted(rows)


def test_the_exact_bytes():
    """Xmlm's output: declaration, one line, self-closing empty tables, row preamble first,
    columns byte-sorted (upper case before ``_`` before lower case), attributes escaped."""
    text = "".join(
        dbxml.write(
            (5, 93),
            7,
            [
                dbxml.TableOut("host"),
                dbxml.TableOut(
                    "VM",
                    [
                        (
                            "OpaqueRef:b",
                            3,
                            5,
                            {
                                "uuid": "u",
                                "_ref": "OpaqueRef:b",
                                "VBDs": "()",
                                "name__label": 'a<b & "c"  d',
                            },
                        ),
                        ("OpaqueRef:a", 1, 2, {"x": "\x01"}),
                    ],
                ),
                dbxml.TableOut("Bond", []),
            ],
        )
    )
    assert text == (
        '<?xml version="1.0" encoding="UTF-8"?>\n<database><manifest>'
        '<pair key="schema_major_vsn" value="5"/><pair key="schema_minor_vsn" value="93"/>'
        '<pair key="generation_count" value="7"/></manifest><table name="Bond"/>'
        '<table name="VM"><row ref="OpaqueRef:a" __ctime="1" __mtime="2" x="\ufffd"/>'
        '<row ref="OpaqueRef:b" __ctime="3" __mtime="5" VBDs="()" _ref="OpaqueRef:b" '
        'name__label="a&lt;b &amp; &quot;c&quot;%_d" uuid="u"/></table>'
        '<table name="host"/></database>'
    )


def test_encode_row_column_names():
    schema = Schema.for_release("dundee")
    for cls, field, column in (
        ("VM", "name_label", "name__label"),
        ("VM", "HVM_boot_params", "HVM__boot_params"),
        ("VM", "memory_static_max", "memory__static_max"),
        ("host", "API_version_major", "API_version__major"),
        ("pool", "name_label", "name_label"),
        ("VM", "power_state", "power_state"),
    ):
        row = schema.classes[cls].defaults()
        cols = dbxml.encode_row(cls, schema.classes[cls].fields, "OpaqueRef:x", row)
        assert column in cols and cols["_ref"] == "OpaqueRef:x"
        assert dbxml.field_of_column(column, schema.classes[cls].fields) == field


def test_table_names_and_persistence():
    names = dbxml.table_names(Schema.for_release("dundee"))
    assert "VTPM" in names and "VM" in names and "LVHD" in names
    assert dbxml.table_names(Schema.for_release("24.16.0")).count("VTPM") == 1
    for cls in ("session", "task", "message", "event", "role", "VBD_metrics"):
        assert not dbxml.persistent(cls)
    assert dbxml.persistent("VM") and dbxml.persistent("host_cpu")


@pytest.mark.parametrize(
    "vsn,release",
    [
        ((5, 55), "orlando"),
        ((5, 59), "george"),
        ((5, 66), "tampa"),
        ((5, 73), "cream"),
        ((5, 93), "dundee"),
        ((5, 601), "stockholm"),
        ((5, 909), "nile"),
        ((4, 0), None),
    ],
)
def test_release_for_schema(vsn, release):
    assert dbxml.release_for_schema(*vsn) == release


# -- not a database ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data,why",
    [
        (b"", "XML error"),
        (b"root:x:0:0:root:/root:/bin/bash\n", "XML error"),
        (b"\x1f\x8b\x08\x00binary", "XML error"),
        (b"<results><a/></results>", "its root element is <results>"),
        (b"<database><table name='VM'><row ref='OpaqueRef:a'/>", "XML error"),
        (b'<!DOCTYPE d [<!ENTITY e "x">]><database>&e;</database>', "forbidden"),
    ],
)
def test_not_a_database(data, why):
    with pytest.raises(dbxml.NotADatabase) as e:
        dbxml.read(io.BytesIO(data), name="f.xml")
    text = str(e.value)
    assert text.startswith("f.xml: ") and why in text and "\n" not in text


def test_liberal_reading():
    """Unknown elements are skipped and counted; a row without ref but with _ref is read;
    a row with neither is skipped; whitespace and pretty-printing are ignored."""
    data = b"""<?xml version="1.0"?>
<database>
  <manifest>
    <pair key="installation_uuid" value="x"/>
    <pair key="schema_major_vsn" value="5"/>
    <pair key="schema_minor_vsn" value="55"/>
  </manifest>
  <comment>hello</comment>
  <table name="VM">
    <row _ref="OpaqueRef:a" name__label="x%_y"/>
    <row name__label="lost"/>
  </table>
</database>"""
    db = dbxml.read(io.BytesIO(data), name="x")
    assert db.schema_version() == (5, 55) and db.generation() == 0
    assert [(r.ref, r.columns["name__label"]) for r in db.tables["VM"]] == [("OpaqueRef:a", "x  y")]
    assert sorted(db.notes) == [
        "<comment> element at /database/comment skipped (1)",
        "<row> without a ref skipped (1)",
    ]
