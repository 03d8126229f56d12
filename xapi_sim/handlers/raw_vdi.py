"""``PUT /import_raw_vdi`` and ``GET /export_raw_vdi``: a disk's contents, raw or VHD.

xen-api ``dundee-lcm`` ``ocaml/xapi/import_raw_vdi.ml`` / ``export_raw_vdi.ml`` and
``importexport.ml``: ``assert_credentials_ok`` (realm ``VDI.import`` / ``VDI.export_raw``);
the VDI from ``vdi`` (query, then cookie; a ref, else a UUID: ``UUID_INVALID``); a 302 to a
host that sees the VDI's SR if this one has no plugged PBD for it
(``check_sr_availability`` / ``find_host_for_sr``); then ``with_context``. ``format`` is
``raw`` (default) or ``vhd`` (any case); another answers 404 and fails the task with
``INTERNAL_ERROR ["Unknown format x"]``. An import with a ``Transfer-Encoding`` answers 403
(Dundee's import code cannot handle chunked encoding); otherwise the headers ``200 OK``
with ``task-id`` go out before the body is read, the contents are written (zeros over
holes are not), and the task succeeds. An export answers ``200 OK`` with ``task-id``,
``content-type`` (``application/octet-stream`` or ``application/vhd``) and
``content-disposition: attachment; filename="<uuid>.<format>"``, then the whole disk (raw)
or a dynamic VHD of its data blocks, and closes. Contents are in ``vdi_store.py``; the
VDI's ``physical_utilisation`` follows what was written.

Not modelled: ``chunked`` (xapi's own sparse block framing), ``base`` (a differencing
export against another VDI).
"""

from __future__ import annotations

import logging

from .. import vhd
from ..classes.storage_vdi import refresh_utilisation
from ..errors import Failure, internal
from ..vdi_store import COPY_CHUNK, VdiStore
from ..wire import routes

log = logging.getLogger(__name__)

FORMATS = {"raw": "application/octet-stream", "vhd": "application/vhd"}


def vdi_of_req(req: routes.Request) -> str:
    """``Importexport.vdi_of_req``: ``vdi`` from the query, then the cookies."""
    value = next((v for k, v in req.query if k == "vdi"), None)
    if value is None:
        value = next((v for k, v in req.params if k == "vdi"), None)
    if value is None:
        raise internal("Missing vdi query parameter")
    db = req.host.db
    if db.exists("VDI", value):
        return value
    ref = db.uuids["VDI"].get(value)
    if ref is None:
        raise Failure("UUID_INVALID", "VDI", value)
    return ref


def local_vdi(req: routes.Request, permission: str) -> str | None:
    """The prologue of both raw-disk handlers: the caller may ``permission``; the VDI of
    the request; None once the client is redirected to a host that sees its SR
    (``Importexport``'s ``check_sr_availability`` and redirect)."""
    req.authenticate(permission)
    vdi = vdi_of_req(req)
    db = req.host.db
    sr = db.get("VDI", vdi)["SR"]
    if not sees_sr(db, req.host.ref, sr):
        req.redirect(host_for_sr(req, sr))
        return None
    return vdi


def sees_sr(db, host_ref: str, sr: str) -> bool:
    """``check_sr_availability_host``: the host has a plugged PBD for the SR."""
    hrow = db.tables["host"].get(host_ref)
    if hrow is None:
        return False
    return any(
        db.tables["PBD"][p]["SR"] == sr and db.tables["PBD"][p]["currently_attached"]
        for p in hrow["PBDs"]
        if p in db.tables["PBD"]
    )


def host_for_sr(req: routes.Request, sr: str):
    """``find_host_for_sr``: a live host that sees the SR (the master first), else
    ``NO_HOSTS_AVAILABLE``."""
    world, db = req.world, req.host.db
    pool = req.host.pool
    hosts = sorted(db.refs("host"), key=lambda r: r != pool.master.ref)
    for ref in hosts:
        h = world.hosts.get(ref)
        if h is not None and h.state == "up" and world.is_live(h) and sees_sr(db, ref, sr):
            return h
    raise Failure("NO_HOSTS_AVAILABLE")


def format_of(req: routes.Request, task) -> str | None:
    """``Importexport.Format.of_req``; an unknown one fails the task and answers 404."""
    fmt = next((v for k, v in req.params if k == "format"), "raw").lower()
    if fmt in FORMATS:
        return fmt
    task.fail(internal(f"Unknown format {fmt}"))
    req.raw(routes.page_404())
    return None


@routes.put("/import_raw_vdi", stream=True)
def import_raw_vdi(req: routes.Request) -> None:
    vdi = local_vdi(req, "VDI.import")
    if vdi is None:
        return
    db = req.host.db
    with req.context("Importing raw VDI") as task:
        fmt = format_of(req, task)
        if fmt is None:
            return
        if req.head.chunked:
            req.raw(routes.page_403())
            raise internal("import code cannot handle encoding: chunked")
        req.send_head("200 OK", [("task-id", task.ref), ("content-type", FORMATS["raw"])])
        size = db.get("VDI", vdi)["virtual_size"]
        length = req.head.length or 0
        try:
            if fmt == "raw":
                receive_raw(req, task, vdi, size, length)
            else:
                receive_vhd(req, task, vdi, size, length)
        finally:
            refresh_utilisation(req.world, db, vdi)


def receive_raw(req: routes.Request, task, vdi: str, size: int, length: int) -> None:
    contents = VdiStore.of(req.world)
    off = 0
    while True:
        data = req.body.readexactly(COPY_CHUNK)
        if not data:
            break
        if off + len(data) > size:
            raise Failure("VDI_IO_ERROR", "Device I/O errors")
        contents.write(vdi, off, data, size)
        off += len(data)
        if length:
            task.progress(off / length)


def receive_vhd(req: routes.Request, task, vdi: str, size: int, length: int) -> None:
    contents = VdiStore.of(req.world)
    try:
        reader = vhd.Reader(req.body.readexactly)
        if reader.size > size:
            raise Failure("VDI_IO_ERROR", "Device I/O errors")
        for off, data in reader.blocks():
            contents.write(vdi, off, data, size)
            if length:
                task.progress(reader.pos / length)
    except vhd.VhdError as e:
        raise internal(f"vhd-tool: {e}") from None


@routes.get("/export_raw_vdi", stream=True)
def export_raw_vdi(req: routes.Request) -> None:
    vdi = local_vdi(req, "VDI.export_raw")
    if vdi is None:
        return
    db = req.host.db
    with req.context("Exporting raw VDI") as task:
        fmt = format_of(req, task)
        if fmt is None:
            return
        row = db.get("VDI", vdi)
        size = row["virtual_size"]
        req.send_head(
            "200 OK",
            [
                ("task-id", task.ref),
                ("content-type", FORMATS[fmt]),
                ("content-disposition", f'attachment; filename="{row["uuid"]}.{fmt}"'),
            ],
        )
        contents = VdiStore.of(req.world)
        if fmt == "raw":
            zero = bytes(COPY_CHUNK)
            for off, data in contents.chunks(vdi, size, COPY_CHUNK):
                req.write(data if data is not None else zero[: min(COPY_CHUNK, size - off)])
                task.progress(off / size if size else 1.0)
        else:
            send_vhd(req, task, vdi, size, row["uuid"])


def send_vhd(req: routes.Request, task, vdi: str, size: int, uuid: str) -> None:
    contents = VdiStore.of(req.world)
    blocks = data_blocks(contents, vdi, size, vhd.BLOCK)
    total = len(blocks) or 1

    def block(i: int) -> bytes:
        return contents.read(vdi, i * vhd.BLOCK, min(vhd.BLOCK, size - i * vhd.BLOCK))

    done = 0
    disk_uuid = bytes.fromhex(uuid.replace("-", "")) if len(uuid) == 36 else None
    for piece in vhd.write(size, blocks, block, disk_uuid, int(req.world.clock.time())):
        req.write(piece)
        if len(piece) >= vhd.BLOCK:
            done += 1
            task.progress(done / total)


def data_blocks(contents: VdiStore, vdi: str, size: int, block: int) -> list[int]:
    """Indices of the ``block``-sized blocks of the disk that hold data, in order."""
    seen: set[int] = set()
    for off, length in contents.extents(vdi, size):
        seen.update(range(off // block, (off + length - 1) // block + 1))
    return sorted(seen)
