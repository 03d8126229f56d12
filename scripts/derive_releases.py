#!/usr/bin/env python3
"""Derive xapi_sim/data/releases.json and errors_releases.json: the release profiles.

For each profile, from the xen-api git history (a mirror of xapi-project/xen-api, read with
``git show``; nothing is checked out):

* the API version at the profile's source revision (``api_version_major/minor`` in
  ``ocaml/idl/datamodel_common.ml``, ``ocaml/idl/datamodel.ml`` or, before 2017,
  ``ocaml/xapi/xapi_globs.ml``);
* ``xencenter_min``/``xencenter_max`` (``Xapi_globs.xencenter_min/max_verstring``: the API
  version string from 2017 on, the literal before);
* every error's parameter names and description at that revision (``error Api_errors.x
  [params] ~doc:"..."`` in ``ocaml/idl/datamodel.ml`` up to 2017, in
  ``ocaml/idl/datamodel_errors.ml`` after; the wire codes from ``api_errors.ml``). Only the
  entries that differ from today's ``data/errors.json`` are written.

The ``software_version`` values are facts of real hosts gathered from public sources and
kept in ``FACTS`` below with their provenance: the keys and their order come from the
source (``Xapi_globs.software_version`` + ``Create_misc.make_software_version`` at the
revision); ``db_schema`` is checked against ``schema_major/minor_vsn`` at the revision;
values no public source pins are marked ``plausible`` in ``notes``.

Usage: python scripts/derive_releases.py [XEN_API_GIT_DIR]   (writes the data files)
       python scripts/derive_releases.py --check               (validates the committed files)
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "xapi_sim" / "data"
DEFAULT_GIT = pathlib.Path("/work/.mirror/xapi-project+xen-api/repo")

# name -> facts. ``rev`` is the xen-api revision whose datamodel/errors the profile carries.
# ``datamodel`` is the release of the shared xenapi.json whose lifecycles give the API surface.
# ``rules``: the levelling profile (levelling/rules.py). ``tls.tls_verification``: the value a
# fresh pool's ``pool.tls_verification_enabled`` takes where the release has the field
# (xen-api 1.290.0 on; XenServer 8 and XCP-ng 8.3 installs enable it).
FACTS: dict[str, dict] = {
    "cream": {
        "title": "XenServer 6.5 SP1",
        "rev": "79e9af82c7^",
        "rev_note": "parent of 79e9af82c7 'Bump API version to 2.5' (master at 6.5 SP1's API)",
        "datamodel": "cream",
        "templates": "cream",
        "sm": "cream",
        "rules": "cream",
        "sv": [
            ["product_version", "6.5.0"],
            ["product_version_text", "6.5"],
            ["product_version_text_short", "6.5"],
            ["platform_name", "XCP"],
            ["platform_version", "1.9.0"],
            ["product_brand", "XenServer"],
            ["build_number", "90233c"],
            ["git_id", "0"],
            ["hostname", "xenbuild"],
            ["date", "2015-01-06"],
            ["dbv", "2014.1217"],
            ["xapi", "1.9"],
            ["xen", "4.4.1-xs90192"],
            ["linux", "3.10.0+2"],
            ["xencenter_min", "2.4"],
            ["xencenter_max", "2.4"],
            ["network_backend", "openvswitch"],
            ["xs:main", "Base Pack, version 6.5.0-90233c"],
        ],
        "tls": {"tls_verification": False},
        "notes": "values as the simulator always reported them (docs/scenarios.md)",
    },
    "dundee": {
        "title": "XenServer 7.0",
        "rev": "203781a993^",
        "rev_note": "parent of 203781a993 'The API version for Dundee plus will be 2.6'",
        "datamodel": "dundee",
        "templates": "dundee",
        "sm": "dundee",
        "rules": "dundee",
        "sv": [
            ["product_version", "7.0.0"],
            ["product_version_text", "7.0"],
            ["product_version_text_short", "7.0"],
            ["platform_name", "XCP"],
            ["platform_version", "2.1.0"],
            ["product_brand", "XenServer"],
            ["build_number", "125380c"],
            ["git_id", "0"],
            ["hostname", "xenbuild"],
            ["date", "2016-05-13"],
            ["dbv", "2016.0520"],
            ["xapi", "1.9"],
            ["xen", "4.6.1-xs125300"],
            ["linux", "3.10.0+10"],
            ["xencenter_min", "2.5"],
            ["xencenter_max", "2.5"],
            ["network_backend", "openvswitch"],
            ["xs:main", "Base Pack, version 7.0.0-125380c"],
        ],
        "tls": {"tls_verification": False},
        "notes": "values as the simulator always reported them (docs/scenarios.md)",
    },
    "ely": {
        "title": "XenServer 7.1",
        "rev": "1.14-lcm",
        "rev_note": "branch 1.14-lcm, the 7.1 LTSR maintenance line (API 2.6)",
        "datamodel": "ely",
        "templates": "ely",
        "sm": "ely",
        "rules": "ely",
        "sv": [
            ["product_version", "7.1.0"],
            ["product_version_text", "7.1"],
            ["product_version_text_short", "7.1"],
            ["platform_name", "XCP"],
            ["platform_version", "2.1.1"],
            ["product_brand", "XenServer"],
            ["build_number", "137272c"],
            ["git_id", "0"],
            ["hostname", "f7d02093adae"],
            ["date", "2017-02-09"],
            ["dbv", "2017.0517"],
            ["xapi", "1.9"],
            ["xen", "4.7.1-1-d"],
            ["linux", "4.4.0+2"],
            ["xencenter_min", "2.6"],
            ["xencenter_max", "2.6"],
            ["network_backend", "openvswitch"],
            ["db_schema", "5.109"],
            ["xs:xenserver-transfer-vm", "XenServer Transfer VM, version 7.1.0-137272c"],
            ["xs:main", "Base Pack, version 7.1.0-137272c"],
        ],
        "tls": {"tls_verification": False},
        "notes": (
            "platform_version = XenCenter's 'Ely platform version is 2.1.1' "
            "(XenModel/Utils/Helpers.Versions.cs); build number, date, dbv, Xen/Linux "
            "versions plausible"
        ),
    },
    "stockholm": {
        "title": "Citrix Hypervisor 8.2 CU1",
        "rev": "1.249-lcm",
        "rev_note": "branch 1.249-lcm, the 8.2 LTSR (CU1) maintenance line (API 2.15)",
        "datamodel": "stockholm_psr",
        "templates": "stockholm",
        "sm": "stockholm",
        "rules": "stockholm",
        "sv": [
            ["product_version", "8.2.1"],
            ["product_version_text", "8.2"],
            ["product_version_text_short", "8.2 CU1"],
            ["platform_name", "XCP"],
            ["platform_version", "3.2.1"],
            ["product_brand", "Citrix Hypervisor"],
            ["build_number", "release/yangtze/master/58"],
            ["git_id", "0"],
            ["hostname", "localhost"],
            ["date", "2022-02-01"],
            ["dbv", "0.0.1"],
            ["xapi", "1.249"],
            ["xen", "4.13.4-8.2.1"],
            ["linux", "4.19.0+1"],
            ["xencenter_min", "2.15"],
            ["xencenter_max", "2.15"],
            ["network_backend", "openvswitch"],
            ["db_schema", "5.603"],
        ],
        "tls": {"tls_verification": False},
        "notes": (
            "platform_version = XenCenter's 'Yangtze platform version is 3.2.1' (Yangtze = "
            "8.2 CU1); keys from 1.249-lcm create_misc.ml (db_schema added, no xs: packs); "
            "build number and date plausible"
        ),
    },
    "nile": {
        "title": "XenServer 8",
        "rev": "v23.30.0",
        "rev_note": (
            "tag v23.30.0 (2023-11): XenServer 8 at API 2.20, the API the newest public "
            "XenCenter source (xenserver/xenadmin b210cd2c, 2023-12) knows"
        ),
        "datamodel": "23.30.0",
        "templates": "nile",
        "sm": "nile",
        "rules": "nile",
        "sv": [
            ["product_version", "8.4.0"],
            ["product_version_text", "8"],
            ["product_version_text_short", "8"],
            ["platform_name", "XCP"],
            ["platform_version", "3.4.0"],
            ["product_brand", "XenServer"],
            ["build_number", "8.4.0"],
            ["git_id", "0"],
            ["hostname", "localhost"],
            ["date", "2023-11-10"],
            ["dbv", "0.0.1"],
            ["is_preview_release", "false"],
            ["xapi", "23.30"],
            ["xapi_build", "23.30.0"],
            ["xen", "4.17.2-3"],
            ["linux", "4.19.0+1"],
            ["xencenter_min", "2.20"],
            ["xencenter_max", "2.20"],
            ["network_backend", "openvswitch"],
            ["db_schema", "5.767"],
        ],
        "tls": {"tls_verification": True},
        "notes": (
            "platform_version = XenCenter's 'Nile platform version is 3.4.0'; xapi/xapi_build "
            "from the tag (create_misc.ml adds xapi_build); Xen version and date plausible"
        ),
    },
    "xcp-ng-8.3": {
        "title": "XCP-ng 8.3",
        "rev": "v24.19.2",
        "rev_note": "tag v24.19.2 (2024-07), the xapi generation XCP-ng 8.3 shipped (API 2.21)",
        "datamodel": "24.16.0",
        "templates": "nile",
        "sm": "nile",
        "rules": "xcp-ng-8.3",
        "sv": [
            ["product_version", "8.3.0"],
            ["product_version_text", "8.3"],
            ["product_version_text_short", "8.3"],
            ["platform_name", "XCP"],
            ["platform_version", "3.4.0"],
            ["product_brand", "XCP-ng"],
            ["build_number", "cloud"],
            ["git_id", "0"],
            ["hostname", "localhost"],
            ["date", "2024-10-03"],
            ["dbv", "0.0.1"],
            ["is_preview_release", "false"],
            ["xapi", "24.19"],
            ["xapi_build", "24.19.2"],
            ["xen", "4.17.5-3"],
            ["linux", "4.19.0+1"],
            ["xencenter_min", "2.21"],
            ["xencenter_max", "2.21"],
            ["network_backend", "openvswitch"],
            ["db_schema", "5.779"],
        ],
        "tls": {"tls_verification": True},
        "notes": (
            "XCP-ng branding of the same xapi generation (product_brand XCP-ng); the datamodel "
            "surface is the shared data's newest release not after 24.19.2 (24.16.0); "
            "build number, date, Xen version plausible"
        ),
    },
}
# product_version -> profile name (scenario ``version`` accepts either)
ORDER = ["cream", "dundee", "ely", "stockholm", "nile", "xcp-ng-8.3"]


def git(gitdir: pathlib.Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(gitdir), *args], capture_output=True, text=True, check=False
    ).stdout


def schema_version(gitdir, rev) -> str:
    """``schema_major_vsn.schema_minor_vsn`` at ``rev`` (the ``db_schema`` key)."""
    for path in ("ocaml/idl/datamodel_common.ml", "ocaml/idl/datamodel.ml"):
        text = git(gitdir, "show", f"{rev}:{path}")
        ma = re.search(r"let schema_major_vsn\s*=\s*(\d+)", text)
        mi = re.search(r"let schema_minor_vsn\s*=\s*(\d+)", text)
        if ma and mi:
            return f"{ma.group(1)}.{mi.group(1)}"
    return ""


def api_version(gitdir, rev) -> tuple[int, int]:
    found: dict[str, int] = {}
    for path in (
        "ocaml/idl/datamodel_common.ml",
        "ocaml/idl/datamodel.ml",
        "ocaml/xapi/xapi_globs.ml",
        "ocaml/idl/api_version.ml",
    ):
        text = git(gitdir, "show", f"{rev}:{path}")
        for key in ("major", "minor"):
            m = re.search(rf"let api_version_{key}\s*=\s*(\d+)L", text)
            if m and key not in found:
                found[key] = int(m.group(1))
    return found["major"], found["minor"]


_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S)


def _ocaml_string(body: str) -> str:
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt == "\n":
                i += 2
                while i < len(body) and body[i] in " \t":
                    i += 1
                continue
            out.append({"n": "\n", "t": "\t", '"': '"', "\\": "\\"}.get(nxt, "\\" + nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


_ERROR = re.compile(r"error\s+Api_errors\.(\w+)\s*\[([^\]]*)\]\s*~doc:\s*", re.S)


def error_docs(gitdir, rev) -> dict[str, list]:
    codes: dict[str, str] = {}
    for path in ("ocaml/xapi-consts/api_errors.ml", "ocaml/idl/api_errors.ml"):
        for name, code in re.findall(
            r'let\s+(\w+)\s*=\s*(?:add_error\s*)?"([A-Z0-9_]+)"',
            git(gitdir, "show", f"{rev}:{path}"),
        ):
            codes.setdefault(name, code)
    out: dict[str, list] = {}
    for path in ("ocaml/idl/datamodel_errors.ml", "ocaml/idl/datamodel.ml"):
        text = git(gitdir, "show", f"{rev}:{path}")
        for m in _ERROR.finditer(text):
            name, params = m.group(1), m.group(2)
            pos, parts = m.end(), []
            while True:
                s = _STRING.match(text, pos)
                if not s:
                    break
                parts.append(_ocaml_string(s.group(1)))
                pos = s.end()
                cat = re.match(r"\s*\^\s*", text[pos:])
                if not cat:
                    break
                pos += cat.end()
            code = codes.get(name)
            if code and parts and code not in out:
                out[code] = [re.findall(r'"((?:[^"\\]|\\.)*)"', params), "".join(parts)]
    return out


def derive(gitdir: pathlib.Path) -> tuple[dict, dict]:
    today = json.loads((OUT / "errors.json").read_text())
    releases, errors = [], {}
    for name in ORDER:
        f = FACTS[name]
        major, minor = api_version(gitdir, f["rev"])
        sv = dict(f["sv"])
        assert sv["xencenter_min"] == sv["xencenter_max"] == f"{major}.{minor}", name
        if "db_schema" in sv:
            assert sv["db_schema"] == schema_version(gitdir, f["rev"]), name
        releases.append(
            {
                "name": name,
                "title": f["title"],
                "version": sv["product_version"],
                "datamodel_release": f["datamodel"],
                "templates_release": f["templates"],
                "sm_release": f["sm"],
                "levelling": f["rules"],
                "api_major": major,
                "api_minor": minor,
                "source": {"xen-api": f["rev"], "why": f["rev_note"]},
                "software_version": f["sv"],
                "tls": f["tls"],
                "notes": f["notes"],
            }
        )
        docs = error_docs(gitdir, f["rev"])
        errors[name] = {
            code: entry for code, entry in sorted(docs.items()) if today.get(code) != entry
        }
        print(f"{name}: API {major}.{minor}, {len(docs)} errors, {len(errors[name])} differ")
    return {"releases": releases}, errors


def check() -> None:
    rel = json.loads((OUT / "releases.json").read_text())
    errs = json.loads((OUT / "errors_releases.json").read_text())
    names = [r["name"] for r in rel["releases"]]
    assert names == ORDER, names
    for r in rel["releases"]:
        f = FACTS[r["name"]]
        assert r["software_version"] == f["sv"], r["name"]
        assert r["datamodel_release"] == f["datamodel"], r["name"]
        assert r["name"] in errs
    print("releases.json and errors_releases.json match FACTS")


def main(argv) -> None:
    if len(argv) > 1 and argv[1] == "--check":
        check()
        return
    gitdir = pathlib.Path(argv[1]) if len(argv) > 1 else DEFAULT_GIT
    rel, errs = derive(gitdir)
    (OUT / "releases.json").write_text(json.dumps(rel, indent=1) + "\n")
    (OUT / "errors_releases.json").write_text(json.dumps(errs, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main(sys.argv)
