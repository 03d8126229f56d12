"""Featureset algebra: every vector of spec §2.1-§2.3, §4, §11 plus algebraic properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xapi_sim.levelling import featureset as fs
from xapi_sim.levelling.featureset import InvalidFeatureString

words = st.integers(min_value=0, max_value=0xFFFFFFFF)
featuresets = st.lists(words, max_size=10).map(tuple)
nonempty = st.lists(words, min_size=1, max_size=10).map(tuple)
semantics = st.sampled_from(fs.SEMANTICS)


# --- §2.1 printing and parsing ------------------------------------------------------------


@pytest.mark.parametrize(
    "words_, text",
    [
        ((0, 2, 123), "00000000-00000002-0000007b"),
        ((0,), "00000000"),
        ((), ""),
        ((1,), "00000001"),
        ((0xFFFFFFFF, 0x07CBFBFF), "ffffffff-07cbfbff"),
    ],
)
def test_print_and_parse_vectors(words_, text):
    assert fs.format(words_) == text
    assert fs.parse(text) == words_


def test_short_pieces_parse_and_reprint_with_8_digits():
    assert fs.parse("1") == (1,)
    assert fs.format(fs.parse("1")) == "00000001"
    assert fs.parse("a-0-ffffffff") == (10, 0, 0xFFFFFFFF)
    assert fs.format(fs.parse("a-b-c-d-e")) == ("0000000a-0000000b-0000000c-0000000d-0000000e")


@pytest.mark.parametrize(
    "bad",
    [
        "foo bar baz",
        "fgfg-1234",
        "0123-foo",
        "foo-0123",
        "-1234",
        "1234-",
        "123456789",
        "-",
        "1--2",
        " 1",
        "1 ",
        "0x12",
        "+1",
        "1_0",
        "12345678-123456789",
        "\n",
        "1\n",
    ],
)
def test_parse_failures(bad):
    with pytest.raises(InvalidFeatureString):
        fs.parse(bad)


def test_invalid_feature_string_is_a_value_error():
    assert issubclass(InvalidFeatureString, ValueError)


def test_uppercase_digits_accepted_and_reprinted_lowercase():
    assert fs.format(fs.parse("ABCDEF01")) == "abcdef01"


@pytest.mark.parametrize("bad", [(-1,), (1 << 32,)])
def test_format_rejects_words_out_of_range(bad):
    with pytest.raises(ValueError):
        fs.format(bad)


# --- §2.2 primitive operations ------------------------------------------------------------


def test_zero_extend_vectors():
    assert fs.zero_extend((1, 2), 1) == (1,)
    assert fs.zero_extend((), 2) == (0, 0)
    assert fs.zero_extend((1,), 3) == (1, 0, 0)


def test_extend_vectors():
    assert fs.extend((1,), (0, 2)) == (1, 2)
    assert fs.extend((1, 0), (0, 2, 4, 9)) == (1, 0, 4, 9)
    assert fs.extend((1,), ()) == ()


def test_intersect_vectors():
    assert fs.intersect((7, 3), (5,)) == (5, 0)
    assert fs.intersect((1,), (1, 0)) == (1, 0)
    assert fs.intersect((1, 2, 3), (1, 1, 1)) == (1, 0, 1)
    assert fs.intersect((), (1, 2, 3)) == (1, 2, 3)
    assert fs.intersect((1, 2, 3), ()) == (1, 2, 3)


def test_subset_consequences_listed_in_2_2():
    assert fs.is_subset((), ())
    assert fs.is_subset((1, 2, 3), ())
    assert not fs.is_subset((), (1, 2, 3))
    assert not fs.is_subset((5,), (7, 3))
    assert not fs.is_subset((1,), (1, 0))
    assert fs.is_subset((1, 0), (1,))
    assert fs.is_subset((5,), (7, 3), "2018")
    assert fs.is_subset((1,), (1, 0), "2018")
    assert fs.is_subset((1, 0), (1,), "2018")


def test_is_equal_and_diff_vectors():
    assert fs.is_equal((1,), (1, 0))
    assert fs.is_equal((), (0, 0))
    assert not fs.is_equal((1,), (1, 1))
    assert fs.diff((0xF, 1), (0x5,)) == (0xA, 1)
    assert fs.diff((1,), (1, 4)) == (0, 0)


def test_unknown_semantics_rejected():
    with pytest.raises(ValueError):
        fs.is_subset((1,), (1,), "head")
    with pytest.raises(ValueError):
        fs.is_strict_subset((1,), (1,), "2019")


# --- §2.3 comparison table (both columns) ------------------------------------------------

T, F = True, False
_A = "07cbfbff-04082201-20100800-00000001-00000000-00000000-00000000-00000000-00000000"
_B = "07c9cbf5-80082201-20100800-00000001-00000000-00000000-00000000-00000000-00000000"
TABLE_2_3 = [
    ((), (), (T, F), (T, F)),
    ((1, 2, 3), (), (T, T), (T, T)),
    ((), (1, 2, 3), (F, F), (F, F)),
    ((7, 3), (5,), (F, F), (F, F)),
    ((5,), (7, 3), (F, F), (T, T)),
    ((1,), (1,), (T, F), (T, F)),
    ((1,), (1, 0), (F, F), (T, F)),
    ((1, 0), (1,), (T, T), (T, F)),
    ((0b00000111,), (0b00001111,), (T, T), (T, T)),
    ((0b00011111,), (0b00001111,), (F, F), (F, F)),
    (fs.parse(_A), fs.parse(_B), (F, F), (F, F)),
]


@pytest.mark.parametrize("a, b, dundee, since_2018", TABLE_2_3)
def test_comparison_table(a, b, dundee, since_2018):
    assert (fs.is_subset(a, b), fs.is_strict_subset(a, b)) == dundee
    assert (fs.is_subset(a, b, "dundee"), fs.is_strict_subset(a, b, "dundee")) == dundee
    assert (fs.is_subset(a, b, "2018"), fs.is_strict_subset(a, b, "2018")) == since_2018


# --- §4 pool intersection vectors (test_pool_cpuinfo.ml) --------------------------------


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ("0000000a", "0000000f", "0000000a"),
        ("00000002", "00000001", "00000000"),
        ("ffffffff", "ffffffff-ffffffff", "ffffffff-00000000"),
        ("01230123-5a5a5a5a", "ffff1111-a5a56666", "01230101-00004242"),
        ("", "0000000f", "0000000f"),
    ],
)
def test_pool_intersection_vectors(a, b, expected):
    assert fs.format(fs.intersect(fs.parse(a), fs.parse(b))) == expected
    assert fs.format(fs.intersect(fs.parse(b), fs.parse(a))) == expected


# --- §2.5 / §16 old-style v1 format ------------------------------------------------------


def test_parse_oldstyle_accepts_dashes_and_spaces():
    expected = (0xFFFFFF7F, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    assert fs.parse_oldstyle("ffffff7f-ffffffff-ffffffff-ffffffff") == expected
    assert fs.parse_oldstyle("ffffff7f ffffffff ffffffff ffffffff") == expected
    assert fs.parse_oldstyle("ffffff7fffffffffffffffffffffffff") == expected
    assert fs.parse_oldstyle("ffff ff7f-ffff-ffff ffffffff-ff-ffffff") == expected
    assert fs.format_oldstyle(expected) == "ffffff7f-ffffffff-ffffffff-ffffffff"


@pytest.mark.parametrize(
    "bad, message",
    [
        ("ffffff7f-ffffffff-ffffffff-fffffffg", "String contains illegal character"),
        ("ffffff7f_ffffffff-ffffffff-ffffffff", "String contains illegal character"),
        ("zz", "String contains illegal character"),
        ("ffffffff-ffffffff-ffffffff", "String is not of the right length"),
        ("ffffffff-ffffffff-ffffffff-ffffffff-0", "String is not of the right length"),
        ("", "String is not of the right length"),
    ],
)
def test_parse_oldstyle_errors(bad, message):
    with pytest.raises(InvalidFeatureString, match=f"^{message}$"):
        fs.parse_oldstyle(bad)


def test_format_oldstyle_needs_four_words():
    with pytest.raises(ValueError):
        fs.format_oldstyle((1, 2, 3))


# --- §11 old-style upgrade ---------------------------------------------------------------

HOST5 = fs.parse("a-b-c-d-e")
HOST6 = fs.parse("a-b-c-d-e-f")
HOST7 = fs.parse("a-b-c-d-e-f-10")


@pytest.mark.parametrize(
    "vm, host, expected",
    [
        ("", HOST5, "0000000a-0000000b-0000000c-0000000d-0000000e"),
        ("1-2-3-4", HOST5, "00000001-00000002-00000003-00000004-0000000e"),
        ("1-2-3-4", HOST6, "00000001-00000002-00000003-00000004-0000000e-0000000f"),
        ("1-2-3-4-5", HOST5, "00000001-00000002-00000003-00000004-00000005"),
        ("1-2-3-4-5", HOST6, "00000001-00000002-00000003-00000004-00000005-00000000"),
        ("1-2-3-4-5", HOST7, "00000001-00000002-00000003-00000004-00000005-00000000-00000000"),
    ],
)
def test_section_11_table_identity_mode(vm, host, expected):
    result = fs.upgrade_vm_features(fs.parse(vm), host, is_hvm=True, mode="identity")
    assert fs.format(result) == expected


def test_reorder_mode_swaps_words_and_ands_with_host():
    vm = fs.parse_oldstyle("7fbee3ff-bfebfbff-00000001-2c100800")  # ecx, edx, e1c, e1d
    host = fs.parse("17cbfbff-f7ba2223-2d93fbff-00000003-00000001-00000281-0-0-0")
    up = fs.upgrade_oldstyle(vm, host, is_hvm=True)
    assert up == (
        0xBFEBFBFF & host[0],
        0x7FBEE3FF & host[1],
        0x2C100800 & host[2],
        0x00000001 & host[3],
    )
    full = fs.upgrade_vm_features(vm, host, is_hvm=True)
    assert full == up + host[4:]


def test_reorder_mode_vectors():
    assert fs.upgrade_oldstyle((), HOST5, False) == ()
    assert fs.upgrade_oldstyle((1, 2, 3, 4), (0xF,) * 5, False) == (2, 1, 4, 3)
    assert fs.upgrade_oldstyle((1, 2, 3, 4), (0x3, 0x1, 0xF, 0x1), False) == (2, 1, 4, 1)
    assert fs.format(fs.upgrade_vm_features((), HOST5, False)) == fs.format(HOST5)
    assert fs.upgrade_vm_features((1, 2, 3, 4), (0xF,) * 5, False) == (2, 1, 4, 3, 0xF)
    # a 1-word toy value takes the old-style path too (spec §9 "emulator pitfall"):
    # it is zero-extended to 4 v1 words, translated, then extended with the host's tail
    assert fs.upgrade_vm_features((0xF,), (0xFF,) * 9, True) == (0, 0xF, 0, 0) + (0xFF,) * 5


def test_empty_mode_gives_the_host_set():
    assert fs.upgrade_oldstyle((1, 2, 3, 4), HOST5, True, mode="empty") == ()
    assert fs.upgrade_vm_features((1, 2, 3, 4), HOST5, True, mode="empty") == HOST5
    assert fs.upgrade_vm_features((1, 2, 3, 4, 5), HOST6, True, mode="empty") == (1, 2, 3, 4, 5, 0)


def test_unknown_upgrade_mode_rejected():
    with pytest.raises(ValueError):
        fs.upgrade_oldstyle((1, 2, 3, 4), HOST5, True, mode="xenopsd")


def test_long_vm_sets_are_truncated_to_the_host():
    assert (
        fs.upgrade_vm_features(
            fs.parse("f-0-0-0-0-0-0-0-0-ffffffff"), fs.parse("f-0-0-0-0-0-0-0-0"), True
        )
        == (0xF,) + (0,) * 8
    )


# --- properties ----------------------------------------------------------------------------


@given(featuresets)
def test_format_parse_round_trip(a):
    assert fs.parse(fs.format(a)) == a


@given(st.lists(st.text(alphabet="0123456789abcdef", min_size=1, max_size=8), max_size=8))
def test_parse_format_normalises_to_8_digits(pieces):
    text = "-".join(pieces)
    parsed = fs.parse(text)
    assert parsed == tuple(int(p, 16) for p in pieces)
    assert fs.format(parsed) == "-".join(p.rjust(8, "0") for p in pieces)


@given(featuresets, featuresets)
def test_intersect_commutative(a, b):
    assert fs.intersect(a, b) == fs.intersect(b, a)


@given(featuresets, featuresets, featuresets)
def test_intersect_associative(a, b, c):
    assert fs.intersect(fs.intersect(a, b), c) == fs.intersect(a, fs.intersect(b, c))


@given(featuresets)
def test_intersect_idempotent_and_empty_identity(a):
    assert fs.intersect(a, a) == a
    assert fs.intersect(a, ()) == a
    assert fs.intersect((), a) == a


@given(nonempty, nonempty)
def test_intersect_length_is_the_longer_one(a, b):
    assert len(fs.intersect(a, b)) == max(len(a), len(b))


@given(featuresets, st.integers(0, 12), st.integers(0, 12))
def test_zero_extension_laws(a, n, m):
    assert len(fs.zero_extend(a, n)) == n
    assert fs.zero_extend(a, len(a)) == a
    if n >= len(a):
        assert fs.is_equal(fs.zero_extend(a, n), a)
        assert fs.zero_extend(fs.zero_extend(a, n), m) == fs.zero_extend(a, m)
    assert fs.zero_extend(fs.zero_extend(a, n), m) == fs.zero_extend(a, min(n, m)) + (0,) * (
        m - min(n, m)
    )


@given(featuresets, featuresets)
def test_extend_laws(a, b):
    result = fs.extend(a, b)
    assert len(result) == len(b)
    assert result[: len(a)] == a[: len(b)]
    assert result[len(a) :] == b[len(a) :]


@given(featuresets, featuresets, semantics)
def test_intersection_is_a_subset_of_both_sides(a, b, sem):
    meet = fs.intersect(a, b)
    assert fs.is_subset(meet, a, sem)
    assert fs.is_subset(meet, b, sem)


@given(nonempty, nonempty)
def test_2018_subset_means_no_missing_bits(a, b):
    assert fs.is_subset(a, b, "2018") == (not any(fs.diff(a, b)))
    assert fs.is_subset(a, b, "2018") == fs.is_equal(fs.intersect(a, b), a)


@given(featuresets, featuresets)
def test_dundee_subset_is_exact_intersection_and_implies_2018(a, b):
    assert fs.is_subset(a, b) == (fs.intersect(a, b) == a)
    if fs.is_subset(a, b):
        assert fs.is_subset(a, b, "2018")


@given(
    st.integers(1, 10).flatmap(
        lambda n: st.tuples(
            st.lists(words, min_size=n, max_size=n).map(tuple),
            st.lists(words, min_size=n, max_size=n).map(tuple),
        )
    )
)
def test_semantics_agree_on_equal_lengths(pair):
    a, b = pair
    assert fs.is_subset(a, b) == fs.is_subset(a, b, "2018")
    assert fs.is_strict_subset(a, b) == fs.is_strict_subset(a, b, "2018")


@given(featuresets, semantics)
def test_strict_subset_is_irreflexive(a, sem):
    assert fs.is_subset(a, a, sem)
    assert not fs.is_strict_subset(a, a, sem)
    assert not any(fs.diff(a, a))


@given(featuresets, featuresets)
def test_is_equal_is_symmetric(a, b):
    assert fs.is_equal(a, b) == fs.is_equal(b, a)


@given(featuresets, featuresets, st.sampled_from(fs.OLDSTYLE_MODES), st.booleans())
def test_upgrade_always_has_the_host_length(vm, host, mode, hvm):
    assert len(fs.upgrade_vm_features(vm, host, hvm, mode)) == len(host)


@given(st.lists(words, max_size=4).map(tuple), featuresets, st.booleans())
def test_reorder_upgraded_old_vm_always_fits_the_host(vm, host, hvm):
    assert fs.is_subset(fs.upgrade_vm_features(vm, host, hvm), host)


@given(st.lists(words, min_size=5, max_size=10).map(tuple), featuresets, st.booleans())
def test_new_style_vm_is_resized_not_translated(vm, host, hvm):
    for mode in fs.OLDSTYLE_MODES:
        assert fs.upgrade_vm_features(vm, host, hvm, mode) == fs.zero_extend(vm, len(host))


@given(st.lists(words, min_size=4, max_size=4).map(tuple))
def test_oldstyle_round_trip(vm):
    assert fs.parse_oldstyle(fs.format_oldstyle(vm)) == vm
