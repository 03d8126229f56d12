"""Pure properties of the provision-spec reader (xapi_templates.ml disks_of_xml) and of
Int64.of_string as it reads disk sizes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xapi_sim import catalogue
from xapi_sim.classes.vm_provision import ParseFailure, ocaml_int64, provision_disks

INT64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
DISK = st.fixed_dictionaries(
    {
        "device": st.integers(0, 300).map(str),
        "size": st.integers(0, 1 << 50),
        "sr": st.uuids().map(str) | st.just(""),
        "bootable": st.booleans(),
        "type": st.sampled_from(["system", "user", "ephemeral", "suspend", "crashdump"]),
    }
)


def _xml(disks):
    return (
        "<provision>"
        + "".join(
            f'<disk device="{d["device"]}" size="{d["size"]}" sr="{d["sr"]}" '
            f'bootable="{str(d["bootable"]).lower()}" type="{d["type"]}"/>'
            for d in disks
        )
        + "</provision>"
    )


@given(INT64)
def test_int64_decimal_and_hex_round_trip(n):
    assert ocaml_int64(str(n)) == n
    assert ocaml_int64(hex(n & ((1 << 64) - 1))) == n  # hex literals wrap, as OCaml's


@given(st.text(alphabet="0123456789abcxo_-+ ", max_size=12))
def test_int64_accepts_or_refuses_without_crashing(s):
    try:
        n = ocaml_int64(s)
    except ValueError:
        return
    assert -(1 << 63) <= n < (1 << 63)


@given(st.lists(DISK, max_size=5))
def test_spec_round_trip_and_agrees_with_the_catalogue_reader(disks):
    spec = _xml(disks)
    assert provision_disks(spec) == disks
    assert catalogue.parse_disks(spec) == disks


def test_every_template_spec_reads():
    for release in catalogue.template_releases():
        for t in catalogue.templates(release):
            if "disks" in t["other_config"]:
                spec = t["other_config"]["disks"]
                assert provision_disks(spec) == catalogue.parse_disks(spec)


@pytest.mark.parametrize(
    "spec,want",
    [
        ('<provision><disk device="0" size="1" sr="" bootable="true"/></provision>', "system"),
        (
            '<provision><disk device="0" size="1" sr="" bootable="x" type="odd"/></provision>',
            "system",
        ),
    ],
)
def test_missing_or_unknown_type_is_system(spec, want):
    assert provision_disks(spec)[0]["type"] == want


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "<provision>",
        "<other/>",
        '<provision a="1"/>',
        "<provision><x/></provision>",
        '<provision><disk size="1" sr="" bootable="true"/></provision>',
        '<provision><disk device="0" size="1k" sr="" bootable="true"/></provision>',
        '<provision><disk device="0" size="1" sr="" bootable="true">t</disk></provision>',
    ],
)
def test_malformed_specs(spec):
    with pytest.raises(ParseFailure):
        provision_disks(spec)
