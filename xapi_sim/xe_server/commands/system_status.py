"""``xe host-get-system-status-capabilities`` and ``xe host-get-system-status``: XenCenter's
server status report from the command line (Dundee ``cli_frontend.ml`` and
``cli_operations.ml`` ``host_get_system_status_capabilities`` / ``host_get_system_status``).

The capabilities are printed as a list (one XML document per selected host). The status
report is ``track_http_operation`` of an ``HttpGet`` of the host's own
``/system-status?session_id=&entries=&output=&task_id=`` (the client connects to that
host), under a task named "system-status download"; nothing is printed on success.
"""

from __future__ import annotations

from ...errors import Failure
from ...wire import cliproto
from ..errors import CliFailure
from ..ops import do_host_op
from .spec import Cmd
from .transfer import _set_progress, _transfer

_OUTPUTS = ("tar.bz2", "tar", "zip")


def host_get_system_status_capabilities(ctx):
    found = do_host_op(ctx, lambda n, h: ctx.call("host.get_system_status_capabilities", h.ref), [])
    ctx.printer.lines(found)


def host_get_system_status(ctx):
    filename = ctx.get("filename")
    entries = ctx.get("entries", "")
    output = ctx.get("output", "tar.bz2")
    if output not in _OUTPUTS:
        raise CliFailure("Invalid output format. Must be 'tar', 'zip' or 'tar.bz2'")

    def op(n, h):
        target = ctx.host.world.host(h.ref)
        task = ctx.call("task.create", "system-status download", "")
        _set_progress(ctx, task, -1.0)
        try:
            url = (
                f"{target.url}system-status"
                f"?session_id={ctx.session}&entries={entries}&output={output}&task_id={task}"
            )
            _transfer(ctx, task, cliproto.HttpGet(filename, url), "system-status download")
        finally:
            try:
                ctx.call("task.destroy", task)
            except Failure:
                pass  # already gone

    do_host_op(ctx, op, ["filename", "entries", "output"])


COMMANDS = {
    "host-get-system-status-capabilities": Cmd(
        [], [], "", host_get_system_status_capabilities, ["Host_selectors"]
    ),
    "host-get-system-status": Cmd(
        ["filename"],
        ["entries", "output"],
        "Download system status into <filename>.  Entries is a comma-separated list.  "
        "Output may be 'tar', 'tar.bz2' (the default) or 'zip'.",
        host_get_system_status,
        ["Host_selectors"],
        with_fd=True,
    ),
}
