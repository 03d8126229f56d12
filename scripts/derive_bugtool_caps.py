"""Derive ``xapi_sim/data/bugtool_capabilities.json``: xen-bugtool's capability table per
release, as ``xen-bugtool --capabilities`` prints it (``host.get_system_status_capabilities``).

Sources (mirrors, read with ``git show``; facts only):

- xenserver/status-report ``xen-bugtool``: the module-level ``cap(...)`` calls (read with
  ``ast``, never executed) and which ``update_capabilities`` rules the file has, at the last
  ``master`` commit before the date the release's xen-api source forked from xen-api
  ``master`` (``git merge-base``). status-report records no release per commit, so that date
  is the rule; the sets differ by era (CVSM and vncterm early, fcoe from 2015-09, vtpm,
  cron, block-scheduler and xen-bugtool from 2022-23).
- xapi-project/xen-api at the release's source ref: the bugtool plugins xapi installs in
  ``/etc/xensource/bugtool`` (``scripts/bugtool-plugin/NAME.xml`` with a ``NAME/``
  directory; ``xcp-rrdd-plugins`` where the Makefile installs it), which ``load_plugins``
  adds as capabilities after the built-in ones.

Usage: ``python3 scripts/derive_bugtool_caps.py [--check]``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import xml.dom.minidom
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "xapi_sim" / "data" / "bugtool_capabilities.json"
XEN_API = Path("/work/.mirror/xapi-project+xen-api/repo")
STATUS_REPORT = Path("/work/.mirror/xenserver+status-report/repo")

DEFAULTS = {
    "pii": "maybe",
    "min_size": -1,
    "max_size": -1,
    "min_time": -1,
    "max_time": -1,
    "mime": "text/plain",
    "checked": True,
    "hidden": False,
}
ORDER = list(DEFAULTS)

# update_capabilities rules, found by their text in the file
RULES = {
    "xenserver_logs_size": "update_cap_size(CAP_XENSERVER_LOGS",
    "fcoe_per_pif": "update_cap_time(CAP_FCOE",
    "network_per_device": "update_cap_time(CAP_NETWORK_STATUS",
    "databases_per_device": "update_cap_time(CAP_XENSERVER_DATABASES",
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def _value(node: ast.AST, env: dict):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        return _value(node.left, env) * _value(node.right, env)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_value(node.operand, env)
    raise ValueError(ast.dump(node))


def _statements(source: str) -> list[ast.stmt]:
    """The file's top-level constant assignments and ``cap(...)`` calls, each parsed alone
    (the file is Python 2 in older releases, so it is not parsed whole)."""
    out: list[ast.stmt] = []
    lines = source.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        head = line.split("=", 1)[0].strip()
        if line.startswith("cap(") or (head.isidentifier() and head.isupper() and "=" in line):
            chunk = line
            while chunk.count("(") > chunk.count(")") and i + 1 < len(lines):
                i += 1
                chunk += "\n" + lines[i]
            try:
                out.extend(ast.parse(chunk).body)
            except SyntaxError:
                pass
        i += 1
    return out


def cap_table(source: str) -> list[dict]:
    """The module-level ``cap(key, pii, min_size, ...)`` calls, in order."""
    env: dict = {}
    caps: dict[str, dict] = {}
    for stmt in _statements(source):
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target = stmt.targets[0]
            if isinstance(target, ast.Name):
                try:
                    env[target.id] = _value(stmt.value, env)
                except (ValueError, KeyError):
                    pass
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "cap":
            key = _value(call.args[0], env)
            entry = dict(DEFAULTS)
            for name, arg in zip(ORDER, call.args[1:], strict=False):
                entry[name] = _value(arg, env)
            for kw in call.keywords:
                entry[kw.arg] = _value(kw.value, env)
            caps[key] = {"key": key, **entry}
    return list(caps.values())


def plugins(ref: str) -> list[dict]:
    """xapi's bugtool plugins at ``ref``: ``load_plugins``' reading of each ``NAME.xml``."""
    files = git(XEN_API, "ls-tree", "-r", "--name-only", ref).split("\n")
    found = {}
    for path in files:
        parts = path.split("/")
        if parts[:2] == ["scripts", "bugtool-plugin"] and len(parts) == 3:
            name = parts[2].removesuffix(".xml")
            if path.endswith(".xml") and f"scripts/bugtool-plugin/{name}/stuff.xml" in files:
                found[name] = path
        if path == "ocaml/xcp-rrdd/bugtool-plugin/rrdd-plugins.xml":
            found["xcp-rrdd-plugins"] = path
    out = []
    for name in sorted(found):
        doc = xml.dom.minidom.parseString(git(XEN_API, "show", f"{ref}:{found[name]}"))
        el = doc.documentElement
        entry = dict(DEFAULTS)
        if el.getAttribute("pii") in ("no", "yes", "maybe", "if_customized"):
            entry["pii"] = el.getAttribute("pii")
        for attr in ("min_size", "max_size", "min_time", "max_time"):
            if el.getAttribute(attr) != "":
                entry[attr] = int(el.getAttribute(attr))
        if el.getAttribute("mime") in ("application/data", "text/plain"):
            entry["mime"] = el.getAttribute("mime")
        for attr in ("checked", "hidden"):
            val = el.getAttribute(attr).lower()
            if val in ("true", "false", "yes", "no"):
                entry[attr] = val in ("true", "yes")
        out.append({"key": name, **entry})
    return out


def derive() -> dict:
    releases = json.loads((ROOT / "xapi_sim" / "data" / "releases.json").read_text())["releases"]
    out: dict = {
        "source": (
            "xenserver/status-report xen-bugtool cap() table at the last master commit before "
            "the date the release's xen-api source forked from master; xapi's bugtool plugins "
            "(/etc/xensource/bugtool) from xen-api at the release's source ref; derived by "
            "scripts/derive_bugtool_caps.py"
        ),
        "releases": {},
    }
    for r in releases:
        ref = r["source"]["xen-api"]
        base = git(XEN_API, "merge-base", "master", ref).strip()
        date = git(XEN_API, "log", "-1", "--format=%cI", base).strip()
        commit = git(STATUS_REPORT, "rev-list", "-1", f"--before={date}", "master").strip()
        text = git(STATUS_REPORT, "show", f"{commit}:xen-bugtool")
        body = text.split("def update_capabilities", 1)[1].split("\ndef ", 1)[0]
        out["releases"][r["name"]] = {
            "status_report": commit,
            "forked": date[:10],
            "python": 2 if text.startswith("#!/usr/bin/env python\n") else 3,
            "rules": [name for name, needle in RULES.items() if needle in body],
            "caps": cap_table(text),
            "plugins": plugins(ref),
        }
    return out


def main() -> int:
    data = json.dumps(derive(), indent=1) + "\n"
    if "--check" in sys.argv:
        if OUT.read_text() != data:
            print(f"{OUT} is out of date", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
