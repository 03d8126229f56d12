"""Running an operation on the selected VMs or hosts, and waiting for its task.

Mirrors xen-api Dundee ``cli_operations.ml`` (``do_vm_op``, ``do_host_op``,
``do_multiple``, ``wrap_op`` -- the VM's new messages on stderr --, ``waiter``) and
``cli_util.ml`` (``track``, ``result_from_task``, ``user_says_yes``).
"""

from __future__ import annotations

import time

from ..errors import Failure, errors_for
from ..wire import cliproto
from .errors import CliFailure, MissingParameter, MultipleFailure, OcamlFailure, error_text
from .selectors import select_hosts, select_vms


def do_multiple(ctx, op, records):
    """``op`` on every record; the failures, most recent first, as one MultipleFailure."""
    fails: list[tuple[str, str]] = []
    results: list[object] = []
    for rec in records:
        try:
            results.append(op(rec))
        except Exception as e:  # noqa: BLE001
            fails.insert(
                0,
                (
                    rec.field("uuid").value(),
                    error_text(e, ctx.lookup, errors_for(ctx.host.product.profile)),
                ),
            )
    if fails:
        raise MultipleFailure(fails)
    return results


def _format_message(msg) -> str:
    return f"Message: time={msg['timestamp']} priority={int(msg['priority'])} name='{msg['name']}'"


def wrap_op(ctx, op):
    """Run ``op`` on a VM, then print the VM's new messages more urgent than
    ``message-priority`` (default 5) on stderr."""
    try:
        pri = int(ctx.get("message-priority", "5"))
    except ValueError:
        pri = 5

    def wrapped(rec):
        now = time.strftime("%Y%m%dT%H:%M:%SZ", time.gmtime())
        result = op(rec)
        try:
            msgs = ctx.call("message.get", "VM", rec.field("uuid").value(), now)
        except Exception:  # noqa: BLE001 -- "with _ -> []"
            msgs = {}
        for m in msgs.values():
            if int(m["priority"]) < pri:
                ctx.printer.stderr(_format_message(m) + "\n")
        return result

    return wrapped


def _on_selected(ctx, selected, op, multiple, what, matches, one):
    """The part ``do_vm_op`` and ``do_host_op`` share: none is an error, one is done, more
    need ``--multiple`` (where the operation allows it)."""
    if not selected:
        raise CliFailure(f"No matching {what} found")
    if len(selected) == 1:
        return [op(selected[0])]
    if multiple and ctx.bool_param("multiple"):
        return do_multiple(ctx, op, selected)
    raise CliFailure(
        f"{matches} found. --multiple required to complete the operation"
        if multiple
        else f"{matches} found. Operation can only be performed on one {one} at a time"
    )


def read_map_params(ctx, name) -> dict:
    """``read_map_params``: ``name:k=v`` parameters as a map."""
    n = len(name) + 1
    return {k[n:]: v for k, v in ctx.params if k.startswith(name) and len(k) > n}


def do_vm_op(ctx, op, ignore, include_control=False, include_template=False, multiple=True):
    try:
        vms = select_vms(ctx, ignore, include_control, include_template)
        return _on_selected(
            ctx, vms, wrap_op(ctx, op), multiple, "VMs", "Multiple matches VMs", "VM"
        )
    except MissingParameter as e:
        raise CliFailure(
            f"Parameter '{e.args[0]}' is not a field of the VM class. Failed to "
            "select VM for operation."
        ) from None


def do_host_op(ctx, op, ignore, multiple=True):
    """``op(number of hosts selected, host record)`` on the selected hosts."""
    hosts = select_hosts(ctx, ignore)
    return _on_selected(
        ctx,
        hosts,
        lambda h: op(len(hosts), h),
        multiple,
        "hosts",
        "Multiple matching hosts",
        "host",
    )


# -- tasks -----------------------------------------------------------------------------------


def wait_for_task(ctx, task, on_update=None):
    """``Cli_util.track`` + ``result_from_task``: wait until the task leaves ``pending``
    (calling ``on_update(progress)`` whenever its progress changes, and once at the end),
    then raise its error (or TASK_CANCELLED)."""
    delay = 0.002
    last = 0.0
    while True:
        rec = ctx.call("task.get_record", task)
        status = rec["status"]
        if on_update is not None and (rec["progress"] != last or status != "pending"):
            last = rec["progress"]
            on_update(float(last))
        if status != "pending":
            break
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    if status in ("cancelling", "cancelled"):
        raise Failure("TASK_CANCELLED", task)
    if status == "failure":
        info = ctx.call("task.get_error_info", task)
        if info:
            raise Failure(info[0], *info[1:])
        raise OcamlFailure(f"Task failed but no error recorded: {task}")


def _bar(progress: float) -> str:
    pct = int(progress * 100)
    spinner = "|/-\\"[pct % 4]
    return f"\r {pct:3d}% {spinner} {'#' * int(progress * 70)}"


def waiter(ctx, task):
    """``Cli_operations.waiter``: wait (with a progress bar on stderr when ``progress`` is
    given), then destroy the task."""
    try:
        if ctx.has("progress"):
            wait_for_task(ctx, task, lambda p: ctx.printer.stderr(_bar(p)))
            ctx.printer.stderr("\n")
        else:
            wait_for_task(ctx, task)
    finally:
        try:
            ctx.call("task.destroy", task)
        except Failure:
            pass  # the task was already destroyed (or its GC took it): nothing to clean


# -- confirmation ----------------------------------------------------------------------------


def user_says_yes(ctx) -> bool:
    """``Cli_util.user_says_yes``: prompt on the client and read one line back; anything but
    ``yes`` (any case, surrounding blanks ignored) prints ``Aborted (you typed: '...')``."""
    ctx.send(cliproto.Print("Type 'yes' to continue"))
    ctx.send(cliproto.Prompt())
    m = ctx.receive()
    if not isinstance(m, cliproto.Chunk):
        raise OcamlFailure("Protocol error")
    data = ctx.conn.read_raw(m.length)
    if not isinstance(ctx.receive(), cliproto.End):
        raise OcamlFailure("Protocol error")
    response = data.decode(cliproto.ENCODING, cliproto.ERRORS)
    ok = response.strip(" \t\n\r").lower() == "yes"
    if not ok:
        ctx.send(cliproto.Print(f"Aborted (you typed: '{response}')"))
    return ok
