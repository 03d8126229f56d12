"""SM records per release (xapi_sim/data/sm.json) and SM errors (sm_errors.json), derived by
scripts/derive_sm.py, through the loader xapi_sim.catalogue."""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xapi_sim import catalogue
from xapi_sim.catalogue import CatalogueError, validate_sm
from xapi_sim.datamodel import RELEASES

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "derive_sm.py"
_spec = importlib.util.spec_from_file_location("derive_sm", SCRIPT)
DERIVE = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(DERIVE)
DUNDEE_WHITELIST = (
    "ext nfs iscsi lvmoiscsi dummy file hba rawhba udev iso lvm lvmohba lvmofcoe shm smb".split()
)


def _by_type(release):
    return {r["type"]: r for r in catalogue.sm_types(release)}


def test_check_mode_passes_without_a_checkout():
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_dundee_sm_table():
    sm = _by_type("dundee")
    # every whitelisted driver that is installed (shm's SR executable is removed on install)
    assert set(sm) == set(DUNDEE_WHITELIST) - {"shm"}
    ext = sm["ext"]
    assert ext["name_label"] == "Local EXT3 VHD" and ext["vendor"] == "Citrix Systems Inc"
    assert ext["driver_filename"] == "/opt/xensource/sm/EXTSR"
    assert ext["configuration"] == {"device": "local device path (required) (e.g. /dev/sda3)"}
    assert ext["features"]["VDI_RESET_ON_BOOT"] == 2
    # ATOMIC_PAUSE brings VDI_ACTIVATE/DEACTIVATE and is itself unknown to Dundee's xapi
    assert "ATOMIC_PAUSE" not in ext["capabilities"] and "VDI_ACTIVATE" in ext["capabilities"]
    assert "SR_CACHING" not in sm["nfs"]["capabilities"]
    assert sm["lvm"]["name_label"] == "Local VHD on LVM"
    assert sm["lvm"]["driver_filename"] == "/opt/xensource/sm/LVMSR"
    assert sm["lvmoiscsi"]["driver_filename"] == "/opt/xensource/sm/LVMoISCSISR"
    assert set(sm["nfs"]["configuration"]) == {"server", "serverpath", "nfsversion"}
    assert sm["dummy"]["configuration"] == {} and sm["dummy"]["required_api_version"] == "1.1"
    assert all(r["required_cluster_stack"] == [] and r["other_config"] == {} for r in sm.values())


def test_releases_differ_as_the_sources_do():
    assert catalogue.sm_releases() == ("cream", "dundee", "ely", "stockholm", "nile")
    cream, nile = _by_type("cream"), _by_type("nile")
    assert "smb" not in cream and "lvmofcoe" not in cream  # both new in 7.0
    assert "rawhba" not in nile  # dropped from sm v3
    assert "VDI_MIRROR" in nile["ext"]["capabilities"]  # known to later xapi
    # from xen-api 1.249 the features are sorted by name
    assert nile["ext"]["capabilities"] == sorted(nile["ext"]["capabilities"])
    assert catalogue.data_release("sm", "creedence") == "cream"
    assert catalogue.data_release("sm", "falcon") == "ely"


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(RELEASES))
def test_every_release_answers_with_valid_records(release):
    records = catalogue.sm_types(release)
    assert [r["type"] for r in records] == sorted(r["type"] for r in records)
    for r in records:
        validate_sm(r["type"], r)
        assert r["driver_filename"].lower().endswith(r["type"] + "sr")


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(catalogue.sm_types("dundee")),
    st.sampled_from(["caps", "version", "type", "missing"]),
)
def test_malformed_sm_records_are_refused(r, how):
    bad = copy.deepcopy(r)
    if how == "caps":
        bad["capabilities"] = bad["capabilities"] + ["EXTRA"]
    elif how == "version":
        bad["features"] = dict(bad["features"], SR_PROBE=0)
    elif how == "type":
        bad["configuration"] = {"k": 1}
    else:
        del bad["vendor"]
    with pytest.raises(CatalogueError):
        validate_sm("x", bad)


def test_sm_error_table():
    assert catalogue.sm_error("ConfigServerMissing") == (
        102,
        "The request is missing the server parameter",
    )
    assert catalogue.sm_error("SRInUse")[0] == 16
    with pytest.raises(CatalogueError):
        catalogue.sm_error("NoSuchError")


NAMES = sorted(
    v[0] for v in DERIVE.json.loads((DERIVE.DATA / "sm_errors.json").read_text())["codes"].values()
)


@given(st.sampled_from(NAMES))
def test_every_error_name_has_a_code_and_text(name):
    code, text = catalogue.sm_error(name)
    assert code > 0 and text


def test_config_checks_of_the_common_types():
    nfs = catalogue.sm_config_checks("nfs")
    assert [(c["key"], c["code"]) for c in nfs] == [
        ("server", "SR_BACKEND_FAILURE_102"),
        ("serverpath", "SR_BACKEND_FAILURE_101"),
        ("serverpath", "SR_BACKEND_FAILURE_103"),
    ]
    iscsi = {c["key"]: c["code"] for c in catalogue.sm_config_checks("lvmoiscsi")}
    assert iscsi["target"] == "SR_BACKEND_FAILURE_95"
    assert iscsi["targetIQN"] == "SR_BACKEND_FAILURE_96"
    assert iscsi["SCSIid"] == "SR_BACKEND_FAILURE_107"
    assert catalogue.sm_config_checks("dummy") == []
    for sr_type in ("ext", "lvm", "nfs", "iso", "lvmoiscsi"):
        for c in catalogue.sm_config_checks(sr_type):
            code, text = catalogue.sm_error(c["error"])
            assert c["code"] == f"SR_BACKEND_FAILURE_{code}" and c["text"] == text


def test_concurrent_first_loads_agree():
    catalogue._sm_doc.cache_clear()
    catalogue._errors_doc.cache_clear()
    out, errors = [], []

    def worker():
        try:
            out.append(
                (len(catalogue.sm_types("dundee")), catalogue.sm_error("ConfigDeviceMissing"))
            )
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert not errors and set(out) == {(14, (90, "The request is missing the device parameter"))}


# --- the derive script's parsers --------------------------------------------------------------


def test_installed_drivers_follows_the_install_rule():
    makefile = (
        "SM_DRIVERS := File\nSM_DRIVERS += LVHD\nSM_DRIVERS += SHM\n"
        "SM_DRIVERS += OCFS\n\ninstall:\n\trm $(SM_STAGING)$(SM_DEST)/SHMSR\n"
        "\tcd $(SM_DEST) && rm -f LVHDSR && ln -sf LVHDSR.py LVMSR\n"
        "\tcd $(SM_DEST) && rm -f OCFSSR\n"
    )
    assert DERIVE.installed_drivers(makefile) == {"File": "FileSR.py", "LVM": "LVHDSR.py"}


def test_top_level_literals_of_a_python2_file():
    src = (
        'import util\nCAPS = ["A", \\\n        "B/2"]\n'
        "CONFIGURATION = \\\n    [ [ 'k', 'desc \\\nmore' ] ]\n"
        "def f():\n    print 'py2'\n"
        "DRIVER_INFO = {\n  'name': 'N' + \\\n   'M',\n  'capabilities': CAPS,\n"
        "  'configuration': CONFIGURATION }\n"
    )
    assigns = DERIVE.top_level_assignments(src)
    assert set(assigns) == {"CAPS", "CONFIGURATION", "DRIVER_INFO"}

    class Fake(DERIVE.Sources):
        def module(self, name):
            return assigns

    info = Fake(None, None).value("X", "DRIVER_INFO")
    assert info == {
        "name": "NM",
        "capabilities": ["A", "B/2"],
        "configuration": [["k", "desc more"]],
    }
