"""Default templates per release (xapi_sim/data/templates_<release>.json, derived by
scripts/derive_templates.py) through the loader xapi_sim.catalogue."""

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
from xapi_sim.catalogue import CatalogueError, parse_disks, validate_template
from xapi_sim.datamodel import RELEASES

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "derive_templates.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("derive_templates", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DERIVE = _load_script()


def _names(release):
    return {t["name_label"] for t in catalogue.templates(release)}


def test_check_mode_passes_without_a_checkout():
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "all valid" in out.stdout


def test_every_release_has_its_own_or_an_earlier_catalogue():
    have = catalogue.template_releases()
    assert have == ("creedence", "cream", "dundee", "ely", "stockholm", "nile")
    assert catalogue.data_release("templates", "indigo") == "cream"
    assert catalogue.data_release("templates", "falcon") == "ely"
    assert catalogue.data_release("templates", "stockholm_psr") == "stockholm"
    assert catalogue.data_release("templates", "24.16.0") == "nile"
    assert catalogue.data_release("templates", "rio") == "creedence"  # oldest data
    with pytest.raises(CatalogueError):
        catalogue.templates("no-such-release")


def test_dundee_catalogue_facts():
    temps = {t["name_label"]: t for t in catalogue.templates("dundee")}
    assert len(temps) == 80
    for new in (
        "SUSE Linux Enterprise Server 12 SP1 (64-bit)",
        "SUSE Linux Enterprise Desktop 12 SP1 (64-bit)",
        "Ubuntu Xenial Xerus 16.04",
        "Windows Server 2016 (64-bit)",
        "CoreOS",
    ):
        assert new in temps
    assert "Windows XP SP3 (32-bit)" not in temps  # removed for 7.0
    sles = temps["SUSE Linux Enterprise Server 12 SP1 (64-bit)"]
    assert sles["PV_bootloader"] == "eliloader" and sles["HVM_boot_policy"] == ""
    assert sles["PV_args"] == "console=xvc0 xencons=xvc"
    assert sles["other_config"]["install-distro"] == "sleslike"
    assert sles["other_config"]["linux_template"] == "true"
    assert parse_disks(sles["other_config"]["disks"]) == [
        {"device": "0", "size": 8 << 30, "sr": "", "bootable": True, "type": "system"}
    ]
    win = temps["Windows 10 (64-bit)"]
    assert win["HVM_boot_policy"] == "BIOS order" and win["HVM_boot_params"] == {"order": "dc"}
    assert win["platform"]["device_id"] == "0002" and win["platform"]["viridian"] == "true"
    assert win["generation_id"] == "0:0"
    assert win["memory_static_min"] == 2 << 30 and win["memory_static_max"] == 4 << 30
    assert '<restriction field="has-vendor-device" value="true" />' in win["recommendations"]
    other = temps["Other install media"]
    assert (
        "disks" not in other["other_config"] and other["other_config"]["install-methods"] == "cdrom"
    )


def test_release_differences():
    cream, dundee = _names("cream"), _names("dundee")
    assert "SUSE Linux Enterprise Desktop 11 SP3 (64-bit)" in cream
    assert "SUSE Linux Enterprise Server 12 SP1 (64-bit)" not in cream
    assert "Windows 10 Preview (64-bit) (experimental)" in cream
    assert "Scientific Linux 7" in cream and "Scientific Linux 7" not in _names("creedence")
    assert all("has_vendor_device" not in t for t in catalogue.templates("cream"))
    assert dundee - cream and cream - dundee
    ely = catalogue.templates("ely")
    assert all(t["uuid"] and t["reference_label"] for t in ely)
    assert all("is_default_template" not in t for t in ely)  # no such field before falcon
    for release in ("stockholm", "nile"):
        assert all(t["is_default_template"] is True for t in catalogue.templates(release))


def test_json_era_writes_xml_attributes_sorted():
    t = next(t for t in catalogue.templates("ely") if t["name_label"] == "CentOS 7")
    assert t["other_config"]["disks"] == (
        '<provision><disk bootable="true" device="0" '
        'size="10737418240" sr="" type="system"/></provision>'
    )
    assert t["recommendations"].endswith(
        '<restriction max="255" property="number-of-vbds"/>'
        '<restriction max="7" property="number-of-vifs"/>'
        "</restrictions>"
    )


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(RELEASES), st.data())
def test_every_template_of_every_release_is_consistent(release, data):
    temps = catalogue.templates(release)
    t = data.draw(st.sampled_from(temps))
    assert (
        t["memory_static_min"]
        <= t["memory_dynamic_min"]
        <= t["memory_dynamic_max"]
        <= t["memory_static_max"]
    )
    assert 1 <= t["VCPUs_at_startup"] <= t["VCPUs_max"]
    if "disks" in t["other_config"]:
        disks = parse_disks(t["other_config"]["disks"])
        assert [d["device"] for d in disks] == [str(i) for i in range(len(disks))]
        assert all(d["size"] > 0 for d in disks)
    assert bool(t["HVM_boot_policy"]) != bool(t["PV_bootloader"])


_disk = st.fixed_dictionaries(
    {
        "device": st.integers(0, 15).map(str),
        "size": st.integers(1, 1 << 44).map(str),
        "sr": st.sampled_from(["", "0123-abcd"]),
        "bootable": st.sampled_from(["true", "false"]),
        "type": st.sampled_from(["system", "user"]),
    }
)


@given(st.lists(_disk, max_size=4), st.randoms())
def test_parse_disks_reads_any_attribute_order(disks, rnd):
    parts = []
    for d in disks:
        items = list(d.items())
        rnd.shuffle(items)
        parts.append("<disk" + "".join(f' {k}="{v}"' for k, v in items) + "/>")
    parsed = parse_disks("<provision>" + "".join(parts) + "</provision>")
    assert [p["size"] for p in parsed] == [int(d["size"]) for d in disks]
    assert [p["bootable"] for p in parsed] == [d["bootable"] == "true" for d in disks]


@given(st.text(max_size=80))
def test_parse_disks_rejects_junk(text):
    try:
        disks = parse_disks(text)
    except ValueError:
        return
    assert text.startswith("<provision>") and isinstance(disks, list)


@settings(max_examples=50, deadline=None)
@given(
    st.sampled_from(catalogue.templates("dundee") + catalogue.templates("nile")),
    st.sampled_from(["memory", "vcpus", "disks", "recommendations", "type", "missing", "default"]),
)
def test_malformed_templates_are_refused(t, how):
    bad = copy.deepcopy(t)
    if how == "memory":
        bad["memory_dynamic_min"] = bad["memory_static_max"] + 1
    elif how == "vcpus":
        bad["VCPUs_at_startup"] = bad["VCPUs_max"] + 1
    elif how == "disks":
        bad["other_config"]["disks"] = '<provision><disk size="x"/></provision>'
    elif how == "recommendations":
        bad["recommendations"] = "<restrictions><oops/></restrictions>"
    elif how == "type":
        bad["VCPUs_max"] = "1"
    elif how == "missing":
        del bad["platform"]
    else:
        bad["other_config"]["default_template"] = "false"
    validate_template("t", t)
    with pytest.raises(CatalogueError):
        validate_template("t", bad)


def test_callers_get_independent_copies_across_threads():
    catalogue._templates_of.cache_clear()
    catalogue.template_releases.cache_clear()
    results, errors = [], []

    def worker(release):
        try:
            temps = catalogue.templates(release)
            temps[0]["platform"]["mutated"] = "yes"
            results.append((release, len(temps)))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [
        threading.Thread(target=worker, args=(r,)) for r in ["dundee", "ely", "nile", "cream"] * 8
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert not errors
    assert sorted(set(results)) == [("cream", 79), ("dundee", 80), ("ely", 84), ("nile", 55)]
    assert all(
        "mutated" not in t["platform"]
        for r in ("dundee", "ely", "nile", "cream")
        for t in catalogue.templates(r)
    )


# --- the OCaml evaluator derive_templates.py reads create_templates.ml with ------------------


def _eval(src, name, *args):
    mod = DERIVE.Module(src)
    f = mod.get(name)
    return mod.apply(f, [("pos", None, a) for a in args]) if args else f


def test_evaluator_optional_and_labelled_arguments():
    src = """
let ( ** ) a b = Int64.mul a b
let rec_ ?(memory=128) ?(vcpus=16) ~name () =
  Printf.sprintf "%s:%s:%d" name (Int64.to_string ((Int64.of_int memory) ** 1024L)) vcpus
let a = rec_ ~name:"x" ()
let b = rec_ ~vcpus:4 ~name:"y" ~memory:2 ()
"""
    assert _eval(src, "a") == "x:131072:16"
    assert _eval(src, "b") == "y:2048:4"


def test_evaluator_records_match_lists_and_strings():
    src = """
type arch = X32 | X64
let base = { name = "b"; flags = [ "acpi", "1" ]; size = 0L }
let arch_name = function X32 -> " (32-bit)" | X64 -> " (64-bit)"
let make name arch flags =
  let big = match arch with | X32 -> false | X64 -> true in
  { base with name = name ^ arch_name arch;
    flags = ("nx", "true") :: base.flags @ (if List.mem "v" flags then ["viridian","true"] else []);
    size = if big then 2L else 1L }
let t = make "Win" X64 [ "v" ]
let s = "a \\
         b\\"c"
"""
    t = _eval(src, "t")
    assert t == {
        "name": "Win (64-bit)",
        "flags": [("nx", "true"), ("acpi", "1"), ("viridian", "true")],
        "size": 2,
    }
    assert _eval(src, "s") == 'a b"c'


def test_evaluator_refuses_what_it_does_not_know():
    with pytest.raises(DERIVE.OcamlError):
        _eval("let f x = Unknown.call x\nlet y = f 1\n", "y")
