"""``GET /export``, ``PUT /import`` and ``GET /export_metadata``: VMs as XVA streams.

xen-api ``dundee-lcm`` ``ocaml/xapi/export.ml``, ``import.ml`` and ``stream_vdi.ml``; the
format is in ``xva.py``.

**Export** (``Export.handler``): ``assert_credentials_ok`` (realm ``VM.export``); the VM
from ``ref``, else ``uuid``; if this host cannot see the VM's SRs (or is not live), a 302 to
``https://`` a host that can (``find_host_for_VM``: the VM's host if it runs) -- none: the
task fails and the connection closes without a reply. Then ``with_context "VM.export"``:
progress 0, the VM marked with ``export`` in ``current_operations`` (its operation check
first), ``200 OK`` with ``task-id`` and ``content-disposition: attachment;
filename="export.xva"``, no length, then ``ova.xml`` (the VM, its VBDs, VIFs, networks,
non-empty VDIs, their SRs, guest metrics and hosts, each with ``make_vm``/... blanking) and
each non-CD disk's chunks; the task succeeds when the stream is written.

**Metadata export** (``Export.metadata_handler``): the same ``ova.xml`` (snapshot fields
kept, power state kept) alone in a tar, with its length; ``metadata_export`` marks the VM.

**Metadata import** (``Import.metadata_handler``, ``PUT /import_metadata`` with a tar
body): ``ova.xml`` alone; the VDIs are the pool's own (see ``import_metadata``).

**Import** (``Import.handler``): realm ``VM.import``; the SR from ``sr_id``, ``sr_uuid``,
else the pool's default SR; a 302 to a host that sees it if this one does not; then
``with_context "VM.import"``: progress 0; an ISO SR answers 400 and fails with
``SR_OPERATION_NOT_SUPPORTED``; a ``Transfer-Encoding`` answers 403 and fails with
``IMPORT_ERROR_CANNOT_HANDLE_CHUNKED``; else ``200 OK`` with ``task-id`` goes out and the
body is read: ``ova.xml`` first (a gzip-compressed XVA is inflated on the fly), version
check (``IMPORT_INCOMPATIBLE_VERSION``), the objects created through the API (VDIs in the
chosen SR, the VM -- new ``mac_seed`` unless ``restore=true``, which keeps the UUID and
replaces a halted VM of that UUID --, networks matched by UUID, name or bridge else
created, VBDs, VIFs), ``object_creation`` = ``complete`` in the task's ``other_config``,
then the disks' chunks (checksums checked unless ``force=true``). The task's result is the
new VMs (an XML-RPC array). A failure destroys what was created (unless ``force``) and
fails the task with ``IMPORT_ERROR_*``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import zlib
from collections.abc import Callable

from .. import install_storage, xva
from ..classes import common as c
from ..classes.storage_vdi import refresh_utilisation
from ..datamodel import NULL_REF
from ..dispatch import Call
from ..errors import Failure, internal
from ..vdi_store import VdiStore
from ..wire import routes, xmlrpc
from .raw_vdi import host_for_sr, sees_sr
from .xva_meta import cleanup, create_objects, vm_metadata

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/octet-stream"


def ref_or_uuid(db, cls: str, ref: str | None, uuid: str | None) -> str | None:
    """The object a handler names by ``ref`` (``HANDLE_INVALID``) or else by ``uuid``
    (``UUID_INVALID``); None when it names neither."""
    if ref is not None:
        if not db.exists(cls, ref):
            raise Failure("HANDLE_INVALID", cls, ref)
        return ref
    if uuid is None:
        return None
    found = db.uuids[cls].get(uuid)
    if found is None:
        raise Failure("UUID_INVALID", cls, uuid)
    return found


def vm_from_request(req: routes.Request) -> str:
    """``Export.vm_from_request``: ``ref``, else ``uuid`` (``UUID_INVALID``)."""
    vm = ref_or_uuid(req.host.db, "VM", req.q("ref"), req.q("uuid"))
    if vm is None:
        raise internal("Not_found")
    return vm


def _host_ok(req: routes.Request, vm: str, host) -> bool:
    """``check_vm_host_SRs``: the host sees the VM's SRs and is live."""
    db = req.host.db
    try:
        install_storage.assert_can_see_srs(db, vm, db.get("VM", vm), host.ref)
    except Failure:
        return False
    return host.state == "up" and req.world.is_live(host)


def _host_for_vm(req: routes.Request, vm: str):
    """``find_host_for_VM``: the VM's own host if it runs there, else a live host that
    sees its SRs (the master first); ``NO_HOSTS_AVAILABLE``."""
    db, world = req.host.db, req.world
    row = db.get("VM", vm)
    pool = req.host.pool
    order = [row["resident_on"]] + sorted(db.refs("host"), key=lambda r: r != pool.master.ref)
    for ref in order:
        h = world.hosts.get(ref)
        if h is not None and h.pool is pool and _host_ok(req, vm, h):
            return h
    raise Failure("NO_HOSTS_AVAILABLE")


def _call(req: routes.Request, name: str, task: str | None = None) -> Call:
    call = Call(req.world, req.host.pool.master, name)
    call.task = task
    return call


@contextlib.contextmanager
def vm_locked(req: routes.Request, vm: str, task: str, op: str):
    """``Export.with_vm_locked``: the operation check, ``current_operations`` marked for
    the length of the body, then removed and ``allowed_operations`` refreshed."""
    call = _call(req, "VM.export", task)
    db = call.db
    with db.lock:
        c.assert_operation_valid(call, "VM", vm, op)
        ops = dict(db.get("VM", vm)["current_operations"])
        ops[task] = op
        db.update("VM", vm, current_operations=ops)
        c.refresh_vm_allowed(call.world, db, vm)
    try:
        yield
    finally:
        with db.lock:
            row = db.tables["VM"].get(vm)
            if row is not None and task in row["current_operations"]:
                ops = {k: v for k, v in row["current_operations"].items() if k != task}
                db.update("VM", vm, current_operations=ops)
                c.refresh_vm_allowed(call.world, db, vm)


@routes.get("/export", stream=True)
def export(req: routes.Request) -> None:
    req.authenticate("VM.export")
    vm = vm_from_request(req)
    if not _host_ok(req, vm, req.host):
        try:
            host = _host_for_vm(req, vm)
        except Failure as f:
            with req.context("export") as task:
                task.fail(f)
            req.close = True
            return
        return req.redirect(host, scheme="https")
    with req.context("VM.export") as task:
        task.progress(0.0, force=True)
        with vm_locked(req, vm, task.ref, "export"):
            req.send_head(
                "200 OK",
                [
                    ("task-id", task.ref),
                    ("server", "xapi/1.9"),
                    ("content-type", CONTENT_TYPE),
                    ("content-disposition", 'attachment; filename="export.xva"'),
                ],
            )
            write_xva(req, task, vm)


def write_xva(req: routes.Request, task, vm: str) -> None:
    """``Export.export``: ``ova.xml``, the disks' chunks, the end of the tar."""
    db = req.host.db
    table, ova = vm_metadata(req.host, [vm], with_snapshots=False, preserve_power_state=False)
    req.write(xva.member(xva.XML_FILENAME, ova))
    disks = []
    for vbd in db.get("VM", vm)["VBDs"]:
        vrow = db.tables["VBD"].get(vbd)
        if vrow is None or vrow["type"] == "CD" or vrow["VDI"] not in table:
            continue
        vdi = db.tables["VDI"].get(vrow["VDI"])
        if vdi is None or db.get("SR", vdi["SR"])["content_type"] == "iso":
            continue
        disks.append((table[vrow["VDI"]], vrow["VDI"], vdi["virtual_size"]))
    disks.sort()
    total = sum(size for _, _, size in disks) or 1
    done = 0
    contents = VdiStore.of(req.world)
    for prefix, vdi, size in disks:
        for piece in xva.disk_members(prefix, size, contents.chunks(vdi, size, xva.CHUNK)):
            req.write(piece)
            done += len(piece)
            task.progress(min(1.0, done / total))
    req.write(xva.END)


@routes.get("/export_metadata")
def export_metadata(req: routes.Request) -> None:
    """``Export.metadata_handler`` for one VM (``ref``/``uuid``) or ``all=true``."""
    db = req.host.db
    with req.context("VM.export_metadata") as task:
        req.authenticate("VM.export_metadata")
        if req.flag("all"):
            vms = [
                r
                for r, row in db.rows("VM")
                if not row["is_control_domain"]
                and not (
                    row["is_a_template"] and row["other_config"].get("default_template") == "true"
                )
            ]
        else:
            vms = [vm_from_request(req)]
            if db.get("VM", vms[0])["is_a_snapshot"]:
                raise Failure(
                    "OPERATION_NOT_ALLOWED", "Exporting metadata of a snapshot is not allowed"
                )
        snapshots = req.q("export_snapshots", "true") == "true"
        with contextlib.ExitStack() as stack:
            for vm in vms:
                stack.enter_context(vm_locked(req, vm, task.ref, "metadata_export"))
            _, ova = vm_metadata(req.host, vms, with_snapshots=snapshots, preserve_power_state=True)
        body = xva.member(xva.XML_FILENAME, ova) + xva.END
        req.send_head(
            "200 OK",
            [
                ("task-id", task.ref),
                ("server", "xapi/1.9"),
                ("content-type", CONTENT_TYPE),
                ("content-disposition", 'attachment; filename="export.xva"'),
            ],
            length=len(body),
        )
        req.write(body)


# -- import -----------------------------------------------------------------------------------


class _Inflate:
    """A gzip-compressed stream read as the plain one (``with_open_archive``'s retry)."""

    def __init__(self, read, first: bytes):
        self._read, self.z, self.buf = read, zlib.decompressobj(31), bytearray()
        self._feed(first)

    def _feed(self, data: bytes) -> None:
        try:
            self.buf += self.z.decompress(data)
        except zlib.error as e:
            raise xva.XvaError(f"bad gzip data: {e}") from None

    def __call__(self, n: int) -> bytes:
        while len(self.buf) < n and not self.z.eof:
            data = self._read(routes.READ_SIZE)
            if not data:
                break
            self._feed(data)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


def _import_sr(req: routes.Request) -> str:
    db = req.host.db
    sr = ref_or_uuid(db, "SR", req.param("sr_id"), req.param("sr_uuid"))
    if sr is not None:
        return sr
    sr = db.get("pool", req.host.pool.ref)["default_SR"]
    if not db.exists("SR", sr):
        raise Failure("DEFAULT_SR_NOT_FOUND", sr)
    return sr


@routes.put("/import", stream=True)
def import_(req: routes.Request) -> None:
    req.authenticate("VM.import")
    sr = _import_sr(req)
    db = req.host.db
    if not sees_sr(db, req.host.ref, sr):
        return req.redirect(host_for_sr(req, sr), scheme="https")
    with req.context("VM.import") as task:
        task.progress(0.0, force=True)
        if db.get("SR", sr)["content_type"] == "iso":
            req.raw(routes.page_400())
            raise Failure("SR_OPERATION_NOT_SUPPORTED")
        if req.head.chunked:
            req.raw(routes.page_403())
            raise Failure("IMPORT_ERROR_CANNOT_HANDLE_CHUNKED")
        req.send_head("200 OK", [("task-id", task.ref), ("content-type", CONTENT_TYPE)])
        vms = stream_import(req, task, sr, restore=req.flag("restore"), force=req.flag("force"))
        task.result = xmlrpc.encode_value(vms)


@routes.put("/import_metadata")
def import_metadata(req: routes.Request) -> None:
    """``Import.metadata_handler``: ``ova.xml`` alone (as ``/export_metadata`` writes it);
    the VDIs are the pool's own, found by UUID or ``vdi:<uuid>=<uuid>`` in the query
    (``IMPORT_ERROR_FAILED_TO_FIND_OBJECT`` else); ``dry_run=true`` creates nothing."""
    db = req.host.db
    with req.context("VM.metadata_import") as task:
        req.authenticate("VM.metadata_import")
        req.send_head("200 OK", [("task-id", task.ref), ("content-type", CONTENT_TYPE)])
        vdi_map = {k[4:]: v for k, v in req.query if k.startswith("vdi:") and len(k) > 4}
        call = _call(req, "VM.import_metadata", task.ref)
        created: list[tuple[str, str]] = []
        restore, force = req.flag("restore"), req.flag("force")
        try:
            tar = xva.TarReader(req.body.readexactly)
            entry = tar.next()
            if entry is None or entry[0] != xva.XML_FILENAME:
                raise Failure(
                    "IMPORT_ERROR_UNEXPECTED_FILE", xva.XML_FILENAME, entry[0] if entry else ""
                )
            version, objects = xva.parse_ova(tar.data())
            _assert_compatible(req.host, version)
            _, _, vms = create_objects(
                req,
                call,
                objects,
                NULL_REF,
                restore=restore,
                force=force,
                created=created,
                vdi_map=vdi_map,
                dry_run=req.flag("dry_run"),
            )
        except EOFError:
            cleanup(req, call, created)
            raise Failure("IMPORT_ERROR_PREMATURE_EOF") from None
        except xva.XvaError as e:
            cleanup(req, call, created)
            raise Failure("IMPORT_ERROR_GENERIC", str(e)) from None
        except BaseException:
            if not force:
                cleanup(req, call, created)
            raise
        _complete(call, vms, task.ref)
        task.result = xmlrpc.encode_value([v for v in vms if not db.get("VM", v)["is_a_snapshot"]])


def stream_import(req: routes.Request, task, sr: str, restore: bool, force: bool) -> list[str]:
    body = req.body
    first = body.readexactly(xva.BLOCK)
    read: Callable[[int], bytes]
    if first[:2] == b"\x1f\x8b":
        read = _Inflate(body.readexactly, first)
    else:
        pending = [first]

        def read(n: int) -> bytes:
            if pending:
                head = pending.pop()
                return head + (body.readexactly(n - len(head)) if n > len(head) else b"")
            return body.readexactly(n)

    tar = xva.TarReader(read)
    call = _call(req, "VM.import", task.ref)
    created: list[tuple[str, str]] = []
    try:
        try:
            entry = tar.next()
            if entry is None or entry[0] != xva.XML_FILENAME:
                raise Failure(
                    "IMPORT_ERROR_UNEXPECTED_FILE", xva.XML_FILENAME, entry[0] if entry else ""
                )
            version, objects = xva.parse_ova(tar.data())
            _assert_compatible(req.host, version)
            table, vdis, vms = create_objects(
                req, call, objects, sr, restore=restore, force=force, created=created
            )
            task.other_config("object_creation", "complete")
            _recv_disks(req, task, tar, vdis, version, force)
        except EOFError:
            raise Failure("IMPORT_ERROR_PREMATURE_EOF") from None
        except xva.XvaError as e:
            raise Failure("IMPORT_ERROR_GENERIC", str(e)) from None
    except BaseException:
        if force:
            log.warning("import failed; not cleaning up since force was given")
        else:
            cleanup(req, call, created)
        raise
    finally:
        for kind, ref in created:
            if kind == "VDI":
                refresh_utilisation(req.world, req.host.db, ref)
    _complete(call, vms, task.ref)
    return [v for v in vms if not req.host.db.get("VM", v)["is_a_snapshot"]]


def _assert_compatible(host, version: dict) -> None:
    """``Importexport.assert_compatable``: the same xapi major, a minor not newer."""
    sv = host.db.get("host", host.ref)["software_version"]
    major, _, minor = str(sv.get("xapi", "1.9")).partition(".")
    try:
        ok = version["xapi_major"] == major and int(version["xapi_minor"]) <= int(minor or 0)
    except (KeyError, ValueError):
        ok = False
    if not ok:
        raise Failure("IMPORT_INCOMPATIBLE_VERSION")


def _recv_disks(req: routes.Request, task, tar, vdis, version, force: bool) -> None:
    """``Stream_vdi.recv_all``: each disk's chunks in the order of its id, zero chunks
    skipped (the offset advances by the first chunk's length per missing chunk)."""
    contents = VdiStore.of(req.world)
    total = sum(size for _, _, size in vdis) or 1
    done = 0
    first = -1
    checked = int(version.get("export_vsn", "0") or 0) > 0
    for prefix, vdi, size in sorted(vdis):
        offset, last = 0, -1
        while offset < size:
            entry = tar.next()
            if entry is None:
                raise EOFError("the disks end early")
            name, length = entry
            if not name.startswith(prefix + "/"):
                raise xva.XvaError(f"Expected VDI chunk prefixed {prefix}; got {name}")
            try:
                n = int(name[len(prefix) + 1 :])
            except ValueError:
                raise xva.XvaError(f"bad chunk name {name}") from None
            if n <= last:
                raise xva.XvaError(f"chunk {name} is out of order")
            if first < 0:
                first = length
            offset += first * (n - last - 1)
            last = n
            sha = hashlib.sha1()
            while tar.left:
                data = tar.read(xva.CHUNK)
                sha.update(data)
                if offset + len(data) > size:
                    raise Failure("VDI_IO_ERROR", "Device I/O errors")
                contents.write(vdi, offset, data, size)
                offset += len(data)
                done += len(data)
            task.progress(done / total)
            if checked:
                entry = tar.next()
                if entry is None or not entry[0].endswith(xva.CHECKSUM_EXT):
                    raise xva.XvaError(
                        "Expected to find an inline checksum, found file called: "
                        + (entry[0] if entry else "end of stream")
                    )
                if tar.data().decode("ascii", "replace") != sha.hexdigest() and not force:
                    raise xva.XvaError(f"Invalid_checksum: block {name} checksum failed")


def _complete(call: Call, vms: list[str], task: str) -> None:
    """``complete_import``: ``import`` off the VMs' current operations."""
    db = call.db
    with db.lock:
        for vm in vms:
            row = db.tables["VM"].get(vm)
            if row is not None and task in row["current_operations"]:
                ops = {k: v for k, v in row["current_operations"].items() if k != task}
                db.update("VM", vm, current_operations=ops)
                c.refresh_vm_allowed(call.world, db, vm)
