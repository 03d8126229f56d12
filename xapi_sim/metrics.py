"""Simulated performance series: what xcp-rrdd would record for what is running.

Pure: no store, no clock, no threads. A series is a function of (world seed, owner uuid,
data-source name, time) and of the shape of what runs -- the VMs resident on a host, their
vCPUs, memory, VIFs and VBDs, the host's CPUs, memory accounting, PIFs and SRs -- so the
same ``serve --seed`` and the same clock give the same numbers, with no background sampler.

The data sources and their properties (name, description, units, type, default, min, max)
are the ones Dundee's xcp-rrdd reports (``xcp-rrdd`` v0.12.1 ``rrdd/xcp_rrdd.ml``:
``update_vcpus``, ``update_pcpus``, ``update_memory``, ``update_loadavg``,
``update_netdev``, ``read_mem_metrics``; the per-VBD and per-SR I/O sources of the iostat
plugin under the names Xen Orchestra reads, ``packages/xo-server/src/xapi-stats.mjs``).

A series is a constant level plus a few sinusoids (a day, a few hours, minutes, seconds)
whose amplitudes stay inside the source's range, so the mean of any window is exact and
cheap (``Series.mean``): a 60 s AVERAGE is the mean of its twelve 5 s points, as rrdd's
consolidation makes it. Gauges that mirror the database (memory) are constant. Sums are
sums: ``cpu_avg`` is the mean of the ``cpuN``, ``pif_aggr_rx`` the sum of the PIFs, an SR's
I/O the sum of the VBDs on it.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field
from functools import lru_cache

INF = math.inf
MiB = 1 << 20
# periods (seconds) of the waves, longest first: a week, a day, hours, minutes, seconds
PERIODS = (604800.0, 86400.0, 10800.0, 1500.0, 170.0, 23.0)


@dataclass(frozen=True)
class DsDef:
    """One data source as rrdd describes it (``Ds.ds`` / ``Data_source.t``)."""

    name: str
    description: str
    units: str
    ty: str  # GAUGE | DERIVE | ABSOLUTE (values here are already rates)
    default: bool
    min: float = -INF
    max: float = INF


@dataclass(frozen=True)
class Series:
    """``level + sum(a * sin(2 pi t / p + phi))``: exact window means, no sampling."""

    level: float
    waves: tuple[tuple[float, float, float], ...] = ()

    def at(self, t: float) -> float:
        return self.level + sum(a * math.sin(2 * math.pi * t / p + ph) for a, p, ph in self.waves)

    def mean(self, t0: float, t1: float) -> float:
        """The mean over ``[t0, t1]`` (the value at ``t0`` for an empty window)."""
        if t1 <= t0:
            return self.at(t0)
        width = t1 - t0
        total = self.level
        for a, p, ph in self.waves:
            w = 2 * math.pi / p
            total += a * (math.cos(w * t0 + ph) - math.cos(w * t1 + ph)) / (w * width)
        return total


def combine(parts: list[tuple[float, Series]]) -> Series:
    """``sum(weight * series)``, exactly."""
    level = sum(w * s.level for w, s in parts)
    waves = tuple((w * a, p, ph) for w, s in parts for a, p, ph in s.waves)
    return Series(level, waves)


def _rng(seed: int, owner: str, name: str) -> random.Random:
    digest = hashlib.blake2b(f"{seed}|{owner}|{name}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


@lru_cache(maxsize=65536)
def wavy(seed: int, owner: str, name: str, lo: float, hi: float, spread: float) -> Series:
    """A series whose level is drawn in ``[lo, hi]`` and whose waves never leave
    ``[level * (1 - spread), level * (1 + spread)]`` (so never below zero)."""
    r = _rng(seed, owner, name)
    level = r.uniform(lo, hi)
    budget = level * spread
    weights = [r.uniform(0.3, 1.0) for _ in PERIODS]
    scale = budget / sum(weights)
    waves = tuple(
        (w * scale, p * r.uniform(0.85, 1.15), r.uniform(0, 2 * math.pi))
        for w, p in zip(weights, PERIODS, strict=True)
    )
    return Series(level, waves)


def fraction(seed: int, owner: str, name: str, level: float) -> Series:
    """A fraction around ``level`` (clamped to [0.005, 0.95]) that stays in [0, 1]."""
    level = min(max(level, 0.005), 0.95)
    spread = min(0.8, (1 - level) / level * 0.8)
    base = wavy(seed, owner, name, 1.0, 1.0, spread)
    return Series(level, tuple((a * level, p, ph) for a, p, ph in base.waves))


def constant(value: float) -> Series:
    return Series(float(value))


# -- shapes: what runs ------------------------------------------------------------------------


@dataclass(frozen=True)
class Vbd:
    device: str  # xvda, hda, ...
    sr_uuid: str


@dataclass(frozen=True)
class VmShape:
    """A running (or paused) domain as rrdd sees it."""

    uuid: str
    vcpus: int
    memory: int  # bytes the domain holds (VM_metrics.memory_actual)
    memory_target: int  # VM.memory_target
    vifs: tuple[int, ...] = ()  # VIF device numbers
    vbds: tuple[Vbd, ...] = ()
    paused: bool = False
    control_domain: bool = False
    guest_agent: bool = False  # memory_internal_free only with a guest agent


@dataclass(frozen=True)
class HostShape:
    uuid: str
    pcpus: int
    memory_total: int  # bytes (host_metrics)
    memory_free: int
    pifs: tuple[str, ...] = ()  # devices, eth0 ...
    vms: tuple[VmShape, ...] = field(default_factory=tuple)


# -- catalogues --------------------------------------------------------------------------------


def vm_catalogue(vm: VmShape) -> list[DsDef]:
    """Every data source rrdd reports for the domain, default or not."""
    out = [
        DsDef(f"cpu{i}", f"CPU{i} usage", "(fraction)", "DERIVE", True, 0.0, 1.0)
        for i in range(vm.vcpus)
    ]
    for name, text in (
        ("fullrun", "Fraction of time that all VCPUs are running"),
        ("full_contention", "Fraction of time that all VCPUs are runnable (i.e., waiting for CPU)"),
        (
            "concurrency_hazard",
            "Fraction of time that some VCPUs are running and some are runnable",
        ),
        ("blocked", "Fraction of time that all VCPUs are blocked or offline"),
        ("partial_run", "Fraction of time that some VCPUs are running, and some are blocked"),
        (
            "partial_contention",
            "Fraction of time that some VCPUs are runnable and some are blocked",
        ),
    ):
        out.append(DsDef(f"runstate_{name}", text, "(fraction)", "DERIVE", False, 0.0))
    out.append(DsDef("memory", "Memory currently allocated to VM", "B", "GAUGE", True, 0.0))
    if vm.guest_agent and not vm.control_domain:
        out.append(
            DsDef(
                "memory_internal_free",
                "Memory used as reported by the guest agent",
                "KiB",
                "GAUGE",
                True,
                0.0,
            )
        )
    out.append(DsDef("memory_target", "Target of VM balloon driver", "B", "GAUGE", True, 0.0))
    for d in vm.vifs:
        out += [
            DsDef(
                f"vif_{d}_tx",
                f"Bytes per second transmitted on virtual interface number '{d}'",
                "B/s",
                "DERIVE",
                True,
                0.0,
            ),
            DsDef(
                f"vif_{d}_rx",
                f"Bytes per second received on virtual interface number '{d}'",
                "B/s",
                "DERIVE",
                True,
                0.0,
            ),
            DsDef(
                f"vif_{d}_rx_errors",
                f"Receive errors per second on virtual interface number '{d}'",
                "err/s",
                "DERIVE",
                False,
                0.0,
            ),
            DsDef(
                f"vif_{d}_tx_errors",
                f"Transmit errors per second on virtual interface number '{d}'",
                "err/s",
                "DERIVE",
                False,
                0.0,
            ),
        ]
    for b in vm.vbds:
        v = b.device
        out += [
            DsDef(f"vbd_{v}_read", f"Reads from device '{v}' in B/s", "B/s", "GAUGE", True, 0.0),
            DsDef(f"vbd_{v}_write", f"Writes to device '{v}' in B/s", "B/s", "GAUGE", True, 0.0),
            DsDef(
                f"vbd_{v}_read_latency",
                f"Reads from device '{v}' in microseconds",
                "\u03bcs",
                "GAUGE",
                True,
                0.0,
            ),
            DsDef(
                f"vbd_{v}_write_latency",
                f"Writes to device '{v}' in microseconds",
                "\u03bcs",
                "GAUGE",
                True,
                0.0,
            ),
            DsDef(
                f"vbd_{v}_iops_read", "Read requests per second", "requests/s", "GAUGE", False, 0.0
            ),
            DsDef(
                f"vbd_{v}_iops_write",
                "Write requests per second",
                "requests/s",
                "GAUGE",
                False,
                0.0,
            ),
            DsDef(
                f"vbd_{v}_iops_total", "I/O requests per second", "requests/s", "GAUGE", False, 0.0
            ),
        ]
    return out


def host_catalogue(host: HostShape) -> list[DsDef]:
    out = [DsDef("cpu_avg", "Average physical cpu usage", "(fraction)", "DERIVE", True, 0.0, 1.0)]
    out += [
        DsDef(f"cpu{i}", f"Physical cpu usage for cpu {i}", "(fraction)", "DERIVE", True, 0.0, 1.0)
        for i in range(host.pcpus)
    ]
    out += [
        DsDef("memory_total_kib", "Total amount of memory in the host", "KiB", "GAUGE", True, 0.0),
        DsDef("memory_free_kib", "Total amount of free memory", "KiB", "GAUGE", True, 0.0),
        DsDef("loadavg", "Domain0 loadavg", "(fraction)", "GAUGE", True),
        DsDef(
            "pif_aggr_rx",
            "Bytes per second received on all physical interfaces",
            "B/s",
            "DERIVE",
            True,
            0.0,
        ),
        DsDef(
            "pif_aggr_tx",
            "Bytes per second sent on all physical interfaces",
            "B/s",
            "DERIVE",
            True,
            0.0,
        ),
    ]
    for dev in host.pifs:
        out += [
            DsDef(
                f"pif_{dev}_rx",
                f"Bytes per second received on physical interface {dev}",
                "B/s",
                "DERIVE",
                True,
                0.0,
            ),
            DsDef(
                f"pif_{dev}_tx",
                f"Bytes per second sent on physical interface {dev}",
                "B/s",
                "DERIVE",
                True,
                0.0,
            ),
            DsDef(
                f"pif_{dev}_rx_errors",
                f"Receive errors per second on physical interface {dev}",
                "err/s",
                "DERIVE",
                False,
                0.0,
            ),
            DsDef(
                f"pif_{dev}_tx_errors",
                f"Transmit errors per second on physical interface {dev}",
                "err/s",
                "DERIVE",
                False,
                0.0,
            ),
        ]
    for sr in host_srs(host):
        s = sr[:8]
        out += [
            DsDef(f"io_throughput_read_{s}", "Data read from SR", "MiB/s", "GAUGE", True, 0.0),
            DsDef(f"io_throughput_write_{s}", "Data written to SR", "MiB/s", "GAUGE", True, 0.0),
            DsDef(f"io_throughput_total_{s}", "All SR I/O", "MiB/s", "GAUGE", True, 0.0),
            DsDef(f"iops_read_{s}", "Read requests per second", "requests/s", "GAUGE", True, 0.0),
            DsDef(f"iops_write_{s}", "Write requests per second", "requests/s", "GAUGE", True, 0.0),
            DsDef(f"iops_total_{s}", "I/O requests per second", "requests/s", "GAUGE", True, 0.0),
            DsDef(f"read_latency_{s}", "Read latency", "\u03bcs", "GAUGE", True, 0.0),
            DsDef(f"write_latency_{s}", "Write latency", "\u03bcs", "GAUGE", True, 0.0),
        ]
    return out


def host_srs(host: HostShape) -> list[str]:
    """The SRs the host's running domains do I/O on, in first-seen order."""
    seen: dict[str, None] = {}
    for vm in host.vms:
        for b in vm.vbds:
            seen.setdefault(b.sr_uuid, None)
    return list(seen)


# -- series ------------------------------------------------------------------------------------


def vm_series(seed: int, vm: VmShape, name: str) -> Series:
    """The series of one of the VM's data sources (``KeyError`` for an unknown name)."""
    u = vm.uuid
    idle = vm.paused
    if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) < vm.vcpus:
        if idle:
            return constant(0.0)
        load = _rng(seed, u, "load").uniform(0.02, 0.5)
        return fraction(seed, u, name, load * _rng(seed, u, name).uniform(0.6, 1.4))
    if name.startswith("runstate_"):
        return constant(0.0) if idle else fraction(seed, u, name, 0.1)
    if name == "memory":
        return constant(vm.memory)
    if name == "memory_target":
        return constant(vm.memory_target)
    if name == "memory_internal_free" and vm.guest_agent and not vm.control_domain:
        kib = vm.memory / 1024
        return wavy(seed, u, name, 0.25 * kib, 0.55 * kib, 0.3)
    for d in vm.vifs:
        if name in (f"vif_{d}_rx", f"vif_{d}_tx"):
            return constant(0.0) if idle else wavy(seed, u, name, 2e3, 1.5e6, 0.8)
        if name in (f"vif_{d}_rx_errors", f"vif_{d}_tx_errors"):
            return constant(0.0)
    for b in vm.vbds:
        v = b.device
        if name in (f"vbd_{v}_read", f"vbd_{v}_write"):
            return constant(0.0) if idle else wavy(seed, u, name, 4e3, 4e6, 0.8)
        if name in (f"vbd_{v}_read_latency", f"vbd_{v}_write_latency"):
            return wavy(seed, u, name, 80.0, 2500.0, 0.5)
        if name in (f"vbd_{v}_iops_read", f"vbd_{v}_iops_write"):
            size = _rng(seed, u, f"{v}_iosize").choice((4096.0, 16384.0, 65536.0))
            return combine([(1 / size, vm_series(seed, vm, name.replace("iops_", "")))])
        if name == f"vbd_{v}_iops_total":
            return combine(
                [
                    (1.0, vm_series(seed, vm, f"vbd_{v}_iops_read")),
                    (1.0, vm_series(seed, vm, f"vbd_{v}_iops_write")),
                ]
            )
    raise KeyError(name)


def host_series(seed: int, host: HostShape, name: str) -> Series:
    u = host.uuid
    if name == "cpu_avg":
        n = max(host.pcpus, 1)
        return combine([(1 / n, host_series(seed, host, f"cpu{i}")) for i in range(host.pcpus)])
    if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) < host.pcpus:
        running = sum(vm.vcpus for vm in host.vms if not vm.paused)
        load = 0.01 + 0.3 * min(1.0, running / max(host.pcpus, 1))
        return fraction(seed, u, name, load * _rng(seed, u, name).uniform(0.7, 1.3))
    if name == "memory_total_kib":
        return constant(host.memory_total // 1024)
    if name == "memory_free_kib":
        return constant(host.memory_free // 1024)
    if name == "loadavg":
        return wavy(seed, u, name, 0.05, 0.3 + 0.05 * len(host.vms), 0.7)
    if name in ("pif_aggr_rx", "pif_aggr_tx"):
        d = name[-2:]
        return combine([(1.0, host_series(seed, host, f"pif_{p}_{d}")) for p in host.pifs])
    traffic = sum(
        wavy(seed, vm.uuid, f"vif_{d}_rx", 2e3, 1.5e6, 0.8).level
        for vm in host.vms
        for d in vm.vifs
        if not vm.paused
    )
    for p in host.pifs:
        if name in (f"pif_{p}_rx", f"pif_{p}_tx"):
            share = traffic / max(len(host.pifs), 1)
            return wavy(seed, u, name, 500.0 + 0.5 * share, 4e3 + share, 0.7)
        if name in (f"pif_{p}_rx_errors", f"pif_{p}_tx_errors"):
            return constant(0.0)
    for sr in host_srs(host):
        s = sr[:8]
        vbds = [(vm, b) for vm in host.vms for b in vm.vbds if b.sr_uuid == sr]
        for op in ("read", "write"):
            if name == f"io_throughput_{op}_{s}":
                return combine(
                    [(1 / MiB, vm_series(seed, vm, f"vbd_{b.device}_{op}")) for vm, b in vbds]
                )
            if name == f"iops_{op}_{s}":
                return combine(
                    [(1.0, vm_series(seed, vm, f"vbd_{b.device}_iops_{op}")) for vm, b in vbds]
                )
            if name == f"{op}_latency_{s}":
                n = max(len(vbds), 1)
                return combine(
                    [(1 / n, vm_series(seed, vm, f"vbd_{b.device}_{op}_latency")) for vm, b in vbds]
                )
        if name in (f"io_throughput_total_{s}", f"iops_total_{s}"):
            stem = name[: -len(f"total_{s}")]
            return combine(
                [
                    (1.0, host_series(seed, host, f"{stem}read_{s}")),
                    (1.0, host_series(seed, host, f"{stem}write_{s}")),
                ]
            )
    raise KeyError(name)
