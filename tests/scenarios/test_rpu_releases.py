"""Rolling Pool Upgrades between release profiles (docs/rolling-upgrade.md): the 8.2 CU1 ->
XenServer 8 walk-through with an older-CPU host joining midway, and an upgrade between any
two supported releases of different platform versions."""

from __future__ import annotations

import pathlib
import runpy
import xmlrpc.client

import pytest
import XenAPI

from xapi_sim import products
from xapi_sim.datamodel import Schema
from xapi_sim.testing import running_world

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_rolling_upgrade_8_2_cu1_to_xenserver_8_walkthrough():
    mod = runpy.run_path(str(ROOT / "examples" / "rolling_upgrade_8.py"))
    lines: list = []
    with running_world(ROOT / "examples" / "rpu-8.2-to-8.toml", seed=1) as w:
        mod["walk"]({h["name_label"]: h["url"] for h in w.describe()["hosts"]}, lines.append)
    text = "\n".join(lines)
    assert "cu1-a  Citrix Hypervisor 8.2.1 platform 3.2.1 API 2.15" in text
    assert "other_config: {'rolling_upgrade_in_progress': 'true'}" in text
    assert "master API 2.20" in text
    assert "app back to cu1-b (8.2 CU1): NOT_SUPPORTED_DURING_UPGRADE" in text
    assert (
        "fresh8 (fresh install, TLS verification on): POOL_JOINING_HOST_TLS_VERIFICATION_MISMATCH"
        in text
    )
    assert "db (booted on the old level) to spare: VM_INCOMPATIBLE_WITH_THIS_HOST" in text
    assert "cu1-c upgraded; RPU finished" in text
    assert "CPU alerts raised: 0" in text
    assert "(= pool level: True)" in text and text.endswith("db to spare: done")
    # the documented output is what the example prints
    doc = (ROOT / "docs" / "rolling-upgrade.md").read_text()
    for line in lines:
        assert line in doc, line


PAIRS = [
    ("cream", "ely"),
    ("dundee", "ely"),
    ("dundee", "stockholm"),
    ("ely", "nile"),
    ("stockholm", "nile"),
    ("stockholm", "xcp-ng-8.3"),
]


@pytest.mark.parametrize("old, new", PAIRS)
def test_rpu_between_releases(old, new):
    scn = (
        f'[[host]]\nname_label = "a"\ncpu = "Haswell"\nversion = "{old}"\nmemory = "64GiB"\n'
        f'[[host]]\nname_label = "b"\ncpu = "Haswell"\nversion = "{old}"\nmemory = "64GiB"\n'
        '[[pool]]\nmaster = "a"\nmembers = ["b"]\n'
        '[[vm]]\nname_label = "v"\npower_state = "Running"\nhost = "b"\nmemory = "2GiB"\n'
    )
    with running_world(scn, seed=2) as w:

        def login():
            s = XenAPI.Session(w.url("a"))
            s.xenapi.login_with_password("root", "xenroot", "2.0", "rpu")
            return s

        s = login()
        x = s.xenapi
        host = {x.host.get_name_label(h): h for h in x.host.get_all()}
        pool = x.pool.get_all()[0]
        v = x.VM.get_by_name_label("v")[0]
        x.host.disable(host["a"])
        x.host.evacuate(host["a"])
        s.xenapi_request("sim.host_install", (host["a"], new))
        x = login().xenapi
        assert "rolling_upgrade_in_progress" in x.pool.get_other_config(pool)
        # the pool database serves the new release's API at once
        names = set(xmlrpc.client.ServerProxy(w.url("a")).system.listMethods())
        schema = Schema.for_release(products.product(new).release)
        assert names == {f"{c}.{m}" for c, k in schema.classes.items() for m in k.messages} | {
            "system.listMethods"
        }
        x.VM.pool_migrate(v, host["a"], {})
        with pytest.raises(XenAPI.Failure) as e:
            x.VM.pool_migrate(v, host["b"], {})
        assert e.value.details == ["NOT_SUPPORTED_DURING_UPGRADE"]
        x.host.disable(host["b"])
        s2 = login()
        s2.xenapi_request("sim.host_install", (host["b"], new))
        assert "rolling_upgrade_in_progress" not in x.pool.get_other_config(pool)
        p = products.product(new)
        for h in x.host.get_all_records().values():
            assert h["software_version"] == dict(p.software_version)
        x.VM.pool_migrate(v, host["b"], {})
        assert x.VM.get_resident_on(v) == host["b"]
