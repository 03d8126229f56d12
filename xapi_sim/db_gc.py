"""One pass of xapi's database garbage collector, over any table store.

Mirrors ``Db_gc.single_pass`` (xen-api ``ocaml/xapi/db_gc.ml``, Dundee): VDIs whose SR is
gone first (so that the VBD step sees them gone), then PIFs (with their VLAN, bond, tunnel
and -- for physical and bond PIFs -- metrics), VBDs (a CD of a live VM is emptied, anything
else goes with its metrics), crashdumps, VIFs (with metrics), PBDs, VGPUs, PGPUs, host
patches, host CPUs, host metrics no host uses, consoles. Tasks, sessions and messages are
timed out elsewhere (``tasks.py``, ``sessions.py``).

Two callers: the live pass a pool runs after storage changes (``install_storage``), and the
pass a master runs on a database it loads (``playback``). Each hands in a :class:`Tables`
adapter over its own rows and gets every change reported with xapi's reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from .datamodel import NULL_REF


class Tables(Protocol):
    def rows(self, cls: str) -> Iterable[tuple[str, dict]]: ...

    def exists(self, cls: str, ref: str) -> bool: ...

    def remove(self, cls: str, ref: str) -> object: ...

    def update(self, cls: str, ref: str, **fields: Any) -> object: ...


Report = Callable[[str, str, str], None]


def _connector(
    t: Tables, report: Report, cls: str, ends: tuple[tuple[str, str], ...], why: str
) -> list[tuple[str, dict]]:
    """``gc_connector``: the rows of ``cls`` one of whose ``(field, class)`` ends dangles."""
    dead = [
        (ref, row)
        for ref, row in list(t.rows(cls))
        if not all(t.exists(target, row[field]) for field, target in ends)
    ]
    for _ in dead:
        report(cls, "*", f"deleted by xapi's database GC ({why})")
    return dead


def _drop(t: Tables, report: Report, cls: str, ref: str, owner: str) -> None:
    """The metrics row of a collected ``owner``, if it is there."""
    if ref != NULL_REF and t.exists(cls, ref):
        t.remove(cls, ref)
        report(cls, "*", f"deleted by xapi's database GC (with its {owner})")


def single_pass(t: Tables, report: Report = lambda cls, field, why: None) -> None:
    """Apply one GC pass to ``t``; ``report(class, field, reason)`` hears every change."""
    for ref, _row in _connector(
        t, report, "VDI", (("SR", "SR"),), "gc_VDIs: its SR does not exist"
    ):
        t.remove("VDI", ref)
    for ref, row in _connector(
        t,
        report,
        "PIF",
        (("host", "host"), ("network", "network")),
        "gc_PIFs: its host or network does not exist",
    ):
        vlan, tunnels, bonds = (
            row.get("VLAN_master_of", NULL_REF),
            row.get("tunnel_access_PIF_of", []),
            row.get("bond_master_of", []),
        )
        if vlan == NULL_REF and not tunnels:
            _drop(t, report, "PIF_metrics", row.get("metrics", NULL_REF), "PIF")
        for cls, targets in (("VLAN", [vlan]), ("tunnel", tunnels), ("Bond", bonds)):
            for target in targets:
                if target != NULL_REF and t.exists(cls, target):
                    t.remove(cls, target)
                    report(cls, "*", "deleted by xapi's database GC (gc_PIFs: with its PIF)")
        t.remove("PIF", ref)
    for ref, row in list(t.rows("VBD")):
        vm_ok = t.exists("VM", row["VM"])
        if vm_ok and (row["empty"] or t.exists("VDI", row["VDI"])):
            continue
        if vm_ok and row["type"] == "CD":
            t.update("VBD", ref, VDI=NULL_REF, empty=True)
            report("VBD", "VDI", "a CD whose VDI does not exist: emptied (gc_VBDs)")
        else:
            _drop(t, report, "VBD_metrics", row.get("metrics", NULL_REF), "VBD")
            t.remove("VBD", ref)
            report(
                "VBD", "*", "deleted by xapi's database GC (gc_VBDs: its VM or VDI does not exist)"
            )
    for cls, ends, why, metrics in (
        ("crashdump", (("VM", "VM"), ("VDI", "VDI")), "gc_crashdumps: its VM or VDI", None),
        (
            "VIF",
            (("VM", "VM"), ("network", "network")),
            "gc_VIFs: its VM or network",
            "VIF_metrics",
        ),
        ("PBD", (("host", "host"), ("SR", "SR")), "gc_PBDs: its host or SR", None),
        ("VGPU", (("VM", "VM"), ("GPU_group", "GPU_group")), "gc_VGPUs: its VM or GPU group", None),
        ("PGPU", (("host", "host"),), "gc_PGPUs: its host", None),
        (
            "host_patch",
            (("host", "host"), ("pool_patch", "pool_patch")),
            "gc_Host_patches: its host or pool patch",
            None,
        ),
        ("host_cpu", (("host", "host"),), "gc_host_cpus: its host", None),
    ):
        for ref, row in _connector(t, report, cls, ends, why + " does not exist"):
            if metrics:
                _drop(t, report, metrics, row.get("metrics", NULL_REF), cls)
            t.remove(cls, ref)
    used = {row["metrics"] for _ref, row in t.rows("host")}
    for ref, _row in list(t.rows("host_metrics")):
        if ref not in used:
            t.remove("host_metrics", ref)
            report(
                "host_metrics",
                "*",
                "deleted by xapi's database GC (gc_host_metrics: no host has it)",
            )
    for ref, _row in _connector(
        t, report, "console", (("VM", "VM"),), "gc_consoles: its VM does not exist"
    ):
        t.remove("console", ref)
