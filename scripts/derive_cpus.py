#!/usr/bin/env python3
"""Derive ``xapi_sim/data/cpus.json`` from the reference CPU catalogue.

Usage: ``python scripts/derive_cpus.py [path/to/cpu-models.json] [path/to/cpus.json]``.
The input defaults to ``../shared/data/cpu-models.json`` (relative to the repo root) and the
output to ``xapi_sim/data/cpus.json``.  The output keeps only what the runtime and the tests
need: the feature table (word, bit, per-Xen-era attribute letters, Linux flag name), the
dependency table, the 21 CPU models, the era rules and the observed real outputs.

Two things are *added* here rather than copied, and both are documented in the output:

* ``features[].linux``: the /proc/cpuinfo flag name, taken from QEMU's property name (QEMU
  uses the Linux spelling with ``-``/``.`` for ``_``) or Xen's name, plus the table
  ``LINUX_NAMES`` of the flags whose Linux spelling differs.  ``null`` = Linux hides the flag.
* ``models[].speed``: a synthetic but deterministic "cpu MHz" string.
"""

from __future__ import annotations

import json
import re
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INPUT = ROOT / ".." / "shared" / "data" / "cpu-models.json"
DEFAULT_OUTPUT = ROOT / "xapi_sim" / "data" / "cpus.json"

# Xen feature name -> Linux /proc/cpuinfo flag name, where neither QEMU's nor Xen's spelling
# (with '-' and '.' turned into '_') is the Linux one.  None = Linux does not print the flag.
LINUX_NAMES = {
    "ds": "dts",
    "tm1": "tm",
    "htt": "ht",
    "sse3": "pni",
    "dscpl": "ds_cpl",
    "eist": "est",
    "tsc-deadline": "tsc_deadline_timer",
    "aesni": "aes",
    "osxsave": None,
    "page1gb": "pdpe1gb",
    "ffxsr": "fxsr_opt",
    "cr8-legacy": "cr8_legacy",
    "dbext": "bpext",
    "monitorx": "mwaitx",
    "itsc": "constant_tsc",
    "sha": "sha_ni",
    "avx512-ifma": "avx512ifma",
    "avx512-vbmi": "avx512vbmi",
    "fdp-excp-only": None,
    "no-fpu-sel": None,
    "pqm": "cqm",
    "pqe": "rdt_a",
    "ibrsb": None,
    "stibp": None,
    "ssbd": None,
    "l1d-flush": "flush_l1d",
    "arch-caps": "arch_capabilities",
}

# Eras the runtime knows, with their default featureset length.  xen-4.7 is Dundee as
# released (9 words); its 2018 hotfix variant with the word-9 backport has 10.
ERA_WORD_COUNTS = {
    "xen-4.7": 9,
    "xs-xen4.13-2019": 15,  # the observed XCP-ng 8.0/8.1 length
    "xs-xen4.13-2021": 18,  # the observed XCP-ng 8.2 length
    "latest": 19,  # upstream word count
}


def linux_name(feature: dict):
    """The /proc/cpuinfo spelling of a Xen feature (None when Linux hides it)."""
    name = feature["name"]
    if name in LINUX_NAMES:
        return LINUX_NAMES[name]
    base = feature.get("qemu") or name
    return re.sub(r"[-.]", "_", base)


def synthetic_speed(model: dict) -> str:
    """A plausible, deterministic "cpu MHz" string: slightly under the nominal clock."""
    crc = zlib.crc32(model["name"].encode())
    found = re.search(r"@\s*([0-9.]+)\s*GHz", model["modelname"])
    nominal = int(float(found.group(1)) * 1000) if found else 2000 + (crc % 15) * 100
    return f"{nominal - 1 - crc % 7}.{crc % 1000:03d}"


def derive(src: dict) -> dict:
    """Build the runtime catalogue from the reference catalogue."""
    features = [
        {
            "name": f["name"],
            "word": f["word"],
            "bit": f["bit"],
            "attrs": f["attrs_by_xen"],
            "linux": linux_name(f),
        }
        for f in src["features"]
    ]
    model_keys = (
        "name",
        "vendor",
        "family",
        "model",
        "stepping",
        "modelname",
        "masking",
        "xen_levelling",
        "flags",
        "host_extra_flags",
        "microcode_flags",
        "derived_featuresets",
    )
    models = []
    for m in src["models"]:
        row = {k: m[k] for k in model_keys}
        row["speed"] = synthetic_speed(m)
        models.append(row)
    eras = []
    for era in src["eras"]:
        if era["id"] not in ERA_WORD_COUNTS:
            continue
        row = {
            k: v
            for k, v in era.items()
            if not k.endswith("note")
            and not k.endswith("notes")
            and k not in ("xapi_cpu_info_keys", "string_layout")
        }
        row["word_count"] = ERA_WORD_COUNTS[era["id"]]
        eras.append(row)
    observed = [
        {k: o[k] for k in ("id", "era", "source", "cpu", "strings", "compare")}
        for o in src["observed_outputs"]
    ]
    return {
        "schema_version": 1,
        "derived_from": "shared/data/cpu-models.json (Xen cpufeatureset.h, QEMU 8.1 CPU "
        "models, xapi/xenopsd code, public host reports) by "
        "scripts/derive_cpus.py",
        "notes": {
            "linux": "features[].linux is the /proc/cpuinfo flag name (null: Linux hides "
            "it); from QEMU's property name or Xen's, plus a small override table.",
            "speed": "models[].speed is synthetic: a deterministic 'cpu MHz' string just "
            "under the nominal clock (from the model name when it states one).",
            "word_count": "eras[].word_count is the default featureset length per era; "
            "xen-4.7 also has word_count_with_word9_backport.",
        },
        "common_1d_mask": int(src["conventions"]["common_1d_mask"].split(":")[0], 16),
        "featureset_words": [
            {"index": w["index"], "name": w["xen_word_name"]} for w in src["featureset_words"]
        ],
        "features": features,
        "dependencies": src["dependencies"],
        "models": models,
        "eras": eras,
        "rule_engine": src["rule_engine"],
        "observed_outputs": observed,
    }


def main(argv: list[str]) -> int:
    """Read the reference catalogue, write the runtime one."""
    src_path = Path(argv[1]) if len(argv) > 1 else DEFAULT_INPUT
    out_path = Path(argv[2]) if len(argv) > 2 else DEFAULT_OUTPUT
    with open(src_path, encoding="utf-8") as fh:
        src = json.load(fh)
    out = derive(src)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=1, sort_keys=False)
        fh.write("\n")
    print(
        f"wrote {out_path} ({len(out['features'])} features, {len(out['models'])} models, "
        f"{len(out['eras'])} eras, {len(out['observed_outputs'])} observed outputs)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
