"""``GET /system-status``: a server status report (XenCenter's "Server Status Report").

xen-api ``ocaml/xapi/system_status.ml`` ``handler`` (the same from 6.5 to v24.19.2),
registered as ``get_system_status`` (``Datamodel.http_actions``: ``String_query_arg
entries``, ``output``): ``assert_credentials_ok`` first (401, realm ``get_system_status``),
then ``with_context "Retrieving system status"`` (the client's ``task_id`` completed, or a
task of that name for the request). ``entries`` and ``output`` come from the query only.

- a host whose ``software_version`` has ``oem_build_number`` (``Helpers.on_oem``) and
  ``output`` other than ``tar``: the task fails with ``SYSTEM_STATUS_MUST_USE_TAR_ON_OEM``
  and the answer is a 500 page;
- ``output=tar`` (``send_via_fd``, XenCenter's choice): ``HTTP/1.0 200 OK``, ``Connection:
  close``, ``Server``, ``Content-Type: application/data``, ``Content-Disposition: attachment;
  filename="system_status.tgz"``, no length, then xen-bugtool writes the tar straight to the
  socket (streamed here member by member);
- ``tar.bz2`` or ``zip`` (``send_via_cp``): xen-bugtool writes a file, sent by
  ``Http_svr.response_file`` with its length (``Connection: keep-alive`` though xapi closes);
- any other ``output``, absent included: xen-bugtool exits 2 ("Invalid output format"), and
  the task fails with ``SYSTEM_STATUS_RETRIEVAL_FAILED`` ["xen-bugtool failed: ..."], a 500.

The report itself is ``classes/system_status.py``'s.
"""

from __future__ import annotations

from .. import playback_dump
from ..classes import system_status as ss
from ..errors import Failure
from ..wire import routes

SYSTEM_STATUS_URI = "/system-status"  # Constants.system_status_uri
REALM = "get_system_status"  # its name in Datamodel.http_actions
TASK_LABEL = "Retrieving system status"
CONTENT_TYPE = "application/data"
SERVER = "xapi/1.9"
RECORD = 10240  # tarfile.RECORDSIZE: a stream tar ends on a whole record


def _retrieval_failed(output: str) -> Failure:
    """``send_via_cp``'s error for xen-bugtool's exit 2 (``ExnHelper.string_of_exn`` of
    ``Spawn_internal_error``)."""
    detail = (
        "Subprocess exited with unexpected code 2; stdout = [  ]; "
        f"stderr = [ Invalid output format '{output}'\n ]"
    )
    return Failure(
        "SYSTEM_STATUS_RETRIEVAL_FAILED", f"xen-bugtool failed: INTERNAL_ERROR: [ {detail} ]"
    )


@routes.get(SYSTEM_STATUS_URI, stream=True)
def system_status(req: routes.Request) -> None:
    host = req.host
    req.authenticate(REALM)
    entries = req.q("entries", "") or ""
    output = req.q("output", "") or ""
    with req.context(TASK_LABEL):
        db = host.db
        with db.lock:
            hrow = db.get("host", host.ref)
            oem = "oem_build_number" in hrow["software_version"]
            hostname = hrow["hostname"]
            keys = ss.entries_of(db, host, entries)
        if oem and output != "tar":
            raise Failure("SYSTEM_STATUS_MUST_USE_TAR_ON_OEM")
        if output not in ("tar", "tar.bz2", "zip"):
            raise _retrieval_failed(output)
        when = req.world.clock.time()
        database = playback_dump.dump_bytes(host.pool) if "xenserver-databases" in keys else b""
        _, members = ss.report_members(database, hostname, keys, when)
        if output == "tar":
            req.raw(
                (
                    "HTTP/1.0 200 OK\r\nConnection: close\r\n"
                    "Cache-Control: no-cache, no-store\r\n"
                    f"Server: {SERVER}\r\nContent-Type: {CONTENT_TYPE}\r\n"
                    'Content-Disposition: attachment; filename="system_status.tgz"\r\n\r\n'
                ).encode()
            )
            written = 0
            for path, data in members:
                piece = ss.tar_piece(path, data, when)
                req.write(piece)
                written += len(piece)
            end = 2 * 512
            end += -(written + end) % RECORD
            req.write(b"\0" * end)
            return
        body = ss.archive(members, output, when)
        req.raw(
            (
                "HTTP/1.1 200 OK\r\nconnection: keep-alive\r\n"
                f"content-type: {CONTENT_TYPE}\r\ncontent-length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
