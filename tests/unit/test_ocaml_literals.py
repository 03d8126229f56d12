"""OCaml literal parsing shared by ``xe`` and its server (``xapi_sim/wire/ocaml.py``)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xapi_sim.wire import ocaml as O

I64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)


def test_bool_of_string_is_exact():
    assert O.bool_of_string("true") is True
    assert O.bool_of_string("false") is False
    for bad in ("True", "1", "t", "yes", "", " true"):
        with pytest.raises(O.BadBool) as e:
            O.bool_of_string(bad)
        assert str(e.value) == "bool_of_string"
        assert isinstance(e.value, ValueError)


@pytest.mark.parametrize(
    "text,value",
    [
        ("0", 0),
        ("-12", -12),
        ("+7", 7),
        ("1_000", 1000),
        ("0x1F", 31),
        ("0X1f", 31),
        ("0o17", 15),
        ("0b101", 5),
        ("-0x10", -16),
        ("9223372036854775807", (1 << 63) - 1),
        ("-9223372036854775808", -(1 << 63)),
    ],
)
def test_int64_of_string_accepts_ocaml_literals(text, value):
    assert O.int64_of_string(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-",
        "1.5",
        "0x",
        "12a",
        " 1",
        "1 ",
        "_1",
        "0b2",
        "9223372036854775808",
        "-9223372036854775809",
        "١٢",
    ],
)
def test_int64_of_string_rejects(text):
    with pytest.raises(O.BadInt) as e:
        O.int64_of_string(text)
    assert str(e.value) == "int_of_string"


@given(I64)
def test_int64_decimal_hex_octal_binary_round_trip(n):
    assert O.int64_of_string(str(n)) == n
    sign = "-" if n < 0 else ""
    for prefix, fmt in (("0x", "x"), ("0o", "o"), ("0b", "b")):
        assert O.int64_of_string(sign + prefix + format(abs(n), fmt)) == n


@given(I64, st.integers(min_value=1, max_value=3))
def test_int64_underscores_are_ignored(n, every):
    digits = str(abs(n))
    spaced = "_".join(digits[i : i + every] for i in range(0, len(digits), every))
    assert O.int64_of_string(("-" if n < 0 else "") + spaced) == n


@given(st.one_of(st.integers(min_value=1 << 63), st.integers(max_value=-(1 << 63) - 1)))
def test_int64_out_of_range_is_refused(n):
    with pytest.raises(O.BadInt):
        O.int64_of_string(str(n))


@given(st.text(max_size=12))
def test_parsers_raise_only_their_own_error(s):
    for fn, exc in (
        (O.bool_of_string, O.BadBool),
        (O.int64_of_string, O.BadInt),
        (O.float_of_string, O.BadFloat),
    ):
        try:
            fn(s)
        except exc:
            pass


@given(st.floats(allow_nan=False))
def test_float_of_string_round_trips_repr(f):
    assert O.float_of_string(repr(f)) == f


def test_float_of_string_rejects():
    with pytest.raises(O.BadFloat) as e:
        O.float_of_string("one")
    assert str(e.value) == "float_of_string"
    assert O.float_of_string("1_000.5") == 1000.5
