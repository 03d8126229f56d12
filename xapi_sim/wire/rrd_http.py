"""``GET /rrd_updates``, ``/host_rrd``, ``/vm_rrd`` and ``/sr_rrd``: xapi's forwarders and
xcp-rrdd's HTTP handlers.

Mirrors xen-api Dundee ``ocaml/xapi/rrdd_proxy.ml`` (``get_*_forwarder``: credentials by
``Xapi_http.with_context ~dummy:true`` -- no task row --, the 400s for a missing ``start`` or
``uuid``, where a VM's RRD is read) and xcp-rrdd v0.12.1 ``rrdd/rrdd_http_handler.ml``
(parameters and replies):

* ``/rrd_updates?start=S[&cf=AVERAGE|MIN|MAX|LAST][&interval=I][&host=true][&vm_uuid=U|all|none]
  [&sr_uuid=..][&json]``: the host's own RRD (``host=true``) and those of the domains it
  runs (``vm_uuid``, default all), exported from ``start`` (negative: relative to the last
  update) at the first archive holding it with at least ``interval`` seconds a row; an
  unknown ``cf`` means every CF. ``rrd.py`` has the formats. A ``start`` that is not an
  integer, a CF some RRD lacks (``cf=MIN`` while VMs keep AVERAGE only), nothing to export,
  or JSON with no row are rrdd exceptions: HTTP 500.
* ``/host_rrd[?json]``: the host's whole RRD.
* ``/vm_rrd?uuid=U``: a VM running on this host is served at once (rrdd has it; xapi hands
  the connection over before any credential check); one running elsewhere is a 302 to its
  host; a halted one is a 302 to the master with ``rrd_unarchive``, where the archive is
  read (archives of halted VMs are not modelled: 500).
* ``/sr_rrd?uuid=U``: Dundee's rrdd holds no SR RRD: 500 ``No SR RRD available!``.
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import Callable

from .. import rrd
from ..classes import data_sources as ds
from ..datamodel import NULL_REF

log = logging.getLogger(__name__)

RRD_UPDATES, HOST_RRD, VM_RRD, SR_RRD = "/rrd_updates", "/host_rrd", "/vm_rrd", "/sr_rrd"
# the label with_context gives each (the realm of its 401)
LABELS = {
    RRD_UPDATES: "Get RRD updates.",
    HOST_RRD: "Get Host RRD.",
    VM_RRD: "Get VM RRD.",
    SR_RRD: "Get SR RRD.",
}
UNARCHIVE = "rrd_unarchive"  # Constants.rrd_unarchive

_INT64 = re.compile(r"[+-]?(0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|[0-9][0-9_]*)\Z")


def route(path: str) -> str | None:
    """The RRD handler a GET path is for (``Http_svr``'s registered prefixes), or None."""
    best = None
    for p in LABELS:
        if path.startswith(p) and (best is None or len(p) > len(best)):
            best = p
    return best


class Fail500(Exception):
    """An exception inside the handler: ``Http_svr`` answers 500 with its text."""


def _int64(text: str) -> int:
    """``Int64.of_string`` (decimal, 0x/0o/0b, underscores); ``Failure "int_of_string"``."""
    if not _INT64.match(text):
        raise Fail500('Failure("int_of_string")')
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-").replace("_", "")
    value = sign * int(body, 0) if body[:2].lower() in ("0x", "0o", "0b") else sign * int(body)
    if not -(1 << 63) <= value < (1 << 63):
        raise Fail500('Failure("int_of_string")')
    return value


def _assoc(params: list[tuple[str, str]], key: str) -> str | None:
    return next((v for k, v in params if k == key), None)


def _head(status: bytes, extra: list[bytes], body: bytes, length: bool) -> bytes:
    lines = [b"HTTP/1.1 " + status] + extra
    if length:
        lines.append(b"content-length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


BAD_REQUEST = _head(b"400 Bad Request", [b"connection: close"], b"", True)


def _redirect(url: str) -> bytes:
    """``Http.http_302_redirect``."""
    return _head(b"302 Found", [b"location: " + url.encode(), b"connection: close"], b"", True)


def _dump(body: str, cors: bool) -> bytes:
    """``http_200_ok ~version:"1.0" ~keep_alive:false``, then the RRD until the close."""
    extra = [b"connection: close", b"cache-control: no-cache, no-store"]
    if cors:
        extra.append(b"access-control-allow-origin: *")
    return _head(b"200 OK", extra, body.encode(), False)


def _url(h, uri: str, params: list[tuple[str, str]]) -> str:
    """``make_url_from_query``: ``https://address/uri?k=v&...`` (the simulated host's port
    added, as every simulated host listens on its own)."""
    query = "&".join(f"{k}={v}" for k, v in params)
    return f"https://{h.address_for_url}:{h.port}{uri}?{query}"


def serve(
    host,
    path: str,
    query: str,
    authorised: Callable[[], bool],
    unauthorised: Callable[[str], bytes],
    internal_error: Callable[[str], bytes],
) -> bytes:
    """The reply bytes for one GET (the connection is closed after them)."""
    params = urllib.parse.parse_qsl(query, keep_blank_values=True)
    try:
        if path == VM_RRD:
            return _vm_rrd(host, params, authorised, unauthorised)
        if not authorised():
            return unauthorised(LABELS[path])
        if path == HOST_RRD:
            return _host_rrd(host, params)
        if path == SR_RRD:
            if _assoc(params, "uuid") is None:
                return BAD_REQUEST
            raise Fail500('Failure("No SR RRD available!")')
        if _assoc(params, "start") is None:
            return BAD_REQUEST
        return _rrd_updates(host, params)
    except Fail500 as e:
        return internal_error(str(e))
    except rrd.NoRraAvailable:
        return internal_error("Rrd.No_RRA_Available")


def _shapes(host):
    return ds.snapshot(host.world, host)


def _host_rrd(host, params) -> bytes:
    world = host.world
    state = ds.RrdState.of(world)
    shape, _ = _shapes(host)
    the_rrd = ds.host_rrd(state, shape, world.clock.time())
    json = _assoc(params, "json") is not None
    return _dump(rrd.rrd_json(the_rrd) if json else rrd.rrd_xml(the_rrd), True)


def _vm_rrd(host, params, authorised, unauthorised) -> bytes:
    uuid = _assoc(params, "uuid")
    if uuid is None:
        raise Fail500("Not_found")  # List.assoc "uuid", before anything else
    world = host.world
    state = ds.RrdState.of(world)
    shape, min_max = _shapes(host)
    mine = next((v for v in shape.vms if v.uuid == uuid), None)
    if mine is not None:  # Rrdd.has_vm_rrd: handed over to rrdd, no credentials asked
        the_rrd = ds.vm_rrd(state, shape, mine, world.clock.time(), min_max)
        return _dump(rrd.rrd_xml(the_rrd), False)
    if not authorised():
        return unauthorised(LABELS[VM_RRD])
    if _assoc(params, UNARCHIVE) is not None:
        raise Fail500(f'Failure("no archived RRD for {uuid}")')
    db = host.db
    with db.lock:
        ref = db.uuids["VM"].get(uuid)
        if ref is None:
            raise Fail500("Db_exn.Read_missing_uuid")
        owner = db.get("VM", ref)["resident_on"]
    master = host.pool.master
    if owner == host.ref:
        if host.is_master:
            raise Fail500(f'Failure("no archived RRD for {uuid}")')
        return _redirect(_url(master, VM_RRD, [(UNARCHIVE, ""), *params]))
    if owner != NULL_REF and owner in world.hosts and _assoc(params, "dbsync") is None:
        return _redirect(_url(world.hosts[owner], VM_RRD, params))
    return _redirect(_url(master, VM_RRD, [(UNARCHIVE, ""), *params]))


def _rrd_updates(host, params) -> bytes:
    start = _int64(_assoc(params, "start") or "")
    cf_text = _assoc(params, "cf")
    cf = cf_text if cf_text in rrd.CFS else None
    interval_text = _assoc(params, "interval")
    try:
        interval = _int64(interval_text) if interval_text is not None else 0
    except Fail500:
        interval = 0
    is_host = _assoc(params, "host") == "true"
    vm_uuid = _assoc(params, "vm_uuid") if _assoc(params, "vm_uuid") is not None else "all"
    json = _assoc(params, "json") is not None
    world = host.world
    state = ds.RrdState.of(world)
    shape, min_max = _shapes(host)
    now = world.clock.time()
    prefixed = []
    if is_host:
        prefixed.append((f"host:{shape.uuid}:", ds.host_rrd(state, shape, now)))
    for vm in shape.vms:
        if vm_uuid == "all" or vm_uuid == vm.uuid:
            prefixed.append((f"vm:{vm.uuid}:", ds.vm_rrd(state, shape, vm, now, min_max)))
    if not prefixed:
        raise Fail500('Failure("hd")')  # List.hd of no RRD
    try:
        updates = rrd.export(prefixed, start, interval, cf)
    except IndexError:  # no archive with rows of `interval`: List.hd []
        raise Fail500('Failure("hd")') from None
    if json:
        if not updates.rows:
            raise Fail500('Invalid_argument("index out of bounds")')
        body = rrd.updates_json(updates).encode()
        extra = []
    else:
        body = rrd.updates_xml(updates).encode()
        extra = [b"content-type: text/xml"]
    head = [b"connection: keep-alive", b"cache-control: no-cache, no-store"]
    cors = [b"access-control-allow-origin: *", b"access-control-allow-headers: X-Requested-With"]
    return _head(b"200 OK", head + extra + cors, body, True)
