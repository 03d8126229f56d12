#!/usr/bin/env python3
"""Derive xapi_sim/data/sm.json (the SM records a fresh host of each release has) and
xapi_sim/data/sm_errors.json (SM's error codes, and the device-config checks of the common
SR types).

Usage:
  python scripts/derive_sm.py SM_GIT_DIR XEN_API_GIT_DIR     derive and write both files
  python scripts/derive_sm.py --check                          validate the committed JSON

The git directories are what ``fetch github:xapi-project/sm`` and ``fetch
github:xapi-project/xen-api`` give; the revisions of each release are pinned in RELEASES.

How a host fills its SM table (xen-api ``storage_access.ml`` on_xapi_start, ``sm_exec.ml``
get_supported/parse_sr_get_driver_info, ``xapi_sm.ml`` create_from_query_result):
every executable ``/opt/xensource/sm/<Driver>SR`` whose lowercased name is in xapi.conf's
``sm-plugins`` whitelist (no whitelist before 7.0: every driver) is asked
``sr_get_driver_info``; the SM row gets type = lowercased driver name, the driver's
name/description/vendor/copyright/driver_version/required_api_version, its capabilities
filtered to those xapi knows (``Smint.string_to_capability_table``) with ``NAME/n`` giving
feature version n (default 1), configuration = [key, description] pairs,
driver_filename = ``/opt/xensource/sm/<Driver>SR`` and required_cluster_stack = [].
From xen-api 1.249 the features are sorted by name (``List.sort_uniq``).

Which drivers are installed, under which names, comes from sm's Makefile (``SM_DRIVERS``,
then the install rule's ``rm``/``ln -sf`` that rename LVHD*SR to LVM*SR and drop SHM/OCFS);
what each one reports comes from its ``DRIVER_INFO`` (read with ``ast`` from the literal
assignments, following ``module.NAME`` references into sibling files) as sm's
``util.sr_get_driver_info`` returns it: ATOMIC_PAUSE implies VDI_ACTIVATE and
VDI_DEACTIVATE. SMAPIv3 plugins (gfs2 etc., registered over the message switch) are not in
this data.
"""

from __future__ import annotations

import ast
import json
import pathlib
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT / "xapi_sim" / "data"

# release -> (sm rev, xen-api rev, why)
RELEASES = {
    "cream": (
        "v1.9.50",
        "v1.9.60",
        "sm v1.9.50 (2015-03-27) and xen-api v1.9.60 (2015-04-04), the last tags before "
        "XenServer 6.5 SP1 (May 2015); no sm-plugins whitelist yet",
    ),
    "dundee": (
        "v1.14.0",
        "dundee-lcm",
        "sm v1.14.0 = master as of 2016-04-25 (XenServer 7.0 GA May 2016) plus a "
        "unit-test fix and the release bump; xen-api dundee-lcm (7.0's branch)",
    ),
    "ely": (
        "v1.17.0",
        "v1.14.6",
        "sm v1.17.0 (2016-10-19) and xen-api v1.14.6 (2017-02-16, the 1.14-lcm line): "
        "XenServer 7.1 GA February 2017",
    ),
    "stockholm": (
        "v2.30.7",
        "1.249-lcm",
        "sm v2.30.7 (2022-04, the 8.2 maintenance line v2.30.x) and xen-api "
        "1.249-lcm (8.2's branch): Citrix Hypervisor 8.2 CU1",
    ),
    "nile": (
        "v3.2.12",
        "24.39-lcm",
        "sm v3.2.12 (2025-01-06, last of the v3 line) and xen-api 24.39-lcm (2025-01): XenServer 8",
    ),
}
ERRORS_RELEASE = "dundee"  # release whose sm the error table and checks come from
# xapi maps these SM fault codes to their own errors (sm_exec.ml exec_xmlrpc); any other
# code n becomes SR_BACKEND_FAILURE_<n> with params ["", reason, stderr].
SPECIAL = {
    "16": "SR_DEVICE_IN_USE",
    "24": "VDI_IN_USE",
    "38": "(not implemented: xapi falls back or reports the operation unsupported)",
    "39": "SR_NOT_EMPTY",
    "144": "VDI_MISSING",
}


def git(gitdir, *args):
    return subprocess.run(
        ["git", "--git-dir", str(gitdir), *args], check=True, capture_output=True, text=True
    ).stdout


def show(gitdir, rev, path):
    return git(gitdir, "show", f"{rev}:{path}")


# --- which drivers a host has -------------------------------------------------------------


def installed_drivers(makefile):
    """{driver name as installed: source file} from sm's Makefile."""
    names = re.findall(r"^SM_DRIVERS\s*[:+]?=\s*(\w*)\s*$", makefile, re.M)
    out = {n: f"{n}SR.py" for n in names if n}
    for line in makefile.splitlines():
        for removed in re.findall(r"rm (?:-f )?(?:\S*/)?(\w+)SR\b", line):
            out.pop(removed, None)
        for src, dst in re.findall(r"ln -sf (\w+)SR\.py (\w+)SR\b", line):
            out[dst] = f"{src}SR.py"
    return out


def whitelist(xapi_conf):
    m = re.search(r"^sm-plugins\s*=\s*(.*)$", xapi_conf, re.M)
    return None if m is None else m.group(1).split()


def known_capabilities(smint):
    names = re.findall(r'"([A-Z_]+)"\s*,\s*(?:Sr|Vdi|Large|Thin)_\w+', smint)
    if not names:
        raise ValueError("no string_to_capability_table in smint.ml")
    return names, "sort_uniq" in smint


# --- DRIVER_INFO from the Python sources ----------------------------------------------------


def top_level_assignments(src):
    """{NAME: expression source} for top-level ``NAME = expr`` statements (bracket-aware,
    so Python 2 files work: only the literal expressions go through ``ast``)."""
    out, lines, i = {}, src.splitlines(), 0
    while i < len(lines):
        m = re.match(r"([A-Za-z_]\w*)\s*=(?!=)\s*(.*)$", lines[i])
        if not m:
            i += 1
            continue
        name, text = m.group(1), m.group(2)
        depth = _depth(text)
        while (depth > 0 or text.rstrip().endswith("\\")) and i + 1 < len(lines):
            i += 1
            text = text + "\n" + lines[i]
            depth = _depth(text)
        out[name] = text
        i += 1
    return out


def _depth(text):
    text = re.sub(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", "", text)
    text = re.sub(r"#.*", "", text)
    return sum(text.count(c) for c in "([{") - sum(text.count(c) for c in ")]}")


class Sources:
    def __init__(self, gitdir, rev):
        self.gitdir, self.rev, self.cache = gitdir, rev, {}

    def module(self, name):
        if name not in self.cache:
            try:
                src = show(self.gitdir, self.rev, f"drivers/{name}.py")
            except subprocess.CalledProcessError:
                src = ""
            self.cache[name] = top_level_assignments(src)
        return self.cache[name]

    def value(self, module, name):
        assigns = self.module(module)
        if name not in assigns:
            raise ValueError(f"{module}.{name} is not a top-level literal")
        return self.eval(ast.parse("(" + assigns[name] + "\n)", mode="eval").body, module)

    def eval(self, node, module):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self.eval(e, module) for e in node.elts]
        if isinstance(node, ast.Dict):
            return {
                self.eval(k, module): self.eval(v, module)
                for k, v in zip(node.keys, node.values, strict=True)
            }
        if isinstance(node, ast.Name):
            return self.value(module, node.id)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            return self.value(node.value.id, node.attr)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return self.eval(node.left, module) + self.eval(node.right, module)
        raise ValueError(f"{module}: cannot evaluate {ast.dump(node)[:80]}")


def driver_record(srcs, driver, source_file, known, sort):
    info = srcs.value(source_file[:-3], "DRIVER_INFO")
    caps = list(info["capabilities"])
    if "ATOMIC_PAUSE" in caps:  # sm util.sr_get_driver_info
        caps += [c for c in ("VDI_ACTIVATE", "VDI_DEACTIVATE") if c not in caps]
    features = []
    for c in caps:
        name, _, ver = c.partition("/")
        if name not in known:
            continue
        try:
            v = max(1, int(ver)) if ver else 1
        except ValueError:
            v = 1
        if name not in [f[0] for f in features]:
            features.append((name, v))
    if sort:
        features.sort()
    config = {}
    for key, desc in info["configuration"]:
        config[key] = desc
    return {
        "type": driver.lower(),
        "name_label": info["name"],
        "name_description": info["description"],
        "vendor": info["vendor"],
        "copyright": info["copyright"],
        "version": info["driver_version"],
        "required_api_version": info["required_api_version"],
        "capabilities": [f[0] for f in features],
        "features": dict(features),
        "configuration": config,
        "driver_filename": f"/opt/xensource/sm/{driver}SR",
        "required_cluster_stack": [],
        "other_config": {},
    }


def derive_release(sm, xen_api, sm_rev, x_rev):
    drivers = installed_drivers(show(sm, sm_rev, "Makefile"))
    util = show(sm, sm_rev, "drivers/util.py")
    if '"ATOMIC_PAUSE" in caps' not in util:
        raise ValueError(f"sm {sm_rev}: util.sr_get_driver_info changed; review derive_sm")
    try:
        wl = whitelist(show(xen_api, x_rev, "scripts/xapi.conf"))
    except subprocess.CalledProcessError:
        wl = None
    known, sort = known_capabilities(show(xen_api, x_rev, "ocaml/xapi/smint.ml"))
    srcs = Sources(sm, sm_rev)
    out = []
    for driver, src in sorted(drivers.items(), key=lambda kv: kv[0].lower()):
        if wl is not None and driver.lower() not in [w.lower() for w in wl]:
            continue
        out.append(driver_record(srcs, driver, src, known, sort))
    return out, wl


# --- errors -----------------------------------------------------------------------------------


def error_table(xml_text):
    root = ET.fromstring(xml_text)
    out = {}
    for code in root.iter("code"):
        name = code.findtext("name").strip()
        value = code.findtext("value").strip()
        text = " ".join(code.findtext("description").split())
        out[value] = [name, text]
    return dict(sorted(out.items(), key=lambda kv: int(kv[0])))


# The device-config checks of each type, read from the drivers' load() (and the helpers
# it calls) at the ERRORS_RELEASE sm revision: (key, when, SM error name, file, anchor).
# The script verifies each against the source: the anchor regex must match in the file and
# ``XenError('<name>'`` must follow within 12 lines.
CHECKS = {
    "ext": [
        (
            "device",
            "missing or empty",
            "ConfigDeviceMissing",
            "EXTSR.py",
            r"not self\.dconf\.has_key\('device'\)",
        ),
        (
            "device",
            "a path that is not valid",
            "ConfigDeviceInvalid",
            "EXTSR.py",
            r"not self\._isvalidpathstring\(dev\)",
        ),
    ],
    "lvm": [
        (
            "device",
            "missing or empty",
            "ConfigDeviceMissing",
            "LVHDSR.py",
            r"not self\.dconf\.has_key\('device'\)",
        ),
        (
            "device",
            "a path that is not valid",
            "ConfigDeviceInvalid",
            "LVHDSR.py",
            r"not self\._isvalidpathstring\(dev\)",
        ),
        (
            "allocation",
            "not thick or thin (checked when the SR exists, not on probe)",
            "InvalidArg",
            "LVHDSR.py",
            r"self\.dconf\['allocation'\] in self\.PROVISIONING",
        ),
    ],
    "nfs": [
        (
            "server",
            "missing",
            "ConfigServerMissing",
            "NFSSR.py",
            r"not self\.dconf\.has_key\('server'\)",
        ),
        (
            "serverpath",
            "missing (probe, create, attach; a probe first lists the server's exports)",
            "ConfigServerPathMissing",
            "NFSSR.py",
            r"def validate_remotepath",
        ),
        (
            "serverpath",
            "a path that is not valid",
            "ConfigServerPathBad",
            "NFSSR.py",
            r"not self\._isvalidpathstring\(self\.dconf\['serverpath'\]\)",
        ),
    ],
    "iso": [
        (
            "location",
            "missing",
            "ConfigLocationMissing",
            "ISOSR.py",
            r"not self\.dconf\.has_key\('location'\)",
        ),
        (
            "location",
            "type=cifs without a //server/share or \\\\server\\share "
            "form, or an NFS location without ':'",
            "ISOLocationStringError",
            "ISOSR.py",
            r"location\.find\(':'\) == -1",
        ),
    ],
    "lvmoiscsi": [
        (
            "target",
            "missing or empty",
            "ConfigTargetMissing",
            "ISCSISR.py",
            r"not self\.dconf\.has_key\('target'\)",
        ),
        (
            "localIQN",
            "absent and the host has no other_config:iscsi_iqn",
            "ConfigISCSIIQNMissing",
            "ISCSISR.py",
            r"self\.localIQN = self\.dconf\['localIQN'\]",
        ),
        (
            "port",
            "not a number, or outside 1..65535",
            "ISCSIPort",
            "ISCSISR.py",
            r"self\.port = long\(self\.dconf\['port'\]\)",
        ),
        (
            "targetIQN",
            "missing or empty (after a discovery whose IQNs the error output lists)",
            "ConfigTargetIQNMissing",
            "ISCSISR.py",
            r"not self\.dconf\.has_key\('targetIQN'\)",
        ),
        (
            "SCSIid",
            "missing (after listing the target's LUNs)",
            "ConfigSCSIid",
            "LVHDoISCSISR.py",
            r"not self\.dconf\.has_key\('SCSIid'\)",
        ),
    ],
    "dummy": [],
}


def verify_check(text, fname, anchor, error):
    """The line of the XenError that ``anchor`` leads to, or ValueError."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.search(anchor, line):
            for j in range(i, min(i + 12, len(lines))):
                if re.search(rf"XenError\(\s*['\"]{error}['\"]", lines[j]):
                    return j + 1
            raise ValueError(f"{fname}: {error} does not follow {anchor!r}")
    raise ValueError(f"{fname}: {anchor!r} not found")


def derive_errors(sm, sm_rev, doc_sm):
    table = error_table(show(sm, sm_rev, "drivers/XE_SR_ERRORCODES.xml"))
    by_name = {v[0]: k for k, v in table.items()}
    release_types = {r["type"]: r for r in doc_sm}
    types = {}
    for sr_type, checks in CHECKS.items():
        rows = []
        for key, when, error, fname, anchor in checks:
            line = verify_check(show(sm, sm_rev, f"drivers/{fname}"), fname, anchor, error)
            code = by_name[error]
            rows.append(
                {
                    "key": key,
                    "when": when,
                    "error": error,
                    "code": SPECIAL.get(code, f"SR_BACKEND_FAILURE_{code}"),
                    "text": table[code][1],
                    "source": f"drivers/{fname}:{line}",
                }
            )
        types[sr_type] = {"configuration": release_types[sr_type]["configuration"], "checks": rows}
    return table, types


# --- output and validation ------------------------------------------------------------------


def check_sm(doc):
    problems = []
    for release, rel in doc["releases"].items():
        types = [r["type"] for r in rel["sm"]]
        if len(set(types)) != len(types):
            problems.append(f"{release}: duplicate SM types")
        for r in rel["sm"]:
            for f in (
                "type",
                "name_label",
                "name_description",
                "vendor",
                "copyright",
                "version",
                "required_api_version",
                "capabilities",
                "features",
                "configuration",
                "driver_filename",
                "required_cluster_stack",
            ):
                if f not in r:
                    problems.append(f"{release}/{r.get('type')}: no {f}")
            if r.get("capabilities") != list(r.get("features", {})):
                problems.append(f"{release}/{r['type']}: capabilities != feature names")
            if any(not isinstance(v, int) or v < 1 for v in r.get("features", {}).values()):
                problems.append(f"{release}/{r['type']}: bad feature version")
    return problems


def check_errors(doc):
    problems = []
    for code, (name, text) in doc["codes"].items():
        if not code.isdigit() or not name or not text:
            problems.append(f"code {code}: malformed")
    names = {v[0] for v in doc["codes"].values()}
    for sr_type, t in doc["types"].items():
        for c in t["checks"]:
            if c["error"] not in names:
                problems.append(f"{sr_type}: {c['error']} has no code")
    return problems


def dump_sm(doc):
    parts = []
    for release, rel in doc["releases"].items():
        rows = ",\n    ".join(json.dumps(r) for r in rel["sm"])
        head = json.dumps({k: v for k, v in rel.items() if k != "sm"})[:-1]
        parts.append(f'  {json.dumps(release)}: {head}, "sm": [\n    {rows}\n  ]}}')
    return (
        '{\n "source": '
        + json.dumps(doc["source"])
        + ',\n "releases": {\n'
        + ",\n".join(parts)
        + "\n }\n}\n"
    )


def main(argv):
    if argv[1:] == ["--check"]:
        problems = check_sm(json.loads((DATA / "sm.json").read_text()))
        problems += check_errors(json.loads((DATA / "sm_errors.json").read_text()))
        print("\n".join(problems) or "sm.json and sm_errors.json are valid")
        return 1 if problems else 0
    if len(argv) != 3:
        print(__doc__)
        return 2
    sm, xen_api = argv[1:]
    doc = {"source": {"sm": "xapi-project/sm", "xen_api": "xapi-project/xen-api"}, "releases": {}}
    for release, (sm_rev, x_rev, why) in RELEASES.items():
        records, wl = derive_release(sm, xen_api, sm_rev, x_rev)
        doc["releases"][release] = {
            "sm_rev": f"{sm_rev} {git(sm, 'rev-parse', sm_rev + '^{commit}').strip()}",
            "xen_api_rev": f"{x_rev} {git(xen_api, 'rev-parse', x_rev + '^{commit}').strip()}",
            "why": why,
            "whitelist": wl,
            "sm": records,
        }
        print(f"{release}: {len(records)} SM types: {' '.join(r['type'] for r in records)}")
    problems = check_sm(doc)
    if problems:
        raise SystemExit("\n".join(problems))
    (DATA / "sm.json").write_text(dump_sm(doc))
    sm_rev = RELEASES[ERRORS_RELEASE][0]
    table, types = derive_errors(sm, sm_rev, doc["releases"][ERRORS_RELEASE]["sm"])
    errors = {
        "source": {
            "repo": "xapi-project/sm",
            "release": ERRORS_RELEASE,
            "rev": doc["releases"][ERRORS_RELEASE]["sm_rev"],
            "codes": "drivers/XE_SR_ERRORCODES.xml",
            "checks": "each driver's load() and the helpers it calls; "
            "lvmoiscsi runs the iscsi base driver (ISCSISR.py) first",
        },
        "wire": {
            "other_codes": "SR_BACKEND_FAILURE_<code>, params ['', text, stderr]",
            "special": SPECIAL,
        },
        "codes": table,
        "types": types,
    }
    problems = check_errors(errors)
    if problems:
        raise SystemExit("\n".join(problems))
    (DATA / "sm_errors.json").write_text(json.dumps(errors, indent=1) + "\n")
    print(f"{len(table)} error codes; checks for {', '.join(types)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
