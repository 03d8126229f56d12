"""Pure parts of the update handlers: update.xml / patch <info> parsing, the patch twin's
uuid, the reduction of recommended guidances (hypothesis properties)."""

from __future__ import annotations

import uuid as uuid_mod
from xml.sax.saxutils import quoteattr

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xapi_sim.classes.patches import parse_patch_info
from xapi_sim.classes.updates import guidances_of, parse_update_xml, patch_uuid_of_update_uuid
from xapi_sim.errors import Failure

text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=20
)
GUIDANCES = ("restartHVM", "restartPV", "restartHost", "restartXAPI")


@given(st.uuids(), text, text, text, st.integers(0, 2**40), st.lists(st.sampled_from(GUIDANCES)))
def test_update_xml_round_trip(u, label, version, desc, size, guidance):
    xml = (
        f"<update uuid={quoteattr(str(u))} name-label={quoteattr(label)} "
        f"version={quoteattr(version)} installation-size='{size}' "
        f"after-apply-guidance={quoteattr(','.join(guidance))}>"
        f"<name-description>{desc.replace('&', '&amp;').replace('<', '&lt;')}</name-description>"
        "</update>"
    ).encode()
    info = parse_update_xml(xml + b"\0" * 10)
    assert info["uuid"] == str(u) and info["name_label"] == label
    assert info["version"] == version and info["installation_size"] == size
    assert info["after_apply_guidance"] == guidance
    assert info["name_description"] == desc


@given(st.binary(max_size=200))
def test_update_xml_garbage_is_invalid_update(data):
    try:
        parse_update_xml(data)
    except Failure as e:
        assert e.code == "INVALID_UPDATE"


@given(st.binary(max_size=200))
def test_patch_info_garbage_is_invalid_patch(data):
    with pytest.raises(Failure) as e:
        parse_patch_info(b"<x>" + data)
    assert e.value.code == "INVALID_PATCH"


@given(st.uuids())
def test_patch_twin_uuid_zeroes_octets_4_to_7(u):
    twin = uuid_mod.UUID(patch_uuid_of_update_uuid(str(u)))
    assert twin.bytes[4:8] == bytes(4)
    assert twin.bytes[:4] == u.bytes[:4] and twin.bytes[8:] == u.bytes[8:]


@given(st.lists(st.sampled_from(["RebootHost", "RestartToolstack", "RestartDeviceModel"])))
def test_a_host_reboot_covers_the_restarts(gs):
    out = guidances_of([{"recommended_guidance": g} for g in gs])
    if "RebootHost" in gs:
        assert out == ["RebootHost"]
    else:
        assert out == sorted(set(gs))
