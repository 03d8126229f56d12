"""CPU catalogue, rule engine and host cpu_info (spec §1.1, §1.4, §2.5, §16)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xapi_sim.levelling import cpus
from xapi_sim.levelling import featureset as fs

MODEL_NAMES = list(cpus.MODELS)
DERIVED = [(name, era) for name, m in cpus.MODELS.items() for era in m.derived_featuresets]
OBSERVED = {o["id"]: o for o in cpus.OBSERVED_OUTPUTS}
BACKPORT_ERAS = ("xs-xen4.13-2019", "xs-xen4.13-2021", "latest")
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "cpu-models.json"


def hvm_words(model_name, **kw):
    return fs.parse(cpus.host_featuresets(model_name, **kw)["features_hvm"])


# --- catalogue ---------------------------------------------------------------------------


def test_catalogue_has_21_models_and_267_features():
    assert len(cpus.MODELS) == 21
    assert len(cpus.FEATURES) == 267
    assert MODEL_NAMES[0] == "Conroe" and MODEL_NAMES[-1] == "EPYC-Milan"
    assert {m.vendor for m in cpus.MODELS.values()} == {"GenuineIntel", "AuthenticAMD"}


def test_model_lookup_is_case_sensitive_and_lists_valid_names():
    assert cpus.model("Haswell-noTSX").family == 6
    with pytest.raises(cpus.UnknownCpuModel) as err:
        cpus.model("haswell")
    assert "'haswell'" in str(err.value)
    for name in MODEL_NAMES:
        assert name in str(err.value)
    assert issubclass(cpus.UnknownCpuModel, ValueError)


def test_unknown_feature_names_raise():
    assert cpus.feature("sse4-2").word == 1 and cpus.feature("sse4-2").bit == 20
    with pytest.raises(cpus.UnknownFeature):
        cpus.feature("sse4_2")
    with pytest.raises(cpus.UnknownFeature):
        cpus.host_featuresets("Haswell", ["tsx"])
    with pytest.raises(cpus.UnknownFeature):
        cpus.host_cpu_info("Haswell", ["hle", "nope"])
    assert issubclass(cpus.UnknownFeature, ValueError)


def test_unknown_era_and_release_raise():
    with pytest.raises(ValueError):
        cpus.host_featuresets("Haswell", era="xen-4.6")
    with pytest.raises(ValueError):
        cpus.host_cpu_info("Haswell", release="quebec")
    with pytest.raises(ValueError):
        cpus.host_featuresets("Haswell", era="latest", word9_backport=False)


def test_feature_name_round_trip():
    names = ["fpu", "sse4-2", "hle", "rtm", "ibpb", "gds-no"]
    words = cpus.to_featureset(names)
    assert len(words) == cpus.NUM_WORDS == 19
    assert set(cpus.feature_names(words)) == set(names)


def test_dependents_are_transitive():
    assert {"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512-vbmi", "vaes"} <= set(
        cpus.dependents(["xsave"])
    )
    assert cpus.dependents(["rtm"]) == {"tsxldtrk"}
    assert cpus.dependents(["hle"]) == frozenset()


# --- the rule engine reproduces the catalogue ---------------------------------------------


@pytest.mark.parametrize("name, era", DERIVED)
def test_every_model_derives_the_catalogue_strings(name, era):
    expected = cpus.MODELS[name].derived_featuresets[era]
    kw = {"word9_backport": True} if era == "xen-4.7" else {}
    assert cpus.host_featuresets(name, era=era, **kw) == expected


def test_every_model_has_the_three_derived_eras():
    for m in cpus.MODELS.values():
        assert set(m.derived_featuresets) == {"xen-4.7", "xs-xen4.13-2021", "latest"}


def _observed_kwargs(obs):
    cmp = obs["compare"]
    kw = {"era": obs["era"], "microcode": cmp["with_microcode"], "word_count": cmp["word_count"]}
    if obs["era"] == "xen-4.7":
        kw["word9_backport"] = True
    return kw


_KEY_OF = {
    ("max", "pv"): "features_pv",
    ("max", "hvm"): "features_hvm",
    ("default", "pv"): "features_pv_host",
    ("default", "hvm"): "features_hvm_host",
}


@pytest.mark.parametrize(
    "obs_id",
    [
        "xcpng82-xeon-e5-2630l-v2",
        "xcpng-pool-2socket-nehalem-class",
        "xcpng7-core-i7-860",
        "xenapi-fixture-haswell-notsx-vm-xen47",
        "xenapi-fixture-win11-vm-latest",
    ],
)
def test_observed_real_outputs_match(obs_id):
    obs = OBSERVED[obs_id]
    kw = _observed_kwargs(obs)
    got = cpus.host_featuresets(obs["compare"]["model"], **kw)
    for key, (kind, guest) in obs["compare"]["keys"].items():
        ours = _KEY_OF[(kind, guest)]
        if kw["era"] == "xen-4.7":  # one policy only: default == max
            ours = f"features_{guest}"
        assert got[ours] == obs["strings"][key], key


def test_observed_nested_host_without_hvm_gets_only_forced_bits():
    obs = OBSERVED["nested-xcpng-vultr-skylake-ibrs"]
    got = cpus.host_featuresets(
        "Skylake-Server-IBRS", era="xs-xen4.13-2019", hvm_capable=False, word_count=15
    )
    assert got["features_hvm"] == obs["strings"]["features_hvm"]
    assert got["features_hvm_host"] == obs["strings"]["features_hvm_host"]


@pytest.mark.parametrize(
    "obs_id, model_name",
    [
        ("xcpng82-xeon-e5-2630l-v2", "IvyBridge-EP"),
        ("xcpng7-core-i7-860", "Nehalem"),
    ],
)
def test_oldstyle_features_match_real_hosts(obs_id, model_name):
    expected = OBSERVED[obs_id]["strings"]["features"]
    assert fs.format(cpus.physical_features(model_name)) == expected
    assert cpus.host_cpu_info(model_name)["features"] == expected


def test_subset_fixture_pair_is_hvm_and_pv_like():
    strings = OBSERVED["xenapi-fixture-cpuid-subset-test"]["strings"]
    a, b = fs.parse(strings["a"]), fs.parse(strings["b"])
    assert not fs.is_subset(a, b) and not fs.is_subset(b, a)


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("era", ["xen-4.7", *BACKPORT_ERAS])
def test_pv_is_a_subset_of_hvm_and_default_of_max(name, era):
    sets = {k: fs.parse(v) for k, v in cpus.host_featuresets(name, era=era).items()}
    assert fs.is_subset(sets["features_pv"], sets["features_hvm"])
    if era != "xen-4.7":
        assert fs.is_subset(sets["features_pv_host"], sets["features_pv"])
        assert fs.is_subset(sets["features_hvm_host"], sets["features_hvm"])
        assert fs.is_subset(sets["features_pv_host"], sets["features_hvm_host"])


# --- Dundee GA vs the word-9 backport ------------------------------------------------------

_BACKPORTED = cpus.to_featureset(cpus.ERAS["xen-4.7"]["extra_known"])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_dundee_ga_is_9_words_without_backported_bits(name):
    ga = cpus.host_featuresets(name)
    backport = cpus.host_featuresets(name, word9_backport=True)
    assert set(ga) == {"features_pv", "features_hvm"}
    for key in ga:
        words = fs.parse(ga[key])
        assert len(words) == 9
        assert len(fs.parse(backport[key])) == 10
        assert not words[8] & (1 << cpus.feature("ibpb").bit)
        expected = fs.zero_extend(fs.diff(fs.parse(backport[key]), _BACKPORTED), 9)
        assert words == expected
    assert ga == cpus.host_featuresets(name, era="xen-4.7", microcode=False)


def test_dundee_microcode_without_backport_changes_nothing():
    assert cpus.host_featuresets("Haswell", microcode=True) == cpus.host_featuresets("Haswell")


def test_backport_without_microcode_has_no_speculation_bits():
    sets = cpus.host_featuresets("Haswell", word9_backport=True, microcode=False)
    assert fs.parse(sets["features_hvm"])[8:] == (0, 0)


# --- hidden features -----------------------------------------------------------------------


@pytest.mark.parametrize("era", ["xen-4.7", *BACKPORT_ERAS])
@pytest.mark.parametrize(
    "base, no_tsx", [("Haswell", "Haswell-noTSX"), ("Broadwell", "Broadwell-noTSX")]
)
def test_hiding_tsx_gives_the_notsx_model(era, base, no_tsx):
    assert cpus.host_featuresets(base, ["hle", "rtm"], era=era) == cpus.host_featuresets(
        no_tsx, era=era
    )


def test_hidden_features_remove_bits_and_dependents():
    full = set(cpus.feature_names(hvm_words("Haswell")))
    hidden = set(cpus.feature_names(hvm_words("Haswell", hidden_features=["xsave"])))
    assert {"xsave", "avx", "avx2", "fma", "f16c", "xsaveopt"} <= full
    assert not {"xsave", "avx", "avx2", "fma", "f16c", "xsaveopt"} & hidden
    assert hidden < full
    assert full - hidden == {"xsave", "avx", "avx2", "fma", "f16c", "xsaveopt"}


def test_hidden_features_reach_old_style_features_and_flags():
    info = cpus.host_cpu_info("Haswell", ["hle", "rtm", "aesni"])
    plain = cpus.host_cpu_info("Haswell")
    assert " aes " in f" {plain['flags']} " and " aes " not in f" {info['flags']} "
    ecx_plain = fs.parse_oldstyle(plain["features"])[0]
    ecx_hidden = fs.parse_oldstyle(info["features"])[0]
    assert ecx_plain & ~ecx_hidden == 1 << cpus.feature("aesni").bit
    assert fs.is_strict_subset(fs.parse(info["features_hvm"]), fs.parse(plain["features_hvm"]))


def test_hidden_feature_the_host_lacks_is_harmless():
    assert cpus.host_featuresets("Conroe", ["avx"]) == cpus.host_featuresets("Conroe")


# --- host.cpu_info (§1.1) ------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_dundee_cpu_info_keys_order_and_types(name):
    info = cpus.host_cpu_info(name)
    assert (
        tuple(info)
        == cpus.DUNDEE_KEYS
        == (
            "cpu_count",
            "socket_count",
            "vendor",
            "speed",
            "modelname",
            "family",
            "model",
            "stepping",
            "flags",
            "features",
            "features_pv",
            "features_hvm",
        )
    )
    assert all(isinstance(v, str) for v in info.values())
    m = cpus.model(name)
    assert (info["vendor"], info["modelname"]) == (m.vendor, m.modelname)
    assert (info["family"], info["model"], info["stepping"]) == (
        str(m.family),
        str(m.model),
        str(m.stepping),
    )
    assert len(fs.parse_oldstyle(info["features"])) == 4
    assert info["features_pv"] == cpus.host_featuresets(name)["features_pv"]
    assert info["features_hvm"] == cpus.host_featuresets(name)["features_hvm"]
    float(info["speed"])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_cream_cpu_info_keys_order_and_types(name):
    info = cpus.host_cpu_info(name, release="cream")
    assert (
        tuple(info)
        == cpus.CREAM_KEYS
        == (
            "cpu_count",
            "socket_count",
            "vendor",
            "speed",
            "modelname",
            "family",
            "model",
            "stepping",
            "flags",
            "features",
            "features_after_reboot",
            "physical_features",
            "maskable",
        )
    )
    assert all(isinstance(v, str) for v in info.values())
    assert info["features"] == info["physical_features"] == info["features_after_reboot"]
    assert info["maskable"] == cpus.model(name).masking in ("no", "base", "full")


def test_counts():
    info = cpus.host_cpu_info("IvyBridge-EP", sockets=2, cpus_per_socket=6, threads_per_core=2)
    assert (info["cpu_count"], info["socket_count"]) == ("24", "2")
    assert cpus.host_cpu_info("Conroe")["cpu_count"] == "4"
    with pytest.raises(ValueError):
        cpus.host_cpu_info("Conroe", sockets=0)


def test_speed_is_deterministic_and_plausible():
    assert cpus.host_cpu_info("IvyBridge-EP")["speed"] == cpus.model("IvyBridge-EP").speed
    assert 2390 < float(cpus.model("IvyBridge-EP").speed) < 2400  # "@ 2.40GHz"
    for m in cpus.MODELS.values():
        assert 1000 < float(m.speed) < 5000 and len(m.speed.split(".")[1]) == 3


def test_dundee_host_without_hvm_has_all_zero_hvm_set():
    info = cpus.host_cpu_info("Penryn", hvm_capable=False)
    assert info["features_hvm"] == "-".join(["00000000"] * 9)
    assert info["features_pv"] == cpus.host_cpu_info("Penryn")["features_pv"]


def test_flags_look_like_dom0_proc_cpuinfo():
    flags = cpus.host_cpu_info("IvyBridge-EP")["flags"].split()
    assert flags[:4] == ["fpu", "de", "tsc", "msr"]  # PV: no vme/pse
    assert {"pni", "sse4_1", "sse4_2", "aes", "hypervisor", "lahf_lm", "ht"} <= set(flags)
    assert not {"vme", "pse", "vmx", "monitor", "osxsave", "sse4-1"} & set(flags)
    assert flags.index("lm") < flags.index("pni") < flags.index("lahf_lm")
    assert len(flags) == len(set(flags))


def test_amd_oldstyle_ext_edx_duplicates_common_bits():
    ecx, edx, ext_ecx, ext_edx = cpus.physical_features("EPYC")
    assert ext_edx & cpus.COMMON_1D_MASK == edx & cpus.COMMON_1D_MASK
    _, intel_edx, _, intel_ext_edx = cpus.physical_features("Haswell")
    assert intel_ext_edx & cpus.COMMON_1D_MASK == 0


# --- pre-Dundee masking (§16) --------------------------------------------------------------


def test_cream_mask_is_applied_to_features_only():
    mask = "ffffff7f-ffffffff-ffffffff-ffffffff"  # clears EIST (ecx bit 7)
    info = cpus.host_cpu_info("Nehalem", release="cream", mask=mask)
    physical = fs.parse_oldstyle(info["physical_features"])
    assert info["features"] == fs.format_oldstyle(
        tuple(p & m for p, m in zip(physical, fs.parse_oldstyle(mask), strict=True))
    )
    assert info["features"] != info["physical_features"]
    assert info["features_after_reboot"] == info["features"]
    assert info["maskable"] == "full"


def test_cream_mask_lowers_a_capable_host_to_a_lesser_one():
    lesser = cpus.host_cpu_info("Nehalem", release="cream")
    mask = lesser["features"]
    masked = cpus.host_cpu_info("Westmere", release="cream", mask=mask)
    assert masked["features"] == lesser["features"]
    assert masked["physical_features"] != lesser["physical_features"]
    assert "aes" not in masked["flags"].split()
    assert "aes" in cpus.host_cpu_info("Westmere", release="cream")["flags"].split()


def test_masking_refused_on_unmaskable_cpus():
    with pytest.raises(cpus.CpuMaskingError) as err:
        cpus.host_cpu_info("Conroe", release="cream", mask="f" * 32)
    assert err.value.code == "CPU_FEATURE_MASKING_NOT_SUPPORTED"
    assert err.value.detail == "CPU does not have FlexMigration"


def test_base_masking_only_masks_leaf_1():
    ok = cpus.host_cpu_info("Penryn", release="cream", mask="ffffffff-fffffffe-ffffffff-ffffffff")
    assert ok["features"].split("-")[1] == "bfebfbfe"
    with pytest.raises(cpus.CpuMaskingError) as err:
        cpus.host_cpu_info("Penryn", release="cream", mask="ffffffff-ffffffff-ffffffff-dfffffff")
    assert err.value.code == "INVALID_FEATURE_STRING"
    assert err.value.detail == (
        "CPU features cannot be masked to obtain given features (only base features can be masked)"
    )


def test_bad_mask_strings_raise_invalid_feature_string():
    with pytest.raises(fs.InvalidFeatureString, match="illegal character"):
        cpus.host_cpu_info("Nehalem", release="cream", mask="xyz")
    with pytest.raises(fs.InvalidFeatureString, match="right length"):
        cpus.host_cpu_info("Nehalem", release="cream", mask="ffff")


def test_dundee_has_no_masking():
    with pytest.raises(ValueError):
        cpus.host_cpu_info("Nehalem", mask="f" * 32)


# --- host_cpu rows (§1.4) ------------------------------------------------------------------


def test_host_cpu_rows():
    info = cpus.host_cpu_info("IvyBridge-EP", sockets=2, cpus_per_socket=2)
    rows = cpus.host_cpu_rows(info)
    assert [r["number"] for r in rows] == [0, 1, 2, 3]
    row = rows[0]
    assert row == {
        "number": 0,
        "vendor": "GenuineIntel",
        "speed": 2398,
        "modelname": "Intel(R) Xeon(R) CPU E5-2630L v2 @ 2.40GHz",
        "family": 6,
        "model": 62,
        "stepping": "4",
        "flags": info["flags"],
        "features": "",
        "utilisation": 0.0,
    }


def test_host_cpu_rows_unparsable_numbers_become_zero():
    rows = cpus.host_cpu_rows(
        {"cpu_count": "1", "vendor": "GenuineIntel", "speed": "unknown", "family": "x", "model": ""}
    )
    assert (rows[0]["speed"], rows[0]["family"], rows[0]["model"]) == (0, 0, 0)
    assert rows[0]["features"] == ""
    assert cpus.host_cpu_rows({}) == []


# --- the committed data is what the script derives -----------------------------------------


@pytest.mark.skipif(not SHARED.exists(), reason="reference data ../shared not present")
def test_committed_catalogue_is_up_to_date():
    import importlib.util

    script = Path(__file__).resolve().parents[2] / "scripts" / "derive_cpus.py"
    spec = importlib.util.spec_from_file_location("derive_cpus", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    derived = module.derive(json.loads(SHARED.read_text(encoding="utf-8")))
    assert derived == cpus.DATA
