"""Round-robin databases as xcp-rrdd serves them: archives, ``/rrd_updates`` and dumps.

Pure: an ``Rrd`` is a view -- data sources with their series (``metrics.py``), the archives
rrdd creates, and the time of the last update -- and the rows are computed on demand.
Mirrors xcp-rrd v1.0.0 (the library of Dundee's xcp-rrdd): ``lib/rrd.ml``
(``find_best_rras``, ``get_times``, ``query_named_ds``, ``xml_to_output``,
``json_to_string``), ``lib/rrd_updates.ml`` (``create_multi``, ``xml_of``, ``json_of_t``)
and ``lib/rrd_utils.ml`` (``f_to_s``); archives from xcp-rrdd v0.12.1
``rrdd/rrdd_shared.ml`` (``timescales``) and ``rrdd/rrdd_monitor.ml`` (``create_rras``).

Archives: one PDP every 5 s; 120 rows of 1 PDP (10 minutes), 120 of 12 (2 hours), 168 of
720 (a week), 366 of 17280 (a year). A host's RRD has AVERAGE, MIN and MAX for the
consolidated archives (xff 1.0), AVERAGE only for the 5 s one (xff 0.5); a VM's has AVERAGE
only, unless min/max were asked for (the pool's ``create_min_max_in_new_VM_RRDs``).

Values before a data source existed (``born``) are unknown: a consolidated point is NaN when
more than ``xff`` of its window is unknown, else the mean of the known part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .metrics import DsDef, Series

STEP = 5
TIMESCALES = ((120, 1), (120, 12), (168, 720), (366, 17280))
CFS = ("AVERAGE", "MIN", "MAX", "LAST")
MINMAX_SAMPLES = 8  # sub-windows sampled for MIN/MAX of long windows


@dataclass(frozen=True)
class Rra:
    cf: str
    row_cnt: int
    pdp_cnt: int
    xff: float


def create_rras(min_max: bool) -> tuple[Rra, ...]:
    """``Rrdd_monitor.create_rras``."""
    out: list[Rra] = []
    for rows, pdps in TIMESCALES:
        if pdps > 1 and min_max:
            out += [Rra(cf, rows, pdps, 1.0) for cf in ("AVERAGE", "MIN", "MAX")]
        else:
            out.append(Rra("AVERAGE", rows, pdps, 0.5))
    return tuple(out)


@dataclass(frozen=True)
class Source:
    ds: DsDef
    series: Series
    born: float | None = None  # the source's values before this time are unknown


@dataclass(frozen=True)
class Rrd:
    last_updated: float
    sources: tuple[Source, ...]
    rras: tuple[Rra, ...] = field(default_factory=lambda: create_rras(False))
    timestep: int = STEP

    def names(self) -> list[str]:
        return [s.ds.name for s in self.sources]


class NoRraAvailable(Exception):
    """``Rrd.No_RRA_Available``."""


class InvalidDataSource(Exception):
    """``Rrd.Invalid_data_source``."""


def get_times(time: float, step: int) -> int:
    """``Rrd.get_times``: the start of the step holding ``time``."""
    return step * (int(time) // step)


def cdp(src: Source, rra: Rra, end: int, step: int) -> float:
    """The consolidated point of ``src`` for the window ``(end - width, end]``."""
    width = step * rra.pdp_cnt
    start = end - width
    known_from = start if src.born is None else max(start, _pdp_ceil(src.born, step))
    if known_from >= end or (known_from - start) / width > rra.xff:
        return math.nan
    s = src.series
    if rra.cf == "AVERAGE":
        return s.mean(known_from, end)
    if rra.cf == "LAST":
        return s.mean(end - step, end)
    n = (end - known_from) // step
    if n <= 1:
        return s.mean(known_from, end)
    picks = range(n) if n <= 2 * MINMAX_SAMPLES else _spread(n, MINMAX_SAMPLES)
    vals = [s.mean(known_from + i * step, known_from + (i + 1) * step) for i in picks]
    avg = s.mean(known_from, end)
    return min(min(vals), avg) if rra.cf == "MIN" else max(max(vals), avg)


def _pdp_ceil(t: float, step: int) -> int:
    return step * math.ceil(t / step)


def _spread(n: int, k: int) -> list[int]:
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def find_best_rras(rrd: Rrd, pdp_interval: int, cf: str | None, start: int) -> list[Rra]:
    """``Rrd.find_best_rras``: the first archive (of ``cf``) covering ``start`` with at
    least ``pdp_interval`` PDPs a row, and its siblings; else the longest archives."""
    rras = [r for r in rrd.rras if cf is None or r.cf == cf]
    if not rras:
        raise NoRraAvailable()
    last_pdp = get_times(rrd.last_updated, rrd.timestep)

    def contains(t: int, r: Rra) -> bool:
        return r.pdp_cnt >= pdp_interval and t > last_pdp - rrd.timestep * r.row_cnt * r.pdp_cnt

    first = next((r for r in rras if contains(start, r)), None)
    if first is not None:
        return [r for r in rras if r.row_cnt == first.row_cnt and r.pdp_cnt == first.pdp_cnt]
    last = rras[-1]
    newstart = 1 + last_pdp - rrd.timestep * last.row_cnt * last.pdp_cnt
    return [r for r in rras if contains(newstart, r)]


def query_named_ds(rrd: Rrd, now: float, name: str) -> float:
    """``Rrd.query_named_ds`` with ``CF_Average``: the newest point of the best archive."""
    src = next((s for s in rrd.sources if s.ds.name == name), None)
    if src is None:
        raise InvalidDataSource(name)
    rra = find_best_rras(rrd, 0, "AVERAGE", int(now))[0]
    ts = rrd.timestep * rra.pdp_cnt
    return cdp(src, rra, get_times(rrd.last_updated, ts), rrd.timestep)


# -- /rrd_updates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Updates:
    start: int
    step: int
    end: int
    legend: tuple[str, ...]
    rows: tuple[tuple[int, tuple[float, ...]], ...]


def export(prefixed: list[tuple[str, Rrd]], start: int, interval: int, cf: str | None) -> Updates:
    """``Rrd_updates.create_multi``: rows newest first, legends ``CF:prefix+name``.
    ``IndexError`` without any RRD or any archive with rows of ``interval``, as
    ``List.hd`` fails."""
    first_rrd = prefixed[0][1]
    pdp_interval = int(interval / first_rrd.timestep)
    prefixed = [(p, r) for p, r in prefixed if r.timestep == first_rrd.timestep]
    if start < 0:
        start = min(start + int(r.last_updated) for _, r in prefixed)
    chosen = [find_best_rras(r, pdp_interval, cf, start) for _, r in prefixed]
    legend: list[str] = []
    for (prefix, r), rras in zip(prefixed, chosen, strict=True):
        for rra in rras:
            legend += [f"{rra.cf}:{prefix}{name}" for name in r.names()]
    first_rra = chosen[0][0]
    columns = [
        (r, rra, src)
        for (_, r), rras in zip(prefixed, chosen, strict=True)
        for rra in rras
        if rra.pdp_cnt == first_rra.pdp_cnt and rra.row_cnt == first_rra.row_cnt
        for src in r.sources
    ]
    ts = first_rrd.timestep * first_rra.pdp_cnt
    last_cdp = get_times(first_rrd.last_updated, ts)
    first_cdp = get_times(start, ts) + ts
    rows = []
    i = 0
    while i < first_rra.row_cnt:
        t = last_cdp - i * ts
        if t < start:
            break
        rows.append((t, tuple(cdp(src, rra, t, r.timestep) for r, rra, src in columns)))
        i += 1
    return Updates(first_cdp, ts, last_cdp, tuple(legend), tuple(rows))


def f_to_s(f: float) -> str:
    """``Rrd_utils.f_to_s``."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "Infinity" if f > 0 else "-Infinity"
    if f == 0.0:
        return "0.0"
    return f"{f:0.4f}"


XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def updates_xml(u: Updates) -> str:
    """``Rrd_updates.xml_of`` (Xmlm, no indentation)."""
    out = [XML_DECL, "<xport><meta>"]
    out.append(f"<start>{u.start}</start><step>{u.step}</step><end>{u.end}</end>")
    out.append(f"<rows>{len(u.rows)}</rows><columns>{len(u.legend)}</columns><legend>")
    out += [f"<entry>{_esc(e)}</entry>" for e in u.legend]
    out.append("</legend></meta><data>")
    for t, vals in u.rows:
        out.append(f"<row><t>{t}</t>" + "".join(f"<v>{f_to_s(v)}</v>" for v in vals) + "</row>")
    out.append("</data></xport>")
    return "".join(out)


def updates_json(u: Updates) -> str:
    """``Rrd_updates.json_of_t``: unquoted keys (JSON5, not JSON). With no row it fails
    (``t.data.(-1)``): ``IndexError``."""
    if not u.rows:
        raise IndexError("index out of bounds")
    head = (
        f"{{meta: {{start:{u.start},step:{u.step},end:{u.end},rows:{len(u.rows)},"
        f"columns:{len(u.legend)},legend:[" + ",".join(f'"{e}"' for e in u.legend) + "]},"
    )
    data = ",".join(
        f"{{t:{t},values:[" + ",".join(f_to_s(v) for v in vals) + "]}" for t, vals in u.rows
    )
    return head + "data:[" + data + "]}"


# -- full dumps (/host_rrd, /vm_rrd) -----------------------------------------------------------


def _rra_rows(rrd: Rrd, rra: Rra) -> list[list[float]]:
    """The archive's rows, oldest first, one value per source."""
    ts = rrd.timestep * rra.pdp_cnt
    last = get_times(rrd.last_updated, ts)
    times = [last - i * ts for i in range(rra.row_cnt - 1, -1, -1)]
    return [[cdp(src, rra, t, rrd.timestep) for src in rrd.sources] for t in times]


def _last_ds(rrd: Rrd, src: Source) -> float:
    return src.series.at(rrd.last_updated)


def rrd_xml(rrd: Rrd) -> str:
    """``Rrd.xml_to_output``."""
    out = [XML_DECL, f"<rrd><version>0003</version><step>{rrd.timestep}</step>"]
    out.append(f"<lastupdate>{int(rrd.last_updated)}</lastupdate>")
    for src in rrd.sources:
        d = src.ds
        out.append(
            f"<ds><name>{_esc(d.name)}</name><type>{d.ty}</type>"
            f"<minimal_heartbeat>{f_to_s(300.0)}</minimal_heartbeat>"
            f"<min>{f_to_s(d.min)}</min><max>{f_to_s(d.max)}</max>"
            f"<last_ds>{f_to_s(_last_ds(rrd, src))}</last_ds>"
            "<value>0.0</value><unknown_sec>0</unknown_sec></ds>"
        )
    for rra in rrd.rras:
        out.append(
            f"<rra><cf>{rra.cf}</cf><pdp_per_row>{rra.pdp_cnt}</pdp_per_row>"
            f"<params><xff>{f_to_s(rra.xff)}</xff></params><cdp_prep>"
        )
        out += [
            "<ds><primary_value>0.0</primary_value><secondary_value>0.0</secondary_value>"
            "<value>0.0</value><unknown_datapoints>0</unknown_datapoints></ds>"
            for _ in rrd.sources
        ]
        out.append("</cdp_prep><database>")
        for row in _rra_rows(rrd, rra) if rrd.sources else []:
            out.append("<row>" + "".join(f"<v>{f_to_s(v)}</v>" for v in row) + "</row>")
        out.append("</database></rra>")
    out.append("</rrd>")
    return "".join(out)


def rrd_json(rrd: Rrd) -> str:
    """``Rrd.json_to_string`` (unquoted keys, like the updates' JSON)."""
    dss = ",".join(
        f'{{name:"{s.ds.name}",type:"{s.ds.ty}",minimal_heartbeat:{f_to_s(300.0)},'
        f"min:{f_to_s(s.ds.min)},max:{f_to_s(s.ds.max)},last_ds:0.0,value:0.0,unknown_sec:0}}"
        for s in rrd.sources
    )
    rras = []
    for rra in rrd.rras:
        cdps = ",".join(
            "{primary_value:0.0,secondary_value:0.0,value:0.0,unknown_datapoints:0}"
            for _ in rrd.sources
        )
        rows = _rra_rows(rrd, rra) if rrd.sources else []
        db = "[" + ",".join("[" + ",".join(f_to_s(v) for v in r) + "]" for r in rows) + "]"
        rras.append(
            f'cf:"{rra.cf}",pdp_per_row:{rra.pdp_cnt},params:{{xff:{f_to_s(rra.xff)}}},'
            f"cdp_prep:{{ds:[{cdps}]}},database:{db}"
        )
    return (
        f'{{version: "0003",step:{rrd.timestep},lastupdate:{f_to_s(rrd.last_updated)},'
        f"ds:[{dss}],rra:[{{" + "},{".join(rras) + "}]}"
    )
