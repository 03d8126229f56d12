"""``xe vm-export`` and ``xe vm-import``: the CLI server asks the ``xe`` client to move the
file over HTTP itself (``HttpGet`` / ``HttpPut`` of the thin-CLI protocol) and follows the
HTTP handler's task.

Mirrors xen-api Dundee ``cli_operations.ml``: ``export_common`` / ``vm_export`` (a task
"Export of VM: <uuid>" with progress -1 -- the handler sets 0 when it takes the task over
--, ``HttpGet(filename, /export?session_id=&task_id=&ref=&use_compression=
&preserve_power_state=&export_snapshots=)``, then ``download_file``: wait for the client's
answer, a ``Failed`` before the handler ran fails the task, wait for the task, "Export
succeeded" or the task's error) and ``vm_import`` (``Load <file>/ova.xml`` first: a file
answers ``Failed``, so the file is an XVA, sent with ``HttpPut(filename,
https://<master>/import?session_id=&task_id=&restore=&force=&dry_run=&sr_id=)`` and
``track_http_operation``; the new VMs' UUIDs are printed). A directory-format (Zurich /
Geneva) XVA and ``url=`` imports are not modelled.
"""

from __future__ import annotations

import time

from ... import xva
from ...errors import Failure
from ...wire import cliproto
from ..errors import CliFailure, ExitWithError
from ..ops import do_vm_op
from .spec import Cmd


def _set_progress(ctx, task, value: float) -> None:
    """``Db_actions.DB_Action.Task.set_progress`` (the server's own database write)."""
    db = ctx.host.pool.db
    with db.lock:
        if db.exists("task", task):
            db.update("task", task, progress=value)


def _fail_unclaimed(ctx, task) -> None:
    """A ``Failed`` answer while the task's progress is still -1: the handler never ran,
    so the task is marked failed here (no error info)."""
    db = ctx.host.pool.db
    with db.lock:
        row = db.tables["task"].get(task)
        if row is not None and row["progress"] < 0 and row["status"] == "pending":
            db.update("task", task, status="failure")


def _wait_response(ctx):
    while True:
        m = ctx.receive()
        if m != cliproto.WAIT:
            return m


def _wait_task(ctx, task) -> str:
    delay = 0.005
    while True:
        status = ctx.call("task.get_status", task)
        if status != "pending":
            return status
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _transfer(ctx, task, command, label) -> str:
    """``download_file`` / ``track_http_operation``: the client's transfer, then the task.
    Returns the task's result; raises its error."""
    ctx.send(command)
    ok = _wait_response(ctx) == cliproto.OK
    if not ok:
        _fail_unclaimed(ctx, task)
    status = _wait_task(ctx, task)
    if status == "success":
        if not ok:
            ctx.printer.stderr(f"{label} failed, unknown error.")
            raise ExitWithError(1)
        return ctx.call("task.get_result", task)
    if status == "failure":
        info = ctx.call("task.get_error_info", task)
        if not info:
            ctx.printer.stderr(f"{label} failed, unknown error")
            raise ExitWithError(1)
        raise Failure(info[0], *info[1:])
    ctx.printer.stderr(f"{label} cancelled")
    raise ExitWithError(1)


def vm_export(ctx):
    filename = ctx.get("filename")
    compress = ctx.bool_param("compress")
    preserve = ctx.bool_param("preserve-power-state")
    metadata = ctx.bool_param("metadata")
    snapshots = ctx.bool_param("include-snapshots", metadata)
    num = [1]

    def op(rec):
        uuid = ctx.call("VM.get_uuid", rec.ref)
        task = ctx.call("task.create", f"Export of VM: {uuid}", "")
        _set_progress(ctx, task, -1.0)
        try:
            f = filename + str(num[0]) if num[0] > 1 else filename
            uri = (
                f"{'/export_metadata' if metadata else '/export'}?session_id={ctx.session}"
                f"&task_id={task}&ref={rec.ref}&use_compression={str(compress).lower()}"
                f"&preserve_power_state={str(preserve).lower()}"
                f"&export_snapshots={str(snapshots).lower()}"
            )
            _transfer(ctx, task, cliproto.HttpGet(f, uri), "Export")
            if f != "":
                ctx.printer.msg("Export succeeded")
            num[0] += 1
        finally:
            try:
                ctx.call("task.destroy", task)
            except Failure:
                pass  # already gone: nothing to clean up

    do_vm_op(
        ctx, op, ["filename", "metadata", "compress", "preserve-power-state", "include-snapshots"]
    )


def vm_import(ctx):
    if ctx.has("sr-uuid"):
        sr = ctx.call("SR.get_by_uuid", ctx.get("sr-uuid"))
    else:
        pool = ctx.call("pool.get_all")[0]
        sr = ctx.call("pool.get_default_SR", pool)
        if sr == "OpaqueRef:NULL" or not ctx.host.pool.db.exists("SR", sr):
            raise CliFailure("No SR specified and Pool default SR is null")
    restore = ctx.bool_param("preserve")
    force = ctx.bool_param("force")
    dry_run = ctx.bool_param("dry-run")
    metadata = ctx.bool_param("metadata")
    if ctx.has("url") and ctx.has("filename"):
        ctx.printer.stderr(
            "Invalid arguments. The 'url' and 'filename' parameters should not both be specified."
        )
        raise ExitWithError(1)
    if not ctx.has("filename"):
        raise CliFailure("vm-import from a url is not supported by this simulator")
    filename = ctx.get("filename")
    if not metadata and dry_run:
        ctx.printer.stderr("Only metadata import function support dry-run")
        raise ExitWithError(1)
    if filename.lower().endswith("ova.xml"):
        filename = filename[: -len("ova.xml")]
    ctx.send(cliproto.Load(filename + "/ova.xml"))
    answer = ctx.receive()
    if answer == cliproto.OK:  # a directory: the client sends the file next
        _drain_blob(ctx)
        ctx.printer.stderr("Failed to import directory-format XVA")
        raise ExitWithError(2)
    if answer != cliproto.FAILED:
        raise CliFailure("Thin CLI protocol error")
    task = (
        ctx.call("task.get_by_uuid", ctx.get("task-uuid"))
        if ctx.has("task-uuid")
        else ctx.call("task.create", "VM import", "")
    )
    _set_progress(ctx, task, -1.0)
    master = ctx.host.pool.master
    uri = (
        f"https://{master.address_for_url}:{master.port}"
        f"{'/import_metadata' if metadata else '/import'}?session_id={ctx.session}"
        f"&task_id={task}&restore={str(restore).lower()}&force={str(force).lower()}"
        f"&dry_run={str(dry_run).lower()}&sr_id={sr}"
    )
    try:
        result = _transfer(ctx, task, cliproto.HttpPut(filename, uri), "VM import")
    finally:
        if not ctx.has("task-uuid"):
            try:
                ctx.call("task.destroy", task)
            except Failure:
                pass  # already gone
    try:
        refs = xva.parse_value(result) if result else []
    except xva.XvaError:
        refs = []
    uuids = [ctx.call("VM.get_uuid", r) for r in refs if isinstance(r, str)]
    ctx.printer.msg(",".join(uuids))


def _drain_blob(ctx):
    while True:
        m = ctx.receive()
        if isinstance(m, cliproto.Chunk):
            ctx.conn.read_raw(m.length)
        else:
            return


COMMANDS = {
    "vm-export": Cmd(
        ["filename"],
        ["preserve-power-state", "compress", "metadata", "include-snapshots"],
        "Export a VM to <filename>.",
        vm_export,
        ["Standard", "Vm_selectors"],
        with_fd=True,
    ),
    "vm-import": Cmd(
        [],
        [
            "filename",
            "preserve",
            "sr-uuid",
            "force",
            "host-username",
            "host-password",
            "type",
            "remote-config",
            "url",
            "vdi:",
            "metadata",
            "dry-run",
        ],
        "Import a VM. If type=ESXServer is given, it will import from a VMWare server and "
        "'host-username', 'host-password' and 'remote-config' are required. Otherwise, it "
        "will import from a file, and 'filename' is required. If the option preserve=true "
        "is given then as many settings as possible are restored, including VIF MAC "
        "addresses. The default is to regenerate VIF MAC addresses. The VDIs will be "
        "imported into the Pool's default SR unless an override is provided. If the force "
        "option is given then any disk data checksum failures will be ignored. If the "
        "parameter 'url' is specified, xapi will attempt to import from that URL.",
        vm_import,
        ["Standard"],
        with_fd=True,
    ),
}
