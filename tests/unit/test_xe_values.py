"""xe argument values, the record filter and the error mapping of the xe server side
(``xapi_sim/xe_server/values.py``, ``selectors.py``, ``errors.py``): pure logic, no world."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xapi_sim.datamodel import ENUMS
from xapi_sim.errors import Failure
from xapi_sim.wire import cliproto
from xapi_sim.wire.ocaml import BadBool, BadFloat, BadInt
from xapi_sim.xe_server import errors as E
from xapi_sim.xe_server import values as V
from xapi_sim.xe_server.records import Field
from xapi_sim.xe_server.selectors import filter_by, filter_records

SUFFIXES = {"": 1, "bytes": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


# -- values ----------------------------------------------------------------------------------


@given(
    st.integers(min_value=0, max_value=(1 << 23) - 1),
    st.sampled_from(sorted(SUFFIXES)),
    st.sampled_from(["", " "]),
)
def test_bytes_of_string_multiplies_by_the_suffix(n, suffix, space):
    text = f"{n}{space if suffix else ''}{suffix}"
    assert V.bytes_of_string("memory", text) == n * SUFFIXES[suffix]


@given(st.text(max_size=12))
def test_bytes_of_string_gives_a_number_or_a_cli_failure(text):
    try:
        v = V.bytes_of_string("memory", text)
    except E.CliFailure as e:
        assert e.args[0].startswith("Failed to parse field 'memory': ")
    else:
        assert isinstance(v, int)


def test_bytes_of_string_errors():
    with pytest.raises(E.CliFailure, match="Unknown suffix: 'XiB'"):
        V.bytes_of_string("m", "12XiB")
    with pytest.raises(E.CliFailure, match="number too big"):
        V.bytes_of_string("m", "99999999999999999999")
    with pytest.raises(E.CliFailure, match="expecting an integer"):
        V.bytes_of_string("m", "1 2 GiB")


@given(st.sampled_from(["true", "t", "1", "false", "f", "0"]), st.data())
def test_cli_bool_any_case(word, data):
    cased = "".join(c.upper() if data.draw(st.booleans()) else c for c in word)
    assert V.cli_bool("force", cased) is (word in ("true", "t", "1"))


@given(st.text(max_size=6).filter(lambda s: s.lower() not in ("true", "t", "1", "false", "f", "0")))
def test_cli_bool_refuses_the_rest(s):
    with pytest.raises(E.CliFailure, match="Failed to parse parameter 'force'"):
        V.cli_bool("force", s)


@given(st.sampled_from(sorted(ENUMS["vm_operations"])))
def test_vm_operation_names_round_trip(op):
    assert V.vm_op_of_string(V.vm_op_str(op)) == op


def test_unknown_vm_operation_is_invalid_value():
    with pytest.raises(Failure) as e:
        V.vm_op_of_string("fly")
    assert e.value.description == ["INVALID_VALUE", "blocked_operation", "fly"]


@given(
    st.sampled_from(
        [
            "destroy",
            "coredump_and_destroy",
            "restart",
            "coredump_and_restart",
            "preserve",
            "rename_restart",
        ]
    ),
    st.booleans(),
)
def test_on_crash_parses_any_case(x, upper):
    assert V.on_crash_of_string(x.upper() if upper else x) == x
    assert V.on_crash_str(x)[0].isupper()


# -- the record filter -----------------------------------------------------------------------


class FakeRecord:
    """A record of plain fields ``name``, a set ``tags`` and a map ``other-config``."""

    def __init__(self, name, tags, other):
        self.fields = [
            Field("name", lambda: name),
            Field("tags", lambda: ", ".join(tags), get_set=lambda: list(tags)),
            Field("other-config", lambda: "", get_map=lambda: list(other.items())),
        ]

    def field(self, n):
        return next(f for f in self.fields if f.name == n)


WORDS = st.sampled_from(["a", "b", "c"])
RECORDS = st.lists(
    st.builds(
        FakeRecord, WORDS, st.lists(WORDS, max_size=3), st.dictionaries(WORDS, WORDS, max_size=3)
    ),
    max_size=6,
)


@given(RECORDS, WORDS)
def test_filter_keeps_exactly_the_matching_records_in_order(records, v):
    got = filter_records(records, "name", v)
    assert got == [r for r in records if r.field("name").value() == v]


@given(RECORDS, WORDS, WORDS)
def test_set_and_map_filters(records, k, v):
    assert filter_records(records, "tags:contains", v) == [
        r for r in records if v in r.field("tags").get_set()
    ]
    assert filter_records(records, f"other-config:{k}", v) == [
        r for r in records if dict(r.field("other-config").get_map()).get(k) == v
    ]


@given(RECORDS, st.lists(st.tuples(st.sampled_from(["name", "tags:contains"]), WORDS), max_size=3))
def test_filters_compose_and_are_idempotent(records, params):
    once = filter_by(records, params)
    assert filter_by(once, params) == once
    assert all(r in records for r in once)
    assert filter_by(records, []) == records


def test_filter_errors():
    recs = [FakeRecord("a", [], {})]
    with pytest.raises(E.CliFailure, match="Unknown field 'nosuch'"):
        filter_records(recs, "nosuch", "x")
    with pytest.raises(E.CliFailure, match="Invalid syntax for set filtering"):
        filter_records(recs, "tags:has", "x")
    with pytest.raises(E.CliFailure, match="Field 'name' is not a set or map"):
        filter_records(recs, "name:x", "x")


# -- errors ----------------------------------------------------------------------------------

EXCEPTIONS = st.one_of(
    st.builds(Failure, st.text(max_size=8), st.text(max_size=8)),
    st.builds(E.CliFailure, st.text(max_size=8)),
    st.builds(E.OcamlFailure, st.text(max_size=8)),
    st.builds(E.InternalExn, st.text(max_size=8)),
    st.builds(E.UnixError, st.text(max_size=8)),
    st.builds(E.MissingParameter, st.text(max_size=8)),
    st.builds(E.ParseError, st.text(max_size=8)),
    st.builds(
        E.MultipleFailure,
        st.lists(st.tuples(st.text(max_size=4), st.text(max_size=4)), min_size=1, max_size=2),
    ),
    st.sampled_from([BadBool(), BadInt(), BadFloat(), KeyError("x"), ValueError("y")]),
)


@given(EXCEPTIONS)
def test_every_exception_becomes_protocol_output(e):
    out = E.error_commands(e, lambda r: None)
    assert out and all(
        isinstance(m, (cliproto.Print, cliproto.PrintStderr, cliproto.Error)) for m in out
    )
    for m in out:
        cliproto.frame(m)  # encodable
    assert isinstance(E.printexc(e), str) and isinstance(E.string_of_exn(e), str)


def test_literal_errors_are_the_ocaml_exceptions():
    assert E.printexc(BadInt()) == 'Failure("int_of_string")'
    assert E.printexc(BadBool()) == "Invalid argument: bool_of_string"
    assert E.string_of_exn(BadBool()) == "INTERNAL_ERROR: [ Invalid argument: bool_of_string ]"
    assert E.error_commands(BadFloat(), lambda r: None) == E.error_commands(
        E.OcamlFailure("float_of_string"), lambda r: None
    )
    assert E.is_modelled(BadInt()) and not E.is_modelled(KeyError("x"))
