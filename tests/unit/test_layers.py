"""The package's layers import only downwards, and never inside a function.

Order (issue "Safe core"): foundation (datamodel, errors, ids, clock, pure codecs, data
catalogues) -> store -> pure rules (levelling, checks) -> world -> dispatch -> classes ->
scenario / persist -> server / cli. A module may import modules of its own layer or below;
an import of a higher layer would be a cycle in the making, and an import of this package
inside a function is how cycles used to be dodged: both fail here. Imports of the standard
library or of third-party packages inside a function stay allowed (optional or slow imports,
each commented where it is).
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2] / "xapi_sim"

LAYERS = [
    (
        "foundation",
        [
            "datamodel",
            "errors",
            "ids",
            "clock",
            "where",
            "products",
            "catalogue",
            "rowcodec",
            "dbvalues",
            "dbxml",
            "metrics",
            "rrd",
            "wire",
            "wire.values",
            "wire.xmlrpc",
            "wire.jsonrpc",
            "wire.cliproto",
            "wire.ocaml",
            "wire.httpparse",
            "web",
            "vhd",
            "xva",
            "x509cert",
            "__init__",
        ],
    ),
    ("store", ["transactions", "store"]),
    ("rules", ["levelling", "checks", "vm_states", "db_gc", "netlogic"]),
    (
        "world",
        [
            "runtime",
            "rows",
            "xapi_start",
            "allowed",
            "world",
            "install_storage",
            "install_network",
            "install_certs",
            "host_guidances",
            "scenario_spec",
            "vdi_store",
            "cbt_log",
        ],
    ),
    ("dispatch", ["faults", "sessions", "tasks", "dispatch"]),
    ("classes", ["classes"]),
    (
        "loaders",
        [
            "scenario_objects",
            "scenario",
            "persist",
            "generate",
            "playback_hw",
            "playback",
            "playback_dump",
        ],
    ),
    (
        "front",
        [
            "wire.front",
            "wire.connection",
            "wire.serving",
            "wire.workers",
            "wire.timers",
            "wire.tls",
            "wire.rrd_http",
            "wire.routes",
            "handlers",
            "wire.http",
            "server",
            "xe_server",
            "xe",
            "multiproc_forward",
            "multiproc",
            "cli",
            "bench",
            "bench_load",
            "bench_floor",
            "testing",
            "__main__",
        ],
    ),
]


def layer_of(mod: str) -> int:
    """The layer of ``xapi_sim.<mod>``: the longest matching prefix wins."""
    best, rank = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (mod == p or mod.startswith(p + ".")) and len(p) > best:
                best, rank = len(p), i
    assert rank is not None, f"xapi_sim.{mod} is in no layer: add it to LAYERS"
    return rank


def modules():
    for f in sorted(ROOT.rglob("*.py")):
        rel = f.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        yield f, ".".join(parts) or "__init__", is_pkg


def imports(f, mod, is_pkg):
    """(target module relative to xapi_sim, line, inside a function) of every import."""
    tree = ast.parse(f.read_text())
    pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
    if mod == "__init__":
        pkg = []
    funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    inner = {id(n) for fn in funcs for n in ast.walk(fn) if n is not fn}
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
                if node.module:
                    targets.append(name)
                else:  # from . import a, b
                    targets += [".".join(base + [a.name]) for a in node.names]
            elif node.module and node.module.split(".")[0] == "xapi_sim":
                targets.append(node.module[len("xapi_sim.") :] or "__init__")
        elif isinstance(node, ast.Import):
            targets += [
                a.name[len("xapi_sim.") :] for a in node.names if a.name.startswith("xapi_sim.")
            ]
        for t in targets:
            yield t or "__init__", node.lineno, id(node) in inner


def test_every_module_has_a_layer():
    for _f, mod, _ in modules():
        layer_of(mod)


def test_imports_go_downwards_and_never_inside_functions():
    bad = []
    for f, mod, is_pkg in modules():
        mine = layer_of(mod)
        for target, line, inside in imports(f, mod, is_pkg):
            where = f"xapi_sim/{f.relative_to(ROOT)}:{line}"
            if inside:
                bad.append(f"{where}: imports xapi_sim.{target} inside a function")
            theirs = layer_of(target)
            if theirs > mine:
                bad.append(
                    f"{where}: {LAYERS[mine][0]} module xapi_sim.{mod} imports "
                    f"{LAYERS[theirs][0]} module xapi_sim.{target}"
                )
    assert not bad, "\n".join(bad)
