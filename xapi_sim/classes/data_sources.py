"""Data sources and RRDs of VMs, hosts and SRs: what each host's xcp-rrdd holds.

The API messages (Dundee, ``xapi_vm.ml`` / ``xapi_host.ml`` / ``xapi_sr.ml`` calling
``Rrdd``, with ``message_forwarding.ml``'s checks):

* ``VM.get_data_sources`` / ``record_data_source`` / ``forget_data_source_archives`` run
  under ``with_vm_operation data_source_op`` (a Running VM, ``checks/vm.py``) on the VM's
  host; ``VM.query_data_source`` has no operation check.
* ``host.*`` run on the host (``HOST_OFFLINE`` when it is down); ``SR.*`` on the master.
* rrdd's own failures reach the client as xapi's ``INTERNAL_ERROR`` with the printed
  exception rpc-light wraps them in (``Rrd_interface.Internal_error``): no RRD for the
  object (a VM that is not running; any SR -- Dundee's rrdd holds no SR-owned data
  source) -> ``Not_found``; ``record_data_source`` of a name rrdd never reported ->
  ``Not_found`` (``List.find``); ``query_data_source`` or ``forget_data_source_archives``
  of a source that is not in the RRD (unknown, or not recorded) ->
  ``Rrd.Invalid_data_source("name")``.
* ``record_data_source`` adds a source to the RRD with no history (xcp-rrd's
  ``rrd_add_ds``); ``forget_data_source_archives`` drops a recorded one, and wipes a
  default one's history (rrdd re-adds default sources at its next update).

``RrdState`` (one per world) keeps those choices by object uuid; everything else is
computed from the database on demand (``metrics.py``, ``rrd.py``). The choices are not
journaled: like rrdd's in-memory RRDs, a restart of the simulator forgets them.
"""

from __future__ import annotations

import logging
import os
import threading

from .. import metrics, rrd
from ..datamodel import NULL_REF
from ..dispatch import api
from ..errors import Failure
from . import common as c

log = logging.getLogger(__name__)

RUNNING = ("Running", "Paused")


def rrdd_error(text: str) -> Failure:
    """An rrdd exception as xapi reports it (``ExnHelper.error_of_exn`` of
    ``Rrd_interface.Internal_error (Printexc.to_string e)``)."""
    inner = text.replace("\\", "\\\\").replace('"', '\\"')
    return Failure("INTERNAL_ERROR", f'Rrd_interface.Internal_error("{inner}")')


def not_found() -> Failure:
    return rrdd_error("Not_found")


def invalid_data_source(name: str) -> Failure:
    return rrdd_error(f'Rrd.Invalid_data_source("{name}")')


class RrdState:
    """Per world: sources recorded (name -> since) and histories reset, by owner uuid."""

    def __init__(self, world):
        self.lock = threading.Lock()
        seed = world.ids.seed
        self.seed = seed if seed is not None else int.from_bytes(os.urandom(8), "big")
        self.recorded: dict[str, dict[str, float]] = {}
        self.reset: dict[str, dict[str, float]] = {}

    @classmethod
    def of(cls, world) -> RrdState:
        return world.service(cls)

    def view(self, uuid: str, catalogue: list[metrics.DsDef]):
        """[(ds, born)] of the sources in the owner's RRD, in rrdd's order (defaults, then
        recorded ones in the order they were added)."""
        with self.lock:
            recorded = dict(self.recorded.get(uuid, {}))
            reset = dict(self.reset.get(uuid, {}))
        out = [(d, reset.get(d.name)) for d in catalogue if d.default]
        by_name = {d.name: d for d in catalogue if not d.default}
        out += [(by_name[n], t) for n, t in recorded.items() if n in by_name]
        return out

    def record(self, uuid: str, ds: metrics.DsDef, now: float) -> None:
        with self.lock:
            if not ds.default:
                self.recorded.setdefault(uuid, {}).setdefault(ds.name, now)

    def forget(self, uuid: str, ds: metrics.DsDef, now: float) -> None:
        with self.lock:
            if ds.default:
                self.reset.setdefault(uuid, {})[ds.name] = now
            else:
                self.recorded.get(uuid, {}).pop(ds.name, None)


# -- shapes from the database --------------------------------------------------------------


def _vm_shape(db, ref: str, row) -> metrics.VmShape:
    m = db.tables["VM_metrics"].get(row["metrics"]) or {}
    vcpus = int(m.get("VCPUs_number") or 0) or int(row["VCPUs_at_startup"])
    memory = int(m.get("memory_actual") or 0) or int(row["memory_target"])
    vifs = []
    for v in row["VIFs"]:
        vr = db.tables["VIF"].get(v)
        if vr is not None and vr["currently_attached"] and vr["device"].isdigit():
            vifs.append(int(vr["device"]))
    vbds = []
    for b in row["VBDs"]:
        br = db.tables["VBD"].get(b)
        if br is None or not br["currently_attached"] or br["type"] != "Disk":
            continue
        vdi = db.tables["VDI"].get(br["VDI"])
        sr = db.tables["SR"].get(vdi["SR"]) if vdi is not None else None
        if sr is None:
            continue
        dev = br["device"] or f"xvd{chr(ord('a') + int(br['userdevice'] or 0) % 26)}"
        vbds.append(metrics.Vbd(dev, sr["uuid"]))
    dom0 = bool(row["is_control_domain"])
    return metrics.VmShape(
        uuid=row["uuid"],
        vcpus=vcpus,
        memory=memory,
        memory_target=int(row["memory_target"]),
        vifs=tuple(sorted(set(vifs))),
        vbds=tuple(sorted(set(vbds), key=lambda b: b.device)),
        paused=row["power_state"] == "Paused",
        control_domain=dom0,
        guest_agent=db.exists("VM_guest_metrics", row["guest_metrics"]),
    )


def host_shape(db, host_ref: str, memory_free: int) -> metrics.HostShape:
    """The host and the domains it runs, read from its pool's database (call under
    ``db.lock`` for a consistent picture); ``memory_free`` is the host's accounting
    (``host.compute_free_memory``: host_metrics.memory_free left the API in Tampa)."""
    h = db.get("host", host_ref)
    hm = db.tables["host_metrics"].get(h["metrics"]) or {}
    pcpus = len(h["host_CPUs"]) or int(h["cpu_info"].get("cpu_count", "0") or 0) or 1
    pifs: list[str] = []
    for p in h["PIFs"]:
        pr = db.tables["PIF"].get(p)
        if pr is None or pr["VLAN"] != -1 or not pr["currently_attached"]:
            continue
        if (pr["physical"] or pr.get("bond_master_of")) and pr["device"] not in pifs:
            pifs.append(pr["device"])
    vms = []
    for v in h["resident_VMs"]:
        row = db.tables["VM"].get(v)
        if row is not None and row["power_state"] in RUNNING:
            vms.append(_vm_shape(db, v, row))
    return metrics.HostShape(
        uuid=h["uuid"],
        pcpus=pcpus,
        memory_total=int(hm.get("memory_total", 0)),
        memory_free=int(memory_free),
        pifs=tuple(sorted(pifs)),
        vms=tuple(sorted(vms, key=lambda s: s.uuid)),
    )


def min_max_for_vms(db) -> bool:
    """The pool's ``other_config:create_min_max_in_new_VM_RRDs`` (xapi passes it to rrdd's
    ``update_use_min_max``)."""
    for _, row in db.rows("pool"):
        return row["other_config"].get("create_min_max_in_new_VM_RRDs") == "true"
    return False


# -- RRDs --------------------------------------------------------------------------------------


def last_updated(state: RrdState, host_uuid: str, now: float) -> float:
    """rrdd updates every 5 s, at a phase of its own."""
    phase = metrics._rng(state.seed, host_uuid, "phase").uniform(0, rrd.STEP)
    return now - ((now - phase) % rrd.STEP)


def host_rrd(state: RrdState, shape: metrics.HostShape, now: float) -> rrd.Rrd:
    view = state.view(shape.uuid, metrics.host_catalogue(shape))
    sources = tuple(
        rrd.Source(d, metrics.host_series(state.seed, shape, d.name), born) for d, born in view
    )
    return rrd.Rrd(last_updated(state, shape.uuid, now), sources, rrd.create_rras(True))


def vm_rrd(
    state: RrdState, host: metrics.HostShape, vm: metrics.VmShape, now: float, min_max: bool
) -> rrd.Rrd:
    view = state.view(vm.uuid, metrics.vm_catalogue(vm))
    sources = tuple(
        rrd.Source(d, metrics.vm_series(state.seed, vm, d.name), born) for d, born in view
    )
    return rrd.Rrd(last_updated(state, host.uuid, now), sources, rrd.create_rras(min_max))


def snapshot(world, host):
    """(host shape, VMs keep MIN/MAX) of a ``HostRuntime``, read in one go."""
    free = world.host_free_memory(host)
    db = host.db
    with db.lock:
        return host_shape(db, host.ref, free), min_max_for_vms(db)


def _data_source_record(ds: metrics.DsDef, enabled: bool) -> dict:
    """``Rrdd_helper.to_API_data_source`` (value 0)."""
    return {
        "name_label": ds.name,
        "name_description": ds.description,
        "enabled": enabled,
        "standard": ds.default,
        "units": ds.units,
        "min": ds.min,
        "max": ds.max,
        "value": 0.0,
    }


def _list(state: RrdState, uuid: str, catalogue: list[metrics.DsDef]) -> list[dict]:
    enabled = {d.name for d, _ in state.view(uuid, catalogue)}
    return [_data_source_record(d, d.name in enabled) for d in catalogue]


def _find(catalogue: list[metrics.DsDef], name: str) -> metrics.DsDef:
    for d in catalogue:
        if d.name == name:
            return d
    raise not_found()


def _query(the_rrd: rrd.Rrd, now: float, name: str) -> float:
    try:
        return rrd.query_named_ds(the_rrd, now, name)
    except rrd.InvalidDataSource:
        raise invalid_data_source(name) from None


def _forget(state: RrdState, uuid: str, catalogue, name: str, now: float) -> None:
    view = {d.name: d for d, _ in state.view(uuid, catalogue)}
    if name not in view:
        raise invalid_data_source(name)
    state.forget(uuid, view[name], now)


# -- VM ----------------------------------------------------------------------------------------


def _vm_context(call, vm: str):
    """(state, host shape, VM shape or None, min_max) for a VM, on its host."""
    row = call.db.get("VM", vm)
    c.assert_resident_host_live(call, row)
    state = RrdState.of(call.world)
    host = row["resident_on"]
    if host == NULL_REF or not call.db.exists("host", host):
        return state, None, None, False
    shape, min_max = snapshot(call.world, call.world.host(host))
    mine = next((s for s in shape.vms if s.uuid == row["uuid"]), None)
    return state, shape, mine, min_max


@api("VM.get_data_sources")
def vm_get_data_sources(call, vm):
    with call.db.lock, c.with_operation(call, "VM", vm, "data_source_op") as token:
        token.mark()
        state, _, shape, _ = _vm_context(call, vm)
        if shape is None:
            raise not_found()
        return _list(state, shape.uuid, metrics.vm_catalogue(shape))


@api("VM.record_data_source")
def vm_record_data_source(call, vm, data_source):
    with call.db.lock, c.with_operation(call, "VM", vm, "data_source_op") as token:
        token.mark()
        state, _, shape, _ = _vm_context(call, vm)
        if shape is None:
            raise not_found()
        ds = _find(metrics.vm_catalogue(shape), data_source)
        state.record(shape.uuid, ds, call.world.clock.time())


@api("VM.query_data_source")
def vm_query_data_source(call, vm, data_source):
    state, host, shape, min_max = _vm_context(call, vm)
    if shape is None or host is None:
        raise not_found()
    now = call.world.clock.time()
    return _query(vm_rrd(state, host, shape, now, min_max), now, data_source)


@api("VM.forget_data_source_archives")
def vm_forget_data_source_archives(call, vm, data_source):
    with call.db.lock, c.with_operation(call, "VM", vm, "data_source_op") as token:
        token.mark()
        state, _, shape, _ = _vm_context(call, vm)
        if shape is None:
            raise not_found()
        catalogue = metrics.vm_catalogue(shape)
        _forget(state, shape.uuid, catalogue, data_source, call.world.clock.time())


# -- host --------------------------------------------------------------------------------------


def _host_context(call, host: str):
    call.db.get("host", host)
    h = call.world.host(host)
    if h.state != "up" or not call.world.is_live(h):
        raise Failure("HOST_OFFLINE", host)
    shape, _ = snapshot(call.world, h)
    return RrdState.of(call.world), shape


@api("host.get_data_sources")
def host_get_data_sources(call, host):
    state, shape = _host_context(call, host)
    return _list(state, shape.uuid, metrics.host_catalogue(shape))


@api("host.record_data_source")
def host_record_data_source(call, host, data_source):
    state, shape = _host_context(call, host)
    ds = _find(metrics.host_catalogue(shape), data_source)
    state.record(shape.uuid, ds, call.world.clock.time())


@api("host.query_data_source")
def host_query_data_source(call, host, data_source):
    state, shape = _host_context(call, host)
    now = call.world.clock.time()
    return _query(host_rrd(state, shape, now), now, data_source)


@api("host.forget_data_source_archives")
def host_forget_data_source_archives(call, host, data_source):
    state, shape = _host_context(call, host)
    _forget(state, shape.uuid, metrics.host_catalogue(shape), data_source, call.world.clock.time())


# -- SR: Dundee's rrdd holds no SR RRD (SR-level I/O is in the host RRDs) ----------------------


@api("SR.get_data_sources")
def sr_get_data_sources(call, sr):
    call.db.get("SR", sr)
    return []  # query_possible_sr_dss: [] without an RRD


@api("SR.record_data_source")
def sr_record_data_source(call, sr, data_source):
    call.db.get("SR", sr)
    raise not_found()


@api("SR.query_data_source")
def sr_query_data_source(call, sr, data_source):
    call.db.get("SR", sr)
    raise not_found()


@api("SR.forget_data_source_archives")
def sr_forget_data_source_archives(call, sr, data_source):
    call.db.get("SR", sr)
    raise not_found()
