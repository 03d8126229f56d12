"""The get_all_records_where language against XAPI's lexer, grammar and evaluator
(``db_filter_lex.mll``, ``db_filter_parse.mly``, ``db_filter.ml``, ``db_cache_impl.ml``)."""

from __future__ import annotations

import pytest

from xapi_sim import where
from xapi_sim.datamodel import Timestamp

ROW = {
    "uuid": "u-1",
    "name_label": "web1",
    "name_description": "",
    "power_state": "Running",
    "is_a_template": False,
    "memory_static_max": 4294967296,
    "VCPUs_max": 2,
    "HVM_shadow_multiplier": 1.0,
    "tags": ["a", "b'c"],
    "other_config": {"k": "v"},
    "resident_on": "OpaqueRef:h1",
    "snapshot_time": Timestamp("19700101T00:00:00Z"),
}
A = ("eq", ("field", "name__label"), ("lit", "web1"))
B = ("eq", ("field", "power_state"), ("lit", "Halted"))
C = ("eq", ("lit", "x"), ("lit", "x"))


def ev(expr, row=ROW, ref="OpaqueRef:r1", cls="VM"):
    return where.evaluate(where.parse(expr), row, ref, cls)


# -- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,tree",
    [
        ("true", ("true",)),
        ("false", ("false",)),
        ('field "name__label"="web1"', A),
        ('  field  "name__label"\t=\n"web1"  ', A),
        ('"web1"=field "name__label"', ("eq", ("lit", "web1"), ("field", "name__label"))),
        ('"x"="x"', C),
        ('field "a"=field "b"', ("eq", ("field", "a"), ("field", "b"))),
        ('(field "name__label"="web1")', A),
        ("((true))", ("true",)),
        ('field"name__label"="web1"', A),
        ("notfalse", ("not", ("false",))),
        ("trueandfalse", ("and", ("true",), ("false",))),
        ('"a b=c"="(x)"', ("eq", ("lit", "a b=c"), ("lit", "(x)"))),
        ('""=""', ("eq", ("lit", ""), ("lit", ""))),
    ],
)
def test_parse(text, tree):
    assert where.parse(text) == tree


def test_and_or_are_left_associative_with_equal_precedence():
    a, b, c = 'field "name__label"="web1"', 'field "power_state"="Halted"', '"x"="x"'
    assert where.parse(f"{a} and {b} or {c}") == ("or", ("and", A, B), C)
    assert where.parse(f"{a} or {b} and {c}") == ("and", ("or", A, B), C)
    assert where.parse(f"{a} and ({b} or {c})") == ("and", A, ("or", B, C))


def test_not_has_the_lowest_precedence():
    """``%right LNOT`` precedes ``%left LAND LOR``: not's operand runs to the end."""
    a, b, c = 'field "name__label"="web1"', 'field "power_state"="Halted"', '"x"="x"'
    assert where.parse(f"not {a} and {b}") == ("not", ("and", A, B))
    assert where.parse(f"not {a} or {b} and {c}") == ("not", ("and", ("or", A, B), C))
    assert where.parse(f"{a} and not {b} or {c}") == ("and", A, ("not", ("or", B, C)))
    assert where.parse(f"(not {a}) and {b}") == ("and", ("not", A), B)
    assert where.parse(f"not not {a}") == ("not", ("not", A))
    assert where.parse(f"({a} or not {b}) and {c}") == ("and", ("or", A, ("not", B)), C)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "(",
        ")",
        "()",
        "true false",
        "true and",
        "and true",
        "not",
        "=",
        '"a"',
        '"a"=',
        '="a"',
        'field "a"',
        'field = "a"',
        'field field "a"="b"',
        '"a"="b"="c"',
        "(true))",
        "((true)",
        'true = "a"',
        '"a" = true',
        "andy",
    ],
)
def test_syntax_errors(text):
    with pytest.raises(where.WhereError) as e:
        where.parse(text)
    assert str(e.value) == "Parsing.Parse_error"


@pytest.mark.parametrize(
    "text",
    [
        'field "unterminated',
        "x",
        "True",
        "TRUE",
        "field 'a'=\"b\"",
        '"a"=="b"',
        "@",
        "true & false",
        'field "a"="b" && true',
        "true\rand true",
        "1=1",
    ],
)
def test_lexing_errors(text):
    with pytest.raises(where.WhereError) as e:
        where.parse(text)
    assert str(e.value) in (where.LEX_ERROR, where.PARSE_ERROR)


@pytest.mark.parametrize(
    "text,err",
    [
        ("x", where.LEX_ERROR),  # the first token is already bad
        ("true x", where.LEX_ERROR),  # parser asks for the token after "true"
        ('field "a"="b" x', where.LEX_ERROR),
        ("true true x", where.PARSE_ERROR),  # the syntax error comes first
        (") x", where.PARSE_ERROR),
        ('"a"="b', where.LEX_ERROR),  # the unterminated literal is never a token
    ],
)
def test_the_first_error_in_the_text_wins(text, err):
    with pytest.raises(where.WhereError) as e:
        where.parse(text)
    assert str(e.value) == err


# -- evaluation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr,want",
    [
        ("true", True),
        ("false", False),
        ("not true", False),
        ('field "name__label"="web1"', True),
        ('field "name__label"="Web1"', False),
        ('field "power_state"="Running"', True),
        ('field "is_a_template"="false"', True),
        ('field "is_a_template"="False"', False),
        ('field "memory__static_max"="4294967296"', True),
        ('field "VCPUs__max"="2"', True),
        ('field "HVM__shadow_multiplier"="1"', True),
        ('field "resident_on"="OpaqueRef:h1"', True),
        ('field "uuid"="u-1" or field "name__label"="nope"', True),
        ('field "uuid"="nope" or field "name__label"="nope"', False),
        ('field "name__description"=""', True),
        ('field "snapshot_time"="19700101T00:00:00Z"', True),
        ("field \"tags\"=\"('a' 'b\\'c')\"", True),
        ("field \"other_config\"=\"(('k' 'v'))\"", True),
        ('field "_ref"="OpaqueRef:r1"', True),
        ('not field "is_a_template"="true" and field "power_state"="Halted"', True),
        ('(not field "is_a_template"="true") and field "power_state"="Halted"', False),
    ],
)
def test_evaluate(expr, want):
    assert ev(expr) is want


@pytest.mark.parametrize(
    "column",
    [
        "name_label",
        "memory_static_max",
        "VCPUs_max",
        "HVM_shadow_multiplier",
        "nonexistent",
        "NAME__LABEL",
    ],
)
def test_missing_columns(column):
    with pytest.raises(where.MissingField) as e:
        ev(f'field "{column}"="x"')
    assert e.value.name == column


def test_short_circuit_never_looks_up_the_right_side():
    assert ev('field "uuid"="u-1" or field "nonexistent"="x"') is True
    assert ev('field "uuid"="no" and field "nonexistent"="x"') is False


def test_db_names():
    assert where.db_name("VM", "name_label") == "name__label"
    assert where.db_name("host_cpu", "other_config") == "other_config"
    assert where.db_name("VM", "HVM_boot_params") == "HVM__boot_params"
    assert where.db_name("VM", "VCPUs_params") == "VCPUs__params"
    assert where.db_name("VM", "PV_legacy_args") == "PV__legacy_args"
    assert where.db_name("VM", "actions_after_crash") == "actions__after_crash"
    assert (
        where.db_name("host", "API_version_vendor_implementation")
        == "API_version__vendor_implementation"
    )
    assert where.db_name("host", "memory_overhead") == "memory__overhead"
    assert where.db_name("host", "guest_VCPUs_params") == "guest_VCPUs_params"
    assert where.db_name("VM_metrics", "VCPUs_utilisation") == "VCPUs__utilisation"
    assert where.db_name("host_metrics", "memory_free") == "memory__free"
    assert where.db_name("pool", "ha_enabled") == "ha_enabled"
    for cls in ("VM", "host", "pool", "SR", "network"):
        assert where.wire_name(cls, where.db_name(cls, "name_label")) == "name_label"
        assert where.wire_name(cls, "name_label") is None


def test_db_string_forms():
    assert where.db_string(True) == "true" and where.db_string(False) == "false"
    assert where.db_string(-5) == "-5"
    assert where.db_string(0.5) == "0.5" and where.db_string(1.0) == "1"
    assert where.db_string([]) == "()"
    assert where.db_string(["a", "b"]) == "('a' 'b')"
    assert where.db_string(["it's", "a\\b"]) == "('it\\'s' 'a\\\\b')"
    assert where.db_string({}) == "()"
    assert where.db_string({"k": "v", "x": "y"}) == "(('k' 'v') ('x' 'y'))"
    assert where.db_string(Timestamp("20240101T00:00:00Z")) == "20240101T00:00:00Z"


def test_to_text_round_trips():
    for text in (
        'not field "a"="b" and true',
        '(true or false) and not "x"="y"',
        'field "a"=field "b"',
    ):
        tree = where.parse(text)
        assert where.parse(where.to_text(tree)) == tree
