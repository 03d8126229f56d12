"""What a fresh install gives every host and pool (SRs, PBDs, SMs, tools ISO, defaults),
for 7.0 (dundee) and 6.5 SP1 (cream), seen through the real ``XenAPI`` client."""

from __future__ import annotations

import pytest
import XenAPI

from xapi_sim import catalogue
from xapi_sim.testing import running_world

POOL65 = """
[[host]]
name_label = "c1"
cpu = "Haswell"
version = "6.5.0"

[[host]]
name_label = "c2"
cpu = "Haswell"
version = "6.5.0"

[[pool]]
name_label = "cream"
master = "c1"
members = ["c2"]
"""


def _login(url):
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", "xenroot", "2.5", "pytest")
    return s.xenapi


@pytest.fixture(scope="module", params=["dundee", "cream"])
def installed(request):
    scenario = None if request.param == "dundee" else POOL65
    with running_world(scenario) as w:
        yield request.param, w, _login(w.master_url())


def _by_name(x, name):
    return {r: rec for r, rec in x.SR.get_all_records().items() if rec["name_label"] == name}


def test_every_host_has_local_dvd_and_removable_storage(installed):
    release, w, x = installed
    hosts = x.host.get_all_records()
    pool_hosts = set(hosts)
    for name, content, sr_type, key in (
        ("Local storage", "user", "lvm", "local-storage"),
        ("Removable storage", "disk", "udev", "local-hotplug-disk"),
        ("DVD drives", "iso", "udev", "local-hotplug-cd"),
    ):
        srs = _by_name(x, name)
        assert len(srs) == len(pool_hosts)
        owners = set()
        for ref, sr in srs.items():
            assert (sr["type"], sr["content_type"], sr["shared"]) == (sr_type, content, False)
            assert sr["other_config"]["i18n-key"] == key
            assert sr["other_config"]["i18n-original-value-name_label"] == name
            [pbd] = sr["PBDs"]
            prec = x.PBD.get_record(pbd)
            assert prec["currently_attached"] is True and prec["SR"] == ref
            owners.add(prec["host"])
        assert owners == pool_hosts
    for _ref, sr in _by_name(x, "DVD drives").items():
        assert sr["name_description"] == "Physical DVD drives"
        assert x.PBD.get_device_config(sr["PBDs"][0]) == {"location": "/dev/xapi/cd"}
        assert sr["sm_config"] == {"type": "cd"}
    for _ref, sr in _by_name(x, "Removable storage").items():
        assert x.PBD.get_device_config(sr["PBDs"][0]) == {"location": "/dev/xapi/block"}


def test_defaults_point_at_the_local_srs(installed):
    release, w, x = installed
    pool = x.pool.get_record(x.pool.get_all()[0])
    master = pool["master"]
    local = [
        r
        for r, sr in _by_name(x, "Local storage").items()
        if x.PBD.get_host(sr["PBDs"][0]) == master
    ]
    assert pool["default_SR"] == pool["suspend_image_SR"] == pool["crash_dump_SR"] == local[0]
    for h, rec in x.host.get_all_records().items():
        sr = rec["suspend_image_sr"]
        assert sr == rec["crash_dump_sr"]
        assert x.SR.get_name_label(sr) == "Local storage"
        assert x.PBD.get_host(x.SR.get_PBDs(sr)[0]) == h


def test_the_shared_tools_sr_and_its_iso(installed):
    release, w, x = installed
    [(ref, sr)] = _by_name(x, "XenServer Tools").items()
    assert (sr["type"], sr["content_type"], sr["shared"]) == ("iso", "iso", True)
    assert sr["name_description"] == "XenServer Tools ISOs"
    assert sr["other_config"]["i18n-key"] == "xenserver-tools"
    assert sr["other_config"]["xenserver_tools_sr"] == "true"
    if release == "dundee":
        assert sr["is_tools_sr"] is True
    else:
        assert "is_tools_sr" not in sr
    hosts = {x.PBD.get_host(p) for p in sr["PBDs"]}
    assert hosts == set(x.host.get_all())
    dc = x.PBD.get_device_config(sr["PBDs"][0])
    assert dc == {
        "path": "/opt/xensource/packages/iso",
        "location": "/opt/xensource/packages/iso",
        "legacy_mode": "true",
    }
    [vdi] = sr["VDIs"]
    vrec = x.VDI.get_record(vdi)
    assert vrec["name_label"] == "xs-tools.iso" and vrec["read_only"] is True
    # the tools SR loses VDI_CREATE/VDI_DELETE (xapi_sr_operations.ml)
    assert "vdi_create" not in sr["allowed_operations"]
    assert "destroy" not in vrec["allowed_operations"]


def test_sm_records_are_the_releases(installed):
    release, w, x = installed
    want = {r["type"]: r for r in catalogue.sm_types(release)}
    got = {rec["type"]: rec for rec in x.SM.get_all_records().values()}
    assert set(got) == set(want)
    for t, rec in got.items():
        assert rec["name_label"] == want[t]["name_label"]
        assert {k: int(v) for k, v in rec["features"].items()} == want[t]["features"]
    assert sorted(x.SR.get_supported_types()) == sorted(want)


def test_space_is_accounted_and_relations_hold(installed):
    release, w, x = installed
    for _ref, sr in x.SR.get_all_records().items():
        vdis = [x.VDI.get_record(v) for v in sr["VDIs"]]
        assert int(sr["physical_utilisation"]) == sum(int(v["physical_utilisation"]) for v in vdis)
        assert 0 <= int(sr["physical_utilisation"]) <= int(sr["physical_size"])
    for pool in w.world.pools:
        assert pool.db.check_relations() == []


def test_dvd_drive_vdi_is_an_insertable_physical_cd(installed):
    release, w, x = installed
    for ref, sr in _by_name(x, "DVD drives").items():
        [vdi] = sr["VDIs"]
        rec = x.VDI.get_record(vdi)
        assert rec["location"] == "/dev/xapi/cd/sr0"
        with pytest.raises(XenAPI.Failure) as e:
            x.VDI.destroy(vdi)
        # with_sr_andor_vdi: the SR's vdi_destroy check (udev has no VDI_DELETE) first
        assert e.value.details == ["SR_OPERATION_NOT_SUPPORTED", ref]
