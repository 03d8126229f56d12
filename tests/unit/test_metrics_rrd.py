"""Properties of the simulated series (``xapi_sim/metrics.py``) and of rrdd's archives and
formats (``xapi_sim/rrd.py``, after xcp-rrd v1.0.0 ``rrd.ml`` / ``rrd_updates.ml``)."""

from __future__ import annotations

import math
import threading
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xapi_sim import metrics, rrd
from xapi_sim.classes.data_sources import RrdState

UUIDS = st.uuids().map(str)
SEEDS = st.integers(0, 2**32)
TIMES = st.floats(1.5e9, 2.0e9)


def vm_shape(uuid, vcpus=2, vifs=(0,), vbds=(("xvda", "sr-1"),), paused=False):
    return metrics.VmShape(
        uuid=uuid,
        vcpus=vcpus,
        memory=2 << 30,
        memory_target=2 << 30,
        vifs=tuple(vifs),
        vbds=tuple(metrics.Vbd(d, s) for d, s in vbds),
        paused=paused,
        guest_agent=True,
    )


def host_shape(uuid, vms=(), pcpus=8, pifs=("eth0", "eth1")):
    return metrics.HostShape(uuid, pcpus, 64 << 30, 40 << 30, tuple(pifs), tuple(vms))


@settings(max_examples=60, deadline=None)
@given(SEEDS, UUIDS, st.integers(1, 16), TIMES, st.sampled_from([5, 60, 3600, 86400]))
def test_vm_series_stay_within_their_sources_range(seed, uuid, vcpus, t, width):
    vm = vm_shape(uuid, vcpus=vcpus)
    for d in metrics.vm_catalogue(vm):
        s = metrics.vm_series(seed, vm, d.name)
        for v in (s.at(t), s.mean(t - width, t)):
            assert d.min <= v <= d.max, (d.name, v)
            assert v >= 0.0


@settings(max_examples=40, deadline=None)
@given(SEEDS, UUIDS, TIMES)
def test_a_consolidated_average_is_the_mean_of_its_points(seed, uuid, t):
    """A 60 s AVERAGE is the mean of the twelve 5 s points in its window."""
    s = metrics.vm_series(seed, vm_shape(uuid), "cpu1")
    end = rrd.get_times(t, 60)
    points = [s.mean(end - 60 + 5 * i, end - 55 + 5 * i) for i in range(12)]
    assert math.isclose(s.mean(end - 60, end), sum(points) / 12, rel_tol=1e-9, abs_tol=1e-12)


@settings(max_examples=40, deadline=None)
@given(SEEDS, UUIDS, UUIDS, TIMES)
def test_host_sums_are_sums(seed, h, v, t):
    vm = vm_shape(v, vbds=(("xvda", "sr-a"), ("xvdb", "sr-a")))
    host = host_shape(h, vms=(vm,))

    def at(name):
        return metrics.host_series(seed, host, name).mean(t - 5, t)

    assert math.isclose(
        at("cpu_avg"), sum(at(f"cpu{i}") for i in range(8)) / 8, rel_tol=1e-9, abs_tol=1e-12
    )
    assert math.isclose(at("pif_aggr_rx"), at("pif_eth0_rx") + at("pif_eth1_rx"), rel_tol=1e-9)
    reads = sum(
        metrics.vm_series(seed, vm, f"vbd_{d}_read").mean(t - 5, t) for d in ("xvda", "xvdb")
    )
    assert math.isclose(at("io_throughput_read_sr-a"), reads / metrics.MiB, rel_tol=1e-9)
    assert at("memory_free_kib") == (40 << 30) // 1024


@settings(max_examples=40, deadline=None)
@given(SEEDS, UUIDS, st.integers(1, 8))
def test_a_vms_sources_follow_what_it_runs(seed, uuid, vcpus):
    vm = vm_shape(uuid, vcpus=vcpus, vifs=(0, 3))
    names = {d.name for d in metrics.vm_catalogue(vm)}
    assert {n for n in names if n[:3] == "cpu"} == {f"cpu{i}" for i in range(vcpus)}
    assert {"vif_0_rx", "vif_3_tx", "vbd_xvda_read", "memory", "memory_target"} <= names
    paused = vm_shape(uuid, vcpus=vcpus, paused=True)
    assert metrics.vm_series(seed, paused, "cpu0").at(1.7e9) == 0.0


@settings(max_examples=30, deadline=None)
@given(SEEDS, SEEDS, UUIDS, TIMES)
def test_series_are_a_function_of_seed_uuid_and_time(s1, s2, uuid, t):
    a = metrics.vm_series(s1, vm_shape(uuid), "cpu0").mean(t - 5, t)
    assert a == metrics.vm_series(s1, vm_shape(uuid), "cpu0").mean(t - 5, t)
    if s1 != s2:
        assert a != metrics.vm_series(s2, vm_shape(uuid), "cpu0").mean(t - 5, t)


def _rrd(last, min_max=True, born=None):
    vm = vm_shape("00000000-0000-0000-0000-000000000001")
    sources = tuple(
        rrd.Source(d, metrics.vm_series(7, vm, d.name), born)
        for d in metrics.vm_catalogue(vm)
        if d.default
    )
    return rrd.Rrd(last, sources, rrd.create_rras(min_max))


@settings(max_examples=60, deadline=None)
@given(TIMES, st.integers(1, 400 * 86400), st.integers(0, 100000))
def test_the_archive_is_chosen_by_start_and_interval(last, back, interval):
    """``find_best_rras``: the first archive whose span holds ``start`` with at least
    ``interval`` a row, else the yearly one."""
    r = _rrd(last)
    start = int(last) - back
    if interval // 5 > 17280:  # no archive has rows that long: List.hd [] in create_multi
        with pytest.raises(IndexError):
            rrd.export([("vm:x:", r)], start, interval, "AVERAGE")
        return
    u = rrd.export([("vm:x:", r)], start, interval, "AVERAGE")
    last_pdp = rrd.get_times(last, 5)
    fits = [
        5 * pdps
        for rows, pdps in rrd.TIMESCALES
        if pdps >= interval // 5 and start > last_pdp - 5 * rows * pdps
    ]
    assert u.step == (fits[0] if fits else 86400)
    assert len(u.rows) <= dict((5 * p, n) for n, p in rrd.TIMESCALES)[u.step]
    times = [t for t, _ in u.rows]
    assert times == sorted(times, reverse=True)
    assert all(t >= start and t % u.step == 0 for t in times)
    assert u.end == rrd.get_times(last, u.step)


@settings(max_examples=30, deadline=None)
@given(TIMES, st.sampled_from([7200, 7 * 86400, 300 * 86400]))
def test_min_average_max_are_ordered(last, back):
    r = _rrd(last)
    u = rrd.export([("host:h:", r)], int(last) - back, 0, None)
    n = len(r.sources)
    assert len(u.legend) == 3 * n  # AVERAGE, MIN, MAX of each source
    for _, vals in u.rows:
        for i in range(n):
            avg, lo, hi = vals[i], vals[n + i], vals[2 * n + i]
            assert lo <= avg <= hi


def test_unknown_before_a_source_existed():
    last = 1.8e9
    r = _rrd(last, born=last - 60)
    u = rrd.export([("vm:x:", r)], int(last) - 600, 5, "AVERAGE")
    for t, vals in u.rows:
        assert all(math.isnan(v) for v in vals) == (t - 5 < last - 60 - 5 * 0.5)


def test_f_to_s_is_rrd_utils():
    assert [rrd.f_to_s(v) for v in (0.0, 1.0, -2.5, math.nan, math.inf, -math.inf)] == [
        "0.0",
        "1.0000",
        "-2.5000",
        "NaN",
        "Infinity",
        "-Infinity",
    ]


def test_updates_xml_and_json_carry_the_same_rows():
    r = _rrd(1.8e9)
    u = rrd.export([("vm:x:", r)], int(1.8e9) - 600, 5, None)
    root = ET.fromstring(rrd.updates_xml(u).split("\n", 1)[1])
    meta = root.find("meta")
    assert int(meta.findtext("rows")) == len(root.find("data")) == len(u.rows)
    assert [e.text for e in meta.find("legend")] == list(u.legend)
    text = rrd.updates_json(u)
    assert text.startswith("{meta: {start:") and '"AVERAGE:vm:x:cpu0"' in text
    dump = ET.fromstring(rrd.rrd_xml(r).split("\n", 1)[1])
    assert [e.findtext("name") for e in dump.findall("ds")] == r.names()
    assert [len(x.find("database")) for x in dump.findall("rra")] == [rra.row_cnt for rra in r.rras]


class _World:
    class ids:
        seed = 3

    def service(self, cls):
        return cls(self)


def test_rrd_state_under_many_threads():
    """Records and forgets from many threads: every recorded name present once, forgotten
    ones gone, defaults' resets kept."""
    state = RrdState(_World())
    vm = vm_shape("u")
    extra = [d for d in metrics.vm_catalogue(vm) if not d.default]
    default = next(d for d in metrics.vm_catalogue(vm) if d.default)
    errors = []

    def work(i):
        try:
            for k in range(200):
                d = extra[(i + k) % len(extra)]
                state.record("u", d, float(k))
                state.forget("u", default, float(k))
                if k % 3 == 0:
                    state.forget("u", d, float(k))
                state.view("u", metrics.vm_catalogue(vm))
        except Exception as e:  # noqa: BLE001 -- reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    names = [d.name for d, _ in state.view("u", metrics.vm_catalogue(vm))]
    assert len(names) == len(set(names))
    assert default.name in names
